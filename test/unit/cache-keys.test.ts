// Pure helpers of the cache: Redis URLs, key names, the cached value, RESP framing, quantiles.
import { describe, expect, it } from 'vitest';
import {
  cacheGeneration,
  cacheScope,
  cacheStamp,
  decodeInvoice,
  encodeInvoice,
  invoiceKey,
  KEY_VERSION,
  parseRedisUrl,
  scopePattern,
  type CacheStamp,
} from '../../src/cache/keys.js';
import { encodeCommand, parseReply, RespConnectionError, RespReplyError } from '../../src/cache/resp.js';
import { quantile, summarize } from '../../src/cache/stats.js';
import type { Target } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import type { InvoiceDetail } from '../../src/lookup/get-invoice.js';
import { DEFAULT_TABLES, parseTableMap } from '../../src/tables.js';
import type { Lineage } from '../../src/table/lineage.js';

const invoice: InvoiceDetail = {
  invoice_id: '9007199254740993', // above 2^53: must stay an exact string
  issue_date: '2025-04-30T23:59:59.123456Z',
  issuer_id: '12',
  issuer_name: 'Smith, Jones and "Partners"',
  receiver_id: '34',
  receiver_name: null,
  amount: '1234.50',
};
const ID = 9007199254740993n;
const stamp: CacheStamp = {
  source: 'public.invoices ["invoice_id","issue_date","issuer_id","receiver_id","amount"]',
  generation: '0123456789abcdef',
};

describe('parseRedisUrl', () => {
  it('reads host, port, database, credentials and TLS', () => {
    expect(parseRedisUrl('redis://localhost:6380')).toMatchObject({
      host: 'localhost',
      port: 6380,
      db: 0,
      tls: false,
      username: undefined,
      password: undefined,
    });
    expect(parseRedisUrl('redis://127.0.0.1')).toMatchObject({ port: 6379, db: 0 });
    expect(parseRedisUrl('redis://h:1/7')).toMatchObject({ db: 7 });
    expect(parseRedisUrl('rediss://app:p%40ss@cache.internal:6390/2')).toMatchObject({
      host: 'cache.internal',
      port: 6390,
      db: 2,
      tls: true,
      username: 'app',
      password: 'p@ss',
    });
    expect(parseRedisUrl('redis://:only-pw@h')).toMatchObject({ username: undefined, password: 'only-pw' });
    expect(parseRedisUrl('redis://[::1]:6379')).toMatchObject({ host: '::1' });
  });

  it('never shows the password', () => {
    const e = parseRedisUrl('redis://app:s3cret@h:1/0');
    expect(e.display).toBe('redis://app:***@h:1/0');
    expect(() => parseRedisUrl('http://app:s3cret@h', '--cache')).toThrow(ConfigError);
    try {
      parseRedisUrl('http://app:s3cret@h', '--cache');
    } catch (err) {
      expect((err as Error).message).toContain('--cache must be a redis:// or rediss:// URL');
      expect((err as Error).message).not.toContain('s3cret');
    }
  });

  it.each(['', 'localhost:6379', 'postgres://h/db', 'redis://h/abc', 'redis://h/1/2', 'redis://'])(
    'rejects %j with a ConfigError',
    (url) => {
      expect(() => parseRedisUrl(url, 'REDIS_URL')).toThrow(ConfigError);
    },
  );
});

describe('cache keys', () => {
  const server = (url: string): Target => ({ kind: 'server', source: 'DATABASE_URL', connection: { connectionString: url } });

  it('are versioned and namespaced by database and TTL', () => {
    expect(KEY_VERSION).toBe('v2'); // v2: the value carries its source and generation
    expect(invoiceKey('abc123', 60, 42n)).toBe('invoices:v2:db:abc123:ttl:60:invoice:42');
    expect(invoiceKey('abc123', 60, 9223372036854775807n)).toBe('invoices:v2:db:abc123:ttl:60:invoice:9223372036854775807');
    expect(scopePattern('abc123')).toBe('invoices:v2:db:abc123:*');
  });

  it('the scope is stable, differs per database and ignores the password', () => {
    const a = cacheScope(server('postgres://app:one@db:5432/billing'));
    expect(a).toMatch(/^[0-9a-f]{12}$/);
    expect(cacheScope(server('postgres://app:one@db:5432/billing'))).toBe(a);
    expect(cacheScope(server('postgres://app:two@db:5432/billing'))).toBe(a);
    expect(cacheScope(server('postgres://app:one@db:5432/staging'))).not.toBe(a);
    expect(cacheScope(server('postgres://app:one@other:5432/billing'))).not.toBe(a);
    const embedded = cacheScope({ kind: 'embedded', source: 'embedded', home: '/srv/.invoices' });
    expect(embedded).not.toBe(cacheScope({ kind: 'embedded', source: 'embedded', home: '/home/me/.invoices' }));
    const libpq = cacheScope({
      kind: 'server',
      source: 'PG* variables',
      connection: { host: 'db', port: 5432, user: 'app', password: 'x', database: 'billing' },
    });
    expect(libpq).toBe(
      cacheScope({
        kind: 'server',
        source: 'PG* variables',
        connection: { host: 'db', port: 5432, user: 'app', password: 'y', database: 'billing' },
      }),
    );
  });
});

