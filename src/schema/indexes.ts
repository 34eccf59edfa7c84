// The indexes the use cases need, built without blocking writers: CREATE INDEX CONCURRENTLY
// on a plain table; on a partitioned one (where CONCURRENTLY is not allowed on the parent),
// an invalid parent index ON ONLY, a concurrent build per partition, each attached to it.
// Follows a table mapping: an adopted table gets the indexes on its own columns.
import { hasUniqueKeyOn, indexDetails, indexesOf, indexValidity, type IndexDetail, type IndexEntry } from '../db/catalog.js';
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import { DEFAULT_TABLES, qualified, quoteIdent, type InvoiceColumn, type TableMap } from '../tables.js';
import { detectLayout } from './apply.js';
import { listPartitions } from './partitions.js';

/** A column of the mapping, or created_xid (always under that name: `invoices risk init` adds it). */
type IndexColumn = InvoiceColumn | 'created_xid';

export interface IndexSpec {
  /** Name suffix: the index is `<table>_<suffix>`, on a partition `<partition>_<suffix>`. */
  suffix: string;
  columns: IndexColumn[];
  include: IndexColumn[];
  purpose: string;
}

/** Per-customer history and grouping by issuer or receiver over a date range, answered from the index alone. */
export const USE_CASE_INDEXES: IndexSpec[] = [
  {
    suffix: 'issuer_date_idx',
    columns: ['issuer_id', 'issue_date'],
    include: ['amount'],
    purpose: 'invoices of an issuer over time; group by issuer',
  },
  {
    suffix: 'receiver_date_idx',
    columns: ['receiver_id', 'issue_date'],
    include: ['amount'],
    purpose: 'invoices of a receiver over time; group by receiver',
  },
];

/**
 * Rows after a watermark: incremental export and monthly totals read a created_xid range, the risk
 * scorer walks (created_xid, invoice_id) in order after its cursor. One index serves all three.
 */
export const CREATED_XID_INDEX: IndexSpec = {
  suffix: 'created_xid_idx',
  columns: ['created_xid', 'invoice_id'],
  include: [],
  purpose: 'rows after a watermark, in (created_xid, invoice_id) order: incremental export and totals, the risk scorer',
};

export interface IndexStep {
  /** Shown to the user. */
  description: string;
  sql: string;
  /** A concurrent build: the index it creates, which an interrupted build leaves behind invalid. */
  builds?: { schema: string; name: string };
}

async function existingIndexes(client: Client, schema: string, tables: string[]): Promise<Map<string, IndexEntry>> {
  return new Map((await indexesOf(client, schema, tables)).map((r) => [r.name, r]));
}

/**
 * The statements that bring the indexes up to date (none when they all exist and are valid):
 * those of the use cases by default (with a unique id key on a plain table), or the given ones.
 */
export async function planIndexes(
  client: Client,
  tables: TableMap = DEFAULT_TABLES,
  specs: IndexSpec[] = USE_CASE_INDEXES,
): Promise<IndexStep[]> {
  const { layout, locator } = await detectLayout(client, tables);
  const { schema, table, columns } = tables.invoices;
  if (layout === 'missing') throw new UsageError(`there is no table ${schema}.${table}: run \`invoices init\`, or fix the table mapping`);
  const q = quoteIdent;
  const cols = (list: IndexColumn[]) => list.map((c) => q(c === 'created_xid' ? c : columns[c])).join(', ');
  const on = (relation: string) => `${q(schema)}.${q(relation)}`;
  const definition = (s: IndexSpec) => `(${cols(s.columns)})${s.include.length ? ` INCLUDE (${cols(s.include)})` : ''}`;
  const steps: IndexStep[] = [];
  if (layout === 'plain') {
    const existing = await existingIndexes(client, schema, [table]);
    const unique = await hasUniqueKeyOn(client, qualified(tables.invoices), columns.invoice_id);
    const key = `${table}_invoice_id_key`;
    if (!unique && specs === USE_CASE_INDEXES)
      steps.push(
        ...concurrently(
          existing,
          schema,
          key,
          table,
          `CREATE UNIQUE INDEX CONCURRENTLY ${q(key)} ON ${on(table)} (${cols(['invoice_id'])})`,
          'lookup by invoice id',
        ),
      );
    for (const s of specs) {
      const name = `${table}_${s.suffix}`;
      steps.push(
        ...concurrently(existing, schema, name, table, `CREATE INDEX CONCURRENTLY ${q(name)} ON ${on(table)} ${definition(s)}`, s.purpose),
      );
    }
    return steps;
  }
  if (!locator) throw new UsageError('invoice_ids is missing: run `invoices init` (it creates and fills it)');
  const partitions = (await listPartitions(client, qualified(tables.invoices))).map((p) => p.name);
  const existing = await existingIndexes(client, schema, [table, ...partitions]);
  for (const s of specs) {
    const name = `${table}_${s.suffix}`;
    const parent = existing.get(name);
    if (!parent) steps.push({ description: `${name}: ${s.purpose}`, sql: `CREATE INDEX ${q(name)} ON ONLY ${on(table)} ${definition(s)}` });
    if (parent?.valid) continue;
    for (const part of partitions) {
      const child = `${part}_${s.suffix}`;
      steps.push(
        ...concurrently(
          existing,
          schema,
          child,
          part,
          `CREATE INDEX CONCURRENTLY ${q(child)} ON ${on(part)} ${definition(s)}`,
          `part of ${name}`,
        ),
      );
      if (existing.get(child)?.parent !== name)
        steps.push({ description: `attach ${child}`, sql: `ALTER INDEX ${on(name)} ATTACH PARTITION ${on(child)}` });
    }
  }
  return steps;
}

/** A concurrent build, after dropping an invalid leftover of an interrupted one. */
function concurrently(
  existing: Map<string, IndexEntry>,
  schema: string,
  name: string,
  table: string,
  sql: string,
  description: string,
): IndexStep[] {
  const found = existing.get(name);
  if (found?.valid) return [];
  const steps: IndexStep[] = [];
  if (found)
    steps.push({
      description: `drop invalid ${name} (an interrupted build)`,
      sql: `DROP INDEX CONCURRENTLY ${quoteIdent(schema)}.${quoteIdent(name)}`,
    });
  steps.push({ description: `${name}: ${description} (on ${table})`, sql, builds: { schema, name } });
  return steps;
}

/**
 * Drops what a cancelled concurrent build left: its index, invalid (a build that completed is
 * valid and stays). Returns whether there was one.
 */
export async function dropInvalidBuild(client: Client, step: IndexStep): Promise<boolean> {
  if (!step.builds) return false;
  const { schema, name } = step.builds;
  const valid = await indexValidity(client, schema, name);
  if (valid === undefined || valid) return false;
  await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${quoteIdent(schema)}.${quoteIdent(name)}`);
  return true;
}

export type IndexInfo = IndexDetail;

/** The indexes of the invoices table and invoice_ids with their sizes (a partitioned index: the sum over its partitions). */
export async function listIndexes(client: Client, tables: TableMap = DEFAULT_TABLES): Promise<IndexInfo[]> {
  const rows = await indexDetails(client, tables.invoices.schema, [tables.invoices.table, 'invoice_ids']);
  return rows.map((r) => ({ ...r, definition: r.definition.replace(' ON ONLY ', ' ON ').replace(`${tables.invoices.schema}.`, '') }));
}
