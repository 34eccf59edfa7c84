// Which months an export writes, and what it knows of them before reading them: the months of
// the table (from its partitions, plus what DEFAULT holds) and the planner's row estimates.
import { leavesOf } from '../db/catalog/index.js';
import type { Client } from '../db/client.js';
import { listPartitions, monthBounds } from '../schema/partitions.js';
import type { Changes } from '../table/changes.js';
import { leafRelation, type SourceTable } from '../table/describe.js';
import { MONTH_OF_ISSUE } from '../table/watermark.js';
import { qualified } from '../tables.js';
import type { Manifest } from './manifest.js';
import type { MonthStats } from './month-stats.js';

/**
 * Which months to write: new, changed (rows after the last watermark, rows updated or deleted,
 * a partition replaced, count or sum), or all without a manifest. `changes`: the months whose
 * rows may differ from what the lake holds, with why.
 */
export function planMonths(
  stats: Map<string, MonthStats>,
  previous: Manifest | undefined,
  changes?: Pick<Changes, 'months'>,
): { month: string; write: boolean; reason: string }[] {
  const all = new Set([...stats.keys(), ...Object.keys(previous?.months ?? {})]);
  return [...all].sort().map((month) => {
    const s = stats.get(month);
    const m = previous?.months[month];
    if (!s) return { month, write: false, reason: 'no rows left in PostgreSQL' };
    if (!previous) return { month, write: true, reason: 'full export' };
    if (!m) return { month, write: true, reason: 'new month' };
    if (s.fresh > 0) return { month, write: true, reason: `${s.fresh} rows inserted since the last export` };
    const changed = changes?.months.get(month);
    if (changed) return { month, write: true, reason: `${changed} since the last export` };
    if (s.rows !== m.rows) return { month, write: true, reason: `row count ${m.rows} -> ${s.rows}` };
    if (s.sum !== m.sum) return { month, write: true, reason: `sum ${m.sum} -> ${s.sum}` };
    return { month, write: false, reason: 'unchanged' };
  });
}

/** The months of a partitioned table: one per monthly partition, plus those with rows in DEFAULT. */
export async function catalogMonths(client: Client, source: SourceTable): Promise<string[]> {
  const parts = await listPartitions(client, qualified(source.tables.invoices));
  const months = new Set<string>();
  for (const p of parts) {
    if (p.isDefault || !p.from || !p.to) continue;
    for (let m = p.from.slice(0, 7); `${m}-01T00:00:00.000Z` < p.to; m = monthBounds(m).to.slice(0, 7)) months.add(m);
  }
  const def = parts.find((p) => p.isDefault);
  if (def) {
    const { rows } = await client.query<{ m: string }>(
      `SELECT DISTINCT to_char(${MONTH_OF_ISSUE}, 'YYYY-MM') AS m FROM ${leafRelation(source, def.name)}`,
    );
    for (const r of rows) months.add(r.m);
  }
  return [...months].sort();
}

/** Estimated rows per month from the planner's statistics of each partition (progress and scheduling only). */
export async function partitionEstimates(client: Client, source: SourceTable): Promise<Map<string, number>> {
  const parts = await listPartitions(client, qualified(source.tables.invoices));
  const leaves = await leavesOf(client, qualified(source.tables.invoices));
  const byName = new Map(leaves.map((l) => [l.name, l.estimatedRows]));
  return new Map(parts.filter((p) => p.from).map((p) => [p.from!.slice(0, 7), byName.get(p.name) ?? 0]));
}
