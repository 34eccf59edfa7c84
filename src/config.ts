import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_MAX_REPLICA_LAG } from './config-defaults.js';
import { ConfigError } from './errors.js';
import { DEFAULT_TABLES, parseTableMap, type TableMap } from './tables.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** Where the connection came from, for messages and `invoices db url`. */
export type ConnectionSource = '--database-url' | 'DATABASE_URL' | 'PG* variables' | 'config file' | 'embedded';

/** Where the read replicas came from (src/db/replica.ts routes reads to them). */
export type ReplicaSource = '--replica-url' | 'DATABASE_REPLICA_URL' | 'config file';

/** A hot standby named by the user: reads may go there, writes never do. */
export interface ReplicaTarget {
  kind: 'server';
  source: ReplicaSource;
  connection: ConnectionSettings;
}

/** How reads use the replicas: the lag they tolerate, and whether the primary may answer instead. */
export interface ReadPolicy {
  /** A replica further behind than this many seconds is passed over (default DEFAULT_MAX_REPLICA_LAG). */
  maxLagSeconds: number;
  /** No fallback to the primary: a read with no usable replica is an error. */
  replicaOnly: boolean;
}

export { DEFAULT_MAX_REPLICA_LAG };

/** A server named by the user (flag, environment or config file). */
export interface ServerTarget {
  kind: 'server';
  source: Exclude<ConnectionSource, 'embedded'>;
  /** node-postgres connection settings (may hold a password: never print them). */
  connection: ConnectionSettings;
}

/** The embedded PostgreSQL kept under `home`. */
export interface EmbeddedTarget {
  kind: 'embedded';
  source: 'embedded';
  home: string;
}

export type Target = ServerTarget | EmbeddedTarget;

export interface ConnectionSettings {
  connectionString?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  /** Give up connecting after this long (a read replica: the primary answers instead); default: no limit. */
  connectTimeoutMs?: number;
}

/** What chose the home: see resolveHome. */
export type HomeSource = 'INVOICES_HOME' | 'config file' | 'XDG_DATA_HOME' | 'default';

export interface Config {
  target: Target;
  /** The per-user home: the embedded server's data, its password, the default lakes. Never the working directory's. */
  home: string;
  homeSource: HomeSource;
  /** Path of the config file that was read, if any. */
  configFile?: string;
  /** The tables and columns to work on (config file "invoices"/"customers"; default: this tool's). */
  tables: TableMap;
  /** Hot standbys for reads (--replica-url, DATABASE_REPLICA_URL, config file "replicas"), in order of preference. */
  replicas?: ReplicaTarget[];
  /** Default: DEFAULT_MAX_REPLICA_LAG, fallback to the primary allowed. */
  reads?: ReadPolicy;
}

export interface ConfigInput {
  databaseUrl?: string;
  /** --replica-url, repeatable. */
  replicaUrls?: string[];
  /** --max-replica-lag (seconds), validated by the caller. */
  maxReplicaLag?: number;
  replicaOnly?: boolean;
  configPath?: string;
  env: Env;
  cwd: string;
  /** The OS user id (default: this process's): root's default home is /var/lib/invoices. */
  uid?: number;
}

interface ConfigFile {
  databaseUrl?: string;
  home?: string;
  replicas?: string[];
  tables: TableMap;
}

/** The home when root does not say otherwise: a directory the `postgres` OS user can reach, as /root is not. */
export const ROOT_HOME = '/var/lib/invoices';

/** Resolves the connection once: flag > environment (and .env) > config file > embedded. */
export function resolveConfig(input: ConfigInput): Config {
  const { env, cwd } = input;
  const file = readConfigFile(input);
  const { home, source: homeSource } = resolveHome(env, cwd, file, input.uid ?? process.getuid?.());
  const base = {
    home,
    homeSource,
    configFile: file?.path,
    tables: file?.content.tables ?? DEFAULT_TABLES,
    replicas: resolveReplicas(input, file?.content.replicas),
    reads: { maxLagSeconds: input.maxReplicaLag ?? DEFAULT_MAX_REPLICA_LAG, replicaOnly: Boolean(input.replicaOnly) },
  };

  if (input.databaseUrl) return { ...base, target: urlTarget(input.databaseUrl, '--database-url') };
  if (env.DATABASE_URL) return { ...base, target: urlTarget(env.DATABASE_URL, 'DATABASE_URL') };
  if (env.PGHOST || env.PGPORT || env.PGUSER || env.PGDATABASE) {
    return { ...base, target: { kind: 'server', source: 'PG* variables', connection: libpqSettings(env) } };
  }
  if (file?.content.databaseUrl) return { ...base, target: urlTarget(file.content.databaseUrl, 'config file') };
  return { ...base, target: { kind: 'embedded', source: 'embedded', home } };
}

