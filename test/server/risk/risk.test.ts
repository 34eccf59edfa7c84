// `invoices risk` on this tool's own tables: init, exactly-once scoring on the created_xid
// watermark, valid scores, dead letters, rescoring and model versions, explain.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';
import { insertInvoices, riskRun, scoreCounts } from '../../support/risk-helpers.js';

const CODES = [
  'AMOUNT_HIGH',
  'AMOUNT_LOW',
  'THIN_HISTORY',
  'NEW_COUNTERPARTY',
  'VELOCITY_1D',
  'VELOCITY_7D',
  'VELOCITY_30D',
  'NEAR_DUPLICATE',
  'ROUND_AMOUNT',
  'FUTURE_DATE',
  'OLD_DATE',
];
const N = 2000;

let db: TestDatabase;
const cli = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url } });
const q = <T = Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  withPg(db.url, async (c) => (await c.query(sql, params)).rows as T[]);
const watermark = async (model: string) =>
  (
    await q<{ c: string }>("SELECT cursor_xid::text || '/' || cursor_invoice_id AS c FROM risk_watermarks WHERE model_version = $1", [
      model,
    ])
  )[0]?.c;

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '40', '--invoices', String(N), '--months', '6', '--seed', '3', '--as-of', '2026-03-01']);
});
afterAll(async () => {
  await db?.drop();
});

