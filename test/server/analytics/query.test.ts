// `invoices query` and `invoices join`: DuckDB SQL over the lake and side files of every format,
// with one-line errors (exit 2) for missing, unknown and malformed files.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, ROOT, runCli, seedWithCli, tempDir, withPg, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
let lake: string;
let dir: string;
const F = (name: string) => path.join(ROOT, 'fixtures', name);

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '50', '--invoices', '3000', '--months', '4', '--seed', '9', '--as-of', '2025-06-01']);
  dir = tempDir('query-');
  lake = path.join(dir, 'lake');
  const r = await runCli(['export', '--out', lake, '--quiet'], { env: { DATABASE_URL: db.url } });
  if (r.code !== 0) throw new Error(r.stderr);
});

afterAll(async () => {
  await db?.drop();
});

const cli = (args: string[]) => runCli([...args, '--lake', lake], { env: { DATABASE_URL: db.url } });
async function query(sql: string, ...withs: string[]): Promise<Record<string, unknown>[]> {
  const r = await cli(['query', sql, ...withs.flatMap((w) => ['--with', w]), '--json']);
  if (r.code !== 0) throw new Error(`query exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('invoices query', () => {
  it('runs DuckDB SQL over the lake: sums are exact decimal strings equal to PostgreSQL', async () => {
    const got = await query('SELECT month, count(*) AS n, sum(amount) AS total FROM invoices GROUP BY month ORDER BY month');
    const expected = await withPg(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT to_char(issue_date AT TIME ZONE 'UTC', 'YYYY-MM') AS month, count(*)::int AS n, sum(amount)::text AS total FROM invoices GROUP BY 1 ORDER BY 1`,
          )
        ).rows,
    );
    expect(got).toEqual(expected);
  });

  it('CSV: a CRM export joined to invoices', async () => {
    const got = await query(
      `SELECT crm.segment, count(*) AS n FROM invoices i JOIN crm ON crm.customer_id = i.issuer_id GROUP BY 1 ORDER BY 1`,
      `crm=${F('crm.csv')}`,
    );
    expect(got.map((r) => r.segment)).toEqual(expect.arrayContaining(['enterprise']));
    const n = await withPg(db.url, async (c) =>
      Number((await c.query('SELECT count(*) FROM invoices WHERE issuer_id <= 40')).rows[0].count),
    );
    expect(got.reduce((s, r) => s + Number(r.n), 0)).toBe(n);
  });

  it('JSON with nested objects and arrays: fields and unnested lists, nested values kept in JSON output', async () => {
    const rows = await query(
      `SELECT customer_id, risk.level AS level, risk.flags AS flags, reviewed FROM risk WHERE customer_id = 1`,
      `risk=${F('risk.json')}`,
    );
    expect(rows).toHaveLength(1);
    expect(Array.isArray(rows[0].flags)).toBe(true);
    expect(rows[0].reviewed).toMatchObject({ by: expect.any(String) });
    const flags = await query(
      `SELECT flag, count(*) AS n FROM (SELECT unnest(risk.flags) AS flag FROM risk) GROUP BY 1 ORDER BY 1`,
      `risk=${F('risk.json')}`,
    );
    expect(flags.length).toBeGreaterThan(0);
  });

  it('NDJSON, Parquet and plain text side sources', async () => {
    const ev = await query(`SELECT count(*) AS n, count(DISTINCT event) AS kinds FROM events`, `events=${F('events.ndjson')}`);
    expect(ev).toEqual([{ n: 120, kinds: 5 }]);
    const pq = await query(
      `SELECT count(*) AS n FROM c2`,
      `c2=${path.join(lake, JSON.parse(readFileSync(path.join(lake, '_manifest.json'), 'utf8')).customers.files[0])}`,
    );
    expect(pq).toEqual([{ n: 50 }]);
    const notes = await query(`SELECT line_number, line FROM notes ORDER BY line_number LIMIT 2`, `notes=${F('notes.txt')}`);
    expect(notes[0].line_number).toBe(1);
    expect(String(notes[0].line)).toMatch(/^2026-\d\d-\d\d customer \d+: /);
    const joined = await query(
      `SELECT count(*) AS n FROM notes JOIN customers c ON c.id = TRY_CAST(regexp_extract(line, 'customer (\\d+)', 1) AS BIGINT)`,
      `notes=${F('notes.txt')}`,
    );
    expect(Number(joined[0].n)).toBeGreaterThan(0);
  });

  it('paths are quoted, never spliced: a file name with a quote works; an explicit :format overrides the extension', async () => {
    const odd = path.join(dir, "it's; DROP.csv");
    copyFileSync(F('crm.csv'), odd);
    expect(await query('SELECT count(*) AS n FROM x', `x=${odd}`)).toEqual([{ n: 42 }]);
    const asText = path.join(dir, 'crm.data');
    copyFileSync(F('crm.csv'), asText);
    expect(await query('SELECT count(*) AS n FROM x', `x=${asText}:csv`)).toEqual([{ n: 42 }]);
  });

  it.each([
    ['a missing file', () => `x=${path.join(dir, 'nope.csv')}`, /^invoices: x: file not found: .*nope\.csv$/],
    [
      'an unknown format',
      () => {
        const p = path.join(dir, 'a.xml');
        writeFileSync(p, '<a/>');
        return `x=${p}`;
      },
      /^invoices: x: unknown format for .*a\.xml/,
    ],
    ['a bad name', () => `1x=${F('crm.csv')}`, /not a valid identifier/],
    ['a reserved name', () => `invoices=${F('crm.csv')}`, /taken by the lake/],
    [
      'malformed CSV',
      () => {
        const p = path.join(dir, 'bad.csv');
        writeFileSync(p, 'id,name\n1,a\n2,b,c,d\n3,c\n');
        return `x=${p}`;
      },
      /^invoices: x: cannot read .*bad\.csv as csv: .*line 3/,
    ],
    [
      'malformed NDJSON',
      () => {
        const p = path.join(dir, 'bad.ndjson');
        writeFileSync(p, '{"a":1}\n{"a":2}\n{"a": }\n');
        return `x=${p}`;
      },
      /^invoices: x: cannot read .*bad\.ndjson as ndjson: .*line 3/,
    ],
    [
      'malformed JSON',
      () => {
        const p = path.join(dir, 'bad.json');
        writeFileSync(p, '[{"a":1},\n{"a": }]');
        return `x=${p}`;
      },
      /^invoices: x: cannot read .*bad\.json as json: Malformed JSON/,
    ],
    [
      'a file that is not Parquet',
      () => {
        const p = path.join(dir, 'bad.parquet');
        writeFileSync(p, 'nope');
        return `x=${p}`;
      },
      /^invoices: x: cannot read .*bad\.parquet as parquet/,
    ],
  ])('%s: exit 2 with one clear line', async (_what, make, message) => {
    const r = await cli(['query', 'SELECT 1', '--with', make()]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('lake:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
  });

  it("a SQL error is exit 2 with DuckDB's message", async () => {
    const r = await cli(['query', 'SELECT nope FROM invoices', '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^invoices: query failed: .*nope/);
  });
});

describe('invoices join', () => {
  it('totals per CRM segment and region, and the unmatched-keys report', async () => {
    const r = await cli(['join', '--with', `crm=${F('crm.csv')}`, '--on', 'customer_id=id', '--by', 'segment,region', '--json']);
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { segment: string; region: string; customers: number; invoices: number; total: string }[];
    expect(Object.keys(rows[0])).toEqual(['segment', 'region', 'customers', 'invoices', 'total', 'average']);
    expect(r.stderr).toContain('crm: 42 row(s); 2 key(s) match no customer: 9001, 9002');
    expect(r.stderr).toContain('customers: 10 have no crm row: 41, 42, 43');
    // Every matched customer has one CRM row: the groups partition customers 1..40.
    const expected = await withPg(
      db.url,
      async (c) => (await c.query(`SELECT count(*)::int AS n, sum(amount)::text AS s FROM invoices WHERE issuer_id <= 40`)).rows[0],
    );
    expect(rows.reduce((s, x) => s + x.customers, 0)).toBe(40);
    expect(rows.reduce((s, x) => s + x.invoices, 0)).toBe(expected.n);
    const cents = rows.reduce((s, x) => s + BigInt(x.total.replace('.', '')), 0n);
    expect(cents).toBe(BigInt(expected.s.replace('.', '')));
  });

  it('per flag of a nested risk JSON (a list unnested), and --unmatched', async () => {
    const r = await cli(['join', '--with', `risk=${F('risk.json')}`, '--on', 'customer_id', '--by', 'risk.flags[]', '--json']);
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
    expect(rows.map((x) => x['risk.flags']).sort()).toEqual(expect.arrayContaining(['late_payer']));
    expect(r.stderr).toContain('1 key(s) match no customer: 9003');
    const u = await cli(['join', '--with', `risk=${F('risk.json')}`, '--on', 'customer_id', '--unmatched', '--format', 'csv']);
    expect(u.code).toBe(0);
    const lines = u.stdout.trim().split('\n');
    expect(lines[0]).toBe('kind,key');
    expect(lines).toContain('risk key without customer,9003');
    expect(lines.filter((l) => l.startsWith('customer without'))).toHaveLength(20);
  });

  it('NDJSON events: a customer counts once per event kind; a bad key column is exit 2', async () => {
    const r = await cli(['join', '--with', `ev=${F('events.ndjson')}`, '--on', 'customer_id', '--by', 'event', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).length).toBe(5);
    const bad = await cli(['join', '--with', `ev=${F('events.ndjson')}`, '--on', 'nope', '--by', 'event']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('ev has no column "nope"');
  });
});
