// The risk model's features, one entry each: what it computes from an invoice and its issuer's
// history (the fields of Features it sets), the reasons it adds toward the score, and its
// lines in `invoices risk explain`; computeFeatures and score run them in order. Adding a
// feature is one entry here, its fields in Features (model.ts), and its tests.
import {
  BASE_DAYS,
  DAY_MS,
  dayOf,
  medianInPlace,
  readAmount,
  THIN_HISTORY,
  UnscorableError,
  VELOCITY_WINDOWS,
  type Features,
  type GlobalStats,
  type History,
  type Invoice,
  type Reason,
  type Scored,
  type Velocity,
} from './model.js';

const DUPLICATE_DAYS = 3;
const OLD_DAYS = 730;

/** What every feature reads: the invoice, its history, and its amount read once. */
export interface FeatureInput {
  inv: Invoice;
  h: History;
  global: GlobalStats;
  now: number;
  /** The amount normalised (no trailing zeros) and its natural log. */
  amountKey: string;
  logAmount: number;
  /** The UTC day of issue (days since the epoch). */
  day: number;
}

/** Adds a reason: its code, its share of the score, its text. */
export type AddReason = (code: string, weight: number, text: string) => void;

/** One line of `risk explain`. */
export interface ExplainLine {
  feature: string;
  value: string;
}

export interface RiskFeature {
  /** Sets its fields of `into`. */
  compute(x: FeatureInput, into: Partial<Features>): void;
  /** Its reasons toward the score. */
  reasons(f: Features, add: AddReason): void;
  /** Its lines in `risk explain`. */
  explain(f: Features): ExplainLine[];
}

const money = (log: number) => Math.exp(log).toFixed(2);
let scratch = new Float64Array(128);

/** The amount against the issuer's recent amounts (robust z-score on logs), or against every issuer's when its history is thin. */
const amount: RiskFeature = {
  compute({ h, global, logAmount }, into) {
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
    into.priorInvoices = n;
    into.amountBaseline = n >= THIN_HISTORY ? 'issuer' : 'global';
    into.baselineMedian = median;
    into.amountZ = (logAmount - median) / sigma;
  },
  reasons(f, add) {
    const basis = () =>
      f.amountBaseline === 'issuer'
        ? `this issuer's median of ${money(f.baselineMedian)} over its last ${f.priorInvoices} invoices`
        : `the median of all issuers, ${money(f.baselineMedian)} (the issuer has ${f.priorInvoices} prior invoices)`;
    if (f.amountZ >= 3) add('AMOUNT_HIGH', 0.12 * (f.amountZ - 2), `amount is ${f.amountZ.toFixed(1)} robust SDs above ${basis()}`);
    else if (f.amountZ <= -4) add('AMOUNT_LOW', 0.08, `amount is ${(-f.amountZ).toFixed(1)} robust SDs below ${basis()}`);
    if (f.priorInvoices < THIN_HISTORY) add('THIN_HISTORY', 0.05, `the issuer has only ${f.priorInvoices} prior invoices`);
  },
  explain: (f) => [
    { feature: 'prior invoices of the issuer', value: `${f.priorInvoices} (amount baseline: ${f.amountBaseline})` },
    { feature: 'amount robust z-score', value: `${f.amountZ.toFixed(2)} (median ${Math.exp(f.baselineMedian).toFixed(2)})` },
  ],
};

/** The first invoice from this issuer to this receiver. */
const counterparty: RiskFeature = {
  compute({ h }, into) {
    into.newCounterparty = !h.pairSeen;
  },
  reasons(f, add) {
    if (f.newCounterparty && f.priorInvoices >= 5) add('NEW_COUNTERPARTY', 0.15, 'first invoice from this issuer to this receiver');
  },
  explain: (f) => [{ feature: 'first invoice to this receiver', value: f.newCounterparty ? 'yes' : 'no' }],
};

/** Invoices in the last 1, 7 and 30 days against the issuer's usual pace over the BASE_DAYS before. */
const velocity: RiskFeature = {
  compute({ h, day }, into) {
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
    into.velocity = VELOCITY_WINDOWS.map((days, i) => ({
      days,
      count: counts[i],
      expected: baseDays > 0 ? (base / baseDays) * days : NaN,
    }));
  },
  reasons(f, add) {
    // The strongest burst among the windows, against the issuer's usual pace.
    let burst: { v: Velocity; ratio: number } | undefined;
    for (const v of f.velocity) {
      if (!(v.expected >= 0) || v.count < 5) continue;
      const ratio = v.count / Math.max(v.expected, 0.5);
      const threshold = v.days === 1 ? 4 : v.days === 7 ? 3 : 2;
      if (ratio >= threshold && (!burst || ratio > burst.ratio)) burst = { v, ratio };
    }
    if (burst)
      add(
        `VELOCITY_${burst.v.days}D`,
        0.1 * Math.log2(burst.ratio),
        `${burst.v.count} invoices in the last ${burst.v.days === 1 ? 'day' : `${burst.v.days} days`}, ${burst.ratio.toFixed(1)}x this issuer's usual ${burst.v.expected.toFixed(1)}`,
      );
  },
  explain: (f) =>
    f.velocity.map((v) => ({
      feature: `invoices in the last ${v.days} day(s)`,
      value: `${v.count} (usual ${Number.isFinite(v.expected) ? v.expected.toFixed(1) : 'unknown: young issuer'})`,
    })),
};

