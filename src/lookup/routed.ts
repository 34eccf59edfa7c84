// Lookups on a read replica with the primary behind them: an invoice the replica does not have
// may be one it has not replayed yet (a just-created invoice), so a miss there is asked of the
// primary before it counts as not found. The primary's connection is opened at the first such
// miss and kept for the next ones.
import { connect, translatePgError, type Client, type DbContext } from '../db/client.js';
import type { Reader } from '../db/replica.js';
import { NotFoundError } from '../errors.js';
import { silentLogger } from '../log.js';
import type { TableMap } from '../tables.js';
import { getInvoice, type InvoiceDetail } from './get-invoice.js';
import { getInvoices } from './get-many.js';

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
    try {
      return await getInvoice(this.reader.client, id, this.tables);
    } catch (err) {
      if (!(err instanceof NotFoundError) || this.reader.on !== 'replica') throw translatePgError(err, undefined);
      this.log(`invoice ${id} not on the replica (it may not have replayed it yet): asking the primary`);
      try {
        const invoice = await getInvoice(await this.primaryClient(), id, this.tables);
        this.fromPrimary++;
        return invoice;
      } catch (err2) {
        throw translatePgError(err2, undefined);
      }
    }
  }

  /** Many invoices, keyed by id as text; ids neither has are absent. */
  async many(ids: readonly bigint[]): Promise<Map<string, InvoiceDetail>> {
    try {
      const found = await getInvoices(this.reader.client, ids, this.tables);
      if (this.reader.on !== 'replica') return found;
      const missed = [...new Set(ids.filter((id) => !found.has(String(id))).map(String))].map(BigInt);
      if (!missed.length) return found;
      this.log(`${missed.length} invoice(s) not on the replica (it may not have replayed them yet): asking the primary`);
      const more = await getInvoices(await this.primaryClient(), missed, this.tables);
      this.fromPrimary += more.size;
      for (const [k, v] of more) found.set(k, v);
      return found;
    } catch (err) {
      throw translatePgError(err, undefined);
    }
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
