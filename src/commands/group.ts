import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { createProgress, fmtInt } from '../output/progress.js';
import { commandContext, defaultLake, interruptSignal, LAKE_DEFAULT, positiveInt } from './context.js';

export const DEFAULT_ENGINE = 'auto';

export interface HelpValues {
  /** --by's values with their help line (the dimensions' registry). */
  dimensions: ReadonlyArray<{ name: string; help: string }>;
  /** --engine's values with their help line (auto, then the engines' registry). */
  engines: ReadonlyArray<{ name: string; help: string }>;
}

/** The values --by and --engine take, from the core's registries (neither loads DuckDB or pg); only when group is the command named. */
export async function helpValues(): Promise<HelpValues> {
  const [{ DIMENSIONS }, { AUTO_HELP, GROUP_ENGINES }] = await Promise.all([
    import('../analytics/dimensions.js'),
    import('../analytics/engines.js'),
  ]);
  return { dimensions: DIMENSIONS, engines: [{ name: 'auto', help: AUTO_HELP }, ...GROUP_ENGINES] };
}

/** `values` is given when group is the command named: the other commands' help never shows its options. */
export function command(program: Command, { dimensions = [], engines = [] }: Partial<HelpValues> = {}): Command {
  const lines = (items: ReadonlyArray<{ name: string; help: string }>) => items.map((i) => `  ${i.name.padEnd(10)} ${i.help}`).join('\n');
  return program
    .command('group')
    .description('invoices of the last N calendar months grouped by issuer, receiver, customer, country or segment (exact totals)')
    .requiredOption('--by <what>', `${orList(dimensions.map((d) => d.name))} (below)`)
    .requiredOption('--months <n>', 'the N calendar months ending with the month of --as-of (the current month included)')
    .option('--as-of <date>', 'a day in the last month of the window (YYYY-MM-DD, UTC; default: today)')
    .option('--top <k>', 'only the K rows with the largest totals')
    .option('--engine <engine>', `${orList(engines.map((e) => e.name))} (below)`, DEFAULT_ENGINE)
    .option('--lake <dir>', `the lake written by \`invoices export\` (default: ${LAKE_DEFAULT})`)
    .option('--chart', 'draw the totals as a bar chart')
    .addHelpText(
      'after',
      `
--by, what a row is:
${lines(dimensions)}

--engine, all with identical numbers:
${lines(engines)}

Examples:
  $ invoices group --months 6 --by issuer --top 10
  $ invoices group --months 12 --by customer --as-of 2026-06-30 --format csv > customers.csv
  $ invoices group --months 3 --by receiver --top 15 --chart
  $ invoices group --months 6 --by country
  $ invoices group --months 6 --by issuer --engine postgres      the live table, no lake

The window is printed on stderr, with the engine that answered and why. Amounts are exact
decimal strings; average is total / invoices rounded half away from zero to the cent.`,
    )
    .hook('preAction', defaultLake('--lake'))
    .action(run);
}

/** "a, b or c". */
const orList = (items: readonly string[]) =>
  items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;

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
  const [{ groupInvoices, groupingOf }, { describeWindow, monthWindow }, { barChart }] = await Promise.all([
    import('../analytics/group.js'),
    import('../analytics/window.js'),
    import('../output/chart.js'),
  ]);
  // --by and --engine are checked by the core, once, before any work; the dimension gives the columns and the chart's labels.
  const dim = groupingOf(opts.by, opts.engine);
  const window = monthWindow(months, opts.asOf ?? new Date().toISOString().slice(0, 10));
  const ctx = await commandContext(cmd);
  ctx.log.info(`window: ${describeWindow(window)}`);
  const started = performance.now();
  // The first build of the monthly totals (or a rebuild) reads the whole table in one statement:
  // a live line names it with the planner's row count and the time it has taken so far.
  const progress = createProgress('group', { quiet: ctx.quiet, tty: ctx.tty });
  const log = progress.wrap(ctx.log);
  const r = await groupInvoices(ctx, {
    window,
    by: opts.by,
    top,
    engine: opts.engine,
    lake: opts.lake,
    log,
    signal: interruptSignal(log),
    onTotalsBuild: (b) => {
      if (b.done) {
        progress.stop();
        log.info(`monthly totals of ${b.source}: every month built in ${b.seconds.toFixed(1)} s`);
        return;
      }
      progress.phase(`building monthly totals: every month of ${b.source}`, { unit: 'invoices' });
      progress.detail(`${b.estimatedRows ? `~${fmtInt(b.estimatedRows)} invoices, ` : ''}one pass`);
    },
  }).finally(() => progress.stop());
  ctx.log.info(`engine: ${r.engine} (${r.reason}); ${r.rows.length} row(s) in ${((performance.now() - started) / 1000).toFixed(2)} s`);

  if (opts.chart) {
    const title = `total amount by ${opts.by}, ${window.firstMonth} to ${window.lastMonth}${top ? `, top ${top}` : ''}`;
    ctx.print(
      barChart(
        r.rows.map((row) => ({ label: dim.label(row), value: row.total! })),
        { title, width: Math.max(20, (process.stdout.columns ?? 100) - 60) },
      ),
    );
    return;
  }
  await ctx.printRows(r.rows, dim.columns);
}
