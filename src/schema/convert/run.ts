// The runner of `invoices partition --convert`: the session it needs (settings, the table's
// bulk-writer lock), the plan, then the phases of phases.ts in order; an interruption becomes a
// message that says where the last commit left the conversion.
import type { Client } from '../../db/client.js';
import { lockSource } from '../../db/source-lock.js';
import { withSettings, type Settings } from '../../db/transaction.js';
import { InterruptedError } from '../../errors.js';
import { silentLogger } from '../../log.js';
import { DEFAULT_TABLES } from '../../tables.js';
import { withNames, type Names, type Quote } from './names.js';
import type { Run } from './context.js';
import { PHASES } from './phases.js';
import { planWith } from './plan.js';
import { afterSwitch, interrupted } from './retry.js';
import type { Sql } from './statements.js';
import { CONVERT_DEFAULTS, type ConvertOptions, type ConvertResult } from './types.js';

/**
 * Converts a plain invoices table into the partitioned layout online, or resumes a conversion an
 * earlier run left; a no-op when invoices is already partitioned.
 */
export async function convertInvoices(client: Client, opts: ConvertOptions): Promise<ConvertResult> {
  return withNames(client, opts.tables ?? DEFAULT_TABLES, (n, q) => convertWith(client, n, q, opts));
}

async function convertWith(client: Client, n: Names, q: Quote, opts: ConvertOptions): Promise<ConvertResult> {
  const log = opts.log ?? silentLogger;
  const started = performance.now();
  const result: ConvertResult = {
    status: 'converted',
    resumed: false,
    rows: 0,
    copiedRows: 0,
    partitions: 0,
    seconds: 0,
    rowsPerSecond: 0,
    lockMs: null,
    lockAttempts: 0,
    defaultRows: 0,
    oldTable: n.oldTable,
    carried: [],
    warnings: [],
  };
  const {
    rows: [server],
  } = await client.query<{ sync: string }>("SELECT current_setting('synchronous_commit') AS sync");
  // A killed client's server process notices at the next check instead of holding the lock until its query ends.
  return trySettings(client, { client_connection_check_interval: '1s' }, () =>
    withSettings(client, { application_name: 'invoices partition --convert' }, async () => {
      const unlock = await lockSource(client, {
        key: n.lockKey,
        label: n.label,
        what: 'conversion',
        wait: opts.wait ?? true,
        log,
        signal: opts.signal,
      });
      try {
        // As a replica, foreign keys are not checked on every copied row (superusers only, as pg_restore does).
        return await trySettings(client, { session_replication_role: 'replica' }, (replica) =>
          // Index builds and the verification scan are long by nature; the switch is bounded by lock_timeout.
          // A batch and its cursor commit together: losing the last ones in a crash only means copying them again.
          withSettings(client, { statement_timeout: '0', synchronous_commit: 'off' }, () =>
            walk(
              {
                client,
                n,
                q,
                log,
                opts,
                result,
                lockTimeoutMs: opts.lockTimeoutMs ?? CONVERT_DEFAULTS.lockTimeoutMs,
                lockRetries: opts.lockRetries ?? CONVERT_DEFAULTS.lockRetries,
                batchSize: opts.batchSize ?? CONVERT_DEFAULTS.batchSize,
                threshold: opts.catchUpThreshold ?? 1000,
                serverSynchronousCommit: server.sync,
                progress: (p) => opts.onProgress?.(p),
              },
              replica,
              started,
            ),
          ),
        );
      } finally {
        await unlock();
      }
    }),
  );
}

/** Plans, then runs the phases from the first one left to do. */
async function walk(base: Omit<Run, 'plan' | 's' | 'state' | 'where'>, replica: boolean, started: number): Promise<ConvertResult> {
  const { client, n, log, result } = base;
  let r: Run | undefined;
  try {
    const plan = await planWith(client, n, base.q, { ...base.opts, batchSize: base.batchSize });
    if (plan.status === 'done') {
      log.info(`${n.label} is already partitioned: nothing to convert`);
      return { ...result, status: 'already-partitioned', oldTable: null, seconds: (performance.now() - started) / 1000 };
    }
    // plan.sql is null only when the switch is done: then only the finish is left, which does not read it.
    r = { ...base, plan, s: plan.sql as Sql, state: null, where: 'before anything was created' };
    let from = 0;
    if (plan.status === 'finish') {
      log.info('the switch was done by an earlier run: finishing');
      result.resumed = true;
      from = PHASES.findIndex((p) => p.name === 'finish');
    } else if (!replica) {
      log.warn('not a superuser: foreign keys are checked on every copied row (slower); superusers skip that, as pg_restore does');
    }
    for (const phase of PHASES.slice(from)) await phase.run(r);
    result.seconds = (performance.now() - started) / 1000;
    if (!result.rowsPerSecond && result.seconds > 0) result.rowsPerSecond = result.copiedRows / result.seconds;
    return result;
  } catch (err) {
    // Stopped by the signal: the statement in flight was cancelled and its transaction rolled back.
    const where = r?.where ?? 'before anything was created';
    if (base.opts.signal?.aborted && !(err instanceof InterruptedError))
      throw where === 'after the switch' ? afterSwitch(n) : interrupted(where, n);
    throw err;
  }
}

/** withSettings, or fn alone when the server refuses them (a setting only superusers may change, or one it lacks). */
async function trySettings<T>(client: Client, settings: Settings, fn: (applied: boolean) => Promise<T>): Promise<T> {
  let applied = false;
  try {
    return await withSettings(client, settings, () => {
      applied = true;
      return fn(true);
    });
  } catch (err) {
    if (applied) throw err;
    return fn(false);
  }
}
