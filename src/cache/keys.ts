// Pure helpers of the invoice cache: Redis URLs, key names, the cached value's encoding.
// No I/O here, so `invoices get` can validate its options without loading the client.
import { createHash } from 'node:crypto';
import { DEFAULT_TABLES, type TableMap } from '../tables.js';
import { describeSettings, maskUrl, type Target } from '../config.js';
import { ConfigError } from '../errors.js';
import type { InvoiceDetail } from '../lookup/get-invoice.js';

/** Bumped whenever the cached value's shape changes: old entries are then never read. */
export const KEY_VERSION = 'v1';
export const KEY_PREFIX = `invoices:${KEY_VERSION}`;

/** Longest accepted --cache-ttl: 2^31 - 1 seconds (68 years), well inside Redis's limit. */
export const MAX_TTL_SECONDS = 2_147_483_647;

/** Where a Redis server is, parsed from `redis://[user[:password]@]host[:port][/db]` (`rediss://` for TLS). */
export interface RedisEndpoint {
  host: string;
  port: number;
  tls: boolean;
  username?: string;
  password?: string;
  db: number;
  /** The URL with its password replaced by ***, for messages. */
  display: string;
}

/** Parses a Redis URL; ConfigError (exit 2) when it is not one. `source` names the flag or variable. */
export function parseRedisUrl(url: string, source = 'the cache URL'): RedisEndpoint {
  const display = maskUrl(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${source} is not a valid URL: "${display}" (expected redis://host:port)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(`${source} must be a redis:// or rediss:// URL, got "${display}"`);
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw new ConfigError(`${source} has no host: "${display}"`);
  const port = u.port ? Number(u.port) : 6379;
  const dbText = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) {
    throw new ConfigError(`${source}: the path must be a database number (redis://host:port/2), got "${display}"`);
  }
  return {
    host,
    port,
    tls: u.protocol === 'rediss:',
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: dbText === '' ? 0 : Number(dbText),
    display,
  };
}

/**
 * A short, stable name for the PostgreSQL database the invoices come from, so two databases
 * sharing one Redis never see each other's entries. Derived from the configured target
 * (never from a query: a hit must not touch PostgreSQL) and never from a password.
 */
export function cacheScope(target: Target, tables: TableMap = DEFAULT_TABLES): string {
  const database = target.kind === 'server' ? describeSettings(target.connection) : `embedded:${target.home}`;
  // A mapped table is another source of invoices in the same database: another scope.
  const identity = tables.mapped ? `${database}|${JSON.stringify([tables.invoices, tables.customers])}` : database;
  return createHash('sha256').update(identity).digest('hex').slice(0, 12);
}

/**
 * The key of one invoice: versioned, namespaced by database, and by the TTL it was written
 * with, so a reader only ever sees entries at most its own --cache-ttl old.
 */
export function invoiceKey(scope: string, ttlSeconds: number, id: bigint): string {
  return `${KEY_PREFIX}:db:${scope}:ttl:${ttlSeconds}:invoice:${id}`;
}

/** A SCAN pattern matching every key of one database scope (for cleanup). */
export function scopePattern(scope: string): string {
  return `${KEY_PREFIX}:db:${scope}:*`;
}

const FIELDS = ['invoice_id', 'issue_date', 'issuer_id', 'issuer_name', 'receiver_id', 'receiver_name', 'amount'] as const;
const NULLABLE = new Set<string>(['issuer_name', 'receiver_name']);

/** The cached value: the InvoiceDetail as JSON, ids and amount as the exact strings PostgreSQL gave. */
export function encodeInvoice(invoice: InvoiceDetail): string {
  const out: Record<string, string | null> = {};
  for (const f of FIELDS) out[f] = invoice[f];
  return JSON.stringify(out);
}

/** Reads a cached value back; undefined for anything that is not a well-formed InvoiceDetail (treated as a miss). */
export function decodeInvoice(text: string): InvoiceDetail | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const record = value as Record<string, unknown>;
  if (Object.keys(record).length !== FIELDS.length) return undefined;
  const out: Record<string, string | null> = {};
  for (const f of FIELDS) {
    const v = record[f];
    if (typeof v === 'string' || (v === null && NULLABLE.has(f))) out[f] = v;
    else return undefined;
  }
  return out as unknown as InvoiceDetail;
}
