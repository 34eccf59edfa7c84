// Derived data bound to its source (issue 10): after the ordinary events of real life -- a
// reseed with other rows, a TRUNCATE of one partition, an UPDATE committed just before the
// question, a second invoices table in the same database -- every engine of `group` answers
// exactly what SQL on the live table answers, and says what it rebuilt.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
let lake: string;
const AS_OF = '2026-06-15';
const SEED = ['--customers', '300', '--months', '12', '--as-of', AS_OF];
const WINDOW = { from: '2025-07-01T00:00:00Z', to: '2026-07-01T00:00:00Z' };

beforeAll(async () => {
  db = await createDatabase();
  lake = path.join(tempDir('lineage-lake-'), 'lake');
});

afterAll(async () => {
  await db?.drop();
});

const env = () => ({ DATABASE_URL: db.url });
const cli = (args: string[], cwd?: string) => runCli(args, { env: env(), cwd });

/** `group --months 12 --by issuer` with one engine, as JSON rows, plus its stderr. */
async function group(engine: string, cwd?: string): Promise<{ rows: Record<string, unknown>[]; stderr: string }> {
  const r = await cli(['group', '--months', '12', '--by', 'issuer', '--as-of', AS_OF, '--lake', lake, '--engine', engine, '--json'], cwd);
  if (r.code !== 0) throw new Error(`group --engine ${engine} exited ${r.code}: ${r.stderr}`);
  return { rows: JSON.parse(r.stdout), stderr: r.stderr };
}

/** The same answer straight from SQL on the live table. */
async function sqlAnswer(table = 'invoices', url = db.url): Promise<Record<string, unknown>[]> {
  return withPg(
    url,
    async (c) =>
      (
        await c.query(
          `SELECT i.issuer_id::int AS customer_id, c.name, count(*)::int AS invoices, sum(amount)::text AS total, round(avg(amount), 2)::text AS average
       FROM ${table} i JOIN customers c ON c.id = i.issuer_id
      WHERE issue_date >= $1 AND issue_date < $2
      GROUP BY 1, 2 ORDER BY sum(amount) DESC, 1`,
          [WINDOW.from, WINDOW.to],
        )
      ).rows,
  );
}

/** Every engine equals SQL; returns each engine's stderr. */
async function everyEngineExact(): Promise<Record<string, string>> {
  const expected = await sqlAnswer();
  expect(expected.length).toBeGreaterThan(10);
  const said: Record<string, string> = {};
  for (const engine of ['postgres', 'totals', 'duckdb', 'auto']) {
    const { rows, stderr } = await group(engine);
    expect(rows, `engine ${engine}`).toEqual(expected);
    said[engine] = stderr;
  }
  return said;
}

