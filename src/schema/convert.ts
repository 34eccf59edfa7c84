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
import { detectLayout, sqlFile } from './apply.js';
import { DEFAULT_PARTITION, monthBounds, partitionName, PARENT, type Month } from './partitions.js';
import { quoteIdent } from '../tables.js';

/** The partitioned table while it is being filled; renamed to `invoices` at the switch. */
export const NEW_TABLE = 'invoices_part';
/** What the original table is called after the switch. */
export const OLD_TABLE = 'invoices_unpartitioned';
export const LOCATOR = 'invoice_ids';
export const LOG_TABLE = 'invoices_convert_log';
export const STATE_TABLE = 'invoices_convert_state';
const CAPTURE = 'invoices_convert_capture';
const TRUNCATE_GUARD = 'invoices_convert_no_truncate';
const ADVISORY_KEY = 'invoices:convert';

/** A conversion failed in a way that left everything consistent (nothing switched, or switched and finishing): exit 1. */
export class ConversionError extends InvoicesError {}

export type ConvertPhase = 'prepare' | 'backfill' | 'indexes' | 'sync' | 'switch' | 'finish';

export interface ConvertProgress {
  phase: ConvertPhase;
  done: number;
  total: number;
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

async function inspectTable(client: Client, q: Quote): Promise<TableFacts> {
  const { rows: [t] } = await client.query<{
    oid: number; relkind: string; relispartition: boolean; persistence: string; schema: string; current_schema: string | null;
    owner: string; me: string; rls: boolean; rules: boolean; replident: string; reloptions: string[] | null; comment: string | null;
    inherits: boolean; column_acl: boolean; stats: string[]; publications: string[];
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
    [PARENT],
  );
  if (!t) throw new UsageError('there is no invoices table to convert: `invoices init` creates one, already partitioned');
  if (t.relkind !== 'r') throw new UsageError(`invoices is not a table (relkind ${t.relkind}): nothing to convert`);
  if (t.relispartition || t.inherits) throw new UsageError('invoices takes part in table inheritance: convert only a stand-alone table');
  if (t.persistence !== 'p') throw new UsageError('invoices is a temporary or unlogged table: convert only a regular table');
  if (t.schema !== t.current_schema) {
    throw new UsageError(`invoices is in schema ${t.schema} but new tables would go to ${t.current_schema ?? 'no schema'}: put ${t.schema} first in search_path`);
  }
  const oid = t.oid;

  const { rows: columns } = await client.query<ColumnFact & { owned: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::regtype::text AS base,
            a.attgenerated::text <> '' AS generated, a.attidentity::text AS identity, a.attnotnull AS "notNull",
            pg_get_serial_sequence($2, a.attname) AS sequence,
            EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
                      AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) AS "ownedSequence"
       FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [oid, PARENT],
  );
  const id = columns.find((c) => c.name === 'invoice_id');
  const date = columns.find((c) => c.name === 'issue_date');
  if (!id || !date) throw new UsageError('invoices needs columns invoice_id and issue_date to be converted');
  if (!['bigint', 'integer', 'smallint'].includes(id.base)) throw new UsageError(`invoice_id must be an integer column, it is ${id.type}`);
  if (!id.notNull) throw new UsageError('invoice_id must be NOT NULL to be converted (ALTER TABLE invoices ALTER invoice_id SET NOT NULL)');
  if (id.generated || date.generated) throw new UsageError('invoice_id and issue_date must be stored columns, not generated ones');
  const kinds: Record<string, IssueDateKind> = { 'timestamp with time zone': 'timestamptz', 'timestamp without time zone': 'timestamp', date: 'date' };
  const issueDate = kinds[date.base];
  if (!issueDate) throw new UsageError(`issue_date must be a timestamptz, timestamp or date column to be partitioned by month, it is ${date.type}`);

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
    [oid, [CAPTURE, TRUNCATE_GUARD]],
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
  if (t.rls) notes.push('row-level security is enabled on invoices: policies are not carried over (CREATE POLICY on the new table)');
  if (t.rules) notes.push('invoices has rules: they are not carried over');
  if (t.replident !== 'd') notes.push('invoices has a non-default REPLICA IDENTITY: set it again on the partitions');
  if (t.reloptions?.length) notes.push(`invoices has storage options (${t.reloptions.join(', ')}): set them on the partitions if they still matter`);
  if (t.column_acl) notes.push('invoices has column privileges: they are not carried over (GRANT them on the new table)');
  for (const s of t.stats) notes.push(`extended statistics ${s} stay on the old table: CREATE STATISTICS on the new one`);
  for (const p of t.publications) notes.push(`invoices is in publication ${p}: add the new table (ALTER PUBLICATION ${q(p)} ADD TABLE invoices, with publish_via_partition_root)`);

  return {
    oid, schema: t.schema, owner: t.owner, currentUser: t.me, comment: t.comment,
    columns, issueDate, hasAmount: columns.some((c) => c.name === 'amount' && !c.generated),
    indexes, constraints, inbound, triggers, dependents, functions: functions.map((f) => f.name), grants, notes,
  };
}

/** The invoice_id uniqueness the conversion relies on: a valid unique index on exactly (invoice_id). */
function idUniqueIndex(facts: TableFacts): IndexFact | undefined {
  return facts.indexes.find((i) => i.unique && i.valid && !i.expressions && !i.partial && i.keys.length === 1 && i.keys[0] === 'invoice_id');
}

/** Refusals that must come before anything is created (UsageError, exit 2). */
function checkConvertible(facts: TableFacts): void {
  if (!idUniqueIndex(facts)) {
    throw new UsageError('invoice_id is not unique in invoices (no primary key or unique index on invoice_id alone): add one without blocking writers with `invoices index`, then convert');
  }
  for (const c of facts.constraints) {
    if (!c.valid) throw new UsageError(`constraint ${c.name} on invoices is NOT VALID: validate it first (ALTER TABLE invoices VALIDATE CONSTRAINT ${c.name}); the partitioned table enforces it on every row`);
    if (c.contype === 'f' && c.self) throw new UsageError(`foreign key ${c.name} references invoices itself: drop it before converting and add it back referencing invoice_ids (invoice_id)`);
  }
  for (const f of facts.inbound) {
    if (f.refColumns.length !== 1 || f.refColumns[0] !== 'invoice_id') {
      throw new UsageError(`foreign key ${f.name} on ${f.table} references invoices (${f.refColumns.join(', ')}): only references to invoice_id can be moved to invoice_ids; drop it first`);
    }
    if (f.relkind !== 'r') throw new UsageError(`foreign key ${f.name} is on partitioned table ${f.table}: it cannot be moved without a validating scan under lock; drop it first`);
  }
}

// --- names --------------------------------------------------------------------------------

const MAX_IDENT = 63;

/** `prefix` + the rest of `name` after a leading "invoices", cut to PostgreSQL's 63 bytes. */
export function prefixedName(name: string, prefix: string): string {
  const rest = name.startsWith(`${PARENT}_`) ? name.slice(PARENT.length) : `_${name}`;
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
}

