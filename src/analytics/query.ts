// Use case 3: DuckDB SQL over the lake (`invoices`, `customers`) and side sources.
import path from 'node:path';
import { UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { type DuckDBConnection, withDuckDb } from '../lake/duckdb.js';
import { readManifest } from '../lake/manifest.js';
import { registerLake } from '../lake/read.js';
import { registerSources, type SideSource } from './sources.js';

export type ColumnKind = 'int' | 'money' | 'text';

export interface QueryResult {
  columns: { name: string; type: string; kind: ColumnKind }[];
  /** Values in their exact JSON form: BIGINT and DECIMAL as strings, nested values as objects and arrays. */
  rows: Record<string, unknown>[];
  /** Whether the lake's views were there (false: no lake at that directory). */
  lake: boolean;
}

/** Opens DuckDB with the lake's views (when there is a lake) and the side sources, and runs fn. */
export async function withAnalytics<T>(lake: string, sources: SideSource[], log: Logger, fn: (duck: DuckDBConnection, hasLake: boolean) => Promise<T>): Promise<T> {
  return withDuckDb(async (duck) => {
    const manifest = readManifest(lake);
    if (manifest) {
      await registerLake(duck, lake, manifest);
      log.info(`lake: ${path.resolve(lake)}, exported ${manifest.exportedAt} (rows committed later are not in it: run \`invoices export\`)`);
    } else {
      log.info(`no lake at ${path.resolve(lake)}: views invoices and customers are not defined (run \`invoices export\`)`);
    }
    await registerSources(duck, sources);
    return fn(duck, Boolean(manifest));
  });
}

/** Runs one SQL statement and returns its rows. A SQL error is a usage error (exit 2) with DuckDB's first line. */
export async function runQuery(lake: string, sql: string, sources: SideSource[], log: Logger = silentLogger): Promise<QueryResult> {
  if (!sql.trim()) throw new UsageError('the query is empty');
  return withAnalytics(lake, sources, log, async (duck, hasLake) => {
    let reader;
    try {
      reader = await duck.runAndReadAll(sql);
    } catch (err) {
      const message = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      const hint = !hasLake && /Table with name (invoices|customers) does not exist/i.test(message) ? ' (there is no lake: run `invoices export`)' : '';
      throw new UsageError(`query failed: ${message}${hint}`, { cause: err });
    }
    const names = reader.columnNames();
    const types = reader.columnTypes().map((t) => t.toString());
    return {
      columns: names.map((name, i) => ({ name, type: types[i], kind: kindOf(types[i]) })),
      rows: reader.getRowObjectsJson() as Record<string, unknown>[],
      lake: hasLake,
    };
  });
}

function kindOf(type: string): ColumnKind {
  if (/^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT)$/.test(type)) return 'int';
  if (/^DECIMAL/.test(type)) return 'money';
  return 'text';
}
