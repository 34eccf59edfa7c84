// The invoice cache on Redis: one connection, values are the InvoiceDetail JSON with the source
// and generation it was read from, under versioned, per-database keys that expire after the TTL
// they were written with.
import { CacheError, UsageError } from '../errors.js';
import type { InvoiceDetail } from '../lookup/get-invoice.js';
import {
  decodeInvoice,
  encodeInvoice,
  invoiceKey,
  type CacheStamp,
  type Decoded,
  MAX_TTL_SECONDS,
  parseRedisUrl,
  scopePattern,
  type RedisEndpoint,
} from './keys.js';
import type { InvoiceCache } from './read-through.js';
import { RespConnection, RespConnectionError, RespReplyError, type RespValue } from './resp.js';

export interface RedisCacheOptions {
  /** `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS. */
  url: string;
  /** Names the URL's origin in messages (`--cache`, `REDIS_URL`). */
  source?: string;
  /** Lifetime of the entries this cache writes, and the only entries it reads: > 0. */
  ttlSeconds: number;
  /** Which PostgreSQL database the entries belong to (see cacheScope). */
  scope: string;
  /** Limit for connecting and for each reply; default 1000 ms, so a dead cache costs little. */
  timeoutMs?: number;
}

export const DEFAULT_TIMEOUT_MS = 1000;

/** A read-through cache of invoices in Redis. Every failure is a CacheError; a bad URL is a ConfigError. */
export class RedisInvoiceCache implements InvoiceCache {
  private constructor(
    private readonly conn: RespConnection,
    readonly endpoint: RedisEndpoint,
    readonly ttlSeconds: number,
    readonly scope: string,
  ) {}

  /** Connects (AUTH and SELECT from the URL) and checks the server answers. */
  static async open(opts: RedisCacheOptions): Promise<RedisInvoiceCache> {
    const endpoint = parseRedisUrl(opts.url, opts.source);
    if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds <= 0 || opts.ttlSeconds > MAX_TTL_SECONDS) {
      throw new UsageError(`cache TTL must be an integer from 1 to ${MAX_TTL_SECONDS} seconds, got ${opts.ttlSeconds}`);
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let conn: RespConnection;
    try {
      conn = await RespConnection.connect({ host: endpoint.host, port: endpoint.port, tls: endpoint.tls, timeoutMs });
    } catch (err) {
      throw cacheError(err, endpoint, timeoutMs);
    }
    const cache = new RedisInvoiceCache(conn, endpoint, opts.ttlSeconds, opts.scope);
    try {
      // Pipelined: one round trip for the handshake.
      const steps: Promise<RespValue>[] = [];
      if (endpoint.password !== undefined) {
        steps.push(conn.command(endpoint.username ? ['AUTH', endpoint.username, endpoint.password] : ['AUTH', endpoint.password]));
      }
      steps.push(conn.command(endpoint.db ? ['SELECT', String(endpoint.db)] : ['PING']));
      await Promise.all(steps);
    } catch (err) {
      await conn.close();
      throw cacheError(err, endpoint, timeoutMs);
    }
    return cache;
  }

  /** The Redis key of one invoice for this database and TTL. */
  key(id: bigint): string {
    return invoiceKey(this.scope, this.ttlSeconds, id);
  }

  /**
   * The entry of invoice `id`: undefined when there is none; stale when it is unreadable or was
   * not read from invoice `id` of `stamp`'s source and generation.
   */
  async get(id: bigint, stamp: CacheStamp): Promise<Decoded | undefined> {
    const value = await this.run(['GET', this.key(id)]);
    return typeof value === 'string' ? decodeInvoice(value, id, stamp) : undefined;
  }

  /** The entries of many invoices in one round trip (MGET), in the order of `ids`. */
  async getMany(ids: readonly bigint[], stamp: CacheStamp): Promise<Array<Decoded | undefined>> {
    if (!ids.length) return [];
    const values = await this.run(['MGET', ...ids.map((id) => this.key(id))]);
    if (!Array.isArray(values) || values.length !== ids.length)
      throw new CacheError(`the cache at ${this.endpoint.display} gave an unexpected MGET reply`);
    return values.map((v, i) => (typeof v === 'string' ? decodeInvoice(v, ids[i], stamp) : undefined));
  }

  /** Stores many invoices, pipelined: the replies are awaited together. */
  async setMany(entries: ReadonlyArray<[bigint, InvoiceDetail]>, stamp: CacheStamp): Promise<void> {
    const ttl = String(this.ttlSeconds);
    await Promise.all(entries.map(([id, invoice]) => this.run(['SET', this.key(id), encodeInvoice(invoice, stamp), 'EX', ttl])));
  }

  /** Stores an invoice, read from `stamp`'s source and generation, for ttlSeconds (replacing any entry). */
  async set(id: bigint, invoice: InvoiceDetail, stamp: CacheStamp): Promise<void> {
    await this.run(['SET', this.key(id), encodeInvoice(invoice, stamp), 'EX', String(this.ttlSeconds)]);
  }

  /** Removes one invoice's entry (for this TTL). */
  async delete(id: bigint): Promise<void> {
    await this.run(['DEL', this.key(id)]);
  }

  /** Removes every entry of this database scope, whatever its TTL; returns how many. */
  async clear(): Promise<number> {
    let cursor = '0';
    let removed = 0;
    do {
      const reply = await this.run(['SCAN', cursor, 'MATCH', scopePattern(this.scope), 'COUNT', '1000']);
      if (!Array.isArray(reply) || typeof reply[0] !== 'string' || !Array.isArray(reply[1])) {
        throw new CacheError(`the cache at ${this.endpoint.display} gave an unexpected SCAN reply`);
      }
      cursor = reply[0];
      const keys = reply[1].filter((k): k is string => typeof k === 'string');
      if (keys.length) removed += Number(await this.run(['DEL', ...keys]));
    } while (cursor !== '0');
    return removed;
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await this.conn.close();
  }

  private async run(args: string[]): Promise<RespValue> {
    try {
      return await this.conn.command(args);
    } catch (err) {
      throw cacheError(err, this.endpoint, undefined);
    }
  }
}

/** One line that says what went wrong with the cache, never with its password. */
function cacheError(err: unknown, endpoint: RedisEndpoint, timeoutMs: number | undefined): CacheError {
  const at = `the cache at ${endpoint.display}`;
  if (err instanceof CacheError) return err;
  if (err instanceof RespReplyError) {
    switch (err.code) {
      case 'WRONGPASS':
        return new CacheError(`${at} refused the user name or password in the URL`, { cause: err });
      case 'NOAUTH':
        return new CacheError(`${at} requires a password: redis://:PASSWORD@host:port`, { cause: err });
      default:
        return new CacheError(`${at} answered with an error: ${err.message}`, { cause: err });
    }
  }
  if (err instanceof RespConnectionError) {
    switch (err.code) {
      case 'ECONNREFUSED':
        return new CacheError(`cannot connect to ${at}: no server is listening there`, { cause: err });
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return new CacheError(`cannot connect to ${at}: unknown host`, { cause: err });
      case 'ETIMEDOUT':
        return new CacheError(`${at} did not answer${timeoutMs ? ` within ${timeoutMs} ms` : ' in time'}`, { cause: err });
      case 'ECONNRESET':
      case 'EPIPE':
        return new CacheError(`${at} closed the connection`, { cause: err });
      default:
        return new CacheError(`${at} ${err.code === 'EPROTO' ? '' : 'failed: '}${err.message}`, { cause: err });
    }
  }
  return new CacheError(`${at}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
