// The risk model's features, one at a time, on hand-made issuer histories: pure functions, no database.
import { describe, expect, it } from 'vitest';
import { computeFeatures, score } from '../../src/risk/features.js';
import {
  DAY_MS,
  dayOf,
  medianOf,
  readAmount,
  THIN_HISTORY,
  UnscorableError,
  type DailyCounts,
  type Features,
  type GlobalStats,
  type History,
  type Invoice,
  type Prior,
} from '../../src/risk/model.js';

const NOW = Date.UTC(2026, 0, 15, 12); // 2026-01-15T12:00Z
const T = NOW - 2 * DAY_MS; // the invoice under test: two days before "now"
const GLOBAL: GlobalStats = { median: Math.log(300), sigma: 1.5 };

const inv = (amount: string, o: Partial<Invoice> = {}): Invoice => ({ id: '1', t: T, issuer: '10', receiver: '20', amount, ...o });

const prior = (t: number, receiver: string, amount: string): Prior => {
  const a = readAmount(amount);
  return { t, receiver, logAmount: a.log, amountKey: a.key };
};

/** Per-day counts from a plain object or Map of day -> count. */
const days = (m: Map<number, number> = new Map()): DailyCounts => m;

const hist = (o: Partial<History> = {}): History => ({ recent: [], daily: days(), pairSeen: true, ...o });

/** n priors, one a day before T, to other receivers, with these amounts in turn. */
const priors = (n: number, amounts: string[], receiver = '99'): Prior[] =>
  Array.from({ length: n }, (_, i) => prior(T - (n - i) * DAY_MS - 3 * DAY_MS, receiver, amounts[i % amounts.length]));

const codes = (f: Features) => score(f).reasons.map((r) => r.code);

/** The reference median: sort a copy. */
const sortMedian = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

describe('amount: robust z-score of the log amount against the issuer (AMOUNT_HIGH, AMOUNT_LOW)', () => {
  const amounts = ['80', '90', '95', '100', '100', '105', '110', '120', '130', '85', '98', '102'];
  const h = hist({ recent: priors(24, amounts) });
  const logs = h.recent.map((p) => p.logAmount);
  const median = sortMedian(logs);
  const sigma = Math.max(0.1, 1.4826 * sortMedian(logs.map((l) => Math.abs(l - median))));

  it("is (log amount - median) / (1.4826 * MAD) over the issuer's own invoices", () => {
    const f = computeFeatures(inv('5000'), h, GLOBAL, NOW);
    expect(f.priorInvoices).toBe(24);
    expect(f.amountBaseline).toBe('issuer');
    expect(f.baselineMedian).toBeCloseTo(median, 12);
    expect(f.amountZ).toBeCloseTo((Math.log(5000) - median) / sigma, 10);
    expect(f.amountZ).toBeGreaterThan(3);
    const s = score(f);
    const high = s.reasons.find((r) => r.code === 'AMOUNT_HIGH')!;
    expect(high.weight).toBeCloseTo(Math.min(0.95, 0.12 * (f.amountZ - 2)), 10);
    expect(high.text).toContain("robust SDs above this issuer's median of 100.00 over its last 24 invoices");
  });

  it('an amount near the median raises nothing; a tiny one is AMOUNT_LOW', () => {
    const usual = computeFeatures(inv('101.37'), h, GLOBAL, NOW);
    expect(Math.abs(usual.amountZ)).toBeLessThan(1);
    expect(codes(usual)).toEqual([]);
    const low = computeFeatures(inv('0.50'), h, GLOBAL, NOW);
    expect(low.amountZ).toBeLessThanOrEqual(-4);
    expect(codes(low)).toContain('AMOUNT_LOW');
    expect(codes(low)).not.toContain('AMOUNT_HIGH');
  });

  it('an issuer that always bills the same amount has a spread floor: a cent more is not an outlier', () => {
    const same = hist({ recent: priors(20, ['100.00']) });
    const f = computeFeatures(inv('100.01'), same, GLOBAL, NOW);
    expect(f.amountZ).toBeCloseTo(Math.log(100.01 / 100) / 0.1, 10);
    expect(codes(f)).not.toContain('AMOUNT_HIGH');
  });

  it('only the invoices in the history count: the latest of them, whatever their order of amounts', () => {
    const shuffled = hist({ recent: [...h.recent].reverse() });
    expect(computeFeatures(inv('5000'), shuffled, GLOBAL, NOW).amountZ).toBeCloseTo(
      computeFeatures(inv('5000'), h, GLOBAL, NOW).amountZ,
      12,
    );
  });
});

