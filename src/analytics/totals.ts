// Pre-aggregated monthly totals per customer (sql/monthly-totals.sql), the short-term answer to
// use case 2 inside PostgreSQL, one set per source table. Maintained incrementally on the
// created_xid watermark: a refresh adds the invoices of transactions that ended since the last
// one (however late they committed), recomputes whole the months that the change log or the
// lineage (a truncated, dropped or attached partition) names, rebuilds everything when the
// table was replaced (reload, restore, conversion), and commits the totals with the new
// watermark and lineage in one transaction, under an advisory lock per source (cron-safe).
import { columnPresence, leavesOf } from '../db/catalog/index.js';
import type { Client } from '../db/client.js';
import { lockSource } from '../db/source-lock.js';
import { transaction } from '../db/transaction.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { sqlFile } from '../schema/sql-file.js';
import { changesSince } from '../table/changes.js';
import { untrackedAdvice, type SourceTable } from '../table/describe.js';
import type { Lineage } from '../table/lineage.js';
import { ensureTracked } from '../table/tracking.js';
import { assertXidsBehindServer, MONTH_OF_ISSUE, rangeCondition, xidHorizon, xidLiteral } from '../table/watermark.js';
import { monthBounds, type Month } from '../schema/partitions.js';
import { quoteIdent } from '../tables.js';
import { addToWindows, dropEmptyWindowRows, dropWindows, totalsRelation, windowRows } from './totals-windows.js';
import type { Window } from './window.js';

export interface RefreshResult {
  watermark: string;
  /** The watermark before this refresh (undefined: the totals were built from scratch). */
  previous?: string;
  /** Why everything was recomputed, when it was. */
  rebuilt?: string;
  /** Invoices added incrementally (rows after the previous watermark). */
  added: number;
  /** Months recomputed whole, each with why (rows updated or deleted, a partition truncated...). */
  recomputed: Month[];
  reasons: string[];
  refreshedAt: string;
}

/** What a build of every month is doing, for a live line: called at its start and once done. */
export type TotalsBuildHook = (b: { source: string; reason: string; estimatedRows: number; done: boolean; seconds: number }) => void;

interface State {
  watermark: string;
  lineage: Lineage;
}

/**
 * Refreshes the monthly totals (creating and building them when missing) and, in the same
 * transaction and snapshot, runs `read` with the new watermark: the totals it reads are exactly
 * the invoices below it, and rows above it are visible in that snapshot for a live delta.
 */
export async function withFreshTotals<T>(
  client: Client,
  described: SourceTable,
  log: Logger,
  read: (watermark: string) => Promise<T>,
  opts: { onBuild?: TotalsBuildHook; signal?: AbortSignal } = {},
): Promise<{ refresh: RefreshResult; value: T }> {
  const source = await ensureTracked(client, described, log);
  if (!source.incremental)
    throw new UsageError(`monthly totals need the watermark and the change log: ${untrackedAdvice(source)}; or use --engine postgres`);
  await ensureTables(client, source, log);
  // A session lock taken before the snapshot: a second refresh of this source waits (polling, so
  // that it holds no snapshot back meanwhile), then sees the first one's result.
  const unlock = await lockSource(client, {
    key: `monthly-totals ${source.key}`,
    label: `the monthly totals of ${source.name}`,
    what: 'refresh',
    wait: true,
    log,
    signal: opts.signal,
  });
  try {
    // Room for the hash aggregates of a full build, and for the answer's one row per customer and month.
    return await transaction(
      client,
      async () => {
        const refresh = await refreshInTransaction(client, source, log, opts.onBuild);
        return { refresh, value: await read(refresh.watermark) };
      },
      { isolation: 'repeatable read', settings: { work_mem: '256MB' } },
    );
  } finally {
    await unlock();
  }
}

