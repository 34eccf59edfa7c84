// export, group (every engine), query and join on a table an application created, read through
// the config file's mapping: its own names, a timestamp without time zone read as UTC, its own
// numeric scale kept as DECIMAL, customers with only an id and a name; first without created_xid
// (full snapshots, the postgres engine, and advice), then with it (incremental, totals).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adoptBilling, createDatabase, runCli, withPg, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
let cwd: string;
let lake: string;
// A zone far from UTC: nothing may depend on the machine's.
const cli = (args: string[]) => runCli(args, { cwd, env: { DATABASE_URL: db.url, TZ: 'America/New_York' } });
async function json(args: string[]): Promise<Record<string, unknown>[]> {
  const r = await cli([...args, '--json']);
  if (r.code !== 0) throw new Error(`${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

beforeAll(async () => {
  db = await createDatabase();
  cwd = await adoptBilling(
    db.url,
    `
    INSERT INTO billing.clients (customer_name) SELECT 'client ' || g FROM generate_series(1, 12) g;
    INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd)
      SELECT timestamp '2026-01-01' + g * interval '37 minutes 11.123456 seconds', 1 + g % 12, 1 + (g + 1 + g % 5) % 12, (g * 7.919) % 5000
        FROM generate_series(1, 6000) g WHERE 1 + g % 12 <> 1 + (g + 1 + g % 5) % 12;
    -- The last instant of a month in UTC: a reader in another time zone would put it in the next month.
    INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd) VALUES ('2026-03-31 23:59:59.999999', 1, 2, 0.001);`,
    'adopted-analytics-',
  );
  lake = path.join(cwd, 'lake');
});

afterAll(async () => {
  await db?.drop();
});

/** Per month (the stored timestamp read as UTC): count and sum at the column's scale. */
const pgMonths = () =>
  withPg(db.url, async (c) =>
    Object.fromEntries(
      (
        await c.query<{ m: string; n: string; s: string }>(
          `SELECT to_char(issued_at, 'YYYY-MM') AS m, count(*)::text AS n, sum(amount_usd)::text AS s FROM billing.invoice GROUP BY 1 ORDER BY 1`,
        )
      ).rows.map((r) => [r.m, { n: r.n, s: r.s }]),
    ),
  );

/** The GROUP BY by issuer over [from, to) written by hand against the application's names. */
const expectedByIssuer = (from: string, to: string) =>
  withPg(
    db.url,
    async (c) =>
      (
        await c.query(
          `SELECT i.from_client::text AS customer_id, c.customer_name AS name, count(*)::text AS invoices, sum(amount_usd)::text AS total
     FROM billing.invoice i JOIN billing.clients c ON c.client_id = i.from_client
    WHERE issued_at >= $1 AND issued_at < $2 GROUP BY i.from_client, c.customer_name ORDER BY sum(amount_usd) DESC, i.from_client`,
          [from, to],
        )
      ).rows,
  );

describe('analytics on an adopted table without created_xid', () => {
  it("export writes a full snapshot with the table's own scale and UTC timestamps, and says what is missing", async () => {
    const r = await cli(['export', '--out', lake, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('billing.invoice has no created_xid column');
    expect(r.stderr).toContain('invoices risk init');
    const out = JSON.parse(r.stdout) as { month: string; rows: number; sum: string }[];
    const expected = await pgMonths();
    expect(Object.fromEntries(out.map((m) => [m.month, { n: String(m.rows), s: m.sum }]))).toEqual(expected);
    const conn = await (await DuckDBInstance.create(':memory:')).connect();
    try {
      const schema = (
        await conn.runAndReadAll(`SELECT name, converted_type, precision::VARCHAR AS p, scale::VARCHAR AS s
        FROM parquet_schema('${lake}/invoices/month=2026-03/*.parquet') WHERE name = 'amount'`)
      ).getRowObjectsJson();
      expect(schema).toEqual([{ name: 'amount', converted_type: 'DECIMAL', p: '12', s: '3' }]);
      const last = (
        await conn.runAndReadAll(`SELECT strftime(issue_date AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f') AS t, CAST(amount AS VARCHAR) AS a
        FROM read_parquet('${lake}/invoices/*/*.parquet') WHERE amount = 0.001`)
      ).getRowObjectsJson();
      expect(last).toEqual([{ t: '2026-03-31 23:59:59.999999', a: '0.001' }]);
      const customers = (
        await conn.runAndReadAll(
          `SELECT id::VARCHAR AS id, name, email FROM read_parquet('${lake}/customers/*.parquet') ORDER BY id LIMIT 1`,
        )
      ).getRowObjectsJson();
      expect(customers).toEqual([{ id: '1', name: 'client 1', email: null }]);
    } finally {
      conn.closeSync();
    }
    // Every run is a full snapshot until created_xid exists, and --verify agrees.
    const again = await cli(['export', '--out', lake, '--verify', '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('match PostgreSQL exactly');
  });

  it('query and join read that lake', async () => {
    const q = await json([
      'query',
      `SELECT month, count(*) AS n, sum(amount) AS s FROM invoices GROUP BY month ORDER BY month`,
      '--lake',
      lake,
    ]);
    const expected = await pgMonths();
    expect(Object.fromEntries(q.map((r) => [r.month, { n: String(r.n), s: String(r.s) }]))).toEqual(expected);
    const side = path.join(cwd, 'tiers.csv');
    writeFileSync(side, 'client,tier\n1,gold\n2,gold\n3,silver\n99,none\n');
    const j = await json(['join', '--with', `tiers=${side}`, '--on', 'client=id', '--by', 'tier', '--lake', lake]);
    const gold = await withPg(
      db.url,
      async (c) =>
        (await c.query(`SELECT count(*)::text AS n, sum(amount_usd)::text AS s FROM billing.invoice WHERE from_client IN (1, 2)`)).rows[0],
    );
    expect(j.find((r) => r.tier === 'gold')).toMatchObject({ customers: 2, invoices: Number(gold.n), total: gold.s });
  });

  it('group: postgres follows the mapping; totals exits 2 with the advice; auto answers from PostgreSQL and says why', async () => {
    const args = ['group', '--months', '2', '--by', 'issuer', '--as-of', '2026-03-10', '--lake', lake];
    const p = await json([...args, '--engine', 'postgres']);
    const expected = await expectedByIssuer('2026-02-01', '2026-04-01');
    expect(p.map((r) => ({ customer_id: String(r.customer_id), name: r.name, invoices: String(r.invoices), total: r.total }))).toEqual(
      expected,
    );
    expect(p.every((r) => /^\d+\.\d{3}$/.test(String(r.total)) && /^\d+\.\d{3}$/.test(String(r.average)))).toBe(true);
    const t = await cli([...args, '--engine', 'totals']);
    expect(t.code).toBe(2);
    expect(t.stderr).toContain('invoices risk init');
    const a = await cli([...args, '--json']);
    expect(a.code).toBe(0);
    expect(JSON.parse(a.stdout)).toEqual(p);
    expect(a.stderr).toMatch(/engine: postgres \(billing\.invoice has no created_xid column .*invoices risk init/);
    // The lake is a snapshot without a watermark: asked for explicitly, duckdb answers and says how stale it may be.
    const d = await cli([...args, '--engine', 'duckdb', '--json']);
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout)).toEqual(p);
    expect(d.stderr).toContain('are NOT in this answer');
  });
});

describe('analytics on an adopted table after `invoices risk init` (created_xid and the change log)', () => {
  beforeAll(async () => {
    const r = await cli(['risk', 'init']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('invoice_changes_track');
  });

  it('every engine returns the same rows for every --by, before and after new, updated and deleted invoices', async () => {
    const r = await cli(['export', '--out', lake, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const check = async () => {
      for (const by of ['issuer', 'receiver', 'customer']) {
        const args = ['group', '--months', '3', '--by', by, '--as-of', '2026-03-31', '--lake', lake];
        const p = await json([...args, '--engine', 'postgres']);
        expect(p.length).toBeGreaterThan(5);
        for (const engine of ['totals', 'duckdb', 'auto'])
          expect(await json([...args, '--engine', engine]), `${engine} --by ${by}`).toEqual(p);
      }
    };
    await check();
    await withPg(db.url, async (c) => {
      await c.query(
        `INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd) VALUES ('2026-01-15 12:00:00', 3, 4, 1000.555)`,
      );
      await c.query(`UPDATE billing.invoice SET from_client = to_client, to_client = from_client WHERE id = 10`);
      await c.query(`DELETE FROM billing.invoice WHERE id = 20`);
    });
    await new Promise((res) => setTimeout(res, 1500));
    await check();
    const t = await cli(['group', '--months', '3', '--by', 'issuer', '--as-of', '2026-03-31', '--engine', 'totals']);
    expect(t.stderr).toMatch(/engine: totals/);
    // Totals sit beside the application's table, in its schema.
    const where = await withPg(
      db.url,
      async (c) => (await c.query(`SELECT to_regclass('billing.invoice_monthly_totals') IS NOT NULL AS ok`)).rows[0].ok,
    );
    expect(where).toBe(true);
    // The lake, now incremental, agrees with PostgreSQL.
    const v = await cli(['export', '--out', lake, '--verify', '--json']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stderr).toMatch(/watermark \d+/);
  });
});
