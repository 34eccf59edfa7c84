// seed(): determinism, shape of the data, and what happens to tables that already hold rows.
import { PassThrough } from 'node:stream';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbContext } from '../../../src/db/client.js';
import { TextCopyWriter } from '../../../src/seed/copy-text.js';
import { seed, seedWindow, type SeedResult } from '../../../src/seed/seed.js';
import { createDatabase, runCli, seedWithCli, tableHash, withPg, type TestDatabase } from '../../support/helpers.js';

const AS_OF = '2026-01-15';
const CUSTOMERS = 200;

function ctx(url: string): DbContext {
  return { config: { home: '/nonexistent', target: { kind: 'server', source: 'DATABASE_URL', connection: { connectionString: url } } } };
}

const one = async <T extends pg.QueryResultRow>(c: pg.Client, sql: string, values?: unknown[]): Promise<T> =>
  (await c.query<T>(sql, values)).rows[0];

const databases: TestDatabase[] = [];
async function newDb(): Promise<TestDatabase> {
  const db = await createDatabase();
  databases.push(db);
  return db;
}
afterAll(async () => {
  await Promise.all(databases.map((d) => d.drop()));
});

describe('seed (fresh load, src)', () => {
  let a: TestDatabase;
  let result: SeedResult;

  beforeAll(async () => {
    a = await newDb();
    result = await seed(ctx(a.url), {
      customers: CUSTOMERS,
      months: 24,
      seed: 42,
      asOf: new Date(`${AS_OF}T17:30:00Z`),
      existing: 'refuse',
    });
  });

  it('creates N customers and 50*N invoices by default, with ids from 1', async () => {
    expect(result).toMatchObject({ customers: CUSTOMERS, invoices: 50 * CUSTOMERS, firstInvoiceId: 1, lastInvoiceId: 50 * CUSTOMERS });
    expect(result.from).toBe('2024-01-15T00:00:00.000Z');
    expect(result.to).toBe('2026-01-15T00:00:00.000Z');
    await withPg(a.url, async (c) => {
      const r = await one(
        c,
        `SELECT (SELECT count(*)::int FROM customers) AS customers, (SELECT min(id)::int FROM customers) AS cmin, (SELECT max(id)::int FROM customers) AS cmax,
                                     (SELECT count(*)::int FROM invoices) AS invoices, (SELECT min(invoice_id)::int FROM invoices) AS imin, (SELECT max(invoice_id)::int FROM invoices) AS imax`,
      );
      expect(r).toEqual({ customers: CUSTOMERS, cmin: 1, cmax: CUSTOMERS, invoices: 50 * CUSTOMERS, imin: 1, imax: 50 * CUSTOMERS });
    });
  });

  it('puts every issue_date in [as-of minus K months, as-of) UTC, spread over the whole window', async () => {
    await withPg(a.url, async (c) => {
      const r = await one(
        c,
        `SELECT min(issue_date) >= '2024-01-15T00:00:00Z' AS after_start, max(issue_date) < '2026-01-15T00:00:00Z' AS before_end,
                                     min(issue_date) < '2024-01-22T00:00:00Z' AS starts_early, max(issue_date) >= '2026-01-08T00:00:00Z' AS ends_late
                                FROM invoices`,
      );
      expect(r).toEqual({ after_start: true, before_end: true, starts_early: true, ends_late: true });
    });
  });

  it('invoice ids grow with issue dates', async () => {
    await withPg(a.url, async (c) => {
      const r = await one(
        c,
        `SELECT count(*)::int AS n FROM (SELECT issue_date < lag(issue_date) OVER (ORDER BY invoice_id) AS back FROM invoices) s WHERE back`,
      );
      expect(r.n).toBe(0);
    });
  });

  it('never has an issuer invoice itself, and every party exists', async () => {
    await withPg(a.url, async (c) => {
      const r = await one(
        c,
        `SELECT count(*) FILTER (WHERE issuer_id = receiver_id)::int AS self,
                                     count(*) FILTER (WHERE ci.id IS NULL OR cr.id IS NULL)::int AS orphans
                                FROM invoices i LEFT JOIN customers ci ON ci.id = i.issuer_id LEFT JOIN customers cr ON cr.id = i.receiver_id`,
      );
      expect(r).toEqual({ self: 0, orphans: 0 });
    });
  });

  it('amounts are positive with at most 2 decimals, and varied', async () => {
    await withPg(a.url, async (c) => {
      const r = await one(
        c,
        `SELECT count(*) FILTER (WHERE amount <= 0)::int AS non_positive,
                                     count(*) FILTER (WHERE amount <> round(amount, 2) OR scale(amount) > 2)::int AS bad_scale,
                                     count(DISTINCT amount)::int AS distinct_amounts, count(*)::int AS n
                                FROM invoices`,
      );
      expect(r.non_positive).toBe(0);
      expect(r.bad_scale).toBe(0);
      expect(r.distinct_amounts).toBeGreaterThan(r.n / 2);
    });
  });

  it('is skewed: the top 10% of customers issue more than half of the invoices', async () => {
    await withPg(a.url, async (c) => {
      const r = await one(
        c,
        `SELECT (SELECT sum(n) FROM (SELECT count(*) AS n FROM invoices GROUP BY issuer_id ORDER BY n DESC LIMIT $1) t)::int AS top,
                                     (SELECT count(*) FROM invoices)::int AS total`,
        [CUSTOMERS / 10],
      );
      expect(r.top / r.total).toBeGreaterThan(0.5);
    });
  });

  it('has more invoices on the last day of a month than on an average day', async () => {
    await withPg(a.url, async (c) => {
      const r = await one(
        c,
        `WITH days AS (
                                SELECT d::date AS day, ((d + interval '1 day')::date = date_trunc('month', d + interval '1 day')::date) AS month_end
                                  FROM generate_series(timestamp '2024-01-15', timestamp '2026-01-14', interval '1 day') d),
                              counts AS (SELECT (issue_date AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM invoices GROUP BY 1)
                              SELECT avg(coalesce(n, 0)) FILTER (WHERE month_end)::float8 AS month_end, avg(coalesce(n, 0))::float8 AS overall,
                                     count(*) FILTER (WHERE month_end)::int AS month_ends
                                FROM days LEFT JOIN counts USING (day)`,
      );
      expect(r.month_ends).toBe(24);
      expect(r.month_end / r.overall).toBeGreaterThan(1.5);
    });
  });

  it('rebuilds the primary key and foreign keys it dropped for the load', async () => {
    await withPg(a.url, async (c) => {
      const { rows } = await c.query<{ conname: string; contype: string }>(
        `SELECT conname, contype FROM pg_constraint WHERE conrelid = 'invoices'::regclass AND contype <> 'n' ORDER BY conname`,
      );
      expect(rows).toEqual([
        { conname: 'invoices_amount_check', contype: 'c' },
        { conname: 'invoices_issuer_fk', contype: 'f' },
        { conname: 'invoices_parties_check', contype: 'c' },
        { conname: 'invoices_pkey', contype: 'p' },
        { conname: 'invoices_receiver_fk', contype: 'f' },
      ]);
      await expect(
        c.query(`INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES (1, now(), 1, 2, 1)`),
      ).rejects.toMatchObject({ code: '23505' });
    });
  });

  it('leaves the identity sequences after the seeded ids', async () => {
    await withPg(a.url, async (c) => {
      await c.query('BEGIN');
      try {
        const cust = await one(c, `INSERT INTO customers (name) VALUES ('New Co') RETURNING id::int AS id`);
        expect(cust.id).toBe(CUSTOMERS + 1);
        const inv = await one(
          c,
          `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (now(), 1, 2, 10.5) RETURNING invoice_id::int AS id`,
        );
        expect(inv.id).toBe(50 * CUSTOMERS + 1);
      } finally {
        await c.query('ROLLBACK');
      }
    });
  });

  it('is deterministic: the same --seed and --as-of give identical rows in another database (through the CLI)', async () => {
    const b = await newDb();
    await seedWithCli(b.url, ['--customers', String(CUSTOMERS), '--seed', '42', '--as-of', AS_OF]);
    const [ha, hb] = await Promise.all(
      [a.url, b.url].map((url) => withPg(url, async (c) => [await tableHash(c, 'customers'), await tableHash(c, 'invoices')])),
    );
    expect(hb).toEqual(ha);
    // and not trivially: the hashes are of non-empty tables
    expect(ha[1]).not.toBe('d41d8cd98f00b204e9800998ecf8427e');
  });

  it('a different seed gives different rows', async () => {
    const b = await newDb();
    await seed(ctx(b.url), { customers: CUSTOMERS, months: 24, seed: 43, asOf: new Date(`${AS_OF}T00:00:00Z`), existing: 'refuse' });
    await withPg(b.url, async (c) => {
      expect(await one(c, 'SELECT count(*)::int AS n FROM invoices')).toEqual({ n: 50 * CUSTOMERS });
    });
    const [ha, hb] = await Promise.all(
      [a.url, b.url].map((url) => withPg(url, async (c) => [await tableHash(c, 'customers'), await tableHash(c, 'invoices')])),
    );
    expect(hb[0]).not.toBe(ha[0]);
    expect(hb[1]).not.toBe(ha[1]);
  });
});

