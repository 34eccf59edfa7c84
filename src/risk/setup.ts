// `invoices risk init`: what the scorer needs, planned as steps a person can read before they
// run: the risk tables, the watermark column on an adopted table, the wake-up trigger for
// --follow, and the indexes that keep a batch cheap. Idempotent: a second run plans nothing.
import { columnPresence, hasTrigger } from '../db/catalog.js';
import type { Client } from '../db/client.js';
import type { SourceTable } from '../table/describe.js';
import { planIndexes, USE_CASE_INDEXES, type IndexSpec } from '../schema/indexes.js';
import { sqlFile } from '../schema/sql-file.js';
import { planTracking, type SetupStep } from '../table/tracking.js';
import { quoteIdent } from '../tables.js';

export const NOTIFY_CHANNEL = 'invoices_risk';
const TRIGGER = 'invoices_risk_notify';

/** The scorer's own index (its cursor walks the created_xid index of src/table/tracking.ts): the issuer-receiver pairs it has seen. */
const RISK_INDEXES: IndexSpec[] = [
  {
    suffix: 'risk_pair_idx',
    columns: ['issuer_id', 'receiver_id', 'issue_date'],
    include: [],
    purpose: 'receivers an issuer invoiced before (first invoice between two customers)',
  },
];

/**
 * The risk tables as they are: 'ok', 'missing' (any of the three), or 'old': made by an earlier
 * version, without source_id, whose scores can be attributed neither to a table nor to a row.
 */
export type RiskTables = 'ok' | 'missing' | 'old';

const RISK_TABLES = ['risk_scores', 'risk_dead_letters', 'risk_watermarks'];

/** What the risk tables are (one catalog query). */
export async function riskTables(client: Client): Promise<RiskTables> {
  const sourceId = await columnPresence(client, RISK_TABLES, 'source_id');
  if (sourceId.includes(false)) return 'old';
  if (sourceId.includes(null)) return 'missing';
  return 'ok';
}

/** What is said when risk tables of an earlier version are dropped (init's step, and the automatic init). */
export const OLD_TABLES_DROPPED =
  'risk tables of an earlier version (scores bound to neither a source table nor the row they scored) dropped; every invoice is scored again';

/** The steps that make the scorer ready; empty when it is. */
export async function planRiskSetup(client: Client, src: SourceTable): Promise<SetupStep[]> {
  const steps: SetupStep[] = [];
  const mine = (description: string, sql: string) => steps.push({ description, sql, altersUserTable: false });
  const theirs = (description: string, sql: string) => steps.push({ description, sql, altersUserTable: src.tables.mapped });
  const shape = await riskTables(client);
  const trigger = await hasTrigger(client, src.table, TRIGGER);
  if (shape === 'old') {
    mine(
      'drop risk_scores, risk_dead_letters and risk_watermarks of an earlier version (their scores name neither the source table nor the row they scored: every invoice is scored again) and create them anew (sql/risk.sql)',
      sqlFile('risk.sql'),
    );
  } else if (shape === 'missing') {
    mine('create risk_scores, risk_dead_letters and risk_watermarks (sql/risk.sql)', sqlFile('risk.sql'));
  }
  // created_xid, the change log and the created_xid index: what totals and the lake follow too.
  steps.push(...(await planTracking(client, src)));
  if (!trigger) {
    theirs(
      `add trigger ${TRIGGER} to ${src.table}: NOTIFY ${NOTIFY_CHANNEL} once per inserting statement, so \`invoices risk --follow\` wakes up at the commit`,
      `CREATE TRIGGER ${quoteIdent(TRIGGER)} AFTER INSERT ON ${src.table} FOR EACH STATEMENT EXECUTE FUNCTION invoices_risk_notify()`,
    );
  }
  // The issuer index of the use cases serves the amount and velocity history; the scorer's own its pairs.
  const specs = [...USE_CASE_INDEXES.filter((s) => s.suffix === 'issuer_date_idx'), ...RISK_INDEXES];
  // Planned before created_xid exists on an adopted table: the steps run in order.
  for (const step of await planIndexes(client, src.tables, specs)) theirs(step.description, step.sql);
  return steps;
}

/**
 * Runs the steps in order, each in its own statement (concurrent index builds cannot run in a
 * transaction); a re-run after an interruption picks up where this one stopped.
 */
export async function applyRiskSetup(client: Client, steps: SetupStep[], onStep: (s: SetupStep) => void): Promise<void> {
  for (const step of steps) {
    onStep(step);
    await client.query(step.sql);
  }
}
