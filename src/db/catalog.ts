// The one reader of the system catalogs (pg_class, pg_attribute, pg_index, pg_constraint,
// pg_inherits, pg_trigger, pg_partition_tree, ...): what relations exist, their columns,
// indexes, constraints and partitions. Small queries, each answering one question; the
// callers keep what they make of the answer. Monitoring (pg_stat_activity, pg_locks,
// pg_stat_progress_*) is not here: it says what sessions do, not what the schema is.
// Relation names are SQL text (bare, or quoted and schema-qualified) resolved by the server:
// with to_regclass (a missing relation is an answer: null, false, empty) or, where a function
// says "must exist", with ::regclass (a missing relation is error 42P01), as the callers'
// queries did. No runtime import of `pg`: this module is on the path of a cached `get`.
import type { Client } from './client.js';

/** A column as the catalog has it. */
export interface ColumnInfo {
  name: string;
  /** format_type: "numeric(12,3)", "timestamp without time zone", ... */
  type: string;
  /** The type without modifiers: "numeric", "integer", ... */
  base: string;
  /** NOT NULL without a default, identity or generation: an insert must give it. */
  required: boolean;
  /** numeric's precision and scale; null when unconstrained or not numeric. */
  precision: number | null;
  scale: number | null;
}

/** A relation with its columns (in column order) and whether it has a given trigger. */
export interface RelationInfo {
  /** pg_class.relkind: 'r' plain table, 'p' partitioned table, 'v' view, ... */
  kind: string;
  columns: ColumnInfo[];
  hasTrigger: boolean;
}

/** The columns of the relation whose oid is `oid` (SQL), as rows of ColumnInfo. */
const columnsSql = (oid: string) =>
  `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::regtype::text AS base,
          a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' AS required,
          CASE WHEN a.atttypid = 'numeric'::regtype AND a.atttypmod >= 4 THEN ((a.atttypmod - 4) >> 16) & 65535 END AS precision,
          CASE WHEN a.atttypid = 'numeric'::regtype AND a.atttypmod >= 4 THEN (a.atttypmod - 4) & 65535 END AS scale
     FROM pg_attribute a WHERE a.attrelid = ${oid} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`;

// ---- relations ----------------------------------------------------------------------------

/** pg_class.relkind of each named relation, in order; null where there is none. One round trip. */
export async function relationKinds(client: Client, names: string[]): Promise<(string | null)[]> {
  const { rows } = await client.query<{ kind: string | null }>(
    `SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass(u.n)) AS kind
       FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) ORDER BY u.i`,
    [names],
  );
  return rows.map((r) => r.kind);
}

/** Whether the named relation exists (to_regclass: search_path applies to a bare name). */
export async function relationExists(client: Client, name: string): Promise<boolean> {
  return (await relationKinds(client, [name]))[0] !== null;
}

/** Which of these relation names exist in the schema (must exist), sorted. */
export async function existingRelations(client: Client, schema: string, names: string[]): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    'SELECT c.relname AS name FROM pg_class c WHERE c.relname = ANY($1) AND c.relnamespace = $2::regnamespace ORDER BY 1',
    [names, schema],
  );
  return rows.map((r) => r.name);
}

/** The relation's kind, columns and whether it has the trigger `trigger`, in one query; undefined when there is none. */
export async function relationInfo(client: Client, name: string, trigger?: string): Promise<RelationInfo | undefined> {
  const {
    rows: [r],
  } = await client.query<{ kind: string | null; columns: ColumnInfo[] | null; has_trigger: boolean }>(
    `SELECT c.relkind::text AS kind,
            EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = $2::text) AS has_trigger,
            (SELECT json_agg(x) FROM (${columnsSql('c.oid')}) x) AS columns
       FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid`,
    [name, trigger ?? null],
  );
  return r.kind ? { kind: r.kind, columns: r.columns ?? [], hasTrigger: r.has_trigger } : undefined;
}

