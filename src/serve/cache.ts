// The Redis read-through of `get` (src/cache/read-through.ts) in a long-lived process. Two
// things differ from one `get`: the table's generation is read again at most every
// GENERATION_MAX_AGE_MS (a reload shows within that time, not never), and a cache that failed is
// tried again after a backoff (a Redis restart does not turn the cache off for good).
import type { CacheStamp } from '../cache/keys.js';
import type { ReadThrough } from '../cache/read-through.js';
import type { Client } from '../db/client.js';

/** How old the generation a hit is checked against may be: a TRUNCATE or reseed shows within this. */
export const GENERATION_MAX_AGE_MS = 1000;
const RETRY_MIN_MS = 2000;
const RETRY_MAX_MS = 60_000;

export interface ServeCacheOptions {
  rt: ReadThrough;
  /** Opens (or reopens) the cache; a failure leaves rt inactive (and is reported by its onUnavailable). */
  open(): Promise<void>;
  /** Reads the current stamp on a database connection (src/cache/generation.ts). */
  readStamp(withClient: <T>(fn: (client: Client) => Promise<T>) => Promise<T>): Promise<CacheStamp>;
}

/** The cache as serve uses it: `ready()` before each lookup, then rt.lookup / rt.lookupMany. */
export class ServeCache {
  private stampedAt = 0;
  private refreshing: Promise<void> | undefined;
  private reopening: Promise<void> | undefined;
  private retryAt = 0;
  private backoff = RETRY_MIN_MS;

  constructor(
    private readonly opts: ServeCacheOptions,
    private readonly withClient: <T>(fn: (client: Client) => Promise<T>) => Promise<T>,
  ) {}

  get rt(): ReadThrough {
    return this.opts.rt;
  }

  /** Opens the cache at start; the stamp is bound first, so an active cache always has one. */
  start(): Promise<void> {
    return this.reopen();
  }

  /**
   * Before a lookup: the cache, when active, has a stamp at most GENERATION_MAX_AGE_MS old (one
   * catalog query per second at most, shared by concurrent requests). A failed cache is tried
   * again in the background after a backoff; meanwhile lookups go to PostgreSQL.
   */
  async ready(): Promise<void> {
    if (!this.rt.active) {
      if (!this.reopening && Date.now() >= this.retryAt) void this.reopen();
      return;
    }
    if (Date.now() - this.stampedAt < GENERATION_MAX_AGE_MS) return;
    this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined));
    await this.refreshing;
  }

  private async refresh(): Promise<void> {
    const stamp = await this.opts.readStamp(this.withClient);
    this.rt.bind(stamp);
    this.stampedAt = Date.now();
  }

  private reopen(): Promise<void> {
    this.reopening ??= (async () => {
      try {
        await this.refresh();
        await this.opts.open();
      } catch {
        // The database is down: the lookups will say so; the cache is tried again later.
      }
      if (this.rt.active) this.backoff = RETRY_MIN_MS;
      else {
        this.retryAt = Date.now() + this.backoff;
        this.backoff = Math.min(this.backoff * 2, RETRY_MAX_MS);
      }
    })().finally(() => (this.reopening = undefined));
    return this.reopening;
  }

  /** Closes the Redis connection. */
  close(): Promise<void> {
    return this.rt.close();
  }
}
