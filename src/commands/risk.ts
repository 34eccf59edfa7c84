import type { Command } from 'commander';
import type { Client } from '../db/client.js';
import { UsageError } from '../errors.js';
import { createProgress, fmtInt } from '../output/progress.js';
import { formatCursor } from '../output/render.js';
import { MODEL_VERSION } from '../risk/model.js';
import type { RunSummary, Since } from '../risk/scorer.js';
import { commandContext, interruptExitCode, interruptSignal, parseDay, positiveInt, type CommandContext } from './context.js';

const ACTIONS = ['run', 'status', 'verify', 'explain', 'init'] as const;
export const DEFAULT_SINCE = 'last';
export const DEFAULT_BATCH_SIZE = 50_000;
export const DEFAULT_POLL_INTERVAL_MS = 2000;

export function command(program: Command): Command {
  return program
    .command('risk')
    .description('score new invoices with the risk model, exactly once (use case 4); status, verify, explain, init')
    .addArgument(program.createArgument('[action]', 'status, verify, explain <id> or init (default: score)').choices(ACTIONS))
    .argument('[id]', 'invoice id, for explain')
    .option(
      '--since <when>',
      'last: invoices committed since the watermark; all: (re)score everything; YYYY-MM-DD: (re)score those issued since that day',
      DEFAULT_SINCE,
    )
    .option('--follow', 'keep running: score new invoices within a second of their commit (Ctrl-C or SIGTERM stops it)')
    .option('--limit <n>', 'score at most N invoices in this run')
    .option('--batch-size <n>', 'invoices per transaction', String(DEFAULT_BATCH_SIZE))
    .option('--model-version <v>', 'model version: scores, watermark and lock are per version', MODEL_VERSION)
    .option('--retry-failed', 'score the dead letters again; those that score leave the dead-letter table')
    .option('--wait', 'when another run of the same model is scoring, wait for it instead of exiting 1')
    .option(
      '--poll-interval <ms>',
      'with --follow: look for invoices at least this often even without a notification',
      String(DEFAULT_POLL_INTERVAL_MS),
    )
    .option('--dry-run', 'with init: print the statements without running them')
    .addHelpText(
      'after',
      `
Examples:
  $ invoices risk init --dry-run            what setting the scorer up would change
  $ invoices risk                           score every invoice committed since the last run (cron-safe)
  $ invoices risk --follow                  keep scoring as invoices commit
  $ invoices risk status                    backlog, last run, dead letters, what holds the watermark
  $ invoices risk verify                    every invoice below the watermark scored? (exit 1 if not)
  $ invoices risk explain 42                the features and reasons of one invoice
  $ invoices risk --since 2026-01-01 --model-version v2   rescore what was issued since a day

Every committed invoice is scored exactly once per model version, even when transactions commit
out of order: the watermark is the inserting transaction's id (created_xid), read only below the
oldest running transaction. A second run of the same model exits 1 (or queues with --wait).`,
    )
    .action(run);
}

interface RiskFlags {
  since: string;
  follow?: boolean;
  limit?: string;
  batchSize: string;
  modelVersion: string;
  retryFailed?: boolean;
  wait?: boolean;
  pollInterval: string;
  dryRun?: boolean;
}

/** `action` is one of ACTIONS (commander checks it) or none, to score. */
export async function run(
  action: (typeof ACTIONS)[number] | undefined,
  id: string | undefined,
  flags: RiskFlags,
  cmd: Command,
): Promise<void> {
  const what = action ?? 'run';
  if (what !== 'explain' && id !== undefined) throw new UsageError(`unexpected argument "${id}"`);
  const model = flags.modelVersion;
  if (!/^[\w.-]{1,64}$/.test(model))
    throw new UsageError(`--model-version must be 1 to 64 letters, digits, "_", "." or "-", got "${model}"`);
  const ctx = await commandContext(cmd);
  const { withClient } = await import('../db/client.js');
  switch (what) {
    case 'init':
      return withClient(ctx, (client) => init(ctx, client, Boolean(flags.dryRun)));
    case 'status':
    case 'verify':
    case 'explain': {
      if (what === 'explain' && (!id || !/^-?\d{1,19}$/.test(id)))
        throw new UsageError(`risk explain needs an invoice id, got "${id ?? ''}"`);
      const report = await import('./risk-report.js');
      return withClient(ctx, (client) => (what === 'explain' ? report.explain(ctx, client, id!, model) : report[what](ctx, client, model)));
    }
    default:
      return score(ctx, flags, model);
  }
}