/** Creates the totals tables when missing (sql/monthly-totals.sql, in the invoices table's schema). */
async function ensureTables(client: Client, source: SourceTable, log: Logger): Promise<void> {
  const monthly = totalsRelation(source, 'invoice_monthly_totals');
  const state = totalsRelation(source, 'invoice_monthly_totals_state');
  // 'old': made by an earlier version (one set per schema, no lineage), dropped and made again;
  // 'windows': made before the window totals, which are added beside them.
  const shape = async (): Promise<'ok' | 'missing' | 'old' | 'windows'> => {
    const [t, s, w] = await columnPresence(client, [monthly, state, totalsRelation(source, 'invoice_window_totals')], 'lineage');
    return t === null || s === null ? 'missing' : !s ? 'old' : w === null ? 'windows' : 'ok';
  };
  if ((await shape()) === 'ok') return;
  // search_path: the SQL file creates its tables in the invoices table's schema.
  const found = await transaction(
    client,
    async () => {
      // Two first runs at once would race in CREATE TABLE IF NOT EXISTS: serialise as `init` does.
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('invoices:schema'))`);
      const now = await shape();
      if (now === 'old') await client.query(`DROP TABLE IF EXISTS ${monthly}, ${state}`);
      if (now !== 'ok') await client.query(sqlFile('monthly-totals.sql'));
      return now;
    },
    { settings: { search_path: quoteIdent(source.tables.invoices.schema) } },
  );
  const schema = source.tables.invoices.schema;
  if (found === 'old')
    log.info(
      `dropped the monthly totals of an earlier version (shared by every table of ${schema}, not bound to their source): they are computed again`,
    );
  if (found === 'windows') log.info(`created ${schema}.invoice_window_totals (window totals, sql/monthly-totals.sql)`);
  else if (found !== 'ok') log.info(`created ${schema}.invoice_monthly_totals (monthly totals per customer, sql/monthly-totals.sql)`);
}

async function refreshInTransaction(client: Client, source: SourceTable, log: Logger, onBuild?: TotalsBuildHook): Promise<RefreshResult> {
  const totals = totalsRelation(source, 'invoice_monthly_totals');
  const stateTable = totalsRelation(source, 'invoice_monthly_totals_state');
  const {
    rows: [state],
  } = await client.query<State>(`SELECT watermark::text AS watermark, lineage FROM ${stateTable} WHERE source_id = $1`, [source.id]);
  const { horizon } = await xidHorizon(client);
  await assertXidsBehindServer(client, source);
  const changes = await changesSince(
    client,
    source,
    state ?? { watermark: null },
    state ? await totalsMonths(client, totals, source.id) : [],
  );
  let rebuilt = !state ? 'first build' : changes.all;
  if (!rebuilt && BigInt(state.watermark) > BigInt(horizon)) rebuilt = 'the watermark is ahead of this server (restored database?)';
  const recomputed = rebuilt ? [] : [...changes.months.keys()];
  const reasons = [...new Set(changes.months.values())];
  let added: number;
  if (rebuilt) {
    log.info(`monthly totals of ${source.name}: computing every month (${rebuilt})`);
    const buildStarted = performance.now();
    const estimatedRows = onBuild ? await estimatedRowsOf(client, source) : 0;
    onBuild?.({ source: source.name, reason: rebuilt, estimatedRows, done: false, seconds: 0 });
    // The only source in these tables: TRUNCATE, not a DELETE of every row.
    const {
      rows: [{ alone }],
    } = await client.query<{ alone: boolean }>(`SELECT NOT EXISTS (SELECT 1 FROM ${stateTable} WHERE source_id <> $1) AS alone`, [
      source.id,
    ]);
    await client.query(alone ? `TRUNCATE ${totals}` : `DELETE FROM ${totals} WHERE source_id = $1`, alone ? [] : [source.id]);
    await dropWindows(client, source, alone);
    added = await aggregateInto(client, source, totals, `created_xid < ${xidLiteral(horizon)}`);
    // Fresh statistics, or the planner takes the window's rows for a handful and sorts where it should hash.
    await client.query(`ANALYZE ${totals}`);
    const seconds = (performance.now() - buildStarted) / 1000;
    log.debug(`monthly totals of ${source.name}: every month built in ${seconds.toFixed(1)} s (${added} invoices)`);
    onBuild?.({ source: source.name, reason: rebuilt, estimatedRows, done: true, seconds });
  } else {
    if (recomputed.length) log.info(`monthly totals of ${source.name}: recomputing ${recomputed.join(', ')} (${reasons.join('; ')})`);
    const ranges = recomputed.map((m) => `(${rangeCondition(monthBounds(m).from, monthBounds(m).to)})`);
    if (recomputed.length) {
      // Taken off the kept windows too, in the same statement; added back below as they are computed again.
      await client.query(
        `WITH del AS (DELETE FROM ${totals} WHERE source_id = $1 AND party IN ('issuer', 'receiver') AND month = ANY($2::date[])
                      RETURNING party, month, customer_id, invoices, amount)
         ${addToWindows(source, 'del', -1)}`,
        [source.id, recomputed.map((m) => `${m}-01`)],
      );
      await aggregateInto(client, source, totals, `(${ranges.join(' OR ')}) AND created_xid < ${xidLiteral(horizon)}`);
    }
    // Only rows after the watermark: an index range scan on created_xid.
    added = await aggregateInto(
      client,
      source,
      totals,
      `created_xid >= ${xidLiteral(state.watermark)} AND created_xid < ${xidLiteral(horizon)}${ranges.length ? ` AND NOT (${ranges.join(' OR ')})` : ''}`,
    );
    if (recomputed.length) await dropEmptyWindowRows(client, source);
  }
  const {
    rows: [{ now }],
  } = await client.query<{ now: string }>(
    `INSERT INTO ${stateTable} (source_id, source, lineage, watermark, refreshed_at) VALUES ($1, $2, $3, $4::xid8, now())
     ON CONFLICT (source_id) DO UPDATE SET source = excluded.source, lineage = excluded.lineage, watermark = excluded.watermark, refreshed_at = excluded.refreshed_at
     RETURNING refreshed_at AS now`,
    [source.id, source.key, JSON.stringify(changes.lineage), horizon],
  );
  return {
    watermark: horizon,
    previous: state && !rebuilt ? state.watermark : undefined,
    rebuilt,
    added,
    recomputed,
    reasons: rebuilt ? [] : reasons,
    refreshedAt: now,
  };
}

/**
 * Adds the invoices matching `where` to the totals, per month and customer, as issuer and as
 * receiver (an existing row is incremented), and to the kept windows holding their month.
 * Returns how many invoices it added.
 */
async function aggregateInto(client: Client, source: SourceTable, totals: string, where: string): Promise<number> {
  const {
    rows: [r],
  } = await client.query<{ invoices: string }>(`
    WITH d AS NOT MATERIALIZED (SELECT ${MONTH_OF_ISSUE} AS month, issuer_id, receiver_id, amount FROM ${source.relation} WHERE ${where}),
    agg AS (
      SELECT 'issuer' AS party, month, issuer_id AS customer_id, count(*)::integer AS invoices, sum(amount) AS amount FROM d GROUP BY 2, 3
      UNION ALL
      SELECT 'receiver', month, receiver_id, count(*)::integer, sum(amount) FROM d GROUP BY 2, 3),
    ins AS (
      INSERT INTO ${totals} AS t (source_id, party, month, customer_id, invoices, amount)
      SELECT ${source.id}::bigint, party, month, customer_id, invoices, amount FROM agg ORDER BY party, month, customer_id
      ON CONFLICT (source_id, party, month, customer_id) DO UPDATE SET invoices = t.invoices + excluded.invoices, amount = t.amount + excluded.amount
      RETURNING 1),
    win AS (${addToWindows(source, 'agg', 1)})
    SELECT (SELECT coalesce(sum(invoices), 0) FROM agg WHERE party = 'issuer')::text AS invoices, (SELECT count(*) FROM ins) AS n`);
  return Number(r.invoices);
}

/** The planner's row count of the invoices table (its partitions summed): what a full build reads, roughly; 0 when unknown. */
async function estimatedRowsOf(client: Client, source: SourceTable): Promise<number> {
  const leaves = await leavesOf(client, `${quoteIdent(source.tables.invoices.schema)}.${quoteIdent(source.tables.invoices.table)}`);
  return leaves.reduce((n, l) => n + l.estimatedRows, 0);
}

/** The months the totals hold (every invoice has an issuer), by skipping along the primary key: a few index probes, not a scan. */
async function totalsMonths(client: Client, totals: string, sourceId: string): Promise<Month[]> {
  const { rows } = await client.query<{ m: string }>(
    `
    WITH RECURSIVE m AS (
      SELECT min(month) AS month FROM ${totals} WHERE source_id = $1 AND party = 'issuer'
      UNION ALL
      SELECT (SELECT min(month) FROM ${totals} WHERE source_id = $1 AND party = 'issuer' AND month > m.month) FROM m WHERE m.month IS NOT NULL)
    SELECT to_char(month, 'YYYY-MM') AS m FROM m WHERE month IS NOT NULL`,
    [sourceId],
  );
  return rows.map((r) => r.m);
}

/**
 * The window's totals per customer for one party, as `SELECT id, n, s`: the kept window's rows
 * (ensureWindow), plus the `live` rows above the watermark visible in this snapshot (committed
 * after the horizon was taken, or by transactions that began before it ended). With `top` (a
 * dimension that ranks these very rows), only the stored rows that can still be among the first
 * K are read: the first K + live, and those of the customers with live rows.
 */
export function totalsAggregate(
  source: SourceTable,
  party: 'issuer' | 'receiver',
  window: Window,
  watermark: string,
  { live, top }: { live: number; top?: number },
): string {
  const stored = windowRows(source, party, window);
  if (!live) return stored;
  const t = top
    ? `(SELECT * FROM (${stored} ORDER BY s DESC, id LIMIT ${top + live}) a UNION SELECT w.* FROM (${stored}) w JOIN l ON l.id = w.id)`
    : `(${stored})`;
  // A join rather than a UNION under one GROUP BY: the planner then knows there is about one row
  // per customer (not its default 200), and hashes the names instead of probing them one by one.
  return `WITH l AS (SELECT ${party}_id AS id, count(*) AS n, sum(amount) AS s FROM ${source.relation}
                      WHERE created_xid >= ${xidLiteral(watermark)} AND ${rangeCondition(window.from, window.to)} GROUP BY ${party}_id)
    SELECT coalesce(t.id, l.id) AS id, coalesce(t.n, 0) + coalesce(l.n, 0) AS n, coalesce(t.s, 0) + coalesce(l.s, 0) AS s
      FROM ${t} t FULL JOIN l ON l.id = t.id`;
}
