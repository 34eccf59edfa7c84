import { columnsOf, existingRelations, relationKinds, type ColumnInfo } from '../db/catalog.js';
import type { Client } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { changesSql } from '../table/change-log.js';
import { describeTable } from '../table/describe.js';
import { sqlFile } from './sql-file.js';
import { CUSTOMER_COLUMNS, DEFAULT_TABLES, INVOICE_COLUMNS, qualified, quoteIdent, type TableMap, type TableRef } from '../tables.js';

/** The locator's table name: invoice_ids beside this tool's `invoices`, `<table>_ids` beside an adopted one. */
export function locatorTable(tables: TableMap = DEFAULT_TABLES): string {
  const { table } = tables.invoices;
  return table === 'invoices' ? 'invoice_ids' : `${table}_ids`;
}

/** The invoice_ids locator of a partitioned invoices table: beside it, in its schema. */
export function locatorName(tables: TableMap): string {
  return `${quoteIdent(tables.invoices.schema)}.${quoteIdent(locatorTable(tables))}`;
}

/**
 * sql/invoice-ids.sql for a table: the locator, its primary key and the trigger that keeps it in
 * step, named after the table (this tool's own names, bare, when nothing is mapped).
 */
export function locatorSql(tables: TableMap = DEFAULT_TABLES, dateType = 'timestamptz'): string {
  const { schema, table, columns } = tables.invoices;
  const name = locatorTable(tables);
  const id = (n: string) => (tables.mapped ? quoteIdent(n) : n);
  const rel = (n: string) => (tables.mapped ? `${quoteIdent(schema)}.${quoteIdent(n)}` : n);
  const vars: Record<string, string> = {
    locator: rel(name),
    locator_pkey: id(`${name}_pkey`),
    sync: rel(`${name}_sync`),
    sync_trigger: id(`${name}_sync`),
    parent: rel(table),
    id: id(columns.invoice_id),
    date: id(columns.issue_date),
    date_type: dateType,
  };
  return sqlFile('invoice-ids.sql').replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m);
}

/** How `invoices` is laid out: created by this tool (partitioned) or a plain table (adopted or not yet converted). */
export type Layout = 'partitioned' | 'plain' | 'missing';

/** The layout of `invoices` and whether the invoice_ids locator is there. */
export async function detectLayout(client: Client, tables: TableMap = DEFAULT_TABLES): Promise<{ layout: Layout; locator: boolean }> {
  const [relkind, locatorKind] = await relationKinds(client, [qualified(tables.invoices), locatorName(tables)]);
  return { layout: relkind === 'p' ? 'partitioned' : relkind ? 'plain' : 'missing', locator: locatorKind !== null };
}

/**
 * Creates what is missing (idempotent; serialised by an advisory lock): customers; a
 * partitioned invoices table with its DEFAULT partition when there is none; the invoice_ids
 * locator for a partitioned table. A plain invoices table is left as it is.
 */
export async function applySchema(client: Client, tables: TableMap = DEFAULT_TABLES, log: Logger = silentLogger): Promise<Layout> {
  return transaction(client, async () => {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('invoices:schema'))");
    if (tables.mapped) return applyMapped(client, tables, log);
    await client.query(sqlFile('customers.sql'));
    let { layout, locator } = await detectLayout(client);
    if (layout === 'missing') {
      await client.query(sqlFile('invoices.sql'));
      layout = 'partitioned';
    }
    if (layout === 'partitioned') {
      await client.query(locatorSql());
      // A partitioned table that predates the locator: fill it (fails on duplicate ids, as it should).
      if (!locator) await client.query('INSERT INTO invoice_ids (invoice_id, issue_date) SELECT invoice_id, issue_date FROM invoices');
    }
    // The change log that totals and the lake read (a table from an earlier version gets it too).
    const source = await describeTable(client);
    if (source.createdXid) await client.query(changesSql(source));
    return layout;
  });
}

/** Names of the tool's tables that exist. */
export async function existingTables(client: Client): Promise<string[]> {
  return existingRelations(client, 'public', ['customers', 'invoices', 'invoice_ids', 'invoice_changes']);
}

export type { ColumnInfo };

/** The mapped tables' columns, by our column name (absent: the table has no such column). */
export interface MappedColumns {
  invoices: Map<string, ColumnInfo>;
  customers: Map<string, ColumnInfo>;
  /** Columns of the tables that are not mapped but must be given on insert. */
  unmappedRequired: string[];
}

/**
 * Checks that the mapped tables and columns exist (every invoice column; a customer's id and
 * name, the others being optional) and returns them; a UsageError naming all that is missing.
 */
export async function inspectMapping(client: Client, tables: TableMap): Promise<MappedColumns> {
  const missing: string[] = [];
  const unmappedRequired: string[] = [];
  const read = async (ref: TableRef<string>, ours: readonly string[], required: readonly string[]) => {
    const name = `${ref.schema}.${ref.table}`;
    const found = new Map<string, ColumnInfo>();
    const columns = await columnsOf(client, qualified(ref));
    if (!columns) {
      missing.push(`table ${name} does not exist`);
      return found;
    }
    const mapped = new Set<string>();
    for (const c of ours) {
      const theirs = ref.columns[c];
      const info = columns.find((x) => x.name === theirs);
      if (info) found.set(c, info);
      else if (required.includes(c)) missing.push(`${name} has no column ${theirs}${theirs === c ? '' : ` (mapped from ${c})`}`);
      mapped.add(theirs);
    }
    for (const c of columns) if (c.required && !mapped.has(c.name)) unmappedRequired.push(`${name}.${c.name}`);
    return found;
  };
  const invoices = await read(tables.invoices, INVOICE_COLUMNS, INVOICE_COLUMNS);
  const customers = await read(tables.customers, CUSTOMER_COLUMNS, ['id', 'name']);
  if (missing.length) {
    throw new UsageError(
      `the table mapping does not match the database: ${missing.join('; ')}. Fix the mapping in the config file, or create the table with your application; ` +
        '`invoices init` never creates a mapped table, only what this tool adds beside a partitioned one (the invoice_ids locator)',
    );
  }
  return { invoices, customers, unmappedRequired };
}

/** init on a mapped table: check it; beside a partitioned one, add the locator (said on the log). */
async function applyMapped(client: Client, tables: TableMap, log: Logger): Promise<Layout> {
  const columns = await inspectMapping(client, tables);
  const { layout, locator } = await detectLayout(client, tables);
  if (layout !== 'partitioned' || locator) return layout;
  const ids = locatorTable(tables);
  const { columns: c } = tables.invoices;
  await client.query(locatorSql(tables, columns.invoices.get('issue_date')!.type));
  const { rowCount } = await client.query(
    `INSERT INTO ${locatorName(tables)} (invoice_id, issue_date) SELECT ${quoteIdent(c.invoice_id)}, ${quoteIdent(c.issue_date)} FROM ${qualified(tables.invoices)}`,
  );
  log.info(
    `added to ${tables.invoices.schema}: table ${ids} (invoice id -> issue date: ids unique across partitions, lookups by id), filled with ${rowCount ?? 0} rows; ` +
      `function ${ids}_sync and trigger ${ids}_sync on ${tables.invoices.schema}.${tables.invoices.table}, which keep it in step`,
  );
  return layout;
}
