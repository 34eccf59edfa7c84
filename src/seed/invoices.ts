// Invoices with a realistic shape, generated in issue-date order (ids grow with time, as a
// serial id would) in constant memory:
// - skewed activity: issuers and receivers drawn from Zipf distributions over customers;
// - log-normal amounts in whole cents, each issuer with its own typical size, a few round sums;
// - more invoices at month ends, in seasonal peaks (Nov-Dec, quarter ends), fewer on weekends,
//   and a business that grows ~3% a month.
import { AliasTable, Random, zipfWeights } from './random.js';

const DAY_MICROS = 86_400_000_000;
/** The largest amount, in cents, of this tool's numeric(14,2). */
export const MAX_CENTS = 99_999_999_999_999;
/** Relative invoice volume per calendar month, January first. */
const SEASON = [0.9, 0.95, 1.1, 1.0, 1.0, 1.08, 0.88, 0.85, 1.05, 1.05, 1.18, 1.28];
const MONTHLY_GROWTH = 1.03;

export interface InvoiceRow {
  id: number;
  issueMicros: number;
  issuerId: number;
  receiverId: number;
  cents: number;
}

export interface InvoicePlan {
  count: number;
  firstId: number;
  firstCustomerId: number;
  customers: number;
  /** Issue dates fall in [startMicros, endMicros), both at midnight UTC. */
  startMicros: number;
  endMicros: number;
  seed: number | string;
  /** An adopted table's narrower amount column: the largest amount it holds, in cents (default MAX_CENTS). */
  maxCents?: number;
  /** Amounts in multiples of this many cents, for a scale under 2 (numeric(12,0): 100). */
  centsStep?: number;
}

/** Issuer popularity: Zipf exponent and the permutation from rank to customer index. */
export function issuerOrder(seed: number | string, customers: number): Int32Array {
  return new Random(seed, 2).permutation(customers);
}

/**
 * The plan's issue dates in ascending order, from their own random stream (so the invoice_ids
 * locator can be written in a second pass without generating whole invoices again).
 */
export class IssueDates {
  private readonly rng: Random;
  private readonly cum: Float64Array;
  private readonly days: number;
  private i = 0;
  private day = 0;
  /** Running product for sorted uniforms: the max of the remaining k uniforms is cur * U^(1/k). */
  private cur = 1;

  constructor(private readonly plan: Pick<InvoicePlan, 'count' | 'startMicros' | 'endMicros' | 'seed'>) {
    this.rng = new Random(plan.seed, 6);
    this.days = Math.round((plan.endMicros - plan.startMicros) / DAY_MICROS);
    this.cum = new Float64Array(this.days + 1);
    const start = plan.startMicros / 1000;
    for (let d = 0; d < this.days; d++) this.cum[d + 1] = this.cum[d] + dayWeight(new Date(start + d * 86_400_000), d / 30.44);
  }

  /** Microseconds since the Unix epoch of the next invoice; call at most `count` times. */
  next(): number {
    const remaining = this.plan.count - this.i++;
    // cur *= U^(1/k) = exp(ln U / k); for the tiny exponents of large k a cubic is exact to double precision.
    const e = Math.log(1 - this.rng.next()) / remaining;
    this.cur *= e > -1e-4 ? 1 + e * (1 + e * (0.5 + e / 6)) : Math.exp(e);
    // 1 - cur runs through sorted uniforms in ascending order; map through the day-weight CDF.
    const x = (1 - this.cur) * this.cum[this.days];
    while (this.day < this.days - 1 && this.cum[this.day + 1] <= x) this.day++;
    const w = this.cum[this.day + 1] - this.cum[this.day];
    const within = Math.min(Math.max((x - this.cum[this.day]) / w, 0), 0.999999999);
    return this.plan.startMicros + this.day * DAY_MICROS + Math.floor(within * DAY_MICROS);
  }
}

/** Fills `row` with the next invoice; returns false when the plan is exhausted. */
export class InvoiceGenerator {
  private readonly rng: Random;
  private readonly dates: IssueDates;
  private readonly issuers: AliasTable;
  private readonly receivers: AliasTable;
  private readonly issuerPerm: Int32Array;
  private readonly receiverPerm: Int32Array;
  /** Typical log amount of each issuer, by popularity rank (hot ranks stay in cache). */
  private readonly issuerMu: Float32Array;
  private i = 0;

  constructor(private readonly plan: InvoicePlan) {
    const n = plan.customers;
    this.rng = new Random(plan.seed, 3);
    this.issuerPerm = issuerOrder(plan.seed, n);
    this.receiverPerm = new Random(plan.seed, 4).permutation(n);
    this.issuers = new AliasTable(zipfWeights(n, 1.1));
    this.receivers = new AliasTable(zipfWeights(n, 0.9));
    const muRng = new Random(plan.seed, 5);
    this.issuerMu = new Float32Array(n);
    for (let c = 0; c < n; c++) this.issuerMu[c] = Math.log(320) + 0.9 * muRng.normal();
    this.dates = new IssueDates(plan);
  }

  next(row: InvoiceRow): boolean {
    const { plan, rng } = this;
    if (this.i >= plan.count) return false;

    const issuerRank = this.issuers.draw(rng);
    const issuerIdx = this.issuerPerm[issuerRank];
    let receiverIdx = this.receiverPerm[this.receivers.draw(rng)];
    while (receiverIdx === issuerIdx) receiverIdx = this.receiverPerm[this.receivers.draw(rng)];

    let cents = Math.round(Math.exp(this.issuerMu[issuerRank] + 0.75 * rng.normal()) * 100);
    if (rng.next() < 0.03 && cents >= 10_000) cents = Math.round(cents / 10_000) * 10_000; // round hundreds
    cents = Math.min(Math.max(cents, 50), MAX_CENTS);
    if (plan.centsStep !== undefined && plan.centsStep > 1)
      cents = Math.max(plan.centsStep, Math.round(cents / plan.centsStep) * plan.centsStep);
    if (plan.maxCents !== undefined) cents = Math.min(cents, plan.maxCents);

    row.id = plan.firstId + this.i;
    row.issueMicros = this.dates.next();
    row.issuerId = plan.firstCustomerId + issuerIdx;
    row.receiverId = plan.firstCustomerId + receiverIdx;
    row.cents = cents;
    this.i++;
    return true;
  }
}

/** Relative volume of one day: season, month end, weekend, growth. */
function dayWeight(date: Date, monthsFromStart: number): number {
  const month = date.getUTCMonth();
  const dom = date.getUTCDate();
  const daysInMonth = new Date(Date.UTC(date.getUTCFullYear(), month + 1, 0)).getUTCDate();
  const toEnd = daysInMonth - dom;
  const monthEnd = toEnd === 0 ? 2.4 : toEnd === 1 ? 1.8 : toEnd === 2 ? 1.4 : dom === 1 ? 1.3 : 1;
  const quarterEnd = toEnd < 3 && month % 3 === 2 ? 1.3 : 1;
  const dow = date.getUTCDay();
  const weekend = dow === 0 || dow === 6 ? 0.35 : 1;
  return SEASON[month] * monthEnd * quarterEnd * weekend * Math.pow(MONTHLY_GROWTH, monthsFromStart);
}
