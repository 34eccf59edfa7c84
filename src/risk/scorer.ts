// Exactly-once scoring. A run reads the horizon pg_snapshot_xmin(pg_current_snapshot()):
// every transaction below it has ended, so no invoice with a smaller created_xid can still
// appear. It walks invoices below the horizon in (created_xid, invoice_id) order after the
// stored cursor, a batch at a time, and commits each batch's scores, dead letters and the new
// cursor in one transaction. A crash loses at most the batch in flight, which the next run
// scores again; the primary key on (source_id, invoice_id, model_version) makes any retry
// harmless. Everything is per source table (two invoices tables in one database keep separate
// scores, dead letters, cursors and locks), and a score is bound to the row it scored
// (invoice_xid): a new row with an old invoice id replaces the stale score. Each run first
// reconciles with the table's lineage (reconcile.ts).
import type { Client } from '../db/client.js';
import { describeTable, type SourceTable } from '../table/describe.js';
import { assertXidsBehindServer } from '../table/watermark.js';
import { transaction } from '../db/transaction.js';
import { DatabaseError, InterruptedError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TableMap } from '../tables.js';
import { globalStats, HistoryStore } from './history.js';
import { lockModel, unlockModel } from './model-lock.js';
import { computeFeatures, score } from './features.js';
import type { GlobalStats, Level } from './model.js';
import { reconcileLineage } from './reconcile.js';
import { invoiceSelect, toInvoice, type SourceInvoice } from './source.js';
import {
  assertRiskReady,
  compareCursor,
  compareIds,
  ensureWatermark,
  MIN_CURSOR,
  readWatermark,
  type Cursor,
  type PreparedBatch,
  writeBatch,
} from './store.js';

export { compareCursor, MIN_CURSOR, type Cursor } from './store.js';

/** Which invoices a run scores: after the stored cursor, all of them again, or those issued since a time. */
export type Since = { kind: 'last' } | { kind: 'all' } | { kind: 'date'; from: string };

export interface ScorerOptions {
  modelVersion: string;
  batchSize: number;
  /** Wait for another scorer of the same model to finish instead of failing. */
  wait?: boolean;
  /** Aborting it stops that wait (InterruptedError). */
  signal?: AbortSignal;
  log: Logger;
  /** The clock for date features (ms since the epoch); tests fix it. */
  now?: () => number;
}

export interface RunLimits {
  limit?: number;
  signal?: AbortSignal;
  onBatch?: (b: RunSummary) => void;
  /**
   * Called once before the first batch with the backlog: the invoices this run has to walk
   * (below the horizon of its start, after the cursor or in its --since range; dead letters for
   * --retry-failed). Counted only when asked: one index range scan.
   */
  onBacklog?: (n: number) => void;
}

export interface RunSummary {
  scored: number;
  failed: number;
  /** Scores that were there already (a batch retried after a crash): kept, not written twice. */
  alreadyScored: number;
  batches: number;
  levels: Record<Level, number>;
  cursor: Cursor;
  horizon: string;
}

/** A summary with nothing counted yet. */
export const emptySummary = (cursor: Cursor): RunSummary => ({
  scored: 0,
  failed: 0,
  alreadyScored: 0,
  batches: 0,
  levels: { low: 0, medium: 0, high: 0 },
  cursor,
  horizon: '',
});

/** A scorer holding its model's lock on one connection. */
export class Scorer {
  private readonly history = new HistoryStore();

  private constructor(
    readonly client: Client,
    /** Commits the batches: a second connection lets the next batch be read and scored meanwhile. */
    private readonly writer: Client,
    readonly src: SourceTable,
    private readonly opts: ScorerOptions,
    private readonly global: GlobalStats,
  ) {}

  /**
   * Checks that `invoices risk init` ran, takes the lock of this source and model (or fails
   * naming its holder), refuses created_xid values ahead of this server, reads the global statistics.
   */
  static async open(client: Client, tables: TableMap, opts: ScorerOptions, writer: Client = client): Promise<Scorer> {
    const src = await describeTable(client, tables);
    await assertRiskReady(client, src);
    await lockModel(client, src, opts);
    await assertXidsBehindServer(client, src);
    await ensureWatermark(client, src, opts.modelVersion);
    return new Scorer(client, writer, src, opts, await globalStats(client, src));
  }

