// The COPY loaders of `invoices seed`: customers, invoices (binary COPY into each month's
// partition, or text COPY where a mapped column has no binary encoder) and the invoice_ids
// locator, and the tables they write (this tool's own, or a mapping's, with its column types).
import { finished } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Client } from '../db/client.js';
import { BinaryCopyWriter } from '../db/copy-binary.js';
import { InterruptedError, UsageError } from '../errors.js';
import { inspectMapping, type ColumnInfo, type MappedColumns } from '../schema/apply.js';
import { invoiceSql } from '../schema/partitions.js';
import { CUSTOMER_COLUMNS, qualified, quoteIdent, type CustomerColumn, type TableMap } from '../tables.js';
import { generateCustomers } from './customers.js';
import { TextCopyWriter, type RowWriter } from './copy-text.js';
import { IssueDates, MAX_CENTS, type InvoiceGenerator, type InvoiceRow } from './invoices.js';

export async function copyCustomers(
  client: Client,
  t: CustomersTarget,
  opts: { customers: number; seed: number | string; signal?: AbortSignal },
  firstId: number,
  issuerRank: (i: number) => number,
  beforeMicros: number,
  progress: (done: number) => void,
): Promise<void> {
  const has = (c: CustomerColumn) => t.columns.includes(c);
  const names = t.columns.map((c) => t.col(c)).join(', ');
  await copyRows(client, `COPY ${t.rel} (${names}) FROM STDIN (FORMAT ${t.format})`, t.format, async (writer) => {
    let i = 0;
    for (const c of generateCustomers({ firstId, count: opts.customers, seed: opts.seed, issuerRank, beforeMicros })) {
      const wait = writer.row(t.columns.length, 64 + 3 * (c.name.length + c.email.length + c.country.length + c.segment.length));
      if (wait) {
        await wait;
        if (opts.signal?.aborted) throw new InterruptedError('interrupted');
      }
      writer.int8(c.id);
      writer.text(c.name);
      if (has('email')) writer.text(c.email);
      if (has('country')) writer.text(c.country);
      if (has('segment')) writer.text(c.segment);
      if (has('created_at')) writer.timestamptz(c.createdAtMicros);
      if (++i % 4096 === 0) progress(i);
    }
  });
  progress(opts.customers);
}

/** One COPY of the generator's next n rows; Ctrl-C aborts it and the server discards it. */
/** Where invoices go: the table itself, or (fresh partitioned load) each month's partition in turn. */
export type Target = { table: string; freeze: boolean; untilMicros: number };

/**
 * COPY of the generator's next n rows; Ctrl-C aborts it and the server discards it. Rows come
 * in date order, so a fresh partitioned load writes each month straight into its partition:
 * no per-row routing, and FREEZE (allowed on a partition created in this transaction), which
 * also sets the visibility map so index-only scans work at once.
 */
export async function copyInvoices(
  client: Client,
  t: InvoicesTarget,
  gen: InvoiceGenerator,
  n: number,
  signal: AbortSignal | undefined,
  progress: (done: number) => void,
  targets: Target[],
): Promise<void> {
  const row: InvoiceRow = { id: 0, issueMicros: 0, issuerId: 0, receiverId: 0, cents: 0 };
  let k = 0;
  let pending = false; // row holds a generated invoice not yet written (it belongs to a later target)
  for (const target of targets) {
    if (k >= n) break;
    const sql = `COPY ${target.table} (${t.columns}) FROM STDIN (FORMAT ${t.format}${target.freeze ? ', FREEZE' : ''})`;
    await copyRows(client, sql, t.format, async (writer) => {
      while (k < n && (pending || gen.next(row))) {
        pending = true;
        if (row.issueMicros >= target.untilMicros) return;
        const wait = writer.row(5, 80);
        if (wait) {
          await wait;
          if (signal?.aborted) throw new InterruptedError('interrupted');
          progress(k);
        }
        writer.int8(row.id);
        writer.timestamptz(row.issueMicros);
        writer.int8(row.issuerId);
        writer.int8(row.receiverId);
        writer.numericCents(row.cents);
        pending = false;
        k++;
      }
    });
  }
}

/** invoice_ids rows for invoices firstId..firstId+n-1, their dates replayed from the same stream. */
export async function copyInvoiceIds(
  client: Client,
  locator: string,
  dates: IssueDates,
  firstId: number,
  n: number,
  signal: AbortSignal | undefined,
  freeze: boolean,
  progress?: (done: number) => void,
): Promise<void> {
  await copyRows(
    client,
    `COPY ${locator} (invoice_id, issue_date) FROM STDIN (FORMAT binary${freeze ? ', FREEZE' : ''})`,
    'binary',
    async (writer) => {
      for (let k = 0; k < n; k++) {
        const wait = writer.row(2, 32);
        if (wait) {
          await wait;
          if (signal?.aborted) throw new InterruptedError('interrupted');
          progress?.(k);
        }
        writer.int8(firstId + k);
        writer.timestamptz(dates.next());
      }
    },
  );
}

/** Runs one binary COPY fed by `fill`; on any error the COPY is aborted and the server discards it. */
async function copyRows(client: Client, sql: string, format: CopyFormat, fill: (writer: RowWriter) => Promise<void>): Promise<void> {
  const stream = client.query(copyFrom(sql));
  const writer = format === 'binary' ? new BinaryCopyWriter(stream) : new TextCopyWriter(stream);
  try {
    await fill(writer);
    await writer.end();
    await finished(stream);
  } catch (err) {
    stream.destroy(err as Error);
    await finished(stream).catch(() => {});
    throw err;
  }
}

