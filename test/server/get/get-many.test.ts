// `invoices get 1 2 3` and `invoices get -` (ids on stdin), end to end: the built CLI against a
// small seeded database, and through the real Redis when REDIS_URL is set.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDatabase,
  ROOT,
  runCli,
  seedWithCli,
  tempDir,
  testDataHome,
  withPg,
  type CliResult,
  type TestDatabase,
} from '../../support/helpers.js';

const REDIS_URL = process.env.REDIS_URL;
let db: TestDatabase;
/** invoice_id -> the invoice as PostgreSQL has it (our JSON shape). */
let byId: Map<number, Record<string, unknown>>;
let cwd: string;

beforeAll(async () => {
  db = await createDatabase();
  cwd = tempDir('get-many-');
  await seedWithCli(db.url, ['--customers', '20', '--invoices', '300', '--seed', '5', '--as-of', '2025-06-01', '--months', '3']);
  byId = await withPg(db.url, async (c) => {
    const { rows } = await c.query(
      `SELECT i.invoice_id::int, to_char(i.issue_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS issue_date, i.issuer_id::int, ci.name AS issuer_name,
              i.receiver_id::int, cr.name AS receiver_name, i.amount::text AS amount
         FROM invoices i LEFT JOIN customers ci ON ci.id = i.issuer_id LEFT JOIN customers cr ON cr.id = i.receiver_id`,
    );
    return new Map(rows.map((r) => [r.invoice_id as number, r]));
  });
});

afterAll(async () => {
  await db?.drop();
});

/** The CLI with `input` on its stdin (a pipe), in a clean environment. */
function runWithInput(args: string[], input: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), ...args], {
      cwd,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/root',
        TZ: 'UTC',
        XDG_DATA_HOME: testDataHome(),
        DATABASE_URL: db.url,
        ...env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(input);
  });
}

const get = (args: string[], env: Record<string, string> = {}) => runCli(['get', ...args], { env: { DATABASE_URL: db.url, ...env }, cwd });
const lines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
/** The normalised issue_date: PostgreSQL's to_char always prints 6 fraction digits. */
const norm = (r: Record<string, unknown>) => ({
  ...r,
  issue_date: String(r.issue_date).replace(/(\.\d+)?Z$/, (m, f: string | undefined) => `${(f ?? '.').padEnd(7, '0')}Z`),
});

