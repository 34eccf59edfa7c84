// Progress of export, group's first build of the monthly totals and risk: off a terminal nothing
// is drawn (the summary lines only); --debug shows what the live line is built from: the job's
// totals counted at the start (export's months and rows, risk's backlog below the horizon) and
// each step done, and the totals build named with its time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
const cli = (args: string[]) => runCli(args, { env: { DATABASE_URL: db.url } });
const debugLines = (stderr: string, prefix: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith(`debug: ${prefix}`))
    .map((l) => l.replace(/^debug: /, ''));
const noLiveLine = (stderr: string) => expect(stderr).not.toMatch(/\r|\x1b\[2K/);

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '50', '--invoices', '3000', '--months', '4', '--seed', '3', '--as-of', '2026-03-15']);
}, 120_000);
afterAll(async () => {
  await db?.drop();
});

describe('progress of export, group and risk', () => {
  it('export: the whole job counted first (months and rows), then each month and the customers phase', async () => {
    const out = tempDir('lake-');
    const r = await cli(['export', '--out', out, '--full', '--debug']);
    expect(r.code, r.stderr).toBe(0);
    noLiveLine(r.stderr);
    const start = debugLines(r.stderr, 'export phase 1/2 invoices');
    expect(start).toHaveLength(1);
    const [, months, rows] = /(\d+) month\(s\) to write, (\d+) rows/.exec(start[0])!.map(Number);
    expect(rows).toBeGreaterThan(0);
    const staged = debugLines(r.stderr, 'export: month ');
    expect(staged).toHaveLength(months);
    // The last month staged brings the whole job's rows and months to their totals.
    const counts = staged.map((l) => /(\d+)\/(\d+) month\(s\), (\d+)\/(\d+) rows/.exec(l)!.slice(1).map(Number));
    expect(counts.map((c) => c[0])).toEqual(counts.map((_, i) => i + 1));
    expect(counts[counts.length - 1]).toEqual([months, months, 3000, 3000]);
    expect(debugLines(r.stderr, 'export phase 2/2 customers')).toHaveLength(1);
    expect(r.stderr.indexOf('export phase 2/2 customers')).toBeGreaterThan(r.stderr.lastIndexOf('debug: export: month '));
  });

  it('group: the first build of the monthly totals is named and timed; the next run has none', async () => {
    const first = await cli(['group', '--by', 'issuer', '--engine', 'totals', '--months', '3', '--as-of', '2026-03-15', '--debug']);
    expect(first.code, first.stderr).toBe(0);
    noLiveLine(first.stderr);
    expect(first.stderr).toContain('monthly totals of public.invoices: computing every month (first build)');
    expect(first.stderr).toMatch(/monthly totals of public\.invoices: every month built in \d+\.\d s\n/);
    expect(debugLines(first.stderr, 'monthly totals of public.invoices: every month built in')[0]).toMatch(/\(3000 invoices\)$/);
    const again = await cli(['group', '--by', 'issuer', '--engine', 'totals', '--months', '3', '--as-of', '2026-03-15']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toContain('every month built');
  });

  it('risk: the backlog is counted once at the start, below the horizon; --limit caps it; a second run finds none', async () => {
    const limited = await cli(['risk', '--limit', '1000', '--batch-size', '400', '--debug']);
    expect(limited.code, limited.stderr).toBe(0);
    noLiveLine(limited.stderr);
    expect(debugLines(limited.stderr, 'risk backlog')).toEqual([
      'risk backlog: 3,000 invoice(s) below the horizon to walk (--limit 1,000)',
    ]);
    const rest = await cli(['risk', '--batch-size', '700', '--debug']);
    expect(rest.code, rest.stderr).toBe(0);
    expect(debugLines(rest.stderr, 'risk backlog')).toEqual(['risk backlog: 2,000 invoice(s) below the horizon to walk']);
    expect(rest.stderr).toMatch(/scored 2,000 invoice\(s\)/);
    const none = await cli(['risk', '--debug']);
    expect(debugLines(none.stderr, 'risk backlog')).toEqual(['risk backlog: 0 invoice(s) below the horizon to walk']);
  });

  it('risk --quiet prints nothing on stderr', async () => {
    const r = await cli(['risk', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
  });
});