  /** Releases the lock (ending the connection does too). */
  async close(): Promise<void> {
    await unlockModel(this.client, this.src, this.opts.modelVersion);
  }

  async cursor(): Promise<Cursor> {
    return (await this.watermark()).cursor;
  }

  private async watermark() {
    const w = await readWatermark(this.client, this.src, this.opts.modelVersion);
    if (!w)
      throw new DatabaseError(
        `the watermark of ${this.src.name} (model ${this.opts.modelVersion}) is gone (risk_watermarks changed during the run?): run again`,
      );
    return w;
  }

  /**
   * Compares the table's lineage with the one the scores were made from; after a TRUNCATE, a
   * reload or a restore removes the scores of rows that are gone and rewinds the cursor
   * (reconcile.ts). Returns the cursor to walk from.
   */
  async reconcile(): Promise<Cursor> {
    return (await this.reconcileWalk()).cursor;
  }

  /** reconcile(), and when the cursor went back, where it was: rows up to there may already have their score. */
  private async reconcileWalk(): Promise<{ cursor: Cursor; coveredUpTo?: Cursor }> {
    const r = await reconcileLineage(this.client, this.src, this.opts.modelVersion, await this.watermark(), this.opts.log);
    const back = r.reconciled && compareCursor(r.reconciled.to, r.reconciled.from) < 0;
    return { cursor: r.cursor, coveredUpTo: back ? r.reconciled!.from : undefined };
  }

