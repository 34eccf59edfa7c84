import type { Client } from '../db/client.js';
import { NotFoundError } from '../errors.js';
import { detectLayout } from '../schema/apply.js';

export interface InvoiceDetail {
  invoice_id: string;
  issue_date: string;
  issuer_id: string;
  issuer_name: string | null;
  receiver_id: string;
  receiver_name: string | null;
  amount: string;
}

const COLUMNS = `i.invoice_id, i.issue_date, i.issuer_id, ci.name AS issuer_name, i.receiver_id, cr.name AS receiver_name, i.amount`;
const PARTIES = `LEFT JOIN customers ci ON ci.id = i.issuer_id LEFT JOIN customers cr ON cr.id = i.receiver_id`;

// Prepared statements by name: parsed and planned once per connection.
const BY_PRIMARY_KEY = {
  name: 'invoices_get_plain',
  text: `SELECT ${COLUMNS} FROM invoices i ${PARTIES} WHERE i.invoice_id = $1`,
};
// Partitioned, in two steps: the issue_date from invoice_ids (an index-only scan), then the
// invoice by (id, date), which the planner prunes to the one partition holding it before it
// even opens the others. One statement joining the two would plan every partition (~ms
// with dozens) and probe them one by one.
const LOCATE = { name: 'invoices_locate', text: 'SELECT issue_date FROM invoice_ids WHERE invoice_id = $1' };
const BY_ID_AND_DATE = {
  name: 'invoices_get_partitioned',
  text: `SELECT ${COLUMNS} FROM invoices i ${PARTIES} WHERE i.invoice_id = $1 AND i.issue_date = $2`,
};

const partitionedClients = new WeakMap<Client, boolean>();

/** One invoice with its parties' names; NotFoundError when no invoice has this id. */
export async function getInvoice(client: Client, id: bigint): Promise<InvoiceDetail> {
  let partitioned = partitionedClients.get(client);
  if (partitioned === undefined) {
    const { layout, locator } = await detectLayout(client);
    partitioned = layout === 'partitioned' && locator;
    partitionedClients.set(client, partitioned);
  }
  let rows: InvoiceDetail[];
  if (partitioned) {
    const located = await client.query<{ issue_date: string }>({ ...LOCATE, values: [id.toString()] });
    rows = located.rows.length
      ? (await client.query<InvoiceDetail>({ ...BY_ID_AND_DATE, values: [id.toString(), located.rows[0].issue_date] })).rows
      : [];
  } else {
    rows = (await client.query<InvoiceDetail>({ ...BY_PRIMARY_KEY, values: [id.toString()] })).rows;
  }
  if (rows.length === 0) throw new NotFoundError(`invoice ${id} not found`);
  return rows[0];
}

/** Parses an invoice id: a positive integer that fits PostgreSQL's bigint. */
export function parseInvoiceId(raw: string): bigint | undefined {
  if (!/^\d+$/.test(raw.trim())) return undefined;
  const id = BigInt(raw.trim());
  return id > 0n && id <= 9223372036854775807n ? id : undefined;
}
