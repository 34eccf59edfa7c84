import type { Client } from '../db/client.js';
import { NotFoundError } from '../errors.js';
import { detectLayout } from '../schema/apply.js';
import { listPartitions, pgTimestampToIso, type PartitionInfo } from '../schema/partitions.js';

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
  name: 'invoices_get',
  text: `SELECT ${COLUMNS} FROM invoices i ${PARTIES} WHERE i.invoice_id = $1`,
};

// Partitioned, in two cheap steps that do not grow with the number of partitions:
// 1. the issue_date from invoice_ids (an index-only scan; as text, so it round-trips exactly);
// 2. the invoice from the one partition whose bounds hold that date, queried by name.
// A single statement over the parent cannot do this: with the date known only at run time,
// every partition is planned (custom plan) or initialised and locked (generic plan) on each
// lookup, ~0.5 ms at 48 partitions, and a join probes the partitions one by one.
const LOCATE = { name: 'invoices_locate', text: 'SELECT issue_date::text AS issue_date FROM invoice_ids WHERE invoice_id = $1' };
const byPartition = (client: Client, partition: string) => ({
  name: `invoices_get_${partition}`,
  text: `SELECT ${COLUMNS} FROM ${client.escapeIdentifier(partition)} i ${PARTIES} WHERE i.invoice_id = $1`,
});
// When the partitions changed since we read them: the parent, pruned by the known date.
const BY_ID_AND_DATE = {
  name: 'invoices_get_by_date',
  text: `SELECT ${COLUMNS} FROM invoices i ${PARTIES} WHERE i.invoice_id = $1 AND i.issue_date = $2`,
};

/** What a connection knows about the layout: read once, reused for every lookup on it. */
type Plan = { partitioned: false } | { partitioned: true; partitions: PartitionInfo[] };
const plans = new WeakMap<Client, Plan>();

async function planFor(client: Client): Promise<Plan> {
  let plan = plans.get(client);
  if (!plan) {
    const { layout, locator } = await detectLayout(client);
    plan = layout === 'partitioned' && locator ? { partitioned: true, partitions: await listPartitions(client) } : { partitioned: false };
    plans.set(client, plan);
  }
  return plan;
}

/** One invoice with its parties' names; NotFoundError when no invoice has this id. */
export async function getInvoice(client: Client, id: bigint): Promise<InvoiceDetail> {
  const plan = await planFor(client);
  const values = [id.toString()];
  let rows: InvoiceDetail[] = [];
  if (!plan.partitioned) {
    rows = (await client.query<InvoiceDetail>({ ...BY_PRIMARY_KEY, values })).rows;
  } else {
    const located = (await client.query<{ issue_date: string }>({ ...LOCATE, values })).rows[0];
    if (located) {
      const partition = partitionFor(plan.partitions, located.issue_date);
      if (partition) rows = (await client.query<InvoiceDetail>({ ...byPartition(client, partition), values })).rows;
      if (!rows.length) rows = (await client.query<InvoiceDetail>({ ...BY_ID_AND_DATE, values: [...values, located.issue_date] })).rows;
    }
  }
  if (rows.length === 0) throw new NotFoundError(`invoice ${id} not found`);
  return rows[0];
}

/** The partition whose bounds hold a timestamp (PostgreSQL text form), else the DEFAULT one. */
function partitionFor(partitions: PartitionInfo[], timestamp: string): string | undefined {
  const iso = pgTimestampToIso(timestamp);
  const hit = partitions.find((p) => !p.isDefault && p.from !== undefined && p.to !== undefined && p.from <= iso && iso < p.to);
  return (hit ?? partitions.find((p) => p.isDefault))?.name;
}

/** Parses an invoice id: a positive integer that fits PostgreSQL's bigint. */
export function parseInvoiceId(raw: string): bigint | undefined {
  if (!/^\d+$/.test(raw.trim())) return undefined;
  const id = BigInt(raw.trim());
  return id > 0n && id <= 9223372036854775807n ? id : undefined;
}
