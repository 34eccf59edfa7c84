import { finished } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Client, DbContext } from '../db/client.js';
import { withClient } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { BinaryCopyWriter } from '../db/copy-binary.js';
import { InterruptedError, UsageError } from '../errors.js';
import { applySchema } from '../schema/apply.js';
import { addMonths, createPartition, DEFAULT_AHEAD, monthBounds, monthOf, monthRange, partitionName, planPartitions } from '../schema/partitions.js';
import { generateCustomers } from './customers.js';
import { InvoiceGenerator, IssueDates, issuerOrder, type InvoiceRow } from './invoices.js';
import { quoteIdent } from '../tables.js';

export interface SeedOptions {
  customers: number;
  /** Default: 50 per customer. */
  invoices?: number;
  months: number;
  seed: number | string;
  /** What to do when the tables already hold rows. */
  existing: 'refuse' | 'append' | 'truncate';
  /** Issue dates end at this day's midnight UTC (default: today). */
  asOf: Date;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: SeedProgress) => void;
}

export interface SeedProgress {
  phase: 'customers' | 'invoices' | 'indexes';
  done: number;
  total: number;
}

export interface SeedResult {
  customers: number;
  invoices: number;
  firstInvoiceId: number;
  lastInvoiceId: number;
  from: string;
  to: string;
  seconds: number;
  invoicesPerSecond: number;
  /** Whether foreign-key triggers were skipped during the load (rows are valid by construction). */
  skippedForeignKeyChecks: boolean;
}

/** Invoices per committed COPY when appending. */
const DEFAULT_BATCH = 1_000_000;

/** The issue-date window: K months back from the as-of day's midnight, UTC. */
export function seedWindow(asOf: Date, months: number): { startMicros: number; endMicros: number } {
  const end = Date.UTC(asOf.getUTCFullYear(), asOf.getUTCMonth(), asOf.getUTCDate());
  const e = new Date(end);
  // Clamp to the target month's last day (Mar 31 - 1 month = Feb 28, as in PostgreSQL), never overflow into the next month.
  const lastDay = new Date(Date.UTC(e.getUTCFullYear(), e.getUTCMonth() - months + 1, 0)).getUTCDate();
  const start = Date.UTC(e.getUTCFullYear(), e.getUTCMonth() - months, Math.min(e.getUTCDate(), lastDay));
  return { startMicros: start * 1000, endMicros: end * 1000 };
}

