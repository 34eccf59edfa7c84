// Two seeds at once, as real processes: they never interleave. A second fresh seed waits for
// the first (naming it), then finds rows and refuses (exit 2); --no-wait refuses at once (exit 1);
// two --append runs both commit, one after the other, with distinct ids.
import { describe, expect, it } from 'vitest';
import { adminUrl, databasesPerTest, seedWithCli, tableHash, waitFor, withPg } from '../../support/helpers.js';
import { recordStop, startCli } from '../../support/interrupt-helpers.js';

const database = databasesPerTest();

/** The server process holding seed's lock on this database (pg_locks: advisory, class 7116). */
async function lockHolderPid(database: string): Promise<number | undefined> {
  return withPg(
    adminUrl(),
    async (c) =>
      (
        await c.query<{ pid: number }>(
          "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE d.datname = $1 AND l.locktype = 'advisory' AND l.classid = 7116 AND l.objsubid = 2 AND l.granted",
          [database],
        )
      ).rows[0]?.pid,
  );
}

const counts = (url: string) =>
  withPg(
    url,
    async (c) =>
      (
        await c.query<{ customers: number; invoices: number; distinct_ids: number; max_id: number }>(
          `SELECT (SELECT count(*)::int FROM customers) AS customers, (SELECT count(*)::int FROM invoices) AS invoices,
            (SELECT count(DISTINCT invoice_id)::int FROM invoices) AS distinct_ids, (SELECT max(invoice_id)::int FROM invoices) AS max_id`,
        )
      ).rows[0],
  );

describe('two fresh seeds on an empty database', () => {
  it("the second waits for the first, naming it, then refuses with exit 2: the first one's rows stay", async () => {
    const db = await database();
    const first = startCli(db.url, [
      'seed',
      '--customers',
      '5000',
      '--invoices',
      '600000',
      '--seed',
      '1',
      '--as-of',
      '2026-01-01',
      '--debug',
    ]);
    await first.waitForStderr(/seed phase 1\/\d: customers/);
    const holder = await waitFor('the first seed to hold the lock', () => lockHolderPid(db.name));
    const second = startCli(db.url, ['seed', '--customers', '10', '--invoices', '100', '--seed', '2', '--as-of', '2026-01-01']);
    await second.waitForStderr(/waiting for/);
    expect(second.stderr()).toMatch(
      new RegExp(
        `waiting for \`invoices seed\` \\(server process ${holder}, (from \\S+|over a local socket), connected since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z, \\d+ s ago\\), which is writing invoices`,
      ),
    );
    // One message, not one per poll.
    expect(second.stderr().match(/waiting for/g)).toHaveLength(1);
    const [a, b] = await Promise.all([first.exit, second.exit]);
    expect(a.code, first.stderr()).toBe(0);
    expect(b.code, second.stderr()).toBe(2);
    expect(b.at).toBeGreaterThan(a.at);
    expect(second.stderr()).toContain('already hold rows');
    expect(await counts(db.url)).toEqual({ customers: 5000, invoices: 600_000, distinct_ids: 600_000, max_id: 600_000 });
    // Exactly what one seed with the first one's options gives.
    const alone = await database();
    await seedWithCli(alone.url, ['--customers', '5000', '--invoices', '600000', '--seed', '1', '--as-of', '2026-01-01']);
    const hash = (url: string) => withPg(url, (c) => tableHash(c, 'invoices'));
    expect(await hash(db.url)).toBe(await hash(alone.url));
  });

  it('--no-wait refuses at once with exit 1, naming the run that holds the tables, and changes nothing', async () => {
    const db = await database();
    const first = startCli(db.url, ['seed', '--customers', '5000', '--invoices', '600000', '--as-of', '2026-01-01', '--debug']);
    await first.waitForStderr(/seed phase 1\/\d: customers/);
    const holder = await waitFor('the first seed to hold the lock', () => lockHolderPid(db.name));
    const second = startCli(db.url, ['seed', '--customers', '10', '--invoices', '100', '--no-wait']);
    const b = await second.exit;
    expect(b.code, second.stderr()).toBe(1);
    expect(second.stderr()).toContain(`invoices: \`invoices seed\` (server process ${holder}`);
    expect(second.stderr()).toContain('this seed changed nothing');
    expect((await first.exit).code, first.stderr()).toBe(0);
    expect(await counts(db.url)).toEqual({ customers: 5000, invoices: 600_000, distinct_ids: 600_000, max_id: 600_000 });
  });
});