/** The replicas, first match wins: --replica-url (repeatable), DATABASE_REPLICA_URL (comma-separated), the config file's "replicas". */
function resolveReplicas(input: ConfigInput, fromFile: string[] | undefined): ReplicaTarget[] {
  const pick = (urls: string[], source: ReplicaSource): ReplicaTarget[] =>
    urls
      .map((u) => u.trim())
      .filter(Boolean)
      .map((u) => ({ ...urlTarget(u, source), source }));
  if (input.replicaUrls?.length) return pick(input.replicaUrls, '--replica-url');
  if (input.env.DATABASE_REPLICA_URL) return pick(input.env.DATABASE_REPLICA_URL.split(','), 'DATABASE_REPLICA_URL');
  return fromFile ? pick(fromFile, 'config file') : [];
}

/**
 * The home, first match wins: $INVOICES_HOME (relative to the working directory), the config
 * file's "home" (relative to the file), $XDG_DATA_HOME/invoices (absolute only, as the XDG spec
 * says), then ~/.local/share/invoices, or /var/lib/invoices for root (PostgreSQL runs as the
 * `postgres` OS user then, which cannot enter /root).
 */
export function resolveHome(
  env: Env,
  cwd: string,
  file: { path: string; content: { home?: string } } | undefined,
  uid: number | undefined,
): { home: string; source: HomeSource } {
  if (env.INVOICES_HOME) return { home: path.resolve(cwd, expandTilde(env.INVOICES_HOME, env)), source: 'INVOICES_HOME' };
  if (file?.content.home)
    return { home: path.resolve(path.dirname(file.path), expandTilde(file.content.home, env)), source: 'config file' };
  if (env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME))
    return { home: path.join(env.XDG_DATA_HOME, 'invoices'), source: 'XDG_DATA_HOME' };
  if (uid === 0) return { home: ROOT_HOME, source: 'default' };
  return { home: path.join(env.HOME || os.homedir(), '.local', 'share', 'invoices'), source: 'default' };
}

function expandTilde(p: string, env: Env): string {
  return p === '~' || p.startsWith('~/') ? path.join(env.HOME || os.homedir(), p.slice(1)) : p;
}

/**
 * The lake `export`, `group`, `query` and `join` use when --out/--lake is not given: one per
 * source database and table mapping, under the home (`<home>/lakes/<name>`), so exports from two
 * databases never share a lake.
 */
export function defaultLake(config: Pick<Config, 'home' | 'target' | 'tables'>): string {
  return path.join(config.home, 'lakes', lakeName(config.target, config.tables));
}

/**
 * A short, readable, stable directory name for a database and mapping: `embedded` for the
 * embedded server, else host-port-database, the mapped table if any, and 8 hex digits of a hash of
 * all of it (two spellings that sanitise alike stay apart). Never from the password or the user.
 */
export function lakeName(target: Target, tables: TableMap = DEFAULT_TABLES): string {
  const mapped = tables.mapped ? JSON.stringify([tables.invoices, tables.customers]) : '';
  const table = tables.mapped ? `${tables.invoices.schema}.${tables.invoices.table}` : '';
  if (target.kind === 'embedded' && !tables.mapped) return 'embedded';
  const { host, port, database } =
    target.kind === 'embedded' ? { host: 'embedded', port: '', database: '' } : serverAddress(target.connection);
  const readable = [host, port, database, table]
    .filter(Boolean)
    .join('-')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[.]+/, '_')
    .slice(0, 80);
  const hash = createHash('sha256')
    .update(JSON.stringify([host, port, database, mapped]))
    .digest('hex')
    .slice(0, 8);
  return `${readable}-${hash}`;
}

