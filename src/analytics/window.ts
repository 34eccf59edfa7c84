// "The last N months": the N calendar months (UTC) ending with the month of the as-of day,
// the current, partial month included. 2026-11-25 with N=6: [2026-06-01, 2026-12-01).
import { UsageError } from '../errors.js';
import { addMonths, monthRange } from '../schema/partitions.js';

export interface Window {
  months: number;
  asOf: string;
  firstMonth: string;
  lastMonth: string;
  /** Inclusive start, ISO UTC. */
  from: string;
  /** Exclusive end, ISO UTC. */
  to: string;
}

/** The window of `months` calendar months ending with the month of asOf (YYYY-MM-DD, UTC). */
export function monthWindow(months: number, asOf: string): Window {
  if (!Number.isInteger(months) || months < 1 || months > 1200)
    throw new UsageError(`--months must be an integer from 1 to 1200, got ${months}`);
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(asOf);
  const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
  if (!m || !d || d.toISOString().slice(0, 10) !== asOf) throw new UsageError(`--as-of must be a date YYYY-MM-DD, got "${asOf}"`);
  const lastMonth = asOf.slice(0, 7);
  const firstMonth = addMonths(lastMonth, -(months - 1));
  return { months, asOf, firstMonth, lastMonth, from: `${firstMonth}-01T00:00:00Z`, to: `${addMonths(lastMonth, 1)}-01T00:00:00Z` };
}

export function windowMonths(w: Window): string[] {
  return monthRange(w.firstMonth, w.lastMonth);
}

export function describeWindow(w: Window): string {
  const lastDay = new Date(Date.parse(w.to) - 86_400_000).toISOString().slice(0, 10);
  return `${w.from.slice(0, 10)} .. ${lastDay} (the ${w.months} calendar month${w.months > 1 ? 's' : ''} ${w.firstMonth} to ${w.lastMonth}, UTC, ending with the month of ${w.asOf})`;
}
