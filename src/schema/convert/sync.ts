// Phase 4, sync: replay the change log into the new table (delete and re-copy each logged id,
// then compare those rows), verify counts and sums per month of both tables in one snapshot,
// replay again; what is left of the log is replayed under the lock by the switch.
import type { Client } from '../../db/client.js';
import { transaction } from '../../db/transaction.js';
import type { Phase } from './context.js';
import { interrupted } from './retry.js';
import { compareRowsSql, replaySql, verifySql, type Sql } from './statements.js';
import { ConversionError } from './types.js';

export const sync: Phase = {
  name: 'sync',
  async run(r) {
    const { client, n, log, s } = r;
    r.where = 'while catching up, before the switch';
    const replayed = await catchUp(client, s, { threshold: r.threshold, signal: r.opts.signal });
    if (replayed) log.info(`caught up: replayed ${replayed.toLocaleString('en-US')} logged changes`);
    if (r.opts.signal?.aborted) throw interrupted('while catching up', n);
    r.progress({ phase: 'sync', done: 0, total: 1, detail: 'verifying counts and sums per month' });
    const verified = await verify(client, s);
    r.progress({ phase: 'sync', done: 1, total: 1 });
    log.info(
      `verified: ${verified.rows.toLocaleString('en-US')} rows in ${verified.months} months have equal counts, sums of ${n.amountName} and of ${n.idName} in both tables${verified.skipped ? ` (${verified.skipped} ids written meanwhile are replayed and compared row by row)` : ''}`,
    );
    await catchUp(client, s, { threshold: r.threshold, signal: r.opts.signal });
  },
};

/**
 * Re-copies logged ids from invoices (deleting what the new table holds for them) and compares
 * them row by row, a batch per REPEATABLE READ transaction (the copy and the comparison see the
 * same snapshot); returns the log entries processed. Stops once a round finds fewer than
 * `threshold` entries: the rest is replayed under the lock.
 */
export async function catchUp(client: Client, s: Sql, opts: { threshold: number; signal?: AbortSignal; batch?: number }): Promise<number> {
  let total = 0;
  for (;;) {
    if (opts.signal?.aborted) return total;
    const n = await transaction(
      client,
      async () => {
        const replayed = await replayBatch(client, s, opts.batch ?? 10_000);
        await checkRows(client, s, replayed.ids);
        return replayed.entries;
      },
      { isolation: 'repeatable read' },
    );
    total += n;
    if (n < opts.threshold) return total;
  }
}

/** One batch of the log (all of it when limit is null), in the caller's transaction: the ids replayed and the entries consumed. */
export async function replayBatch(client: Client, s: Sql, limit: number | null): Promise<{ entries: number; ids: string[] }> {
  const sql = replaySql(s, limit);
  const {
    rows: [picked],
  } = await client.query<{ seqs: string[] | null; ids: string[] | null }>(sql.pick);
  if (!picked.seqs?.length || !picked.ids) return { entries: 0, ids: [] };
  await client.query(sql.deleteLocated, [picked.ids]);
  await client.query(sql.deleteCopied, [picked.ids]);
  await client.query(sql.copy, [picked.ids]);
  await client.query(sql.consume, [picked.seqs]);
  return { entries: picked.seqs.length, ids: picked.ids };
}

/**
 * The rows of these ids are the same in invoices and the new table, and invoice_ids locates each
 * (a guard against a bug in the replay; the ids are passed as an array so every table is probed
 * through its key).
 */
export async function checkRows(client: Client, s: Sql, ids: string[]): Promise<void> {
  if (!ids.length) return;
  const { n } = s;
  const {
    rows: [diff],
  } = await client.query<{ n: string; ids: string[] | null }>(compareRowsSql(s), [ids]);
  if (diff.n !== '0') {
    throw new ConversionError(
      `verification failed, nothing was switched: invoices ${diff.ids?.join(', ')} differ between ${n.label} and ${n.newTable} after replaying their changes. Cancel with \`invoices partition --convert --cancel\` and convert again`,
    );
  }
}

interface MonthSums {
  month: string;
  n: string;
  amount: string | null;
  ids: string | null;
}

/**
 * Per month: count, sum(amount), sum(invoice_id) of both tables in one snapshot, ids in the log
 * left out on both sides (they are replayed and compared row by row under the lock).
 */
async function verify(client: Client, s: Sql): Promise<{ rows: number; months: number; skipped: number }> {
  const { n } = s;
  const sql = verifySql(s);
  const { old, neu, loc } = await transaction(
    client,
    async () => ({
      old: (await client.query<MonthSums>(sql.months(n.parent))).rows,
      neu: (await client.query<MonthSums>(sql.months(n.newTable))).rows,
      loc: (await client.query<{ n: string; ids: string | null; skipped: string }>(sql.locator)).rows[0],
    }),
    { isolation: 'repeatable read', readOnly: true },
  );
  const key = (r: MonthSums) => `${r.n} rows, amount ${r.amount ?? '-'}, ids ${r.ids ?? '0'}`;
  const a = new Map(old.map((r) => [r.month, key(r)]));
  const b = new Map(neu.map((r) => [r.month, key(r)]));
  const diffs = [...new Set([...a.keys(), ...b.keys()])]
    .sort()
    .filter((m) => a.get(m) !== b.get(m))
    .map((m) => `${m}: ${n.label} ${a.get(m) ?? 'none'}, ${n.newTable} ${b.get(m) ?? 'none'}`);
  const rows = old.reduce((x, r) => x + Number(r.n), 0);
  const newRows = neu.reduce((x, r) => x + Number(r.n), 0);
  const newIds = neu.reduce((x, r) => x + BigInt(r.ids ?? '0'), 0n);
  if (Number(loc.n) !== newRows || BigInt(loc.ids ?? '0') !== newIds)
    diffs.push(`${n.locator} has ${loc.n} rows for ${newRows} in ${n.newTable}`);
  if (diffs.length) {
    throw new ConversionError(
      `verification failed, nothing was switched: ${diffs.slice(0, 5).join('; ')}${diffs.length > 5 ? `; and ${diffs.length - 5} more` : ''}. Cancel with \`invoices partition --convert --cancel\` and convert again`,
    );
  }
  return { rows, months: old.length, skipped: Number(loc.skipped) };
}
