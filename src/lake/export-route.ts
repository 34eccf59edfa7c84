// Which server `export` reads from. With replicas configured, what may write (the change-log
// and created_xid setup of ensureTracked) and the customers stamp run on the primary first;
// then a standby answers once it has replayed at least the primary's WAL position at that
// moment. Its snapshot then holds everything any earlier export of this lake saw (the lake's
// lock keeps exports in turn), so the lake never goes back in time, and its watermark,
// pg_snapshot_xmin of the standby's snapshot, is exact there: every transaction below it had
// ended when the standby replayed that far. A standby that cannot catch up within
// --max-replica-lag seconds is passed over for the primary, with a warning.
import { connect, translatePgError, withClient, type Client, type DbContext } from '../db/client.js';
import { connectReader, lsnValue, primaryName, readPolicy, type Reader } from '../db/replica.js';
import { DatabaseError, InterruptedError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { customersStamp } from '../table/customers.js';
import { describeTable, type SourceTable } from '../table/describe.js';
import { ensureTracked } from '../table/tracking.js';

export interface ExportRoute extends Reader {
  /** The table as described on the primary, tracking installed (read again on a replica). */
  source?: SourceTable;
  /** customersStamp taken on the primary before the reader's snapshot (statistics counters are the primary's own). */
  customersAt?: string;
}

/** How often the replay position is read while waiting for a standby to catch up. */
const POLL_MS = 25;

/** The connection export reads from; the caller ends route.client. */
export async function exportRoute(ctx: DbContext, opts: { log?: Logger; signal?: AbortSignal } = {}): Promise<ExportRoute> {
  const log = opts.log ?? ctx.log ?? silentLogger;
  if (!ctx.config.replicas?.length) return { on: 'primary', ctx, name: primaryName(ctx), client: await connect(ctx) };
  const logged = { ...ctx, log };
  const setup = await withClient(logged, async (client) => {
    const source = await ensureTracked(client, await describeTable(client, ctx.config.tables), log);
    const customersAt = await customersStamp(client, ctx.config.tables);
    const {
      rows: [r],
    } = await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return { source, customersAt, lsn: r.lsn };
  });
  const reader = await connectReader(logged, 'export');
  if (reader.on === 'primary') return { ...reader, ...setup };
  const policy = readPolicy(ctx);
  const started = performance.now();
  try {
    const caught = await waitForReplay(reader.client, setup.lsn, policy.maxLagSeconds * 1000, opts.signal);
    if (caught) {
      log.debug(`export: the replica replayed the primary's ${setup.lsn} (${(performance.now() - started).toFixed(0)} ms)`);
      return { ...reader, customersAt: setup.customersAt };
    }
  } catch (err) {
    await reader.client.end().catch(() => {});
    throw translatePgError(err, undefined);
  }
  await reader.client.end().catch(() => {});
  const reason = `replica ${reader.name} did not replay the primary's WAL position ${setup.lsn} within --max-replica-lag ${policy.maxLagSeconds} s`;
  if (policy.replicaOnly) throw new DatabaseError(`no replica can answer (--replica-only): ${reason}`);
  log.warn(`export from the primary: ${reason}`);
  return { on: 'primary', ctx, name: primaryName(ctx), client: await connect(ctx), reason, ...setup };
}

/** Waits until the standby's replay position reaches `lsn`; false after `timeoutMs`. */
async function waitForReplay(client: Client, lsn: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  const target = lsnValue(lsn);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (signal?.aborted) throw new InterruptedError('export interrupted while waiting for the replica: the lake is unchanged');
    const {
      rows: [r],
    } = await client.query<{ lsn: string | null }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
    if (r.lsn && lsnValue(r.lsn) >= target) return true;
    if (performance.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Runs fn on the route's connection, then ends it. */
export async function usingRoute<T>(route: ExportRoute, fn: (client: Client) => Promise<T>): Promise<T> {
  try {
    return await fn(route.client);
  } catch (err) {
    throw translatePgError(err, undefined);
  } finally {
    await route.client.end().catch(() => {});
  }
}
