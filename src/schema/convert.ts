// Converts a plain `invoices` table created outside this tool into the partitioned layout
// (sql/invoices.sql, sql/invoice-ids.sql) while the application keeps reading and writing it:
//
//   prepare   one short transaction: invoices_part (partitioned, same columns), its monthly
//             partitions and DEFAULT, outbound foreign keys, grants, invoice_ids (not yet indexed),
//             a change log fed by a row trigger on invoices, and a state row.
//   backfill  committed batches in invoice_id order; each batch writes its rows, their
//             invoice_ids rows and the new cursor in one transaction, so an interruption
//             (Ctrl-C, SIGKILL, a crash) resumes exactly where the last commit left it.
//   indexes   primary key (invoice_id, issue_date), the old table's indexes translated,
//             invoice_ids' key; then VACUUM ANALYZE (statistics and visibility map before traffic).
//   sync      replay the change log (delete + re-copy each logged id), verify counts and sums per
//             month in one REPEATABLE READ snapshot, replay again.
//   switch    one transaction under lock_timeout, retried: ACCESS EXCLUSIVE on invoices, replay
//             and verify what is left of the log row by row, swap the names, hand over sequences,
//             add the invoice_ids trigger, repoint views, triggers and inbound foreign keys.
//   finish    validate the repointed foreign keys, drop the log, the state and the trigger functions.
//
// Every phase can be re-run: a second run resumes from the state table. The old table stays,
// renamed invoices_unpartitioned, until the user drops it.
import type { Client } from '../db/client.js';
import { InterruptedError, InvoicesError, UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { detectLayout, locatorSql, locatorTable } from './apply.js';
import { defaultPartitionName, monthBounds, partitionName, type Month } from './partitions.js';
import { DEFAULT_TABLES, quoteIdent, type TableMap } from '../tables.js';
import { lockSource } from '../db/source-lock.js';
import { sourceKey } from '../table/describe.js';

/**
 * The names a conversion uses, as SQL: this tool's own for its table (invoices_part,
 * invoices_unpartitioned, invoice_ids, ...); for an adopted table the same derived from its name,
 * in its schema (put first in search_path while converting), on its own columns.
 */
export interface Names {
  /** The table. */
  parent: string;
  /** The partitioned table while it is being filled; renamed to `parent` at the switch. */
  newTable: string;
  /** What the original table is called after the switch. */
  oldTable: string;
  locator: string;
  log: string;
  state: string;
  capture: string;
  guard: string;
  defaultPartition: string;
  partition: (month: Month) => string;
  /** The invoice id, issue date and amount columns: as the catalog names them, and as SQL. */
  idName: string;
  dateName: string;
  amountName: string;
  id: string;
  date: string;
  amount: string;
  /** The table in messages. */
  label: string;
  /** Names as the catalog has them, for comparisons and derived names. */
  raw: { parent: string; newTable: string; oldTable: string; capture: string; guard: string };
  lockKey: string;
  tables: TableMap;
}

function convertNames(tables: TableMap, q: Quote): Names {
  const { schema, table, columns } = tables.invoices;
  const raw = (suffix: string) => `${table}_${suffix}`;
  return {
    parent: q(table),
    newTable: q(raw('part')),
    oldTable: q(raw('unpartitioned')),
    locator: q(locatorTable(tables)),
    log: q(raw('convert_log')),
    state: q(raw('convert_state')),
    capture: q(raw('convert_capture')),
    guard: q(raw('convert_no_truncate')),
    defaultPartition: q(defaultPartitionName(table)),
    partition: (m) => q(partitionName(m, table)),
    idName: columns.invoice_id,
    dateName: columns.issue_date,
    amountName: columns.amount,
    id: q(columns.invoice_id),
    date: q(columns.issue_date),
    amount: q(columns.amount),
    label: tables.mapped ? `${schema}.${table}` : 'invoices',
    // One bulk writer per table at a time: a conversion, or a seed of the same table.
    lockKey: sourceKey(tables),
    tables,
    raw: {
      parent: table,
      newTable: raw('part'),
      oldTable: raw('unpartitioned'),
      capture: raw('convert_capture'),
      guard: raw('convert_no_truncate'),
    },
  };
}

/**
 * Runs fn with the names a conversion needs; for an adopted table with its schema alone in
 * search_path, so that everything the conversion creates lands beside it.
 */
async function withNames<T>(client: Client, tables: TableMap, fn: (n: Names, q: Quote) => Promise<T>): Promise<T> {
  if (!tables.mapped) {
    const q = await quoter(client);
    return fn(convertNames(tables, q), q);
  }
  const {
    rows: [saved],
  } = await client.query<{ path: string }>("SELECT current_setting('search_path') AS path");
  await client.query("SELECT set_config('search_path', $1, false)", [quoteIdent(tables.invoices.schema)]);
  try {
    const q = await quoter(client);
    return await fn(convertNames(tables, q), q);
  } finally {
    await client.query("SELECT set_config('search_path', $1, false)", [saved.path]).catch(() => {});
  }
}

/** A conversion failed in a way that left everything consistent (nothing switched, or switched and finishing): exit 1. */
export class ConversionError extends InvoicesError {}

export type ConvertPhase = 'prepare' | 'backfill' | 'indexes' | 'sync' | 'switch' | 'finish';

export interface ConvertProgress {
  phase: ConvertPhase;
  done: number;
  total: number;
  /** What the phase is doing right now (the index being built). */
  detail?: string;
}

export interface ConvertOptions {
  /** Months to create partitions for besides those present in the table (e.g. the months ahead). */
  ahead: Month[];
  /** Rows per backfill transaction (default 100,000). */
  batchSize?: number;
  /** lock_timeout of each attempt at the switch (and at the short prepare lock), ms (default 500). */
  lockTimeoutMs?: number;
  /** Attempts after the first before giving up on the lock (default 10). */
  lockRetries?: number;
  /** Switch once a catch-up round replays fewer logged changes than this (default 1,000). */
  catchUpThreshold?: number;
  signal?: AbortSignal;
  log?: Logger;
  onProgress?: (p: ConvertProgress) => void;
  /** The table to convert: this tool's `invoices` by default, or a mapped one. */
  tables?: TableMap;
  /** When another conversion or seed holds the table: wait for it (default) or refuse at once (exit 1). */
  wait?: boolean;
}

export interface ConvertResult {
  status: 'converted' | 'already-partitioned';
  /** A conversion left by an earlier run was continued. */
  resumed: boolean;
  /** Rows in the partitioned table after the switch. */
  rows: number;
  /** Rows copied by this run's backfill. */
  copiedRows: number;
  partitions: number;
  seconds: number;
  /** copiedRows / seconds spent copying. */
  rowsPerSecond: number;
  /** How long the ACCESS EXCLUSIVE lock on invoices was held (LOCK acquired to COMMIT), ms. */
  lockMs: number | null;
  /** Attempts at the exclusive lock (1 = the first succeeded). */
  lockAttempts: number;
  /** Rows that landed in the DEFAULT partition (a month without a partition). */
  defaultRows: number;
  /** The original table, kept: null when the conversion had already finished. */
  oldTable: string | null;
  carried: string[];
  warnings: string[];
}

// --- what the old table looks like ----------------------------------------------------------

type IssueDateKind = 'timestamptz' | 'timestamp' | 'date';

interface ColumnFact {
  name: string;
  type: string;
  base: string;
  generated: boolean;
  identity: '' | 'a' | 'd';
  notNull: boolean;
  /** The sequence behind a serial default or an identity column. */
  sequence: string | null;
  /** The sequence is owned by this column (serial or identity). */
  ownedSequence: boolean;
}

interface IndexFact {
  name: string;
  def: string;
  unique: boolean;
  primary: boolean;
  valid: boolean;
  expressions: boolean;
  partial: boolean;
  keys: string[];
  constraint: string | null;
  contype: string | null;
  condef: string | null;
}

interface ConstraintFact {
  name: string;
  contype: string;
  valid: boolean;
  self: boolean;
  def: string;
}

interface InboundFk {
  name: string;
  table: string;
  relkind: string;
  def: string;
  refColumns: string[];
}

interface ViewFact {
  name: string;
  relkind: string;
  def: string;
  options: string[] | null;
}

interface TableFacts {
  oid: number;
  schema: string;
  owner: string;
  currentUser: string;
  comment: string | null;
  columns: ColumnFact[];
  issueDate: IssueDateKind;
  hasAmount: boolean;
  indexes: IndexFact[];
  constraints: ConstraintFact[];
  inbound: InboundFk[];
  triggers: Array<{ name: string; def: string; enabled: string }>;
  dependents: ViewFact[];
  functions: string[];
  grants: Array<{ grantee: string; privilege: string; grantable: boolean }>;
  /** Things that cannot be carried over, found while inspecting (reported, not refused). */
  notes: string[];
}

interface StateRow {
  phase: 'backfill' | 'indexes' | 'sync' | 'switched';
  old_table: number;
  last_copied_id: string | null;
  rows_copied: string;
  rows_total: string;
  started_at: string;
}

/** Identifier quoting: bare when PostgreSQL would read it back unchanged, else quoted by the project's one helper. */
type Quote = (name: string) => string;

async function quoter(client: Client): Promise<Quote> {
  const { rows } = await client.query<{ word: string }>("SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'");
  const keywords = new Set(rows.map((r) => r.word));
  return (name) => (/^[a-z_][a-z0-9_]*$/.test(name) && !keywords.has(name) ? name : quoteIdent(name));
}

async function inspectTable(client: Client, n: Names, q: Quote): Promise<TableFacts> {
  const {
    rows: [t],
  } = await client.query<{
    oid: number;
    relkind: string;
    relispartition: boolean;
    persistence: string;
    schema: string;
    current_schema: string | null;
    owner: string;
    me: string;
    rls: boolean;
    rules: boolean;
    replident: string;
    reloptions: string[] | null;
    comment: string | null;
    inherits: boolean;
    column_acl: boolean;
    stats: string[];
    publications: string[];
  }>(
    `SELECT c.oid, c.relkind::text, c.relispartition, c.relpersistence::text AS persistence, n.nspname AS schema,
            current_schema() AS current_schema, pg_get_userbyid(c.relowner) AS owner, current_user AS me,
            c.relrowsecurity AS rls, c.relhasrules AS rules, c.relreplident::text AS replident, c.reloptions,
            obj_description(c.oid, 'pg_class') AS comment,
            EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid) AS inherits,
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid AND attacl IS NOT NULL) AS column_acl,
            ARRAY(SELECT stxname::text FROM pg_statistic_ext WHERE stxrelid = c.oid) AS stats,
            ARRAY(SELECT p.pubname::text FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid WHERE r.prrelid = c.oid) AS publications
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = to_regclass($1)`,
    [n.parent],
  );
  const L = n.label;
  if (!t) {
    throw new UsageError(
      n.tables.mapped
        ? `there is no table ${L} to convert: fix the table mapping`
        : 'there is no invoices table to convert: `invoices init` creates one, already partitioned',
    );
  }
  if (t.relkind !== 'r') throw new UsageError(`${L} is not a table (relkind ${t.relkind}): nothing to convert`);
  if (t.relispartition || t.inherits) throw new UsageError(`${L} takes part in table inheritance: convert only a stand-alone table`);
  if (t.persistence !== 'p') throw new UsageError(`${L} is a temporary or unlogged table: convert only a regular table`);
  if (t.schema !== t.current_schema) {
    throw new UsageError(
      `${L} is in schema ${t.schema} but new tables would go to ${t.current_schema ?? 'no schema'}: put ${t.schema} first in search_path`,
    );
  }
  const oid = t.oid;

  const { rows: columns } = await client.query<ColumnFact & { owned: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::regtype::text AS base,
            a.attgenerated::text <> '' AS generated, a.attidentity::text AS identity, a.attnotnull AS "notNull",
            pg_get_serial_sequence($2, a.attname) AS sequence,
            EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
                      AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) AS "ownedSequence"
       FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [oid, n.parent],
  );
  const id = columns.find((c) => c.name === n.idName);
  const date = columns.find((c) => c.name === n.dateName);
  const [I, D] = [n.idName, n.dateName];
  if (!id || !date) throw new UsageError(`${L} needs columns ${I} and ${D} to be converted`);
  if (!['bigint', 'integer', 'smallint'].includes(id.base)) throw new UsageError(`${I} must be an integer column, it is ${id.type}`);
  if (!id.notNull) throw new UsageError(`${I} must be NOT NULL to be converted (ALTER TABLE ${n.parent} ALTER ${n.id} SET NOT NULL)`);
  if (id.generated || date.generated) throw new UsageError(`${I} and ${D} must be stored columns, not generated ones`);
  const kinds: Record<string, IssueDateKind> = {
    'timestamp with time zone': 'timestamptz',
    'timestamp without time zone': 'timestamp',
    date: 'date',
  };
  const issueDate = kinds[date.base];
  if (!issueDate)
    throw new UsageError(`${D} must be a timestamptz, timestamp or date column to be partitioned by month, it is ${date.type}`);

  const { rows: indexes } = await client.query<IndexFact>(
    `SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisunique AS unique, i.indisprimary AS primary,
            i.indisvalid AS valid, i.indexprs IS NOT NULL AS expressions, i.indpred IS NOT NULL AS partial,
            ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS keys,
            con.conname AS constraint, con.contype::text AS contype, pg_get_constraintdef(con.oid) AS condef
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
       LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
      WHERE i.indrelid = $1::oid ORDER BY ic.relname`,
    [oid],
  );
  const { rows: constraints } = await client.query<ConstraintFact>(
    `SELECT conname AS name, contype::text, convalidated AS valid, confrelid = conrelid AS self, pg_get_constraintdef(oid) AS def
       FROM pg_constraint WHERE conrelid = $1::oid AND contype IN ('f', 'c') ORDER BY conname`,
    [oid],
  );
  const { rows: inbound } = await client.query<InboundFk>(
    `SELECT c.conname AS name, c.conrelid::regclass::text AS "table", t.relkind::text AS relkind, pg_get_constraintdef(c.oid) AS def,
            ARRAY(SELECT a.attname::text FROM unnest(c.confkey) k JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k) AS "refColumns"
       FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
      WHERE c.confrelid = $1::oid AND c.contype = 'f' AND c.conrelid <> $1::oid AND c.conparentid = 0 ORDER BY 2, 1`,
    [oid],
  );
  const { rows: triggers } = await client.query<{ name: string; def: string; enabled: string }>(
    `SELECT tgname AS name, pg_get_triggerdef(oid) AS def, tgenabled::text AS enabled FROM pg_trigger
      WHERE tgrelid = $1::oid AND NOT tgisinternal AND tgname <> ALL ($2) ORDER BY tgname`,
    [oid, [n.raw.capture, n.raw.guard]],
  );
  const { rows: dependents } = await client.query<ViewFact>(
    `SELECT DISTINCT v.oid::regclass::text AS name, v.relkind::text AS relkind, pg_get_viewdef(v.oid) AS def, v.reloptions AS options
       FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
      WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1::oid AND v.oid <> $1::oid
      ORDER BY 1`,
    [oid],
  );
  const { rows: functions } = await client.query<{ name: string }>(
    `SELECT DISTINCT p.oid::regprocedure::text AS name FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
      WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1::oid ORDER BY 1`,
    [oid],
  );
  const { rows: grants } = await client.query<{ grantee: string; privilege: string; grantable: boolean }>(
    `SELECT CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END AS grantee, a.privilege_type AS privilege, a.is_grantable AS grantable
       FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1::oid AND a.grantee <> c.relowner ORDER BY 1, 2`,
    [oid],
  );

  const notes: string[] = [];
  if (t.rls) notes.push(`row-level security is enabled on ${L}: policies are not carried over (CREATE POLICY on the new table)`);
  if (t.rules) notes.push(`${L} has rules: they are not carried over`);
  if (t.replident !== 'd') notes.push(`${L} has a non-default REPLICA IDENTITY: set it again on the partitions`);
  if (t.reloptions?.length)
    notes.push(`${L} has storage options (${t.reloptions.join(', ')}): set them on the partitions if they still matter`);
  if (t.column_acl) notes.push(`${L} has column privileges: they are not carried over (GRANT them on the new table)`);
  for (const s of t.stats) notes.push(`extended statistics ${s} stay on the old table: CREATE STATISTICS on the new one`);
  for (const p of t.publications)
    notes.push(
      `${L} is in publication ${p}: add the new table (ALTER PUBLICATION ${q(p)} ADD TABLE ${n.parent}, with publish_via_partition_root)`,
    );

  return {
    oid,
    schema: t.schema,
    owner: t.owner,
    currentUser: t.me,
    comment: t.comment,
    columns,
    issueDate,
    hasAmount: columns.some((c) => c.name === n.amountName && !c.generated),
    indexes,
    constraints,
    inbound,
    triggers,
    dependents,
    functions: functions.map((f) => f.name),
    grants,
    notes,
  };
}

