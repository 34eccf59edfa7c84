// Risk scores follow the lineage of their table (src/table/lineage.ts). A TRUNCATE, a reseed,
// a restore, a partition attached, detached or dropped make "every invoice at or below the
// cursor is scored" mean other rows; the invoices themselves cannot show it, the catalog can.
// At the start of every run (and every --follow cycle: one catalog query) the scorer compares
// the lineage stored with its watermark to the table's; when they differ, in one transaction:
// - the scores and dead letters of this source and model whose row (invoice_id, invoice_xid)
//   is no longer in the table are removed; those of rows still there are kept;
// - the cursor goes back to just before the oldest invoice at or below it that has neither a
//   current score nor a dead letter (rows reloaded with their old created_xid, a restore, an
//   attached partition with old rows): the walk scores them, and passes over rows that already
//   have their score (the insert changes a score only when its invoice_xid differs);
// - the new lineage is stored.
import { leavesOf } from '../db/catalog.js';
import type { Client } from '../db/client.js';
import { transaction, withSettings } from '../db/transaction.js';
import type { Logger } from '../log.js';
import type { SourceTable } from '../table/describe.js';
import { compareLineage, readLineage, type Lineage } from '../table/lineage.js';
import { compareCursor, justBefore, type Cursor, type Watermark } from './store.js';

export interface Reconciled {
  /** Why (compareLineage's reason). */
  reason: string;
  removedScores: number;
  removedDeadLetters: number;
  from: Cursor;
  to: Cursor;
}

/**
 * Compares the stored lineage with the table's; on a difference removes what belonged to rows
 * that are gone, rewinds the cursor and stores the new lineage, saying so through `log`.
 * Returns the cursor to walk from. The caller holds the source and model's lock.
 */
