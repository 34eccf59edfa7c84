// The one seam for database access in `serve`: every read goes through readPool, anything that
// would write through writePool. Both are the primary for now; pointing readPool at a hot
// standby (issue 13, item 2) changes this file only.
import pg from 'pg';
import type { ConnectionSettings } from '../config.js';
import { types } from '../db/client.js';

export interface PoolOptions {
  /** Connections at most (pg.Pool's max). */
  size: number;
  /** statement_timeout of every connection, and the longest wait for a connection (ms). */
  timeoutMs: number;
  /** An idle connection that fails (the server restarted, a network cut): reported, then dropped by pg.Pool. */
  onError(err: Error): void;
}

export interface Pools {
  /** Where reads go: lookups, summaries, risk scores, readiness, the cache's generation. */
  readPool: pg.Pool;
  /** Where writes would go: the primary. serve writes nothing today. */
  writePool: pg.Pool;
  /** Ends every pool (once each). */
  end(): Promise<void>;
}

/** The pools of one server; values read as src/db/client.ts reads them (exact strings, UTC). */
export function createPools(settings: ConnectionSettings, opts: PoolOptions): Pools {
  const primary = new pg.Pool({
    ...settings,
    types,
    options: '-c TimeZone=UTC',
    application_name: 'invoices serve',
    max: opts.size,
    statement_timeout: opts.timeoutMs,
    connectionTimeoutMillis: opts.timeoutMs,
    idleTimeoutMillis: 30_000,
  });
  primary.on('error', opts.onError);
  const all = [primary];
  return { readPool: primary, writePool: primary, end: async () => void (await Promise.all(all.map((p) => p.end().catch(() => {})))) };
}
