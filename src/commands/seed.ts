import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import type { ServerProgress } from '../db/server-progress.js';
import { createProgress, fmtInt } from '../output/progress.js';
import type { SeedProgress } from '../seed/seed.js';
import { commandContext, interruptSignal, parseDay, positiveInt } from './context.js';

export const DEFAULT_MONTHS = 24;
export const DEFAULT_SEED = '1';

export interface HelpValues {
  DEFAULT_INVOICES_PER_CUSTOMER: number;
  DEFAULT_BATCH: number;
}

/** The defaults the core applies (src/seed/seed.ts), loaded (with Faker) only when seed is the command named. */
export async function helpValues(): Promise<HelpValues> {
  const { DEFAULT_INVOICES_PER_CUSTOMER, DEFAULT_BATCH } = await import('../seed/seed.js');
  return { DEFAULT_INVOICES_PER_CUSTOMER, DEFAULT_BATCH };
}

/** `values` is given when seed is the command named: the other commands' help never shows its options. */
export function command(program: Command, { DEFAULT_INVOICES_PER_CUSTOMER, DEFAULT_BATCH }: Partial<HelpValues> = {}): Command {
  return program
    .command('seed')
    .description('fill customers and invoices with realistic fake data (binary COPY)')
    .requiredOption('--customers <n>', 'number of customers to create')
    .option('--invoices <n>', `number of invoices (default: ${DEFAULT_INVOICES_PER_CUSTOMER} per customer)`)
    .option('--months <k>', 'spread issue dates over the last K months', String(DEFAULT_MONTHS))
    .option('--seed <s>', 'random seed: the same seed and --as-of give the same rows', DEFAULT_SEED)
    .option('--as-of <date>', 'last day of the window, exclusive (YYYY-MM-DD, UTC; default: today)')
    .option('--append', 'add a new cohort of customers and invoices to existing rows')
    .option('--truncate', 'replace existing rows')
    .option('--batch-size <n>', `invoices per COPY transaction (default: ${DEFAULT_BATCH})`)
    .option('--no-wait', 'when another seed or conversion is writing the tables, exit 1 instead of waiting for it')
    .addHelpText(
      'after',
      () => `
Examples:
  $ invoices seed --customers 1000                        ${fmtInt(1000 * DEFAULT_INVOICES_PER_CUSTOMER!)} invoices over ${DEFAULT_MONTHS} months
  $ invoices seed --customers 200000 --invoices 10000000 --truncate
  $ invoices seed --customers 10 --invoices 100 --seed 7 --as-of 2026-01-01 --append`,
    )
    .action(run);
}

export interface SeedFlags {
  customers: string;
  invoices?: string;
  months: string;
  seed: string;
  asOf?: string;
  append?: boolean;
  truncate?: boolean;
  batchSize?: string;
  /** --no-wait sets it false. */
  wait: boolean;
}

export async function run(flags: SeedFlags, cmd: Command): Promise<void> {
  if (flags.append && flags.truncate) throw new UsageError('choose one of --append and --truncate');
  const customers = positiveInt('--customers', flags.customers);
  const invoices = flags.invoices === undefined ? undefined : positiveInt('--invoices', flags.invoices, { allowZero: true });
  const months = positiveInt('--months', flags.months);
  const batchSize = flags.batchSize === undefined ? undefined : positiveInt('--batch-size', flags.batchSize);
  const asOf = flags.asOf ? parseDay(flags.asOf) : new Date();
  const [{ seed }, { watchServerProgress }] = await Promise.all([import('../seed/seed.js'), import('../db/server-progress.js')]);
  const ctx = await commandContext(cmd);
  const progress = createProgress('seed', { quiet: ctx.quiet, tty: ctx.tty, color: ctx.color });
  const log = progress.wrap(ctx.log);
  const signal = interruptSignal(log);
  const units: Record<SeedProgress['phase'], string> = {
    customers: 'customers',
    invoices: 'rows',
    invoice_ids: 'rows',
    indexes: 'indexes',
    analyze: 'tables',
  };
  let phase: string | undefined;
  // On a terminal, what the server is doing inside a long statement (an index build, ANALYZE).
  let watcher: ServerProgress | undefined;
  let doing = '';
  let sample = '';
  const detail = () => progress.detail([doing, sample].filter(Boolean).join(' '));
  try {
    const result = await seed(
      { ...ctx, log },
      {
        customers,
        invoices,
        months,
        seed: flags.seed,
        asOf,
        batchSize,
        signal,
        wait: flags.wait,
        existing: flags.append ? 'append' : flags.truncate ? 'truncate' : 'refuse',
        onProgress: (p) => {
          if (p.phase !== phase) {
            phase = p.phase;
            doing = sample = '';
            // Scripts (and the tests) see where a load is from --debug, without a terminal.
            log.debug(`seed phase ${p.step}/${p.steps}: ${p.phase} (${fmtInt(p.total)} ${units[p.phase]})`);
            progress.phase(p.phase, { total: p.total, unit: units[p.phase], step: p.step, steps: p.steps });
          }
          progress.update(p.done, p.total);
          detail();
        },
        onIndex: (name) => {
          log.debug(`seed building ${name}`);
          doing = name;
          sample = '';
          detail();
        },
        onBackend: (pid) => {
          if (ctx.tty && !ctx.quiet)
            watcher = watchServerProgress(ctx, pid, (text) => {
              sample = text;
              detail();
            });
        },
      },
    );
    await watcher?.stop();
    progress.stop();
    if (!result.skippedForeignKeyChecks && !ctx.config.tables.mapped)
      ctx.log.warn('not a superuser: foreign keys were checked row by row, which slows the load');
    ctx.log.info(
      `seeded ${fmtInt(result.customers)} customers and ${fmtInt(result.invoices)} invoices (ids ${result.firstInvoiceId}..${result.lastInvoiceId}, ` +
        `${result.from.slice(0, 10)} to ${result.to.slice(0, 10)}) in ${result.seconds.toFixed(1)} s: ${fmtInt(Math.round(result.invoicesPerSecond))} invoices/s`,
    );
    if (ctx.format !== 'table')
      await ctx.printRows(
        [result],
        [
          { key: 'customers', kind: 'int' },
          { key: 'invoices', kind: 'int' },
          { key: 'firstInvoiceId', kind: 'int' },
          { key: 'lastInvoiceId', kind: 'int' },
          { key: 'from', kind: 'time' },
          { key: 'to', kind: 'time' },
          { key: 'seconds', kind: 'seconds' },
          { key: 'invoicesPerSecond', kind: 'rate' },
        ],
        { single: true },
      );
  } finally {
    await watcher?.stop();
    progress.stop();
  }
}
