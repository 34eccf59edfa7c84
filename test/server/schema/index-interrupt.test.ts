// Ctrl-C and SIGTERM during `invoices index`: the concurrent build in flight is cancelled on the
// server and its invalid index dropped, the builds that finished stay, the exit is 130/143 within
// 2 s, and a second run finishes the job to what one uninterrupted run gives.
import { describe, expect, it } from 'vitest';
import { databasesPerTest, runCli, seedWithCli, withPg } from '../../support/helpers.js';
import { indexBuildRunning, noBackendLeft, recordStop, startCli } from '../../support/interrupt-helpers.js';

const database = databasesPerTest();

interface Idx {
  name: string;
  valid: boolean;
}
const indexes = (url: string) =>
  withPg(
    url,
    async (c) =>
      (
        await c.query<Idx>(
          `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
      WHERE t.relnamespace = 'public'::regnamespace AND (t.relname LIKE 'invoices%' OR t.relname = 'invoice_ids') ORDER BY 1`,
        )
      ).rows,
  );

describe('index on a plain table (three long concurrent builds)', () => {
  it('Ctrl-C during a build: it is cancelled and dropped, the finished ones stay, a re-run completes', async () => {
    const db = await database();
    await withPg(db.url, (c) =>
      c.query(`
      CREATE TABLE invoices (invoice_id bigint NOT NULL, issue_date timestamptz NOT NULL, issuer_id bigint NOT NULL, receiver_id bigint NOT NULL, amount numeric(14,2) NOT NULL);
      INSERT INTO invoices SELECT g, timestamptz '2025-01-01' + g * interval '11 seconds', 1 + (g::bigint * 7919) % 50000, 1 + (g::bigint * 104729) % 50000, (g % 100000) / 100.0
        FROM generate_series(1, 1500000) g;
      ANALYZE invoices;`),
    );
    expect(await indexes(db.url)).toEqual([]);

    // Interrupted in the second build, once the first one is done.
    const run = startCli(db.url, ['index']);
    await run.waitForStderr(/\[2\/3\] invoices_issuer_date_idx/);
    await indexBuildRunning(db.name);
    const r = await run.interrupt();
    recordStop('index, plain table, second build', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain(
      "interrupted during step 2/3: steps 1-1 of 3 are done and kept; the cancelled build's invalid invoices_issuer_date_idx was dropped",
    );
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await indexes(db.url)).toEqual([{ name: 'invoices_invoice_id_key', valid: true }]);

    // SIGTERM in the next build: 143, the same clean state one step further.
    const term = startCli(db.url, ['index']);
    await term.waitForStderr(/\[1\/2\] invoices_issuer_date_idx/);
    await indexBuildRunning(db.name);
    const t = await term.interrupt('SIGTERM');
    recordStop('index, plain table, SIGTERM', t.stopMs);
    expect(t.code, t.stderr).toBe(143);
    expect(t.stopMs).toBeLessThan(2000);
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await indexes(db.url)).toEqual([{ name: 'invoices_invoice_id_key', valid: true }]);

    const done = await runCli(['index', '--json'], { env: { DATABASE_URL: db.url } });
    expect(done.code, done.stderr).toBe(0);
    expect(await indexes(db.url)).toEqual([
      { name: 'invoices_invoice_id_key', valid: true },
      { name: 'invoices_issuer_date_idx', valid: true },
      { name: 'invoices_receiver_date_idx', valid: true },
    ]);
  });
});

describe('index on the partitioned layout (a build per partition, attached to the parent)', () => {
  it('Ctrl-C part way: every index left is valid or the parent still being filled; a re-run gives what one run gives', async () => {
    const db = await database();
    const reference = await database();
    const seedArgs = ['--customers', '2000', '--invoices', '400000', '--as-of', '2026-01-01'];
    await seedWithCli(db.url, seedArgs);
    await seedWithCli(reference.url, seedArgs);
    const whole = await runCli(['index'], { env: { DATABASE_URL: reference.url } });
    expect(whole.code, whole.stderr).toBe(0);

    const run = startCli(db.url, ['index']);
    await run.waitForStderr(/\[10\/\d+\]/);
    const r = await run.interrupt();
    recordStop('index, partitioned, step 10', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    const m = /interrupted(?: during step \d+\/\d+)?: steps 1-\d+ of \d+ are done and kept/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    // No leftover of a cancelled build: the only invalid index is the parent, which is valid only once every partition has its own.
    const left = await indexes(db.url);
    expect(left.filter((i) => !i.valid).map((i) => i.name)).toEqual(['invoices_issuer_date_idx']);

    const again = await runCli(['index'], { env: { DATABASE_URL: db.url } });
    expect(again.code, again.stderr).toBe(0);
    expect(await indexes(db.url)).toEqual(await indexes(reference.url));
    expect((await indexes(db.url)).every((i) => i.valid)).toBe(true);
  });
});