describe('thin history: the amount is judged against the global statistics (THIN_HISTORY)', () => {
  it(`fewer than ${THIN_HISTORY} prior invoices: baseline global, z against the global median and sigma`, () => {
    const h = hist({ recent: priors(3, ['10', '12', '11']) });
    const f = computeFeatures(inv('900'), h, GLOBAL, NOW);
    expect(f.priorInvoices).toBe(3);
    expect(f.amountBaseline).toBe('global');
    expect(f.baselineMedian).toBe(GLOBAL.median);
    expect(f.amountZ).toBeCloseTo((Math.log(900) - GLOBAL.median) / GLOBAL.sigma, 12);
    const thin = score(f).reasons.find((r) => r.code === 'THIN_HISTORY')!;
    expect(thin).toMatchObject({ weight: 0.05, text: 'the issuer has only 3 prior invoices' });
  });

  it(`exactly ${THIN_HISTORY} prior invoices: the issuer's own baseline, no THIN_HISTORY`, () => {
    const f = computeFeatures(inv('11'), hist({ recent: priors(THIN_HISTORY, ['10', '12', '11']) }), GLOBAL, NOW);
    expect(f.amountBaseline).toBe('issuer');
    expect(f.baselineMedian).toBeCloseTo(Math.log(11), 12);
    expect(codes(f)).not.toContain('THIN_HISTORY');
  });

  it('a first invoice ever: zero priors, global baseline, a new counterparty that is not flagged yet', () => {
    const f = computeFeatures(inv('299.99'), { recent: [], daily: days(), pairSeen: false, firstDay: dayOf(T) }, GLOBAL, NOW);
    expect(f).toMatchObject({ priorInvoices: 0, amountBaseline: 'global', newCounterparty: true, nearDuplicates: 0, round: 0 });
    expect(f.amountZ).toBeCloseTo(0, 4);
    expect(codes(f)).toEqual(['THIN_HISTORY']);
  });
});

describe('first invoice between issuer and receiver (NEW_COUNTERPARTY)', () => {
  const recent = priors(10, ['100', '110', '95']);
  it('flagged when the pair was never seen and the issuer has at least 5 prior invoices', () => {
    const f = computeFeatures(inv('100'), hist({ recent, pairSeen: false }), GLOBAL, NOW);
    expect(f.newCounterparty).toBe(true);
    expect(score(f).reasons.find((r) => r.code === 'NEW_COUNTERPARTY')).toMatchObject({
      weight: 0.15,
      text: 'first invoice from this issuer to this receiver',
    });
  });
  it('not flagged for a receiver invoiced before', () => {
    const f = computeFeatures(inv('100'), hist({ recent, pairSeen: true }), GLOBAL, NOW);
    expect(f.newCounterparty).toBe(false);
    expect(codes(f)).not.toContain('NEW_COUNTERPARTY');
  });
  it('not flagged for an issuer with fewer than 5 prior invoices (every receiver is new to it)', () => {
    const f = computeFeatures(inv('300'), hist({ recent: priors(4, ['300']), pairSeen: false }), GLOBAL, NOW);
    expect(f.newCounterparty).toBe(true);
    expect(codes(f)).not.toContain('NEW_COUNTERPARTY');
  });
});

