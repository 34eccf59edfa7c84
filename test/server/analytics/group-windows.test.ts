// The window totals of `group --engine totals` (src/analytics/totals-windows.ts): a window asked
// for is kept summed per customer and maintained by every refresh, so the answer reads its rows
// and `--top K` reads K of them. Checked here against SQL on the live table: each kept window
// through inserts, a customer deleted out of it and rows read live (with --top too), the
// windows nobody asked for lately dropped, and the plan of a top K.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totalsAggregate } from '../../../src/analytics/totals.js';
import { monthWindow } from '../../../src/analytics/window.js';
import { DEFAULT_TABLES } from '../../../src/tables.js';
import { describeTable } from '../../../src/table/describe.js';
import { createDatabase, runCli, seedWithCli, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';

interface PlanNode {
  Plans?: PlanNode[];
  'Index Name'?: string;
  'Actual Rows'?: number;
}

let db: TestDatabase;
const AS_OF = '2025-05-15';

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '60', '--invoices', '6000', '--months', '10', '--seed', '5', '--as-of', '2025-06-01']);
});

afterAll(async () => {
  await db?.drop();
});

async function group(args: string[]): Promise<{ rows: Record<string, unknown>[]; stderr: string }> {
  const r = await runCli(['group', '--by', 'issuer', '--as-of', AS_OF, '--json', ...args], { env: { DATABASE_URL: db.url } });
  if (r.code !== 0) throw new Error(`group ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return { rows: JSON.parse(r.stdout), stderr: r.stderr };
}

/** The totals engine and the GROUP BY on the live table agree (and the totals' answer is returned). */
async function totalsEqualsSql(args: string[]): Promise<string> {
  const t = await group([...args, '--engine', 'totals']);
  const p = await group([...args, '--engine', 'postgres']);
  expect(p.rows.length).toBeGreaterThan(0);
  expect(t.rows).toEqual(p.rows);
  return t.stderr;
}

/** Rows of the kept windows that differ from a GROUP BY of their months on the live table (none expected). */
async function windowDrift(c: pg.Client): Promise<unknown[]> {
  const { rows } = await c.query(`
    WITH live AS (
      SELECT k.first_month, k.last_month, p.party, p.customer_id, count(*) AS invoices, sum(i.amount) AS amount
        FROM invoice_totals_windows k
        JOIN invoices i ON i.issue_date >= k.first_month::timestamp AT TIME ZONE 'UTC'
                       AND i.issue_date < (k.last_month + interval '1 month')::timestamp AT TIME ZONE 'UTC'
        CROSS JOIN LATERAL (VALUES ('issuer', i.issuer_id), ('receiver', i.receiver_id)) p(party, customer_id)
       GROUP BY 1, 2, 3, 4)
    SELECT * FROM (SELECT first_month, last_month, party, customer_id, invoices, amount FROM invoice_window_totals) w
      FULL JOIN live l USING (first_month, last_month, party, customer_id)
     WHERE w.invoices IS DISTINCT FROM l.invoices OR w.amount IS DISTINCT FROM l.amount`);
  return rows;
}

describe('window totals', () => {
  it('a window asked for is kept, and maintained through inserts, a customer deleted out of it, and updates', async () => {
    await totalsEqualsSql(['--months', '3']);
    await totalsEqualsSql(['--months', '6']);
    await withPg(db.url, async (c) => {
      expect((await c.query('SELECT to_char(first_month, $1) AS f FROM invoice_totals_windows ORDER BY 1', ['YYYY-MM'])).rows).toEqual([
        { f: '2024-12' },
        { f: '2025-03' },
      ]);
      expect(await windowDrift(c)).toEqual([]);
      // Inserts in an old month and in the window; every invoice of one issuer in the window deleted; an amount changed.
      await c.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount)
                     VALUES ('2025-01-05T00:00:00Z', 12, 13, 1234.56), ('2025-04-05T00:00:00Z', 13, 12, 0.07)`);
      await c.query(`DELETE FROM invoices WHERE issuer_id = 21 AND issue_date >= '2025-03-01' AND issue_date < '2025-06-01'`);
      await c.query(
        `UPDATE invoices SET amount = amount + 100 WHERE invoice_id = (SELECT min(invoice_id) FROM invoices WHERE issue_date >= '2025-05-01')`,
      );
    });
    await waitForHorizon(db.url);
    const stderr = await totalsEqualsSql(['--months', '3']);
    // The January insert is added; the April one is counted by its month, recomputed for the delete and update.
    expect(stderr).toMatch(/1 invoice\(s\) added; months 2025-03, 2025-04, 2025-05 recomputed/);
    const three = await group(['--months', '3', '--engine', 'totals']);
    expect(three.rows.some((r) => r.customer_id === 21)).toBe(false);
    await totalsEqualsSql(['--months', '6']);
    await withPg(db.url, async (c) => {
      expect(await windowDrift(c)).toEqual([]);
      expect(Number((await c.query('SELECT count(*) FROM invoice_window_totals WHERE invoices <= 0')).rows[0].count)).toBe(0);
    });
  });

  it('--top K with rows above the watermark read live: a customer they lift into the top is there, as in SQL', async () => {
    const before = await group(['--months', '3', '--engine', 'totals', '--top', '3']);
    const outside = (await group(['--months', '3', '--engine', 'postgres'])).rows.at(-1)!.customer_id as number;
    expect(before.rows.map((r) => r.customer_id)).not.toContain(outside);
    // A holds the horizon back; B's invoice (a large one, for the smallest issuer) commits above the watermark.
    const a = new pg.Client({ connectionString: db.url });
    await a.connect();
    try {
      await a.query('BEGIN');
      await a.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-04-20T00:00:00Z', 1, 2, 1.00)`);
      await withPg(db.url, (b) =>
        b.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-05-02T00:00:00Z', $1, 2, 99999999.99)`, [
          outside,
        ]),
      );
      const stderr = await totalsEqualsSql(['--months', '3', '--top', '3']);
      expect(stderr).toMatch(/[1-9]\d* row\(s\) above the watermark read live/);
      expect((await group(['--months', '3', '--engine', 'totals', '--top', '3'])).rows[0].customer_id).toBe(outside);
      await totalsEqualsSql(['--months', '3']);
      await a.query('COMMIT');
    } finally {
      await a.end();
    }
    await waitForHorizon(db.url);
    await totalsEqualsSql(['--months', '3', '--top', '3']);
    await withPg(db.url, async (c) => expect(await windowDrift(c)).toEqual([]));
  });

  it('keeps at most 8 windows: the least recently used is dropped, and built again when asked for', async () => {
    for (let months = 1; months <= 9; months++) await group(['--months', String(months), '--engine', 'totals', '--top', '1']);
    await withPg(db.url, async (c) => {
      const kept = (await c.query(`SELECT to_char(first_month, 'YYYY-MM') AS f FROM invoice_totals_windows ORDER BY first_month`)).rows;
      expect(kept).toHaveLength(8);
      expect(kept.map((r) => r.f)).not.toContain('2025-05'); // --months 1, the least recently used
      const orphans = await c.query(
        `SELECT count(*) FROM invoice_window_totals w WHERE NOT EXISTS (SELECT 1 FROM invoice_totals_windows k WHERE (k.source_id, k.first_month, k.last_month) = (w.source_id, w.first_month, w.last_month))`,
      );
      expect(Number(orphans.rows[0].count)).toBe(0);
    });
    await totalsEqualsSql(['--months', '1']);
  });

  it('a top K reads K rows of the rank index, and no monthly row', async () => {
    await withPg(db.url, async (c) => {
      const source = await describeTable(c, DEFAULT_TABLES);
      const window = monthWindow(3, AS_OF);
      const { rows } = await c.query(
        `EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM (${totalsAggregate(source, 'issuer', window, '1', { live: 0, top: 5 })}) g ORDER BY g.s DESC, g.id LIMIT 5`,
      );
      const plan = JSON.stringify(rows[0]['QUERY PLAN']);
      expect(plan).not.toContain('invoice_monthly_totals');
      expect(plan).not.toContain('"Sort"');
      const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];
      const scan = nodes(rows[0]['QUERY PLAN'][0].Plan).find((n) => n['Index Name'] === 'invoice_window_totals_rank');
      expect(scan?.['Actual Rows']).toBe(5);
    });
  });
});
