import { indexDefinitions, isReferenced } from '../db/catalog.js';
import type { Client, DbContext } from '../db/client.js';
import { withClient } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { asInterrupted, cancelOnAbort } from '../db/cancel.js';
import { lockSource } from '../db/source-lock.js';
import { sourceKey } from '../table/describe.js';
import { InterruptedError, UsageError } from '../errors.js';
import { silentLogger } from '../log.js';
import { applySchema } from '../schema/apply.js';
import {
  addMonths,
  createPartition,
  DEFAULT_AHEAD,
  monthBounds,
  monthOf,
  monthRange,
  planPartitions,
  type PartitionPlan,
} from '../schema/partitions.js';
import { copyCustomers, copyInvoiceIds, copyInvoices, mappedTarget, OWN_TARGET } from './load.js';
import { InvoiceGenerator, IssueDates, issuerOrder } from './invoices.js';
import { DEFAULT_TABLES, quoteIdent } from '../tables.js';

export interface SeedOptions {
  customers: number;
  /** Default: DEFAULT_INVOICES_PER_CUSTOMER per customer. */
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
  /** Called as each index or constraint of a fresh load starts building. */
  onIndex?: (name: string) => void;
  /** When another run holds the tables: wait for it (default) or refuse at once (exit 1). */
  wait?: boolean;
  /** Called once connected, with the server process that does the load (to watch its progress views). */
  onBackend?: (pid: number) => void;
}

export interface SeedProgress {
  phase: 'customers' | 'invoices' | 'invoice_ids' | 'indexes' | 'analyze';
  done: number;
  total: number;
  /** This phase's place in the whole load: step of steps. */
  step: number;
  steps: number;
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
export const DEFAULT_BATCH = 1_000_000;
/** Invoices per customer when SeedOptions.invoices is not given. */
export const DEFAULT_INVOICES_PER_CUSTOMER = 50;

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
  const invoices = opts.invoices ?? opts.customers * DEFAULT_INVOICES_PER_CUSTOMER;
  if (!Number.isInteger(opts.customers) || opts.customers < 2)
    throw new UsageError('--customers must be an integer >= 2 (an invoice needs an issuer and a different receiver)');
  if (!Number.isInteger(invoices) || invoices < 0) throw new UsageError('--invoices must be a non-negative integer');
  if (!Number.isInteger(opts.months) || opts.months < 1 || opts.months > 600)
    throw new UsageError('--months must be an integer from 1 to 600');
  const batchSize = opts.batchSize ?? DEFAULT_BATCH;
  const { startMicros, endMicros } = seedWindow(opts.asOf, opts.months);
  const started = performance.now();
  const { signal } = opts;
  const log = ctx.log ?? silentLogger;

