// The names a conversion creates and uses, as SQL and as the catalog has them: this tool's own
// for its table (invoices_part, invoices_unpartitioned, invoice_ids, ...), or the same derived
// from an adopted table's name, in its schema.
import type { Client } from '../../db/client.js';
import { withSettings } from '../../db/transaction.js';
import { quoteIdent, type TableMap } from '../../tables.js';
import { sourceKey } from '../../table/describe.js';
import { locatorTable } from '../apply.js';
import { defaultPartitionName, partitionName, type Month } from '../partitions.js';
import { reservedWords } from '../../db/catalog/table-facts.js';

/** Identifier quoting: bare when PostgreSQL would read it back unchanged, else quoted by the project's one helper. */
export type Quote = (name: string) => string;

export interface Names {
  /** The table. */
  parent: string;
  /** The partitioned table while it is being filled; renamed to `parent` at the switch. */
  newTable: string;
  /** What the original table is called after the switch. */
  oldTable: string;
  locator: string;
  log: string;
  state: string;
  capture: string;
  guard: string;
  defaultPartition: string;
  partition: (month: Month) => string;
  /** The invoice id, issue date and amount columns: as the catalog names them, and as SQL. */
  idName: string;
  dateName: string;
  amountName: string;
  id: string;
  date: string;
  amount: string;
  /** The table in messages. */
  label: string;
  /** Names as the catalog has them, for comparisons and derived names. */
  raw: { parent: string; newTable: string; oldTable: string; capture: string; guard: string };
  lockKey: string;
  tables: TableMap;
}

function convertNames(tables: TableMap, q: Quote): Names {
  const { schema, table, columns } = tables.invoices;
  const raw = (suffix: string) => `${table}_${suffix}`;
  return {
    parent: q(table),
    newTable: q(raw('part')),
    oldTable: q(raw('unpartitioned')),
    locator: q(locatorTable(tables)),
    log: q(raw('convert_log')),
    state: q(raw('convert_state')),
    capture: q(raw('convert_capture')),
    guard: q(raw('convert_no_truncate')),
    defaultPartition: q(defaultPartitionName(table)),
    partition: (m) => q(partitionName(m, table)),
    idName: columns.invoice_id,
    dateName: columns.issue_date,
    amountName: columns.amount,
    id: q(columns.invoice_id),
    date: q(columns.issue_date),
    amount: q(columns.amount),
    label: tables.mapped ? `${schema}.${table}` : 'invoices',
    // One bulk writer per table at a time: a conversion, or a seed of the same table.
    lockKey: sourceKey(tables),
    tables,
    raw: {
      parent: table,
      newTable: raw('part'),
      oldTable: raw('unpartitioned'),
      capture: raw('convert_capture'),
      guard: raw('convert_no_truncate'),
    },
  };
}

/**
 * Runs fn with the names a conversion needs; for an adopted table with its schema alone in
 * search_path, so that everything the conversion creates lands beside it.
 */
export async function withNames<T>(client: Client, tables: TableMap, fn: (n: Names, q: Quote) => Promise<T>): Promise<T> {
  const run = async () => {
    const q = await quoter(client);
    return fn(convertNames(tables, q), q);
  };
  return tables.mapped ? withSettings(client, { search_path: quoteIdent(tables.invoices.schema) }, run) : run();
}

async function quoter(client: Client): Promise<Quote> {
  const reserved = await reservedWords(client);
  return (name) => (/^[a-z_][a-z0-9_]*$/.test(name) && !reserved.has(name) ? name : quoteIdent(name));
}

const MAX_IDENT = 63;

/** `prefix` + the rest of `name` after a leading `parent` ("invoices"), cut to PostgreSQL's 63 bytes. */
export function prefixedName(name: string, prefix: string, parent = 'invoices'): string {
  const rest = name.startsWith(`${parent}_`) ? name.slice(parent.length) : `_${name}`;
  let out = prefix + rest;
  while (Buffer.byteLength(out) > MAX_IDENT) out = out.slice(0, -1);
  return out;
}
