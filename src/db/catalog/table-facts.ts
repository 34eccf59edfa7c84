// The catalog's full description of one table, for `partition --convert`: the relation, its
// columns, indexes, constraints, the foreign keys that reference it, triggers, dependent views
// and functions, grants; and the other catalog reads a conversion needs. Part of the catalog
// module (src/db/catalog/): the only reader of pg_catalog.
import type { Client } from '../client.js';

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

/** The relation as pg_class has it, with what decides whether it can be converted. */
export interface RelationFacts {
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
}

/** The relation named `table` (undefined when there is none). */
export async function relationFacts(client: Client, table: string): Promise<RelationFacts | undefined> {
  const {
    rows: [t],
  } = await client.query<RelationFacts>(
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
    [table],
  );
  return t;
}

/** The table's columns in order (`table`: its name, for the sequences behind serial and identity columns). */
export async function columnFacts(client: Client, oid: number, table: string): Promise<ColumnFact[]> {
  const { rows: columns } = await client.query<ColumnFact & { owned: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::regtype::text AS base,
            a.attgenerated::text <> '' AS generated, a.attidentity::text AS identity, a.attnotnull AS "notNull",
            pg_get_serial_sequence($2, a.attname) AS sequence,
            EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
                      AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) AS "ownedSequence"
       FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [oid, table],
  );
  return columns;
}

/** Indexes, constraints, references to it, triggers (but those named in `skipTriggers`), dependent views and functions, grants. */
export async function tableDependents(client: Client, oid: number, skipTriggers: string[]) {
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
    [oid, skipTriggers],
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
  return { indexes, constraints, inbound, triggers, dependents, functions: functions.map((f) => f.name), grants };
}

/** The words PostgreSQL reserves in some way (an identifier spelled so must be quoted). */
export async function reservedWords(client: Client): Promise<Set<string>> {
  const { rows } = await client.query<{ word: string }>("SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'");
  return new Set(rows.map((r) => r.word));
}

/** Of these relation names (as SQL), those that exist (present) or those that do not. */
export async function relationsPresent(client: Client, names: string[], present: boolean): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT n AS name FROM unnest($1::text[]) n WHERE (to_regclass(n) IS NOT NULL) = $2`,
    [names, present],
  );
  return rows.map((r) => r.name);
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
