// A database restored elsewhere (issue 10): its derived state (monthly totals, their watermark
// and lineage) comes along with the rows, but means nothing on another cluster or database.
// group and export must refuse ids from another cluster with advice that works, then rebuild
// and answer exactly. The copy is pg_dump | pg_restore when a pg_dump as new as the server is
// on PATH (PostgreSQL 15 at 127.0.0.1:5432), else what pg_dump does, by hand: the same schema,
// then every table's rows by COPY with triggers off (the embedded server ships no pg_dump).
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedStatus, stopEmbedded } from '../src/db/embedded.js';
import { sqlFile } from '../src/schema/sql-file.js';
import { createDatabase, runCli, seedWithCli, tempDir, withPg, type TestDatabase } from './helpers.js';

let source: TestDatabase;
let sameCluster: TestDatabase;
let home: string;
let otherUrl: string;
let lake: string;
const AS_OF = '2026-03-15';

beforeAll(async () => {
  source = await createDatabase();
  sameCluster = await createDatabase();
  lake = path.join(tempDir('restore-lake-'), 'lake');
  // Spend transaction ids first, so that the rows' created_xid are ahead of a new cluster's counter.
  await withPg(source.url, async (c) => {
    for (let i = 0; i < 1500; i++) await c.query('SELECT pg_current_xact_id()');
  });
  await seedWithCli(source.url, ['--customers', '80', '--invoices', '6000', '--months', '6', '--as-of', AS_OF, '--seed', '5']);
  for (const args of [['group', '--months', '6', '--by', 'issuer', '--as-of', AS_OF, '--engine', 'totals', '--quiet'], ['export', '--out', lake, '--quiet']]) {
    const r = await runCli(args, { env: { DATABASE_URL: source.url } });
    if (r.code !== 0) throw new Error(`${args[0]}: ${r.stderr}`);
  }
  home = path.join(tempDir('restore-home-'), 'home');
  const started = await runCli(['db', 'start'], { env: { INVOICES_HOME: home } });
  if (started.code !== 0) throw new Error(started.stderr);
  otherUrl = (await runCli(['db', 'url'], { env: { INVOICES_HOME: home } })).stdout.trim();
}, 180_000);

afterAll(async () => {
  if (home && embeddedStatus(home).running) await stopEmbedded(home);
  await source?.drop();
  await sameCluster?.drop();
});

/** The server's major version, and whether the pg_dump on PATH can dump it. */
async function pgDumpFits(url: string): Promise<boolean> {
  const server = await withPg(url, async (c) => Number((await c.query('SHOW server_version_num')).rows[0].server_version_num) / 10000);
  const r = spawnSync('pg_dump', ['--version'], { encoding: 'utf8' });
  const client = Number(/(\d+)\.\d+/.exec(r.stdout ?? '')?.[1] ?? 0);
  return r.status === 0 && client >= Math.floor(server);
}

