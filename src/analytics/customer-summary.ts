// One customer's row of `group --by customer` (issued, received, net over the window): the
// dimension's own statement and row (dimensions.ts) over the postgres engine's aggregates
// (rawAggregate on the live table, the reference every engine equals), each restricted to the
// customer so that its indexes serve. What `serve` answers at /customers/:id/summary.
import type { Client } from '../db/client.js';
import { NotFoundError } from '../errors.js';
import { customersSelect } from '../table/customers.js';
import { describeTable } from '../table/describe.js';
import { rangeCondition } from '../table/watermark.js';
import type { TableMap } from '../tables.js';
import { atScale } from './decimal.js';
import { dimension, rawAggregate, type Aggregate, type GroupRow, type RawRow } from './dimensions.js';
import type { Window } from './window.js';

/** The customer's row as `group --by customer --engine postgres` prints it (customer_id, name, invoices, total, average, issued, received, net). */
export async function customerSummary(client: Client, tables: TableMap, customerId: bigint, window: Window): Promise<GroupRow> {
  const dim = dimension('customer')!;
  const source = await describeTable(client, tables);
  const customers = `(${await customersSelect(client, tables, ['id', 'name'])})`;
  const range = rangeCondition(window.from, window.to);
  const agg: Aggregate = (party) => rawAggregate(source.relation, `${range} AND ${party}_id = $1`)(party);
  const id = customerId.toString();
  const { rows } = await client.query<RawRow>(dim.sql(agg, customers, ''), [id]);
  if (rows.length) return dim.row(rows[0], source.amount.scale);
  // No invoice in the window: zeros for a customer that exists, else not found.
  const { rows: known } = await client.query<{ name: string | null }>(`SELECT c.name FROM ${customers} c WHERE c.id = $1`, [id]);
  if (!known.length) throw new NotFoundError(`customer ${id} not found`);
  const zero = atScale('0', source.amount.scale);
  return { customer_id: id, name: known[0].name, invoices: '0', total: zero, average: null, issued: zero, received: zero, net: zero };
}
