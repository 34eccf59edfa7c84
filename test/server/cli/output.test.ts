// One rendering across commands: null for missing values, no float noise, ISO 8601 UTC
// timestamps with Z, tables within 100 columns, ids that match whatever their JSON type.
// Pure rendering first, then the built CLI on a real server and a real lake.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCursor, MAX_TABLE_WIDTH, render, renderRecordLine, type Column } from '../../../src/output/render.js';
import { isoTimestamp } from '../../../src/analytics/query.js';
import { createDatabase, runCli, seedWithCli, tempDir, withPg, type TestDatabase } from '../../support/helpers.js';

describe('render', () => {
  type Row = { id: string; name: string; note: string | null; seconds: number; rate: number; ratio: number; at: string };
  const columns: Column<Row>[] = [
    { key: 'id', kind: 'int' },
    { key: 'name', kind: 'text' },
    { key: 'note' },
    { key: 'seconds', kind: 'seconds' },
    { key: 'rate', kind: 'rate' },
    { key: 'ratio' },
    { key: 'at', kind: 'time' },
  ];
  const row: Row = {
    id: '42',
    name: '',
    note: '',
    seconds: 0.41005252700000006,
    rate: 1234.5678,
    ratio: 0.1 + 0.2,
    at: '2024-12-31T23:59:56.714016Z',
  };

  it('JSON: null for a missing value (an empty string outside text columns), seconds to the ms, rates to integers, no float noise', async () => {
    const out = JSON.parse(await render([row], columns, 'json', { single: true }));
    expect(out).toEqual({ id: 42, name: '', note: null, seconds: 0.41, rate: 1235, ratio: 0.3, at: '2024-12-31T23:59:56.714016Z' });
    expect(JSON.parse(renderRecordLine({ ...row, note: null }, columns))).toEqual(out);
    expect(renderRecordLine(row, columns).split('\n')).toHaveLength(2);
  });

  it('ids past 2^53 stay exact strings', async () => {
    const out = JSON.parse(await render([{ ...row, id: '9223372036854775807' }], columns, 'json', { single: true }));
    expect(out.id).toBe('9223372036854775807');
  });

  it('a table that fits 100 columns stays a table; a wider one becomes key/value blocks within 100 columns', async () => {
    const narrow = await render([{ a: '1', b: 'x' }], [{ key: 'a' }, { key: 'b' }], 'table');
    expect(narrow).toContain('┌');
    const wideRow = Object.fromEntries(Array.from({ length: 14 }, (_, i) => [`column_number_${i}`, `value ${i} of a wide row`]));
    const wideColumns = Object.keys(wideRow).map((key) => ({ key })) as Column<typeof wideRow>[];
    const one = await render([wideRow], wideColumns, 'table');
    expect(one).not.toContain('┌');
    expect(one.split('\n')[0]).toBe('column_number_0  | value 0 of a wide row');
    expect(one).not.toContain('RECORD');
    const two = await render([wideRow, wideRow], wideColumns, 'table');
    expect(two).toMatch(/^-\[ RECORD 1 \]/);
    expect(two).toContain('-[ RECORD 2 ]');
    const long = await render([{ ...wideRow, column_number_3: 'y'.repeat(250) }], wideColumns, 'table');
    for (const text of [one, two, long]) expect(Math.max(...text.split('\n').map((l) => l.length))).toBeLessThanOrEqual(MAX_TABLE_WIDTH);
    expect(long.replace(/\n\s+\| /g, '')).toContain('y'.repeat(250));
  });

  it('a listing of several rows too wide for 100 columns wraps its text columns, never numbers, and loses no character', async () => {
    const rows = Array.from({ length: 3 }, (_, i) => ({
      customer_id: String(1000 + i),
      name: `Hartmann, Ratke and Smith Incorporated Holdings ${i}`,
      invoices: '123',
      total: '1234567.89',
      average: '123.45',
      issued: '1000000.00',
      received: '234567.89',
      net: '765432.11',
    }));
    const cols: Column<(typeof rows)[number]>[] = [
      { key: 'customer_id', kind: 'int' },
      { key: 'name' },
      { key: 'invoices', kind: 'int' },
      { key: 'total', kind: 'money' },
      { key: 'average', kind: 'money' },
      { key: 'issued', kind: 'money' },
      { key: 'received', kind: 'money' },
      { key: 'net', kind: 'money' },
    ];
    const text = await render(rows, cols, 'table');
    expect(text).toContain('┌');
    expect(Math.max(...text.split('\n').map((l) => l.length))).toBeLessThanOrEqual(MAX_TABLE_WIDTH);
    for (const v of ['1234567.89', '1000000.00', '765432.11', '1001']) expect(text).toContain(` ${v} `);
    // The name, read back from its column, is whole.
    const nameCells = text
      .split('\n')
      .filter((l) => l.startsWith('│'))
      .map((l) => l.split('│')[2].trim());
    expect(nameCells.join('').replace(/\s/g, '')).toContain('Hartmann,RatkeandSmithIncorporatedHoldings0');
  });

  it('cursors: xid/invoice_id, null before the first row', () => {
    expect(formatCursor('0', '-9223372036854775808')).toBeNull();
    expect(formatCursor(0, 0)).toBeNull();
    expect(formatCursor('1234', '56')).toBe('1234/56');
  });

  it("DuckDB's timestamp text becomes ISO 8601 UTC with Z", () => {
    expect(isoTimestamp('2024-12-31 23:59:56.714016+00')).toBe('2024-12-31T23:59:56.714016Z');
    expect(isoTimestamp('2024-12-31 23:59:56')).toBe('2024-12-31T23:59:56Z');
    expect(isoTimestamp('2025-01-01 01:59:56.5+02')).toBe('2024-12-31T23:59:56.5Z');
    expect(isoTimestamp(null)).toBeNull();
  });
});

