// `invoices serve` reading through the real Redis at REDIS_URL exactly as `get` does (the same
// keys, values and generation stamp); skipped without REDIS_URL. Keys live under this test
// database's scope and are removed afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheScope, invoiceKey, parseRedisUrl } from '../../../src/cache/keys.js';
import { RedisInvoiceCache } from '../../../src/cache/redis-cache.js';
import { RespConnection } from '../../../src/cache/resp.js';
import type { Target } from '../../../src/config.js';
import { createDatabase, runCli, seedWithCli, waitFor, type TestDatabase } from '../../support/helpers.js';
import { getJson, metric, startServe, type Served } from '../../support/serve.js';

const REDIS_URL = process.env.REDIS_URL;
const NEEDS = '[needs Redis: REDIS_URL]';
const target = (url: string): Target => ({ kind: 'server', source: 'DATABASE_URL', connection: { connectionString: url } });

let db: TestDatabase;
let scope: string;

async function redisGet(key: string): Promise<unknown> {
  const e = parseRedisUrl(REDIS_URL!);
  const conn = await RespConnection.connect({ host: e.host, port: e.port, tls: e.tls, timeoutMs: 2000 });
  try {
    if (e.password !== undefined) await conn.command(e.username ? ['AUTH', e.username, e.password] : ['AUTH', e.password]);
    await conn.command(['SELECT', String(e.db)]);
    return await conn.command(['GET', key]);
  } finally {
    await conn.close();
  }
}

const cacheCounts = async (s: Served) => {
  const m = (await getJson(`${s.url}/metrics`)).body as string;
  return {
    hit: metric(m, 'invoices_cache_lookups_total{outcome="hit"}'),
    miss: metric(m, 'invoices_cache_lookups_total{outcome="miss"}'),
    active: metric(m, 'invoices_cache_active'),
  };
};

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '20', '--invoices', '200', '--seed', '9', '--as-of', '2025-06-01', '--months', '3']);
  scope = cacheScope(target(db.url));
});

afterAll(async () => {
  if (REDIS_URL) {
    const cache = await RedisInvoiceCache.open({ url: REDIS_URL, ttlSeconds: 1, scope }).catch(() => undefined);
    await cache?.clear();
    await cache?.close();
  }
  await db?.drop();
});

describe.skipIf(!REDIS_URL)(`invoices serve --cache ${REDIS_URL ? '' : NEEDS}`, () => {
  it('a miss then hits, the same document as without the cache, under the key `get` uses', async () => {
    const s = await startServe(['--cache-ttl', '60'], { DATABASE_URL: db.url, REDIS_URL: REDIS_URL! });
    try {
      expect((await cacheCounts(s)).active).toBe(1);
      const first = await getJson(`${s.url}/invoices/12`);
      const second = await getJson(`${s.url}/invoices/12`);
      const cli = await runCli(['get', '12', '--json', '--no-cache'], { env: { DATABASE_URL: db.url } });
      expect(first.body).toEqual(JSON.parse(cli.stdout));
      expect(second.body).toEqual(first.body);
      expect(await cacheCounts(s)).toMatchObject({ hit: 1, miss: 1 });
      const stored = await redisGet(invoiceKey(scope, 60, 12n));
      expect(typeof stored).toBe('string');
      expect(JSON.parse(stored as string)).toMatchObject({ invoice_id: '12', amount: first.body.amount });
      // `get` through the same Redis reads the entry serve wrote: a hit (no lookup statement).
      const viaGet = await runCli(['get', '12', '--json', '--debug', '--cache-ttl', '60'], {
        env: { DATABASE_URL: db.url, REDIS_URL: REDIS_URL! },
      });
      expect(viaGet.stderr).toMatch(/cache: hit/);
      // Batches: one MGET; the misses from PostgreSQL, then cached.
      const batch = await getJson(`${s.url}/invoices?ids=12,13,99999`);
      expect(batch.body.invoices.map((i: { invoice_id: number }) => i.invoice_id)).toEqual([12, 13]);
      expect(batch.body.not_found).toEqual([99999]);
      expect(await cacheCounts(s)).toMatchObject({ hit: 2, miss: 3 });
      const again = await getJson(`${s.url}/invoices?ids=12,13`);
      expect(again.body).toEqual({ invoices: batch.body.invoices, not_found: [] });
      expect(await cacheCounts(s)).toMatchObject({ hit: 4, miss: 3 });
    } finally {
      expect(await s.stop()).toEqual({ code: 0, signal: null });
    }
  });

  it('a reload (TRUNCATE and reseed) shows within a second: entries of the old generation are misses', async () => {
    const s = await startServe([], { DATABASE_URL: db.url, REDIS_URL: REDIS_URL! });
    try {
      const before = (await getJson(`${s.url}/invoices/20`)).body;
      expect((await getJson(`${s.url}/invoices/20`)).body).toEqual(before);
      await seedWithCli(db.url, [
        '--customers',
        '20',
        '--invoices',
        '200',
        '--seed',
        '77',
        '--as-of',
        '2025-06-01',
        '--months',
        '3',
        '--truncate',
      ]);
      const fresh = JSON.parse((await runCli(['get', '20', '--json', '--no-cache'], { env: { DATABASE_URL: db.url } })).stdout);
      expect(fresh).not.toEqual(before);
      await waitFor(
        'the new generation',
        async () => JSON.stringify((await getJson(`${s.url}/invoices/20`)).body) === JSON.stringify(fresh),
        3000,
      );
    } finally {
      await s.stop();
    }
  });

  it('--no-cache and --cache-ttl 0 read PostgreSQL only; an unreachable cache falls back to PostgreSQL', async () => {
    for (const args of [['--no-cache'], ['--cache-ttl', '0']]) {
      const s = await startServe(args, { DATABASE_URL: db.url, REDIS_URL: REDIS_URL! });
      try {
        expect((await getJson(`${s.url}/invoices/3`)).status).toBe(200);
        expect(await cacheCounts(s)).toEqual({ hit: 0, miss: 0, active: 0 });
      } finally {
        await s.stop();
      }
    }
    const dead = await startServe(['--cache', 'redis://127.0.0.1:1'], { DATABASE_URL: db.url });
    try {
      expect(dead.stderr()).toMatch(/warning: cannot connect to the cache at redis:\/\/127\.0\.0\.1:1/);
      const r = await getJson(`${dead.url}/invoices/3`);
      expect(r.status).toBe(200);
      expect(r.body.invoice_id).toBe(3);
      expect((await cacheCounts(dead)).active).toBe(0);
    } finally {
      expect(await dead.stop()).toEqual({ code: 0, signal: null });
    }
  });
});

describe('invoices serve --cache: usage', () => {
  it('a malformed cache URL is a usage error (exit 2) before listening', async () => {
    const r = await runCli(['serve', '--port', '0', '--cache', 'http://nope'], { env: { DATABASE_URL: db.url } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--cache must be a redis:\/\/ or rediss:\/\/ URL/);
  });
});