describe('invoices risk init', () => {
  const objects = () =>
    q<{ tables: number; trigger: number; indexes: string[] }>(
      `SELECT (SELECT count(*)::int FROM unnest(ARRAY['risk_scores', 'risk_dead_letters', 'risk_watermarks']) t WHERE to_regclass(t) IS NOT NULL) AS tables,
              (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'invoices'::regclass AND tgname = 'invoices_risk_notify') AS trigger,
              (SELECT coalesce(array_agg(indexname::text ORDER BY indexname), '{}') FROM pg_indexes WHERE tablename = 'invoices' AND indexname LIKE 'invoices_%_idx') AS indexes`,
    ).then((r) => r[0]);

  it('--dry-run prints the plan and changes nothing', async () => {
    const before = await objects();
    expect(before.tables).toBe(0);
    expect(before.trigger).toBe(0);
    const r = await cli(['risk', 'init', '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('-- create risk_scores, risk_dead_letters and risk_watermarks (sql/risk.sql)');
    expect(r.stdout).toContain('CREATE TABLE IF NOT EXISTS risk_scores');
    expect(r.stdout).toContain('CREATE TRIGGER "invoices_risk_notify" AFTER INSERT ON "public"."invoices"');
    expect(r.stdout).toMatch(/invoices_created_xid_idx[\s\S]*\(created_xid, invoice_id\)/);
    expect(r.stdout).toContain('invoices_risk_pair_idx');
    // Our own table already has created_xid; nothing here changes a user's table.
    expect(r.stdout).not.toContain('ADD COLUMN created_xid');
    expect(r.stdout).not.toContain('[changes your table]');
    expect(await objects()).toEqual(before);
  });

  it('creates the tables, the trigger and the indexes; a second init has nothing to do', async () => {
    const r = await cli(['risk', 'init']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[1\/\d+\] create risk_scores, risk_dead_letters and risk_watermarks/);
    const after = await objects();
    expect(after.tables).toBe(3);
    expect(after.trigger).toBe(1);
    expect(after.indexes).toEqual(
      expect.arrayContaining(['invoices_issuer_date_idx', 'invoices_created_xid_idx', 'invoices_risk_pair_idx']),
    );
    const again = await cli(['risk', 'init']);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('the risk scorer is set up: nothing to do');
    const dry = await cli(['risk', 'init', '--dry-run']);
    expect(dry.stdout).toBe('-- nothing to do: the risk scorer is set up\n');
    expect(await objects()).toEqual(after);
  });
});

describe('invoices risk: exactly once', () => {
  it('scores every invoice once; verify exits 0; a second run scores nothing', async () => {
    await waitForHorizon(db.url);
    const run = await riskRun(db.url);
    expect(run.scored).toBe(N);
    expect(run.failed).toBe(0);
    expect(run.high + run.medium + run.low).toBe(N);
    expect(run.result.stderr).toMatch(/scored 2,000 invoice\(s\) with model v1 in [\d.]+ s/);
    await withPg(db.url, async (c) => expect(await scoreCounts(c)).toEqual({ scores: N, distinct: N, invoices: N, unscored: 0, dead: 0 }));
    const levels = await q<{ level: string; n: number }>(
      "SELECT level, count(*)::int AS n FROM risk_scores WHERE model_version = 'v1' GROUP BY 1",
    );
    expect(Object.fromEntries(levels.map((l) => [l.level, l.n]))).toEqual(
      Object.fromEntries((['high', 'medium', 'low'] as const).filter((l) => run[l]).map((l) => [l, run[l]])),
    );

    const verify = await cli(['risk', 'verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toEqual({
      source: 'public.invoices',
      model: 'v1',
      checked: N,
      scored: N,
      dead_letters: 0,
      missing: 0,
      missing_ids: null,
      stale_scores: 0,
    });
    expect(verify.stderr).toContain(
      'public.invoices: every one of the 2,000 invoice(s) below the watermark has a score (2,000) or a dead letter (0)',
    );

    const second = await riskRun(db.url);
    expect(second).toMatchObject({ scored: 0, failed: 0, batches: 0, cursor: run.cursor });
    expect(second.result.stderr).toContain('nothing new');
    expect((await q<{ n: number }>('SELECT count(*)::int AS n FROM risk_scores'))[0].n).toBe(N);
  });

  it('verify fails (exit 1) and names the invoices when one below the watermark has neither a score nor a dead letter', async () => {
    const [lost] = await q<Record<string, unknown>>("DELETE FROM risk_scores WHERE model_version = 'v1' AND invoice_id = 1234 RETURNING *");
    try {
      const verify = await cli(['risk', 'verify', '--json']);
      expect(verify.code).toBe(1);
      expect(JSON.parse(verify.stdout)).toEqual({
        source: 'public.invoices',
        model: 'v1',
        checked: N,
        scored: N - 1,
        dead_letters: 0,
        missing: 1,
        missing_ids: '1234',
        stale_scores: 0,
      });
      expect(verify.stderr).toContain(
        'public.invoices: 1 invoice(s) below the watermark have neither a score nor a dead letter made for their row (first: 1234)',
      );
    } finally {
      await q('INSERT INTO risk_scores SELECT * FROM json_populate_record(NULL::risk_scores, $1)', [JSON.stringify(lost)]);
    }
    expect((await cli(['risk', 'verify'])).code).toBe(0);
  });

  it('stores valid scores: 0..1, the level from the 0.3 / 0.6 thresholds, known reason codes; some invoices are flagged', async () => {
    const [bad] = await q<{ range: number; level: number; codes: number; flagged: number; empty_low: number }>(
      `SELECT count(*) FILTER (WHERE score < 0 OR score > 1)::int AS range,
              count(*) FILTER (WHERE level <> CASE WHEN score >= 0.6 THEN 'high' WHEN score >= 0.3 THEN 'medium' ELSE 'low' END)::int AS level,
              count(*) FILTER (WHERE NOT reasons <@ $1::text[])::int AS codes,
              count(*) FILTER (WHERE cardinality(reasons) > 0)::int AS flagged,
              count(*) FILTER (WHERE cardinality(reasons) = 0 AND score <> 0)::int AS empty_low
         FROM risk_scores`,
      [CODES],
    );
    expect(bad).toMatchObject({ range: 0, level: 0, codes: 0, empty_low: 0 });
    expect(bad.flagged).toBeGreaterThan(0);
    // The first invoices of each issuer have a thin history.
    const [thin] = await q<{ n: number }>("SELECT count(*)::int AS n FROM risk_scores WHERE 'THIN_HISTORY' = ANY(reasons)");
    expect(thin.n).toBeGreaterThanOrEqual(40);
  });

  it('new inserts are scored by the next run, and only they', async () => {
    const ids = await withPg(db.url, async (c) => [
      ...(await insertInvoices(c, [
        { issuer: 1, receiver: 2, amount: '120.00' },
        { issuer: 3, receiver: 4, amount: '99.99' },
      ])),
      ...(await insertInvoices(c, [{ issuer: 5, receiver: 6, amount: '5000.00' }])),
    ]);
    await waitForHorizon(db.url);
    const run = await riskRun(db.url);
    expect(run.scored).toBe(3);
    expect(run.cursor).toBe(`${run.cursor?.split('/')[0]}/${ids[2]}`);
    const scored = await q<{ id: string }>(
      "SELECT invoice_id::text AS id FROM risk_scores WHERE model_version = 'v1' AND invoice_id = ANY($1::bigint[]) ORDER BY 1",
      [ids],
    );
    expect(scored.map((r) => r.id)).toEqual([...ids].sort());
    await withPg(db.url, async (c) => expect(await scoreCounts(c)).toMatchObject({ scores: N + 3, distinct: N + 3, unscored: 0 }));
    expect((await cli(['risk', 'verify'])).code).toBe(0);
  });

  it('the same scores whatever the batch size (histories carried across batches)', async () => {
    await riskRun(db.url, ['--model-version', 'one-batch', '--batch-size', '50000']);
    const small = await riskRun(db.url, ['--model-version', 'small-batches', '--batch-size', '37']);
    expect(small.batches).toBe(Math.ceil((N + 3) / 37));
    const [diff] = await q<{ n: number; total: number }>(
      `SELECT count(*) FILTER (WHERE a.score <> b.score OR a.reasons <> b.reasons OR a.level <> b.level)::int AS n, count(*)::int AS total
         FROM risk_scores a JOIN risk_scores b USING (invoice_id) WHERE a.model_version = 'one-batch' AND b.model_version = 'small-batches'`,
    );
    expect(diff).toEqual({ n: 0, total: N + 3 });
    await q("DELETE FROM risk_scores WHERE model_version IN ('one-batch', 'small-batches')");
    await q("DELETE FROM risk_watermarks WHERE model_version IN ('one-batch', 'small-batches')");
  });
});

describe('dead letters', () => {
  let zero: string;
  let after: string;

  it('an unscorable invoice goes to risk_dead_letters and does not hold up the others; verify counts it as covered', async () => {
    await q('ALTER TABLE invoices DROP CONSTRAINT invoices_amount_check');
    [zero, after] = await withPg(db.url, async (c) => [
      ...(await insertInvoices(c, [{ issuer: 7, receiver: 8, amount: '0' }])),
      ...(await insertInvoices(c, [{ issuer: 7, receiver: 9, amount: '45.00' }])),
    ]);
    await waitForHorizon(db.url);
    const run = await riskRun(db.url);
    expect(run).toMatchObject({ scored: 1, failed: 1, cursor: expect.stringMatching(new RegExp(`/${after}$`)) });
    expect(run.result.stderr).toContain('1 failed (dead letters: see `invoices risk status`, retry with --retry-failed)');
    const dead = await q<{ id: string; error: string; attempts: number }>(
      "SELECT invoice_id::text AS id, error, attempts FROM risk_dead_letters WHERE model_version = 'v1'",
    );
    expect(dead).toEqual([{ id: zero, error: 'amount 0.00 cannot be scored: the model needs an amount above zero', attempts: 1 }]);
    expect(await q('SELECT 1 FROM risk_scores WHERE invoice_id = $1', [zero])).toEqual([]);
    expect(await q("SELECT 1 FROM risk_scores WHERE invoice_id = $1 AND model_version = 'v1'", [after])).toHaveLength(1);

    const verify = await cli(['risk', 'verify', '--json']);
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: N + 5, scored: N + 4, dead_letters: 1, missing: 0 });
    const status = await cli(['risk', 'status', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ model: 'v1', dead_letters: 1, waiting: 0, held_back: 0, total_scored: N + 4 });
    // explain recomputes the features: the amount still cannot be scored, and it says what to do.
    const explain = await cli(['risk', 'explain', zero]);
    expect(explain.code).toBe(1);
    expect(explain.stderr).toBe(
      `invoices: invoice ${zero}: amount 0.00 cannot be scored: the model needs an amount above zero; it is a dead letter of model v1 after 1 attempt(s): fix it, then run \`invoices risk --retry-failed\`\n`,
    );
  });

  it('--retry-failed scores it once its amount is fixed, and removes the dead letter', async () => {
    const still = await riskRun(db.url, ['--retry-failed']);
    expect(still).toMatchObject({ scored: 0, failed: 1 });
    expect((await q<{ attempts: number }>('SELECT attempts FROM risk_dead_letters WHERE invoice_id = $1', [zero]))[0].attempts).toBe(2);

    await q('UPDATE invoices SET amount = 45.00 WHERE invoice_id = $1', [zero]);
    const retry = await riskRun(db.url, ['--retry-failed']);
    expect(retry).toMatchObject({ scored: 1, failed: 0 });
    expect(await q('SELECT 1 FROM risk_dead_letters')).toEqual([]);
    expect(await q("SELECT level FROM risk_scores WHERE invoice_id = $1 AND model_version = 'v1'", [zero])).toHaveLength(1);
    await withPg(db.url, async (c) =>
      expect(await scoreCounts(c)).toEqual({ scores: N + 5, distinct: N + 5, invoices: N + 5, unscored: 0, dead: 0 }),
    );
    const verify = await cli(['risk', 'verify', '--json']);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: N + 5, scored: N + 5, dead_letters: 0, missing: 0 });
  });

  it('--retry-failed drops the dead letter of an invoice deleted since', async () => {
    const [gone] = await withPg(db.url, (c) => insertInvoices(c, [{ issuer: 9, receiver: 10, amount: '0.00' }]));
    await waitForHorizon(db.url);
    expect(await riskRun(db.url)).toMatchObject({ scored: 0, failed: 1 });
    await q('DELETE FROM invoices WHERE invoice_id = $1', [gone]);
    expect(await riskRun(db.url, ['--retry-failed'])).toMatchObject({ scored: 0, failed: 0 });
    expect(await q('SELECT 1 FROM risk_dead_letters')).toEqual([]);
    await q('ALTER TABLE invoices ADD CONSTRAINT invoices_amount_check CHECK (amount >= 0)');
  });
});

