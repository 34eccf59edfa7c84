// Reads on hot standbys: the one place that decides which server answers a read. `get`,
// `group --engine postgres` and `export` read through connectReader; everything that writes
// (seed, partition, index, the totals refresh, risk) connects to the primary with connect().
// A replica answers when it is reachable, still in recovery (a promoted one is another
// primary, not ours to read), and behind by no more than the policy's lag; otherwise the
// primary answers with a one-line warning, or with `replicaOnly` the read fails.
import type { ConnectionSettings, ReadPolicy, ReplicaTarget } from '../config.js';
import { DEFAULT_MAX_REPLICA_LAG, describeSettings } from '../config.js';
import { DatabaseError } from '../errors.js';
import { silentLogger } from '../log.js';
import { connect, connectionSettings, translatePgError, type Client, type DbContext } from './client.js';

/** How far a standby is behind, measured on it (and against the primary when one is at hand). */
export interface ReplicaLag {
  /**
   * Seconds since the last transaction it replayed committed on the primary; 0 when it has
   * replayed all it received (an idle primary sends nothing new); null when it has replayed no
   * transaction since it started.
   */
  seconds: number | null;
  /** pg_last_wal_replay_lsn(): the WAL position its snapshots see. */
  replayLsn: string | null;
  /** pg_last_wal_receive_lsn(): what it has received, replayed or not. */
  receiveLsn: string | null;
  /** Replay paused (pg_wal_replay_pause()). */
  paused: boolean;
  /** Bytes of WAL behind the primary's pg_current_wal_lsn(), when measured (replicaStatus). */
  bytesBehind?: string;
}

/** The server that answers a read. */
export interface ReadRoute {
  on: 'replica' | 'primary';
  /** The context to open more connections on the same server (psql streams, a cancel): its target is that server. */
  ctx: DbContext;
  /** That server, without password. */
  name: string;
  lag?: ReplicaLag;
  /** Why the primary answers, when replicas are configured. */
  reason?: string;
}

/** An open connection for reads and the route that chose it; the caller ends the client. */
export interface Reader extends ReadRoute {
  client: Client;
}

const LAG_SQL = `SELECT pg_is_in_recovery() AS standby,
  pg_last_wal_replay_lsn()::text AS replay, pg_last_wal_receive_lsn()::text AS receive,
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END AS paused,
  CASE WHEN NOT pg_is_in_recovery() THEN NULL
       WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() AND NOT pg_is_wal_replay_paused() THEN 0
       ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS lag`;

/** The replicas' policy: the configured one, else the defaults. */
export function readPolicy(ctx: DbContext): ReadPolicy {
  return ctx.config.reads ?? { maxLagSeconds: DEFAULT_MAX_REPLICA_LAG, replicaOnly: false };
}

/** How long a replica may take to accept a connection before the primary answers instead (a host that drops packets). */
export const REPLICA_CONNECT_TIMEOUT_MS = 5000;

/** The context of a replica: the same configuration with that server as its target. */
export function replicaContext(ctx: DbContext, replica: ReplicaTarget): DbContext {
  const connection = { connectTimeoutMs: REPLICA_CONNECT_TIMEOUT_MS, ...replica.connection };
  return { ...ctx, config: { ...ctx.config, target: { kind: 'server', source: '--database-url', connection } } };
}

/** The lag of the server `client` is on; `standby` false on a primary. */
export async function measureLag(client: Client): Promise<{ standby: boolean; lag: ReplicaLag }> {
  const {
    rows: [r],
  } = await client.query<{ standby: boolean; replay: string | null; receive: string | null; paused: boolean; lag: number | null }>(LAG_SQL);
  return {
    standby: r.standby,
    lag: { seconds: r.lag === null ? null : Math.max(0, r.lag), replayLsn: r.replay, receiveLsn: r.receive, paused: r.paused },
  };
}

/** A replica's lag for messages: "0.0 s behind, replayed to 0/3000060". */
export function describeLag(lag: ReplicaLag): string {
  const s = lag.seconds === null ? 'lag unknown (no transaction replayed since it started)' : `${lag.seconds.toFixed(1)} s behind`;
  const bytes = lag.bytesBehind === undefined ? '' : `, ${lag.bytesBehind} bytes of WAL behind the primary`;
  return `${s}${bytes}, replayed to ${lag.replayLsn ?? '?'}${lag.paused ? ', replay paused' : ''}`;
}

/**
 * Opens a connection on `replica` and checks it may answer reads: still in recovery and no
 * further behind than `maxLagSeconds`. Returns the client, or why not (the client is then ended).
 */
export async function probeReplica(
  ctx: DbContext,
  replica: ReplicaTarget,
  maxLagSeconds: number,
): Promise<{ client: Client; lag: ReplicaLag } | { problem: string }> {
  let client: Client;
  try {
    client = await connect(replicaContext(ctx, replica));
  } catch (err) {
    return { problem: (err as Error).message };
  }
  try {
    const { standby, lag } = await measureLag(client);
    let problem: string | undefined;
    if (!standby) problem = 'it is not in recovery (promoted?): reads go to the configured primary only';
    else if (lag.seconds !== null && lag.seconds > maxLagSeconds)
      problem = `it is ${lag.seconds.toFixed(1)} s behind (more than --max-replica-lag ${maxLagSeconds} s)`;
    if (!problem) return { client, lag };
    await client.end().catch(() => {});
    return { problem };
  } catch (err) {
    await client.end().catch(() => {});
    return { problem: translatePgError(err, replica.connection).message };
  }
}

