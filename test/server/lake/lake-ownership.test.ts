// The lake is a folder export owns: it is created in a new or empty folder, a non-empty folder
// that is not a lake is refused (exit 2, one line), a bad --out is one line too, and files the
// user put into the lake survive every export. A lake of the previous version (manifest v1,
// part-0.parquet) is read, then moved to new files by the next export.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, waitForHorizon, withPg, type TestDatabase } from '../../support/helpers.js';
import {
  expectGroupEnginesAgree,
  expectManifestMatchesFiles,
  lakeMonths,
  parquetOnDisk,
  pgMonths,
  readManifest,
} from '../../support/lake-helpers.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '50', '--invoices', '3000', '--months', '6', '--seed', '11', '--as-of', '2025-06-01']);
});

afterAll(async () => {
  await db?.drop();
});

const cli = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url } });
async function exportOk(
  lake: string,
  ...extra: string[]
): Promise<{ month: string; action: string; rows: number; sum: string; reason: string }[]> {
  const r = await cli(['export', '--out', lake, '--json', ...extra]);
  if (r.code !== 0) throw new Error(`export exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
/** One line on stderr, `invoices: ...`, and no stack. */
function expectOneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^invoices: /);
  expect(stderr).not.toMatch(/\n\s+at /);
  return lines[0];
}
const tree = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => f.split(path.sep).join('/'))
    .sort();

describe('export --out: which folders become a lake', () => {
  it('creates the lake in a folder that does not exist (parents too) and in an empty one', async () => {
    const fresh = path.join(tempDir('own-new-'), 'a', 'b', 'lake');
    await exportOk(fresh);
    const m = expectManifestMatchesFiles(fresh);
    expect(await lakeMonths(fresh)).toEqual(await pgMonths(db.url));
    expect(Object.keys(m.months)).toHaveLength(6);

    const empty = tempDir('own-empty-');
    await exportOk(empty);
    expectManifestMatchesFiles(empty);
    expect(await lakeMonths(empty)).toEqual(await pgMonths(db.url));
  });

  it('refuses a non-empty folder that is not a lake: exit 2, one line saying what to do, nothing written', async () => {
    const dir = tempDir('own-foreign-');
    writeFileSync(path.join(dir, 'notes.txt'), 'mine\n');
    mkdirSync(path.join(dir, 'invoices', 'month=2025-01'), { recursive: true });
    writeFileSync(path.join(dir, 'invoices', 'month=2025-01', 'data.csv'), 'a,b\n');
    const before = tree(dir);
    const r = await cli(['export', '--out', dir]);
    expect(r.code).toBe(2);
    const line = expectOneLine(r.stderr);
    expect(line).toContain(`--out ${dir} is not an invoices lake`);
    expect(line).toContain('invoices/month=2025-01');
    expect(line).toContain('notes.txt');
    expect(line).toContain('new or empty folder');
    expect(tree(dir)).toEqual(before);
    // --full does not change that: the folder is still not ours.
    expect((await cli(['export', '--out', dir, '--full'])).code).toBe(2);
    expect(tree(dir)).toEqual(before);
  });

  it('a regular file, a path under a file, or a named pipe as --out: exit 2 in one line, no stack', async () => {
    const dir = tempDir('own-bad-');
    const file = path.join(dir, 'file.txt');
    writeFileSync(file, 'x\n');
    const fifo = path.join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const cases: [string, string][] = [
      [file, `--out ${file} is a regular file, not a folder`],
      [path.join(file, 'lake'), `${file} is a file, not a folder`],
      [fifo, `--out ${fifo} is a named pipe, not a folder`],
      // A parent that passes the access check but never takes a folder: Node's recursive mkdir spun there for minutes.
      ['/proc/invoices-no-such/lake', '--out /proc/invoices-no-such/lake: cannot create /proc/invoices-no-such'],
    ];
    for (const [out, message] of cases) {
      const r = await cli(['export', '--out', out]);
      expect(r.code, out).toBe(2);
      expect(expectOneLine(r.stderr)).toContain(message);
    }
    expect(readFileSync(file, 'utf8')).toBe('x\n');
    expect(readdirSync(dir).sort()).toEqual(['file.txt', 'pipe']);
  });

  it.skipIf(process.getuid?.() === 0)(
    'a folder that cannot be written: exit 2 in one line (skipped as root, who may write anywhere)',
    async () => {
      const dir = tempDir('own-ro-');
      execFileSync('chmod', ['555', dir]);
      for (const out of [dir, path.join(dir, 'lake')]) {
        const r = await cli(['export', '--out', out]);
        expect(r.code).toBe(2);
        expect(expectOneLine(r.stderr)).toContain('not writable');
      }
    },
  );
});

describe('files the user put into the lake', () => {
  it('survive plain and --full exports, a month rewritten and a month removed; readers never read them', async () => {
    const lake = path.join(tempDir('own-mine-'), 'lake');
    await exportOk(lake);
    const first = readManifest(lake);
    // The user's own files: beside the lake's, in a month folder of ours, in a month of their own, at the root.
    const mine: Record<string, string> = {
      'customers/mine.parquet': 'not really parquet\n',
      'invoices/month=2020-01/mydata.csv': 'id,amount\n1,2.00\n',
      'invoices/month=2025-03/notes.txt': 'march notes\n',
      'invoices/month=2024-12/keep.txt': 'december\n',
      'README.txt': 'my lake\n',
    };
    for (const [f, text] of Object.entries(mine)) {
      mkdirSync(path.dirname(path.join(lake, f)), { recursive: true });
      writeFileSync(path.join(lake, f), text);
    }
    const mtimes = Object.fromEntries(Object.keys(mine).map((f) => [f, statSync(path.join(lake, f)).mtimeMs]));

    // A change in March, and every row of December gone: March is rewritten, December removed.
    await withPg(db.url, async (c) => {
      await c.query(
        `UPDATE invoices SET amount = amount + 1.00 WHERE invoice_id = (SELECT min(invoice_id) FROM invoices WHERE issue_date >= '2025-03-01' AND issue_date < '2025-04-01')`,
      );
      await c.query(`DELETE FROM invoices WHERE issue_date < '2025-01-01'`);
    });
    await waitForHorizon(db.url);
    const out = await exportOk(lake);
    expect(out.find((m) => m.month === '2025-03')).toMatchObject({ action: 'written' });
    expect(out.find((m) => m.month === '2024-12')).toMatchObject({ action: 'removed' });
    // December's Parquet file is gone; the folder stays for the user's keep.txt.
    expect(readdirSync(path.join(lake, 'invoices', 'month=2024-12'))).toEqual(['keep.txt']);
    expect(existsSync(path.join(lake, first.months['2024-12'].files[0]))).toBe(false);

    await exportOk(lake, '--full');
    await exportOk(lake);
    for (const [f, text] of Object.entries(mine)) {
      expect(readFileSync(path.join(lake, f), 'utf8'), f).toBe(text);
      expect(statSync(path.join(lake, f)).mtimeMs, f).toBe(mtimes[f]);
    }
    expectManifestMatchesFiles(lake, ['customers/mine.parquet']);
    expect(parquetOnDisk(lake)).toContain('customers/mine.parquet');
    expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));

    // Readers read only what the manifest lists: customers/mine.parquet is not a customers file.
    const q = await runCli(
      ['query', 'SELECT count(*)::VARCHAR AS n, CAST(sum(amount) AS VARCHAR) AS s FROM invoices', '--lake', lake, '--json'],
      { env: { DATABASE_URL: db.url } },
    );
    expect(q.code).toBe(0);
    const [sql] = await withPg(
      db.url,
      async (c) => (await c.query(`SELECT count(*)::text AS n, sum(amount)::text AS s FROM invoices`)).rows,
    );
    expect(JSON.parse(q.stdout)).toEqual([sql]);
    const qc = await runCli(['query', 'SELECT count(*)::INT AS n FROM customers', '--lake', lake, '--json'], {
      env: { DATABASE_URL: db.url },
    });
    expect(JSON.parse(qc.stdout)).toEqual([{ n: 50 }]);
    await expectGroupEnginesAgree(db.url, lake);

    const v = await cli(['export', '--out', lake, '--verify-only', '--json']);
    expect(v.code).toBe(0);
  });
});

describe('a lake of the previous version (manifest v1, part-0.parquet)', () => {
  it('is read as it is, and the next plain export moves it to new files, removing only the v1 files and leftovers of v1 runs', async () => {
    const lake = path.join(tempDir('own-v1-'), 'lake');
    await exportOk(lake);
    // Make it what the previous version wrote: part-0.parquet per folder, a v1 manifest without lineage or file sizes.
    const m = readManifest(lake) as unknown as Record<string, unknown> & {
      months: Record<string, { files: string[]; fileInfo?: unknown }>;
      customers: { files: string[]; fileInfo?: unknown };
    };
    for (const e of [...Object.values(m.months), m.customers]) {
      const to = path.join(path.dirname(e.files[0]), 'part-0.parquet');
      renameSync(path.join(lake, e.files[0]), path.join(lake, to));
      e.files = [to];
      delete e.fileInfo;
    }
    const v1 = { ...m, version: 1 };
    delete v1.exportId;
    delete v1.lineage;
    writeFileSync(path.join(lake, '_manifest.json'), JSON.stringify(v1, null, 2) + '\n');
    // What a killed v1 run left (a process that is gone), and a file of the user's.
    const gone = 4_194_999; // above Linux's largest pid: no such process
    mkdirSync(path.join(lake, 'invoices', `.tmp-month=2025-02-${gone}`));
    writeFileSync(path.join(lake, 'invoices', `.tmp-month=2025-02-${gone}`, 'part-0.parquet'), 'partial');
    mkdirSync(path.join(lake, `.tmp-customers-${gone}`));
    writeFileSync(path.join(lake, `.copy-${gone}-abc123.pipe`), '');
    writeFileSync(path.join(lake, 'invoices', 'month=2025-02', 'mine.csv'), 'x\n');

    // Readers take v1 as it is.
    const q = await runCli(['query', 'SELECT count(*)::INT AS n FROM invoices', '--lake', lake, '--json'], {
      env: { DATABASE_URL: db.url },
    });
    expect(q.code).toBe(0);
    const [sql] = await withPg(db.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM invoices`)).rows);
    expect(JSON.parse(q.stdout)).toEqual([sql]);

    const r = await cli(['export', '--out', lake, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { action: string; reason: string }[];
    expect(out.filter((o) => o.action !== 'removed').every((o) => o.action === 'written')).toBe(true);
    expect(r.stderr).toContain('no lineage recorded');
    expect(r.stderr).toMatch(/removed 3 leftover\(s\) of an earlier export/);
    expect(parquetOnDisk(lake).some((f) => f.endsWith('/part-0.parquet'))).toBe(false);
    expect(readFileSync(path.join(lake, 'invoices', 'month=2025-02', 'mine.csv'), 'utf8')).toBe('x\n');
    expect(readdirSync(path.join(lake, 'invoices')).filter((n) => n.startsWith('.'))).toEqual([]);
    expectManifestMatchesFiles(lake);
    expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));
    expect((await cli(['export', '--out', lake, '--verify-only'])).code).toBe(0);
  });
});
