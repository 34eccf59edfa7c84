// Every command driven into each exit code the README documents (## Exit codes), through the
// built CLI as a child process: 0 ok, 1 runtime failure, 2 usage error or bad input (a missing
// table included), 3 not found, 130 after SIGINT, 143 after SIGTERM.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, ROOT, runCli, seedWithCli, tempDir, testDataHome, withPg, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
let empty: TestDatabase;
let fresh: TestDatabase;
let lake: string;
let dir: string;
const DOWN = 'postgres://postgres:pw@127.0.0.1:1/nowhere';

beforeAll(async () => {
  [db, empty, fresh] = await Promise.all([createDatabase(), createDatabase(), createDatabase()]);
  dir = tempDir('exit-codes-');
  lake = path.join(dir, 'lake');
  await seedWithCli(db.url, ['--customers', '30', '--invoices', '600', '--seed', '11', '--as-of', '2025-06-01', '--months', '3']);
  writeFileSync(path.join(dir, 'side.csv'), 'customer_id,segment\n1,smb\n2,enterprise\n');
  writeFileSync(path.join(dir, 'a-file'), 'not a folder\n');
});

afterAll(async () => {
  await Promise.all([db?.drop(), empty?.drop(), fresh?.drop()]);
});

/** Runs the CLI on `url` (the seeded database unless said) and returns its exit code and output. */
const cli = (args: string[], url = db.url, env: Record<string, string> = {}) =>
  runCli(args, { env: { DATABASE_URL: url, ...env }, cwd: dir, timeoutMs: 50_000 });

/** Asserts the exit code; a failure shows stderr. Errors are one line, never a stack trace. */
async function expectCode(args: string[], code: number, url?: string, env?: Record<string, string>) {
  const r = await cli(args, url, env);
  expect({ args: args.join(' '), code: r.code, stderr: r.stderr.slice(0, 400) }).toMatchObject({ code });
  expect(r.stderr).not.toMatch(/^\s+at /m);
  // Failures say why on stderr: an error line, or for a check that found something, a warning.
  if (code === 1 || code === 2) expect(r.stderr).toMatch(/^(invoices: |error: |warning: )/m);
  return r;
}

