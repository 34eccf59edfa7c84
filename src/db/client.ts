import pg from 'pg';
import type { Config, ConnectionSettings } from '../config.js';
import { describeSettings } from '../config.js';
import { DatabaseError, InvoicesError, UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { embeddedSettings, startEmbeddedOnDemand } from './embedded.js';

export type Client = pg.Client;

const RAW = (value: string) => value;
/** PostgreSQL timestamp text (session TimeZone is UTC) to ISO 8601 UTC: "2026-01-02 03:04:05.5+00" -> "2026-01-02T03:04:05.5Z". */
const isoUtc = (value: string) => value.replace(' ', 'T').replace(/(\+00(:00)?)?$/, 'Z');

// bigint, numeric and timestamps stay exact strings: no float, no millisecond rounding, no local time zone.
const typeParsers: Record<number, (value: string) => unknown> = {
  20: RAW, // int8
  1700: RAW, // numeric
  1082: RAW, // date
  1114: isoUtc, // timestamp without time zone, read as UTC
  1184: isoUtc, // timestamptz
};
export const types = {
  getTypeParser: ((oid: number, format?: string) =>
    (format ?? 'text') === 'text' && typeParsers[oid]
      ? typeParsers[oid]
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

export interface DbContext {
  config: Config;
  log?: Logger;
}

/** Connection settings for the configured target, starting the embedded server when needed. */
export async function connectionSettings(ctx: DbContext): Promise<ConnectionSettings> {
  const { target } = ctx.config;
  if (target.kind === 'server') return target.connection;
  return embeddedSettings(target.home) ?? (await startEmbeddedOnDemand(target.home, (l) => ctx.log?.info(l))).settings;
}

/** Opens one connection (session time zone UTC); the caller ends it. */
export async function connect(ctx: DbContext): Promise<Client> {
  const log = ctx.log ?? silentLogger;
  let settings = await connectionSettings(ctx);
  try {
    return await open(settings, log);
  } catch (err) {
    // The embedded server stops with the machine: start it on demand, once; never after
    // `invoices db stop` (startEmbeddedOnDemand refuses then, naming `invoices db start`).
    if (ctx.config.target.kind === 'embedded' && isConnectionRefused(err)) {
      log.debug('embedded PostgreSQL is not running: starting it');
      settings = (await startEmbeddedOnDemand(ctx.config.target.home, (l) => log.info(l))).settings;
      try {
        return await open(settings, log);
      } catch (err2) {
        throw translatePgError(err2, settings);
      }
    }
    throw translatePgError(err, settings);
  }
}

async function open(settings: ConnectionSettings, log: Logger): Promise<Client> {
  const { connectTimeoutMs, ...rest } = settings;
  const client = new pg.Client({
    ...rest,
    types,
    options: '-c TimeZone=UTC',
    application_name: 'invoices',
    connectionTimeoutMillis: connectTimeoutMs,
  });
  // An idle client whose server goes away emits 'error'; without a listener Node would crash.
  client.on('error', (err) => log.warn(`database connection lost: ${err.message}`));
  await client.connect();
  timeQueries(client, log);
  return client;
}

/** With --debug, each statement's time and first line (never its parameters). */
function timeQueries(client: Client, log: Logger): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  client.query = ((...args: unknown[]) => {
    const started = performance.now();
    const result = query(...args);
    if (result instanceof Promise) {
      const first = args[0] as string | { text?: string };
      const text = (typeof first === 'string' ? first : (first?.text ?? '')).trim().split('\n')[0].slice(0, 100);
      result.then(
        () => log.debug(`${(performance.now() - started).toFixed(1)} ms  ${text}`),
        () => {},
      );
    }
    return result;
  }) as typeof client.query;
}

/** Runs fn with a connection and always releases it. */
export async function withClient<T>(ctx: DbContext, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = await connect(ctx);
  try {
    return await fn(client);
  } catch (err) {
    throw translatePgError(err, undefined);
  } finally {
    await client.end().catch(() => {});
  }
}

function isConnectionRefused(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ECONNREFUSED' || code === '57P03';
}

/** Turns driver errors into one-line messages that say what to do; our own errors pass through. */
export function translatePgError(err: unknown, settings: ConnectionSettings | undefined): Error {
  if (err instanceof InvoicesError) return err;
  const e = err as { code?: string; message?: string; table?: string };
  const where = settings ? describeSettings(settings) : 'the database';
  switch (e?.code) {
    case 'ECONNREFUSED':
      return new DatabaseError(`cannot connect to ${where}: no server is listening there (start it, or check the URL)`, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new DatabaseError(`cannot connect to ${where}: unknown host`, { cause: err });
    case 'ETIMEDOUT':
      return new DatabaseError(`cannot connect to ${where}: connection timed out`, { cause: err });
    case '28P01':
      return new DatabaseError(`password authentication failed for ${where}: check the password in the URL or PGPASSWORD`, { cause: err });
    case '28000':
      return new DatabaseError(`${where} refused the connection: ${e.message}`, { cause: err });
    case '3D000':
      return new DatabaseError(`${e.message} on ${where}: create it (createdb) or fix the database name in the URL`, { cause: err });
    case '42P01':
      // A setup problem, as a missing table found by describeSource is (exit 2 from every command).
      return new UsageError(`${e.message}: run \`invoices init\` to create the schema`, { cause: err });
    case '57P01':
    case '57P03':
      return new DatabaseError(`${where} is shutting down or starting up: retry in a moment`, { cause: err });
  }
  if (e?.code && /^[0-9A-Z]{5}$/.test(e.code)) return new DatabaseError(`database error ${e.code}: ${e.message}`, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}
