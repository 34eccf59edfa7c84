// A lake that lost or damaged a file, or whose export was killed at any point of its commit, is
// repaired by the next plain export (no --full): it says what it found, and afterwards the
// manifest matches the files, --verify-only exits 0, nothing of ours is left over, and the lake
// read by DuckDB equals PostgreSQL. Crashes are injected with strace: SIGKILL on entering the
// rename or unlink of a chosen file (-P matches a syscall's first path).
import { existsSync, readdirSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, type TestDatabase } from '../../support/helpers.js';
import {
  expectGroupEnginesAgree,
  expectManifestMatchesFiles,
  lakeMonths,
  listedFiles,
  manifestText,
  parquetOnDisk,
  pgMonths,
  readManifest,
  startCli,
  straceUnavailable,
} from '../../support/lake-helpers.js';

let db: TestDatabase;
let lake: string;

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '50', '--invoices', '3000', '--months', '6', '--seed', '12', '--as-of', '2025-06-01']);
  lake = path.join(tempDir('repair-'), 'lake');
});

afterAll(async () => {
  await db?.drop();
});

const cli = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url } });
async function exportOk(...extra: string[]): Promise<{ result: { month: string; action: string; reason: string }[]; stderr: string }> {
  const r = await cli(['export', '--out', lake, '--json', ...extra]);
  if (r.code !== 0) throw new Error(`export exited ${r.code}: ${r.stderr}`);
  return { result: JSON.parse(r.stdout), stderr: r.stderr };
}
async function verifyOnly(): Promise<{
  code: number | null;
  rows: { month: string; status: string; lake_rows: number | null; postgres_rows: number }[];
  stderr: string;
}> {
  const r = await cli(['export', '--out', lake, '--verify-only', '--json']);
  return { code: r.code, rows: r.stdout ? JSON.parse(r.stdout) : [], stderr: r.stderr };
}
/** The end state every repair must reach. */
async function expectRepaired(): Promise<void> {
  expectManifestMatchesFiles(lake);
  expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));
  const v = await verifyOnly();
  expect(v.code, v.stderr).toBe(0);
  await expectGroupEnginesAgree(db.url, lake);
}

describe('a file of the lake deleted or damaged by hand', () => {
  beforeAll(async () => {
    await exportOk();
    await expectRepaired();
  });

  for (const [what, damage, status] of [
    ['deleted', (f: string) => unlinkSync(f), 'MISSING FILE'],
    ['truncated', (f: string) => truncateSync(f, Math.floor(statSync(f).size / 2)), 'CHANGED FILE'],
  ] as const) {
    it(`${what}: --verify-only exits 1 naming it; a plain export rewrites that month only and says why; then --verify-only exits 0`, async () => {
      const before = readManifest(lake);
      const file = before.months['2025-02'].files[0];
      damage(path.join(lake, file));

      const bad = await verifyOnly();
      expect(bad.code).toBe(1);
      expect(bad.rows.filter((r) => r.status !== 'ok').map((r) => [r.month, r.status])).toEqual([['2025-02', status]]);
      expect(bad.stderr).toContain(`file ${file} ${what === 'deleted' ? 'is missing' : 'changed'}`);
      expect(bad.stderr).toContain('run `invoices export');

      // Readers refuse a missing file with advice that works (a plain export).
      if (what === 'deleted') {
        const q = await runCli(['query', 'SELECT count(*) FROM invoices', '--lake', lake], { env: { DATABASE_URL: db.url } });
        expect(q.code).toBe(2);
        expect(q.stderr).toContain('invoices export --out');
        expect(q.stderr).not.toContain('--full');
      }

      const { result, stderr } = await exportOk();
      expect(result.filter((m) => m.action === 'written').map((m) => m.month)).toEqual(['2025-02']);
      expect(result.find((m) => m.month === '2025-02')!.reason).toContain(`file ${file} ${what === 'deleted' ? 'is missing' : 'changed'}`);
      expect(stderr).toContain(`file ${file}`);
      const after = readManifest(lake);
      for (const m of ['2024-12', '2025-01', '2025-03', '2025-04', '2025-05'])
        expect(after.months[m].files).toEqual(before.months[m].files);
      expect(after.months['2025-02'].files).not.toEqual(before.months['2025-02'].files);
      await expectRepaired();
    });
  }
});

const noStrace = straceUnavailable();

