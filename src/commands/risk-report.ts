// `invoices risk status | verify | explain <id>`: what the scorer has done for a source and model,
// whether every invoice below the watermark has its score, and why one invoice got its score.
import type { Client } from '../db/client.js';
import { ExitCode } from '../errors.js';
import { fmtInt } from '../output/progress.js';
import { formatCursor, type Column } from '../output/render.js';
import type { CommandContext } from './context.js';

export async function status(ctx: CommandContext, client: Client, model: string): Promise<void> {
  const { riskStatus } = await import('../risk/report.js');
  const s = await riskStatus(client, ctx.config.tables, model);
  const tx = s.oldestTransaction;
  const holding =
    tx && s.heldBack > 0
      ? `${tx.prepared ? 'prepared transaction' : `backend pid ${tx.pid}`} (${tx.user ?? '?'}@${tx.database ?? '?'}, ${tx.state ?? '?'}) open since ${tx.since} (${tx.seconds} s)`
      : '';
  const row = {
    source: s.source,
    model,
    waiting: s.waiting,
    held_back: s.heldBack,
    oldest_waiting_id: s.oldestWaiting?.invoiceId ?? '',
    oldest_waiting_issued: s.oldestWaiting?.issueDate ?? '',
    oldest_waiting_age_s: s.oldestWaiting?.ageSeconds ?? '',
    last_run_started_at: s.lastRunStartedAt ?? '',
    last_batch_at: s.lastBatchAt ?? '',
    last_run_scored: s.lastRunScored,
    total_scored: s.totalScored,
    dead_letters: s.deadLetters,
    cursor: formatCursor(s.cursor.xid, s.cursor.invoiceId),
    horizon: s.horizon,
    held_back_by: holding,
    table_changed: s.tableChanged ?? '',
  };
  if (s.tableChanged)
    ctx.log.warn(
      `${s.source} changed since the last run of model ${model} (${s.tableChanged}): the next \`invoices risk\` removes the scores of rows that are gone and scores what is new`,
    );
  if (holding)
    ctx.log.warn(
      `${fmtInt(s.heldBack)} committed invoice(s) wait behind ${holding}: the watermark cannot pass a transaction that is still running`,
    );
  await ctx.printRows([row], Object.keys(row).map((key) => ({ key })) as Column<typeof row>[], { single: true });
}

export async function verify(ctx: CommandContext, client: Client, model: string): Promise<void> {
  const { verifyRisk } = await import('../risk/report.js');
  const v = await verifyRisk(client, ctx.config.tables, model);
  await ctx.printRows(
    [
      {
        source: v.source,
        model,
        checked: v.checked,
        scored: v.scored,
        dead_letters: v.deadLetters,
        missing: v.missing,
        missing_ids: v.missingIds.join(' '),
        stale_scores: v.stale,
      },
    ],
    [
      { key: 'source' },
      { key: 'model' },
      { key: 'checked', kind: 'int' },
      { key: 'scored', kind: 'int' },
      { key: 'dead_letters', kind: 'int' },
      { key: 'missing', kind: 'int' },
      { key: 'missing_ids' },
      { key: 'stale_scores', kind: 'int' },
    ],
    { single: true },
  );
  if (v.missing) {
    ctx.log.warn(
      `${v.source}: ${fmtInt(v.missing)} invoice(s) below the watermark have neither a score nor a dead letter made for their row (first: ${v.missingIds.join(', ')})`,
    );
    process.exitCode = ExitCode.failure;
  } else {
    ctx.log.info(
      `${v.source}: every one of the ${fmtInt(v.checked)} invoice(s) below the watermark has a score (${fmtInt(v.scored)}) or a dead letter (${fmtInt(v.deadLetters)})`,
    );
  }
  if (v.stale)
    ctx.log.info(
      `${v.source}: ${fmtInt(v.stale)} stored score(s) of model ${model} belong to rows no longer in the table (not counted; removed by the next run after a TRUNCATE, reload or restore)`,
    );
}

const earlierText = (s: { score: string; level: string; scoredAt: string }) =>
  `the stored score ${s.score} (${s.level}, ${s.scoredAt}) belonged to an earlier row with this id (the table was reloaded or reseeded since): the next \`invoices risk\` scores this one`;

export async function explain(ctx: CommandContext, client: Client, id: string, model: string): Promise<void> {
  const [{ explainInvoice }, { explainFeatures }] = await Promise.all([import('../risk/report.js'), import('../risk/features.js')]);
  const e = await explainInvoice(client, ctx.config.tables, id, model, Date.now());
  const f = e.features;
  const rows = [
    {
      feature: 'invoice',
      value: `${e.invoice.id} of ${e.source}: ${e.invoice.amount} from ${e.invoice.issuer} to ${e.invoice.receiver}, issued ${e.invoice.at}`,
    },
    ...explainFeatures(f),
    { feature: 'score now', value: `${e.result.score.toFixed(4)} (${e.result.level})` },
    ...e.result.reasons.map((r) => ({ feature: `reason ${r.code}`, value: `${r.text} (+${r.weight.toFixed(2)})` })),
    {
      feature: `stored score (${model})`,
      value: e.stored
        ? `${e.stored.score} (${e.stored.level}) ${e.stored.reasons.join(',')} at ${e.stored.scoredAt}`
        : e.deadLetter
          ? `dead letter after ${e.deadLetter.attempts} attempt(s): ${e.deadLetter.error}`
          : e.earlier
            ? `none for this invoice: ${earlierText(e.earlier)}`
            : 'not scored yet',
    },
  ];
  if (e.earlier && !e.stored) ctx.log.warn(`invoice ${id} of ${e.source}: ${earlierText(e.earlier)}`);
  if (ctx.format === 'table') return ctx.printRows(rows, [{ key: 'feature' }, { key: 'value' }]);
  ctx.print(
    JSON.stringify(
      {
        source: e.source,
        invoice: e.invoice,
        features: f,
        score: e.result,
        stored: e.stored ?? null,
        deadLetter: e.deadLetter ?? null,
        earlierRow: e.earlier ?? null,
      },
      null,
      2,
    ) + '\n',
  );
}