/** Fills customers and invoices with generated rows through binary COPY, in committed batches. */
export async function seed(ctx: DbContext, opts: SeedOptions): Promise<SeedResult> {
  const invoices = opts.invoices ?? opts.customers * 50;
  if (!Number.isInteger(opts.customers) || opts.customers < 2) throw new UsageError('--customers must be an integer >= 2 (an invoice needs an issuer and a different receiver)');
  if (!Number.isInteger(invoices) || invoices < 0) throw new UsageError('--invoices must be a non-negative integer');
  if (!Number.isInteger(opts.months) || opts.months < 1 || opts.months > 600) throw new UsageError('--months must be an integer from 1 to 600');
  const batchSize = opts.batchSize ?? DEFAULT_BATCH;
  const { startMicros, endMicros } = seedWindow(opts.asOf, opts.months);
  const started = performance.now();

  return withClient(ctx, async (client) => {
    const layout = await applySchema(client);
    const partitioned = layout === 'partitioned';
    const skipTriggers = await skipTriggersForSession(client);
    // Skipping triggers also skips the one that fills invoice_ids: then seed writes it itself.
    const writeLocator = partitioned && skipTriggers;
    const { rows: [state] } = await client.query<{ invoices: string; customers: string; max_invoice: string; max_customer: string }>(
      `SELECT (SELECT count(*) FROM (SELECT 1 FROM invoices LIMIT 1) s) AS invoices,
              (SELECT count(*) FROM (SELECT 1 FROM customers LIMIT 1) s) AS customers,
              (SELECT coalesce(max(invoice_id), 0) FROM invoices) AS max_invoice,
              (SELECT coalesce(max(id), 0) FROM customers) AS max_customer`,
    );
    const hasRows = state.invoices !== '0' || state.customers !== '0';
    if (hasRows && opts.existing === 'refuse') {
      throw new UsageError('the invoices and customers tables already hold rows: pass --append to add a new cohort of customers and invoices, or --truncate to replace them');
    }
    const append = hasRows && opts.existing === 'append';
    const firstCustomerId = append ? Number(state.max_customer) + 1 : 1;
    const firstInvoiceId = append ? Number(state.max_invoice) + 1 : 1;

    const order = issuerOrder(opts.seed, opts.customers);
    const rank = new Int32Array(opts.customers);
    for (let r = 0; r < order.length; r++) rank[order[r]] = r;
    const plan = { count: invoices, firstId: firstInvoiceId, firstCustomerId, customers: opts.customers, startMicros, endMicros, seed: opts.seed };
    const generator = new InvoiceGenerator(plan);
    const dates = new IssueDates(plan);
    const loadCustomers = () => copyCustomers(client, opts, firstCustomerId, (i) => rank[i], startMicros);
    const windowMonths = monthRange(monthOf(new Date(startMicros / 1000)), monthOf(new Date(endMicros / 1000 - 1)));
    // The window's months, and the months ahead of the as-of month as `invoices partition` makes them.
    const partitionMonths = monthRange(windowMonths[0], addMonths(monthOf(opts.asOf), DEFAULT_AHEAD));
    const progress = (done: number) => opts.onProgress?.({ phase: 'invoices', done, total: invoices });

    if (!append) {
      // A fresh load is one transaction: truncate, create the months' partitions, drop the
      // indexes, COPY everything (no WAL at wal_level=minimal; FREEZE on a plain table),
      // rebuild the indexes once. Interrupted, it rolls back and the tables are as they were.
      await transaction(client, async () => {
        await client.query(`TRUNCATE invoices, customers${partitioned ? ', invoice_ids' : ''} RESTART IDENTITY`);
        if (partitioned) for (const p of await planPartitions(client, partitionMonths)) for (const sql of p.statements) await client.query(sql);
        const rebuild = [...(await dropIndexes(client, 'invoices')), ...(writeLocator ? await dropIndexes(client, 'invoice_ids') : [])];
        await loadCustomers();
        const targets = partitioned
          ? windowMonths.map((m) => ({ table: partitionName(m), freeze: true, untilMicros: Date.parse(monthBounds(m).to) * 1000 }))
          : [{ table: 'invoices', freeze: true, untilMicros: Infinity }];
        await copyInvoices(client, generator, invoices, opts.signal, progress, targets);
        if (writeLocator) await copyInvoiceIds(client, dates, firstInvoiceId, invoices, opts.signal, true);
        opts.onProgress?.({ phase: 'indexes', done: 0, total: rebuild.length });
        for (const sql of rebuild) await client.query(sql);
      }).catch((err) => {
        if (err instanceof InterruptedError) throw new InterruptedError('interrupted: the load was rolled back, the tables are unchanged');
        throw err;
      });
    } else {
      // Appending to live tables: committed batches, so an interruption keeps whole batches.
      if (partitioned) for (const p of await planPartitions(client, partitionMonths)) await createPartition(client, p);
      await transaction(client, loadCustomers);
      let done = 0;
      while (done < invoices) {
        const n = Math.min(batchSize, invoices - done);
        try {
          await transaction(client, async () => {
            await copyInvoices(client, generator, n, opts.signal, (k) => progress(done + k), [{ table: 'invoices', freeze: false, untilMicros: Infinity }]);
            if (writeLocator) await copyInvoiceIds(client, dates, firstInvoiceId + done, n, opts.signal, false);
          });
        } catch (err) {
          if (err instanceof InterruptedError) {
            throw new InterruptedError(`interrupted: ${opts.customers} customers and ${done} of ${invoices} invoices committed (ids ${firstInvoiceId}..${firstInvoiceId + done - 1})`);
          }
          throw err;
        }
        done += n;
        progress(done);
      }
    }

    await client.query(`SELECT setval(pg_get_serial_sequence('customers', 'id'), greatest((SELECT max(id) FROM customers), 1))`);
    await client.query(`SELECT setval(pg_get_serial_sequence('invoices', 'invoice_id'), greatest((SELECT max(invoice_id) FROM invoices), 1))`);
    await client.query(`ANALYZE customers, invoices${partitioned ? ', invoice_ids' : ''}`);
    const seconds = (performance.now() - started) / 1000;
    return {
      customers: opts.customers,
      invoices,
      firstInvoiceId,
      lastInvoiceId: firstInvoiceId + invoices - 1,
      from: new Date(startMicros / 1000).toISOString(),
      to: new Date(endMicros / 1000).toISOString(),
      seconds,
      invoicesPerSecond: invoices / seconds,
      skippedForeignKeyChecks: skipTriggers,
    };
  });
}

/**
 * Generated rows reference only customers loaded just before them, so the per-row triggers
 * (foreign-key checks, the invoice_ids trigger: the bulk of COPY's cost) can be skipped the way
 * pg_restore --disable-triggers does. That needs superuser; otherwise they run, more slowly.
 */
async function skipTriggersForSession(client: Client): Promise<boolean> {
  try {
    await client.query('SET session_replication_role = replica');
    return true;
  } catch {
    return false;
  }
}

/**
 * Drops a table's indexes (and the constraints they back) and returns the statements that
 * rebuild them: one sorted build beats maintaining a B-tree row by row. Keeps them when
 * another table's foreign key depends on one.
 */
