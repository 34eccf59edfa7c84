// The global options and what every command gets from them: the resolved config, a stderr
// logger, the output format. The only place besides cli.ts that reads process.env.
import type { Command } from 'commander';
import { DEFAULT_MAX_REPLICA_LAG } from '../config-defaults.js';
import type { Config } from '../config.js';
import type { DbContext } from '../db/client.js';
import { InterruptedError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Column, Format } from '../output/render.js';

/** The options every command takes (read by buildContext below). */
export function addGlobalOptions(program: Command): Command {
  return program
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL, PG* variables, config file, else the embedded server)')
    .option(
      '--replica-url <url>',
      'a hot standby for reads (get, group --engine postgres, export); repeat for more (default: DATABASE_REPLICA_URL, comma-separated, or "replicas" in the config file)',
      collect,
    )
    .option(
      '--max-replica-lag <seconds>',
      `a replica further behind than this is passed over for the primary (default: ${DEFAULT_MAX_REPLICA_LAG})`,
    )
    .option('--replica-only', 'reads never fall back to the primary: no usable replica is an error (exit 1)')
    .option('--config <path>', 'config file (default: ./invoices.config.json)')
    .option('--format <format>', 'output format: table, json or csv (default: table on a terminal, else json)')
    .option('--json', 'same as --format json')
    .option('-q, --quiet', 'no progress or information on stderr')
    .option('--debug', 'show stack traces and debug lines on stderr')
    .option('--no-color', 'no colour (also NO_COLOR)');
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export interface GlobalOptions {
  databaseUrl?: string;
  replicaUrl?: string[];
  maxReplicaLag?: string;
  replicaOnly?: boolean;
  config?: string;
  format?: string;
  json?: boolean;
  quiet?: boolean;
  debug?: boolean;
  color?: boolean;
}

export interface CommandContext extends DbContext {
  config: Config;
  log: Logger;
  format: Format;
  quiet: boolean;
  /** stderr is a terminal and progress may animate. */
  tty: boolean;
  color: boolean;
  /** REDIS_URL (environment or .env): the default cache of `invoices get`. */
  redisUrl?: string;
  print(text: string): void;
  printRows<T extends object>(rows: T[], columns: Column<T>[], opts?: { single?: boolean }): Promise<void>;
}

const contexts = new WeakMap<Command, Promise<CommandContext>>();

/** The context of a command, built once (its defaultLake hook may ask first). */
export function commandContext(cmd: Command): Promise<CommandContext> {
  let ctx = contexts.get(cmd);
  if (!ctx) {
    ctx = buildContext(cmd);
    contexts.set(cmd, ctx);
  }
  return ctx;
}

async function buildContext(cmd: Command): Promise<CommandContext> {
  // Loaded when a command runs, not for --help.
  const [{ resolveConfig, withDotEnv }, { noticeLegacyHome }, { parseFormat, render }] = await Promise.all([
    import('../config.js'),
    import('./home.js'),
    import('../output/render.js'),
  ]);
  const g = cmd.optsWithGlobals<GlobalOptions>();
  const env = withDotEnv(process.env, process.cwd());
  const format = g.json ? 'json' : g.format ? parseFormat(g.format) : process.stdout.isTTY ? 'table' : 'json';
  const quiet = Boolean(g.quiet);
  const color = g.color !== false && !env.NO_COLOR && Boolean(process.stderr.isTTY);
  const log: Logger = {
    info: (m) => {
      if (!quiet) process.stderr.write(m + '\n');
    },
    warn: (m) => process.stderr.write(`warning: ${m}\n`),
    debug: (m) => {
      if (g.debug) process.stderr.write(`debug: ${m}\n`);
    },
  };
  const maxReplicaLag = g.maxReplicaLag === undefined ? undefined : positiveInt('--max-replica-lag', g.maxReplicaLag, { allowZero: true });
  const config = resolveConfig({
    databaseUrl: g.databaseUrl,
    replicaUrls: g.replicaUrl,
    maxReplicaLag,
    replicaOnly: g.replicaOnly,
    configPath: g.config,
    env,
    cwd: process.cwd(),
  });
  log.debug(`database: ${config.target.source}; home: ${config.home} (${config.homeSource})`);
  if (config.replicas?.length)
    log.debug(
      `replicas: ${config.replicas.length} from ${config.replicas[0].source}, max lag ${config.reads?.maxLagSeconds} s${config.reads?.replicaOnly ? ', replica only' : ''}`,
    );
  else if (g.replicaOnly)
    throw new UsageError('--replica-only needs a replica: give --replica-url, DATABASE_REPLICA_URL or "replicas" in the config file');
  noticeLegacyHome(config, process.cwd(), log);
  return {
    config,
    log,
    format,
    quiet,
    tty: Boolean(process.stderr.isTTY) && !quiet && format !== 'json',
    color,
    redisUrl: env.REDIS_URL || undefined,
    print: (text) => void process.stdout.write(text),
    printRows: async (rows, columns, opts) => {
      process.stdout.write(await render(rows, columns, format, { ...opts, color: color && Boolean(process.stdout.isTTY) }));
    },
  };
}

/** The default of --out/--lake, said in --help: the value itself is known once the config is resolved. */
export const LAKE_DEFAULT = "this database's own lake, <home>/lakes/<name> (README: Where everything lives)";

/**
 * The preAction hook of a command with --out or --lake: when not given, the lake of the database
 * (config.ts defaultLake), which has no static default since it is known only once the
 * configuration is resolved.
 */
export function defaultLake(flag: '--out' | '--lake'): (cmd: Command) => Promise<void> {
  return async (cmd) => {
    const key = flag.slice(2);
    if (cmd.getOptionValue(key) !== undefined) return;
    const [ctx, { defaultLakeFor }] = await Promise.all([commandContext(cmd), import('./home.js')]);
    cmd.setOptionValueWithSource(key, defaultLakeFor(ctx.config, process.cwd(), ctx.log, flag), 'default');
  };
}

/** The first SIGINT or SIGTERM this process received (the exit code follows it: 130 or 143). */
let received: NodeJS.Signals | undefined;

/** The exit code of an interrupted run: 128 + the signal's number, as a shell reports it (SIGINT 130, SIGTERM 143). */
export function interruptExitCode(sig: NodeJS.Signals | undefined = received): number {
  return sig === 'SIGTERM' ? 143 : 130;
}

/**
 * An AbortSignal that fires on the first Ctrl-C or SIGTERM, so long work can stop at a
 * clean point (cancelOnAbort in src/db/cancel.ts stops a statement in flight); a second
 * Ctrl-C exits at once (the server rolls back what was not committed).
 */
export function interruptSignal(log: Logger): AbortSignal {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      process.stderr.write('\nforced exit\n');
      process.exit(interruptExitCode(sig));
    }
    received ??= sig;
    log.warn(`${sig}: stopping at the next clean point (press Ctrl-C again to force)`);
    controller.abort(new InterruptedError('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return controller.signal;
}

/** Parses a --as-of style day, YYYY-MM-DD (UTC midnight); a usage error otherwise. */
export function parseDay(value: string, flag = '--as-of'): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
  if (!d || d.toISOString().slice(0, 10) !== value) throw new UsageError(`${flag} must be a date YYYY-MM-DD, got "${value}"`);
  return d;
}

/** Parses a positive integer option or argument, else a usage error naming it. */
export function positiveInt(name: string, value: string | undefined, { allowZero = false } = {}): number {
  const n = Number(value);
  if (value === undefined || !/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || (n === 0 && !allowZero)) {
    throw new UsageError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got "${value ?? ''}"`);
  }
  return n;
}
