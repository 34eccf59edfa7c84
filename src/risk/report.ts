// `invoices risk status`, `verify` and `explain`: read-only views of the scorer's state for
// one source table (the mapped one) and model. A score counts for an invoice only when it was
// made for the row now in the table (invoice_xid = created_xid).
import type { Client } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { describeTable, type SourceTable } from '../table/describe.js';
import { compareLineage, readLineage } from '../table/lineage.js';
import { InvoicesError, NotFoundError, UsageError } from '../errors.js';
import type { TableMap } from '../tables.js';
import { HistoryStore } from './history.js';
import { computeFeatures, score } from './features.js';
import { UnscorableError, type Features, type Scored } from './model.js';
import { globalStats } from './history.js';
import { riskTables } from './setup.js';
import { invoiceSelect, toInvoice, type SourceInvoice } from './source.js';
import { assertRiskReady, MIN_CURSOR, readWatermark, type Cursor } from './store.js';

export interface RiskStatus {
  /** The source table (schema.table). */
  source: string;
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
  /** Why the table's contents changed since the last run (the next run reconciles), if they did. */
  tableChanged?: string;
  /** The oldest transaction that holds an xid: the horizon cannot pass it. */
  oldestTransaction?: {
    pid: number;
    database: string | null;
    user: string | null;
    state: string | null;
    since: string;
    seconds: number;
    prepared: boolean;
  };
}

async function ready(client: Client, tables: TableMap): Promise<SourceTable> {
  const src = await describeTable(client, tables);
  await assertRiskReady(client, src);
  return src;
}

/** Backlog, last run, dead letters and what holds the horizon back. */
export async function riskStatus(client: Client, tables: TableMap, model: string): Promise<RiskStatus> {
  const src = await ready(client, tables);
  const stored = await readWatermark(client, src, model);
  const cursor = stored?.cursor ?? MIN_CURSOR;
  // Read-only: the next run reconciles; status says that it will.
  const change = stored?.lineage ? compareLineage(stored.lineage, await readLineage(client, src)) : undefined;
  const after = `(i.created_xid, i.${src.col.invoice_id}) > ($1::xid8, $2::bigint)`;
  const {
    rows: [w],
  } = await client.query<{ horizon: string; waiting: number; held: number }>(
    `SELECT h.x::text AS horizon, count(i.*)::int AS waiting, count(i.*) FILTER (WHERE i.created_xid >= h.x)::int AS held
       FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS x) h LEFT JOIN ${src.table} i ON ${after} GROUP BY h.x`,
    [cursor.xid, cursor.invoiceId],
  );
  const { rows: oldest } = await client.query<{ id: string; at: string; age: number }>(
    `SELECT i.${src.col.invoice_id}::text AS id, i.${src.col.issue_date} AS at, extract(epoch FROM now() - i.${src.col.issue_date}::timestamptz)::float8 AS age
       FROM ${src.table} i WHERE ${after} ORDER BY i.created_xid, i.${src.col.invoice_id} LIMIT 1`,
    [cursor.xid, cursor.invoiceId],
  );
  const { rows: dead } = await client.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM risk_dead_letters WHERE source_id = $1 AND model_version = $2',
    [src.id, model],
  );
  const { rows: tx } = await client.query(
    `SELECT * FROM (
       SELECT pid, datname AS database, usename AS "user", state, xact_start AS since, extract(epoch FROM now() - xact_start)::float8 AS seconds, false AS prepared
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
       UNION ALL
       SELECT NULL, database, owner, 'prepared ' || gid, prepared, extract(epoch FROM now() - prepared)::float8, true FROM pg_prepared_xacts) t
      ORDER BY since LIMIT 1`,
  );
  return {
    source: src.name,
    model,
    cursor,
    horizon: w.horizon,
    waiting: w.waiting,
    heldBack: w.held,
    oldestWaiting: oldest[0] ? { invoiceId: oldest[0].id, issueDate: oldest[0].at, ageSeconds: Math.round(oldest[0].age) } : undefined,
    lastRunStartedAt: stored?.lastRunStartedAt ?? null,
    lastBatchAt: stored?.lastBatchAt ?? null,
    lastRunScored: stored?.lastRunScored ?? 0,
    totalScored: stored?.totalScored ?? 0,
    deadLetters: dead[0].n,
    tableChanged: change && change.kind !== 'same' ? change.reason : undefined,
    oldestTransaction: tx[0] ? { ...tx[0], seconds: Math.round(tx[0].seconds) } : undefined,
  };
}

export interface VerifyResult {
  /** The source table (schema.table). */
  source: string;
  model: string;
  cursor: Cursor;
  /** Committed invoices at or below the cursor. */
  checked: number;
  /** Of those, with a score made for this row (its invoice_xid is the row's created_xid). */
  scored: number;
  deadLetters: number;
  /** Below the cursor with neither a score nor a dead letter of its own: the guarantee is broken for these. */
  missing: number;
  missingIds: string[];
  /** Stored scores whose row is no longer in the table (a reload, a reseed, a delete): not counted; the next run after a reload removes them. */
  stale: number;
}

