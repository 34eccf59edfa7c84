import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import type { MonthOutcome } from '../lake/export.js';
import type { MonthCheck } from '../lake/verify.js';
import { createProgress, fmtInt } from '../output/progress.js';
import type { Column } from '../output/render.js';
import { commandContext, defaultLake, interruptSignal, LAKE_DEFAULT } from './context.js';

export function command(program: Command): Command {
  return program
    .command('export')
    .description('export invoices (hive-partitioned by month) and customers to a Parquet lake; incremental, atomic per month')
    .option('--out <dir>', `the lake directory (default: ${LAKE_DEFAULT})`)
    .option('--full', 'rewrite every month, ignoring the manifest')
    .option('--verify', 'after exporting, reconcile rows and sum(amount) per month with PostgreSQL; exit 1 on any difference')
    .option('--verify-only', 'reconcile the lake with PostgreSQL without exporting')
    .option('--no-wait', "when another export holds the lake's lock, exit 1 at once instead of waiting for it")
    .addHelpText(
      'after',
      `
Examples:
  $ invoices export                          the database's own lake: only the months that changed since the last run
  $ invoices export --out /data/lake --full  rewrite everything
  $ invoices export --verify --quiet         cron: export, then exit 1 if a month differs from PostgreSQL

Layout: <dir>/invoices/month=YYYY-MM/part-<export id>.parquet, <dir>/customers/part-<export id>.parquet,
<dir>/_manifest.json (lists every file, with its size and sha256). The folder must be new, empty or a
lake export made; export never touches a file it did not write. One export at a time (a lock file;
--no-wait refuses instead of waiting); a run that was killed is finished or rolled back by the next.
Rows are exported up to a transaction-id watermark, so a transaction that commits late is picked up
by the next run; months whose rows were updated or deleted, or whose file is missing or changed, are
written again.`,
    )
    .hook('preAction', defaultLake('--out'))
    .action(run);
}

interface ExportOptions {
  out: string;
  full?: boolean;
  verify?: boolean;
  verifyOnly?: boolean;
  /** --no-wait: false. */
  wait?: boolean;
}

const OUTCOME_COLUMNS: Column<MonthOutcome>[] = [
  { key: 'month' },
  { key: 'action' },
  { key: 'rows', kind: 'int' },
  { key: 'sum', kind: 'money' },
  { key: 'reason' },
];

const CHECK_COLUMNS: Column<MonthCheck & { status: string }>[] = [
  { key: 'month' },
  { key: 'lake_rows', kind: 'int' },
  { key: 'postgres_rows', kind: 'int' },
  { key: 'lake_sum', kind: 'money' },
  { key: 'postgres_sum', kind: 'money' },
  { key: 'status' },
];

export async function run(opts: ExportOptions, cmd: Command): Promise<void> {
  if (opts.verifyOnly && (opts.full || opts.verify))
    throw new UsageError('--verify-only does not export: it goes without --full and --verify');
  const ctx = await commandContext(cmd);
  // Phase [1/2] invoices: rows done of the whole job's rows, months done of its months, rate
  // and ETA; then [2/2] customers (one statement: its time). Messages go around the live line.
  const progress = createProgress('export', { quiet: ctx.quiet, tty: ctx.tty });
  const signal = interruptSignal(progress.wrap(ctx.log));
  if (!opts.verifyOnly) {
    const { exportLake } = await import('../lake/export.js');
    let phase = '';
    const r = await exportLake(ctx, {
      out: opts.out,
      full: opts.full,
      wait: opts.wait !== false,
      signal,
      log: progress.wrap(ctx.log),
      onProgress: (p) => {
        if (p.phase !== phase) {
          phase = p.phase;
          if (p.phase === 'invoices') progress.phase('invoices', { step: 1, steps: 2, total: p.total, unit: 'rows' });
          else progress.phase('customers', { step: 2, steps: 2, unit: 'customers' });
        }
        if (p.phase === 'invoices') {
          progress.update(p.done, p.total);
          progress.detail(`${p.monthsDone}/${p.months} months${p.month ? ` (last ${p.month})` : ''}`);
        } else {
          progress.detail(`${p.months} month(s) of invoices staged; writing customers.parquet`);
        }
      },
    }).finally(() => progress.stop());
    const written = r.months.filter((m) => m.action === 'written').length;
    const removed = r.months.filter((m) => m.action === 'removed').length;
    ctx.log.info(
      `exported ${fmtInt(r.rowsWritten)} invoices in ${written} month(s) (${r.months.length - written - removed} unchanged, ${removed} removed) and ${fmtInt(r.customers)} customers to ${r.out} ` +
        `in ${r.seconds.toFixed(1)} s (${fmtInt(Math.round(r.rowsPerSecond))} rows/s); ${r.watermark === null ? 'no watermark (full snapshot)' : `watermark ${r.watermark}${r.previousWatermark ? ` (was ${r.previousWatermark})` : ''}`}${r.from === 'replica' ? '; read from a replica' : ''}`,
    );
    if (!opts.verify) {
      await ctx.printRows(r.months, OUTCOME_COLUMNS);
      return;
    }
  }
  const { verifyLake } = await import('../lake/verify.js');
  const v = await verifyLake(ctx, opts.out, { signal, wait: opts.wait !== false, log: ctx.log });
  const status = (m: MonthCheck) =>
    m.file === 'missing' ? 'MISSING FILE' : m.file === 'changed' ? 'CHANGED FILE' : m.ok ? 'ok' : 'DIFFERENT';
  await ctx.printRows(
    v.months.map((m) => ({ ...m, status: status(m) })),
    CHECK_COLUMNS,
  );
  const bad = v.months.filter((m) => !m.ok);
  for (const f of v.files) ctx.log.warn(`verify: ${f.problem}`);
  if (!v.ok) {
    const parts = [];
    if (bad.length)
      parts.push(
        `${bad.length} month(s) differ between the lake and PostgreSQL (${v.watermark === null ? 'all rows' : `rows below watermark ${v.watermark}`}): ${bad.map((m) => m.month).join(', ')}`,
      );
    const others = v.files.filter((f) => !v.months.some((m) => m.problem === f.problem));
    if (others.length) parts.push(`${others.length} other file(s) missing or changed`);
    ctx.log.warn(`verify: ${parts.join('; ')}; run \`invoices export --out ${opts.out}\` to write them again`);
    process.exitCode = 1;
  } else {
    ctx.log.info(
      `verify: ${v.months.length} month(s) match PostgreSQL exactly (rows and sum(amount)${v.watermark === null ? '' : `, watermark ${v.watermark}`})`,
    );
  }
}
