// A bounded queue in front of the pool: a request waits for a connection only while fewer than
// maxQueue others are waiting; past that it is shed at once with 503 + Retry-After, so a slow
// database makes clients back off instead of piling up requests (and memory) without limit.
import type pg from 'pg';
import type { Client } from '../db/client.js';
import { httpError, isBrokenConnection, toHttpError } from './errors.js';

export interface GateStats {
  /** Requests shed because the queue was full. */
  shed: number;
}

/** Runs database work on a pooled connection, or sheds it. */
export class PoolGate {
  readonly stats: GateStats = { shed: 0 };

  constructor(
    readonly pool: pg.Pool,
    private readonly maxQueue: number,
  ) {}

  /** fn on a connection of the pool; the connection is dropped when it broke, else returned. */
  async run<T>(fn: (client: Client) => Promise<T>): Promise<T> {
    if (this.pool.waitingCount >= this.maxQueue) {
      this.stats.shed++;
      throw httpError('overloaded', `too many requests waiting for the database (${this.pool.waitingCount}); retry later`, 1);
    }
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      // Whatever stops a connection from opening (refused, no such database, bad password) is the database being unavailable.
      const e = toHttpError(err);
      throw e.code === 'internal' ? httpError('database_unavailable', 'the database is unavailable', 5) : e;
    }
    let broken = false;
    try {
      // A pooled client is a pg.Client; the lookups' per-connection plans live as long as it does.
      return await fn(client as unknown as Client);
    } catch (err) {
      broken = isBrokenConnection(err);
      throw err;
    } finally {
      client.release(broken);
    }
  }
}
