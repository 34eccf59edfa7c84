// The one seam for database access in `serve`: every read goes through readPool (a hot standby
// when one was chosen at the start, src/db/replica.ts readServer; else the primary), anything
// that would write, and the lookups a standby misses, through writePool (the primary).
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
  /** The primary: what a standby misses (not replayed yet), and writes (serve writes nothing today). */
  writePool: pg.Pool;
  /** readPool is on a standby. */
  onReplica: boolean;
  /** Ends every pool (once each). */
  end(): Promise<void>;
}

/** The pools of one server (and its standby when `replica` is given); values read as src/db/client.ts reads them (exact strings, UTC). */
export function createPools(settings: ConnectionSettings, replica: ConnectionSettings | undefined, opts: PoolOptions): Pools {
  const pool = (s: ConnectionSettings) =>
    new pg.Pool({
      ...s,
      types,
      options: '-c TimeZone=UTC',
      application_name: 'invoices serve',
      max: opts.size,
      statement_timeout: opts.timeoutMs,
      connectionTimeoutMillis: opts.timeoutMs,
      idleTimeoutMillis: 30_000,
    });
  const primary = pool(settings);
  const standby = replica ? pool(replica) : undefined;
  const all = standby ? [standby, primary] : [primary];
  for (const p of all) p.on('error', opts.onError);
  return {
    readPool: standby ?? primary,
    writePool: primary,
    onReplica: standby !== undefined,
    end: async () => void (await Promise.all(all.map((p) => p.end().catch(() => {})))),
  };
}
