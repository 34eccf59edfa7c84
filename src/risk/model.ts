// The risk model: explainable features of one invoice, computed only from what was issued
// before it (its issuer's history), combined into a score in 0..1, a level and reason codes.
// Pure: no database, no clock (the caller passes `now`). Amounts arrive as decimal strings;
// only their logarithm, a statistic, is a float.

export const MODEL_VERSION = 'v1';
/** How many of the issuer's latest invoices the amount and duplicate features look at. */
export const RECENT = 64;
/** Fewer prior invoices than this: the amount is judged against global statistics. */
export const THIN_HISTORY = 8;
/** The velocity baseline: the issuer's pace over this many days before the 30-day window. */
export const BASE_DAYS = 90;
export const VELOCITY_WINDOWS = [1, 7, 30] as const;
export const DAY_MS = 86_400_000;
const DUPLICATE_DAYS = 3;
const OLD_DAYS = 730;

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
  if (!(value > 0) || !Number.isFinite(value)) throw new UnscorableError(`amount ${amount} cannot be scored: the model needs an amount above zero`);
  return { key, log: Math.log(value) };
}

/** The features of an invoice given its issuer's history. */
export function computeFeatures(inv: Invoice, h: History, global: GlobalStats, now: number): Features {
  if (!Number.isFinite(inv.t)) throw new UnscorableError('issue date is missing or invalid');
  const { key, log } = readAmount(inv.amount);
  const n = h.recent.length;
  let median = global.median;
  let sigma = global.sigma;
  if (n >= THIN_HISTORY) {
    const logs = scratch.length >= n ? scratch : (scratch = new Float64Array(n * 2));
    for (let i = 0; i < n; i++) logs[i] = h.recent[i].logAmount;
    median = medianInPlace(logs, n);
    for (let i = 0; i < n; i++) logs[i] = Math.abs(h.recent[i].logAmount - median);
    // 1.4826 * MAD estimates a standard deviation; the floor keeps an issuer that always bills
    // the same amount from flagging a cent's difference.
    sigma = Math.max(0.1, 1.4826 * medianInPlace(logs, n));
  }
  const day = dayOf(inv.t);
  // The usual pace: invoices in the BASE_DAYS before the 30-day window, per day of history.
  const baseEnd = day - 30;
  const baseStart = Math.max(baseEnd - BASE_DAYS + 1, h.firstDay ?? -Infinity);
  let base = 0;
  for (let d = baseStart; d <= baseEnd; d++) base += h.daily.get(d) ?? 0;
  const baseDays = baseEnd - baseStart + 1;
  const counts = [0, 0, 0];
  for (let back = 0; back < 30; back++) {
    const n = h.daily.get(day - back) ?? 0;
    if (back < 1) counts[0] += n;
    if (back < 7) counts[1] += n;
    counts[2] += n;
  }
  const velocity = VELOCITY_WINDOWS.map((days, i) => ({ days, count: counts[i], expected: baseDays > 0 ? (base / baseDays) * days : NaN }));
  let nearDuplicates = 0;
  for (const p of h.recent) if (p.receiver === inv.receiver && p.amountKey === key && inv.t - p.t <= DUPLICATE_DAYS * DAY_MS) nearDuplicates++;
  const whole = key.includes('.') ? undefined : BigInt(key);
  const round = whole === undefined || whole === 0n ? 0 : whole % 1000n === 0n ? 1000 : whole % 100n === 0n ? 100 : 0;
  return {
    priorInvoices: n,
    amountBaseline: n >= THIN_HISTORY ? 'issuer' : 'global',
    baselineMedian: median,
    amountZ: (log - median) / sigma,
    newCounterparty: !h.pairSeen,
    velocity,
    nearDuplicates,
    round,
    dateOffsetDays: (inv.t - now) / DAY_MS,
  };
}

const money = (log: number) => Math.exp(log).toFixed(2);

/** Reasons, score and level from the features. */
export function score(f: Features): Scored {
  const reasons: Reason[] = [];
  const add = (code: string, weight: number, text: string) => reasons.push({ code, weight: Math.min(0.95, weight), text });
  const basis = () => f.amountBaseline === 'issuer' ? `this issuer's median of ${money(f.baselineMedian)} over its last ${f.priorInvoices} invoices` : `the median of all issuers, ${money(f.baselineMedian)} (the issuer has ${f.priorInvoices} prior invoices)`;
  if (f.amountZ >= 3) add('AMOUNT_HIGH', 0.12 * (f.amountZ - 2), `amount is ${f.amountZ.toFixed(1)} robust SDs above ${basis()}`);
  else if (f.amountZ <= -4) add('AMOUNT_LOW', 0.08, `amount is ${(-f.amountZ).toFixed(1)} robust SDs below ${basis()}`);
  if (f.priorInvoices < THIN_HISTORY) add('THIN_HISTORY', 0.05, `the issuer has only ${f.priorInvoices} prior invoices`);
  if (f.newCounterparty && f.priorInvoices >= 5) add('NEW_COUNTERPARTY', 0.15, 'first invoice from this issuer to this receiver');
  // The strongest burst among the windows, against the issuer's usual pace.
  let burst: { v: Velocity; ratio: number } | undefined;
  for (const v of f.velocity) {
    if (!(v.expected >= 0) || v.count < 5) continue;
    const ratio = v.count / Math.max(v.expected, 0.5);
    const threshold = v.days === 1 ? 4 : v.days === 7 ? 3 : 2;
    if (ratio >= threshold && (!burst || ratio > burst.ratio)) burst = { v, ratio };
  }
  if (burst) add(`VELOCITY_${burst.v.days}D`, 0.1 * Math.log2(burst.ratio), `${burst.v.count} invoices in the last ${burst.v.days === 1 ? 'day' : `${burst.v.days} days`}, ${burst.ratio.toFixed(1)}x this issuer's usual ${burst.v.expected.toFixed(1)}`);
  if (f.nearDuplicates > 0) add('NEAR_DUPLICATE', 0.35 + 0.1 * (f.nearDuplicates - 1), `${f.nearDuplicates} invoice(s) with the same receiver and amount in the ${DUPLICATE_DAYS} days before`);
  if (f.round === 1000) add('ROUND_AMOUNT', 0.1, 'a round amount (a multiple of 1,000)');
  else if (f.round === 100) add('ROUND_AMOUNT', 0.05, 'a round amount (a multiple of 100)');
  if (f.dateOffsetDays > 1) add('FUTURE_DATE', 0.4, `issued ${f.dateOffsetDays.toFixed(1)} days in the future`);
  else if (f.dateOffsetDays < -OLD_DAYS) add('OLD_DATE', 0.2, `issued ${Math.round(-f.dateOffsetDays)} days ago (more than ${OLD_DAYS})`);
  const s = 1 - reasons.reduce((keep, r) => keep * (1 - r.weight), 1);
  const rounded = Math.round(s * 10_000) / 10_000;
  return { score: rounded, level: rounded >= 0.6 ? 'high' : rounded >= 0.3 ? 'medium' : 'low', reasons };
}

/** Median of a non-empty list. */
export function medianOf(values: readonly number[]): number {
  return medianInPlace(Float64Array.from(values), values.length);
}

let scratch = new Float64Array(2 * RECENT);

/** Median of the first n values of a buffer, which it reorders (quickselect: no sort, no allocation). */
function medianInPlace(a: Float64Array, n: number): number {
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
