// The one gateway to DuckDB: an in-memory instance in UTC, and the quoting helpers for what
// cannot be bound as a parameter (file paths in table functions, view names). Loaded lazily by
// the commands that need it, so `invoices get` never pays for the native module.
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { UsageError } from '../errors.js';

export type { DuckDBConnection };

/** Where DuckDB spills when a query outgrows memory: the system's temp folder, never the working directory (its default, ./.tmp). */
const SPILL = { temp_directory: path.join(os.tmpdir(), `invoices-duckdb-${process.pid}`) };

/** An in-memory DuckDB connection in UTC; the caller closes it with closeDuckDb. */
export async function openDuckDb(opts: { threads?: number; memoryLimit?: string } = {}): Promise<DuckDBConnection> {
  const instance = await DuckDBInstance.create(':memory:', {
    ...SPILL,
    ...(opts.threads ? { threads: String(opts.threads) } : {}),
    ...(opts.memoryLimit ? { memory_limit: opts.memoryLimit } : {}),
  });
  const conn = await instance.connect();
  await conn.run("SET TimeZone = 'UTC'");
  return conn;
}

/** Runs fn with `n` connections to one fresh in-memory DuckDB (statements on different connections run in parallel). */
export async function withDuckDbConnections<T>(n: number, fn: (conns: DuckDBConnection[]) => Promise<T>): Promise<T> {
  const instance = await DuckDBInstance.create(':memory:', SPILL);
  const conns: DuckDBConnection[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const c = await instance.connect();
      await c.run("SET TimeZone = 'UTC'");
      conns.push(c);
    }
    return await fn(conns);
  } finally {
    for (const c of conns) c.closeSync();
  }
}

/** Runs fn with a fresh DuckDB connection and always closes it. */
export async function withDuckDb<T>(
  fn: (conn: DuckDBConnection) => Promise<T>,
  opts: { threads?: number; memoryLimit?: string } = {},
): Promise<T> {
  const conn = await openDuckDb(opts);
  try {
    return await fn(conn);
  } finally {
    conn.closeSync();
  }
}

/** A DuckDB string literal: single quotes doubled. The only way paths reach SQL text. */
export function sqlString(value: string): string {
  if (value.includes('\0')) throw new UsageError('a path or string may not contain a NUL byte');
  return `'${value.replace(/'/g, "''")}'`;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** A validated, double-quoted identifier (view and column names given by the user). */
export function sqlIdentifier(name: string, what = 'name'): string {
  if (!IDENTIFIER.test(name))
    throw new UsageError(`${what} "${name}" is not a valid identifier (letters, digits and _, not starting with a digit)`);
  return `"${name}"`;
}

/** Rows as plain objects with every value in its exact JSON form: BIGINT and DECIMAL as strings. */
export async function queryRows(
  conn: DuckDBConnection,
  sql: string,
  params?: Record<string, string | number | boolean | null> | (string | number | boolean | null)[],
): Promise<Record<string, unknown>[]> {
  const reader = await conn.runAndReadAll(sql, params as never);
  return reader.getRowObjectsJson() as Record<string, unknown>[];
}
