import { UsageError } from '../errors.js';

export type Format = 'table' | 'json' | 'csv';
export const FORMATS: readonly Format[] = ['table', 'json', 'csv'];

/** How a column is shown: ints become JSON numbers when exact, money stays a decimal string. */
export interface Column<T> {
  key: keyof T & string;
  label?: string;
  kind?: 'int' | 'money' | 'text' | 'time';
}

export function parseFormat(value: string): Format {
  if ((FORMATS as readonly string[]).includes(value)) return value as Format;
  throw new UsageError(`--format must be one of ${FORMATS.join(', ')}, got "${value}"`);
}

/** Renders rows for stdout; `single` prints one JSON object instead of an array. */
export async function render<T extends object>(rows: T[], columns: Column<T>[], format: Format, opts: { single?: boolean; color?: boolean } = {}): Promise<string> {
  switch (format) {
    case 'json': {
      const out = rows.map((r) => jsonRecord(r, columns));
      return JSON.stringify(opts.single ? out[0] : out, null, 2) + '\n';
    }
    case 'csv':
      return [columns.map((c) => csvCell(c.key)), ...rows.map((r) => columns.map((c) => csvCell(cell(r, c)))).map((l) => l)]
        .map((l) => l.join(','))
        .join('\n') + '\n';
    case 'table': {
      // Loaded only here: JSON and CSV output (scripts, pipes) never pay for it.
      const { default: Table } = await import('cli-table3');
      const table = new Table({
        head: columns.map((c) => c.label ?? c.key),
        colAligns: columns.map((c) => (c.kind === 'int' || c.kind === 'money' ? 'right' : 'left')),
        style: opts.color ? { head: ['cyan'] } : { head: [], border: [] },
        // No rule between rows: long listings stay readable.
        chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
      });
      for (const r of rows) table.push(columns.map((c) => cell(r, c)));
      return table.toString() + '\n';
    }
  }
}

/** One row as a compact JSON line (JSON Lines: one object per line, for streams). */
export function renderRecordLine<T extends object>(row: T, columns: Column<T>[]): string {
  return JSON.stringify(jsonRecord(row, columns)) + '\n';
}

function cell<T extends object>(row: T, c: Column<T>): string {
  const v = row[c.key] as unknown;
  return v === null || v === undefined ? '' : String(v);
}

function jsonRecord<T extends object>(row: T, columns: Column<T>[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of columns) {
    const v = row[c.key] as unknown;
    out[c.key] = c.kind === 'int' && typeof v === 'string' && v !== '' && Number.isSafeInteger(Number(v)) ? Number(v) : (v ?? null);
  }
  return out;
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
