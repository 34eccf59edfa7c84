// The Redis read-through cache of `invoices get`, on a real Redis (REDIS_URL; `.ci/run` sets
// it when 127.0.0.1:6379 answers) and the run's real PostgreSQL. Without REDIS_URL the tests
// that need Redis are skipped. Keys are namespaced by each test database (a unique name per
// file), and removed in afterAll. An entry answers only for its own key: invoice id, source
// (table and mapping) and generation (the table's lineage) must all be the current ones.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCacheStamp } from '../../../src/cache/generation.js';
import { cacheScope, invoiceKey, parseRedisUrl, scopePattern, type CacheStamp } from '../../../src/cache/keys.js';
import { RedisInvoiceCache } from '../../../src/cache/redis-cache.js';
import { RespConnection, type RespValue } from '../../../src/cache/resp.js';
import type { Target } from '../../../src/config.js';
import { CacheError } from '../../../src/errors.js';
import type { InvoiceDetail } from '../../../src/lookup/get-invoice.js';
import { DEFAULT_TABLES } from '../../../src/tables.js';
import { createDatabase, runCli, seedWithCli, withPg, type TestDatabase } from '../../support/helpers.js';

const REDIS_URL = process.env.REDIS_URL;
const noRedis = !REDIS_URL;
const NEEDS = '[needs Redis: REDIS_URL]';
const DEAD_REDIS = 'redis://127.0.0.1:1';

const target = (url: string): Target => ({ kind: 'server', source: 'DATABASE_URL', connection: { connectionString: url } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Raw commands on the test Redis, to look at keys the CLI wrote. */
async function redis(...args: string[]): Promise<RespValue> {
  const e = parseRedisUrl(REDIS_URL!);
  const conn = await RespConnection.connect({ host: e.host, port: e.port, tls: e.tls, timeoutMs: 2000 });
  try {
    if (e.password !== undefined) await conn.command(e.username ? ['AUTH', e.username, e.password] : ['AUTH', e.password]);
    await conn.command(['SELECT', String(e.db)]);
    return await conn.command(args);
  } finally {
    await conn.close();
  }
}

let db: TestDatabase;
let scope: string;
const scopes: string[] = [];

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '20', '--invoices', '200', '--seed', '5', '--as-of', '2025-06-01', '--months', '3']);
  await withPg(db.url, (c) =>
    c.query(`UPDATE invoices SET amount = 1234.50, issue_date = '2025-04-30T23:59:59.123456Z' WHERE invoice_id = 7`),
  );
  scope = cacheScope(target(db.url));
  scopes.push(scope);
});

afterAll(async () => {
  if (REDIS_URL) {
    for (const s of scopes) {
      const cache = await RedisInvoiceCache.open({ url: REDIS_URL, ttlSeconds: 1, scope: s }).catch(() => undefined);
      await cache?.clear();
      await cache?.close();
    }
  }
  await db?.drop();
});

const get = (args: string[], env: Record<string, string> = {}, url = db.url) =>
  runCli(['get', ...args], { env: { DATABASE_URL: url, ...(REDIS_URL ? { REDIS_URL } : {}), ...env } });

/** The stamp entries read from `url`'s invoices table now must carry. */
const stampOf = (url = db.url) => withPg(url, (c) => readCacheStamp(c, DEFAULT_TABLES));

/** The statements a `get --debug` ran, by their first line. */
const statements = (stderr: string) => stderr.split('\n').filter((l) => /^debug: [\d.]+ ms {2}/.test(l));
const LINEAGE = /pg_control_system\(\)/; // the one catalog query that reads the generation

/** The invoice as PostgreSQL has it, through the CLI without the cache. */
const fromPostgres = async (id: string, url = db.url) => {
  const r = await runCli(['get', id, '--no-cache'], { env: { DATABASE_URL: url } });
  expect(r.code).toBe(0);
  return r.stdout;
};

