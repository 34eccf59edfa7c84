// The scorer's guarantee under concurrency: transactions that commit out of order, a scorer
// killed with SIGKILL mid-run, two scorers of the same model, inserts arriving during runs.
// Every committed invoice ends up with exactly one score per model.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, waitFor, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';
import { connectPg, insertInvoices, riskRun, scoreCounts, sourceIdOf, startCli, type RunJson } from '../../support/risk-helpers.js';

const N = 30_000;
const CUSTOMERS = 50;

let db: TestDatabase;
const env = () => ({ DATABASE_URL: db.url });
const cli = (args: string[]) => runCli(args, { env: env() });
const q = <T = Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  withPg(db.url, async (c) => (await c.query(sql, params)).rows as T[]);
const counts = (model = 'v1') => withPg(db.url, (c) => scoreCounts(c, model));
/** Backends of this database that are connected as the CLI (application_name invoices). */
const cliBackends = () =>
  q<{ pid: number; wait: string | null }>(
    "SELECT pid, wait_event_type AS wait FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'invoices'",
  );

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, [
    '--customers',
    String(CUSTOMERS),
    '--invoices',
    String(N),
    '--months',
    '6',
    '--seed',
    '9',
    '--as-of',
    '2026-03-01',
  ]);
  const init = await cli(['risk', 'init']);
  if (init.code !== 0) throw new Error(init.stderr);
});
afterAll(async () => {
  await db?.drop();
});

