import { readFileSync } from 'node:fs';
import type { Client } from '../db/client.js';

const SQL_DIR = new URL('../../sql/', import.meta.url);

/** Reads one of the plain-SQL files in sql/. */
export function sqlFile(name: string): string {
  return readFileSync(new URL(name, SQL_DIR), 'utf8');
}

/** Creates the tables if they do not exist (idempotent; serialised by an advisory lock). */
export async function applySchema(client: Client): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('invoices:schema'))");
    await client.query(sqlFile('schema.sql'));
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Names of the tool's tables that exist. */
export async function existingTables(client: Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    "SELECT c.relname AS name FROM pg_class c WHERE c.relname = ANY($1) AND c.relnamespace = 'public'::regnamespace ORDER BY 1",
    [['customers', 'invoices']],
  );
  return rows.map((r) => r.name);
}
