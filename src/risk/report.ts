// `invoices risk status`, `verify` and `explain`: read-only views of the scorer's state.
import type { Client } from '../db/client.js';
import { describeTable, type SourceTable } from '../table/describe.js';
import { InvoicesError, NotFoundError, UsageError } from '../errors.js';
import type { TableMap } from '../tables.js';
import { HistoryStore } from './history.js';
import { computeFeatures, score, UnscorableError, type Features, type Scored } from './model.js';
import { globalStats, MIN_CURSOR, type Cursor } from './scorer.js';
import { invoiceSelect, toInvoice, type SourceInvoice } from './source.js';

export interface RiskStatus {
  model: string;
  cursor: Cursor;
  horizon: string;
  /** Committed invoices after the cursor. */
  waiting: number;
  /** Of those, how many the horizon still holds back (an older transaction is running). */
  heldBack: number;
  oldestWaiting?: { invoiceId: string; issueDate: string; ageSeconds: number };
  lastRunStartedAt: string | null;
  lastBatchAt: string | null;
  lastRunScored: number;
  totalScored: number;
  deadLetters: number;
  /** The oldest transaction that holds an xid: the horizon cannot pass it. */
  oldestTransaction?: { pid: number; database: string | null; user: string | null; state: string | null; since: string; seconds: number; prepared: boolean };
}

async function ready(client: Client, tables: TableMap): Promise<SourceTable> {
  const src = await describeTable(client, tables);
  const { rows } = await client.query<{ ok: boolean }>("SELECT to_regclass('risk_watermarks') IS NOT NULL AS ok");
  if (!rows[0].ok || !src.createdXid) throw new UsageError('the risk scorer is not set up: run `invoices risk init`');
  return src;
}

async function storedCursor(client: Client, model: string): Promise<Cursor & { row?: Record<string, unknown> }> {
  const { rows } = await client.query('SELECT cursor_xid::text AS xid, cursor_invoice_id::text AS id, * FROM risk_watermarks WHERE model_version = $1', [model]);
  return rows[0] ? { xid: rows[0].xid, invoiceId: rows[0].id, row: rows[0] } : MIN_CURSOR;
}

/** Backlog, last run, dead letters and what holds the horizon back. */
export async function riskStatus(client: Client, tables: TableMap, model: string): Promise<RiskStatus> {
  const src = await ready(client, tables);
  const cursor = await storedCursor(client, model);
  const after = `(i.created_xid, i.${src.col.invoice_id}) > ($1::xid8, $2::bigint)`;
  const { rows: [w] } = await client.query<{ horizon: string; waiting: number; held: number }>(
    `SELECT h.x::text AS horizon, count(i.*)::int AS waiting, count(i.*) FILTER (WHERE i.created_xid >= h.x)::int AS held
       FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS x) h LEFT JOIN ${src.table} i ON ${after} GROUP BY h.x`,
    [cursor.xid, cursor.invoiceId],
  );
  const { rows: oldest } = await client.query<{ id: string; at: string; age: number }>(
    `SELECT i.${src.col.invoice_id}::text AS id, i.${src.col.issue_date} AS at, extract(epoch FROM now() - i.${src.col.issue_date}::timestamptz)::float8 AS age
       FROM ${src.table} i WHERE ${after} ORDER BY i.created_xid, i.${src.col.invoice_id} LIMIT 1`,
    [cursor.xid, cursor.invoiceId],
  );
  const { rows: dead } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM risk_dead_letters WHERE model_version = $1', [model]);
  const { rows: tx } = await client.query(
    `SELECT * FROM (
       SELECT pid, datname AS database, usename AS "user", state, xact_start AS since, extract(epoch FROM now() - xact_start)::float8 AS seconds, false AS prepared
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
       UNION ALL
       SELECT NULL, database, owner, 'prepared ' || gid, prepared, extract(epoch FROM now() - prepared)::float8, true FROM pg_prepared_xacts) t
      ORDER BY since LIMIT 1`,
  );
  const r = cursor.row ?? {};
  return {
    model,
    cursor: { xid: cursor.xid, invoiceId: cursor.invoiceId },
    horizon: w.horizon,
    waiting: w.waiting,
    heldBack: w.held,
    oldestWaiting: oldest[0] ? { invoiceId: oldest[0].id, issueDate: oldest[0].at, ageSeconds: Math.round(oldest[0].age) } : undefined,
    lastRunStartedAt: (r.last_run_started_at as string) ?? null,
    lastBatchAt: (r.last_batch_at as string) ?? null,
    lastRunScored: Number(r.last_run_scored ?? 0),
    totalScored: Number(r.total_scored ?? 0),
    deadLetters: dead[0].n,
    oldestTransaction: tx[0] ? { ...tx[0], seconds: Math.round(tx[0].seconds) } : undefined,
  };
}

