// What the lake and the analytics read from PostgreSQL: the invoices table as the config file maps
// it (our column names whatever the table's), the xid horizon, per-month statistics, change
// counters per leaf table, and the index on created_xid that keeps "rows after a watermark" cheap.
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import { detectLayout } from '../schema/apply.js';
import { CREATED_XID_INDEX, planIndexes } from '../schema/indexes.js';
import { listPartitions, monthBounds, type Month } from '../schema/partitions.js';
import { CUSTOMER_COLUMNS, DEFAULT_TABLES, INVOICE_COLUMNS, qualified, quoteIdent, type TableMap, type TableRef } from '../tables.js';

export interface MonthStats {
  rows: number;
  sum: string;
  /** Rows inserted at or after the previous watermark. */
  fresh: number;
}

/** The invoices table as this tool reads it, resolved once per connection. */
export interface Source {
  tables: TableMap;
  layout: 'partitioned' | 'plain';
  /** The table has created_xid (xid8), the watermark of incremental export and totals. */
  createdXid: boolean;
  /** invoices with our column names (and created_xid when present), usable after FROM. */
  relation: string;
  amount: { precision: number; scale: number };
  /** schema.table as the user wrote it, for messages. */
  name: string;
}

/** The advice when a mapped table lacks the watermark column. */
export function missingXidAdvice(source: Source): string {
  return `${source.name} has no created_xid column (the transaction-id watermark): run \`invoices risk init\` to add it`;
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

/** issue_date within [from, to): a timestamp without time zone compares as UTC (sessions run in UTC). */
export function rangeCondition(from: string, to: string): string {
  return `issue_date >= ${timeLiteral(from)} AND issue_date < ${timeLiteral(to)}`;
}

/** The first day of the row's month, UTC, as a date: the same for timestamptz and timestamp read as UTC. */
export const MONTH_OF_ISSUE = `date_trunc('month', issue_date AT TIME ZONE 'UTC')::date`;

/** `relation` of one table (or a leaf of it) with our column names aliased onto the table's. */
function relationOf(ref: TableRef<string>, columns: readonly string[], table = ref.table): string {
  const from = `${quoteIdent(ref.schema)}.${quoteIdent(table)}`;
  if (columns.every((c) => (ref.columns[c] ?? c) === c)) return from;
  return `(SELECT ${columns.map((c) => (ref.columns[c] ?? c) === c ? quoteIdent(c) : `${quoteIdent(ref.columns[c])} AS ${quoteIdent(c)}`).join(', ')} FROM ${from}) ${quoteIdent(table)}`;
}

/** One leaf (partition) of invoices with our column names. */
export function leafRelation(source: Source, leaf: string): string {
  return relationOf(source.tables.invoices, [...INVOICE_COLUMNS, ...(source.createdXid ? ['created_xid'] : [])], leaf);
}

/**
 * Resolves the invoices table of the mapping: its layout, the mapped columns (each must exist),
 * created_xid, and the amount's precision and scale (numeric only: an exact export needs it).
 */
export async function describeSource(client: Client, tables: TableMap = DEFAULT_TABLES): Promise<Source> {
  const ref = tables.invoices;
  const name = `${ref.schema}.${ref.table}`;
  const { layout } = await detectLayout(client, tables);
  if (layout === 'missing') {
    throw new UsageError(tables.mapped ? `there is no table ${name} (the invoices table of the config file's mapping)` : 'there is no invoices table: run `invoices init`');
  }
  const { rows } = await client.query<{ name: string; type: string; p: number | null; s: number | null }>(
    `SELECT a.attname AS name, t.typname AS type,
            CASE WHEN t.typname = 'numeric' AND a.atttypmod >= 4 THEN ((a.atttypmod - 4) >> 16) & 65535 END AS p,
            CASE WHEN t.typname = 'numeric' AND a.atttypmod >= 4 THEN (a.atttypmod - 4) & 65535 END AS s
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
    [qualified(ref)],
  );
  const byName = new Map(rows.map((r) => [r.name, r]));
  for (const c of INVOICE_COLUMNS) {
    if (!byName.has(ref.columns[c])) throw new UsageError(`${name} has no column "${ref.columns[c]}" (${c} in the mapping): fix the config file's "invoices".columns`);
  }
  const amount = byName.get(ref.columns.amount)!;
  if (amount.type !== 'numeric') throw new UsageError(`${name}.${ref.columns.amount} is ${amount.type}, not numeric: an exact export needs numeric`);
  const createdXid = byName.get('created_xid')?.type === 'xid8';
  const source: Source = {
    tables,
    layout,
    createdXid,
    relation: '',
    // Unconstrained numeric: DuckDB's widest exact decimal with cents; verify catches anything finer.
    amount: { precision: Math.min(amount.p ?? 38, 38), scale: amount.s ?? 2 },
    name,
  };
  source.relation = relationOf(ref, [...INVOICE_COLUMNS, ...(createdXid ? ['created_xid'] : [])]);
  return source;
}

/** The customers table as `SELECT id, name, email, country, segment, created_at`: columns it lacks are NULL. */
export async function customersSelect(client: Client, tables: TableMap, columns: readonly string[] = CUSTOMER_COLUMNS): Promise<string> {
  const ref = tables.customers;
  const { rows } = await client.query<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
    [qualified(ref)],
  );
  if (!rows.length) throw new UsageError(`there is no table ${ref.schema}.${ref.table}${tables.mapped ? ' (the customers table of the mapping)' : ': run `invoices init`'}`);
  const have = new Set(rows.map((r) => r.name));
  const nulls: Record<string, string> = { id: 'bigint', name: 'text', created_at: 'timestamptz' };
  const list = columns.map((c) => {
    const col = ref.columns[c as keyof typeof ref.columns] ?? c;
    if (have.has(col)) return col === c ? quoteIdent(c) : `${quoteIdent(col)} AS ${quoteIdent(c)}`;
    if (c === 'id' || c === 'name') throw new UsageError(`${ref.schema}.${ref.table} has no column "${col}" (${c} in the mapping): fix the config file's "customers".columns`);
    return `NULL::${nulls[c] ?? 'text'} AS ${quoteIdent(c)}`;
  });
  return `SELECT ${list.join(', ')} FROM ${qualified(ref)}`;
}

