// Progress on stderr: one live line on a terminal (phase, done/total, rate, ETA), redrawn a few
// times a second so that a long statement still shows time passing. Nothing when stderr is
// piped or with --quiet (the caller passes tty: false then): logs and cron mail get the summary
// lines only. Never on stdout, which carries data only.
import type { Logger } from '../log.js';

export interface PhaseOptions {
  /** Units of work in this phase (rows, indexes, tables); 0 or undefined: unknown. */
  total?: number;
  /** What is counted: "rows" by default. */
  unit?: string;
  /** This phase's place in the whole job, e.g. step 3 of 5. */
  step?: number;
  steps?: number;
}

export interface Progress {
  /** Starts a phase; its rate and ETA are measured from here. */
  phase(name: string, opts?: PhaseOptions): void;
  /** Work done in the current phase (a new label starts a phase of rows, as before phases existed). */
  update(done: number, total?: number, label?: string): void;
  /** A note on what the phase is doing right now (e.g. the index being built), shown after the counts. */
  detail(text: string): void;
  /** Clears the line; the next update draws it again. */
  stop(): void;
  /** A logger whose lines do not tear the live line: it is cleared before and redrawn after. */
  wrap(log: Logger): Logger;
}

export interface ProgressOptions {
  quiet: boolean;
  /** stderr is a terminal (and progress wanted): only then is anything drawn. */
  tty: boolean;
  /** Colour allowed (not NO_COLOR or --no-color). */
  color?: boolean;
  stream?: NodeJS.WriteStream;
  /** Job name shown first, e.g. "seed". */
  job?: string;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const REDRAW_MS = 250;

interface PhaseState extends PhaseOptions {
  name: string;
  started: number;
  done: number;
  /** When `done` last moved: the rate is measured up to there, not to now (an index in flight is not a slowdown). */
  movedAt: number;
  detail: string;
}

export function createProgress(label: string, opts: ProgressOptions): Progress {
  const live = opts.tty && !opts.quiet;
  const stream = opts.stream ?? process.stderr;
  const jobStarted = performance.now();
  let current: PhaseState | undefined;
  let timer: NodeJS.Timeout | undefined;
  let frame = 0;
  let shown = false;

  const clear = () => {
    if (shown) stream.write('\r\x1b[2K');
    shown = false;
  };
  const draw = () => {
    if (!live || !current) return;
    const text = renderLine(
      opts.job ?? label,
      current,
      performance.now(),
      jobStarted,
      FRAMES[frame++ % FRAMES.length],
      opts.color ?? false,
    );
    // Room for the terminal's own "^C" echo: a line that wraps can no longer be cleared with \r.
    const width = Math.max(20, (stream.columns || 100) - 4);
    stream.write(`\r\x1b[2K${fit(text, width)}`);
    shown = true;
  };
  const ensureTimer = () => {
    if (!live || timer) return;
    timer = setInterval(draw, REDRAW_MS);
    timer.unref(); // never keeps the process alive
  };
  const startPhase = (name: string, p: PhaseOptions = {}) => {
    const now = performance.now();
    current = { unit: 'rows', ...p, name, started: now, done: 0, movedAt: now, detail: '' };
    ensureTimer();
    draw();
  };

  return {
    phase: startPhase,
    update(done, total, what) {
      if (!current || (what !== undefined && what !== current.name)) startPhase(what ?? label, { total });
      if (done !== current!.done) current!.movedAt = performance.now();
      current!.done = done;
      if (total !== undefined) current!.total = total;
      ensureTimer();
    },
    detail(text) {
      if (current) current.detail = text;
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      current = undefined;
      clear();
    },
    wrap(log) {
      const around = (write: (m: string) => void) => (m: string) => {
        const again = shown;
        clear();
        write(m);
        if (again) draw();
      };
      return { info: around(log.info), warn: around(log.warn), debug: around(log.debug) };
    },
  };
}

/** The live line: "⠋ seed [2/5] invoices: 1,200,000/2,000,000 rows (60%) · 254,000 rows/s · ETA 3s · 6s". */
export function renderLine(job: string, p: PhaseState, now: number, jobStarted: number, glyph = '', color = false): string {
  const secs = (p.movedAt - p.started) / 1000;
  const unit = p.unit ?? 'rows';
  const step = p.step && p.steps ? ` [${p.step}/${p.steps}]` : '';
  const parts: string[] = [];
  if (p.total) {
    const pct = Math.min(100, Math.floor((p.done / p.total) * 100));
    parts.push(`${fmtInt(p.done)}/${fmtInt(p.total)} ${unit} (${pct}%)`);
  } else if (p.done) {
    parts.push(`${fmtInt(p.done)} ${unit}`);
  }
  const rate = secs > 0.5 ? p.done / secs : 0;
  if (rate >= 10) parts.push(`${fmtInt(Math.round(rate))} ${unit}/s`);
  else if (p.done > 0 && secs > 0)
    parts.push(`${(secs / p.done).toFixed(1)} s per ${unit === 'indexes' ? 'index' : unit.replace(/s$/, '')}`);
  if (p.total && p.done > 0 && p.done < p.total && secs > 0.5) {
    // What is left at the rate so far, less the time already spent on the item in flight.
    const left = ((p.total - p.done) * secs) / p.done - (now - p.movedAt) / 1000;
    parts.push(`ETA ${formatSeconds(Math.max(1, left))}`);
  }
  if (p.detail) parts.push(p.detail);
  parts.push(formatSeconds((now - jobStarted) / 1000));
  const head = `${glyph ? glyph + ' ' : ''}${job}${step} ${p.name}`;
  const dim = (s: string) => (color ? `\x1b[2m${s}\x1b[22m` : s);
  return `${head}: ${parts.join(dim(' · '))}`;
}

/** Cuts a line to the terminal's width so that \r redraws it in place (a wrapped line cannot be). */
function fit(text: string, width: number): string {
  // eslint-disable-next-line no-control-regex
  const visible = text.replace(/\x1b\[[0-9;]*m/g, '');
  if (visible.length <= width) return text;
  return visible.slice(0, width - 1) + '…';
}

export function fmtInt(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
