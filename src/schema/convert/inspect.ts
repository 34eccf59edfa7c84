// What is there before and during a conversion: the table as the catalog describes it (columns,
// indexes, constraints, references, triggers, views, grants), the refusals that follow from it,
// the conversion's own state row, the counts after the switch and who holds the table's lock.
// The catalog itself is read through src/db/catalog/ (table-facts.ts).
import { partitionsOf, relationExists } from '../../db/catalog/index.js';
import {
  columnFacts,
  relationFacts,
  tableDependents,
  type ColumnFact,
  type ConstraintFact,
  type IndexFact,
  type InboundFk,
  type ViewFact,
} from '../../db/catalog/table-facts.js';
import type { Client } from '../../db/client.js';
import { UsageError } from '../../errors.js';
import type { Month } from '../partitions.js';
import type { Names, Quote } from './names.js';

export type IssueDateKind = 'timestamptz' | 'timestamp' | 'date';
export type { ColumnFact, ConstraintFact, IndexFact, InboundFk, ViewFact } from '../../db/catalog/table-facts.js';

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

/** The table to convert as the catalog has it; a UsageError when it cannot be converted at all. */
export async function inspectTable(client: Client, n: Names, q: Quote): Promise<TableFacts> {
  const t = await relationFacts(client, n.parent);
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

  const columns = await columnFacts(client, oid, n.parent);
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

  const { indexes, constraints, inbound, triggers, dependents, functions, grants } = await tableDependents(client, oid, [
    n.raw.capture,
    n.raw.guard,
  ]);

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
    functions,
    grants,
    notes,
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

/** The conversion's state row, or null when no conversion is in progress. */
export async function readState(client: Client, n: Names): Promise<StateRow | null> {
  if (!(await relationExists(client, n.state))) return null;
  const { rows } = await client.query<StateRow>(
    `SELECT phase, old_table, last_copied_id::text, rows_copied::text, rows_total::text, started_at FROM ${n.state}`,
  );
  return rows[0] ?? null;
}

/** Rows per month of issue_date (UTC) in the old table: one scan. */
export async function monthsOf(client: Client, n: Names, monthExpr: string): Promise<Array<{ month: Month; rows: number }>> {
  const { rows } = await client.query<{ month: string | null; n: string }>(
    `SELECT to_char(${monthExpr}, 'YYYY-MM') AS month, count(*) AS n FROM ${n.parent} GROUP BY 1 ORDER BY 1`,
  );
  const nulls = rows.find((r) => r.month === null);
  if (nulls)
    throw new UsageError(`${nulls.n} invoices have no ${n.dateName}: a partitioned table needs one on every row (set them, then convert)`);
  return rows.map((r) => ({ month: r.month as Month, rows: Number(r.n) }));
}

/** After the switch: rows located, partitions of the table, rows in its DEFAULT partition. */
export async function convertedCounts(client: Client, n: Names): Promise<{ rows: number; partitions: number; defaultRows: number }> {
  const {
    rows: [c],
  } = await client.query<{ rows: string; def: string }>(
    `SELECT (SELECT count(*) FROM ${n.locator})::text AS rows, (SELECT count(*) FROM ${n.defaultPartition})::text AS def`,
  );
  return { rows: Number(c.rows), partitions: (await partitionsOf(client, n.parent)).length, defaultRows: Number(c.def) };
}

/** Who holds a lock on the table, for the message when the switch gives up. */
export async function lockHolders(client: Client, n: Names): Promise<string> {
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
