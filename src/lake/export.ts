// `invoices export`: PostgreSQL -> a Parquet lake, one hive partition per month, incremental
// on a transaction-id watermark, atomic per month, with a manifest written last.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Client, DbContext } from '../db/client.js';
import { connectionSettings, withClient } from '../db/client.js';
import { InterruptedError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { listPartitions, monthBounds } from '../schema/partitions.js';
import { qualified } from '../tables.js';
import { copyIntoDuckDb, makeFifo, type CopyFormat } from './copy-stream.js';
import { type DuckDBConnection, queryRows, sqlString, withDuckDbConnections } from './duckdb.js';
import { readManifest, writeManifest, type Manifest, type MonthEntry } from './manifest.js';
import { findPsql, psqlConnection, psqlCopyToFifo } from './psql-source.js';
import { changesSince, type Changes } from '../table/changes.js';
import { customersSelect } from '../table/customers.js';
import { describeTable, leafRelation, untrackedAdvice, type SourceTable } from '../table/describe.js';
import { readLineage } from '../table/lineage.js';
import { ensureTracked } from '../table/tracking.js';
import { assertXidsBehindServer, MONTH_OF_ISSUE, rangeCondition, xidHorizon, xidLiteral } from '../table/watermark.js';
import { monthStats, type MonthStats } from './month-stats.js';
import { describeTarget } from './target.js';

export interface ExportOptions {
  out: string;
  /** Rewrite every month, ignoring the manifest. */
  full?: boolean;
  signal?: AbortSignal;
  log?: Logger;
  onProgress?: (p: { month: string; done: number; total: number }) => void;
  /** Months exported at the same time (default 2: PostgreSQL and DuckDB each get a core). */
  parallel?: number;
  /** Use psql for COPY when it is on PATH (default true). */
  psql?: boolean;
}

export interface MonthOutcome {
  month: string;
  action: 'written' | 'unchanged' | 'removed';
  rows: number;
  sum: string;
  reason: string;
}

export interface ExportResult {
  out: string;
  /** null: the table has no created_xid, the lake is a full snapshot. */
  watermark: string | null;
  previousWatermark?: string | null;
  months: MonthOutcome[];
  customers: number;
  rowsWritten: number;
  seconds: number;
  rowsPerSecond: number;
  /** How rows left PostgreSQL: psql COPY streams, or node-postgres. */
  reader: string;
}

const INVOICE_COLUMNS = 'invoice_id, issue_date, issuer_id, receiver_id, amount';

/** Exports invoices (the months that changed, or all with `full`) and customers to the lake at `out`. */
export async function exportLake(ctx: DbContext, opts: ExportOptions): Promise<ExportResult> {
  const log = opts.log ?? ctx.log ?? silentLogger;
  const out = path.resolve(opts.out);
  const started = performance.now();
  mkdirSync(path.join(out, 'invoices'), { recursive: true });
  const previous = opts.full ? undefined : readManifest(out);
  const psql = opts.psql !== false ? findPsql() : null;
  const conn = psql ? psqlConnection(await connectionSettings(ctx)) : undefined;
  const parallel = psql ? Math.max(1, opts.parallel ?? 2) : 1;

  return withClient(ctx, async (client) => {
    const source = await ensureTracked(client, await describeTable(client, ctx.config.tables), log);
    if (!source.incremental) log.warn(`${untrackedAdvice(source)}; until then every export rewrites every month`);
    // One snapshot for the whole export, shared with the psql streams: statistics, change log and rows agree.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const staged: string[] = [];
    try {
      await assertXidsBehindServer(client, source);
      const horizon = source.incremental ? (await xidHorizon(client)).horizon : null;
      const snapshot = conn ? (await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0].id : '';
      const amount = source.amount;
      const decimal = `DECIMAL(${amount.precision},${amount.scale})`;
      const sameType = previous && previous.amount.precision === amount.precision && previous.amount.scale === amount.scale;
      if (previous && !sameType) log.info(`amount is now ${decimal}: rewriting every month`);
      // Incremental needs the watermark of a previous export of this shape.
      const base = sameType && previous.watermark !== null && horizon !== null ? previous : undefined;
      // Incremental: per-month statistics find the dirty months. A full export of a partitioned
      // table takes its months from the catalog (one scan fewer).
      const stats = base || source.layout === 'plain' ? await monthStats(client, source, horizon ?? undefined, base?.watermark ?? undefined) : undefined;
      const changes = base ? await changesSince(client, source, base, [...new Set([...(stats?.keys() ?? []), ...Object.keys(base.months)])]) : undefined;
      if (changes?.all) log.info(`rewriting every month: ${changes.all}`);
      const plan = planMonths(stats ?? new Map(), changes?.all ? undefined : base, changes);
      const lineage = changes?.lineage ?? (await readLineage(client, source));
      const toWrite = stats ? plan.filter((p) => p.write).map((p) => p.month) : await catalogMonths(client, source);
      const estimates = stats ? new Map([...stats].map(([m, s]) => [m, s.rows])) : await partitionEstimates(client, source);
      const total = toWrite.reduce((n, m) => n + (estimates.get(m) ?? 0), 0);
      const now = new Date().toISOString();
      let done = 0;

      const written = new Map<string, { rows: number; sum: string; dir: string }>();
      const result = await withDuckDbConnections(parallel, async (ducks) => {
        // Months shared between the streams, largest first to the least loaded, so they finish together.
        const lists: string[][] = ducks.map(() => []);
        const load = ducks.map(() => 0);
        for (const m of [...toWrite].sort((a, b) => (estimates.get(b) ?? 0) - (estimates.get(a) ?? 0))) {
          const i = load.indexOf(Math.min(...load));
          lists[i].push(m);
          load[i] += estimates.get(m) ?? 0;
        }
        const selectFor = (m: string) => {
          const { from, to } = monthBounds(m);
          return `SELECT ${INVOICE_COLUMNS} FROM ${source.relation} WHERE ${rangeCondition(from, to)}${horizon !== null ? ` AND created_xid < ${xidLiteral(horizon)}` : ''}`;
        };
        const columns = { invoice_id: 'BIGINT', issue_date: 'TIMESTAMPTZ', issuer_id: 'BIGINT', receiver_id: 'BIGINT', amount: decimal };
        const worker = async (duck: DuckDBConnection, months: string[]) => {
          if (!months.length) return;
          const fifo = makeFifo(out);
          try {
            for (const m of months) {
              if (opts.signal?.aborted) throw new InterruptedError('export interrupted: the lake still holds the previous export (its manifest is unchanged)');
              const dir = path.join(out, 'invoices', `.tmp-month=${m}-${process.pid}`);
              staged.push(dir);
              const w = await writeParquet(client, duck, { select: selectFor(m), fifo, dir, sumColumn: 'amount', signal: opts.signal, columns, format: 'text', psql: conn ? { conn, snapshot } : undefined });
              const s = stats?.get(m);
              if (stats && (w.rows !== (s?.rows ?? 0) || (s && w.sum !== s.sum))) {
                throw new Error(`month ${m}: wrote ${w.rows} rows summing ${w.sum}, PostgreSQL has ${s?.rows ?? 0} summing ${s?.sum ?? 0}; the lake is unchanged`);
              }
              if (w.rows > 0) written.set(m, { ...w, dir });
              done += w.rows;
              opts.onProgress?.({ month: m, done, total });
            }
          } finally {
            rmSync(fifo, { force: true });
          }
        };
        await Promise.all(ducks.map((d, i) => worker(d, lists[i])));
        const customersDir = path.join(out, `.tmp-customers-${process.pid}`);
        staged.push(customersDir);
        const customers = await writeParquet(client, ducks[0], {
          select: await customersSelect(client, ctx.config.tables),
          columns: { id: 'BIGINT', name: 'VARCHAR', email: 'VARCHAR', country: 'VARCHAR', segment: 'VARCHAR', created_at: 'TIMESTAMPTZ' },
          dir: customersDir,
          fifo: makeFifo(out),
          cleanFifo: true,
        });
        return { customers: customers.rows, customersDir };
      });
      await client.query('COMMIT');

      // Everything is staged and checked: swap the months in, one rename each, then the manifest.
      const months: Record<string, MonthEntry> = {};
      const outcomes: MonthOutcome[] = [];
      for (const [m, w] of written) {
        replaceDir(path.join(out, 'invoices', `month=${m}`), w.dir);
        months[m] = { files: [`invoices/month=${m}/part-0.parquet`], rows: w.rows, sum: w.sum, watermark: horizon, exportedAt: now };
        outcomes.push({ month: m, action: 'written', rows: w.rows, sum: w.sum, reason: plan.find((p) => p.month === m)?.reason ?? 'full export' });
      }
      for (const p of plan) {
        if (!p.write && stats?.has(p.month) && base?.months[p.month]) {
          months[p.month] = base.months[p.month];
          outcomes.push({ month: p.month, action: 'unchanged', rows: months[p.month].rows, sum: months[p.month].sum, reason: p.reason });
        }
      }
      for (const m of existingMonthDirs(out)) {
        if (months[m]) continue;
        replaceDir(path.join(out, 'invoices', `month=${m}`), undefined);
        outcomes.push({ month: m, action: 'removed', rows: 0, sum: '0', reason: plan.find((p) => p.month === m)?.reason ?? 'no rows in PostgreSQL' });
      }
      replaceDir(path.join(out, 'customers'), result.customersDir);
      outcomes.sort((a, b) => a.month.localeCompare(b.month));
      const manifest: Manifest = {
        version: 1,
        watermark: horizon,
        exportedAt: now,
        source: describeTarget(ctx),
        sourceKey: source.key,
        lineage,
        amount,
        months: Object.fromEntries(Object.entries(months).sort(([a], [b]) => a.localeCompare(b))),
        customers: { files: ['customers/part-0.parquet'], rows: result.customers, exportedAt: now },
      };
      writeManifest(out, manifest);
      const seconds = (performance.now() - started) / 1000;
      return {
        out,
        watermark: horizon,
        previousWatermark: previous?.watermark,
        months: outcomes,
        customers: result.customers,
        rowsWritten: done,
        seconds,
        rowsPerSecond: seconds > 0 ? done / seconds : 0,
        reader: conn ? `psql COPY, ${parallel} stream(s)` : 'node-postgres COPY, 1 stream (psql not found on PATH)',
      };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      for (const d of staged) rmSync(d, { recursive: true, force: true });
    }
  });
}

/**
 * Which months to write: new, changed (rows after the last watermark, rows updated or deleted,
 * a partition replaced, count or sum), or all without a manifest. `changes`: the months whose
 * rows may differ from what the lake holds, with why.
 */
export function planMonths(stats: Map<string, MonthStats>, previous: Manifest | undefined, changes?: Pick<Changes, 'months'>): { month: string; write: boolean; reason: string }[] {
  const all = new Set([...stats.keys(), ...Object.keys(previous?.months ?? {})]);
  return [...all].sort().map((month) => {
    const s = stats.get(month);
    const m = previous?.months[month];
    if (!s) return { month, write: false, reason: 'no rows left in PostgreSQL' };
    if (!previous) return { month, write: true, reason: 'full export' };
    if (!m) return { month, write: true, reason: 'new month' };
    if (s.fresh > 0) return { month, write: true, reason: `${s.fresh} rows inserted since the last export` };
    const changed = changes?.months.get(month);
    if (changed) return { month, write: true, reason: `${changed} since the last export` };
    if (s.rows !== m.rows) return { month, write: true, reason: `row count ${m.rows} -> ${s.rows}` };
    if (s.sum !== m.sum) return { month, write: true, reason: `sum ${m.sum} -> ${s.sum}` };
    return { month, write: false, reason: 'unchanged' };
  });
}

/** The months of a partitioned table: one per monthly partition, plus those with rows in DEFAULT. */
async function catalogMonths(client: Client, source: SourceTable): Promise<string[]> {
  const parts = await listPartitions(client, qualified(source.tables.invoices));
  const months = new Set<string>();
  for (const p of parts) {
    if (p.isDefault || !p.from || !p.to) continue;
    for (let m = p.from.slice(0, 7); `${m}-01T00:00:00.000Z` < p.to; m = monthBounds(m).to.slice(0, 7)) months.add(m);
  }
  const def = parts.find((p) => p.isDefault);
  if (def) {
    const { rows } = await client.query<{ m: string }>(
      `SELECT DISTINCT to_char(${MONTH_OF_ISSUE}, 'YYYY-MM') AS m FROM ${leafRelation(source, def.name)}`,
    );
    rows.forEach((r) => months.add(r.m));
  }
  return [...months].sort();
}

/** Estimated rows per month from the planner's statistics of each partition (progress and scheduling only). */
async function partitionEstimates(client: Client, source: SourceTable): Promise<Map<string, number>> {
  const parts = await listPartitions(client, qualified(source.tables.invoices));
  const { rows } = await client.query<{ name: string; n: string }>(
    `SELECT c.relname AS name, greatest(c.reltuples, 0)::bigint::text AS n FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf`,
    [qualified(source.tables.invoices)],
  );
  const byName = new Map(rows.map((r) => [r.name, Number(r.n)]));
  return new Map(parts.filter((p) => p.from).map((p) => [p.from!.slice(0, 7), byName.get(p.name) ?? 0]));
}

function existingMonthDirs(out: string): string[] {
  const dir = path.join(out, 'invoices');
  if (!existsSync(dir)) return [];
  return readdirNames(dir).map((d) => /^month=(\d{4}-\d{2})$/.exec(d)?.[1]).filter((m): m is string => Boolean(m));
}

function readdirNames(dir: string): string[] {
  return readdirSync(dir).sort();
}

interface WriteSpec {
  select: string;
  columns: Record<string, string>;
  /** A staging directory (the caller renames it into place). */
  dir: string;
  fifo: string;
  cleanFifo?: boolean;
  sumColumn?: string;
  signal?: AbortSignal;
  /** Text for the invoices (numbers and timestamps only: cheaper for PostgreSQL to write), csv otherwise. */
  format?: CopyFormat;
  /** Read with psql in this snapshot rather than through node-postgres. */
  psql?: { conn: { args: string[]; env: Record<string, string> }; snapshot: string };
}

/** Writes `select` as dir/part-0.parquet; returns the row count and sum read back from the file. */
async function writeParquet(client: Client, duck: DuckDBConnection, spec: WriteSpec): Promise<{ rows: number; sum: string }> {
  rmSync(spec.dir, { recursive: true, force: true });
  mkdirSync(spec.dir, { recursive: true });
  const file = path.join(spec.dir, 'part-0.parquet');
  try {
    const statement = (source: string) => `COPY (SELECT * FROM ${source}) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION snappy)`;
    const psql = spec.psql;
    await copyIntoDuckDb(client, duck, spec.select, spec.columns, spec.fifo, statement, {
      signal: spec.signal,
      format: spec.format,
      source: psql ? (fifo) => psqlCopyToFifo(psql.conn, psql.snapshot, spec.select, fifo, spec.format ?? 'csv', spec.signal) : undefined,
    });
    const sum = spec.sumColumn ? `CAST(coalesce(sum(${spec.sumColumn}), 0) AS VARCHAR)` : "'0'";
    const [r] = await queryRows(duck, `SELECT count(*)::VARCHAR AS n, ${sum} AS s FROM read_parquet(${sqlString(file)})`);
    return { rows: Number(r.n), sum: String(r.s) };
  } finally {
    if (spec.cleanFifo) rmSync(spec.fifo, { force: true });
  }
}

/** Puts `tmp` at `dir` (or removes `dir` when tmp is undefined): the old directory is renamed away first, then dropped. */
function replaceDir(dir: string, tmp: string | undefined): void {
  const old = path.join(path.dirname(dir), `.old-${path.basename(dir)}-${process.pid}`);
  if (existsSync(dir)) renameSync(dir, old);
  if (tmp) renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
}
