// A table an application created, with its own names and types, read through the config file's mapping.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InterruptedError } from '../../../src/errors.js';
import { convertInvoices } from '../../../src/schema/convert.js';
import { InvoiceGenerator, type InvoiceRow } from '../../../src/seed/invoices.js';
import { seedWindow } from '../../../src/seed/seed.js';
import { parseTableMap } from '../../../src/tables.js';
import { adoptBilling, BILLING_MAPPING, createDatabase, runCli, tempDir, withPg, type TestDatabase } from '../../support/helpers.js';

/**
 * What seed generates, summed per month (UTC) with BigInt cents and printed at a numeric scale
 * the way PostgreSQL prints sum(): the oracle for sums read back from an adopted table.
 */
function expectedMonthlySums(
  o: { customers: number; invoices: number; months: number; asOf: string; firstId?: number; firstCustomerId?: number },
  scale: number,
): Record<string, { n: number; sum: string }> {
  const { startMicros, endMicros } = seedWindow(new Date(`${o.asOf}T00:00:00Z`), o.months);
  const gen = new InvoiceGenerator({
    count: o.invoices,
    firstId: o.firstId ?? 1,
    firstCustomerId: o.firstCustomerId ?? 1,
    customers: o.customers,
    startMicros,
    endMicros,
    seed: '1',
  });
  const row: InvoiceRow = { id: 0, issueMicros: 0, issuerId: 0, receiverId: 0, cents: 0 };
  const acc: Record<string, { n: number; cents: bigint }> = {};
  while (gen.next(row)) {
    const m = new Date(row.issueMicros / 1000).toISOString().slice(0, 7);
    acc[m] ??= { n: 0, cents: 0n };
    acc[m].n++;
    acc[m].cents += BigInt(row.cents);
  }
  const fmt = (c: bigint) => `${c / 100n}.${String(c % 100n).padStart(2, '0')}${'0'.repeat(scale - 2)}`;
  return Object.fromEntries(Object.entries(acc).map(([m, v]) => [m, { n: v.n, sum: fmt(v.cents) }]));
}

/** count and sum per month of issue date as PostgreSQL prints them (a timestamp column is UTC already). */
async function monthlySums(
  c: pg.Client,
  table: string,
  date: string,
  amount: string,
  where = 'true',
): Promise<Record<string, { n: number; sum: string }>> {
  const { rows } = await c.query<{ m: string; n: number; sum: string }>(
    `SELECT to_char(${date}, 'YYYY-MM') AS m, count(*)::int AS n, sum(${amount})::text AS sum FROM ${table} WHERE ${where} GROUP BY 1 ORDER BY 1`,
  );
  return Object.fromEntries(rows.map((r) => [r.m, { n: r.n, sum: r.sum }]));
}

