// One scorer per source table and model at a time: a session advisory lock keyed on both. A
// second scorer fails at once naming the holder, or with --wait polls for it (the signal stops
// the wait).
import type { Client } from '../db/client.js';
import { waitForAdvisoryLock } from '../db/source-lock.js';
import { DatabaseError } from '../errors.js';
import type { SourceTable } from '../table/describe.js';
import type { Logger } from '../log.js';

/** First key of the advisory lock that lets one scorer per source and model run (second key: hashtext of both). */
const LOCK_CLASS = 7115;

/** The text the lock of a source and model is keyed on (hashtext of it: the second key). */
function lockKey(src: SourceTable, model: string): string {
  return `invoices:risk:${model}:${src.key}`;
}

/** Takes the session lock of this source and model; without `wait`, fails naming the backend that holds it. */
export async function lockModel(
  client: Client,
  src: SourceTable,
  { modelVersion: model, wait, signal, log }: { modelVersion: string; wait?: boolean; signal?: AbortSignal; log: Logger },
): Promise<void> {
  const lock: [number, string] = [LOCK_CLASS, lockKey(src, model)];
  const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', lock);
  if (rows[0].ok) return;
  const { rows: holder } = await client.query<{ pid: number; since: string; addr: string | null }>(
    `SELECT a.pid, a.backend_start AS since, a.client_addr::text AS addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = $1::int::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2`,
    lock,
  );
  const who = holder[0]
    ? ` (backend pid ${holder[0].pid}${holder[0].addr ? ` from ${holder[0].addr}` : ''}, connected since ${holder[0].since})`
    : '';
  const other = `another \`invoices risk\` is scoring model ${model} of ${src.name}${who}`;
  if (!wait) throw new ScorerBusyError(`${other}: this run did nothing; let it finish, or pass --wait to queue behind it`);
  log.info(`${other}: waiting for it (Ctrl-C to stop waiting)`);
  await waitForAdvisoryLock(
    client,
    lock,
    signal,
    `interrupted while waiting for the other \`invoices risk\` of model ${model}: nothing was scored`,
  );
}

/** Another scorer holds the model's lock. */
export class ScorerBusyError extends DatabaseError {}

/** Releases the lock of this source and model (ending the session does too). */
export async function unlockModel(client: Client, src: SourceTable, model: string): Promise<void> {
  await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_CLASS, lockKey(src, model)]).catch(() => {});
}
