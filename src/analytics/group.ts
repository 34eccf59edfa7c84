// Use case 2: invoices of the last N months grouped by issuer, receiver or customer, exact to
// the cent, by one of two engines that return identical numbers:
// - postgres: a GROUP BY on the live table over the window;
// - duckdb: the Parquet lake's months of the window, plus what the lake does not hold yet,
//   read from PostgreSQL: rows inserted after the lake's watermark (an index range scan on
//   created_xid), and whole months whose rows were updated or deleted since the export.
// auto picks duckdb when there is a lake of this database whose window is mostly fresh.
import path from 'node:path';
import type { Client, DbContext } from '../db/client.js';
import { withClient } from '../db/client.js';
import { UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { copyIntoDuckDb, makeFifo } from '../lake/copy-stream.js';
import { type DuckDBConnection, queryRows, sqlString, withDuckDb } from '../lake/duckdb.js';
import { readManifest, type Manifest } from '../lake/manifest.js';
import { fileList } from '../lake/read.js';
import { amountType, changeCounters, monthStats, movedCounters, timeLiteral, xidLiteral } from '../lake/source.js';
import { describeTarget } from '../lake/target.js';
import { monthBounds, PARENT } from '../schema/partitions.js';
import { atScale, average, fromUnits, toUnits } from './decimal.js';
import { windowMonths, type Window } from './window.js';
import { rmSync } from 'node:fs';

export type GroupBy = 'issuer' | 'receiver' | 'customer';
export type Engine = 'auto' | 'postgres' | 'duckdb';
export const GROUP_BYS: readonly GroupBy[] = ['issuer', 'receiver', 'customer'];
export const ENGINES: readonly Engine[] = ['auto', 'postgres', 'duckdb'];

export interface GroupOptions {
  window: Window;
  by: GroupBy;
  top?: number;
  engine: Engine;
  /** The lake directory (duckdb and auto). */
  lake: string;
  log?: Logger;
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
  engine: 'postgres' | 'duckdb';
  /** Why this engine answered, and how fresh the lake part was. */
  reason: string;
  /** duckdb: rows read from PostgreSQL on top of the lake (not yet exported or in stale months). */
  deltaRows?: number;
  staleMonths?: string[];
  lakeExportedAt?: string;
}

interface RawRow {
  id: string;
  name: string | null;
  n: string;
  total: string;
  issued?: string;
  received?: string;
}

/** Groups the window's invoices; see GroupOptions. */
export async function groupInvoices(ctx: DbContext, opts: GroupOptions): Promise<GroupResult> {
  const log = opts.log ?? ctx.log ?? silentLogger;
  if (!GROUP_BYS.includes(opts.by)) throw new UsageError(`--by must be one of ${GROUP_BYS.join(', ')}, got "${opts.by}"`);
  if (!ENGINES.includes(opts.engine)) throw new UsageError(`--engine must be one of ${ENGINES.join(', ')}, got "${opts.engine}"`);
  const manifest = opts.engine === 'postgres' ? undefined : readManifest(opts.lake);
  const source = describeTarget(ctx);

  if (opts.engine === 'duckdb' && !manifest) throw new UsageError(`--engine duckdb needs a lake: none at ${path.resolve(opts.lake)} (run \`invoices export\`)`);
  if (opts.engine === 'duckdb' && manifest && manifest.source !== source) {
    throw new UsageError(`the lake at ${path.resolve(opts.lake)} was exported from ${manifest.source}, not ${source}`);
  }
  if (opts.engine === 'postgres' || !manifest || manifest.source !== source) {
    const reason = opts.engine === 'postgres' ? 'asked for'
      : !manifest ? `no lake at ${path.resolve(opts.lake)} (run \`invoices export\` to answer from Parquet)`
      : `the lake at ${path.resolve(opts.lake)} comes from another database (${manifest.source})`;
    return withClient(ctx, async (client) => ({ rows: await postgresGroup(client, opts), engine: 'postgres', reason }));
  }
  return withClient(ctx, (client) => lakeGroup(client, opts, manifest, log));
}

function groupSql(by: GroupBy, source: string, where: string, top: number | undefined): string {
  const limit = top ? `LIMIT ${Math.trunc(top)}` : '';
  const agg = (col: string) => `SELECT ${col} AS id, count(*) AS n, sum(amount) AS s FROM ${source} WHERE ${where} GROUP BY ${col}`;
  if (by !== 'customer') {
    return `SELECT g.id::text AS id, c.name AS name, g.n::text AS n, g.s::text AS total
              FROM (${agg(`${by}_id`)}) g LEFT JOIN customers c ON c.id = g.id
             ORDER BY g.s DESC, g.id ${limit}`;
  }
  return `WITH i AS (${agg('issuer_id')}), r AS (${agg('receiver_id')}),
          g AS (SELECT coalesce(i.id, r.id) AS id, coalesce(i.n, 0) + coalesce(r.n, 0) AS n,
                       coalesce(i.s, 0) + coalesce(r.s, 0) AS s, coalesce(i.s, 0) AS issued, coalesce(r.s, 0) AS received
                  FROM i FULL JOIN r ON i.id = r.id)
          SELECT g.id::text AS id, c.name AS name, g.n::text AS n, g.s::text AS total, g.issued::text AS issued, g.received::text AS received
            FROM g LEFT JOIN customers c ON c.id = g.id
           ORDER BY g.s DESC, g.id ${limit}`;
}

/** The same rows from both engines: amounts at the column's scale, average and net computed exactly here. */
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

async function postgresGroup(client: Client, opts: GroupOptions): Promise<GroupRow[]> {
  const { scale } = await amountType(client);
  const where = `issue_date >= ${timeLiteral(opts.window.from)} AND issue_date < ${timeLiteral(opts.window.to)}`;
  const { rows } = await client.query<RawRow>(groupSql(opts.by, PARENT, where, opts.top));
  return finish(rows, opts.by, scale);
}

/** Months of the window touched by updates or deletes since the export (counters moved, then checked exactly). */
async function staleMonths(client: Client, manifest: Manifest, window: Window, counters: Record<string, string>): Promise<string[]> {
  const months = windowMonths(window);
  const moved = movedCounters(manifest.changeCounters ?? {}, counters).filter((n) => n !== 'customers');
  if (!moved.length) return [];
  const suspects = new Set<string>();
  for (const leaf of moved) {
    const m = /_p(\d{4})_(\d{2})$/.exec(leaf);
    if (m) suspects.add(`${m[1]}-${m[2]}`);
    else months.forEach((x) => suspects.add(x)); // DEFAULT partition or a plain table: any month
  }
  const candidates = months.filter((m) => suspects.has(m));
  if (!candidates.length) return [];
  const stats = await monthStats(client, manifest.watermark, undefined, { from: monthBounds(candidates[0]).from, to: monthBounds(candidates[candidates.length - 1]).to });
  return candidates.filter((m) => {
    const s = stats.get(m);
    const e = manifest.months[m];
    return (s?.rows ?? 0) !== (e?.rows ?? 0) || atScale(s?.sum ?? '0', manifest.amount.scale) !== atScale(e?.sum ?? '0', manifest.amount.scale);
  });
}

async function lakeGroup(client: Client, opts: GroupOptions, manifest: Manifest, log: Logger): Promise<GroupResult> {
  const { window } = opts;
  const scale = manifest.amount.scale;
  // Counters before the snapshot: a change after this point is either in the snapshot or moves them.
  const counters = await changeCounters(client);
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const stale = await staleMonths(client, manifest, window, counters);
    const months = windowMonths(window);
    if (opts.engine === 'auto' && stale.length * 2 > months.length) {
      const rows = await postgresGroup(client, opts);
      await client.query('COMMIT');
      return { rows, engine: 'postgres', reason: `the lake is stale for ${stale.length} of the ${months.length} months (rows updated or deleted since the export at ${manifest.exportedAt}: ${stale.join(', ')})`, staleMonths: stale };
    }
    const lakeMonths = months.filter((m) => manifest.months[m] && !stale.includes(m));
    const files = lakeMonths.flatMap((m) => manifest.months[m].files);
    const decimal = `DECIMAL(${manifest.amount.precision},${manifest.amount.scale})`;
    const staleCond = stale.map((m) => `(issue_date >= ${timeLiteral(monthBounds(m).from)} AND issue_date < ${timeLiteral(monthBounds(m).to)})`);
    const deltaWhere = `issue_date >= ${timeLiteral(window.from)} AND issue_date < ${timeLiteral(window.to)} AND (created_xid >= ${xidLiteral(manifest.watermark)}${staleCond.length ? ' OR ' + staleCond.join(' OR ') : ''})`;
    const customersMoved = movedCounters({ customers: manifest.changeCounters?.customers ?? '0' }, { customers: counters.customers ?? '0' }).length > 0;

    const result = await withDuckDb(async (duck) => {
      // Usually nothing or little is missing from the lake: count it first (an index range scan on created_xid).
      const { rows: [{ n }] } = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${PARENT} WHERE ${deltaWhere}`);
      const deltaRows = Number(n);
      if (deltaRows > 0) {
        const fifo = makeFifo(path.resolve(opts.lake));
        try {
          await copyIntoDuckDb(client, duck, `SELECT issue_date, issuer_id, receiver_id, amount FROM ${PARENT} WHERE ${deltaWhere}`,
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
      const raw = (await queryRows(duck, groupSql(opts.by, 'win', where, opts.top))) as unknown as RawRow[];
      return { raw, deltaRows };
    });
    if (customersMoved && result.raw.length) await refreshNames(client, result.raw);
    await client.query('COMMIT');
    const parts = [`lake exported ${manifest.exportedAt} (watermark ${manifest.watermark})`, `${result.deltaRows} row(s) not in the lake read from PostgreSQL`];
    if (stale.length) parts.push(`months ${stale.join(', ')} read whole from PostgreSQL (rows updated or deleted since the export)`);
    if (customersMoved) parts.push('customer names from PostgreSQL (customers changed since the export)');
    log.debug(`group: ${files.length} lake file(s), delta ${result.deltaRows} row(s)`);
    return {
      rows: finish(result.raw, opts.by, scale),
      engine: 'duckdb',
      reason: `${opts.engine === 'auto' ? 'the lake is fresh enough: ' : ''}${parts.join('; ')}`,
      deltaRows: result.deltaRows,
      staleMonths: stale,
      lakeExportedAt: manifest.exportedAt,
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function refreshNames(client: Client, rows: RawRow[]): Promise<void> {
  const { rows: names } = await client.query<{ id: string; name: string }>('SELECT id::text AS id, name FROM customers WHERE id = ANY($1::bigint[])', [rows.map((r) => r.id)]);
  const byId = new Map(names.map((n) => [n.id, n.name]));
  for (const r of rows) r.name = byId.get(r.id) ?? null;
}

export type { DuckDBConnection };
