import type { Command } from 'commander';
import type { CacheStamp } from '../cache/keys.js';
import type { ReadThrough } from '../cache/read-through.js';
import type { Latency } from '../cache/stats.js';
import type { Reader } from '../db/replica.js';
import { UsageError } from '../errors.js';
import type { InvoiceDetail } from '../lookup/get-invoice.js';
import type { Column } from '../output/render.js';
import { commandContext, positiveInt, type CommandContext } from './context.js';

export const COLUMNS: Column<InvoiceDetail>[] = [
  { key: 'invoice_id', kind: 'int' },
  { key: 'issue_date', kind: 'time' },
  { key: 'issuer_id', kind: 'int' },
  { key: 'issuer_name' },
  { key: 'receiver_id', kind: 'int' },
  { key: 'receiver_name' },
  { key: 'amount', kind: 'money' },
];

export const DEFAULT_CACHE_TTL = 60;
export const DEFAULT_REPEAT = 200;

export function command(program: Command): Command {
  return program
    .command('get')
    .description('show invoices by id, with their issuer and receiver (many ids: JSON lines, in input order)')
    .argument('<id...>', 'invoice ids, or - to read them from stdin (one per line)')
    .option('--cache <url>', 'read through this Redis (redis://host:port[/db], rediss:// for TLS; default: REDIS_URL)')
    .option('--no-cache', 'ignore REDIS_URL: read PostgreSQL only')
    .option(
      '--cache-ttl <seconds>',
      `entries expire after this long, so an update shows within it (default: ${DEFAULT_CACHE_TTL}; 0: no cache)`,
    )
    .option('--cache-required', 'a cache that fails is an error (exit 1) instead of a warning and PostgreSQL')
    .option('--stats', 'time repeated lookups: cache hit, cache miss, PostgreSQL alone (p50/p99 on stderr)')
    .option('--repeat <n>', `lookups of each kind with --stats (default: ${DEFAULT_REPEAT})`)
    .addHelpText(
      'after',
      `
Examples:
  $ invoices get 42
  $ invoices get 42 --format csv
  $ REDIS_URL=redis://localhost:6380 invoices get 42     through Redis: a hit reads only the table's generation from PostgreSQL
  $ invoices get 42 --cache redis://localhost:6380 --cache-ttl 5
  $ invoices get 42 --no-cache                            straight to PostgreSQL
  $ invoices get 42 --stats --repeat 1000                 hit vs miss latency
  $ invoices get 1 2 3                                    several: one JSON object per line when piped
  $ cut -d, -f1 ids.csv | invoices get - > invoices.jsonl   ids on stdin, streamed out in input order

Many ids: ids not found are named on stderr and the run exits 3 after printing the others; a
malformed id argument exits 2 before any output; a malformed stdin line is named with its line
number and the run exits 2 after printing the others.

The cache never serves an entry older than --cache-ttl. When it cannot be reached, get
warns once and answers from PostgreSQL (exit 0), unless --cache-required.`,
    )
    .action(run);
}

export interface GetOptions {
  /** A URL from --cache, false from --no-cache, undefined: REDIS_URL. */
  cache?: string | false;
  cacheTtl?: string;
  cacheRequired?: boolean;
  stats?: boolean;
  repeat?: string;
}

