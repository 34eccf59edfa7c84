import type { Command } from 'commander';
import { InterruptedError } from '../errors.js';
import { createProgress } from '../output/progress.js';
import { formatBytes } from '../output/render.js';
import { commandContext, interruptSignal } from './context.js';

export function command(program: Command): Command {
  return program
    .command('index')
    .description('create the indexes the use cases need (CONCURRENTLY: writers are not blocked) and list them with sizes')
    .option('--dry-run', 'print the SQL instead of running it')
    .addHelpText(
      'after',
      `
Creates, when missing: a unique index on invoice_id (plain table; a partitioned one has invoice_ids),
(issuer_id, issue_date) INCLUDE (amount) and (receiver_id, issue_date) INCLUDE (amount).

Examples:
  $ invoices index --dry-run
  $ invoices index --format json`,
    )
    .action(run);
}

export async function run(flags: { dryRun?: boolean }, cmd: Command): Promise<void> {
  const [{ asInterrupted, cancelOnAbort }, { withClient }, { watchServerProgress }, { dropInvalidBuild, listIndexes, planIndexes }] =
    await Promise.all([
      import('../db/cancel.js'),
      import('../db/client.js'),
      import('../db/server-progress.js'),
      import('../schema/indexes.js'),
    ]);
  const ctx = await commandContext(cmd);
  const progress = createProgress('index', { quiet: ctx.quiet, tty: ctx.tty, color: ctx.color });
  const log = progress.wrap(ctx.log);
  const signal = flags.dryRun ? undefined : interruptSignal(log);
  try {
    await withClient({ ...ctx, log }, async (client) => {
      const steps = await planIndexes(client, ctx.config.tables);
      if (flags.dryRun) {
        ctx.print(
          steps.length
            ? steps.map((s) => `-- ${s.description}\n${s.sql};\n`).join('')
            : '-- nothing to do: every index exists and is valid\n',
        );
        return;
      }
      // Ctrl-C or SIGTERM cancels the build in flight on the server; a killed run's server process stops within a second.
      const canceller = cancelOnAbort({ ...ctx, log }, client, signal);
      await client.query("SET client_connection_check_interval = '1s'").catch(() => {});
      await client.query("SELECT set_config('application_name', 'invoices index', false)");
      // On a terminal, how far the build in flight has come (pg_stat_progress_create_index).
      let doing = '';
      let sample = '';
      const detail = () => progress.detail([doing, sample].filter(Boolean).join(' '));
      const watcher =
        ctx.tty && steps.length
          ? watchServerProgress(ctx, (client as unknown as { processID: number }).processID, (text) => {
              sample = text;
              detail();
            })
          : undefined;
      const kept = (i: number) => (i ? `steps 1-${i} of ${steps.length} are done and kept` : 'nothing was changed');
      progress.phase('building', { total: steps.length, unit: 'steps' });
      for (const [i, s] of steps.entries()) {
        if (signal?.aborted) throw new InterruptedError(`interrupted: ${kept(i)}; run \`invoices index\` again to build the rest`);
        const started = performance.now();
        log.info(`[${i + 1}/${steps.length}] ${s.description}`);
        progress.update(i, steps.length);
        doing = s.builds ? s.builds.name : s.description;
        sample = '';
        detail();
        try {
          await client.query(s.sql);
        } catch (err) {
          await watcher?.stop();
          if (!signal?.aborted) throw err;
          // The cancelled build left its index behind, invalid: drop it, so the table is as of the last finished step.
          await canceller.settled();
          const dropped = await dropInvalidBuild(client, s).catch(() => false);
          throw asInterrupted(
            err,
            signal,
            `interrupted during step ${i + 1}/${steps.length}: ${kept(i)}${dropped ? `; the cancelled build's invalid ${s.builds?.name} was dropped` : ''}; run \`invoices index\` again to build the rest`,
          );
        }
        log.debug(`${((performance.now() - started) / 1000).toFixed(1)} s`);
      }
      progress.update(steps.length, steps.length);
      await watcher?.stop();
      canceller.dispose();
      progress.stop();
      if (!steps.length) log.info('every index exists and is valid: nothing to do');
      const indexes = await listIndexes(client, ctx.config.tables);
      await ctx.printRows(
        indexes.map((x) => ({ ...x, size: formatBytes(x.bytes), valid: x.valid ? 'yes' : 'NO' })),
        [{ key: 'name', label: 'index' }, { key: 'table' }, { key: 'size' }, { key: 'valid' }, { key: 'definition' }],
      );
    });
  } finally {
    progress.stop();
  }
}
