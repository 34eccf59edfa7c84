// The risk tables as the scorer and its reports read them: scoped per source table (source_id,
// src/table/describe.ts) and model version; a score or dead letter counts for an invoice only
// when its invoice_xid is the created_xid of the row now in the table (sql/risk.sql).
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import type { SourceTable } from '../table/describe.js';
import type { Lineage } from '../table/lineage.js';
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