/** Copies the whole database at `from` into the empty database at `to`. */
async function restore(from: string, to: string): Promise<string> {
  if (await pgDumpFits(from)) {
    const dump = execFileSync('pg_dump', ['-Fc', '--no-owner', from], { maxBuffer: 1 << 28 });
    execFileSync('pg_restore', ['--no-owner', '--exit-on-error', '-d', to], { input: dump });
    return 'pg_dump';
  }
  // What pg_restore does: the schema (here: this tool's own, and the same partitions), then the
  // rows of every table with triggers and foreign keys off.
  const init = await runCli(['init', '--quiet'], { env: { DATABASE_URL: to } });
  if (init.code !== 0) throw new Error(init.stderr);
  const src = new pg.Client({ connectionString: from });
  const dst = new pg.Client({ connectionString: to });
  await src.connect();
  await dst.connect();
  try {
    const { rows: parts } = await src.query<{ name: string; bound: string }>(
      `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
        WHERE h.inhparent = 'invoices'::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'`);
    for (const p of parts) await dst.query(`CREATE TABLE ${p.name} PARTITION OF invoices ${p.bound}`);
    await dst.query(sqlFile('monthly-totals.sql'));
    await dst.query('SET session_replication_role = replica');
    const tables = ['customers', 'invoices', 'invoice_ids', 'invoice_changes', 'invoice_monthly_totals', 'invoice_monthly_totals_state'];
    for (const t of tables) {
      const { rows: cols } = await src.query<{ c: string }>(`SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS c FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, [t]);
      await pipeline(src.query(copyTo(`COPY (SELECT ${cols[0].c} FROM ${t}) TO STDOUT`)), dst.query(copyFrom(`COPY ${t} (${cols[0].c}) FROM STDIN`)));
    }
  } finally {
    await src.end();
    await dst.end();
  }
  return 'COPY';
}

async function sqlAnswer(url: string): Promise<Record<string, unknown>[]> {
  return withPg(url, async (c) => (await c.query(
    `SELECT i.issuer_id::int AS customer_id, c.name, count(*)::int AS invoices, sum(amount)::text AS total, round(avg(amount), 2)::text AS average
       FROM invoices i JOIN customers c ON c.id = i.issuer_id
      WHERE issue_date >= '2025-10-01' AND issue_date < '2026-04-01' GROUP BY 1, 2 ORDER BY sum(amount) DESC, 1`)).rows);
}

const group = (url: string, engine: string) =>
  runCli(['group', '--months', '6', '--by', 'issuer', '--as-of', AS_OF, '--engine', engine, '--lake', lake, '--json'], { env: { DATABASE_URL: url } });

describe.sequential('a database restored elsewhere', () => {
  it('into another database of the same cluster: the totals see the new database and rebuild', async () => {
    await restore(source.url, sameCluster.url);
    // The restored totals state says "complete up to xid N" for the old database's rows.
    expect(await withPg(sameCluster.url, async (c) => (await c.query('SELECT count(*)::int AS n FROM invoice_monthly_totals_state')).rows[0].n)).toBe(1);
    const r = await group(sameCluster.url, 'totals');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/computing every month \(the database was dropped and created again/);
    expect(JSON.parse(r.stdout)).toEqual(await sqlAnswer(sameCluster.url));
  });

  it('into another cluster: ids from the old cluster are refused with advice, which then works', async () => {
    await restore(source.url, otherUrl);
    const expected = await sqlAnswer(otherUrl);
    expect(expected).toEqual(await sqlAnswer(source.url));
    for (const args of [['group', '--months', '6', '--by', 'issuer', '--as-of', AS_OF, '--engine', 'totals'], ['export', '--out', lake]]) {
      const refused = await runCli(args, { env: { DATABASE_URL: otherUrl } });
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toMatch(/created_xid values ahead of this server's transaction counter .*UPDATE/);
      expect(refused.stdout).toBe('');
    }
    // The advice, as printed.
    const advice = /(UPDATE .*?pg_snapshot_xmax\(pg_current_snapshot\(\)\))/.exec((await group(otherUrl, 'totals')).stderr)?.[1];
    expect(advice).toBeDefined();
    await withPg(otherUrl, (c) => c.query(advice!));

    const totals = await group(otherUrl, 'totals');
    expect(totals.code, totals.stderr).toBe(0);
    expect(totals.stderr).toMatch(/computing every month \(the database is now on another PostgreSQL cluster/);
    expect(JSON.parse(totals.stdout)).toEqual(expected);
    // The lake exported from the old cluster: rewritten whole, then exact.
    const exported = await runCli(['export', '--out', lake, '--json'], { env: { DATABASE_URL: otherUrl } });
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stderr).toMatch(/rewriting every month: the database is now on another PostgreSQL cluster/);
    for (const engine of ['duckdb', 'auto', 'postgres']) {
      const r = await group(otherUrl, engine);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout), engine).toEqual(expected);
    }
  });
});
