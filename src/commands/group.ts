import type { Command } from 'commander';
import { DIMENSIONS, groupInvoices } from '../analytics/group.js';
import { describeWindow, monthWindow } from '../analytics/window.js';
import { UsageError } from '../errors.js';
import { barChart } from '../output/chart.js';
import { createProgress, fmtInt } from '../output/progress.js';
import { commandContext, interruptSignal, positiveInt } from './context.js';

interface GroupOptions {
  months: string;
  by: string;
  asOf?: string;
  top?: string;
  engine: string;
  lake: string;
  chart?: boolean;
}

export async function run(opts: GroupOptions, cmd: Command): Promise<void> {
  const months = positiveInt('--months', opts.months);
  // --by and --engine are checked by groupInvoices; the dimension gives the columns and the chart's labels.
  const dim = DIMENSIONS.find((d) => d.name === opts.by);
  const top = opts.top === undefined ? undefined : positiveInt('--top', opts.top);
  const g = cmd.optsWithGlobals<{ json?: boolean; format?: string }>();
  if (opts.chart && (g.json || (g.format !== undefined && g.format !== 'table'))) {
    throw new UsageError(`--chart draws a chart: it cannot go with ${g.json ? '--json' : `--format ${g.format}`} (drop one of them)`);
  }
  const window = monthWindow(months, opts.asOf ?? new Date().toISOString().slice(0, 10));
  const ctx = commandContext(cmd);
  ctx.log.info(`window: ${describeWindow(window)}`);
  const started = performance.now();
  // The first build of the monthly totals (or a rebuild) reads the whole table in one statement:
  // a live line names it with the planner's row count and the time it has taken so far.
  const progress = createProgress('group', { quiet: ctx.quiet, tty: ctx.tty });
  const log = progress.wrap(ctx.log);
  const r = await groupInvoices(ctx, {
    window, by: opts.by, top, engine: opts.engine, lake: opts.lake, log, signal: interruptSignal(log),
    onTotalsBuild: (b) => {
      if (b.done) {
        progress.stop();
        log.info(`monthly totals of ${b.source}: every month built in ${b.seconds.toFixed(1)} s`);
        return;
      }
      progress.phase(`building monthly totals: every month of ${b.source}`, { unit: 'invoices' });
      progress.detail(`${b.estimatedRows ? `~${fmtInt(b.estimatedRows)} invoices, ` : ""}one pass`);
    },
  }).finally(() => progress.stop());
  ctx.log.info(`engine: ${r.engine} (${r.reason}); ${r.rows.length} row(s) in ${((performance.now() - started) / 1000).toFixed(2)} s`);

  if (opts.chart) {
    const title = `total amount by ${opts.by}, ${window.firstMonth} to ${window.lastMonth}${top ? `, top ${top}` : ''}`;
    ctx.print(barChart(r.rows.map((row) => ({ label: dim!.label(row), value: row.total! })), { title, width: Math.max(20, (process.stdout.columns ?? 100) - 60) }));
    return;
  }
  await ctx.printRows(r.rows, dim!.columns);
}
