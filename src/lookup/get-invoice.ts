import type { Client } from '../db/client.js';
import { NotFoundError } from '../errors.js';
import { detectLayout, locatorName } from '../schema/apply.js';
import { listPartitions, pgTimestampToIso, type PartitionInfo } from '../schema/partitions.js';
import { DEFAULT_TABLES, qualified, quoteIdent, type TableMap } from '../tables.js';

export interface InvoiceDetail {
  invoice_id: string;
  issue_date: string;
  issuer_id: string;
  issuer_name: string | null;
  receiver_id: string;
  receiver_name: string | null;
  amount: string;
}

/**
 * An InvoiceDetail's select list over invoices `i`, with our column names whatever the table's
 * (an adopted table's columns are aliased), and the joins that bring the parties' names.
 */
export function detailSelect(tables: TableMap): { columns: string; parties: string } {
  const i = tables.invoices.columns;
  const c = tables.customers.columns;
  const q = quoteIdent;
  const customers = qualified(tables.customers);
  return {
    columns: `i.${q(i.invoice_id)} AS invoice_id, i.${q(i.issue_date)} AS issue_date, i.${q(i.issuer_id)} AS issuer_id,
    ci.${q(c.name)} AS issuer_name, i.${q(i.receiver_id)} AS receiver_id, cr.${q(c.name)} AS receiver_name, i.${q(i.amount)} AS amount`,
    parties: `LEFT JOIN ${customers} ci ON ci.${q(c.id)} = i.${q(i.issuer_id)} LEFT JOIN ${customers} cr ON cr.${q(c.id)} = i.${q(i.receiver_id)}`,
  };
}

/** The statements of one table mapping, prepared by name once per connection. */
function statementsFor(tables: TableMap) {
  const i = tables.invoices.columns;
  const q = quoteIdent;
  const { columns, parties } = detailSelect(tables);
  // Statement names must differ between mappings: a name is prepared once per connection.
  const tag = tables.mapped ? `_${tables.invoices.schema}_${tables.invoices.table}` : '';
  return {
    byPrimaryKey: {
      name: `invoices_get${tag}`,
      text: `SELECT ${columns} FROM ${qualified(tables.invoices)} i ${parties} WHERE i.${q(i.invoice_id)} = $1`,
    },
    // Partitioned: straight to the partition whose id range holds the id (see withIdRanges);
    // else in two cheap steps that do not grow with the number of partitions:
    // 1. the issue_date from invoice_ids (an index-only scan; as text, so it round-trips exactly);
    // 2. the invoice from the one partition whose bounds hold that date, queried by name.
    // A single statement over the parent cannot do this: with the date known only at run time,
    // every partition is planned (custom plan) or initialised and locked (generic plan) on each
    // lookup, and a join probes the partitions one by one.
    locate: {
      name: `invoices_locate${tag}`,
      text: `SELECT issue_date::text AS issue_date FROM ${locatorName(tables)} WHERE invoice_id = $1`,
    },
    byPartition: (partition: string) => ({
      name: `invoices_get${tag}_${partition}`,
      text: `SELECT ${columns} FROM ${q(tables.invoices.schema)}.${q(partition)} i ${parties} WHERE i.${q(i.invoice_id)} = $1`,
    }),
    // When the partitions changed since we read them: the parent, pruned by the known date.
    byIdAndDate: {
      name: `invoices_get_by_date${tag}`,
      text: `SELECT ${columns} FROM ${qualified(tables.invoices)} i ${parties} WHERE i.${q(i.invoice_id)} = $1 AND i.${q(i.issue_date)} = $2`,
    },
  };
}

/** What a connection knows about the layout: read once, reused for every lookup on it. */
/**
 * What a connection knows about the layout, read once and reused for every lookup on it:
 * the partitions, their bounds, and the range of invoice ids each holds.
 */
type Plan = { statements: ReturnType<typeof statementsFor>; partitions?: Array<PartitionInfo & { ids?: [bigint, bigint] }> };
const plans = new WeakMap<Client, Plan>();

async function planFor(client: Client, tables: TableMap): Promise<Plan> {
  let plan = plans.get(client);
  if (!plan) {
    const { layout, locator } = await detectLayout(client, tables);
    const partitions =
      layout === 'partitioned' && locator
        ? await withIdRanges(client, tables, await listPartitions(client, qualified(tables.invoices)))
        : undefined;
    plan = { statements: statementsFor(tables), partitions };
    plans.set(client, plan);
  }
  return plan;
}

/**
 * The smallest and largest invoice id of each partition (two primary-key probes each, one
 * round trip for all). Ids are assigned as invoices are created, so a month's ids form a
 * narrow range: an id inside exactly one range is looked up in that partition at once.
 */
async function withIdRanges(client: Client, tables: TableMap, partitions: PartitionInfo[]): Promise<NonNullable<Plan['partitions']>> {
  const id = quoteIdent(tables.invoices.columns.invoice_id);
  const schema = quoteIdent(tables.invoices.schema);
  const { rows } = await client.query<{ name: string; lo: string | null; hi: string | null }>(
    partitions
      .map(
        (p) =>
          `SELECT ${client.escapeLiteral(p.name)} AS name, min(${id})::text AS lo, max(${id})::text AS hi FROM ${schema}.${quoteIdent(p.name)}`,
      )
      .join(' UNION ALL '),
  );
  const ranges = new Map(
    rows.filter((r) => r.lo !== null && r.hi !== null).map((r) => [r.name, [BigInt(r.lo!), BigInt(r.hi!)] as [bigint, bigint]]),
  );
  return partitions.map((p) => ({ ...p, ids: ranges.get(p.name) }));
}

/** One invoice with its parties' names; NotFoundError when no invoice has this id. */
export async function getInvoice(client: Client, id: bigint, tables: TableMap = DEFAULT_TABLES): Promise<InvoiceDetail> {
  const { statements, partitions } = await planFor(client, tables);
  const values = [id.toString()];
  let rows: InvoiceDetail[] = [];
  if (!partitions) {
    rows = (await client.query<InvoiceDetail>({ ...statements.byPrimaryKey, values })).rows;
  } else {
    // One round trip when the id ranges point at a single partition; otherwise (ranges that
    // overlap, an id newer than the ranges, a row since moved) invoice_ids says where it is.
    const candidates = partitions.filter((p) => p.ids && p.ids[0] <= id && id <= p.ids[1]);
    if (candidates.length === 1) rows = (await client.query<InvoiceDetail>({ ...statements.byPartition(candidates[0].name), values })).rows;
    if (!rows.length) {
      const located = (await client.query<{ issue_date: string }>({ ...statements.locate, values })).rows[0];
      if (located) {
        const partition = partitionFor(partitions, located.issue_date);
        if (partition && partition !== candidates[0]?.name)
          rows = (await client.query<InvoiceDetail>({ ...statements.byPartition(partition), values })).rows;
        if (!rows.length)
          rows = (await client.query<InvoiceDetail>({ ...statements.byIdAndDate, values: [...values, located.issue_date] })).rows;
      }
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
