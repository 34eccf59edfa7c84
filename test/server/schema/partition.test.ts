// `invoices partition` and `invoices index` on the partitioned layout, and their refusal on a plain table.
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getInvoice } from '../../../src/lookup/get-invoice.js';
import { createDatabase, runCli, seedWithCli, withPg, type TestDatabase } from '../../support/helpers.js';

const AS_OF = '2026-03-10';
let db: TestDatabase;
const cli = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url } });
const one = async <T extends pg.QueryResultRow>(sql: string): Promise<T> => withPg(db.url, async (c) => (await c.query<T>(sql)).rows[0]);
const partitions = async () =>
  withPg(db.url, async (c) =>
    (
      await c.query<{ name: string }>(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'invoices'::regclass ORDER BY 1",
      )
    ).rows.map((r) => r.name),
  );

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '100', '--invoices', '3000', '--months', '3', '--as-of', AS_OF]);
});
afterAll(async () => {
  await db?.drop();
});

describe('partition', () => {
  it('seed created one partition per month of its window and 3 ahead, plus DEFAULT, and nothing sits in DEFAULT', async () => {
    expect(await partitions()).toEqual([
      'invoices_default',
      'invoices_p2025_12',
      'invoices_p2026_01',
      'invoices_p2026_02',
      'invoices_p2026_03',
      'invoices_p2026_04',
      'invoices_p2026_05',
      'invoices_p2026_06',
    ]);
    expect(await one('SELECT count(*)::int AS n FROM invoices_default')).toEqual({ n: 0 });
    expect(await one('SELECT (SELECT count(*) FROM invoices)::int AS invoices, (SELECT count(*) FROM invoice_ids)::int AS ids')).toEqual({
      invoices: 3000,
      ids: 3000,
    });
  });

  it('--check exits 1 while months ahead are missing, and says how to fix it', async () => {
    const r = await cli(['partition', '--check', '--as-of', AS_OF, '--ahead', '5', '--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no partition yet for 2026-07, 2026-08');
    const report = JSON.parse(r.stdout) as Array<{ name: string; rows: number }>;
    expect(report.reduce((s, p) => s + p.rows, 0)).toBe(3000);
    expect(report.find((p) => p.name === 'invoices_p2026_03')?.rows).toBeGreaterThan(0);
  });

  it('--dry-run prints the SQL and changes nothing', async () => {
    const r = await cli(['partition', '--as-of', AS_OF, '--ahead', '5', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('CREATE TABLE invoices_p2026_07 PARTITION OF invoices');
    expect(r.stdout).toContain('CREATE TABLE invoices_p2026_08 PARTITION OF invoices');
    expect(await partitions()).toHaveLength(8);
  });

  it('creates the months ahead, then a re-run has nothing to do and --check passes', async () => {
    const first = await cli(['partition', '--as-of', AS_OF, '--ahead', '5', '--json']);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual([
      { partition: 'invoices_p2026_07', month: '2026-07', moved_rows: 0 },
      { partition: 'invoices_p2026_08', month: '2026-08', moved_rows: 0 },
    ]);
    const again = await cli(['partition', '--as-of', AS_OF, '--ahead', '5']);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe('');
    expect(again.stderr).toContain('nothing to create');
    const check = await cli(['partition', '--check', '--as-of', AS_OF, '--ahead', '5', '--json']);
    expect(check.code).toBe(0);
  });

  it('moves rows stranded in DEFAULT into a new month partition, keeping every row and its lookup', async () => {
    await withPg(db.url, (c) =>
      c.query(
        `INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount)
       VALUES (900001, '2027-08-03T10:00:00Z', 1, 2, 10.01), (900002, '2027-08-30T23:59:59.999999Z', 2, 1, 20.02), (900003, '2028-01-01T00:00:00Z', 3, 1, 0.03)`,
      ),
    );
    const before = await one<{ n: number; sum: string }>('SELECT count(*)::int AS n, sum(amount)::text AS sum FROM invoices');
    const stranded = await cli(['partition', '--check', '--as-of', AS_OF, '--ahead', '0']);
    expect(stranded.code).toBe(1);
    expect(stranded.stderr).toMatch(/3 rows in the DEFAULT partition \(2027-08: 2, 2028-01: 1\)/);

    const r = await cli(['partition', '--as-of', AS_OF, '--ahead', '0', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      { partition: 'invoices_p2027_08', month: '2027-08', moved_rows: 2 },
      { partition: 'invoices_p2028_01', month: '2028-01', moved_rows: 1 },
    ]);
    expect(await one('SELECT count(*)::int AS n, sum(amount)::text AS sum FROM invoices')).toEqual(before);
    expect(await one('SELECT count(*)::int AS n FROM invoices_default')).toEqual({ n: 0 });
    expect(await one('SELECT tableoid::regclass::text AS part FROM invoices WHERE invoice_id = 900002')).toEqual({
      part: 'invoices_p2027_08',
    });
    expect(
      await one(`SELECT count(*)::int AS n FROM invoices i FULL JOIN invoice_ids l USING (invoice_id, issue_date)
                       WHERE i.invoice_id IS NULL OR l.invoice_id IS NULL`),
    ).toEqual({ n: 0 });
    const got = await cli(['get', '900002', '--json']);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ invoice_id: 900002, issue_date: '2027-08-30T23:59:59.999999Z', amount: '20.02' });
    // Uniqueness still holds for the moved rows.
    await expect(
      withPg(db.url, (c) =>
        c.query("INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES (900002, '2026-01-05', 1, 2, 1)"),
      ),
    ).rejects.toMatchObject({ code: '23505' });
  });
});

describe('get on the partitioned layout, in one long-lived connection', () => {
  it('finds rows that moved partition or arrived after it read the id ranges', async () => {
    await withPg(db.url, async (c) => {
      const first = await getInvoice(c, 10n); // reads partitions and their id ranges once
      expect(first.invoice_id).toBe('10');
      // Moved to another month: the id range still points at the old partition; invoice_ids knows better.
      await c.query("UPDATE invoices SET issue_date = '2027-08-15T12:00:00Z' WHERE invoice_id = 10");
      // (a plain pg client: dates come back as Date objects)
      const iso = (v: unknown) => new Date(v as string).toISOString();
      const moved = await getInvoice(c, 10n);
      expect([moved.invoice_id, iso(moved.issue_date)]).toEqual(['10', '2027-08-15T12:00:00.000Z']);
      // A new id in an old month, beyond every range read before.
      await c.query(
        "INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES (990001, '2026-01-10T00:00:00Z', 3, 4, 99.99)",
      );
      const late = await getInvoice(c, 990001n);
      expect([late.invoice_id, late.amount, iso(late.issue_date)]).toEqual(['990001', '99.99', '2026-01-10T00:00:00.000Z']);
      await expect(getInvoice(c, 990002n)).rejects.toMatchObject({ exitCode: 3 });
    });
  });
});

describe('index', () => {
  it('--dry-run plans the covering indexes per partition without building them', async () => {
    const r = await cli(['index', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      'CREATE INDEX "invoices_issuer_date_idx" ON ONLY "public"."invoices" ("issuer_id", "issue_date") INCLUDE ("amount")',
    );
    expect(r.stdout).toContain(
      'CREATE INDEX CONCURRENTLY "invoices_p2026_01_receiver_date_idx" ON "public"."invoices_p2026_01" ("receiver_id", "issue_date") INCLUDE ("amount")',
    );
    expect(await one("SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE '%issuer_date_idx'")).toEqual({ n: 0 });
  });

  it('builds them, lists them with sizes, and a re-run has nothing to do', async () => {
    const r = await cli(['index', '--json']);
    expect(r.code).toBe(0);
    const listed = JSON.parse(r.stdout) as Array<{ name: string; valid: string; size: string }>;
    expect(listed.map((x) => x.name)).toEqual([
      'invoice_ids_pkey',
      'invoices_issuer_date_idx',
      'invoices_pkey',
      'invoices_receiver_date_idx',
    ]);
    expect(listed.every((x) => x.valid === 'yes' && /\d/.test(x.size))).toBe(true);
    // Every partition carries both indexes, attached to the parent's.
    const perPartition = await one<{ n: number; parts: number }>(
      `SELECT count(*)::int AS n, (SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'invoices'::regclass) AS parts
         FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
        WHERE p.relname IN ('invoices_issuer_date_idx', 'invoices_receiver_date_idx')`,
    );
    expect(perPartition.n).toBe(2 * perPartition.parts);
    const again = await cli(['index']);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('nothing to do');
  });

  it('a partition created later gets the indexes too', async () => {
    expect((await cli(['partition', '--as-of', '2029-06-01', '--ahead', '0'])).code).toBe(0);
    const r = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = 'invoices_p2029_06'`,
    );
    expect(r.n).toBe(3); // primary key + the two covering indexes
  });

  it('the grouping query can be answered from the index alone', async () => {
    const plan = await withPg(db.url, async (c) => {
      await c.query('VACUUM ANALYZE invoices');
      await c.query('SET enable_seqscan = off');
      const { rows } = await c.query(
        "EXPLAIN SELECT issuer_id, sum(amount) FROM invoices WHERE issuer_id = 5 AND issue_date >= '2026-01-01' GROUP BY 1",
      );
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toContain('Index Only Scan using invoices_p2026_01_issuer_date_idx');
  });
});

describe('on a plain table', () => {
  let plain: TestDatabase;
  beforeAll(async () => {
    plain = await createDatabase();
    await withPg(plain.url, (c) =>
      c.query(`
      CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
      CREATE TABLE invoices (invoice_id bigint NOT NULL, issue_date timestamptz NOT NULL, issuer_id bigint NOT NULL,
                             receiver_id bigint NOT NULL, amount numeric(14,2) NOT NULL);
      INSERT INTO customers VALUES (1, 'A'), (2, 'B');
      INSERT INTO invoices VALUES (1, '2026-01-01', 1, 2, 5.00), (2, '2026-02-01', 2, 1, 6.00);`),
    );
  });
  afterAll(async () => {
    await plain?.drop();
  });

  it('partition refuses and points at --convert (exit 2)', async () => {
    const r = await runCli(['partition'], { env: { DATABASE_URL: plain.url } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('partition --convert');
  });

  it('index adds a unique index on invoice_id and the covering indexes, concurrently', async () => {
    const r = await runCli(['index', '--json'], { env: { DATABASE_URL: plain.url } });
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as Array<{ name: string }>).map((x) => x.name)).toEqual([
      'invoices_invoice_id_key',
      'invoices_issuer_date_idx',
      'invoices_receiver_date_idx',
    ]);
    const got = await runCli(['get', '2', '--json'], { env: { DATABASE_URL: plain.url } });
    expect(JSON.parse(got.stdout)).toMatchObject({ invoice_id: 2, amount: '6.00', issuer_name: 'B', receiver_name: 'A' });
  });
});
