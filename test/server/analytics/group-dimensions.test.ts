// `group --by country` and `--by segment`: the issuing customer's attribute, with the measures
// of `--by issuer`, exact and identical from every engine; customers without one (or issuers
// not in the customers table) grouped as `unknown`; a change of a customer's country after the
// export is seen by the lake engine; an adopted customers table without the column: exit 2.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adoptBilling,
  createDatabase,
  runCli,
  seedWithCli,
  tempDir,
  waitForHorizon,
  withPg,
  type TestDatabase,
} from '../../support/helpers.js';

let db: TestDatabase;
let lake: string;
const ARGS = ['--months', '4', '--as-of', '2025-05-15'];
const WINDOW = ['2025-02-01', '2025-06-01'];

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '60', '--invoices', '5000', '--months', '8', '--seed', '21', '--as-of', '2025-06-01']);
  lake = path.join(tempDir('dimensions-lake-'), 'lake');
  const r = await runCli(['export', '--out', lake, '--quiet'], { env: { DATABASE_URL: db.url } });
  if (r.code !== 0) throw new Error(r.stderr);
});

afterAll(async () => {
  await db?.drop();
});

async function group(by: string, engine: string): Promise<{ rows: Record<string, unknown>[]; stderr: string }> {
  const r = await runCli(['group', ...ARGS, '--by', by, '--engine', engine, '--lake', lake, '--json'], { env: { DATABASE_URL: db.url } });
  if (r.code !== 0) throw new Error(`group --by ${by} --engine ${engine} exited ${r.code}: ${r.stderr}`);
  return { rows: JSON.parse(r.stdout), stderr: r.stderr };
}

/** The same answer written by hand in SQL. */
const sqlAnswer = (column: string) =>
  withPg(
    db.url,
    async (c) =>
      (
        await c.query(
          `SELECT coalesce(nullif(c.${column}, ''), 'unknown') AS "${column}", count(*)::int AS invoices, sum(i.amount)::text AS total, round(avg(i.amount), 2)::text AS average
     FROM invoices i LEFT JOIN customers c ON c.id = i.issuer_id
    WHERE i.issue_date >= $1 AND i.issue_date < $2
    GROUP BY 1 ORDER BY sum(i.amount) DESC, 1`,
          WINDOW,
        )
      ).rows,
  );

async function everyEngineEqualsSql(by: string): Promise<Record<string, string>> {
  const expected = await sqlAnswer(by);
  const said: Record<string, string> = {};
  for (const engine of ['postgres', 'totals', 'duckdb', 'auto']) {
    const { rows, stderr } = await group(by, engine);
    expect(rows, `--by ${by} --engine ${engine}`).toEqual(expected);
    said[engine] = stderr;
  }
  return said;
}

describe.sequential('group --by country | segment', () => {
  it('--by country: every engine equals SQL, one row per country, the invoices of the window counted once', async () => {
    await everyEngineEqualsSql('country');
    const { rows } = await group('country', 'postgres');
    expect(rows.length).toBeGreaterThan(3);
    expect(Object.keys(rows[0])).toEqual(['country', 'invoices', 'total', 'average']);
    const n = await withPg(
      db.url,
      async (c) => (await c.query(`SELECT count(*)::int AS n FROM invoices WHERE issue_date >= $1 AND issue_date < $2`, WINDOW)).rows[0].n,
    );
    expect(rows.reduce((s, r) => s + Number(r.invoices), 0)).toBe(n);
  });

  it('--by segment: every engine equals SQL, with the seeded segments', async () => {
    await everyEngineEqualsSql('segment');
    const { rows } = await group('segment', 'totals');
    expect(rows.map((r) => r.segment).sort()).toEqual(expect.arrayContaining(['smb']));
    expect(rows.every((r) => ['enterprise', 'mid-market', 'smb', 'freelancer'].includes(String(r.segment)))).toBe(true);
  });

  it('customers without a country, an empty one and an issuer not in customers are `unknown`; the lake engine reads the change', async () => {
    await withPg(db.url, async (c) => {
      await c.query(`UPDATE customers SET country = NULL WHERE id IN (1, 2)`);
      await c.query(`UPDATE customers SET country = '' WHERE id = 3`);
      // An issuer id with no customer row: the foreign key would refuse it, so drop it for this test's table.
      await c.query(`ALTER TABLE invoices DROP CONSTRAINT invoices_issuer_fk`);
      await c.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-04-02T10:00:00Z', 999999, 4, 12.34)`);
    });
    await waitForHorizon(db.url);
    // The customers' statistics counters move within about a second of the commit.
    await new Promise((r) => setTimeout(r, 1500));
    const said = await everyEngineEqualsSql('country');
    const { rows } = await group('country', 'postgres');
    expect(rows.some((r) => r.country === 'unknown')).toBe(true);
    expect(said.duckdb).toContain("customers' country from PostgreSQL");
  });

  it("--top keeps the largest; --format csv has the dimension's header; a bad --by lists the dimensions (exit 2)", async () => {
    const all = (await group('segment', 'postgres')).rows;
    const top = await runCli(['group', ...ARGS, '--by', 'segment', '--top', '2', '--format', 'csv'], { env: { DATABASE_URL: db.url } });
    expect(top.code, top.stderr).toBe(0);
    const lines = top.stdout.trim().split('\n');
    expect(lines[0]).toBe('segment,invoices,total,average');
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual(all.slice(0, 2).map((r) => r.segment));
    const bad = await runCli(['group', ...ARGS, '--by', 'planet'], { env: { DATABASE_URL: db.url } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--by must be one of issuer, receiver, customer, country, segment, got "planet"');
  });
});

describe('an adopted customers table without the column', () => {
  it('--by country is a usage error that says what to map (exit 2); --by issuer still answers', async () => {
    const other = await createDatabase();
    try {
      const cwd = await adoptBilling(
        other.url,
        `
        INSERT INTO billing.clients (customer_name) SELECT 'client ' || g FROM generate_series(1, 5) g;
        INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd) SELECT timestamp '2026-01-01' + g * interval '1 hour', 1 + g % 5, 1 + (g + 1) % 5, g FROM generate_series(1, 50) g;`,
        'dimensions-adopted-',
      );
      const cli = (args: string[]) => runCli(args, { cwd, env: { DATABASE_URL: other.url } });
      const r = await cli(['group', '--months', '1', '--as-of', '2026-01-31', '--by', 'country', '--engine', 'postgres']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(
        /^invoices: --by country needs the customers' country: billing\.clients has no column "country" \(map it in the config file's "customers"\.columns, or group --by issuer\)$/m,
      );
      const ok = await cli(['group', '--months', '1', '--as-of', '2026-01-31', '--by', 'issuer', '--engine', 'postgres']);
      expect(ok.code, ok.stderr).toBe(0);
    } finally {
      await other.drop();
    }
  });
});
