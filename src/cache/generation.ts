// The stamp a cached invoice must carry to answer now: read from PostgreSQL once per process,
// on the connection `get` uses for a miss (one catalog query, src/table/lineage.ts).
import type { Client } from '../db/client.js';
import type { SourceTable } from '../table/describe.js';
import { readLineage } from '../table/lineage.js';
import { qualified, type TableMap } from '../tables.js';
import { cacheStamp, type CacheStamp } from './keys.js';

/**
 * The current source and generation of the mapped invoices table. readLineage needs only the
 * table's name, so the table is not described first: a missing table reads as a generation of
 * its own (no entry matches it), and the lookup then fails as it would without the cache.
 */
export async function readCacheStamp(client: Client, tables: TableMap): Promise<CacheStamp> {
  const source: Pick<SourceTable, 'table'> = { table: qualified(tables.invoices) };
  return cacheStamp(tables, await readLineage(client, source as SourceTable));
}
