// What is there before and during a conversion: the table as the catalog describes it (columns,
// indexes, constraints, references, triggers, views, grants), the refusals that follow from it,
// the conversion's own state row, and the other catalog reads the phases need. The only file of
// the conversion that reads pg_catalog.
import type { Client } from '../../db/client.js';
import { UsageError } from '../../errors.js';
import type { Month } from '../partitions.js';
import type { Names, Quote } from './names.js';

export type IssueDateKind = 'timestamptz' | 'timestamp' | 'date';

export interface ColumnFact {
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

export interface IndexFact {
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

export interface ConstraintFact {
  name: string;
  contype: string;
  valid: boolean;
  self: boolean;
  def: string;
}

export interface InboundFk {
  name: string;
  table: string;
  relkind: string;
  def: string;
  refColumns: string[];
}

export interface ViewFact {
  name: string;
  relkind: string;
  def: string;
  options: string[] | null;
}

export interface TableFacts {
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

export interface StateRow {
  phase: 'backfill' | 'indexes' | 'sync' | 'switched';
  old_table: number;
  last_copied_id: string | null;
  rows_copied: string;
  rows_total: string;
  started_at: string;
}

/** The words PostgreSQL reserves in some way (an identifier spelled so must be quoted). */
export async function keywords(client: Client): Promise<Set<string>> {
  const { rows } = await client.query<{ word: string }>("SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'");
  return new Set(rows.map((r) => r.word));
}

/** The table to convert as the catalog has it; a UsageError when it cannot be converted at all. */
export async function inspectTable(client: Client, n: Names, q: Quote): Promise<TableFacts> {
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
    [n.parent],
  );
  const L = n.label;
  if (!t) {
    throw new UsageError(n.tables.mapped ? `there is no table ${L} to convert: fix the table mapping` : 'there is no invoices table to convert: `invoices init` creates one, already partitioned');
  }
  if (t.relkind !== 'r') throw new UsageError(`${L} is not a table (relkind ${t.relkind}): nothing to convert`);
  if (t.relispartition || t.inherits) throw new UsageError(`${L} takes part in table inheritance: convert only a stand-alone table`);
  if (t.persistence !== 'p') throw new UsageError(`${L} is a temporary or unlogged table: convert only a regular table`);
  if (t.schema !== t.current_schema) {
    throw new UsageError(`${L} is in schema ${t.schema} but new tables would go to ${t.current_schema ?? 'no schema'}: put ${t.schema} first in search_path`);
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
  const kinds: Record<string, IssueDateKind> = { 'timestamp with time zone': 'timestamptz', 'timestamp without time zone': 'timestamp', date: 'date' };
  const issueDate = kinds[date.base];
  if (!issueDate) throw new UsageError(`${D} must be a timestamptz, timestamp or date column to be partitioned by month, it is ${date.type}`);

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
  if (t.reloptions?.length) notes.push(`${L} has storage options (${t.reloptions.join(', ')}): set them on the partitions if they still matter`);
  if (t.column_acl) notes.push(`${L} has column privileges: they are not carried over (GRANT them on the new table)`);
  for (const s of t.stats) notes.push(`extended statistics ${s} stay on the old table: CREATE STATISTICS on the new one`);
  for (const p of t.publications) notes.push(`${L} is in publication ${p}: add the new table (ALTER PUBLICATION ${q(p)} ADD TABLE ${n.parent}, with publish_via_partition_root)`);

  return {
    oid, schema: t.schema, owner: t.owner, currentUser: t.me, comment: t.comment,
    columns, issueDate, hasAmount: columns.some((c) => c.name === n.amountName && !c.generated),
    indexes, constraints, inbound, triggers, dependents, functions: functions.map((f) => f.name), grants, notes,
  };
}

/** The invoice_id uniqueness the conversion relies on: a valid unique index on exactly (invoice_id). */
export function idUniqueIndex(facts: TableFacts, n: Names): IndexFact | undefined {
  return facts.indexes.find((i) => i.unique && i.valid && !i.expressions && !i.partial && i.keys.length === 1 && i.keys[0] === n.idName);
}

/** Refusals that must come before anything is created (UsageError, exit 2). */
export function checkConvertible(facts: TableFacts, n: Names): void {
  const L = n.label;
  if (!idUniqueIndex(facts, n)) {
    throw new UsageError(`${n.idName} is not unique in ${L} (no primary key or unique index on ${n.idName} alone): add one without blocking writers with \`invoices index\`, then convert`);
  }
  for (const c of facts.constraints) {
    if (!c.valid) throw new UsageError(`constraint ${c.name} on ${L} is NOT VALID: validate it first (ALTER TABLE ${n.parent} VALIDATE CONSTRAINT ${c.name}); the partitioned table enforces it on every row`);
    if (c.contype === 'f' && c.self) throw new UsageError(`foreign key ${c.name} references ${L} itself: drop it before converting and add it back referencing ${n.locator} (invoice_id)`);
  }
  for (const f of facts.inbound) {
    if (f.refColumns.length !== 1 || f.refColumns[0] !== n.idName) {
      throw new UsageError(`foreign key ${f.name} on ${f.table} references ${L} (${f.refColumns.join(', ')}): only references to ${n.idName} can be moved to ${n.locator}; drop it first`);
    }
    if (f.relkind !== 'r') throw new UsageError(`foreign key ${f.name} is on partitioned table ${f.table}: it cannot be moved without a validating scan under lock; drop it first`);
  }
}

/** The conversion's state row, or null when no conversion is in progress. */
export async function readState(client: Client, n: Names): Promise<StateRow | null> {
  if (!(await relationExists(client, n.state))) return null;
  const { rows } = await client.query<StateRow>(
    `SELECT phase, old_table, last_copied_id::text, rows_copied::text, rows_total::text, started_at FROM ${n.state}`,
  );
  return rows[0] ?? null;
}

export async function relationExists(client: Client, name: string): Promise<boolean> {
  const { rows: [r] } = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [name]);
  return r.ok;
}

/** Of these relation names (as SQL), those that exist (present) or those that do not. */
export async function relations(client: Client, names: string[], present: boolean): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT n AS name FROM unnest($1::text[]) n WHERE (to_regclass(n) IS NOT NULL) = $2`, [names, present]);
  return rows.map((r) => r.name);
}

/** Rows per month of issue_date (UTC) in the old table: one scan. */
export async function monthsOf(client: Client, n: Names, monthExpr: string): Promise<Array<{ month: Month; rows: number }>> {
  const { rows } = await client.query<{ month: string | null; n: string }>(
    `SELECT to_char(${monthExpr}, 'YYYY-MM') AS month, count(*) AS n FROM ${n.parent} GROUP BY 1 ORDER BY 1`,
  );
  const nulls = rows.find((r) => r.month === null);
  if (nulls) throw new UsageError(`${nulls.n} invoices have no ${n.dateName}: a partitioned table needs one on every row (set them, then convert)`);
  return rows.map((r) => ({ month: r.month as Month, rows: Number(r.n) }));
}

/** The identity columns of a table and their sequences. */
export async function identitySequences(client: Client, table: string): Promise<Array<{ name: string; sequence: string | null }>> {
  const { rows } = await client.query<{ name: string; sequence: string | null }>(
    `SELECT a.attname AS name, pg_get_serial_sequence($1, a.attname) AS sequence FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> ''`,
    [table],
  );
  return rows;
}

/** Foreign keys referencing a table that are NOT VALID (those the switch repointed). */
export async function unvalidatedReferences(client: Client, table: string): Promise<Array<{ name: string; table: string }>> {
  const { rows } = await client.query<{ name: string; table: string }>(
    `SELECT conname AS name, conrelid::regclass::text AS "table" FROM pg_constraint
      WHERE confrelid = to_regclass($1) AND contype = 'f' AND NOT convalidated ORDER BY 2, 1`,
    [table],
  );
  return rows;
}

/** After the switch: rows located, partitions of the table, rows in its DEFAULT partition. */
export async function convertedCounts(client: Client, n: Names): Promise<{ rows: number; partitions: number; defaultRows: number }> {
  const { rows: [c] } = await client.query<{ rows: string; parts: string; def: string }>(
    `SELECT (SELECT count(*) FROM ${n.locator})::text AS rows,
            (SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1))::text AS parts,
            (SELECT count(*) FROM ${n.defaultPartition})::text AS def`,
    [n.parent],
  );
  return { rows: Number(c.rows), partitions: Number(c.parts), defaultRows: Number(c.def) };
}

/** Who holds a lock on the table, for the message when the switch gives up. */
export async function lockHolders(client: Client, n: Names): Promise<string> {
  const { rows } = await client.query<{ pid: number; mode: string; state: string | null; since: string | null; query: string | null }>(
    `SELECT l.pid, l.mode, a.state, a.xact_start::text AS since, left(a.query, 60) AS query
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid() ORDER BY a.xact_start LIMIT 3`,
    [n.parent],
  ).catch(() => ({ rows: [] }));
  return rows.map((r) => `held by server process ${r.pid} (${r.mode}, ${r.state ?? '?'}${r.since ? ` since ${r.since}` : ''}${r.query ? `: ${r.query}` : ''})`).join('; ');
}
