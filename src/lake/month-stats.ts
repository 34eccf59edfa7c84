// Per-month row counts and sums of the invoices table: what the lake must hold, month by month.
import type { Client } from '../db/client.js';
import type { SourceTable } from '../table/describe.js';
import { rangeCondition, xidLiteral } from '../table/watermark.js';

export interface MonthStats {
  rows: number;
  sum: string;
  /** Rows inserted at or after the previous watermark. */
  fresh: number;
}

/** Per month (UTC) of the rows below the horizon (all rows without created_xid): count, sum(amount) and rows at or after `since`. */
export async function monthStats(
  client: Client,
  source: SourceTable,
  horizon: string | undefined,
  since?: string,
  range?: { from: string; to: string },
): Promise<Map<string, MonthStats>> {
  const fresh = since && source.createdXid ? `count(*) FILTER (WHERE created_xid >= ${xidLiteral(since)})` : '0';
  const conds = [
    ...(horizon && source.createdXid ? [`created_xid < ${xidLiteral(horizon)}`] : []),
    ...(range ? [rangeCondition(range.from, range.to)] : []),
  ];
  // Group on date_trunc and format the few group keys afterwards: to_char on every row costs a third more.
  const { rows } = await client.query<{ month: string; n: string; s: string; f: string }>(
    `SELECT to_char(m, 'YYYY-MM') AS month, n::text AS n, s::text AS s, f::text AS f FROM (
       SELECT date_trunc('month', issue_date AT TIME ZONE 'UTC') AS m, count(*) AS n, sum(amount) AS s, ${fresh} AS f
         FROM ${source.relation}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} GROUP BY 1) g ORDER BY 1`,
  );
  return new Map(rows.map((r) => [r.month, { rows: Number(r.n), sum: r.s, fresh: Number(r.f) }]));
}
