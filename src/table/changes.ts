// What changed in the invoices table since a derived store was made, beyond the inserts its
// watermark finds: leaves replaced (lineage.ts) and rows updated or deleted (the change log,
// sql/changes.sql, written by a trigger in the updating transaction itself: it counts the
// moment that transaction commits, unlike the statistics counters, which lag about a second).
import type { Client } from '../db/client.js';
import { listPartitions, monthBounds, type Month } from '../schema/partitions.js';
import { changeLogMonths } from './change-log.js';
import { leafRelation, type SourceTable } from './describe.js';
import { compareLineage, readLineage, type Lineage } from './lineage.js';
import { MONTH_OF_ISSUE } from './watermark.js';

/** What a derived store recorded about its source. */
export interface StoredState {
  lineage?: Lineage | null;
  /** Every row below it was included (null: none, the store is a full snapshot). */
  watermark: string | null;
}

export interface Changes {
  /** Set when nothing derived can be kept: why. */
  all?: string;
  /** Months to recompute, each with why. */
  months: Map<Month, string>;
  /** The lineage now, to record with the refreshed store. */
  lineage: Lineage;
}

/**
 * The months whose rows may differ from what a store made at `stored` holds (beyond rows
 * inserted after its watermark), or `all`. Run inside the snapshot that the store's refresh
 * reads: the change log is read in it. `known`: the months the store holds.
 */
export async function changesSince(client: Client, source: SourceTable, stored: StoredState, known: Month[]): Promise<Changes> {
  const lineage = await readLineage(client, source);
  const change = compareLineage(stored.lineage, lineage);
  if (change.kind === 'replaced') return { all: change.reason, months: new Map(), lineage };
  if (stored.watermark === null || !source.incremental) return { all: 'no watermark to tell what changed', months: new Map(), lineage };
  const months = new Map<Month, string>();
  if (change.kind === 'leaves') {
    const dirty = await leafMonths(client, source, change.leaves, known);
    if (dirty === 'all') return { all: change.reason, months, lineage };
    for (const m of dirty) months.set(m, change.reason);
  }
  for (const m of await changeLogMonths(client, source, stored.watermark)) if (!months.has(m)) months.set(m, 'rows updated or deleted');
  return { months, lineage };
}

/** What a leaf table holds: a range of issue dates, the DEFAULT partition's leftovers, or everything (a plain table). */
type LeafRange = { from: string; to: string } | 'default' | 'all';

async function leafRanges(client: Client, source: SourceTable): Promise<Map<string, LeafRange>> {
  if (source.layout === 'plain') return new Map([[source.tables.invoices.table, 'all']]);
  const parts = await listPartitions(client, source.table);
  return new Map(parts.map((p) => [p.name, p.isDefault || !p.from || !p.to ? 'default' : { from: p.from, to: p.to }]));
}

/**
 * The months (among `known`, plus those with rows in DEFAULT) that the given leaves may hold:
 * a partition its months; DEFAULT, or a partition that is gone, the months no bounded
 * partition covers; a plain table everything.
 */
async function leafMonths(client: Client, source: SourceTable, leaves: string[], known: Month[]): Promise<Month[] | 'all'> {
  const ranges = await leafRanges(client, source);
  const bounded = [...ranges.values()].filter((r): r is { from: string; to: string } => typeof r === 'object');
  const covered = (m: Month) => bounded.some((r) => r.from <= monthBounds(m).from && monthBounds(m).to <= r.to);
  const touches = (m: Month, r: { from: string; to: string }) => r.from < monthBounds(m).to && monthBounds(m).from < r.to;
  const out = new Set<Month>();
  for (const leaf of leaves) {
    const r = ranges.get(leaf);
    if (r === 'all' || (r === undefined && source.layout === 'plain')) return 'all';
    if (r === undefined || r === 'default') {
      known.filter((m) => !covered(m)).forEach((m) => out.add(m));
      if (r === 'default') {
        const { rows } = await client.query<{ m: string }>(
          `SELECT DISTINCT to_char(${MONTH_OF_ISSUE}, 'YYYY-MM') AS m FROM ${leafRelation(source, leaf)}`,
        );
        rows.forEach((x) => out.add(x.m));
      }
    } else {
      for (let m = r.from.slice(0, 7); monthBounds(m).from < r.to; m = monthBounds(m).to.slice(0, 7)) out.add(m);
      known.filter((m) => touches(m, r)).forEach((m) => out.add(m));
    }
  }
  return [...out].sort();
}
