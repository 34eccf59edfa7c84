// What a conversion takes and gives back (options, progress, result) and its error: shared by
// the phases, the runner and the command.
import { InvoicesError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { TableMap } from '../../tables.js';
import type { Month } from '../partitions.js';

/** A conversion failed in a way that left everything consistent (nothing switched, or switched and finishing): exit 1. */
export class ConversionError extends InvoicesError {}

export type ConvertPhase = 'prepare' | 'backfill' | 'indexes' | 'sync' | 'switch' | 'finish';

/** What --batch-size, --lock-timeout and --lock-retries default to (the help names them). */
export const CONVERT_DEFAULTS = { batchSize: 100_000, lockTimeoutMs: 500, lockRetries: 10 } as const;

export interface ConvertProgress {
  phase: ConvertPhase;
  done: number;
  total: number;
  /** What the phase is doing right now (the index being built). */
  detail?: string;
}

export interface ConvertOptions {
  /** Months to create partitions for besides those present in the table (e.g. the months ahead). */
  ahead: Month[];
  /** Rows per backfill transaction (default 100,000). */
  batchSize?: number;
  /** lock_timeout of each attempt at the switch (and at the short prepare lock), ms (default 500). */
  lockTimeoutMs?: number;
  /** Attempts after the first before giving up on the lock (default 10). */
  lockRetries?: number;
  /** Switch once a catch-up round replays fewer logged changes than this (default 1,000). */
  catchUpThreshold?: number;
  signal?: AbortSignal;
  log?: Logger;
  onProgress?: (p: ConvertProgress) => void;
  /** The table to convert: this tool's `invoices` by default, or a mapped one. */
  tables?: TableMap;
  /** When another conversion or seed holds the table: wait for it (default) or refuse at once (exit 1). */
  wait?: boolean;
}

export interface ConvertResult {
  status: 'converted' | 'already-partitioned';
  /** A conversion left by an earlier run was continued. */
  resumed: boolean;
  /** Rows in the partitioned table after the switch. */
  rows: number;
  /** Rows copied by this run's backfill. */
  copiedRows: number;
  partitions: number;
  seconds: number;
  /** copiedRows / seconds spent copying. */
  rowsPerSecond: number;
  /** How long the ACCESS EXCLUSIVE lock on invoices was held (LOCK acquired to COMMIT), ms. */
  lockMs: number | null;
  /** Attempts at the exclusive lock (1 = the first succeeded). */
  lockAttempts: number;
  /** Rows that landed in the DEFAULT partition (a month without a partition). */
  defaultRows: number;
  /** The original table, kept: null when the conversion had already finished. */
  oldTable: string | null;
  carried: string[];
  warnings: string[];
}