interface Sql {
  q: Quote;
  facts: TableFacts;
  /** Stored columns, in the old table's order (generated ones are computed by the new table). */
  cols: string;
  monthExpr: string;
}

function sqlContext(q: Quote, facts: TableFacts): Sql {
  const cols = facts.columns.filter((c) => !c.generated).map((c) => q(c.name)).join(', ');
  const monthExpr = facts.issueDate === 'timestamptz' ? "date_trunc('month', issue_date AT TIME ZONE 'UTC')" : "date_trunc('month', issue_date::timestamp)";
  return { q, facts, cols, monthExpr };
}

async function readState(client: Client): Promise<StateRow | null> {
  const { rows: [exists] } = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [STATE_TABLE]);
  if (!exists.ok) return null;
  const { rows } = await client.query<StateRow>(
    `SELECT phase, old_table, last_copied_id::text, rows_copied::text, rows_total::text, started_at FROM ${STATE_TABLE}`,
  );
  return rows[0] ?? null;
}

/** Rows per month of issue_date (UTC) in the old table: one scan. */
async function monthsOf(client: Client, s: Sql): Promise<Array<{ month: Month; rows: number }>> {
  const { rows } = await client.query<{ month: string | null; n: string }>(
    `SELECT to_char(${s.monthExpr}, 'YYYY-MM') AS month, count(*) AS n FROM ${PARENT} GROUP BY 1 ORDER BY 1`,
  );
  const nulls = rows.find((r) => r.month === null);
  if (nulls) throw new UsageError(`${nulls.n} invoices have no issue_date: a partitioned table needs one on every row (set them, then convert)`);
  return rows.map((r) => ({ month: r.month as Month, rows: Number(r.n) }));
}

/** Objects this conversion would create that exist without a conversion in progress: refuse rather than guess. */
async function checkNamesFree(client: Client, names: string[]): Promise<void> {
  const { rows } = await client.query<{ name: string }>('SELECT n AS name FROM unnest($1::text[]) n WHERE to_regclass(n) IS NOT NULL', [names]);
  if (rows.length) {
    throw new UsageError(`${rows.map((r) => r.name).join(', ')} already exist${rows.length === 1 ? 's' : ''} but no conversion is in progress: rename or drop ${rows.length === 1 ? 'it' : 'them'} first`);
  }
}

function translateIndexes(s: Sql): { steps: IndexStep[]; carried: string[]; warnings: string[] } {
  const { q, facts } = s;
  const steps: IndexStep[] = [];
  const carried: string[] = [];
  const warnings: string[] = [];
  const idIndex = idUniqueIndex(facts);
  steps.push({
    name: `${NEW_TABLE}_pkey`, finalName: 'invoices_pkey',
    sql: `ALTER TABLE ${NEW_TABLE} ADD CONSTRAINT ${NEW_TABLE}_pkey PRIMARY KEY (invoice_id, issue_date)`,
    description: 'primary key (invoice_id, issue_date)',
  });
  steps.push({
    name: `${LOCATOR}_pkey`, finalName: `${LOCATOR}_pkey`,
    sql: `ALTER TABLE ${LOCATOR} ADD CONSTRAINT ${LOCATOR}_pkey PRIMARY KEY (invoice_id) INCLUDE (issue_date)`,
    description: 'invoice_ids primary key: invoice_id unique across partitions',
  });
  carried.push(`invoice_id stays unique across partitions: ${idIndex?.name ?? 'the unique index'} becomes invoice_ids_pkey (kept in step by a trigger)`);
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
    let tmp = prefixedName(ix.name, NEW_TABLE);
    if (steps.some((x) => x.name === tmp)) tmp = prefixedName(`${ix.name}_${steps.length}`, NEW_TABLE);
    const samePk = ix.unique && !ix.partial && !ix.expressions && ix.keys.length === 2 && ix.keys.includes('invoice_id') && ix.keys.includes('issue_date');
    if (samePk) {
      carried.push(`index ${ix.name}: same keys as the new primary key, not duplicated`);
      continue;
    }
    // A unique index on a partitioned table must contain the partition key as a plain column.
    const canStayUnique = ix.unique && !ix.expressions && ix.keys.includes('issue_date');
    const at = ix.def.indexOf(' USING ');
    const tail = at >= 0 ? ix.def.slice(at) : '';
    // The new primary key is (invoice_id, issue_date): an old primary key on other columns becomes a unique key.
    const finalName = ix.primary ? prefixedName(`${PARENT}_${ix.keys.join('_')}_key`, PARENT) : ix.name;
    if (ix.constraint && canStayUnique && ix.condef) {
      steps.push({ name: tmp, finalName, sql: `ALTER TABLE ${NEW_TABLE} ADD CONSTRAINT ${q(tmp)} ${ix.condef.replace(/^PRIMARY KEY/, 'UNIQUE')}`, description: `${ix.primary ? 'unique (was the primary key)' : 'unique constraint'} ${ix.name}` });
      carried.push(`${ix.primary ? 'primary key' : 'unique constraint'} ${ix.name}${ix.primary ? ' (as a unique constraint)' : ''}`);
      continue;
    }
    if (ix.unique && !canStayUnique) {
      warnings.push(`${ix.constraint ? 'unique constraint' : 'unique index'} ${ix.name} (${ix.keys.join(', ') || 'an expression'}) cannot stay unique on a table partitioned by issue_date: recreated as a plain index; enforce that uniqueness another way`);
    } else {
      carried.push(`index ${ix.name}`);
    }
    steps.push({
      name: tmp, finalName,
      sql: `CREATE ${ix.unique && canStayUnique ? 'UNIQUE ' : ''}INDEX ${q(tmp)} ON ${NEW_TABLE}${tail}`,
      description: `index ${ix.name}`,
    });
  }
  return { steps, carried, warnings };
}

