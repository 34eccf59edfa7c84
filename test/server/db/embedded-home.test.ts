// One home: the embedded server, its password and the default lake live in the per-user home,
// whatever folder a command starts in. And `invoices db psql`, which never puts the password on
// a command line. Starts an embedded server of its own, in a home of its own.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedStatus, stopEmbedded } from '../../../src/db/embedded.js';
import { adminUrl, ROOT, runCli, tempDir, type CliOptions } from '../../support/helpers.js';

let root: string;
/** XDG_DATA_HOME of this file's runs: the home is <xdg>/invoices. */
let xdg: string;
let home: string;
let folderA: string;
let folderB: string;

beforeAll(() => {
  root = tempDir('home-');
  xdg = path.join(root, 'xdg');
  home = path.join(xdg, 'invoices');
  folderA = path.join(root, 'projects', 'a');
  folderB = path.join(root, 'elsewhere', 'b');
  for (const d of [folderA, folderB]) mkdirSync(d, { recursive: true });
});

afterAll(async () => {
  try {
    if (home && embeddedStatus(home).running) await stopEmbedded(home);
  } finally {
    if (root) rmSync(root, { recursive: true, force: true });
  }
});

const cli = (cwd: string, args: string[], opts: CliOptions = {}) =>
  runCli(args, { ...opts, cwd, env: { XDG_DATA_HOME: xdg, ...opts.env } });
const status = async (cwd: string, env: Record<string, string> = {}) => {
  const r = await cli(cwd, ['db', 'status', '--json'], { env });
  return { code: r.code, ...JSON.parse(r.stdout) } as {
    code: number;
    state: string;
    pid: number | null;
    data: string;
    home: string;
    lake: string;
  };
};

describe.sequential('one home for every folder', () => {
  it('the home is $XDG_DATA_HOME/invoices; INVOICES_HOME and the config file\'s "home" override it', async () => {
    expect(await status(folderA)).toMatchObject({
      code: 3,
      state: 'not initialised',
      home,
      data: path.join(home, 'pgdata'),
      lake: path.join(home, 'lakes', 'embedded'),
    });
    const withFile = path.join(root, 'with-config');
    mkdirSync(withFile);
    writeFileSync(path.join(withFile, 'invoices.config.json'), JSON.stringify({ home: 'state' }));
    expect((await status(withFile)).home).toBe(path.join(withFile, 'state'));
    expect((await status(withFile, { INVOICES_HOME: path.join(root, 'explicit') })).home).toBe(path.join(root, 'explicit'));
    // Asking changed nothing on disk.
    expect(existsSync(home)).toBe(false);
    expect(existsSync(path.join(withFile, 'state'))).toBe(false);
  });

  it('two folders share one embedded server, and neither gets a .invoices or a lake of its own', async () => {
    const start = await cli(folderA, ['db', 'start']);
    expect(start.code, start.stderr).toBe(0);
    expect(start.stderr).toContain(`initialising the embedded PostgreSQL in ${home}`);
    const a = await status(folderA);
    const b = await status(folderB);
    expect(a).toMatchObject({ code: 0, state: 'running', home });
    expect(b).toEqual(a);

    expect((await cli(folderA, ['init', '--quiet'])).code).toBe(0);
    expect((await cli(folderA, ['seed', '--quiet', '--customers', '5', '--invoices', '12', '--as-of', '2025-01-01'])).code).toBe(0);
    const fromB = await cli(folderB, ['get', '12', '--json']);
    expect(fromB.code, fromB.stderr).toBe(0);
    const fromA = await cli(folderA, ['get', '12', '--json']);
    expect(JSON.parse(fromB.stdout)).toEqual(JSON.parse(fromA.stdout));
    expect(JSON.parse(fromB.stdout).invoice_id).toBe(12);

    for (const d of [folderA, folderB]) expect(readdirSync(d)).toEqual([]);
  });

  it("the default lake is the home's: exported from one folder, queried from another", async () => {
    const exp = await cli(folderA, ['export', '--quiet']);
    expect(exp.code, exp.stderr).toBe(0);
    const lake = path.join(home, 'lakes', 'embedded');
    expect(existsSync(path.join(lake, '_manifest.json'))).toBe(true);
    const q = await cli(folderB, ['query', 'SELECT count(*) AS n, sum(amount) AS total FROM invoices', '--json']);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stderr).toContain(`lake: ${lake}`);
    expect(JSON.parse(q.stdout)[0].n).toBe(12);
    for (const d of [folderA, folderB]) expect(readdirSync(d)).toEqual([]);
  });

  it('./.invoices of an earlier version is named once on stderr and never used; an old ./lake is named while the default has none', async () => {
    const old = path.join(root, 'old-project');
    mkdirSync(path.join(old, '.invoices', 'pgdata'), { recursive: true });
    writeFileSync(path.join(old, '.invoices', 'pgdata', 'PG_VERSION'), '18\n');
    const first = await cli(old, ['db', 'status', '--json']);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout).data).toBe(path.join(home, 'pgdata'));
    const warning = first.stderr.trim().split('\n');
    expect(warning).toHaveLength(1);
    expect(warning[0]).toMatch(
      /^warning: .*old-project\/\.invoices holds an embedded PostgreSQL of an earlier version.* no longer used: the home is /,
    );
    expect(warning[0]).toContain(`INVOICES_HOME=${path.join(old, '.invoices')}`);
    const second = await cli(old, ['db', 'status', '--json']);
    expect(second.stderr).toBe('');

    // A lake in ./lake: named by a command that would use the default lake, as long as that has none.
    const other = path.join(root, 'old-lake');
    mkdirSync(path.join(other, 'lake'), { recursive: true });
    copyFileSync(path.join(home, 'lakes', 'embedded', '_manifest.json'), path.join(other, 'lake', '_manifest.json'));
    const fresh = path.join(root, 'xdg-fresh');
    const q = await runCli(['query', 'SELECT 1 AS one', '--json'], { cwd: other, env: { XDG_DATA_HOME: fresh } });
    expect(q.code, q.stderr).toBe(0);
    expect(q.stderr).toMatch(
      /warning: .*old-lake\/lake is a lake of an earlier version.*default is now .*xdg-fresh\/invoices\/lakes\/embedded.*--lake /,
    );
    expect(q.stderr).toContain('no lake at');
    const given = await runCli(['query', 'SELECT 1 AS one', '--json', '--lake', 'lake'], { cwd: other, env: { XDG_DATA_HOME: fresh } });
    expect(given.stderr).not.toContain('earlier version');
  });
});

