// Read-through lookups and what happens when the cache fails: by default the answer comes
// from PostgreSQL and the first failure is reported once; with `required` it is an error.
import { CacheError } from '../errors.js';
import type { InvoiceDetail } from '../lookup/get-invoice.js';
import type { CacheStamp, Decoded, StaleReason } from './keys.js';

/** What a read-through lookup needs from a cache. */
export interface InvoiceCache {
  /** undefined: no entry; stale: an entry that does not answer for `id` under `stamp`. */
  get(id: bigint, stamp: CacheStamp): Promise<Decoded | undefined>;
  set(id: bigint, invoice: InvoiceDetail, stamp: CacheStamp): Promise<void>;
  /** Many entries at once, in the order of `ids`. */
  getMany(ids: readonly bigint[], stamp: CacheStamp): Promise<Array<Decoded | undefined>>;
  setMany(entries: ReadonlyArray<[bigint, InvoiceDetail]>, stamp: CacheStamp): Promise<void>;
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
  private stamp: CacheStamp | undefined;

  constructor(private readonly opts: ReadThroughOptions) {}

  /**
   * The source and generation entries must carry to answer (src/cache/generation.ts), read
   * from PostgreSQL before the first lookup; entries are written with it.
   */
  bind(stamp: CacheStamp): void {
    this.stamp = stamp;
  }

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
   * The invoice from the cache, else from `load` (then cached, replacing a stale entry). A hit
   * never calls `load`; only an entry of invoice `id` read from the bound source and generation
   * is a hit. A NotFoundError from `load` propagates and nothing is cached. `stale` says why an
   * entry that was there did not answer.
   */
  async lookup(
    id: bigint,
    load: (id: bigint) => Promise<InvoiceDetail>,
  ): Promise<{ invoice: InvoiceDetail; outcome: CacheOutcome; stale?: StaleReason }> {
    let stale: StaleReason | undefined;
    if (this.cache) {
      if (!this.stamp) throw new Error('ReadThrough: bind() the source and generation before the first lookup');
      try {
        const cached = await this.cache.get(id, this.stamp);
        if (cached && 'invoice' in cached) return { invoice: cached.invoice, outcome: 'hit' };
        stale = cached?.stale;
      } catch (err) {
        this.failed(err);
      }
    }
    const used = this.cache !== undefined;
    let invoice: InvoiceDetail;
    try {
      invoice = await load(id);
    } catch (err) {
      // Not found (say, after a reseed with fewer rows): the stale entry goes too, best effort.
      if (stale) await this.cache?.delete(id).catch(() => {});
      throw err;
    }
    if (this.cache) {
      try {
        await this.cache.set(id, invoice, this.stamp!);
      } catch (err) {
        this.failed(err);
      }
    }
    return { invoice, outcome: used ? 'miss' : 'off', ...(stale ? { stale } : {}) };
  }

  /**
   * Many invoices at once: the entries of `ids` from the cache in one round trip, the others
   * from `load` (one batch), then cached. Returns, in the order of `ids`, each invoice or
   * undefined when it does not exist; hits and misses count the ids the cache did or did not answer.
   */
  async lookupMany(
    ids: readonly bigint[],
    load: (ids: bigint[]) => Promise<Map<string, InvoiceDetail>>,
  ): Promise<{ invoices: Array<InvoiceDetail | undefined>; hits: number; misses: number }> {
    const out: Array<InvoiceDetail | undefined> = new Array(ids.length);
    let missing: number[] = ids.map((_, i) => i);
    let stale: bigint[] = [];
    if (this.cache) {
      if (!this.stamp) throw new Error('ReadThrough: bind() the source and generation before the first lookup');
      try {
        const cached = await this.cache.getMany(ids, this.stamp);
        missing = [];
        cached.forEach((c, i) => {
          if (c && 'invoice' in c) out[i] = c.invoice;
          else {
            missing.push(i);
            if (c) stale.push(ids[i]);
          }
        });
      } catch (err) {
        this.failed(err);
        stale = [];
      }
    }
    const hits = ids.length - missing.length;
    if (!missing.length) return { invoices: out, hits, misses: 0 };
    const loaded = await load(missing.map((i) => ids[i]));
    const toCache: Array<[bigint, InvoiceDetail]> = [];
    const seen = new Set<string>();
    for (const i of missing) {
      const key = String(ids[i]);
      const invoice = loaded.get(key);
      out[i] = invoice;
      if (invoice && !seen.has(key)) {
        seen.add(key);
        toCache.push([ids[i], invoice]);
      }
    }
    if (this.cache) {
      try {
        await this.cache.setMany(toCache, this.stamp!);
        // Stale entries of ids that no longer exist go too, best effort.
        const gone = stale.filter((id) => !loaded.has(String(id)));
        if (gone.length) await Promise.all(gone.map((id) => this.cache!.delete(id))).catch(() => {});
      } catch (err) {
        this.failed(err);
      }
    }
    return { invoices: out, hits, misses: this.cache || hits ? missing.length : 0 };
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
