// A database restored elsewhere (issue 10): its derived state (monthly totals, their watermark
// and lineage) comes along with the rows, but means nothing on another cluster or database.
// group and export must refuse ids from another cluster with advice that works, then rebuild
// and answer exactly. The copy is pg_dump | pg_restore when a pg_dump as new as the server is
// on PATH (PostgreSQL 15 at 127.0.0.1:5432), else what pg_dump does, by hand: the same schema,
// then every table's rows by COPY with triggers off (the embedded server ships no pg_dump).
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, withPg, type TestDatabase } from '../../support/helpers.js';
import { otherCluster, restoreDatabase } from '../../support/restore-helpers.js';

let source: TestDatabase;
let sameCluster: TestDatabase;
let other: Awaited<ReturnType<typeof otherCluster>> | undefined;
let otherUrl: string;
let lake: string;
const AS_OF = '2026-03-15';

beforeAll(async () => {
  source = await createDatabase();
  sameCluster = await createDatabase();
  lake = path.join(tempDir('restore-lake-'), 'lake');
  // Spend transaction ids first, so that the rows' created_xid are ahead of a new cluster's counter.
  await withPg(source.url, async (c) => {
    for (let i = 0; i < 1500; i++) await c.query('SELECT pg_current_xact_id()');
  });
  await seedWithCli(source.url, ['--customers', '80', '--invoices', '6000', '--months', '6', '--as-of', AS_OF, '--seed', '5']);
  for (const args of [
    ['group', '--months', '6', '--by', 'issuer', '--as-of', AS_OF, '--engine', 'totals', '--quiet'],
    ['export', '--out', lake, '--quiet'],
  ]) {
    const r = await runCli(args, { env: { DATABASE_URL: source.url } });
    if (r.code !== 0) throw new Error(`${args[0]}: ${r.stderr}`);
  }
  other = await otherCluster('restore-');
  otherUrl = other.url;
}, 180_000);

afterAll(async () => {
  await other?.stop();
  await source?.drop();
  await sameCluster?.drop();
});

async function sqlAnswer(url: string): Promise<Record<string, unknown>[]> {
  return withPg(
    url,
    async (c) =>
      (
        await c.query(
          `SELECT i.issuer_id::int AS customer_id, c.name, count(*)::int AS invoices, sum(amount)::text AS total, round(avg(amount), 2)::text AS average
       FROM invoices i JOIN customers c ON c.id = i.issuer_id
      WHERE issue_date >= '2025-10-01' AND issue_date < '2026-04-01' GROUP BY 1, 2 ORDER BY sum(amount) DESC, 1`,
        )
      ).rows,
  );
}

const group = (url: string, engine: string) =>
  runCli(['group', '--months', '6', '--by', 'issuer', '--as-of', AS_OF, '--engine', engine, '--lake', lake, '--json'], {
    env: { DATABASE_URL: url },
  });

describe.sequential('a database restored elsewhere', () => {
  it('into another database of the same cluster: the totals see the new database and rebuild', async () => {
    await restoreDatabase(source.url, sameCluster.url);
    // The restored totals state says "complete up to xid N" for the old database's rows.
    expect(
      await withPg(sameCluster.url, async (c) => (await c.query('SELECT count(*)::int AS n FROM invoice_monthly_totals_state')).rows[0].n),
    ).toBe(1);
    const r = await group(sameCluster.url, 'totals');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/computing every month \(the database was dropped and created again/);
    expect(JSON.parse(r.stdout)).toEqual(await sqlAnswer(sameCluster.url));
  });

  it('into another cluster: ids from the old cluster are refused with advice, which then works', async () => {
    await restoreDatabase(source.url, otherUrl);
    const expected = await sqlAnswer(otherUrl);
    expect(expected).toEqual(await sqlAnswer(source.url));
    for (const args of [
      ['group', '--months', '6', '--by', 'issuer', '--as-of', AS_OF, '--engine', 'totals'],
      ['export', '--out', lake],
    ]) {
      const refused = await runCli(args, { env: { DATABASE_URL: otherUrl } });
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toMatch(/created_xid values ahead of this server's transaction counter .*UPDATE/);
      expect(refused.stdout).toBe('');
    }
    // The advice, as printed.
    const advice = /(UPDATE .*?pg_snapshot_xmax\(pg_current_snapshot\(\)\))/.exec((await group(otherUrl, 'totals')).stderr)?.[1];
    expect(advice).toBeDefined();
    await withPg(otherUrl, (c) => c.query(advice!));

    const totals = await group(otherUrl, 'totals');
    expect(totals.code, totals.stderr).toBe(0);
    expect(totals.stderr).toMatch(/computing every month \(the database is now on another PostgreSQL cluster/);
    expect(JSON.parse(totals.stdout)).toEqual(expected);
    // The lake exported from the old cluster: rewritten whole, then exact.
    const exported = await runCli(['export', '--out', lake, '--json'], { env: { DATABASE_URL: otherUrl } });
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stderr).toMatch(/rewriting every month: the database is now on another PostgreSQL cluster/);
    for (const engine of ['duckdb', 'auto', 'postgres']) {
      const r = await group(otherUrl, engine);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout), engine).toEqual(expected);
    }
  });
});
