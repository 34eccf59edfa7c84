import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { createProgress, fmtInt } from '../output/progress.js';
import { seed } from '../seed/seed.js';
import { commandContext, interruptSignal, parseDay, positiveInt } from './context.js';

export interface SeedFlags {
  customers: string;
  invoices?: string;
  months: string;
  seed: string;
  asOf?: string;
  append?: boolean;
  truncate?: boolean;
  batchSize: string;
}

export async function run(flags: SeedFlags, cmd: Command): Promise<void> {
  if (flags.append && flags.truncate) throw new UsageError('choose one of --append and --truncate');
  const customers = positiveInt('--customers', flags.customers);
  const invoices = flags.invoices === undefined ? undefined : positiveInt('--invoices', flags.invoices, { allowZero: true });
  const months = positiveInt('--months', flags.months);
  const batchSize = positiveInt('--batch-size', flags.batchSize);
  const asOf = flags.asOf ? parseDay(flags.asOf) : new Date();
  const ctx = commandContext(cmd);
  const signal = interruptSignal(ctx.log);
  const progress = createProgress('seeding', { quiet: ctx.quiet, tty: ctx.tty });
  try {
    const result = await seed(ctx, {
      customers, invoices, months, seed: flags.seed, asOf, batchSize, signal,
      existing: flags.append ? 'append' : flags.truncate ? 'truncate' : 'refuse',
      onProgress: (p) => progress.update(p.done, p.total, p.phase),
    });
    progress.stop();
    if (!result.skippedForeignKeyChecks && !ctx.config.tables.mapped) ctx.log.warn('not a superuser: foreign keys were checked row by row, which slows the load');
    ctx.log.info(
      `seeded ${fmtInt(result.customers)} customers and ${fmtInt(result.invoices)} invoices (ids ${result.firstInvoiceId}..${result.lastInvoiceId}, ` +
        `${result.from.slice(0, 10)} to ${result.to.slice(0, 10)}) in ${result.seconds.toFixed(1)} s: ${fmtInt(Math.round(result.invoicesPerSecond))} invoices/s`,
    );
    if (ctx.format !== 'table') await ctx.printRows([result], [
      { key: 'customers', kind: 'int' }, { key: 'invoices', kind: 'int' }, { key: 'firstInvoiceId', kind: 'int' },
      { key: 'lastInvoiceId', kind: 'int' }, { key: 'from' }, { key: 'to' }, { key: 'seconds' }, { key: 'invoicesPerSecond' },
    ], { single: true });
  } finally {
    progress.stop();
  }
}