describe("velocity over 1, 7 and 30 days against the issuer's usual pace (VELOCITY_*D)", () => {
  const D = dayOf(T);
  /** Counts per day relative to D: base(back) for the baseline days, recent(back) for the last 30. */
  const daily = (perDay: (back: number) => number) => {
    const m = new Map<number, number>();
    for (let back = 0; back < 200; back++) if (perDay(back)) m.set(D - back, perDay(back));
    return days(m);
  };
  const steady = (back: number) => (back >= 30 ? 1 : 0); // one a day in the 90-day baseline, D-119..D-30
  const recent = priors(20, ['100']);
  const velocity = (perDay: (back: number) => number, firstDay?: number) =>
    computeFeatures(inv('100'), hist({ recent, daily: daily(perDay), firstDay }), GLOBAL, NOW);

  it('the usual pace raises nothing; expected counts are the baseline rate times the window', () => {
    const f = velocity((b) => 1 + 0 * b);
    expect(f.velocity).toEqual([
      { days: 1, count: 1, expected: 1 },
      { days: 7, count: 7, expected: 7 },
      { days: 30, count: 30, expected: 30 },
    ]);
    expect(codes(f).filter((c) => c.startsWith('VELOCITY'))).toEqual([]);
  });

  it('a burst today: VELOCITY_1D', () => {
    const f = velocity((b) => (b === 0 ? 8 : 1));
    expect(f.velocity.map((v) => v.count)).toEqual([8, 14, 37]);
    const r = score(f).reasons.filter((x) => x.code.startsWith('VELOCITY'));
    expect(r.map((x) => x.code)).toEqual(['VELOCITY_1D']);
    expect(r[0].weight).toBeCloseTo(0.1 * Math.log2(8), 10);
    expect(r[0].text).toBe("8 invoices in the last day, 8.0x this issuer's usual 1.0");
  });

  it('a burst this week: VELOCITY_7D', () => {
    const f = velocity((b) => (b === 0 ? 0 : b < 7 ? 4 : 1));
    expect(f.velocity.map((v) => v.count)).toEqual([0, 24, 47]);
    expect(codes(f).filter((c) => c.startsWith('VELOCITY'))).toEqual(['VELOCITY_7D']);
  });

  it('a busy month: VELOCITY_30D', () => {
    const f = velocity((b) => (b === 0 ? 0 : b < 30 ? 3 : 1));
    expect(f.velocity.map((v) => v.count)).toEqual([0, 18, 87]);
    expect(codes(f).filter((c) => c.startsWith('VELOCITY'))).toEqual(['VELOCITY_30D']);
  });

  it('the strongest of several bursts wins, and fewer than 5 invoices never count as a burst', () => {
    const both = velocity((b) => (b === 0 ? 20 : b < 7 ? 4 : steady(b)));
    expect(codes(both).filter((c) => c.startsWith('VELOCITY'))).toEqual(['VELOCITY_1D']);
    const few = velocity((b) => (b === 0 ? 4 : steady(b)));
    expect(few.velocity[0]).toEqual({ days: 1, count: 4, expected: 1 });
    expect(codes(few).filter((c) => c.startsWith('VELOCITY'))).toEqual([]);
  });

  it('a quiet issuer: the baseline rate is floored, so 5 invoices in a day after none is a burst', () => {
    const f = velocity((b) => (b === 0 ? 5 : 0));
    expect(f.velocity[0]).toEqual({ days: 1, count: 5, expected: 0 });
    const r = score(f).reasons.find((x) => x.code === 'VELOCITY_1D')!;
    expect(r.weight).toBeCloseTo(0.1 * Math.log2(10), 10);
  });

  it('a young issuer: the baseline covers only the days since its first invoice, or is unknown', () => {
    // First invoice 59 days ago: the baseline is D-59..D-30 (30 days), 2 a day.
    const young = velocity((b) => (b >= 30 && b <= 59 ? 2 : 0), D - 59);
    expect(young.velocity.map((v) => v.expected)).toEqual([2, 14, 60]);
    // First invoice inside the 30-day window: no baseline at all, no velocity reason.
    const newborn = velocity((b) => (b <= 2 ? 10 : 0), D - 2);
    expect(newborn.velocity.map((v) => v.count)).toEqual([10, 30, 30]);
    expect(newborn.velocity.every((v) => Number.isNaN(v.expected))).toBe(true);
    expect(codes(newborn).filter((c) => c.startsWith('VELOCITY'))).toEqual([]);
  });
});