describe('invoices get with many ids', () => {
  it('several ids: one JSON object per line, in the order given, equal to PostgreSQL; duplicates repeat', async () => {
    const r = await get(['3', '1', '250', '3']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const out = lines(r.stdout);
    expect(out.map((o) => o.invoice_id)).toEqual([3, 1, 250, 3]);
    expect(out.map(norm)).toEqual([3, 1, 250, 3].map((id) => byId.get(id)));
  });

  it('a missing id among many: the others printed, the missing named on stderr, exit 3', async () => {
    const r = await get(['2', '999999', '4', '888888']);
    expect(r.code).toBe(3);
    expect(lines(r.stdout).map((o) => o.invoice_id)).toEqual([2, 4]);
    expect(r.stderr).toContain('invoices: invoice 999999 not found');
    expect(r.stderr).toContain('invoices: invoice 888888 not found');
    expect(r.stderr).toContain('2 invoices not found');
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('a malformed id argument: exit 2 before any output', async () => {
    const r = await get(['1', '2', 'x7', '3']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe('invoices: invoice id must be a positive integer, got "x7"');
  });

  it('- with other ids, and --stats with many ids, are usage errors', async () => {
    expect((await get(['-', '1'])).code).toBe(2);
    expect((await get(['1', '2', '--stats'])).code).toBe(2);
  });

  it('ids on stdin: printed in input order (several batches), JSON lines, memory of none of it on stderr', async () => {
    // 2,500 ids: three batches of up to 1,000, repeats included, in a scrambled order.
    const ids = Array.from({ length: 2500 }, (_, i) => 1 + ((i * 7919) % 300));
    const r = await runWithInput(['get', '-'], ids.join('\n') + '\n');
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const out = lines(r.stdout);
    expect(out.map((o) => o.invoice_id)).toEqual(ids);
    expect(norm(out[1234])).toEqual(byId.get(ids[1234]));
  });

  it('stdin: each id is answered as it is read, before the input ends (an interactive producer)', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), 'get', '-'], {
      cwd,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/root',
        TZ: 'UTC',
        XDG_DATA_HOME: testDataHome(),
        DATABASE_URL: db.url,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const answered = async (n: number) => {
      for (let waited = 0; stdout.split('\n').filter(Boolean).length < n; waited += 25) {
        if (waited > 20_000) throw new Error(`no answer to line ${n} while stdin is open; got: ${stdout}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    child.stdin.write('11\n');
    await answered(1);
    child.stdin.write('12\n');
    await answered(2);
    child.stdin.end('13\n');
    expect(await closed).toBe(0);
    expect(lines(stdout).map((o) => o.invoice_id)).toEqual([11, 12, 13]);
  });

  it('stdin: blank lines and surrounding spaces are ignored; no trailing newline is fine', async () => {
    const r = await runWithInput(['get', '-'], '  7 \n\n\t8\n9');
    expect(r.code).toBe(0);
    expect(lines(r.stdout).map((o) => o.invoice_id)).toEqual([7, 8, 9]);
  });

  it('stdin: a malformed line is named with its line number, the others printed, exit 2 at the end (no stack trace)', async () => {
    const r = await runWithInput(['get', '-'], '5\n6\nabc\n999999\n-4\n10\n');
    expect(r.code).toBe(2);
    expect(lines(r.stdout).map((o) => o.invoice_id)).toEqual([5, 6, 10]);
    expect(r.stderr).toContain('invoices: stdin line 3: invoice id must be a positive integer, got "abc"');
    expect(r.stderr).toContain('invoices: stdin line 5: invoice id must be a positive integer, got "-4"');
    expect(r.stderr).toContain('invoices: invoice 999999 not found');
    expect(r.stderr).toContain('2 malformed ids on stdin');
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('--format csv: one header, then a row per id across batches', async () => {
    const ids = Array.from({ length: 1500 }, (_, i) => 1 + (i % 300));
    const r = await runWithInput(['get', '-', '--format', 'csv'], ids.join('\n'));
    expect(r.code).toBe(0);
    const rows = r.stdout.trim().split('\n');
    expect(rows[0]).toBe('invoice_id,issue_date,issuer_id,issuer_name,receiver_id,receiver_name,amount');
    expect(rows).toHaveLength(1501);
    expect(rows.filter((l) => l.startsWith('invoice_id,'))).toHaveLength(1);
    expect(rows.slice(1).map((l) => Number(l.split(',')[0]))).toEqual(ids);
  });

  it('--format table: the invoices of many ids as key/value blocks (the table is wider than 100 columns)', async () => {
    const r = await get(['1', '2', '--format', 'table']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('-[ RECORD 1 ]');
    expect(r.stdout).toContain('-[ RECORD 2 ]');
    expect(r.stdout).toMatch(new RegExp(`^amount\\s+\\| ${String(byId.get(2)!.amount).replace('.', '\\.')}$`, 'm'));
    expect(Math.max(...r.stdout.split('\n').map((l) => l.length))).toBeLessThanOrEqual(100);
  });

  it('a missing table: exit 2 with the advice to run `invoices init`, as every command', async () => {
    const empty = await createDatabase();
    try {
      const r = await runWithInput(['get', '-'], '1\n2\n', { DATABASE_URL: empty.url });
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('invoices init');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    } finally {
      await empty.drop();
    }
  });

  describe.skipIf(!REDIS_URL)('through Redis [needs REDIS_URL]', () => {
    it('the second run answers from the cache (every found id a hit) with the same output', async () => {
      const ids = Array.from({ length: 1200 }, (_, i) => 1 + ((i * 31) % 300)).concat([999999]);
      const env = { REDIS_URL: REDIS_URL! };
      const input = ids.join('\n') + '\n';
      const plain = await runWithInput(['get', '-', '--no-cache'], input);
      const first = await runWithInput(['get', '-', '--debug', '--cache-ttl', '30'], input, env);
      const second = await runWithInput(['get', '-', '--debug', '--cache-ttl', '30'], input, env);
      for (const r of [plain, first, second]) expect(r.code).toBe(3);
      expect(first.stdout).toBe(plain.stdout);
      expect(second.stdout).toBe(plain.stdout);
      expect(lines(second.stdout)).toHaveLength(1200);
      // 300 distinct ids exist: by the second run every lookup of one of them is a hit.
      expect(second.stderr).toMatch(/cache redis:\/\/[^ ]+ \(ttl 30 s\): 1200 hits, 1 misses/);
      expect(second.stderr).toContain('invoice 999999 not found');
    });
  });
});