describe('rescoring and model versions', () => {
  const total = N + 5;

  it('--since all rescores every invoice, keeping one row per invoice and the watermark where it was', async () => {
    const mark = await watermark('v1');
    const before = (await q<{ at: string }>("SELECT max(scored_at)::text AS at FROM risk_scores WHERE model_version = 'v1'"))[0].at;
    const run = await riskRun(db.url, ['--since', 'all', '--batch-size', '500']);
    expect(run.scored).toBe(total);
    expect(run.batches).toBe(Math.ceil(total / 500));
    await withPg(db.url, async (c) => expect(await scoreCounts(c)).toMatchObject({ scores: total, distinct: total, unscored: 0 }));
    const [rescored] = await q<{ n: number }>("SELECT count(*)::int AS n FROM risk_scores WHERE model_version = 'v1' AND scored_at > $1", [
      before,
    ]);
    expect(rescored.n).toBe(total);
    expect(await watermark('v1')).toBe(mark);
    expect((await riskRun(db.url)).scored).toBe(0);
  });

  it('--model-version v2 scores separately, with its own watermark', async () => {
    const run = await riskRun(db.url, ['--model-version', 'v2']);
    expect(run).toMatchObject({ model: 'v2', scored: total });
    await withPg(db.url, async (c) => {
      expect(await scoreCounts(c, 'v2')).toMatchObject({ scores: total, distinct: total, unscored: 0 });
      expect(await scoreCounts(c, 'v1')).toMatchObject({ scores: total, distinct: total, unscored: 0 });
    });
    const [{ last }] = await q<{ last: string }>(
      "SELECT created_xid::text || '/' || invoice_id AS last FROM invoices ORDER BY created_xid DESC, invoice_id DESC LIMIT 1",
    );
    expect(await watermark('v2')).toBe(last);
    const verify = await cli(['risk', 'verify', '--model-version', 'v2', '--json']);
    expect(JSON.parse(verify.stdout)).toMatchObject({ model: 'v2', checked: total, scored: total, missing: 0 });
  });

  it('--since 2026-01-01 with a new model scores only what was issued since then and does not move the watermark', async () => {
    const [{ since }] = await q<{ since: number }>(
      "SELECT count(*)::int AS since FROM invoices WHERE issue_date >= '2026-01-01T00:00:00Z'",
    );
    expect(since).toBeGreaterThan(0);
    expect(since).toBeLessThan(total);
    const run = await riskRun(db.url, ['--since', '2026-01-01', '--model-version', 'v3']);
    expect(run.scored).toBe(since);
    const [{ n, early }] = await q<{ n: number; early: number }>(
      "SELECT count(*)::int AS n, count(*) FILTER (WHERE i.issue_date < '2026-01-01T00:00:00Z')::int AS early FROM risk_scores s JOIN invoices i USING (invoice_id) WHERE s.model_version = 'v3'",
    );
    expect({ n, early }).toEqual({ n: since, early: 0 });
    expect(await watermark('v3')).toBe('0/-9223372036854775808');
    // A run from the watermark then scores the rest and keeps the scores it finds.
    const rest = await riskRun(db.url, ['--model-version', 'v3']);
    expect(rest).toMatchObject({ scored: total - since, already_scored: since });
    await withPg(db.url, async (c) => expect(await scoreCounts(c, 'v3')).toMatchObject({ scores: total, distinct: total, unscored: 0 }));
  });

  it('--limit scores at most that many, moving the watermark; the next run goes on from there', async () => {
    const first = await riskRun(db.url, ['--model-version', 'lim', '--limit', '700', '--batch-size', '300']);
    expect(first).toMatchObject({ scored: 700, batches: 3 });
    const [{ below }] = await q<{ below: number }>(
      "SELECT count(*)::int AS below FROM invoices i, risk_watermarks w WHERE w.model_version = 'lim' AND (i.created_xid, i.invoice_id) <= (w.cursor_xid, w.cursor_invoice_id)",
    );
    expect(below).toBe(700);
    const rest = await riskRun(db.url, ['--model-version', 'lim']);
    expect(rest).toMatchObject({ scored: total - 700, already_scored: 0 });
    await withPg(db.url, async (c) => expect(await scoreCounts(c, 'lim')).toMatchObject({ scores: total, distinct: total, unscored: 0 }));
  });

  it('refuses flags that do not go together (exit 2)', async () => {
    for (const args of [
      ['--follow', '--since', 'all'],
      ['--retry-failed', '--since', 'all'],
      ['--since', '2026-13-01'],
      ['--model-version', 'a b'],
      ['--batch-size', '0'],
      ['bogus'],
    ]) {
      const r = await cli(['risk', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
    }
  });
});

describe('invoices risk explain', () => {
  it('--json gives the invoice, its features, the score with reasons, and the stored score', async () => {
    const [inv] = await q<{ id: string; score: string; level: string; reasons: string[] }>(
      "SELECT invoice_id::text AS id, score::text, level, reasons FROM risk_scores WHERE model_version = 'v1' AND cardinality(reasons) >= 2 ORDER BY invoice_id LIMIT 1",
    );
    const r = await cli(['risk', 'explain', inv.id, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const e = JSON.parse(r.stdout);
    expect(e.invoice).toMatchObject({
      id: inv.id,
      issuer: expect.stringMatching(/^\d+$/),
      receiver: expect.stringMatching(/^\d+$/),
      amount: expect.stringMatching(/^\d+\.\d{2}$/),
    });
    expect(Object.keys(e.features).sort()).toEqual([
      'amountBaseline',
      'amountZ',
      'baselineMedian',
      'dateOffsetDays',
      'nearDuplicates',
      'newCounterparty',
      'priorInvoices',
      'round',
      'velocity',
    ]);
    expect(e.features.velocity.map((v: { days: number }) => v.days)).toEqual([1, 7, 30]);
    expect(e.score.score).toBeGreaterThanOrEqual(0);
    expect(e.score.score).toBeLessThanOrEqual(1);
    for (const reason of e.score.reasons) {
      expect(CODES).toContain(reason.code);
      expect(reason.text).toEqual(expect.any(String));
      expect(reason.weight).toBeGreaterThan(0);
    }
    // Recomputed from the table as it is, the same as stored (no new invoice of this issuer came before it since).
    expect(e.score.reasons.map((x: { code: string }) => x.code)).toEqual(inv.reasons);
    expect(e.stored).toMatchObject({ score: inv.score, level: inv.level, reasons: inv.reasons });
    expect(e.deadLetter).toBeNull();
  });

  it('the table format lists features and reasons', async () => {
    const r = await cli(['risk', 'explain', '1', '--format', 'table']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('prior invoices of the issuer');
    expect(r.stdout).toContain('stored score (v1)');
  });

  it('an unknown id exits 3; a bad id exits 2', async () => {
    const unknown = await cli(['risk', 'explain', '99999999']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('invoice 99999999 not found');
    const bad = await cli(['risk', 'explain', 'abc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('risk explain needs an invoice id, got "abc"');
    const missing = await cli(['risk', 'explain']);
    expect(missing.code).toBe(2);
  });
});

describe('issuer histories carried across batches', () => {
  /** Scores what was issued since 2026-06-01 with a new model in one batch and one invoice per batch: they must agree. */
  async function compareBatchSizes(
    tag: string,
    where = 'true',
  ): Promise<{ diff: { id: string; one: string[]; each: string[] }[]; reasons: string[][] }> {
    const one = await riskRun(db.url, ['--since', '2026-06-01', '--model-version', `${tag}-one`]);
    const each = await riskRun(db.url, ['--since', '2026-06-01', '--model-version', `${tag}-each`, '--batch-size', '1']);
    expect(each.scored).toBe(one.scored);
    expect(each.batches).toBe(one.scored);
    const diff = await q<{ id: string; one: string[]; each: string[] }>(
      `SELECT a.invoice_id::text AS id, a.reasons AS one, b.reasons AS each FROM risk_scores a JOIN risk_scores b USING (invoice_id)
        WHERE a.model_version = $1 AND b.model_version = $2 AND (a.score <> b.score OR a.reasons <> b.reasons)
          AND a.invoice_id IN (SELECT invoice_id FROM invoices WHERE ${where}) ORDER BY 1`,
      [`${tag}-one`, `${tag}-each`],
    );
    const reasons = (
      await q<{ reasons: string[] }>('SELECT reasons FROM risk_scores WHERE model_version = $1 ORDER BY invoice_id', [`${tag}-one`])
    ).map((r) => r.reasons);
    return { diff, reasons };
  }

  it('a future-dated invoice scored first does not hide a later burst of the same issuer', async () => {
    await withPg(db.url, async (c) => {
      await c.query("INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (now() - interval '1 hour', 30, 31, 70.00)");
      await c.query(
        "INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (now() + interval '400 days', 30, 32, 77.77)",
      );
      await c.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount)
                     SELECT now() - (13 - k) * interval '1 minute', 30, 1 + k, 60 + k FROM generate_series(1, 12) k`);
    });
    await waitForHorizon(db.url);
    const { diff, reasons } = await compareBatchSizes('future');
    expect(reasons.flat()).toContain('VELOCITY_1D');
    expect(diff).toEqual([]);
  });

  it('a back-dated invoice committed after a later-dated one of the same issuer is counted once', async () => {
    await withPg(db.url, async (c) => {
      // Issuer 35: one invoice dated today, then (later transaction) three dated yesterday,
      // to the same receiver with the same amount: near-duplicates of each other, once each.
      await c.query('INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (now(), 35, 36, 500.00)');
      await c.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount)
                     SELECT now() - interval '1 day' + k * interval '1 minute', 35, 37, 88.00 FROM generate_series(1, 3) k`);
    });
    await waitForHorizon(db.url);
    // The invoice dated today is scored before the back-dated ones are walked when batches are
    // small (and after them in one batch, which sorts by date): only the back-dated ones compare.
    const { diff } = await compareBatchSizes('backdated', 'issuer_id = 35 AND receiver_id = 37');
    expect(diff).toEqual([]);
    const dup = await q<{ reasons: string[] }>(
      "SELECT s.reasons FROM risk_scores s JOIN invoices i USING (invoice_id) WHERE s.model_version = 'backdated-each' AND i.issuer_id = 35 AND i.receiver_id = 37 ORDER BY i.issue_date",
    );
    expect(dup.map((r) => r.reasons.includes('NEAR_DUPLICATE'))).toEqual([false, true, true]);
  });
});