// --- where the rows go: this tool's tables, or mapped ones with their own names and types ------

type CopyFormat = 'binary' | 'text';

export interface InvoicesTarget {
  /** The table as SQL, and as shown to the user. */
  rel: string;
  name: string;
  /** The invoice id column as SQL and as the catalog names it (for pg_get_serial_sequence). */
  id: string;
  idName: string;
  /** COPY's column list, in the generator's order. */
  columns: string;
  partition: (month: string) => string;
  format: CopyFormat;
  /** What the amount column can hold, when it is narrower than numeric(16,2). */
  amount: { maxCents?: number; centsStep?: number };
}

export interface CustomersTarget {
  rel: string;
  name: string;
  id: string;
  idName: string;
  /** The columns to write, in the generator's order: id and name, and the others the table has. */
  columns: CustomerColumn[];
  col: (c: CustomerColumn) => string;
  format: CopyFormat;
}

export interface Targets {
  invoices: InvoicesTarget;
  customers: CustomersTarget;
  locator: string;
}

const OWN = invoiceSql();
/** This tool's tables: bare names, every column, binary COPY (unchanged from before mappings). */
export const OWN_TARGET: Targets = {
  invoices: {
    rel: 'invoices',
    name: 'invoices',
    id: 'invoice_id',
    idName: 'invoice_id',
    columns: 'invoice_id, issue_date, issuer_id, receiver_id, amount',
    partition: (m) => OWN.partitionName(m),
    format: 'binary',
    amount: {},
  },
  customers: {
    rel: 'customers',
    name: 'customers',
    id: 'id',
    idName: 'id',
    columns: [...CUSTOMER_COLUMNS],
    col: (c) => c,
    format: 'binary',
  },
  locator: OWN.locator,
};

const BINARY_TYPES: Record<string, string[]> = {
  id: ['bigint'],
  time: ['timestamp with time zone', 'timestamp without time zone'],
  text: ['text', 'character varying'],
};

/**
 * A mapped pair of tables: their columns (the customers' optional ones only if present), binary
 * COPY when every column has a type the binary encoder writes, text COPY otherwise (the server
 * converts to integer ids, a date, ...), and the amount's precision and scale.
 */
export async function mappedTarget(client: Client, tables: TableMap): Promise<Targets> {
  const found: MappedColumns = await inspectMapping(client, tables);
  const inv = tables.invoices;
  const cus = tables.customers;
  const n = invoiceSql(tables);
  if (found.unmappedRequired.length) {
    throw new UsageError(
      `seed cannot fill ${found.unmappedRequired.join(', ')}: NOT NULL without a default and not in the table mapping. Map them, or give them a default`,
    );
  }
  const amount = found.invoices.get('amount')!;
  if (amount.base !== 'numeric')
    throw new UsageError(
      `${inv.schema}.${inv.table}.${inv.columns.amount} is ${amount.type}: seed writes amounts only into numeric columns (exact; money is never a float)`,
    );
  const date = found.invoices.get('issue_date')!;
  if (!['timestamp with time zone', 'timestamp without time zone', 'date'].includes(date.base)) {
    throw new UsageError(
      `${inv.schema}.${inv.table}.${inv.columns.issue_date} is ${date.type}: seed writes issue dates into timestamptz, timestamp or date columns`,
    );
  }
  const is = (c: ColumnInfo | undefined, kind: string) => c === undefined || BINARY_TYPES[kind].includes(c.base);
  const g = (k: string) => found.invoices.get(k);
  const invBinary = is(g('invoice_id'), 'id') && is(g('issuer_id'), 'id') && is(g('receiver_id'), 'id') && is(date, 'time');
  const customerColumns = CUSTOMER_COLUMNS.filter((c) => found.customers.has(c));
  const h = (k: string) => found.customers.get(k);
  const cusBinary =
    is(h('id'), 'id') && ['name', 'email', 'country', 'segment'].every((c) => is(h(c), 'text')) && is(h('created_at'), 'time');
  return {
    invoices: {
      rel: qualified(inv),
      name: `${inv.schema}.${inv.table}`,
      id: quoteIdent(inv.columns.invoice_id),
      idName: inv.columns.invoice_id,
      columns: (['invoice_id', 'issue_date', 'issuer_id', 'receiver_id', 'amount'] as const)
        .map((c) => quoteIdent(inv.columns[c]))
        .join(', '),
      partition: (m) => n.rel(n.partitionName(m)),
      format: invBinary ? 'binary' : 'text',
      amount: amountLimits(amount),
    },
    customers: {
      rel: qualified(cus),
      name: `${cus.schema}.${cus.table}`,
      id: quoteIdent(cus.columns.id),
      idName: cus.columns.id,
      columns: customerColumns,
      col: (c) => quoteIdent(cus.columns[c]),
      format: cusBinary ? 'binary' : 'text',
    },
    locator: n.locator,
  };
}

/** Amounts a numeric(p,s) column holds as written: at most its precision, in steps of its scale when under 2. */
function amountLimits(c: ColumnInfo): InvoicesTarget['amount'] {
  if (c.precision === null || c.scale === null) return {};
  const centsStep = c.scale < 2 ? 10 ** (2 - c.scale) : 1;
  const wholeDigits = c.precision - c.scale;
  if (wholeDigits < 1) throw new UsageError(`${c.name} is ${c.type}: too narrow for invoice amounts`);
  const maxCents = wholeDigits >= 14 ? MAX_CENTS : 10 ** wholeDigits * 100 - centsStep;
  return maxCents === MAX_CENTS && centsStep === 1 ? {} : { maxCents, centsStep };
}
