// The change log of an invoices table (sql/changes.sql): its DDL for one table, and the months
// it recorded since a watermark.
import type { Client } from '../db/client.js';
import { sqlFile } from '../schema/sql-file.js';
import type { Month } from '../schema/partitions.js';
import { quoteIdent } from '../tables.js';
import { changesTable, type SourceTable } from './describe.js';
import { xidLiteral } from './watermark.js';

/** sql/changes.sql for a table: the log, its trigger function and the trigger, named after the table. */
export function changesSql(source: SourceTable): string {
  const { schema, table } = source.tables.invoices;
  const log = changesTable(source.tables.invoices);
  const rel = (n: string) => `${quoteIdent(schema)}.${quoteIdent(n)}`;
  const month = (row: string) =>
    source.dateType === 'timestamp'
      ? `date_trunc('month', ${row}.${source.col.issue_date})::date`
      : `date_trunc('month', ${row}.${source.col.issue_date} AT TIME ZONE 'UTC')::date`;
  const vars: Record<string, string> = {
    changes: rel(log),
    changes_pkey: quoteIdent(`${log}_pkey`),
    track: rel(`${log}_track`),
    track_trigger: quoteIdent(`${log}_track`),
    parent: rel(table),
    id: source.col.invoice_id,
    date: source.col.issue_date,
    issuer: source.col.issuer_id,
    receiver: source.col.receiver_id,
    amount: source.col.amount,
    old_month: month('OLD'),
    new_month: month('NEW'),
  };
  return sqlFile('changes.sql').replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m);
}

/** Months of rows updated or deleted by transactions at or after `since` that this snapshot sees committed. */
export async function changeLogMonths(client: Client, source: SourceTable, since: string): Promise<Month[]> {
  const log = `${quoteIdent(source.tables.invoices.schema)}.${quoteIdent(changesTable(source.tables.invoices))}`;
  const { rows } = await client.query<{ m: string }>(
    `SELECT DISTINCT to_char(month, 'YYYY-MM') AS m FROM ${log} WHERE xid >= ${xidLiteral(since)} ORDER BY 1`,
  );
  return rows.map((r) => r.m);
}
