// The risk tables as the scorer and its reports read them: scoped per source table (source_id,
// src/table/describe.ts) and model version; a score or dead letter counts for an invoice only
// when its invoice_xid is the created_xid of the row now in the table (sql/risk.sql). And the
// one transaction that writes a scored batch with its cursor (writeBatch).
import type { Client } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { DatabaseError, UsageError } from '../errors.js';
import type { SourceTable } from '../table/describe.js';
import type { Lineage } from '../table/lineage.js';
import type { Level } from './model.js';
import { riskTables } from './setup.js';

/** A position in the (created_xid, invoice_id) walk. */
export interface Cursor {
  xid: string;
  invoiceId: string;
}

const MIN_ID = -9223372036854775808n;
const MAX_ID = 9223372036854775807n;

export const MIN_CURSOR: Cursor = { xid: '0', invoiceId: MIN_ID.toString() };

/** Orders bigint ids given as text. */
export function compareIds(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Orders cursors as PostgreSQL orders (created_xid, invoice_id). */
export function compareCursor(a: Cursor, b: Cursor): number {
  return compareIds(a.xid, b.xid) || compareIds(a.invoiceId, b.invoiceId);
}

/** The cursor just before a row: a walk after it starts with that row. */
export function justBefore(row: Cursor): Cursor {
  const id = BigInt(row.invoiceId);
  if (id > MIN_ID) return { xid: row.xid, invoiceId: (id - 1n).toString() };
  const xid = BigInt(row.xid);
  return xid > 0n ? { xid: (xid - 1n).toString(), invoiceId: MAX_ID.toString() } : MIN_CURSOR;
}

/**
 * The scorer is set up for this table: risk tables of this version and a created_xid column.
 * Otherwise a usage error that says to run `invoices risk init` (and what it will do).
 */
export async function assertRiskReady(client: Client, src: SourceTable): Promise<void> {
  const shape = await riskTables(client);
  if (shape === 'old') {
    throw new UsageError(
      'the risk tables are of an earlier version (their scores name neither the source table nor the row they scored): run `invoices risk init`, which drops them (every invoice is then scored again)',
    );
  }
  if (shape === 'missing' || !src.createdXid) {
    throw new UsageError(
      `the risk scorer is not set up${src.createdXid ? '' : ` (${src.table} has no created_xid column)`}: run \`invoices risk init\` (it prints what it changes)`,
    );
  }
}

/** The stored state of one source and model: where its walk is and which contents of the table it scored. */
export interface Watermark {
  cursor: Cursor;
  lineage: Lineage | null;
  lastRunStartedAt: string | null;
  lastBatchAt: string | null;
  lastRunScored: number;
  totalScored: number;
}

/** The watermark of a source and model; undefined before its first run. */
export async function readWatermark(client: Client, src: SourceTable, model: string): Promise<Watermark | undefined> {
  const {
    rows: [r],
  } = await client.query<{
    xid: string;
    id: string;
    lineage: Lineage | null;
    started: string | null;
    batch: string | null;
    last: string;
    total: string;
  }>(
    `SELECT cursor_xid::text AS xid, cursor_invoice_id::text AS id, lineage, last_run_started_at AS started, last_batch_at AS batch,
            last_run_scored::text AS last, total_scored::text AS total
       FROM risk_watermarks WHERE source_id = $1 AND model_version = $2`,
    [src.id, model],
  );
  if (!r) return undefined;
  return {
    cursor: { xid: r.xid, invoiceId: r.id },
    lineage: r.lineage,
    lastRunStartedAt: r.started,
    lastBatchAt: r.batch,
    lastRunScored: Number(r.last),
    totalScored: Number(r.total),
  };
}

/** The source and model's watermark row, created at the start of the walk when missing (its lineage is recorded by the first run). */
export async function ensureWatermark(client: Client, src: SourceTable, model: string): Promise<void> {
  await client.query('INSERT INTO risk_watermarks (source_id, model_version, source) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
    src.id,
    model,
    src.key,
  ]);
}

/** A batch scored in memory, ready to be written: parallel arrays, as the statements unnest them. */
export interface PreparedBatch {
  ids: string[];
  /** The created_xid of each scored row (ids[i]'s). */
  xids: string[];
  scores: string[];
  levels: string[];
  reasons: string[];
  failedIds: string[];
  failedXids: string[];
  errors: string[];
  counts: Record<Level, number>;
  /** Rows passed over: they have their score or dead letter already (after a rewind). */
  covered: number;
}