/** The invoice_id uniqueness the conversion relies on: a valid unique index on exactly (invoice_id). */
function idUniqueIndex(facts: TableFacts, n: Names): IndexFact | undefined {
  return facts.indexes.find((i) => i.unique && i.valid && !i.expressions && !i.partial && i.keys.length === 1 && i.keys[0] === n.idName);
}

/** Refusals that must come before anything is created (UsageError, exit 2). */
function checkConvertible(facts: TableFacts, n: Names): void {
  const L = n.label;
  if (!idUniqueIndex(facts, n)) {
    throw new UsageError(
      `${n.idName} is not unique in ${L} (no primary key or unique index on ${n.idName} alone): add one without blocking writers with \`invoices index\`, then convert`,
    );
  }
  for (const c of facts.constraints) {
    if (!c.valid)
      throw new UsageError(
        `constraint ${c.name} on ${L} is NOT VALID: validate it first (ALTER TABLE ${n.parent} VALIDATE CONSTRAINT ${c.name}); the partitioned table enforces it on every row`,
      );
    if (c.contype === 'f' && c.self)
      throw new UsageError(
        `foreign key ${c.name} references ${L} itself: drop it before converting and add it back referencing ${n.locator} (invoice_id)`,
      );
  }
  for (const f of facts.inbound) {
    if (f.refColumns.length !== 1 || f.refColumns[0] !== n.idName) {
      throw new UsageError(
        `foreign key ${f.name} on ${f.table} references ${L} (${f.refColumns.join(', ')}): only references to ${n.idName} can be moved to ${n.locator}; drop it first`,
      );
    }
    if (f.relkind !== 'r')
      throw new UsageError(
        `foreign key ${f.name} is on partitioned table ${f.table}: it cannot be moved without a validating scan under lock; drop it first`,
      );
  }
}

// --- names --------------------------------------------------------------------------------

const MAX_IDENT = 63;

