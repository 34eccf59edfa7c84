// Waiting for locks without blocking writers: short lock_timeout transactions retried with
// backoff, stopped by the signal; and the messages an interruption leaves.
import type { Client } from '../../db/client.js';
import { transaction } from '../../db/transaction.js';
import { InterruptedError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Names } from './names.js';

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/** A lock timeout or a deadlock: worth another attempt. */
export const isLockFailure = (err: unknown) => ['55P03', '40P01'].includes((err as { code?: string })?.code ?? '');

export function backoff(attempt: number): number {
  return Math.min(5000, 200 * 2 ** (attempt - 1)) + Math.floor(Math.random() * 100);
}

export interface LockRetryOptions {
  lockTimeoutMs: number;
  lockRetries: number;
  signal?: AbortSignal;
  /** The step, in messages. */
  what: string;
  log: Logger;
}

/** Runs fn in a transaction with lock_timeout, retrying on lock timeouts and deadlocks with backoff. */
export async function withLockRetry<T>(client: Client, opts: LockRetryOptions, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction(client, fn, { settings: { lock_timeout: String(Math.round(opts.lockTimeoutMs)) } });
    } catch (err) {
      if (!isLockFailure(err) || attempt > opts.lockRetries || opts.signal?.aborted) throw err;
      const wait = backoff(attempt);
      opts.log.info(`${opts.what}: lock not available within ${opts.lockTimeoutMs} ms (attempt ${attempt}), retrying in ${wait} ms`);
      await sleep(wait, opts.signal);
    }
  }
}

export function afterSwitch(n: Names): InterruptedError {
  return new InterruptedError(
    `interrupted after the switch: ${n.label} is partitioned and complete; run \`invoices partition --convert\` again to drop the conversion's log and state`,
  );
}

export function interrupted(what: string, n: Names): InterruptedError {
  return new InterruptedError(
    `interrupted ${what}: run \`invoices partition --convert\` again to resume (meanwhile a trigger on ${n.label} logs every change for the new table; \`--convert --cancel\` removes everything the conversion created)`,
  );
}
