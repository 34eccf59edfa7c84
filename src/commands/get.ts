import type { Command } from 'commander';
import { cacheScope, MAX_TTL_SECONDS, parseRedisUrl } from '../cache/keys.js';
import { ReadThrough } from '../cache/read-through.js';
import { measureLookups, summarize, type Latency } from '../cache/stats.js';
import { UsageError } from '../errors.js';
import { getInvoice, parseInvoiceId, type InvoiceDetail } from '../lookup/get-invoice.js';
import type { Column } from '../output/render.js';
import { commandContext, positiveInt, type CommandContext } from './context.js';

const COLUMNS: Column<InvoiceDetail>[] = [
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

interface GetOptions {
  /** A URL from --cache, false from --no-cache, undefined: REDIS_URL. */
  cache?: string | false;
  cacheTtl?: string;
  cacheRequired?: boolean;
  stats?: boolean;
  repeat?: string;
}

export async function run(rawId: string, opts: GetOptions, cmd: Command): Promise<void> {
  const id = parseInvoiceId(rawId);
  if (id === undefined) throw new UsageError(`invoice id must be a positive integer, got "${rawId}"`);
  const ttl = opts.cacheTtl === undefined ? DEFAULT_CACHE_TTL : positiveInt('--cache-ttl', opts.cacheTtl, { allowZero: true });
  if (ttl > MAX_TTL_SECONDS) throw new UsageError(`--cache-ttl must be at most ${MAX_TTL_SECONDS} seconds, got ${ttl}`);
  if (opts.repeat !== undefined && !opts.stats) throw new UsageError('--repeat goes with --stats');
  const repeat = opts.repeat === undefined ? DEFAULT_REPEAT : positiveInt('--repeat', opts.repeat);

  const ctx = commandContext(cmd);
  const url = opts.cache === false ? undefined : (opts.cache ?? ctx.redisUrl);
  const source = typeof opts.cache === 'string' ? '--cache' : 'REDIS_URL';
  // A malformed URL is a usage error (exit 2) even though an unreachable cache is only a warning.
  const endpoint = url === undefined ? undefined : parseRedisUrl(url, source);
  const useCache = endpoint !== undefined && ttl > 0;
  if (opts.cacheRequired && !useCache) {
    const why = opts.cache === false ? '--no-cache turns it off' : endpoint ? '--cache-ttl 0 turns it off' : 'give --cache URL or set REDIS_URL';
    throw new UsageError(`--cache-required needs a cache: ${why}`);
  }

  const rt = new ReadThrough({
    required: Boolean(opts.cacheRequired),
    onUnavailable: (err) => ctx.log.warn(`${err.message}; reading from PostgreSQL (--cache-required to fail instead)`),
  });
  let redisConnectMs: number | undefined;
  try {
    if (useCache) {
      await rt.open(async () => {
        // Loaded only when a cache is configured: `get` without one pays nothing for it.
        const { RedisInvoiceCache } = await import('../cache/redis-cache.js');
        const started = performance.now();
        const cache = await RedisInvoiceCache.open({ url: url!, source, ttlSeconds: ttl, scope: cacheScope(ctx.config.target, ctx.config.tables) });
        redisConnectMs = performance.now() - started;
        return cache;
      });
    } else if (endpoint) {
      ctx.log.debug('cache: not used (--cache-ttl 0)');
    }
    if (opts.stats) return await printStats(ctx, rt, id, repeat, { url: endpoint?.display, ttl, redisConnectMs });

    // PostgreSQL is loaded and connected only on a miss: a hit never touches it.
    const { invoice, outcome } = await rt.lookup(id, (id) => lookupInPostgres(ctx, id));
    ctx.log.debug(`cache: ${outcome}${rt.active ? ` (${endpoint?.display}, ttl ${ttl} s)` : ''}`);
    await ctx.printRows([invoice], COLUMNS, { single: true });
  } finally {
    await rt.close();
  }
}

async function lookupInPostgres(ctx: CommandContext, id: bigint): Promise<InvoiceDetail> {
  const { withClient } = await import('../db/client.js');
  return withClient(ctx, (client) => getInvoice(client, id, ctx.config.tables));
}

/** --stats: the invoice on stdout as usual, latencies on stderr (asked for, so shown even with --quiet). */
async function printStats(
  ctx: CommandContext,
  rt: ReadThrough,
  id: bigint,
  repeat: number,
  info: { url?: string; ttl: number; redisConnectMs?: number },
): Promise<void> {
  const { withClient } = await import('../db/client.js');
  const started = performance.now();
  let pgConnectMs = 0;
  const timings = await withClient(ctx, async (client) => {
    pgConnectMs = performance.now() - started;
    return measureLookups(rt, id, repeat, (id) => getInvoice(client, id, ctx.config.tables));
  });
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
  const connects = [info.redisConnectMs !== undefined ? `Redis ${info.redisConnectMs.toFixed(1)} ms` : '', `PostgreSQL ${pgConnectMs.toFixed(1)} ms`];
  out += `  connect     ${connects.filter(Boolean).join(', ')} (once per process)\n`;
  out += info.redisConnectMs !== undefined
    ? `cache: ${info.url}, ttl ${info.ttl} s${rt.active ? '' : ' (failed during the run: see the warning)'}\n`
    : `cache: none${info.url ? ` (${info.url} not in use)` : ' (--cache URL or REDIS_URL)'}\n`;
  process.stderr.write(out);
}
