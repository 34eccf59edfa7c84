// Two exports to one lake never interleave: the second waits for the first's lock, saying once
// who holds it (pid, host, since), or refuses with --no-wait (exit 1); a manifest changed under
// an export is never overwritten (exit 1, nothing committed); a lock whose holder is gone is
// removed with a message; the lock is released on errors and on Ctrl-C. The slow first export
// is forced with SIGSTOP/SIGCONT while it holds the lock, as a slow run would.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';
import {
  exportIsWriting,
  expectGroupEnginesAgree,
  expectManifestMatchesFiles,
  lakeMonths,
  listedFiles,
  lockHolder,
  manifestText,
  parquetOnDisk,
  pgMonths,
  readManifest,
  startCli,
  waitUntil,
  type Running,
} from '../../support/lake-helpers.js';

let db: TestDatabase;
let lake: string;

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '50', '--invoices', '3000', '--months', '6', '--seed', '13', '--as-of', '2025-06-01']);
  lake = path.join(tempDir('concurrency-'), 'lake');
  const r = await runCli(['export', '--out', lake, '--quiet'], { env: { DATABASE_URL: db.url } });
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await db?.drop();
});

const env = () => ({ DATABASE_URL: db.url });
const cli = (args: string[]) => runCli(args, { env: env() });

/** Starts `export --full` and stops it (SIGSTOP) once it holds the lock and is writing; retried if it finished first. */
async function stoppedExport(): Promise<Running> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const a = startCli(['export', '--out', lake, '--full', '--json'], env());
    let exited = false;
    void a.done.then(() => (exited = true));
    await waitUntil('the first export to hold the lock and write', () => exited || exportIsWriting(lake, a.pid));
    if (!exited) {
      a.child.kill('SIGSTOP');
      if (exportIsWriting(lake, a.pid)) return a;
      a.child.kill('SIGCONT');
    }
    await a.done;
  }
  throw new Error('the first export never stayed long enough to be stopped while writing');
}

