// `invoices init` and the constraints of sql/*.sql: partitioned invoices kept globally unique by invoice_ids.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, withPg, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const tables = (c: pg.Client) =>
  c
    .query<{ t: string }>(
      "SELECT relname AS t FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY 1",
    )
    .then((r) => r.rows.map((x) => x.t));

describe('invoices init', () => {
  it('creates the tables, then is a no-op when run again', async () => {
    expect(await withPg(db.url, tables)).toEqual([]);
    const first = await runCli(['init'], { env: { DATABASE_URL: db.url } });
    expect(first.code).toBe(0);
    expect(first.stderr).toContain('created tables: customers, invoice_changes, invoice_ids, invoices');
    expect(first.stdout).toBe('');
    expect(await withPg(db.url, tables)).toEqual(['customers', 'invoice_changes', 'invoice_ids', 'invoices', 'invoices_default']);

    await withPg(db.url, (c) => c.query("INSERT INTO customers (id, name) VALUES (1, 'Kept Ltd')"));
    const second = await runCli(['init'], { env: { DATABASE_URL: db.url } });
    expect(second.code).toBe(0);
    expect(second.stderr).toContain('nothing to create');
    expect(await withPg(db.url, tables)).toEqual(['customers', 'invoice_changes', 'invoice_ids', 'invoices', 'invoices_default']);
    const kept = await withPg(db.url, (c) => c.query('SELECT name FROM customers'));
    expect(kept.rows).toEqual([{ name: 'Kept Ltd' }]);
  });

  it('two concurrent runs both succeed', async () => {
    const other = await createDatabase();
    try {
      const runs = await Promise.all([0, 1].map(() => runCli(['init', '--quiet'], { env: { DATABASE_URL: other.url } })));
      expect(runs.map((r) => r.code)).toEqual([0, 0]);
      expect(await withPg(other.url, tables)).toEqual(['customers', 'invoice_changes', 'invoice_ids', 'invoices', 'invoices_default']);
    } finally {
      await other.drop();
    }
  });
});

describe('schema constraints', () => {
  let c: pg.Client;
  beforeAll(async () => {
    c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await c.query('TRUNCATE invoices, invoice_ids, customers');
    await c.query("INSERT INTO customers (id, name) VALUES (1, 'Issuer Inc'), (2, 'Receiver LLC')");
    // Two monthly partitions besides DEFAULT, so ids can collide across partitions.
    await c.query(
      "CREATE TABLE invoices_p2025_01 PARTITION OF invoices FOR VALUES FROM ('2025-01-01T00:00:00Z') TO ('2025-02-01T00:00:00Z')",
    );
    await c.query(
      "CREATE TABLE invoices_p2025_02 PARTITION OF invoices FOR VALUES FROM ('2025-02-01T00:00:00Z') TO ('2025-03-01T00:00:00Z')",
    );
    await c.query(
      "INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES (1, '2025-01-01T00:00:00Z', 1, 2, 100.00)",
    );
  });
  afterAll(async () => {
    await c?.end();
  });

  const insert = (id: number, issuer: number, receiver: number, amount: string) =>
    c.query('INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES ($1, now(), $2, $3, $4)', [
      id,
      issuer,
      receiver,
      amount,
    ]);

  it('accepts a valid invoice, including amount 0', async () => {
    await insert(2, 2, 1, '0');
    const { rows } = await c.query('SELECT count(*)::int AS n FROM invoices');
    expect(rows[0].n).toBe(2);
  });

  it('rejects issuer = receiver', async () => {
    await expect(insert(10, 1, 1, '5.00')).rejects.toMatchObject({ code: '23514', constraint: 'invoices_parties_check' });
  });

  it('rejects a negative amount', async () => {
    await expect(insert(11, 1, 2, '-0.01')).rejects.toMatchObject({ code: '23514', constraint: 'invoices_amount_check' });
  });

  it('rejects an amount beyond numeric(14,2)', async () => {
    await expect(insert(12, 1, 2, '1000000000000.00')).rejects.toMatchObject({ code: '22003' });
  });

  it('rejects a duplicate invoice_id', async () => {
    await expect(insert(1, 2, 1, '1.00')).rejects.toMatchObject({ code: '23505', constraint: 'invoice_ids_pkey' });
  });

  it("rejects an existing invoice_id with another month's date (another partition)", async () => {
    const other = (date: string) =>
      c.query('INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES (1, $1, 1, 2, 5.00)', [date]);
    await expect(other('2025-02-10T00:00:00Z')).rejects.toMatchObject({ code: '23505', constraint: 'invoice_ids_pkey' });
    await expect(other('2030-07-01T00:00:00Z')).rejects.toMatchObject({ code: '23505', constraint: 'invoice_ids_pkey' }); // DEFAULT partition
    // ...also straight into a partition, not through the parent.
    await expect(
      c.query(
        "INSERT INTO invoices_p2025_02 (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES (1, '2025-02-11T00:00:00Z', 1, 2, 5.00)",
      ),
    ).rejects.toMatchObject({ code: '23505', constraint: 'invoice_ids_pkey' });
  });

  it('keeps invoice_ids in step when a row moves partition, changes id, or is deleted', async () => {
    await c.query(
      "INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) VALUES (50, '2025-01-20T10:00:00Z', 1, 2, 7.00)",
    );
    await c.query("UPDATE invoices SET issue_date = '2025-02-03T00:00:00Z' WHERE invoice_id = 50");
    await c.query('UPDATE invoices SET invoice_id = 51 WHERE invoice_id = 50');
    const { rows } = await c.query(
      "SELECT invoice_id::int AS id, issue_date = '2025-02-03T00:00:00Z' AS moved, tableoid::regclass::text AS part FROM invoices WHERE invoice_id IN (50, 51)",
    );
    expect(rows).toEqual([{ id: 51, moved: true, part: 'invoices_p2025_02' }]);
    const located = await c.query(
      "SELECT invoice_id::int AS id, issue_date = '2025-02-03T00:00:00Z' AS same FROM invoice_ids WHERE invoice_id IN (50, 51)",
    );
    expect(located.rows).toEqual([{ id: 51, same: true }]);
    await c.query('DELETE FROM invoices WHERE invoice_id = 51');
    const after = await c.query('SELECT count(*)::int AS n FROM invoice_ids WHERE invoice_id = 51');
    expect(after.rows[0].n).toBe(0);
  });

  it('rejects an unknown issuer or receiver', async () => {
    await expect(insert(13, 999, 2, '1.00')).rejects.toMatchObject({ code: '23503', constraint: 'invoices_issuer_fk' });
    await expect(insert(14, 1, 999, '1.00')).rejects.toMatchObject({ code: '23503', constraint: 'invoices_receiver_fk' });
  });

  it('rejects NULL in required columns', async () => {
    await expect(c.query('INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (NULL, 1, 2, 1)')).rejects.toMatchObject(
      { code: '23502' },
    );
    await expect(c.query('INSERT INTO customers (name) VALUES (NULL)')).rejects.toMatchObject({ code: '23502' });
  });

  it('rejected inserts left nothing behind, and invoice_ids matches invoices row for row', async () => {
    const { rows } = await c.query('SELECT invoice_id::int AS id FROM invoices ORDER BY 1');
    expect(rows).toEqual([{ id: 1 }, { id: 2 }]);
    const mismatch = await c.query(`SELECT count(*)::int AS n FROM invoices i FULL JOIN invoice_ids l USING (invoice_id, issue_date)
                                     WHERE i.invoice_id IS NULL OR l.invoice_id IS NULL`);
    expect(mismatch.rows[0].n).toBe(0);
  });
});