describe.skipIf(Boolean(noStrace))(`an export killed during its commit${noStrace ? ` (skipped: ${noStrace})` : ''}`, () => {
  /** `export --full` under strace, killed with SIGKILL on entering `syscall` on `file`. */
  async function killedExport(syscall: string, file: string) {
    const run = startCli(['export', '--out', lake, '--full', '--quiet'], { DATABASE_URL: db.url }, [
      'strace',
      '-f',
      '-o',
      '/dev/null',
      '-P',
      file,
      '-e',
      `inject=${syscall}:signal=SIGKILL`,
    ]);
    const r = await run.done;
    // strace re-raises the signal that killed its tracee.
    expect(r.signal === 'SIGKILL' || r.code === 137, `export was not killed: exit ${r.code}, ${r.stderr}`).toBe(true);
    expect(existsSync(path.join(lake, '.invoices-journal.json'))).toBe(true);
    expect(existsSync(path.join(lake, '.invoices-lock'))).toBe(true);
  }

  /** The next plain export repairs: it removes the stale lock, finishes or rolls back, and says so. */
  async function repairs(said: RegExp) {
    const { stderr } = await exportOk();
    expect(stderr).toMatch(/removed a stale lock of .*: export pid \d+ on host .* is no longer running/);
    expect(stderr).toMatch(said);
    await expectRepaired();
  }

  beforeEach(async () => {
    await exportOk();
    expectManifestMatchesFiles(lake);
  });

  it('between the renames of its files: readers still see the previous export; the next plain export rolls it back', async () => {
    const before = manifestText(lake);
    // The months are renamed into place in order: killed at March's, December to February are in place.
    await killedExport('rename', path.join(lake, '.invoices-staging', 'month=2025-03.parquet'));
    expect(manifestText(lake)).toBe(before);
    const listed = listedFiles(readManifest(lake));
    const extra = parquetOnDisk(lake)
      .filter((f) => !listed.includes(f))
      .map((f) => f.split('/')[1]);
    expect(extra).toEqual(['month=2024-12', 'month=2025-01', 'month=2025-02']);
    // The lake as its manifest says is intact meanwhile.
    expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));
    await expectGroupEnginesAgree(db.url, lake);
    await repairs(/stopped before its commit: rolled back, removed 3 file\(s\) it had put in place/);
  });

  it("after its files and before the manifest's rename: the next plain export rolls it back", async () => {
    const before = manifestText(lake);
    await killedExport('rename', path.join(lake, '.invoices-staging', '_manifest.json'));
    expect(manifestText(lake)).toBe(before);
    // Every new file (six months, customers) is in place beside the previous ones.
    expect(parquetOnDisk(lake)).toHaveLength(2 * listedFiles(readManifest(lake)).length);
    expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));
    await repairs(/stopped before its commit: rolled back, removed 7 file\(s\) it had put in place/);
  });

  it("after the manifest's rename, before the previous files are removed: the next plain export finishes the cleanup", async () => {
    const before = readManifest(lake);
    // Killed at the removal of the previous export's February file: December and January's are gone already.
    await killedExport('unlink', path.join(lake, before.months['2025-02'].files[0]));
    const committed = readManifest(lake);
    expect(committed.exportId).not.toBe(before.exportId);
    expectManifestFilesPresent(committed);
    expect(await lakeMonths(lake)).toEqual(await pgMonths(db.url));
    await expectGroupEnginesAgree(db.url, lake);
    const { stderr } = await exportOk();
    expect(stderr).toMatch(/stopped after its commit: finished removing 5 file\(s\) of the export before it/);
    expect(readManifest(lake).months['2025-02'].files).toEqual(committed.months['2025-02'].files);
    await expectRepaired();
  });

  it('while writing, before any rename: the next plain export removes the staging folder and the stale lock', async () => {
    const before = manifestText(lake);
    // Killed at the first rename of the commit (the journal's), so every month is staged and nothing is in place.
    const run = startCli(['export', '--out', lake, '--full', '--quiet'], { DATABASE_URL: db.url }, [
      'strace',
      '-f',
      '-o',
      '/dev/null',
      '-P',
      path.join(lake, '.invoices-staging', '.invoices-journal.json'),
      '-e',
      'inject=rename:signal=SIGKILL',
    ]);
    const r = await run.done;
    expect(r.signal === 'SIGKILL' || r.code === 137).toBe(true);
    expect(existsSync(path.join(lake, '.invoices-journal.json'))).toBe(false);
    expect(readdirSync(path.join(lake, '.invoices-staging')).filter((f) => f.endsWith('.parquet'))).toHaveLength(7);
    expect(manifestText(lake)).toBe(before);
    const { result, stderr } = await exportOk();
    expect(result.every((m) => m.action === 'unchanged')).toBe(true);
    expect(stderr).toMatch(/removed a stale lock/);
    await expectRepaired();
  });
});

function expectManifestFilesPresent(m: ReturnType<typeof readManifest>): void {
  for (const f of listedFiles(m)) expect(existsSync(path.join(lake, f)), f).toBe(true);
}
