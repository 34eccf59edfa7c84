import { describeSettings } from '../config.js';
import type { DbContext } from '../db/client.js';

/** The database (and, with a table mapping, the table) a lake comes from, without password: recorded in the manifest. */
export function describeTarget(ctx: DbContext): string {
  const t = ctx.config.target;
  const db = t.kind === 'server' ? describeSettings(t.connection) : `embedded:${t.home}`;
  const { tables } = ctx.config;
  return tables.mapped ? `${db} table ${tables.invoices.schema}.${tables.invoices.table}` : db;
}
