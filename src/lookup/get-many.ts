// Many invoices by id in one statement: `invoices get 1 2 3` and `invoices get -`. Lookups are
// batched (one round trip per batch of ids, unnest ... WITH ORDINALITY), which on one connection
// beats any number of single-row statements: the per-statement cost (parse, plan, round trip)
// is paid once per batch, not once per id.
import type { Client } from '../db/client.js';
import { detectLayout, locatorName } from '../schema/apply.js';
import { DEFAULT_TABLES, qualified, quoteIdent, type TableMap } from '../tables.js';
import { detailSelect, type InvoiceDetail } from './get-invoice.js';

/** The statement of one table mapping and layout, prepared by name once per connection. */
function statementFor(tables: TableMap, viaLocator: boolean): { name: string; text: string } {
  const i = tables.invoices.columns;
  const q = quoteIdent;
  const { columns, parties } = detailSelect(tables);
  // Partitioned with a locator: invoice_ids gives each id's issue_date, so the join on
  // (invoice_id, issue_date) prunes to one partition per id at run time instead of probing
  // every partition's index for every id.
  const from = viaLocator
    ? `unnest($1::bigint[]) AS u(id) JOIN ${locatorName(tables)} l ON l.invoice_id = u.id
       JOIN ${qualified(tables.invoices)} i ON i.${q(i.invoice_id)} = l.invoice_id AND i.${q(i.issue_date)} = l.issue_date`
    : `unnest($1::bigint[]) AS u(id) JOIN ${qualified(tables.invoices)} i ON i.${q(i.invoice_id)} = u.id`;
  const tag = tables.mapped ? `_${tables.invoices.schema}_${tables.invoices.table}` : '';
  return { name: `invoices_get_many${viaLocator ? '_located' : ''}${tag}`, text: `SELECT ${columns} FROM ${from} ${parties}` };
}

const statements = new WeakMap<Client, { name: string; text: string }>();

/**
 * The invoices of `ids` that exist, keyed by id (decimal string); ids not in the map were not
 * found. One statement for the whole batch; duplicates in `ids` are looked up once.
 */
export async function getInvoices(
  client: Client,
  ids: readonly bigint[],
  tables: TableMap = DEFAULT_TABLES,
): Promise<Map<string, InvoiceDetail>> {
  let statement = statements.get(client);
  if (!statement) {
    const { layout, locator } = await detectLayout(client, tables);
    statement = statementFor(tables, layout === 'partitioned' && locator);
    statements.set(client, statement);
  }
  const unique = [...new Set(ids.map(String))];
  const found = new Map<string, InvoiceDetail>();
  if (!unique.length) return found;
  const { rows } = await client.query<InvoiceDetail>({ ...statement, values: [unique] });
  for (const row of rows) found.set(String(row.invoice_id), row);
  return found;
}