describe('the cached value', () => {
  it('is the stamp, then the InvoiceDetail, every value an exact string', () => {
    const text = encodeInvoice(invoice, stamp);
    expect(text).toBe(
      '{"source":"public.invoices [\\"invoice_id\\",\\"issue_date\\",\\"issuer_id\\",\\"receiver_id\\",\\"amount\\"]","generation":"0123456789abcdef",' +
        '"invoice_id":"9007199254740993","issue_date":"2025-04-30T23:59:59.123456Z","issuer_id":"12",' +
        '"issuer_name":"Smith, Jones and \\"Partners\\"","receiver_id":"34","receiver_name":null,"amount":"1234.50"}',
    );
    expect(decodeInvoice(text, ID, stamp)).toEqual({ invoice });
  });

  it('keeps the field order whatever order the object has', () => {
    const shuffled = {
      amount: '1.00',
      receiver_name: 'b',
      receiver_id: '2',
      issuer_name: 'a',
      issuer_id: '1',
      issue_date: 'd',
      invoice_id: '5',
    };
    expect(Object.keys(JSON.parse(encodeInvoice(shuffled, { generation: 'g', source: 's' })))).toEqual([
      'source',
      'generation',
      'invoice_id',
      'issue_date',
      'issuer_id',
      'issuer_name',
      'receiver_id',
      'receiver_name',
      'amount',
    ]);
  });

  it('answers only for its own key: another invoice id, source or generation is stale', () => {
    const text = encodeInvoice(invoice, stamp);
    expect(decodeInvoice(text, ID - 1n, stamp)).toEqual({ stale: 'another invoice' });
    expect(decodeInvoice(encodeInvoice({ ...invoice, invoice_id: '43' }, stamp), 42n, stamp)).toEqual({ stale: 'another invoice' });
    expect(decodeInvoice(encodeInvoice({ ...invoice, invoice_id: '042' }, stamp), 42n, stamp)).toEqual({ stale: 'another invoice' });
    expect(decodeInvoice(text, ID, { ...stamp, source: 'erp.bills ["id","issued","seller","buyer","total"]' })).toEqual({
      stale: 'another source',
    });
    expect(decodeInvoice(text, ID, { ...stamp, generation: 'fedcba9876543210' })).toEqual({ stale: 'another generation' });
  });

  const stamped = (extra: Record<string, unknown>) => JSON.stringify({ ...stamp, ...invoice, ...extra });
  it.each([
    ['not JSON', '{'],
    ['an array', '[]'],
    ['null', 'null'],
    ['a number amount', stamped({ amount: 1234.5 })],
    ['a missing field', stamped({ amount: undefined })],
    ['an extra field', stamped({ extra: 'x' })],
    ['a null id', stamped({ invoice_id: null })],
    ['a missing generation', stamped({ generation: undefined })],
    ['a number generation', stamped({ generation: 7 })],
    ['the v1 value (the invoice alone, no source or generation)', JSON.stringify(invoice)],
  ])('anything else (%s) reads as a miss', (_what, text) => {
    expect(decodeInvoice(text, ID, stamp)).toEqual({ stale: 'unreadable' });
  });
});

