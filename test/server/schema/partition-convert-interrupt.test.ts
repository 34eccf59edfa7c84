// `invoices partition --convert` stopped by Ctrl-C or SIGTERM in each long phase (a backfill batch,
// the index builds, the verification), as a real process: exit 130/143 within 2 s, invoices
// untouched and writable, the conversion as of its last committed batch (resumable), no server
// process left; the last run converts to the same rows. Two at once: the second waits naming the
// first, --no-wait refuses (exit 1), and a seed of the same table is refused the same way.
import { beforeAll, describe, expect, it } from 'vitest';
import { adminUrl, databasesPerTest, runCli, tableHash, type TestDatabase, waitFor, withPg } from '../../support/helpers.js';
import { indexBuildRunning, noBackendLeft, recordStop, startCli } from '../../support/interrupt-helpers.js';

const database = databasesPerTest();

/** A plain invoices table as an application would have made it: serial key, an index, a foreign key to customers. */
async function plainTable(url: string, rows: number): Promise<void> {
  await withPg(url, (c) =>
    c.query(`
    CREATE TABLE customers (id bigint PRIMARY KEY, name text);
    INSERT INTO customers SELECT g, 'Customer ' || g FROM generate_series(1, 100) g;
    CREATE TABLE invoices (
      invoice_id  bigserial PRIMARY KEY,
      issue_date  timestamptz NOT NULL,
      issuer_id   bigint NOT NULL REFERENCES customers,
      receiver_id bigint NOT NULL REFERENCES customers,
      amount      numeric(14,2) NOT NULL);
    CREATE INDEX invoices_issuer_date_idx ON invoices (issuer_id, issue_date);
    INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount)
      SELECT timestamptz '2024-01-01' + g * interval '97 seconds', 1 + g % 100, 1 + (g * 7 + 3) % 100, round((g % 9973) * 1.37, 2)
        FROM generate_series(1, ${rows}) g;
    ANALYZE;`),
  );
}

const relkind = (url: string) =>
  withPg(
    url,
    async (c) => (await c.query<{ k: string }>("SELECT relkind::text AS k FROM pg_class WHERE oid = 'invoices'::regclass")).rows[0].k,
  );
const progress = (url: string) =>
  withPg(
    url,
    async (c) =>
      (
        await c.query<{ phase: string; copied: number; part: number; ids: number; invalid: number }>(
          `SELECT phase, rows_copied::int AS copied, (SELECT count(*)::int FROM invoices_part) AS part, (SELECT count(*)::int FROM invoice_ids) AS ids,
            (SELECT count(*)::int FROM pg_index WHERE NOT indisvalid) AS invalid
       FROM invoices_convert_state`,
        )
      ).rows[0],
  );
const ROWS = 600_000;

