import type { Client } from '../db/client.js';
import { NotFoundError } from '../errors.js';

export interface InvoiceDetail {
  invoice_id: string;
  issue_date: string;
  issuer_id: string;
  issuer_name: string | null;
  receiver_id: string;
  receiver_name: string | null;
  amount: string;
}

// A prepared statement by name: parsed and planned once per connection.
const GET_INVOICE = {
  name: 'invoices_get',
  text: `SELECT i.invoice_id, i.issue_date, i.issuer_id, ci.name AS issuer_name,
                i.receiver_id, cr.name AS receiver_name, i.amount
           FROM invoices i
           LEFT JOIN customers ci ON ci.id = i.issuer_id
           LEFT JOIN customers cr ON cr.id = i.receiver_id
          WHERE i.invoice_id = $1`,
};

/** One invoice with its parties' names; NotFoundError when no invoice has this id. */
export async function getInvoice(client: Client, id: bigint): Promise<InvoiceDetail> {
  const { rows } = await client.query<InvoiceDetail>({ ...GET_INVOICE, values: [id.toString()] });
  if (rows.length === 0) throw new NotFoundError(`invoice ${id} not found`);
  return rows[0];
}

/** Parses an invoice id: a positive integer that fits PostgreSQL's bigint. */
export function parseInvoiceId(raw: string): bigint | undefined {
  if (!/^\d+$/.test(raw.trim())) return undefined;
  const id = BigInt(raw.trim());
  return id > 0n && id <= 9223372036854775807n ? id : undefined;
}
