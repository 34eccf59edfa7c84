// One bulk writer per source table at a time: `seed` and `partition --convert` take a session
// advisory lock keyed on the table (src/table/describe.ts's sourceKey) before they look at
// what the table holds. A second run waits for it, saying once who holds it, or with
// --no-wait refuses. The lock goes with the session: a killed run's server process releases
// it when it notices its client is gone (client_connection_check_interval, set by the caller).
import { InterruptedError, InvoicesError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Client } from './client.js';

/** First key of the two-key advisory lock (the risk scorer uses 7115 for its models). */
export const SOURCE_LOCK_CLASS = 7116;

/** Another run holds the table: exit 1, nothing was changed. */
export class SourceBusyError extends InvoicesError {}

export interface LockHolder {
  pid: number;
  application: string | null;
  address: string | null;
  since: string;
  seconds: number;
  query: string | null;
}

export interface SourceLockOptions {
  /** The source key (sourceKey(tables)); hashed into the lock's second key. */
  key: string;
  /** The table in messages. */
  label: string;
  /** This command, for messages: "seed", "partition --convert". */
  what: string;
  /** Wait for the holder (default) or refuse at once. */
  wait: boolean;
  log?: Logger;
  /** Aborting it stops the wait. */
  signal?: AbortSignal;
  /** What to do instead, in the refusal (default: run again later, or without --no-wait). */
  advice?: string;
}

/** How often a waiting run tries the lock again. */
const POLL_MS = 200;

/**
 * Takes the source's lock on this session; returns the function that releases it. A waiting run
 * says once who holds it, then polls (waitForAdvisoryLock).
 */
export async function lockSource(client: Client, opts: SourceLockOptions): Promise<() => Promise<void>> {
  const args: [number, string] = [SOURCE_LOCK_CLASS, `invoices:write:${opts.key}`];
  const release = async () => {
    await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', args).catch(() => {});
  };
  let holder: LockHolder | undefined;
  for (;;) {
    if (opts.signal?.aborted) throw new InterruptedError(`interrupted while waiting for the lock: this ${opts.what} changed nothing`);
    if (await tryAdvisoryLock(client, args)) return release;
    holder = await lockHolder(client, opts.key);
    if (holder) break; // else released in between: try again
  }
  const waiting = describeHolder(holder);
  if (!opts.wait) {
    throw new SourceBusyError(
      `${waiting} is writing ${opts.label}: this ${opts.what} changed nothing; ${opts.advice ?? 'run it again once that one has finished, or without --no-wait to wait for it'}`,
    );
  }
  opts.log?.info(`waiting for ${waiting}, which is writing ${opts.label} (Ctrl-C to stop waiting; --no-wait refuses instead)`);
  await waitForAdvisoryLock(client, args, opts.signal, `interrupted while waiting for ${waiting}: this ${opts.what} changed nothing`);
  return release;
}

const tryAdvisoryLock = async (client: Client, [cls, key]: [number, string]) =>
  (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [cls, key])).rows[0].ok;

/**
 * Takes a session advisory lock (class, hashtext(key)), trying again every 200 ms rather than
 * blocking in pg_advisory_lock: between tries it holds no snapshot, so it holds back neither
 * VACUUM nor a concurrent index build, and `signal` stops the wait at once (InterruptedError
 * with `interrupted`).
 */
export async function waitForAdvisoryLock(
  client: Client,
  lock: [number, string],
  signal: AbortSignal | undefined,
  interrupted: string,
): Promise<void> {
  for (;;) {
    if (signal?.aborted) throw new InterruptedError(interrupted);
    if (await tryAdvisoryLock(client, lock)) return;
    await sleep(POLL_MS, signal);
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** The session holding the source's lock (advisory locks are per database: in this one), with its program, address and start. */
export async function lockHolder(client: Client, key: string): Promise<LockHolder | undefined> {
  const { rows } = await client.query<LockHolder>(
    `SELECT a.pid, nullif(a.application_name, '') AS application, a.client_addr::text AS address,
            a.backend_start AS since, extract(epoch FROM now() - a.backend_start)::int AS seconds,
            left(regexp_replace(a.query, '\\s+', ' ', 'g'), 60) AS query
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid
        AND l.objid = hashtext($2)::oid AND l.objsubid = 2 AND l.pid <> pg_backend_pid()
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [SOURCE_LOCK_CLASS, `invoices:write:${key}`],
  );
  return rows[0];
}

function describeHolder(h: LockHolder): string {
  const program = h.application?.startsWith('invoices')
    ? `\`${h.application}\``
    : `a session${h.application ? ` of ${h.application}` : ''}`;
  const from = h.address ? `from ${h.address}` : 'over a local socket';
  return `${program} (server process ${h.pid}, ${from}, connected since ${h.since}, ${h.seconds} s ago)`;
}