export async function run(rawIds: string[] | string, opts: GetOptions, cmd: Command): Promise<void> {
  const args = Array.isArray(rawIds) ? rawIds : [rawIds];
  if (args.length !== 1 || args[0] === '-') {
    if (opts.stats) throw new UsageError('--stats times one invoice: give one id');
    return (await import('./get-many.js')).runMany(args, opts, await commandContext(cmd));
  }
  const rawId = args[0];
  const { parseInvoiceId } = await import('../lookup/get-invoice.js');
  const id = parseInvoiceId(rawId);
  if (id === undefined) throw new UsageError(`invoice id must be a positive integer, got "${rawId}"`);
  if (opts.repeat !== undefined && !opts.stats) throw new UsageError('--repeat goes with --stats');
  const repeat = opts.repeat === undefined ? DEFAULT_REPEAT : positiveInt('--repeat', opts.repeat);
  const ctx = await commandContext(cmd);
  const { rt, useCache, openCache, openBoth, endpoint, ttl, connectMs } = await cacheSetup(opts, ctx);
  let reader: Reader | undefined;
  try {
    if (opts.stats) {
      if (useCache) await openCache();
      return await printStats(ctx, rt, id, repeat, { url: endpoint?.display, ttl, redisConnectMs: connectMs() });
    }
    if (useCache) reader = await openBoth();
    const { invoice, outcome, stale } = await rt.lookup(id, (id) => lookupInPostgres(ctx, reader, id));
    if (stale === 'another invoice' || stale === 'another source') {
      // Something other than this version of `get` wrote under this key: worth knowing.
      ctx.log.warn(
        `the cache entry for invoice ${id} held ${stale === 'another invoice' ? 'another invoice' : 'an invoice of another table or mapping'}: replaced from PostgreSQL`,
      );
    }
    ctx.log.debug(
      `cache: ${outcome}${stale ? ` (stale entry: ${stale}; replaced)` : ''}${rt.active ? ` (${endpoint?.display}, ttl ${ttl} s)` : ''}`,
    );
    await ctx.printRows([invoice], COLUMNS, { single: true });
  } finally {
    await rt.close();
    await reader?.client.end().catch(() => {});
  }
}

/** The cache `get` reads through, from --cache, --no-cache, --cache-ttl, --cache-required and REDIS_URL; usage errors first. */
export async function cacheSetup(opts: GetOptions, ctx: CommandContext) {
  const [{ cacheScope, MAX_TTL_SECONDS, parseRedisUrl }, { ReadThrough }] = await Promise.all([
    import('../cache/keys.js'),
    import('../cache/read-through.js'),
  ]);
  const ttl = opts.cacheTtl === undefined ? DEFAULT_CACHE_TTL : positiveInt('--cache-ttl', opts.cacheTtl, { allowZero: true });
  if (ttl > MAX_TTL_SECONDS) throw new UsageError(`--cache-ttl must be at most ${MAX_TTL_SECONDS} seconds, got ${ttl}`);
  const url = opts.cache === false ? undefined : (opts.cache ?? ctx.redisUrl);
  const source = typeof opts.cache === 'string' ? '--cache' : 'REDIS_URL';
  // A malformed URL is a usage error (exit 2) even though an unreachable cache is only a warning.
  const endpoint = url === undefined ? undefined : parseRedisUrl(url, source);
  const useCache = endpoint !== undefined && ttl > 0;
  if (opts.cacheRequired && !useCache) {
    const why =
      opts.cache === false ? '--no-cache turns it off' : endpoint ? '--cache-ttl 0 turns it off' : 'give --cache URL or set REDIS_URL';
    throw new UsageError(`--cache-required needs a cache: ${why}`);
  }
  const rt = new ReadThrough({
    required: Boolean(opts.cacheRequired),
    onUnavailable: (err) => ctx.log.warn(`${err.message}; reading from PostgreSQL (--cache-required to fail instead)`),
  });
  let redisConnectMs: number | undefined;
  const openCache = () =>
    rt.open(async () => {
      // Loaded only when a cache is configured: `get` without one pays nothing for it.
      const { RedisInvoiceCache } = await import('../cache/redis-cache.js');
      const started = performance.now();
      const cache = await RedisInvoiceCache.open({
        url: url!,
        source,
        ttlSeconds: ttl,
        scope: cacheScope(ctx.config.target, ctx.config.tables),
      });
      redisConnectMs = performance.now() - started;
      return cache;
    });
  // An entry answers only if it was read from the table's current generation, so a hit reads
  // that from PostgreSQL too (one catalog query, src/cache/generation.ts): Redis and PostgreSQL
  // are reached at once, and a miss then uses the same connection.
  const openBoth = async (): Promise<Reader> => {
    const [postgres, cache] = await Promise.allSettled([connectWithStamp(ctx), openCache()]);
    if (postgres.status === 'rejected') throw postgres.reason;
    if (cache.status === 'rejected') {
      await postgres.value.reader.client.end().catch(() => {});
      throw cache.reason;
    }
    rt.bind(postgres.value.stamp);
    return postgres.value.reader;
  };
  if (endpoint && !useCache) ctx.log.debug('cache: not used (--cache-ttl 0)');
  return { rt, useCache, openCache, openBoth, endpoint, ttl, connectMs: () => redisConnectMs };
}

