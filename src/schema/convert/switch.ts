// Phase 5, switch: one transaction under lock_timeout, retried with backoff: ACCESS EXCLUSIVE on
// the table, replay and compare what is left of the log, plan again from the catalog under the
// lock, swap the names, hand over sequences, add the invoice_ids trigger, repoint views,
// triggers and inbound foreign keys. Nothing is switched until it commits.
import type { Client } from '../../db/client.js';
import { savepoint, transaction } from '../../db/transaction.js';
import { inspectTable, lockHolders } from './inspect.js';
import type { Phase, Run } from './context.js';
import { planSwitch } from './plan.js';
import { afterSwitch, backoff, interrupted, isLockFailure, sleep } from './retry.js';
import { lockSql, translateIndexes, type IndexStep } from './statements.js';
import { catchUp, checkRows, replayBatch } from './sync.js';
import { ConversionError } from './types.js';

/** Something the switch's plan did not lock appeared: roll back and try again. */
class RetrySwitch extends Error {}

export const switchPhase: Phase = {
  name: 'switch',
  async run(r) {
    const { client, n, log, result, lockTimeoutMs, lockRetries } = r;
    const steps = r.plan.indexes;
    for (let attempt = 1; ; attempt++) {
      if (r.opts.signal?.aborted) throw interrupted('before the switch', n);
      result.lockAttempts = attempt;
      r.progress({ phase: 'switch', done: attempt - 1, total: lockRetries + 1 });
      r.where = 'before the switch (nothing was switched)';
      try {
        const outcome = await switchOnce(r, steps);
        result.lockMs = outcome.lockMs;
        result.carried = r.plan.carried.filter((c) => !outcome.failed.some((f) => c.includes(f.name)));
        for (const f of outcome.failed) {
          result.warnings.push(f.warning);
          log.warn(f.warning);
        }
        break;
      } catch (err) {
        if (!isLockFailure(err) && !(err instanceof RetrySwitch)) throw err;
        if (attempt > lockRetries) {
          const holders = await lockHolders(client, n);
          throw new ConversionError(
            `could not take the exclusive lock on ${n.label} within ${lockTimeoutMs} ms in ${attempt} attempts${holders ? `: ${holders}` : ''}. ` +
              `Nothing was switched and ${n.label} is unchanged and writable; run \`invoices partition --convert\` again to retry (e.g. with a larger --lock-timeout), or \`--cancel\` it`,
            { cause: err },
          );
        }
        const wait = backoff(attempt);
        log.info(
          `switch: ${err instanceof RetrySwitch ? err.message : `lock not available within ${lockTimeoutMs} ms`} (attempt ${attempt}), retrying in ${wait} ms`,
        );
        await sleep(wait, r.opts.signal);
        await catchUp(client, r.s, { threshold: r.threshold, signal: r.opts.signal });
      }
    }
    log.info(`switched: ${n.label} is now partitioned; the exclusive lock was held ${result.lockMs?.toFixed(0)} ms`);
    if (r.opts.signal?.aborted) throw afterSwitch(n);
  },
};

async function switchOnce(r: Run, steps: IndexStep[]): Promise<{ lockMs: number; failed: Array<{ name: string; warning: string }> }> {
  const { client, s, n, q } = r;
  const before = await planSwitch(client, s, steps);
  const locks = lockSql(before.relations);
  let lockedAt = 0;
  // With the server's own synchronous_commit, not the session's `off`: a switch lost in a crash takes
  // every later commit with it (the WAL is sequential) and leaves the conversion where it was, resumable.
  const failed = await transaction(
    client,
    async () => {
      await client.query(locks.own);
      await client.query(locks.shared);
      lockedAt = performance.now();
      // Nothing writes invoices now: the log is complete. Replay the rest and compare those rows.
      const replayed = await replayBatch(client, s, null);
      await checkRows(client, s, replayed.ids);
      // The catalog cannot change under the lock: plan again, and make sure we locked all we touch.
      const facts = await inspectTable(client, n, q);
      const plan = await planSwitch(client, { ...s, facts }, steps);
      const missing = plan.relations.shared.filter((x) => !before.relations.shared.includes(x));
      if (missing.length) throw new RetrySwitch(`${missing.join(', ')} appeared since the plan`);
      const wanted = translateIndexes({ ...s, facts }).steps.filter((x) => !steps.some((y) => y.name === x.name));
      if (wanted.length) {
        throw new ConversionError(
          `${wanted.map((x) => x.description).join(', ')} appeared on ${n.label} during the conversion: run \`invoices partition --convert\` again to build ${wanted.length === 1 ? 'it' : 'them'} on the new table before the switch`,
        );
      }
      const skipped: Array<{ name: string; warning: string }> = [];
      for (const st of plan.statements) {
        if (!st.optional) {
          await client.query(st.sql);
          continue;
        }
        const err = await optionalStatement(client, st.sql);
        if (err) skipped.push({ name: st.optional.split(' ')[1] ?? '', warning: `${st.optional} (${err.message})` });
      }
      return skipped;
    },
    { settings: { lock_timeout: String(Math.round(r.lockTimeoutMs)), synchronous_commit: r.serverSynchronousCommit } },
  );
  return { lockMs: performance.now() - lockedAt, failed };
}

/**
 * Runs a statement the switch can do without (recreating a trigger or a view) inside a savepoint:
 * its error is returned and its effects undone, except for a lock failure, which retries the switch.
 */
async function optionalStatement(client: Client, sql: string): Promise<Error | null> {
  try {
    await savepoint(client, () => client.query(sql), isLockFailure);
    return null;
  } catch (err) {
    if (isLockFailure(err)) throw err;
    return err as Error;
  }
}
