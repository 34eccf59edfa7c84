import { columnsOf, contentStamp } from '../db/catalog.js';
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import { CUSTOMER_COLUMNS, qualified, quoteIdent, type TableMap } from '../tables.js';

/**
 * The customers table as `SELECT id, name, email, country, segment, created_at` (or the given
 * columns): columns it lacks are NULL, except id, name and those `need.required` names, which
 * are a usage error (for `group --by <need.by>`).
 */
export async function customersSelect(
  client: Client,
  tables: TableMap,
  columns: readonly string[] = CUSTOMER_COLUMNS,
  need?: { required: readonly string[]; by: string },
): Promise<string> {
  const ref = tables.customers;
  const rows = (await columnsOf(client, qualified(ref))) ?? [];
  if (!rows.length)
    throw new UsageError(
      `there is no table ${ref.schema}.${ref.table}${tables.mapped ? ' (the customers table of the mapping)' : ': run `invoices init`'}`,
    );
  const have = new Set(rows.map((r) => r.name));
  const nulls: Record<string, string> = { id: 'bigint', name: 'text', created_at: 'timestamptz' };
  const list = columns.map((c) => {
    const col = ref.columns[c as keyof typeof ref.columns] ?? c;
    if (have.has(col)) return col === c ? quoteIdent(c) : `${quoteIdent(col)} AS ${quoteIdent(c)}`;
    if (c === 'id' || c === 'name')
      throw new UsageError(
        `${ref.schema}.${ref.table} has no column "${col}" (${c} in the mapping): fix the config file's "customers".columns`,
      );
    if (need?.required.includes(c))
      throw new UsageError(
        `--by ${need.by} needs the customers' ${c}: ${ref.schema}.${ref.table} has no column "${col}" (map it in the config file's "customers".columns, or group --by issuer)`,
      );
    return `NULL::${nulls[c] ?? 'text'} AS ${quoteIdent(c)}`;
  });
  return `SELECT ${list.join(', ')} FROM ${qualified(ref)}`;
}

/**
 * A stamp of the customers table's contents for the names a lake carries: its relfilenode
 * (TRUNCATE, reload) and its insert/update/delete counters. The counters are statistics,
 * flushed within about a second of a commit: a rename in that second may show the exported name.
 */
export async function customersStamp(client: Client, tables: TableMap): Promise<string> {
  return contentStamp(client, qualified(tables.customers));
}