async function dropIndexes(client: Client, table: string): Promise<string[]> {
  const { rows: refs } = await client.query('SELECT 1 FROM pg_constraint WHERE confrelid = $1::regclass', [table]);
  if (refs.length) return [];
  const { rows } = await client.query<{ index: string; conname: string | null; indexdef: string; condef: string | null }>(
    `SELECT i.indexrelid::regclass::text AS index, c.conname, pg_get_indexdef(i.indexrelid) AS indexdef, pg_get_constraintdef(c.oid) AS condef
       FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
      WHERE i.indrelid = $1::regclass`,
    [table],
  );
  const rebuild: string[] = [];
  for (const r of rows) {
    if (r.conname && r.condef) {
      const con = quoteIdent(r.conname);
      await client.query(`ALTER TABLE ${table} DROP CONSTRAINT ${con}`);
      rebuild.push(`ALTER TABLE ${table} ADD CONSTRAINT ${con} ${r.condef}`);
    } else {
      await client.query(`DROP INDEX ${r.index}`);
      // A partitioned table's index reads "ON ONLY parent", which would rebuild it empty and invalid.
      rebuild.push(r.indexdef.replace(' ON ONLY ', ' ON '));
    }
  }
  return rebuild;
}

async function copyCustomers(client: Client, opts: SeedOptions, firstId: number, issuerRank: (i: number) => number, beforeMicros: number): Promise<void> {
  const stream = client.query(copyFrom('COPY customers (id, name, email, country, segment, created_at) FROM STDIN (FORMAT binary)'));
  const writer = new BinaryCopyWriter(stream);
  let i = 0;
  for (const c of generateCustomers({ firstId, count: opts.customers, seed: opts.seed, issuerRank, beforeMicros })) {
    const wait = writer.row(6, 64 + 3 * (c.name.length + c.email.length + c.country.length + c.segment.length));
    if (wait) await wait;
    writer.int8(c.id);
    writer.text(c.name);
    writer.text(c.email);
    writer.text(c.country);
    writer.text(c.segment);
    writer.timestamptz(c.createdAtMicros);
    if (++i % 65536 === 0) opts.onProgress?.({ phase: 'customers', done: i, total: opts.customers });
  }
  await writer.end();
  await finished(stream);
}

/** One COPY of the generator's next n rows; Ctrl-C aborts it and the server discards it. */
/** Where invoices go: the table itself, or (fresh partitioned load) each month's partition in turn. */
type Target = { table: string; freeze: boolean; untilMicros: number };

/**
 * COPY of the generator's next n rows; Ctrl-C aborts it and the server discards it. Rows come
 * in date order, so a fresh partitioned load writes each month straight into its partition:
 * no per-row routing, and FREEZE (allowed on a partition created in this transaction), which
 * also sets the visibility map so index-only scans work at once.
 */
async function copyInvoices(client: Client, gen: InvoiceGenerator, n: number, signal: AbortSignal | undefined, progress: (done: number) => void, targets: Target[]): Promise<void> {
  const row: InvoiceRow = { id: 0, issueMicros: 0, issuerId: 0, receiverId: 0, cents: 0 };
  let k = 0;
  let pending = false; // row holds a generated invoice not yet written (it belongs to a later target)
  for (const target of targets) {
    if (k >= n) break;
    const sql = `COPY ${target.table} (invoice_id, issue_date, issuer_id, receiver_id, amount) FROM STDIN (FORMAT binary${target.freeze ? ', FREEZE' : ''})`;
    await copyRows(client, sql, async (writer) => {
      while (k < n && (pending || gen.next(row))) {
        pending = true;
        if (row.issueMicros >= target.untilMicros) return;
        const wait = writer.row(5, 80);
        if (wait) {
          await wait;
          if (signal?.aborted) throw new InterruptedError('interrupted');
          progress(k);
        }
        writer.int8(row.id);
        writer.timestamptz(row.issueMicros);
        writer.int8(row.issuerId);
        writer.int8(row.receiverId);
        writer.numericCents(row.cents);
        pending = false;
        k++;
      }
    });
  }
}

/** invoice_ids rows for invoices firstId..firstId+n-1, their dates replayed from the same stream. */
async function copyInvoiceIds(client: Client, dates: IssueDates, firstId: number, n: number, signal: AbortSignal | undefined, freeze: boolean): Promise<void> {
  await copyRows(client, `COPY invoice_ids (invoice_id, issue_date) FROM STDIN (FORMAT binary${freeze ? ', FREEZE' : ''})`, async (writer) => {
    for (let k = 0; k < n; k++) {
      const wait = writer.row(2, 32);
      if (wait) {
        await wait;
        if (signal?.aborted) throw new InterruptedError('interrupted');
      }
      writer.int8(firstId + k);
      writer.timestamptz(dates.next());
    }
  });
}

/** Runs one binary COPY fed by `fill`; on any error the COPY is aborted and the server discards it. */
async function copyRows(client: Client, sql: string, fill: (writer: BinaryCopyWriter) => Promise<void>): Promise<void> {
  const stream = client.query(copyFrom(sql));
  const writer = new BinaryCopyWriter(stream);
  try {
    await fill(writer);
    await writer.end();
    await finished(stream);
  } catch (err) {
    stream.destroy(err as Error);
    await finished(stream).catch(() => {});
    throw err;
  }
}