/** The relation's columns in column order; undefined when there is no such relation. */
export async function columnsOf(client: Client, name: string): Promise<ColumnInfo[] | undefined> {
  return (await relationInfo(client, name))?.columns;
}

/** For each named table, in order: null when it does not exist, else whether it has the column. */
export async function columnPresence(client: Client, names: string[], column: string): Promise<(boolean | null)[]> {
  const { rows } = await client.query<{ has: boolean | null }>(
    `SELECT CASE WHEN to_regclass(u.t) IS NULL THEN NULL
                 ELSE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(u.t) AND a.attname = $2 AND NOT a.attisdropped) END AS has
       FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY u.i`,
    [names, column],
  );
  return rows.map((r) => r.has);
}

/** Whether the named table has a trigger of that name (false when there is no such table). */
export async function hasTrigger(client: Client, table: string, trigger: string): Promise<boolean> {
  const { rows } = await client.query<{ found: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2) AS found',
    [table, trigger],
  );
  return rows[0].found;
}

/** A stamp of a table's contents: relfilenode (TRUNCATE, reload) and insert/update/delete counters; '' when there is no table. */
export async function contentStamp(client: Client, table: string): Promise<string> {
  const {
    rows: [r],
  } = await client.query<{ stamp: string | null }>(
    `SELECT c.relfilenode::text || '/' || coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0)::text AS stamp
       FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = to_regclass($1)`,
    [table],
  );
  return r?.stamp ?? '';
}

/** Where a table's rows physically are: cluster, database, table oid, and per leaf "relfilenode/pg_inherits xmin". */
export interface StorageStamp {
  system: string;
  database: string;
  table: string;
  /** Leaf table name -> "relfilenode/pg_inherits xmin". */
  leaves: Record<string, string>;
}

/** The storage stamp of a table now, in one query. */
export async function storageStamp(client: Client, table: string): Promise<StorageStamp> {
  const {
    rows: [r],
  } = await client.query<StorageStamp>(
    `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system,
            (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS database,
            to_regclass($1)::oid::text AS "table",
            coalesce((SELECT json_object_agg(c.relname, c.relfilenode::text || '/' || coalesce(h.xmin::text, ''))
                        FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid
                        LEFT JOIN pg_inherits h ON h.inhrelid = c.oid
                       WHERE t.isleaf), '{}') AS leaves`,
    [table],
  );
  return r;
}

/** pg_total_relation_size (table, indexes, TOAST) of each named relation (must exist), in order, in bytes. */
export async function relationSizes(client: Client, names: string[]): Promise<number[]> {
  const { rows } = await client.query<{ bytes: string }>(
    'SELECT pg_total_relation_size(u.n::regclass) AS bytes FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) ORDER BY u.i',
    [names],
  );
  return rows.map((r) => Number(r.bytes));
}

/** Whether a database of that name exists on the server. */
export async function databaseExists(client: Client, name: string): Promise<boolean> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return Boolean(rowCount);
}

// ---- partitions ---------------------------------------------------------------------------

/** The direct partitions of a table (must exist) with their bounds as pg_get_expr writes them ("FOR VALUES FROM ...", "DEFAULT"), by name. */
export async function partitionsOf(client: Client, parent: string): Promise<{ name: string; bound: string }[]> {
  const { rows } = await client.query<{ name: string; bound: string }>(
    `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = $1::regclass ORDER BY 1`,
    [parent],
  );
  return rows;
}

/** A leaf of a partition tree (a plain table is its own leaf). */
export interface Leaf {
  /** relname. */
  name: string;
  /** As regclass prints it: qualified and quoted when it must be. */
  qualified: string;
  /** The planner's estimate (pg_class.reltuples, 0 when never analyzed). */
  estimatedRows: number;
}

/** The leaves of a table's partition tree, by qualified name; none when there is no such table. */
export async function leavesOf(client: Client, table: string): Promise<Leaf[]> {
  const { rows } = await client.query<{ name: string; qualified: string; n: string }>(
    `SELECT c.relname AS name, t.relid::regclass::text AS qualified, greatest(c.reltuples, 0)::bigint::text AS n
       FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid
      WHERE t.isleaf ORDER BY 2`,
    [table],
  );
  return rows.map((r) => ({ name: r.name, qualified: r.qualified, estimatedRows: Number(r.n) }));
}