  // A config built by hand (tests, embedders) may carry no mapping: this tool's own tables.
  const tables = ctx.config.tables ?? DEFAULT_TABLES;
  return withClient(ctx, async (client) => {
    // Ctrl-C or SIGTERM cancels the statement in flight on the server (a COPY, an index build, ANALYZE, the lock wait).
    const canceller = cancelOnAbort(ctx, client, signal);
    opts.onBackend?.((client as unknown as { processID: number }).processID);
    // A killed run's server process notices its client is gone within a second, and lets go of the lock and the transaction.
    await client.query("SET client_connection_check_interval = '1s'").catch(() => {});
    await client.query("SELECT set_config('application_name', 'invoices seed', false)");
    const label = tables.mapped ? `${tables.invoices.schema}.${tables.invoices.table}` : 'invoices';
    // Before looking at what the tables hold: a second seed waits here (or refuses), then sees the first one's rows.
    try {
      await lockSource(client, { key: sourceKey(tables), label, what: 'seed', wait: opts.wait ?? true, log, signal });
    } catch (err) {
      await canceller.settled();
      throw asInterrupted(err, signal, 'interrupted while waiting for the lock: nothing was changed');
    }
    if (signal?.aborted) throw new InterruptedError('interrupted before the load started: nothing was changed');
    // The lock is released by ending the session (withClient), whatever happens below.
    let step = 0;
    let steps = 0;
    const phase = (name: SeedProgress['phase'], done: number, total: number) =>
      opts.onProgress?.({ phase: name, done, total, step, steps });
    const enter = (name: SeedProgress['phase'], total: number) => {
      step++;
      phase(name, 0, total);
    };

    const layout = await applySchema(client, tables, log);
    const target = tables.mapped ? await mappedTarget(client, tables) : OWN_TARGET;
    const { invoices: inv, customers: cust, locator } = target;
    const partitioned = layout === 'partitioned';
    // An adopted table's own triggers and foreign keys are the application's: they always run.
    const skipTriggers = !tables.mapped && (await skipTriggersForSession(client));
    // Skipping triggers also skips the one that fills invoice_ids: then seed writes it itself.
    const writeLocator = partitioned && skipTriggers;
    const {
      rows: [state],
    } = await client.query<{ invoices: string; customers: string; max_invoice: string; max_customer: string }>(
      `SELECT (SELECT count(*) FROM (SELECT 1 FROM ${inv.rel} LIMIT 1) s) AS invoices,
              (SELECT count(*) FROM (SELECT 1 FROM ${cust.rel} LIMIT 1) s) AS customers,
              (SELECT coalesce(max(${inv.id}), 0) FROM ${inv.rel}) AS max_invoice,
              (SELECT coalesce(max(${cust.id}), 0) FROM ${cust.rel}) AS max_customer`,
    );
    const hasRows = state.invoices !== '0' || state.customers !== '0';
    if (hasRows && opts.existing === 'refuse') {
      throw new UsageError(
        `the ${tables.mapped ? `tables ${inv.name} and ${cust.name}` : 'invoices and customers tables'} already hold rows: pass --append to add a new cohort of customers and invoices, or --truncate to replace them`,
      );
    }
    const append = hasRows && opts.existing === 'append';
    const firstCustomerId = append ? Number(state.max_customer) + 1 : 1;
    const firstInvoiceId = append ? Number(state.max_invoice) + 1 : 1;

    const order = issuerOrder(opts.seed, opts.customers);
    const rank = new Int32Array(opts.customers);
    for (let r = 0; r < order.length; r++) rank[order[r]] = r;
    const plan = {
      count: invoices,
      firstId: firstInvoiceId,
      firstCustomerId,
      customers: opts.customers,
      startMicros,
      endMicros,
      seed: opts.seed,
      ...inv.amount,
    };
    const generator = new InvoiceGenerator(plan);
    const dates = new IssueDates(plan);
    const loadCustomers = () => {
      enter('customers', opts.customers);
      return copyCustomers(
        client,
        cust,
        opts,
        firstCustomerId,
        (i) => rank[i],
        startMicros,
        (done) => phase('customers', done, opts.customers),
      );
    };
    const windowMonths = monthRange(monthOf(new Date(startMicros / 1000)), monthOf(new Date(endMicros / 1000 - 1)));
    // The window's months, and the months ahead of the as-of month as `invoices partition` makes them.
    const partitionMonths = monthRange(windowMonths[0], addMonths(monthOf(opts.asOf), DEFAULT_AHEAD));
    const progress = (done: number) => phase('invoices', done, invoices);
    const makePartitions = async (create: (p: PartitionPlan) => Promise<void>) => {
      for (const p of await planPartitions(client, partitionMonths, tables)) {
        await create(p);
        if (tables.mapped) log.info(`created partition ${p.name} of ${inv.name}`);
      }
    };
    const analyzed = [cust.rel, inv.rel, ...(partitioned ? [locator] : [])];
    const analyze = async () => {
      enter('analyze', analyzed.length);
      for (const [i, table] of analyzed.entries()) {
        if (signal?.aborted) throw new InterruptedError('interrupted');
        await client.query(`ANALYZE ${table}`);
        phase('analyze', i + 1, analyzed.length);
      }
    };
    const advanceSequences = async () => {
      // Serial and identity columns continue after the generated ids (no sequence: setval(NULL) is NULL).
      await client.query(`SELECT setval(pg_get_serial_sequence($1, $2), greatest((SELECT max(${cust.id}) FROM ${cust.rel}), 1))`, [
        cust.rel,
        cust.idName,
      ]);
      await client.query(`SELECT setval(pg_get_serial_sequence($1, $2), greatest((SELECT max(${inv.id}) FROM ${inv.rel}), 1))`, [
        inv.rel,
        inv.idName,
      ]);
    };
    const result = (): SeedResult => {
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
    };
    const idRange = (first: number, n: number) => (n > 0 ? ` (ids ${first}..${first + n - 1})` : '');

    if (!append) {
      // A fresh load is one transaction: truncate, create the months' partitions, drop the
      // indexes, COPY everything (no WAL at wal_level=minimal; FREEZE on a plain table),
      // rebuild the indexes once, ANALYZE. Interrupted at any point before COMMIT (the signal
      // cancels the statement in flight), it rolls back and the tables are as they were.
      steps = writeLocator ? 5 : 4; // customers, invoices, [invoice_ids], indexes, analyze
      try {
        await transaction(client, async () => {
          await client
            .query(`TRUNCATE ${inv.rel}, ${cust.rel}${partitioned ? `, ${locator}` : ''} RESTART IDENTITY`)
            .catch((err: { code?: string; message: string; detail?: string }) => {
              // Another table's foreign key into them (an application's, or a converted table's kept original).
              if (err.code === '0A000')
                throw new UsageError(
                  `cannot empty ${inv.name} and ${cust.name}: ${err.message}${err.detail ? ` (${err.detail})` : ''}; empty or drop the referencing table first`,
                  { cause: err },
                );
              throw err;
            });
          if (partitioned)
            await makePartitions(async (p) => {
              for (const sql of p.statements) await client.query(sql);
            }); // in this transaction
          // An application's indexes stay as they are (names, options, comments): COPY maintains them.
          const rebuild = tables.mapped
            ? []
            : [...(await dropIndexes(client, inv.rel)), ...(writeLocator ? await dropIndexes(client, locator) : [])];
          await loadCustomers();
          const targets = partitioned
            ? windowMonths.map((m) => ({ table: inv.partition(m), freeze: true, untilMicros: Date.parse(monthBounds(m).to) * 1000 }))
            : [{ table: inv.rel, freeze: true, untilMicros: Infinity }];
          enter('invoices', invoices);
          await copyInvoices(client, inv, generator, invoices, signal, progress, targets);
          progress(invoices);
          if (writeLocator) {
            enter('invoice_ids', invoices);
            await copyInvoiceIds(client, locator, dates, firstInvoiceId, invoices, signal, true, (done) =>
              phase('invoice_ids', done, invoices),
            );
          }
          enter('indexes', rebuild.length);
          for (const [i, sql] of rebuild.entries()) {
            if (signal?.aborted) throw new InterruptedError('interrupted');
            opts.onIndex?.(indexName(sql));
            await client.query(sql);
            phase('indexes', i + 1, rebuild.length);
          }
          // In the transaction: TRUNCATE ... RESTART IDENTITY gave the sequences new storage, so this rolls back with the rest.
          await advanceSequences();
          await analyze();
          // The last moment to change our mind: past this check the load commits, whole.
          if (signal?.aborted) throw new InterruptedError('interrupted');
        });
      } catch (err) {
        await canceller.settled();
        throw asInterrupted(err, signal, 'interrupted: the load was rolled back, the tables are unchanged');
      }
      canceller.dispose();
      if (signal?.aborted) {
        throw new InterruptedError(
          `interrupted while committing, but the load had committed: ${opts.customers} customers and ${invoices} invoices${idRange(firstInvoiceId, invoices)}`,
        );
      }
      return result();
    }

    // Appending to live tables: committed batches, so an interruption keeps whole batches.
    steps = 3;
    let done = 0;
    let customersCommitted = false;
    const committed = () =>
      customersCommitted
        ? `${opts.customers} customers and ${done} of ${invoices} invoices committed${idRange(firstInvoiceId, done)}`
        : 'nothing was committed';
    try {
      if (partitioned) await makePartitions((p) => createPartition(client, p));
      await transaction(client, loadCustomers);
      customersCommitted = true;
      enter('invoices', invoices);
      while (done < invoices) {
        const n = Math.min(batchSize, invoices - done);
        await transaction(client, async () => {
          await copyInvoices(client, inv, generator, n, signal, (k) => progress(done + k), [
            { table: inv.rel, freeze: false, untilMicros: Infinity },
          ]);
          if (writeLocator) await copyInvoiceIds(client, locator, dates, firstInvoiceId + done, n, signal, false);
          if (signal?.aborted) throw new InterruptedError('interrupted');
        });
        done += n;
        progress(done);
      }
    } catch (err) {
      await canceller.settled();
      const stopped = asInterrupted(err, signal, `interrupted: ${committed()}`);
      // Whatever was committed is in the tables for good: the sequences go past it, so the next insert does not collide.
      if (customersCommitted) await advanceSequences().catch(() => {});
      throw stopped;
    }
    await advanceSequences();
    try {
      await analyze();
    } catch (err) {
      await canceller.settled();
      throw asInterrupted(err, signal, `interrupted during ANALYZE: ${committed()}; the statistics are refreshed by autovacuum later`);
    }
    canceller.dispose();
    return result();
  });
}

/** The index or constraint a rebuild statement creates, for progress. */
function indexName(sql: string): string {
  return (
    /ADD CONSTRAINT (\S+)|INDEX (?:CONCURRENTLY )?(?:IF NOT EXISTS )?(\S+)/.exec(sql)?.slice(1).find(Boolean)?.replace(/"/g, '') ?? 'index'
  );
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
  // `table` is SQL (bare or quoted and qualified): regclass reads it the same way.
  if (await isReferenced(client, table)) return [];
  const rows = await indexDefinitions(client, table);
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
