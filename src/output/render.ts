import { UsageError } from '../errors.js';

export type Format = 'table' | 'json' | 'csv';
export const FORMATS: readonly Format[] = ['table', 'json', 'csv'];

/**
 * How a column is shown: ints become JSON numbers when exact, money stays a decimal string,
 * seconds are rounded to the millisecond and rates to an integer. In JSON a missing value is
 * null (also an empty string, except in a column declared 'text'); numbers carry no float noise.
 */
export interface Column<T> {
  key: keyof T & string;
  label?: string;
  kind?: 'int' | 'money' | 'text' | 'time' | 'seconds' | 'rate';
}

/** Tables wider than this are printed as one key/value block per row (like psql's \\x). */
export const MAX_TABLE_WIDTH = 100;

export function parseFormat(value: string): Format {
  if ((FORMATS as readonly string[]).includes(value)) return value as Format;
  throw new UsageError(`--format must be one of ${FORMATS.join(', ')}, got "${value}"`);
}

/** Renders rows for stdout; `single` prints one JSON object instead of an array. */
export async function render<T extends object>(
  rows: T[],
  columns: Column<T>[],
  format: Format,
  opts: { single?: boolean; color?: boolean } = {},
): Promise<string> {
  switch (format) {
    case 'json': {
      const out = rows.map((r) => jsonRecord(r, columns));
      return JSON.stringify(opts.single ? out[0] : out, null, 2) + '\n';
    }
    case 'csv':
      return (
        [columns.map((c) => csvCell(c.key)), ...rows.map((r) => columns.map((c) => csvCell(cell(r, c)))).map((l) => l)]
          .map((l) => l.join(','))
          .join('\n') + '\n'
      );
    case 'table': {
      // Loaded only here: JSON and CSV output (scripts, pipes) never pay for it.
      const cells = rows.map((r) => columns.map((c) => cell(r, c)));
      const widths = fitWidths(columns, cells, rows.length);
      if (!widths) return vertical(rows, columns, opts.color);
      const wrapped = widths.some((w, i) => w < naturalWidth(columns, cells, i));
      // Loaded only here: JSON and CSV output (scripts, pipes) never pay for it.
      const { default: Table } = await import('cli-table3');
      const table = new Table({
        head: columns.map((c) => c.label ?? c.key),
        colAligns: columns.map((c) => (c.kind === 'int' || c.kind === 'money' ? 'right' : 'left')),
        style: opts.color ? { head: ['cyan'] } : { head: [], border: [] },
        // No rule between rows, so long listings stay readable; unless cells wrap onto several lines
        // (at the width, not at word boundaries: cli-table3 would cut a longer word short).
        ...(wrapped
          ? { colWidths: widths, wordWrap: true, wrapOnWordBoundary: false }
          : { chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } }),
      });
      for (const r of cells) table.push(r);
      const text = table.toString();
      // eslint-disable-next-line no-control-regex
      const width = Math.max(0, ...text.split('\n').map((l) => l.replace(/\x1b\[[0-9;]*m/g, '').length));
      return width <= MAX_TABLE_WIDTH ? text + '\n' : vertical(rows, columns, opts.color);
    }
  }
}

/** One row as a compact JSON line (JSON Lines: one object per line, for streams). */
export function renderRecordLine<T extends object>(row: T, columns: Column<T>[]): string {
  return JSON.stringify(jsonRecord(row, columns)) + '\n';
}

/** A column's width with its padding, as cli-table3 draws it unconstrained. */
function naturalWidth<T>(columns: Column<T>[], cells: string[][], i: number): number {
  return Math.max((columns[i].label ?? columns[i].key).length, ...cells.map((r) => Math.max(...r[i].split('\n').map((l) => l.length)))) + 2;
}

/**
 * Column widths that keep a table of several rows within MAX_TABLE_WIDTH by wrapping its text
 * columns (numbers, money and timestamps are never wrapped); undefined when that cannot leave
 * each text column 12 characters, or for a single row: then key/value blocks read better.
 */
