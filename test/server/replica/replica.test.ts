// Read replicas end to end on a real streaming standby of the test server (test/support/standby.ts):
// reads go to the standby and writes never do; a lookup the standby has not replayed is found
// on the primary; a standby that lags or is stopped is passed over with a warning, or is an
// error with --replica-only; export from the standby equals the primary to the cent, also
// incrementally; the lag is reported.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, seedWithCli, tempDir, waitFor, waitForHorizon, withPg } from '../../support/helpers.js';
import { lakeMonths, pgMonths, readManifest } from '../../support/lake-helpers.js';
import { getJson, startServe } from '../../support/serve.js';
import { startStandby, type Standby } from '../../support/standby.js';

const made = await startStandby();
const skip = 'skip' in made ? made.skip : undefined;
if (skip) console.warn(`read-replica tests skipped: ${skip}`);
const standby = made as Standby;

let primary: string;
let replica: string;
const dbName = `invoices_replica_${process.pid}`;

/** The standby has replayed everything the primary has written so far. */
async function caughtUp(): Promise<void> {
  const lsn = await withPg(primary, async (c) => (await c.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l);
  await waitFor(
    'the standby to replay the primary',
    () =>
      // On the standby's `postgres` database: ours may not be there yet.
      withPg(
        standby.urlOf(standby.primaryAdmin),
        async (c) => (await c.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn])).rows[0].ok,
      ),
    // The other test files' writes (the whole cluster's WAL) are replayed too, on the same 2 cores.
    180_000,
  );
}

const env = (extra: Record<string, string> = {}) => ({ DATABASE_URL: primary, DATABASE_REPLICA_URL: replica, ...extra });
const cli = (args: string[], extra?: Record<string, string>) => runCli(args, { env: env(extra) });
const hostPort = () => `127.0.0.1:${standby.port}`;

