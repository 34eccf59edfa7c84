// What makes a table followable incrementally, planned as steps a person can read before they
// run: the watermark column created_xid, the change log (sql/changes.sql) and the index on
// (created_xid, invoice_id). This tool's own table gets them from `invoices init`; an adopted
// one from `invoices risk init`, which says that it changes the user's table.
import type { Client } from '../db/client.js';
import type { Logger } from '../log.js';
import { CREATED_XID_INDEX, planIndexes, type IndexStep } from '../schema/indexes.js';
import { changesSql } from './change-log.js';
import { changesTable, describeTable, type SourceTable } from './describe.js';

export interface SetupStep extends IndexStep {
  /** Changes a table this tool does not own (an adopted invoices table). */
  altersUserTable: boolean;
}

/** The steps that make `source` incremental; empty when it is. Index steps are planned after created_xid exists. */
export async function planTracking(client: Client, source: SourceTable): Promise<SetupStep[]> {
  const steps: SetupStep[] = [];
  const theirs = (description: string, sql: string) => steps.push({ description, sql, altersUserTable: source.tables.mapped });
  if (!source.createdXid) {
    theirs(
      `add column created_xid xid8 NOT NULL DEFAULT pg_current_xact_id() to ${source.table}: the id of each row's inserting transaction, the watermark that stays correct when transactions commit out of order (no table rewrite; existing rows all get this transaction's id)`,
      `ALTER TABLE ${source.table} ADD COLUMN created_xid xid8 NOT NULL DEFAULT pg_current_xact_id()`,
    );
  }
  if (!source.tracked) {
    const log = changesTable(source.tables.invoices);
    theirs(
      `add table ${log} and trigger ${log}_track on ${source.table}: records the month of every updated or deleted row (one row per transaction and month), so totals and the lake recompute exactly those months at once (sql/changes.sql)`,
      changesSql(source),
    );
  }
  for (const step of await planIndexes(client, source.tables, [CREATED_XID_INDEX])) theirs(step.description, step.sql);
  return steps;
}

/**
 * On this tool's own table, installs what is missing (a database made by an earlier version, or
 * the created_xid index, which `init` leaves to the first export or refresh: built concurrently,
 * per partition) and says so; an adopted table is left as it is (`invoices risk init` asks first).
 * Returns the description, read again when anything was installed.
 */
export async function ensureTracked(client: Client, source: SourceTable, log: Logger): Promise<SourceTable> {
  if (source.tables.mapped) return source;
  const steps = await planTracking(client, source);
  if (!steps.length) return source;
  for (const step of steps) {
    log.info(step.description);
    await client.query(step.sql);
  }
  return describeTable(client, source.tables);
}
