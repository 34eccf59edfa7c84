// `invoices partition --convert [--dry-run] [--cancel]`: read the flags, run the core in
// src/schema/convert.ts, show progress on stderr and a summary record on stdout.
import { withClient } from '../db/client.js';
import { UsageError } from '../errors.js';
import { createProgress, fmtInt } from '../output/progress.js';
import { cancelOnAbort } from '../db/cancel.js';
import { watchServerProgress } from '../db/server-progress.js';
import {
  cancelConversion,
  convertInvoices,
  describePlan,
  planConversion,
  type ConvertPhase,
  type ConvertResult,
} from '../schema/convert.js';
import type { Month } from '../schema/partitions.js';
import { interruptSignal, positiveInt, type CommandContext } from './context.js';
import { DEFAULT_CONVERT_BATCH_SIZE, DEFAULT_LOCK_RETRIES, DEFAULT_LOCK_TIMEOUT_MS } from './partition.js';

export interface ConvertFlags {
  check?: boolean;
  dryRun?: boolean;
  cancel?: boolean;
  batchSize?: string;
  lockTimeout?: string;
  lockRetries?: string;
  /** --no-wait sets it false. */
  wait?: boolean;
}

export async function run(flags: ConvertFlags, ctx: CommandContext, ahead: Month[]): Promise<void> {
  if (flags.check) throw new UsageError('--check and --convert do not go together: run them separately');
  const batchSize = flags.batchSize === undefined ? DEFAULT_CONVERT_BATCH_SIZE : positiveInt('--batch-size', flags.batchSize);
  const lockTimeoutMs = flags.lockTimeout === undefined ? DEFAULT_LOCK_TIMEOUT_MS : positiveInt('--lock-timeout', flags.lockTimeout);
  const lockRetries =
    flags.lockRetries === undefined ? DEFAULT_LOCK_RETRIES : positiveInt('--lock-retries', flags.lockRetries, { allowZero: true });
  const { tables } = ctx.config;
  const label = tables.mapped ? `${tables.invoices.schema}.${tables.invoices.table}` : 'invoices';

  if (flags.cancel) {
    await withClient(ctx, async (client) => {
      const r = await cancelConversion(client, { lockTimeoutMs, lockRetries, log: ctx.log, dryRun: flags.dryRun, tables });
      if (flags.dryRun)
        ctx.print(r.statements.length ? `${r.statements.join(';\n')};\n` : '-- no conversion in progress: nothing to cancel\n');
      else
        ctx.log.info(
          r.cancelled
            ? `cancelled: the trigger on ${label} and everything the conversion created are gone; ${label} is as it was`
            : 'no conversion in progress: nothing to cancel',
        );
    });
    return;
  }

  if (flags.dryRun) {
    await withClient(ctx, async (client) =>
      ctx.print(describePlan(await planConversion(client, { ahead, batchSize, lockTimeoutMs, tables }), { lockRetries })),
    );
    return;
  }

  const progress = createProgress('convert', { quiet: ctx.quiet, tty: ctx.tty, color: ctx.color });
  const log = progress.wrap(ctx.log);
  const signal = interruptSignal(log);
  const steps: ConvertPhase[] = ['prepare', 'backfill', 'indexes', 'sync', 'switch', 'finish'];
  const units: Record<ConvertPhase, string> = {
    prepare: 'statements',
    backfill: 'rows',
    indexes: 'indexes',
    sync: 'checks',
    switch: 'attempts',
    finish: 'steps',
  };
  const names: Record<ConvertPhase, string> = {
    prepare: 'prepare',
    backfill: 'copying',
    indexes: 'indexes',
    sync: 'catch up and verify',
    switch: 'switch',
    finish: 'finish',
  };
  let phase: ConvertPhase | undefined;
  let result: ConvertResult;
  try {
    result = await withClient({ ...ctx, log }, async (client) => {
      // Ctrl-C or SIGTERM cancels the statement in flight on the server (a batch, an index build, the verification).
      const canceller = cancelOnAbort({ ...ctx, log }, client, signal);
      // On a terminal, how far an index build or the VACUUM ANALYZE in flight has come.
      let doing = '';
      let sample = '';
      const detail = () => progress.detail([doing, sample].filter(Boolean).join(' '));
      const watcher = ctx.tty
        ? watchServerProgress(ctx, (client as unknown as { processID: number }).processID, (text) => {
            sample = text;
            detail();
          })
        : undefined;
      try {
        return await convertInvoices(client, {
          ahead,
          batchSize,
          lockTimeoutMs,
          lockRetries,
          signal,
          log,
          tables,
          wait: flags.wait,
          onProgress: (p) => {
            if (p.phase !== phase) {
              phase = p.phase;
              log.debug(`convert phase ${steps.indexOf(p.phase) + 1}/${steps.length}: ${p.phase}`);
              progress.phase(names[p.phase], {
                total: p.total,
                unit: units[p.phase],
                step: steps.indexOf(p.phase) + 1,
                steps: steps.length,
              });
            }
            progress.update(p.done, p.total);
            if ((p.detail ?? '') !== doing) sample = '';
            doing = p.detail ?? '';
            detail();
          },
        });
      } finally {
        await watcher?.stop();
        canceller.dispose();
        await canceller.settled();
      }
    });
  } finally {
    progress.stop();
  }
  if (result.status === 'converted') {
    ctx.log.info(
      `converted ${label}: ${fmtInt(result.rows)} rows in ${result.partitions} partitions in ${result.seconds.toFixed(1)} s; ` +
        `the exclusive lock was held ${result.lockMs?.toFixed(0)} ms (attempt ${result.lockAttempts})`,
    );
    if (result.oldTable)
      ctx.log.info(`the original table is kept as ${result.oldTable}: once you are satisfied, DROP TABLE ${result.oldTable}`);
  }
  if (ctx.format !== 'table') {
    await ctx.printRows(
      [{ ...result, rows: String(result.rows), copiedRows: String(result.copiedRows), defaultRows: String(result.defaultRows) }],
      [
        { key: 'status' },
        { key: 'resumed' },
        { key: 'rows', kind: 'int' },
        { key: 'copiedRows', kind: 'int' },
        { key: 'partitions' },
        { key: 'seconds', kind: 'seconds' },
        { key: 'rowsPerSecond', kind: 'rate' },
        { key: 'lockMs', kind: 'rate' },
        { key: 'lockAttempts' },
        { key: 'defaultRows', kind: 'int' },
        { key: 'oldTable' },
        { key: 'carried' },
        { key: 'warnings' },
      ],
      { single: true },
    );
  }
}
