// Connection resolution end to end: --database-url > DATABASE_URL (also from ./.env) > PG* > config file.
// Two live databases hold invoice 1 with different amounts, so each run shows which one it used.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, tempDir, withPg, type TestDatabase } from '../../support/helpers.js';

const DEAD = 'postgres://postgres:dead-pw-000@127.0.0.1:1/nowhere';
let one: TestDatabase;
let two: TestDatabase;
let root: string;

beforeAll(async () => {
  [one, two] = await Promise.all([createDatabase(), createDatabase()]);
  for (const [db, amount] of [
    [one, '11.11'],
    [two, '22.22'],
  ] as const) {
    const r = await runCli(['init', '--quiet'], { env: { DATABASE_URL: db.url } });
    expect(r.code).toBe(0);
    await withPg(db.url, async (c) => {
      await c.query("INSERT INTO customers (id, name) VALUES (1, 'A'), (2, 'B')");
      await c.query(
        "INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES (1, '2025-01-01T00:00:00Z', 1, 2, $1)",
        [amount],
      );
    });
  }
  root = tempDir('resolution-');
});

afterAll(async () => {
  await Promise.all([one?.drop(), two?.drop()]);
  if (root) rmSync(root, { recursive: true, force: true });
});

let dirs = 0;
/** A fresh working directory with the given files. */
function cwdWith(files: Record<string, string>): string {
  const dir = path.join(root, `cwd${++dirs}`);
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

/** libpq variables naming the database at `url`. */
function pgVars(url: string): Record<string, string> {
  const u = new URL(url);
  const vars: Record<string, string> = {
    PGHOST: u.hostname,
    PGPORT: u.port || '5432',
    PGUSER: decodeURIComponent(u.username),
    PGDATABASE: decodeURIComponent(u.pathname.slice(1)),
  };
  if (u.password) vars.PGPASSWORD = decodeURIComponent(u.password);
  return vars;
}

/** Runs `get 1` and returns the amount it printed, or the failure. */
async function amount(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<string> {
  const r = await runCli([...args, 'get', '1', '--json'], opts);
  if (r.code !== 0) return `exit ${r.code}: ${r.stderr.trim()}`;
  return JSON.parse(r.stdout).amount;
}

describe('connection resolution (CLI)', () => {
  it('--database-url wins over a DATABASE_URL pointing at a dead port', async () => {
    expect(await amount(['--database-url', one.url], { env: { DATABASE_URL: DEAD } })).toBe('11.11');
  });

  it('--database-url is used even when DATABASE_URL would work', async () => {
    expect(await amount(['--database-url', one.url], { env: { DATABASE_URL: two.url } })).toBe('11.11');
    const r = await runCli(['--database-url', DEAD, 'get', '1'], { env: { DATABASE_URL: two.url } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('127.0.0.1:1');
    expect(r.stderr).not.toContain('dead-pw-000');
  });

  it('DATABASE_URL wins over PG* variables', async () => {
    expect(await amount([], { env: { DATABASE_URL: two.url, ...pgVars(one.url) } })).toBe('22.22');
    expect(await amount([], { env: { DATABASE_URL: one.url, PGHOST: '127.0.0.1', PGPORT: '1' } })).toBe('11.11');
  });

  it('PG* variables are used, and win over the config file', async () => {
    expect(await amount([], { env: pgVars(one.url) })).toBe('11.11');
    const cwd = cwdWith({ 'invoices.config.json': JSON.stringify({ databaseUrl: two.url }) });
    expect(await amount([], { env: pgVars(one.url), cwd })).toBe('11.11');
  });

  it('the config file in the cwd is used when nothing else is set', async () => {
    const cwd = cwdWith({ 'invoices.config.json': JSON.stringify({ databaseUrl: two.url }) });
    expect(await amount([], { cwd })).toBe('22.22');
  });

  it('--config names another config file; a missing one is a usage error', async () => {
    const cwd = cwdWith({
      'invoices.config.json': JSON.stringify({ databaseUrl: DEAD }),
      'other.json': JSON.stringify({ databaseUrl: one.url }),
    });
    expect(await amount(['--config', 'other.json'], { cwd })).toBe('11.11');
    const r = await runCli(['--config', 'missing.json', 'get', '1'], { cwd });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('config file not found');
  });

  it('a .env file in the cwd provides DATABASE_URL', async () => {
    const cwd = cwdWith({ '.env': `# test\nDATABASE_URL=${one.url}\n` });
    expect(await amount([], { cwd })).toBe('11.11');
  });

  it('a DATABASE_URL already set wins over .env', async () => {
    const cwd = cwdWith({ '.env': `DATABASE_URL=${DEAD}\n` });
    expect(await amount([], { cwd, env: { DATABASE_URL: two.url } })).toBe('22.22');
  });

  it('.env DATABASE_URL wins over a config file', async () => {
    const cwd = cwdWith({ '.env': `DATABASE_URL="${two.url}"\n`, 'invoices.config.json': JSON.stringify({ databaseUrl: one.url }) });
    expect(await amount([], { cwd })).toBe('22.22');
  });

  it('an invalid DATABASE_URL is a usage error that hides the password', async () => {
    const r = await runCli(['get', '1'], { env: { DATABASE_URL: 'mysql://root:hidden-pw-1@localhost/db' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('DATABASE_URL must be a postgres:// URL');
    expect(r.stderr).not.toContain('hidden-pw-1');
  });

  it('`db url` shows a configured server without its password; `db start` refuses to manage it', async () => {
    const withPassword = new URL(one.url);
    withPassword.password = 'shown-never-1';
    const url = await runCli(['db', 'url'], { env: { DATABASE_URL: withPassword.toString() } });
    expect(url.code).toBe(0);
    expect(url.stdout).toContain(`/${one.name}`);
    expect(url.stdout).not.toContain('shown-never-1');
    const start = await runCli(['db', 'start'], { env: { DATABASE_URL: one.url } });
    expect(start.code).toBe(2);
    expect(start.stderr).toContain('DATABASE_URL');
  });
});
