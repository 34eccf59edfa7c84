// A database restored elsewhere, for the tests of derived data that comes along with its rows:
// pg_dump | pg_restore when a pg_dump as new as the server is on PATH (PostgreSQL 15 at
// 127.0.0.1:5432), else what pg_dump does, by hand (the embedded server ships no pg_dump): this
// tool's schema and the same partitions, then every table's rows by COPY with triggers off.
import { execFileSync, spawnSync } from 'node:child_process';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import path from 'node:path';
import { embeddedStatus, stopEmbedded } from '../../src/db/embedded.js';
import { sqlFile } from '../../src/schema/sql-file.js';
import { runCli, tempDir, withPg } from './helpers.js';

/** Whether the pg_dump on PATH can dump the server at `url`. */
async function pgDumpFits(url: string): Promise<boolean> {
  const server = await withPg(url, async (c) => Number((await c.query('SHOW server_version_num')).rows[0].server_version_num) / 10000);
  const r = spawnSync('pg_dump', ['--version'], { encoding: 'utf8' });
  const client = Number(/(\d+)\.\d+/.exec(r.stdout ?? '')?.[1] ?? 0);
  return r.status === 0 && client >= Math.floor(server);
}

/** Copies the whole database at `from` into the empty database at `to`; says how. */
export async function restoreDatabase(from: string, to: string): Promise<'pg_dump' | 'COPY'> {
  if (await pgDumpFits(from)) {
    const dump = execFileSync('pg_dump', ['-Fc', '--no-owner', from], { maxBuffer: 1 << 28 });
    execFileSync('pg_restore', ['--no-owner', '--exit-on-error', '-d', to], { input: dump });
    return 'pg_dump';
  }
  const init = await runCli(['init', '--quiet'], { env: { DATABASE_URL: to } });
  if (init.code !== 0) throw new Error(init.stderr);
  const src = new pg.Client({ connectionString: from });
  const dst = new pg.Client({ connectionString: to });
  await src.connect();
  await dst.connect();
  try {
    const { rows: parts } = await src.query<{ name: string; bound: string }>(
      `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
        WHERE h.inhparent = 'invoices'::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'`,
    );
    for (const p of parts) await dst.query(`CREATE TABLE ${p.name} PARTITION OF invoices ${p.bound}`);
    const has = async (t: string) => (await src.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [t])).rows[0].ok;
    const derived: string[] = [];
    if (await has('invoice_monthly_totals_state')) {
      await dst.query(sqlFile('monthly-totals.sql'));
      derived.push('invoice_monthly_totals', 'invoice_monthly_totals_state', 'invoice_totals_windows', 'invoice_window_totals');
    }
    if (await has('risk_watermarks')) {
      const risk = await runCli(['risk', 'init', '--quiet'], { env: { DATABASE_URL: to } });
      if (risk.code !== 0) throw new Error(risk.stderr);
      derived.push('risk_scores', 'risk_dead_letters', 'risk_watermarks');
    }
    await dst.query('SET session_replication_role = replica');
    for (const t of ['customers', 'invoices', 'invoice_ids', 'invoice_changes', ...derived]) {
      const {
        rows: [cols],
      } = await src.query<{ c: string }>(
        `SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS c FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
        [t],
      );
      await pipeline(
        src.query(copyTo(`COPY (SELECT ${cols.c} FROM ${t}) TO STDOUT`)),
        dst.query(copyFrom(`COPY ${t} (${cols.c}) FROM STDIN`)),
      );
    }
    await dst.query("SELECT setval(pg_get_serial_sequence('invoices', 'invoice_id'), (SELECT max(invoice_id) FROM invoices))");
  } finally {
    await src.end();
    await dst.end();
  }
  return 'COPY';
}

/** Another PostgreSQL cluster (an embedded server in a home of its own): its URL, and how to stop it. */
export async function otherCluster(prefix: string): Promise<{ url: string; stop(): Promise<void> }> {
  const home = path.join(tempDir(prefix), 'home');
  const started = await runCli(['db', 'start'], { env: { INVOICES_HOME: home } });
  if (started.code !== 0) throw new Error(started.stderr);
  const url = (await runCli(['db', 'url'], { env: { INVOICES_HOME: home } })).stdout.trim();
  return {
    url,
    stop: async () => {
      if (embeddedStatus(home).running) await stopEmbedded(home);
    },
  };
}
