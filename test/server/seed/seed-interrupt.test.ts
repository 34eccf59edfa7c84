// Ctrl-C (and SIGTERM) during seed, at several points of a fresh load, a --truncate and an
// --append: the exit code, the time from the signal to the exit, the tables before and after,
// and no server process of ours left behind. The phase is read from `--debug` lines and from
// the server (pg_stat_progress_create_index, pg_stat_activity), not guessed with sleeps.
import { beforeAll, describe, expect, it } from 'vitest';
import { databasesPerTest, seedWithCli, tableHash, type TestDatabase, withPg } from '../../support/helpers.js';
import { indexBuildRunning, noBackendLeft, recordStop, startCli, statementRunning } from '../../support/interrupt-helpers.js';

const counts = (url: string) =>
  withPg(
    url,
    async (c) =>
      (
        await c.query<{ customers: number; invoices: number; ids: number; mismatched: number }>(
          `SELECT (SELECT count(*) FROM customers)::int AS customers, (SELECT count(*) FROM invoices)::int AS invoices,
            (SELECT count(*) FROM invoice_ids)::int AS ids,
            (SELECT count(*) FROM invoices i FULL JOIN invoice_ids l USING (invoice_id, issue_date)
              WHERE i.invoice_id IS NULL OR l.invoice_id IS NULL)::int AS mismatched`,
        )
      ).rows[0],
  );
const hashes = (url: string) =>
  withPg(url, async (c) => ({ customers: await tableHash(c, 'customers'), invoices: await tableHash(c, 'invoices') }));
/** What a rolled-back load must leave: the same rows, the same sequences. */
const snapshot = async (url: string) => ({
  ...(await counts(url)),
  ...(await hashes(url)),
  ...(await withPg(
    url,
    async (c) =>
      (
        await c.query<{ invoiceSeq: string; customerSeq: string }>(
          `SELECT (SELECT last_value::text FROM invoices_invoice_id_seq) AS "invoiceSeq", (SELECT last_value::text FROM customers_id_seq) AS "customerSeq"`,
        )
      ).rows[0],
  )),
});

const BIG = ['--customers', '20000', '--invoices', '1000000', '--as-of', '2026-01-01', '--debug'];

const database = databasesPerTest();

describe('Ctrl-C during a fresh seed', () => {
  it('in the invoices phase: exit 130 within 2 s, rolled back, nothing left running', async () => {
    const db = await database();
    const run = startCli(db.url, ['seed', ...BIG]);
    await run.waitForStderr(/seed phase 2\/\d: invoices/);
    await statementRunning(db.name, 'COPY invoices_p%');
    const r = await run.interrupt();
    recordStop('seed fresh, invoices phase', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('interrupted: the load was rolled back, the tables are unchanged');
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await counts(db.url)).toEqual({ customers: 0, invoices: 0, ids: 0, mismatched: 0 });
  });

  it('in the index phase, with the primary key build cancelled on the server', async () => {
    const db = await database();
    const run = startCli(db.url, ['seed', ...BIG]);
    await run.waitForStderr(/seed building invoices_pkey/);
    await indexBuildRunning(db.name);
    const r = await run.interrupt();
    recordStop('seed fresh, index phase', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('debug: cancelling the statement of server process');
    expect(r.stderr).toContain('the load was rolled back');
    expect(r.stderr).not.toMatch(/^seeded /m);
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await counts(db.url)).toEqual({ customers: 0, invoices: 0, ids: 0, mismatched: 0 });
  });

  it('SIGTERM in the invoices phase: exit 143, rolled back', async () => {
    const db = await database();
    const run = startCli(db.url, ['seed', ...BIG]);
    await run.waitForStderr(/seed phase 2\/\d: invoices/);
    const r = await run.interrupt('SIGTERM');
    recordStop('seed fresh, SIGTERM', r.stopMs);
    expect(r.code, r.stderr).toBe(143);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('SIGTERM: stopping');
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await counts(db.url)).toEqual({ customers: 0, invoices: 0, ids: 0, mismatched: 0 });
  });

  it('a second Ctrl-C exits at once; the server rolls the load back', async () => {
    const db = await database();
    const run = startCli(db.url, ['seed', ...BIG]);
    await run.waitForStderr(/seed building invoices_pkey/);
    await indexBuildRunning(db.name);
    // The second signal as soon as the first one is seen (two at once would merge into one pending
    // signal): it must not wait for the first one's clean stop.
    const exit = run.interrupt();
    await run.waitForStderr(/SIGINT: stopping/, 5000);
    process.kill(run.pid, 'SIGINT');
    const r = await exit;
    recordStop('seed fresh, two Ctrl-C', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('forced exit');
    // Its server process notices the closed connection (client_connection_check_interval) and rolls back.
    expect(await noBackendLeft(db.name, 5000)).toBeLessThan(3000);
    expect(await counts(db.url)).toEqual({ customers: 0, invoices: 0, ids: 0, mismatched: 0 });
  });
});

