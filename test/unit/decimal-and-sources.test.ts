// Pure pieces of use cases 2 and 3: exact decimals, the month window, side-source specs, the chart.
import { describe, expect, it } from 'vitest';
import { atScale, average, fromUnits, toUnits } from '../../src/analytics/decimal.js';
import { firstBadCsvLine, parseSource } from '../../src/analytics/sources.js';
import { describeWindow, monthWindow, windowMonths } from '../../src/analytics/window.js';
import { sqlIdentifier, sqlString } from '../../src/lake/duckdb.js';
import { planMonths } from '../../src/lake/export-plan.js';
import { compareLineage } from '../../src/table/lineage.js';
import { barChart } from '../../src/output/chart.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, tempDir } from '../support/helpers.js';

describe('exact decimals', () => {
  it('round-trips strings through integer units without floats', () => {
    expect(toUnits('123.4', 2)).toBe(12340n);
    expect(fromUnits(12340n, 2)).toBe('123.40');
    expect(fromUnits(-5n, 2)).toBe('-0.05');
    expect(atScale('0', 2)).toBe('0.00');
    expect(atScale('99999999999999999999999999.99', 2)).toBe('99999999999999999999999999.99');
    expect(() => toUnits('1.005', 2)).toThrow(/more than 2 decimals/);
  });

  it('averages round half away from zero to the cent', () => {
    expect(average('10.00', 3n, 2)).toBe('3.33');
    expect(average('0.05', 2n, 2)).toBe('0.03');
    expect(average('-0.05', 2n, 2)).toBe('-0.03');
    expect(average('0.10', 0n, 2)).toBe('0.00');
    // 0.1 + 0.2 in floats is 0.30000000000000004; here it is the sum of cents.
    expect(average('0.30', 1n, 2)).toBe('0.30');
  });
});

describe('the window', () => {
  it('is the N calendar months ending with the month of --as-of', () => {
    const w = monthWindow(6, '2026-11-25');
    expect(w).toMatchObject({ firstMonth: '2026-06', lastMonth: '2026-11', from: '2026-06-01T00:00:00Z', to: '2026-12-01T00:00:00Z' });
    expect(windowMonths(w)).toEqual(['2026-06', '2026-07', '2026-08', '2026-09', '2026-10', '2026-11']);
    expect(describeWindow(w)).toContain('2026-06-01 .. 2026-11-30');
    expect(monthWindow(3, '2026-01-31')).toMatchObject({ from: '2025-11-01T00:00:00Z', to: '2026-02-01T00:00:00Z' });
    expect(monthWindow(1, '2024-02-29')).toMatchObject({ from: '2024-02-01T00:00:00Z', to: '2024-03-01T00:00:00Z' });
  });

  it('rejects impossible dates and month counts', () => {
    expect(() => monthWindow(6, '2026-02-30')).toThrow(/YYYY-MM-DD/);
    expect(() => monthWindow(0, '2026-02-01')).toThrow(/--months/);
  });
});

describe('side sources and quoting', () => {
  it('detects formats by extension, accepts an explicit one, and refuses the rest', () => {
    expect(parseSource(`crm=${path.join(ROOT, 'fixtures', 'crm.csv')}`)).toMatchObject({ name: 'crm', format: 'csv' });
    expect(parseSource(`e=${path.join(ROOT, 'fixtures', 'events.ndjson')}`).format).toBe('ndjson');
    expect(parseSource(`n=${path.join(ROOT, 'fixtures', 'notes.txt')}:csv`).format).toBe('csv');
    expect(() => parseSource('nope')).toThrow(/NAME=PATH/);
    expect(() => parseSource(`a-b=${path.join(ROOT, 'fixtures', 'crm.csv')}`)).toThrow(/identifier/);
  });

  it('quotes strings and identifiers with one helper each', () => {
    expect(sqlString("it's")).toBe("'it''s'");
    expect(sqlIdentifier('crm')).toBe('"crm"');
    expect(() => sqlIdentifier('x"; DROP')).toThrow();
  });

  it('finds the first ragged line of a CSV, quoted newlines included', async () => {
    const dir = tempDir('csv-');
    const f = path.join(dir, 'a.csv');
    writeFileSync(f, 'a,b\n1,"x\ny"\n2,3,4\n');
    expect(await firstBadCsvLine(f)).toEqual({ line: 4, why: '3 fields where the header has 2' });
    writeFileSync(f, 'a,b\n1,"x\n');
    expect(await firstBadCsvLine(f)).toMatchObject({ why: 'a quoted field is never closed' });
    writeFileSync(f, 'a,b\n1,2\n\n3,4\n');
    expect(await firstBadCsvLine(f)).toBeUndefined();
  });
});

