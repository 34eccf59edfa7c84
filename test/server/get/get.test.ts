// `invoices get` end to end: the built CLI against a small seeded database.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminUrl, createDatabase, runCli, seedWithCli, withPg, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
let empty: TestDatabase;
/** Invoice 7 as PostgreSQL has it, with its parties' names. */
let expected: { invoice_id: string; issuer_id: string; receiver_id: string; amount: string; issuer_name: string; receiver_name: string };

beforeAll(async () => {
  [db, empty] = await Promise.all([createDatabase(), createDatabase()]);
  await seedWithCli(db.url, ['--customers', '20', '--invoices', '200', '--seed', '3', '--as-of', '2025-06-01', '--months', '3']);
  expected = await withPg(db.url, async (c) => {
    // One invoice with a name that needs CSV quoting and an amount with significant zeros.
    await c.query(
      `UPDATE customers SET name = 'Smith, Jones and "Partners"' WHERE id = (SELECT issuer_id FROM invoices WHERE invoice_id = 7)`,
    );
    await c.query(`UPDATE invoices SET amount = 1234.50, issue_date = '2025-04-30T23:59:59.123456Z' WHERE invoice_id = 7`);
    const { rows } = await c.query(
      `SELECT i.invoice_id::text, i.issuer_id::text, i.receiver_id::text, i.amount::text, ci.name AS issuer_name, cr.name AS receiver_name
         FROM invoices i JOIN customers ci ON ci.id = i.issuer_id JOIN customers cr ON cr.id = i.receiver_id WHERE invoice_id = 7`,
    );
    return rows[0];
  });
});

afterAll(async () => {
  await Promise.all([db?.drop(), empty?.drop()]);
});

const get = (args: string[], url = db.url) => runCli(['get', ...args], { env: { DATABASE_URL: url } });

/** A minimal RFC 4180 parser for the CLI's CSV. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += ch;
  }
  if (cell !== '' || row.length) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}

describe('invoices get', () => {
  it('prints a found invoice as JSON (the default off a terminal) and exits 0', async () => {
    const r = await get(['7']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const inv = JSON.parse(r.stdout);
    expect(Object.keys(inv)).toEqual(['invoice_id', 'issue_date', 'issuer_id', 'issuer_name', 'receiver_id', 'receiver_name', 'amount']);
    expect(inv).toEqual({
      invoice_id: 7,
      issue_date: '2025-04-30T23:59:59.123456Z',
      issuer_id: Number(expected.issuer_id),
      issuer_name: 'Smith, Jones and "Partners"',
      receiver_id: Number(expected.receiver_id),
      receiver_name: expected.receiver_name,
      amount: '1234.50',
    });
    expect(expected.amount).toBe('1234.50');
  });

  it('matches PostgreSQL for a seeded invoice: exact amount string, names, ISO UTC date', async () => {
    const r = await get(['123', '--json']);
    expect(r.code).toBe(0);
    const inv = JSON.parse(r.stdout);
    expect(inv.invoice_id).toBe(123);
    expect(typeof inv.amount).toBe('string');
    expect(inv.issue_date).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/);
    const check = await withPg(db.url, async (c) => {
      const { rows } = await c.query(
        `SELECT i.amount::text AS amount, i.issuer_id::int AS issuer_id, i.receiver_id::int AS receiver_id,
                ci.name AS issuer_name, cr.name AS receiver_name, i.issue_date = $2::timestamptz AS same_time
           FROM invoices i JOIN customers ci ON ci.id = i.issuer_id JOIN customers cr ON cr.id = i.receiver_id
          WHERE i.invoice_id = $1`,
        [123, inv.issue_date],
      );
      return rows[0];
    });
    expect(check.same_time).toBe(true);
    expect(inv).toMatchObject({
      amount: check.amount,
      issuer_id: check.issuer_id,
      receiver_id: check.receiver_id,
      issuer_name: check.issuer_name,
      receiver_name: check.receiver_name,
    });
  });

  it('--format csv prints a header and one row', async () => {
    const r = await get(['7', '--format', 'csv']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('invoice_id,issue_date,issuer_id,issuer_name,receiver_id,receiver_name,amount');
    expect(parseCsv(r.stdout)).toEqual([
      ['invoice_id', 'issue_date', 'issuer_id', 'issuer_name', 'receiver_id', 'receiver_name', 'amount'],
      [
        '7',
        '2025-04-30T23:59:59.123456Z',
        expected.issuer_id,
        'Smith, Jones and "Partners"',
        expected.receiver_id,
        expected.receiver_name,
        '1234.50',
      ],
    ]);
  });

  it('--format table prints the values', async () => {
    const r = await get(['7', '--format', 'table']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('1234.50');
    expect(r.stdout).toContain('Smith, Jones and "Partners"');
  });

  it('a bad --format is a usage error', async () => {
    const r = await get(['7', '--format', 'xml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--format');
    expect(r.stdout).toBe('');
  });

  it('not found: exit 3, message on stderr, nothing on stdout', async () => {
    const r = await get(['999999']);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe('invoices: invoice 999999 not found');
  });

  it('the largest bigint is a valid id (not found), one more is not', async () => {
    expect((await get(['9223372036854775807'])).code).toBe(3);
    const r = await get(['9223372036854775808']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
  });

  it.each(['abc', '0', '-5', '1.5', '1e3', '0x10', ''])('rejects the id %j with exit 2', async (id) => {
    const r = await get([id]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe(`invoices: invoice id must be a positive integer, got "${id}"`);
  });

  it('a missing id is a usage error', async () => {
    const r = await get([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('missing required argument');
  });

  it('a database without the schema: exit 2 (a setup problem, as from every command), advice to run `invoices init`, no stack trace', async () => {
    const r = await get(['1'], empty.url);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('invoices init');
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('an unreachable server: exit 1, one line, no password', async () => {
    const r = await get(['1'], 'postgres://postgres:secret-pw-123@127.0.0.1:1/x');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('cannot connect to postgres://postgres:***@127.0.0.1:1/x');
    expect(r.stderr).not.toContain('secret-pw-123');
  });

  it('an unknown database: exit 1, one line, no password', async () => {
    const u = new URL(db.url);
    u.pathname = '/no_such_db_for_invoices';
    if (!u.password) u.password = 'secret-pw-456';
    const r = await get(['1'], u.toString());
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('no_such_db_for_invoices');
    expect(r.stderr).not.toContain(u.password);
  });

  it('a wrong password: exit 1, one line, the password never printed', async (t) => {
    const u = new URL(adminUrl());
    u.password = 'wrong-pw-789';
    // A trust-auth server (e.g. TEST_DATABASE_URL on a dev machine) accepts any password:
    // the embedded server of embedded.test.ts covers that case everywhere.
    const accepted = await withPg(u.toString(), async () => true).catch(() => false);
    if (accepted) t.skip('the test server does not check passwords');
    const r = await get(['1'], u.toString());
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('password authentication failed');
    expect(r.stderr).not.toContain('wrong-pw-789');
  });
});
