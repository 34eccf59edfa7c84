// The plan of a conversion, from the catalog and one scan of the table: whether there is
// anything to do or to resume, the refusals, and every statement the phases will run. Read by
// the dry run and by the runner, which plans again once the prepare has created its objects.
import type { Client } from '../../db/client.js';
import { UsageError } from '../../errors.js';
import { DEFAULT_TABLES } from '../../tables.js';
import { detectLayout } from '../apply.js';
import type { Month } from '../partitions.js';
import { identitySequences, relationsPresent } from '../../db/catalog/table-facts.js';
import { checkConvertible, inspectTable, monthsOf, readState, type StateRow, type TableFacts } from './inspect.js';
import { prefixedName, withNames, type Names, type Quote } from './names.js';
import {
  backfillSql,
  finishStatements,
  lockSql,
  prepareStatements,
  sqlContext,
  switchStatements,
  translateIndexes,
  type IndexStep,
  type Sql,
  type SwitchPlan,
} from './statements.js';
import { ConversionError, type ConvertOptions, CONVERT_DEFAULTS } from './types.js';

export interface ConversionPlan {
  /** 'convert': start; 'resume': an earlier run stopped in `phase`; 'finish': switched, clean-up left; 'done': already partitioned. */
  status: 'convert' | 'resume' | 'finish' | 'done';
  phase: StateRow['phase'] | null;
  rows: number;
  copiedRows: number;
  months: Array<{ month: Month; rows: number }>;
  partitions: string[];
  prepare: string[];
  backfill: string;
  batchSize: number;
  indexes: IndexStep[];
  /** The switch's locks and statements, in the one transaction that runs them under lock_timeout. */
  switchSql: string[];
  lockTimeoutMs: number;
  finish: string[];
  carried: string[];
  warnings: string[];
  names: Names;
  /** The table as inspected, and what the statements derive from it (null when there is no plain table to convert). */
  sql: Sql | null;
}

/**
 * What `convertInvoices` would do, from the catalog and one scan of the table (months); changes nothing.
 * Also the refusals: a UsageError here means the conversion cannot start.
 */
export async function planConversion(client: Client, opts: ConvertOptions): Promise<ConversionPlan> {
  return withNames(client, opts.tables ?? DEFAULT_TABLES, (n, q) => planWith(client, n, q, opts));
}