describe('near-duplicates: same receiver and amount within 3 days (NEAR_DUPLICATE)', () => {
  const base = priors(10, ['100', '110', '95']);
  const f = (extra: Prior[], amount = '250.00') =>
    computeFeatures(inv(amount, { receiver: '20' }), hist({ recent: [...base, ...extra] }), GLOBAL, NOW);

  it('one a day before, the amount written differently (250 vs 250.00): one near-duplicate', () => {
    const one = f([prior(T - DAY_MS, '20', '250')]);
    expect(one.nearDuplicates).toBe(1);
    expect(score(one).reasons.find((r) => r.code === 'NEAR_DUPLICATE')).toMatchObject({
      weight: 0.35,
      text: '1 invoice(s) with the same receiver and amount in the 3 days before',
    });
  });
  it('two of them weigh more; exactly 3 days before still counts', () => {
    const two = f([prior(T - 3 * DAY_MS, '20', '250.0'), prior(T - 60_000, '20', '250.00')]);
    expect(two.nearDuplicates).toBe(2);
    expect(score(two).reasons.find((r) => r.code === 'NEAR_DUPLICATE')!.weight).toBeCloseTo(0.45, 10);
  });
  it('not: older than 3 days, another receiver, another amount', () => {
    const none = f([prior(T - 3 * DAY_MS - 1, '20', '250'), prior(T - DAY_MS, '21', '250'), prior(T - DAY_MS, '20', '250.01')]);
    expect(none.nearDuplicates).toBe(0);
    expect(codes(none)).not.toContain('NEAR_DUPLICATE');
  });
});

describe('round amounts (ROUND_AMOUNT)', () => {
  const h = hist({ recent: priors(10, ['1000', '3000', '5000', '300']) });
  const round = (amount: string) => computeFeatures(inv(amount), h, GLOBAL, NOW);
  it.each([
    ['5000', 1000, 0.1],
    ['5000.00', 1000, 0.1],
    ['12000', 1000, 0.1],
    ['300', 100, 0.05],
    ['300.0', 100, 0.05],
    ['300.50', 0, 0],
    ['350', 0, 0],
    ['999', 0, 0],
    ['0.01', 0, 0],
  ] as const)('%s: multiple of %i', (amount, expected, weight) => {
    const f = round(amount);
    expect(f.round).toBe(expected);
    const r = score(f).reasons.find((x) => x.code === 'ROUND_AMOUNT');
    if (weight) expect(r?.weight).toBe(weight);
    else expect(r).toBeUndefined();
  });
});

describe('issue date against now (FUTURE_DATE, OLD_DATE)', () => {
  const h = hist({ recent: priors(10, ['100']) });
  const at = (t: number) => computeFeatures(inv('101', { t }), h, GLOBAL, NOW);
  it('more than a day in the future', () => {
    const f = at(NOW + 2.5 * DAY_MS);
    expect(f.dateOffsetDays).toBeCloseTo(2.5, 10);
    expect(score(f).reasons.find((r) => r.code === 'FUTURE_DATE')).toMatchObject({ weight: 0.4, text: 'issued 2.5 days in the future' });
    expect(codes(at(NOW + 0.9 * DAY_MS))).not.toContain('FUTURE_DATE');
  });
  it('more than 730 days in the past', () => {
    const f = at(NOW - 800 * DAY_MS);
    expect(f.dateOffsetDays).toBeCloseTo(-800, 10);
    expect(score(f).reasons.find((r) => r.code === 'OLD_DATE')).toMatchObject({ weight: 0.2, text: 'issued 800 days ago (more than 730)' });
    expect(codes(at(NOW - 700 * DAY_MS))).toEqual([]);
  });
});

