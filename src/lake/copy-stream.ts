// PostgreSQL -> DuckDB at COPY speed with flat memory: `COPY (...) TO STDOUT` (text or csv) is
// piped through a named pipe that DuckDB's CSV reader consumes as it arrives, so PostgreSQL
// and DuckDB work at the same time and nothing is buffered beyond the pipe.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, createWriteStream, openSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { to as copyTo } from 'pg-copy-streams';
import type { Client } from '../db/client.js';
import { InterruptedError, InvoicesError } from '../errors.js';
import { type DuckDBConnection, sqlString } from './duckdb.js';

/**
 * How rows travel: csv, or PostgreSQL's text format (tab-separated, backslash escapes), which
 * PostgreSQL writes a quarter faster but is read correctly here only for columns whose text
 * never holds a tab, newline or backslash (numbers, timestamps): the invoices, not customers.
 */
export type CopyFormat = 'csv' | 'text';

/** The COPY ... TO STDOUT options of a format. */
export function copyOptions(format: CopyFormat): string {
  return format === 'csv' ? ' (FORMAT csv)' : '';
}

/** A named pipe in dir (removed by the caller). */
export function makeFifo(dir: string): string {
  const fifo = path.join(dir, `.copy-${process.pid}-${Math.random().toString(36).slice(2, 8)}.pipe`);
  rmSync(fifo, { force: true });
  try {
    execFileSync('mkfifo', ['-m', '600', fifo], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const why =
      String((err as { stderr?: Buffer }).stderr ?? '')
        .trim()
        .split('\n')[0] || (err as Error).message.split('\n')[0];
    throw new InvoicesError(`cannot create a named pipe in ${dir} (${why}): the lake must be on a local filesystem that supports them`, {
      cause: err,
    });
  }
  if (!statSync(fifo).isFIFO()) throw new InvoicesError(`could not create the named pipe ${fifo}`);
  return fifo;
}

/**
 * Runs `select` in PostgreSQL and DuckDB's `statement(source)` at the same time, where source is a
 * read_csv over the pipe with the given columns and DuckDB types.
 */
export async function copyIntoDuckDb(
  client: Client,
  duck: DuckDBConnection,
  select: string,
  columns: Record<string, string>,
  fifo: string,
  statement: (source: string) => string,
  opts: { signal?: AbortSignal; onRows?: (rows: number) => void; source?: (fifo: string) => Promise<void>; format?: CopyFormat } = {},
): Promise<void> {
  const cols =
    '{' +
    Object.entries(columns)
      .map(([k, t]) => `${sqlString(k)}: ${sqlString(t)}`)
      .join(', ') +
    '}';
  const format = opts.format ?? 'csv';
  const dialect = format === 'csv' ? `delim = ',', quote = '"', escape = '"'` : `delim = '\t', quote = '', escape = '', nullstr = '\\N'`;
  const source = `read_csv(${sqlString(fifo)}, header = false, auto_detect = false, ${dialect}, columns = ${cols})`;
  const reading = duck.run(statement(source));
  if (opts.source) {
    // Another process writes the pipe (psql); if DuckDB fails before opening it, give the writer a reader.
    reading.catch(() => unblockFifo(fifo));
    const [w, r] = await Promise.allSettled([opts.source(fifo), reading]);
    if (w.status === 'rejected') throw w.reason;
    if (r.status === 'rejected') throw r.reason;
    return;
  }
  const stream = client.query(copyTo(`COPY (${select}) TO STDOUT${copyOptions(format)}`));
  // If DuckDB fails before opening the pipe, the writer would wait for a reader forever: open one.
  reading.catch(() => unblockFifo(fifo));
  // Counts rows (newlines: invoices and customers have no quoted newlines; only progress uses it) and stops on Ctrl-C.
  let rows = 0;
  let last = performance.now();
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (opts.signal?.aborted) return done(new InterruptedError('interrupted'));
      if (opts.onRows) {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
        const now = performance.now();
        if (now - last > 1000) {
          last = now;
          opts.onRows(rows);
        }
      }
      done(null, chunk);
    },
  });
  const [written, read] = await Promise.allSettled([pipeline(stream, counter, createWriteStream(fifo)), reading]);
  if (written.status === 'rejected') throw written.reason;
  if (read.status === 'rejected') throw read.reason;
}

function unblockFifo(fifo: string): void {
  try {
    closeSync(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
  } catch {
    // nothing waits on it
  }
}
