// The transaction-id watermark (see docs and design.md): every transaction with an id below
// pg_snapshot_xmin(pg_current_snapshot()) has ended, so no row with a smaller created_xid can
// still appear. Helpers that put validated marks and bounds into SQL text, the horizon, and
// the one check that a table's ids belong to this server.
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import type { SourceTable } from './describe.js';

const XID = /^\d{1,20}$/;

/** An xid8 as SQL text: only digits ever reach the statement. */
export function xidLiteral(xid: string): string {
  if (!XID.test(xid)) throw new UsageError(`"${xid}" is not a transaction id`);
  return `'${xid}'::xid8`;
}

/** A timestamptz literal for a validated month bound. */
export function timeLiteral(iso: string): string {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(iso)) throw new UsageError(`bad timestamp ${iso}`);
  return `'${iso}'::timestamptz`;
}

/** issue_date within [from, to): a timestamp without time zone compares as UTC (sessions run in UTC). */
export function rangeCondition(from: string, to: string): string {
  return `issue_date >= ${timeLiteral(from)} AND issue_date < ${timeLiteral(to)}`;
}

/** The first day of the row's month, UTC, as a date: the same for timestamptz and timestamp read as UTC. */
export const MONTH_OF_ISSUE = `date_trunc('month', issue_date AT TIME ZONE 'UTC')::date`;

/**
 * The horizon (no row below it can still appear) and xmax (the next transaction id: ids at or
 * above it come from another cluster).
 */
export async function xidHorizon(client: Client): Promise<{ horizon: string; xmax: string }> {
  const {
    rows: [r],
  } = await client.query<{ horizon: string; xmax: string }>(
    'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax',
  );
  return r;
}

/**
 * A table restored from another cluster (pg_dump) can carry created_xid values above this
 * server's counter: no watermark is safe until they are renumbered. Refuses with the fix.
 */
export async function assertXidsBehindServer(client: Client, source: SourceTable): Promise<void> {
  if (!source.createdXid) return;
  const { rows } = await client.query<{ ahead: boolean }>(
    `SELECT coalesce((SELECT created_xid FROM ${source.table} ORDER BY created_xid DESC LIMIT 1) >= pg_snapshot_xmax(pg_current_snapshot()), false) AS ahead`,
  );
  if (rows[0].ahead) {
    throw new UsageError(
      `${source.name} holds created_xid values ahead of this server's transaction counter (restored from another cluster?): no watermark is safe until they are renumbered with UPDATE ${source.table} SET created_xid = pg_current_xact_id() WHERE created_xid >= pg_snapshot_xmax(pg_current_snapshot()); then run again`,
    );
  }
}