describe('invoices get --cache', () => {
  it.skipIf(noRedis)(
    `a miss fills the cache, then a hit gives identical output reading only the table's generation from PostgreSQL ${NEEDS}`,
    async () => {
      const miss = await get(['7', '--debug']);
      expect(miss.code).toBe(0);
      expect(miss.stderr).toContain('debug: cache: miss');
      expect(statements(miss.stderr).length).toBeGreaterThan(1); // the generation, then the lookup
      const hit = await get(['7', '--debug']);
      expect(hit.code).toBe(0);
      expect(hit.stderr).toContain('debug: cache: hit');
      const hitStatements = statements(hit.stderr);
      expect(hitStatements).toHaveLength(1); // the generation: one catalog query, no lookup
      expect(hitStatements[0]).toMatch(LINEAGE);
      expect(hit.stdout).toBe(miss.stdout);
      expect(hit.stdout).toBe(await fromPostgres('7'));
      expect(JSON.parse(hit.stdout)).toMatchObject({ invoice_id: 7, amount: '1234.50', issue_date: '2025-04-30T23:59:59.123456Z' });
      for (const format of ['csv', 'table']) {
        const cached = await get(['7', '--format', format]);
        const direct = await get(['7', '--format', format, '--no-cache']);
        expect(cached.stdout).toBe(direct.stdout);
      }
    },
  );

  it.skipIf(noRedis)(
    `the entry is its source and generation, then the exact InvoiceDetail JSON (ids and amount as strings), under a versioned key, with the TTL ${NEEDS}`,
    async () => {
      await get(['7']);
      const key = invoiceKey(scope, 60, 7n);
      expect(key).toBe(`invoices:v2:db:${scope}:ttl:60:invoice:7`);
      const stamp = await stampOf();
      expect(stamp.source).toBe('public.invoices ["invoice_id","issue_date","issuer_id","receiver_id","amount"]');
      expect(stamp.generation).toMatch(/^[0-9a-f]{16}$/);
      const raw = await redis('GET', key);
      const row = await withPg(db.url, async (c) => {
        const { rows } = await c.query(
          `SELECT i.invoice_id::text, i.issuer_id::text, ci.name AS issuer_name, i.receiver_id::text, cr.name AS receiver_name, i.amount::text
           FROM invoices i JOIN customers ci ON ci.id = i.issuer_id JOIN customers cr ON cr.id = i.receiver_id WHERE invoice_id = 7`,
        );
        return rows[0];
      });
      expect(raw).toBe(
        JSON.stringify({
          source: stamp.source,
          generation: stamp.generation,
          invoice_id: '7',
          issue_date: '2025-04-30T23:59:59.123456Z',
          issuer_id: row.issuer_id,
          issuer_name: row.issuer_name,
          receiver_id: row.receiver_id,
          receiver_name: row.receiver_name,
          amount: '1234.50',
        }),
      );
      const pttl = Number(await redis('PTTL', key));
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(60_000);
    },
  );

  it.skipIf(noRedis)(
    `a cached copy is not served once its PostgreSQL database is gone: the generation cannot be read ${NEEDS}`,
    async () => {
      const gone = await createDatabase();
      const goneScope = cacheScope(target(gone.url));
      scopes.push(goneScope);
      try {
        await seedWithCli(gone.url, ['--customers', '10', '--invoices', '50', '--seed', '9', '--as-of', '2025-06-01', '--months', '2']);
        const miss = await get(['5'], {}, gone.url);
        expect(miss.code).toBe(0);
        expect(goneScope).not.toBe(scope); // two databases, two namespaces: invoice 5 of one is never served for the other
        expect((await get(['5'], {}, db.url)).stdout).toBe(await fromPostgres('5'));
      } finally {
        await gone.drop();
      }
      expect(await redis('EXISTS', invoiceKey(goneScope, 60, 5n))).toBe(1); // still cached...
      const hit = await get(['5'], {}, gone.url);
      // ...but not an answer: exit 1 with the database's error, as without the cache.
      const direct = await get(['5', '--no-cache'], {}, gone.url);
      expect(direct.code).toBe(1);
      expect(direct.stderr).toContain('does not exist');
      expect(hit.code).toBe(1);
      expect(hit.stdout).toBe('');
      expect(hit.stderr).toBe(direct.stderr);
    },
  );

  it.skipIf(noRedis)(`an update or delete in PostgreSQL shows once the entry's --cache-ttl has passed, never later ${NEEDS}`, async () => {
    const before8 = JSON.parse(await fromPostgres('8'));
    expect((await get(['8', '--cache-ttl', '1'])).code).toBe(0);
    expect((await get(['9', '--cache-ttl', '1'])).code).toBe(0);
    expect((await get(['8', '--cache-ttl', '30'])).code).toBe(0);
    const generation = (await stampOf()).generation;
    await withPg(db.url, async (c) => {
      await c.query(`UPDATE invoices SET amount = 777.70 WHERE invoice_id = 8`);
      await c.query(`DELETE FROM invoices WHERE invoice_id = 9`);
    });
    // An UPDATE or DELETE is not a new generation (only reloads are): the TTL is the bound.
    expect((await stampOf()).generation).toBe(generation);
    // Within its TTL an entry may be stale: that is the documented trade-off.
    const stale = await get(['8', '--cache-ttl', '30']);
    expect(JSON.parse(stale.stdout).amount).toBe(before8.amount);
    await sleep(1500);
    expect(await redis('EXISTS', invoiceKey(scope, 1, 8n))).toBe(0);
    const fresh = await get(['8', '--cache-ttl', '1', '--debug']);
    expect(fresh.stderr).toContain('cache: miss');
    expect(JSON.parse(fresh.stdout).amount).toBe('777.70');
    const deleted = await get(['9', '--cache-ttl', '1']);
    expect(deleted.code).toBe(3);
    expect(deleted.stderr.trim()).toBe('invoices: invoice 9 not found');
  });

  it.skipIf(noRedis)(
    `entries written with another TTL are not read: staleness stays within the reader's --cache-ttl ${NEEDS}`,
    async () => {
      expect((await get(['10', '--cache-ttl', '3600'])).code).toBe(0);
      const r = await get(['10', '--cache-ttl', '5', '--debug']);
      expect(r.stderr).toContain('cache: miss');
      expect(Number(await redis('PTTL', invoiceKey(scope, 5, 10n)))).toBeLessThanOrEqual(5000);
      expect((await get(['10', '--cache-ttl', '3600', '--debug'])).stderr).toContain('cache: hit');
    },
  );

  it.skipIf(noRedis)(`not found: exit 3 with the cache too, and nothing is cached ${NEEDS}`, async () => {
    for (let i = 0; i < 2; i++) {
      const r = await get(['999999']);
      expect(r.code).toBe(3);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim()).toBe('invoices: invoice 999999 not found');
    }
    expect(await redis('EXISTS', invoiceKey(scope, 60, 999999n))).toBe(0);
  });

  it.skipIf(noRedis)(`--cache-ttl 0 and --no-cache neither read nor write the cache; --cache wins over REDIS_URL ${NEEDS}`, async () => {
    const zero = await get(['11', '--cache-ttl', '0', '--debug']);
    expect(zero.code).toBe(0);
    expect(zero.stderr).toContain('cache: not used');
    expect(await redis('EXISTS', invoiceKey(scope, 0, 11n))).toBe(0);
    expect(await redis('EXISTS', invoiceKey(scope, 60, 11n))).toBe(0);
    const off = await get(['11', '--no-cache', '--debug']);
    expect(off.stderr).toContain('cache: off');
    expect(await redis('EXISTS', invoiceKey(scope, 60, 11n))).toBe(0);
    const flag = await get(['11', '--cache', REDIS_URL!, '--debug'], { REDIS_URL: DEAD_REDIS });
    expect(flag.code).toBe(0);
    expect(flag.stderr).not.toContain('warning');
    expect(flag.stderr).toContain('cache: miss');
    expect(await redis('EXISTS', invoiceKey(scope, 60, 11n))).toBe(1);
  });

  it('a cache that is down: one warning, the answer from PostgreSQL, exit 0', async () => {
    const r = await get(['7'], { REDIS_URL: DEAD_REDIS });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(await fromPostgres('7'));
    expect(r.stderr.trim().split('\n')).toEqual([
      'warning: cannot connect to the cache at redis://127.0.0.1:1: no server is listening there; reading from PostgreSQL (--cache-required to fail instead)',
    ]);
    const stats = await get(['7', '--stats', '--repeat', '5'], { REDIS_URL: DEAD_REDIS });
    expect(stats.code).toBe(0);
    expect(stats.stderr.match(/warning:/g)).toHaveLength(1);
  });

  it('--cache-required: a cache that is down is exit 1, one line, nothing on stdout', async () => {
    const r = await get(['7', '--cache', DEAD_REDIS, '--cache-required']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe('invoices: cannot connect to the cache at redis://127.0.0.1:1: no server is listening there');
  });

  it('a server that accepts but never answers costs one timeout, then PostgreSQL answers', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => void sockets.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const started = Date.now();
      const r = await get(['7', '--cache', `redis://127.0.0.1:${port}`]);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`warning: the cache at redis://127.0.0.1:${port} did not answer within 1000 ms`);
      expect(JSON.parse(r.stdout).amount).toBe('1234.50');
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it.skipIf(noRedis)(`a password the server refuses: a warning that never shows it, exit 1 with --cache-required ${NEEDS}`, async () => {
    const u = new URL(REDIS_URL!);
    u.password = 'wrong-pw-4711';
    const warned = await get(['7', '--cache', u.toString()]);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toMatch(/^warning: the cache at redis:\/\/.*\*\*\*@/);
    expect(warned.stderr).not.toContain('wrong-pw-4711');
    const failed = await get(['7', '--cache', u.toString(), '--cache-required']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).not.toContain('wrong-pw-4711');
  });

  it.skipIf(noRedis)(`--stats: the invoice on stdout, hit and miss p50/p99 on stderr ${NEEDS}`, async () => {
    const r = await get(['7', '--stats', '--repeat', '20']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(await fromPostgres('7'));
    expect(r.stderr).toMatch(/^ {2}cache hit +p50 +\d+\.\d{3} ms +p99 +\d+\.\d{3} ms +n=20 /m);
    expect(r.stderr).toMatch(/^ {2}cache miss +p50 +\d+\.\d{3} ms +p99 +\d+\.\d{3} ms +n=20 /m);
    expect(r.stderr).toMatch(/^ {2}PostgreSQL +p50 +\d+\.\d{3} ms +p99 +\d+\.\d{3} ms +n=20 /m);
    expect(r.stderr).toContain('connect     Redis');
    // Misses were measured by dropping the entry; it is cached again afterwards.
    expect(await redis('EXISTS', invoiceKey(scope, 60, 7n))).toBe(1);
  });

  it('usage errors: a bad cache URL, --cache-required without a cache, --repeat without --stats, a bad TTL', async () => {
    const bad = await get(['7'], { REDIS_URL: 'http://cache:6379' });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('invoices: REDIS_URL must be a redis:// or rediss:// URL, got "http://cache:6379/"');
    expect((await get(['7', '--cache', 'redis://h/notanumber'])).code).toBe(2);
    const required = await runCli(['get', '7', '--cache-required'], { env: { DATABASE_URL: db.url } });
    expect(required.code).toBe(2);
    expect(required.stderr).toContain('--cache-required needs a cache');
    expect((await get(['7', '--no-cache', '--cache-required'])).stderr).toContain('--no-cache turns it off');
    expect((await get(['7', '--repeat', '5'])).code).toBe(2);
    for (const ttl of ['-1', '1.5', 'abc', '2147483648']) {
      const r = await get(['7', '--cache-ttl', ttl]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('--cache-ttl');
    }
  });
});

describe('an entry answers only for its own key', () => {
  /** The entry under invoice `id`'s key (default TTL), parsed. */
  const entry = async (id: bigint, s = scope) => {
    const raw = await redis('GET', invoiceKey(s, 60, id));
    return typeof raw === 'string' ? (JSON.parse(raw) as Record<string, string | null>) : undefined;
  };
  const put = (id: bigint, value: unknown, s = scope) =>
    redis('SET', invoiceKey(s, 60, id), typeof value === 'string' ? value : JSON.stringify(value), 'EX', '60');

  it.skipIf(noRedis)(
    `a poisoned cache key: invoice 43's document under 42's key is a miss, 42 is printed and the entry replaced ${NEEDS}`,
    async () => {
      expect((await get(['43'])).code).toBe(0);
      const doc43 = await redis('GET', invoiceKey(scope, 60, 43n));
      expect(typeof doc43).toBe('string');
      const stamp = await stampOf();
      // In the current format, of the current source and generation: only the id is wrong.
      expect(JSON.parse(doc43 as string)).toMatchObject({ ...stamp, invoice_id: '43' });
      await put(42n, doc43);

      const r = await get(['42', '--debug']);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(await fromPostgres('42'));
      expect(JSON.parse(r.stdout).invoice_id).toBe(42);
      expect(r.stderr).toContain('warning: the cache entry for invoice 42 held another invoice: replaced from PostgreSQL');
      expect(r.stderr).toContain('debug: cache: miss (stale entry: another invoice; replaced)');
      expect(await entry(42n)).toMatchObject({ ...stamp, invoice_id: '42' });
      const again = await get(['42', '--debug']);
      expect(again.stderr).toContain('debug: cache: hit');
      expect(again.stdout).toBe(r.stdout);
    },
  );

  it.skipIf(noRedis)(`an entry of another source or another generation is a miss and is replaced ${NEEDS}`, async () => {
    expect((await get(['44'])).code).toBe(0);
    const stamp = await stampOf();
    const good = (await entry(44n))!;
    expect(good).toMatchObject(stamp);
    const expected = await fromPostgres('44');

    // Another table or mapping, same generation and id, a different amount: never printed.
    await put(44n, { ...good, source: 'erp.bills ["id","issued","seller","buyer","total"]', amount: '0.01' });
    const source = await get(['44', '--debug']);
    expect(source.code).toBe(0);
    expect(source.stdout).toBe(expected);
    expect(source.stderr).toContain(
      'warning: the cache entry for invoice 44 held an invoice of another table or mapping: replaced from PostgreSQL',
    );
    expect(source.stderr).toContain('stale entry: another source; replaced');
    expect(await entry(44n)).toEqual(good);

    // Another generation (as after a reload): a plain miss, no warning.
    await put(44n, { ...good, generation: '0000000000000000', amount: '0.01' });
    const generation = await get(['44', '--debug']);
    expect(generation.code).toBe(0);
    expect(generation.stdout).toBe(expected);
    expect(generation.stderr).not.toContain('warning');
    expect(generation.stderr).toContain('stale entry: another generation; replaced');
    expect(await entry(44n)).toEqual(good);
  });

  it.skipIf(noRedis)(`entries of the old key version (v1) are never read, nor a v1-shaped value under a v2 key ${NEEDS}`, async () => {
    const expected = await fromPostgres('45');
    const v1 = { ...JSON.parse(expected), invoice_id: '45', issuer_id: '1', receiver_id: '2', amount: '999999.99' };
    const v1Key = `invoices:v1:db:${scope}:ttl:60:invoice:45`;
    expect(invoiceKey(scope, 60, 45n)).not.toBe(v1Key);
    await redis('SET', v1Key, JSON.stringify(v1), 'EX', '60');
    scopes.push(scope); // cleared with the v2 keys; the v1 key is removed below
    try {
      const r = await get(['45', '--debug']);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(expected);
      expect(r.stderr).toContain('debug: cache: miss (redis'); // no entry at all under v2
      expect(await redis('GET', v1Key)).toBe(JSON.stringify(v1)); // untouched, never read

      await put(45n, v1); // the v1 shape (no source, no generation) under the v2 key
      const shaped = await get(['45', '--debug']);
      expect(shaped.stdout).toBe(expected);
      expect(shaped.stderr).toContain('stale entry: unreadable; replaced');
      expect(await entry(45n)).toMatchObject({ ...(await stampOf()), invoice_id: '45' });
    } finally {
      await redis('DEL', v1Key);
    }
  });

  it.skipIf(noRedis)(
    `a reseed (seed --truncate with another --seed) makes every entry a miss at once: get 42 prints the new row ${NEEDS}`,
    async () => {
      const reseeded = await createDatabase();
      const reseededScope = cacheScope(target(reseeded.url));
      scopes.push(reseededScope);
      try {
        const seed = (n: string, extra: string[] = []) =>
          seedWithCli(reseeded.url, ['--customers', '20', '--invoices', n, '--as-of', '2025-06-01', '--months', '3', ...extra]);
        await seed('200', ['--seed', '21']);
        const before = await stampOf(reseeded.url);
        const first = await get(['42', '--cache-ttl', '3600'], {}, reseeded.url);
        expect(first.code).toBe(0);
        expect((await get(['42', '--cache-ttl', '3600', '--debug'], {}, reseeded.url)).stderr).toContain('cache: hit');

        await seed('200', ['--seed', '22', '--truncate']);
        const after = await stampOf(reseeded.url);
        expect(after.generation).not.toBe(before.generation);
        const now = await fromPostgres('42', reseeded.url);
        expect(now).not.toBe(first.stdout); // another row with the same id
        const r = await get(['42', '--cache-ttl', '3600', '--debug'], {}, reseeded.url);
        expect(r.code).toBe(0);
        expect(r.stdout).toBe(now);
        expect(r.stderr).toContain('debug: cache: miss (stale entry: another generation; replaced)');
        expect(r.stderr).not.toContain('warning');
        const raw = await redis('GET', invoiceKey(reseededScope, 3600, 42n));
        expect(JSON.parse(raw as string)).toMatchObject({ ...after, invoice_id: '42' });
        const hit = await get(['42', '--cache-ttl', '3600', '--debug'], {}, reseeded.url);
        expect(hit.stderr).toContain('cache: hit');
        expect(hit.stdout).toBe(now);

        // Reseeded with fewer rows: 42 is gone, exit 3 as without the cache, and so is its entry.
        await seed('30', ['--seed', '23', '--truncate']);
        const gone = await get(['42', '--cache-ttl', '3600'], {}, reseeded.url);
        expect(gone.code).toBe(3);
        expect(gone.stdout).toBe('');
        expect(gone.stderr.trim()).toBe('invoices: invoice 42 not found');
        expect(await redis('EXISTS', invoiceKey(reseededScope, 3600, 42n))).toBe(0);
      } finally {
        await reseeded.drop();
      }
    },
  );
});

describe('RedisInvoiceCache', () => {
  const invoice: InvoiceDetail = {
    invoice_id: '42',
    issue_date: '2025-01-02T03:04:05.5Z',
    issuer_id: '1',
    issuer_name: 'A',
    receiver_id: '2',
    receiver_name: null,
    amount: '0.10',
  };
  const stamp: CacheStamp = {
    source: 'public.invoices ["invoice_id","issue_date","issuer_id","receiver_id","amount"]',
    generation: '0123456789abcdef',
  };

  it.skipIf(noRedis)(`get, set, delete and clear under its own scope ${NEEDS}`, async () => {
    const testScope = `test-${process.pid}-${randomBytes(3).toString('hex')}`;
    scopes.push(testScope);
    const cache = await RedisInvoiceCache.open({ url: REDIS_URL!, ttlSeconds: 30, scope: testScope });
    const other = await RedisInvoiceCache.open({ url: REDIS_URL!, ttlSeconds: 300, scope: testScope });
    try {
      expect(await cache.get(42n, stamp)).toBeUndefined();
      await cache.set(42n, invoice, stamp);
      expect(await cache.get(42n, stamp)).toEqual({ invoice });
      expect(await cache.get(42n, { ...stamp, generation: 'fedcba9876543210' })).toEqual({ stale: 'another generation' });
      expect(await other.get(42n, stamp)).toBeUndefined(); // another TTL, another entry
      await other.set(42n, invoice, stamp);
      await other.set(43n, { ...invoice, invoice_id: '43' }, stamp);
      await cache.delete(42n);
      expect(await cache.get(42n, stamp)).toBeUndefined();
      expect(await other.get(42n, stamp)).toEqual({ invoice });
      await redis('SET', cache.key(44n), '{"not":"an invoice"}', 'EX', '30');
      expect(await cache.get(44n, stamp)).toEqual({ stale: 'unreadable' });
      expect(await cache.clear()).toBe(3);
      expect(await other.get(43n, stamp)).toBeUndefined();
      expect(scopePattern(testScope)).toBe(`invoices:v2:db:${testScope}:*`);
    } finally {
      await cache.close();
      await other.close();
    }
  });

  it('a dead server is a CacheError naming the URL without its password', async () => {
    const err = await RedisInvoiceCache.open({ url: 'redis://:pw-never-shown@127.0.0.1:1/3', ttlSeconds: 5, scope: 'x' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CacheError);
    expect((err as Error).message).toBe('cannot connect to the cache at redis://:***@127.0.0.1:1/3: no server is listening there');
  });
});
