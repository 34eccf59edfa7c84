// Pure helpers of the invoice cache: Redis URLs, key names, the cached value's encoding.
// No I/O here, so `invoices get` can validate its options without loading the client.
import { createHash } from 'node:crypto';
import { DEFAULT_TABLES, type TableMap } from '../tables.js';
import { describeSettings, maskUrl, type Target } from '../config.js';
import { ConfigError } from '../errors.js';
import type { InvoiceDetail } from '../lookup/get-invoice.js';
import { sourceKey } from '../table/describe.js';
import type { Lineage } from '../table/lineage.js';

/**
 * Bumped whenever the cached value's shape changes: old entries are then never read.
 * v2: the value carries the source and the generation it was read from (v1: the invoice alone).
 */
export const KEY_VERSION = 'v2';
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
 * (never from a query: the key is known before PostgreSQL answers, so the entry is read while
 * the generation is) and never from a password.
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

/**
 * What an entry must have been read from to answer now: the source (the invoices table and its
 * column mapping, as src/table/describe.ts names it) and the generation of that table's contents.
 */
export interface CacheStamp {
  source: string;
  generation: string;
}

/**
 * The generation of a table's contents: the first 16 hex digits of a SHA-256 of its lineage
 * (cluster, database, table oid, each leaf's relfilenode and attachment; src/table/lineage.ts).
 * TRUNCATE (so `seed --truncate`), `partition --convert`, a partition created, dropped,
 * detached or attached, a restore from a dump all change it; an UPDATE or DELETE does not (the
 * TTL bounds those). The customers table is not in it: a name changes as an UPDATE does.
 */
export function cacheGeneration(lineage: Lineage): string {
  const leaves = Object.entries(lineage.leaves ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256')
    .update(JSON.stringify([lineage.system, lineage.database, lineage.table, leaves]))
    .digest('hex')
    .slice(0, 16);
}

/** The stamp of entries read now from this mapping's invoices table. */
export function cacheStamp(tables: TableMap, lineage: Lineage): CacheStamp {
  return { source: sourceKey(tables), generation: cacheGeneration(lineage) };
}

const STAMP = ['source', 'generation'] as const;
const FIELDS = ['invoice_id', 'issue_date', 'issuer_id', 'issuer_name', 'receiver_id', 'receiver_name', 'amount'] as const;
const NULLABLE = new Set<string>(['issuer_name', 'receiver_name']);

/**
 * The cached value: the stamp, then the InvoiceDetail, as one flat JSON object; ids and amount
 * as the exact strings PostgreSQL gave.
 */
export function encodeInvoice(invoice: InvoiceDetail, stamp: CacheStamp): string {
  const out: Record<string, string | null> = { source: stamp.source, generation: stamp.generation };
  for (const f of FIELDS) out[f] = invoice[f];
  return JSON.stringify(out);
}

/** Why a cached value was not an answer: then it is a miss, and the entry is written again. */
export type StaleReason = 'unreadable' | 'another invoice' | 'another source' | 'another generation';

/** What a cached value says about invoice `id` read from `stamp`'s source and generation. */
export type Decoded = { invoice: InvoiceDetail } | { stale: StaleReason };

/**
 * Reads a cached value back. It answers only for its own key: anything that is not a
 * well-formed entry, or one whose invoice id, source or generation is not the one asked for,
 * is stale (a miss).
 */
export function decodeInvoice(text: string, id: bigint, stamp: CacheStamp): Decoded {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { stale: 'unreadable' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { stale: 'unreadable' };
  const record = value as Record<string, unknown>;
  if (Object.keys(record).length !== STAMP.length + FIELDS.length) return { stale: 'unreadable' };
  for (const f of STAMP) if (typeof record[f] !== 'string') return { stale: 'unreadable' };
  const out: Record<string, string | null> = {};
  for (const f of FIELDS) {
    const v = record[f];
    if (typeof v === 'string' || (v === null && NULLABLE.has(f))) out[f] = v;
    else return { stale: 'unreadable' };
  }
  if (out.invoice_id !== id.toString()) return { stale: 'another invoice' };
  if (record.source !== stamp.source) return { stale: 'another source' };
  if (record.generation !== stamp.generation) return { stale: 'another generation' };
  return { invoice: out as unknown as InvoiceDetail };
}