/**
 * A connection for reads: on the first configured replica that is usable, else on the primary
 * (a warning names each replica passed over and why), or with the policy's replicaOnly a
 * DatabaseError. Without replicas, the primary, silently. Says on debug which server answers.
 */
export async function connectReader(ctx: DbContext, what = 'reads'): Promise<Reader> {
  const log = ctx.log ?? silentLogger;
  const replicas = ctx.config.replicas ?? [];
  const policy = readPolicy(ctx);
  const problems: string[] = [];
  for (const replica of replicas) {
    const name = describeSettings(replica.connection);
    const probe = await probeReplica(ctx, replica, policy.maxLagSeconds);
    if ('client' in probe) {
      log.debug(`${what}: replica ${name} (${describeLag(probe.lag)})`);
      return { on: 'replica', ctx: replicaContext(ctx, replica), name, lag: probe.lag, client: probe.client };
    }
    problems.push(`replica ${name}: ${probe.problem}`);
  }
  const reason = problems.join('; ');
  if (problems.length && policy.replicaOnly) throw new DatabaseError(`no replica can answer (--replica-only): ${reason}`);
  const client = await connect(ctx);
  const name = primaryName(ctx);
  if (problems.length) log.warn(`${what} from the primary: ${reason}`);
  else log.debug(`${what}: the primary${replicas.length ? '' : ' (no replica configured)'}`);
  return { on: 'primary', ctx, name, client, ...(problems.length ? { reason } : {}) };
}

/**
 * For a pool of read connections (`invoices serve`): the server reads go to now, chosen as
 * connectReader chooses (its probe connection is ended), with the settings to open the pool on.
 * Call it again to re-check (a replica that fell behind, or came back); look ups on a pooled
 * client of a replica go through RoutedLookup (src/lookup/routed.ts) so a miss is asked of the
 * primary.
 */
export async function readServer(ctx: DbContext, what = 'reads'): Promise<ReadRoute & { settings: ConnectionSettings }> {
  const { client, ...route } = await connectReader(ctx, what);
  await client.end().catch(() => {});
  return { ...route, settings: await connectionSettings(route.ctx) };
}

/** Runs fn on a reader (connectReader) and always ends its connection. */
export async function withReader<T>(ctx: DbContext, fn: (client: Client, route: ReadRoute) => Promise<T>, what?: string): Promise<T> {
  const reader = await connectReader(ctx, what);
  try {
    return await fn(reader.client, reader);
  } catch (err) {
    throw translatePgError(err, undefined);
  } finally {
    await reader.client.end().catch(() => {});
  }
}

/** The primary without password, for messages. */
export function primaryName(ctx: DbContext): string {
  const t = ctx.config.target;
  return t.kind === 'server' ? describeSettings(t.connection) : `the embedded server (${t.home})`;
}

/** A WAL position "16/B374D848" as a number, to compare two of them. */
export function lsnValue(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!m) throw new Error(`not a WAL position: "${lsn}"`);
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

/** What `db replicas` (and serve's metrics) report of each configured replica. */
export interface ReplicaReport {
  name: string;
  /** usable: it would answer reads now; else why not. */
  state: 'usable' | 'unusable';
  problem?: string;
  lag?: ReplicaLag;
}

/** Every configured replica, reachable or not, with its lag in seconds and in bytes behind the primary. */
export async function replicaStatus(ctx: DbContext): Promise<ReplicaReport[]> {
  const replicas = ctx.config.replicas ?? [];
  if (!replicas.length) return [];
  const primaryLsn = await primaryWalLsn(ctx).catch(() => undefined);
  const policy = readPolicy(ctx);
  const out: ReplicaReport[] = [];
  for (const replica of replicas) {
    const name = describeSettings(replica.connection);
    const probe = await probeReplica(ctx, replica, Number.POSITIVE_INFINITY);
    if (!('client' in probe)) {
      out.push({ name, state: 'unusable', problem: probe.problem });
      continue;
    }
    await probe.client.end().catch(() => {});
    const lag = probe.lag;
    if (primaryLsn && lag.replayLsn)
      lag.bytesBehind = String(lsnValue(primaryLsn) > lsnValue(lag.replayLsn) ? lsnValue(primaryLsn) - lsnValue(lag.replayLsn) : 0n);
    const tooFar = lag.seconds !== null && lag.seconds > policy.maxLagSeconds;
    out.push({
      name,
      state: tooFar ? 'unusable' : 'usable',
      lag,
      ...(tooFar ? { problem: `more than --max-replica-lag ${policy.maxLagSeconds} s behind` } : {}),
    });
  }
  return out;
}

async function primaryWalLsn(ctx: DbContext): Promise<string> {
  const client = await connect(ctx);
  try {
    return (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn;
  } finally {
    await client.end().catch(() => {});
  }
}