/**
 * The export horizon: every transaction with an id below it has ended, so no row below it can
 * still appear. Also xmax, to tell ids from another cluster (a pg_dump restore).
 */
export async function xidHorizon(client: Client): Promise<{ horizon: string; xmax: string }> {
  const { rows: [r] } = await client.query<{ horizon: string; xmax: string }>(
    'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax',
  );
  return r;
}

/** Per month (UTC) of the rows below the horizon (all rows without created_xid): count, sum(amount) and rows at or after `since`. */
export async function monthStats(client: Client, source: Source, horizon: string | undefined, since?: string, range?: { from: string; to: string }): Promise<Map<string, MonthStats>> {
  const fresh = since && source.createdXid ? `count(*) FILTER (WHERE created_xid >= ${xidLiteral(since)})` : '0';
  const conds = [
    ...(horizon && source.createdXid ? [`created_xid < ${xidLiteral(horizon)}`] : []),
    ...(range ? [rangeCondition(range.from, range.to)] : []),
  ];
  // Group on date_trunc and format the few group keys afterwards: to_char on every row costs a third more.
  const { rows } = await client.query<{ month: string; n: string; s: string; f: string }>(
    `SELECT to_char(m, 'YYYY-MM') AS month, n::text AS n, s::text AS s, f::text AS f FROM (
       SELECT date_trunc('month', issue_date AT TIME ZONE 'UTC') AS m, count(*) AS n, sum(amount) AS s, ${fresh} AS f
         FROM ${source.relation}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} GROUP BY 1) g ORDER BY 1`,
  );
  return new Map(rows.map((r) => [r.month, { rows: Number(r.n), sum: r.s, fresh: Number(r.f) }]));
}

/** Cumulative counters of the leaf tables of invoices (and of customers, under the key "customers"). */
export interface Counters {
  /** updates + deletes per leaf; inserts + updates + deletes for customers. */
  changes: Record<string, string>;
  /** inserts per leaf. */
  inserts: Record<string, string>;
}

/**
 * pg_stat_user_tables' counters per leaf table of invoices and for customers. Inserts into
 * invoices need no counter to be found (created_xid does that exactly); updates and deletes do.
 * Not transactional and flushed by backends within about a second: a hint that something changed.
 */
export async function leafCounters(client: Client, tables: TableMap = DEFAULT_TABLES): Promise<Counters> {
  const { rows } = await client.query<{ name: string; customers: boolean; ins: string; chg: string }>(
    `SELECT c.relname AS name, s.relid = to_regclass($2) AS customers, s.n_tup_ins::text AS ins,
            (CASE WHEN s.relid = to_regclass($2) THEN s.n_tup_ins ELSE 0 END + s.n_tup_upd + s.n_tup_del)::text AS chg
       FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
      WHERE s.relid IN (SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf) -- a partitioned table's leaves
         OR (s.relid = $1::regclass AND c.relkind = 'r') -- a plain table (it has no partition tree)
         OR s.relid = to_regclass($2)`,
    [qualified(tables.invoices), qualified(tables.customers)],
  );
  const changes: Record<string, string> = {};
  const inserts: Record<string, string> = {};
  for (const r of rows) {
    const key = r.customers ? 'customers' : r.name;
    changes[key] = r.chg;
    if (!r.customers) inserts[key] = r.ins;
  }
  return { changes, inserts };
}