/** `prefix` + the rest of `name` after a leading `parent` ("invoices"), cut to PostgreSQL's 63 bytes. */
export function prefixedName(name: string, prefix: string, parent = 'invoices'): string {
  const rest = name.startsWith(`${parent}_`) ? name.slice(parent.length) : `_${name}`;
  let out = prefix + rest;
  while (Buffer.byteLength(out) > MAX_IDENT) out = out.slice(0, -1);
  return out;
}

// --- the plan -----------------------------------------------------------------------------

interface IndexStep {
  /** Name while it is built on invoices_part; renamed to `finalName` at the switch. */
  name: string;
  finalName: string;
  sql: string;
  description: string;
}

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
  switchSql: string[];
  finish: string[];
  carried: string[];
  warnings: string[];
  names: Names;
}

interface Sql {
  q: Quote;
  facts: TableFacts;
  /** Stored columns, in the old table's order (generated ones are computed by the new table). */
  cols: string;
  monthExpr: string;
  n: Names;
}

function sqlContext(q: Quote, facts: TableFacts, n: Names): Sql {
  const cols = facts.columns
    .filter((c) => !c.generated)
    .map((c) => q(c.name))
    .join(', ');
  const monthExpr =
    facts.issueDate === 'timestamptz' ? `date_trunc('month', ${n.date} AT TIME ZONE 'UTC')` : `date_trunc('month', ${n.date}::timestamp)`;
  return { q, facts, cols, monthExpr, n };
}

async function readState(client: Client, n: Names): Promise<StateRow | null> {
  const {
    rows: [exists],
  } = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [n.state]);
  if (!exists.ok) return null;
  const { rows } = await client.query<StateRow>(
    `SELECT phase, old_table, last_copied_id::text, rows_copied::text, rows_total::text, started_at FROM ${n.state}`,
  );
  return rows[0] ?? null;
}

/** Rows per month of issue_date (UTC) in the old table: one scan. */
async function monthsOf(client: Client, s: Sql): Promise<Array<{ month: Month; rows: number }>> {
  const { rows } = await client.query<{ month: string | null; n: string }>(
    `SELECT to_char(${s.monthExpr}, 'YYYY-MM') AS month, count(*) AS n FROM ${s.n.parent} GROUP BY 1 ORDER BY 1`,
  );
  const nulls = rows.find((r) => r.month === null);
  if (nulls)
    throw new UsageError(
      `${nulls.n} invoices have no ${s.n.dateName}: a partitioned table needs one on every row (set them, then convert)`,
    );
  return rows.map((r) => ({ month: r.month as Month, rows: Number(r.n) }));
}

/** Objects this conversion would create that exist without a conversion in progress: refuse rather than guess. */
async function checkNamesFree(client: Client, names: string[]): Promise<void> {
  const { rows } = await client.query<{ name: string }>('SELECT n AS name FROM unnest($1::text[]) n WHERE to_regclass(n) IS NOT NULL', [
    names,
  ]);
  if (rows.length) {
    throw new UsageError(
      `${rows.map((r) => r.name).join(', ')} already exist${rows.length === 1 ? 's' : ''} but no conversion is in progress: rename or drop ${rows.length === 1 ? 'it' : 'them'} first`,
    );
  }
}

function translateIndexes(s: Sql): { steps: IndexStep[]; carried: string[]; warnings: string[] } {
  const { q, facts, n } = s;
  const { raw } = n;
  const locator = locatorTable(n.tables);
  const steps: IndexStep[] = [];
  const carried: string[] = [];
  const warnings: string[] = [];
  const idIndex = idUniqueIndex(facts, n);
  steps.push({
    name: `${raw.newTable}_pkey`,
    finalName: `${raw.parent}_pkey`,
    sql: `ALTER TABLE ${n.newTable} ADD CONSTRAINT ${q(`${raw.newTable}_pkey`)} PRIMARY KEY (${n.id}, ${n.date})`,
    description: `primary key (${n.idName}, ${n.dateName})`,
  });
  steps.push({
    name: `${locator}_pkey`,
    finalName: `${locator}_pkey`,
    sql: `ALTER TABLE ${n.locator} ADD CONSTRAINT ${q(`${locator}_pkey`)} PRIMARY KEY (invoice_id) INCLUDE (issue_date)`,
    description: `${locator} primary key: invoice_id unique across partitions`,
  });
  carried.push(
    `${n.idName} stays unique across partitions: ${idIndex?.name ?? 'the unique index'} becomes ${locator}_pkey (kept in step by a trigger)`,
  );
  for (const ix of facts.indexes) {
    if (ix === idIndex) continue;
    if (!ix.valid) {
      warnings.push(`index ${ix.name} is invalid (an interrupted CREATE INDEX CONCURRENTLY?): not recreated`);
      continue;
    }
    if (ix.contype === 'x') {
      warnings.push(`exclusion constraint ${ix.constraint} cannot be carried to a partitioned table: not recreated`);
      continue;
    }
    let tmp = prefixedName(ix.name, n.raw.newTable, n.raw.parent);
    if (steps.some((x) => x.name === tmp)) tmp = prefixedName(`${ix.name}_${steps.length}`, n.raw.newTable, n.raw.parent);
    const samePk =
      ix.unique && !ix.partial && !ix.expressions && ix.keys.length === 2 && ix.keys.includes(n.idName) && ix.keys.includes(n.dateName);
    if (samePk) {
      carried.push(`index ${ix.name}: same keys as the new primary key, not duplicated`);
      continue;
    }
    // A unique index on a partitioned table must contain the partition key as a plain column.
    const canStayUnique = ix.unique && !ix.expressions && ix.keys.includes(n.dateName);
    const at = ix.def.indexOf(' USING ');
    const tail = at >= 0 ? ix.def.slice(at) : '';
    // The new primary key is (invoice_id, issue_date): an old primary key on other columns becomes a unique key.
    const finalName = ix.primary ? prefixedName(`${raw.parent}_${ix.keys.join('_')}_key`, raw.parent, raw.parent) : ix.name;
    if (ix.constraint && canStayUnique && ix.condef) {
      steps.push({
        name: tmp,
        finalName,
        sql: `ALTER TABLE ${n.newTable} ADD CONSTRAINT ${q(tmp)} ${ix.condef.replace(/^PRIMARY KEY/, 'UNIQUE')}`,
        description: `${ix.primary ? 'unique (was the primary key)' : 'unique constraint'} ${ix.name}`,
      });
      carried.push(`${ix.primary ? 'primary key' : 'unique constraint'} ${ix.name}${ix.primary ? ' (as a unique constraint)' : ''}`);
      continue;
    }
    if (ix.unique && !canStayUnique) {
      warnings.push(
        `${ix.constraint ? 'unique constraint' : 'unique index'} ${ix.name} (${ix.keys.join(', ') || 'an expression'}) cannot stay unique on a table partitioned by ${n.dateName}: recreated as a plain index; enforce that uniqueness another way`,
      );
    } else {
      carried.push(`index ${ix.name}`);
    }
    steps.push({
      name: tmp,
      finalName,
      sql: `CREATE ${ix.unique && canStayUnique ? 'UNIQUE ' : ''}INDEX ${q(tmp)} ON ${n.newTable}${tail}`,
      description: `index ${ix.name}`,
    });
  }
  return { steps, carried, warnings };
}

function prepareStatements(client: Client, s: Sql, partitions: Array<{ name: string; month: Month }>, rowsTotal: number): string[] {
  const { q, facts, n } = s;
  const lit = (v: string) => client.escapeLiteral(v);
  const out: string[] = [
    `CREATE TABLE ${n.state} (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  phase          text NOT NULL CHECK (phase IN ('backfill', 'indexes', 'sync', 'switched')),
  old_table      oid NOT NULL,
  last_copied_id bigint,
  rows_copied    bigint NOT NULL DEFAULT 0,
  rows_total     bigint NOT NULL,
  started_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
)`,
    `COMMENT ON TABLE ${n.state} IS 'Progress of invoices partition --convert (backfill cursor, phase); dropped when the conversion finishes'`,
    `CREATE TABLE ${n.log} (
  seq        bigserial PRIMARY KEY,
  invoice_id bigint NOT NULL
)`,
    `COMMENT ON TABLE ${n.log} IS 'invoice ids written in invoices during invoices partition --convert, replayed into the new table; dropped when the conversion finishes'`,
    `CREATE TABLE ${n.newTable} (LIKE ${n.parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED INCLUDING IDENTITY) PARTITION BY RANGE (${n.date})`,
    `COMMENT ON TABLE ${n.newTable} IS ${lit(facts.comment ?? `${n.raw.parent}, partitioned by month of ${n.dateName}: being filled by invoices partition --convert, renamed to ${n.raw.parent} when it finishes`)}`,
  ];
  // The watermark column of the tool's layout (sql/invoices.sql), for incremental export and scoring.
  if (!facts.columns.some((c) => c.name === 'created_xid'))
    out.push(`ALTER TABLE ${n.newTable} ADD COLUMN created_xid xid8 NOT NULL DEFAULT pg_current_xact_id()`);
  for (const p of partitions) {
    const { from, to } = monthBounds(p.month);
    out.push(`CREATE TABLE ${p.name} PARTITION OF ${n.newTable} FOR VALUES FROM (${lit(from)}) TO (${lit(to)})`);
  }
  out.push(`CREATE TABLE ${n.defaultPartition} PARTITION OF ${n.newTable} DEFAULT`);
  // invoice_ids as in sql/invoice-ids.sql, with issue_date of the table's own type; its key comes after the backfill.
  out.push(`CREATE TABLE ${n.locator} (
  invoice_id  bigint NOT NULL,
  issue_date  ${facts.columns.find((c) => c.name === n.dateName)?.type ?? 'timestamptz'} NOT NULL
)`);
  if (facts.owner !== facts.currentUser) {
    for (const t of [n.newTable, ...partitions.map((p) => p.name), n.defaultPartition, n.locator])
      out.push(`ALTER TABLE ${t} OWNER TO ${q(facts.owner)}`);
  }
  for (const g of facts.grants) {
    out.push(`GRANT ${g.privilege} ON ${n.newTable} TO ${g.grantee ? q(g.grantee) : 'PUBLIC'}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
  }
  // The invoice_ids trigger writes as the user who writes invoices: give invoice_ids the same readers and writers.
  const locatorPrivileges = new Map<string, Set<string>>();
  for (const g of facts.grants) {
    const set = locatorPrivileges.get(g.grantee) ?? new Set<string>();
    if (g.privilege === 'SELECT') set.add('SELECT');
    if (['INSERT', 'UPDATE', 'DELETE'].includes(g.privilege)) ['SELECT', 'INSERT', 'UPDATE', 'DELETE'].forEach((p) => set.add(p));
    if (set.size) locatorPrivileges.set(g.grantee, set);
  }
  for (const [grantee, set] of locatorPrivileges)
    out.push(`GRANT ${[...set].join(', ')} ON ${n.locator} TO ${grantee ? q(grantee) : 'PUBLIC'}`);
  // The capture function runs as its owner, so writers of invoices need no rights on the log.
  out.push(`CREATE FUNCTION ${n.capture}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Every id a write touched, old and new: the converter re-copies each from invoices.
  IF TG_OP <> 'INSERT' THEN
    INSERT INTO ${q(facts.schema)}.${n.log} (invoice_id) VALUES (OLD.${n.id});
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.${n.id} IS DISTINCT FROM OLD.${n.id}) THEN
    INSERT INTO ${q(facts.schema)}.${n.log} (invoice_id) VALUES (NEW.${n.id});
  END IF;
  RETURN NULL;
END $$`);
  out.push(`CREATE FUNCTION ${n.guard}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '${n.label.replace(/'/g, "''")} is being converted by invoices partition --convert: TRUNCATE would not reach the new table; finish the conversion or cancel it (--convert --cancel) first';
