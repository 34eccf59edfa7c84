// Lineage: which physical contents of the invoices table a derived store was computed from.
// A watermark says "every row below xid N"; it stops meaning the same rows when the table is
// truncated, reloaded, converted, restored or swapped, none of which an incremental refresh
// can see in the rows themselves. The catalog can:
// - the cluster (pg_control_system().system_identifier) and the database: a restore elsewhere;
// - the table's oid: dropped and created again, converted (`partition --convert`), restored;
// - per leaf (partition, or the plain table itself) its relfilenode, which TRUNCATE replaces
//   (as do VACUUM FULL and CLUSTER: a needless but harmless recompute), and the xmin of its
//   pg_inherits row, which a detach and re-attach replaces.
// Read in one query (well under the 5 ms budget); stored as JSON beside each derived store.
import { storageStamp, type StorageStamp } from '../db/catalog.js';
import type { Client } from '../db/client.js';
import type { SourceTable } from './describe.js';

/** The cluster, the database, the table's oid and per leaf "relfilenode/pg_inherits xmin". */
export type Lineage = StorageStamp;

export type LineageChange =
  | { kind: 'same' }
  /** Nothing derived before can be trusted: rebuild everything. */
  | { kind: 'replaced'; reason: string }
  /** These leaves were truncated, rewritten, detached, dropped or attached: their months may hold other rows. */
  | { kind: 'leaves'; leaves: string[]; reason: string };

/** The lineage of the table now. */
export async function readLineage(client: Client, source: SourceTable): Promise<Lineage> {
  return storageStamp(client, source.table);
}

/** What changed between the lineage a store recorded and now (undefined: none recorded). */
export function compareLineage(stored: Lineage | undefined | null, now: Lineage): LineageChange {
  if (!stored || typeof stored.leaves !== 'object')
    return { kind: 'replaced', reason: 'no lineage recorded (built by an earlier version)' };
  if (stored.system !== now.system)
    return { kind: 'replaced', reason: 'the database is now on another PostgreSQL cluster (restored from a dump?)' };
  if (stored.database !== now.database)
    return { kind: 'replaced', reason: 'the database was dropped and created again (restored from a dump?)' };
  if (stored.table !== now.table) return { kind: 'replaced', reason: 'the table was dropped and created again, converted or restored' };
  const names = [...new Set([...Object.keys(stored.leaves), ...Object.keys(now.leaves)])].sort();
  const byKind = new Map<string, string[]>();
  const leaves = names.filter((n) => {
    const before = stored.leaves[n];
    const after = now.leaves[n];
    if (before === after) return false;
    const kind =
      before === undefined
        ? 'created or attached'
        : after === undefined
          ? 'dropped or detached'
          : before.split('/')[0] !== after.split('/')[0]
            ? 'truncated or rewritten'
            : 'detached and attached again';
    byKind.set(kind, [...(byKind.get(kind) ?? []), n]);
    return true;
  });
  if (!leaves.length) return { kind: 'same' };
  // A reseed truncates every partition: one phrase for many, not a list of forty.
  const said = [...byKind].flatMap(([kind, ns]) =>
    ns.length > 3 ? [`${ns.length} partitions ${kind}, from ${ns[0]} to ${ns[ns.length - 1]}`] : ns.map((n) => `${n} ${kind}`),
  );
  return { kind: 'leaves', leaves, reason: said.sort().join(', ') };
}