describe('seedWindow', () => {
  it('goes back K calendar months from the as-of day at midnight UTC', () => {
    const w = seedWindow(new Date('2026-01-15T23:59:59Z'), 24);
    expect(new Date(w.startMicros / 1000).toISOString()).toBe('2024-01-15T00:00:00.000Z');
    expect(new Date(w.endMicros / 1000).toISOString()).toBe('2026-01-15T00:00:00.000Z');
  });

  it.each([
    ['2025-03-31', 1, '2025-02-28'],
    ['2024-03-31', 1, '2024-02-29'],
    ['2025-05-31', 3, '2025-02-28'],
    ['2025-12-31', 6, '2025-06-30'],
    ['2025-01-31', 2, '2024-11-30'],
  ])('as-of %s minus %i months starts on %s, like PostgreSQL date arithmetic (no overflow into the next month)', (asOf, months, start) => {
    const w = seedWindow(new Date(`${asOf}T00:00:00Z`), months);
    expect(new Date(w.startMicros / 1000).toISOString().slice(0, 10)).toBe(start);
  });
});

describe('seed through the CLI on tables that hold rows', () => {
  let d: TestDatabase;
  const base = ['--months', '6', '--as-of', '2025-07-01'];
  const counts = (url: string) =>
    withPg(url, (c) =>
      one<{ customers: number; invoices: number; max_id: number }>(
        c,
        'SELECT (SELECT count(*)::int FROM customers) AS customers, (SELECT count(*)::int FROM invoices) AS invoices, (SELECT max(invoice_id)::int FROM invoices) AS max_id',
      ),
    );

  beforeAll(async () => {
    d = await newDb();
  });

  it('seeds with an explicit --invoices count and prints the result as JSON on stdout', async () => {
    const r = await seedWithCli(d.url, ['--customers', '50', '--invoices', '700', '--seed', '7', ...base]);
    expect(JSON.parse(r.stdout)).toMatchObject({
      customers: 50,
      invoices: 700,
      firstInvoiceId: 1,
      lastInvoiceId: 700,
      from: '2025-01-01T00:00:00.000Z',
      to: '2025-07-01T00:00:00.000Z',
    });
    expect(await counts(d.url)).toEqual({ customers: 50, invoices: 700, max_id: 700 });
    await withPg(d.url, async (c) => {
      const w = await one(
        c,
        `SELECT min(issue_date) >= '2025-01-01T00:00:00Z' AND max(issue_date) < '2025-07-01T00:00:00Z' AS inside FROM invoices`,
      );
      expect(w.inside).toBe(true);
    });
  });

  it('refuses to seed non-empty tables: exit 2, advice, nothing changed', async () => {
    const before = await withPg(d.url, (c) => tableHash(c, 'invoices'));
    const r = await runCli(['seed', '--customers', '10', '--invoices', '10', ...base], { env: { DATABASE_URL: d.url } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--append');
    expect(r.stderr).toContain('--truncate');
    expect(r.stdout).toBe('');
    expect(await counts(d.url)).toEqual({ customers: 50, invoices: 700, max_id: 700 });
    expect(await withPg(d.url, (c) => tableHash(c, 'invoices'))).toBe(before);
  });

  it('--append adds a new cohort after the existing ids and keeps the old rows', async () => {
    const [oldCustomers, oldInvoices] = await withPg(d.url, async (c) => [await tableHash(c, 'customers'), await tableHash(c, 'invoices')]);
    // Small batches: several committed COPYs.
    const r = await seedWithCli(d.url, [
      '--customers',
      '20',
      '--invoices',
      '500',
      '--seed',
      '8',
      '--append',
      '--batch-size',
      '200',
      ...base,
    ]);
    expect(JSON.parse(r.stdout)).toMatchObject({ customers: 20, invoices: 500, firstInvoiceId: 701, lastInvoiceId: 1200 });
    expect(await counts(d.url)).toEqual({ customers: 70, invoices: 1200, max_id: 1200 });
    await withPg(d.url, async (c) => {
      const hash = (table: string, key: string, max: number) =>
        one<{ h: string }>(
          c,
          `SELECT md5(string_agg(${table === 'invoices' ? '(t.invoice_id, t.issue_date, t.issuer_id, t.receiver_id, t.amount)' : 't'}::text, E'\\n' ORDER BY ${key})) AS h FROM ${table} t WHERE ${key} <= $1`,
          [max],
        );
      expect((await hash('customers', 'id', 50)).h).toBe(oldCustomers);
      expect((await hash('invoices', 'invoice_id', 700)).h).toBe(oldInvoices);
      const n = await one(
        c,
        `SELECT count(DISTINCT invoice_id)::int AS ids, min(invoice_id)::int AS lo, max(invoice_id)::int AS hi,
                                     count(*) FILTER (WHERE issuer_id NOT BETWEEN 51 AND 70 OR receiver_id NOT BETWEEN 51 AND 70)::int AS outside,
                                     count(*) FILTER (WHERE issuer_id = receiver_id)::int AS self
                                FROM invoices WHERE invoice_id > 700`,
      );
      expect(n).toEqual({ ids: 500, lo: 701, hi: 1200, outside: 0, self: 0 });
      const cust = await one(c, 'SELECT min(id)::int AS lo, max(id)::int AS hi, count(*)::int AS n FROM customers WHERE id > 50');
      expect(cust).toEqual({ lo: 51, hi: 70, n: 20 });
      // the sequences continue after the appended rows
      await c.query('BEGIN');
      try {
        expect((await one(c, `INSERT INTO customers (name) VALUES ('x') RETURNING id::int AS id`)).id).toBe(71);
        expect(
          (
            await one(
              c,
              `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (now(), 1, 2, 1) RETURNING invoice_id::int AS id`,
            )
          ).id,
        ).toBe(1201);
      } finally {
        await c.query('ROLLBACK');
      }
    });
  });

  it('--truncate replaces all rows with exactly what a fresh seed gives', async () => {
    const args = ['--customers', '40', '--invoices', '300', '--seed', '9', ...base];
    const r = await seedWithCli(d.url, [...args, '--truncate']);
    expect(JSON.parse(r.stdout)).toMatchObject({ customers: 40, invoices: 300, firstInvoiceId: 1, lastInvoiceId: 300 });
    expect(await counts(d.url)).toEqual({ customers: 40, invoices: 300, max_id: 300 });
    const fresh = await newDb();
    await seedWithCli(fresh.url, args);
    const hashes = (url: string) => withPg(url, async (c) => [await tableHash(c, 'customers'), await tableHash(c, 'invoices')]);
    expect(await hashes(d.url)).toEqual(await hashes(fresh.url));
    await withPg(d.url, async (c) => {
      await c.query('BEGIN');
      try {
        expect(
          (
            await one(
              c,
              `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (now(), 1, 2, 1) RETURNING invoice_id::int AS id`,
            )
          ).id,
        ).toBe(301);
      } finally {
        await c.query('ROLLBACK');
      }
    });
  });

  it.each([
    [['--customers', '1'], '--customers'],
    [['--customers', '0'], '--customers'],
    [['--customers', 'ten'], '--customers'],
    [['--customers', '5', '--invoices', '-1'], '--invoices'],
    [['--customers', '5', '--append', '--truncate'], '--append'],
    [['--customers', '5', '--as-of', '2025-02-30'], '--as-of'],
    [['--customers', '5', '--months', '0'], '--months'],
  ])('rejects bad options %j with exit 2', async (args, mention) => {
    const before = await counts(d.url);
    const r = await runCli(['seed', ...args], { env: { DATABASE_URL: d.url } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(mention);
    expect(await counts(d.url)).toEqual(before);
  });
});

describe('TextCopyWriter (text COPY for mapped tables whose types the binary encoder does not write)', () => {
  it('formats ids, UTC microsecond timestamps, cents and escaped text without floats', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString('utf8')));
    const w = new TextCopyWriter(out, 16);
    w.row(4, 0);
    w.int8(9007199254740991);
    w.timestamptz(Date.UTC(2026, 2, 1, 23, 30) * 1000 + 123456);
    w.numericCents(99_999_999_999_999);
    w.text('tab\there\nnew \\ line\r');
    w.row(4, 0);
    w.int8(1);
    w.timestamptz(-1);
    w.numericCents(5);
    w.text(null);
    await w.end();
    expect(text).toBe(
      '9007199254740991\t2026-03-01 23:30:00.123456+00\t999999999999.99\ttab\\there\\nnew \\\\ line\\r\n' +
        '1\t1969-12-31 23:59:59.999999+00\t0.05\t\\N\n',
    );
  });
});
