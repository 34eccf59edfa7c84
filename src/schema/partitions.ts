// Monthly range partitions of `invoices` on issue_date (UTC): naming, planning, creating
// (moving rows out of the DEFAULT partition when it holds some), and checking.
import type { Client } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { UsageError } from '../errors.js';
import { detectLayout } from './apply.js';
import { quoteIdent } from '../tables.js';

export const PARENT = 'invoices';
export const DEFAULT_PARTITION = 'invoices_default';
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

export function partitionName(month: Month): string {
  return `${PARENT}_p${month.replace('-', '_')}`;
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
  const { rows } = await client.query<{ name: string; bound: string }>(
    `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = $1::regclass ORDER BY 1`,
    [parent],
  );
  return rows.map(({ name, bound }) => {
    if (bound === 'DEFAULT') return { name, isDefault: true };
    const m = /FROM \('([^']+)'\) TO \('([^']+)'\)/.exec(bound);
    return { name, isDefault: false, from: m ? pgTimestampToIso(m[1]) : undefined, to: m ? pgTimestampToIso(m[2]) : undefined };
  });
}

/** Rows in the DEFAULT partition, per month. */
export async function strandedRows(client: Client): Promise<Map<Month, number>> {
  const { rows } = await client.query<{ month: string; n: string }>(
    `SELECT to_char(date_trunc('month', issue_date AT TIME ZONE 'UTC'), 'YYYY-MM') AS month, count(*) AS n
       FROM ${DEFAULT_PARTITION} GROUP BY 1 ORDER BY 1`,
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
export async function assertPartitioned(client: Client): Promise<PartitionInfo[]> {
  const { layout } = await detectLayout(client);
  if (layout === 'missing') throw new UsageError('there is no invoices table: run `invoices init`');
  if (layout === 'plain') throw new UsageError('invoices is a plain (unpartitioned) table: convert it with `invoices partition --convert`');
  const parts = await listPartitions(client);
  if (!parts.some((p) => p.isDefault)) throw new UsageError(`invoices has no DEFAULT partition: create it with CREATE TABLE ${DEFAULT_PARTITION} PARTITION OF invoices DEFAULT`);
  return parts;
}

/**
 * Plans the partitions to create: the months whose rows sit in the DEFAULT partition and the
 * `extra` months (e.g. the months ahead), less those already covered by a partition.
 */
export async function planPartitions(client: Client, extra: Month[]): Promise<PartitionPlan[]> {
  const parts = await assertPartitioned(client);
  const stranded = await strandedRows(client);
  const covered = (month: Month) => {
    const { from, to } = monthBounds(month);
    return parts.some((p) => !p.isDefault && p.from !== undefined && p.to !== undefined && p.from < to && from < p.to);
  };
  const months = [...new Set([...stranded.keys(), ...extra])].sort();
  return months.filter((m) => !covered(m)).map((month) => planMonth(client, month, stranded.get(month) ?? 0));
}

function planMonth(client: Client, month: Month, moveRows: number): PartitionPlan {
  const name = partitionName(month);
  const { from, to } = monthBounds(month);
  const lo = client.escapeLiteral(from);
  const hi = client.escapeLiteral(to);
  const range = `issue_date >= ${lo} AND issue_date < ${hi}`;
  const statements = moveRows === 0
    ? [`CREATE TABLE ${name} PARTITION OF ${PARENT} FOR VALUES FROM (${lo}) TO (${hi})`]
    : [
        // PostgreSQL refuses to create a partition for rows the DEFAULT partition holds: move
        // them into a new table, attach it (the CHECK spares the validation scan), and restore
        // their invoice_ids rows (the DELETE's trigger removed them; the ids did not change).
        `LOCK TABLE ${DEFAULT_PARTITION} IN EXCLUSIVE MODE`,
        `CREATE TABLE ${name} (LIKE ${PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)`,
        `INSERT INTO ${name} SELECT * FROM ${DEFAULT_PARTITION} WHERE ${range}`,
        `DELETE FROM ${DEFAULT_PARTITION} WHERE ${range}`,
        `ALTER TABLE ${name} ADD CONSTRAINT ${name}_range CHECK (${range})`,
        `ALTER TABLE ${PARENT} ATTACH PARTITION ${name} FOR VALUES FROM (${lo}) TO (${hi})`,
        `ALTER TABLE ${name} DROP CONSTRAINT ${name}_range`,
        `INSERT INTO invoice_ids (invoice_id, issue_date) SELECT invoice_id, issue_date FROM ${name} ON CONFLICT (invoice_id) DO NOTHING`,
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
export async function checkPartitions(client: Client, ahead: Month[]): Promise<PartitionReport> {
  const parts = await assertPartitioned(client);
  const partitions: PartitionReport['partitions'] = [];
  for (const p of parts) {
    const { rows } = await client.query<{ rows: string; bytes: string }>(
      `SELECT (SELECT count(*) FROM ${quoteIdent(p.name)}) AS rows, pg_total_relation_size($1::regclass) AS bytes`,
      [quoteIdent(p.name)],
    );
    partitions.push({ name: p.name, from: p.from ?? null, to: p.to ?? null, rows: Number(rows[0].rows), bytes: Number(rows[0].bytes) });
  }
  const missingAhead = ahead.filter((m) => {
    const { from, to } = monthBounds(m);
    return !parts.some((p) => p.from !== undefined && p.to !== undefined && p.from <= from && to <= p.to);
  });
  const stranded = [...(await strandedRows(client))].map(([month, rows]) => ({ month, rows }));
  return { partitions, missingAhead, stranded };
}