describe('an adopted table, mapped in invoices.config.json', () => {
  let db: TestDatabase;
  let cwd: string;
  const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { cwd, env: { DATABASE_URL: db.url, ...env } });

  beforeAll(async () => {
    db = await createDatabase();
    // The way an application would have created it: identity keys, timestamp without time zone,
    // another numeric scale, a customers table with only an id and a name.
    cwd = await adoptBilling(
      db.url,
      `
      INSERT INTO billing.clients (customer_name) VALUES ('Acme "Rockets"'), ('Globex, Inc.');
      INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd)
        VALUES ('2026-03-01 23:30:00.123456', 1, 2, 1234.567), ('2026-03-02 08:00:00', 2, 1, 0.001);`,
    );
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('get reads it without copying: names, exact amount at its own scale, timestamp read as UTC', async () => {
    const r = await cli(['get', '1', '--json'], { TZ: 'America/New_York' });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      invoice_id: 1,
      issue_date: '2026-03-01T23:30:00.123456Z',
      issuer_id: 1,
      issuer_name: 'Acme "Rockets"',
      receiver_id: 2,
      receiver_name: 'Globex, Inc.',
      amount: '1234.567',
    });
    const csv = await cli(['get', '2', '--format', 'csv']);
    expect(csv.stdout).toBe(
      'invoice_id,issue_date,issuer_id,issuer_name,receiver_id,receiver_name,amount\n2,2026-03-02T08:00:00Z,2,"Globex, Inc.",1,"Acme ""Rockets""",0.001\n',
    );
  });

  it('not found is exit 3; --config PATH from elsewhere works the same', async () => {
    expect((await cli(['get', '99'])).code).toBe(3);
    const r = await runCli(['get', '1', '--json', '--config', path.join(cwd, 'invoices.config.json')], { env: { DATABASE_URL: db.url } });
    expect(JSON.parse(r.stdout)).toMatchObject({ invoice_id: 1, amount: '1234.567' });
  });

  it('init checks the mapped tables and creates none of its own; partition points a plain table at --convert (exit 2)', async () => {
    const init = await cli(['init']);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stderr).toContain('billing.invoice is a plain table: nothing to add');
    const partition = await cli(['partition']);
    expect(partition.code).toBe(2);
    expect(partition.stderr).toContain('billing.invoice is a plain (unpartitioned) table: convert it with `invoices partition --convert`');
    const tables = await withPg(
      db.url,
      async (c) =>
        (
          await c.query(
            "SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('invoices', 'customers', 'invoice_ids', 'invoice_default')",
          )
        ).rows[0].n,
    );
    expect(tables).toBe(0);
  });

  it('seed refuses tables that hold rows, and --append writes integer ids, a timestamp and numeric(12,3) through text COPY', async () => {
    const refused = await cli(['seed', '--customers', '5']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('tables billing.invoice and billing.clients already hold rows');
    const r = await cli(['seed', '--customers', '20', '--invoices', '400', '--months', '2', '--as-of', '2026-03-10', '--append']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('superuser');
    await withPg(db.url, async (c) => {
      expect((await c.query('SELECT count(*)::int AS n, max(client_id) AS max FROM billing.clients')).rows[0]).toEqual({ n: 22, max: 22 });
      expect(await monthlySums(c, 'billing.invoice', 'issued_at', 'amount_usd', 'id > 2')).toEqual(
        expectedMonthlySums({ customers: 20, invoices: 400, months: 2, asOf: '2026-03-10', firstId: 3, firstCustomerId: 3 }, 3),
      );
      // GENERATED ALWAYS identities continue after the generated ids.
      const {
        rows: [next],
      } = await c.query("INSERT INTO billing.clients (customer_name) VALUES ('Next') RETURNING client_id");
      expect(next.client_id).toBe(23);
      await c.query('DELETE FROM billing.clients WHERE client_id = 23');
    });
    const got = await cli(['get', '3', '--json']);
    expect(JSON.parse(got.stdout)).toMatchObject({ invoice_id: 3, amount: expect.stringMatching(/^\d+\.\d{3}$/) });
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

  it('partition --convert of the mapped table: interrupted, cancelled (the table as it was), then converted with integer ids kept', async () => {
    const before = await withPg(db.url, (c) => monthlySums(c, 'billing.invoice', 'issued_at', 'amount_usd'));
    const controller = new AbortController();
    const core = new pg.Client({ connectionString: db.url, options: '-c TimeZone=UTC' });
    await core.connect();
    await expect(
      convertInvoices(core, {
        ahead: [],
        batchSize: 100,
        signal: controller.signal,
        tables: parseTableMap(BILLING_MAPPING, 'test'),
        onProgress: (p) => {
          if (p.phase === 'backfill' && p.done >= 200) controller.abort();
        },
      }).finally(() => core.end()),
    ).rejects.toBeInstanceOf(InterruptedError);
    const objects = () =>
      withPg(
        db.url,
        async (c) =>
          (
            await c.query(`SELECT to_regclass('billing.invoice_part') IS NOT NULL AS part, to_regclass('billing.invoice_convert_state') IS NOT NULL AS state,
      (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'billing.invoice'::regclass AND NOT tgisinternal) AS triggers`)
          ).rows[0],
      );
    expect(await objects()).toEqual({ part: true, state: true, triggers: 2 });

    const dry = await cli(['partition', '--convert', '--cancel', '--dry-run']);
    expect(dry.stdout).toContain('DROP TRIGGER IF EXISTS invoice_convert_capture ON invoice');
    const cancel = await cli(['partition', '--convert', '--cancel']);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stderr).toContain('cancelled: the trigger on billing.invoice and everything the conversion created are gone');
    expect(await objects()).toEqual({ part: false, state: false, triggers: 0 });

    const r = await cli(['partition', '--convert', '--as-of', '2026-03-10']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('switched: billing.invoice is now partitioned');
    expect(await withPg(db.url, (c) => monthlySums(c, 'billing.invoice', 'issued_at', 'amount_usd'))).toEqual(before);
    expect(
      await withPg(
        db.url,
        async (c) =>
          (
            await c.query(
              "SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'billing.invoice'::regclass AND attname = 'from_client'",
            )
          ).rows[0],
      ),
    ).toEqual({ t: 'integer' });
    const got = await cli(['get', '1', '--json']);
    expect(JSON.parse(got.stdout)).toMatchObject({
      invoice_id: 1,
      issue_date: '2026-03-01T23:30:00.123456Z',
      amount: '1234.567',
      issuer_name: 'Acme "Rockets"',
    });
  });

  it('a bad mapping is a one-line config error (exit 2)', async () => {
    const bad = tempDir('adopted-bad-');
    writeFileSync(path.join(bad, 'invoices.config.json'), JSON.stringify({ invoices: { table: 'a.b.c' } }));
    const r = await runCli(['get', '1'], { cwd: bad, env: { DATABASE_URL: db.url } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/"invoices"\.table must be "table" or "schema\.table"/);
    expect(() => parseTableMap({ invoices: { columns: { amount_usd: 'x' } } }, 'f.json')).toThrow(/unknown column "amount_usd"/);
    expect(parseTableMap({ customers: { table: 'crm.people' } }, 'f.json')).toMatchObject({
      mapped: true,
      invoices: { schema: 'public', table: 'invoices' },
      customers: { schema: 'crm', table: 'people', columns: { id: 'id', name: 'name' } },
    });
  });
});

describe('init, seed and partition on an adopted table in its own schema', () => {
  let db: TestDatabase;
  let cwd: string;
  const AS_OF = '2026-03-10';
  const MAP = {
    invoices: {
      table: 'erp.bills',
      columns: { invoice_id: 'bill_no', issue_date: 'billed_at', issuer_id: 'seller', receiver_id: 'buyer', amount: 'amount_usd' },
    },
    customers: { table: 'erp.parties', columns: { id: 'party_no', name: 'customer_name' } },
  };
  const cli = (args: string[], dir = cwd) => runCli(args, { cwd: dir, env: { DATABASE_URL: db.url } });
  const query = async <T extends pg.QueryResultRow>(sql: string): Promise<T[]> => withPg(db.url, async (c) => (await c.query<T>(sql)).rows);
  const erpRelations = async () =>
    (
      await query<{ name: string }>(
        "SELECT relname AS name FROM pg_class WHERE relnamespace = 'erp'::regnamespace AND relkind IN ('r', 'p') ORDER BY 1",
      )
    ).map((r) => r.name);
  const partitionsOf = async () =>
    (
      await query<{ name: string }>(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'erp.bills'::regclass ORDER BY 1",
      )
    ).map((r) => r.name);
  const expected = expectedMonthlySums({ customers: 40, invoices: 3000, months: 3, asOf: AS_OF }, 4);

  beforeAll(async () => {
    db = await createDatabase();
    // bigint identity keys (ALWAYS and BY DEFAULT), a timestamp without time zone, numeric(18,4),
    // customers with only an id and a name, in schema erp.
    await withPg(db.url, (c) =>
      c.query(`
      CREATE SCHEMA erp;
      CREATE TABLE erp.parties (party_no bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, customer_name text NOT NULL);
      CREATE TABLE erp.bills (
        bill_no    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        billed_at  timestamp NOT NULL,
        seller     bigint NOT NULL REFERENCES erp.parties,
        buyer      bigint NOT NULL REFERENCES erp.parties,
        amount_usd numeric(18,4) NOT NULL CHECK (amount_usd >= 0));`),
    );
    cwd = tempDir('adopted-erp-');
    writeFileSync(path.join(cwd, 'invoices.config.json'), JSON.stringify(MAP));
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('init with a mapping that does not match says what is missing (exit 2) and creates nothing', async () => {
    const bad = tempDir('adopted-erp-bad-');
    writeFileSync(
      path.join(bad, 'invoices.config.json'),
      JSON.stringify({
        invoices: { ...MAP.invoices, columns: { ...MAP.invoices.columns, amount: 'amount_eur' } },
        customers: { table: 'erp.clients', columns: MAP.customers.columns },
      }),
    );
    for (const command of ['init', 'seed']) {
      const r = await cli(command === 'init' ? ['init'] : ['seed', '--customers', '5'], bad);
      expect(r.code, command).toBe(2);
      expect(r.stderr).toContain('erp.bills has no column amount_eur (mapped from amount)');
      expect(r.stderr).toContain('table erp.clients does not exist');
      expect(r.stderr).toContain('`invoices init` never creates a mapped table');
    }
    expect(await erpRelations()).toEqual(['bills', 'parties']);
  });

  it('init on the plain mapped tables: checked, nothing added', async () => {
    const r = await cli(['init']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('erp.bills is a plain table: nothing to add');
    expect(await erpRelations()).toEqual(['bills', 'parties']);
  });

  it('seed writes the mapped columns with their own types: exact sums at scale 4, timestamps in UTC, identities continued', async () => {
    const r = await cli(['seed', '--customers', '40', '--invoices', '3000', '--months', '3', '--as-of', AS_OF]);
    expect(r.code, r.stderr).toBe(0);
    expect(await query('SELECT count(*)::int AS n FROM erp.parties')).toEqual([{ n: 40 }]);
    expect(await withPg(db.url, (c) => monthlySums(c, 'erp.bills', 'billed_at', 'amount_usd'))).toEqual(expected);
    expect(Object.keys(expected)).toEqual(['2025-12', '2026-01', '2026-02', '2026-03']);
    expect(
      await query("SELECT min(billed_at)::text >= '2025-12-10' AS lo, max(billed_at)::text < '2026-03-10' AS hi FROM erp.bills"),
    ).toEqual([{ lo: true, hi: true }]);
    const [next] = await query<{ bill_no: string }>(
      "INSERT INTO erp.bills (billed_at, seller, buyer, amount_usd) VALUES ('2026-03-09 12:00', 1, 2, 1.5) RETURNING bill_no::text",
    );
    expect(next.bill_no).toBe('3001');
    await query('DELETE FROM erp.bills WHERE bill_no = 3001');
  });

  it('partition refuses the plain table; --convert --dry-run prints the plan in its schema and changes nothing', async () => {
    const refused = await cli(['partition', '--as-of', AS_OF]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('erp.bills is a plain (unpartitioned) table');
    const dry = await cli(['partition', '--convert', '--dry-run', '--as-of', AS_OF]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('SET search_path TO "erp";');
    expect(dry.stdout).toContain('CREATE TABLE bills_part (LIKE bills INCLUDING DEFAULTS');
    expect(dry.stdout).toContain('PARTITION BY RANGE (billed_at)');
    expect(dry.stdout).toContain('CREATE TABLE bills_p2026_03 PARTITION OF bills_part');
    expect(dry.stdout).toContain('ALTER TABLE bills_part ADD CONSTRAINT bills_part_pkey PRIMARY KEY (bill_no, billed_at)');
    expect(await erpRelations()).toEqual(['bills', 'parties']);
  });

  it('partition --convert converts it in place with its own names and types, says what it adds, and get finds a converted invoice', async () => {
    const r = await cli(['partition', '--convert', '--as-of', AS_OF, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('added to schema erp: bills_part, bills_p2025_12');
    expect(r.stderr).toContain('triggers bills_convert_capture and bills_convert_no_truncate on erp.bills');
    expect(r.stderr).toContain('converted erp.bills: 3,000 rows');
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'converted', rows: 3000, oldTable: 'bills_unpartitioned', defaultRows: 0 });
    expect(await query("SELECT relkind::text FROM pg_class WHERE oid = 'erp.bills'::regclass")).toEqual([{ relkind: 'p' }]);
    expect(await partitionsOf()).toEqual([
      'bills_default',
      'bills_p2025_12',
      'bills_p2026_01',
      'bills_p2026_02',
      'bills_p2026_03',
      'bills_p2026_04',
      'bills_p2026_05',
      'bills_p2026_06',
    ]);
    expect(
      await query(`SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
                         WHERE attrelid = 'erp.bills'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'created_xid' ORDER BY attnum`),
    ).toEqual([
      { name: 'bill_no', type: 'bigint' },
      { name: 'billed_at', type: 'timestamp without time zone' },
      { name: 'seller', type: 'bigint' },
      { name: 'buyer', type: 'bigint' },
      { name: 'amount_usd', type: 'numeric(18,4)' },
    ]);
    expect(await withPg(db.url, (c) => monthlySums(c, 'erp.bills', 'billed_at', 'amount_usd'))).toEqual(expected);
    expect(
      await query('SELECT (SELECT count(*) FROM erp.bills_ids)::int AS ids, (SELECT count(*) FROM erp.bills_default)::int AS def'),
    ).toEqual([{ ids: 3000, def: 0 }]);
    expect(await query("SELECT to_regclass('public.invoice_ids') AS locator, to_regclass('erp.bills_convert_log') AS log")).toEqual([
      { locator: null, log: null },
    ]);

    const [row] = await query<{ billed_at: string; amount: string }>(
      'SELECT billed_at::text, amount_usd::text AS amount FROM erp.bills WHERE bill_no = 1234',
    );
    const got = await cli(['get', '1234', '--json']);
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({
      invoice_id: 1234,
      amount: row.amount,
      issue_date: `${row.billed_at.replace(' ', 'T')}Z`,
    });
    expect(JSON.parse(got.stdout).issuer_name).toEqual(expect.any(String));
  });

  it('partition --check passes, then names the months ahead that are missing (exit 1); partition creates them in the schema, says so', async () => {
    const ok = await cli(['partition', '--check', '--as-of', AS_OF, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout) as Array<{ name: string; rows: number }>;
    expect(report.reduce((s, p) => s + p.rows, 0)).toBe(3000);
    expect(report.find((p) => p.name === 'bills_p2026_01')?.rows).toBe(expected['2026-01'].n);

    const missing = await cli(['partition', '--check', '--as-of', AS_OF, '--ahead', '5']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no partition yet for 2026-07, 2026-08');

    const dry = await cli(['partition', '--as-of', AS_OF, '--ahead', '5', '--dry-run']);
    expect(dry.stdout).toContain(
      `CREATE TABLE "erp"."bills_p2026_07" PARTITION OF "erp"."bills" FOR VALUES FROM ('2026-07-01T00:00:00.000Z')`,
    );
    expect(await partitionsOf()).not.toContain('bills_p2026_07');

    const made = await cli(['partition', '--as-of', AS_OF, '--ahead', '5']);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toContain('created partition erp.bills_p2026_07 of erp.bills');
    expect((await cli(['partition', '--check', '--as-of', AS_OF, '--ahead', '5'])).code).toBe(0);
  });

  let moved = 0;
  it('partition moves rows out of the DEFAULT partition into their month, keeping the locator in step', async () => {
    // The identity carried over continues after the seeded ids and the one used and deleted above.
    [{ id: moved }] = await query<{ id: number }>(
      "INSERT INTO erp.bills (billed_at, seller, buyer, amount_usd) VALUES ('2027-01-31 23:59:59.5', 1, 2, 12.3456) RETURNING bill_no::int AS id",
    );
    expect(moved).toBe(3002);
    const check = await cli(['partition', '--check', '--as-of', AS_OF]);
    expect(check.code).toBe(1);
    expect(check.stderr).toContain('1 rows in the DEFAULT partition (2027-01: 1)');
    const r = await cli(['partition', '--as-of', AS_OF]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('created partition erp.bills_p2027_01 of erp.bills, moved 1 rows out of the DEFAULT partition');
    const got = await cli(['get', String(moved), '--json']);
    expect(JSON.parse(got.stdout)).toMatchObject({ invoice_id: moved, issue_date: '2027-01-31T23:59:59.5Z', amount: '12.3456' });
    expect(await query('SELECT count(*)::int AS n FROM erp.bills_ids')).toEqual([{ n: 3001 }]);
  });

  it('seed --append into the partitioned table: the partitions it needs, the locator filled by its trigger', async () => {
    const r = await cli(['seed', '--customers', '10', '--invoices', '500', '--months', '1', '--as-of', '2027-06-15', '--append']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('created partition bills_p2027_05 of erp.bills');
    expect(
      await query(`SELECT (SELECT count(*) FROM erp.bills)::int AS bills, (SELECT count(*) FROM erp.bills_ids)::int AS ids,
                               (SELECT count(*) FROM erp.bills_default)::int AS def, (SELECT count(*) FROM erp.parties)::int AS parties`),
    ).toEqual([{ bills: 3501, ids: 3501, def: 0, parties: 50 }]);
    expect(await withPg(db.url, (c) => monthlySums(c, 'erp.bills', 'billed_at', 'amount_usd', `bill_no > ${moved}`))).toEqual(
      expectedMonthlySums({ customers: 10, invoices: 500, months: 1, asOf: '2027-06-15', firstId: moved + 1, firstCustomerId: 41 }, 4),
    );
  });

  it('init on the partitioned table adds its locator when it is missing, and says so', async () => {
    await query('DROP TABLE erp.bills_ids; DROP FUNCTION erp.bills_ids_sync() CASCADE');
    const r = await cli(['init']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('added to erp: table bills_ids');
    expect(r.stderr).toContain('filled with 3501 rows');
    expect(r.stderr).toContain('trigger bills_ids_sync on erp.bills');
    const again = await cli(['init']);
    expect(again.stderr).not.toContain('added to');
    expect(again.stderr).toContain('erp.bills is partitioned');
    await query("INSERT INTO erp.bills (billed_at, seller, buyer, amount_usd) VALUES ('2026-02-01 00:00', 3, 4, 1)");
    expect(await query('SELECT count(*)::int AS n FROM erp.bills_ids')).toEqual([{ n: 3502 }]);
  });
});
