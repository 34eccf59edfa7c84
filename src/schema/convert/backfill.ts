// Phase 2, backfill: committed batches in invoice_id order; each batch writes its rows, their
// invoice_ids rows and the new cursor in one transaction, so that an interruption (Ctrl-C,
// SIGKILL, a crash) resumes exactly where the last commit left it.
import { transaction } from '../../db/transaction.js';
import type { Phase } from './context.js';
import { interrupted } from './retry.js';
import { backfillSql, stateSql } from './statements.js';

export const backfill: Phase = {
  name: 'backfill',
  async run(r) {
    const { client, n, log, result } = r;
    const state = r.state;
    if (state?.phase !== 'backfill') return;
    const total = Number(state.rows_total);
    let done = Number(state.rows_copied);
    let last = state.last_copied_id;
    const copyStarted = performance.now();
    r.progress({ phase: 'backfill', done, total });
    r.where = `after copying ${done.toLocaleString('en-US')} rows`;
    for (;;) {
      if (r.opts.signal?.aborted) throw interrupted(`after copying ${done.toLocaleString('en-US')} rows`, n);
      const copied = await transaction(client, async () => {
        const {
          rows: [b],
        } = await client.query<{ n: string; last: string | null }>(
          backfillSql(r.s, last === null),
          last === null ? [r.batchSize] : [r.batchSize, last],
        );
        const count = Number(b.n);
        if (count > 0) {
          await client.query(stateSql(n), [b.last, count]);
          last = b.last;
        } else {
          await client.query(stateSql(n, 'indexes'));
        }
        return count;
      });
      if (copied === 0) break;
      done += copied;
      r.where = `after copying ${done.toLocaleString('en-US')} rows`;
      result.copiedRows += copied;
      r.progress({ phase: 'backfill', done, total: Math.max(total, done) });
    }
    const secs = (performance.now() - copyStarted) / 1000;
    result.rowsPerSecond = secs > 0 ? result.copiedRows / secs : 0;
    log.info(
      `copied ${result.copiedRows.toLocaleString('en-US')} rows in ${secs.toFixed(1)} s (${Math.round(result.rowsPerSecond).toLocaleString('en-US')} rows/s)`,
    );
    r.state = { ...state, phase: 'indexes' };
  },
};
