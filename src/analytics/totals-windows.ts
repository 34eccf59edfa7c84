// Window totals (sql/monthly-totals.sql): the monthly totals summed over a window of calendar
// months, one row per customer and party, for the windows `group` was asked for lately. They
// make the answer cost what reading it costs: a 6-month answer reads one summed row per
// customer in the order of its total, and `--top K` reads K rows, where summing the monthly
// rows at read time hashed six rows per customer in numeric. Every change to the monthly totals
// goes through here in the same statement or transaction (addToWindows), so a kept window is
// always the sum of its months at the totals' watermark.
import type { Client } from '../db/client.js';
import type { Logger } from '../log.js';
import type { SourceTable } from '../table/describe.js';
import { quoteIdent } from '../tables.js';
import type { Window } from './window.js';

/** The monthly totals, their state, and the window tables, beside the invoices table in its schema. */
export type TotalsTableName =
  | 'invoice_monthly_totals'
  | 'invoice_monthly_totals_state'
  | 'invoice_totals_windows'
  | 'invoice_window_totals';

/** A totals table, qualified with the invoices table's schema. */
export function totalsRelation(source: SourceTable, table: TotalsTableName): string {
  return `${quoteIdent(source.tables.invoices.schema)}.${quoteIdent(table)}`;
}

/** Windows unused this long are dropped; so are the least recently used beyond MAX_WINDOWS per source. */
const KEEP_DAYS = 35;
const MAX_WINDOWS = 8;

/** A window's first and last month, as dates (the first day of each). */
function bounds(w: Window): [string, string] {
  return [`${w.firstMonth}-01`, `${w.lastMonth}-01`];
}

/**
 * A statement that adds `rows` (a relation of party, month, customer_id, invoices, amount:
 * monthly totals added, or with sign -1 taken off) to every kept window of the source that holds
 * their month. Used as a data-modifying CTE beside the change to the monthly totals, or alone.
 */
export function addToWindows(source: SourceTable, rows: string, sign: 1 | -1): string {
  const windowTotals = totalsRelation(source, 'invoice_window_totals');
  const op = sign > 0 ? '' : '-';
  return `INSERT INTO ${windowTotals} AS w (source_id, party, first_month, last_month, customer_id, invoices, amount)
      SELECT ${source.id}::bigint, d.party, k.first_month, k.last_month, d.customer_id, ${op}sum(d.invoices), ${op}sum(d.amount)
        FROM ${rows} d JOIN ${totalsRelation(source, 'invoice_totals_windows')} k
          ON k.source_id = ${source.id} AND d.month BETWEEN k.first_month AND k.last_month
       GROUP BY 2, 3, 4, 5 ORDER BY 2, 3, 4, 5
      ON CONFLICT (source_id, party, first_month, last_month, customer_id)
      DO UPDATE SET invoices = w.invoices + excluded.invoices, amount = w.amount + excluded.amount`;
}

/** After months were taken off and computed again: customers left with no invoice in a window lose their row. */
export async function dropEmptyWindowRows(client: Client, source: SourceTable): Promise<void> {
  await client.query(`DELETE FROM ${totalsRelation(source, 'invoice_window_totals')} WHERE source_id = $1 AND invoices = 0`, [source.id]);
}

/** Forgets every window of the source (its monthly totals are computed again from scratch); `alone`: no other source in these tables. */
export async function dropWindows(client: Client, source: SourceTable, alone: boolean): Promise<void> {
  const tables = [totalsRelation(source, 'invoice_window_totals'), totalsRelation(source, 'invoice_totals_windows')];
  if (alone) await client.query(`TRUNCATE ${tables.join(', ')}`);
  else for (const t of tables) await client.query(`DELETE FROM ${t} WHERE source_id = $1`, [source.id]);
}

/**
 * Makes sure the window is kept (building it from the monthly totals the first time it is asked
 * for) and marks it used; drops the windows nobody asked for lately. Runs in the refresh's
 * transaction, after the refresh.
 */
export async function ensureWindow(client: Client, source: SourceTable, window: Window, log: Logger): Promise<void> {
  const [first, last] = bounds(window);
  const windows = totalsRelation(source, 'invoice_totals_windows');
  const windowTotals = totalsRelation(source, 'invoice_window_totals');
  const { rowCount } = await client.query(
    `UPDATE ${windows} SET used_at = now() WHERE source_id = $1 AND first_month = $2 AND last_month = $3`,
    [source.id, first, last],
  );
  if (rowCount) return;
  const started = performance.now();
  await client.query(
    `INSERT INTO ${windowTotals} (source_id, party, first_month, last_month, customer_id, invoices, amount)
     SELECT source_id, party, $2::date, $3::date, customer_id, sum(invoices), sum(amount)
       FROM ${totalsRelation(source, 'invoice_monthly_totals')}
      WHERE source_id = $1 AND month BETWEEN $2::date AND $3::date
      GROUP BY source_id, party, customer_id ORDER BY party, customer_id`,
    [source.id, first, last],
  );
  await client.query(`INSERT INTO ${windows} (source_id, first_month, last_month, built_at, used_at) VALUES ($1, $2, $3, now(), now())`, [
    source.id,
    first,
    last,
  ]);
  const { rows: dropped } = await client.query<{ first_month: string; last_month: string }>(
    `DELETE FROM ${windows} WHERE source_id = $1
        AND (used_at < now() - make_interval(days => $2)
             OR (first_month, last_month) NOT IN (SELECT first_month, last_month FROM ${windows} WHERE source_id = $1 ORDER BY used_at DESC LIMIT $3))
     RETURNING first_month, last_month`,
    [source.id, KEEP_DAYS, MAX_WINDOWS],
  );
  for (const d of dropped)
    await client.query(
      `DELETE FROM ${windowTotals} WHERE source_id = $1 AND party IN ('issuer', 'receiver') AND first_month = $2 AND last_month = $3`,
      [source.id, d.first_month, d.last_month],
    );
  // Fresh statistics: the planner then reads the rank index for a top K instead of sorting.
  await client.query(`ANALYZE ${windowTotals}`);
  log.debug(
    `window totals ${window.firstMonth}..${window.lastMonth} of ${source.name} built in ${Math.round(performance.now() - started)} ms${dropped.length ? ` (${dropped.length} unused window(s) dropped)` : ''}`,
  );
}

/** The window's summed rows of one party, as `SELECT id, n, s` in the order of the answer (largest total first). */
export function windowRows(source: SourceTable, party: 'issuer' | 'receiver', window: Window): string {
  const [first, last] = bounds(window);
  return `SELECT customer_id AS id, invoices AS n, amount AS s FROM ${totalsRelation(source, 'invoice_window_totals')}
           WHERE source_id = ${source.id} AND party = '${party}' AND first_month = '${first}' AND last_month = '${last}'`;
}
