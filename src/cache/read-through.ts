// Read-through lookups and what happens when the cache fails: by default the answer comes
// from PostgreSQL and the first failure is reported once; with `required` it is an error.
import { CacheError } from '../errors.js';
import type { InvoiceDetail } from '../lookup/get-invoice.js';

/** What a read-through lookup needs from a cache. */
export interface InvoiceCache {
  get(id: bigint): Promise<InvoiceDetail | undefined>;
  set(id: bigint, invoice: InvoiceDetail): Promise<void>;
  delete(id: bigint): Promise<void>;
  close(): Promise<void>;
}

/** hit: answered by the cache; miss: by PostgreSQL, then cached; off: by PostgreSQL, no cache in use. */
export type CacheOutcome = 'hit' | 'miss' | 'off';

export interface ReadThroughOptions {
  /** A cache failure throws its CacheError instead of falling back to PostgreSQL. */
  required: boolean;
  /** Called at the first cache failure when falling back; the cache is not used after it. */
  onUnavailable(err: CacheError): void;
}

/** Looks invoices up in a cache first and in PostgreSQL (the `load` function) on a miss. */
export class ReadThrough {
  private cache: InvoiceCache | undefined;

  constructor(private readonly opts: ReadThroughOptions) {}

  /** Whether lookups still go through a cache. */
  get active(): boolean {
    return this.cache !== undefined;
  }

  /** Opens the cache; a CacheError counts as a cache failure (fallback or error), other errors propagate. */
  async open(connect: () => Promise<InvoiceCache>): Promise<void> {
    try {
      this.cache = await connect();
    } catch (err) {
      this.failed(err);
    }
  }

  /**
   * The invoice from the cache, else from `load` (then cached). A hit never calls `load`;
   * a NotFoundError from `load` propagates and nothing is cached.
   */
  async lookup(id: bigint, load: (id: bigint) => Promise<InvoiceDetail>): Promise<{ invoice: InvoiceDetail; outcome: CacheOutcome }> {
    if (this.cache) {
      try {
        const cached = await this.cache.get(id);
        if (cached) return { invoice: cached, outcome: 'hit' };
      } catch (err) {
        this.failed(err);
      }
    }
    const used = this.cache !== undefined;
    const invoice = await load(id);
    if (this.cache) {
      try {
        await this.cache.set(id, invoice);
      } catch (err) {
        this.failed(err);
      }
    }
    return { invoice, outcome: used ? 'miss' : 'off' };
  }

  /** Drops one invoice's entry (used to measure misses). */
  async forget(id: bigint): Promise<void> {
    try {
      await this.cache?.delete(id);
    } catch (err) {
      this.failed(err);
    }
  }

  /** Closes the cache connection, if any. */
  async close(): Promise<void> {
    const cache = this.cache;
    this.cache = undefined;
    await cache?.close().catch(() => {});
  }

  private failed(err: unknown): void {
    if (!(err instanceof CacheError) || this.opts.required) throw err;
    const cache = this.cache;
    this.cache = undefined;
    void cache?.close().catch(() => {});
    this.opts.onUnavailable(err);
  }
}
