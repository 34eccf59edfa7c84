// What the lake reads from PostgreSQL: the xid horizon, per-month statistics, change counters,
// the amount column's type, and the index on created_xid that keeps the "not yet exported" delta cheap.
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import { detectLayout } from '../schema/apply.js';
import { listPartitions, PARENT } from '../schema/partitions.js';

export interface MonthStats {
  rows: number;
  sum: string;
  /** Rows inserted at or after the previous watermark. */
  fresh: number;
}

const XID = /^\d{1,20}$/;

/** An xid8 as SQL text: only digits ever reach the statement. */
export function xidLiteral(xid: string): string {
  if (!XID.test(xid)) throw new UsageError(`"${xid}" is not a transaction id`);
  return `'${xid}'::xid8`;
}

/** A timestamptz literal for a validated month bound. */
export function timeLiteral(iso: string): string {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(iso)) throw new UsageError(`bad timestamp ${iso}`);
  return `'${iso}'::timestamptz`;
}

/**
 * The export horizon: every transaction with an id below it has ended, so no row below it can
 * still appear. Refuses a table whose ids come from another cluster (a pg_dump restore).
 */
export async function xidHorizon(client: Client): Promise<{ horizon: string; xmax: string }> {
  const { rows: [r] } = await client.query<{ horizon: string; xmax: string }>(
    'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax',
  );
  return r;
}

/** The precision and scale of invoices.amount (numeric(14,2) in our schema; an adopted table may differ). */
export async function amountType(client: Client): Promise<{ precision: number; scale: number }> {
  const { rows } = await client.query<{ p: number | null; s: number | null; t: string }>(
    `SELECT numeric_precision AS p, numeric_scale AS s, data_type AS t FROM information_schema.columns
      WHERE table_schema = current_schema() AND table_name = 'invoices' AND column_name = 'amount'`,
  );
  if (!rows.length) throw new UsageError('invoices has no amount column: run `invoices init`');
  const { p, s, t } = rows[0];
  if (t !== 'numeric') throw new UsageError(`invoices.amount is ${t}, not numeric: an exact export needs numeric`);
  // Unconstrained numeric: DuckDB's widest exact decimal with cents; verify catches anything finer.
  return { precision: Math.min(p ?? 38, 38), scale: s ?? 2 };
}

/** Per month (UTC) of the rows below the horizon: count, sum(amount) and rows at or after `since`. */
export async function monthStats(client: Client, horizon: string, since?: string, range?: { from: string; to: string }): Promise<Map<string, MonthStats>> {
  const fresh = since ? `count(*) FILTER (WHERE created_xid >= ${xidLiteral(since)})` : '0';
  const where = range ? ` AND issue_date >= ${timeLiteral(range.from)} AND issue_date < ${timeLiteral(range.to)}` : '';
  // Group on date_trunc and format the few group keys afterwards: to_char on every row costs a third more.
  const { rows } = await client.query<{ month: string; n: string; s: string; f: string }>(
    `SELECT to_char(m, 'YYYY-MM') AS month, n::text AS n, s::text AS s, f::text AS f FROM (
       SELECT date_trunc('month', issue_date AT TIME ZONE 'UTC') AS m, count(*) AS n, sum(amount) AS s, ${fresh} AS f
         FROM ${PARENT} WHERE created_xid < ${xidLiteral(horizon)}${where} GROUP BY 1) g ORDER BY 1`,
  );
  return new Map(rows.map((r) => [r.month, { rows: Number(r.n), sum: r.s, fresh: Number(r.f) }]));
}

/** The leaf tables of invoices (partitions, or the table itself). */
export async function leafTables(client: Client): Promise<string[]> {
  const { layout } = await detectLayout(client);
  if (layout === 'missing') throw new UsageError('there is no invoices table: run `invoices init`');
  return layout === 'plain' ? [PARENT] : (await listPartitions(client)).map((p) => p.name);
}

/**
 * Cumulative updates+deletes per leaf table of invoices, and inserts+updates+deletes of customers
 * (pg_stat_user_tables). Inserts into invoices need no counter: created_xid finds them exactly.
 * Not transactional and flushed by backends within about a second: a hint that something changed.
 */
export async function changeCounters(client: Client): Promise<Record<string, string>> {
  const { rows } = await client.query<{ name: string; n: string }>(
    `SELECT relname AS name,
            (CASE WHEN relname = 'customers' THEN n_tup_ins ELSE 0 END + n_tup_upd + n_tup_del)::text AS n
       FROM pg_stat_user_tables
      WHERE schemaname = current_schema() AND (relname IN ($1, 'customers') OR relname LIKE $1 || '\\_%')`,
    [PARENT],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.n]));
}

/** The leaf tables whose counter moved (or vanished, or went back: a stats reset) since `before`. */
export function movedCounters(before: Record<string, string>, now: Record<string, string>): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(now)]);
  return [...names].filter((n) => {
    if (!(n in before)) return Number(now[n]) > 0;
    return now[n] !== before[n];
  }).sort();
}

export const XID_INDEX = 'invoices_created_xid_idx';

/**
 * An index on created_xid, so that "rows after the watermark" is an index range scan, not a
 * scan of the table. Built without blocking writers (CONCURRENTLY, per partition on a
 * partitioned table); a no-op when it exists. Returns whether it built anything.
 */
export async function ensureXidIndex(client: Client): Promise<boolean> {
  const { layout } = await detectLayout(client);
  const { rows } = await client.query<{ name: string; valid: boolean; table: string }>(
    `SELECT c.relname AS name, i.indisvalid AS valid, t.relname AS "table"
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
      WHERE t.relnamespace = current_schema()::regnamespace AND c.relname LIKE '%created_xid_idx'`,
  );
  const existing = new Map(rows.map((r) => [r.name, r]));
  if (existing.get(XID_INDEX)?.valid) return false;
  if (layout === 'plain') {
    if (existing.has(XID_INDEX)) await client.query(`DROP INDEX CONCURRENTLY ${XID_INDEX}`);
    await client.query(`CREATE INDEX CONCURRENTLY ${XID_INDEX} ON ${PARENT} (created_xid)`);
    return true;
  }
  if (!existing.has(XID_INDEX)) await client.query(`CREATE INDEX ${XID_INDEX} ON ONLY ${PARENT} (created_xid)`);
  for (const part of (await listPartitions(client)).map((p) => p.name)) {
    const child = `${part}_created_xid_idx`;
    const found = existing.get(child);
    if (found && !found.valid) await client.query(`DROP INDEX CONCURRENTLY ${child}`);
    if (!found?.valid) await client.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${child} ON ${part} (created_xid)`);
    // Attaching an index that is already attached fails: check first.
    const { rows: att } = await client.query(
      `SELECT 1 FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_class p ON p.oid = h.inhparent WHERE c.relname = $1 AND p.relname = $2`,
      [child, XID_INDEX],
    );
    if (!att.length) await client.query(`ALTER INDEX ${XID_INDEX} ATTACH PARTITION ${child}`);
  }
  return true;
}
