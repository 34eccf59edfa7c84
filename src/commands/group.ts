import type { Command } from 'commander';
import type { Engine, GroupBy, GroupRow } from '../analytics/group.js';
import { UsageError } from '../errors.js';
import { createProgress, fmtInt } from '../output/progress.js';
import type { Column } from '../output/render.js';
import { commandContext, defaultLake, interruptSignal, LAKE_DEFAULT, positiveInt } from './context.js';

export const DEFAULT_ENGINE: Engine = 'auto';

/** What each engine is, said in the help of --engine; the engines themselves are the core's (ENGINES). */
const ENGINE_HELP: Partial<Record<string, string>> = {
  auto: 'the fastest that is exact and fresh: a fresh lake, else the totals, else postgres',
  duckdb: 'the lake plus what it does not hold yet',
  totals: 'monthly totals per customer, refreshed first',
};

export interface HelpValues {
  GROUP_BYS: readonly string[];
  ENGINES: readonly string[];
}

/** The values --by and --engine take, from the core; it loads DuckDB, so only when group is the command named. */
export async function helpValues(): Promise<HelpValues> {
  const { GROUP_BYS, ENGINES } = await import('../analytics/group.js');
  return { GROUP_BYS, ENGINES };
}

/** `values` is given when group is the command named: the other commands' help never shows its options. */
export function command(program: Command, { GROUP_BYS = [], ENGINES = [] }: Partial<HelpValues> = {}): Command {
  return program.command('group')
    .description('invoices of the last N calendar months grouped by issuer, receiver or customer (exact totals)')
    .requiredOption('--months <n>', 'the N calendar months ending with the month of --as-of (the current month included)')
    .requiredOption('--by <party>', `${orList(GROUP_BYS)} (customer: issued + received, and net)`)
    .option('--as-of <date>', 'a day in the last month of the window (YYYY-MM-DD, UTC; default: today)')
    .option('--top <k>', 'only the K customers with the largest totals')
    .option('--engine <engine>', orList(ENGINES.map((e) => (ENGINE_HELP[e] ? `${e} (${ENGINE_HELP[e]})` : e))), DEFAULT_ENGINE)
    .option('--lake <dir>', `the lake written by \`invoices export\` (default: ${LAKE_DEFAULT})`)
    .option('--chart', 'draw the totals as a bar chart')
    .addHelpText('after', `
Examples:
  $ invoices group --months 6 --by issuer --top 10
  $ invoices group --months 12 --by customer --as-of 2026-06-30 --format csv > customers.csv
  $ invoices group --months 3 --by receiver --top 15 --chart
  $ invoices group --months 6 --by issuer --engine postgres      the live table, no lake

The window is printed on stderr, with the engine that answered and why. Amounts are exact
decimal strings; average is total / invoices rounded half away from zero to the cent.`)
    .hook('preAction', defaultLake('--lake'))
    .action(run);
}

/** "a, b or c". */
const orList = (items: readonly string[]) => (items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`);

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
  const top = opts.top === undefined ? undefined : positiveInt('--top', opts.top);
  const g = cmd.optsWithGlobals<{ json?: boolean; format?: string }>();
  if (opts.chart && (g.json || (g.format !== undefined && g.format !== 'table'))) {
    throw new UsageError(`--chart draws a chart: it cannot go with ${g.json ? '--json' : `--format ${g.format}`} (drop one of them)`);
  }
  const [{ groupInvoices }, { describeWindow, monthWindow }, { barChart }] = await Promise.all([
    import('../analytics/group.js'), import('../analytics/window.js'), import('../output/chart.js'),
  ]);
  const window = monthWindow(months, opts.asOf ?? new Date().toISOString().slice(0, 10));
  // --by and --engine are checked by the core (groupInvoices), which owns their lists.
  const by = opts.by as GroupBy;
  const ctx = await commandContext(cmd);
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