describe('Ctrl-C while waiting for the lock', () => {
  it('stops the waiting seed within 2 s (exit 130), changing nothing; the first one goes on', async () => {
    const db = await database();
    await seedWithCli(db.url, ['--customers', '100', '--invoices', '5000', '--as-of', '2026-01-01']);
    const first = startCli(db.url, ['seed', '--append', '--customers', '2000', '--invoices', '400000', '--as-of', '2026-01-01', '--debug']);
    await first.waitForStderr(/seed phase 1\/3: customers/);
    const second = startCli(db.url, ['seed', '--append', '--customers', '10', '--invoices', '100', '--as-of', '2026-01-01']);
    await second.waitForStderr(/waiting for `invoices seed`/);
    const r = await second.interrupt();
    recordStop('seed waiting for the lock', r.stopMs);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stopMs).toBeLessThan(2000);
    expect(r.stderr).toContain('interrupted while waiting for `invoices seed`');
    expect(r.stderr).toContain('this seed changed nothing');
    expect((await first.exit).code, first.stderr()).toBe(0);
    expect(await counts(db.url)).toEqual({ customers: 2100, invoices: 405_000, distinct_ids: 405_000, max_id: 405_000 });
  });
});

describe('two seed --append at once', () => {
  it('both commit, one after the other: ids distinct, counts add up', async () => {
    const db = await database();
    await seedWithCli(db.url, ['--customers', '100', '--invoices', '5000', '--as-of', '2026-01-01']);
    const args = (seed: string) => [
      'seed',
      '--append',
      '--customers',
      '2000',
      '--invoices',
      '300000',
      '--batch-size',
      '50000',
      '--seed',
      seed,
      '--as-of',
      '2026-01-01',
      '--json',
    ];
    const a = startCli(db.url, args('11'));
    const b = startCli(db.url, args('12'));
    const [ea, eb] = await Promise.all([a.exit, b.exit]);
    expect(ea.code, a.stderr()).toBe(0);
    expect(eb.code, b.stderr()).toBe(0);
    // One of them waited for the other, and said so.
    expect(`${a.stderr()}${b.stderr()}`.match(/waiting for `invoices seed`/g)).toHaveLength(1);
    const ra = JSON.parse(a.stdout());
    const rb = JSON.parse(b.stdout());
    const ranges = [ra, rb].map((r) => [r.firstInvoiceId, r.lastInvoiceId]).sort((x, y) => x[0] - y[0]);
    expect(ranges).toEqual([
      [5001, 305_000],
      [305_001, 605_000],
    ]);
    expect(await counts(db.url)).toEqual({ customers: 4100, invoices: 605_000, distinct_ids: 605_000, max_id: 605_000 });
    await withPg(db.url, async (c) => {
      const {
        rows: [x],
      } = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM invoices i LEFT JOIN customers s ON s.id = i.issuer_id LEFT JOIN customers r ON r.id = i.receiver_id WHERE s.id IS NULL OR r.id IS NULL`,
      );
      expect(x.n).toBe(0);
      const {
        rows: [cust],
      } = await c.query<{ n: number; max: number }>('SELECT count(DISTINCT id)::int AS n, max(id)::int AS max FROM customers');
      expect(cust).toEqual({ n: 4100, max: 4100 });
    });
  });
});