/**
 * One transaction: the scores, the dead letters and the cursor moved from `mark.from` to
 * `mark.to`. 'keep' (the walk from the cursor): a score is written when the invoice has none or
 * has the score of an earlier row with its id (another invoice_xid); a retried batch changes
 * nothing. 'replace' (--since all|DATE, --retry-failed): every score is written again.
 */
export async function writeBatch(
  db: Client,
  src: SourceTable,
  modelVersion: string,
  p: PreparedBatch,
  conflict: 'keep' | 'replace',
  mark: { from: Cursor; to: Cursor; horizon: string },
): Promise<{ scored: number; failed: number; alreadyScored: number }> {
  const source = src.id;
  return transaction(db, async () => {
    const { rowCount } = await db.query(
      `INSERT INTO risk_scores (source_id, invoice_id, model_version, invoice_xid, score, level, reasons)
       SELECT $1, u.id, $2, u.xid, u.score, u.level, string_to_array(u.reasons, ',')
         FROM unnest($3::bigint[], $4::xid8[], $5::numeric[], $6::text[], $7::text[]) AS u(id, xid, score, level, reasons)
       ON CONFLICT (source_id, invoice_id, model_version) DO UPDATE
          SET invoice_xid = EXCLUDED.invoice_xid, score = EXCLUDED.score, level = EXCLUDED.level, reasons = EXCLUDED.reasons, scored_at = EXCLUDED.scored_at
          ${conflict === 'keep' ? 'WHERE risk_scores.invoice_xid IS DISTINCT FROM EXCLUDED.invoice_xid' : ''}`,
      [source, modelVersion, p.ids, p.xids, p.scores, p.levels, p.reasons],
    );
    const scored = rowCount ?? 0;
    const alreadyScored = p.ids.length - scored + p.covered;
    // A scored invoice has no dead letter (of its own row, retried, or of an earlier row with its id).
    if (p.ids.length) {
      await db.query('DELETE FROM risk_dead_letters WHERE source_id = $1 AND model_version = $2 AND invoice_id = ANY($3::bigint[])', [
        source,
        modelVersion,
        p.ids,
      ]);
    }
    if (p.failedIds.length) {
      // The score of an earlier row with the same id is not this invoice's.
      await db.query(
        `DELETE FROM risk_scores s WHERE s.source_id = $1 AND s.model_version = $2 AND s.invoice_id = ANY($3::bigint[])
            AND (s.invoice_id, s.invoice_xid) NOT IN (SELECT * FROM unnest($3::bigint[], $4::xid8[]))`,
        [source, modelVersion, p.failedIds, p.failedXids],
      );
      await db.query(
        `INSERT INTO risk_dead_letters (source_id, invoice_id, model_version, invoice_xid, error)
         SELECT $1, u.id, $2, u.xid, u.error FROM unnest($3::bigint[], $4::xid8[], $5::text[]) AS u(id, xid, error)
         ON CONFLICT (source_id, invoice_id, model_version) DO UPDATE
            SET error = EXCLUDED.error, last_failed_at = now(), invoice_xid = EXCLUDED.invoice_xid,
                -- Another row with this id starts its own count.
                attempts = CASE WHEN risk_dead_letters.invoice_xid = EXCLUDED.invoice_xid THEN risk_dead_letters.attempts + 1 ELSE 1 END,
                first_failed_at = CASE WHEN risk_dead_letters.invoice_xid = EXCLUDED.invoice_xid THEN risk_dead_letters.first_failed_at ELSE now() END`,
        [source, modelVersion, p.failedIds, p.failedXids, p.errors],
      );
    }
    const failed = p.failedIds.length;
    // Compare-and-set: a scorer that lost its lock (a connection that came back) cannot move the cursor twice.
    const { rowCount: moved } = await db.query(
      `UPDATE risk_watermarks SET cursor_xid = $3, cursor_invoice_id = $4, horizon = coalesce(NULLIF($5, '')::xid8, horizon),
              last_batch_at = now(), last_run_scored = last_run_scored + $6, last_run_failed = last_run_failed + $7, total_scored = total_scored + $6
        WHERE source_id = $1 AND model_version = $2 AND cursor_xid = $8 AND cursor_invoice_id = $9`,
      [source, modelVersion, mark.to.xid, mark.to.invoiceId, mark.horizon, scored, failed, mark.from.xid, mark.from.invoiceId],
    );
    if (moved !== 1)
      throw new DatabaseError(
        `the watermark of ${src.name} (model ${modelVersion}) moved during this batch (another scorer?): the batch was rolled back, nothing is lost`,
      );
    return { scored, failed, alreadyScored };
  });
}
