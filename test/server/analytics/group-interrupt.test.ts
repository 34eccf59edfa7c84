// Ctrl-C (and SIGTERM) during `group`'s monthly totals refresh: while the first build reads the
// whole table, and while a second run waits for the first one's lock. The build's statement is
// cancelled on the server, its transaction rolls back whole (no totals, no state row), and the
// next run builds again and answers exactly what SQL answers.
import { beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, type TestDatabase, withPg } from '../../support/helpers.js';
import { noBackendLeft, recordStop, startCli, statementRunning } from '../../support/interrupt-helpers.js';

let db: TestDatabase;
const AS_OF = '2026-01-01';
const GROUP = ['group', '--months', '12', '--by', 'issuer', '--as-of', AS_OF, '--engine', 'totals', '--debug'];
/** The build's one statement over the whole table (src/analytics/totals.ts aggregateInto). */
const BUILD = '%WITH d AS NOT MATERIALIZED%';

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '20000', '--invoices', '1000000', '--months', '12', '--as-of', AS_OF, '--seed', '3']);
});

/** The stored totals of every source: rows and state rows (none after a rolled-back first build). */
const stored = () =>
  withPg(
    db.url,
    async (c) =>
      (
        await c.query<{ totals: number; states: number }>(
          `SELECT (SELECT count(*) FROM invoice_monthly_totals)::int AS totals, (SELECT count(*) FROM invoice_monthly_totals_state)::int AS states`,
        )
      ).rows[0],
  );

describe.sequential('Ctrl-C during the monthly totals refresh of `group`', () => {
  it('in the first build: exit 130 within 2 s, the build cancelled on the server, nothing stored', async () => {
    const run = startCli(db.url, GROUP);
    await run.waitForStderr(/computing every month \(first build\)/);
    await statementRunning(db.name, BUILD);
    const r = await run.interrupt();
    recordStop('group, totals first build', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('debug: cancelling the statement of server process');
    expect(r.stderr).toContain('interrupted: nothing was changed');
    expect(run.stdout()).toBe('');
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await stored()).toEqual({ totals: 0, states: 0 });
  });

  it('SIGTERM in the first build: exit 143, nothing stored', async () => {
    const run = startCli(db.url, GROUP);
    await statementRunning(db.name, BUILD);
    const r = await run.interrupt('SIGTERM');
    recordStop('group, totals first build (SIGTERM)', r.stopMs);
    expect(r.code, r.stderr).toBe(143);
    expect(r.stopMs).toBeLessThan(2000);
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await stored()).toEqual({ totals: 0, states: 0 });
  });

  it('while waiting for another refresh: exit 130 at once; the other finishes, and the answer equals SQL', async () => {
    const first = startCli(db.url, [...GROUP, '--json']);
    await statementRunning(db.name, BUILD);
    const second = startCli(db.url, GROUP);
    await second.waitForStderr(/waiting for .*which is writing the monthly totals of public\.invoices/);
    const r = await second.interrupt();
    recordStop('group, waiting for the totals lock', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toMatch(/interrupted while waiting for .*: this refresh changed nothing/);

    const done = await first.exit;
    expect(done.code, first.stderr()).toBe(0);
    const rows = JSON.parse(first.stdout()) as Array<{ customer_id: string; invoices: string; total: string }>;
    const sql = await withPg(
      db.url,
      async (c) =>
        (
          await c.query<{ n: string; s: string }>(
            // The window: the 12 calendar months ending with the month of AS_OF.
            `SELECT count(*)::text AS n, sum(amount)::text AS s FROM invoices WHERE issue_date >= '2025-02-01' AND issue_date < '2026-02-01'`,
          )
        ).rows[0],
    );
    expect(rows.reduce((n, x) => n + BigInt(x.invoices), 0n).toString()).toBe(sql.n);
    // Summed as cents: exact, no float.
    const cents = (v: string) => BigInt(v.replace('.', ''));
    expect(rows.reduce((n, x) => n + cents(x.total), 0n)).toBe(cents(sql.s));
    expect((await stored()).states).toBe(1);

    // The next run only refreshes: nothing to build again.
    const next = await runCli(GROUP, { env: { DATABASE_URL: db.url } });
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).not.toMatch(/computing every month/);
  });
});