function fitWidths<T>(columns: Column<T>[], cells: string[][], rows: number): number[] | undefined {
  const natural = columns.map((_, i) => naturalWidth(columns, cells, i));
  const borders = columns.length + 1;
  if (natural.reduce((a, b) => a + b, 0) + borders <= MAX_TABLE_WIDTH) return natural;
  if (rows <= 1) return undefined;
  const flex = columns
    .map((c, i) => (!c.kind || c.kind === 'text' ? i : -1))
    .filter((i) => i >= 0)
    .sort((a, b) => natural[a] - natural[b]);
  let budget = MAX_TABLE_WIDTH - borders - natural.reduce((sum, w, i) => (flex.includes(i) ? sum : sum + w), 0);
  const widths = [...natural];
  // The narrow text columns keep their width; the rest share what is left evenly.
  flex.forEach((i, n) => {
    widths[i] = Math.min(natural[i], Math.floor(budget / (flex.length - n)));
    budget -= widths[i];
  });
  return flex.length && flex.every((i) => widths[i] >= 12 || widths[i] === natural[i]) ? widths : undefined;
}

/** Rows as key/value blocks, `-[ RECORD n ]-` between them as psql's expanded mode does. */
function vertical<T extends object>(rows: T[], columns: Column<T>[], color?: boolean): string {
  const labels = columns.map((c) => c.label ?? c.key);
  const pad = Math.max(...labels.map((l) => l.length));
  const valueWidth = Math.max(20, MAX_TABLE_WIDTH - pad - 3);
  const head = (s: string) => (color ? `\x1b[36m${s}\x1b[39m` : s);
  return rows
    .map((r, n) => {
      const lines = columns.map((c, i) => {
        // Long values wrap under themselves, so no line passes MAX_TABLE_WIDTH.
        const value = cell(r, c);
        const chunks = value.length ? (value.match(new RegExp(`.{1,${valueWidth}}`, 'g')) ?? [value]) : [''];
        return chunks.map((chunk, j) => `${j ? ' '.repeat(pad) : head(labels[i].padEnd(pad))} | ${chunk}`.trimEnd()).join('\n');
      });
      return (rows.length > 1 ? `-[ RECORD ${n + 1} ]${'-'.repeat(Math.max(0, pad - 12))}\n` : '') + lines.join('\n') + '\n';
    })
    .join('');
}

function cell<T extends object>(row: T, c: Column<T>): string {
  const v = jsonValue(row[c.key] as unknown, c.kind);
  return v === null ? '' : String(v);
}

/** One value as JSON shows it: see Column. */
function jsonValue(v: unknown, kind: Column<object>['kind']): unknown {
  if (v === undefined || v === null || (v === '' && kind !== 'text')) return null;
  if (typeof v === 'number' && Number.isFinite(v)) {
    if (kind === 'seconds') return Math.round(v * 1000) / 1000;
    if (kind === 'rate') return Math.round(v);
    return Number.isInteger(v) ? v : Number(v.toPrecision(12));
  }
  if (kind === 'int' && typeof v === 'string' && Number.isSafeInteger(Number(v))) return Number(v);
  if (kind === 'time' && v instanceof Date) return v.toISOString();
  return v;
}

function jsonRecord<T extends object>(row: T, columns: Column<T>[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of columns) out[c.key] = jsonValue(row[c.key] as unknown, c.kind);
  return out;
}

/**
 * A watermark cursor as every command prints it: `xid/invoice_id`, or null before the first
 * row (a cursor at xid 0 or at the smallest bigint, the "nothing yet" sentinels).
 */
export function formatCursor(xid: string | number | bigint, invoiceId: string | number | bigint): string | null {
  const id = String(invoiceId);
  if (String(xid) === '0' || id === '-9223372036854775808') return null;
  return `${xid}/${id}`;
}

function csvCell(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** A byte count for people: 8.0 kB, 2.5 MB. */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
