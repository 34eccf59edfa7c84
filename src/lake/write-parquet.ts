// One Parquet file of an export: a PostgreSQL statement streamed into DuckDB (through
// node-postgres or psql, copy-stream.ts), written to the staging folder, then read back for its
// row count and sum.
import { rmSync } from 'node:fs';
import type { Client } from '../db/client.js';
import { copyIntoDuckDb, type CopyFormat } from './copy-stream.js';
import { type DuckDBConnection, queryRows, sqlString } from './duckdb.js';
import { psqlCopyToFifo } from './psql-source.js';

export interface WriteSpec {
  select: string;
  columns: Record<string, string>;
  /** The Parquet file to write, in the staging folder (the commit renames it into place). */
  file: string;
  fifo: string;
  cleanFifo?: boolean;
  sumColumn?: string;
  signal?: AbortSignal;
  /** Text for the invoices (numbers and timestamps only: cheaper for PostgreSQL to write), csv otherwise. */
  format?: CopyFormat;
  /** Read with psql in this snapshot rather than through node-postgres. */
  psql?: { conn: { args: string[]; env: Record<string, string> }; snapshot: string };
}

/** Writes `select` as the Parquet file spec.file; returns the row count and sum read back from the file. */
export async function writeParquet(client: Client, duck: DuckDBConnection, spec: WriteSpec): Promise<{ rows: number; sum: string }> {
  const file = spec.file;
  rmSync(file, { force: true });
  try {
    const statement = (source: string) => `COPY (SELECT * FROM ${source}) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION snappy)`;
    const psql = spec.psql;
    await copyIntoDuckDb(client, duck, spec.select, spec.columns, spec.fifo, statement, {
      signal: spec.signal,
      format: spec.format,
      source: psql ? (fifo) => psqlCopyToFifo(psql.conn, psql.snapshot, spec.select, fifo, spec.format ?? 'csv', spec.signal) : undefined,
    });
    const sum = spec.sumColumn ? `CAST(coalesce(sum(${spec.sumColumn}), 0) AS VARCHAR)` : "'0'";
    const [r] = await queryRows(duck, `SELECT count(*)::VARCHAR AS n, ${sum} AS s FROM read_parquet(${sqlString(file)})`);
    return { rows: Number(r.n), sum: String(r.s) };
  } finally {
    if (spec.cleanFifo) rmSync(spec.fifo, { force: true });
  }
}
