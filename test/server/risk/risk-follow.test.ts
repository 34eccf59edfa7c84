// `invoices risk --follow`: new invoices are scored soon after their commit, woken by
// LISTEN/NOTIFY, found by polling when the notification is lost, across a lost connection;
// SIGTERM stops it cleanly.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, waitFor, withPg, type TestDatabase } from '../../support/helpers.js';
import { connectPg, insertInvoices, riskRun, scoreCounts, startCli, type Child, type RunJson } from '../../support/risk-helpers.js';

let db: TestDatabase;
const env = () => ({ DATABASE_URL: db.url });
const cli = (args: string[]) => runCli(args, { env: env() });
const q = <T = Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  withPg(db.url, async (c) => (await c.query(sql, params)).rows as T[]);
const isScored = async (ids: string[]) =>
  (
    await q<{ n: number }>("SELECT count(*)::int AS n FROM risk_scores WHERE model_version = 'v1' AND invoice_id = ANY($1::bigint[])", [
      ids,
    ])
  )[0].n === ids.length;
/** Generous: the machine is shared, and another test file's long transaction can hold the horizon back a while. */
const SCORED_WITHIN = 30_000;

let followers: Child[] = [];
/** Starts a follower and waits until it follows. */
async function startFollower(pollMs: number): Promise<Child> {
  const child = startCli(['risk', '--follow', '--poll-interval', String(pollMs), '--json'], env());
  followers.push(child);
  await waitFor(
    'the follower to start',
    async () => child.stderr().includes('following: scoring new invoices as they commit with model v1') || child.proc.exitCode !== null,
    30_000,
  );
  expect(child.proc.exitCode, child.stderr()).toBeNull();
  return child;
}

/** SIGTERM, then its exit and summary. */
async function stop(child: Child): Promise<{ code: number | null; summary: RunJson }> {
  child.proc.kill('SIGTERM');
  const { code } = await child.exit;
  return { code, summary: JSON.parse(child.stdout()) as RunJson };
}

const insert = (rows: { issuer: number; receiver: number; amount: string }[]) => withPg(db.url, (c) => insertInvoices(c, rows));

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '20', '--invoices', '500', '--months', '3', '--seed', '4', '--as-of', '2026-03-01']);
  const init = await cli(['risk', 'init']);
  if (init.code !== 0) throw new Error(init.stderr);
});
afterEach(async () => {
  for (const f of followers) if (f.proc.exitCode === null && f.proc.signalCode === null) f.proc.kill('SIGKILL');
  await Promise.all(followers.map((f) => f.exit));
  followers = [];
});
afterAll(async () => {
  await db?.drop();
});

