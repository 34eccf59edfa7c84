// `invoices group`: every engine returns identical numbers on the same data, the window is the
// N calendar months ending with the month of --as-of, and auto stays exact when the lake is behind.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, withPg, type TestDatabase } from './helpers.js';

let db: TestDatabase;
let lake: string;

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '40', '--invoices', '4000', '--months', '8', '--seed', '11', '--as-of', '2025-06-01']);
  lake = path.join(tempDir('group-lake-'), 'lake');
  const r = await runCli(['export', '--out', lake, '--quiet'], { env: { DATABASE_URL: db.url } });
  if (r.code !== 0) throw new Error(r.stderr);
});

afterAll(async () => {
  await db?.drop();
});

const group = (args: string[]) => runCli(['group', '--lake', lake, ...args], { env: { DATABASE_URL: db.url } });
async function rows(args: string[]): Promise<Record<string, unknown>[]> {
  const r = await group([...args, '--json']);
  if (r.code !== 0) throw new Error(`group ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('invoices group', () => {
  it.each(['issuer', 'receiver', 'customer'])('--by %s: postgres, duckdb and auto return identical rows', async (by) => {
    const args = ['--months', '3', '--by', by, '--as-of', '2025-05-15'];
    const [p, d, a] = await Promise.all([rows([...args, '--engine', 'postgres']), rows([...args, '--engine', 'duckdb']), rows([...args, '--engine', 'auto'])]);
    expect(p.length).toBeGreaterThan(10);
    expect(d).toEqual(p);
    expect(a).toEqual(p);
  });

  it('the window is the N calendar months ending with the month of --as-of, and it is printed', async () => {
    const r = await group(['--months', '3', '--by', 'issuer', '--as-of', '2025-05-15', '--engine', 'postgres', '--json']);
    expect(r.stderr).toContain('window: 2025-03-01 .. 2025-05-31');
    const got = JSON.parse(r.stdout) as { customer_id: number; name: string; invoices: number; total: string; average: string }[];
    const expected = await withPg(db.url, async (c) => (await c.query(
      `SELECT i.issuer_id::int AS customer_id, c.name, count(*)::int AS invoices, sum(amount)::text AS total, round(avg(amount), 2)::text AS average
         FROM invoices i JOIN customers c ON c.id = i.issuer_id
        WHERE issue_date >= '2025-03-01T00:00:00Z' AND issue_date < '2025-06-01T00:00:00Z'
        GROUP BY 1, 2 ORDER BY sum(amount) DESC, 1`)).rows);
    expect(got).toEqual(expected);
    expect(got.every((x) => typeof x.total === 'string' && /^\d+\.\d\d$/.test(x.total))).toBe(true);
  });

  it('--by customer: issued + received = total, net = issued - received, invoices counted on both sides', async () => {
    const got = await rows(['--months', '8', '--by', 'customer', '--as-of', '2025-05-01', '--engine', 'duckdb']);
    const cents = (s: unknown) => BigInt(String(s).replace('.', ''));
    for (const r of got) {
      expect(cents(r.issued) + cents(r.received)).toBe(cents(r.total));
      expect(cents(r.issued) - cents(r.received)).toBe(cents(r.net));
    }
    const totalInvoices = got.reduce((n, r) => n + Number(r.invoices), 0);
    const all = await withPg(db.url, async (c) => Number((await c.query(`SELECT count(*) FROM invoices WHERE issue_date >= '2024-10-01' AND issue_date < '2025-06-01'`)).rows[0].count));
    expect(totalInvoices).toBe(2 * all);
  });

  it('--top K keeps the K largest totals; --format csv prints a header', async () => {
    const all = await rows(['--months', '3', '--by', 'receiver', '--as-of', '2025-05-15']);
    const top = await rows(['--months', '3', '--by', 'receiver', '--as-of', '2025-05-15', '--top', '5']);
    expect(top).toEqual(all.slice(0, 5));
    const csv = await group(['--months', '3', '--by', 'receiver', '--as-of', '2025-05-15', '--top', '2', '--format', 'csv']);
    expect(csv.code).toBe(0);
    const lines = csv.stdout.trim().split('\n');
    expect(lines[0]).toBe('customer_id,name,invoices,total,average');
    expect(lines).toHaveLength(3);
  });

  it('--chart draws bars; bad options exit 2', async () => {
    const chart = await group(['--months', '3', '--by', 'issuer', '--as-of', '2025-05-15', '--top', '3', '--chart']);
    expect(chart.code).toBe(0);
    expect(chart.stdout).toContain('█');
    expect(chart.stdout.trim().split('\n')).toHaveLength(4);
    for (const bad of [['--by', 'nobody'], ['--months', '0'], ['--engine', 'spark'], ['--as-of', '2025-02-30']]) {
      const r = await group(['--months', '3', '--by', 'issuer', ...bad]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
    }
  });

  it('without a lake: auto answers from PostgreSQL and says why; --engine duckdb is a usage error', async () => {
    const none = path.join(tempDir('nolake-'), 'lake');
    const a = await runCli(['group', '--lake', none, '--months', '2', '--by', 'issuer', '--as-of', '2025-05-15', '--json'], { env: { DATABASE_URL: db.url } });
    expect(a.code).toBe(0);
    expect(a.stderr).toMatch(/engine: postgres \(no lake at/);
    const d = await runCli(['group', '--lake', none, '--months', '2', '--by', 'issuer', '--engine', 'duckdb'], { env: { DATABASE_URL: db.url } });
    expect(d.code).toBe(2);
  });

  it('a lake behind PostgreSQL (new, updated and deleted rows) still gives exact numbers: the delta comes from PostgreSQL', async () => {
    await withPg(db.url, async (c) => {
      await c.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-04-02T00:00:00Z', 7, 8, 999999.99), ('2025-05-03T00:00:00Z', 9, 7, 0.01)`);
      await c.query(`UPDATE invoices SET amount = amount + 100 WHERE invoice_id = (SELECT min(invoice_id) FROM invoices WHERE issue_date >= '2025-03-01')`);
      await c.query(`DELETE FROM invoices WHERE invoice_id = (SELECT max(invoice_id) FROM invoices WHERE issue_date < '2025-04-01' AND created_xid < (SELECT min(created_xid) FROM invoices WHERE amount = 999999.99))`);
    });
    // Table statistics (which say a month was updated or deleted from) reach the server when a session ends.
    await new Promise((r) => setTimeout(r, 1500));
    for (const by of ['issuer', 'customer']) {
      const args = ['--months', '3', '--by', by, '--as-of', '2025-05-15'];
      const p = await rows([...args, '--engine', 'postgres']);
      const d = await group([...args, '--engine', 'duckdb', '--json']);
      expect(d.code).toBe(0);
      expect(JSON.parse(d.stdout)).toEqual(p);
      expect(d.stderr).toMatch(/2 row\(s\) not in the lake|row\(s\) not in the lake read from PostgreSQL/);
      expect(d.stderr).toContain('read whole from PostgreSQL');
      const a = await group([...args, '--json']);
      expect(JSON.parse(a.stdout)).toEqual(p);
      expect(a.stderr).toMatch(/engine: (duckdb|postgres) \(/);
    }
  });
});