describe('the CLI', () => {
  let db: TestDatabase;
  let dir: string;
  let lake: string;
  const cli = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url }, cwd: dir });

  beforeAll(async () => {
    db = await createDatabase();
    dir = tempDir('output-');
    lake = path.join(dir, 'lake');
    await seedWithCli(db.url, ['--customers', '40', '--invoices', '400', '--seed', '4', '--as-of', '2025-06-01', '--months', '3']);
    const r = await cli(['export', '--out', lake, '--quiet']);
    if (r.code !== 0) throw new Error(`export: ${r.stderr}`);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('seed --json: seconds to the millisecond, the rate an integer, from/to ISO with Z', async () => {
    const r = await cli([
      'seed',
      '--customers',
      '3',
      '--invoices',
      '7',
      '--append',
      '--as-of',
      '2025-06-01',
      '--months',
      '3',
      '--json',
      '--quiet',
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Number.isInteger(out.invoicesPerSecond)).toBe(true);
    expect(String(out.seconds)).toMatch(/^\d+(\.\d{1,3})?$/);
    expect(out.from).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    expect(out.to).toMatch(/Z$/);
  });

  it('query prints timestamps as get does: ISO 8601 UTC with Z, the same instant', async () => {
    const q = await cli(['query', 'SELECT invoice_id, issue_date FROM invoices WHERE invoice_id = 9', '--lake', lake, '--json', '--quiet']);
    expect(q.code).toBe(0);
    const [row] = JSON.parse(q.stdout);
    const g = JSON.parse((await cli(['get', '9', '--json'])).stdout);
    expect(row.issue_date).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    expect(row.issue_date).toBe(g.issue_date);
    expect(row.invoice_id).toBe(9);
  });

  it('join: a JSON id "7" among numeric ids matches customer 7', async () => {
    const side = path.join(dir, 'mixed.json');
    writeFileSync(
      side,
      JSON.stringify([
        { customer_id: 1, tier: 'gold' },
        { customer_id: '7', tier: 'gold' },
        { customer_id: 8, tier: 'silver' },
      ]),
    );
    const r = await cli(['join', '--with', `m=${side}`, '--on', 'customer_id=id', '--by', 'tier', '--lake', lake, '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('0 key(s) match no customer');
    const rows = JSON.parse(r.stdout) as Array<{ tier: string; customers: number }>;
    expect(rows.find((x) => x.tier === 'gold')?.customers).toBe(2);
  });

  it('group --chart with --json is a usage error before any work', async () => {
    const r = await cli(['group', '--months', '3', '--by', 'issuer', '--as-of', '2025-05-15', '--chart', '--json']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^invoices: --chart .*--json/m);
  });

  it('risk status: JSON with null (never "") for what is missing; the table fits 100 columns', async () => {
    expect((await cli(['risk', '--quiet'])).code).toBe(0);
    await withPg(db.url, (c) => c.query('SELECT 1'));
    const j = await cli(['risk', 'status', '--json']);
    expect(j.code).toBe(0);
    const status = JSON.parse(j.stdout) as Record<string, unknown>;
    expect(Object.values(status)).not.toContain('');
    expect(status.held_back_by).toBeNull();
    const t = await cli(['risk', 'status', '--format', 'table']);
    expect(t.code).toBe(0);
    expect(Math.max(...t.stdout.split('\n').map((l) => l.length))).toBeLessThanOrEqual(100);
    expect(t.stdout).toMatch(/^source\s+\| /m);
  });
});
