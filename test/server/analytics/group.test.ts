// `invoices group`: every engine returns identical numbers on the same data, the window is the
// N calendar months ending with the month of --as-of, and the totals and the lake stay exact when
// PostgreSQL moves on: inserts into old months, a transaction that commits late, updates, deletes.
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';

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
  it.each(['issuer', 'receiver', 'customer'])('--by %s: postgres, duckdb, totals and auto return identical rows', async (by) => {
    const args = ['--months', '3', '--by', by, '--as-of', '2025-05-15'];
    const [p, d, t, a] = await Promise.all(['postgres', 'duckdb', 'totals', 'auto'].map((e) => rows([...args, '--engine', e])));
    expect(p.length).toBeGreaterThan(10);
    expect(d).toEqual(p);
    expect(t).toEqual(p);
    expect(a).toEqual(p);
  });

  it('the window is the N calendar months ending with the month of --as-of, and it is printed', async () => {
    const r = await group(['--months', '3', '--by', 'issuer', '--as-of', '2025-05-15', '--engine', 'postgres', '--json']);
    expect(r.stderr).toContain('window: 2025-03-01 .. 2025-05-31');
    const got = JSON.parse(r.stdout) as { customer_id: number; name: string; invoices: number; total: string; average: string }[];
    const expected = await withPg(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT i.issuer_id::int AS customer_id, c.name, count(*)::int AS invoices, sum(amount)::text AS total, round(avg(amount), 2)::text AS average
         FROM invoices i JOIN customers c ON c.id = i.issuer_id
        WHERE issue_date >= '2025-03-01T00:00:00Z' AND issue_date < '2025-06-01T00:00:00Z'
        GROUP BY 1, 2 ORDER BY sum(amount) DESC, 1`,
          )
        ).rows,
    );
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
    const all = await withPg(db.url, async (c) =>
      Number((await c.query(`SELECT count(*) FROM invoices WHERE issue_date >= '2024-10-01' AND issue_date < '2025-06-01'`)).rows[0].count),
    );
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
    for (const bad of [
      ['--by', 'nobody'],
      ['--months', '0'],
      ['--engine', 'spark'],
      ['--as-of', '2025-02-30'],
    ]) {
      const r = await group(['--months', '3', '--by', 'issuer', ...bad]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
    }
  });

  it('without a lake: auto answers from the monthly totals and says how fresh; --engine duckdb is a usage error', async () => {
    const none = path.join(tempDir('nolake-'), 'lake');
    const a = await runCli(['group', '--lake', none, '--months', '2', '--by', 'issuer', '--as-of', '2025-05-15', '--json'], {
      env: { DATABASE_URL: db.url },
    });
    expect(a.code).toBe(0);
    expect(a.stderr).toMatch(
      /engine: totals \(monthly totals refreshed from watermark \d+ to \d+: 0 invoice\(s\) added; 0 row\(s\) above the watermark read live; no lake at /,
    );
    const d = await runCli(['group', '--lake', none, '--months', '2', '--by', 'issuer', '--engine', 'duckdb'], {
      env: { DATABASE_URL: db.url },
    });
    expect(d.code).toBe(2);
  });

  it('the totals table is plain SQL: per party, month and customer, exact numeric sums, and its watermark', async () => {
    const cols = await withPg(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'invoice_monthly_totals' ORDER BY ordinal_position`,
          )
        ).rows,
    );
    expect(cols).toEqual([
      { column_name: 'source_id', data_type: 'bigint' },
      { column_name: 'party', data_type: 'text' },
      { column_name: 'month', data_type: 'date' },
      { column_name: 'customer_id', data_type: 'bigint' },
      { column_name: 'invoices', data_type: 'integer' },
      { column_name: 'amount', data_type: 'numeric' },
    ]);
    // The totals of each month equal the raw rows of that month.
    const diff = await withPg(
      db.url,
      async (c) =>
        (
          await c.query(`
      SELECT m FROM (SELECT date_trunc('month', issue_date AT TIME ZONE 'UTC')::date AS m, count(*) AS n, sum(amount) AS s FROM invoices GROUP BY 1) r
        FULL JOIN (SELECT month AS m, party, sum(invoices) AS n, sum(amount) AS s FROM invoice_monthly_totals GROUP BY 1, 2) t USING (m)
       WHERE r.n IS DISTINCT FROM t.n OR r.s IS DISTINCT FROM t.s`)
        ).rows,
    );
    const parties = await withPg(db.url, async (c) =>
      (await c.query(`SELECT DISTINCT party FROM invoice_monthly_totals ORDER BY 1`)).rows.map((r) => r.party),
    );
    expect(parties).toEqual(['issuer', 'receiver']);
    expect(diff).toEqual([]);
    const state = await withPg(db.url, async (c) => (await c.query(`SELECT watermark::text AS w FROM invoice_monthly_totals_state`)).rows);
    expect(state).toHaveLength(1);
    expect(state[0].w).toMatch(/^\d+$/);
  });

  /** Every engine for every --by equals the GROUP BY on the live table; returns the totals engine's stderr (the first: the one that refreshed). */
  async function allEnginesEqual(asOf = '2025-05-15', months = '3'): Promise<string[]> {
    const stderr: string[] = [];
    for (const by of ['issuer', 'receiver', 'customer']) {
      const args = ['--months', months, '--by', by, '--as-of', asOf];
      const p = await rows([...args, '--engine', 'postgres']);
      for (const engine of ['totals', 'duckdb', 'auto']) {
        const r = await group([...args, '--engine', engine, '--json']);
        expect(r.code, `${engine} --by ${by}: ${r.stderr}`).toBe(0);
        expect(JSON.parse(r.stdout), `${engine} --by ${by}`).toEqual(p);
        if (engine === 'totals') stderr.push(r.stderr);
      }
    }
    return stderr;
  }
  // Other test files share the server: a transaction of theirs still open holds the horizon (the
  // totals' next watermark) below what these tests just committed; wait until it has passed it.
  const horizonPassed = () => waitForHorizon(db.url);

  it('inserts into old months are added incrementally; a transaction that commits late is read live, then added', async () => {
    await withPg(db.url, (c) =>
      c.query(
        `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-03-02T00:00:00Z', 7, 8, 999999.99), ('2025-04-03T00:00:00Z', 9, 7, 0.01)`,
      ),
    );
    // Other test files share the server: one of their transactions still open would hold these rows above the horizon.
    await waitForHorizon(db.url);
    let stderr = await allEnginesEqual();
    expect(stderr[0]).toMatch(/engine: totals \(monthly totals refreshed from watermark \d+ to \d+: 2 invoice\(s\) added/);
    // A begins and inserts first; B inserts and commits while A is still open.
    const a = new pg.Client({ connectionString: db.url });
    await a.connect();
    try {
      await a.query('BEGIN');
      await a.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-03-20T00:00:00Z', 3, 4, 500.05)`);
      await withPg(db.url, (b) =>
        b.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-05-01T00:00:00Z', 4, 3, 70.70)`),
      );
      // B is committed but above the watermark (A holds the horizon back): read live, not yet in the totals.
      stderr = await allEnginesEqual();
      expect(stderr[0]).toMatch(/0 invoice\(s\) added; 1 row\(s\) above the watermark read live/);
      await a.query('COMMIT');
    } finally {
      await a.end();
    }
    await waitForHorizon(db.url);
    stderr = await allEnginesEqual();
    expect(stderr[0]).toMatch(/2 invoice\(s\) added; 0 row\(s\) above the watermark read live/);
  });

  it('an update that keeps every count and sum (the issuer changes) and a delete: their months are recomputed whole', async () => {
    await withPg(db.url, async (c) => {
      // Swap the parties of one invoice: the month's count and sum stay the same.
      await c.query(
        `UPDATE invoices SET issuer_id = receiver_id, receiver_id = issuer_id WHERE invoice_id = (SELECT min(invoice_id) FROM invoices WHERE issue_date >= '2025-04-01' AND issue_date < '2025-05-01')`,
      );
    });
    await horizonPassed();
    let stderr = await allEnginesEqual();
    expect(stderr[0]).toContain('months 2025-04 recomputed (rows updated or deleted since the last refresh)');
    await withPg(db.url, (c) =>
      c.query(
        `DELETE FROM invoices WHERE invoice_id = (SELECT max(invoice_id) FROM invoices WHERE issue_date >= '2025-03-01' AND issue_date < '2025-04-01')`,
      ),
    );
    await horizonPassed();
    stderr = await allEnginesEqual();
    expect(stderr[0]).toMatch(/months 2025-03 recomputed/);
    // Nothing changed since: nothing recomputed, nothing added.
    stderr = await allEnginesEqual();
    expect(stderr[0]).toMatch(/0 invoice\(s\) added; 0 row\(s\)/);
    expect(stderr[0]).not.toContain('recomputed');
  });

  it('an update that moves an invoice to another month is seen in both months', async () => {
    await withPg(db.url, (c) =>
      c.query(
        `UPDATE invoices SET issue_date = '2025-05-10T00:00:00Z' WHERE invoice_id = (SELECT min(invoice_id) FROM invoices WHERE issue_date >= '2025-03-01' AND issue_date < '2025-04-01')`,
      ),
    );
    await horizonPassed();
    const stderr = await allEnginesEqual();
    expect(stderr[0]).toMatch(/months 2025-03, 2025-05 recomputed/);
  });

  it('a partition detached (retention) and attached back: only its month is recomputed, numbers stay exact', async () => {
    await withPg(db.url, (c) => c.query(`ALTER TABLE invoices DETACH PARTITION invoices_p2025_02`));
    let stderr = await allEnginesEqual('2025-05-15', '6');
    expect(stderr[0]).toMatch(/months 2025-02 recomputed/);
    expect(stderr[0]).not.toContain('from scratch');
    await withPg(db.url, (c) =>
      c.query(
        `ALTER TABLE invoices ATTACH PARTITION invoices_p2025_02 FOR VALUES FROM ('2025-02-01T00:00:00Z') TO ('2025-03-01T00:00:00Z')`,
      ),
    );
    stderr = await allEnginesEqual('2025-05-15', '6');
    expect(stderr[0]).toMatch(/months 2025-02 recomputed/);
  });

  it('a role that may read the invoices but not write the totals: auto still answers, and says why; --engine totals fails', async () => {
    const role = `${db.name}_reader`;
    await rows(['--months', '1', '--by', 'issuer', '--as-of', '2025-05-15', '--engine', 'totals']);
    await withPg(db.url, (c) =>
      c.query(
        `CREATE ROLE ${role} LOGIN PASSWORD 'reader'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}; REVOKE ALL ON invoice_monthly_totals, invoice_monthly_totals_state FROM ${role}`,
      ),
    );
    try {
      const u = new URL(db.url);
      u.username = role;
      u.password = 'reader';
      // No lake, so that auto turns to the totals (a fresh lake would answer first).
      const args = [
        'group',
        '--lake',
        path.join(tempDir('nolake-'), 'lake'),
        '--months',
        '3',
        '--by',
        'issuer',
        '--as-of',
        '2025-05-15',
        '--json',
      ];
      const a = await runCli(args, { env: { DATABASE_URL: u.toString() } });
      expect(a.code, a.stderr).toBe(0);
      expect(a.stderr).toMatch(/warning: the monthly totals cannot be refreshed \(permission denied/);
      expect(a.stderr).toMatch(/engine: postgres \(the monthly totals cannot be refreshed.*; no lake at /);
      expect(JSON.parse(a.stdout)).toEqual(
        await rows(['--months', '3', '--by', 'issuer', '--as-of', '2025-05-15', '--engine', 'postgres']),
      );
      const t = await runCli([...args, '--engine', 'totals'], { env: { DATABASE_URL: u.toString() } });
      expect(t.code).toBe(1);
      expect(t.stderr).toMatch(/permission denied/);
    } finally {
      await withPg(db.url, (c) => c.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`));
    }
  });

  it('refreshes running at the same time serialise on an advisory lock and agree', async () => {
    await withPg(db.url, (c) =>
      c.query(
        `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) SELECT '2025-05-02T00:00:00Z'::timestamptz + g * interval '1 minute', 1 + g % 9, 10 + g % 7, g FROM generate_series(1, 200) g`,
      ),
    );
    await waitForHorizon(db.url);
    const args = ['--months', '3', '--by', 'customer', '--as-of', '2025-05-15', '--engine', 'totals', '--json'];
    const runs = await Promise.all([group(args), group(args), group(args)]);
    const p = await rows(['--months', '3', '--by', 'customer', '--as-of', '2025-05-15', '--engine', 'postgres']);
    for (const r of runs) {
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(p);
    }
    // Exactly one of them added the 200 invoices.
    expect(runs.filter((r) => /200 invoice\(s\) added/.test(r.stderr))).toHaveLength(1);
  });
});
