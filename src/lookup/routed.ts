// Lookups on a read replica with the primary behind them: an invoice the replica does not have
// may be one it has not replayed yet (a just-created invoice), so a miss there is asked of the
// primary before it counts as not found. findOne/findMany do it on any two connections (serve's
// pool gates); RoutedLookup on a reader's client, the primary's connection opened at the first
// such miss and kept for the next ones.
import { connect, translatePgError, type Client, type DbContext } from '../db/client.js';
import type { Reader } from '../db/replica.js';
import { NotFoundError } from '../errors.js';
import { silentLogger } from '../log.js';
import type { TableMap } from '../tables.js';
import { getInvoice, type InvoiceDetail } from './get-invoice.js';
import { getInvoices } from './get-many.js';

/** Runs a statement function on some connection (a client, or a pool gate in front of one). */
export type Runner = <T>(fn: (client: Client) => Promise<T>) => Promise<T>;

/** Told when the primary is asked (how many ids) and what it had. */
export interface MissHooks {
  asking?(ids: number): void;
  found?(n: number): void;
}

/**
 * One invoice from `read`, else from `primary` when one is given (`read` is then a replica, which
 * may not have replayed it yet); NotFoundError when neither has it.
 */
export async function findOne(
  read: Runner,
  primary: Runner | undefined,
  id: bigint,
  tables: TableMap,
  hooks: MissHooks = {},
): Promise<InvoiceDetail> {
  try {
    return await read((client) => getInvoice(client, id, tables));
  } catch (err) {
    if (!(err instanceof NotFoundError) || !primary) throw err;
    hooks.asking?.(1);
    const invoice = await primary((client) => getInvoice(client, id, tables));
    hooks.found?.(1);
    return invoice;
  }
}

/** Many invoices (keyed by id as text) from `read`, and those it misses from `primary` when one is given; ids neither has are absent. */
export async function findMany(
  read: Runner,
  primary: Runner | undefined,
  ids: readonly bigint[],
  tables: TableMap,
  hooks: MissHooks = {},
): Promise<Map<string, InvoiceDetail>> {
  const found = await read((client) => getInvoices(client, ids, tables));
  if (!primary) return found;
  const missed = [...new Set(ids.filter((id) => !found.has(String(id))).map(String))].map(BigInt);
  if (!missed.length) return found;
  hooks.asking?.(missed.length);
  const more = await primary((client) => getInvoices(client, missed, tables));
  hooks.found?.(more.size);
  for (const [k, v] of more) found.set(k, v);
  return found;
}

/** Looks invoices up on a reader, asking the primary for those a replica misses. */
export class RoutedLookup {
  private primary: Promise<Client> | undefined;
  /** Ids a replica missed and the primary had. */
  fromPrimary = 0;

  /**
   * `reader`: a client and which server it is on (connectReader's, or a pooled client of
   * readServer's choice: the caller ends it); `ctx`: the primary's context.
   */
  constructor(
    private readonly ctx: DbContext,
    private readonly reader: Pick<Reader, 'client' | 'on'>,
    private readonly tables: TableMap,
  ) {}

  /** One invoice; NotFoundError when neither the reader nor (behind a replica) the primary has it. */
  async one(id: bigint): Promise<InvoiceDetail> {
    const hooks = this.hooks(() => `invoice ${id} not on the replica (it may not have replayed it yet): asking the primary`);
    try {
      return await findOne(this.read, this.behind(), id, this.tables, hooks);
    } catch (err) {
      throw translatePgError(err, undefined);
    }
  }

  /** Many invoices, keyed by id as text; ids neither has are absent. */
  async many(ids: readonly bigint[]): Promise<Map<string, InvoiceDetail>> {
    const hooks = this.hooks((n) => `${n} invoice(s) not on the replica (it may not have replayed them yet): asking the primary`);
    try {
      return await findMany(this.read, this.behind(), ids, this.tables, hooks);
    } catch (err) {
      throw translatePgError(err, undefined);
    }
  }

  private readonly read: Runner = (fn) => fn(this.reader.client);

  /** The primary, behind a replica (opened at the first miss and kept); none behind the primary itself. */
  private behind(): Runner | undefined {
    return this.reader.on === 'replica' ? async (fn) => fn(await this.primaryClient()) : undefined;
  }

  private hooks(asking: (n: number) => string): MissHooks {
    return {
      asking: (n) => this.log(asking(n)),
      found: (n) => {
        this.fromPrimary += n;
      },
    };
  }

  /** Ends the primary's connection, if one was opened (not the reader's). */
  async close(): Promise<void> {
    const p = this.primary;
    this.primary = undefined;
    if (p) await (await p.catch(() => undefined))?.end().catch(() => {});
  }

  private primaryClient(): Promise<Client> {
    this.primary ??= connect(this.ctx);
    return this.primary;
  }

  private log(message: string): void {
    (this.ctx.log ?? silentLogger).debug(message);
  }
}
