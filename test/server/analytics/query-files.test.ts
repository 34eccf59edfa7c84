// `invoices query` reads only what it is given: the lake and the --with files, and writes no file;
// `--unsafe-files` gives DuckDB its defaults back. `join` is confined alike.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, ROOT, runCli, seedWithCli, tempDir, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
let dir: string;
let lake: string;
/** A file standing for <home>/password: a secret the SQL must not read. */
let secret: string;
const SECRET = 'pw-Zq8xN3vT0pKs-not-for-sql';
const F = (name: string) => path.join(ROOT, 'fixtures', name);

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '45', '--invoices', '900', '--months', '3', '--seed', '4', '--as-of', '2025-06-01']);
  dir = tempDir('query-files-');
  lake = path.join(dir, 'lake');
  const r = await runCli(['export', '--out', lake, '--quiet'], { env: { DATABASE_URL: db.url } });
  if (r.code !== 0) throw new Error(r.stderr);
  secret = path.join(dir, 'home', 'password');
  mkdirSync(path.dirname(secret));
  writeFileSync(secret, SECRET + '\n', { mode: 0o600 });
});

afterAll(async () => {
  await db?.drop();
});

const query = (sql: string, ...extra: string[]) =>
  runCli(['query', sql, '--lake', lake, '--json', '--quiet', ...extra], { env: { DATABASE_URL: db.url } });

/** A refusal: exit 2, nothing on stdout, one line on stderr saying what and how to allow it. */
function expectRefused(r: Awaited<ReturnType<typeof query>>, what: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^invoices: query refused: /);
  expect(lines[0]).toMatch(what);
  expect(lines[0]).toContain('--unsafe-files');
}

describe('query: confined to the lake and the --with files', () => {
  it('reads the lake and --with files as before (also by their path, and the --with Parquet view)', async () => {
    const r = await query(
      `SELECT (SELECT count(*) FROM invoices) AS n, (SELECT count(*) FROM crm) AS crm, (SELECT count(*) FROM read_csv('${F('crm.csv')}')) AS again`,
      '--with',
      `crm=${F('crm.csv')}`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([{ n: 900, crm: 42, again: 42 }]);
  });

  it('COPY ... TO a file is refused, and no file is written', async () => {
    const out = path.join(dir, 'x.csv');
    expectRefused(await query(`COPY (SELECT 42) TO '${out}'`), /x\.csv/);
    expect(existsSync(out)).toBe(false);
    // Not even over a file it may read: a --with file stays as it was.
    const side = path.join(dir, 'side.csv');
    writeFileSync(side, 'a,b\n1,2\n');
    for (const sql of [
      `COPY (SELECT 42) TO '${side}' (USE_TMP_FILE false)`,
      `EXPLAIN ANALYZE COPY (SELECT 42) TO '${side}' (USE_TMP_FILE false)`,
    ]) {
      expectRefused(await query(sql, '--with', `side=${side}`), /COPY/);
    }
    expect(readFileSync(side, 'utf8')).toBe('a,b\n1,2\n');
    // Nor over a lake file.
    const manifest = JSON.parse(readFileSync(path.join(lake, '_manifest.json'), 'utf8'));
    const part = path.join(lake, manifest.customers.files[0]);
    const before = readFileSync(part);
    expectRefused(await query(`COPY (SELECT 1 AS id) TO '${part}' (FORMAT parquet, USE_TMP_FILE false)`), /COPY/);
    expect(readFileSync(part).equals(before)).toBe(true);
  });

  it('reading a file that was not given is refused: the password stays unread', async () => {
    for (const sql of [
      `SELECT content FROM read_text('${secret}')`,
      `SELECT * FROM read_csv('${secret}', header = false)`,
      `SELECT * FROM read_text('/etc/passwd')`,
    ]) {
      const r = await query(sql);
      expectRefused(r, /neither the lake nor a --with file/);
      expect(r.stderr).not.toContain(SECRET);
    }
    // Nor a listing of a directory, the lake's included.
    expectRefused(await query(`SELECT * FROM glob('${path.dirname(secret)}/*')`), /opens/);
    expectRefused(await query(`SELECT count(*) FROM read_parquet('${lake}/invoices/*/*.parquet')`), /opens/);
  });

  it('statements that open, attach or load files, or change the settings that keep them out, are refused', async () => {
    expectRefused(await query(`ATTACH '${path.join(dir, 'x.duckdb')}'`), /x\.duckdb|ATTACH/);
    expect(existsSync(path.join(dir, 'x.duckdb'))).toBe(false);
    expectRefused(await query(`EXPORT DATABASE '${path.join(dir, 'exported')}'`), /EXPORT|exported/);
    expect(existsSync(path.join(dir, 'exported'))).toBe(false);
    expectRefused(await query('SET enable_external_access = true'), /enable_external_access/);
    expectRefused(await query("SELECT 1; SET allowed_directories = ['/']"), /allowed_directories/);
    expectRefused(await query(`PREPARE p AS SELECT 1`), /PREPARE/);
    expectRefused(await query(`SELECT * FROM enable_logging(storage = 'file', storage_path = '${dir}')`), /enable_logging/);
  });

  it('in-memory work is allowed: several statements, PIVOT, EXPLAIN, EXPLAIN ANALYZE of a SELECT', async () => {
    const r = await query('CREATE TABLE t AS SELECT issuer_id FROM invoices; SELECT count(*) AS n FROM t');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([{ n: 900 }]);
    const pivot = await query('PIVOT (SELECT 1 AS a, 2 AS b) ON a USING sum(b)');
    expect(pivot.code, pivot.stderr).toBe(0);
    expect(JSON.parse(pivot.stdout)).toEqual([{ 1: 2 }]);
    for (const sql of ['EXPLAIN SELECT count(*) FROM invoices', 'EXPLAIN ANALYZE SELECT count(*) FROM invoices']) {
      const e = await query(sql);
      expect(e.code, e.stderr).toBe(0);
      expect(JSON.parse(e.stdout)[0].explain_value).toContain('READ_PARQUET');
    }
  });

  it('--unsafe-files gives DuckDB its defaults back, and says so', async () => {
    const out = path.join(dir, 'unsafe.csv');
    const w = await runCli(['query', `COPY (SELECT 42 AS answer) TO '${out}'`, '--lake', lake, '--unsafe-files'], {
      env: { DATABASE_URL: db.url },
    });
    expect(w.code, w.stderr).toBe(0);
    expect(w.stderr).toContain('--unsafe-files');
    expect(readFileSync(out, 'utf8')).toBe('answer\n42\n');
    const r = await query(`SELECT content AS c FROM read_text('${secret}')`, '--unsafe-files');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([{ c: SECRET + '\n' }]);
  });

  it('join is confined too, and works as before', async () => {
    const r = await runCli(
      ['join', '--with', `crm=${F('crm.csv')}`, '--on', 'customer_id=id', '--by', 'segment', '--lake', lake, '--json'],
      { env: { DATABASE_URL: db.url } },
    );
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as { customers: number }[];
    expect(rows.reduce((s, x) => s + x.customers, 0)).toBe(40);
  });
});
