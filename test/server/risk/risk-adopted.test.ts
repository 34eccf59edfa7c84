// `invoices risk` on an adopted table of foreign shape (names, integer ids, timestamp without
// time zone, numeric(12,3)), mapped in invoices.config.json: init says it changes that table.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adoptBilling, createDatabase, runCli, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';
import { riskRun, scoreCounts } from '../../support/risk-helpers.js';

const ROWS = 600;

let db: TestDatabase;
let cwd: string;
const cli = (args: string[]) => runCli(args, { cwd, env: { DATABASE_URL: db.url } });
const q = <T = Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  withPg(db.url, async (c) => (await c.query(sql, params)).rows as T[]);
const counts = () => withPg(db.url, (c) => scoreCounts(c, 'v1', 'billing.invoice', 'id'));

beforeAll(async () => {
  db = await createDatabase();
  cwd = await adoptBilling(
    db.url,
    `
    INSERT INTO billing.clients (customer_name) SELECT 'client ' || g FROM generate_series(1, 12) g;
    INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd)
      SELECT timestamp '2025-06-01' + g * interval '7 hours', 1 + g % 12, 1 + (g * 7 + 1) % 12, round((10 + (g * 37) % 900)::numeric + 0.125, 3)
        FROM generate_series(1, ${ROWS}) g WHERE g % 12 <> (g * 7 + 1) % 12;`,
    'risk-adopted-',
  );
});
afterAll(async () => {
  await db?.drop();
});

describe('invoices risk on an adopted table', () => {
  let total: number;

  it('without init: exit 2, telling to run `invoices risk init`; nothing is created', async () => {
    total = (await q<{ n: number }>('SELECT count(*)::int AS n FROM billing.invoice'))[0].n;
    expect(total).toBeGreaterThan(400);
    for (const args of [['risk'], ['risk', 'status'], ['risk', 'verify'], ['risk', 'explain', '1']]) {
      const r = await cli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain('run `invoices risk init`');
    }
    const r = await cli(['risk']);
    expect(r.stderr).toContain('has no created_xid column');
    expect(await q("SELECT 1 FROM pg_attribute WHERE attrelid = 'billing.invoice'::regclass AND attname = 'created_xid'")).toEqual([]);
    expect(await q("SELECT to_regclass('risk_scores') AS t")).toEqual([{ t: null }]);
  });

  it("init --dry-run marks the steps that change the user's table, and changes nothing", async () => {
    const r = await cli(['risk', 'init', '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      '-- [changes your table] add column created_xid xid8 NOT NULL DEFAULT pg_current_xact_id() to "billing"."invoice"',
    );
    expect(r.stdout).toContain('ALTER TABLE "billing"."invoice" ADD COLUMN created_xid xid8 NOT NULL DEFAULT pg_current_xact_id();');
    expect(r.stdout).toContain('-- [changes your table] add trigger invoices_risk_notify to "billing"."invoice"');
    expect(r.stdout).toMatch(/-- create risk_scores, risk_dead_letters and risk_watermarks/);
    expect(r.stdout).toMatch(/ON "billing"\."invoice"[^\n]*\("?created_xid"?, "?id"?\)/);
    expect(await q("SELECT 1 FROM pg_attribute WHERE attrelid = 'billing.invoice'::regclass AND attname = 'created_xid'")).toEqual([]);
    expect(await q("SELECT to_regclass('risk_scores') AS t")).toEqual([{ t: null }]);
  });

  it('init says that it changes the table (created_xid, trigger, indexes); then scoring works on it', async () => {
    const r = await cli(['risk', 'init']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /changing your table: add column created_xid xid8 NOT NULL DEFAULT pg_current_xact_id\(\) to "billing"\."invoice"/,
    );
    expect(r.stderr).toMatch(/changing your table: add trigger invoices_risk_notify/);
    expect(r.stderr).not.toMatch(/changing your table: create risk_scores/);
    const [col] = await q<{ type: string }>(
      "SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'billing.invoice'::regclass AND attname = 'created_xid'",
    );
    expect(col.type).toBe('xid8');
    expect(
      await q("SELECT tgname FROM pg_trigger WHERE tgrelid = 'billing.invoice'::regclass AND tgname = 'invoices_risk_notify'"),
    ).toHaveLength(1);
    expect((await cli(['risk', 'init'])).stderr).toContain('the risk scorer is set up: nothing to do');

    await waitForHorizon(db.url, 'billing.invoice');
    const run = await riskRun(db.url, [], { cwd });
    expect(run.scored).toBe(total);
    expect(await counts()).toEqual({ scores: total, distinct: total, invoices: total, unscored: 0, dead: 0 });
    const verify = await cli(['risk', 'verify', '--json']);
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: total, scored: total, missing: 0 });
    expect((await riskRun(db.url, [], { cwd })).scored).toBe(0);
  });

  it('new rows of the adopted table are scored by the next run; explain reads its timestamp as UTC', async () => {
    const ids = await q<{ id: string }>(
      "INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd) VALUES ('2026-03-01 23:30:00.123456', 1, 2, 1234.567), ('2026-03-02 08:00:00', 2, 1, 50000.000) RETURNING id::text AS id",
    );
    await waitForHorizon(db.url, 'billing.invoice');
    const run = await riskRun(db.url, [], { cwd });
    expect(run).toMatchObject({ scored: 2, cursor: expect.stringMatching(new RegExp(`/${ids[1].id}$`)) });
    expect(await counts()).toMatchObject({ scores: total + 2, distinct: total + 2, unscored: 0 });
    const r = await cli(['risk', 'explain', ids[0].id, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const e = JSON.parse(r.stdout);
    expect(e.invoice).toMatchObject({ id: ids[0].id, at: '2026-03-01T23:30:00.123456Z', issuer: '1', receiver: '2', amount: '1234.567' });
    expect(e.stored).toMatchObject({ level: expect.stringMatching(/^(low|medium|high)$/) });
    expect((await cli(['risk', 'verify'])).code).toBe(0);
  });

  it('refuses created_xid values ahead of this server (a table restored from another cluster), with the fix that works', async () => {
    const [{ id }] = await q<{ id: string }>(
      "INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd) VALUES ('2026-03-03 10:00:00', 3, 4, 99.000) RETURNING id::text AS id",
    );
    await q("UPDATE billing.invoice SET created_xid = '4000000000'::xid8 WHERE id = $1", [id]);
    const r = await cli(['risk']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      "billing.invoice holds created_xid values ahead of this server's transaction counter (restored from another cluster?)",
    );
    const fix = /renumbered with (UPDATE .*?); then run again/.exec(r.stderr);
    expect(fix, r.stderr).not.toBeNull();
    await q(fix![1]);
    await waitForHorizon(db.url, 'billing.invoice');
    expect(await riskRun(db.url, [], { cwd })).toMatchObject({ scored: 1, cursor: expect.stringMatching(new RegExp(`/${id}$`)) });
    expect(await counts()).toMatchObject({ scores: total + 3, distinct: total + 3, unscored: 0 });
  });
});
