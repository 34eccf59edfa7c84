// Use case 3: DuckDB SQL over the lake (`invoices`, `customers`) and side sources.
// The SQL reads only what it is given: once the views and side tables exist, DuckDB's own
// settings shut every other file (enable_external_access=false, allowed_paths = the lake's files
// and the side files, lock_configuration), and statements that write files are refused before they
// run, as allowed paths would otherwise be writable too.
import path from 'node:path';
import { StatementType } from '@duckdb/node-api';
import { UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { type DuckDBConnection, sqlString, withDuckDb } from '../lake/duckdb.js';
import { readManifest, type Manifest } from '../lake/manifest.js';
import { registerLake } from '../lake/read.js';
import { registerSources, type SideSource } from './sources.js';

export type ColumnKind = 'int' | 'money' | 'text' | 'time';

export interface QueryResult {
  columns: { name: string; type: string; kind: ColumnKind }[];
  /** Values in their exact JSON form: BIGINT and DECIMAL as strings, nested values as objects and arrays. */
  rows: Record<string, unknown>[];
  /** Whether the lake's views were there (false: no lake at that directory). */
  lake: boolean;
}

export interface AnalyticsOptions {
  /** Let the SQL read and write any file the user can (DuckDB's defaults): `query --unsafe-files`. */
  unsafeFiles?: boolean;
}

/**
 * Opens DuckDB with the lake's views (when there is a lake) and the side sources, confines it to
 * those files (unless unsafeFiles), and runs fn.
 */
export async function withAnalytics<T>(
  lake: string,
  sources: SideSource[],
  log: Logger,
  fn: (duck: DuckDBConnection, hasLake: boolean) => Promise<T>,
  opts: AnalyticsOptions = {},
): Promise<T> {
  return withDuckDb(async (duck) => {
    const manifest = readManifest(lake);
    if (manifest) {
      await registerLake(duck, lake, manifest);
      log.info(
        `lake: ${path.resolve(lake)}, exported ${manifest.exportedAt} (rows committed later are not in it: run \`invoices export\`)`,
      );
    } else {
      log.info(`no lake at ${path.resolve(lake)}: views invoices and customers are not defined (run \`invoices export\`)`);
    }
    await registerSources(duck, sources);
    if (!opts.unsafeFiles) await confine(duck, [...(manifest ? lakeFiles(lake, manifest) : []), ...sources.map((s) => s.path)]);
    return fn(duck, Boolean(manifest));
  });
}

/** The absolute paths of the files the lake's views read (the manifest's, as registerLake reads them). */
function lakeFiles(lake: string, manifest: Manifest): string[] {
  const files = [...Object.values(manifest.months).flatMap((m) => m.files), ...manifest.customers.files];
  return files.map((f) => path.resolve(lake, f));
}

/**
 * From here on DuckDB opens only these files (exact paths: no directory, so no glob, listing or
 * log file next to them), and no setting can be changed back. Settings must come in this order:
 * allowed_paths cannot change once external access is off.
 */
async function confine(duck: DuckDBConnection, files: string[]): Promise<void> {
  await duck.run(`SET allowed_paths = [${files.map(sqlString).join(', ')}]`);
  await duck.run('SET allow_persistent_secrets = false');
  await duck.run('SET autoinstall_known_extensions = false');
  await duck.run('SET enable_external_access = false');
  await duck.run('SET lock_configuration = true');
}

/** Runs one SQL statement and returns its rows. A SQL error is a usage error (exit 2) with DuckDB's first line. */
export async function runQuery(
  lake: string,
  sql: string,
  sources: SideSource[],
  log: Logger = silentLogger,
  opts: AnalyticsOptions = {},
): Promise<QueryResult> {
  if (!sql.trim()) throw new UsageError('the query is empty');
  return withAnalytics(
    lake,
    sources,
    log,
    async (duck, hasLake) => {
      let reader;
      try {
        reader = await runStatements(duck, sql, !opts.unsafeFiles);
      } catch (err) {
        if (err instanceof UsageError) throw err;
        const message = (err instanceof Error ? err.message : String(err)).split('\n')[0];
        const refused = opts.unsafeFiles ? undefined : explainRefusal(message);
        if (refused) throw new UsageError(`query refused: ${refused}`, { cause: err });
        const hint =
          !hasLake && /Table with name (invoices|customers) does not exist/i.test(message)
            ? ' (there is no lake: run `invoices export`)'
            : '';
        throw new UsageError(`query failed: ${message}${hint}`, { cause: err });
      }
      const names = reader.columnNames();
      const types = reader.columnTypes().map((t) => t.toString());
      const columns = names.map((name, i) => ({ name, type: types[i], kind: kindOf(types[i]) }));
      const rows = reader.getRowObjectsJson() as Record<string, unknown>[];
      // Timestamps as every command prints them: ISO 8601 UTC with Z (the lake's are UTC).
      const times = columns.filter((c) => c.kind === 'time').map((c) => c.name);
      if (times.length) for (const row of rows) for (const k of times) row[k] = isoTimestamp(row[k]);
      return { columns, rows, lake: hasLake };
    },
    opts,
  );
}

/** What each refused kind of statement would do, for the message. */
const REFUSED: Partial<Record<StatementType, string>> = {
  [StatementType.COPY]: 'COPY reads or writes files directly: give a file to read with --with NAME=PATH',
  [StatementType.EXPORT]: 'EXPORT DATABASE writes files',
  [StatementType.COPY_DATABASE]: 'COPY FROM DATABASE writes a database',
  [StatementType.ATTACH]: 'ATTACH opens a database file',
  [StatementType.DETACH]: 'DETACH is for attached databases, and ATTACH is refused',
  [StatementType.LOAD]: 'LOAD and INSTALL read extension files',
  [StatementType.EXTENSION]: 'extension statements read and write extension files',
  [StatementType.UPDATE_EXTENSIONS]: 'UPDATE EXTENSIONS writes extension files',
  [StatementType.PREPARE]: 'PREPARE runs a statement later, unchecked: give the statement itself',
  [StatementType.EXECUTE]: 'EXECUTE runs a prepared statement, unchecked: give the statement itself',
};

/** Statements that touch no file of their own: queries, and objects in the in-memory database. */
const ALLOWED = new Set<StatementType>([
  StatementType.SELECT,
  StatementType.EXPLAIN,
  StatementType.PRAGMA,
  StatementType.CALL,
  StatementType.SET,
  StatementType.VARIABLE_SET,
  StatementType.CREATE,
  StatementType.CREATE_FUNC,
  StatementType.INSERT,
  StatementType.UPDATE,
  StatementType.DELETE,
  StatementType.MERGE_INTO,
  StatementType.DROP,
  StatementType.ALTER,
  StatementType.TRANSACTION,
  StatementType.ANALYZE,
  StatementType.VACUUM,
]);

const UNSAFE = 'query reads the lake and the --with files and writes nothing, unless --unsafe-files';

/**
 * Runs each statement of sql in turn (PIVOT, for one, is two: a type, then the query) and returns
 * the last one's result. With `guard`, each is checked before it runs: a refused one is a usage
 * error, and nothing after it runs.
 */
async function runStatements(duck: DuckDBConnection, sql: string, guard: boolean) {
  let extracted;
  try {
    extracted = await duck.extractStatements(sql);
  } catch (err) {
    // Only comments: DuckDB has no statement to give back and says nothing useful.
    if (/native callback/.test((err as Error).message)) throw new UsageError('the query has no statement (only comments?)', { cause: err });
    throw err;
  }
  let reader;
  for (let i = 0; i < extracted.count; i++) {
    const prepared = await extracted.prepare(i);
    if (guard) await check(duck, prepared.statementType, sql, extracted.count);
    reader = await prepared.runAndReadAll();
  }
  if (!reader) throw new UsageError('the query has no statement');
  return reader;
}

async function check(duck: DuckDBConnection, type: StatementType, sql: string, count: number): Promise<void> {
  // A table function, so a SELECT, that turns on logging to files despite lock_configuration (and
  // aborts the process when the directory is shut): refused by name, string literals included.
  if (/\benable_logging\b/i.test(sql)) throw new UsageError(`query refused: enable_logging writes log files; ${UNSAFE}`);
  if (!ALLOWED.has(type)) {
    throw new UsageError(`query refused: ${REFUSED[type] ?? `${StatementType[type] ?? type} statements are not run`}; ${UNSAFE}`);
  }
  // EXPLAIN ANALYZE runs what it explains: that must pass too. EXPLAIN alone runs nothing.
  if (type === StatementType.EXPLAIN && /analy[sz]e/i.test(sql)) {
    const inner = count === 1 ? /^\s*explain\s+analy[sz]e\s+([\s\S]+)$/i.exec(stripLeadingComments(sql))?.[1] : undefined;
    if (!inner)
      throw new UsageError(
        `query refused: EXPLAIN ANALYZE runs its statement, and this one could not be checked (give EXPLAIN ANALYZE alone, first, with no comment inside); ${UNSAFE}`,
      );
    const extracted = await duck.extractStatements(inner);
    if (extracted.count !== 1) throw new UsageError(`query refused: EXPLAIN ANALYZE of more than one statement; ${UNSAFE}`);
    const prepared = await extracted.prepare(0);
    try {
      if (prepared.statementType === StatementType.EXPLAIN) throw new UsageError(`query refused: EXPLAIN ANALYZE of an EXPLAIN; ${UNSAFE}`);
      await check(duck, prepared.statementType, inner, 1);
    } finally {
      prepared.destroySync();
    }
  }
}

function stripLeadingComments(sql: string): string {
  let s = sql;
  for (;;) {
    const t = s.replace(/^\s+/, '');
    if (t.startsWith('--')) s = t.replace(/^--[^\n]*(\n|$)/, '');
    else if (t.startsWith('/*')) {
      const end = t.indexOf('*/');
      if (end < 0) return t;
      s = t.slice(end + 2);
    } else return t;
  }
}

/** DuckDB's refusals of a confined connection, in our words (undefined for any other error). */
function explainRefusal(message: string): string | undefined {
  const file = /Permission Error: Cannot access (file|directory) "([^"]*)"/.exec(message);
  if (file) {
    return file[1] === 'directory'
      ? `it opens directory ${file[2]}: ${UNSAFE} (a file to read goes in --with NAME=PATH)`
      : `it opens ${file[2]}, which is neither the lake nor a --with file: ${UNSAFE} (a file to read goes in --with NAME=PATH)`;
  }
  const setting = /Cannot change configuration option "([^"]+)" - the configuration has been locked/.exec(message);
  if (setting) return `it changes DuckDB's setting ${setting[1]}, and the settings are fixed (they keep files out): ${UNSAFE}`;
  if (/Permission Error/.test(message)) return `${message.replace(/^Permission Error: /, '')} (${UNSAFE})`;
  return undefined;
}

/** DuckDB's timestamp text ("2024-12-31 23:59:56.714016+00", or without offset: UTC) as ISO 8601 UTC with Z. */
export function isoTimestamp(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const m = /^(\d{4,}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}(?::?\d{2})?)?$/.exec(v);
  if (!m) return v;
  const offset = m[3];
  if (!offset || offset === 'Z' || /^[+-]00(:?00)?$/.test(offset)) return `${m[1]}T${m[2]}Z`;
  // Another session time zone: convert (to the millisecond the Date can hold, then the digits kept).
  const frac = /\.(\d+)/.exec(m[2])?.[1] ?? '';
  const d = new Date(`${m[1]}T${m[2].replace(/\.\d+/, '')}${offset.length === 3 ? offset + ':00' : offset}`);
  return Number.isNaN(d.getTime()) ? v : d.toISOString().replace(/\.\d{3}Z$/, frac ? `.${frac}Z` : 'Z');
}

function kindOf(type: string): ColumnKind {
  if (/^TIMESTAMP( WITH TIME ZONE)?$|^TIMESTAMP_(S|MS|NS)$/.test(type)) return 'time';
  if (/^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT)$/.test(type)) return 'int';
  if (/^DECIMAL/.test(type)) return 'money';
  return 'text';
}
