// Phase 1, prepare: one short transaction under lock_timeout creates the partitioned table, its
// partitions, invoice_ids (unkeyed), the log and its triggers and the state row; a resumed run
// skips it. Then the run adopts the plan and reads the state every later phase moves on.
import { readState } from './inspect.js';
import type { Phase } from './context.js';
import { planWith } from './plan.js';
import { interrupted, withLockRetry } from './retry.js';
import { ConversionError } from './types.js';

export const prepare: Phase = {
  name: 'prepare',
  async run(r) {
    const { client, n, log, plan } = r;
    if (plan.status === 'resume') {
      r.result.resumed = true;
      log.info(
        `resuming the conversion: phase ${plan.phase}, ${plan.copiedRows.toLocaleString('en-US')} of ~${plan.rows.toLocaleString('en-US')} rows copied`,
      );
    } else {
      if (r.opts.signal?.aborted) throw interrupted(r.where, n);
      r.progress({ phase: 'prepare', done: 0, total: plan.prepare.length });
      await withLockRetry(
        client,
        { lockTimeoutMs: r.lockTimeoutMs, lockRetries: r.lockRetries, signal: r.opts.signal, what: 'prepare', log },
        async () => {
          for (const sql of plan.prepare) await client.query(sql);
        },
      );
      r.where = 'after creating the new table, before copying rows';
      log.info(
        `created ${n.newTable} with ${plan.partitions.length} monthly partitions and DEFAULT, ${n.locator}, and ${n.log} fed by trigger ${n.capture} on ${n.label}`,
      );
      if (n.tables.mapped) {
        // Said plainly for an adopted table: what this adds beside it and on it.
        log.info(
          `added to schema ${n.tables.invoices.schema}: ${[n.newTable, ...plan.partitions, n.defaultPartition, n.locator, n.log, n.state].join(', ')}; functions ${n.capture}(), ${n.guard}(); triggers ${n.capture} and ${n.guard} on ${n.label}` +
            (r.s.facts.columns.some((c) => c.name === 'created_xid') ? '' : `; column created_xid on the new table`),
        );
      }
      r.plan = await planWith(client, n, r.q, { ...r.opts, batchSize: r.batchSize });
      if (r.plan.sql) r.s = r.plan.sql;
    }
    r.result.carried = r.plan.carried;
    r.result.warnings = r.plan.warnings;
    for (const w of r.plan.warnings) log.warn(w);
    r.state = await readState(client, n);
    if (!r.state) throw new ConversionError('the conversion state disappeared: was it cancelled by another session?');
  },
};
