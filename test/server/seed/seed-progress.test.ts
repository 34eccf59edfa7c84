// Progress that tells the truth: on a terminal, the phase with its place in the job, done of the
// phase's total, rate and ETA; nothing at all when stderr is not a terminal (piped, --quiet).
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createProgress, renderLine } from '../../../src/output/progress.js';
import { createDatabase, runCli, type TestDatabase } from '../../support/helpers.js';

/** A stream that collects what is written, posing as a terminal 100 columns wide. */
function fakeTerminal(): { stream: NodeJS.WriteStream; text: () => string } {
  const s = new PassThrough();
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('utf8')));
  Object.assign(s, { isTTY: true, columns: 100 });
  return { stream: s as unknown as NodeJS.WriteStream, text: () => text };
}
/** The last line drawn: what the terminal shows after the \r redraws. */
const lastLine = (text: string) => text.split('\r\x1b[2K').filter(Boolean).pop() ?? '';

describe('the live line', () => {
  it('shows the phase, its step in the job, done/total with percent, rate and ETA', () => {
    const line = renderLine(
      'seed',
      { name: 'invoices', unit: 'rows', step: 2, steps: 5, total: 2_000_000, done: 500_000, started: 0, movedAt: 2000, detail: '' },
      2000,
      -1000,
      '⠋',
    );
    expect(line).toBe('⠋ seed [2/5] invoices: 500,000/2,000,000 rows (25%) · 250,000 rows/s · ETA 6s · 3s');
  });

  it('counts indexes as indexes: seconds per index, and an ETA that discounts the build in flight', () => {
    const line = renderLine(
      'seed',
      {
        name: 'indexes',
        unit: 'indexes',
        step: 4,
        steps: 5,
        total: 3,
        done: 1,
        started: 0,
        movedAt: 4000,
        detail: 'invoices_pkey building index: scanning table 40%',
      },
      6000,
      0,
    );
    expect(line).toBe(
      'seed [4/5] indexes: 1/3 indexes (33%) · 4.0 s per index · ETA 6s · invoices_pkey building index: scanning table 40% · 6s',
    );
  });

  it('is drawn on a terminal, redrawn in place, cut to its width, and cleared by stop()', async () => {
    const term = fakeTerminal();
    const p = createProgress('seed', { quiet: false, tty: true, stream: term.stream });
    p.phase('invoices', { total: 1000, unit: 'rows', step: 2, steps: 4 });
    p.update(400, 1000);
    p.detail('x'.repeat(200));
    await new Promise((r) => setTimeout(r, 600));
    const shown = lastLine(term.text());
    expect(shown).toMatch(/^. seed \[2\/4\] invoices: 400\/1,000 rows \(40%\)/);
    expect(shown.length).toBeLessThanOrEqual(96);
    expect(shown.endsWith('…')).toBe(true);
    // A log line in between clears the live line first and draws it again after.
    p.wrap({ info: (m) => term.stream.write(m + '\n'), warn() {}, debug() {} }).info('created partition invoices_p2026_01');
    expect(term.text()).toMatch(/\r\x1b\[2Kcreated partition invoices_p2026_01\n\r\x1b\[2K. seed/);
    p.stop();
    expect(term.text().endsWith('\r\x1b[2K')).toBe(true);
  });

  it('writes nothing when stderr is not a terminal or with --quiet', async () => {
    for (const opts of [
      { quiet: false, tty: false },
      { quiet: true, tty: true },
    ]) {
      const term = fakeTerminal();
      const p = createProgress('seed', { ...opts, stream: term.stream });
      p.phase('invoices', { total: 10 });
      p.update(5, 10);
      await new Promise((r) => setTimeout(r, 300));
      p.stop();
      expect(term.text()).toBe('');
    }
  });
});

describe('seed with stderr piped', () => {
  const dbs: TestDatabase[] = [];
  afterAll(async () => {
    await Promise.all(dbs.map((d) => d.drop()));
  });

  it('prints the summary only; --debug adds one line per phase, with its step and total', async () => {
    const db = await createDatabase();
    dbs.push(db);
    const r = await runCli(['seed', '--customers', '200', '--invoices', '300000', '--as-of', '2026-01-01'], {
      env: { DATABASE_URL: db.url },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^seeded 200 customers and 300,000 invoices \(ids 1\.\.300000, 2024-01-01 to 2026-01-01\) in [\d.]+ s/),
    ]);
    const again = await runCli(['seed', '--customers', '200', '--invoices', '300000', '--as-of', '2026-01-01', '--truncate', '--debug'], {
      env: { DATABASE_URL: db.url },
    });
    expect(again.code, again.stderr).toBe(0);
    const phases = again.stderr
      .split('\n')
      .filter((l) => l.startsWith('debug: seed phase'))
      .map((l) => l.replace(/^debug: /, ''));
    expect(phases).toEqual([
      'seed phase 1/5: customers (200 customers)',
      'seed phase 2/5: invoices (300,000 rows)',
      'seed phase 3/5: invoice_ids (300,000 rows)',
      'seed phase 4/5: indexes (2 indexes)',
      'seed phase 5/5: analyze (3 tables)',
    ]);
    expect(again.stderr).toMatch(/debug: seed building invoices_pkey\n/);
  });
});
