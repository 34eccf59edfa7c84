// The risk model's vocabulary: an invoice, its issuer's history, the features (computed by
// the entries of features.ts, which also combines their reasons into a score in 0..1 and a
// level) and the statistics they need. Pure: no database, no clock (the caller passes `now`).
// Amounts arrive as decimal strings; only their logarithm, a statistic, is a float.

export const MODEL_VERSION = 'v1';
/** How many of the issuer's latest invoices the amount and duplicate features look at. */
export const RECENT = 64;
/** Fewer prior invoices than this: the amount is judged against global statistics. */
export const THIN_HISTORY = 8;
/** The velocity baseline: the issuer's pace over this many days before the 30-day window. */
export const BASE_DAYS = 90;
export const VELOCITY_WINDOWS = [1, 7, 30] as const;
export const DAY_MS = 86_400_000;

export interface Invoice {
  id: string;
  /** Issue time, ms since the epoch (UTC). */
  t: number;
  issuer: string;
  receiver: string;
  /** Exact decimal string, as PostgreSQL prints it. */
  amount: string;
}

/** One prior invoice of the issuer, as the features need it. */
export interface Prior {
  t: number;
  receiver: string;
  logAmount: number;
  /** The amount normalised (no trailing zeros) so that 10.50 and 10.5 compare equal. */
  amountKey: string;
}

/** What was known before the invoice: its issuer's history. */
export interface History {
  /** The issuer's latest invoices before this one, oldest first, at most RECENT. */
  recent: readonly Prior[];
  /** Prior invoices per UTC day (days since the epoch), covering at least BASE_DAYS + 30 days back. */
  daily: DailyCounts;
  /** The first UTC day the issuer invoiced, when it is inside the daily range (a young issuer). */
  firstDay?: number;
  /** The issuer has invoiced this receiver before. */
  pairSeen: boolean;
}

/** Invoices per UTC day (a Map will do). */
export interface DailyCounts {
  get(day: number): number | undefined;
}

/** Median and robust spread of log amounts over many issuers: the fallback for thin histories. */
export interface GlobalStats {
  median: number;
  sigma: number;
}

export interface Velocity {
  days: number;
  count: number;
  expected: number;
}

export interface Features {
  priorInvoices: number;
  amountBaseline: 'issuer' | 'global';
  baselineMedian: number;
  amountZ: number;
  newCounterparty: boolean;
  velocity: Velocity[];
  nearDuplicates: number;
  round: 0 | 100 | 1000;
  dateOffsetDays: number;
}

export type Level = 'low' | 'medium' | 'high';

export interface Reason {
  code: string;
  /** This reason's share of the score, combined as 1 - prod(1 - weight). */
  weight: number;
  text: string;
}

export interface Scored {
  score: number;
  level: Level;
  reasons: Reason[];
}

/** Thrown for an invoice the model cannot score: it goes to the dead-letter table. */
export class UnscorableError extends Error {}

/** Days since the epoch (UTC) of a time in ms. */
export const dayOf = (t: number): number => Math.floor(t / DAY_MS);

/** The normalised amount and its natural log; throws UnscorableError for what is not a positive decimal. */
export function readAmount(amount: string): { key: string; log: number } {
  if (!/^\d+(\.\d+)?$/.test(amount)) throw new UnscorableError(`amount "${amount}" is not a positive decimal`);
  const key = amount.includes('.') ? amount.replace(/0+$/, '').replace(/\.$/, '') : amount;
  const value = Number(key);
  if (!(value > 0) || !Number.isFinite(value))
    throw new UnscorableError(`amount ${amount} cannot be scored: the model needs an amount above zero`);
  return { key, log: Math.log(value) };
}

/** Median of a non-empty list. */
export function medianOf(values: readonly number[]): number {
  return medianInPlace(Float64Array.from(values), values.length);
}

/** Median of the first n values of a buffer, which it reorders (quickselect: no sort, no allocation). */
export function medianInPlace(a: Float64Array, n: number): number {
  const mid = n >> 1;
  const upper = select(a, n, mid);
  if (n % 2) return upper;
  // The lower middle is the largest value left of mid after the partition.
  let lower = -Infinity;
  for (let i = 0; i < mid; i++) if (a[i] > lower) lower = a[i];
  return (lower + upper) / 2;
}

/** The k-th smallest of a[0..n), moving smaller values before k (Hoare's selection). */
function select(a: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k];
}