/** Invoices of the same issuer to the same receiver for the same amount in the days before. */
const duplicates: RiskFeature = {
  compute({ inv, h, amountKey }, into) {
    let n = 0;
    for (const p of h.recent) if (p.receiver === inv.receiver && p.amountKey === amountKey && inv.t - p.t <= DUPLICATE_DAYS * DAY_MS) n++;
    into.nearDuplicates = n;
  },
  reasons(f, add) {
    if (f.nearDuplicates > 0)
      add(
        'NEAR_DUPLICATE',
        0.35 + 0.1 * (f.nearDuplicates - 1),
        `${f.nearDuplicates} invoice(s) with the same receiver and amount in the ${DUPLICATE_DAYS} days before`,
      );
  },
  explain: (f) => [{ feature: `same receiver and amount in ${DUPLICATE_DAYS} days`, value: String(f.nearDuplicates) }],
};

/** A whole amount that is a multiple of 100 or 1,000. */
const round: RiskFeature = {
  compute({ amountKey }, into) {
    const whole = amountKey.includes('.') ? undefined : BigInt(amountKey);
    into.round = whole === undefined || whole === 0n ? 0 : whole % 1000n === 0n ? 1000 : whole % 100n === 0n ? 100 : 0;
  },
  reasons(f, add) {
    if (f.round === 1000) add('ROUND_AMOUNT', 0.1, 'a round amount (a multiple of 1,000)');
    else if (f.round === 100) add('ROUND_AMOUNT', 0.05, 'a round amount (a multiple of 100)');
  },
  explain: (f) => [{ feature: 'round amount', value: f.round ? `multiple of ${f.round}` : 'no' }],
};

/** The issue date against now: in the future, or long ago. */
const date: RiskFeature = {
  compute({ inv, now }, into) {
    into.dateOffsetDays = (inv.t - now) / DAY_MS;
  },
  reasons(f, add) {
    if (f.dateOffsetDays > 1) add('FUTURE_DATE', 0.4, `issued ${f.dateOffsetDays.toFixed(1)} days in the future`);
    else if (f.dateOffsetDays < -OLD_DAYS) add('OLD_DATE', 0.2, `issued ${Math.round(-f.dateOffsetDays)} days ago (more than ${OLD_DAYS})`);
  },
  explain: (f) => [{ feature: 'issue date vs now (days)', value: f.dateOffsetDays.toFixed(1) }],
};

/** Every feature, in the order of the reasons and of `risk explain`. */
export const FEATURES: readonly RiskFeature[] = [amount, counterparty, velocity, duplicates, round, date];

/** The features of an invoice given its issuer's history. */
export function computeFeatures(inv: Invoice, h: History, global: GlobalStats, now: number): Features {
  if (!Number.isFinite(inv.t)) throw new UnscorableError('issue date is missing or invalid');
  const { key, log } = readAmount(inv.amount);
  const x: FeatureInput = { inv, h, global, now, amountKey: key, logAmount: log, day: dayOf(inv.t) };
  const into: Partial<Features> = {};
  for (const f of FEATURES) f.compute(x, into);
  return into as Features;
}

/** Reasons, score and level from the features: the reasons' weights combined as 1 - prod(1 - weight). */
export function score(f: Features): Scored {
  const reasons: Reason[] = [];
  const add: AddReason = (code, weight, text) => reasons.push({ code, weight: Math.min(0.95, weight), text });
  for (const feature of FEATURES) feature.reasons(f, add);
  const s = 1 - reasons.reduce((keep, r) => keep * (1 - r.weight), 1);
  const rounded = Math.round(s * 10_000) / 10_000;
  return { score: rounded, level: rounded >= 0.6 ? 'high' : rounded >= 0.3 ? 'medium' : 'low', reasons };
}

/** The lines of `risk explain` for these features, in the features' order. */
export const explainFeatures = (f: Features): ExplainLine[] => FEATURES.flatMap((feature) => feature.explain(f));