/** planConversion with the names already in place (the runner's). */
export async function planWith(client: Client, n: Names, q: Quote, opts: ConvertOptions): Promise<ConversionPlan> {
  const batchSize = opts.batchSize ?? CONVERT_DEFAULTS.batchSize;
  const lockTimeoutMs = opts.lockTimeoutMs ?? CONVERT_DEFAULTS.lockTimeoutMs;
  const { layout } = await detectLayout(client, n.tables);
  const state = await readState(client, n);
  const empty: ConversionPlan = {
    status: 'done',
    phase: state?.phase ?? null,
    rows: 0,
    copiedRows: 0,
    months: [],
    partitions: [],
    prepare: [],
    backfill: '',
    batchSize,
    indexes: [],
    switchSql: [],
    lockTimeoutMs,
    finish: [],
    carried: [],
    warnings: [],
    names: n,
    sql: null,
  };
  if (layout === 'partitioned') {
    if (state?.phase === 'switched') return { ...empty, status: 'finish', finish: finishStatements(n) };
    return empty;
  }
  const facts = await inspectTable(client, n, q);
  const s = sqlContext(q, facts, n);
  if (state && state.old_table !== facts.oid) {
    throw new ConversionError(
      `${n.label} is not the table the conversion started on (it was replaced since ${state.started_at}): cancel it with \`invoices partition --convert --cancel\`, then convert again`,
    );
  }
  const { steps, carried, warnings } = translateIndexes(s);
  warnings.push(...facts.notes);
  carried.unshift(
    `columns ${facts.columns
      .filter((c) => !c.generated)
      .map((c) => c.name)
      .join(', ')} with their defaults, NOT NULL and CHECK constraints`,
  );
  carried.push(...carriedBesideIndexes(facts, n));

  let months: ConversionPlan['months'] = [];
  let partitions: string[] = [];
  let prepare: string[] = [];
  let rows = Number(state?.rows_total ?? 0);
  if (!state) {
    checkConvertible(facts, n);
    months = await monthsOf(client, n, s.monthExpr);
    rows = months.reduce((n, m) => n + m.rows, 0);
    const all = [...new Set([...months.map((m) => m.month), ...opts.ahead])].sort();
    const parts = all.map((month) => ({ month, name: n.partition(month) }));
    partitions = parts.map((p) => p.name);
    await checkNamesFree(client, [
      n.newTable,
      n.oldTable,
      n.locator,
      n.log,
      n.defaultPartition,
      ...partitions,
      ...steps.map((x) => x.name),
      ...facts.indexes.map((i) => prefixedName(i.name, n.raw.oldTable, n.raw.parent)),
    ]);
    prepare = prepareStatements(client, s, parts, rows);
    const date = facts.columns.find((c) => c.name === n.dateName);
    if (date && !date.notNull)
      warnings.push(`${n.dateName} allows NULL in ${n.label}; the partitioned table requires it (the primary key includes it)`);
  }
  const sw = await planSwitch(client, s, steps);
  const locks = lockSql(sw.relations);
  return {
    status: state ? 'resume' : 'convert',
    phase: state?.phase ?? null,
    rows,
    copiedRows: Number(state?.rows_copied ?? 0),
    months,
    partitions,
    prepare,
    backfill: backfillSql(s, !state?.last_copied_id),
    batchSize,
    indexes: steps,
    switchSql: [
      locks.own,
      locks.shared,
      `-- replay what is left of ${n.log}, compare those rows one by one`,
      ...sw.statements.map((x) => x.sql),
    ],
    lockTimeoutMs,
    finish: finishStatements(n),
    carried: [...carried, ...sw.carried],
    warnings: [...warnings, ...sw.warnings],
    names: n,
    sql: s,
  };
}

/** What is carried over beside the columns and indexes: the watermark column, foreign keys, privileges, owner. */
function carriedBesideIndexes(facts: TableFacts, n: Names): string[] {
  const out: string[] = [];
  if (!facts.columns.some((c) => c.name === 'created_xid')) {
    out.push(
      "added created_xid xid8 DEFAULT pg_current_xact_id() as in the tool's own layout (copied rows carry the id of the transaction that copied them)",
    );
  }
  for (const c of facts.constraints.filter((x) => x.contype === 'f')) out.push(`foreign key ${c.name}: ${c.def}`);
  if (facts.grants.length)
    out.push(
      `privileges: ${facts.grants.map((g) => `${g.privilege} to ${g.grantee || 'PUBLIC'}`).join(', ')} (and the matching rights on ${n.locator}, which the trigger writes)`,
    );
  if (facts.owner !== facts.currentUser) out.push(`owner ${facts.owner}`);
  return out;
}

/** The switch's statements from the catalog as it is (planned again under the lock before they run). */
export async function planSwitch(client: Client, s: Sql, steps: IndexStep[]): Promise<SwitchPlan> {
  return switchStatements(s, steps, await identitySequences(client, s.n.newTable), (v) => client.escapeLiteral(v));
}

/** Objects this conversion would create that exist without a conversion in progress: refuse rather than guess. */
async function checkNamesFree(client: Client, names: string[]): Promise<void> {
  const taken = await relationsPresent(client, names, true);
  if (taken.length) {
    throw new UsageError(
      `${taken.join(', ')} already exist${taken.length === 1 ? 's' : ''} but no conversion is in progress: rename or drop ${taken.length === 1 ? 'it' : 'them'} first`,
    );
  }
}