END $$`);
  // Last, so the locks on customers and invoices are held only for the commit.
  for (const c of facts.constraints.filter((x) => x.contype === 'f'))
    out.push(`ALTER TABLE ${n.newTable} ADD CONSTRAINT ${q(c.name)} ${c.def}`);
  out.push(`CREATE TRIGGER ${n.capture} AFTER INSERT OR UPDATE OR DELETE ON ${n.parent} FOR EACH ROW EXECUTE FUNCTION ${n.capture}()`);
  out.push(`CREATE TRIGGER ${n.guard} BEFORE TRUNCATE ON ${n.parent} FOR EACH STATEMENT EXECUTE FUNCTION ${n.guard}()`);
  out.push(`INSERT INTO ${n.state} (phase, old_table, rows_total) VALUES ('backfill', ${facts.oid}, ${rowsTotal})`);
  return out;
}

function backfillSql(s: Sql, first: boolean): string {
  const { n } = s;
  return `WITH batch AS (
  SELECT ${s.cols} FROM ${n.parent}${first ? '' : ` WHERE ${n.id} > $2`} ORDER BY ${n.id} LIMIT $1
), copied AS (
  INSERT INTO ${n.newTable} (${s.cols}) OVERRIDING SYSTEM VALUE SELECT ${s.cols} FROM batch RETURNING ${n.id}, ${n.date}
), located AS (
  INSERT INTO ${n.locator} (invoice_id, issue_date) SELECT ${n.id}, ${n.date} FROM copied RETURNING invoice_id
)
SELECT count(*)::int8 AS n, max(invoice_id)::text AS last FROM located`;
}

interface Relations {
  /** Locked first: only this tool uses them, but autovacuum may. */
  own: string[];
  /** Locked once the own ones are held; the exclusive lock on invoices is timed from here. */
  shared: string[];
}

interface SwitchPlan {
  relations: Relations;
  statements: Array<{ sql: string; optional?: string }>;
  carried: string[];
  warnings: string[];
}

/** The switch's DDL, from the catalog as it is (run again under the lock before executing). */
async function planSwitch(client: Client, s: Sql, steps: IndexStep[]): Promise<SwitchPlan> {
  const { q, facts, n } = s;
  const statements: SwitchPlan['statements'] = [];
  const carried: string[] = [];
  const warnings: string[] = [];
  const views = facts.dependents.filter((v) => v.relkind === 'v');
  const relations: Relations = {
    own: [n.newTable, n.locator],
    shared: [n.parent, ...new Set(facts.inbound.map((f) => f.table)), ...views.map((v) => v.name)],
  };
  statements.push({ sql: `DROP TRIGGER ${n.capture} ON ${n.parent}` }, { sql: `DROP TRIGGER ${n.guard} ON ${n.parent}` });
  // Free the names the new table takes: the old table's indexes (and the constraints behind them) and identity sequences.
  for (const ix of facts.indexes)
    statements.push({ sql: `ALTER INDEX ${q(ix.name)} RENAME TO ${q(prefixedName(ix.name, n.raw.oldTable, n.raw.parent))}` });
  const { rows: newSequences } = await client.query<{ name: string; sequence: string | null }>(
    `SELECT a.attname AS name, pg_get_serial_sequence($1, a.attname) AS sequence FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> ''`,
    [n.newTable],
  );
  const identity = facts.columns.filter((c) => c.identity && c.sequence);
  for (const c of identity)
    statements.push({
      sql: `ALTER SEQUENCE ${c.sequence} RENAME TO ${q(prefixedName(`${n.raw.parent}_${c.name}_seq`, n.raw.oldTable, n.raw.parent))}`,
    });
  statements.push({ sql: `ALTER TABLE ${n.parent} RENAME TO ${n.oldTable}` }, { sql: `ALTER TABLE ${n.newTable} RENAME TO ${n.parent}` });
  for (const st of steps) if (st.name !== st.finalName) statements.push({ sql: `ALTER INDEX ${q(st.name)} RENAME TO ${q(st.finalName)}` });
  for (const c of identity) {
    // Identity: the new table's own sequence takes the usual name and continues where the old one
    // was, or past the largest id if ids were also written by hand.
    const schema = q(facts.schema);
    const current =
      newSequences.find((x) => x.name === c.name)?.sequence ??
      `${schema}.${q(prefixedName(`${n.raw.parent}_${c.name}_seq`, n.raw.newTable, n.raw.parent))}`;
    const finalName = q(prefixedName(`${n.raw.parent}_${c.name}_seq`, n.raw.parent, n.raw.parent));
    const oldSeq = `${schema}.${q(prefixedName(`${n.raw.parent}_${c.name}_seq`, n.raw.oldTable, n.raw.parent))}`;
    statements.push({ sql: `ALTER SEQUENCE ${current} RENAME TO ${finalName}` });
    const max = c.name === n.idName ? `(SELECT max(${n.id}) FROM ${n.parent})` : 'NULL::bigint';
    statements.push({
      sql: `SELECT setval(${client.escapeLiteral(`${schema}.${finalName}`)}, CASE WHEN ${max} > s.last_value THEN ${max} ELSE s.last_value END, ${max} > s.last_value OR s.is_called) FROM ${oldSeq} s`,
    });
    carried.push(`identity ${c.name}: continues after the old sequence's last value and max(${c.name})`);
  }
  for (const c of facts.columns.filter((x) => !x.identity && x.sequence && x.ownedSequence)) {
    statements.push({ sql: `ALTER SEQUENCE ${c.sequence} OWNED BY ${n.parent}.${q(c.name)}` });
    carried.push(`sequence ${c.sequence}: the default of ${c.name} keeps using it; now owned by the new table`);
  }
  const dateType = facts.columns.find((c) => c.name === n.dateName)?.type ?? 'timestamptz';
  statements.push({
    sql: locatorSql(n.tables, dateType)
      .replace(/^--.*\n/gm, '')
      .replace(/\n{3,}/g, '\n\n')
      .trim()
      .replace(/;$/, ''),
  });
  for (const tg of facts.triggers) {
    const sql = tg.def.replace(/ ON (\S+) /, (_m, on: string) => (on.endsWith(n.parent) ? ` ON ${n.parent} ` : _m));
    // The old table's trigger keeps its name; a partitioned table takes it too (names are per table).
    statements.push({ sql, optional: `trigger ${tg.name} could not be recreated on the partitioned table` });
    // Keep its firing mode: disabled, or firing only in (or also in) replication sessions.
    const mode: Record<string, string> = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };
    if (mode[tg.enabled])
      statements.push({
        sql: `ALTER TABLE ${n.parent} ${mode[tg.enabled]} TRIGGER ${q(tg.name)}`,
        optional: `trigger ${tg.name} could not be set to ${mode[tg.enabled]}`,
      });
    carried.push(`trigger ${tg.name}`);
  }
  for (const v of views) {
    const options = v.options?.length ? ` WITH (${v.options.join(', ')})` : '';
    statements.push({
      sql: `CREATE OR REPLACE VIEW ${v.name}${options} AS ${v.def.trim().replace(/;$/, '')}`,
      optional: `view ${v.name} still reads ${n.oldTable}: recreate it on ${n.parent}`,
    });
    carried.push(`view ${v.name}: now reads the partitioned table`);
  }
  for (const v of facts.dependents.filter((x) => x.relkind !== 'v')) {
    warnings.push(
      `materialized view ${v.name} still reads ${n.oldTable} (it follows the table it was created on): recreate it (DROP MATERIALIZED VIEW ${v.name}; CREATE MATERIALIZED VIEW ${v.name} AS ...) before dropping ${n.oldTable}`,
    );
  }
  for (const f of facts.functions)
    warnings.push(
      `function ${f} has a SQL-standard body bound to the old table: recreate it (CREATE OR REPLACE FUNCTION) so it reads the partitioned table`,
    );
  for (const f of facts.inbound) {
    statements.push({ sql: `ALTER TABLE ${f.table} DROP CONSTRAINT ${q(f.name)}` });
    statements.push({ sql: `ALTER TABLE ${f.table} ADD CONSTRAINT ${q(f.name)} ${repointForeignKey(f.def, n.locator)} NOT VALID` });
    carried.push(`foreign key ${f.name} on ${f.table}: now references ${n.locator} (invoice_id), validated after the switch`);
  }
  statements.push({ sql: `UPDATE ${n.state} SET phase = 'switched', updated_at = now()` });
  return { relations, statements, carried, warnings };
}