describe('Ctrl-C during seed --truncate (the old rows stay until the new ones commit)', () => {
  let db: TestDatabase;
  let before: Awaited<ReturnType<typeof snapshot>>;
  beforeAll(async () => {
    db = await database();
    await seedWithCli(db.url, ['--customers', '300', '--invoices', '20000', '--seed', '3', '--as-of', '2025-06-01']);
    before = await snapshot(db.url);
    expect(before.invoices).not.toBe(before.customers);
  });

  it('in the index phase (the reported bug: it went on and committed): exit 130, the old rows intact', async () => {
    const run = startCli(db.url, ['seed', ...BIG, '--truncate']);
    await run.waitForStderr(/seed phase 4\/\d: indexes/);
    await indexBuildRunning(db.name);
    const r = await run.interrupt();
    recordStop('seed --truncate, index phase', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('the load was rolled back');
    expect(r.stderr).not.toMatch(/^seeded /m);
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await snapshot(db.url)).toEqual(before);
  });

  it('in the ANALYZE phase (inside the load transaction): exit 130, the old rows intact', async () => {
    const run = startCli(db.url, ['seed', ...BIG, '--truncate']);
    await run.waitForStderr(/seed phase \d\/\d: analyze/);
    const r = await run.interrupt();
    recordStop('seed --truncate, analyze phase', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('the load was rolled back');
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await snapshot(db.url)).toEqual(before);
  });

  it('SIGTERM in the invoices phase: exit 143, the old rows intact', async () => {
    const run = startCli(db.url, ['seed', ...BIG, '--truncate']);
    await run.waitForStderr(/seed phase 2\/\d: invoices/);
    const r = await run.interrupt('SIGTERM');
    recordStop('seed --truncate, SIGTERM', r.stopMs);
    expect(r.code, r.stderr).toBe(143);
    expect(r.stopMs).toBeLessThan(2000);
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await snapshot(db.url)).toEqual(before);
  });
});

describe('Ctrl-C during seed --append', () => {
  it('keeps the whole batches it committed, says which ids they hold, and leaves the sequence after them', async () => {
    const db = await database();
    await seedWithCli(db.url, ['--customers', '50', '--invoices', '1000', '--as-of', '2026-01-01']);
    const base = await hashes(db.url);
    const run = startCli(db.url, [
      'seed',
      '--customers',
      '1000',
      '--invoices',
      '3000000',
      '--batch-size',
      '100000',
      '--append',
      '--as-of',
      '2026-01-01',
      '--debug',
    ]);
    await run.waitForStderr(/seed phase 2\/3: invoices/);
    // A batch or two committed, the next one on its way.
    await withPg(db.url, async (c) => {
      for (let i = 0; i < 2000; i++) {
        if ((await c.query<{ n: number }>('SELECT count(*)::int AS n FROM invoices')).rows[0].n >= 201_000) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    const r = await run.interrupt();
    recordStop('seed --append, invoices phase', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    const m = /interrupted: 1000 customers and (\d+) of 3000000 invoices committed \(ids 1001\.\.(\d+)\)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const committed = Number(m![1]);
    expect(committed).toBeGreaterThanOrEqual(200_000);
    expect(committed % 100_000).toBe(0);
    expect(Number(m![2])).toBe(1000 + committed);
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await counts(db.url)).toEqual({ customers: 1050, invoices: 1000 + committed, ids: 1000 + committed, mismatched: 0 });
    await withPg(db.url, async (c) => {
      // The rows that were there before are untouched.
      const old = await c.query<{ h: string }>(
        `SELECT md5(string_agg((t.invoice_id, t.issue_date, t.issuer_id, t.receiver_id, t.amount)::text, E'\\n' ORDER BY invoice_id)) AS h FROM invoices t WHERE invoice_id <= 1000`,
      );
      expect(old.rows[0].h).toBe(base.invoices);
      // The next invoice without an id comes after the committed ones.
      await c.query('BEGIN');
      const {
        rows: [added],
      } = await c.query<{ id: number }>(
        `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-12-01', 1, 2, 1) RETURNING invoice_id::int AS id`,
      );
      await c.query('ROLLBACK');
      expect(added.id).toBe(1001 + committed);
    });
  });
});
