// Risk scores bound to their source and to the rows they scored: a reseed with other rows, a
// TRUNCATE of one partition, a restore that brings back rows with old created_xid values, two
// invoices tables in one database, and risk tables of an earlier version. Every current invoice
// ends up with exactly one score made for its row; scores of rows that are gone are removed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTableMap } from '../../../src/tables.js';
import {
  adoptBilling,
  BILLING_MAPPING,
  createDatabase,
  runCli,
  seedWithCli,
  waitFor,
  waitForHorizon,
  withPg,
  type TestDatabase,
} from '../../support/helpers.js';
import { connectPg, currentScores, insertInvoices, riskRun, scoreCounts, sourceIdOf, startCli } from '../../support/risk-helpers.js';

const OWN = sourceIdOf();
const BILLING = sourceIdOf(parseTableMap(BILLING_MAPPING, 'invoices.config.json'));
const SEED = ['--customers', '60', '--months', '6', '--as-of', '2026-03-01'];

type Q = <T = Record<string, unknown>>(sql: string, params?: unknown[]) => Promise<T[]>;
const query =
  (url: string): Q =>
  (sql, params = []) =>
    withPg(url, async (c) => (await c.query(sql, params)).rows as never);

/** A restore of the backup copy: emptied and loaded again in one transaction, created_xid copied, the identity moved past the ids. */
const RESTORE = `BEGIN; TRUNCATE invoices, invoice_ids; INSERT INTO invoices SELECT * FROM backup_invoices;
  SELECT setval(pg_get_serial_sequence('invoices', 'invoice_id'), (SELECT max(invoice_id) FROM invoices)); COMMIT`;

