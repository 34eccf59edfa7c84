// The one way this tool opens a transaction or changes a session setting for a while: every
// BEGIN, COMMIT and ROLLBACK, and every SET with its RESET, is written here and nowhere else.
// Kept apart from client.ts so that modules needing only this (partitions, on the path of a
// cached `get`) do not load the pg driver.
import type { Client } from './client.js';

/** Server settings by name (work_mem, lock_timeout, statement_timeout, ...), values as SET takes them. */
export type Settings = Record<string, string>;

export interface TransactionOptions {
  /** Default: the server's (read committed). */
  isolation?: 'read committed' | 'repeatable read' | 'serializable';
  readOnly?: boolean;
  /** Set for this transaction only (SET LOCAL): gone at COMMIT or ROLLBACK. */
  settings?: Settings;
}

/** Runs fn inside BEGIN/COMMIT with the given isolation, access mode and settings; rolls back and rethrows on error. */
export async function transaction<T>(client: Client, fn: () => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
  const mode = [opts.isolation && `ISOLATION LEVEL ${opts.isolation.toUpperCase()}`, opts.readOnly && 'READ ONLY']
    .filter(Boolean)
    .join(' ');
  await client.query(mode ? `BEGIN ${mode}` : 'BEGIN');
  try {
    await applySettings(client, opts.settings, true);
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Runs fn with session settings changed (outside a transaction, or across several), then puts
 * back the values they had before, even when fn fails: the scoped form of SET ... RESET.
 */
export async function withSettings<T>(client: Client, settings: Settings, fn: () => Promise<T>): Promise<T> {
  const names = Object.keys(settings);
  const { rows } = await client.query<{ name: string; value: string }>(
    'SELECT n AS name, current_setting(n) AS value FROM unnest($1::text[]) AS n',
    [names],
  );
  await applySettings(client, settings, false);
  try {
    return await fn();
  } finally {
    // A failed transaction block refuses set_config until it ends: the caller's ROLLBACK comes first.
    await applySettings(client, Object.fromEntries(rows.map((r) => [r.name, r.value])), false).catch(() => {});
  }
}

/** set_config for each setting (bound values: no quoting by hand); local: until the transaction ends. */
async function applySettings(client: Client, settings: Settings | undefined, local: boolean): Promise<void> {
  const entries = Object.entries(settings ?? {});
  if (!entries.length) return;
  await client.query('SELECT set_config(n, v, $3) FROM unnest($1::text[], $2::text[]) AS s(n, v)', [
    entries.map(([n]) => n),
    entries.map(([, v]) => v),
    local,
  ]);
}