describe('Ctrl-C and SIGTERM in each phase of a conversion', () => {
  let db: TestDatabase;
  let hash: string;
  beforeAll(async () => {
    db = await database();
    await plainTable(db.url, ROWS);
    hash = await withPg(db.url, (c) => tableHash(c, 'invoices'));
  });

  it('in a backfill batch: exit 130 within 2 s, as of the last committed batch, invoices untouched', async () => {
    const run = startCli(db.url, ['partition', '--convert', '--batch-size', '20000', '--debug']);
    await run.waitForStderr(/convert phase 2\/6: backfill/);
    await withPg(db.url, (c) =>
      waitFor(
        'a few batches copied',
        async () => (await c.query<{ n: number }>('SELECT rows_copied::int AS n FROM invoices_convert_state')).rows[0].n >= 60_000,
        30_000,
        5,
      ),
    );
    const r = await run.interrupt();
    recordStop('convert, backfill', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    const m = /interrupted after copying ([\d,]+) rows: run `invoices partition --convert` again to resume/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    const copied = Number(m![1].replace(/,/g, ''));
    expect(await progress(db.url)).toEqual({ phase: 'backfill', copied, part: copied, ids: copied, invalid: 0 });
    expect(copied % 20_000).toBe(0);
    expect(await relkind(db.url)).toBe('r');
    expect(await withPg(db.url, (c) => tableHash(c, 'invoices'))).toBe(hash);
  });

  it('in an index build: the build is cancelled on the server, exit 130 within 2 s, no half-built index', async () => {
    const run = startCli(db.url, ['partition', '--convert', '--batch-size', '200000', '--debug']);
    await run.waitForStderr(/convert phase 3\/6: indexes/);
    await indexBuildRunning(db.name);
    const r = await run.interrupt();
    recordStop('convert, index build', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('interrupted while building indexes (the rows are all copied)');
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect(await progress(db.url)).toEqual({ phase: 'indexes', copied: ROWS, part: ROWS, ids: ROWS, invalid: 0 });
    expect(await relkind(db.url)).toBe('r');
    expect(await withPg(db.url, (c) => tableHash(c, 'invoices'))).toBe(hash);
  });

  it('SIGTERM while catching up and verifying: exit 143 within 2 s, nothing switched', async () => {
    const run = startCli(db.url, ['partition', '--convert', '--debug']);
    await run.waitForStderr(/convert phase 4\/6: sync/);
    const r = await run.interrupt('SIGTERM');
    recordStop('convert, verify (SIGTERM)', r.stopMs);
    expect(r.code, r.stderr).toBe(143);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toMatch(/interrupted (while catching up, )?before the switch/);
    expect(await noBackendLeft(db.name)).toBeLessThan(1000);
    expect((await progress(db.url)).phase).toBe('sync');
    expect(await relkind(db.url)).toBe('r');
    expect(await withPg(db.url, (c) => tableHash(c, 'invoices'))).toBe(hash);
  });

  it('the next run resumes and converts to the same rows', async () => {
    const r = await runCli(['partition', '--convert', '--json'], { env: { DATABASE_URL: db.url } });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'converted', resumed: true, rows: ROWS, copiedRows: 0 });
    expect(await relkind(db.url)).toBe('p');
    expect(await withPg(db.url, (c) => tableHash(c, 'invoices'))).toBe(hash);
  });
});

describe('two conversions at once, and a seed during one', () => {
  it('the second waits naming the first, --no-wait refuses with exit 1, and the waiting one finishes what the first began', async () => {
    const db = await database();
    await plainTable(db.url, 200_000);
    const hash = await withPg(db.url, (c) => tableHash(c, 'invoices'));
    const first = startCli(db.url, ['partition', '--convert', '--batch-size', '2000', '--debug']);
    await first.waitForStderr(/convert phase 2\/6: backfill/);
    const holder = await withPg(
      adminUrl(),
      async (c) =>
        (
          await c.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'invoices partition --convert'",
            [db.name],
          )
        ).rows[0].pid,
    );

    const refused = await runCli(['partition', '--convert', '--no-wait'], { env: { DATABASE_URL: db.url } });
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`invoices: \`invoices partition --convert\` (server process ${holder}`);
    expect(refused.stderr).toContain('this conversion changed nothing');
    const seed = await runCli(['seed', '--customers', '10', '--append', '--no-wait'], { env: { DATABASE_URL: db.url } });
    expect(seed.code, seed.stderr).toBe(1);
    expect(seed.stderr).toContain(`\`invoices partition --convert\` (server process ${holder}`);

    const second = startCli(db.url, ['partition', '--convert', '--json']);
    await second.waitForStderr(/waiting for `invoices partition --convert`/);
    expect(second.stderr()).toContain(`(server process ${holder},`);
    const r = await first.interrupt();
    expect(r.code, r.stderr).toBe(130);
    const done = await second.exit;
    expect(done.code, second.stderr()).toBe(0);
    expect(JSON.parse(second.stdout())).toMatchObject({ status: 'converted', resumed: true, rows: 200_000 });
    expect(await relkind(db.url)).toBe('p');
    expect(await withPg(db.url, (c) => tableHash(c, 'invoices'))).toBe(hash);
  });
});