describe('one table: reseed, TRUNCATE of a partition, restore with old created_xid values', () => {
  let db: TestDatabase;
  let q: Q;
  const cli = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url } });
  const current = () => withPg(db.url, (c) => currentScores(c, OWN));

  beforeAll(async () => {
    db = await createDatabase();
    q = query(db.url);
    await seedWithCli(db.url, [...SEED, '--invoices', '3000', '--seed', '11']);
    // A copy of these rows as a backup holds them, created_xid included (restored in the last test).
    await q('CREATE TABLE backup_invoices AS SELECT * FROM invoices');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('(a) a reseed with other rows: every new invoice is scored, stale scores removed; verify and explain speak of the current rows', async () => {
    const first = await riskRun(db.url);
    expect(first.scored).toBe(3000);
    expect(await current()).toEqual({ invoices: 3000, scores: 3000, current: 3000, stale: 0, dead: 0 });

    // Other rows with the same ids 1..2000 (the identity restarts).
    await seedWithCli(db.url, [...SEED, '--invoices', '2000', '--seed', '12', '--truncate']);
    const [{ same }] = await q<{ same: number }>(
      'SELECT count(*)::int AS same FROM invoices i JOIN backup_invoices b USING (invoice_id) WHERE (i.issuer_id, i.receiver_id, i.amount) = (b.issuer_id, b.receiver_id, b.amount)',
    );
    expect(same).toBeLessThan(100); // other rows under the same ids

    // Before the run: nothing current is scored, the old scores are stale, and status says the table changed.
    const before = await cli(['risk', 'verify', '--json']);
    expect(before.code, before.stderr).toBe(0);
    expect(JSON.parse(before.stdout)).toMatchObject({ source: 'public.invoices', checked: 0, scored: 0, missing: 0, stale_scores: 3000 });
    expect(before.stderr).toContain('public.invoices: 3,000 stored score(s) of model v1 belong to rows no longer in the table');
    const status = await cli(['risk', 'status', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({
      source: 'public.invoices',
      waiting: 2000,
      table_changed: expect.stringMatching(/truncated or rewritten|dropped and created/),
    });
    expect(status.stderr).toContain('public.invoices changed since the last run of model v1');
    const stale = await cli(['risk', 'explain', '42', '--json']);
    expect(stale.code, stale.stderr).toBe(0);
    const e0 = JSON.parse(stale.stdout);
    expect(e0).toMatchObject({ source: 'public.invoices', stored: null, earlierRow: { score: expect.any(String) } });
    expect(stale.stderr).toContain('invoice 42 of public.invoices: the stored score');
    expect(stale.stderr).toContain('belonged to an earlier row with this id');

    const run = await riskRun(db.url);
    // Every old score is stale (ids 1..2000 now name other rows): all removed, the 2,000 new rows scored.
    expect(run).toMatchObject({ source: 'public.invoices', scored: 2000, already_scored: 0, failed: 0 });
    expect(run.result.stderr).toMatch(
      /risk scores of public\.invoices \(model v1\): the table changed since the last run \([^)]+\): removed 3000 score\(s\) and 0 dead letter\(s\) of invoices no longer in the table \(those of rows still there are kept\); cursor kept at/,
    );
    expect(await current()).toEqual({ invoices: 2000, scores: 2000, current: 2000, stale: 0, dead: 0 });
    await withPg(db.url, async (c) =>
      expect(await scoreCounts(c)).toEqual({ scores: 2000, distinct: 2000, invoices: 2000, unscored: 0, dead: 0 }),
    );

    const verify = await cli(['risk', 'verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toEqual({
      source: 'public.invoices',
      model: 'v1',
      checked: 2000,
      scored: 2000,
      dead_letters: 0,
      missing: 0,
      missing_ids: null,
      stale_scores: 0,
    });

    // explain 42: the score of the row now in the table.
    const [row] = await q<{ amount: string; score: string; level: string }>(
      `SELECT i.amount::text, s.score::text, s.level FROM invoices i JOIN risk_scores s ON s.invoice_id = i.invoice_id AND s.invoice_xid = i.created_xid
        WHERE i.invoice_id = 42 AND s.source_id = $1 AND s.model_version = 'v1'`,
      [OWN],
    );
    const explain = await cli(['risk', 'explain', '42', '--json']);
    expect(explain.code, explain.stderr).toBe(0);
    const e = JSON.parse(explain.stdout);
    expect(e.invoice).toMatchObject({ id: '42', amount: row.amount });
    expect(e).toMatchObject({ stored: { score: row.score, level: row.level }, earlierRow: null });

    // The lineage is stored: the next run has nothing to say and nothing to do.
    const again = await riskRun(db.url);
    expect(again).toMatchObject({ scored: 0, batches: 0 });
    expect(again.result.stderr).not.toContain('the table changed');
  });

  it('(a) a retried walk over rows that have their score changes nothing (the insert keeps a score of the same row)', async () => {
    const [{ at }] = await q<{ at: string }>('SELECT max(scored_at)::text AS at FROM risk_scores');
    await q(
      "UPDATE risk_watermarks SET cursor_xid = '0', cursor_invoice_id = -9223372036854775808 WHERE source_id = $1 AND model_version = 'v1'",
      [OWN],
    );
    const run = await riskRun(db.url);
    expect(run).toMatchObject({ scored: 0, already_scored: 2000, failed: 0 });
    expect((await q<{ n: number }>('SELECT count(*)::int AS n FROM risk_scores WHERE scored_at > $1', [at]))[0].n).toBe(0);
    expect(await current()).toEqual({ invoices: 2000, scores: 2000, current: 2000, stale: 0, dead: 0 });
  });

  it("(b) TRUNCATE of one partition, then new rows in it: the truncated rows' scores and dead letters go, the new rows are scored, the others keep theirs", async () => {
    const [part] = await q<{ name: string; n: number; at: string }>(
      `SELECT c.relname AS name, count(*)::int AS n, min(i.issue_date)::text AS at FROM invoices i JOIN pg_class c ON c.oid = i.tableoid
        WHERE c.relname <> 'invoices_default' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1`,
    );
    expect(part.n).toBeGreaterThan(100);
    // An invoice of that month the model cannot score (amount 0): a dead letter.
    const [zero] = await withPg(db.url, (c) => insertInvoices(c, [{ issuer: 1, receiver: 2, amount: '0.00', at: part.at }]));
    await waitForHorizon(db.url);
    expect(await riskRun(db.url)).toMatchObject({ scored: 0, failed: 1 });
    expect(await q('SELECT invoice_id::text AS id FROM risk_dead_letters')).toEqual([{ id: zero }]);
    const [{ at: scoredBefore }] = await q<{ at: string }>('SELECT max(scored_at)::text AS at FROM risk_scores');

    await q(`TRUNCATE ${part.name}`);
    const fresh = await withPg(db.url, (c) =>
      insertInvoices(
        c,
        [1, 2, 3, 4, 5].map((k) => ({ issuer: k, receiver: k + 1, amount: `${k}00.25`, at: part.at })),
      ),
    );
    await waitForHorizon(db.url);
    const run = await riskRun(db.url);
    expect(run).toMatchObject({ scored: 5, failed: 0, already_scored: 0 });
    expect(run.result.stderr).toContain(
      `the table changed since the last run (${part.name} truncated or rewritten): removed ${part.n} score(s) and 1 dead letter(s) of invoices no longer in the table (those of rows still there are kept); cursor kept at`,
    );
    const left = 2000 - part.n + 5;
    expect(await current()).toEqual({ invoices: left, scores: left, current: left, stale: 0, dead: 0 });
    const scoredIds = await q<{ id: string }>(
      'SELECT invoice_id::text AS id FROM risk_scores WHERE invoice_id = ANY($1::bigint[]) ORDER BY invoice_id',
      [fresh],
    );
    expect(scoredIds.map((r) => r.id)).toEqual(fresh);
    // The other partitions' scores were kept as they were.
    const [{ kept }] = await q<{ kept: number }>('SELECT count(*)::int AS kept FROM risk_scores WHERE scored_at <= $1', [scoredBefore]);
    expect(kept).toBe(2000 - part.n);
    const verify = await cli(['risk', 'verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: left, scored: left, dead_letters: 0, missing: 0, stale_scores: 0 });
  });

  it('(d) a restore that brings rows back with their old created_xid (below the cursor): the cursor is rewound and they are scored', async () => {
    const [{ cursor }] = await q<{ cursor: string }>(
      "SELECT cursor_xid::text AS cursor FROM risk_watermarks WHERE source_id = $1 AND model_version = 'v1'",
      [OWN],
    );
    const [{ below }] = await q<{ below: number }>('SELECT count(*)::int AS below FROM backup_invoices WHERE created_xid < $1::xid8', [
      cursor,
    ]);
    expect(below).toBe(3000);
    // As a restore does: the table emptied and loaded again, created_xid copied (one transaction).
    await q(RESTORE);
    const stored = (await current()).scores;
    const run = await riskRun(db.url);
    expect(run).toMatchObject({ scored: 3000, failed: 0, already_scored: 0 });
    expect(run.result.stderr).toMatch(
      new RegExp(
        `removed ${stored} score\\(s\\) and 0 dead letter\\(s\\) of invoices no longer in the table \\(those of rows still there are kept\\); cursor rewound from \\d+/\\d+ to \\d+/-?\\d+ \\(before the oldest invoice without a current score\\)`,
      ),
    );
    expect(await current()).toEqual({ invoices: 3000, scores: 3000, current: 3000, stale: 0, dead: 0 });
    const verify = await cli(['risk', 'verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: 3000, scored: 3000, missing: 0, stale_scores: 0 });

    // The same restore again: every row is back with its score; nothing is removed or rescored.
    const [{ at }] = await q<{ at: string }>('SELECT max(scored_at)::text AS at FROM risk_scores');
    await q(RESTORE);
    const same = await riskRun(db.url);
    expect(same).toMatchObject({ scored: 0, already_scored: 0 });
    expect(same.result.stderr).toContain('no score belonged to a row that is gone; cursor kept at');
    expect((await q<{ n: number }>('SELECT count(*)::int AS n FROM risk_scores WHERE scored_at > $1', [at]))[0].n).toBe(0);
    expect(await current()).toEqual({ invoices: 3000, scores: 3000, current: 3000, stale: 0, dead: 0 });
  });

  it('(d) rows reloaded into one partition without their scores: the rewind scores exactly them, as a full run would, passing over the rows that have theirs', async () => {
    const [part] = await q<{ name: string; n: number }>(
      `SELECT c.relname AS name, count(*)::int AS n FROM invoices i JOIN pg_class c ON c.oid = i.tableoid
        WHERE c.relname <> 'invoices_default' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1 OFFSET 1`,
    );
    const [{ at }] = await q<{ at: string }>('SELECT max(scored_at)::text AS at FROM risk_scores');
    // Their scores lost (as under a reseed in between), then the partition reloaded from a copy, created_xid kept.
    await q(`DELETE FROM risk_scores WHERE invoice_id IN (SELECT invoice_id FROM ${part.name})`);
    await q(`BEGIN; CREATE TEMP TABLE reload AS SELECT * FROM ${part.name}; TRUNCATE ${part.name};
             DELETE FROM invoice_ids WHERE invoice_id IN (SELECT invoice_id FROM reload); INSERT INTO invoices SELECT * FROM reload; COMMIT`);
    const [{ after }] = await q<{ after: number }>(
      `SELECT count(*)::int AS after FROM invoices WHERE (created_xid, invoice_id) > (SELECT created_xid, invoice_id FROM ${part.name} ORDER BY 1, 2 LIMIT 1)`,
    );
    const run = await riskRun(db.url);
    expect(run.result.stderr).toContain(
      `(${part.name} truncated or rewritten): no score belonged to a row that is gone; cursor rewound from`,
    );
    // The walk from the rewind point: the partition's rows scored, every other row passed over.
    expect(run).toMatchObject({ scored: part.n, failed: 0, already_scored: after + 1 - part.n });
    expect(run.low + run.medium + run.high).toBe(part.n);
    expect(await current()).toEqual({ invoices: 3000, scores: 3000, current: 3000, stale: 0, dead: 0 });
    const [{ rescored }] = await q<{ rescored: number }>('SELECT count(*)::int AS rescored FROM risk_scores WHERE scored_at > $1', [at]);
    expect(rescored).toBe(part.n);
    // The same scores as a run of every invoice (the rows passed over still count in their issuers' histories).
    await riskRun(db.url, ['--since', 'all', '--model-version', 'full']);
    const [diff] = await q<{ compared: number; differ: number }>(
      `SELECT count(*)::int AS compared, count(*) FILTER (WHERE a.score <> b.score OR a.reasons <> b.reasons)::int AS differ
         FROM risk_scores a JOIN risk_scores b USING (source_id, invoice_id, invoice_xid)
        WHERE a.model_version = 'v1' AND b.model_version = 'full' AND a.scored_at > $1`,
      [at],
    );
    expect(diff).toEqual({ compared: part.n, differ: 0 });
    await q("DELETE FROM risk_scores WHERE model_version = 'full'");
    await q("DELETE FROM risk_watermarks WHERE model_version = 'full'");
    expect((await cli(['risk', 'verify'])).code).toBe(0);
  });

  it('--follow reconciles in its cycle: a partition truncated while it runs loses its scores, new rows are scored', async () => {
    const child = startCli(['risk', '--follow', '--poll-interval', '300', '--json'], { DATABASE_URL: db.url });
    try {
      await waitFor(
        'the follower to start',
        async () => child.stderr().includes('following: scoring new invoices') || child.proc.exitCode !== null,
        30_000,
      );
      expect(child.proc.exitCode, child.stderr()).toBeNull();
      const [part] = await q<{ name: string; n: number }>(
        `SELECT c.relname AS name, count(*)::int AS n FROM invoices i JOIN pg_class c ON c.oid = i.tableoid
          WHERE c.relname <> 'invoices_default' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1`,
      );
      await q(`TRUNCATE ${part.name}`);
      const ids = await withPg(db.url, (c) =>
        insertInvoices(c, [
          { issuer: 3, receiver: 4, amount: '12.00' },
          { issuer: 4, receiver: 5, amount: '13.00' },
        ]),
      );
      const left = 3000 - part.n + 2;
      await waitFor(
        "the truncated rows' scores to go and the new rows to be scored",
        async () => {
          const c = await current();
          return c.scores === left && c.current === left;
        },
        30_000,
        100,
      );
      expect(child.stderr()).toContain(`(${part.name} truncated or rewritten): removed ${part.n} score(s) and 0 dead letter(s)`);
      expect(
        await q<{ id: string }>('SELECT invoice_id::text AS id FROM risk_scores WHERE invoice_id = ANY($1::bigint[]) ORDER BY 1', [ids]),
      ).toHaveLength(2);
      child.proc.kill('SIGTERM');
      expect((await child.exit).code, child.stderr()).toBe(143);
      expect(JSON.parse(child.stdout())).toMatchObject({ scored: 2, failed: 0 });
      expect(await current()).toEqual({ invoices: left, scores: left, current: left, stale: 0, dead: 0 });
      expect((await cli(['risk', 'verify'])).code).toBe(0);
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
      await child.exit;
    }
  });
});

describe("(c) two invoices tables in one database: this tool's and an adopted one", () => {
  let db: TestDatabase;
  let q: Q;
  let cwd: string;
  const own = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url } });
  const adopted = (args: string[]) => runCli(args, { cwd, env: { DATABASE_URL: db.url } });
  const counts = async () =>
    withPg(db.url, async (c) => ({
      own: await currentScores(c, OWN),
      billing: await currentScores(c, BILLING, 'v1', 'billing.invoice', 'id'),
    }));
  let ownN: number;
  let billingN: number;

  beforeAll(async () => {
    db = await createDatabase();
    q = query(db.url);
    await seedWithCli(db.url, ['--customers', '20', '--invoices', '400', '--months', '3', '--seed', '5', '--as-of', '2026-03-01']);
    cwd = await adoptBilling(
      db.url,
      `
      INSERT INTO billing.clients (customer_name) SELECT 'client ' || g FROM generate_series(1, 12) g;
      INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd)
        SELECT timestamp '2025-12-01' + g * interval '5 hours', 1 + g % 12, 1 + (g * 5 + 1) % 12, round((20 + (g * 31) % 700)::numeric + 0.5, 3)
          FROM generate_series(1, 330) g WHERE g % 12 <> (g * 5 + 1) % 12;`,
      'risk-two-',
    );
    const init = await adopted(['risk', 'init']);
    if (init.code !== 0) throw new Error(init.stderr);
    await waitForHorizon(db.url, 'billing.invoice');
    ownN = (await q<{ n: number }>('SELECT count(*)::int AS n FROM invoices'))[0].n;
    billingN = (await q<{ n: number }>('SELECT count(*)::int AS n FROM billing.invoice'))[0].n;
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('each is scored separately, under the same invoice ids', async () => {
    expect(ownN).toBe(400);
    expect(billingN).toBeGreaterThan(250);
    const b = await riskRun(db.url, [], { cwd });
    expect(b).toMatchObject({ source: 'billing.invoice', scored: billingN });
    const o = await riskRun(db.url);
    expect(o).toMatchObject({ source: 'public.invoices', scored: ownN });
    expect(await counts()).toEqual({
      own: { invoices: ownN, scores: ownN, current: ownN, stale: 0, dead: 0 },
      billing: { invoices: billingN, scores: billingN, current: billingN, stale: 0, dead: 0 },
    });
    // The same ids in both: one score each, per source.
    const [{ shared }] = await q<{ shared: number }>(
      'SELECT count(*)::int AS shared FROM risk_scores a JOIN risk_scores b USING (invoice_id, model_version) WHERE a.source_id = $1 AND b.source_id = $2',
      [OWN, BILLING],
    );
    expect(shared).toBe(billingN < ownN ? billingN : ownN);
    expect((await q<{ n: number }>('SELECT count(*)::int AS n FROM risk_scores'))[0].n).toBe(ownN + billingN);
    const marks = await q<{ source: string }>('SELECT source FROM risk_watermarks ORDER BY source');
    expect(marks.map((m) => m.source.split(' ')[0])).toEqual(['billing.invoice', 'public.invoices']);
  });

  it('a new invoice of the adopted table is scored for it, and not counted for the other', async () => {
    const [{ id }] = await q<{ id: string }>(
      "INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd) VALUES ('2026-02-27 10:00:00', 3, 4, 77.125) RETURNING id::text AS id",
    );
    await waitForHorizon(db.url, 'billing.invoice');
    expect(await riskRun(db.url)).toMatchObject({ source: 'public.invoices', scored: 0 });
    expect(await riskRun(db.url, [], { cwd })).toMatchObject({
      source: 'billing.invoice',
      scored: 1,
      cursor: expect.stringMatching(new RegExp(`/${id}$`)),
    });
    billingN++;
    expect(await counts()).toEqual({
      own: { invoices: ownN, scores: ownN, current: ownN, stale: 0, dead: 0 },
      billing: { invoices: billingN, scores: billingN, current: billingN, stale: 0, dead: 0 },
    });
    const sources = (await q<{ s: string }>('SELECT source_id::text AS s FROM risk_scores WHERE invoice_id = $1', [id]))
      .map((r) => r.s)
      .sort();
    expect(sources).toEqual((Number(id) <= ownN ? [OWN, BILLING] : [BILLING]).sort());
  });

  it('verify per source catches a missing score in either; status names the table', async () => {
    for (const [name, source, run, other] of [
      ['billing.invoice', BILLING, adopted, own],
      ['public.invoices', OWN, own, adopted],
    ] as const) {
      const [lost] = await q<Record<string, unknown>>(
        "DELETE FROM risk_scores WHERE source_id = $1 AND model_version = 'v1' AND invoice_id = 7 RETURNING *",
        [source],
      );
      try {
        const v = await run(['risk', 'verify', '--json']);
        expect(v.code, v.stderr).toBe(1);
        expect(JSON.parse(v.stdout)).toMatchObject({ source: name, missing: 1, missing_ids: '7' });
        expect(v.stderr).toContain(
          `${name}: 1 invoice(s) below the watermark have neither a score nor a dead letter made for their row (first: 7)`,
        );
        const w = await other(['risk', 'verify', '--json']);
        expect(w.code, w.stderr).toBe(0);
        expect(JSON.parse(w.stdout)).toMatchObject({ missing: 0 });
      } finally {
        await q('INSERT INTO risk_scores SELECT * FROM json_populate_record(NULL::risk_scores, $1)', [JSON.stringify(lost)]);
      }
      const s = await run(['risk', 'status', '--json']);
      expect(JSON.parse(s.stdout)).toMatchObject({
        source: name,
        model: 'v1',
        waiting: 0,
        total_scored: name === 'billing.invoice' ? billingN : ownN,
      });
      const f = await run(['risk', 'status', '--format', 'table']);
      expect(f.stdout).toContain(name);
    }
    expect((await adopted(['risk', 'verify'])).code).toBe(0);
    expect((await own(['risk', 'verify'])).code).toBe(0);
  });

  it('each source has its own lock: a scorer of one does not hold up the other', async () => {
    await withPg(db.url, (c) => insertInvoices(c, [{ issuer: 1, receiver: 2, amount: '10.00' }]));
    await waitForHorizon(db.url);
    const blocker = await connectPg(db.url);
    try {
      // The own table's scorer takes its lock, then waits for this row.
      await blocker.query('BEGIN');
      await blocker.query("SELECT 1 FROM risk_watermarks WHERE source_id = $1 AND model_version = 'v1' FOR UPDATE", [OWN]);
      const ownRun = riskRun(db.url);
      await new Promise((r) => setTimeout(r, 1500));
      const other = await riskRun(db.url, [], { cwd });
      expect(other).toMatchObject({ source: 'billing.invoice', scored: 0 });
      await blocker.query('COMMIT');
      expect(await ownRun).toMatchObject({ source: 'public.invoices', scored: 1 });
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await blocker.end();
    }
  });
});

describe('(e) risk tables of an earlier version (no source_id)', () => {
  let db: TestDatabase;
  let q: Q;
  let cwd: string;
  /** The tables as the previous version made them, with scores and a cursor past every invoice. */
  const OLD_TABLES = `
    DROP TABLE IF EXISTS risk_scores, risk_dead_letters, risk_watermarks;
    CREATE TABLE risk_scores (invoice_id bigint NOT NULL, model_version text NOT NULL, score numeric(5,4) NOT NULL, level text NOT NULL, reasons text[] NOT NULL,
      scored_at timestamptz NOT NULL DEFAULT clock_timestamp(), CONSTRAINT risk_scores_pkey PRIMARY KEY (invoice_id, model_version));
    CREATE TABLE risk_dead_letters (invoice_id bigint NOT NULL, model_version text NOT NULL, error text NOT NULL, attempts integer NOT NULL DEFAULT 1,
      first_failed_at timestamptz NOT NULL DEFAULT now(), last_failed_at timestamptz NOT NULL DEFAULT now(), CONSTRAINT risk_dead_letters_pkey PRIMARY KEY (invoice_id, model_version));
    CREATE TABLE risk_watermarks (model_version text PRIMARY KEY, cursor_xid xid8 NOT NULL DEFAULT '0', cursor_invoice_id bigint NOT NULL DEFAULT -9223372036854775808,
      horizon xid8, last_run_started_at timestamptz, last_batch_at timestamptz, last_run_scored bigint NOT NULL DEFAULT 0, last_run_failed bigint NOT NULL DEFAULT 0, total_scored bigint NOT NULL DEFAULT 0);
    INSERT INTO risk_scores (invoice_id, model_version, score, level, reasons) SELECT g, 'v1', 0.1, 'low', '{}' FROM generate_series(1, 500) g;
    INSERT INTO risk_watermarks (model_version, cursor_xid, cursor_invoice_id) VALUES ('v1', pg_current_xact_id(), 0);`;
  const shape = () =>
    q<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_attribute WHERE attname = 'source_id' AND NOT attisdropped AND attrelid IN ('risk_scores'::regclass, 'risk_dead_letters'::regclass, 'risk_watermarks'::regclass)",
    ).then((r) => r[0].n);

  beforeAll(async () => {
    db = await createDatabase();
    q = query(db.url);
    await seedWithCli(db.url, ['--customers', '20', '--invoices', '500', '--months', '3', '--seed', '6', '--as-of', '2026-03-01']);
    cwd = await adoptBilling(
      db.url,
      `
      INSERT INTO billing.clients (customer_name) SELECT 'client ' || g FROM generate_series(1, 6) g;
      INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd)
        SELECT timestamp '2026-01-01' + g * interval '9 hours', 1 + g % 6, 1 + (g + 1) % 6, 100.000 + g FROM generate_series(1, 120) g;`,
      'risk-old-',
    );
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("on this tool's table `risk` drops them and says so, then scores every invoice", async () => {
    await q(`BEGIN; ${OLD_TABLES} COMMIT;`);
    expect(await shape()).toBe(0);
    const status = await runCli(['risk', 'status'], { env: { DATABASE_URL: db.url } });
    expect(status.code).toBe(2);
    expect(status.stderr).toContain('the risk tables are of an earlier version');
    expect(status.stderr).toContain('run `invoices risk init`, which drops them (every invoice is then scored again)');

    await waitForHorizon(db.url);
    const run = await riskRun(db.url);
    expect(run.result.stderr).toContain(
      'risk tables of an earlier version (scores bound to neither a source table nor the row they scored) dropped; every invoice is scored again',
    );
    expect(run).toMatchObject({ scored: 500, already_scored: 0 });
    expect(await shape()).toBe(3);
    expect(await withPg(db.url, (c) => currentScores(c, OWN))).toEqual({ invoices: 500, scores: 500, current: 500, stale: 0, dead: 0 });
    expect((await runCli(['risk', 'verify'], { env: { DATABASE_URL: db.url } })).code).toBe(0);
  });

  it('on an adopted table `risk` refuses (exit 2) and `risk init` plans the drop as a visible step', async () => {
    await q(`BEGIN; ${OLD_TABLES} COMMIT;`);
    const cli = (args: string[]) => runCli(args, { cwd, env: { DATABASE_URL: db.url } });
    // created_xid and the trigger first, as a user of the earlier version had them.
    await q('ALTER TABLE billing.invoice ADD COLUMN created_xid xid8 NOT NULL DEFAULT pg_current_xact_id()');
    const refused = await cli(['risk']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('the risk tables are of an earlier version');
    expect(await shape()).toBe(0);

    const dry = await cli(['risk', 'init', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(
      '-- drop risk_scores, risk_dead_letters and risk_watermarks of an earlier version (their scores name neither the source table nor the row they scored: every invoice is scored again) and create them anew (sql/risk.sql)',
    );
    expect(await shape()).toBe(0);
    const init = await cli(['risk', 'init']);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stderr).toMatch(/\[1\/\d+\] drop risk_scores, risk_dead_letters and risk_watermarks of an earlier version/);
    expect(init.stderr).toContain(
      'risk tables of an earlier version (scores bound to neither a source table nor the row they scored) dropped; every invoice is scored again',
    );
    expect(await shape()).toBe(3);
    expect((await q<{ n: number }>('SELECT count(*)::int AS n FROM risk_scores'))[0].n).toBe(0);

    await waitForHorizon(db.url, 'billing.invoice');
    expect(await riskRun(db.url, [], { cwd })).toMatchObject({ source: 'billing.invoice', scored: 120 });
    expect(await withPg(db.url, (c) => currentScores(c, BILLING, 'v1', 'billing.invoice', 'id'))).toEqual({
      invoices: 120,
      scores: 120,
      current: 120,
      stale: 0,
      dead: 0,
    });
    expect((await cli(['risk', 'init'])).stderr).toContain('the risk scorer is set up: nothing to do');
  });
});
