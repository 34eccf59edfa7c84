// The data routes: invoices by id (one, many), an invoice's risk, a customer's summary. Each
// validates its parameters (400), then reads through the gate (pool + load shedding) with the
// same core functions the commands use: src/lookup, src/cache, src/risk, src/analytics.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { customerSummary } from '../analytics/customer-summary.js';
import { monthWindow } from '../analytics/window.js';
import { NotFoundError, UsageError } from '../errors.js';
import { parseInvoiceId, type InvoiceDetail } from '../lookup/get-invoice.js';
import { findMany, findOne, type Runner } from '../lookup/routed.js';
import { MODEL_VERSION } from '../risk/model.js';
import { currentScore } from '../risk/report.js';
import type { TableMap } from '../tables.js';
import type { ServeCache } from './cache.js';
import { httpError } from './errors.js';
import type { PoolGate } from './load.js';
import type { ServeMetrics } from './metrics.js';

/** Most ids in one GET /invoices?ids=...: one statement (and one MGET) per request, as `get` batches. */
export const MAX_BATCH = 1000;
/** Default and largest `months` of a customer summary. */
export const DEFAULT_MONTHS = 6;
export const MAX_MONTHS = 1200;

export interface RouteDeps {
  gate: PoolGate;
  /** When reads go to a standby: the primary, asked for the invoices the standby does not have (yet). */
  primary?: PoolGate;
  tables: TableMap;
  cache?: ServeCache;
  metrics: ServeMetrics;
  /** An invoice as `invoices get --json` prints it (compact JSON text). */
  renderInvoice(invoice: InvoiceDetail): string;
}

/** A JSON number when exact, else the decimal string (as `get --json` prints ids). */
const jsonId = (id: string) => (Number.isSafeInteger(Number(id)) ? Number(id) : id);

function invoiceId(raw: string): bigint {
  const id = parseInvoiceId(raw);
  if (id === undefined || raw.trim() !== raw)
    throw httpError('invalid_id', `invoice id must be a positive integer, got "${raw.slice(0, 40)}"`);
  return id;
}

const sendJsonText = (reply: FastifyReply, text: string) => reply.type('application/json; charset=utf-8').send(text);

export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { gate, primary, tables, cache, metrics } = deps;
  const rt = cache?.rt;
  // Behind a standby, what it misses (not replayed yet) is asked of the primary (src/lookup/routed.ts).
  const read: Runner = (fn) => gate.run(fn);
  const behind: Runner | undefined = primary && ((fn) => primary.run(fn));
  const lookupOne = (id: bigint) => findOne(read, behind, id, tables);
  const lookupMany = (ids: bigint[]) => findMany(read, behind, ids, tables);

  app.get<{ Params: { id: string } }>('/invoices/:id', async (req, reply) => {
    const id = invoiceId(req.params.id);
    const load = lookupOne;
    let invoice: InvoiceDetail;
    try {
      if (cache && rt) {
        await cache.ready();
        const r = await rt.lookup(id, load);
        if (r.outcome !== 'off') metrics.cache.inc({ outcome: r.outcome });
        invoice = r.invoice;
      } else invoice = await load(id);
    } catch (err) {
      if (err instanceof NotFoundError) throw httpError('invoice_not_found', `invoice ${id} not found`);
      throw err;
    }
    return sendJsonText(reply, deps.renderInvoice(invoice));
  });

  app.get<{ Querystring: { ids?: string | string[] } }>('/invoices', async (req, reply) => {
    const raw = req.query.ids;
    if (raw === undefined || raw === '') throw httpError('invalid_parameter', 'give the invoice ids: /invoices?ids=1,2,3');
    const parts = (Array.isArray(raw) ? raw.join(',') : raw).split(',');
    if (parts.length > MAX_BATCH) throw httpError('too_many_ids', `at most ${MAX_BATCH} ids per request, got ${parts.length}`);
    const ids = parts.map(invoiceId);
    const load = lookupMany;
    let invoices: Array<InvoiceDetail | undefined>;
    if (cache && rt) {
      await cache.ready();
      const r = await rt.lookupMany(ids, load);
      if (rt.active || r.hits) {
        metrics.cache.inc({ outcome: 'hit' }, r.hits);
        metrics.cache.inc({ outcome: 'miss' }, r.misses);
      }
      invoices = r.invoices;
    } else {
      const found = await load(ids);
      invoices = ids.map((id) => found.get(id.toString()));
    }
    const missing = [...new Set(ids.filter((_, i) => !invoices[i]).map(String))].map(jsonId);
    // The documents as `get --json` prints them, in the order asked (duplicates kept), as `get 1 2 3` does.
    const docs = invoices.filter((i): i is InvoiceDetail => i !== undefined).map(deps.renderInvoice);
    return sendJsonText(reply, `{"invoices":[${docs.join(',')}],"not_found":${JSON.stringify(missing)}}`);
  });

  app.get<{ Params: { id: string }; Querystring: { model?: string } }>('/invoices/:id/risk', async (req) => {
    const id = invoiceId(req.params.id);
    const model = req.query.model ?? MODEL_VERSION;
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(model))
      throw httpError('invalid_parameter', `model must be a model version such as ${MODEL_VERSION}`);
    try {
      const s = await gate.run((client) => currentScore(client, tables, id.toString(), model));
      return {
        invoice_id: jsonId(s.invoiceId),
        model_version: s.model,
        status: s.status,
        score: s.score,
        level: s.level,
        reasons: s.reasons,
        scored_at: s.scoredAt,
        error: s.error,
      };
    } catch (err) {
      if (err instanceof NotFoundError) throw httpError('invoice_not_found', `invoice ${id} not found`);
      if (err instanceof UsageError && /risk init/.test(err.message))
        throw httpError('risk_not_set_up', 'the risk scorer is not set up on this database (`invoices risk init`, then `invoices risk`)');
      throw err;
    }
  });

  app.get<{ Params: { id: string }; Querystring: { months?: string; as_of?: string } }>('/customers/:id/summary', async (req) => {
    const raw = req.params.id;
    const id = parseInvoiceId(raw);
    if (id === undefined) throw httpError('invalid_id', `customer id must be a positive integer, got "${raw.slice(0, 40)}"`);
    const monthsText = req.query.months ?? String(DEFAULT_MONTHS);
    const months = /^\d{1,4}$/.test(monthsText) ? Number(monthsText) : Number.NaN;
    if (!(months >= 1 && months <= MAX_MONTHS))
      throw httpError('invalid_parameter', `months must be an integer from 1 to ${MAX_MONTHS}, got "${monthsText.slice(0, 20)}"`);
    const asOf = req.query.as_of ?? new Date().toISOString().slice(0, 10);
    let window: ReturnType<typeof monthWindow>;
    try {
      window = monthWindow(months, asOf);
    } catch {
      throw httpError('invalid_parameter', `as_of must be a date YYYY-MM-DD, got "${asOf.slice(0, 20)}"`);
    }
    try {
      const row = await gate.run((client) => customerSummary(client, tables, id, window));
      return {
        customer_id: jsonId(String(row.customer_id)),
        name: row.name,
        months,
        as_of: asOf,
        from: window.from,
        to: window.to,
        invoices: Number(row.invoices),
        issued: row.issued,
        received: row.received,
        net: row.net,
        total: row.total,
        average: row.average,
      };
    } catch (err) {
      if (err instanceof NotFoundError) throw httpError('customer_not_found', `customer ${id} not found`);
      throw err;
    }
  });
}
