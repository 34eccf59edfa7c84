import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { commandContext, positiveInt } from './context.js';
import { DEFAULT_CACHE_TTL } from './get.js';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8080;
export const DEFAULT_POOL_SIZE = 10;
export const DEFAULT_MAX_QUEUE = 100;
export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_DRAIN_SECONDS = 10;

export function command(program: Command): Command {
  return program
    .command('serve')
    .description('an HTTP API (JSON): invoices by id, their risk, customer summaries; health, readiness, metrics, OpenAPI')
    .option('--host <host>', `address to listen on (default: ${DEFAULT_HOST}; 0.0.0.0 for every interface)`)
    .option('--port <port>', `port to listen on (default: ${DEFAULT_PORT}; 0: a free one, printed on stderr)`)
    .option('--pool-size <n>', `PostgreSQL connections at most (default: ${DEFAULT_POOL_SIZE})`)
    .option(
      '--max-queue <n>',
      `requests that may wait for a connection; more are answered 503 + Retry-After at once (default: ${DEFAULT_MAX_QUEUE})`,
    )
    .option('--timeout <ms>', `statement_timeout of each query, and the longest wait for a connection (default: ${DEFAULT_TIMEOUT_MS})`)
    .option(
      '--drain-timeout <seconds>',
      `on SIGTERM or SIGINT, how long requests in flight may take to finish (default: ${DEFAULT_DRAIN_SECONDS})`,
    )
    .option('--token-file <path>', "require `Authorization: Bearer <the file's first line>` on every route but /healthz and /readyz")
    .option('--cache <url>', 'read invoices through this Redis (redis://host:port[/db], rediss:// for TLS; default: REDIS_URL)')
    .option('--no-cache', 'ignore REDIS_URL: read PostgreSQL only')
    .option(
      '--cache-ttl <seconds>',
      `entries expire after this long, so an update shows within it (default: ${DEFAULT_CACHE_TTL}; 0: no cache)`,
    )
    .addHelpText(
      'after',
      `
Routes (JSON; errors are {"error":{"code","message"}}; docs/commands/serve.md has them all):
  GET /invoices/:id                  the document of \`invoices get <id> --json\`
  GET /invoices?ids=1,2,3            many (at most 1000), in the order given, and the ids not found
  GET /invoices/:id/risk             the stored risk score, level, reasons and model version
  GET /customers/:id/summary?months=6&as_of=YYYY-MM-DD   issued, received, net: its row of \`group --by customer\`
  GET /healthz  /readyz  /metrics  /openapi.json

Examples:
  $ invoices serve                                       http://127.0.0.1:8080
  $ invoices serve --port 0                              a free port; the address is printed on stderr
  $ REDIS_URL=redis://localhost:6380 invoices serve      invoices read through Redis
  $ invoices serve --host 0.0.0.0 --token-file /etc/invoices/token --pool-size 20
  $ curl -s localhost:8080/invoices/42

SIGTERM or SIGINT: stops accepting, lets the requests in flight finish (at most --drain-timeout),
then exits 0, as a service manager expects of a server asked to stop (1 if requests had to be cut).
A second signal exits at once (1).`,
    )
    .action(run);
}

export interface ServeFlags {
  host?: string;
  port?: string;
  poolSize?: string;
  maxQueue?: string;
  timeout?: string;
  drainTimeout?: string;
  tokenFile?: string;
  cache?: string | false;
  cacheTtl?: string;
}

export async function run(opts: ServeFlags, cmd: Command): Promise<void> {
  const host = opts.host ?? DEFAULT_HOST;
  const port = opts.port === undefined ? DEFAULT_PORT : positiveInt('--port', opts.port, { allowZero: true });
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const poolSize = opts.poolSize === undefined ? DEFAULT_POOL_SIZE : positiveInt('--pool-size', opts.poolSize);
  const maxQueue = opts.maxQueue === undefined ? DEFAULT_MAX_QUEUE : positiveInt('--max-queue', opts.maxQueue, { allowZero: true });
  const timeoutMs = opts.timeout === undefined ? DEFAULT_TIMEOUT_MS : positiveInt('--timeout', opts.timeout);
  const drainMs =
    1000 *
    (opts.drainTimeout === undefined ? DEFAULT_DRAIN_SECONDS : positiveInt('--drain-timeout', opts.drainTimeout, { allowZero: true }));
  const token = opts.tokenFile === undefined ? undefined : await readToken(opts.tokenFile);
  const ctx = await commandContext(cmd);
  const [{ cacheSetup, COLUMNS }, { connectionSettings }, { readCacheStamp }, { renderRecordLine }, { startServer }] = await Promise.all([
    import('./get.js'),
    import('../db/client.js'),
    import('../cache/generation.js'),
    import('../output/render.js'),
    import('../serve/server.js'),
  ]);
  const { rt, useCache, openCache, endpoint, ttl } = await cacheSetup({ cache: opts.cache, cacheTtl: opts.cacheTtl }, ctx);
  const settings = await connectionSettings(ctx);
  // With replicas configured, reads go to the first usable one (chosen once, at the start: a
  // restart chooses again) and what it misses to the primary; else everything to the primary.
  let replicaSettings: Awaited<ReturnType<typeof connectionSettings>> | undefined;
  if (ctx.config.replicas?.length) {
    const { readServer } = await import('../db/replica.js');
    const route = await readServer(ctx, 'serve');
    if (route.on === 'replica') {
      replicaSettings = route.settings;
      ctx.log.info(`reads on the replica ${route.name}; what it has not replayed yet is asked of the primary`);
    }
  }
  const server = await startServer({
    settings,
    replicaSettings,
    tables: ctx.config.tables,
    host,
    port,
    poolSize,
    maxQueue,
    timeoutMs,
    token,
    cache: useCache
      ? { rt, open: openCache, readStamp: (withClient) => withClient((client) => readCacheStamp(client, ctx.config.tables)) }
      : undefined,
    renderInvoice: (invoice) => renderRecordLine(invoice, COLUMNS).trimEnd(),
    log: ctx.log,
  });
  // Always printed (also with --quiet): the address is what a caller of --port 0 needs.
  process.stderr.write(`invoices serve: listening on ${server.url}\n`);
  ctx.log.info(
    `database: ${ctx.config.target.source}; pool ${poolSize}, queue ${maxQueue}, timeout ${timeoutMs} ms; cache: ${useCache ? `${endpoint?.display}, ttl ${ttl} s${rt.active ? '' : ' (unavailable: retried in the background)'}` : 'none'}${token ? '; bearer token required' : ''}`,
  );

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  const force = () => {
    process.stderr.write('invoices serve: second signal: exiting at once\n');
    process.exit(1);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  ctx.log.info(`${signal}: draining ${server.inFlight()} request(s) in flight (at most ${drainMs / 1000} s)`);
  const { drained } = await server.close(drainMs);
  ctx.log.info(
    drained ? 'stopped: every request in flight was answered' : `stopped: requests still in flight after ${drainMs / 1000} s were cut`,
  );
  process.exitCode = drained ? 0 : 1;
}

/** The token: the file's first line, trimmed; a usage error when the file is missing or empty. */
async function readToken(file: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--token-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.split(/\r?\n/)[0].trim();
  if (!token) throw new UsageError(`--token-file: ${file} is empty (its first line is the token)`);
  return token;
}