/** Host, port and database of a server, as libpq would fill in the defaults. */
function serverAddress(c: ConnectionSettings): { host: string; port: string; database: string } {
  if (!c.connectionString) return { host: c.host ?? 'localhost', port: String(c.port ?? 5432), database: c.database ?? c.user ?? '' };
  const u = new URL(c.connectionString);
  const q = u.searchParams;
  const user = decodeURIComponent(u.username) || q.get('user') || '';
  return {
    host: q.get('host') || u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost',
    port: q.get('port') || u.port || '5432',
    database: q.get('dbname') || decodeURIComponent(u.pathname.replace(/^\//, '')) || user,
  };
}

/**
 * A directory `.invoices` holding an embedded server of an earlier version (which kept it in the
 * working directory), when the home was not chosen explicitly and is another: returned so the CLI
 * can say so, never used.
 */
export function legacyHome(config: Config, cwd: string): string | undefined {
  if (config.target.kind !== 'embedded' || config.homeSource === 'INVOICES_HOME' || config.homeSource === 'config file') return undefined;
  const dir = path.join(cwd, '.invoices');
  if (dir === config.home || !existsSync(path.join(dir, 'pgdata', 'PG_VERSION'))) return undefined;
  return dir;
}

function urlTarget(url: string, source: ServerTarget['source'] | ReplicaSource): ServerTarget {
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new ConfigError(`${source} must be a postgres:// URL, got "${maskUrl(url)}"`);
  }
  try {
    new URL(url);
  } catch {
    throw new ConfigError(`${source} is not a valid URL: "${maskUrl(url)}"`);
  }
  return { kind: 'server', source: source as ServerTarget['source'], connection: { connectionString: url } };
}

/** The libpq variables, with libpq's defaults where they are unset. */
function libpqSettings(env: Env): ConnectionSettings {
  const port = env.PGPORT ? Number(env.PGPORT) : 5432;
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new ConfigError(`PGPORT must be a port number, got "${env.PGPORT}"`);
  }
  const user = env.PGUSER || env.USER || 'postgres';
  return {
    host: env.PGHOST || 'localhost',
    port,
    user,
    password: env.PGPASSWORD,
    database: env.PGDATABASE || user,
  };
}

function readConfigFile(input: ConfigInput): { path: string; content: ConfigFile } | undefined {
  const explicit = input.configPath !== undefined;
  const file = path.resolve(input.cwd, input.configPath ?? 'invoices.config.json');
  if (!existsSync(file)) {
    if (explicit) throw new ConfigError(`config file not found: ${file}`);
    return undefined;
  }
  let content: unknown;
  try {
    content = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof content !== 'object' || content === null || Array.isArray(content)) {
    throw new ConfigError(`config file ${file} must hold a JSON object`);
  }
  const { databaseUrl, home, replicas } = content as Record<string, unknown>;
  if (replicas !== undefined && (!Array.isArray(replicas) || !replicas.every((r) => typeof r === 'string' && r))) {
    throw new ConfigError(`config file ${file}: "replicas" must be a list of postgres:// URLs`);
  }
  if (databaseUrl !== undefined && typeof databaseUrl !== 'string') {
    throw new ConfigError(`config file ${file}: "databaseUrl" must be a string`);
  }
  if (home !== undefined && (typeof home !== 'string' || !home)) {
    throw new ConfigError(`config file ${file}: "home" must be a directory path (a non-empty string)`);
  }
  return {
    path: file,
    content: {
      databaseUrl,
      home,
      replicas: replicas as string[] | undefined,
      tables: parseTableMap(content as Record<string, unknown>, file),
    },
  };
}

/** Parses a .env file: KEY=VALUE lines, optional quotes, # comments. */
export function parseDotEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2];
    const quoted = /^(['"])(.*)\1$/.exec(value);
    if (quoted) value = quoted[1] === '"' ? quoted[2].replace(/\\n/g, '\n') : quoted[2];
    else value = value.replace(/\s+#.*$/, '');
    out[m[1]] = value;
  }
  return out;
}

/** The environment with `.env` from `cwd` underneath: variables already set win. */
export function withDotEnv(env: Env, cwd: string): Env {
  const file = path.join(cwd, '.env');
  if (!existsSync(file)) return env;
  return { ...parseDotEnv(readFileSync(file, 'utf8')), ...stripUndefined(env) };
}

function stripUndefined(env: Env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** A URL safe to print: the password replaced by ***. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    // Up to the last @ of the authority, as URL parsers do: a raw @ in the password stays hidden.
    return url.replace(/(\/\/[^:/@]*:)[^/?#]*@/, '$1***@');
  }
}

/** How to show a target in messages, never with its password. */
export function describeSettings(c: ConnectionSettings): string {
  if (c.connectionString) return maskUrl(c.connectionString);
  const user = c.user ? `${encodeURIComponent(c.user)}@` : '';
  return `postgres://${user}${c.host ?? 'localhost'}:${c.port ?? 5432}/${c.database ?? ''}`;
}
