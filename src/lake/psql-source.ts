// The fast path out of PostgreSQL: `psql` running COPY ... TO STDOUT straight into a named pipe
// (about twice the throughput of node-postgres' COPY stream here, and no Node in the data path),
// inside the exporting transaction's snapshot (pg_export_snapshot / SET TRANSACTION SNAPSHOT),
// so every stream sees exactly the same rows. Without psql on PATH the export uses one stream
// through node-postgres instead.
import { spawn, spawnSync } from 'node:child_process';
import { open } from 'node:fs/promises';
import type { ConnectionSettings } from '../config.js';
import { copyOptions, type CopyFormat } from './copy-stream.js';

let found: string | null | undefined;

/** The psql executable on PATH, or null. */
export function findPsql(env: NodeJS.ProcessEnv = process.env): string | null {
  if (found !== undefined) return found;
  const r = spawnSync('psql', ['--version'], { env, encoding: 'utf8' });
  found = r.status === 0 ? 'psql' : null;
  return found;
}

/** psql arguments and environment for the settings; the password goes in PGPASSWORD, never in argv. */
export function psqlConnection(s: ConnectionSettings): { args: string[]; env: Record<string, string> } {
  const env: Record<string, string> = { PGAPPNAME: 'invoices-export', PGTZ: 'UTC', PGOPTIONS: '-c TimeZone=UTC' };
  if (s.connectionString) {
    const u = new URL(s.connectionString);
    if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
    u.password = '';
    return { args: ['-d', u.toString()], env };
  }
  if (s.host) env.PGHOST = s.host;
  if (s.port) env.PGPORT = String(s.port);
  if (s.user) env.PGUSER = s.user;
  if (s.password) env.PGPASSWORD = s.password;
  if (s.database) env.PGDATABASE = s.database;
  return { args: [], env };
}

/**
 * Runs `COPY (select) TO STDOUT` (in `format`) in psql within `snapshot`, its stdout being the
 * pipe at `fifo`, opened here and held until psql exits: DuckDB's CSV reader may open a file more
 * than once, and a writer that closed early would leave it waiting. Resolves when psql exits 0.
 */
export async function psqlCopyToFifo(
  conn: { args: string[]; env: Record<string, string> },
  snapshot: string,
  select: string,
  fifo: string,
  format: CopyFormat,
  signal?: AbortSignal,
): Promise<void> {
  if (!/^[0-9A-F-]+$/i.test(snapshot)) throw new Error(`bad snapshot id ${snapshot}`);
  // Opening a pipe for writing waits for its reader (DuckDB): done off the main thread.
  const handle = await open(fifo, 'w');
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(
        'psql',
        [
          ...conn.args,
          '-X',
          '-q',
          '-v',
          'ON_ERROR_STOP=1',
          '-c',
          'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
          '-c',
          `SET TRANSACTION SNAPSHOT '${snapshot}'`,
          '-c',
          `COPY (${select.replace(/\s+/g, ' ')}) TO STDOUT${copyOptions(format)}`,
          '-c',
          'COMMIT',
        ],
        {
          env: { ...process.env, ...conn.env },
          stdio: ['ignore', handle.fd, 'pipe'],
          signal,
        },
      );
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code, sig) =>
        code === 0
          ? resolve()
          : reject(new Error(`psql COPY failed (${sig ?? `exit ${code}`}): ${stderr.trim().split('\n')[0] || 'no message'}`)),
      );
    });
  } finally {
    await handle.close();
  }
}
