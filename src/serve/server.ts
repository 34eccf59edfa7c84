// `invoices serve` as a value: start it (pools, cache, application, listening socket), then
// close it, draining the requests in flight within a bound.
import type { ConnectionSettings } from '../config.js';
import { InvoicesError } from '../errors.js';
import type { Logger } from '../log.js';
import type { InvoiceDetail } from '../lookup/get-invoice.js';
import type { TableMap } from '../tables.js';
import { buildApp } from './app.js';
import { ServeCache, type ServeCacheOptions } from './cache.js';
import { PoolGate } from './load.js';
import { ServeMetrics } from './metrics.js';
import { createPools } from './pools.js';
import type { Client } from '../db/client.js';
import { measureLag } from '../db/replica.js';

export interface ServeOptions {
  settings: ConnectionSettings;
  /** A hot standby's settings: reads go there, and what it misses to the primary. */
  replicaSettings?: ConnectionSettings;
  tables: TableMap;
  host: string;
  port: number;
  poolSize: number;
  maxQueue: number;
  /** statement_timeout and the longest wait for a connection, ms. */
  timeoutMs: number;
  token?: string;
  cache?: ServeCacheOptions;
  renderInvoice(invoice: InvoiceDetail): string;
  log: Logger;
}

export interface RunningServer {
  /** http://host:port actually bound (--port 0: the port picked). */
  url: string;
  /** Requests received and not yet answered. */
  inFlight(): number;
  /** Stops accepting, lets the requests in flight finish (at most drainMs), then closes everything; drained: none was cut. */
  close(drainMs: number): Promise<{ drained: boolean }>;
}

/** Starts the server; resolves once it listens. */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const pools = createPools(opts.settings, opts.replicaSettings, {
    size: opts.poolSize,
    timeoutMs: opts.timeoutMs,
    onError: (err) => opts.log.warn(`database connection lost: ${err.message}`),
  });
  const gate = new PoolGate(pools.readPool, opts.maxQueue);
  // Behind a standby: the lookups it misses (an invoice it has not replayed yet) are asked of the primary.
  const primary = pools.onReplica ? new PoolGate(pools.writePool, opts.maxQueue) : undefined;
  const cache = opts.cache ? new ServeCache(opts.cache, (fn) => gate.run(fn)) : undefined;
  // Behind a standby: its lag, sampled every 5 s for /metrics (a failed sample keeps the last one).
  let replicaLag: number | null | undefined;
  const sampleLag = async () => {
    replicaLag = (await measureLag(pools.readPool as unknown as Client).catch(() => undefined))?.lag.seconds ?? replicaLag;
  };
  const lagTimer = pools.onReplica ? setInterval(() => void sampleLag(), 5000) : undefined;
  lagTimer?.unref();
  if (pools.onReplica) await sampleLag();
  const metrics = new ServeMetrics(pools.readPool, {
    cacheActive: () => cache?.rt.active ?? false,
    shed: () => gate.stats.shed,
    replicaLag: () => replicaLag,
  });
  let closing = false;
  const app = buildApp({
    gate,
    primary,
    tables: opts.tables,
    cache,
    metrics,
    renderInvoice: opts.renderInvoice,
    token: opts.token,
    log: opts.log,
    requestTimeoutMs: 30_000,
    closing: () => closing,
  });
  try {
    await cache?.start();
    await app.listen({ host: opts.host, port: opts.port });
  } catch (err) {
    await cache?.close();
    clearInterval(lagTimer);
    await pools.end();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      const why =
        code === 'EADDRINUSE'
          ? 'the address is already in use'
          : code === 'EACCES'
            ? 'permission denied (a port below 1024 needs privileges)'
            : 'no interface has that address';
      throw new InvoicesError(`cannot listen on ${opts.host}:${opts.port}: ${why}`, { cause: err });
    }
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    inFlight: () => metrics.inFlight,
    async close(drainMs) {
      closing = true;
      let drained = true;
      const timer = setTimeout(() => {
        drained = false;
        app.server.closeAllConnections();
      }, drainMs);
      try {
        await app.close();
      } finally {
        clearTimeout(timer);
        await cache?.close();
        clearInterval(lagTimer);
        await pools.end();
      }
      return { drained };
    },
  };
}
