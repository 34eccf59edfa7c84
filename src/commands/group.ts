import type { Command } from 'commander';
import { ENGINES, GROUP_BYS, groupInvoices, type Engine, type GroupBy, type GroupRow } from '../analytics/group.js';
import { describeWindow, monthWindow } from '../analytics/window.js';
import { UsageError } from '../errors.js';
import { barChart } from '../output/chart.js';
import { createProgress, fmtInt } from '../output/progress.js';
import type { Column } from '../output/render.js';
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
  if (!GROUP_BYS.includes(opts.by as GroupBy)) throw new UsageError(`--by must be one of ${GROUP_BYS.join(', ')}, got "${opts.by}"`);
  if (!ENGINES.includes(opts.engine as Engine)) throw new UsageError(`--engine must be one of ${ENGINES.join(', ')}, got "${opts.engine}"`);
  const top = opts.top === undefined ? undefined : positiveInt('--top', opts.top);
  const g = cmd.optsWithGlobals<{ json?: boolean; format?: string }>();
  if (opts.chart && (g.json || (g.format !== undefined && g.format !== 'table'))) {
    throw new UsageError(`--chart draws a chart: it cannot go with ${g.json ? '--json' : `--format ${g.format}`} (drop one of them)`);
  }
  const window = monthWindow(months, opts.asOf ?? new Date().toISOString().slice(0, 10));
  const by = opts.by as GroupBy;
  const ctx = commandContext(cmd);
  ctx.log.info(`window: ${describeWindow(window)}`);
  const started = performance.now();
  // The first build of the monthly totals (or a rebuild) reads the whole table in one statement:
  // a live line names it with the planner's row count and the time it has taken so far.
  const progress = createProgress('group', { quiet: ctx.quiet, tty: ctx.tty });
  const log = progress.wrap(ctx.log);
  const r = await groupInvoices(ctx, {
    window, by, top, engine: opts.engine as Engine, lake: opts.lake, log, signal: interruptSignal(ctx.log),
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
    const title = `total amount by ${by}, ${window.firstMonth} to ${window.lastMonth}${top ? `, top ${top}` : ''}`;
    ctx.print(barChart(r.rows.map((row) => ({ label: row.name ? `${row.name} (${row.customer_id})` : row.customer_id, value: row.total })), { title, width: Math.max(20, (process.stdout.columns ?? 100) - 60) }));
    return;
  }
  const columns: Column<GroupRow>[] = [
    { key: 'customer_id', kind: 'int' },
    { key: 'name' },
    { key: 'invoices', kind: 'int' },
    { key: 'total', kind: 'money' },
    { key: 'average', kind: 'money' },
    ...(by === 'customer' ? ([{ key: 'issued', kind: 'money' }, { key: 'received', kind: 'money' }, { key: 'net', kind: 'money' }] as Column<GroupRow>[]) : []),
  ];
  await ctx.printRows(r.rows, columns);
}