/**
 * One PostgreSQL connection for reads (a replica when one is configured and usable:
 * src/db/replica.ts) and the stamp current entries carry (the table's source and generation;
 * a physical standby has the primary's catalog, so the stamp is the same read on either).
 */
async function connectWithStamp(ctx: CommandContext): Promise<{ reader: Reader; stamp: CacheStamp }> {
  const [{ translatePgError }, { connectReader }, { readCacheStamp }] = await Promise.all([
    import('../db/client.js'),
    import('../db/replica.js'),
    import('../cache/generation.js'),
  ]);
  const reader = await connectReader(ctx, 'get');
  try {
    return { reader, stamp: await readCacheStamp(reader.client, ctx.config.tables) };
  } catch (err) {
    await reader.client.end().catch(() => {});
    throw translatePgError(err, undefined);
  }
}

/**
 * The invoice from PostgreSQL: on `reader` when one is open, else on a reader of its own; a
 * replica's miss is asked of the primary (src/lookup/routed.ts) before it is not found.
 */
async function lookupInPostgres(ctx: CommandContext, reader: Reader | undefined, id: bigint): Promise<InvoiceDetail> {
  const [{ connectReader }, { RoutedLookup }] = await Promise.all([import('../db/replica.js'), import('../lookup/routed.js')]);
  const own = reader ? undefined : await connectReader(ctx, 'get');
  const lookup = new RoutedLookup(ctx, (reader ?? own)!, ctx.config.tables);
  try {
    return await lookup.one(id);
  } finally {
    await lookup.close();
    await own?.client.end().catch(() => {});
  }
}

/** --stats: the invoice on stdout as usual, latencies on stderr (asked for, so shown even with --quiet). */
async function printStats(
  ctx: CommandContext,
  rt: ReadThrough,
  id: bigint,
  repeat: number,
  info: { url?: string; ttl: number; redisConnectMs?: number },
): Promise<void> {
  const [{ withReader }, { getInvoice }, { measureLookups, summarize }] = await Promise.all([
    import('../db/replica.js'),
    import('../lookup/get-invoice.js'),
    import('../cache/stats.js'),
  ]);
  const started = performance.now();
  let pgConnectMs = 0;
  let stampMs = 0;
  const timings = await withReader(
    ctx,
    async (client) => {
      pgConnectMs = performance.now() - started;
      if (rt.active) {
        const { readCacheStamp } = await import('../cache/generation.js');
        const stamped = performance.now();
        rt.bind(await readCacheStamp(client, ctx.config.tables));
        stampMs = performance.now() - stamped;
      }
      return measureLookups(rt, id, repeat, (id) => getInvoice(client, id, ctx.config.tables));
    },
    'get --stats',
  );
  await ctx.printRows([timings.invoice], COLUMNS, { single: true });

  const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(3).padStart(8) : '       -') + ' ms';
  const row = (label: string, l: Latency, what: string) =>
    `  ${label.padEnd(11)} p50 ${ms(l.p50)}   p99 ${ms(l.p99)}   n=${String(l.count).padEnd(5)} ${what}\n`;
  const { hit, miss } = timings.byOutcome;
  let out = `invoice ${id}: ${repeat} lookups of each kind\n`;
  if (info.redisConnectMs !== undefined) {
    out += row('cache hit', summarize(hit), 'GET');
    out += row('cache miss', summarize(miss), 'GET, PostgreSQL lookup, SET');
  }
  out += row('PostgreSQL', summarize(timings.postgres), 'the lookup alone, on an open connection');
  const connects = [
    info.redisConnectMs !== undefined ? `Redis ${info.redisConnectMs.toFixed(1)} ms` : '',
    `PostgreSQL ${pgConnectMs.toFixed(1)} ms`,
  ];
  out += `  connect     ${connects.filter(Boolean).join(', ')} (once per process)\n`;
  if (info.redisConnectMs !== undefined)
    out += `  generation  ${stampMs.toFixed(1)} ms (the table's lineage, once per process, first query on the connection)\n`;
  out +=
    info.redisConnectMs !== undefined
      ? `cache: ${info.url}, ttl ${info.ttl} s${rt.active ? '' : ' (failed during the run: see the warning)'}\n`
      : `cache: none${info.url ? ` (${info.url} not in use)` : ' (--cache URL or REDIS_URL)'}\n`;
  process.stderr.write(out);
}
