import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { fmtInt } from '../output/progress.js';
import { formatBytes } from '../output/render.js';
import { commandContext, parseDay, positiveInt } from './context.js';

// The defaults of --convert. The conversion core (src/schema/convert.ts) has the same ones as
// fallbacks of its options; they are passed explicitly from here.
export const DEFAULT_CONVERT_BATCH_SIZE = 100_000;
export const DEFAULT_LOCK_TIMEOUT_MS = 500;
export const DEFAULT_LOCK_RETRIES = 10;

export interface HelpValues {
  DEFAULT_AHEAD: number;
}

/** The default of --ahead, from the core (schema/partitions.ts: seed uses it too), loaded only when partition is the command named. */
export async function helpValues(): Promise<HelpValues> {
  const { DEFAULT_AHEAD } = await import('../schema/partitions.js');
  return { DEFAULT_AHEAD };
}

/** `values` is given when partition is the command named: the other commands' help never shows its options. */
export function command(program: Command, { DEFAULT_AHEAD }: Partial<HelpValues> = {}): Command {
  return program
    .command('partition')
    .description(
      'create monthly partitions of invoices (months in the DEFAULT partition + months ahead); check them; convert a plain table',
    )
    .option('--ahead <n>', `months ahead of the current one to create (default: ${DEFAULT_AHEAD})`)
    .option('--check', 'report partitions, rows and sizes; exit 1 when rows sit in DEFAULT or months ahead are missing')
    .option('--convert', 'convert a plain invoices table into the partitioned layout, online')
    .option('--dry-run', 'print the SQL instead of running it')
    .option('--as-of <date>', 'the current month for --ahead (YYYY-MM-DD, UTC; default: today)')
    .option('--batch-size <n>', `with --convert: rows copied per transaction (default: ${DEFAULT_CONVERT_BATCH_SIZE})`)
    .option(
      '--lock-timeout <ms>',
      `with --convert: how long each attempt at the exclusive lock may wait (default: ${DEFAULT_LOCK_TIMEOUT_MS})`,
    )
    .option('--lock-retries <n>', `with --convert: attempts after the first before giving up (default: ${DEFAULT_LOCK_RETRIES})`)
    .option('--cancel', 'with --convert: remove everything an unfinished conversion created; invoices is left as it was')
    .option('--no-wait', 'with --convert: when another conversion or seed is writing the table, exit 1 instead of waiting for it')
    .addHelpText(
      'after',
      `
Examples:
  $ invoices partition                 partitions for stranded months and the next ${DEFAULT_AHEAD} months
  $ invoices partition --check         rows and size per partition (cron: exit 1 when something needs doing)
  $ invoices partition --convert --dry-run     the conversion plan of a plain invoices table, as SQL
  $ invoices partition --convert               convert it online: writers blocked only for the final switch
  $ invoices partition --convert --cancel      abandon an interrupted conversion

An interrupted --convert (Ctrl-C, a crash) resumes where it stopped when run again.`,
    )
    .action(run);
}

export interface PartitionFlags {
  ahead?: string;
  check?: boolean;
  convert?: boolean;
  dryRun?: boolean;
  asOf?: string;
  cancel?: boolean;
  batchSize?: string;
  lockTimeout?: string;
  lockRetries?: string;
  wait?: boolean;
}

export async function run(flags: PartitionFlags, cmd: Command): Promise<void> {
  const { addMonths, checkPartitions, DEFAULT_AHEAD, createPartition, monthOf, monthRange, planPartitions } = await import(
    '../schema/partitions.js'
  );
  const ahead = flags.ahead === undefined ? DEFAULT_AHEAD : positiveInt('--ahead', flags.ahead, { allowZero: true });
  const today = monthOf(flags.asOf ? parseDay(flags.asOf) : new Date());
  const aheadMonths = monthRange(today, addMonths(today, ahead));
  const ctx = await commandContext(cmd);
  const { tables } = ctx.config;
  if (flags.convert) return (await import('./partition-convert.js')).run(flags, ctx, aheadMonths);
  for (const f of ['cancel', 'batchSize', 'lockTimeout', 'lockRetries'] as const) {
    if (flags[f] !== undefined) throw new UsageError(`--${f.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} goes with --convert`);
  }
  if (flags.wait === false) throw new UsageError('--no-wait goes with --convert');

  const { withClient } = await import('../db/client.js');
  await withClient(ctx, async (client) => {
    if (flags.check) {
      const report = await checkPartitions(client, aheadMonths, tables);
      await ctx.printRows(
        report.partitions.map((p) => ({ ...p, rows: String(p.rows), size: formatBytes(p.bytes) })),
        [
          { key: 'name', label: 'partition' },
          { key: 'from', kind: 'time' },
          { key: 'to', kind: 'time' },
          { key: 'rows', kind: 'int' },
          { key: 'size' },
        ],
      );
      const problems: string[] = [];
      if (report.stranded.length) {
        problems.push(
          `${fmtInt(report.stranded.reduce((s, r) => s + r.rows, 0))} rows in the DEFAULT partition (${report.stranded.map((r) => `${r.month}: ${fmtInt(r.rows)}`).join(', ')}): run \`invoices partition\` to move them into monthly partitions`,
        );
      }
      if (report.missingAhead.length)
        problems.push(`no partition yet for ${report.missingAhead.join(', ')}: run \`invoices partition --ahead ${ahead}\``);
      for (const p of problems) ctx.log.warn(p);
      if (problems.length) process.exitCode = 1;
      else
        ctx.log.info(`${report.partitions.length} partitions, none missing through ${aheadMonths[aheadMonths.length - 1]}, DEFAULT empty`);
      return;
    }

    const plans = await planPartitions(client, aheadMonths, tables);
    if (flags.dryRun) {
      ctx.print(
        plans.length
          ? plans
              .map(
                (p) =>
                  `-- ${p.name}${p.moveRows ? ` (moves ${p.moveRows} rows from the DEFAULT partition)` : ''}\nBEGIN;\n${p.statements.join(';\n')};\nCOMMIT;\n`,
              )
              .join('\n')
          : '-- nothing to do\n',
      );
      return;
    }
    const done = [];
    for (const p of plans) {
      await createPartition(client, p);
      ctx.log.info(
        `created ${tables.mapped ? `partition ${tables.invoices.schema}.${p.name} of ${tables.invoices.schema}.${tables.invoices.table}` : p.name}${p.moveRows ? `, moved ${fmtInt(p.moveRows)} rows out of the DEFAULT partition` : ''}`,
      );
      done.push({ partition: p.name, month: p.month, moved_rows: String(p.moveRows) });
    }
    if (!done.length) ctx.log.info(`partitions up to date through ${aheadMonths[aheadMonths.length - 1]}: nothing to create`);
    else await ctx.printRows(done, [{ key: 'partition' }, { key: 'month' }, { key: 'moved_rows', kind: 'int' }]);
  });
}
