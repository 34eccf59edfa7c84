// `invoices export`: the Parquet lake read back with DuckDB equals PostgreSQL to the cent;
// incremental runs rewrite only changed months, including a transaction that commits late.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
let lake: string;

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '30', '--invoices', '3000', '--months', '6', '--seed', '5', '--as-of', '2025-06-01']);
  lake = path.join(tempDir('lake-'), 'lake');
});

afterAll(async () => {
  await db?.drop();
});

const cli = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url } });
const exportLake = async (...extra: string[]) => {
  const r = await cli(['export', '--out', lake, '--json', ...extra]);
  if (r.code !== 0) throw new Error(`export exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { month: string; action: string; rows: number; sum: string }[];
};

/** Per month: count and sum(amount) as PostgreSQL prints them, for the committed rows. */
async function pgMonths(): Promise<Record<string, { n: string; s: string }>> {
  return withPg(db.url, async (c) => {
    const { rows } = await c.query<{ m: string; n: string; s: string }>(
      `SELECT to_char(issue_date AT TIME ZONE 'UTC', 'YYYY-MM') AS m, count(*)::text AS n, sum(amount)::text AS s FROM invoices GROUP BY 1 ORDER BY 1`,
    );
    return Object.fromEntries(rows.map((r) => [r.m, { n: r.n, s: r.s }]));
  });
}

async function duck<T>(fn: (q: (sql: string) => Promise<Record<string, unknown>[]>) => Promise<T>): Promise<T> {
  const conn = await (await DuckDBInstance.create(':memory:')).connect();
  try {
    return await fn(async (sql) => (await conn.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[]);
  } finally {
    conn.closeSync();
  }
}

/** Per month from the lake's files (a glob over the hive layout, as another engine would read it). */
async function lakeMonths(): Promise<Record<string, { n: string; s: string }>> {
  return duck(async (q) => {
    const rows = await q(`SELECT month, count(*)::VARCHAR AS n, CAST(sum(amount) AS VARCHAR) AS s
                            FROM read_parquet('${lake}/invoices/*/*.parquet', hive_partitioning = true, hive_types = {'month': VARCHAR}) GROUP BY 1 ORDER BY 1`);
    return Object.fromEntries(rows.map((r) => [String(r.month), { n: String(r.n), s: String(r.s) }]));
  });
}

const lakeHas = (id: number) =>
  duck(
    async (q) =>
      (await q(`SELECT count(*)::INT AS n FROM read_parquet('${lake}/invoices/*/*.parquet') WHERE invoice_id = ${id}`))[0].n === 1,
  );
/** Per month folder: its one Parquet file (part-<exportId>.parquet) and that file's mtime: an untouched month keeps both. */
const mtimes = () =>
  Object.fromEntries(
    readdirSync(path.join(lake, 'invoices')).map((d) => {
      const [file] = readdirSync(path.join(lake, 'invoices', d)).filter((f) => f.endsWith('.parquet'));
      return [d, `${file} ${statSync(path.join(lake, 'invoices', d, file)).mtimeMs}`];
    }),
  );
/** The file the manifest lists for a month. */
const monthFile = (m: string) => path.join(lake, JSON.parse(readFileSync(path.join(lake, '_manifest.json'), 'utf8')).months[m].files[0]);

describe('invoices export', () => {
  it('writes a hive-partitioned lake whose counts and sums equal PostgreSQL exactly', async () => {
    const out = await exportLake();
    const expected = await pgMonths();
    expect(out.map((m) => m.month)).toEqual(Object.keys(expected));
    expect(out.every((m) => m.action === 'written')).toBe(true);
    expect(readdirSync(path.join(lake, 'invoices')).sort()).toEqual(Object.keys(expected).map((m) => `month=${m}`));
    const manifest0 = JSON.parse(readFileSync(path.join(lake, '_manifest.json'), 'utf8'));
    for (const d of readdirSync(path.join(lake, 'invoices')))
      expect(readdirSync(path.join(lake, 'invoices', d))).toEqual([`part-${manifest0.exportId}.parquet`]);
    expect(readdirSync(lake).sort()).toEqual(['_manifest.json', 'customers', 'invoices']);
    expect(await lakeMonths()).toEqual(expected);
    const manifest = JSON.parse(readFileSync(path.join(lake, '_manifest.json'), 'utf8'));
    for (const [m, e] of Object.entries(expected)) expect({ n: String(manifest.months[m].rows), s: manifest.months[m].sum }).toEqual(e);
    expect(manifest.watermark).toMatch(/^\d+$/);
    expect(manifest.customers.rows).toBe(30);
  });

  it('stores amount as DECIMAL(14,2) and issue_date as a UTC timestamp in the Parquet schema', async () => {
    const schema = await duck((q) =>
      q(`SELECT name, type, converted_type, precision::VARCHAR AS p, scale::VARCHAR AS s, logical_type::VARCHAR AS lt
                                          FROM parquet_schema('${monthFile('2025-03')}')`),
    );
    const col = (n: string) => schema.find((r) => r.name === n)!;
    expect(col('amount')).toMatchObject({ converted_type: 'DECIMAL', p: '14', s: '2' });
    expect(String(col('issue_date').lt)).toContain('isAdjustedToUTC=1');
    expect(col('invoice_id')).toMatchObject({ type: 'INT64' });
    const [sample] = await withPg(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT invoice_id::text AS id, amount::text AS amount, to_char(issue_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS t FROM invoices ORDER BY invoice_id LIMIT 1`,
          )
        ).rows,
    );
    const [fromLake] = await duck((q) =>
      q(`SELECT CAST(amount AS VARCHAR) AS amount, strftime(issue_date AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%f') AS t
                                             FROM read_parquet('${lake}/invoices/*/*.parquet') WHERE invoice_id = ${sample.id}`),
    );
    expect(fromLake).toEqual({ amount: sample.amount, t: sample.t });
  });

  it('rewrites only the changed months: an insert into an old month, a delete, and a transaction that commits late', async () => {
    const before = mtimes();
    const ids = await withPg(db.url, async (c) => {
      const {
        rows: [old],
      } = await c.query(
        `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2024-12-15T10:00:00Z', 1, 2, 12345.67) RETURNING invoice_id`,
      );
      const {
        rows: [del],
      } = await c.query(
        `DELETE FROM invoices WHERE invoice_id = (SELECT min(invoice_id) FROM invoices WHERE issue_date >= '2025-02-01' AND issue_date < '2025-03-01') RETURNING invoice_id`,
      );
      return { old: Number(old.invoice_id), deleted: Number(del.invoice_id) };
    });
    // Other test files share the server: one of their transactions still open would hold these rows above the horizon.
    await waitForHorizon(db.url);
    // A: begins and inserts first; B: inserts into another month and commits first.
    const a = new pg.Client({ connectionString: db.url });
    await a.connect();
    let lateId: number;
    let earlyId: number;
    try {
      await a.query('BEGIN');
      lateId = Number(
        (
          await a.query(
            `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-04-10T00:00:00Z', 3, 4, 1.01) RETURNING invoice_id`,
          )
        ).rows[0].invoice_id,
      );
      earlyId = await withPg(db.url, async (b) =>
        Number(
          (
            await b.query(
              `INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES ('2025-05-20T00:00:00Z', 5, 6, 2.02) RETURNING invoice_id`,
            )
          ).rows[0].invoice_id,
        ),
      );

      const second = await exportLake();
      const written = second.filter((m) => m.action === 'written').map((m) => m.month);
      // 2025-02 saw a delete (the change log names its month at once); 2025-05's insert (B's) is
      // above the horizon, so that month waits for the next run.
      expect(written).toEqual(['2024-12', '2025-02']);
      expect(await lakeHas(ids.old)).toBe(true);
      expect(await lakeHas(ids.deleted)).toBe(false);
      // B committed, but after A began: it waits with A below the horizon, for the next run.
      expect(await lakeHas(earlyId)).toBe(false);
      expect(await lakeHas(lateId)).toBe(false);
      const after = mtimes();
      for (const m of ['2025-01', '2025-03', '2025-04']) expect(after[`month=${m}`]).toBe(before[`month=${m}`]);
      await a.query('COMMIT');
    } finally {
      await a.end();
    }
    await waitForHorizon(db.url);
    const third = await exportLake();
    expect(third.filter((m) => m.action === 'written').map((m) => m.month)).toEqual(['2025-04', '2025-05']);
    expect(await lakeHas(lateId)).toBe(true);
    expect(await lakeHas(earlyId)).toBe(true);
    expect(await lakeMonths()).toEqual(await pgMonths());
    // Nothing changed: nothing rewritten.
    expect((await exportLake()).every((m) => m.action === 'unchanged')).toBe(true);
    expect(readdirSync(lake).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('rewrites a month where an update changed the parties but neither the count nor the sum', async () => {
    const before = mtimes();
    const id = await withPg(db.url, async (c) =>
      Number(
        (
          await c.query(
            `UPDATE invoices SET issuer_id = receiver_id, receiver_id = issuer_id
        WHERE invoice_id = (SELECT min(invoice_id) FROM invoices WHERE issue_date >= '2025-01-01' AND issue_date < '2025-02-01') RETURNING invoice_id`,
          )
        ).rows[0].invoice_id,
      ),
    );
    // No wait for statistics: the change log counts the update the moment it commits. Only for a
    // transaction of another test file on the shared server, which would hold the update above this
    // export's watermark (the next export would then rightly rewrite the month again).
    await waitForHorizon(db.url);
    const out = await exportLake();
    expect(out.filter((m) => m.action === 'written').map((m) => m.month)).toEqual(['2025-01']);
    expect(out.find((m) => m.month === '2025-01')?.reason).toBe('rows updated or deleted since the last export');
    const [pgRow] = await withPg(
      db.url,
      async (c) => (await c.query(`SELECT issuer_id::text AS i, receiver_id::text AS r FROM invoices WHERE invoice_id = $1`, [id])).rows,
    );
    const [lakeRow] = await duck((q) =>
      q(
        `SELECT issuer_id::VARCHAR AS i, receiver_id::VARCHAR AS r FROM read_parquet('${lake}/invoices/*/*.parquet') WHERE invoice_id = ${id}`,
      ),
    );
    expect(lakeRow).toEqual(pgRow);
    const after = mtimes();
    for (const m of ['2025-02', '2025-03', '2025-04', '2025-05']) expect(after[`month=${m}`]).toBe(before[`month=${m}`]);
    expect((await exportLake()).every((m) => m.action === 'unchanged')).toBe(true);
  });

  it('removes a month whose rows were all deleted', async () => {
    await withPg(db.url, (c) => c.query(`DELETE FROM invoices WHERE issue_date < '2025-01-01'`));
    const out = await exportLake();
    expect(out.find((m) => m.month === '2024-12')).toMatchObject({ action: 'removed' });
    expect(existsSync(path.join(lake, 'invoices', 'month=2024-12'))).toBe(false);
    expect(await lakeMonths()).toEqual(await pgMonths());
  });

  it('--verify exits 0 when the lake matches, non-zero after tampering, 0 again after --full', async () => {
    const ok = await cli(['export', '--out', lake, '--verify', '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).every((m: { status: string }) => m.status === 'ok')).toBe(true);
    expect(ok.stderr).toContain('match PostgreSQL exactly');

    // Replace one month's file with one missing a row (what a bad copy or a hand edit would do).
    const file = monthFile('2025-03');
    await duck(async (q) => {
      await q(
        `CREATE TABLE t AS SELECT * FROM read_parquet('${file}') WHERE invoice_id <> (SELECT max(invoice_id) FROM read_parquet('${file}'))`,
      );
      await q(`COPY t TO '${file}' (FORMAT parquet)`);
      return undefined;
    });
    const bad = await cli(['export', '--out', lake, '--verify-only', '--json']);
    expect(bad.code).toBe(1);
    const rows = JSON.parse(bad.stdout) as { month: string; status: string; lake_rows: number; postgres_rows: number }[];
    expect(rows.filter((r) => r.status !== 'ok').map((r) => r.month)).toEqual(['2025-03']);
    const march = rows.find((r) => r.month === '2025-03')!;
    expect(march.lake_rows).toBe(march.postgres_rows - 1);
    expect(march.status).toBe('CHANGED FILE');
    expect(bad.stderr).toContain('2025-03');

    const fixed = await cli(['export', '--out', lake, '--full', '--verify', '--json']);
    expect(fixed.code).toBe(0);
  });

  it('--verify-only without a lake is a usage error', async () => {
    const r = await cli(['export', '--out', path.join(tempDir('nolake-'), 'x'), '--verify-only']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invoices export');
  });
});

describe('invoices export without psql', () => {
  it('streams through node-postgres instead and writes the same lake', async () => {
    const { exportLake } = await import('../../../src/lake/export.js');
    const { resolveConfig } = await import('../../../src/config.js');
    const out = path.join(tempDir('lake-nopsql-'), 'lake');
    const r = await exportLake({ config: resolveConfig({ databaseUrl: db.url, env: {}, cwd: tempDir('cwd-') }) }, { out, psql: false });
    expect(r.reader).toMatch(/node-postgres/);
    const expected = await pgMonths();
    expect(Object.fromEntries(r.months.map((m) => [m.month, { n: String(m.rows), s: m.sum }]))).toEqual(expected);
  });
});