describe('incremental plan', () => {
  const manifest = {
    version: 1,
    watermark: '100',
    exportedAt: '',
    source: '',
    amount: { precision: 14, scale: 2 },
    customers: { files: [], rows: 0, exportedAt: '' },
    months: {
      '2026-01': { files: [], rows: 2, sum: '3.00', watermark: '100', exportedAt: '' },
      '2026-02': { files: [], rows: 2, sum: '3.00', watermark: '100', exportedAt: '' },
      '2026-03': { files: [], rows: 1, sum: '1.00', watermark: '100', exportedAt: '' },
    },
  };
  it('rewrites months with new rows or a different count or sum, removes emptied ones', () => {
    const stats = new Map([
      ['2026-01', { rows: 2, sum: '3.00', fresh: 0 }],
      ['2026-02', { rows: 2, sum: '3.50', fresh: 0 }],
      ['2026-04', { rows: 1, sum: '1.00', fresh: 1 }],
    ]);
    expect(planMonths(stats, manifest).map((p) => [p.month, p.write])).toEqual([
      ['2026-01', false],
      ['2026-02', true],
      ['2026-03', false],
      ['2026-04', true],
    ]);
    expect(planMonths(stats, manifest).find((p) => p.month === '2026-03')?.reason).toMatch(/no rows/);
  });

  it('rewrites a month with changed rows even when its count and sum are unchanged, and says why', () => {
    const stats = new Map([
      ['2026-01', { rows: 2, sum: '3.00', fresh: 0 }],
      ['2026-02', { rows: 2, sum: '3.00', fresh: 0 }],
    ]);
    const plan = planMonths(stats, manifest, { months: new Map([['2026-02', 'rows updated or deleted']]) });
    expect(plan.filter((p) => p.write).map((p) => p.month)).toEqual(['2026-02']);
    expect(plan.find((p) => p.month === '2026-02')?.reason).toBe('rows updated or deleted since the last export');
  });
});

describe('lineage', () => {
  const before = {
    system: '1',
    database: '5',
    table: '10',
    leaves: { invoices_p2026_01: '100/7', invoices_p2026_02: '101/8', invoices_default: '102/9' },
  };
  it('the same contents: nothing to do', () => {
    expect(compareLineage(before, { ...before, leaves: { ...before.leaves } })).toEqual({ kind: 'same' });
  });
  it('another cluster, database or table: everything derived is replaced', () => {
    expect(compareLineage(before, { ...before, system: '2' })).toMatchObject({
      kind: 'replaced',
      reason: expect.stringMatching(/another PostgreSQL cluster/),
    });
    expect(compareLineage(before, { ...before, database: '6' })).toMatchObject({ kind: 'replaced' });
    expect(compareLineage(before, { ...before, table: '11' })).toMatchObject({
      kind: 'replaced',
      reason: expect.stringMatching(/converted/),
    });
    expect(compareLineage(undefined, before)).toMatchObject({ kind: 'replaced', reason: expect.stringMatching(/no lineage/) });
  });
  it('names each partition truncated, detached, attached or re-attached', () => {
    const { invoices_p2026_02: _gone, ...rest } = before.leaves;
    const now = { ...before, leaves: { ...rest, invoices_p2026_01: '200/7', invoices_default: '102/30', invoices_p2026_03: '300/31' } };
    expect(compareLineage(before, now)).toEqual({
      kind: 'leaves',
      leaves: ['invoices_default', 'invoices_p2026_01', 'invoices_p2026_02', 'invoices_p2026_03'],
      reason:
        'invoices_default detached and attached again, invoices_p2026_01 truncated or rewritten, invoices_p2026_02 dropped or detached, invoices_p2026_03 created or attached',
    });
  });
  it('says many partitions of one kind in one phrase', () => {
    const many = Object.fromEntries(
      Array.from({ length: 12 }, (_, i) => [`invoices_p2025_${String(i + 1).padStart(2, '0')}`, `${100 + i}/7`]),
    );
    const truncated = Object.fromEntries(Object.keys(many).map((n) => [n, `9${many[n]}`]));
    expect(compareLineage({ ...before, leaves: many }, { ...before, leaves: truncated })).toMatchObject({
      reason: '12 partitions truncated or rewritten, from invoices_p2025_01 to invoices_p2025_12',
    });
  });
});

describe('bar chart', () => {
  it('scales bars on exact values', () => {
    const out = barChart(
      [
        { label: 'a', value: '100.00' },
        { label: 'bb', value: '50.00' },
        { label: 'c', value: '0.00' },
      ],
      { width: 10 },
    );
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe('a   100.00  ██████████');
    expect(lines[1]).toBe('bb   50.00  █████');
    expect(lines[2].trimEnd()).toBe('c     0.00');
  });
});
