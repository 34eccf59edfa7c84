// Progress on stderr: a spinner line on a TTY, a plain line every few seconds otherwise,
// nothing when quiet. Never on stdout, which carries data only.

export interface Progress {
  update(done: number, total: number, label?: string): void;
  stop(): void;
}

export interface ProgressOptions {
  quiet: boolean;
  tty: boolean;
  stream?: NodeJS.WriteStream;
  /** Seconds between lines when not on a TTY. */
  interval?: number;
}

export function createProgress(label: string, opts: ProgressOptions): Progress {
  if (opts.quiet) return { update() {}, stop() {} };
  const stream = opts.stream ?? process.stderr;
  const started = performance.now();
  let last = 0;
  let spinner: { text: string; stop(): void } | undefined;
  let pending = '';
  let stopped = false;
  if (opts.tty) {
    void import('ora').then(({ default: ora }) => {
      if (!stopped) spinner = ora({ text: pending || label, stream, discardStdin: false }).start();
    });
  }
  const line = (done: number, total: number, what: string) => {
    const secs = (performance.now() - started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const pct = total > 0 ? Math.floor((done / total) * 100) : 0;
    const eta = rate > 0 && total > done ? ` ETA ${formatSeconds((total - done) / rate)}` : '';
    return `${what}: ${fmtInt(done)}/${fmtInt(total)} rows (${pct}%), ${fmtInt(Math.round(rate))} rows/s${eta}`;
  };
  return {
    update(done, total, what = label) {
      if (opts.tty) {
        pending = line(done, total, what);
        if (spinner) spinner.text = pending;
        return;
      }
      const now = performance.now();
      if (now - last >= (opts.interval ?? 5) * 1000) {
        last = now;
        stream.write(line(done, total, what) + '\n');
      }
    },
    stop() {
      stopped = true;
      spinner?.stop();
    },
  };
}

export function fmtInt(n: number): string {
  return n.toLocaleString('en-US');
}

function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`;
}