/** "FOREIGN KEY (x) REFERENCES invoices(invoice_id) ON DELETE CASCADE" -> the same, referencing invoice_ids. */
export function repointForeignKey(def: string, locator = 'invoice_ids'): string {
  const at = def.indexOf(' REFERENCES ');
  const open = def.indexOf('(', at + 12);
  const close = def.indexOf(')', open);
  if (at < 0 || open < 0 || close < 0) throw new ConversionError(`cannot read foreign key definition "${def}"`);
  return `${def.slice(0, at)} REFERENCES ${locator}(invoice_id)${def.slice(close + 1).replace(/ NOT VALID$/, '')}`;
}

/**
 * What `convertInvoices` would do, from the catalog and one scan of the table (months); changes nothing.
 * Also the refusals: a UsageError here means the conversion cannot start.
 */
export async function planConversion(client: Client, opts: ConvertOptions): Promise<ConversionPlan> {
  return withNames(client, opts.tables ?? DEFAULT_TABLES, (n, q) => planWith(client, n, q, opts));
}

async function planWith(client: Client, n: Names, q: Quote, opts: ConvertOptions): Promise<ConversionPlan> {
  const batchSize = opts.batchSize ?? 100_000;
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
    finish: [],
    carried: [],
    warnings: [],
    names: n,
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
  const cols = facts.columns.filter((c) => !c.generated).map((c) => c.name);
  carried.unshift(`columns ${cols.join(', ')} with their defaults, NOT NULL and CHECK constraints`);
  if (!facts.columns.some((c) => c.name === 'created_xid')) {
    carried.push(
      "added created_xid xid8 DEFAULT pg_current_xact_id() as in the tool's own layout (copied rows carry the id of the transaction that copied them)",
    );
  }
  for (const c of facts.constraints.filter((x) => x.contype === 'f')) carried.push(`foreign key ${c.name}: ${c.def}`);
  if (facts.grants.length)
    carried.push(
      `privileges: ${facts.grants.map((g) => `${g.privilege} to ${g.grantee || 'PUBLIC'}`).join(', ')} (and the matching rights on ${n.locator}, which the trigger writes)`,
    );
  if (facts.owner !== facts.currentUser) carried.push(`owner ${facts.owner}`);

  let months: ConversionPlan['months'] = [];
  let partitions: string[] = [];
  let prepare: string[] = [];
  let rows = Number(state?.rows_total ?? 0);
  if (!state) {
    checkConvertible(facts, n);
    months = await monthsOf(client, s);
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
  const lockTimeout = opts.lockTimeoutMs ?? 500;
  const switchSql = [
    'BEGIN',
    `SET LOCAL lock_timeout = ${lockTimeout}`,
    `LOCK TABLE ${sw.relations.own.join(', ')} IN ACCESS EXCLUSIVE MODE`,
    `LOCK TABLE ${sw.relations.shared.join(', ')} IN ACCESS EXCLUSIVE MODE`,
    `-- replay what is left of ${n.log}, compare those rows one by one`,
    ...sw.statements.map((x) => x.sql),
    'COMMIT',
  ];
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
    switchSql,
    finish: finishStatements(n),
    carried: [...carried, ...sw.carried],
    warnings: [...warnings, ...sw.warnings],
    names: n,
  };
}

function finishStatements(n: Names): string[] {
  return [
    `-- ALTER TABLE ... VALIDATE CONSTRAINT for each foreign key now referencing ${n.locator} (no lock against writers)`,
    `DROP TABLE ${n.log}`,
    `DROP FUNCTION ${n.capture}()`,
    `DROP FUNCTION ${n.guard}()`,
    `DROP TABLE ${n.state}`,
  ];
}

/** The plan as SQL a DBA can read (the dry run). */
export function describePlan(plan: ConversionPlan, opts: Pick<ConvertOptions, 'lockRetries'> = {}): string {
  const fmt = (x: number) => x.toLocaleString('en-US');
  const out: string[] = [];
  const n = plan.names;
  if (plan.status === 'done') return `-- ${n.label} is already partitioned: nothing to convert\n`;
  if (plan.status === 'finish') return `-- the switch is done; what is left:\n${plan.finish.join(';\n')};\n`;
  out.push(`-- invoices partition --convert: the plan (nothing has been changed)`);
  if (plan.status === 'resume')
    out.push(
      `-- a conversion is in progress (phase ${plan.phase}, ${fmt(plan.copiedRows)} of ~${fmt(plan.rows)} rows copied): a run resumes it`,
    );
  else
    out.push(
      `-- ${n.label}: ${fmt(plan.rows)} rows in ${plan.months.length} months${plan.months.length ? ` (${plan.months[0].month} .. ${plan.months[plan.months.length - 1].month})` : ''}`,
    );
  if (n.tables.mapped)
    out.push(
      `-- the names below are in schema ${n.tables.invoices.schema}, which the conversion puts alone in search_path:`,
      `SET search_path TO ${quoteIdent(n.tables.invoices.schema)};`,
    );
  out.push('--', '-- carried over:', ...plan.carried.map((c) => `--   ${c}`));
  if (plan.warnings.length) out.push('--', '-- not carried over (reported):', ...plan.warnings.map((w) => `--   ${w}`));
  if (plan.prepare.length) {
    out.push(
      '',
      `-- 1. prepare: one transaction; ${plan.partitions.length} monthly partitions + DEFAULT; a trigger on ${n.label} logs changed ids`,
      'BEGIN;',
      ...plan.prepare.map((x) => `${x};`),
      'COMMIT;',
    );
  }
  const left = Math.max(0, plan.rows - plan.copiedRows);
  out.push(
    '',
    `-- 2. backfill: ~${fmt(Math.ceil(left / plan.batchSize))} batches of up to ${fmt(plan.batchSize)} rows, each one transaction with its cursor ($1 = batch size, $2 = last copied id)`,
    `${plan.backfill};`,
    `UPDATE ${n.state} SET last_copied_id = <last>, rows_copied = rows_copied + <n>;`,
  );
  out.push(
    '',
    '-- 3. indexes, built once the rows are in; then VACUUM ANALYZE',
    ...plan.indexes.map((x) => `${x.sql};`),
    `VACUUM (ANALYZE) ${n.newTable}, ${n.locator};`,
  );
  out.push(
    '',
    `-- 4. catch up: replay ${n.log} (delete each logged id from ${n.newTable} and ${n.locator}, copy it again from ${n.label})`,
    `--    each batch compares its ids row by row; verify: count, sum(${n.amountName}), sum(${n.idName}) per month equal in both tables (one REPEATABLE READ snapshot, logged ids aside)`,
  );
  out.push(
    '',
    `-- 5. switch: up to ${(opts.lockRetries ?? 10) + 1} attempts; the exclusive lock on ${n.label} is held from LOCK to COMMIT`,
    ...plan.switchSql.map((x) => (x.startsWith('--') ? x : `${x};`)),
  );
  out.push('', '-- 6. finish', ...plan.finish.map((x) => (x.startsWith('--') ? x : `${x};`)));
  out.push(`-- the old table is kept as ${n.oldTable}: DROP TABLE ${n.oldTable} once you are satisfied`);
  return out.join('\n') + '\n';
}

// --- running it ---------------------------------------------------------------------------

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

const isLockFailure = (err: unknown) => ['55P03', '40P01'].includes((err as { code?: string })?.code ?? '');

async function begin(client: Client, lockTimeoutMs?: number): Promise<void> {
  await client.query('BEGIN');
  if (lockTimeoutMs !== undefined) await client.query(`SET LOCAL lock_timeout = ${Math.round(lockTimeoutMs)}`);
}

async function rollback(client: Client): Promise<void> {
  await client.query('ROLLBACK').catch(() => {});
}

/** Runs fn in a transaction with lock_timeout, retrying on lock timeouts and deadlocks with backoff. */
async function withLockRetry<T>(
  client: Client,
  opts: Required<Pick<ConvertOptions, 'lockTimeoutMs' | 'lockRetries'>> & { signal?: AbortSignal; what: string; log: Logger },
  fn: () => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    await begin(client, opts.lockTimeoutMs);
    try {
      const result = await fn();
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await rollback(client);
      if (!isLockFailure(err) || attempt > opts.lockRetries || opts.signal?.aborted) throw err;
      const wait = backoff(attempt);
      opts.log.info(`${opts.what}: lock not available within ${opts.lockTimeoutMs} ms (attempt ${attempt}), retrying in ${wait} ms`);
      await sleep(wait, opts.signal);
    }
  }
}

