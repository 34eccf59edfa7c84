// `invoices serve` under pressure, over real HTTP: a bounded queue that sheds load with 503 +
// Retry-After, SIGTERM during load (every request in flight answered, exit 0), and 503 when the
// database is unreachable or goes away. Requests are made slow deterministically: a test
// transaction holds a lock on the invoices table that their lookup waits for.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, seedWithCli, waitFor, withPg, type TestDatabase } from '../../support/helpers.js';
import { getJson, metric, startServe } from '../../support/serve.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '20', '--invoices', '100', '--seed', '3', '--as-of', '2025-06-01', '--months', '3']);
});

afterAll(async () => {
  await db?.drop();
});

/** A transaction holding ACCESS EXCLUSIVE on invoices (and its partitions) until release(). */
async function lockInvoices(url: string): Promise<{ release(): Promise<void> }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('BEGIN');
  await c.query('LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE');
  return {
    release: async () => {
      await c.query('ROLLBACK');
      await c.end();
    },
  };
}

/** Backends of `invoices serve` waiting for a lock in this database. */
const waitingOnLock = (url: string) =>
  withPg(
    url,
    async (c) =>
      (
        await c.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'invoices serve' AND wait_event_type = 'Lock'`,
        )
      ).rows[0].n,
  );

describe('invoices serve: load', () => {
  it('sheds load with 503 overloaded + Retry-After when the queue for connections is full', async () => {
    const s = await startServe(['--pool-size', '1', '--max-queue', '1', '--timeout', '60000'], { DATABASE_URL: db.url });
    const lock = await lockInvoices(db.url);
    let released = false;
    try {
      // The first request takes the only connection and waits for the lock.
      const first = getJson(`${s.url}/invoices/1`);
      await waitFor('the first lookup to wait for the lock', async () => (await waitingOnLock(db.url)) === 1);
      // The second waits in the queue (its one place); every other one is shed at once.
      const second = getJson(`${s.url}/invoices/2`);
      await waitFor(
        'the second request to queue',
        async () => metric((await getJson(`${s.url}/metrics`)).body, 'invoices_db_pool_waiting') === 1,
      );
      const shed = await Promise.all(Array.from({ length: 20 }, (_, i) => getJson(`${s.url}/invoices/${i + 3}`)));
      for (const r of shed) {
        expect(r.status).toBe(503);
        expect(r.body.error.code).toBe('overloaded');
        expect(r.headers.get('retry-after')).toBe('1');
      }
      await lock.release();
      released = true;
      const [a, b] = await Promise.all([first, second]);
      expect([a.status, a.body.invoice_id, b.status, b.body.invoice_id]).toEqual([200, 1, 200, 2]);
      const m = (await getJson(`${s.url}/metrics`)).body as string;
      expect(metric(m, 'invoices_db_pool_shed_total')).toBe(20);
      expect(metric(m, 'invoices_http_errors_total{code="overloaded"}')).toBe(20);
    } finally {
      if (!released) await lock.release();
      expect(await s.stop()).toEqual({ code: 0, signal: null });
    }
  });

  it('503 timeout past --timeout: a statement waiting too long, and a request waiting too long for a connection', async () => {
    const s = await startServe(['--pool-size', '1', '--max-queue', '10', '--timeout', '700'], { DATABASE_URL: db.url });
    const lock = await lockInvoices(db.url);
    try {
      const [slow, queued] = await Promise.all([getJson(`${s.url}/invoices/1`), getJson(`${s.url}/invoices/2`)]);
      for (const r of [slow, queued]) {
        expect(r.status).toBe(503);
        expect(r.body.error.code).toBe('timeout');
        expect(r.headers.get('retry-after')).toBe('1');
      }
    } finally {
      await lock.release();
    }
    try {
      // The lock gone, the same server answers again.
      expect((await getJson(`${s.url}/invoices/1`)).status).toBe(200);
    } finally {
      expect(await s.stop()).toEqual({ code: 0, signal: null });
    }
  });

  it('SIGTERM with 200 requests in flight: every one is answered, then exit 0', async () => {
    const s = await startServe(['--pool-size', '4', '--max-queue', '1000', '--timeout', '60000', '--drain-timeout', '60'], {
      DATABASE_URL: db.url,
    });
    const lock = await lockInvoices(db.url);
    let released = false;
    try {
      const ids = Array.from({ length: 200 }, (_, i) => (i % 100) + 1);
      const requests = ids.map((id) => getJson(`${s.url}/invoices/${id}`));
      await waitFor(
        '200 requests in flight',
        async () => metric((await getJson(`${s.url}/metrics`)).body, 'invoices_http_requests_in_flight') >= 201,
      );
      expect(await waitingOnLock(db.url)).toBeGreaterThanOrEqual(1);
      s.child.kill('SIGTERM');
      await waitFor('the drain to start', async () => /SIGTERM: draining \d+ request/.test(s.stderr()));
      // Draining: no new connection is accepted.
      await expect(fetch(`${s.url}/healthz`)).rejects.toThrow();
      await lock.release();
      released = true;
      const answers = await Promise.all(requests);
      expect(answers.filter((r) => r.status !== 200)).toEqual([]);
      expect(answers.map((r) => r.body.invoice_id)).toEqual(ids);
      expect(await s.exited).toEqual({ code: 0, signal: null });
      expect(s.stderr()).toMatch(/stopped: every request in flight was answered/);
    } finally {
      if (!released) await lock.release();
      await s.stop('SIGKILL');
    }
  });

  it('503 database_unavailable with Retry-After when nothing listens at the database address; /healthz stays 200', async () => {
    const s = await startServe(['--timeout', '3000'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' });
    try {
      expect((await getJson(`${s.url}/healthz`)).status).toBe(200);
      for (const route of ['/readyz', '/invoices/1', '/invoices?ids=1,2', '/customers/1/summary', '/invoices/1/risk']) {
        const r = await getJson(s.url + route);
        expect({ route, status: r.status, code: r.body.error?.code }).toEqual({ route, status: 503, code: 'database_unavailable' });
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
        expect(JSON.stringify(r.body)).not.toMatch(/127\.0\.0\.1|postgres:\/\//);
      }
    } finally {
      expect(await s.stop('SIGINT')).toEqual({ code: 0, signal: null });
    }
  });

  it('503 when the database goes away under a running server, 200 again when it is back', async () => {
    const other = await createDatabase();
    try {
      await seedWithCli(other.url, ['--customers', '5', '--invoices', '10', '--seed', '1', '--as-of', '2025-06-01', '--months', '1']);
      const s = await startServe(['--timeout', '3000'], { DATABASE_URL: other.url });
      try {
        expect((await getJson(`${s.url}/invoices/1`)).status).toBe(200);
        // Refuse new connections and end the open ones: as a server restarting or a failover does.
        await withPg(db.url, async (c) => {
          await c.query(`ALTER DATABASE ${other.name} ALLOW_CONNECTIONS false`);
          await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [other.name]);
        });
        for (const route of ['/invoices/1', '/readyz', '/invoices/2']) {
          const r = await getJson(s.url + route);
          expect({ route, status: r.status, code: r.body.error?.code }).toEqual({ route, status: 503, code: 'database_unavailable' });
          expect(r.headers.get('retry-after')).toBeTruthy();
        }
        await withPg(db.url, (c) => c.query(`ALTER DATABASE ${other.name} ALLOW_CONNECTIONS true`));
        await waitFor('the server to reach the database again', async () => (await getJson(`${s.url}/readyz`)).status === 200);
        expect((await getJson(`${s.url}/invoices/1`)).body.invoice_id).toBe(1);
      } finally {
        expect(await s.stop()).toEqual({ code: 0, signal: null });
      }
    } finally {
      await withPg(db.url, (c) => c.query(`ALTER DATABASE ${other.name} ALLOW_CONNECTIONS true`)).catch(() => {});
      await other.drop();
    }
  });
});
