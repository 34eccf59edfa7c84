// The invoices table as the scorer reads it: this tool's own or an adopted one (table
// mapping), with SQL fragments naming its columns. An adopted `timestamp without time zone`
// issue date is read as UTC (the session runs in UTC) and compared in its own type, so that
// its indexes serve the range conditions.
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import { qualified, quoteIdent, type InvoiceColumn, type TableMap } from '../tables.js';
import type { Invoice } from './model.js';

export interface RiskSource {
  tables: TableMap;
  /** The invoices table, quoted and schema-qualified. */
  table: string;
  /** Our column name -> the table's, quoted. */
  col: Record<InvoiceColumn, string>;
  /** The issue date column's type: a bound ISO time is cast to it. */
  dateType: 'timestamptz' | 'timestamp';
  /** created_xid is there (`invoices risk init` adds it to an adopted table). */
  hasXid: boolean;
}

/** An invoice as the scorer carries it: the model's fields, the watermark key and the exact issue time. */
export interface SourceInvoice extends Invoice {
  xid: string;
  /** The issue date as an ISO UTC string, microseconds kept: bound back into queries. */
  at: string;
}

/** Looks the invoices table up; a usage error when it is missing. */
export async function riskSource(client: Client, tables: TableMap): Promise<RiskSource> {
  const ref = tables.invoices;
  const { rows } = await client.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
    [qualified(ref)],
  );
  if (!rows.length) throw new UsageError(`there is no table ${ref.schema}.${ref.table}: run \`invoices init\`, or fix the table mapping`);
  const types = new Map(rows.map((r) => [r.name, r.type]));
  for (const [ours, theirs] of Object.entries(ref.columns)) {
    if (!types.has(theirs)) throw new UsageError(`${ref.schema}.${ref.table} has no column "${theirs}" (mapped from ${ours}): fix the table mapping`);
  }
  const col = Object.fromEntries(Object.entries(ref.columns).map(([k, v]) => [k, quoteIdent(v)])) as Record<InvoiceColumn, string>;
  return {
    tables,
    table: qualified(ref),
    col,
    dateType: types.get(ref.columns.issue_date) === 'timestamp without time zone' ? 'timestamp' : 'timestamptz',
    hasXid: types.get('created_xid') === 'xid8',
  };
}

/** The select list that reads a SourceInvoice from alias `i`. */
export function invoiceSelect(s: RiskSource, alias = 'i'): string {
  const c = (k: InvoiceColumn) => `${alias}.${s.col[k]}`;
  return `${c('invoice_id')}::text AS id, ${alias}.created_xid::text AS xid, ${c('issue_date')} AS at,
          (extract(epoch FROM ${c('issue_date')}) * 1000)::float8 AS t,
          ${c('issuer_id')}::text AS issuer, ${c('receiver_id')}::text AS receiver, ${c('amount')}::text AS amount`;
}

/** A bound ISO time ($n) as the issue date column's type. */
export function asDate(s: RiskSource, param: string): string {
  return `CAST(CAST(${param} AS timestamptz) AS ${s.dateType})`;
}

/** Rows of invoiceSelect to SourceInvoice (t arrives as a float8: a JS number). */
export function toInvoice(r: Record<string, unknown>): SourceInvoice {
  return { id: r.id as string, xid: r.xid as string, at: r.at as string, t: Number(r.t), issuer: r.issuer as string, receiver: r.receiver as string, amount: r.amount as string };
}