async function score(ctx: CommandContext, flags: RiskFlags, model: string): Promise<void> {
  if (!['last', 'all'].includes(flags.since) && !/^\d{4}-\d{2}-\d{2}$/.test(flags.since))
    throw new UsageError(`--since must be last, all or a day YYYY-MM-DD, got "${flags.since}"`);
  const since: Since =
    flags.since === 'last'
      ? { kind: 'last' }
      : flags.since === 'all'
        ? { kind: 'all' }
        : { kind: 'date', from: parseDay(flags.since, '--since').toISOString() };
  const batchSize = positiveInt('--batch-size', flags.batchSize);
  const limit = flags.limit === undefined ? undefined : positiveInt('--limit', flags.limit);
  const pollMs = positiveInt('--poll-interval', flags.pollInterval);
  if (flags.follow && (since.kind !== 'last' || flags.retryFailed || limit !== undefined))
    throw new UsageError('--follow scores from the watermark: it takes neither --since all|DATE, --limit nor --retry-failed');
  if (flags.retryFailed && since.kind !== 'last') throw new UsageError('--retry-failed retries the dead letters: it takes no --since');
  const [{ connect }, { follow }, { Scorer }] = await Promise.all([
    import('../db/client.js'),
    import('../risk/follow.js'),
    import('../risk/scorer.js'),
  ]);
  // One live line for the run (drawn on a terminal only); messages, the interrupt's included, go around it.
  const progress = createProgress(flags.follow ? 'risk --follow' : 'risk', { quiet: ctx.quiet, tty: ctx.tty });
  const log = progress.wrap(ctx.log);
  const signal = interruptSignal(log);
  const opts = { modelVersion: model, batchSize, wait: flags.wait, signal, log };
  const started = performance.now();
  const client = await connect(ctx);
  let writer: Client | undefined;
  let summary: RunSummary;
  try {
    await autoInit(ctx, client);
    if (flags.follow) {
      await client.end();
      // On a terminal a live line, redrawn every 250 ms: scored so far and the rate, the rate of
      // the last 10 s, the lag (caught up, or behind since when: the time since it last had
      // nothing left to score) and the last invoice scored. Off a terminal, a log line every 10 s as before.
      let last = performance.now();
      let since = 0;
      let scoredTotal = 0;
      let lastInvoice = '';
      let caughtUp = false;
      let behindSince = performance.now();
      const recent: Array<{ at: number; n: number }> = [];
      const show = () => {
        const now = performance.now();
        while (recent.length && now - recent[0].at > 10_000) recent.shift();
        const n = recent.reduce((a, r) => a + r.n, 0);
        const lag = caughtUp ? 'caught up' : `lag ${((now - behindSince) / 1000).toFixed(1)} s`;
        // The rate over the last 10 s (the count of the whole run over its time would mostly measure the waits).
        const span = caughtUp ? 10 : Math.min(10, Math.max(1, (now - behindSince) / 1000));
        progress.detail(
          `${fmtInt(scoredTotal)} scored · ${fmtInt(Math.round(n / span))}/s · ${lag}${lastInvoice ? ` · last invoice ${lastInvoice}` : ''}`,
        );
      };
      const ticker = ctx.tty ? setInterval(show, 250) : undefined;
      ticker?.unref();
      try {
        summary = await follow(() => connect(ctx), ctx.config.tables, {
          ...opts,
          log,
          pollMs,
          signal,
          onConnected: () => {
            log.info(`following: scoring new invoices as they commit with model ${model} (Ctrl-C to stop)`);
            if (!scoredTotal) progress.phase('following', { unit: 'invoices' });
            show();
          },
          onIdle: (heldBack) => {
            // Caught up: nothing below the horizon is waiting (rows held back by an older transaction wait for it).
            if (!heldBack) caughtUp = true;
            else if (caughtUp) [caughtUp, behindSince] = [false, performance.now()];
          },
          onBatch: (b) => {
            const n = b.scored + b.failed;
            scoredTotal += n;
            since += n;
            recent.push({ at: performance.now(), n });
            lastInvoice = b.cursor.invoiceId;
            // Behind from the batch that ended a caught-up spell; a batch within a backlog does not reset it.
            if (caughtUp) behindSince = performance.now();
            caughtUp = false;
            ctx.log.debug(
              `risk --follow: batch of ${n} scored, ${fmtInt(scoredTotal)} in all, last invoice ${b.cursor.invoiceId} (cursor ${formatCursor(b.cursor.xid, b.cursor.invoiceId)})`,
            );
            if (!ctx.tty && performance.now() - last >= 10_000) {
              ctx.log.info(
                `scored ${fmtInt(since)} in the last ${((performance.now() - last) / 1000).toFixed(0)} s (cursor ${formatCursor(b.cursor.xid, b.cursor.invoiceId)})`,
              );
              last = performance.now();
              since = 0;
            }
          },
        });
      } finally {
        if (ticker) clearInterval(ticker);
        progress.stop();
      }
    } else {
      writer = await connect(ctx);
      const scorer = await Scorer.open(client, ctx.config.tables, opts, writer);
      const what = flags.retryFailed ? 'retrying dead letters' : 'scoring';
      let done = 0;
      let backlog = 0;
      // The backlog, counted once at the start below the horizon: done/backlog, rate and ETA.
      // Rows that commit while it runs are scored too: the total then grows with them.
      const onBacklog = (n: number) => {
        backlog = limit === undefined ? n : Math.min(n, limit);
        ctx.log.debug(
          `risk backlog: ${fmtInt(n)} ${flags.retryFailed ? 'dead letter(s)' : 'invoice(s) below the horizon to walk'}${limit !== undefined ? ` (--limit ${fmtInt(limit)})` : ''}`,
        );
        progress.phase(what, { total: backlog, unit: flags.retryFailed ? 'dead letters' : 'invoices' });
      };
      const onBatch = (b: RunSummary) => {
        done += b.scored + b.failed + b.alreadyScored;
        progress.update(done, Math.max(done, backlog));
      };
      try {
        summary = flags.retryFailed
          ? await scorer.retryFailed({ signal, onBatch, onBacklog })
          : await scorer.run(since, { limit, signal, onBatch, onBacklog });
      } finally {
        progress.stop();
      }
    }
  } finally {
    await client.end().catch(() => {});
    await writer?.end().catch(() => {});
  }
  const seconds = (performance.now() - started) / 1000;
  const n = summary.scored + summary.failed;
  ctx.log.info(
    `${flags.follow ? 'stopped: ' : ''}scored ${fmtInt(summary.scored)} invoice(s) with model ${model} in ${seconds.toFixed(1)} s` +
      (n
        ? ` (${fmtInt(Math.round(n / seconds))}/s): ${fmtInt(summary.levels.high)} high, ${fmtInt(summary.levels.medium)} medium, ${fmtInt(summary.levels.low)} low`
        : ': nothing new') +
      (summary.failed ? `; ${fmtInt(summary.failed)} failed (dead letters: see \`invoices risk status\`, retry with --retry-failed)` : '') +
      (summary.alreadyScored ? `; ${fmtInt(summary.alreadyScored)} already had a score (kept)` : ''),
  );
  if (ctx.format !== 'table') {
    const ref = ctx.config.tables.invoices;
    await ctx.printRows(
      [
        {
          source: `${ref.schema}.${ref.table}`,
          model,
          scored: summary.scored,
          failed: summary.failed,
          already_scored: summary.alreadyScored,
          high: summary.levels.high,
          medium: summary.levels.medium,
          low: summary.levels.low,
          batches: summary.batches,
          seconds,
          cursor: formatCursor(summary.cursor.xid, summary.cursor.invoiceId),
        },
      ],
      [
        { key: 'source' },
        { key: 'model' },
        { key: 'scored', kind: 'int' },
        { key: 'failed', kind: 'int' },
        { key: 'already_scored', kind: 'int' },
        { key: 'high', kind: 'int' },
        { key: 'medium', kind: 'int' },
        { key: 'low', kind: 'int' },
        { key: 'batches', kind: 'int' },
        { key: 'seconds', kind: 'seconds' },
        { key: 'cursor' },
      ],
      { single: true },
    );
  }
  // A follower ends only when stopped: like every command, 130 after Ctrl-C and 143 after SIGTERM
  // (a systemd unit says SuccessExitStatus=143), once its summary is out.
  if (signal.aborted) process.exitCode = interruptExitCode();
}