/** The tables whose counter moved (or vanished, or went back: a stats reset) since `before`. */
export function movedCounters(before: Record<string, string>, now: Record<string, string>): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(now)]);
  return [...names].filter((n) => {
    if (!(n in before)) return Number(now[n]) > 0;
    return now[n] !== before[n];
  }).sort();
}

/**
 * The leaf tables of invoices whose rows may have changed other than by a plain insert since
 * `before`: updates or deletes moved their counter, or they are gone (detached, dropped); and when
 * any did, also those that took inserts, because an update that moves an invoice to another
 * month's partition shows there as an insert of a row with an old created_xid. A partition that
 * appeared with rows (attached with data, which may predate the watermark) counts too. Customers
 * are left out.
 */
export function dirtyLeaves(before: Counters, now: Counters): string[] {
  const changed = movedCounters(before.changes, now.changes).filter((n) => n !== 'customers');
  // Counters stored before inserts were recorded (an older manifest) cannot tell a new partition.
  const known = Object.keys(before.inserts).length > 0;
  const appeared = known ? Object.keys(now.inserts).filter((n) => !(n in before.inserts) && Number(now.inserts[n]) > 0) : [];
  if (!changed.length) return appeared.sort();
  return [...new Set([...changed, ...appeared, ...movedCounters(before.inserts, now.inserts)])].sort();
}

/** What a leaf table holds: a range of issue dates, the DEFAULT partition's leftovers, or everything (a plain table). */
type LeafRange = { from: string; to: string } | 'default' | 'all';

/** The range of each leaf table of invoices. */
async function leafRanges(client: Client, source: Source): Promise<Map<string, LeafRange>> {
  if (source.layout === 'plain') return new Map([[source.tables.invoices.table, 'all']]);
  const parts = await listPartitions(client, qualified(source.tables.invoices));
  return new Map(parts.map((p) => [p.name, p.isDefault || !p.from || !p.to ? 'default' : { from: p.from, to: p.to }]));
}

/**
 * The months (among `known`, plus those with rows in a dirty DEFAULT partition) that the dirty
 * leaves may hold: a partition its months; DEFAULT, or a partition that is gone, the months no
 * bounded partition covers; a plain table every month. `all` when every month is concerned.
 */
export async function dirtyMonths(client: Client, source: Source, leaves: string[], known: Month[]): Promise<{ months: Month[]; all: boolean }> {
  if (!leaves.length) return { months: [], all: false };
  const ranges = await leafRanges(client, source);
  const bounded = [...ranges.values()].filter((r): r is { from: string; to: string } => typeof r === 'object');
  const covered = (m: Month) => bounded.some((r) => r.from <= monthBounds(m).from && monthBounds(m).to <= r.to);
  const touches = (m: Month, r: { from: string; to: string }) => r.from < monthBounds(m).to && monthBounds(m).from < r.to;
  const out = new Set<Month>();
  for (const leaf of leaves) {
    const r = ranges.get(leaf);
    // A plain table: anything may have changed.
    if (r === 'all' || (r === undefined && source.layout === 'plain')) return { months: [], all: true };
    if (r === undefined) {
      // A partition that is gone (detached, dropped): its months are those no partition covers any more.
      known.filter((m) => !covered(m)).forEach((m) => out.add(m));
    } else if (r === 'default') {
      known.filter((m) => !covered(m)).forEach((m) => out.add(m));
      const { rows } = await client.query<{ m: string }>(
        `SELECT DISTINCT to_char(${MONTH_OF_ISSUE}, 'YYYY-MM') AS m FROM ${leafRelation(source, leaf)}`,
      );
      rows.forEach((x) => out.add(x.m));
    } else {
      for (let m = r.from.slice(0, 7); monthBounds(m).from < r.to; m = monthBounds(m).to.slice(0, 7)) out.add(m);
      known.filter((m) => touches(m, r)).forEach((m) => out.add(m));
    }
  }
  return { months: [...out].sort(), all: false };
}

/**
 * The created_xid index (CREATED_XID_INDEX), so that "rows after the watermark" is an index
 * range scan, not a scan of the table. Built without blocking writers (CONCURRENTLY, per
 * partition on a partitioned table); a no-op when it exists or the table has no created_xid.
 * Returns the index's name when it built anything.
 */
export async function ensureXidIndex(client: Client, source: Source): Promise<string | undefined> {
  if (!source.createdXid) return undefined;
  const steps = await planIndexes(client, source.tables, [CREATED_XID_INDEX]);
  for (const step of steps) await client.query(step.sql);
  return steps.length ? `${source.tables.invoices.table}_${CREATED_XID_INDEX.suffix}` : undefined;
}
