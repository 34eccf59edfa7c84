// `invoices risk --follow`: scores new invoices as they commit. LISTEN invoices_risk wakes it
// at each inserting commit; a poll every few seconds covers a lost notification (or inserts
// that bypass the trigger), so a lost wake-up costs latency, never an invoice: the scorer
// always reads from its cursor. When committed invoices wait behind an older running
// transaction (the horizon holds them back), it looks again soon instead of sleeping. It
// reconnects after the server goes away, and stops between batches when signalled.
import type { Client } from '../db/client.js';
import { DatabaseError, InterruptedError } from '../errors.js';
import type { TableMap } from '../tables.js';
import { ScorerBusyError } from './model-lock.js';
import { addInto, emptySummary, MIN_CURSOR, Scorer, type RunSummary, type ScorerOptions } from './scorer.js';
import { NOTIFY_CHANNEL } from './setup.js';

export interface FollowOptions extends ScorerOptions {
  /** Longest sleep without a notification, ms. */
  pollMs: number;
  signal: AbortSignal;
  onBatch?: (b: RunSummary) => void;
  /** Called each time it has caught up (nothing left below the horizon) before it sleeps; heldBack: committed rows wait behind an older transaction. */
  onIdle?: (heldBack: boolean) => void;
  /** Called when following starts and after each reconnect. */
  onConnected?: () => void;
}

/** Runs until the signal fires; returns what it scored. Connection failures are retried with backoff. */
export async function follow(connect: () => Promise<Client>, tables: TableMap, opts: FollowOptions): Promise<RunSummary> {
  const { signal, log } = opts;
  const total = emptySummary(MIN_CURSOR);
  let wake: (() => void) | undefined;
  let scorer: Scorer | undefined;
  let backoff = 250;
  let first = true;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done);
      wake = done;
    });
  while (!signal.aborted) {
    try {
      if (!scorer) {
        const client = await connect();
        try {
          // After a reconnect our old session may linger on the server a moment: wait for its lock (the signal stops the wait).
          scorer = await Scorer.open(client, tables, { ...opts, wait: first ? opts.wait : true });
        } catch (err) {
          await client.end().catch(() => {});
          throw err;
        }
        client.on('notification', () => wake?.());
        await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
        first = false;
        backoff = 250;
        opts.onConnected?.();
      }
      // Counted per committed batch: a run stopped by the signal throws, its batches still count.
      const r = await scorer.run(
        { kind: 'last' },
        {
          signal,
          onBatch: (b) => {
            addInto(total, b);
            opts.onBatch?.(b);
          },
        },
      );
      total.cursor = r.cursor;
      total.horizon = r.horizon || total.horizon;
      if (signal.aborted) break;
      const held = await scorer.heldBack();
      opts.onIdle?.(held);
      await sleep(held ? 50 : opts.pollMs);
    } catch (err) {
      if (err instanceof InterruptedError || signal.aborted) break;
      if (err instanceof ScorerBusyError || !isConnectionFailure(err)) throw err;
      log.warn(`${(err as Error).message.split('\n')[0]}; reconnecting in ${(backoff / 1000).toFixed(2)} s`);
      const lost = scorer;
      scorer = undefined;
      await lost?.client.end().catch(() => {});
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10_000);
    }
  }
  if (scorer) {
    await scorer.close();
    await scorer.client.end().catch(() => {});
  }
  return total;
}

/** The server went away or restarts: worth reconnecting. Anything else is a bug or bad data, and stops. */
function isConnectionFailure(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (err instanceof DatabaseError) return true; // connect() translated an unreachable server
  if (e?.code && /^(ECONN|EPIPE|ETIMEDOUT|57P0[123]|08)/.test(e.code)) return true;
  return /Connection terminated|connection is closed|Client has encountered a connection error|not queryable/i.test(e?.message ?? '');
}