describe('a scorer killed with SIGKILL in the middle of its run', () => {
  it('loses nothing and scores nothing twice when it is started again', async () => {
    await waitForHorizon(db.url);
    const child = startCli(['risk', '--batch-size', '100', '--quiet'], env());
    // Kill it once some batches are committed, well before the 300 batches are done.
    await waitFor('a few committed batches', async () => (await counts()).scores >= 1000, 60_000, 10);
    child.proc.kill('SIGKILL');
    expect(await child.exit).toEqual({ code: null, signal: 'SIGKILL' });

    const killed = await counts();
    expect(killed.scores).toBeLessThan(N); // it was killed mid-run
    expect(killed.distinct).toBe(killed.scores);
    // Scores and the cursor commit together: everything at or below the cursor is scored, even now.
    const [{ total }] = await q<{ total: number }>("SELECT total_scored::int AS total FROM risk_watermarks WHERE model_version = 'v1'");
    expect(total).toBe(killed.scores);
    const verify = await cli(['risk', 'verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: killed.scores, scored: killed.scores, missing: 0 });

    // The killed client's session may linger a moment on the server, holding the model's lock.
    await waitFor("the killed scorer's backend to end", async () => (await cliBackends()).length === 0);
    const again = await riskRun(db.url, ['--batch-size', '5000']);
    expect(again).toMatchObject({ scored: N - killed.scores, failed: 0, already_scored: 0 });
    expect(await counts()).toEqual({ scores: N, distinct: N, invoices: N, unscored: 0, dead: 0 });
    const after = await cli(['risk', 'verify', '--json']);
    expect(after.code).toBe(0);
    expect(JSON.parse(after.stdout)).toMatchObject({ checked: N, scored: N, missing: 0 });
  });
});

describe('a scorer interrupted with SIGINT', () => {
  it('stops after the batch in flight, exits 130 saying how many it committed; the next run goes on from there', async () => {
    const child = startCli(['risk', '--model-version', 'int', '--batch-size', '100'], env());
    const scored = async () => (await counts('int')).scores;
    await waitFor('a few committed batches', async () => (await scored()) >= 1000, 60_000, 10);
    child.proc.kill('SIGINT');
    const { code } = await child.exit;
    expect(code, child.stderr()).toBe(130);
    const n = await scored();
    expect(n).toBeLessThan(N);
    expect(child.stderr()).toContain(`interrupted: ${n} invoice(s) scored and committed; the next run goes on from there`);
    expect(child.stderr()).not.toMatch(/\n\s+at /);
    expect((await cli(['risk', 'verify', '--model-version', 'int'])).code).toBe(0);
    const rest = await riskRun(db.url, ['--model-version', 'int', '--batch-size', '5000']);
    expect(rest).toMatchObject({ scored: N - n, already_scored: 0 });
    expect(await counts('int')).toMatchObject({ scores: N, distinct: N, unscored: 0 });
  });
});

describe('transactions that commit out of order', () => {
  it('a row committed behind a running transaction is held back, reported by status, and scored once both commit', async () => {
    const a = await connectPg(db.url);
    const b = await connectPg(db.url);
    try {
      await a.query('BEGIN');
      const [idA] = await insertInvoices(a, [{ issuer: 1, receiver: 2, amount: '310.00' }]);
      const pidA = (await a.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const [idB] = await insertInvoices(b, [{ issuer: 3, receiver: 4, amount: '42.50' }]); // commits first
      expect(BigInt(idB)).toBeGreaterThan(BigInt(idA));

      const run = await riskRun(db.url);
      expect(run.scored).toBe(0); // B's row is above the horizon while A runs: not yet, and not skipped
      expect(await q('SELECT 1 FROM risk_scores WHERE invoice_id = ANY($1::bigint[])', [[idA, idB]])).toEqual([]);

      const status = await cli(['risk', 'status', '--json']);
      expect(status.code, status.stderr).toBe(0);
      const s = JSON.parse(status.stdout);
      expect(s).toMatchObject({ model: 'v1', waiting: 1, held_back: 1, oldest_waiting_id: idB });
      // The oldest writing transaction in the cluster: ours, unless another test file's is older.
      const m = /wait behind backend pid (\d+) \([^@]*@([^,]*), [^)]*\) open since/.exec(status.stderr);
      expect(m, status.stderr).not.toBeNull();
      expect(status.stderr).toContain('1 committed invoice(s) wait behind backend pid');
      if (m![2] === db.name) expect(Number(m![1])).toBe(pidA);
      expect(s.held_back_by).toContain(`backend pid ${m![1]}`);

      await a.query('COMMIT');
      await waitForHorizon(db.url);
      const after = await riskRun(db.url);
      expect(after.scored).toBe(2);
      const scored = await q<{ id: string; n: number }>(
        "SELECT invoice_id::text AS id, count(*)::int AS n FROM risk_scores WHERE model_version = 'v1' AND invoice_id = ANY($1::bigint[]) GROUP BY 1 ORDER BY 1",
        [[idA, idB]],
      );
      expect(scored).toEqual([
        { id: idA, n: 1 },
        { id: idB, n: 1 },
      ]);
      expect(await counts()).toEqual({ scores: N + 2, distinct: N + 2, invoices: N + 2, unscored: 0, dead: 0 });
      expect((await cli(['risk', 'verify'])).code).toBe(0);
      const quiet = JSON.parse((await cli(['risk', 'status', '--json'])).stdout);
      expect(quiet).toMatchObject({ waiting: 0, held_back: 0, held_back_by: null });
    } finally {
      await a.query('ROLLBACK').catch(() => {});
      await a.end();
      await b.end();
    }
  });
});

describe('two scorers of the same model', () => {
  /**
   * Holds the model's watermark row locked, so that the scorer that takes the model's lock
   * first blocks right after taking it (its run updates that row): a deterministic "at the
   * same time" whatever the machine's speed.
   */
  async function holdWatermark(model: string): Promise<pg.Client> {
    await q("INSERT INTO risk_watermarks (source_id, model_version, source) VALUES ($1, $2, 'public.invoices') ON CONFLICT DO NOTHING", [
      sourceIdOf(),
      model,
    ]);
    const c = await connectPg(db.url);
    await c.query('BEGIN');
    await c.query('SELECT 1 FROM risk_watermarks WHERE source_id = $1 AND model_version = $2 FOR UPDATE', [sourceIdOf(), model]);
    return c;
  }

  it('started together: exactly one scores, the other exits 1 saying another `invoices risk` is scoring', async () => {
    const total = (await counts('race')).invoices;
    const blocker = await holdWatermark('race');
    const one = startCli(['risk', '--model-version', 'race', '--json', '--quiet'], env());
    const two = startCli(['risk', '--model-version', 'race', '--json', '--quiet'], env());
    try {
      const first = await Promise.race([
        one.exit.then((e) => ({ ...e, c: one, other: two })),
        two.exit.then((e) => ({ ...e, c: two, other: one })),
      ]);
      expect(first.code, first.c.stderr()).toBe(1);
      expect(first.c.stderr()).toMatch(
        /another `invoices risk` is scoring model race of public\.invoices \(backend pid \d+( from [^,]+)?, connected since [^)]+\): this run did nothing; let it finish, or pass --wait to queue behind it/,
      );
      expect(first.c.stdout()).toBe('');
      expect((await counts('race')).scores).toBe(0);
      await blocker.query('COMMIT');
      const winner = await first.other.exit;
      expect(winner.code, first.other.stderr()).toBe(0);
      expect((JSON.parse(first.other.stdout()) as RunJson).scored).toBe(total);
      expect(await counts('race')).toEqual({ scores: total, distinct: total, invoices: total, unscored: 0, dead: 0 });
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await blocker.end();
      one.proc.kill();
      two.proc.kill();
    }
  });

  it('with --wait: the second queues behind the first, both exit 0, nothing is scored twice', async () => {
    const total = (await counts('queue')).invoices;
    const blocker = await holdWatermark('queue');
    const one = startCli(['risk', '--model-version', 'queue', '--wait', '--json'], env());
    const two = startCli(['risk', '--model-version', 'queue', '--wait', '--json'], env());
    try {
      // One, holding the model's lock, waits for the watermark row; the other says it waits for that one.
      await waitFor(
        'one scorer to hold the lock and wait for the row, the other to wait for it',
        async () =>
          (await cliBackends()).some((x) => x.wait === 'Lock') &&
          [one, two].some((c) => c.stderr().includes('waiting for it (Ctrl-C to stop waiting)')),
        30_000,
      );
      await blocker.query('COMMIT');
      const [e1, e2] = await Promise.all([one.exit, two.exit]);
      expect(e1.code, one.stderr()).toBe(0);
      expect(e2.code, two.stderr()).toBe(0);
      const runs = [one, two].map((c) => JSON.parse(c.stdout()) as RunJson);
      expect(runs.map((r) => r.scored).sort((x, y) => x - y)).toEqual([0, total]);
      expect(runs.map((r) => r.already_scored)).toEqual([0, 0]);
      expect(await counts('queue')).toEqual({ scores: total, distinct: total, invoices: total, unscored: 0, dead: 0 });
      expect((await cli(['risk', 'verify', '--model-version', 'queue'])).code).toBe(0);
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await blocker.end();
      one.proc.kill();
      two.proc.kill();
    }
  });
});

describe('a scorer queued with --wait', () => {
  it('says whom it waits for; Ctrl-C stops the wait within 2 s (exit 130, nothing scored) and the other run goes on', async () => {
    const total = (await counts('qint')).invoices;
    await q(
      "INSERT INTO risk_watermarks (source_id, model_version, source) VALUES ($1, 'qint', 'public.invoices') ON CONFLICT DO NOTHING",
      [sourceIdOf()],
    );
    // The first run takes the model's lock, then blocks on the watermark row this session holds.
    const blocker = await connectPg(db.url);
    await blocker.query('BEGIN');
    await blocker.query("SELECT 1 FROM risk_watermarks WHERE source_id = $1 AND model_version = 'qint' FOR UPDATE", [sourceIdOf()]);
    const one = startCli(['risk', '--model-version', 'qint', '--json', '--quiet'], env());
    try {
      await waitFor(
        'the first run to block on the watermark row',
        async () => (await cliBackends()).some((b) => b.wait === 'Lock'),
        30_000,
      );
      const two = startCli(['risk', '--model-version', 'qint', '--wait'], env());
      await waitFor(
        'the second run to wait',
        async () => two.stderr().includes('waiting for it (Ctrl-C to stop waiting)') || two.proc.exitCode !== null,
        30_000,
        10,
      );
      expect(two.stderr()).toMatch(/another `invoices risk` is scoring model qint of public\.invoices \(backend pid \d+/);
      const sent = performance.now();
      two.proc.kill('SIGINT');
      const stopped = await two.exit;
      expect(performance.now() - sent).toBeLessThan(2000);
      expect(stopped.code, two.stderr()).toBe(130);
      expect(two.stderr()).toContain('interrupted while waiting for the other `invoices risk` of model qint: nothing was scored');
      expect(two.stderr()).not.toMatch(/\n\s+at /);
      expect((await counts('qint')).scores).toBe(0);

      await blocker.query('COMMIT');
      const first = await one.exit;
      expect(first.code, one.stderr()).toBe(0);
      expect((JSON.parse(one.stdout()) as RunJson).scored).toBe(total);
      expect(await counts('qint')).toEqual({ scores: total, distinct: total, invoices: total, unscored: 0, dead: 0 });
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await blocker.end();
      one.proc.kill();
    }
  });
});

describe('inserts that keep arriving during runs', () => {
  it('many small transactions, some committing out of order: after a final run every invoice has exactly one score', async () => {
    const before = (await counts()).invoices;
    let seed = 42;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pick = () => {
      const issuer = 1 + Math.floor(rnd() * CUSTOMERS);
      return { issuer, receiver: 1 + (issuer % CUSTOMERS), amount: (1 + Math.floor(rnd() * 99_999) / 100).toFixed(2) };
    };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    let inserted = 0;
    let outOfOrder = 0;
    // Three writers; each transaction inserts 1 to 3 invoices and waits a little before its
    // commit, so that transactions begun later often commit first. Every fifth one stays open
    // while another writer's transaction begins and commits.
    const writer = async (w: number) => {
      const c = await connectPg(db.url);
      const other = await connectPg(db.url);
      try {
        // At least 40 transactions each, and on until the scorer has run a few times meanwhile.
        for (let t = 0; t < 40 || runs.length < 3; t++) {
          await c.query('BEGIN');
          const rows = Array.from({ length: 1 + Math.floor(rnd() * 3) }, pick);
          const ids = await insertInvoices(c, rows);
          if (t % 5 === w) {
            const [late] = await insertInvoices(other, [pick()]); // begins after, commits first
            expect(BigInt(late)).toBeGreaterThan(BigInt(ids[ids.length - 1]));
            inserted++;
            outOfOrder++;
          }
          await sleep(Math.floor(rnd() * 20));
          await c.query('COMMIT');
          inserted += rows.length;
        }
      } finally {
        await c.end();
        await other.end();
      }
    };
    const runs: RunJson[] = [];
    let writing = true;
    const writers = Promise.all([0, 1, 2].map(writer)).finally(() => (writing = false));
    while (writing) runs.push(await riskRun(db.url, ['--batch-size', '7']));
    await writers;
    expect(outOfOrder).toBeGreaterThan(0);
    expect(runs.length).toBeGreaterThanOrEqual(3);

    await waitForHorizon(db.url);
    runs.push(await riskRun(db.url, ['--batch-size', '7']));
    expect(runs.reduce((n, r) => n + r.scored, 0)).toBe(inserted);
    expect(runs.every((r) => r.already_scored === 0 && r.failed === 0)).toBe(true);
    const total = before + inserted;
    expect(await counts()).toEqual({ scores: total, distinct: total, invoices: total, unscored: 0, dead: 0 });
    const verify = await cli(['risk', 'verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: total, scored: total, missing: 0 });
  });
});