export async function reconcileLineage(
  client: Client,
  src: SourceTable,
  model: string,
  stored: Watermark,
  log: Logger,
): Promise<{ cursor: Cursor; reconciled?: Reconciled }> {
  const now = await readLineage(client, src);
  const change = compareLineage(stored.lineage, now);
  if (change.kind === 'same') return { cursor: stored.cursor };
  if (!stored.lineage) {
    // The first run of this model on this table (or a watermark made by hand): nothing to reconcile unless scores exist.
    const {
      rows: [{ any }],
    } = await client.query<{ any: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM risk_scores WHERE source_id = $1 AND model_version = $2)
           OR EXISTS (SELECT 1 FROM risk_dead_letters WHERE source_id = $1 AND model_version = $2) AS any`,
      [src.id, model],
    );
    if (!any) {
      await storeLineage(client, src, model, now);
      return { cursor: stored.cursor };
    }
  }
  const reason = stored.lineage ? change.reason : 'no lineage recorded for the stored scores';
  const leaves = change.kind === 'leaves' ? change.leaves : undefined;
  const started = performance.now();
  const r = await transaction(
    client,
    async () => {
      const {
        rows: [w],
      } = await client.query<{ xid: string; id: string }>(
        'SELECT cursor_xid::text AS xid, cursor_invoice_id::text AS id FROM risk_watermarks WHERE source_id = $1 AND model_version = $2 FOR UPDATE',
        [src.id, model],
      );
      const from: Cursor = { xid: w.xid, invoiceId: w.id };
      // Every score of this source and model against every row: one hash anti join (a nested
      // loop would probe each partition's index once per score; right after a first run the
      // scores have no statistics, and the planner would pick it).
      const gone = (table: string) =>
        `DELETE FROM ${table} s WHERE s.source_id = $1 AND s.model_version = $2
          AND NOT EXISTS (SELECT 1 FROM ${src.table} i WHERE i.${src.col.invoice_id} = s.invoice_id AND i.created_xid = s.invoice_xid)`;
      const [removedScores, removedDeadLetters] = await withSettings(client, { enable_nestloop: 'off' }, async () => [
        (await client.query(gone('risk_scores'), [src.id, model])).rowCount ?? 0,
        (await client.query(gone('risk_dead_letters'), [src.id, model])).rowCount ?? 0,
      ]);
      const oldest = await oldestUncovered(client, src, model, from, leaves);
      const to = oldest && compareCursor(justBefore(oldest), from) < 0 ? justBefore(oldest) : from;
      await client.query(
        'UPDATE risk_watermarks SET lineage = $3, cursor_xid = $4, cursor_invoice_id = $5 WHERE source_id = $1 AND model_version = $2',
        [src.id, model, JSON.stringify(now), to.xid, to.invoiceId],
      );
      return { reason, removedScores, removedDeadLetters, from, to };
    },
    { settings: { work_mem: '256MB' } },
  );
  const ms = performance.now() - started;
  const removed =
    r.removedScores || r.removedDeadLetters
      ? `removed ${r.removedScores} score(s) and ${r.removedDeadLetters} dead letter(s) of invoices no longer in the table (those of rows still there are kept)`
      : 'no score belonged to a row that is gone';
  const cursor =
    compareCursor(r.to, r.from) < 0
      ? `cursor rewound from ${r.from.xid}/${r.from.invoiceId} to ${r.to.xid}/${r.to.invoiceId} (before the oldest invoice without a current score)`
      : `cursor kept at ${r.from.xid}/${r.from.invoiceId} (every invoice at or below it has a current score)`;
  const say = r.removedScores || r.removedDeadLetters || compareCursor(r.to, r.from) < 0 ? log.warn : log.info;
  say.call(
    log,
    `risk scores of ${src.name} (model ${model}): the table changed since the last run (${reason}): ${removed}; ${cursor} [${ms.toFixed(0)} ms]`,
  );
  return { cursor: r.to, reconciled: r };
}

async function storeLineage(client: Client, src: SourceTable, model: string, lineage: Lineage): Promise<void> {
  await client.query('UPDATE risk_watermarks SET lineage = $3 WHERE source_id = $1 AND model_version = $2', [
    src.id,
    model,
    JSON.stringify(lineage),
  ]);
}

/**
 * The first row in walk order at or below the cursor with neither a score nor a dead letter
 * of its own (invoice_xid = created_xid). After a change of some leaves only they can hold
 * such rows (the others kept every row and every score), so only they are searched, each
 * through its created_xid index.
 */
async function oldestUncovered(
  client: Client,
  src: SourceTable,
  model: string,
  cursor: Cursor,
  leaves?: string[],
): Promise<Cursor | undefined> {
  const { col } = src;
  let relations = [src.table];
  if (leaves) {
    // The changed leaves that are leaves of the table now (a dropped or detached one holds none of its rows), by oid.
    relations = (await leavesOf(client, src.table)).filter((l) => leaves.includes(l.name)).map((l) => l.qualified);
    if (!relations.length) return undefined;
  }
  const one = (rel: string) => `(SELECT i.created_xid, i.${col.invoice_id} AS invoice_id FROM ${rel} i
      WHERE (i.created_xid, i.${col.invoice_id}) <= ($3::xid8, $4::bigint)
        AND NOT EXISTS (SELECT 1 FROM risk_scores s WHERE s.source_id = $1 AND s.model_version = $2 AND s.invoice_id = i.${col.invoice_id} AND s.invoice_xid = i.created_xid)
        AND NOT EXISTS (SELECT 1 FROM risk_dead_letters d WHERE d.source_id = $1 AND d.model_version = $2 AND d.invoice_id = i.${col.invoice_id} AND d.invoice_xid = i.created_xid)
      ORDER BY i.created_xid, i.${col.invoice_id} LIMIT 1)`;
  // A walk in created_xid order that probes each row's score by its key and stops at the first
  // without one: forced, as statistics-less scores (just after a first run) make the planner
  // compare every row with every score instead.
  const off = { enable_hashjoin: 'off', enable_mergejoin: 'off', enable_material: 'off', enable_sort: 'off' };
  const { rows } = await withSettings(client, off, () =>
    client.query<{ xid: string; id: string }>(
      `SELECT u.created_xid::text AS xid, u.invoice_id::text AS id FROM (${relations.map(one).join(' UNION ALL ')}) u ORDER BY u.created_xid, u.invoice_id LIMIT 1`,
      [src.id, model, cursor.xid, cursor.invoiceId],
    ),
  );
  return rows[0] ? { xid: rows[0].xid, invoiceId: rows[0].id } : undefined;
}