describe('two exports of one lake', () => {
  it('overlapping: the second waits, naming the holder, and runs after it; --no-wait refuses; the lake equals SQL', async () => {
    const a = await stoppedExport();
    const holder = lockHolder(lake)!;
    expect(holder).toMatchObject({ pid: a.pid, host: os.hostname() });

    // While A is stopped: 500 new invoices of issuer 7 (A's snapshot does not see them; B must export them).
    await withPg(db.url, (c) =>
      c.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount)
      SELECT '2025-04-10T12:00:00Z'::timestamptz + make_interval(secs => g), 7, 8, 10.01 FROM generate_series(1, 500) g`),
    );
    await waitForHorizon(db.url);

    const b = startCli(['export', '--out', lake, '--json'], env());
    const waiting = `the lake at ${lake} is locked by export pid ${a.pid} on host ${os.hostname()}, since ${holder.since}: waiting for it to finish`;
    await waitUntil('the second export to say it waits', () => b.stderr().includes(waiting));

    const refused = await cli(['export', '--out', lake, '--no-wait']);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe(
      `invoices: the lake at ${lake} is locked by export pid ${a.pid} on host ${os.hostname()}, since ${holder.since}: try again when it ends, or run without --no-wait to wait for it`,
    );
    const refusedVerify = await cli(['export', '--out', lake, '--verify-only', '--no-wait']);
    expect(refusedVerify.code).toBe(1);
    expect(refusedVerify.stderr).toContain(`locked by export pid ${a.pid}`);

    // B has not touched the lake: it still waits.
    expect(lockHolder(lake)?.pid).toBe(a.pid);
    a.child.kill('SIGCONT');
    const [ra, rb] = [await a.done, await b.done];
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    // Said once, however long the wait.
    expect(rb.stderr.split(waiting).length - 1).toBe(1);
    // B started from A's manifest: it wrote April (the 500 rows) and left the rest as A wrote them.
    const outB = JSON.parse(rb.stdout) as { month: string; action: string }[];
    expect(outB.filter((m) => m.action === 'written').map((m) => m.month)).toEqual(['2025-04']);

    expectManifestMatchesFiles(lake);
    expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));
    const rows = (await expectGroupEnginesAgree(db.url, lake)) as { customer_id: number; invoices: number; total: string }[];
    const [sql] = await withPg(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT count(*)::int AS n, sum(amount)::text AS s FROM invoices WHERE issuer_id = 7 AND issue_date >= '2024-12-01' AND issue_date < '2025-06-01'`,
          )
        ).rows,
    );
    expect(rows.find((r) => r.customer_id === 7)).toMatchObject({ invoices: sql.n, total: sql.s });
    expect((await cli(['export', '--out', lake, '--verify-only'])).code).toBe(0);
  });

  it('the manifest only moves forward: one changed under a running export is kept, the export commits nothing (exit 1)', async () => {
    const a = await stoppedExport();
    // A writer that ignored the lock (another host's clock, a hand copy) replaces the manifest meanwhile.
    const theirs = JSON.stringify({ ...JSON.parse(manifestText(lake)), exportedAt: '2030-01-01T00:00:00.000Z' }, null, 2) + '\n';
    writeFileSync(path.join(lake, '_manifest.json'), theirs);
    a.child.kill('SIGCONT');
    const r = await a.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the lake's _manifest.json changed while this export ran");
    expect(r.stderr).toContain('nothing was committed');
    expect(manifestText(lake)).toBe(theirs);
    expect(parquetOnDisk(lake)).toEqual(listedFiles(readManifest(lake)));
    expect(readdirSync(lake).filter((n) => n.startsWith('.'))).toEqual([]);
    // The next export goes on from that manifest.
    const next = await cli(['export', '--out', lake, '--full', '--quiet']);
    expect(next.code, next.stderr).toBe(0);
    expectManifestMatchesFiles(lake);
    expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));
  });

  it('a lock left by a killed export is stale: the next export removes it, says whose it was, and the lake is whole', async () => {
    const a = await stoppedExport();
    const holder = lockHolder(lake)!;
    a.child.kill('SIGKILL');
    await a.done;
    expect(lockHolder(lake)?.pid).toBe(a.pid);
    const r = await cli(['export', '--out', lake, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `removed a stale lock of ${lake}: export pid ${a.pid} on host ${os.hostname()}, since ${holder.since} is no longer running`,
    );
    expectManifestMatchesFiles(lake);
    expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));
    await expectGroupEnginesAgree(db.url, lake);
  });

  it('the lock is released on Ctrl-C (exit 130) and on an error (exit 1), and a waiter interrupted gives up cleanly', async () => {
    const before = manifestText(lake);
    const a = await stoppedExport();
    // A waiter interrupted while waiting: exit 130, A's lock untouched.
    const w = startCli(['export', '--out', lake], env());
    await waitUntil('the waiter to say it waits', () => w.stderr().includes('waiting for it to finish'));
    w.child.kill('SIGINT');
    const rw = await w.done;
    expect(rw.code).toBe(130);
    expect(rw.stderr).toContain('interrupted while waiting for the lock');
    expect(lockHolder(lake)?.pid).toBe(a.pid);

    a.child.kill('SIGINT');
    a.child.kill('SIGCONT');
    const ra = await a.done;
    expect(ra.code).toBe(130);
    expect(ra.stderr).toContain('the lake still holds the previous export');
    expect(manifestText(lake)).toBe(before);
    expect(existsSync(path.join(lake, '.invoices-lock'))).toBe(false);
    expect(readdirSync(lake).filter((n) => n.startsWith('.'))).toEqual([]);

    // An export that fails (no database there) releases the lock too.
    const failed = await runCli(['export', '--out', lake], { env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' } });
    expect(failed.code).toBe(1);
    expect(existsSync(path.join(lake, '.invoices-lock'))).toBe(false);
    expectManifestMatchesFiles(lake);
  });
});
