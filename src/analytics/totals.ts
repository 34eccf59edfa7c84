// Pre-aggregated monthly totals per customer (sql/monthly-totals.sql), the short-term answer to
// use case 2 inside PostgreSQL. Maintained incrementally on the created_xid watermark: a refresh
// adds the invoices of transactions that ended since the last one (however late they
// committed), recomputes whole the months whose partitions saw updates or deletes, and commits
// the totals with the new watermark in one transaction, under an advisory lock (cron-safe).
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { dirtyLeaves, dirtyMonths, ensureXidIndex, leafCounters, missingXidAdvice, MONTH_OF_ISSUE, rangeCondition, timeLiteral, xidHorizon, xidLiteral, type Counters, type Source } from '../lake/source.js';
import { sqlFile } from '../schema/apply.js';
import { monthBounds, type Month } from '../schema/partitions.js';
import { quoteIdent } from '../tables.js';

const TOTALS_TABLE = 'invoice_monthly_totals';
const STATE_TABLE = 'invoice_monthly_totals_state';

export interface RefreshResult {
  watermark: string;
  /** The watermark before this refresh (undefined: the totals were built from scratch). */
  previous?: string;
  /** Why everything was recomputed, when it was. */
  rebuilt?: string;
  /** Invoices added incrementally (rows after the previous watermark). */
  added: number;
  /** Months recomputed whole (rows updated or deleted there since the last refresh). */
  recomputed: Month[];
  refreshedAt: string;
}

interface State {
  source: string;
  watermark: string;
  change_counters: Record<string, string>;
  insert_counters: Record<string, string>;
}

/** The totals tables, qualified: they live beside the invoices table, in its schema. */
function totalsTable(source: Source, table = TOTALS_TABLE): string {
  return `${quoteIdent(source.tables.invoices.schema)}.${quoteIdent(table)}`;
}

/** The UTC day of a validated timestamp, as a date (sessions run in UTC). */
function dateLiteral(iso: string): string {
  return `${timeLiteral(iso)}::date`;
}

/**
 * Refreshes the monthly totals (creating and building them when missing) and, in the same
 * transaction and snapshot, runs `read` with the new watermark: the totals it reads are exactly
 * the invoices below it, and rows above it are visible in that snapshot for a live delta.
 */
