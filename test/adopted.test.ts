// A table an application created, with its own names and types, read through the config file's mapping.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTableMap } from '../src/tables.js';
import { createDatabase, runCli, tempDir, withPg, type TestDatabase } from './helpers.js';

const MAPPING = {
  invoices: { table: 'billing.invoice', columns: { invoice_id: 'id', issue_date: 'issued_at', issuer_id: 'from_client', receiver_id: 'to_client', amount: 'amount_usd' } },
  customers: { table: 'billing.clients', columns: { id: 'client_id', name: 'customer_name' } },
};

describe('an adopted table, mapped in invoices.config.json', () => {
  let db: TestDatabase;
  let cwd: string;
  const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { cwd, env: { DATABASE_URL: db.url, ...env } });

  beforeAll(async () => {
    db = await createDatabase();
    // The way an application would have created it: identity keys, timestamp without time zone,
    // another numeric scale, a customers table with only an id and a name.
    await withPg(db.url, (c) => c.query(`
      CREATE SCHEMA billing;
      CREATE TABLE billing.clients (client_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_name varchar(200) NOT NULL);
      CREATE TABLE billing.invoice (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        issued_at   timestamp NOT NULL,
        from_client integer NOT NULL REFERENCES billing.clients,
        to_client   integer NOT NULL REFERENCES billing.clients,
        amount_usd  numeric(12,3) NOT NULL);
      INSERT INTO billing.clients (customer_name) VALUES ('Acme "Rockets"'), ('Globex, Inc.');
      INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd)
        VALUES ('2026-03-01 23:30:00.123456', 1, 2, 1234.567), ('2026-03-02 08:00:00', 2, 1, 0.001);`));
    cwd = tempDir('adopted-');
    writeFileSync(path.join(cwd, 'invoices.config.json'), JSON.stringify(MAPPING));
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('get reads it without copying: names, exact amount at its own scale, timestamp read as UTC', async () => {
    const r = await cli(['get', '1', '--json'], { TZ: 'America/New_York' });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      invoice_id: 1, issue_date: '2026-03-01T23:30:00.123456Z', issuer_id: 1, issuer_name: 'Acme "Rockets"',
      receiver_id: 2, receiver_name: 'Globex, Inc.', amount: '1234.567',
    });
    const csv = await cli(['get', '2', '--format', 'csv']);
    expect(csv.stdout).toBe('invoice_id,issue_date,issuer_id,issuer_name,receiver_id,receiver_name,amount\n2,2026-03-02T08:00:00Z,2,"Globex, Inc.",1,"Acme ""Rockets""",0.001\n');
  });

  it('not found is exit 3; --config PATH from elsewhere works the same', async () => {
    expect((await cli(['get', '99'])).code).toBe(3);
    const r = await runCli(['get', '1', '--json', '--config', path.join(cwd, 'invoices.config.json')], { env: { DATABASE_URL: db.url } });
    expect(JSON.parse(r.stdout)).toMatchObject({ invoice_id: 1, amount: '1234.567' });
  });

  it('commands that do not follow a mapping yet refuse it (exit 2) and touch nothing', async () => {
    for (const args of [['seed', '--customers', '5'], ['init'], ['partition']]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('table mapping');
    }
    const tables = await withPg(db.url, async (c) => (await c.query("SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('invoices', 'customers', 'invoice_ids')")).rows[0].n);
    expect(tables).toBe(0);
  });

  it('index builds the covering indexes on its own columns, concurrently, and lists them', async () => {
    const r = await cli(['index', '--json']);
    expect(r.code).toBe(0);
    const listed = JSON.parse(r.stdout) as Array<{ name: string; definition: string; valid: string }>;
    expect(listed.map((x) => x.name)).toEqual(['invoice_issuer_date_idx', 'invoice_pkey', 'invoice_receiver_date_idx']);
    expect(listed.find((x) => x.name === 'invoice_issuer_date_idx')?.definition).toContain('(from_client, issued_at) INCLUDE (amount_usd)');
    expect(listed.every((x) => x.valid === 'yes')).toBe(true);
    expect((await cli(['index'])).stderr).toContain('nothing to do');
  });

  it('a bad mapping is a one-line config error (exit 2)', async () => {
    const bad = tempDir('adopted-bad-');
    writeFileSync(path.join(bad, 'invoices.config.json'), JSON.stringify({ invoices: { table: 'a.b.c' } }));
    const r = await runCli(['get', '1'], { cwd: bad, env: { DATABASE_URL: db.url } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/"invoices"\.table must be "table" or "schema\.table"/);
    expect(() => parseTableMap({ invoices: { columns: { amount_usd: 'x' } } }, 'f.json')).toThrow(/unknown column "amount_usd"/);
    expect(parseTableMap({ customers: { table: 'crm.people' } }, 'f.json')).toMatchObject({
      mapped: true, invoices: { schema: 'public', table: 'invoices' }, customers: { schema: 'crm', table: 'people', columns: { id: 'id', name: 'name' } },
    });
  });
});