describe.sequential('derived data follows its source', () => {
  it('a reseed with other rows: every engine equals SQL, and the totals say they were rebuilt', async () => {
    await seedWithCli(db.url, [...SEED, '--invoices', '30000', '--seed', '1']);
    expect((await cli(['export', '--out', lake, '--quiet'])).code).toBe(0);
    await everyEngineExact();

    await seedWithCli(db.url, [...SEED, '--invoices', '20000', '--seed', '2', '--truncate']);
    const said = await everyEngineExact();
    // The reseed truncated every partition: the totals recompute every month they held.
    expect(said.totals).toMatch(/monthly totals of public\.invoices: recomputing .*truncated or rewritten/);
    // The lake still holds the old rows: its months are read from PostgreSQL, and auto says why it passed it over.
    expect(said.duckdb).toMatch(/read whole from PostgreSQL \(.*truncated or rewritten/);
    expect(said.auto).toMatch(/engine: totals .*the lake is stale for 12 of the 12 months/);
    const total = await withPg(
      db.url,
      async (c) =>
        (await c.query(`SELECT count(*)::int AS n FROM invoices WHERE issue_date >= $1 AND issue_date < $2`, [WINDOW.from, WINDOW.to]))
          .rows[0].n,
    );
    const { rows } = await group('totals');
    expect(rows.reduce((n, r) => n + Number(r.invoices), 0)).toBe(total);
  });

  it('an export after the reseed rewrites every month, and the lake answers alone again', async () => {
    const r = await cli(['export', '--out', lake, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const months = JSON.parse(r.stdout) as { month: string; action: string; reason: string }[];
    expect(months.filter((m) => m.action === 'unchanged')).toEqual([]);
    const said = await everyEngineExact();
    expect(said.duckdb).toMatch(/0 row\(s\) not in the lake/);
    expect(said.duckdb).not.toMatch(/read whole from PostgreSQL/);
  });

  it('TRUNCATE of one partition: only its month is recomputed, and every engine equals SQL', async () => {
    await withPg(db.url, (c) => c.query('TRUNCATE invoices_p2026_03'));
    const said = await everyEngineExact();
    expect(said.totals).toMatch(/recomputing 2026-03 \(invoices_p2026_03 truncated or rewritten\)/);
    expect(said.duckdb).toMatch(/months 2026-03 read whole from PostgreSQL/);
    const r = await cli(['export', '--out', lake, '--json']);
    const written = (JSON.parse(r.stdout) as { month: string; action: string }[])
      .filter((m) => m.action !== 'unchanged')
      .map((m) => m.month);
    expect(written).toEqual(['2026-03']);
  });

  it('an UPDATE committed just before the question counts at once, every time', async () => {
    for (let i = 0; i < 4; i++) {
      await withPg(db.url, (c) =>
        c.query(
          `UPDATE invoices SET amount = amount + 7.00 WHERE invoice_id = (SELECT min(invoice_id) + $1 FROM invoices WHERE issue_date >= '2025-09-01')`,
          [i],
        ),
      );
      const expected = await sqlAnswer();
      for (const engine of ['totals', 'duckdb']) expect((await group(engine)).rows, `${engine}, update ${i}`).toEqual(expected);
    }
  });
});

describe.sequential('two invoices tables in one database', () => {
  let cwd: string;

  beforeAll(async () => {
    // A second table in the same schema, mapped through a config file: same customers, other invoices.
    await withPg(db.url, (c) =>
      c.query(`
      CREATE TABLE public.other_invoices (invoice_id bigint PRIMARY KEY, issue_date timestamptz NOT NULL, issuer_id bigint NOT NULL,
                                          receiver_id bigint NOT NULL, amount numeric(14,2) NOT NULL);
      INSERT INTO public.other_invoices SELECT invoice_id, issue_date, receiver_id, issuer_id, amount * 3 FROM invoices WHERE invoice_id % 3 = 0`),
    );
    cwd = tempDir('other-');
    writeFileSync(path.join(cwd, 'invoices.config.json'), JSON.stringify({ invoices: { table: 'public.other_invoices' } }));
    const init = await cli(['risk', 'init'], cwd);
    expect(init.code, init.stderr).toBe(0);
    await waitForHorizon(db.url);
  });

  const totals = async (cwd?: string) => {
    const r = await cli(['group', '--months', '12', '--by', 'issuer', '--as-of', AS_OF, '--engine', 'totals', '--json'], cwd);
    expect(r.code, r.stderr).toBe(0);
    return { rows: JSON.parse(r.stdout) as Record<string, unknown>[], stderr: r.stderr };
  };

  it('keep separate monthly totals: each answers for its own table, neither rebuilds the other', async () => {
    for (let round = 0; round < 2; round++) {
      const mine = await totals();
      const theirs = await totals(cwd);
      expect(mine.rows).toEqual(await sqlAnswer());
      expect(theirs.rows).toEqual(await sqlAnswer('public.other_invoices'));
      if (round === 1) {
        expect(mine.stderr).not.toMatch(/computing every month|recomputing/);
        expect(theirs.stderr).not.toMatch(/computing every month|recomputing/);
      }
    }
    const sources = await withPg(db.url, async (c) =>
      (await c.query(`SELECT source FROM invoice_monthly_totals_state ORDER BY source`)).rows.map((r) => r.source),
    );
    expect(sources).toEqual([expect.stringMatching(/^public\.invoices /), expect.stringMatching(/^public\.other_invoices /)]);
  });

  it('an update in one table recomputes its totals only', async () => {
    await withPg(db.url, (c) =>
      c.query(
        `UPDATE public.other_invoices SET amount = amount + 1 WHERE invoice_id = (SELECT min(invoice_id) FROM public.other_invoices WHERE issue_date >= '2026-01-01')`,
      ),
    );
    const theirs = await totals(cwd);
    expect(theirs.stderr).toMatch(/recomputing \d{4}-\d{2} \(rows updated or deleted\)/);
    expect(theirs.rows).toEqual(await sqlAnswer('public.other_invoices'));
    const mine = await totals();
    expect(mine.stderr).not.toMatch(/recomputing/);
    expect(mine.rows).toEqual(await sqlAnswer());
  });
});