/** On this tool's own tables the scorer sets itself up (saying what it does); an adopted table needs `invoices risk init`. */
async function autoInit(ctx: CommandContext, client: Client): Promise<void> {
  if (ctx.config.tables.mapped) return;
  const [{ applyRiskSetup, OLD_TABLES_DROPPED, planRiskSetup, riskTables }, { describeTable }] = await Promise.all([
    import('../risk/setup.js'),
    import('../table/describe.js'),
  ]);
  const old = (await riskTables(client)) === 'old';
  const steps = await planRiskSetup(client, await describeTable(client, ctx.config.tables));
  if (steps.length) ctx.log.info('setting up the risk scorer (as `invoices risk init` does):');
  await applyRiskSetup(client, steps, (s) => {
    if (!perPartition(s.description)) ctx.log.info(`  ${s.description}`);
  });
  if (old && (await riskTables(client)) === 'ok') ctx.log.warn(OLD_TABLES_DROPPED);
}

async function init(ctx: CommandContext, client: Client, dryRun: boolean): Promise<void> {
  const [{ applyRiskSetup, OLD_TABLES_DROPPED, planRiskSetup, riskTables }, { describeTable }] = await Promise.all([
    import('../risk/setup.js'),
    import('../table/describe.js'),
  ]);
  const src = await describeTable(client, ctx.config.tables);
  const steps = await planRiskSetup(client, src);
  if (dryRun) {
    ctx.print(
      steps.length
        ? steps.map((s) => `-- ${s.altersUserTable ? '[changes your table] ' : ''}${s.description}\n${s.sql.trim()};\n`).join('\n')
        : '-- nothing to do: the risk scorer is set up\n',
    );
    return;
  }
  if (!steps.length) ctx.log.info('the risk scorer is set up: nothing to do');
  const old = (await riskTables(client)) === 'old';
  let i = 0;
  await applyRiskSetup(client, steps, (s) => {
    i++;
    if (perPartition(s.description)) ctx.log.debug(s.description);
    else ctx.log.info(`[${i}/${steps.length}] ${s.altersUserTable ? 'changing your table: ' : ''}${s.description}`);
  });
  if (old) ctx.log.warn(OLD_TABLES_DROPPED);
}

/** A partition's share of an index build: one line per index is enough on stderr (all with --debug). */
const perPartition = (description: string) => /^attach |: part of /.test(description);
