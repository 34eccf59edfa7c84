import type { Command } from 'commander';
import type { ConnectionSettings } from '../config.js';
import { InvoicesError, UsageError } from '../errors.js';
import { commandContext, type CommandContext } from './context.js';

const ACTIONS = ['start', 'stop', 'status', 'url', 'psql', 'replicas'] as const;

export function command(program: Command): Command {
  return (
    program
      .command('db')
      .description("manage the embedded PostgreSQL (used when no database is configured); replicas: the read replicas' lag")
      .addArgument(program.createArgument('<action>', 'start, stop, status, url, psql or replicas').choices(ACTIONS))
      .argument('[psql-args...]', 'with psql: arguments for psql (-c SQL, -f FILE, -A, -t, ...)')
      // psql's own options (-c, -f, ...) reach it untouched; those of invoices (-q, -h, -V) go after --.
      .allowUnknownOption()
      .addHelpText(
        'after',
        `
Examples:
  $ invoices db status                      state, version, pid, URL without password, home, default lake
  $ invoices db psql                        psql on the database: the password in its environment, never on argv
  $ invoices db psql -c 'SELECT count(*) FROM invoices'
  $ invoices db psql -- -q -f report.sql    after --, options that invoices would otherwise take
  $ invoices db url                         the URL, password included (embedded server): for clients that need one
  $ invoices db replicas --replica-url postgres://db-ro:5432/billing   each replica: usable or why not, lag in seconds and bytes of WAL`,
      )
      .action(run)
  );
}

export async function run(action: (typeof ACTIONS)[number], args: string[], _opts: unknown, cmd: Command): Promise<void> {
  // Unknown options are let through for psql only (allowUnknownOption above): anywhere else they
  // are mistakes, but for stop's own --force (stop while invoices commands are connected).
  const force = action === 'stop' && args.includes('--force');
  if (force) args = args.filter((a) => a !== '--force');
  if (action !== 'psql' && args.length) throw new UsageError(`\`invoices db ${action}\` takes no arguments, got: ${args.join(' ')}`);
  const ctx = await commandContext(cmd);
  const { target } = ctx.config;
  const [{ describeSettings }, { embeddedSettings, embeddedUrl, startEmbedded, startEmbeddedOnDemand, stopEmbedded }] = await Promise.all([
    import('../config.js'),
    import('../db/embedded.js'),
  ]);
  if (action === 'psql') {
    const settings = target.kind === 'embedded' ? (await startEmbeddedOnDemand(target.home, ctx.log.info)).settings : target.connection;
    process.exitCode = await runPsql(settings, args, process.env);
    return;
  }
  if (action === 'replicas') return replicas(ctx);
  if (target.kind !== 'embedded') {
    if (action === 'url') return ctx.print(describeSettings(target.connection) + '\n');
    throw new UsageError(
      `\`invoices db ${action}\` manages the embedded PostgreSQL, but the database comes from ${target.source} (${describeSettings(target.connection)})`,
    );
  }
  const home = target.home;
  switch (action) {
    case 'start': {
      const { settings, started } = await startEmbedded(home, ctx.log.info);
      ctx.log.info(`${started ? 'started' : 'already running'}: ${describeSettings(settings)} (data in ${home})`);
      return;
    }
    case 'stop': {
      const connected = await connectedCommands(home);
      if (connected.length && !force) {
        throw new InvoicesError(
          `not stopped: ${connected.length} invoices session(s) are connected to the embedded server: ${connected.join('; ')}; ` +
            'let them finish or stop them (Ctrl-C), or pass --force to stop the server anyway (their transactions are rolled back)',
        );
      }
      if (connected.length)
        ctx.log.warn(`stopping with ${connected.length} invoices session(s) connected (--force): ${connected.join('; ')}`);
      const stopped = await stopEmbedded(home);
      ctx.log.info(`${stopped ? 'stopped' : 'not running'}: commands will not start it again until \`invoices db start\``);
      return;
    }
    case 'status':
      return status(ctx, home);
    case 'url': {
      const settings = embeddedSettings(home) ?? (await startEmbeddedOnDemand(home, ctx.log.info)).settings;
      ctx.print(embeddedUrl(settings) + '\n');
      return;
    }
  }
}

/** `db replicas`: each configured replica, whether reads would use it, and its lag (src/db/replica.ts). */
async function replicas(ctx: CommandContext): Promise<void> {
  const { replicaStatus } = await import('../db/replica.js');
  if (!ctx.config.replicas?.length)
    throw new UsageError('no replica configured: give --replica-url, DATABASE_REPLICA_URL or "replicas" in the config file');
  const rows = (await replicaStatus(ctx)).map((r) => ({
    replica: r.name,
    state: r.state,
    lag_seconds: r.lag?.seconds === null || r.lag?.seconds === undefined ? '' : r.lag.seconds.toFixed(3),
    bytes_behind: r.lag?.bytesBehind ?? '',
    replayed_lsn: r.lag?.replayLsn ?? '',
    replay_paused: r.lag ? String(r.lag.paused) : '',
    problem: r.problem ?? '',
  }));
  await ctx.printRows(rows, [
    { key: 'replica' },
    { key: 'state' },
    { key: 'lag_seconds' },
    { key: 'bytes_behind' },
    { key: 'replayed_lsn' },
    { key: 'replay_paused' },
    { key: 'problem' },
  ]);
}

