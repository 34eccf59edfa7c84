// Ctrl-C during seed: a fresh load rolls back whole; an --append keeps whole committed batches.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, ROOT, seedWithCli, withPg, type TestDatabase } from './helpers.js';

interface Interrupted {
  code: number | null;
  stderr: string;
  /** Milliseconds from the signal to the exit. */
  stopMs: number;
}

/** Starts `invoices seed ...`, sends SIGINT once its load is under way, waits for the exit. */
function seedAndInterrupt(url: string, args: string[], afterMs: number): Promise<Interrupted> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), 'seed', ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: 'UTC', DATABASE_URL: url },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let signalled = 0;
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      signalled = performance.now();
      child.kill('SIGINT');
    }, afterMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stopMs: signalled ? performance.now() - signalled : -1 });
    });
  });
}

const counts = (url: string) =>
  withPg(url, async (c) => (await c.query<{ customers: number; invoices: number; ids: number; mismatched: number }>(
    `SELECT (SELECT count(*) FROM customers)::int AS customers, (SELECT count(*) FROM invoices)::int AS invoices,
            (SELECT count(*) FROM invoice_ids)::int AS ids,
            (SELECT count(*) FROM invoices i FULL JOIN invoice_ids l USING (invoice_id, issue_date)
              WHERE i.invoice_id IS NULL OR l.invoice_id IS NULL)::int AS mismatched`,
  )).rows[0]);

describe('Ctrl-C during seed', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('a fresh load stops promptly, exits 130 and leaves the tables as they were', async () => {
    const r = await seedAndInterrupt(db.url, ['--customers', '100000', '--invoices', '5000000', '--as-of', '2026-01-01'], 2500);
    expect(r.stopMs).toBeGreaterThan(0); // it was still running when interrupted
    expect(r.code).toBe(130);
    expect(r.stderr).toContain('rolled back');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stopMs).toBeLessThan(5000);
    expect(await counts(db.url)).toEqual({ customers: 0, invoices: 0, ids: 0, mismatched: 0 });
  });

  it('an --append keeps the batches it committed, whole, and says which ids they hold', async () => {
    await seedWithCli(db.url, ['--customers', '50', '--invoices', '1000', '--as-of', '2026-01-01']);
    const r = await seedAndInterrupt(db.url, ['--customers', '1000', '--invoices', '5000000', '--batch-size', '100000', '--append', '--as-of', '2026-01-01'], 3000);
    expect(r.code).toBe(130);
    const m = /and (\d+) of 5000000 invoices committed \(ids 1001\.\.(\d+)\)/.exec(r.stderr);
    expect(m).not.toBeNull();
    const committed = Number(m![1]);
    expect(committed % 100000).toBe(0);
    expect(Number(m![2])).toBe(1000 + committed);
    const after = await counts(db.url);
    expect(after).toEqual({ customers: 1050, invoices: 1000 + committed, ids: 1000 + committed, mismatched: 0 });
  });
});