describe('the generation', () => {
  const lineage: Lineage = {
    system: '7412345678901234567',
    database: '16384',
    table: '16390',
    leaves: { invoices_2025_01: '16400/812', invoices_2025_02: '16410/813' },
  };

  it('is 16 hex digits, stable, and ignores the order the leaves were listed in', () => {
    const g = cacheGeneration(lineage);
    expect(g).toMatch(/^[0-9a-f]{16}$/);
    expect(cacheGeneration({ ...lineage, leaves: { invoices_2025_02: '16410/813', invoices_2025_01: '16400/812' } })).toBe(g);
  });

  it('changes with the cluster, the database, the table, and any leaf truncated, attached or detached', () => {
    const g = cacheGeneration(lineage);
    const others = [
      { ...lineage, system: '7412345678901234568' }, // restored into another cluster
      { ...lineage, database: '16385' }, // database dropped and created again
      { ...lineage, table: '16391' }, // table dropped and created again, converted
      { ...lineage, leaves: { ...lineage.leaves, invoices_2025_01: '16420/812' } }, // TRUNCATE of one partition
      { ...lineage, leaves: { ...lineage.leaves, invoices_2025_02: '16410/900' } }, // detached and attached again
      { ...lineage, leaves: { invoices_2025_01: '16400/812' } }, // a partition dropped or detached
      { ...lineage, table: null as unknown as string, leaves: {} }, // no table at all
    ];
    const generations = others.map(cacheGeneration);
    expect(new Set([g, ...generations]).size).toBe(others.length + 1);
  });

  it('the stamp names the source as src/table names it: the table and its column mapping', () => {
    expect(cacheStamp(DEFAULT_TABLES, lineage)).toEqual({
      source: 'public.invoices ["invoice_id","issue_date","issuer_id","receiver_id","amount"]',
      generation: cacheGeneration(lineage),
    });
    const adopted = parseTableMap({ invoices: { table: 'erp.bills', columns: { invoice_id: 'id', amount: 'total' } } }, 'f.json');
    expect(cacheStamp(adopted, lineage).source).toBe('erp.bills ["id","issue_date","issuer_id","receiver_id","total"]');
  });
});

describe('RESP framing', () => {
  it('encodes commands as arrays of bulk strings (UTF-8 lengths in bytes)', () => {
    expect(encodeCommand(['GET', 'k']).toString()).toBe('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n');
    expect(encodeCommand(['SET', 'k', 'é']).toString()).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n');
  });

  it('parses every RESP2 reply type', () => {
    const p = (s: string) => parseReply(Buffer.from(s));
    expect(p('+OK\r\n')).toEqual({ value: 'OK', end: 5 });
    expect(p(':42\r\n')?.value).toBe(42);
    expect(p('$-1\r\n')?.value).toBeNull();
    expect(p('$2\r\né\r\n')?.value).toBe('é');
    expect(p('$0\r\n\r\n')?.value).toBe('');
    expect(p('*2\r\n$1\r\n0\r\n*1\r\n$3\r\nabc\r\n')?.value).toEqual(['0', ['abc']]);
    expect(p('*-1\r\n')?.value).toBeNull();
    const err = p('-WRONGPASS invalid username-password pair\r\n')?.value;
    expect(err).toBeInstanceOf(RespReplyError);
    expect((err as RespReplyError).code).toBe('WRONGPASS');
  });

  it('waits for the rest of a reply split anywhere, and finds the next one after it', () => {
    const full = Buffer.from('$12\r\nhello\r\nworld\r\n+OK\r\n');
    for (let cut = 0; cut < 19; cut++) expect(parseReply(full.subarray(0, cut))).toBeUndefined();
    const first = parseReply(full);
    expect(first).toEqual({ value: 'hello\r\nworld', end: 19 });
    expect(parseReply(full, first!.end)).toEqual({ value: 'OK', end: 24 });
  });

  it('rejects what is not RESP', () => {
    expect(() => parseReply(Buffer.from('HTTP/1.1 400 Bad Request\r\n'))).toThrow(RespConnectionError);
  });
});

describe('quantile', () => {
  it('uses the nearest rank', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    expect(quantile(xs, 0.5)).toBe(50);
    expect(quantile(xs, 0.99)).toBe(99);
    expect(quantile(xs, 1)).toBe(100);
    expect(quantile([7], 0.99)).toBe(7);
    expect(quantile([], 0.5)).toBeNaN();
    expect(summarize([3, 1, 2])).toEqual({ count: 3, p50: 2, p99: 3 });
  });
});
