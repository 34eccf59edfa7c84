// Shared test helpers: a database per test file on the run's server, and the built CLI
// run in a clean environment.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, inject } from 'vitest';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'bin', 'invoices.js');

/** The admin URL of the run's server (database `postgres`). */
export function adminUrl(): string {
  return inject('adminUrl');
}

/** The admin URL with another database name. */
export function urlFor(database: string, base = adminUrl()): string {
  const u = new URL(base);
  u.pathname = '/' + encodeURIComponent(database);
  return u.toString();
}

/** Runs fn with a connected pg client and always closes it. */
export async function withPg<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

let counter = 0;

/** A function that creates a fresh database each call; all of them are dropped after the file. */
export function databasesPerTest(): () => Promise<TestDatabase> {
  const dbs: TestDatabase[] = [];
  afterAll(async () => {
    await Promise.all(dbs.map((d) => d.drop()));
  });
  return async () => {
    const db = await createDatabase();
    dbs.push(db);
    return db;
  };
}

/** Creates an empty, uniquely named database on the test server. */
export async function createDatabase(): Promise<TestDatabase> {
  const name = `invoices_test_${process.pid}_${++counter}_${randomBytes(3).toString('hex')}`;
  const admin = adminUrl();
  await withPg(admin, (c) => c.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`));
  return {
    name,
    url: urlFor(name, admin),
    drop: () =>
      withPg(admin, async (c) => {
        await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
        await c.query(`DROP DATABASE IF EXISTS ${name}`);
      }),
  };
}

let scratch: string | undefined;

/** A fresh 0755 directory under the run's temp root (the embedded server's OS user must be able to traverse it). */
export function tempDir(prefix = 'dir-'): string {
  const dir = mkdtempSync(path.join(inject('tmpRoot'), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** An empty working directory for CLI runs, so no .env or config file from the repo is read. */
function defaultCwd(): string {
  scratch ??= tempDir('cwd-');
  return scratch;
}

/** XDG_DATA_HOME of CLI runs: the default home is <this>/invoices (global-setup stops a server left there). */
export function testDataHome(): string {
  return path.join(inject('tmpRoot'), 'xdg-data');
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Added to the clean environment (PATH, HOME, TZ=UTC). */
  env?: Record<string, string>;
  /** Default: an empty temp directory. */
  cwd?: string;
  timeoutMs?: number;
}

/**
 * Runs `node bin/invoices.js ...args` with a clean environment: PATH, HOME, TZ=UTC, XDG_DATA_HOME
 * in the run's temp dir and what the test passes. No DATABASE_URL, PG* or INVOICES_HOME leaks in from outside.
 */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? os.homedir(),
    TZ: 'UTC',
    // The per-user home (src/config.ts resolveHome) of every run is the test run's, never this machine's.
    XDG_DATA_HOME: testDataHome(),
    ...opts.env,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? defaultCwd(),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 55_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Seeds a database through the CLI and fails loudly when it does not exit 0. */
export async function seedWithCli(url: string, args: string[]): Promise<CliResult> {
  const r = await runCli(['seed', '--quiet', ...args], { env: { DATABASE_URL: url } });
  if (r.code !== 0) throw new Error(`seed ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  // Watermark readers (export, totals, risk) see the rows only once no older transaction is open on the server.
  await waitForHorizon(url);
  return r;
}

/** md5 of a table's rows in a fixed order: equal hashes mean identical contents. */
export async function tableHash(client: pg.Client, table: 'customers' | 'invoices'): Promise<string> {
  const order = table === 'invoices' ? 'invoice_id' : 'id';
  // The data columns only: created_xid (the inserting transaction) differs between databases by design.
  const row = table === 'invoices' ? '(t.invoice_id, t.issue_date, t.issuer_id, t.receiver_id, t.amount)' : 't';
  const { rows } = await client.query<{ h: string }>(
    `SELECT md5(coalesce(string_agg(${row}::text, E'\\n' ORDER BY ${order}), '')) AS h FROM ${table} t`,
  );
  return rows[0].h;
}

/** The config file's mapping of the `billing` schema that adoptBilling creates. */
export const BILLING_MAPPING = {
  invoices: {
    table: 'billing.invoice',
    columns: { invoice_id: 'id', issue_date: 'issued_at', issuer_id: 'from_client', receiver_id: 'to_client', amount: 'amount_usd' },
  },
  customers: { table: 'billing.clients', columns: { id: 'client_id', name: 'customer_name' } },
};

/**
 * An application's own tables, created by plain SQL the way it would have: identity keys, a
 * timestamp without time zone, another numeric scale, customers with only an id and a name; then
 * `rows` (SQL that fills them). Returns a new working directory whose invoices.config.json maps them.
 */
export async function adoptBilling(url: string, rows: string, prefix = 'adopted-'): Promise<string> {
  await withPg(url, (c) =>
    c.query(`
    CREATE SCHEMA billing;
    CREATE TABLE billing.clients (client_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_name varchar(200) NOT NULL);
    CREATE TABLE billing.invoice (
      id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      issued_at   timestamp NOT NULL,
      from_client integer NOT NULL REFERENCES billing.clients,
      to_client   integer NOT NULL REFERENCES billing.clients,
      amount_usd  numeric(12,3) NOT NULL);
    ${rows}`),
  );
  const cwd = tempDir(prefix);
  writeFileSync(path.join(cwd, 'invoices.config.json'), JSON.stringify(BILLING_MAPPING));
  return cwd;
}

/** Polls until fn returns a truthy value; fails with `what` after the deadline. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false | null>,
  deadlineMs = 20_000,
  everyMs = 50,
): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Waits until every row of the table is below the cluster's horizon. Other test files share
 * the server: a write transaction of theirs that began before our rows committed holds our
 * rows above the horizon until it ends, and a run would (correctly) leave them for later.
 */
export async function waitForHorizon(url: string, table = 'invoices', deadlineMs = 60_000): Promise<void> {
  await withPg(url, async (c) => {
    const { rows } = await c.query(
      `SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'created_xid' AND NOT attisdropped`,
      [table],
    );
    if (!rows.length) return; // no watermark column: nothing reads this table by horizon
    // Every transaction that committed before this call (inserts, and the updates the change log
    // records) must be behind the horizon, which any concurrent transaction on the cluster holds back.
    const {
      rows: [{ now }],
    } = await c.query<{ now: string }>(`SELECT pg_current_xact_id()::text AS now`);
    await waitFor(
      `the horizon to pass every transaction on ${table}`,
      async () => (await c.query<{ ok: boolean }>(`SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 AS ok`, [now])).rows[0].ok,
      deadlineMs,
      100,
    );
  });
}
