// `invoices export`: PostgreSQL -> a Parquet lake, one hive partition per month, incremental
// on a transaction-id watermark. The lake is a folder export owns (files.ts): one export at a
// time (lock.ts), new files under new names committed by the manifest (commit.ts), so no file
// it did not write is ever touched and a crash at any instant is repaired by the next run.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { DbContext } from '../db/client.js';
import { connectionSettings } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { DatabaseError, InterruptedError, UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { monthBounds } from '../schema/partitions.js';
import { makeFifo } from './copy-stream.js';
import { type DuckDBConnection, withDuckDbConnections } from './duckdb.js';
import { commitExport, recoverLake, type StagedFile } from './commit.js';
import { checkFile, describeFile, prepareLakeDir, STAGING } from './files.js';
import { acquireLakeLock } from './lock.js';
import {
  MANIFEST,
  MANIFEST_VERSION,
  manifestFiles,
  parseManifest,
  readManifestText,
  type FileInfo,
  type Manifest,
  type MonthEntry,
} from './manifest.js';
import { findPsql, psqlConnection } from './psql-source.js';
import { changesSince } from '../table/changes.js';
import { customersSelect, customersStamp } from '../table/customers.js';
import { describeTable, untrackedAdvice } from '../table/describe.js';
import { readLineage } from '../table/lineage.js';
import { ensureTracked } from '../table/tracking.js';
import { exportRoute, usingRoute } from './export-route.js';
import { assertXidsBehindServer, rangeCondition, xidHorizon, xidLiteral } from '../table/watermark.js';
import { monthStats } from './month-stats.js';
import { describeTarget } from './target.js';
import { catalogMonths, partitionEstimates, planMonths } from './export-plan.js';
import { writeParquet } from './write-parquet.js';

export interface ExportOptions {
  out: string;
  /** Rewrite every month, ignoring the manifest. */
  full?: boolean;
  signal?: AbortSignal;
  log?: Logger;
  /**
   * Progress of the whole job: phase 'invoices' once before the first month (done 0) and after
   * each month staged (rows and months done of the job's totals; rows are PostgreSQL's counts, or
   * the catalog's estimates on a full export of a partitioned table), then phase 'customers'.
   */
  onProgress?: (p: ExportProgress) => void;
  /** Months exported at the same time (default 2: PostgreSQL and DuckDB each get a core). */
  parallel?: number;
  /** Use psql for COPY when it is on PATH (default true). */
  psql?: boolean;
  /** Wait for another export of this lake to finish (default), or refuse at once (exit 1). */
  wait?: boolean;
}

export interface ExportProgress {
  phase: 'invoices' | 'customers';
  /** The month just staged (phase 'invoices', after the first call). */
  month?: string;
  done: number;
  total: number;
  monthsDone: number;
  months: number;
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
  /** The export's id: in the manifest and in the names of the files it wrote. */
  exportId: string;
  /** The server the rows were read from (src/lake/export-route.ts). */
  from: 'primary' | 'replica';
}

const INVOICE_COLUMNS = 'invoice_id, issue_date, issuer_id, receiver_id, amount';
const INTERRUPTED = 'export interrupted: the lake still holds the previous export (its manifest is unchanged)';

/**
 * Exports invoices (the months that changed, or all with `full`) and customers to the lake at
 * `out`, under the lake's lock; the months whose files are missing or changed are rewritten too.
 */
export async function exportLake(ctx: DbContext, opts: ExportOptions): Promise<ExportResult> {
  const log = opts.log ?? ctx.log ?? silentLogger;
  // Before any work: a folder that is not ours, or cannot be, is refused in one line.
  const out = prepareLakeDir(opts.out);
  const lock = await acquireLakeLock(out, { wait: opts.wait !== false, log, signal: opts.signal, command: 'export' });
  const started = performance.now(); // the time and rate said at the end leave out the wait for the lock
  const staging = path.join(out, STAGING);
  try {
    recoverLake(out, log);
    // The manifest this export starts from: it must still be the one on disk when it commits.
    const startedFrom = readManifestText(out);
    const current = startedFrom === undefined ? undefined : parseManifest(startedFrom, path.join(out, MANIFEST));
    mkdirSync(staging, { recursive: true });
    return await exportInto(ctx, opts, { out, staging, current, startedFrom, log, started });
  } catch (err) {
    // Ctrl-C or SIGTERM ends psql and DuckDB mid-copy with errors of their own: it was the interrupt.
    if (opts.signal?.aborted && !(err instanceof InterruptedError)) throw new InterruptedError(INTERRUPTED, { cause: err });
    throw err;
  } finally {
    rmSync(staging, { recursive: true, force: true });
    lock.release();
  }
}

interface Lake {
  out: string;
  staging: string;
  current: Manifest | undefined;
  startedFrom: string | undefined;
  log: Logger;
  started: number;
}

async function exportInto(ctx: DbContext, opts: ExportOptions, lake: Lake): Promise<ExportResult> {
  const { out, staging, current, log } = lake;
  const exportId = newExportId();
  const previous = opts.full ? undefined : current;
  // Each file the manifest lists is there as written (size and mtime; the hash when the mtime moved).
  const fileProblems = new Map<string, string>();
  const touched = new Map<string, FileInfo>();
  for (const [m, e] of Object.entries(previous?.months ?? {})) {
    for (const f of e.files) {
      const c = checkFile(out, f, e.fileInfo?.[f], false);
      if (c.problem) {
        fileProblems.set(m, c.problem);
        log.warn(`${c.problem}: month ${m} is written again`);
      }
      if (c.touched) touched.set(f, c.touched);
    }
  }
  // The server that answers: a replica caught up with the primary, or the primary (export-route.ts).
  const route = await exportRoute(ctx, { log, signal: opts.signal });
  const psql = opts.psql !== false ? findPsql() : null;
  const conn = psql ? psqlConnection(await connectionSettings(route.ctx)) : undefined;
  const parallel = psql ? Math.max(1, opts.parallel ?? 2) : 1;

  return usingRoute(route, async (client) => {
    // Nothing is written on a replica: the setup ran on the primary (export-route.ts).
    const source =
      route.on === 'replica'
        ? await describeTable(client, ctx.config.tables)
        : (route.source ?? (await ensureTracked(client, await describeTable(client, ctx.config.tables), log)));
    if (current?.sourceKey && current.sourceKey !== source.key && !opts.full) {
      throw new UsageError(
        `the lake at ${out} holds ${current.source}, another table or column mapping than ${describeTarget(ctx)}: choose another --out, or replace its contents with --full`,
      );
    }
    if (!source.incremental) log.warn(`${untrackedAdvice(source)}; until then every export rewrites every month`);
    // Before the snapshot: a change counted in the stamp is in the exported names (the counters lag, never lead).
    const customersAt = route.customersAt ?? (await customersStamp(client, source.tables));
    // One snapshot for the whole export, shared with the psql streams: statistics, change log and rows agree.
    const snap = await transaction(
      client,
      async () => {
        await assertXidsBehindServer(client, source);
        const horizon = source.incremental ? (await xidHorizon(client)).horizon : null;
        // Cannot happen after export-route's wait; checked since a lake gone back in time would be wrong silently.
        if (route.on === 'replica' && horizon !== null && current?.watermark && BigInt(horizon) < BigInt(current.watermark)) {
          throw new DatabaseError(
            `replica ${route.name} is behind the lake (its horizon ${horizon} < the lake's watermark ${current.watermark}): the lake is unchanged; run again, or without the replica`,
          );
        }
        const snapshot = conn ? (await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0].id : '';
        const amount = source.amount;
        const decimal = `DECIMAL(${amount.precision},${amount.scale})`;
        const sameType = previous && previous.amount.precision === amount.precision && previous.amount.scale === amount.scale;
        if (previous && !sameType) log.info(`amount is now ${decimal}: rewriting every month`);
        // Incremental needs the watermark of a previous export of this shape.
        const base = sameType && previous.watermark !== null && horizon !== null ? previous : undefined;
        // Incremental: per-month statistics find the dirty months. A full export of a partitioned
        // table takes its months from the catalog (one scan fewer).
        const stats =
          base || source.layout === 'plain'
            ? await monthStats(client, source, horizon ?? undefined, base?.watermark ?? undefined)
            : undefined;
        const changes = base
          ? await changesSince(client, source, base, [...new Set([...(stats?.keys() ?? []), ...Object.keys(base.months)])])
          : undefined;
        if (changes?.all) log.info(`rewriting every month: ${changes.all}`);
        const plan = planMonths(stats ?? new Map(), changes?.all ? undefined : base, changes);
        for (const p of plan) {
          const problem = fileProblems.get(p.month);
          if (problem && !p.write && stats?.has(p.month)) Object.assign(p, { write: true, reason: problem });
        }
        const lineage = changes?.lineage ?? (await readLineage(client, source));
        const toWrite = stats ? plan.filter((p) => p.write).map((p) => p.month) : await catalogMonths(client, source);
        const estimates = stats ? new Map([...stats].map(([m, s]) => [m, s.rows])) : await partitionEstimates(client, source);
        const total = toWrite.reduce((n, m) => n + (estimates.get(m) ?? 0), 0);
        const now = new Date().toISOString();
        let done = 0;
        let monthsDone = 0;
        log.debug(`export phase 1/2 invoices: ${toWrite.length} month(s) to write, ${total} rows${stats ? '' : ' (estimated)'}`);
        opts.onProgress?.({ phase: 'invoices', done, total, monthsDone, months: toWrite.length });

        const written = new Map<string, { rows: number; sum: string; staged: string; info: FileInfo }>();
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
          // One stop for every stream: Ctrl-C, or the first stream that fails. Each stream is waited
          // for before the DuckDB connections close: closing one mid-query hangs the process for good.
          const stop = new AbortController();
          const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
          const interrupt = () => {
            for (const d of ducks) d.interrupt();
          };
          signal.addEventListener('abort', interrupt);
          const worker = async (duck: DuckDBConnection, months: string[]) => {
            if (!months.length) return;
            const fifo = makeFifo(staging);
            try {
              for (const m of months) {
                if (signal.aborted) throw new InterruptedError(INTERRUPTED);
                // Staged under a fixed name; the commit renames it to invoices/month=M/part-<exportId>.parquet.
                const file = path.join(staging, `month=${m}.parquet`);
                const w = await writeParquet(client, duck, {
                  select: selectFor(m),
                  fifo,
                  file,
                  sumColumn: 'amount',
                  signal,
                  columns,
                  format: 'text',
                  psql: conn ? { conn, snapshot } : undefined,
                });
                const s = stats?.get(m);
                if (stats && (w.rows !== (s?.rows ?? 0) || (s && w.sum !== s.sum))) {
                  throw new Error(
                    `month ${m}: wrote ${w.rows} rows summing ${w.sum}, PostgreSQL has ${s?.rows ?? 0} summing ${s?.sum ?? 0}; the lake is unchanged`,
                  );
                }
                if (w.rows > 0) written.set(m, { ...w, staged: file, info: describeFile(file) });
                else rmSync(file, { force: true });
                done += w.rows;
                monthsDone++;
                log.debug(`export: month ${m} staged: ${w.rows} rows, ${monthsDone}/${toWrite.length} month(s), ${done}/${total} rows`);
                opts.onProgress?.({ phase: 'invoices', month: m, done, total: Math.max(total, done), monthsDone, months: toWrite.length });
              }
            } finally {
              rmSync(fifo, { force: true });
            }
          };
          try {
            const settled = await Promise.allSettled(
              ducks.map((d, i) =>
                worker(d, lists[i]).catch((err: unknown) => {
                  stop.abort();
                  throw err;
                }),
              ),
            );
            const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
            if (failed) throw opts.signal?.aborted ? new InterruptedError(INTERRUPTED, { cause: failed.reason }) : failed.reason;
            const file = path.join(staging, 'customers.parquet');
            log.debug('export phase 2/2 customers');
            opts.onProgress?.({ phase: 'customers', done: 0, total: 0, monthsDone, months: toWrite.length });
            const customers = await writeParquet(client, ducks[0], {
              select: await customersSelect(client, ctx.config.tables),
              columns: {
                id: 'BIGINT',
                name: 'VARCHAR',
                email: 'VARCHAR',
                country: 'VARCHAR',
                segment: 'VARCHAR',
                created_at: 'TIMESTAMPTZ',
              },
              file,
              fifo: makeFifo(staging),
              cleanFifo: true,
              signal,
            });
            return { customers: customers.rows, staged: file, info: describeFile(file) };
          } finally {
            signal.removeEventListener('abort', interrupt);
          }
        });
        return { horizon, amount, plan, stats, base, lineage, now, written, result, done };
      },
      { isolation: 'repeatable read', readOnly: true },
    );
    const { horizon, amount, plan, stats, base, lineage, now, written, result, done } = snap;
    if (opts.signal?.aborted) throw new InterruptedError(INTERRUPTED);

    // Everything is staged and checked: the new files go in under new names, the manifest commits them.
    const months: Record<string, MonthEntry> = {};
    const outcomes: MonthOutcome[] = [];
    const staged: StagedFile[] = [];
    for (const [m, w] of [...written].sort(([a], [b]) => a.localeCompare(b))) {
      const file = `invoices/month=${m}/part-${exportId}.parquet`;
      staged.push({ staged: w.staged, file });
      months[m] = { files: [file], fileInfo: { [file]: w.info }, rows: w.rows, sum: w.sum, watermark: horizon, exportedAt: now };
      outcomes.push({
        month: m,
        action: 'written',
        rows: w.rows,
        sum: w.sum,
        reason: plan.find((p) => p.month === m)?.reason ?? 'full export',
      });
    }
    for (const p of plan) {
      if (!p.write && stats?.has(p.month) && base?.months[p.month]) {
        const kept = base.months[p.month];
        const info = kept.fileInfo && Object.fromEntries(Object.entries(kept.fileInfo).map(([f, i]) => [f, touched.get(f) ?? i]));
        months[p.month] = info ? { ...kept, fileInfo: info } : kept;
        outcomes.push({ month: p.month, action: 'unchanged', rows: kept.rows, sum: kept.sum, reason: p.reason });
      }
    }
    for (const m of Object.keys(current?.months ?? {})) {
      if (months[m]) continue;
      outcomes.push({
        month: m,
        action: 'removed',
        rows: 0,
        sum: '0',
        reason: plan.find((p) => p.month === m)?.reason ?? 'no rows in PostgreSQL',
      });
    }
    const customersFile = `customers/part-${exportId}.parquet`;
    staged.push({ staged: result.staged, file: customersFile });
    outcomes.sort((a, b) => a.month.localeCompare(b.month));
    const manifest: Manifest = {
      version: MANIFEST_VERSION,
      exportId,
      watermark: horizon,
      exportedAt: now,
      source: describeTarget(ctx),
      sourceKey: source.key,
      lineage,
      amount,
      months: Object.fromEntries(Object.entries(months).sort(([a], [b]) => a.localeCompare(b))),
      customers: {
        files: [customersFile],
        fileInfo: { [customersFile]: result.info },
        rows: result.customers,
        exportedAt: now,
        stamp: customersAt,
      },
    };
    const keep = new Set(manifestFiles(manifest));
    commitExport(out, manifest, staged, current ? manifestFiles(current).filter((f) => !keep.has(f)) : [], lake.startedFrom, log);
    const seconds = (performance.now() - lake.started) / 1000;
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
      exportId,
      from: route.on,
    };
  });
}

/** A new export's id, sortable by time and unique: 20260101T020000Z-a1b2c3. */
function newExportId(): string {
  return `${new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}