function backoff(attempt: number): number {
  return Math.min(5000, 200 * 2 ** (attempt - 1)) + Math.floor(Math.random() * 100);
}

function afterSwitch(n: Names): InterruptedError {
  return new InterruptedError(
    `interrupted after the switch: ${n.label} is partitioned and complete; run \`invoices partition --convert\` again to drop the conversion's log and state`,
  );
}

function interrupted(what: string, n: Names): InterruptedError {
  return new InterruptedError(
    `interrupted ${what}: run \`invoices partition --convert\` again to resume (meanwhile a trigger on ${n.label} logs every change for the new table; \`--convert --cancel\` removes everything the conversion created)`,
  );
}

/**
 * Converts a plain invoices table into the partitioned layout online, or resumes a conversion an
 * earlier run left; a no-op when invoices is already partitioned.
 */
export async function convertInvoices(client: Client, opts: ConvertOptions): Promise<ConvertResult> {
  return withNames(client, opts.tables ?? DEFAULT_TABLES, (n, q) => convertWith(client, n, q, opts));
}

async function convertWith(client: Client, n: Names, q: Quote, opts: ConvertOptions): Promise<ConvertResult> {
  const log = opts.log ?? silentLogger;
  const lockTimeoutMs = opts.lockTimeoutMs ?? 500;
  const lockRetries = opts.lockRetries ?? 10;
  const batchSize = opts.batchSize ?? 100_000;
  const threshold = opts.catchUpThreshold ?? 1000;
  const started = performance.now();
  const result: ConvertResult = {
    status: 'converted',
    resumed: false,
    rows: 0,
    copiedRows: 0,
    partitions: 0,
    seconds: 0,
    rowsPerSecond: 0,
    lockMs: null,
    lockAttempts: 0,
    defaultRows: 0,
    oldTable: n.oldTable,
    carried: [],
    warnings: [],
  };

  // A killed client's server process notices at the next check instead of holding the lock until its query ends.
  await client.query("SET client_connection_check_interval = '1s'").catch(() => {});
  await client.query("SELECT set_config('application_name', 'invoices partition --convert', false)");
  const unlock = await lockSource(client, {
    key: n.lockKey,
    label: n.label,
    what: 'conversion',
    wait: opts.wait ?? true,
    log,
    signal: opts.signal,
  });
  // Where an interruption (the signal cancels the statement in flight) leaves the conversion, for its message.
  let where = 'before anything was created';
  const replica = await client.query('SET session_replication_role = replica').then(
    () => true,
    () => false,
  );
  // Index builds and the verification scan are long by nature; the switch is bounded by lock_timeout.
  await client.query('SET statement_timeout = 0');
  await client.query('SET synchronous_commit = off'); // a batch and its cursor commit together: losing the last ones in a crash only means copying them again
  try {
    let plan = await planWith(client, n, q, { ...opts, batchSize });
    if (plan.status === 'done') {
      log.info(`${n.label} is already partitioned: nothing to convert`);
      return { ...result, status: 'already-partitioned', oldTable: null, seconds: (performance.now() - started) / 1000 };
    }
    if (plan.status === 'finish') {
      log.info('the switch was done by an earlier run: finishing');
      result.resumed = true;
      await finish(client, n, log, result);
      result.seconds = (performance.now() - started) / 1000;
      return result;
    }
    const facts = await inspectTable(client, n, q);
    const s = sqlContext(q, facts, n);
    if (!replica)
      log.warn('not a superuser: foreign keys are checked on every copied row (slower); superusers skip that, as pg_restore does');
    if (plan.status === 'resume') {
      result.resumed = true;
      log.info(
        `resuming the conversion: phase ${plan.phase}, ${plan.copiedRows.toLocaleString('en-US')} of ~${plan.rows.toLocaleString('en-US')} rows copied`,
      );
    } else {
      if (opts.signal?.aborted) throw interrupted(where, n);
      opts.onProgress?.({ phase: 'prepare', done: 0, total: plan.prepare.length });
      await withLockRetry(client, { lockTimeoutMs, lockRetries, signal: opts.signal, what: 'prepare', log }, async () => {
        for (const sql of plan.prepare) await client.query(sql);
      });
      where = 'after creating the new table, before copying rows';
      log.info(
        `created ${n.newTable} with ${plan.partitions.length} monthly partitions and DEFAULT, ${n.locator}, and ${n.log} fed by trigger ${n.capture} on ${n.label}`,
      );
      if (n.tables.mapped) {
        // Said plainly for an adopted table: what this adds beside it and on it.
        log.info(
          `added to schema ${n.tables.invoices.schema}: ${[n.newTable, ...plan.partitions, n.defaultPartition, n.locator, n.log, n.state].join(', ')}; functions ${n.capture}(), ${n.guard}(); triggers ${n.capture} and ${n.guard} on ${n.label}` +
            (facts.columns.some((c) => c.name === 'created_xid') ? '' : `; column created_xid on the new table`),
        );
      }
      plan = await planWith(client, n, q, { ...opts, batchSize });
    }
    result.carried = plan.carried;
    result.warnings = plan.warnings;
    for (const w of plan.warnings) log.warn(w);

    let state = await readState(client, n);
    if (!state) throw new ConversionError('the conversion state disappeared: was it cancelled by another session?');

    // Backfill.
    if (state.phase === 'backfill') {
      const total = Number(state.rows_total);
      let done = Number(state.rows_copied);
      let last = state.last_copied_id;
      const copyStarted = performance.now();
      opts.onProgress?.({ phase: 'backfill', done, total });
      where = `after copying ${done.toLocaleString('en-US')} rows`;
      for (;;) {
        if (opts.signal?.aborted) throw interrupted(`after copying ${done.toLocaleString('en-US')} rows`, n);
        await client.query('BEGIN');
        let copied: number;
        try {
          const {
            rows: [b],
          } = await client.query<{ n: string; last: string | null }>(
            backfillSql(s, last === null),
            last === null ? [batchSize] : [batchSize, last],
          );
          copied = Number(b.n);
          if (copied > 0) {
            await client.query(`UPDATE ${n.state} SET last_copied_id = $1, rows_copied = rows_copied + $2, updated_at = now()`, [
              b.last,
              copied,
            ]);
            last = b.last;
          } else {
            await client.query(`UPDATE ${n.state} SET phase = 'indexes', updated_at = now()`);
          }
          await client.query('COMMIT');
        } catch (err) {
          await rollback(client);
          throw err;
        }
        if (copied === 0) break;
        done += copied;
        where = `after copying ${done.toLocaleString('en-US')} rows`;
        result.copiedRows += copied;
        opts.onProgress?.({ phase: 'backfill', done, total: Math.max(total, done) });
      }
      const secs = (performance.now() - copyStarted) / 1000;
      result.rowsPerSecond = secs > 0 ? result.copiedRows / secs : 0;
      log.info(
        `copied ${result.copiedRows.toLocaleString('en-US')} rows in ${secs.toFixed(1)} s (${Math.round(result.rowsPerSecond).toLocaleString('en-US')} rows/s)`,
      );
      state = { ...state, phase: 'indexes' };
    }
    where = 'while building indexes (the rows are all copied)';

    // Indexes: built once, in bulk, on the filled partitions. Checked again on a resumed run, in
    // case an index was added to invoices meanwhile.
    if (state.phase === 'indexes' || state.phase === 'sync') {
      const built = await ensureIndexes(client, n, q, plan.indexes, opts, log);
      if (state.phase === 'indexes' || built) {
        // Statistics and the visibility map before any traffic: plans and index-only lookups are right from the switch on.
        opts.onProgress?.({ phase: 'indexes', done: built, total: built, detail: 'VACUUM ANALYZE' });
        await client.query(`VACUUM (ANALYZE) ${n.newTable}, ${n.locator}`);
      }
      if (state.phase === 'indexes') await client.query(`UPDATE ${n.state} SET phase = 'sync', updated_at = now()`);
      state = { ...state, phase: 'sync' };
    }
    where = 'while catching up, before the switch';

    // Catch up, verify, catch up, switch.
    const replayed = await catchUp(client, s, { threshold, signal: opts.signal });
    if (replayed) log.info(`caught up: replayed ${replayed.toLocaleString('en-US')} logged changes`);
    if (opts.signal?.aborted) throw interrupted('while catching up', n);
    opts.onProgress?.({ phase: 'sync', done: 0, total: 1, detail: 'verifying counts and sums per month' });
    const verified = await verify(client, s);
    opts.onProgress?.({ phase: 'sync', done: 1, total: 1 });
    log.info(
      `verified: ${verified.rows.toLocaleString('en-US')} rows in ${verified.months} months have equal counts, sums of ${n.amountName} and of ${n.idName} in both tables${verified.skipped ? ` (${verified.skipped} ids written meanwhile are replayed and compared row by row)` : ''}`,
    );
    await catchUp(client, s, { threshold, signal: opts.signal });

    const steps = plan.indexes;
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw interrupted('before the switch', n);
      result.lockAttempts = attempt;
      opts.onProgress?.({ phase: 'switch', done: attempt - 1, total: lockRetries + 1 });
      where = 'before the switch (nothing was switched)';
      try {
        const outcome = await switchOnce(client, s, steps, { lockTimeoutMs });
        result.lockMs = outcome.lockMs;
        result.carried = plan.carried.filter((c) => !outcome.failed.some((f) => c.includes(f.name)));
        for (const f of outcome.failed) {
          result.warnings.push(f.warning);
          log.warn(f.warning);
        }
        break;
      } catch (err) {
        if (!isLockFailure(err) && !(err instanceof RetrySwitch)) throw err;
        if (attempt > lockRetries) {
          const holders = await lockHolders(client, n);
          throw new ConversionError(
            `could not take the exclusive lock on ${n.label} within ${lockTimeoutMs} ms in ${attempt} attempts${holders ? `: ${holders}` : ''}. ` +
              `Nothing was switched and ${n.label} is unchanged and writable; run \`invoices partition --convert\` again to retry (e.g. with a larger --lock-timeout), or \`--cancel\` it`,
            { cause: err },
          );
        }
        const wait = backoff(attempt);
        log.info(
          `switch: ${err instanceof RetrySwitch ? err.message : `lock not available within ${lockTimeoutMs} ms`} (attempt ${attempt}), retrying in ${wait} ms`,
        );
        await sleep(wait, opts.signal);
        await catchUp(client, s, { threshold, signal: opts.signal });
      }
    }
    log.info(`switched: ${n.label} is now partitioned; the exclusive lock was held ${result.lockMs?.toFixed(0)} ms`);
    if (opts.signal?.aborted) throw afterSwitch(n);
    where = 'after the switch';
    opts.onProgress?.({ phase: 'finish', done: 0, total: 1 });
    await finish(client, n, log, result);
    result.seconds = (performance.now() - started) / 1000;
    if (!result.rowsPerSecond && result.seconds > 0) result.rowsPerSecond = result.copiedRows / result.seconds;
    return result;
  } catch (err) {
    // Stopped by the signal: the statement in flight was cancelled and its transaction rolled back.
    if (opts.signal?.aborted && !(err instanceof InterruptedError))
      throw where === 'after the switch' ? afterSwitch(n) : interrupted(where, n);
    throw err;
  } finally {
    await client.query('RESET session_replication_role').catch(() => {});
    await client.query('RESET synchronous_commit').catch(() => {});
    await client.query('RESET statement_timeout').catch(() => {});
    await unlock();
  }
}

