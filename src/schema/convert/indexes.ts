// Phase 3, indexes: the new table's primary key, the old table's indexes translated and
// invoice_ids' key, built once, in bulk, on the filled partitions; then VACUUM ANALYZE, so that
// plans and index-only lookups are right from the switch on. A resumed run checks again, in case
// an index was added to the table meanwhile.
import type { Client } from '../../db/client.js';
import { withSettings } from '../../db/transaction.js';
import { relationsPresent } from '../../db/catalog/table-facts.js';
import type { Phase, Run } from './context.js';
import { interrupted } from './retry.js';
import { stateSql, vacuumSql, type IndexStep } from './statements.js';

export const indexes: Phase = {
  name: 'indexes',
  async run(r) {
    const { client, n } = r;
    r.where = 'while building indexes (the rows are all copied)';
    const state = r.state;
    if (state?.phase !== 'indexes' && state?.phase !== 'sync') return;
    const missing = await missingIndexes(client, r.plan.indexes, r);
    await withMaintenanceMemory(client, missing.length > 0, async () => {
      await build(r, missing);
      if (state.phase === 'indexes' || missing.length) {
        // Statistics and the visibility map before any traffic: plans and index-only lookups are right from the switch on.
        r.progress({ phase: 'indexes', done: missing.length, total: missing.length, detail: 'VACUUM ANALYZE' });
        await client.query(vacuumSql(n));
      }
    });
    if (state.phase === 'indexes') await client.query(stateSql(n, 'sync'));
    r.state = { ...state, phase: 'sync' };
  },
};

async function missingIndexes(client: Client, steps: IndexStep[], r: Run): Promise<IndexStep[]> {
  const absent = await relationsPresent(
    client,
    steps.map((x) => r.q(x.name)),
    false,
  );
  return steps.filter((x) => absent.includes(r.q(x.name)));
}

/** Builds the planned indexes that do not exist yet. */
async function build(r: Run, missing: IndexStep[]): Promise<void> {
  for (const [i, step] of missing.entries()) {
    if (r.opts.signal?.aborted) throw interrupted('while building indexes (the rows are all copied)', r.n);
    r.progress({ phase: 'indexes', done: i, total: missing.length, detail: `building ${step.name}` });
    const t = performance.now();
    await r.client.query(step.sql);
    r.log.info(`built ${step.description} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  if (missing.length) r.progress({ phase: 'indexes', done: missing.length, total: missing.length });
}

/** Runs fn with maintenance_work_mem at least 256MB when indexes are to be built (the builds and the VACUUM use it). */
async function withMaintenanceMemory(client: Client, building: boolean, fn: () => Promise<void>): Promise<void> {
  if (!building) return fn();
  const {
    rows: [m],
  } = await client.query<{ bytes: string }>("SELECT pg_size_bytes(current_setting('maintenance_work_mem')) AS bytes");
  return Number(m.bytes) < 256 * 1024 * 1024 ? withSettings(client, { maintenance_work_mem: '256MB' }, fn) : fn();
}
