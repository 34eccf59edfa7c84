// The HTTP application: hooks (token, metrics, the request log line, draining), the error and
// not-found answers, and the operational routes (/healthz, /readyz, /metrics, /openapi.json);
// the data routes are in routes.ts. Knows nothing of terminals: it logs through a Logger.
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../log.js';
import { errorBody, httpError, toHttpError } from './errors.js';
import { openApiDocument } from './openapi.js';
import { registerRoutes, type RouteDeps } from './routes.js';

/** Routes that answer without the token: a load balancer or an orchestrator probes them. */
const OPEN_ROUTES = new Set(['/healthz', '/readyz']);

export interface AppOptions extends RouteDeps {
  /** A bearer token every route but /healthz and /readyz requires; none: no authentication. */
  token?: string;
  log: Logger;
  /** Longest time to receive a whole request (slow clients), ms. */
  requestTimeoutMs: number;
  /** True once the server is draining: new requests get 503 shutting_down. */
  closing(): boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    startedAt: bigint;
  }
}

/** The token check: both sides hashed first, so lengths match and nothing leaks through timing. */
export function tokenMatcher(token: string): (header: string | undefined) => boolean {
  const want = createHash('sha256').update(token).digest();
  return (header) => {
    const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
    const got = createHash('sha256')
      .update(m ? m[1].trim() : '')
      .digest();
    return timingSafeEqual(want, got) && m !== null;
  };
}

/** The application, ready to listen. */
export function buildApp(opts: AppOptions): FastifyInstance {
  const { metrics, gate, log } = opts;
  const app = Fastify({
    logger: false,
    requestTimeout: opts.requestTimeoutMs,
    // Draining answers 503 in the JSON shape below, not Fastify's own.
    return503OnClosing: false,
    // Idle keep-alive connections are closed at once when draining; busy ones after their answer (Connection: close below).
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 200 },
  });
  const authorized = opts.token ? tokenMatcher(opts.token) : undefined;

  app.decorateRequest('startedAt', 0n);
  app.addHook('onRequest', async (req, reply) => {
    req.startedAt = process.hrtime.bigint();
    metrics.inFlight++;
    // 'close' comes once per response, answered or not (onResponse misses a client that went away first: counted as 499).
    reply.raw.once('close', () => {
      metrics.inFlight--;
      const route = req.routeOptions.url ?? 'unmatched';
      const status = reply.raw.writableFinished ? String(reply.statusCode) : '499';
      const seconds = Number(process.hrtime.bigint() - req.startedAt) / 1e9;
      metrics.requests.inc({ route, method: req.method, status });
      metrics.latency.observe({ route }, seconds);
      log.debug(`${req.method} ${req.url} ${status} ${(seconds * 1000).toFixed(1)} ms`);
    });
    if (opts.closing()) {
      reply.header('connection', 'close');
      throw httpError('shutting_down', 'the server is shutting down', 1);
    }
    if (authorized && !OPEN_ROUTES.has(req.routeOptions.url ?? '') && !authorized(req.headers.authorization)) {
      reply.header('www-authenticate', 'Bearer');
      throw httpError('unauthorized', 'a valid bearer token is required (Authorization: Bearer <token>)');
    }
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    if (opts.closing()) reply.header('connection', 'close');
    return payload;
  });

  app.setErrorHandler((err, _req, reply) => {
    const e = toHttpError(err);
    if (e.code === 'internal') log.warn(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    else if (e.code === 'database_unavailable' || e.code === 'timeout')
      log.warn(`${e.code}: ${err instanceof Error ? err.message : String(err)}`);
    metrics.errors.inc({ code: e.code });
    if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter));
    return reply.status(e.status).send(errorBody(e));
  });
  app.setNotFoundHandler((req, reply) => {
    metrics.errors.inc({ code: 'not_found' });
    return reply.status(404).send(errorBody(httpError('not_found', `no route ${req.method} ${req.url.split('?')[0].slice(0, 100)}`)));
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async () => {
    await gate.run((client) => client.query('SELECT 1'));
    return { status: 'ready' };
  });
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(metrics.render()));
  const openapi = JSON.stringify(openApiDocument());
  app.get('/openapi.json', async (_req, reply) => reply.type('application/json; charset=utf-8').send(openapi));

  registerRoutes(app, opts);
  return app;
}
