import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './errors.js';
import { DEFAULT_TABLES, parseTableMap, type TableMap } from './tables.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** Where the connection came from, for messages and `invoices db url`. */
export type ConnectionSource = '--database-url' | 'DATABASE_URL' | 'PG* variables' | 'config file' | 'embedded';

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
}

export interface Config {
  target: Target;
  /** $INVOICES_HOME: the embedded server's data and state. */
  home: string;
  /** Path of the config file that was read, if any. */
  configFile?: string;
  /** The tables and columns to work on (config file "invoices"/"customers"; default: this tool's). */
  tables: TableMap;
}

export interface ConfigInput {
  databaseUrl?: string;
  configPath?: string;
  env: Env;
  cwd: string;
}

interface ConfigFile {
  databaseUrl?: string;
  tables: TableMap;
}

/** Resolves the connection once: flag > environment (and .env) > config file > embedded. */
export function resolveConfig(input: ConfigInput): Config {
  const { env, cwd } = input;
  const home = path.resolve(cwd, env.INVOICES_HOME || '.invoices');
  const file = readConfigFile(input);
  const base = { home, configFile: file?.path, tables: file?.content.tables ?? DEFAULT_TABLES };

  if (input.databaseUrl) return { ...base, target: urlTarget(input.databaseUrl, '--database-url') };
  if (env.DATABASE_URL) return { ...base, target: urlTarget(env.DATABASE_URL, 'DATABASE_URL') };
  if (env.PGHOST || env.PGPORT || env.PGUSER || env.PGDATABASE) {
    return { ...base, target: { kind: 'server', source: 'PG* variables', connection: libpqSettings(env) } };
  }
  if (file?.content.databaseUrl) return { ...base, target: urlTarget(file.content.databaseUrl, 'config file') };
  return { ...base, target: { kind: 'embedded', source: 'embedded', home } };
}

function urlTarget(url: string, source: ServerTarget['source']): ServerTarget {
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new ConfigError(`${source} must be a postgres:// URL, got "${maskUrl(url)}"`);
  }
  try {
    new URL(url);
  } catch {
    throw new ConfigError(`${source} is not a valid URL: "${maskUrl(url)}"`);
  }
  return { kind: 'server', source, connection: { connectionString: url } };
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
  const { databaseUrl } = content as Record<string, unknown>;
  if (databaseUrl !== undefined && typeof databaseUrl !== 'string') {
    throw new ConfigError(`config file ${file}: "databaseUrl" must be a string`);
  }
  return { path: file, content: { databaseUrl, tables: parseTableMap(content as Record<string, unknown>, file) } };
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
