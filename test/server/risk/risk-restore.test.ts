// Risk scores of a database restored elsewhere (issue 10): the scores, dead letters and
// watermark come along with the rows. Into another database of the same cluster, every row is
// the same row (same id and created_xid): the scores are kept, nothing is scored twice. Into
// another cluster, created_xid values ahead of its counter are refused with advice; the
// advised UPDATE gives those rows new ids, so their scores no longer describe them: removed and
// scored again. The copy is pg_dump | pg_restore when a pg_dump as new as the server is on PATH,
// else what pg_dump does, by hand (the embedded server ships no pg_dump).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';
import { otherCluster, restoreDatabase } from '../../support/restore-helpers.js';
import { currentScores, insertInvoices, riskRun, sourceIdOf } from '../../support/risk-helpers.js';

const OWN = sourceIdOf();
const N = 2000;
let source: TestDatabase;
let sameCluster: TestDatabase;
let other: Awaited<ReturnType<typeof otherCluster>> | undefined;
let otherUrl: string;

beforeAll(async () => {
  source = await createDatabase();
  sameCluster = await createDatabase();
  // Spend transaction ids first, so that the rows' created_xid are ahead of a new cluster's counter.
  await withPg(source.url, async (c) => {
    for (let i = 0; i < 1500; i++) await c.query('SELECT pg_current_xact_id()');
  });
  await seedWithCli(source.url, ['--customers', '30', '--invoices', String(N), '--months', '4', '--as-of', '2026-03-01', '--seed', '8']);
  // One invoice the model cannot score: a dead letter comes along too.
  await withPg(source.url, (c) => insertInvoices(c, [{ issuer: 1, receiver: 2, amount: '0.00' }]));
  await waitForHorizon(source.url);
  const run = await riskRun(source.url);
  if (run.scored !== N || run.failed !== 1) throw new Error(`risk: ${JSON.stringify(run)}`);
  other = await otherCluster('risk-restore-');
  otherUrl = other.url;
}, 180_000);

afterAll(async () => {
  await other?.stop();
  await source?.drop();
  await sameCluster?.drop();
});

const counts = (url: string) => withPg(url, (c) => currentScores(c, OWN));

describe.sequential('risk scores of a database restored elsewhere', () => {
  it('into another database of the same cluster: the same rows keep their scores and dead letter; nothing is scored twice', async () => {
    await restoreDatabase(source.url, sameCluster.url);
    expect(await counts(sameCluster.url)).toEqual({ invoices: N + 1, scores: N, current: N, stale: 0, dead: 1 });
    const run = await riskRun(sameCluster.url);
    expect(run).toMatchObject({ scored: 0, failed: 0, already_scored: 0 });
    expect(run.result.stderr).toContain(
      'risk scores of public.invoices (model v1): the table changed since the last run (the database was dropped and created again',
    );
    expect(run.result.stderr).toContain('no score belonged to a row that is gone; cursor kept at');
    expect(await counts(sameCluster.url)).toEqual({ invoices: N + 1, scores: N, current: N, stale: 0, dead: 1 });
    const verify = await runCli(['risk', 'verify', '--json'], { env: { DATABASE_URL: sameCluster.url } });
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: N + 1, scored: N, dead_letters: 1, missing: 0, stale_scores: 0 });
    // And on from there.
    await withPg(sameCluster.url, (c) => insertInvoices(c, [{ issuer: 3, receiver: 4, amount: '55.00' }]));
    await waitForHorizon(sameCluster.url);
    expect(await riskRun(sameCluster.url)).toMatchObject({ scored: 1, already_scored: 0 });
  });

  it('into another cluster: refused until renumbered; the renumbered rows lose their old scores and are scored again', async () => {
    await restoreDatabase(source.url, otherUrl);
    const refused = await runCli(['risk'], { env: { DATABASE_URL: otherUrl } });
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/created_xid values ahead of this server's transaction counter/);
    const advice = /(UPDATE .*?pg_snapshot_xmax\(pg_current_snapshot\(\)\))/.exec(refused.stderr)?.[1];
    expect(advice).toBeDefined();
    const renumbered = await withPg(otherUrl, async (c) => (await c.query(advice!)).rowCount ?? 0);
    expect(renumbered).toBeGreaterThan(0);
    await waitForHorizon(otherUrl);

    // The dead letter's row, when it was renumbered too, no longer matches it (it fails again under its new created_xid).
    const [{ deadRenumbered }] = await withPg(
      otherUrl,
      async (c) =>
        (
          await c.query<{ deadRenumbered: number }>(
            `SELECT count(*)::int AS "deadRenumbered" FROM invoices i WHERE i.amount = 0
          AND NOT EXISTS (SELECT 1 FROM risk_dead_letters d WHERE d.invoice_id = i.invoice_id AND d.invoice_xid = i.created_xid)`,
          )
        ).rows,
    );
    const run = await riskRun(otherUrl);
    expect(run.result.stderr).toContain('the database is now on another PostgreSQL cluster');
    expect(run.result.stderr).toMatch(
      new RegExp(
        `removed ${renumbered - deadRenumbered} score\\(s\\) and ${deadRenumbered} dead letter\\(s\\) of invoices no longer in the table`,
      ),
    );
    expect(run).toMatchObject({ scored: renumbered - deadRenumbered, failed: deadRenumbered, already_scored: 0 });
    expect(await counts(otherUrl)).toEqual({ invoices: N + 1, scores: N, current: N, stale: 0, dead: 1 });
    const verify = await runCli(['risk', 'verify', '--json'], { env: { DATABASE_URL: otherUrl } });
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: N + 1, scored: N, dead_letters: 1, missing: 0, stale_scores: 0 });
  });
});
