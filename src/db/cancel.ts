// Stopping the statement a connection is running, on the server, when an AbortSignal fires.
// node-postgres has no cancel request: a second short connection calls pg_cancel_backend on
// the first one's server process, which makes that statement fail with 57014 at once (an
// index build, a COPY, a lock wait, ANALYZE), instead of the client waiting for it to end.
// A cancel that arrives while the connection is idle is ignored by the server.
import { InterruptedError } from '../errors.js';
import { connect, type Client, type DbContext } from './client.js';

export interface Canceller {
  /** Resolves once the cancel request sent on abort has been answered (at once when none was sent). */
  settled(): Promise<void>;
  /** Stops watching the signal. */
  dispose(): void;
}

/** The server gave up waiting for the cancel connection after this long: the connection is ended instead. */
const CANCEL_DEADLINE_MS = 1000;

/**
 * Watches `signal`: when it aborts, cancels whatever `client` is running on the server, from a
 * second connection; if that cannot be done within a second, ends `client`'s connection (the
 * server then rolls back its transaction). Call dispose() when the client is done.
 */
export function cancelOnAbort(ctx: DbContext, client: Client, signal: AbortSignal | undefined): Canceller {
  let pending: Promise<void> = Promise.resolve();
  if (!signal) return { settled: () => pending, dispose() {} };
  // Set from the server's BackendKeyData at connect; @types/pg does not declare it.
  const pid = (client as unknown as { processID: number }).processID;
  const onAbort = () => {
    ctx.log?.debug(`cancelling the statement of server process ${pid}`);
    const cancel = (async () => {
      const other = await connect({ config: ctx.config, log: ctx.log });
      try {
        await other.query('SELECT pg_cancel_backend($1)', [pid]);
      } finally {
        await other.end().catch(() => {});
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), CANCEL_DEADLINE_MS);
    });
    pending = Promise.race([
      cancel.then(
        () => 'done' as const,
        () => 'late' as const,
      ),
      deadline,
    ]).then(async (outcome) => {
      clearTimeout(timer);
      if (outcome === 'late') {
        ctx.log?.debug(`could not cancel server process ${pid} in time: closing its connection`);
        await client.end().catch(() => {});
      }
    });
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return {
    settled: () => pending,
    dispose: () => signal.removeEventListener('abort', onAbort),
  };
}

/** The statement was cancelled (pg_cancel_backend, or statement_timeout: tell them apart by the signal). */
export function isQueryCanceled(err: unknown): boolean {
  return (err as { code?: string })?.code === '57014';
}

/**
 * After an error with `signal` aborted: the error was the interruption (a cancelled statement,
 * an aborted COPY, ...), so it becomes an InterruptedError with `message`; otherwise it is
 * returned as it is.
 */
export function asInterrupted(err: unknown, signal: AbortSignal | undefined, message: string): unknown {
  if (!signal?.aborted) return err;
  if (err instanceof InterruptedError && err.message !== 'interrupted') return err;
  return new InterruptedError(message, { cause: err });
}