export interface VerifyResult {
  model: string;
  cursor: Cursor;
  /** Committed invoices at or below the cursor. */
  checked: number;
  scored: number;
  deadLetters: number;
  /** Below the cursor with neither a score nor a dead letter: the guarantee is broken for these. */
  missing: number;
  missingIds: string[];
}

/** Every committed invoice at or below the cursor has a score or a dead letter. */
export async function verifyRisk(client: Client, tables: TableMap, model: string): Promise<VerifyResult> {
  const src = await ready(client, tables);
  const cursor = await storedCursor(client, model);
  const id = `i.${src.col.invoice_id}`;
  const { rows: [r] } = await client.query<{ checked: number; scored: number; dead: number; missing: number; sample: string[] | null }>(
    `SELECT count(*)::int AS checked, count(s.invoice_id)::int AS scored, count(d.invoice_id)::int AS dead,
            count(*) FILTER (WHERE s.invoice_id IS NULL AND d.invoice_id IS NULL)::int AS missing,
            (array_agg(${id}::text ORDER BY ${id}) FILTER (WHERE s.invoice_id IS NULL AND d.invoice_id IS NULL))[1:20] AS sample
       FROM ${src.table} i
       LEFT JOIN risk_scores s ON s.invoice_id = ${id} AND s.model_version = $3
       LEFT JOIN risk_dead_letters d ON d.invoice_id = ${id} AND d.model_version = $3
      WHERE (i.created_xid, ${id}) <= ($1::xid8, $2::bigint)`,
    [cursor.xid, cursor.invoiceId, model],
  );
  return { model, cursor: { xid: cursor.xid, invoiceId: cursor.invoiceId }, checked: r.checked, scored: r.scored, deadLetters: r.dead, missing: r.missing, missingIds: r.sample ?? [] };
}

export interface Explanation {
  invoice: SourceInvoice;
  features: Features;
  result: Scored;
  /** The score stored for this model, if the invoice was scored. */
  stored?: { score: string; level: string; reasons: string[]; scoredAt: string };
  deadLetter?: { error: string; attempts: number };
}

/** The features and reasons of one invoice, recomputed from the table as it is now. */
export async function explainInvoice(client: Client, tables: TableMap, invoiceId: string, model: string, now: number): Promise<Explanation> {
  const src = await describeTable(client, tables);
  if (!src.createdXid) throw new UsageError('the risk scorer is not set up: run `invoices risk init`');
  const { rows } = await client.query(`SELECT ${invoiceSelect(src)} FROM ${src.table} i WHERE i.${src.col.invoice_id} = $1`, [invoiceId]);
  if (!rows.length) throw new NotFoundError(`invoice ${invoiceId} not found`);
  const invoice = toInvoice(rows[0]);
  const history = new HistoryStore();
  await history.load(client, src, [invoice]);
  const stats = await globalStats(client, src);
  let features: Features;
  try {
    features = computeFeatures(invoice, history.historyFor(invoice), stats, now);
  } catch (err) {
    if (!(err instanceof UnscorableError)) throw err;
    // A dead letter, usually: say so, and how to score it, rather than fail like a bug.
    const { rows: d } = await client.query<{ attempts: number }>('SELECT attempts FROM risk_dead_letters WHERE invoice_id = $1 AND model_version = $2', [invoiceId, model]).catch(() => ({ rows: [] as { attempts: number }[] }));
    const dead = d[0] ? `; it is a dead letter of model ${model} after ${d[0].attempts} attempt(s): fix it, then run \`invoices risk --retry-failed\`` : '';
    throw new InvoicesError(`invoice ${invoiceId}: ${err.message}${dead}`, { cause: err });
  }
  const { rows: s } = await client.query('SELECT score::text, level, reasons, scored_at AS "scoredAt" FROM risk_scores WHERE invoice_id = $1 AND model_version = $2', [invoiceId, model]).catch(() => ({ rows: [] }));
  const { rows: d } = await client.query('SELECT error, attempts FROM risk_dead_letters WHERE invoice_id = $1 AND model_version = $2', [invoiceId, model]).catch(() => ({ rows: [] }));
  return { invoice, features, result: score(features), stored: s[0], deadLetter: d[0] };
}