describe.skipIf(skip !== undefined)(`read replicas on a streaming standby${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(async () => {
    console.info(`standby made with ${standby.how} in ${(standby.setupMs / 1000).toFixed(1)} s`);
    await withPg(standby.primaryAdmin, (c) => c.query(`CREATE DATABASE ${dbName} TEMPLATE template0 ENCODING 'UTF8'`));
    const u = new URL(standby.primaryAdmin);
    u.pathname = `/${dbName}`;
    primary = u.toString();
    replica = standby.urlOf(primary);
    await seedWithCli(primary, ['--customers', '30', '--invoices', '300', '--seed', '5', '--as-of', '2025-06-01', '--months', '4']);
    await caughtUp();
  });

  afterAll(async () => {
    if (!primary) return standby.stop();
    // Replay must run for the DROP to reach it; the standby goes anyway.
    await withPg(replica, (c) => c.query('SELECT pg_wal_replay_resume()')).catch(() => {});
    await withPg(standby.primaryAdmin, async (c) => {
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [dbName]);
      await c.query(`DROP DATABASE IF EXISTS ${dbName}`);
    }).catch(() => {});
    await standby.stop();
  });

  it('get reads from the standby: its sessions are there, none on the primary, and it answers as the primary would', async () => {
    const direct = await runCli(['get', '7', '--json'], { env: { DATABASE_URL: primary } });
    const r = await cli(['get', '7', '--json', '--debug']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(direct.stdout));
    expect(r.stderr).toMatch(new RegExp(`get: replica postgres://[^ ]*${hostPort()}[^ ]* \\(\\d+\\.\\d s behind`));
    expect(r.stderr).not.toMatch(/warning/);

    // While `get -` waits for ids on stdin, its connection is on the standby, not the primary.
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), 'get', '-', '--json'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tempDir('home-'), TZ: 'UTC', ...env() },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stdin.write('7\n');
    await waitFor('get - to answer', async () => out.includes('"invoice_id"'), 30_000);
    const sessions = async (url: string) =>
      withPg(
        url,
        async (c) =>
          (
            await c.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'invoices'",
              [dbName],
            )
          ).rows[0].n,
      );
    const [onStandby, onPrimary, inRecovery] = await Promise.all([
      sessions(replica),
      sessions(primary),
      withPg(replica, async (c) => (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r),
    ]);
    child.stdin.end();
    await new Promise((resolve) => child.on('close', resolve));
    expect(inRecovery).toBe(true);
    expect(onStandby).toBe(1);
    expect(onPrimary).toBe(0);
  });

  it('writes stay on the primary: seed, group --engine totals and export with a replica configured succeed, and their writes are on the primary', async () => {
    const seed = await cli([
      'seed',
      '--quiet',
      '--customers',
      '5',
      '--invoices',
      '20',
      '--seed',
      '9',
      '--as-of',
      '2025-06-01',
      '--months',
      '2',
      '--append',
    ]);
    expect(seed.code, seed.stderr).toBe(0);
    await waitForHorizon(primary);
    const totals = await cli([
      'group',
      '--months',
      '3',
      '--as-of',
      '2025-06-01',
      '--by',
      'issuer',
      '--engine',
      'totals',
      '--json',
      '--debug',
    ]);
    expect(totals.code, totals.stderr).toBe(0);
    expect(totals.stderr).not.toMatch(/: replica postgres/);
    const built = await withPg(
      primary,
      async (c) => (await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE '%totals%'")).rows[0].n,
    );
    expect(built).toBeGreaterThan(0);
  });

  it('group --engine postgres reads from the standby, with the same rows as on the primary', async () => {
    await caughtUp();
    const args = ['group', '--months', '4', '--as-of', '2025-06-01', '--by', 'customer', '--engine', 'postgres', '--json'];
    const onPrimary = await runCli(args, { env: { DATABASE_URL: primary } });
    const viaReplica = await cli([...args, '--debug']);
    expect(viaReplica.code, viaReplica.stderr).toBe(0);
    expect(viaReplica.stderr).toContain('group --engine postgres: replica');
    expect(JSON.parse(viaReplica.stdout)).toEqual(JSON.parse(onPrimary.stdout));
  });

  it('export from the standby equals the primary to the cent, then again incrementally after new inserts', async () => {
    await waitForHorizon(primary);
    const lake = tempDir('lake-');
    const first = await cli(['export', '--out', lake, '--debug']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('export: replica');
    expect(first.stderr).toContain('read from a replica');
    expect(await lakeMonths(lake)).toEqual(await pgMonths(primary));
    const watermark = readManifest(lake).watermark;

    await seedWithCli(primary, [
      '--customers',
      '5',
      '--invoices',
      '40',
      '--seed',
      '11',
      '--as-of',
      '2025-06-01',
      '--months',
      '2',
      '--append',
    ]);
    await withPg(primary, (c) => c.query('UPDATE invoices SET amount = amount + 0.01 WHERE invoice_id = 3'));
    await waitForHorizon(primary);
    const second = await cli(['export', '--out', lake]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain('read from a replica');
    expect(second.stderr).toContain(`(was ${watermark})`);
    expect(await lakeMonths(lake)).toEqual(await pgMonths(primary));
    const verify = await runCli(['export', '--out', lake, '--verify-only'], { env: { DATABASE_URL: primary } });
    expect(verify.code, verify.stderr).toBe(0);
    // The same lake exported next from the primary alone: the standby's lineage and watermark are the primary's, nothing to rewrite.
    const fromPrimary = await runCli(['export', '--out', lake, '--json'], { env: { DATABASE_URL: primary } });
    expect(fromPrimary.code, fromPrimary.stderr).toBe(0);
    expect((JSON.parse(fromPrimary.stdout) as Array<{ action: string }>).map((m) => m.action)).toEqual(
      Object.keys(await pgMonths(primary)).map(() => 'unchanged'),
    );
  });

  it('the core API for a read pool: readServer names the replica and its settings; RoutedLookup on a pooled client asks the primary for a miss', async () => {
    const [{ resolveConfig }, { readServer }, { RoutedLookup }, { default: pg }] = await Promise.all([
      import('../../../src/config.js'),
      import('../../../src/db/replica.js'),
      import('../../../src/lookup/routed.js'),
      import('pg'),
    ]);
    const ctx = { config: resolveConfig({ databaseUrl: primary, replicaUrls: [replica], env: {}, cwd: tempDir('cwd-') }) };
    const route = await readServer(ctx);
    expect(route.on).toBe('replica');
    expect(route.name).toContain(hostPort());
    const pool = new pg.Pool({ ...route.settings, max: 2 });
    try {
      const client = await pool.connect();
      try {
        expect((await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(true);
        const lookup = new RoutedLookup(
          ctx,
          { client: client as unknown as import('../../../src/db/client.js').Client, on: route.on },
          ctx.config.tables,
        );
        const found = await lookup.many([7n, 999999999n]);
        expect([...found.keys()]).toEqual(['7']);
        await lookup.close();
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
  });

  it('serve reads from the standby (its pool is there) and asks the primary for an invoice the standby has not replayed', async () => {
    await caughtUp();
    const served = await startServe(['--max-replica-lag', '100000'], env());
    try {
      expect(served.stderr()).toContain(`reads on the replica postgres://`);
      const seven = await getJson(`${served.url}/invoices/7`);
      expect(seven.status).toBe(200);
      const direct = await runCli(['get', '7', '--json'], { env: { DATABASE_URL: primary } });
      expect(seven.body).toEqual(JSON.parse(direct.stdout));
      const sessions = (url: string) =>
        withPg(
          url,
          async (c) =>
            (
              await c.query<{ n: number }>(
                "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'invoices serve'",
                [dbName],
              )
            ).rows[0].n,
        );
      expect(await sessions(replica)).toBeGreaterThan(0);
      expect(await sessions(primary)).toBe(0);
      const metrics = await (await fetch(`${served.url}/metrics`)).text();
      expect(metrics).toMatch(/^invoices_replica_lag_seconds \d+(\.\d+)?$/m);

      await withPg(replica, (c) => c.query('SELECT pg_wal_replay_pause()'));
      try {
        const id = await withPg(
          primary,
          async (c) =>
            (
              await c.query<{ id: string }>(
                'INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) SELECT issue_date, issuer_id, receiver_id, 17.17 FROM invoices WHERE invoice_id = 7 RETURNING invoice_id::text AS id',
              )
            ).rows[0].id,
        );
        expect((await withPg(replica, (c) => c.query('SELECT 1 FROM invoices WHERE invoice_id = $1', [id]))).rowCount).toBe(0);
        const one = await getJson(`${served.url}/invoices/${id}`);
        expect(one.status).toBe(200);
        expect(one.body).toMatchObject({ invoice_id: Number(id), amount: '17.17' });
        const many = await getJson(`${served.url}/invoices?ids=7,${id},999999999`);
        expect(many.status).toBe(200);
        expect(many.body.invoices.map((i: { invoice_id: number }) => i.invoice_id)).toEqual([7, Number(id)]);
        expect(many.body.not_found).toEqual([999999999]);
        expect((await getJson(`${served.url}/invoices/999999999`)).status).toBe(404);
      } finally {
        await withPg(replica, (c) => c.query('SELECT pg_wal_replay_resume()'));
      }
    } finally {
      expect((await served.stop()).code).toBe(0);
    }
  });

  it('db replicas reports the lag in seconds and bytes', async () => {
    const r = await cli(['db', 'replicas', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as Array<Record<string, string>>;
    expect(rows).toHaveLength(1);
    expect(rows[0].replica).toContain(hostPort());
    expect(rows[0].state).toBe('usable');
    expect(rows[0].lag_seconds).toMatch(/^\d+\.\d{3}$/);
    expect(rows[0].bytes_behind).toMatch(/^\d+$/);
    expect(rows[0].replayed_lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  });

  it('a lookup the standby has not replayed (replay paused) is found on the primary; a standby too far behind is passed over, or an error with --replica-only', async () => {
    await caughtUp();
    await withPg(replica, (c) => c.query('SELECT pg_wal_replay_pause()'));
    try {
      const id = await withPg(
        primary,
        async (c) =>
          (
            await c.query<{ id: string }>(
              'INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) SELECT issue_date, issuer_id, receiver_id, 42.42 FROM invoices WHERE invoice_id = 7 RETURNING invoice_id::text AS id',
            )
          ).rows[0].id,
      );
      // Not on the standby: its replay is paused.
      expect((await withPg(replica, (c) => c.query('SELECT 1 FROM invoices WHERE invoice_id = $1', [id]))).rowCount).toBe(0);

      const one = await cli(['get', id, '--json', '--debug', '--max-replica-lag', '100000']);
      expect(one.code, one.stderr).toBe(0);
      expect(JSON.parse(one.stdout)).toMatchObject({ invoice_id: Number(id), amount: '42.42' });
      expect(one.stderr).toContain('get: replica');
      expect(one.stderr).toContain(`invoice ${id} not on the replica`);

      const many = await cli(['get', '7', id, '--json', '--debug', '--max-replica-lag', '100000']);
      expect(many.code, many.stderr).toBe(0);
      expect(
        many.stdout
          .trim()
          .split('\n')
          .map((l) => String(JSON.parse(l).invoice_id)),
      ).toEqual(['7', id]);
      expect(many.stderr).toContain('1 from the primary');

      const missing = await cli(['get', '999999999', '--max-replica-lag', '100000']);
      expect(missing.code).toBe(3);

      // The replay position no longer moves: behind by the time since its last replayed commit.
      await new Promise((r) => setTimeout(r, 1100));
      const behind = await cli(['get', '7', '--json', '--max-replica-lag', '0']);
      expect(behind.code, behind.stderr).toBe(0);
      expect(behind.stderr).toMatch(
        /warning: get from the primary: replica postgres:\/\/\S+: it is \d+\.\d s behind \(more than --max-replica-lag 0 s\)/,
      );
      const only = await cli(['get', '7', '--max-replica-lag', '0', '--replica-only']);
      expect(only.code).toBe(1);
      expect(only.stderr).toContain('no replica can answer (--replica-only)');

      // export waits for the standby to replay the primary's position, up to --max-replica-lag: then the primary.
      const lake = tempDir('lake-');
      const exp = await cli(['export', '--out', lake, '--max-replica-lag', '1']);
      expect(exp.code, exp.stderr).toBe(0);
      // Which check passes it over first depends on timing: its lag, or the wait for the primary's position.
      expect(exp.stderr).toMatch(
        /warning: export from the primary: replica \S+(: it is \d+\.\d s behind| did not replay the primary's WAL position)/,
      );
      expect(await lakeMonths(lake)).toEqual(await pgMonths(primary));
      const lagged = await cli(['db', 'replicas', '--json']);
      expect(JSON.parse(lagged.stdout)[0].replay_paused).toBe('true');
      expect(Number(JSON.parse(lagged.stdout)[0].bytes_behind)).toBeGreaterThan(0);
    } finally {
      await withPg(replica, (c) => c.query('SELECT pg_wal_replay_resume()'));
    }
  });

  it('a stopped standby: get, group and export fall back to the primary with a warning; --replica-only fails with exit 1', async () => {
    await standby.pause();
    try {
      const get = await cli(['get', '7', '--json']);
      expect(get.code, get.stderr).toBe(0);
      expect(JSON.parse(get.stdout).invoice_id).toBe(7);
      expect(get.stderr).toMatch(/warning: get from the primary: replica postgres:\/\/\S+: cannot connect/);
      const group = await cli(['group', '--months', '4', '--as-of', '2025-06-01', '--by', 'issuer', '--engine', 'postgres', '--json']);
      expect(group.code, group.stderr).toBe(0);
      expect(group.stderr).toContain('warning: group --engine postgres from the primary');
      const lake = tempDir('lake-');
      const exp = await cli(['export', '--out', lake]);
      expect(exp.code, exp.stderr).toBe(0);
      expect(exp.stderr).toContain('warning: export from the primary');
      expect(await lakeMonths(lake)).toEqual(await pgMonths(primary));
      const only = await cli(['get', '7', '--replica-only']);
      expect(only.code).toBe(1);
      expect(only.stderr).toMatch(/no replica can answer \(--replica-only\): replica \S+: cannot connect/);
      const report = await cli(['db', 'replicas', '--json']);
      expect(JSON.parse(report.stdout)[0]).toMatchObject({ state: 'unusable' });
    } finally {
      await standby.resume();
    }
    const back = await cli(['get', '7', '--json', '--debug']);
    expect(back.stderr).toContain('get: replica');
  });
});
