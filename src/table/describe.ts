// The one description of the invoices table that every derived store reads: this tool's own
// table or an adopted one (config file mapping), its layout, its columns as the catalog has
// them, whether it carries the watermark (created_xid) and the change log, and the key that
// scopes what is derived from it (monthly totals, the lake, risk scores).
import { createHash } from 'node:crypto';
import { relationInfo } from '../db/catalog.js';
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import { DEFAULT_TABLES, INVOICE_COLUMNS, qualified, quoteIdent, type InvoiceColumn, type TableMap, type TableRef } from '../tables.js';

export interface SourceTable {
  tables: TableMap;
  /** schema.table as the user wrote it, for messages. */
  name: string;
  /** The table, quoted and schema-qualified. */
  table: string;
  /** Our column name -> the table's, quoted. */
  col: Record<InvoiceColumn, string>;
  layout: 'partitioned' | 'plain';
  /** The table has created_xid (xid8): rows after a watermark can be found. */
  createdXid: boolean;
  /** The change log trigger is installed: updates and deletes are recorded as they commit. */
  tracked: boolean;
  /** created_xid and the change log: totals and the lake can be refreshed incrementally. */
  incremental: boolean;
  /** The amount's precision and scale (numeric only: exact answers need it). */
  amount: { precision: number; scale: number };
  /** The issue date column's type: bound times are cast to it, so its indexes serve. */
  dateType: 'timestamptz' | 'timestamp';
  /** The table with our column names (and created_xid when present), usable after FROM. */
  relation: string;
  /** What derived data is scoped by: the table and its column mapping, as readable text. */
  key: string;
  /** A stable 64-bit number for `key` (a bigint column in derived tables). */
  id: string;
}

/** The key of a table mapping: the same table under another mapping is another source. */
export function sourceKey(tables: TableMap): string {
  const ref = tables.invoices;
  return `${ref.schema}.${ref.table} ${JSON.stringify(INVOICE_COLUMNS.map((c) => ref.columns[c]))}`;
}

/** A signed 64-bit id for a source key (sha-256's first 8 bytes): derived tables store it per row. */
export function sourceId(key: string): string {
  return createHash('sha256').update(key).digest().readBigInt64BE(0).toString();
}

/** The change log beside a table: invoice_changes beside this tool's `invoices`, `<table>_changes` beside an adopted one. */
export function changesTable(ref: TableRef<string>): string {
  return ref.table === 'invoices' ? 'invoice_changes' : `${ref.table}_changes`;
}

/** The advice when a table cannot be followed incrementally. */
export function untrackedAdvice(source: SourceTable): string {
  const missing = !source.createdXid
    ? 'no created_xid column (the transaction-id watermark)'
    : 'no change log (the trigger that records updates and deletes)';
  return `${source.name} has ${missing}: run \`invoices ${source.tables.mapped ? 'risk init' : 'init'}\` to add it`;
}

/** `relation` of one table (or a leaf of it) with our column names aliased onto the table's. */
function relationOf(ref: TableRef<string>, columns: readonly string[], table = ref.table): string {
  const from = `${quoteIdent(ref.schema)}.${quoteIdent(table)}`;
  if (columns.every((c) => (ref.columns[c] ?? c) === c)) return from;
  return `(SELECT ${columns.map((c) => ((ref.columns[c] ?? c) === c ? quoteIdent(c) : `${quoteIdent(ref.columns[c])} AS ${quoteIdent(c)}`)).join(', ')} FROM ${from}) ${quoteIdent(table)}`;
}

/** One leaf (partition) of the table with our column names. */
export function leafRelation(source: SourceTable, leaf: string): string {
  return relationOf(source.tables.invoices, [...INVOICE_COLUMNS, ...(source.createdXid ? ['created_xid'] : [])], leaf);
}

/**
 * Reads the mapped invoices table from the catalog in one round trip: a usage error when it
 * or a mapped column is missing, or when the amount is not numeric.
 */
export async function describeTable(client: Client, tables: TableMap = DEFAULT_TABLES): Promise<SourceTable> {
  const ref = tables.invoices;
  const name = `${ref.schema}.${ref.table}`;
  const rel = await relationInfo(client, qualified(ref), `${changesTable(ref)}_track`);
  if (!rel || !rel.columns.length) {
    throw new UsageError(
      tables.mapped
        ? `there is no table ${name} (the invoices table of the config file's mapping)`
        : 'there is no invoices table: run `invoices init`',
    );
  }
  const { kind, columns } = rel;
  const byName = new Map(columns.map((c) => [c.name, c]));
  for (const c of INVOICE_COLUMNS) {
    if (!byName.has(ref.columns[c]))
      throw new UsageError(`${name} has no column "${ref.columns[c]}" (${c} in the mapping): fix the config file's "invoices".columns`);
  }
  const amount = byName.get(ref.columns.amount)!;
  if (amount.base !== 'numeric')
    throw new UsageError(`${name}.${ref.columns.amount} is ${amount.type}, not numeric: exact sums need numeric`);
  const createdXid = byName.get('created_xid')?.base === 'xid8';
  const tracked = rel.hasTrigger;
  const key = sourceKey(tables);
  return {
    tables,
    name,
    table: qualified(ref),
    col: Object.fromEntries(INVOICE_COLUMNS.map((c) => [c, quoteIdent(ref.columns[c])])) as Record<InvoiceColumn, string>,
    layout: kind === 'p' ? 'partitioned' : 'plain',
    createdXid,
    tracked,
    incremental: createdXid && tracked,
    // Unconstrained numeric: DuckDB's widest exact decimal with cents; verify catches anything finer.
    amount: { precision: Math.min(amount.precision ?? 38, 38), scale: amount.scale ?? 2 },
    dateType: byName.get(ref.columns.issue_date)!.type === 'timestamp without time zone' ? 'timestamp' : 'timestamptz',
    relation: relationOf(ref, [...INVOICE_COLUMNS, ...(createdXid ? ['created_xid'] : [])]),
    key,
    id: sourceId(key),
  };
}
