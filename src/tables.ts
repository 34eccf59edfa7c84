// Which tables and columns hold the invoices and customers: this tool's own names by default,
// or a mapping onto tables an application created (config file "invoices"/"customers" keys).
import { ConfigError } from './errors.js';

export const INVOICE_COLUMNS = ['invoice_id', 'issue_date', 'issuer_id', 'receiver_id', 'amount'] as const;
export const CUSTOMER_COLUMNS = ['id', 'name', 'email', 'country', 'segment', 'created_at'] as const;
export type InvoiceColumn = (typeof INVOICE_COLUMNS)[number];
export type CustomerColumn = (typeof CUSTOMER_COLUMNS)[number];

export interface TableRef<C extends string> {
  schema: string;
  table: string;
  /** Our column name -> the table's column name (unquoted). */
  columns: Record<C, string>;
}

export interface TableMap {
  invoices: TableRef<InvoiceColumn>;
  customers: TableRef<CustomerColumn>;
  /** True when the config file mapped anything: the table is not necessarily this tool's. */
  mapped: boolean;
}

const identity = <C extends string>(cols: readonly C[]) => Object.fromEntries(cols.map((c) => [c, c as string])) as Record<C, string>;

export const DEFAULT_TABLES: TableMap = {
  invoices: { schema: 'public', table: 'invoices', columns: identity(INVOICE_COLUMNS) },
  customers: { schema: 'public', table: 'customers', columns: identity(CUSTOMER_COLUMNS) },
  mapped: false,
};

/** Reads the "invoices" and "customers" entries of a config file (both optional). */
export function parseTableMap(content: Record<string, unknown>, file: string): TableMap {
  if (content.invoices === undefined && content.customers === undefined) return DEFAULT_TABLES;
  return {
    invoices: parseRef(content.invoices, 'invoices', INVOICE_COLUMNS, file),
    customers: parseRef(content.customers, 'customers', CUSTOMER_COLUMNS, file),
    mapped: true,
  };
}

function parseRef<C extends string>(raw: unknown, key: string, allowed: readonly C[], file: string): TableRef<C> {
  const fallback = key === 'invoices' ? DEFAULT_TABLES.invoices : DEFAULT_TABLES.customers;
  if (raw === undefined) return fallback as unknown as TableRef<C>;
  const where = `config file ${file}: "${key}"`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ConfigError(`${where} must be an object like {"table": "public.${key}", "columns": {...}}`);
  const { table = `public.${key}`, columns = {} } = raw as { table?: unknown; columns?: unknown };
  if (typeof table !== 'string' || !table.trim()) throw new ConfigError(`${where}.table must be a table name, e.g. "public.${key}"`);
  const parts = table.split('.');
  if (parts.length > 2 || parts.some((p) => !p)) throw new ConfigError(`${where}.table must be "table" or "schema.table", got "${table}"`);
  if (typeof columns !== 'object' || columns === null || Array.isArray(columns))
    throw new ConfigError(`${where}.columns must map our column names to yours`);
  const mapped = identity(allowed);
  for (const [ours, theirs] of Object.entries(columns as Record<string, unknown>)) {
    if (!(allowed as readonly string[]).includes(ours))
      throw new ConfigError(`${where}.columns: unknown column "${ours}" (expected one of ${allowed.join(', ')})`);
    if (typeof theirs !== 'string' || !theirs) throw new ConfigError(`${where}.columns.${ours} must be a column name`);
    mapped[ours as C] = theirs;
  }
  return { schema: parts.length === 2 ? parts[0] : 'public', table: parts[parts.length - 1], columns: mapped };
}

/** An identifier in double quotes (the one quoting helper for names that cannot be bound). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** schema.table, quoted. */
export function qualified(ref: TableRef<string>): string {
  return `${quoteIdent(ref.schema)}.${quoteIdent(ref.table)}`;
}