/** Every process's argv on this machine, and psql's own argv and environment, sampled while `invoices db psql` runs. */
async function psqlObserved(
  cwd: string,
  env: Record<string, string>,
  sql: string,
): Promise<{ code: number | null; stdout: string; stderr: string; argvs: string[]; psql?: { argv: string[]; environ: string[] } }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), 'db', 'psql', '-X', '-A', '-t', '-c', sql], {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', TZ: 'UTC', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let running = true;
  void exited.then(() => (running = false));
  const argvs = new Set<string>();
  let psql: { argv: string[]; environ: string[] } | undefined;
  while (running) {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
        argvs.add(argv.join(' '));
        const ppid = Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
        if (ppid === child.pid && path.basename(argv[0] ?? '') === 'psql') {
          psql = { argv, environ: readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0') };
        }
      } catch {
        // The process ended while we looked.
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { code: await exited, stdout, stderr, argvs: [...argvs], psql };
}

describe.sequential('invoices db psql', () => {
  it("runs psql on the embedded server: -c works, the password is in its environment and on no process's command line", async () => {
    const password = readFileSync(path.join(home, 'password'), 'utf8').trim();
    expect(password.length).toBeGreaterThanOrEqual(16);
    const r = await psqlObserved(folderB, { XDG_DATA_HOME: xdg }, 'SELECT 42 AS answer, current_database(), pg_sleep(1.5)');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('42|invoices|');
    expect(r.psql, 'psql was seen running').toBeDefined();
    expect(r.psql!.environ).toContain(`PGPASSWORD=${password}`);
    expect(r.psql!.argv.join(' ')).not.toContain(password);
    for (const argv of r.argvs) expect(argv).not.toContain(password);
  });

  it('with a configured URL: the URL reaches psql without its password', async () => {
    const url = new URL(adminUrl());
    const r = await psqlObserved(folderB, { DATABASE_URL: url.toString(), XDG_DATA_HOME: xdg }, 'SELECT current_database(), pg_sleep(1.5)');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`${url.pathname.slice(1)}|`);
    expect(r.psql).toBeDefined();
    const dbname = r.psql!.argv[r.psql!.argv.indexOf('--dbname') + 1];
    expect(new URL(dbname).password).toBe('');
    expect(new URL(dbname).port).toBe(url.port);
    if (url.password) {
      const password = decodeURIComponent(url.password);
      expect(r.psql!.environ).toContain(`PGPASSWORD=${password}`);
      for (const argv of r.argvs) expect(argv).not.toContain(password);
    }
  });

  it("passes psql's exit code on; without psql on PATH says what to install (exit 1); other actions take no arguments (exit 2)", async () => {
    const bad = await cli(folderA, ['db', 'psql', '-X', '-c', 'SELECT nope']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('nope');
    const noPsql = await cli(folderA, ['db', 'psql', '-c', 'SELECT 1'], { env: { PATH: path.join(root, 'empty-bin') } });
    expect(noPsql.code).toBe(1);
    expect(noPsql.stderr.trim()).toMatch(/^invoices: psql is not on PATH: install the PostgreSQL client/);
    const extra = await cli(folderA, ['db', 'status', '--bogus']);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain('takes no arguments');
  });
});
