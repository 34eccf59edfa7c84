// Issuer histories for the model, kept in memory while a scorer runs: loaded from the table
// once per issuer (its latest invoices, invoices per day over the velocity range, the receivers
// it has invoiced, its first day), then extended with each invoice the scorer scores. A batch
// of 50,000 invoices thus costs a few index scans per issuer not seen before, not a scan of
// history per invoice. And the statistics of every issuer, the fallback for thin histories.
import type { Client } from '../db/client.js';
import type { SourceTable } from '../table/describe.js';
import { BASE_DAYS, dayOf, RECENT, readAmount, type GlobalStats, type History, type Prior } from './model.js';
import { asDate, type SourceInvoice } from './source.js';

/** Days of per-day counts loaded: the 30-day window, the baseline before it, and a margin. */
const DAILY_RANGE = BASE_DAYS + 31;

/**
 * Invoices per day over the last RING days seen: two small typed arrays instead of a Map, as
 * the model reads 120 days for every invoice.
 */
class DayCounts {
  private static readonly RING = 256; // > 2 * DAILY_RANGE, a power of two
  private readonly days = new Int32Array(DayCounts.RING).fill(-1);
  private readonly counts = new Int32Array(DayCounts.RING);

  get(day: number): number | undefined {
    const i = day & (DayCounts.RING - 1);
    return this.days[i] === day ? this.counts[i] : undefined;
  }

  add(day: number, n: number): void {
    const i = day & (DayCounts.RING - 1);
    if (this.days[i] !== day) {
      // A slot goes to the later of two days: an old day must not overwrite a recent one. (Not
      // "ignore days older than the latest seen": one far-future invoice would then stop the
      // issuer's counts for good.)
      if (this.days[i] > day) return;
      this.days[i] = day;
      this.counts[i] = 0;
    }
    this.counts[i] += n;
  }
}

interface IssuerState {
  recent: Prior[];
  /** Latest issue time in recent: an invoice issued after it sees all of recent as its past. */
  latest: number;
  daily: DayCounts;
  firstDay?: number;
  receivers: Set<string>;
}

export class HistoryStore {
  private issuers = new Map<string, IssuerState>();

  /** maxIssuers bounds memory: past it the store starts over and reloads on demand. */
  constructor(private readonly maxIssuers = 200_000) {}

  get size(): number {
    return this.issuers.size;
  }

  /** Forget everything (after a batch that did not commit, whose invoices were appended). */
  clear(): void {
    this.issuers.clear();
  }

  /**
   * Loads the issuers of these invoices that are not in memory, as of the first of their
   * invoices. `upTo`, the scorer's walk position after this batch (and the issue date its walk
   * starts from, if any): rows the walk reaches later are left out, as it appends them then
   * (loading them too would count them twice).
   */
  async load(
    client: Client,
    src: SourceTable,
    invoices: readonly SourceInvoice[],
    upTo?: { xid: string; id: string; from?: string },
  ): Promise<void> {
    const first = new Map<string, SourceInvoice>();
    for (const inv of invoices) {
      if (this.issuers.has(inv.issuer)) continue;
      const seen = first.get(inv.issuer);
      if (!seen || inv.t < seen.t) first.set(inv.issuer, inv);
    }
    if (!first.size) return;
    if (this.issuers.size + first.size > this.maxIssuers) this.issuers.clear();
    const ids = [...first.keys()];
    const ats = ids.map((id) => first.get(id)!.at);
    const { col, table } = src;
    const before = asDate(src, 'b.at');
    const params: unknown[] = [ids, ats];
    const from = `unnest($1::bigint[], $2::text[]) AS b(issuer, at)`;
    let walked = '';
    if (upTo) {
      params.push(upTo.xid, upTo.id);
      walked = `AND ((i.created_xid, i.${col.invoice_id}) <= ($3::xid8, $4::bigint)`;
      if (upTo.from) {
        params.push(upTo.from);
        walked += ` OR i.${col.issue_date} < ${asDate(src, '$5')}`;
      }
      walked += ')';
    }
    // One client runs one query at a time: three round trips, each an index scan per issuer.
    const recent = await client.query<{ issuer: string; t: number; receiver: string; amount: string }>(
      `SELECT b.issuer::text AS issuer, h.t, h.receiver, h.amount FROM ${from}
          CROSS JOIN LATERAL (SELECT (extract(epoch FROM i.${col.issue_date}) * 1000)::float8 AS t, i.${col.receiver_id}::text AS receiver, i.${col.amount}::text AS amount
                                FROM ${table} i WHERE i.${col.issuer_id} = b.issuer AND i.${col.issue_date} < ${before} ${walked}
                               ORDER BY i.${col.issue_date} DESC LIMIT ${RECENT}) h`,
      params,
    );
    const daily = await client.query<{ issuer: string; day: number; n: number }>(
      `SELECT b.issuer::text AS issuer, d.day, d.n FROM ${from}
          CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM i.${col.issue_date}) / 86400)::int AS day, count(*)::int AS n
                                FROM ${table} i WHERE i.${col.issuer_id} = b.issuer AND i.${col.issue_date} < ${before}
                                 AND i.${col.issue_date} >= ${before} - interval '${DAILY_RANGE} days' ${walked} GROUP BY 1) d`,
      params,
    );
    const parties = await client.query<{ issuer: string; receivers: string[]; first: number | null }>(
      `SELECT b.issuer::text AS issuer, p.receivers, p.first FROM ${from}
          CROSS JOIN LATERAL (SELECT array_agg(DISTINCT i.${col.receiver_id}::text) AS receivers, (extract(epoch FROM min(i.${col.issue_date})) * 1000)::float8 AS first
                                FROM ${table} i WHERE i.${col.issuer_id} = b.issuer AND i.${col.issue_date} < ${before} ${walked}) p`,
      params,
    );
    for (const id of ids) this.issuers.set(id, { recent: [], latest: -Infinity, daily: new DayCounts(), receivers: new Set() });
    // LATERAL ... ORDER BY DESC: newest first; the state keeps oldest first.
    for (const r of recent.rows.reverse()) {
      const a = scorableAmount(r.amount);
      const s = this.issuers.get(r.issuer)!;
      if (a) s.recent.push({ t: Number(r.t), receiver: r.receiver, logAmount: a.log, amountKey: a.key });
      s.latest = Math.max(s.latest, Number(r.t));
    }
    for (const r of daily.rows.sort((x, y) => x.day - y.day)) this.issuers.get(r.issuer)!.daily.add(r.day, r.n);
    for (const r of parties.rows) {
      const s = this.issuers.get(r.issuer)!;
      for (const rec of r.receivers ?? []) s.receivers.add(rec);
      if (r.first !== null) s.firstDay = dayOf(Number(r.first));
    }
  }

