// `invoices get --stats`: repeated lookups of one invoice, timed by how they were answered.
import type { InvoiceDetail } from '../lookup/get-invoice.js';
import type { CacheOutcome, ReadThrough } from './read-through.js';

/** The q-quantile (0..1) of samples by the nearest-rank method; NaN when there are none. */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export interface Latency {
  count: number;
  p50: number;
  p99: number;
}

/** Count, p50 and p99 of samples in milliseconds. */
export function summarize(samples: readonly number[]): Latency {
  return { count: samples.length, p50: quantile(samples, 0.5), p99: quantile(samples, 0.99) };
}

export interface LookupTimings {
  invoice: InvoiceDetail;
  /** Milliseconds per read-through lookup, by outcome. */
  byOutcome: Record<CacheOutcome, number[]>;
  /** Milliseconds per PostgreSQL lookup alone, outside the cache. */
  postgres: number[];
}

/**
 * Looks `id` up `repeat` times in each way: a miss (entry dropped first, untimed: GET, load,
 * SET), a hit (GET), and `load` alone. Leaves the entry cached with fresh data.
 */
export async function measureLookups(
  rt: ReadThrough,
  id: bigint,
  repeat: number,
  load: (id: bigint) => Promise<InvoiceDetail>,
): Promise<LookupTimings> {
  const byOutcome: Record<CacheOutcome, number[]> = { hit: [], miss: [], off: [] };
  const postgres: number[] = [];
  let invoice = await load(id); // NotFoundError before any measurement; warms the prepared statement
  for (let i = 0; i < repeat; i++) {
    let started = performance.now();
    await load(id);
    postgres.push(performance.now() - started);
    if (!rt.active) continue;
    await rt.forget(id);
    for (let pass = 0; pass < 2 && rt.active; pass++) {
      started = performance.now();
      const r = await rt.lookup(id, load);
      byOutcome[r.outcome].push(performance.now() - started);
      invoice = r.invoice;
    }
  }
  return { invoice, byOutcome, postgres };
}