/** Builds the planned indexes that do not exist yet; returns how many it built. */
async function ensureIndexes(client: Client, n: Names, q: Quote, steps: IndexStep[], opts: ConvertOptions, log: Logger): Promise<number> {
  const { rows } = await client.query<{ name: string }>('SELECT n AS name FROM unnest($1::text[]) n WHERE to_regclass(n) IS NULL', [
    steps.map((x) => q(x.name)),
  ]);
  const missing = steps.filter((x) => rows.some((r) => r.name === q(x.name)));
  if (missing.length) await raiseMaintenanceMemory(client);
  for (const [i, step] of missing.entries()) {
    if (opts.signal?.aborted) throw interrupted('while building indexes (the rows are all copied)', n);
    opts.onProgress?.({ phase: 'indexes', done: i, total: missing.length, detail: `building ${step.name}` });
    const t = performance.now();
    await client.query(step.sql);
    log.info(`built ${step.description} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  if (missing.length) opts.onProgress?.({ phase: 'indexes', done: missing.length, total: missing.length });
  return missing.length;
}

async function raiseMaintenanceMemory(client: Client): Promise<void> {
  const {
    rows: [m],
  } = await client.query<{ kb: string }>("SELECT setting AS kb FROM pg_settings WHERE name = 'maintenance_work_mem'");
  if (Number(m.kb) < 256 * 1024) await client.query("SET maintenance_work_mem = '256MB'");
}

/**
 * Re-copies logged ids from invoices (deleting what the new table holds for them) and compares
 * them row by row, a batch per REPEATABLE READ transaction (the copy and the comparison see the
 * same snapshot); returns the log entries processed. Stops once a round finds fewer than
 * `threshold` entries: the rest is replayed under the lock.
 */
async function catchUp(client: Client, s: Sql, opts: { threshold: number; signal?: AbortSignal; batch?: number }): Promise<number> {
  let total = 0;
  for (;;) {
    if (opts.signal?.aborted) return total;
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    let n: number;
    try {
      const replayed = await replayBatch(client, s, opts.batch ?? 10_000);
      await checkRows(client, s, replayed.ids);
      await client.query('COMMIT');
      n = replayed.entries;
    } catch (err) {
      await rollback(client);
      throw err;
    }
    total += n;
    if (n < opts.threshold) return total;
  }
}

/** One batch of the log, in the caller's transaction: the ids replayed and the entries consumed. */
async function replayBatch(client: Client, s: Sql, limit: number | null): Promise<{ entries: number; ids: string[] }> {
  const { n } = s;
  const {
    rows: [picked],
  } = await client.query<{ seqs: string[] | null; ids: string[] | null }>(
    `SELECT array_agg(seq)::text[] AS seqs, array_agg(DISTINCT invoice_id)::text[] AS ids
       FROM (SELECT seq, invoice_id FROM ${n.log} ORDER BY seq${limit ? ` LIMIT ${limit}` : ''}) l`,
  );
  if (!picked.seqs?.length || !picked.ids) return { entries: 0, ids: [] };
  await client.query(`DELETE FROM ${n.locator} WHERE invoice_id = ANY ($1::bigint[])`, [picked.ids]);
  await client.query(`DELETE FROM ${n.newTable} WHERE ${n.id} = ANY ($1::bigint[])`, [picked.ids]);
  await client.query(
    `WITH copied AS (
       INSERT INTO ${n.newTable} (${s.cols}) OVERRIDING SYSTEM VALUE
       SELECT ${s.cols} FROM ${n.parent} WHERE ${n.id} = ANY ($1::bigint[]) RETURNING ${n.id}, ${n.date}
     ) INSERT INTO ${n.locator} (invoice_id, issue_date) SELECT ${n.id}, ${n.date} FROM copied`,
    [picked.ids],
  );
  await client.query(`DELETE FROM ${n.log} WHERE seq = ANY ($1::bigint[])`, [picked.seqs]);
  return { entries: picked.seqs.length, ids: picked.ids };
}

/**
 * The rows of these ids are the same in invoices and the new table, and invoice_ids locates each
 * (a guard against a bug in the replay; the ids are passed as an array so every table is probed
 * through its key).
 */
async function checkRows(client: Client, s: Sql, ids: string[]): Promise<void> {
  if (!ids.length) return;
  const { n } = s;
  const {
    rows: [diff],
  } = await client.query<{ n: string; ids: string[] | null }>(
    `WITH o AS (SELECT ${n.id} AS invoice_id, ROW(${s.cols})::text AS r FROM ${n.parent} WHERE ${n.id} = ANY ($1::bigint[])),
          n AS MATERIALIZED (SELECT ${n.id} AS invoice_id, ${n.date} AS issue_date, ROW(${s.cols})::text AS r FROM ${n.newTable} WHERE ${n.id} = ANY ($1::bigint[])),
          l AS (SELECT invoice_id, issue_date FROM ${n.locator} WHERE invoice_id = ANY ($1::bigint[])),
          d AS ((SELECT invoice_id FROM (SELECT * FROM o EXCEPT ALL SELECT invoice_id, r FROM n) a)
                UNION ALL (SELECT invoice_id FROM (SELECT invoice_id, r FROM n EXCEPT ALL SELECT * FROM o) b)
                UNION ALL (SELECT invoice_id FROM (SELECT invoice_id, issue_date FROM n EXCEPT ALL SELECT * FROM l) c)
                UNION ALL (SELECT invoice_id FROM (SELECT * FROM l EXCEPT ALL SELECT invoice_id, issue_date FROM n) e))
     SELECT count(*)::text AS n, (array_agg(DISTINCT invoice_id::text))[1:5] AS ids FROM d`,
    [ids],
  );
  if (diff.n !== '0') {
    throw new ConversionError(
      `verification failed, nothing was switched: invoices ${diff.ids?.join(', ')} differ between ${n.label} and ${n.newTable} after replaying their changes. Cancel with \`invoices partition --convert --cancel\` and convert again`,
    );
  }
}

interface MonthSums {
  n: string;
  amount: string | null;
  ids: string | null;
}

/**
 * Per month: count, sum(amount), sum(invoice_id) of both tables in one snapshot, ids in the log
 * left out on both sides (they are replayed and compared row by row under the lock).
 */
async function verify(client: Client, s: Sql): Promise<{ rows: number; months: number; skipped: number }> {
  const { n } = s;
  const sums = (table: string) =>
    `SELECT to_char(${s.monthExpr}, 'YYYY-MM') AS month, count(*)::text AS n, ${s.facts.hasAmount ? `sum(${n.amount})::text` : 'NULL::text'} AS amount, sum(${n.id})::text AS ids
       FROM ${table} t WHERE NOT EXISTS (SELECT 1 FROM ${n.log} l WHERE l.invoice_id = t.${n.id}) GROUP BY 1 ORDER BY 1`;
  let old: Array<MonthSums & { month: string }>;
  let neu: Array<MonthSums & { month: string }>;
  let loc: { n: string; ids: string | null; skipped: string };
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    old = (await client.query<MonthSums & { month: string }>(sums(n.parent))).rows;
    neu = (await client.query<MonthSums & { month: string }>(sums(n.newTable))).rows;
    [loc] = (
      await client.query<{ n: string; ids: string | null; skipped: string }>(
        `SELECT count(*)::text AS n, sum(invoice_id)::text AS ids, (SELECT count(DISTINCT invoice_id) FROM ${n.log})::text AS skipped
         FROM ${n.locator} t WHERE NOT EXISTS (SELECT 1 FROM ${n.log} l WHERE l.invoice_id = t.invoice_id)`,
      )
    ).rows;
    await client.query('COMMIT');
  } catch (err) {
    await rollback(client);
    throw err;
  }
  const key = (r: MonthSums) => `${r.n} rows, amount ${r.amount ?? '-'}, ids ${r.ids ?? '0'}`;
  const a = new Map(old.map((r) => [r.month, key(r)]));
  const b = new Map(neu.map((r) => [r.month, key(r)]));
  const diffs = [...new Set([...a.keys(), ...b.keys()])]
    .sort()
    .filter((m) => a.get(m) !== b.get(m))
    .map((m) => `${m}: ${n.label} ${a.get(m) ?? 'none'}, ${n.newTable} ${b.get(m) ?? 'none'}`);
  const rows = old.reduce((x, r) => x + Number(r.n), 0);
  const newRows = neu.reduce((x, r) => x + Number(r.n), 0);
  const newIds = neu.reduce((x, r) => x + BigInt(r.ids ?? '0'), 0n);
  if (Number(loc.n) !== newRows || BigInt(loc.ids ?? '0') !== newIds)
    diffs.push(`${n.locator} has ${loc.n} rows for ${newRows} in ${n.newTable}`);
  if (diffs.length) {
    throw new ConversionError(
      `verification failed, nothing was switched: ${diffs.slice(0, 5).join('; ')}${diffs.length > 5 ? `; and ${diffs.length - 5} more` : ''}. Cancel with \`invoices partition --convert --cancel\` and convert again`,
    );
  }
  return { rows, months: old.length, skipped: Number(loc.skipped) };
}