function prepareStatements(client: Client, s: Sql, partitions: Array<{ name: string; month: Month }>, rowsTotal: number): string[] {
  const { q, facts } = s;
  const lit = (v: string) => client.escapeLiteral(v);
  const out: string[] = [
    `CREATE TABLE ${STATE_TABLE} (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  phase          text NOT NULL CHECK (phase IN ('backfill', 'indexes', 'sync', 'switched')),
  old_table      oid NOT NULL,
  last_copied_id bigint,
  rows_copied    bigint NOT NULL DEFAULT 0,
  rows_total     bigint NOT NULL,
  started_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
)`,
    `COMMENT ON TABLE ${STATE_TABLE} IS 'Progress of invoices partition --convert (backfill cursor, phase); dropped when the conversion finishes'`,
    `CREATE TABLE ${LOG_TABLE} (
  seq        bigserial PRIMARY KEY,
  invoice_id bigint NOT NULL
)`,
    `COMMENT ON TABLE ${LOG_TABLE} IS 'invoice ids written in invoices during invoices partition --convert, replayed into the new table; dropped when the conversion finishes'`,
    `CREATE TABLE ${NEW_TABLE} (LIKE ${PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED INCLUDING IDENTITY) PARTITION BY RANGE (issue_date)`,
    `COMMENT ON TABLE ${NEW_TABLE} IS ${lit(facts.comment ?? 'invoices, partitioned by month of issue_date: being filled by invoices partition --convert, renamed to invoices when it finishes')}`,
  ];
  // The watermark column of the tool's layout (sql/invoices.sql), for incremental export and scoring.
  if (!facts.columns.some((c) => c.name === 'created_xid')) out.push(`ALTER TABLE ${NEW_TABLE} ADD COLUMN created_xid xid8 NOT NULL DEFAULT pg_current_xact_id()`);
  for (const p of partitions) {
    const { from, to } = monthBounds(p.month);
    out.push(`CREATE TABLE ${p.name} PARTITION OF ${NEW_TABLE} FOR VALUES FROM (${lit(from)}) TO (${lit(to)})`);
  }
  out.push(`CREATE TABLE ${DEFAULT_PARTITION} PARTITION OF ${NEW_TABLE} DEFAULT`);
  // invoice_ids as in sql/invoice-ids.sql, with issue_date of the table's own type; its key comes after the backfill.
  out.push(`CREATE TABLE ${LOCATOR} (
  invoice_id  bigint NOT NULL,
  issue_date  ${facts.columns.find((c) => c.name === 'issue_date')?.type ?? 'timestamptz'} NOT NULL
)`);
  if (facts.owner !== facts.currentUser) {
    for (const t of [NEW_TABLE, ...partitions.map((p) => p.name), DEFAULT_PARTITION, LOCATOR]) out.push(`ALTER TABLE ${t} OWNER TO ${q(facts.owner)}`);
  }
  for (const g of facts.grants) {
    out.push(`GRANT ${g.privilege} ON ${NEW_TABLE} TO ${g.grantee ? q(g.grantee) : 'PUBLIC'}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
  }
  // The invoice_ids trigger writes as the user who writes invoices: give invoice_ids the same readers and writers.
  const locatorPrivileges = new Map<string, Set<string>>();
  for (const g of facts.grants) {
    const set = locatorPrivileges.get(g.grantee) ?? new Set<string>();
    if (g.privilege === 'SELECT') set.add('SELECT');
    if (['INSERT', 'UPDATE', 'DELETE'].includes(g.privilege)) ['SELECT', 'INSERT', 'UPDATE', 'DELETE'].forEach((p) => set.add(p));
    if (set.size) locatorPrivileges.set(g.grantee, set);
  }
  for (const [grantee, set] of locatorPrivileges) out.push(`GRANT ${[...set].join(', ')} ON ${LOCATOR} TO ${grantee ? q(grantee) : 'PUBLIC'}`);
  // The capture function runs as its owner, so writers of invoices need no rights on the log.
  out.push(`CREATE FUNCTION ${CAPTURE}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Every id a write touched, old and new: the converter re-copies each from invoices.
  IF TG_OP <> 'INSERT' THEN
    INSERT INTO ${q(facts.schema)}.${LOG_TABLE} (invoice_id) VALUES (OLD.invoice_id);
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.invoice_id IS DISTINCT FROM OLD.invoice_id) THEN
    INSERT INTO ${q(facts.schema)}.${LOG_TABLE} (invoice_id) VALUES (NEW.invoice_id);
  END IF;
  RETURN NULL;
END $$`);
  out.push(`CREATE FUNCTION ${TRUNCATE_GUARD}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'invoices is being converted by invoices partition --convert: TRUNCATE would not reach the new table; finish the conversion or cancel it (--convert --cancel) first';
END $$`);
  // Last, so the locks on customers and invoices are held only for the commit.
  for (const c of facts.constraints.filter((x) => x.contype === 'f')) out.push(`ALTER TABLE ${NEW_TABLE} ADD CONSTRAINT ${q(c.name)} ${c.def}`);
  out.push(`CREATE TRIGGER ${CAPTURE} AFTER INSERT OR UPDATE OR DELETE ON ${PARENT} FOR EACH ROW EXECUTE FUNCTION ${CAPTURE}()`);
  out.push(`CREATE TRIGGER ${TRUNCATE_GUARD} BEFORE TRUNCATE ON ${PARENT} FOR EACH STATEMENT EXECUTE FUNCTION ${TRUNCATE_GUARD}()`);
  out.push(`INSERT INTO ${STATE_TABLE} (phase, old_table, rows_total) VALUES ('backfill', ${facts.oid}, ${rowsTotal})`);
  return out;
}

function backfillSql(s: Sql, first: boolean): string {
  return `WITH batch AS (
  SELECT ${s.cols} FROM ${PARENT}${first ? '' : ' WHERE invoice_id > $2'} ORDER BY invoice_id LIMIT $1
), copied AS (
  INSERT INTO ${NEW_TABLE} (${s.cols}) OVERRIDING SYSTEM VALUE SELECT ${s.cols} FROM batch RETURNING invoice_id, issue_date
), located AS (
  INSERT INTO ${LOCATOR} (invoice_id, issue_date) SELECT invoice_id, issue_date FROM copied RETURNING invoice_id
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
  const { q, facts } = s;
  const statements: SwitchPlan['statements'] = [];
  const carried: string[] = [];
  const warnings: string[] = [];
  const views = facts.dependents.filter((v) => v.relkind === 'v');
  const relations: Relations = {
    own: [NEW_TABLE, LOCATOR],
    shared: [PARENT, ...new Set(facts.inbound.map((f) => f.table)), ...views.map((v) => v.name)],
  };
  statements.push({ sql: `DROP TRIGGER ${CAPTURE} ON ${PARENT}` }, { sql: `DROP TRIGGER ${TRUNCATE_GUARD} ON ${PARENT}` });
  // Free the names the new table takes: the old table's indexes (and the constraints behind them) and identity sequences.
  for (const ix of facts.indexes) statements.push({ sql: `ALTER INDEX ${q(ix.name)} RENAME TO ${q(prefixedName(ix.name, OLD_TABLE))}` });
  const { rows: newSequences } = await client.query<{ name: string; sequence: string | null }>(
    `SELECT a.attname AS name, pg_get_serial_sequence($1, a.attname) AS sequence FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> ''`,
    [NEW_TABLE],
  );
  const identity = facts.columns.filter((c) => c.identity && c.sequence);
  for (const c of identity) statements.push({ sql: `ALTER SEQUENCE ${c.sequence} RENAME TO ${q(prefixedName(`${PARENT}_${c.name}_seq`, OLD_TABLE))}` });
  statements.push({ sql: `ALTER TABLE ${PARENT} RENAME TO ${OLD_TABLE}` }, { sql: `ALTER TABLE ${NEW_TABLE} RENAME TO ${PARENT}` });
  for (const st of steps) if (st.name !== st.finalName) statements.push({ sql: `ALTER INDEX ${q(st.name)} RENAME TO ${q(st.finalName)}` });
  for (const c of identity) {
    // Identity: the new table's own sequence takes the usual name and continues where the old one
    // was, or past the largest id if ids were also written by hand.
    const schema = q(facts.schema);
    const current = newSequences.find((n) => n.name === c.name)?.sequence ?? `${schema}.${q(prefixedName(`${PARENT}_${c.name}_seq`, NEW_TABLE))}`;
    const finalName = q(prefixedName(`${PARENT}_${c.name}_seq`, PARENT));
    const oldSeq = `${schema}.${q(prefixedName(`${PARENT}_${c.name}_seq`, OLD_TABLE))}`;
    statements.push({ sql: `ALTER SEQUENCE ${current} RENAME TO ${finalName}` });
    const max = c.name === 'invoice_id' ? `(SELECT max(invoice_id) FROM ${PARENT})` : 'NULL::bigint';
    statements.push({
      sql: `SELECT setval(${client.escapeLiteral(`${schema}.${finalName}`)}, CASE WHEN ${max} > s.last_value THEN ${max} ELSE s.last_value END, ${max} > s.last_value OR s.is_called) FROM ${oldSeq} s`,
    });
    carried.push(`identity ${c.name}: continues after the old sequence's last value and max(${c.name})`);
  }
  for (const c of facts.columns.filter((x) => !x.identity && x.sequence && x.ownedSequence)) {
    statements.push({ sql: `ALTER SEQUENCE ${c.sequence} OWNED BY ${PARENT}.${q(c.name)}` });
    carried.push(`sequence ${c.sequence}: the default of ${c.name} keeps using it; now owned by the new table`);
  }
  statements.push({ sql: sqlFile('invoice-ids.sql').replace(/^--.*\n/gm, '').replace(/\n{3,}/g, '\n\n').trim().replace(/;$/, '') });
  for (const tg of facts.triggers) {
    const sql = tg.def.replace(/ ON (\S+) /, (_m, on: string) => (on.endsWith(PARENT) ? ` ON ${PARENT} ` : _m));
    // The old table's trigger keeps its name; a partitioned table takes it too (names are per table).
    statements.push({ sql, optional: `trigger ${tg.name} could not be recreated on the partitioned table` });
    // Keep its firing mode: disabled, or firing only in (or also in) replication sessions.
    const mode: Record<string, string> = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };
    if (mode[tg.enabled]) statements.push({ sql: `ALTER TABLE ${PARENT} ${mode[tg.enabled]} TRIGGER ${q(tg.name)}`, optional: `trigger ${tg.name} could not be set to ${mode[tg.enabled]}` });
    carried.push(`trigger ${tg.name}`);
  }
  for (const v of views) {
    const options = v.options?.length ? ` WITH (${v.options.join(', ')})` : '';
    statements.push({ sql: `CREATE OR REPLACE VIEW ${v.name}${options} AS ${v.def.trim().replace(/;$/, '')}`, optional: `view ${v.name} still reads ${OLD_TABLE}: recreate it on invoices` });
    carried.push(`view ${v.name}: now reads the partitioned table`);
  }
  for (const v of facts.dependents.filter((x) => x.relkind !== 'v')) {
    warnings.push(`materialized view ${v.name} still reads ${OLD_TABLE} (it follows the table it was created on): recreate it (DROP MATERIALIZED VIEW ${v.name}; CREATE MATERIALIZED VIEW ${v.name} AS ...) before dropping ${OLD_TABLE}`);
  }
  for (const f of facts.functions) warnings.push(`function ${f} has a SQL-standard body bound to the old table: recreate it (CREATE OR REPLACE FUNCTION) so it reads the partitioned table`);
  for (const f of facts.inbound) {
    statements.push({ sql: `ALTER TABLE ${f.table} DROP CONSTRAINT ${q(f.name)}` });
    statements.push({ sql: `ALTER TABLE ${f.table} ADD CONSTRAINT ${q(f.name)} ${repointForeignKey(f.def)} NOT VALID` });
    carried.push(`foreign key ${f.name} on ${f.table}: now references invoice_ids (invoice_id), validated after the switch`);
  }
  statements.push({ sql: `UPDATE ${STATE_TABLE} SET phase = 'switched', updated_at = now()` });
  return { relations, statements, carried, warnings };
}

/** "FOREIGN KEY (x) REFERENCES invoices(invoice_id) ON DELETE CASCADE" -> the same, referencing invoice_ids. */
export function repointForeignKey(def: string): string {
  const at = def.indexOf(' REFERENCES ');
  const open = def.indexOf('(', at + 12);
  const close = def.indexOf(')', open);
  if (at < 0 || open < 0 || close < 0) throw new ConversionError(`cannot read foreign key definition "${def}"`);
  return `${def.slice(0, at)} REFERENCES ${LOCATOR}(invoice_id)${def.slice(close + 1).replace(/ NOT VALID$/, '')}`;
}

/**
 * What `convertInvoices` would do, from the catalog and one scan of the table (months); changes nothing.
 * Also the refusals: a UsageError here means the conversion cannot start.
 */
export async function planConversion(client: Client, opts: ConvertOptions): Promise<ConversionPlan> {
  const batchSize = opts.batchSize ?? 100_000;
  const { layout } = await detectLayout(client);
  const state = await readState(client);
  const empty: ConversionPlan = {
    status: 'done', phase: state?.phase ?? null, rows: 0, copiedRows: 0, months: [], partitions: [], prepare: [], backfill: '',
    batchSize, indexes: [], switchSql: [], finish: [], carried: [], warnings: [],
  };
  if (layout === 'partitioned') {
    if (state?.phase === 'switched') return { ...empty, status: 'finish', finish: finishStatements() };
    return empty;
  }
  const q = await quoter(client);
  const facts = await inspectTable(client, q);
  const s = sqlContext(q, facts);
  if (state && state.old_table !== facts.oid) {
    throw new ConversionError(`invoices is not the table the conversion started on (it was replaced since ${state.started_at}): cancel it with \`invoices partition --convert --cancel\`, then convert again`);
  }
  const { steps, carried, warnings } = translateIndexes(s);
  warnings.push(...facts.notes);
  const cols = facts.columns.filter((c) => !c.generated).map((c) => c.name);
  carried.unshift(`columns ${cols.join(', ')} with their defaults, NOT NULL and CHECK constraints`);
  if (!facts.columns.some((c) => c.name === 'created_xid')) {
    carried.push('added created_xid xid8 DEFAULT pg_current_xact_id() as in the tool\'s own layout (copied rows carry the id of the transaction that copied them)');
  }
  for (const c of facts.constraints.filter((x) => x.contype === 'f')) carried.push(`foreign key ${c.name}: ${c.def}`);
  if (facts.grants.length) carried.push(`privileges: ${facts.grants.map((g) => `${g.privilege} to ${g.grantee || 'PUBLIC'}`).join(', ')} (and the matching rights on invoice_ids, which the trigger writes)`);
  if (facts.owner !== facts.currentUser) carried.push(`owner ${facts.owner}`);

  let months: ConversionPlan['months'] = [];
  let partitions: string[] = [];
  let prepare: string[] = [];
  let rows = Number(state?.rows_total ?? 0);
  if (!state) {
    checkConvertible(facts);
    months = await monthsOf(client, s);
    rows = months.reduce((n, m) => n + m.rows, 0);
    const all = [...new Set([...months.map((m) => m.month), ...opts.ahead])].sort();
    const parts = all.map((month) => ({ month, name: partitionName(month) }));
    partitions = parts.map((p) => p.name);
    await checkNamesFree(client, [NEW_TABLE, OLD_TABLE, LOCATOR, LOG_TABLE, DEFAULT_PARTITION, ...partitions, ...steps.map((x) => x.name), ...facts.indexes.map((i) => prefixedName(i.name, OLD_TABLE))]);
    prepare = prepareStatements(client, s, parts, rows);
    const date = facts.columns.find((c) => c.name === 'issue_date');
    if (date && !date.notNull) warnings.push('issue_date allows NULL in invoices; the partitioned table requires it (the primary key includes it)');
  }
  const sw = await planSwitch(client, s, steps);
  const lockTimeout = opts.lockTimeoutMs ?? 500;
  const switchSql = [
    'BEGIN',
    `SET LOCAL lock_timeout = ${lockTimeout}`,
    `LOCK TABLE ${sw.relations.own.join(', ')} IN ACCESS EXCLUSIVE MODE`,
    `LOCK TABLE ${sw.relations.shared.join(', ')} IN ACCESS EXCLUSIVE MODE`,
    `-- replay what is left of ${LOG_TABLE}, compare those rows one by one`,
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
    finish: finishStatements(),
    carried: [...carried, ...sw.carried],
    warnings: [...warnings, ...sw.warnings],
  };
}

function finishStatements(): string[] {
  return [
    `-- ALTER TABLE ... VALIDATE CONSTRAINT for each foreign key now referencing ${LOCATOR} (no lock against writers)`,
    `DROP TABLE ${LOG_TABLE}`,
    `DROP FUNCTION ${CAPTURE}()`,
    `DROP FUNCTION ${TRUNCATE_GUARD}()`,
    `DROP TABLE ${STATE_TABLE}`,
  ];
}

/** The plan as SQL a DBA can read (the dry run). */
export function describePlan(plan: ConversionPlan, opts: Pick<ConvertOptions, 'lockRetries'> = {}): string {
  const fmt = (n: number) => n.toLocaleString('en-US');
  const out: string[] = [];
  if (plan.status === 'done') return '-- invoices is already partitioned: nothing to convert\n';
  if (plan.status === 'finish') return `-- the switch is done; what is left:\n${plan.finish.join(';\n')};\n`;
  out.push(`-- invoices partition --convert: the plan (nothing has been changed)`);
  if (plan.status === 'resume') out.push(`-- a conversion is in progress (phase ${plan.phase}, ${fmt(plan.copiedRows)} of ~${fmt(plan.rows)} rows copied): a run resumes it`);
  else out.push(`-- invoices: ${fmt(plan.rows)} rows in ${plan.months.length} months${plan.months.length ? ` (${plan.months[0].month} .. ${plan.months[plan.months.length - 1].month})` : ''}`);
  out.push('--', '-- carried over:', ...plan.carried.map((c) => `--   ${c}`));
  if (plan.warnings.length) out.push('--', '-- not carried over (reported):', ...plan.warnings.map((w) => `--   ${w}`));
  if (plan.prepare.length) {
    out.push('', `-- 1. prepare: one transaction; ${plan.partitions.length} monthly partitions + DEFAULT; a trigger on invoices logs changed ids`, 'BEGIN;', ...plan.prepare.map((x) => `${x};`), 'COMMIT;');
  }
  const left = Math.max(0, plan.rows - plan.copiedRows);
  out.push('', `-- 2. backfill: ~${fmt(Math.ceil(left / plan.batchSize))} batches of up to ${fmt(plan.batchSize)} rows, each one transaction with its cursor ($1 = batch size, $2 = last copied id)`,
    `${plan.backfill};`, `UPDATE ${STATE_TABLE} SET last_copied_id = <last>, rows_copied = rows_copied + <n>;`);
  out.push('', '-- 3. indexes, built once the rows are in; then VACUUM ANALYZE', ...plan.indexes.map((x) => `${x.sql};`), `VACUUM (ANALYZE) ${NEW_TABLE}, ${LOCATOR};`);
  out.push('', `-- 4. catch up: replay ${LOG_TABLE} (delete each logged id from ${NEW_TABLE} and ${LOCATOR}, copy it again from invoices)`,
    '--    each batch compares its ids row by row; verify: count, sum(amount), sum(invoice_id) per month equal in both tables (one REPEATABLE READ snapshot, logged ids aside)');
  out.push('', `-- 5. switch: up to ${(opts.lockRetries ?? 10) + 1} attempts; the exclusive lock on invoices is held from LOCK to COMMIT`, ...plan.switchSql.map((x) => (x.startsWith('--') ? x : `${x};`)));
  out.push('', '-- 6. finish', ...plan.finish.map((x) => (x.startsWith('--') ? x : `${x};`)));
  out.push(`-- the old table is kept as ${OLD_TABLE}: DROP TABLE ${OLD_TABLE} once you are satisfied`);
  return out.join('\n') + '\n';
}

// --- running it ---------------------------------------------------------------------------

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
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
async function withLockRetry<T>(client: Client, opts: Required<Pick<ConvertOptions, 'lockTimeoutMs' | 'lockRetries'>> & { signal?: AbortSignal; what: string; log: Logger }, fn: () => Promise<T>): Promise<T> {
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

function interrupted(what: string): InterruptedError {
  return new InterruptedError(`interrupted ${what}: run \`invoices partition --convert\` again to resume (meanwhile a trigger on invoices logs every change for the new table; \`--convert --cancel\` removes everything the conversion created)`);
}

/**
 * Converts a plain invoices table into the partitioned layout online, or resumes a conversion an
 * earlier run left; a no-op when invoices is already partitioned.
 */
export async function convertInvoices(client: Client, opts: ConvertOptions): Promise<ConvertResult> {
  const log = opts.log ?? silentLogger;
  const lockTimeoutMs = opts.lockTimeoutMs ?? 500;
  const lockRetries = opts.lockRetries ?? 10;
  const batchSize = opts.batchSize ?? 100_000;
  const threshold = opts.catchUpThreshold ?? 1000;
  const started = performance.now();
  const result: ConvertResult = {
    status: 'converted', resumed: false, rows: 0, copiedRows: 0, partitions: 0, seconds: 0, rowsPerSecond: 0,
    lockMs: null, lockAttempts: 0, defaultRows: 0, oldTable: OLD_TABLE, carried: [], warnings: [],
  };

  await takeConversionLock(client);
  // A killed client's server process notices at the next check instead of holding the lock until its query ends.
  await client.query("SET client_connection_check_interval = '1s'").catch(() => {});
  const replica = await client.query('SET session_replication_role = replica').then(() => true, () => false);
  // Index builds and the verification scan are long by nature; the switch is bounded by lock_timeout.
  await client.query('SET statement_timeout = 0');
  await client.query('SET synchronous_commit = off'); // a batch and its cursor commit together: losing the last ones in a crash only means copying them again
  try {
    let plan = await planConversion(client, { ...opts, batchSize });
    if (plan.status === 'done') {
      log.info('invoices is already partitioned: nothing to convert');
      return { ...result, status: 'already-partitioned', oldTable: null, seconds: (performance.now() - started) / 1000 };
    }
    if (plan.status === 'finish') {
      log.info('the switch was done by an earlier run: finishing');
      result.resumed = true;
      await finish(client, log, result);
      result.seconds = (performance.now() - started) / 1000;
      return result;
    }
    const q = await quoter(client);
    const facts = await inspectTable(client, q);
    const s = sqlContext(q, facts);
    if (!replica) log.warn('not a superuser: foreign keys are checked on every copied row (slower); superusers skip that, as pg_restore does');
    if (plan.status === 'resume') {
      result.resumed = true;
      log.info(`resuming the conversion: phase ${plan.phase}, ${plan.copiedRows.toLocaleString('en-US')} of ~${plan.rows.toLocaleString('en-US')} rows copied`);
    } else {
      opts.onProgress?.({ phase: 'prepare', done: 0, total: plan.prepare.length });
      await withLockRetry(client, { lockTimeoutMs, lockRetries, signal: opts.signal, what: 'prepare', log }, async () => {
        for (const sql of plan.prepare) await client.query(sql);
      });
      log.info(`created ${NEW_TABLE} with ${plan.partitions.length} monthly partitions and DEFAULT, ${LOCATOR}, and ${LOG_TABLE} fed by trigger ${CAPTURE} on invoices`);
      plan = await planConversion(client, { ...opts, batchSize });
    }
    result.carried = plan.carried;
    result.warnings = plan.warnings;
    for (const w of plan.warnings) log.warn(w);

    let state = await readState(client);
    if (!state) throw new ConversionError('the conversion state disappeared: was it cancelled by another session?');

    // Backfill.
    if (state.phase === 'backfill') {
      const total = Number(state.rows_total);
      let done = Number(state.rows_copied);
      let last = state.last_copied_id;
      const copyStarted = performance.now();
      opts.onProgress?.({ phase: 'backfill', done, total });
      for (;;) {
        if (opts.signal?.aborted) throw interrupted(`after copying ${done.toLocaleString('en-US')} rows`);
        await client.query('BEGIN');
        let n: number;
        try {
          const { rows: [b] } = await client.query<{ n: string; last: string | null }>(backfillSql(s, last === null), last === null ? [batchSize] : [batchSize, last]);
          n = Number(b.n);
          if (n > 0) {
            await client.query(`UPDATE ${STATE_TABLE} SET last_copied_id = $1, rows_copied = rows_copied + $2, updated_at = now()`, [b.last, n]);
            last = b.last;
          } else {
            await client.query(`UPDATE ${STATE_TABLE} SET phase = 'indexes', updated_at = now()`);
          }
          await client.query('COMMIT');
        } catch (err) {
          await rollback(client);
          throw err;
        }
        if (n === 0) break;
        done += n;
        result.copiedRows += n;
        opts.onProgress?.({ phase: 'backfill', done, total: Math.max(total, done) });
      }
      const secs = (performance.now() - copyStarted) / 1000;
      result.rowsPerSecond = secs > 0 ? result.copiedRows / secs : 0;
      log.info(`copied ${result.copiedRows.toLocaleString('en-US')} rows in ${secs.toFixed(1)} s (${Math.round(result.rowsPerSecond).toLocaleString('en-US')} rows/s)`);
      state = { ...state, phase: 'indexes' };
    }

    // Indexes: built once, in bulk, on the filled partitions. Checked again on a resumed run, in
    // case an index was added to invoices meanwhile.
    if (state.phase === 'indexes' || state.phase === 'sync') {
      const built = await ensureIndexes(client, q, plan.indexes, opts, log);
      if (state.phase === 'indexes' || built) {
        // Statistics and the visibility map before any traffic: plans and index-only lookups are right from the switch on.
        await client.query(`VACUUM (ANALYZE) ${NEW_TABLE}, ${LOCATOR}`);
      }
      if (state.phase === 'indexes') await client.query(`UPDATE ${STATE_TABLE} SET phase = 'sync', updated_at = now()`);
      state = { ...state, phase: 'sync' };
    }

    // Catch up, verify, catch up, switch.
    const replayed = await catchUp(client, s, { threshold, signal: opts.signal });
    if (replayed) log.info(`caught up: replayed ${replayed.toLocaleString('en-US')} logged changes`);
    if (opts.signal?.aborted) throw interrupted('while catching up');
    opts.onProgress?.({ phase: 'sync', done: 0, total: 1 });
    const verified = await verify(client, s);
    log.info(`verified: ${verified.rows.toLocaleString('en-US')} rows in ${verified.months} months have equal counts, sums of amount and of invoice_id in both tables${verified.skipped ? ` (${verified.skipped} ids written meanwhile are replayed and compared row by row)` : ''}`);
    await catchUp(client, s, { threshold, signal: opts.signal });

    const steps = plan.indexes;
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw interrupted('before the switch');
      result.lockAttempts = attempt;
      opts.onProgress?.({ phase: 'switch', done: attempt - 1, total: lockRetries + 1 });
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
          const holders = await lockHolders(client);
          throw new ConversionError(
            `could not take the exclusive lock on invoices within ${lockTimeoutMs} ms in ${attempt} attempts${holders ? `: ${holders}` : ''}. ` +
              'Nothing was switched and invoices is unchanged and writable; run `invoices partition --convert` again to retry (e.g. with a larger --lock-timeout), or `--cancel` it',
            { cause: err },
          );
        }
        const wait = backoff(attempt);
        log.info(`switch: ${err instanceof RetrySwitch ? err.message : `lock not available within ${lockTimeoutMs} ms`} (attempt ${attempt}), retrying in ${wait} ms`);
        await sleep(wait, opts.signal);
        await catchUp(client, s, { threshold, signal: opts.signal });
      }
    }
    log.info(`switched: invoices is now partitioned; the exclusive lock was held ${result.lockMs?.toFixed(0)} ms`);
    await finish(client, log, result);
    result.seconds = (performance.now() - started) / 1000;
    if (!result.rowsPerSecond && result.seconds > 0) result.rowsPerSecond = result.copiedRows / result.seconds;
    return result;
  } finally {
    await client.query('RESET session_replication_role').catch(() => {});
    await client.query('RESET synchronous_commit').catch(() => {});
    await client.query('RESET statement_timeout').catch(() => {});
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [ADVISORY_KEY]).catch(() => {});
  }
}