describe('invoices risk --follow', () => {
  it('scores the backlog, then each new invoice soon after its commit (woken by NOTIFY: the poll is a minute); SIGTERM stops it with exit 143 and a summary', async () => {
    const follower = await startFollower(60_000);
    await waitFor('the backlog to be scored', async () => (await withPg(db.url, (c) => scoreCounts(c))).scores === 500, SCORED_WITHIN);

    // It holds the model's lock: a one-off run of the same model exits 1.
    const busy = await cli(['risk']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain('another `invoices risk` is scoring model v1');

    const first = await insert([{ issuer: 1, receiver: 2, amount: '120.00' }]);
    await waitFor('the first new invoice to be scored', () => isScored(first), SCORED_WITHIN);
    const more = await insert([
      { issuer: 2, receiver: 3, amount: '75.10' },
      { issuer: 4, receiver: 5, amount: '9000.00' },
    ]);
    await waitFor('two more to be scored', () => isScored(more), SCORED_WITHIN);

    const { code, summary } = await stop(follower);
    expect(code, follower.stderr()).toBe(143);
    expect(follower.stderr()).toContain('SIGTERM: stopping at the next clean point');
    expect(follower.stderr()).toMatch(/stopped: scored 503 invoice\(s\) with model v1 in [\d.]+ s/);
    expect(summary).toMatchObject({ model: 'v1', scored: 503, failed: 0, already_scored: 0 });
    expect(await withPg(db.url, (c) => scoreCounts(c))).toEqual({ scores: 503, distinct: 503, invoices: 503, unscored: 0, dead: 0 });
    expect((await cli(['risk', 'verify'])).code).toBe(0);
    // The lock went with it.
    expect((await riskRun(db.url)).scored).toBe(0);
  });

  it('finds invoices whose notification is lost by polling: an insert straight into a partition, inserts with the trigger dropped', async () => {
    const follower = await startFollower(300);
    // A statement trigger on the partitioned parent does not fire for an insert into a partition.
    const [{ id: direct }] = await q<{ id: string }>(
      `INSERT INTO invoices_default (invoice_id, issue_date, issuer_id, receiver_id, amount)
       VALUES (nextval(pg_get_serial_sequence('invoices', 'invoice_id')), now(), 6, 7, 33.00) RETURNING invoice_id::text AS id`,
    );
    await waitFor('the invoice inserted into a partition to be scored', () => isScored([direct]), SCORED_WITHIN);

    await q('DROP TRIGGER invoices_risk_notify ON invoices');
    const silent = await insert([
      { issuer: 8, receiver: 9, amount: '64.00' },
      { issuer: 9, receiver: 8, amount: '12.34' },
    ]);
    await waitFor('the invoices inserted without a trigger to be scored', () => isScored(silent), SCORED_WITHIN);

    const { code, summary } = await stop(follower);
    expect(code, follower.stderr()).toBe(143);
    expect(summary.scored).toBe(3);
    // init puts the trigger back.
    const init = await cli(['risk', 'init']);
    expect(init.stderr).toContain('add trigger invoices_risk_notify');
    expect(await q("SELECT 1 FROM pg_trigger WHERE tgname = 'invoices_risk_notify'")).toHaveLength(1);
    expect(await withPg(db.url, (c) => scoreCounts(c))).toMatchObject({ scores: 506, distinct: 506, invoices: 506, unscored: 0 });
  });

  it('reconnects when its backend is terminated, and keeps scoring', async () => {
    const follower = await startFollower(300);
    const backend = async () =>
      (
        await q<{ pid: number }>(
          `SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 7115 AND a.datname = current_database()`,
        )
      )[0]?.pid;
    const pid = await waitFor("the follower's backend", backend, 30_000);
    const [{ ok }] = await q<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
    expect(ok).toBe(true);
    await waitFor(
      'the follower to reconnect',
      async () => follower.stderr().match(/following: scoring new invoices/g)!.length >= 2 || follower.proc.exitCode !== null,
      30_000,
    );
    expect(follower.proc.exitCode, follower.stderr()).toBeNull();
    expect(follower.stderr()).toMatch(/reconnecting in [\d.]+ s/);
    const newPid = await waitFor('the new backend', backend, 30_000);
    expect(newPid).not.toBe(pid);

    const ids = await insert([{ issuer: 10, receiver: 11, amount: '250.00' }]);
    await waitFor('an invoice inserted after the reconnect to be scored', () => isScored(ids), SCORED_WITHIN);
    const { code, summary } = await stop(follower);
    expect(code, follower.stderr()).toBe(143);
    expect(summary.scored).toBe(1);
    expect(await withPg(db.url, (c) => scoreCounts(c))).toMatchObject({ scores: 507, distinct: 507, invoices: 507, unscored: 0 });
    expect((await cli(['risk', 'verify'])).code).toBe(0);
  });

  it('SIGTERM in the middle of a backlog: exit 143 after the batch in flight, and the summary counts every committed batch', async () => {
    const child = startCli(['risk', '--follow', '--model-version', 'slow', '--batch-size', '1', '--json'], env());
    followers.push(child);
    const scored = async () => (await q<{ n: number }>("SELECT count(*)::int AS n FROM risk_scores WHERE model_version = 'slow'"))[0].n;
    await waitFor('a few batches of the backlog', async () => (await scored()) >= 20, 30_000, 10);
    const { code, summary } = await stop(child);
    expect(code, child.stderr()).toBe(143);
    const n = await scored();
    expect(n).toBeLessThan(507); // stopped mid-backlog
    expect(summary.scored).toBe(n);
    expect(child.stderr()).toContain(`stopped: scored ${n} invoice(s) with model slow`);
    const verify = await cli(['risk', 'verify', '--model-version', 'slow', '--json']);
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: n, scored: n, missing: 0 });
    const rest = await riskRun(db.url, ['--model-version', 'slow']);
    expect(rest).toMatchObject({ scored: 507 - n, already_scored: 0 });
  });

  it('an invoice committed behind a running transaction is scored once that transaction ends', async () => {
    const follower = await startFollower(300);
    const blocker = await connectPg(db.url);
    try {
      await blocker.query('BEGIN');
      const [held] = await insertInvoices(blocker, [{ issuer: 12, receiver: 13, amount: '80.00' }]);
      const after = await insert([{ issuer: 13, receiver: 14, amount: '81.00' }]);
      // Give the follower time to wake up and find the row held back.
      await new Promise((r) => setTimeout(r, 1000));
      expect(await isScored(after)).toBe(false);
      await blocker.query('COMMIT');
      await waitFor('both invoices to be scored', () => isScored([held, ...after]), SCORED_WITHIN);
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await blocker.end();
    }
    const { code, summary } = await stop(follower);
    expect(code).toBe(143);
    expect(summary.scored).toBe(2);
    expect(await withPg(db.url, (c) => scoreCounts(c))).toMatchObject({ scores: 509, distinct: 509, invoices: 509, unscored: 0 });
  });
});
