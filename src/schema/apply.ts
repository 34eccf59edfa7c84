import { readFileSync } from 'node:fs';
import type { Client } from '../db/client.js';
import { DEFAULT_TABLES, qualified, quoteIdent, type TableMap } from '../tables.js';

const SQL_DIR = new URL('../../sql/', import.meta.url);

/** Reads one of the plain-SQL files in sql/. */
export function sqlFile(name: string): string {
  return readFileSync(new URL(name, SQL_DIR), 'utf8');
}

/** The invoice_ids locator of a partitioned invoices table: beside it, in its schema. */
export function locatorName(tables: TableMap): string {
  return `${quoteIdent(tables.invoices.schema)}.${quoteIdent('invoice_ids')}`;
}

/** How `invoices` is laid out: created by this tool (partitioned) or a plain table (adopted or not yet converted). */
export type Layout = 'partitioned' | 'plain' | 'missing';

/** The layout of `invoices` and whether the invoice_ids locator is there. */
export async function detectLayout(client: Client, tables: TableMap = DEFAULT_TABLES): Promise<{ layout: Layout; locator: boolean }> {
  const { rows } = await client.query<{ relkind: string | null; locator: boolean }>(
    `SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)) AS relkind, to_regclass($2) IS NOT NULL AS locator`,
    [qualified(tables.invoices), locatorName(tables)],
  );
  const { relkind, locator } = rows[0];
  return { layout: relkind === 'p' ? 'partitioned' : relkind ? 'plain' : 'missing', locator };
}

/**
 * Creates what is missing (idempotent; serialised by an advisory lock): customers; a
 * partitioned invoices table with its DEFAULT partition when there is none; the invoice_ids
 * locator for a partitioned table. A plain invoices table is left as it is.
 */
export async function applySchema(client: Client): Promise<Layout> {
  await client.query('BEGIN');
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('invoices:schema'))");
    await client.query(sqlFile('customers.sql'));
    let { layout, locator } = await detectLayout(client);
    if (layout === 'missing') {
      await client.query(sqlFile('invoices.sql'));
      layout = 'partitioned';
    }
    if (layout === 'partitioned') {
      await client.query(sqlFile('invoice-ids.sql'));
      // A partitioned table that predates the locator: fill it (fails on duplicate ids, as it should).
      if (!locator) await client.query('INSERT INTO invoice_ids (invoice_id, issue_date) SELECT invoice_id, issue_date FROM invoices');
    }
    await client.query('COMMIT');
    return layout;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Names of the tool's tables that exist. */
export async function existingTables(client: Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    "SELECT c.relname AS name FROM pg_class c WHERE c.relname = ANY($1) AND c.relnamespace = 'public'::regnamespace ORDER BY 1",
    [['customers', 'invoices', 'invoice_ids']],
  );
  return rows.map((r) => r.name);
}
