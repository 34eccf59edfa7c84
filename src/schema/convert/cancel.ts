// `invoices partition --convert --cancel`: remove everything an unfinished conversion created
// (sql/convert-cancel.sql, the trigger on the table first) in one transaction under
// lock_timeout; the table itself is untouched. Refused once the switch is done, and while
// another run writes the table.
import type { Client } from '../../db/client.js';
import { lockSource } from '../../db/source-lock.js';
import { UsageError } from '../../errors.js';
import { silentLogger } from '../../log.js';
import { DEFAULT_TABLES } from '../../tables.js';
import { detectLayout } from '../apply.js';
import { relationExists } from '../../db/catalog/index.js';
import { readState } from './inspect.js';
import { withNames, type Names } from './names.js';
import { withLockRetry } from './retry.js';
import { cancelStatements } from './statements.js';
import { CONVERT_DEFAULTS, type ConvertOptions } from './types.js';

export type CancelOptions = Pick<ConvertOptions, 'lockTimeoutMs' | 'lockRetries' | 'signal' | 'log' | 'tables'> & { dryRun?: boolean };

/** Removes everything an unfinished conversion created (the trigger on invoices first); invoices itself is untouched. */
export async function cancelConversion(client: Client, opts: CancelOptions): Promise<{ cancelled: boolean; statements: string[] }> {
  return withNames(client, opts.tables ?? DEFAULT_TABLES, (n) => cancelWith(client, n, opts));
}

async function cancelWith(client: Client, n: Names, opts: CancelOptions): Promise<{ cancelled: boolean; statements: string[] }> {
  const log = opts.log ?? silentLogger;
  const state = await readState(client, n);
  const { layout } = await detectLayout(client, n.tables);
  // No conversion in progress: none started, or one that finished (the table is partitioned and its state is gone).
  if (!state && (layout === 'partitioned' || !(await relationExists(client, n.newTable)))) return { cancelled: false, statements: [] };
  if (state?.phase === 'switched' || layout === 'partitioned') {
    throw new UsageError(
      `the switch is already done: ${n.label} is partitioned (the old table is ${n.oldTable}); run \`invoices partition --convert\` to finish`,
    );
  }
  const statements = cancelStatements(n);
  if (opts.dryRun) return { cancelled: false, statements };
  // Never while a conversion (or a seed) is writing the table: name it and change nothing.
  const unlock = await lockSource(client, {
    key: n.lockKey,
    label: n.label,
    what: 'cancel',
    wait: false,
    log,
    signal: opts.signal,
    advice: 'stop that run first (Ctrl-C keeps what it copied), then cancel',
  });
  try {
    await withLockRetry(
      client,
      {
        lockTimeoutMs: opts.lockTimeoutMs ?? CONVERT_DEFAULTS.lockTimeoutMs,
        lockRetries: opts.lockRetries ?? CONVERT_DEFAULTS.lockRetries,
        signal: opts.signal,
        what: 'cancel',
        log,
      },
      async () => {
        for (const sql of statements) await client.query(sql);
      },
    );
  } finally {
    await unlock();
  }
  return { cancelled: true, statements };
}