// ---- indexes and constraints --------------------------------------------------------------

/** An index as the catalog has it. */
export interface IndexEntry {
  name: string;
  table: string;
  valid: boolean;
  /** The partitioned index it is attached to, if any. */
  parent: string | null;
}

/** The indexes on these tables (by relname) of one schema, in no particular order. */
export async function indexesOf(client: Client, schema: string, tables: string[]): Promise<IndexEntry[]> {
  const { rows } = await client.query<IndexEntry>(
    `SELECT c.relname AS name, t.relname AS "table", i.indisvalid AS valid,
            (SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent WHERE h.inhrelid = c.oid) AS parent
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
      WHERE t.relname = ANY($1) AND t.relnamespace = to_regnamespace($2)`,
    [tables, schema],
  );
  return rows;
}

/** An index with its definition and size (a partitioned index: the sum over its partitions). */
export interface IndexDetail {
  name: string;
  table: string;
  definition: string;
  bytes: number;
  valid: boolean;
}

/** The indexes on these tables (by relname) of one schema with definitions and sizes, by table then name. */
export async function indexDetails(client: Client, schema: string, tables: string[]): Promise<IndexDetail[]> {
  const { rows } = await client.query<Omit<IndexDetail, 'bytes'> & { bytes: string }>(
    `SELECT c.relname AS name, t.relname AS "table", pg_get_indexdef(c.oid) AS definition, i.indisvalid AS valid,
            CASE WHEN c.relkind = 'I' THEN (SELECT coalesce(sum(pg_relation_size(p.relid)), 0) FROM pg_partition_tree(c.oid) p)
                 ELSE pg_relation_size(c.oid) END AS bytes
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
      WHERE t.relname = ANY($1) AND t.relnamespace = to_regnamespace($2)
      ORDER BY t.relname, c.relname`,
    [tables, schema],
  );
  return rows.map((r) => ({ ...r, bytes: Number(r.bytes) }));
}

/** Whether the index schema.name exists and is valid; undefined when there is none. */
export async function indexValidity(client: Client, schema: string, name: string): Promise<boolean | undefined> {
  const { rows } = await client.query<{ valid: boolean }>(
    'SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1 AND c.relnamespace = to_regnamespace($2)',
    [name, schema],
  );
  return rows.length ? rows[0].valid : undefined;
}

/** Whether the table (must exist) has a valid unique index whose one key column is this one (INCLUDE columns allowed). */
export async function hasUniqueKeyOn(client: Client, table: string, column: string): Promise<boolean> {
  const { rows } = await client.query(
    `SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 AND a.attname = $2`,
    [table, column],
  );
  return rows.length > 0;
}

/** Whether a foreign key references this table (must exist). */
export async function isReferenced(client: Client, table: string): Promise<boolean> {
  const { rows } = await client.query('SELECT 1 FROM pg_constraint WHERE confrelid = $1::regclass', [table]);
  return rows.length > 0;
}

/** An index of a table with its CREATE INDEX statement, and the constraint it backs if any. */
export interface IndexDefinition {
  /** As regclass prints it. */
  index: string;
  conname: string | null;
  indexdef: string;
  condef: string | null;
}

/** The indexes of a table (must exist) with their definitions and the constraints (primary key, unique, exclusion) they back. */
export async function indexDefinitions(client: Client, table: string): Promise<IndexDefinition[]> {
  const { rows } = await client.query<IndexDefinition>(
    `SELECT i.indexrelid::regclass::text AS index, c.conname, pg_get_indexdef(i.indexrelid) AS indexdef, pg_get_constraintdef(c.oid) AS condef
       FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
      WHERE i.indrelid = $1::regclass`,
    [table],
  );
  return rows;
}