/** Builds the planned indexes that do not exist yet; returns how many it built. */
async function ensureIndexes(client: Client, q: Quote, steps: IndexStep[], opts: ConvertOptions, log: Logger): Promise<number> {
  const { rows } = await client.query<{ name: string }>('SELECT n AS name FROM unnest($1::text[]) n WHERE to_regclass(n) IS NULL', [steps.map((x) => q(x.name))]);
  const missing = steps.filter((x) => rows.some((r) => r.name === q(x.name)));
  if (missing.length) await raiseMaintenanceMemory(client);
  for (const [i, step] of missing.entries()) {
    if (opts.signal?.aborted) throw interrupted('while building indexes');
    opts.onProgress?.({ phase: 'indexes', done: i, total: missing.length });
    const t = performance.now();
    await client.query(step.sql);
    log.info(`built ${step.description} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  return missing.length;
}

/**
 * One conversion per database at a time (a session advisory lock). Waits a few seconds: the
 * server process of a killed run holds it until it notices its client is gone.
 */
async function takeConversionLock(client: Client): Promise<void> {
  for (let waited = 0; ; waited += 250) {
    const { rows: [locked] } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [ADVISORY_KEY]);
    if (locked.ok) return;
    if (waited >= 5000) break;
    await sleep(250);
  }
  const { rows } = await client.query<{ pid: number }>(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = hashtext($1)::oid AND granted AND pid <> pg_backend_pid()", [ADVISORY_KEY]);
  throw new ConversionError(`another \`invoices partition --convert\` is running on this database${rows[0] ? ` (server process ${rows[0].pid})` : ''}: wait for it, or stop it (it resumes later)`);
}

async function raiseMaintenanceMemory(client: Client): Promise<void> {
  const { rows: [m] } = await client.query<{ kb: string }>("SELECT setting AS kb FROM pg_settings WHERE name = 'maintenance_work_mem'");
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
  const { rows: [picked] } = await client.query<{ seqs: string[] | null; ids: string[] | null }>(
    `SELECT array_agg(seq)::text[] AS seqs, array_agg(DISTINCT invoice_id)::text[] AS ids
       FROM (SELECT seq, invoice_id FROM ${LOG_TABLE} ORDER BY seq${limit ? ` LIMIT ${limit}` : ''}) l`,
  );
  if (!picked.seqs?.length || !picked.ids) return { entries: 0, ids: [] };
  await client.query(`DELETE FROM ${LOCATOR} WHERE invoice_id = ANY ($1::bigint[])`, [picked.ids]);
  await client.query(`DELETE FROM ${NEW_TABLE} WHERE invoice_id = ANY ($1::bigint[])`, [picked.ids]);
  await client.query(
    `WITH copied AS (
       INSERT INTO ${NEW_TABLE} (${s.cols}) OVERRIDING SYSTEM VALUE
       SELECT ${s.cols} FROM ${PARENT} WHERE invoice_id = ANY ($1::bigint[]) RETURNING invoice_id, issue_date
     ) INSERT INTO ${LOCATOR} (invoice_id, issue_date) SELECT invoice_id, issue_date FROM copied`,
    [picked.ids],
  );
  await client.query(`DELETE FROM ${LOG_TABLE} WHERE seq = ANY ($1::bigint[])`, [picked.seqs]);
  return { entries: picked.seqs.length, ids: picked.ids };
}

/**
 * The rows of these ids are the same in invoices and the new table, and invoice_ids locates each
 * (a guard against a bug in the replay; the ids are passed as an array so every table is probed
 * through its key).
 */
async function checkRows(client: Client, s: Sql, ids: string[]): Promise<void> {
  if (!ids.length) return;
  const { rows: [diff] } = await client.query<{ n: string; ids: string[] | null }>(
    `WITH o AS (SELECT invoice_id, ROW(${s.cols})::text AS r FROM ${PARENT} WHERE invoice_id = ANY ($1::bigint[])),
          n AS MATERIALIZED (SELECT invoice_id, issue_date, ROW(${s.cols})::text AS r FROM ${NEW_TABLE} WHERE invoice_id = ANY ($1::bigint[])),
          l AS (SELECT invoice_id, issue_date FROM ${LOCATOR} WHERE invoice_id = ANY ($1::bigint[])),
          d AS ((SELECT invoice_id FROM (SELECT * FROM o EXCEPT ALL SELECT invoice_id, r FROM n) a)
                UNION ALL (SELECT invoice_id FROM (SELECT invoice_id, r FROM n EXCEPT ALL SELECT * FROM o) b)
                UNION ALL (SELECT invoice_id FROM (SELECT invoice_id, issue_date FROM n EXCEPT ALL SELECT * FROM l) c)
                UNION ALL (SELECT invoice_id FROM (SELECT * FROM l EXCEPT ALL SELECT invoice_id, issue_date FROM n) e))
     SELECT count(*)::text AS n, (array_agg(DISTINCT invoice_id::text))[1:5] AS ids FROM d`,
    [ids],
  );
  if (diff.n !== '0') {
    throw new ConversionError(`verification failed, nothing was switched: invoices ${diff.ids?.join(', ')} differ between invoices and ${NEW_TABLE} after replaying their changes. Cancel with \`invoices partition --convert --cancel\` and convert again`);
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
  const sums = (table: string) =>
    `SELECT to_char(${s.monthExpr}, 'YYYY-MM') AS month, count(*)::text AS n, ${s.facts.hasAmount ? 'sum(amount)::text' : 'NULL::text'} AS amount, sum(invoice_id)::text AS ids
       FROM ${table} t WHERE NOT EXISTS (SELECT 1 FROM ${LOG_TABLE} l WHERE l.invoice_id = t.invoice_id) GROUP BY 1 ORDER BY 1`;
  let old: Array<MonthSums & { month: string }>;
  let neu: Array<MonthSums & { month: string }>;
  let loc: { n: string; ids: string | null; skipped: string };
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    old = (await client.query<MonthSums & { month: string }>(sums(PARENT))).rows;
    neu = (await client.query<MonthSums & { month: string }>(sums(NEW_TABLE))).rows;
    [loc] = (await client.query<{ n: string; ids: string | null; skipped: string }>(
      `SELECT count(*)::text AS n, sum(invoice_id)::text AS ids, (SELECT count(DISTINCT invoice_id) FROM ${LOG_TABLE})::text AS skipped
         FROM ${LOCATOR} t WHERE NOT EXISTS (SELECT 1 FROM ${LOG_TABLE} l WHERE l.invoice_id = t.invoice_id)`,
    )).rows;
    await client.query('COMMIT');
  } catch (err) {
    await rollback(client);
    throw err;
  }
  const key = (r: MonthSums) => `${r.n} rows, amount ${r.amount ?? '-'}, ids ${r.ids ?? '0'}`;
  const a = new Map(old.map((r) => [r.month, key(r)]));
  const b = new Map(neu.map((r) => [r.month, key(r)]));
  const diffs = [...new Set([...a.keys(), ...b.keys()])].sort().filter((m) => a.get(m) !== b.get(m))
    .map((m) => `${m}: invoices ${a.get(m) ?? 'none'}, ${NEW_TABLE} ${b.get(m) ?? 'none'}`);
  const rows = old.reduce((n, r) => n + Number(r.n), 0);
  const newRows = neu.reduce((n, r) => n + Number(r.n), 0);
  const newIds = neu.reduce((n, r) => n + BigInt(r.ids ?? '0'), 0n);
  if (Number(loc.n) !== newRows || BigInt(loc.ids ?? '0') !== newIds) diffs.push(`${LOCATOR} has ${loc.n} rows for ${newRows} in ${NEW_TABLE}`);
  if (diffs.length) {
    throw new ConversionError(`verification failed, nothing was switched: ${diffs.slice(0, 5).join('; ')}${diffs.length > 5 ? `; and ${diffs.length - 5} more` : ''}. Cancel with \`invoices partition --convert --cancel\` and convert again`);
  }
  return { rows, months: old.length, skipped: Number(loc.skipped) };
}

class RetrySwitch extends Error {}

async function switchOnce(client: Client, s: Sql, steps: IndexStep[], opts: { lockTimeoutMs: number }): Promise<{ lockMs: number; failed: Array<{ name: string; warning: string }> }> {
  const { q } = s;
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
    const facts = await inspectTable(client, q);
    const plan = await planSwitch(client, { ...s, facts }, steps);
    const missing = plan.relations.shared.filter((r) => !before.relations.shared.includes(r));
    if (missing.length) throw new RetrySwitch(`${missing.join(', ')} appeared since the plan`);
    const wanted = translateIndexes({ ...s, facts }).steps.filter((x) => !steps.some((y) => y.name === x.name));
    if (wanted.length) {
      throw new ConversionError(`${wanted.map((x) => x.description).join(', ')} appeared on invoices during the conversion: run \`invoices partition --convert\` again to build ${wanted.length === 1 ? 'it' : 'them'} on the new table before the switch`);
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

async function lockHolders(client: Client): Promise<string> {
  const { rows } = await client.query<{ pid: number; mode: string; state: string | null; since: string | null; query: string | null }>(
    `SELECT l.pid, l.mode, a.state, a.xact_start::text AS since, left(a.query, 60) AS query
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid() ORDER BY a.xact_start LIMIT 3`,
    [PARENT],
  ).catch(() => ({ rows: [] }));
  return rows.map((r) => `held by server process ${r.pid} (${r.mode}, ${r.state ?? '?'}${r.since ? ` since ${r.since}` : ''}${r.query ? `: ${r.query}` : ''})`).join('; ');
}

/** After the switch: validate repointed foreign keys, drop the conversion's objects, report the DEFAULT partition. */
async function finish(client: Client, log: Logger, result: ConvertResult): Promise<void> {
  const { rows: fks } = await client.query<{ name: string; table: string }>(
    `SELECT conname AS name, conrelid::regclass::text AS "table" FROM pg_constraint
      WHERE confrelid = to_regclass($1) AND contype = 'f' AND NOT convalidated ORDER BY 2, 1`,
    [LOCATOR],
  );
  for (const f of fks) {
    try {
      await client.query(`ALTER TABLE ${f.table} VALIDATE CONSTRAINT ${quoteIdent(f.name)}`);
      log.info(`validated foreign key ${f.name} on ${f.table} against ${LOCATOR}`);
    } catch (err) {
      const w = `foreign key ${f.name} on ${f.table} stays NOT VALID (${(err as Error).message}): new rows are checked; fix the old ones and VALIDATE it`;
      result.warnings.push(w);
      log.warn(w);
    }
  }
  await client.query('BEGIN');
  try {
    await client.query(`DROP TABLE IF EXISTS ${LOG_TABLE}`);
    await client.query(`DROP FUNCTION IF EXISTS ${CAPTURE}()`);
    await client.query(`DROP FUNCTION IF EXISTS ${TRUNCATE_GUARD}()`);
    await client.query(`DROP TABLE IF EXISTS ${STATE_TABLE}`);
    await client.query('COMMIT');
  } catch (err) {
    await rollback(client);
    throw err;
  }
  const { rows: [c] } = await client.query<{ rows: string; parts: string; def: string }>(
    `SELECT (SELECT count(*) FROM ${LOCATOR})::text AS rows,
            (SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1))::text AS parts,
            (SELECT count(*) FROM ${DEFAULT_PARTITION})::text AS def`,
    [PARENT],
  );
  result.rows = Number(c.rows);
  result.partitions = Number(c.parts);
  result.defaultRows = Number(c.def);
  if (result.defaultRows) {
    const w = `${result.defaultRows} rows are in the DEFAULT partition (months without a partition of their own): run \`invoices partition\` to move them`;
    result.warnings.push(w);
    log.warn(w);
  }
  const old = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [OLD_TABLE]);
  result.oldTable = old.rows[0].ok ? OLD_TABLE : null;
}

/** Removes everything an unfinished conversion created (the trigger on invoices first); invoices itself is untouched. */
export async function cancelConversion(client: Client, opts: Pick<ConvertOptions, 'lockTimeoutMs' | 'lockRetries' | 'signal' | 'log'> & { dryRun?: boolean }): Promise<{ cancelled: boolean; statements: string[] }> {
  const log = opts.log ?? silentLogger;
  const state = await readState(client);
  const { layout } = await detectLayout(client);
  if (!state && layout !== 'partitioned') {
    const { rows: [leftover] } = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [NEW_TABLE]);
    if (!leftover.ok) return { cancelled: false, statements: [] };
  }
  if (state?.phase === 'switched' || layout === 'partitioned') {
    throw new UsageError('the switch is already done: invoices is partitioned (the old table is invoices_unpartitioned); run `invoices partition --convert` to finish');
  }
  const statements = [
    `DROP TRIGGER IF EXISTS ${CAPTURE} ON ${PARENT}`,
    `DROP TRIGGER IF EXISTS ${TRUNCATE_GUARD} ON ${PARENT}`,
    `DROP TABLE IF EXISTS ${NEW_TABLE}`,
    `DROP TABLE IF EXISTS ${LOCATOR}`,
    `DROP FUNCTION IF EXISTS ${CAPTURE}()`,
    `DROP FUNCTION IF EXISTS ${TRUNCATE_GUARD}()`,
    `DROP TABLE IF EXISTS ${LOG_TABLE}`,
    `DROP TABLE IF EXISTS ${STATE_TABLE}`,
  ];
  if (opts.dryRun) return { cancelled: false, statements };
  await takeConversionLock(client);
  try {
    await withLockRetry(client, { lockTimeoutMs: opts.lockTimeoutMs ?? 500, lockRetries: opts.lockRetries ?? 10, signal: opts.signal, what: 'cancel', log }, async () => {
      for (const sql of statements) await client.query(sql);
    });
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [ADVISORY_KEY]).catch(() => {});
  }
  return { cancelled: true, statements };
}