class RetrySwitch extends Error {}

async function switchOnce(
  client: Client,
  s: Sql,
  steps: IndexStep[],
  opts: { lockTimeoutMs: number },
): Promise<{ lockMs: number; failed: Array<{ name: string; warning: string }> }> {
  const { q, n } = s;
  const before = await planSwitch(client, s, steps);
  await begin(client, opts.lockTimeoutMs);
  try {
    // The server's own setting, not the session's `off`: a switch lost in a crash takes every later
    // commit with it (the WAL is sequential) and leaves the conversion where it was, resumable.
    await client.query('SET LOCAL synchronous_commit TO DEFAULT');
    await client.query(`LOCK TABLE ${before.relations.own.join(', ')} IN ACCESS EXCLUSIVE MODE`);
    await client.query(`LOCK TABLE ${before.relations.shared.join(', ')} IN ACCESS EXCLUSIVE MODE`);
    const lockedAt = performance.now();
    // Nothing writes invoices now: the log is complete. Replay the rest and compare those rows.
    const replayed = await replayBatch(client, s, null);
    await checkRows(client, s, replayed.ids);
    // The catalog cannot change under the lock: plan again, and make sure we locked all we touch.
    const facts = await inspectTable(client, n, q);
    const plan = await planSwitch(client, { ...s, facts }, steps);
    const missing = plan.relations.shared.filter((r) => !before.relations.shared.includes(r));
    if (missing.length) throw new RetrySwitch(`${missing.join(', ')} appeared since the plan`);
    const wanted = translateIndexes({ ...s, facts }).steps.filter((x) => !steps.some((y) => y.name === x.name));
    if (wanted.length) {
      throw new ConversionError(
        `${wanted.map((x) => x.description).join(', ')} appeared on ${n.label} during the conversion: run \`invoices partition --convert\` again to build ${wanted.length === 1 ? 'it' : 'them'} on the new table before the switch`,
      );
    }
    const failed: Array<{ name: string; warning: string }> = [];
    for (const st of plan.statements) {
      if (!st.optional) {
        await client.query(st.sql);
        continue;
      }
      await client.query('SAVEPOINT optional_step');
      try {
        await client.query(st.sql);
        await client.query('RELEASE SAVEPOINT optional_step');
      } catch (err) {
        if (isLockFailure(err)) throw err;
        await client.query('ROLLBACK TO SAVEPOINT optional_step');
        failed.push({ name: st.optional.split(' ')[1] ?? '', warning: `${st.optional} (${(err as Error).message})` });
      }
    }
    await client.query('COMMIT');
    return { lockMs: performance.now() - lockedAt, failed };
  } catch (err) {
    await rollback(client);
    throw err;
  }
}

async function lockHolders(client: Client, n: Names): Promise<string> {
  const { rows } = await client
    .query<{ pid: number; mode: string; state: string | null; since: string | null; query: string | null }>(
      `SELECT l.pid, l.mode, a.state, a.xact_start::text AS since, left(a.query, 60) AS query
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid() ORDER BY a.xact_start LIMIT 3`,
      [n.parent],
    )
    .catch(() => ({ rows: [] }));
  return rows
    .map(
      (r) =>
        `held by server process ${r.pid} (${r.mode}, ${r.state ?? '?'}${r.since ? ` since ${r.since}` : ''}${r.query ? `: ${r.query}` : ''})`,
    )
    .join('; ');
}

/** After the switch: validate repointed foreign keys, drop the conversion's objects, report the DEFAULT partition. */
async function finish(client: Client, n: Names, log: Logger, result: ConvertResult): Promise<void> {
  const { rows: fks } = await client.query<{ name: string; table: string }>(
    `SELECT conname AS name, conrelid::regclass::text AS "table" FROM pg_constraint
      WHERE confrelid = to_regclass($1) AND contype = 'f' AND NOT convalidated ORDER BY 2, 1`,
    [n.locator],
  );
  for (const f of fks) {
    try {
      await client.query(`ALTER TABLE ${f.table} VALIDATE CONSTRAINT ${quoteIdent(f.name)}`);
      log.info(`validated foreign key ${f.name} on ${f.table} against ${n.locator}`);
    } catch (err) {
      const w = `foreign key ${f.name} on ${f.table} stays NOT VALID (${(err as Error).message}): new rows are checked; fix the old ones and VALIDATE it`;
      result.warnings.push(w);
      log.warn(w);
    }
  }
  await client.query('BEGIN');
  try {
    await client.query(`DROP TABLE IF EXISTS ${n.log}`);
    await client.query(`DROP FUNCTION IF EXISTS ${n.capture}()`);
    await client.query(`DROP FUNCTION IF EXISTS ${n.guard}()`);
    await client.query(`DROP TABLE IF EXISTS ${n.state}`);
    await client.query('COMMIT');
  } catch (err) {
    await rollback(client);
    throw err;
  }
  const {
    rows: [c],
  } = await client.query<{ rows: string; parts: string; def: string }>(
    `SELECT (SELECT count(*) FROM ${n.locator})::text AS rows,
            (SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1))::text AS parts,
            (SELECT count(*) FROM ${n.defaultPartition})::text AS def`,
    [n.parent],
  );
  result.rows = Number(c.rows);
  result.partitions = Number(c.parts);
  result.defaultRows = Number(c.def);
  if (result.defaultRows) {
    const w = `${result.defaultRows} rows are in the DEFAULT partition (months without a partition of their own): run \`invoices partition\` to move them`;
    result.warnings.push(w);
    log.warn(w);
  }
  const old = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [n.oldTable]);
  result.oldTable = old.rows[0].ok ? n.oldTable : null;
}

/** Removes everything an unfinished conversion created (the trigger on invoices first); invoices itself is untouched. */
export async function cancelConversion(
  client: Client,
  opts: Pick<ConvertOptions, 'lockTimeoutMs' | 'lockRetries' | 'signal' | 'log' | 'tables'> & { dryRun?: boolean },
): Promise<{ cancelled: boolean; statements: string[] }> {
  return withNames(client, opts.tables ?? DEFAULT_TABLES, (n) => cancelWith(client, n, opts));
}

async function cancelWith(
  client: Client,
  n: Names,
  opts: Parameters<typeof cancelConversion>[1],
): Promise<{ cancelled: boolean; statements: string[] }> {
  const log = opts.log ?? silentLogger;
  const state = await readState(client, n);
  const { layout } = await detectLayout(client, n.tables);
  if (!state && layout !== 'partitioned') {
    const {
      rows: [leftover],
    } = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [n.newTable]);
    if (!leftover.ok) return { cancelled: false, statements: [] };
  }
  if (state?.phase === 'switched' || layout === 'partitioned') {
    throw new UsageError(
      `the switch is already done: ${n.label} is partitioned (the old table is ${n.oldTable}); run \`invoices partition --convert\` to finish`,
    );
  }
  const statements = [
    `DROP TRIGGER IF EXISTS ${n.capture} ON ${n.parent}`,
    `DROP TRIGGER IF EXISTS ${n.guard} ON ${n.parent}`,
    `DROP TABLE IF EXISTS ${n.newTable}`,
    `DROP TABLE IF EXISTS ${n.locator}`,
    `DROP FUNCTION IF EXISTS ${n.capture}()`,
    `DROP FUNCTION IF EXISTS ${n.guard}()`,
    `DROP TABLE IF EXISTS ${n.log}`,
    `DROP TABLE IF EXISTS ${n.state}`,
  ];
  if (opts.dryRun) return { cancelled: false, statements };
  // Never while a conversion (or a seed) is writing the table: name it and change nothing.
  const unlock = await lockSource(client, {
    key: n.lockKey,
    label: n.label,
    what: 'cancel',
    wait: false,
    log,
    signal: opts.signal,
    advice: 'stop that run first (Ctrl-C keeps what it copied), then cancel',
  });
  try {
    await withLockRetry(
      client,
      { lockTimeoutMs: opts.lockTimeoutMs ?? 500, lockRetries: opts.lockRetries ?? 10, signal: opts.signal, what: 'cancel', log },
      async () => {
        for (const sql of statements) await client.query(sql);
      },
    );
  } finally {
    await unlock();
  }
  return { cancelled: true, statements };
}
