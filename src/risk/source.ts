// SQL fragments that read invoices for the scorer from the described table (src/table/). An
// adopted `timestamp without time zone` issue date is read as UTC (the session runs in UTC)
// and compared in its own type, so that its indexes serve the range conditions.
import type { InvoiceColumn } from '../tables.js';
import type { SourceTable } from '../table/describe.js';
import type { Invoice } from './model.js';

/** An invoice as the scorer carries it: the model's fields, the watermark key and the exact issue time. */
export interface SourceInvoice extends Invoice {
  xid: string;
  /** The issue date as an ISO UTC string, microseconds kept: bound back into queries. */
  at: string;
  /** Read after a rewind: the row has its score (or dead letter) already. */
  covered?: boolean;
}

/** The select list that reads a SourceInvoice from alias `i`. */
export function invoiceSelect(s: SourceTable, alias = 'i'): string {
  const c = (k: InvoiceColumn) => `${alias}.${s.col[k]}`;
  return `${c('invoice_id')}::text AS id, ${alias}.created_xid::text AS xid, ${c('issue_date')} AS at,
          (extract(epoch FROM ${c('issue_date')}) * 1000)::float8 AS t,
          ${c('issuer_id')}::text AS issuer, ${c('receiver_id')}::text AS receiver, ${c('amount')}::text AS amount`;
}

/** A bound ISO time ($n) as the issue date column's type. */
export function asDate(s: SourceTable, param: string): string {
  return `CAST(CAST(${param} AS timestamptz) AS ${s.dateType})`;
}

/** Rows of invoiceSelect to SourceInvoice (t arrives as a float8: a JS number). */
export function toInvoice(r: Record<string, unknown>): SourceInvoice {
  return {
    id: r.id as string,
    xid: r.xid as string,
    at: r.at as string,
    t: Number(r.t),
    issuer: r.issuer as string,
    receiver: r.receiver as string,
    amount: r.amount as string,
    ...(r.covered ? { covered: true } : {}),
  };
}