describe('score and level', () => {
  const levelOf = (s: number) => (s >= 0.6 ? 'high' : s >= 0.3 ? 'medium' : 'low');

  it('no reason: 0, low', () => {
    expect(score(computeFeatures(inv('101'), hist({ recent: priors(10, ['100']) }), GLOBAL, NOW))).toEqual({
      score: 0,
      level: 'low',
      reasons: [],
    });
  });

  it('reasons combine as 1 - prod(1 - weight), rounded to 4 places; many reasons make a high score', () => {
    const recent = [...priors(20, ['100', '105', '95']), prior(T - DAY_MS, '20', '90000')];
    const f = computeFeatures(inv('90000', { t: NOW + 3 * DAY_MS }), hist({ recent, pairSeen: false }), GLOBAL, NOW);
    const s = score(f);
    expect(s.reasons.map((r) => r.code).sort()).toEqual(['AMOUNT_HIGH', 'FUTURE_DATE', 'NEW_COUNTERPARTY', 'ROUND_AMOUNT']);
    const expected = 1 - s.reasons.reduce((k, r) => k * (1 - r.weight), 1);
    expect(s.score).toBe(Math.round(expected * 10_000) / 10_000);
    expect(s.level).toBe('high');
  });

  it('on random features: a score in 0..1 with 4 decimals, the level from the 0.3 / 0.6 thresholds, each weight at most 0.95', () => {
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const f: Features = {
        priorInvoices: Math.floor(rnd() * 70),
        amountBaseline: rnd() < 0.5 ? 'issuer' : 'global',
        baselineMedian: rnd() * 10,
        amountZ: (rnd() - 0.4) * 40,
        newCounterparty: rnd() < 0.3,
        velocity: [1, 7, 30].map((d) => ({ days: d, count: Math.floor(rnd() * 200), expected: rnd() < 0.1 ? NaN : rnd() * 10 * d })),
        nearDuplicates: rnd() < 0.8 ? 0 : Math.floor(rnd() * 30),
        round: ([0, 100, 1000] as const)[Math.floor(rnd() * 3)],
        dateOffsetDays: (rnd() - 0.7) * 3000,
      };
      const s = score(f);
      expect(s.score).toBeGreaterThanOrEqual(0);
      expect(s.score).toBeLessThanOrEqual(1);
      expect(Math.round(s.score * 10_000) / 10_000).toBe(s.score);
      expect(s.level).toBe(levelOf(s.score));
      for (const r of s.reasons) {
        expect(r.weight).toBeGreaterThan(0);
        expect(r.weight).toBeLessThanOrEqual(0.95);
        expect(r.text.length).toBeGreaterThan(0);
      }
      seen.add(s.level);
    }
    expect([...seen].sort()).toEqual(['high', 'low', 'medium']);
  });
});

describe('medianOf', () => {
  it('equals a sort-based median on random inputs of odd and even lengths, with and without ties', () => {
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let n = 1; n <= 130; n++) {
      for (const kind of ['floats', 'ties', 'sorted', 'reversed'] as const) {
        let v = Array.from({ length: n }, () => (kind === 'ties' ? Math.floor(rnd() * 4) : (rnd() - 0.5) * 1e6));
        if (kind === 'sorted') v = v.sort((a, b) => a - b);
        if (kind === 'reversed') v = v.sort((a, b) => b - a);
        const copy = [...v];
        expect(medianOf(v), `${kind} n=${n}: ${v.join(',')}`).toBe(sortMedian(v));
        expect(v).toEqual(copy); // the input is not reordered
      }
    }
  });
  it('small cases', () => {
    expect(medianOf([5])).toBe(5);
    expect(medianOf([2, 1])).toBe(1.5);
    expect(medianOf([3, 1, 2])).toBe(2);
    expect(medianOf([4, 1, 3, 2])).toBe(2.5);
    expect(medianOf([1, 1, 1, 9])).toBe(1);
  });
});

describe('readAmount', () => {
  it('normalises trailing zeros and gives the natural log', () => {
    expect(readAmount('10.50')).toEqual({ key: '10.5', log: Math.log(10.5) });
    expect(readAmount('100.00')).toEqual({ key: '100', log: Math.log(100) });
    expect(readAmount('100')).toEqual({ key: '100', log: Math.log(100) });
    expect(readAmount('0.001')).toEqual({ key: '0.001', log: Math.log(0.001) });
  });
  it.each(['0', '0.00', '-5', '-0.01', 'abc', '', '1e5', 'NaN', 'Infinity', '12,50', ' 12', '.5', '5.'])(
    'rejects %j with UnscorableError',
    (bad) => {
      expect(() => readAmount(bad)).toThrow(UnscorableError);
    },
  );
  it('computeFeatures passes the error on, and rejects an invalid issue date', () => {
    expect(() => computeFeatures(inv('0.00'), hist(), GLOBAL, NOW)).toThrow(/needs an amount above zero/);
    expect(() => computeFeatures(inv('-3'), hist(), GLOBAL, NOW)).toThrow(UnscorableError);
    expect(() => computeFeatures(inv('10', { t: NaN }), hist(), GLOBAL, NOW)).toThrow(/issue date is missing or invalid/);
  });
});
