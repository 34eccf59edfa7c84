import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { watchServerProgress, type ServerProgress } from '../db/server-progress.js';
import { createProgress, fmtInt } from '../output/progress.js';
import { seed, type SeedProgress } from '../seed/seed.js';
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
  /** --no-wait sets it false. */
  wait: boolean;
}

export async function run(flags: SeedFlags, cmd: Command): Promise<void> {
  if (flags.append && flags.truncate) throw new UsageError('choose one of --append and --truncate');
  const customers = positiveInt('--customers', flags.customers);
  const invoices = flags.invoices === undefined ? undefined : positiveInt('--invoices', flags.invoices, { allowZero: true });
  const months = positiveInt('--months', flags.months);
  const batchSize = positiveInt('--batch-size', flags.batchSize);
  const asOf = flags.asOf ? parseDay(flags.asOf) : new Date();
  const ctx = commandContext(cmd);
  const progress = createProgress('seed', { quiet: ctx.quiet, tty: ctx.tty, color: ctx.color });
  const log = progress.wrap(ctx.log);
  const signal = interruptSignal(log);
  const units: Record<SeedProgress['phase'], string> = { customers: 'customers', invoices: 'rows', invoice_ids: 'rows', indexes: 'indexes', analyze: 'tables' };
  let phase: string | undefined;
  // On a terminal, what the server is doing inside a long statement (an index build, ANALYZE).
  let watcher: ServerProgress | undefined;
  let doing = '';
  let sample = '';
  const detail = () => progress.detail([doing, sample].filter(Boolean).join(' '));
  try {
    const result = await seed({ ...ctx, log }, {
      customers, invoices, months, seed: flags.seed, asOf, batchSize, signal, wait: flags.wait,
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
        if (ctx.tty && !ctx.quiet) watcher = watchServerProgress(ctx, pid, (text) => { sample = text; detail(); });
      },
    });
    await watcher?.stop();
    progress.stop();
    if (!result.skippedForeignKeyChecks && !ctx.config.tables.mapped) ctx.log.warn('not a superuser: foreign keys were checked row by row, which slows the load');
    ctx.log.info(
      `seeded ${fmtInt(result.customers)} customers and ${fmtInt(result.invoices)} invoices (ids ${result.firstInvoiceId}..${result.lastInvoiceId}, ` +
        `${result.from.slice(0, 10)} to ${result.to.slice(0, 10)}) in ${result.seconds.toFixed(1)} s: ${fmtInt(Math.round(result.invoicesPerSecond))} invoices/s`,
    );
    if (ctx.format !== 'table') await ctx.printRows([result], [
      { key: 'customers', kind: 'int' }, { key: 'invoices', kind: 'int' }, { key: 'firstInvoiceId', kind: 'int' },
      { key: 'lastInvoiceId', kind: 'int' }, { key: 'from', kind: 'time' }, { key: 'to', kind: 'time' }, { key: 'seconds', kind: 'seconds' }, { key: 'invoicesPerSecond', kind: 'rate' },
    ], { single: true });
  } finally {
    await watcher?.stop();
    progress.stop();
  }
}
