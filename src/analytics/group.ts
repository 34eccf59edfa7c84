// Use case 2: invoices of the last N months grouped by issuer, receiver or customer, exact to
// the cent, by one of three engines that return identical numbers:
// - totals: the monthly totals per customer (totals.ts), refreshed incrementally first, plus the
//   rows above their watermark read live in the same snapshot;
// - duckdb: the Parquet lake's months of the window, plus what the lake does not hold yet,
//   read from PostgreSQL: rows inserted after the lake's watermark (an index range scan on
//   created_xid), and whole months whose rows were updated or deleted since the export;
// - postgres: a GROUP BY on the live table over the window.
// auto prefers duckdb when there is a fresh lake of this table, then totals, then postgres.
import os from 'node:os';
import path from 'node:path';
import { rmSync } from 'node:fs';
import type { Client, DbContext } from '../db/client.js';
import { withClient } from '../db/client.js';
import { asInterrupted, cancelOnAbort } from '../db/cancel.js';
import { UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { copyIntoDuckDb, makeFifo } from '../lake/copy-stream.js';
import { queryRows, sqlString, withDuckDb } from '../lake/duckdb.js';
import { readManifest, type Manifest } from '../lake/manifest.js';
import { fileList, lakeFileProblem } from '../lake/read.js';
import { changesSince } from '../table/changes.js';
import { customersSelect, customersStamp } from '../table/customers.js';
import { describeTable, untrackedAdvice, type SourceTable } from '../table/describe.js';
import { rangeCondition, xidLiteral } from '../table/watermark.js';
import { describeTarget } from '../lake/target.js';
import { monthBounds } from '../schema/partitions.js';
import { atScale, average, fromUnits, toUnits } from './decimal.js';
import { totalsAggregate, withFreshTotals, type RefreshResult, type TotalsBuildHook } from './totals.js';
import { windowMonths, type Window } from './window.js';

export type GroupBy = 'issuer' | 'receiver' | 'customer';
export type Engine = 'auto' | 'totals' | 'duckdb' | 'postgres';
export const GROUP_BYS: readonly GroupBy[] = ['issuer', 'receiver', 'customer'];
export const ENGINES: readonly Engine[] = ['auto', 'totals', 'duckdb', 'postgres'];

export interface GroupOptions {
  window: Window;
  by: GroupBy;
  top?: number;
  engine: Engine;
  /** The lake directory (duckdb and auto). */
  lake: string;
  log?: Logger;
  /** Told when the monthly totals are built from scratch (first build, rebuild), for a live line. */
  onTotalsBuild?: TotalsBuildHook;
  /** Aborting it cancels the statement in flight on the server (a totals build rolls back whole). */
  signal?: AbortSignal;
}

export interface GroupRow {
  customer_id: string;
  name: string | null;
  invoices: string;
  total: string;
  average: string;
  issued?: string;
  received?: string;
  net?: string;
}

export interface GroupResult {
  rows: GroupRow[];
  engine: 'postgres' | 'duckdb' | 'totals';
  /** Why this engine answered, and how fresh its stored part was. */
  reason: string;
  /** duckdb and totals: rows read from PostgreSQL on top of the stored part. */
  deltaRows?: number;
  staleMonths?: string[];
  lakeExportedAt?: string;
  /** totals: what the refresh before the answer did. */
  refresh?: RefreshResult;
}

interface RawRow {
  id: string;
  name: string | null;
  n: string;
  total: string;
  issued?: string;
  received?: string;
}

type Party = 'issuer' | 'receiver';

/** Groups the window's invoices; see GroupOptions. */
export async function groupInvoices(ctx: DbContext, opts: GroupOptions): Promise<GroupResult> {
  const log = opts.log ?? ctx.log ?? silentLogger;
  if (!GROUP_BYS.includes(opts.by)) throw new UsageError(`--by must be one of ${GROUP_BYS.join(', ')}, got "${opts.by}"`);
  if (!ENGINES.includes(opts.engine)) throw new UsageError(`--engine must be one of ${ENGINES.join(', ')}, got "${opts.engine}"`);
  return withClient(ctx, async (client) => {
    const cancel = cancelOnAbort(ctx, client, opts.signal);
    try {
      return await groupOn(ctx, client, opts, log);
    } catch (err) {
      await cancel.settled();
      throw asInterrupted(err, opts.signal, 'interrupted: nothing was changed (a monthly totals refresh in flight rolled back)');
    } finally {
      cancel.dispose();
    }
  });
}

async function groupOn(ctx: DbContext, client: Client, opts: GroupOptions, log: Logger): Promise<GroupResult> {
  const source = await describeTable(client, ctx.config.tables);
  const customers = `(${await customersSelect(client, ctx.config.tables, ['id', 'name'])})`;
  if (opts.engine === 'postgres') return { rows: await postgresGroup(client, source, customers, opts), engine: 'postgres', reason: 'asked for' };
  const manifest = readManifest(opts.lake);
  const origin = describeTarget(ctx);
  const lakeDir = path.resolve(opts.lake);
  if (opts.engine === 'duckdb') {
    if (!manifest) throw new UsageError(`--engine duckdb needs a lake: none at ${lakeDir} (run \`invoices export\`)`);
    if (manifest.source !== origin) throw new UsageError(`the lake at ${lakeDir} was exported from ${manifest.source}, not ${origin}`);
    return (await lakeGroup(client, source, customers, opts, manifest, log)) as GroupResult;
  }
  // auto: the lake when there is a fresh one of this table (DuckDB's columnar scan is the
  // fastest here), else the monthly totals, else the live table; each says why.
  let lakeWhy: string | undefined;
  if (opts.engine === 'auto') {
    lakeWhy = !manifest ? `no lake at ${lakeDir}`
      : manifest.source !== origin ? `the lake at ${lakeDir} comes from another database or table (${manifest.source})`
      : manifest.watermark === null ? `the lake at ${lakeDir} has no watermark to read what changed since its export`
      : lakeFileProblem(opts.lake, manifest);
    if (!lakeWhy) {
      const r = await lakeGroup(client, source, customers, opts, manifest!, log);
      if ('rows' in r) return r;
      lakeWhy = r.stale;
    }
  }
  let totalsWhy: string;
  // This tool's own table gets its change log on the way (a database of an earlier version).
  if (opts.engine === 'totals' || source.incremental || !source.tables.mapped) {
    try {
      const r = await totalsGroup(client, source, customers, opts, log);
      return { ...r, reason: [r.reason, lakeWhy].filter(Boolean).join('; ') };
    } catch (err) {
      // auto: a role that may not create or write the totals still gets an answer, and is told why.
      const code = (err as { code?: string }).code;
      if (opts.engine === 'totals' || (code !== '42501' && code !== '25006')) throw err;
      totalsWhy = `the monthly totals cannot be refreshed (${(err as Error).message})`;
      log.warn(totalsWhy);
    }
  } else {
    totalsWhy = untrackedAdvice(source);
  }
  return { rows: await postgresGroup(client, source, customers, opts), engine: 'postgres', reason: [totalsWhy, lakeWhy].filter(Boolean).join('; ') };
}

/**
 * The grouping statement over per-party aggregates (`agg(party)` is a `SELECT id, n, s`), with
 * names from `customers` (a relation with id and name), largest totals first.
 */
function groupSql(by: GroupBy, agg: (party: Party) => string, customers: string, top: number | undefined): string {
  const limit = top ? `LIMIT ${Math.trunc(top)}` : '';
  if (by !== 'customer') {
    return `SELECT g.id::text AS id, c.name AS name, g.n::text AS n, g.s::text AS total
              FROM (${agg(by)}) g LEFT JOIN ${customers} c ON c.id = g.id
             ORDER BY g.s DESC, g.id ${limit}`;
  }
  return `WITH i AS (${agg('issuer')}), r AS (${agg('receiver')}),
          g AS (SELECT coalesce(i.id, r.id) AS id, coalesce(i.n, 0) + coalesce(r.n, 0) AS n,
                       coalesce(i.s, 0) + coalesce(r.s, 0) AS s, coalesce(i.s, 0) AS issued, coalesce(r.s, 0) AS received
                  FROM i FULL JOIN r ON i.id = r.id)
          SELECT g.id::text AS id, c.name AS name, g.n::text AS n, g.s::text AS total, g.issued::text AS issued, g.received::text AS received
            FROM g LEFT JOIN ${customers} c ON c.id = g.id
           ORDER BY g.s DESC, g.id ${limit}`;
}

/** Per-party aggregates of raw invoice rows. */
function rawAggregate(relation: string, where: string): (party: Party) => string {
  return (party) => `SELECT ${party}_id AS id, count(*) AS n, sum(amount) AS s FROM ${relation} WHERE ${where} GROUP BY ${party}_id`;
}

/** The same rows from every engine: amounts at the column's scale, average and net computed exactly here. */
function finish(raw: RawRow[], by: GroupBy, scale: number): GroupRow[] {
  return raw.map((r) => {
    const total = atScale(r.total, scale);
    const row: GroupRow = { customer_id: r.id, name: r.name ?? null, invoices: r.n, total, average: average(total, BigInt(r.n), scale) };
    if (by === 'customer') {
      row.issued = atScale(r.issued ?? '0', scale);
      row.received = atScale(r.received ?? '0', scale);
      row.net = fromUnits(toUnits(row.issued, scale) - toUnits(row.received, scale), scale);
    }
    return row;
  });
}

async function postgresGroup(client: Client, source: SourceTable, customers: string, opts: GroupOptions): Promise<GroupRow[]> {
  const { rows } = await client.query<RawRow>(groupSql(opts.by, rawAggregate(source.relation, rangeCondition(opts.window.from, opts.window.to)), customers, opts.top));
  return finish(rows, opts.by, source.amount.scale);
}

async function totalsGroup(client: Client, source: SourceTable, customers: string, opts: GroupOptions, log: Logger): Promise<GroupResult> {
  const { window } = opts;
  const { refresh, value } = await withFreshTotals(client, source, log, async (watermark) => {
    // One row per customer and month of the window to hash: let the aggregate and the sort stay in memory.
    await client.query(`SET LOCAL work_mem = '128MB'`);
    const { rows: [{ n }] } = await client.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM ${source.relation} WHERE created_xid >= ${xidLiteral(watermark)} AND ${rangeCondition(window.from, window.to)}`,
    );
    const { rows } = await client.query<RawRow>(groupSql(opts.by, (party) => totalsAggregate(source, party, window, watermark), customers, opts.top));
    return { rows, live: Number(n) };
  }, { onBuild: opts.onTotalsBuild, signal: opts.signal });
  const parts = [
    refresh.rebuilt ? `monthly totals computed from scratch (${refresh.rebuilt})`
      : `monthly totals refreshed from watermark ${refresh.previous} to ${refresh.watermark}: ${refresh.added} invoice(s) added`,
  ];
  if (refresh.recomputed.length) parts.push(`months ${refresh.recomputed.join(', ')} recomputed (${refresh.reasons.join('; ')} since the last refresh)`);
  parts.push(`${value.live} row(s) above the watermark read live`);
  return { rows: finish(value.rows, opts.by, source.amount.scale), engine: 'totals', reason: parts.join('; '), deltaRows: value.live, staleMonths: refresh.recomputed, refresh };
}

/** The lake plus what it does not hold yet; under auto, `stale` instead when most of the window changed since the export. */
async function lakeGroup(client: Client, source: SourceTable, customers: string, opts: GroupOptions, manifest: Manifest, log: Logger): Promise<GroupResult | { stale: string }> {
  const { window } = opts;
  const scale = manifest.amount.scale;
  const watermark = manifest.watermark;
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const months = windowMonths(window);
    // In the answer's snapshot: what the lake's rows may no longer be (updated, deleted, a partition truncated, the table replaced).
    const changes = watermark !== null ? await changesSince(client, source, manifest, months) : undefined;
    const stale = changes?.all ? months : months.filter((m) => changes?.months.has(m));
    if (opts.engine === 'auto' && stale.length * 2 > months.length) {
      await client.query('COMMIT');
      const why = changes?.all ?? [...new Set(stale.map((m) => changes?.months.get(m)))].join('; ');
      return { stale: `the lake is stale for ${stale.length} of the ${months.length} months since its export at ${manifest.exportedAt} (${why})` };
    }
    const lakeMonths = months.filter((m) => manifest.months[m] && !stale.includes(m));
    const files = lakeMonths.flatMap((m) => manifest.months[m].files);
    const decimal = `DECIMAL(${manifest.amount.precision},${manifest.amount.scale})`;
    const staleCond = stale.map((m) => `(${rangeCondition(monthBounds(m).from, monthBounds(m).to)})`);
    const deltaWhere = watermark === null ? undefined
      : `${rangeCondition(window.from, window.to)} AND (created_xid >= ${xidLiteral(watermark)}${staleCond.length ? ' OR ' + staleCond.join(' OR ') : ''})`;

    const result = await withDuckDb(async (duck) => {
      // Usually nothing or little is missing from the lake: count it first (an index range scan on created_xid).
      const deltaRows = deltaWhere ? Number((await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${source.relation} WHERE ${deltaWhere}`)).rows[0].n) : 0;
      if (deltaRows > 0) {
        // Beside the process, not in the lake: the lake holds only what export wrote.
        const fifo = makeFifo(os.tmpdir());
        try {
          await copyIntoDuckDb(client, duck, `SELECT issue_date, issuer_id, receiver_id, amount FROM ${source.relation} WHERE ${deltaWhere}`,
            { issue_date: 'TIMESTAMPTZ', issuer_id: 'BIGINT', receiver_id: 'BIGINT', amount: decimal }, fifo,
            (src) => `CREATE TEMP TABLE delta AS SELECT * FROM ${src}`);
        } finally {
          rmSync(fifo, { force: true });
        }
      } else {
        await duck.run(`CREATE TEMP TABLE delta (issue_date TIMESTAMPTZ, issuer_id BIGINT, receiver_id BIGINT, amount ${decimal})`);
      }
      const lakePart = files.length
        ? `SELECT issue_date, issuer_id, receiver_id, amount FROM read_parquet(${fileList(opts.lake, files)}) UNION ALL `
        : '';
      await duck.run(`CREATE TEMP VIEW win AS ${lakePart}SELECT issue_date, issuer_id, receiver_id, amount FROM delta`);
      await duck.run(`CREATE TEMP VIEW customers AS SELECT id, name FROM read_parquet(${fileList(opts.lake, manifest.customers.files)})`);
      const where = `issue_date >= TIMESTAMPTZ ${sqlString(window.from)} AND issue_date < TIMESTAMPTZ ${sqlString(window.to)}`;
      const raw = (await queryRows(duck, groupSql(opts.by, rawAggregate('win', where), 'customers', opts.top))) as unknown as RawRow[];
      return { raw, deltaRows };
    });
    // Names as they are now when customers changed since the export (reading every name costs ~0.1 s per 20,000).
    const namesMoved = stale.length > 0 || manifest.customers.stamp !== (await customersStamp(client, source.tables));
    if (namesMoved && result.raw.length) await refreshNames(client, customers, result.raw);
    await client.query('COMMIT');
    const snapshotOnly = `the lake is a snapshot of ${manifest.exportedAt}: rows inserted, updated or deleted since are NOT in this answer (${untrackedAdvice(source)})`;
    // Numbers that may be stale are said so even with --quiet.
    if (watermark === null) log.warn(snapshotOnly);
    const parts = watermark === null
      ? [snapshotOnly]
      : [`lake exported ${manifest.exportedAt} (watermark ${watermark})`, `${result.deltaRows} row(s) not in the lake read from PostgreSQL`];
    if (stale.length) parts.push(`months ${stale.join(', ')} read whole from PostgreSQL (${changes?.all ?? [...new Set(stale.map((m) => changes?.months.get(m)))].join('; ')} since the export)`);
    if (namesMoved) parts.push('customer names from PostgreSQL');
    log.debug(`group: ${files.length} lake file(s), delta ${result.deltaRows} row(s)`);
    return {
      rows: finish(result.raw, opts.by, scale),
      engine: 'duckdb',
      reason: parts.join('; '),
      deltaRows: result.deltaRows,
      staleMonths: stale,
      lakeExportedAt: manifest.exportedAt,
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function refreshNames(client: Client, customers: string, rows: RawRow[]): Promise<void> {
  const { rows: names } = await client.query<{ id: string; name: string }>(`SELECT id::text AS id, name FROM ${customers} c WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
  const byId = new Map(names.map((n) => [n.id, n.name]));
  for (const r of rows) r.name = byId.get(r.id) ?? null;
}