export async function withFreshTotals<T>(client: Client, source: Source, log: Logger, read: (watermark: string) => Promise<T>): Promise<{ refresh: RefreshResult; value: T }> {
  if (!source.createdXid) throw new UsageError(`monthly totals need the watermark: ${missingXidAdvice(source)}; or use --engine postgres`);
  await ensureTables(client, source, log);
  const built = await ensureXidIndex(client, source);
  if (built) log.info(`built the index ${built} (rows after a watermark, for incremental totals)`);
  // A session lock taken before the snapshot: a second refresh waits, then sees the first one's result.
  const lock = [`invoices:monthly-totals:${source.tables.invoices.schema}`];
  await client.query('SELECT pg_advisory_lock(hashtext($1))', lock);
  try {
    // Counters before the snapshot: a change after this point is either in the snapshot or moves them.
    const counters = await leafCounters(client, source.tables);
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    try {
      const refresh = await refreshInTransaction(client, source, counters, log);
      const value = await read(refresh.watermark);
      await client.query('COMMIT');
      return { refresh, value };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', lock).catch(() => {});
  }
}

/** Creates the totals tables when missing (sql/monthly-totals.sql, in the invoices table's schema). */
async function ensureTables(client: Client, source: Source, log: Logger): Promise<void> {
  const exists = async () => (await client.query<{ ok: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok`, [totalsTable(source), totalsTable(source, STATE_TABLE)])).rows[0].ok;
  if (await exists()) return;
  await client.query('BEGIN');
  try {
    // Two first runs at once would race in CREATE TABLE IF NOT EXISTS: serialise as `init` does.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('invoices:schema'))`);
    const created = !(await exists());
    if (created) {
      await client.query(`SET LOCAL search_path TO ${quoteIdent(source.tables.invoices.schema)}`);
      await client.query(sqlFile('monthly-totals.sql'));
    }
    await client.query('COMMIT');
    if (created) log.info(`created ${source.tables.invoices.schema}.${TOTALS_TABLE} (monthly totals per customer, sql/monthly-totals.sql)`);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function refreshInTransaction(client: Client, source: Source, counters: Counters, log: Logger): Promise<RefreshResult> {
  const totals = totalsTable(source);
  const stateTable = totalsTable(source, STATE_TABLE);
  const key = JSON.stringify({ table: `${source.tables.invoices.schema}.${source.tables.invoices.table}`, columns: source.tables.invoices.columns });
  const { rows: [state] } = await client.query<State>(`SELECT source, watermark::text AS watermark, change_counters, insert_counters FROM ${stateTable}`);
  const { horizon, xmax } = await xidHorizon(client);
  const { rows: [{ restored }] } = await client.query<{ restored: boolean }>(`SELECT coalesce(max(created_xid) >= ${xidLiteral(xmax)}, false) AS restored FROM ${source.relation}`);
  if (restored) {
    throw new UsageError(`${source.name} holds created_xid values from another cluster (a pg_dump restore?): they are above this server's transaction counter, so no watermark is safe; reset created_xid (UPDATE ... SET created_xid = pg_current_xact_id()) first`);
  }
  let rebuilt: string | undefined;
  if (!state) rebuilt = 'first build';
  else if (state.source !== key) rebuilt = 'built from another table or column mapping';
  else if (BigInt(state.watermark) > BigInt(horizon)) rebuilt = 'the watermark is ahead of this server (restored database?)';
  let recomputed: Month[] = [];
  let added = 0;
  if (!rebuilt) {
    const leaves = dirtyLeaves({ changes: state.change_counters, inserts: state.insert_counters }, counters);
    if (leaves.length) {
      const dirty = await dirtyMonths(client, source, leaves, await totalsMonths(client, totals));
      if (dirty.all) rebuilt = `rows updated or deleted in ${source.name}, which has no monthly partitions to tell which months`;
      else recomputed = dirty.months;
    }
  }
  if (rebuilt) {
    log.info(`monthly totals: computing every month (${rebuilt})`);
    await client.query(`TRUNCATE ${totals}`);
    // One pass over the whole table: give the two hash aggregates room.
    await client.query(`SET LOCAL work_mem = '256MB'`);
    added = await aggregateInto(client, source, totals, `created_xid < ${xidLiteral(horizon)}`);
    // Fresh statistics, or the planner takes the window's rows for a handful and sorts where it should hash.
    await client.query(`ANALYZE ${totals}`);
  } else {
    const ranges = recomputed.map((m) => `(${rangeCondition(monthBounds(m).from, monthBounds(m).to)})`);
    if (recomputed.length) {
      await client.query(`DELETE FROM ${totals} WHERE party IN ('issuer', 'receiver') AND month = ANY($1::date[])`, [recomputed.map((m) => `${m}-01`)]);
      await aggregateInto(client, source, totals, `(${ranges.join(' OR ')}) AND created_xid < ${xidLiteral(horizon)}`);
    }
    // Only rows after the watermark: an index range scan on created_xid.
    added = await aggregateInto(client, source, totals,
      `created_xid >= ${xidLiteral(state.watermark)} AND created_xid < ${xidLiteral(horizon)}${ranges.length ? ` AND NOT (${ranges.join(' OR ')})` : ''}`);
  }
  const { rows: [{ now }] } = await client.query<{ now: string }>(
    `INSERT INTO ${stateTable} (singleton, source, watermark, change_counters, insert_counters, refreshed_at)
     VALUES (true, $1, $2::xid8, $3, $4, now())
     ON CONFLICT (singleton) DO UPDATE SET source = excluded.source, watermark = excluded.watermark, change_counters = excluded.change_counters,
        insert_counters = excluded.insert_counters, refreshed_at = excluded.refreshed_at
     RETURNING refreshed_at AS now`,
    [key, horizon, JSON.stringify(counters.changes), JSON.stringify(counters.inserts)],
  );
  return { watermark: horizon, previous: state && !rebuilt ? state.watermark : undefined, rebuilt, added, recomputed, refreshedAt: now };
}

/**
 * Adds the invoices matching `where` to the totals, per month and customer, as issuer and as
 * receiver (an existing row is incremented). Returns how many invoices it added.
 */
async function aggregateInto(client: Client, source: Source, totals: string, where: string): Promise<number> {
  const { rows: [r] } = await client.query<{ invoices: string }>(`
    WITH d AS NOT MATERIALIZED (SELECT ${MONTH_OF_ISSUE} AS month, issuer_id, receiver_id, amount FROM ${source.relation} WHERE ${where}),
    agg AS (
      SELECT 'issuer' AS party, month, issuer_id AS customer_id, count(*)::integer AS invoices, sum(amount) AS amount FROM d GROUP BY 2, 3
      UNION ALL
      SELECT 'receiver', month, receiver_id, count(*)::integer, sum(amount) FROM d GROUP BY 2, 3),
    ins AS (
      INSERT INTO ${totals} AS t (party, month, customer_id, invoices, amount)
      SELECT party, month, customer_id, invoices, amount FROM agg ORDER BY party, month, customer_id
      ON CONFLICT (party, month, customer_id) DO UPDATE SET invoices = t.invoices + excluded.invoices, amount = t.amount + excluded.amount
      RETURNING 1)
    SELECT (SELECT coalesce(sum(invoices), 0) FROM agg WHERE party = 'issuer')::text AS invoices, (SELECT count(*) FROM ins) AS n`);
  return Number(r.invoices);
}

/** The months the totals hold (every invoice has an issuer), by skipping along the primary key: a few index probes, not a scan. */
async function totalsMonths(client: Client, totals: string): Promise<Month[]> {
  const { rows } = await client.query<{ m: string }>(`
    WITH RECURSIVE m AS (
      SELECT min(month) AS month FROM ${totals} WHERE party = 'issuer'
      UNION ALL
      SELECT (SELECT min(month) FROM ${totals} WHERE party = 'issuer' AND month > m.month) FROM m WHERE m.month IS NOT NULL)
    SELECT to_char(month, 'YYYY-MM') AS m FROM m WHERE month IS NOT NULL`);
  return rows.map((r) => r.m);
}

/**
 * The window's totals per customer for one party, plus the rows above the watermark visible in
 * this snapshot (committed after the horizon was taken, or by transactions that began before it
 * ended): as `SELECT id, n, s`.
 */
export function totalsAggregate(source: Source, party: 'issuer' | 'receiver', window: { from: string; to: string }, watermark: string): string {
  // A join rather than a UNION under one GROUP BY: the planner then knows there is about one row
  // per customer (not its default 200), and hashes the names instead of probing them one by one.
  return `SELECT coalesce(t.id, l.id) AS id, coalesce(t.n, 0) + coalesce(l.n, 0) AS n, coalesce(t.s, 0) + coalesce(l.s, 0) AS s
      FROM (SELECT customer_id AS id, sum(invoices) AS n, sum(amount) AS s FROM ${totalsTable(source)}
             WHERE party = '${party}' AND month >= ${dateLiteral(window.from)} AND month < ${dateLiteral(window.to)} GROUP BY customer_id) t
      FULL JOIN (SELECT ${party}_id AS id, count(*) AS n, sum(amount) AS s FROM ${source.relation}
                  WHERE created_xid >= ${xidLiteral(watermark)} AND ${rangeCondition(window.from, window.to)} GROUP BY ${party}_id) l ON l.id = t.id`;
}
