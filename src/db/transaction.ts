// Kept apart from client.ts so that modules needing only this (partitions, on the path of a
// cached `get`) do not load the pg driver.
import type { Client } from './client.js';

/** Runs fn inside BEGIN/COMMIT; rolls back and rethrows on error. */
export async function transaction<T>(client: Client, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
