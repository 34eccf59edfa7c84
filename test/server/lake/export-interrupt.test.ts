// Ctrl-C and SIGTERM during `invoices export` (issue 11): it used to print "stopping at the next
// clean point" and hang for good (a DuckDB connection closed while the other stream's query ran).
// Now every stream is stopped (psql killed, DuckDB interrupted) and waited for: exit 130/143 within
// 2 s, the lake exactly as before, nothing staged, no pipe, no psql left, and the next export works.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, waitFor, withPg, type TestDatabase } from '../../support/helpers.js';
import { startCli } from '../../support/interrupt-helpers.js';

let db: TestDatabase;
let lake: string;

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '5000', '--invoices', '600000', '--months', '12', '--seed', '3']);
  lake = path.join(tempDir('export-interrupt-'), 'lake');
  const first = await runCli(['export', '--out', lake, '--quiet'], { env: { DATABASE_URL: db.url }, timeoutMs: 110_000 });
  if (first.code !== 0) throw new Error(first.stderr);
}, 240_000);

afterAll(async () => {
  await db?.drop();
});

/** Every path under the lake (hidden ones included) with its size: the lake's whole state. */
function snapshot(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = st.size;
    }
  };
  walk(dir);
  return out;
}

const exportBackends = () =>
  withPg(db.url, async (c) =>
    Number(
      (
        await c.query(
          `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'invoices-export'`,
        )
      ).rows[0].n,
    ),
  );

describe.sequential('export stopped by a signal', () => {
  // Points: while psql streams a month (seen on the server), and once a month is staged (seen in the lake).
  const points: [string, NodeJS.Signals, () => Promise<boolean>][] = [
    ['while the months stream', 'SIGINT', async () => (await exportBackends()) > 0],
    [
      'once a month is staged',
      'SIGINT',
      async () =>
        existsSync(path.join(lake, '.invoices-staging')) &&
        readdirSync(path.join(lake, '.invoices-staging')).some((f) => f.endsWith('.parquet')),
    ],
    ['by SIGTERM while the months stream', 'SIGTERM', async () => (await exportBackends()) > 0],
  ];

  it.each(points)('%s: stops within 2 s and leaves the lake as it was', async (_what, sig, ready) => {
    const manifest = readFileSync(path.join(lake, '_manifest.json'), 'utf8');
    const before = snapshot(lake);
    const run = startCli(db.url, ['export', '--out', lake, '--full']);
    await waitFor(
      'the export to reach the point',
      async () => {
        if (await ready()) return true;
        if (run.stderr().includes('exported ')) throw new Error(`finished before the signal: ${run.stderr()}`);
        return false;
      },
      60_000,
      20,
    );
    const e = await run.interrupt(sig);
    expect(e.code, e.stderr).toBe(sig === 'SIGINT' ? 130 : 143);
    expect(e.stopMs).toBeLessThan(2000);
    expect(e.stderr).toMatch(/export interrupted: the lake still holds the previous export/);
    expect(e.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(readFileSync(path.join(lake, '_manifest.json'), 'utf8')).toBe(manifest);
    expect(snapshot(lake)).toEqual(before);
    // psql's sessions end with it (killed, not waited for).
    await waitFor('the export sessions to end', async () => (await exportBackends()) === 0, 5_000);
  });

  it('the next plain export and --verify-only succeed', async () => {
    const next = await runCli(['export', '--out', lake, '--quiet'], { env: { DATABASE_URL: db.url }, timeoutMs: 110_000 });
    expect(next.code, next.stderr).toBe(0);
    const verify = await runCli(['export', '--out', lake, '--verify-only', '--quiet'], { env: { DATABASE_URL: db.url } });
    expect(verify.code, verify.stderr).toBe(0);
  });
});
