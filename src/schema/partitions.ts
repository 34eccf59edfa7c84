// Monthly range partitions of `invoices` on issue_date (UTC): naming, planning, creating
// (moving rows out of the DEFAULT partition when it holds some), and checking. Follows a table
// mapping: an adopted table's partitions are named after it, in its schema, on its own columns.
import { partitionsOf, relationSizes } from '../db/catalog.js';
import type { Client } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { UsageError } from '../errors.js';
import { detectLayout, locatorName } from './apply.js';
import { DEFAULT_TABLES, qualified, quoteIdent, type InvoiceColumn, type TableMap } from '../tables.js';

export const PARENT = 'invoices';
/** Months ahead of the current one that `invoices partition` (and `seed`) create by default. */
export const DEFAULT_AHEAD = 3;

/** A calendar month, UTC: 'YYYY-MM'. */
export type Month = string;

export interface PartitionInfo {
  name: string;
  /** Bounds as ISO timestamps; undefined for the DEFAULT partition. */
  from?: string;
  to?: string;
  isDefault: boolean;
}

export function monthOf(d: Date): Month {
  return d.toISOString().slice(0, 7);
}

export function addMonths(month: Month, n: number): Month {
  const [y, m] = month.split('-').map(Number);
  return monthOf(new Date(Date.UTC(y, m - 1 + n, 1)));
}

/** [first instant, first instant of the next month) as ISO strings. */
export function monthBounds(month: Month): { from: string; to: string } {
  return { from: `${month}-01T00:00:00.000Z`, to: `${addMonths(month, 1)}-01T00:00:00.000Z` };
}

/** The partition of one month: `<table>_pYYYY_MM`. */
export function partitionName(month: Month, table: string = PARENT): string {
  return `${table}_p${month.replace('-', '_')}`;
}

/** The DEFAULT partition: `<table>_default`. */
export function defaultPartitionName(table: string = PARENT): string {
  return `${table}_default`;
}

/**
 * How SQL names the invoices table's relations and columns: bare for this tool's own tables
 * (their statements read as before), schema-qualified and quoted for a mapped one.
 */
export function invoiceSql(tables: TableMap = DEFAULT_TABLES) {
  const { schema, table, columns } = tables.invoices;
  const rel = (name: string) => (tables.mapped ? `${quoteIdent(schema)}.${quoteIdent(name)}` : name);
  return {
    parent: tables.mapped ? qualified(tables.invoices) : PARENT,
    defaultPartition: defaultPartitionName(table),
    locator: tables.mapped ? locatorName(tables) : 'invoice_ids',
    partitionName: (month: Month) => partitionName(month, table),
    rel,
    col: (c: InvoiceColumn) => (tables.mapped ? quoteIdent(columns[c]) : c),
  };
}

/** Months from `first` to `last` inclusive. */
export function monthRange(first: Month, last: Month): Month[] {
  const out: Month[] = [];
  for (let m = first; m <= last; m = addMonths(m, 1)) out.push(m);
  return out;
}

/**
 * PostgreSQL's text for a timestamptz ("2024-01-01 00:00:00+00"), a timestamp without time zone
 * (read as UTC) or a date, as an ISO string in UTC.
 */
export function pgTimestampToIso(text: string): string {
  let t = text.trim().replace(' ', 'T');
  if (t.includes('T')) {
    if (/T.*[+-]\d\d$/.test(t)) t += ':00';
    else if (!/(Z|[+-]\d\d:\d\d)$/.test(t)) t += 'Z';
  }
  return new Date(t).toISOString();
}

/** The partitions of invoices with their bounds. */
export async function listPartitions(client: Client, parent: string = PARENT): Promise<PartitionInfo[]> {
  return (await partitionsOf(client, parent)).map(({ name, bound }) => {
    if (bound === 'DEFAULT') return { name, isDefault: true };
    const m = /FROM \('([^']+)'\) TO \('([^']+)'\)/.exec(bound);
    return { name, isDefault: false, from: m ? pgTimestampToIso(m[1]) : undefined, to: m ? pgTimestampToIso(m[2]) : undefined };
  });
}

/** Rows in the DEFAULT partition, per month. */
export async function strandedRows(client: Client, tables: TableMap = DEFAULT_TABLES): Promise<Map<Month, number>> {
  const n = invoiceSql(tables);
  // The session's TimeZone is UTC: a timestamp without time zone is read as UTC either way.
  const { rows } = await client.query<{ month: string; n: string }>(
    `SELECT to_char(date_trunc('month', ${n.col('issue_date')} AT TIME ZONE 'UTC'), 'YYYY-MM') AS month, count(*) AS n
       FROM ${n.rel(n.defaultPartition)} GROUP BY 1 ORDER BY 1`,
  );
  return new Map(rows.map((r) => [r.month, Number(r.n)]));
}

export interface PartitionPlan {
  month: Month;
  name: string;
  /** Rows of that month now in the DEFAULT partition, to move into the new partition. */
  moveRows: number;
  statements: string[];
}