  /** The history of an invoice's issuer: what was issued before it (loaded first with load()). */
  historyFor(inv: SourceInvoice): History {
    const s = this.issuers.get(inv.issuer);
    if (!s) return { recent: [], daily: new DayCounts(), pairSeen: false };
    return {
      recent: s.latest < inv.t ? s.recent : s.recent.filter((p) => p.t < inv.t),
      daily: s.daily,
      // A young issuer (first invoice inside the velocity range) has a shorter baseline.
      firstDay: s.firstDay === undefined ? dayOf(inv.t) : s.firstDay > dayOf(inv.t) - DAILY_RANGE ? s.firstDay : undefined,
      pairSeen: s.receivers.has(inv.receiver),
    };
  }

  /** Adds a scored invoice to its issuer's history. */
  append(inv: SourceInvoice): void {
    const s = this.issuers.get(inv.issuer);
    if (!s) return;
    const a = scorableAmount(inv.amount);
    if (a) s.recent.push({ t: inv.t, receiver: inv.receiver, logAmount: a.log, amountKey: a.key });
    if (s.recent.length > RECENT) s.recent.shift();
    s.latest = Math.max(s.latest, inv.t);
    const day = dayOf(inv.t);
    s.daily.add(day, 1);
    if (s.firstDay === undefined || day < s.firstDay) s.firstDay = day;
    s.receivers.add(inv.receiver);
  }
}

/** An amount the model can read; a zero amount still counts for velocity and receivers, not for the amount baseline. */
function scorableAmount(amount: string): { key: string; log: number } | undefined {
  try {
    return readAmount(amount);
  } catch {
    return undefined;
  }
}

/** Median and robust spread of log amounts over a sample of the table (the fallback for issuers with thin histories). */
export async function globalStats(client: Client, src: SourceTable): Promise<GlobalStats> {
  const amount = `i.${src.col.amount}`;
  const sample = async (tablesample: string) =>
    (
      await client.query<{ median: number | null; sigma: number | null }>(
        `WITH s AS (SELECT ln(${amount}::float8) AS l FROM ${src.table} i ${tablesample} WHERE ${amount} > 0 LIMIT 20000),
              m AS (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l) AS median FROM s)
         SELECT m.median, 1.4826 * (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(s.l - m.median)) FROM s) AS sigma FROM m`,
      )
    ).rows[0];
  // 1% of the pages (the same ones each time), or, for a small table where that can be none, the first rows.
  let { median, sigma } = await sample('TABLESAMPLE SYSTEM (1) REPEATABLE (7)');
  if (median === null) ({ median, sigma } = await sample(''));
  // An empty table: a neutral prior (a few hundred dollars, wide).
  return { median: median ?? Math.log(300), sigma: Math.max(0.1, sigma ?? 1.5) };
}
