import type { Command } from 'commander';
import { withClient } from '../db/client.js';
import { UsageError } from '../errors.js';
import { fmtInt } from '../output/progress.js';
import { formatBytes } from '../output/render.js';
import { addMonths, checkPartitions, DEFAULT_AHEAD, createPartition, monthOf, monthRange, planPartitions } from '../schema/partitions.js';
import { commandContext, parseDay, positiveInt } from './context.js';

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
  const ahead = flags.ahead === undefined ? DEFAULT_AHEAD : positiveInt('--ahead', flags.ahead, { allowZero: true });
  const today = monthOf(flags.asOf ? parseDay(flags.asOf) : new Date());
  const aheadMonths = monthRange(today, addMonths(today, ahead));
  const ctx = commandContext(cmd);
  const { tables } = ctx.config;
  if (flags.convert) return (await import('./partition-convert.js')).run(flags, ctx, aheadMonths);
  for (const f of ['cancel', 'batchSize', 'lockTimeout', 'lockRetries'] as const) {
    if (flags[f] !== undefined) throw new UsageError(`--${f.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} goes with --convert`);
  }
  if (flags.wait === false) throw new UsageError('--no-wait goes with --convert');

  await withClient(ctx, async (client) => {
    if (flags.check) {
      const report = await checkPartitions(client, aheadMonths, tables);
      await ctx.printRows(
        report.partitions.map((p) => ({ ...p, rows: String(p.rows), size: formatBytes(p.bytes) })),
        [{ key: 'name', label: 'partition' }, { key: 'from', kind: 'time' }, { key: 'to', kind: 'time' }, { key: 'rows', kind: 'int' }, { key: 'size' }],
      );
      const problems: string[] = [];
      if (report.stranded.length) {
        problems.push(`${fmtInt(report.stranded.reduce((s, r) => s + r.rows, 0))} rows in the DEFAULT partition (${report.stranded.map((r) => `${r.month}: ${fmtInt(r.rows)}`).join(', ')}): run \`invoices partition\` to move them into monthly partitions`);
      }
      if (report.missingAhead.length) problems.push(`no partition yet for ${report.missingAhead.join(', ')}: run \`invoices partition --ahead ${ahead}\``);
      for (const p of problems) ctx.log.warn(p);
      if (problems.length) process.exitCode = 1;
      else ctx.log.info(`${report.partitions.length} partitions, none missing through ${aheadMonths[aheadMonths.length - 1]}, DEFAULT empty`);
      return;
    }

    const plans = await planPartitions(client, aheadMonths, tables);
    if (flags.dryRun) {
      ctx.print(plans.length ? plans.map((p) => `-- ${p.name}${p.moveRows ? ` (moves ${p.moveRows} rows from the DEFAULT partition)` : ''}\nBEGIN;\n${p.statements.join(';\n')};\nCOMMIT;\n`).join('\n') : '-- nothing to do\n');
      return;
    }
    const done = [];
    for (const p of plans) {
      await createPartition(client, p);
      ctx.log.info(`created ${tables.mapped ? `partition ${tables.invoices.schema}.${p.name} of ${tables.invoices.schema}.${tables.invoices.table}` : p.name}${p.moveRows ? `, moved ${fmtInt(p.moveRows)} rows out of the DEFAULT partition` : ''}`);
      done.push({ partition: p.name, month: p.month, moved_rows: String(p.moveRows) });
    }
    if (!done.length) ctx.log.info(`partitions up to date through ${aheadMonths[aheadMonths.length - 1]}: nothing to create`);
    else await ctx.printRows(done, [{ key: 'partition' }, { key: 'month' }, { key: 'moved_rows', kind: 'int' }]);
  });
}