  /** Scores batches until nothing below the horizon is left (or the limit). Stops between batches when signalled. */
  async run(since: Since, limits: RunLimits = {}): Promise<RunSummary> {
    const { modelVersion, batchSize } = this.opts;
    const reconciled = await this.reconcileWalk();
    let stored = reconciled.cursor;
    const advances = since.kind !== 'date';
    let walk = since.kind === 'last' ? stored : MIN_CURSOR;
    const total = emptySummary(stored);
    const { col } = this.src;
    const dateCond = since.kind === 'date' ? `AND i.${col.issue_date} >= CAST(CAST($5 AS timestamptz) AS ${this.src.dateType})` : '';
    const selectWith = (extra = '', join = '') => `SELECT ${invoiceSelect(this.src)}${extra} FROM ${this.src.table} i ${join}
       WHERE i.created_xid < $1::xid8 AND (i.created_xid, i.${col.invoice_id}) > ($2::xid8, $3::bigint) ${dateCond}
       ORDER BY i.created_xid, i.${col.invoice_id} LIMIT $4`;
    const select = selectWith();
    // After a rewind, up to where the cursor was, most rows have their score: read whether each
    // has and pass over those without computing features, keeping them in the issuers'
    // histories. Only the walk from the cursor: the other modes write every score again. One
    // index probe per row (LATERAL ... LIMIT 1: never a hash of every score, which the planner
    // picks for EXISTS when the scores have no statistics yet).
    const coveredUpTo = since.kind === 'last' ? reconciled.coveredUpTo : undefined;
    const probe = (table: string, a: string) =>
      `LEFT JOIN LATERAL (SELECT true AS hit FROM ${table} ${a} WHERE ${a}.source_id = $5 AND ${a}.model_version = $6 AND ${a}.invoice_id = i.${col.invoice_id} AND ${a}.invoice_xid = i.created_xid LIMIT 1) ${a} ON true`;
    const probing = selectWith(
      ', (s.hit IS NOT NULL OR d.hit IS NOT NULL) AS covered',
      `${probe('risk_scores', 's')} ${probe('risk_dead_letters', 'd')}`,
    );
    if (limits.onBacklog) {
      const h = (await this.client.query<{ h: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h')).rows[0].h;
      const dateCount = since.kind === 'date' ? `AND i.${col.issue_date} >= CAST(CAST($4 AS timestamptz) AS ${this.src.dateType})` : '';
      const {
        rows: [{ n }],
      } = await this.client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM ${this.src.table} i WHERE i.created_xid < $1::xid8 AND (i.created_xid, i.${col.invoice_id}) > ($2::xid8, $3::bigint) ${dateCount}`,
        since.kind === 'date' ? [h, walk.xid, walk.invoiceId, since.from] : [h, walk.xid, walk.invoiceId],
      );
      limits.onBacklog(Number(n));
    }
    // Batch k commits on the writer while batch k+1 is read and scored; commits stay in order.
    let inFlight: Promise<RunSummary> | undefined;
    const settle = async () => {
      if (!inFlight) return;
      const b = await inFlight;
      inFlight = undefined;
      addInto(total, b);
      limits.onBatch?.(b);
    };
    let taken = 0;
    try {
      for (;;) {
        if (limits.signal?.aborted) {
          await settle();
          throw new InterruptedError(`interrupted: ${total.scored} invoice(s) scored and committed; the next run goes on from there`);
        }
        const want = limits.limit === undefined ? batchSize : Math.min(batchSize, limits.limit - taken);
        if (want <= 0) break;
        const horizon = (await this.client.query<{ h: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h')).rows[0].h;
        total.horizon = horizon;
        const params: unknown[] = [horizon, walk.xid, walk.invoiceId, want];
        if (since.kind === 'date') params.push(since.from);
        const probe = coveredUpTo !== undefined && compareCursor(walk, coveredUpTo) < 0;
        if (probe) params.push(this.src.id, modelVersion);
        const batch = (await inOrder(this.client, probe ? probing : select, params)).map(toInvoice);
        if (!batch.length) break;
        // A run that finds nothing (--follow polls) writes nothing: no transaction id spent, no bloat.
        if (advances && taken === 0)
          await this.client.query(
            'UPDATE risk_watermarks SET last_run_started_at = now(), last_run_scored = 0, last_run_failed = 0 WHERE source_id = $1 AND model_version = $2',
            [this.src.id, modelVersion],
          );
        taken += batch.length;
        const last = batch[batch.length - 1];
        walk = { xid: last.xid, invoiceId: last.id };
        const next = advances && compareCursor(walk, stored) > 0 ? walk : stored;
        const scored = await this.prepare(batch, { xid: last.xid, id: last.id, from: since.kind === 'date' ? since.from : undefined });
        await settle();
        inFlight = this.commit(scored, since.kind === 'last' ? 'keep' : 'replace', { from: stored, to: next, horizon });
        inFlight.catch(() => {}); // awaited by settle(); not an unhandled rejection meanwhile
        stored = next;
      }
      await settle();
    } catch (err) {
      await inFlight?.catch(() => {});
      this.history.clear();
      throw err;
    }
    return total;
  }

  /** Scores the dead letters of this source and model again: those that score leave the table. */
  async retryFailed(limits: RunLimits = {}): Promise<RunSummary & { gone: number }> {
    const total = { ...emptySummary(await this.reconcile()), gone: 0 };
    let after = MIN_CURSOR.invoiceId;
    const { col, table } = this.src;
    if (limits.onBacklog) {
      const {
        rows: [{ n }],
      } = await this.client.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM risk_dead_letters WHERE source_id = $1 AND model_version = $2',
        [this.src.id, this.opts.modelVersion],
      );
      limits.onBacklog(Number(n));
    }
    for (;;) {
      if (limits.signal?.aborted) throw new InterruptedError(`interrupted: ${total.scored} dead letter(s) scored and committed`);
      const { rows } = await this.client.query<{ id: string }>(
        'SELECT invoice_id::text AS id FROM risk_dead_letters WHERE source_id = $1 AND model_version = $2 AND invoice_id > $3 ORDER BY invoice_id LIMIT $4',
        [this.src.id, this.opts.modelVersion, after, this.opts.batchSize],
      );
      if (!rows.length) break;
      const ids = rows.map((r) => r.id);
      after = ids[ids.length - 1];
      const found = (
        await this.client.query(
          `SELECT ${invoiceSelect(this.src)} FROM ${table} i WHERE i.${col.invoice_id} = ANY($1::bigint[]) ORDER BY i.created_xid, i.${col.invoice_id}`,
          [ids],
        )
      ).rows.map(toInvoice);
      const present = new Set(found.map((i) => i.id));
      const gone = ids.filter((id) => !present.has(id));
      // A dead letter of an invoice deleted since: nothing left to score.
      if (gone.length)
        await this.client.query(
          'DELETE FROM risk_dead_letters WHERE source_id = $1 AND model_version = $2 AND invoice_id = ANY($3::bigint[])',
          [this.src.id, this.opts.modelVersion, gone],
        );
      total.gone += gone.length;
      const cursor = await this.cursor();
      const b = await this.commit(await this.prepare(found), 'replace', { from: cursor, to: cursor, horizon: '' });
      addInto(total, b);
      limits.onBatch?.(b);
    }
    return total;
  }

  /** Committed invoices after the cursor that the horizon still holds back (a transaction that began before them is running). */
  async heldBack(): Promise<boolean> {
    const c = await this.cursor();
    const { rows } = await this.client.query(
      `SELECT 1 FROM ${this.src.table} i WHERE (i.created_xid, i.${this.src.col.invoice_id}) > ($1::xid8, $2::bigint) LIMIT 1`,
      [c.xid, c.invoiceId],
    );
    return rows.length > 0;
  }

  /** Features and scores in issue-date order: each invoice sees those issued before it. */
  private async prepare(batch: SourceInvoice[], upTo?: { xid: string; id: string; from?: string }): Promise<PreparedBatch> {
    const now = this.opts.now?.() ?? Date.now();
    await this.history.load(this.client, this.src, batch, upTo);
    const ordered = [...batch].sort((a, b) => a.t - b.t || compareIds(a.id, b.id));
    const p: PreparedBatch = {
      ids: [],
      xids: [],
      scores: [],
      levels: [],
      reasons: [],
      failedIds: [],
      failedXids: [],
      errors: [],
      counts: { low: 0, medium: 0, high: 0 },
      covered: 0,
    };
    for (const inv of ordered) {
      if (inv.covered) {
        p.covered++;
        this.history.append(inv);
        continue;
      }
      try {
        const s = score(computeFeatures(inv, this.history.historyFor(inv), this.global, now));
        p.ids.push(inv.id);
        p.xids.push(inv.xid);
        p.scores.push(s.score.toFixed(4));
        p.levels.push(s.level);
        p.reasons.push(s.reasons.map((r) => r.code).join(','));
        p.counts[s.level]++;
      } catch (err) {
        p.failedIds.push(inv.id);
        p.failedXids.push(inv.xid);
        p.errors.push(err instanceof Error ? err.message : String(err));
      }
      this.history.append(inv);
    }
    return p;
  }

  /** Writes a batch in one transaction with its cursor (store.ts writeBatch), on the writer connection. */
  private async commit(
    p: PreparedBatch,
    conflict: 'keep' | 'replace',
    mark: { from: Cursor; to: Cursor; horizon: string },
  ): Promise<RunSummary> {
    const summary = emptySummary(mark.to);
    summary.batches = 1;
    summary.horizon = mark.horizon;
    summary.levels = p.counts;
    try {
      const written = await writeBatch(this.writer, this.src, this.opts.modelVersion, p, conflict, mark);
      Object.assign(summary, written);
    } catch (err) {
      // The invoices of a batch that did not commit were appended to the histories: start them over.
      this.history.clear();
      throw err;
    }
    return summary;
  }
}

/**
 * Runs the batch query with sorting disabled, so that the planner walks the cursor index in
 * order (a Merge Append over the partitions) even when its statistics know nothing of the
 * backlog (rows inserted since the last ANALYZE): a misestimate would otherwise sort the
 * whole backlog for every batch.
 */
async function inOrder(client: Client, sql: string, params: unknown[]): Promise<Record<string, unknown>[]> {
  return transaction(client, async () => (await client.query(sql, params)).rows, { settings: { enable_sort: 'off' } });
}

/** Adds a batch's (or run's) counts to a total; the cursor and horizon follow the latest. */
export function addInto(total: RunSummary, b: RunSummary): void {
  total.scored += b.scored;
  total.failed += b.failed;
  total.alreadyScored += b.alreadyScored;
  total.batches += b.batches;
  for (const l of ['low', 'medium', 'high'] as const) total.levels[l] += b.levels[l];
  total.cursor = b.cursor;
  total.horizon = b.horizon || total.horizon;
}