/**
 * The sessions of other invoices commands on the running embedded server (application_name
 * starting with 'invoices'), each described in a few words; [] when it is not running.
 */
async function connectedCommands(home: string): Promise<string[]> {
  const { embeddedSettings, embeddedStatus } = await import('../db/embedded.js');
  const settings = embeddedStatus(home).running ? embeddedSettings(home) : undefined;
  if (!settings) return [];
  const { default: pg } = await import('pg');
  const client = new pg.Client({ ...settings, application_name: 'db stop', connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    const { rows } = await client.query<{
      pid: number;
      app: string;
      db: string;
      port: number | null;
      since: string;
      state: string | null;
      query: string | null;
    }>(
      `SELECT pid, application_name AS app, datname AS db, client_port AS port, to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS since,
              state, left(regexp_replace(query, '\\s+', ' ', 'g'), 40) AS query
         FROM pg_stat_activity WHERE application_name LIKE 'invoices%' AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY backend_start`,
    );
    return rows.map(
      (r) =>
        `${r.app} (server pid ${r.pid}, database ${r.db}, client port ${r.port ?? '?'}, since ${r.since}, ${r.state ?? '?'}${r.query ? `: ${r.query}` : ''})`,
    );
  } catch {
    return []; // not reachable: nothing connected that a stop could cut off
  } finally {
    await client.end().catch(() => {});
  }
}

async function status(ctx: CommandContext, home: string): Promise<void> {
  const [{ defaultLake, describeSettings }, { embeddedSettings, embeddedStatus }] = await Promise.all([
    import('../config.js'),
    import('../db/embedded.js'),
  ]);
  const s = embeddedStatus(home);
  const settings = embeddedSettings(home);
  const row = {
    state: !s.initialised ? 'not initialised' : s.running ? 'running' : 'stopped',
    version: s.version ?? null,
    pid: s.pid ? String(s.pid) : null,
    url: s.running && settings ? describeSettings(settings) : null,
    data: s.dataDir,
    home,
    lake: defaultLake(ctx.config),
  };
  await ctx.printRows(
    [row],
    [{ key: 'state' }, { key: 'version' }, { key: 'pid', kind: 'int' }, { key: 'url' }, { key: 'data' }, { key: 'home' }, { key: 'lake' }],
    { single: true },
  );
  if (!s.running) process.exitCode = 3;
}

/**
 * How psql reaches the database with nothing secret on its command line (argv is world-readable
 * in /proc and ps): the password goes in the child's environment (PGPASSWORD, readable by this
 * user only), the rest as libpq variables, or as a URL without its password when one was given
 * (so its other parameters, sslmode and the like, still apply).
 */
export function psqlInvocation(c: ConnectionSettings, args: string[], env: NodeJS.ProcessEnv): { args: string[]; env: NodeJS.ProcessEnv } {
  const out: NodeJS.ProcessEnv = { ...env };
  if (c.connectionString) {
    // What the URL leaves out falls back to the PG* variables, as it does for node-postgres.
    const u = new URL(c.connectionString);
    const password = decodeURIComponent(u.password) || u.searchParams.get('password') || '';
    u.password = '';
    u.searchParams.delete('password');
    if (password) out.PGPASSWORD = password;
    return { args: ['--dbname', u.toString(), ...args], env: out };
  }
  // Settings from PG* variables (maybe from .env) or the embedded server's: all of them explicit,
  // and nothing of the environment that would send libpq elsewhere.
  for (const k of ['PGHOSTADDR', 'PGSERVICE', 'PGPASSWORD']) delete out[k];
  if (c.host) out.PGHOST = c.host;
  if (c.port) out.PGPORT = String(c.port);
  if (c.user) out.PGUSER = c.user;
  if (c.database) out.PGDATABASE = c.database;
  if (c.password) out.PGPASSWORD = c.password;
  return { args, env: out };
}

/** Runs psql on the terminal until it exits; resolves with its exit code (128 + n after signal n). */
async function runPsql(settings: ConnectionSettings, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const call = psqlInvocation(settings, args, env);
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn('psql', call.args, { stdio: 'inherit', env: call.env });
    // Ctrl-C belongs to psql (it cancels the running query); SIGTERM and SIGHUP are passed on.
    const ignore = () => {};
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', ignore);
    process.on('SIGTERM', forward);
    process.on('SIGHUP', forward);
    const done = () => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
      process.off('SIGHUP', forward);
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      done();
      reject(
        err.code === 'ENOENT'
          ? new InvoicesError(
              'psql is not on PATH: install the PostgreSQL client (Debian/Ubuntu: apt install postgresql-client; macOS: brew install libpq)',
              { cause: err },
            )
          : new InvoicesError(`psql could not be started: ${err.message}`, { cause: err }),
      );
    });
    child.on('exit', (code, signal) => {
      done();
      resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
    });
  });
}

function signalNumber(signal: NodeJS.Signals): number {
  return ({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 0;
}