/** Asserts invoices is partitioned and has its DEFAULT partition. */
export async function assertPartitioned(client: Client, tables: TableMap = DEFAULT_TABLES): Promise<PartitionInfo[]> {
  const { layout } = await detectLayout(client, tables);
  const n = invoiceSql(tables);
  const name = tables.mapped ? `${tables.invoices.schema}.${tables.invoices.table}` : PARENT;
  if (layout === 'missing')
    throw new UsageError(
      tables.mapped ? `there is no table ${name}: create it, or fix the table mapping` : 'there is no invoices table: run `invoices init`',
    );
  if (layout === 'plain')
    throw new UsageError(`${name} is a plain (unpartitioned) table: convert it with \`invoices partition --convert\``);
  const parts = await listPartitions(client, qualified(tables.invoices));
  if (!parts.some((p) => p.isDefault))
    throw new UsageError(
      `${name} has no DEFAULT partition: create it with CREATE TABLE ${n.rel(n.defaultPartition)} PARTITION OF ${n.parent} DEFAULT`,
    );
  return parts;
}

/**
 * Plans the partitions to create: the months whose rows sit in the DEFAULT partition and the
 * `extra` months (e.g. the months ahead), less those already covered by a partition.
 */
export async function planPartitions(client: Client, extra: Month[], tables: TableMap = DEFAULT_TABLES): Promise<PartitionPlan[]> {
  const parts = await assertPartitioned(client, tables);
  const stranded = await strandedRows(client, tables);
  const covered = (month: Month) => {
    const { from, to } = monthBounds(month);
    return parts.some((p) => !p.isDefault && p.from !== undefined && p.to !== undefined && p.from < to && from < p.to);
  };
  const months = [...new Set([...stranded.keys(), ...extra])].sort();
  return months.filter((m) => !covered(m)).map((month) => planMonth(client, tables, month, stranded.get(month) ?? 0));
}

function planMonth(client: Client, tables: TableMap, month: Month, moveRows: number): PartitionPlan {
  const n = invoiceSql(tables);
  const name = n.partitionName(month);
  const part = n.rel(name);
  const def = n.rel(n.defaultPartition);
  const { from, to } = monthBounds(month);
  const lo = client.escapeLiteral(from);
  const hi = client.escapeLiteral(to);
  // An ISO literal with Z: UTC for a timestamptz, its UTC wall-clock time for a timestamp (the zone is ignored).
  const range = `${n.col('issue_date')} >= ${lo} AND ${n.col('issue_date')} < ${hi}`;
  const check = tables.mapped ? quoteIdent(`${name}_range`) : `${name}_range`;
  const statements =
    moveRows === 0
      ? [`CREATE TABLE ${part} PARTITION OF ${n.parent} FOR VALUES FROM (${lo}) TO (${hi})`]
      : [
          // PostgreSQL refuses to create a partition for rows the DEFAULT partition holds: move
          // them into a new table, attach it (the CHECK spares the validation scan), and restore
          // their invoice_ids rows (the DELETE's trigger removed them; the ids did not change).
          `LOCK TABLE ${def} IN EXCLUSIVE MODE`,
          `CREATE TABLE ${part} (LIKE ${n.parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)`,
          `INSERT INTO ${part} SELECT * FROM ${def} WHERE ${range}`,
          `DELETE FROM ${def} WHERE ${range}`,
          `ALTER TABLE ${part} ADD CONSTRAINT ${check} CHECK (${range})`,
          `ALTER TABLE ${n.parent} ATTACH PARTITION ${part} FOR VALUES FROM (${lo}) TO (${hi})`,
          `ALTER TABLE ${part} DROP CONSTRAINT ${check}`,
          `INSERT INTO ${n.locator} (invoice_id, issue_date) SELECT ${n.col('invoice_id')}, ${n.col('issue_date')} FROM ${part} ON CONFLICT (invoice_id) DO NOTHING`,
        ];
  return { month, name, moveRows, statements };
}

/** Creates one planned partition in its own transaction. */
export async function createPartition(client: Client, plan: PartitionPlan): Promise<void> {
  await transaction(client, async () => {
    for (const sql of plan.statements) await client.query(sql);
  });
}

export interface PartitionReport {
  partitions: Array<{ name: string; from: string | null; to: string | null; rows: number; bytes: number }>;
  missingAhead: Month[];
  stranded: Array<{ month: Month; rows: number }>;
}

/** Rows and size of every partition, months ahead without a partition, rows in DEFAULT. */
export async function checkPartitions(client: Client, ahead: Month[], tables: TableMap = DEFAULT_TABLES): Promise<PartitionReport> {
  const parts = await assertPartitioned(client, tables);
  const partitions: PartitionReport['partitions'] = [];
  const rel = (p: PartitionInfo) => `${quoteIdent(tables.invoices.schema)}.${quoteIdent(p.name)}`;
  const sizes = await relationSizes(client, parts.map(rel));
  for (const [i, p] of parts.entries()) {
    const { rows } = await client.query<{ rows: string }>(`SELECT count(*) AS rows FROM ${rel(p)}`);
    partitions.push({ name: p.name, from: p.from ?? null, to: p.to ?? null, rows: Number(rows[0].rows), bytes: sizes[i] });
  }
  const missingAhead = ahead.filter((m) => {
    const { from, to } = monthBounds(m);
    return !parts.some((p) => p.from !== undefined && p.to !== undefined && p.from <= from && to <= p.to);
  });
  const stranded = [...(await strandedRows(client, tables))].map(([month, rows]) => ({ month, rows }));
  return { partitions, missingAhead, stranded };
}