describe('exit codes', () => {
  it('global: --help and --version 0; an unknown command or option, a bad --format or URL 2', async () => {
    await expectCode(['--help'], 0);
    await expectCode(['--version'], 0);
    await expectCode(['nope'], 2);
    await expectCode(['get', '1', '--bogus'], 2);
    await expectCode(['get', '1', '--format', 'xml'], 2);
    await expectCode(['get', '1', '--database-url', 'mysql://x'], 2);
  });

  it('init: 0; 1 when the server is unreachable; 2 on a bad option', async () => {
    await expectCode(['init'], 0, fresh.url);
    await expectCode(['init'], 1, DOWN);
    await expectCode(['init', '--bogus'], 2, fresh.url);
  });

  it('seed: 0; 1 unreachable; 2 on bad input or a table it would double', async () => {
    await expectCode(
      ['seed', '--customers', '5', '--invoices', '20', '--seed', '2', '--as-of', '2025-06-01', '--months', '3', '--append', '--quiet'],
      0,
    );
    await expectCode(['seed', '--customers', '5', '--quiet'], 1, DOWN);
    await expectCode(['seed', '--customers', 'many'], 2);
    await expectCode(['seed'], 2);
    const r = await expectCode(['seed', '--customers', '5', '--quiet'], 2);
    expect(r.stderr).toMatch(/--append|--truncate/);
  });

  it('get: 0 found; 3 not found (one id or some of many); 2 a bad id or a missing table; 1 unreachable', async () => {
    await expectCode(['get', '7'], 0);
    await expectCode(['get', '7', '8'], 0);
    await expectCode(['get', '999999'], 3);
    await expectCode(['get', '7', '999999'], 3);
    await expectCode(['get', 'seven'], 2);
    await expectCode(['get', '7', 'x'], 2);
    const r = await expectCode(['get', '7'], 2, empty.url);
    expect(r.stderr).toContain('invoices init');
    await expectCode(['get', '7'], 1, DOWN);
  });

  it('serve: 2 on a bad option, an empty --token-file or a malformed --cache URL; 1 when the port is taken (0 after a drained stop: test/server/serve)', async () => {
    await expectCode(['serve', '--port', 'abc'], 2);
    await expectCode(['serve', '--port', '70000'], 2);
    await expectCode(['serve', '--pool-size', '0'], 2);
    writeFileSync(path.join(dir, 'empty-token'), '');
    await expectCode(['serve', '--token-file', path.join(dir, 'empty-token')], 2);
    await expectCode(['serve', '--token-file', path.join(dir, 'no-such-token')], 2);
    await expectCode(['serve', '--port', '0', '--cache', 'http://not-redis'], 2);
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      const r = await expectCode(['serve', '--port', String(port)], 1);
      expect(r.stderr).toMatch(/cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);
    } finally {
      taken.close();
    }
  });

  it('partition: --check 1 when months ahead are missing, 0 once created; 2 bad option or missing table; 1 unreachable', async () => {
    await expectCode(['partition', '--check'], 1);
    await expectCode(['partition', '--quiet'], 0);
    await expectCode(['partition', '--check'], 0);
    await expectCode(['partition', '--ahead', 'x'], 2);
    await expectCode(['partition', '--check'], 2, empty.url);
    await expectCode(['partition', '--check'], 1, DOWN);
  });

  it('index: 0; 2 missing table; 1 unreachable', async () => {
    await expectCode(['index', '--quiet'], 0);
    await expectCode(['index'], 2, empty.url);
    await expectCode(['index'], 1, DOWN);
  });

  it('export: 0; --verify-only 1 when the lake differs from PostgreSQL; 2 --out a file or a missing table; 1 unreachable', async () => {
    await expectCode(['export', '--out', lake, '--quiet'], 0);
    await expectCode(['export', '--out', lake, '--verify-only', '--quiet'], 0);
    await withPg(db.url, (c) => c.query('UPDATE invoices SET amount = amount + 1 WHERE invoice_id = 3'));
    await expectCode(['export', '--out', lake, '--verify-only', '--quiet'], 1);
    await expectCode(['export', '--out', path.join(dir, 'a-file'), '--quiet'], 2);
    await expectCode(['export', '--out', path.join(dir, 'lake-empty'), '--quiet'], 2, empty.url);
    await expectCode(['export', '--out', path.join(dir, 'lake-down'), '--quiet'], 1, DOWN);
    await expectCode(['export', '--out', lake, '--quiet'], 0);
  });

  it('group: 0; 2 on bad flags, conflicting flags (--chart with --json) or a missing table; 1 unreachable', async () => {
    const g = ['group', '--months', '3', '--by', 'issuer', '--as-of', '2025-05-15', '--quiet'];
    await expectCode([...g, '--engine', 'postgres'], 0);
    await expectCode([...g, '--engine', 'postgres', '--chart', '--format', 'table'], 0);
    await expectCode(['group', '--months', '3', '--by', 'nobody'], 2);
    await expectCode(['group', '--months', '0', '--by', 'issuer'], 2);
    await expectCode([...g, '--chart', '--json'], 2);
    await expectCode([...g, '--chart', '--format', 'csv'], 2);
    await expectCode([...g, '--engine', 'postgres'], 2, empty.url);
    await expectCode([...g, '--engine', 'postgres'], 1, DOWN);
  });

  it('query: 0; 2 bad SQL, a refused file write, a missing --with file', async () => {
    await expectCode(['query', 'SELECT count(*) AS n FROM invoices', '--lake', lake], 0);
    await expectCode(['query', 'SELEC nonsense', '--lake', lake], 2);
    await expectCode(['query', `COPY (SELECT 42) TO '${path.join(dir, 'x.csv')}'`, '--lake', lake], 2);
    await expectCode(['query', 'SELECT 1', '--with', `x=${path.join(dir, 'missing.csv')}`, '--lake', lake], 2);
  });

  it('join: 0; 2 a bad --on or an unknown column', async () => {
    await expectCode(['join', '--with', `crm=${path.join(dir, 'side.csv')}`, '--on', 'customer_id=id', '--lake', lake], 0);
    await expectCode(['join', '--with', `crm=${path.join(dir, 'side.csv')}`, '--on', '=', '--lake', lake], 2);
    await expectCode(['join', '--with', `crm=${path.join(dir, 'side.csv')}`, '--on', 'nope=id', '--lake', lake], 2);
  });

  it('risk: 0 score, status, verify; 1 verify with a score missing; 3 explain of no such invoice; 2 bad arguments', async () => {
    await expectCode(['risk', '--quiet'], 0);
    await expectCode(['risk', 'status'], 0);
    await expectCode(['risk', 'verify', '--quiet'], 0);
    await expectCode(['risk', 'explain', '5'], 0);
    await expectCode(['risk', 'explain', '999999'], 3);
    await expectCode(['risk', 'explain'], 2);
    await expectCode(['risk', 'nonsense'], 2);
    await expectCode(['risk', '--since', 'yesterday-ish'], 2);
    await withPg(db.url, (c) => c.query('DELETE FROM risk_scores WHERE invoice_id = 5'));
    await expectCode(['risk', 'verify', '--quiet'], 1);
  });

  it('db: 2 for start/stop/status with a database configured; 3 status when the embedded server is not running', async () => {
    await expectCode(['db', 'start'], 2);
    await expectCode(['db', 'status'], 2);
    await expectCode(['db', 'nonsense'], 2);
    const home = tempDir('home-');
    await expectCode(['db', 'status'], 3, '', { INVOICES_HOME: home });
  });

  it('read replicas: 2 for db replicas or --replica-only without a replica, or a bad --max-replica-lag; 1 when the only replica is down and --replica-only', async () => {
    await expectCode(['db', 'replicas'], 2);
    await expectCode(['get', '5', '--replica-only'], 2);
    await expectCode(['get', '5', '--max-replica-lag', 'soon'], 2);
    await expectCode(['get', '5', '--replica-url', 'mysql://x/y'], 2);
    // Port 1: nothing listens there.
    await expectCode(['get', '5', '--replica-url', 'postgres://postgres@127.0.0.1:1/postgres', '--replica-only'], 1);
    await expectCode(['get', '5', '--replica-url', 'postgres://postgres@127.0.0.1:1/postgres'], 0);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s: get - waiting on stdin exits %i', async (signal, code) => {
    expect(await signalled(['get', '-'], signal)).toBe(code);
  });
});

/** Starts the CLI with stdin held open, sends `signal` once it has connected, and returns its exit code. */
function signalled(args: string[], signal: NodeJS.Signals): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), ...args], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/root',
        TZ: 'UTC',
        XDG_DATA_HOME: testDataHome(),
        DATABASE_URL: db.url,
      },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    child.stderr.resume();
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve(code);
    });
    // Connected: the CLI has a session on the database (application_name invoices).
    const poll = setInterval(() => {
      void withPg(
        db.url,
        async (c) =>
          (
            await c.query(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'invoices' AND datname = current_database()",
            )
          ).rows[0].n as number,
      ).then((n) => {
        if (n > 0) {
          clearInterval(poll);
          setTimeout(() => child.kill(signal), 300);
        }
      });
    }, 100);
    child.on('close', () => clearInterval(poll));
  });
}