/** Every committed invoice at or below the cursor has a score or a dead letter made for its row. */
export async function verifyRisk(client: Client, tables: TableMap, model: string): Promise<VerifyResult> {
  const src = await ready(client, tables);
  const cursor = (await readWatermark(client, src, model))?.cursor ?? MIN_CURSOR;
  const id = `i.${src.col.invoice_id}`;
  // One pass: every row of the table against its score and dead letter by their whole key (a
  // hash join: with the scores just written and not analyzed yet, a nested loop could compare
  // every row with every score). Scores that no row matches are stale.
  const {
    rows: [r],
  } = await transaction(
    client,
    () =>
      client.query<{
        checked: number;
        scored: number;
        dead: number;
        missing: number;
        sample: string[] | null;
        matched: number;
        total: number;
      }>(
        `SELECT count(*) FILTER (WHERE w.below)::int AS checked, count(s.invoice_id) FILTER (WHERE w.below)::int AS scored, count(d.invoice_id) FILTER (WHERE w.below)::int AS dead,
              count(*) FILTER (WHERE w.below AND s.invoice_id IS NULL AND d.invoice_id IS NULL)::int AS missing,
              (array_agg(${id}::text ORDER BY ${id}) FILTER (WHERE w.below AND s.invoice_id IS NULL AND d.invoice_id IS NULL))[1:20] AS sample,
              count(s.invoice_id)::int AS matched,
              (SELECT count(*) FROM risk_scores WHERE source_id = $3 AND model_version = $4)::int AS total
         FROM ${src.table} i
         CROSS JOIN LATERAL (SELECT (i.created_xid, ${id}) <= ($1::xid8, $2::bigint) AS below) w
         LEFT JOIN risk_scores s ON s.source_id = $3 AND s.invoice_id = ${id} AND s.model_version = $4 AND s.invoice_xid = i.created_xid
         LEFT JOIN risk_dead_letters d ON d.source_id = $3 AND d.invoice_id = ${id} AND d.model_version = $4 AND d.invoice_xid = i.created_xid`,
        [cursor.xid, cursor.invoiceId, src.id, model],
      ),
    { settings: { enable_nestloop: 'off', work_mem: '256MB' } },
  );
  const g = { stale: r.total - r.matched };
  return {
    source: src.name,
    model,
    cursor,
    checked: r.checked,
    scored: r.scored,
    deadLetters: r.dead,
    missing: r.missing,
    missingIds: r.sample ?? [],
    stale: g.stale,
  };
}

interface StoredScore {
  score: string;
  level: string;
  reasons: string[];
  scoredAt: string;
}

export interface Explanation {
  source: string;
  invoice: SourceInvoice;
  features: Features;
  result: Scored;
  /** The score stored for this model and this row, if the invoice was scored. */
  stored?: StoredScore;
  deadLetter?: { error: string; attempts: number };
  /** A score stored under this id for an earlier row (another created_xid): not this invoice's; the next run scores it. */
  earlier?: StoredScore;
}

/** The features and reasons of one invoice, recomputed from the table as it is now. */
export async function explainInvoice(
  client: Client,
  tables: TableMap,
  invoiceId: string,
  model: string,
  now: number,
): Promise<Explanation> {
  const src = await describeTable(client, tables);
  if (!src.createdXid)
    throw new UsageError(
      `the risk scorer is not set up (${src.table} has no created_xid column): run \`invoices risk init\` (it prints what it changes)`,
    );
  // Before the first run (no risk tables yet) the features still explain; nothing is stored.
  const scored = (await riskTables(client)) === 'ok';
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
    const { rows: d } = scored
      ? await client.query<{ attempts: number }>(
          'SELECT attempts FROM risk_dead_letters WHERE source_id = $1 AND invoice_id = $2 AND model_version = $3 AND invoice_xid = $4::xid8',
          [src.id, invoiceId, model, invoice.xid],
        )
      : { rows: [] };
    const dead = d[0]
      ? `; it is a dead letter of model ${model} after ${d[0].attempts} attempt(s): fix it, then run \`invoices risk --retry-failed\``
      : '';
    throw new InvoicesError(`invoice ${invoiceId}: ${err.message}${dead}`, { cause: err });
  }
  if (!scored) return { source: src.name, invoice, features, result: score(features) };
  const { rows: s } = await client.query<StoredScore & { current: boolean }>(
    'SELECT score::text, level, reasons, scored_at AS "scoredAt", invoice_xid = $4::xid8 AS current FROM risk_scores WHERE source_id = $1 AND invoice_id = $2 AND model_version = $3',
    [src.id, invoiceId, model, invoice.xid],
  );
  const { rows: d } = await client.query<{ error: string; attempts: number }>(
    'SELECT error, attempts FROM risk_dead_letters WHERE source_id = $1 AND invoice_id = $2 AND model_version = $3 AND invoice_xid = $4::xid8',
    [src.id, invoiceId, model, invoice.xid],
  );
  const found = s[0] ? { score: s[0].score, level: s[0].level, reasons: s[0].reasons, scoredAt: s[0].scoredAt } : undefined;
  return {
    source: src.name,
    invoice,
    features,
    result: score(features),
    stored: s[0]?.current ? found : undefined,
    deadLetter: d[0],
    earlier: s[0] && !s[0].current ? found : undefined,
  };
}
