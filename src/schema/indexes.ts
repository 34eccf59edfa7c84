// The indexes the use cases need, built without blocking writers: CREATE INDEX CONCURRENTLY
// on a plain table; on a partitioned one (where CONCURRENTLY is not allowed on the parent),
// an invalid parent index ON ONLY, a concurrent build per partition, each attached to it.
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import { detectLayout } from './apply.js';
import { listPartitions, PARENT } from './partitions.js';

interface IndexSpec {
  name: string;
  columns: string;
  include: string;
  purpose: string;
}

/** Per-customer history and grouping by issuer or receiver over a date range, answered from the index alone. */
const SPECS: IndexSpec[] = [
  { name: 'invoices_issuer_date_idx', columns: 'issuer_id, issue_date', include: 'amount', purpose: 'invoices of an issuer over time; group by issuer' },
  { name: 'invoices_receiver_date_idx', columns: 'receiver_id, issue_date', include: 'amount', purpose: 'invoices of a receiver over time; group by receiver' },
];

export interface IndexStep {
  /** Shown to the user. */
  description: string;
  sql: string;
}

interface ExistingIndex {
  name: string;
  table: string;
  valid: boolean;
  parent: string | null;
}

async function existingIndexes(client: Client, tables: string[]): Promise<Map<string, ExistingIndex>> {
  const { rows } = await client.query<ExistingIndex>(
    `SELECT c.relname AS name, t.relname AS "table", i.indisvalid AS valid,
            (SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent WHERE h.inhrelid = c.oid) AS parent
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
      WHERE t.relname = ANY($1) AND t.relnamespace = 'public'::regnamespace`,
    [tables],
  );
  return new Map(rows.map((r) => [r.name, r]));
}

/** The statements that bring the indexes up to date (none when they all exist and are valid). */
export async function planIndexes(client: Client): Promise<IndexStep[]> {
  const { layout, locator } = await detectLayout(client);
  if (layout === 'missing') throw new UsageError('there is no invoices table: run `invoices init`');
  const steps: IndexStep[] = [];
  if (layout === 'plain') {
    const existing = await existingIndexes(client, [PARENT]);
    const { rows } = await client.query(
      `SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 AND a.attname = 'invoice_id'`,
      [PARENT],
    );
    if (!rows.length) steps.push(...concurrently(existing, 'invoices_invoice_id_key', PARENT, 'CREATE UNIQUE INDEX CONCURRENTLY invoices_invoice_id_key ON invoices (invoice_id)', 'lookup by invoice id'));
    for (const s of SPECS) steps.push(...concurrently(existing, s.name, PARENT, `CREATE INDEX CONCURRENTLY ${s.name} ON ${PARENT} (${s.columns}) INCLUDE (${s.include})`, s.purpose));
    return steps;
  }
  if (!locator) throw new UsageError('invoice_ids is missing: run `invoices init` (it creates and fills it)');
  const partitions = (await listPartitions(client)).map((p) => p.name);
  const existing = await existingIndexes(client, [PARENT, ...partitions]);
  for (const s of SPECS) {
    const parent = existing.get(s.name);
    if (!parent) steps.push({ description: `${s.name}: ${s.purpose}`, sql: `CREATE INDEX ${s.name} ON ONLY ${PARENT} (${s.columns}) INCLUDE (${s.include})` });
    if (parent?.valid) continue;
    for (const part of partitions) {
      const child = `${part}_${s.name.replace(`${PARENT}_`, '')}`;
      steps.push(...concurrently(existing, child, part, `CREATE INDEX CONCURRENTLY ${child} ON ${part} (${s.columns}) INCLUDE (${s.include})`, `part of ${s.name}`));
      if (existing.get(child)?.parent !== s.name) steps.push({ description: `attach ${child}`, sql: `ALTER INDEX ${s.name} ATTACH PARTITION ${child}` });
    }
  }
  return steps;
}

/** A concurrent build, after dropping an invalid leftover of an interrupted one. */
function concurrently(existing: Map<string, ExistingIndex>, name: string, table: string, sql: string, description: string): IndexStep[] {
  const found = existing.get(name);
  if (found?.valid) return [];
  const steps: IndexStep[] = [];
  if (found) steps.push({ description: `drop invalid ${name} (an interrupted build)`, sql: `DROP INDEX CONCURRENTLY ${name}` });
  steps.push({ description: `${name}: ${description} (on ${table})`, sql });
  return steps;
}

export interface IndexInfo {
  name: string;
  table: string;
  definition: string;
  bytes: number;
  valid: boolean;
}

/** The indexes of invoices and invoice_ids with their sizes (a partitioned index: the sum over its partitions). */
export async function listIndexes(client: Client): Promise<IndexInfo[]> {
  const { rows } = await client.query<{ name: string; table: string; definition: string; bytes: string; valid: boolean }>(
    `SELECT c.relname AS name, t.relname AS "table", pg_get_indexdef(c.oid) AS definition, i.indisvalid AS valid,
            CASE WHEN c.relkind = 'I' THEN (SELECT coalesce(sum(pg_relation_size(p.relid)), 0) FROM pg_partition_tree(c.oid) p)
                 ELSE pg_relation_size(c.oid) END AS bytes
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
      WHERE t.relname IN ('invoices', 'invoice_ids') AND t.relnamespace = 'public'::regnamespace
      ORDER BY t.relname, c.relname`,
  );
  return rows.map((r) => ({ ...r, definition: r.definition.replace(' ON ONLY ', ' ON ').replace('public.', ''), bytes: Number(r.bytes) }));
}
