// The embedded PostgreSQL through the CLI, in its own INVOICES_HOME: lifecycle, URL, security.
// Runs whatever the test server is (TEST_DATABASE_URL or not): it starts a server of its own.
import { statSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedStatus, stopEmbedded } from '../../../src/db/embedded.js';
import { runCli, tempDir, testDataHome, waitFor, withPg, type CliOptions } from '../../support/helpers.js';
import { startCli as startFollower } from '../../support/risk-helpers.js';

let dir: string;
let home: string;
let env: Record<string, string>;
let url: string;

beforeAll(() => {
  dir = tempDir('embedded-');
  home = path.join(dir, 'home');
  env = { INVOICES_HOME: home };
});

afterAll(async () => {
  // Whatever happened above, leave no server running.
  try {
    if (home && embeddedStatus(home).running) await stopEmbedded(home);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});

const cli = (args: string[], opts: CliOptions = {}) => runCli(args, { ...opts, env: { ...env, ...opts.env } });

/** Resolves whether a TCP connection to host:port succeeds. */
function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port, timeout: 2000 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(false));
  });
}

describe.sequential('embedded PostgreSQL', () => {
  it('db status before the first start: not initialised, exit 3', async () => {
    const r = await cli(['db', 'status']);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: 'not initialised', version: null, url: null });
  });

  it('db start initialises and starts it', async () => {
    const r = await cli(['db', 'start']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('initialising');
    expect(r.stderr).toMatch(/started: postgres:\/\/postgres@127\.0\.0\.1:\d+\/invoices/);
    const status = await cli(['db', 'status']);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout);
    expect(s).toMatchObject({ state: 'running', version: '18', data: path.join(home, 'pgdata') });
    expect(s.pid).toBeGreaterThan(0);
    expect(s.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/invoices$/);
  });

  it('db url prints a URL with a password that pg can connect with', async () => {
    const r = await cli(['db', 'url']);
    expect(r.code).toBe(0);
    url = r.stdout.trim();
    const u = new URL(url);
    expect(u.protocol).toBe('postgres:');
    expect(u.username).toBe('postgres');
    expect(u.password.length).toBeGreaterThanOrEqual(16);
    expect(u.hostname).toBe('127.0.0.1');
    expect(u.port).not.toBe('5432');
    const row = await withPg(
      url,
      async (c) =>
        (
          await c.query(
            "SELECT current_database() AS db, current_setting('server_version_num')::int AS v, current_setting('TimeZone') AS tz",
          )
        ).rows[0],
    );
    expect(row.db).toBe('invoices');
    expect(row.v).toBeGreaterThanOrEqual(180000);
    expect(row.tz).toBe('UTC');
  });

  it('keeps the password in a file of mode 0600, and checks it', async () => {
    expect(statSync(path.join(home, 'password')).mode & 0o777).toBe(0o600);
    const wrong = new URL(url);
    wrong.password = 'not-the-password-42';
    await expect(withPg(wrong.toString(), async () => 1)).rejects.toMatchObject({ code: '28P01' });
  });

  it('a wrong password through the CLI: exit 1, one line, the password never printed', async () => {
    const wrong = new URL(url);
    wrong.password = 'not-the-password-42';
    const r = await runCli(['get', '1'], { env: { DATABASE_URL: wrong.toString() } });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('password authentication failed');
    expect(r.stderr).not.toContain('not-the-password-42');
  });

  it('listens on 127.0.0.1 only, with no unix socket', async () => {
    const port = Number(new URL(url).port);
    const settings = await withPg(
      url,
      async (c) =>
        (
          await c.query(
            "SELECT current_setting('listen_addresses') AS listen, current_setting('unix_socket_directories') AS sockets, host(inet_server_addr()) AS addr",
          )
        ).rows[0],
    );
    expect(settings).toEqual({ listen: '127.0.0.1', sockets: '', addr: '127.0.0.1' });
    expect(await canConnect('127.0.0.1', port)).toBe(true);
    const others = Object.values(os.networkInterfaces())
      .flat()
      .filter((a) => a && !a.internal)
      .map((a) => a!.address);
    for (const address of ['::1', ...others]) expect(await canConnect(address, port), address).toBe(false);
  });

  it('db start again says it is already running', async () => {
    const r = await cli(['db', 'start']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('already running');
  });

  it('get before init: exit 2 (a missing table, as from every command) with advice to run `invoices init`', async () => {
    const r = await cli(['get', '1']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('invoices init');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('init, seed and get work against it with no database configured', async () => {
    expect((await cli(['init', '--quiet'])).code).toBe(0);
    expect((await cli(['seed', '--quiet', '--customers', '5', '--invoices', '10', '--as-of', '2025-01-01'])).code).toBe(0);
    const r = await cli(['get', '10']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).invoice_id).toBe(10);
  });

  it('db stop stops it; db status then exits 3', async () => {
    const stop = await cli(['db', 'stop']);
    expect(stop.code).toBe(0);
    expect(stop.stderr).toContain('stopped');
    const status = await cli(['db', 'status']);
    expect(status.code).toBe(3);
    expect(JSON.parse(status.stdout)).toMatchObject({ state: 'stopped', url: null });
    expect(await canConnect('127.0.0.1', Number(new URL(url).port))).toBe(false);
    const again = await cli(['db', 'stop']);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('not running');
  });

  it('after db stop no command starts it again: they exit 1 naming db start; db start clears that', async () => {
    const r = await cli(['get', '10']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the embedded server was stopped with `invoices db stop`: run `invoices db start`');
    expect(r.stdout).toBe('');
    expect(embeddedStatus(home).running).toBe(false);
    expect((await cli(['db', 'start'])).code).toBe(0);
    const again = await cli(['get', '10']);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).invoice_id).toBe(10);
  });

  it('a server stopped otherwise (the machine, pg_ctl) is started on demand, with its data kept', async () => {
    const pid = embeddedStatus(home).pid!;
    process.kill(pid, 'SIGINT'); // PostgreSQL's fast shutdown, as at a machine's shutdown
    await waitFor('the server to stop', async () => !embeddedStatus(home).running, 30_000);
    const r = await cli(['get', '10']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).invoice_id).toBe(10);
    expect(embeddedStatus(home).running).toBe(true);
  });

  it('db stop refuses while risk --follow is connected (exit 1, naming it); --force stops it and the follower does not start it again', async () => {
    const follower = startFollower(['risk', '--follow', '--poll-interval', '200'], { ...env, XDG_DATA_HOME: testDataHome() });
    try {
      await waitFor(
        'the follower to follow',
        async () => {
          if (follower.proc.exitCode !== null) throw new Error(follower.stderr());
          return follower.stderr().includes('following: scoring new invoices');
        },
        60_000,
      );
      const refused = await cli(['db', 'stop']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(
        /not stopped: \d+ invoices session\(s\) are connected to the embedded server: invoices \(server pid \d+, database invoices/,
      );
      expect(refused.stderr).toContain('--force');
      expect(embeddedStatus(home).running).toBe(true);

      const forced = await cli(['db', 'stop', '--force']);
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stderr).toContain('stopping with');
      expect(forced.stderr).toContain('stopped');
      // The follower loses its connection and retries, but never starts the server again.
      const until = Date.now() + 4000;
      while (Date.now() < until) {
        expect(embeddedStatus(home).running).toBe(false);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(follower.proc.exitCode).toBeNull();
      expect(follower.stderr()).toContain('the embedded server was stopped with `invoices db stop`: run `invoices db start`');
      follower.proc.kill('SIGINT');
      const { code } = await follower.exit;
      expect(code, follower.stderr()).toBe(130); // a follower stopped by Ctrl-C exits 130 like every command (risk-follow.test)
      expect(embeddedStatus(home).running).toBe(false);
    } finally {
      if (follower.proc.exitCode === null) follower.proc.kill('SIGKILL');
    }
  });
});
