// The OpenAPI 3.1 description of `invoices serve`, written by hand (served at /openapi.json).
import { ERROR_CODES } from './errors.js';
import { DEFAULT_MONTHS, MAX_BATCH, MAX_MONTHS } from './routes.js';

const json = (schema: object) => ({ 'application/json': { schema } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const error = (description: string) => ({ description, content: json(ref('Error')) });
const unavailable = {
  description:
    'The database is down, unreachable or too slow, the queue for connections is full, or the server is draining (codes database_unavailable, overloaded, timeout, shutting_down).',
  headers: { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } },
  content: json(ref('Error')),
};
const common = {
  401: error('Missing or wrong bearer token (code unauthorized), when the server runs with --token-file.'),
  503: unavailable,
};
const idParam = (what: string) => ({
  name: 'id',
  in: 'path',
  required: true,
  description: `${what} id: a positive integer.`,
  schema: { type: 'string', pattern: '^[0-9]+$' },
});

/** The document. */
export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'invoices serve',
      version: '1',
      description:
        'Invoices by id, their risk scores and customer summaries over a PostgreSQL invoices table. Errors are JSON `{ "error": { "code", "message" } }` with a stable code.',
    },
    security: [{ bearer: [] }],
    paths: {
      '/invoices/{id}': {
        get: {
          summary: 'One invoice, the document of `invoices get <id> --json`.',
          parameters: [idParam('Invoice')],
          responses: {
            200: { description: 'The invoice.', content: json(ref('Invoice')) },
            400: error('Not a positive integer (invalid_id).'),
            404: error('No such invoice (invoice_not_found).'),
            ...common,
          },
        },
      },
      '/invoices': {
        get: {
          summary: `Many invoices by id, at most ${MAX_BATCH} per request, in the order given (duplicates kept).`,
          parameters: [
            {
              name: 'ids',
              in: 'query',
              required: true,
              description: 'Comma-separated invoice ids: ?ids=1,2,3',
              schema: { type: 'string' },
            },
          ],
          responses: {
            200: {
              description: 'The invoices found, and the ids not found.',
              content: json({
                type: 'object',
                required: ['invoices', 'not_found'],
                properties: { invoices: { type: 'array', items: ref('Invoice') }, not_found: { type: 'array', items: ref('Id') } },
              }),
            },
            400: error(
              `No ids (invalid_parameter), an id that is not a positive integer (invalid_id), more than ${MAX_BATCH} (too_many_ids).`,
            ),
            ...common,
          },
        },
      },
      '/invoices/{id}/risk': {
        get: {
          summary: "The invoice's stored risk score under a model version: scored, pending (not scored yet) or failed (a dead letter).",
          parameters: [
            idParam('Invoice'),
            {
              name: 'model',
              in: 'query',
              required: false,
              description: 'Model version (default: the current model).',
              schema: { type: 'string' },
            },
          ],
          responses: {
            200: { description: 'The score.', content: json(ref('Risk')) },
            400: error('Bad id or model (invalid_id, invalid_parameter).'),
            404: error('No such invoice (invoice_not_found).'),
            409: error('The risk scorer is not set up on this database (risk_not_set_up).'),
            ...common,
          },
        },
      },
      '/customers/{id}/summary': {
        get: {
          summary: "Issued, received and net over the last `months` calendar months: the customer's row of `invoices group --by customer`.",
          parameters: [
            idParam('Customer'),
            {
              name: 'months',
              in: 'query',
              required: false,
              description: `Calendar months ending with the month of as_of (default ${DEFAULT_MONTHS}, at most ${MAX_MONTHS}).`,
              schema: { type: 'integer', minimum: 1, maximum: MAX_MONTHS },
            },
            {
              name: 'as_of',
              in: 'query',
              required: false,
              description: 'YYYY-MM-DD, UTC (default: today).',
              schema: { type: 'string', format: 'date' },
            },
          ],
          responses: {
            200: { description: 'The summary.', content: json(ref('Summary')) },
            400: error('Bad id, months or as_of.'),
            404: error('No such customer (customer_not_found).'),
            ...common,
          },
        },
      },
      '/healthz': {
        get: {
          summary: 'Live: the process answers. No token needed.',
          security: [],
          responses: {
            200: { description: 'Live.', content: json({ type: 'object', properties: { status: { const: 'ok' } } }) },
            503: unavailable,
          },
        },
      },
      '/readyz': {
        get: {
          summary: 'Ready: the database answers. No token needed.',
          security: [],
          responses: {
            200: { description: 'Ready.', content: json({ type: 'object', properties: { status: { const: 'ready' } } }) },
            503: unavailable,
          },
        },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus text format: requests, latency, cache, pool.',
          responses: { 200: { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } }, ...common },
        },
      },
      '/openapi.json': {
        get: {
          summary: 'This document.',
          responses: { 200: { description: 'OpenAPI 3.1.', content: json({ type: 'object' }) }, ...common },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'Only when the server runs with --token-file.' } },
      schemas: {
        Id: {
          oneOf: [{ type: 'integer' }, { type: 'string', pattern: '^[0-9]+$' }],
          description: 'A JSON number when exact in a double, else a decimal string.',
        },
        Money: { type: 'string', pattern: '^-?[0-9]+(\\.[0-9]+)?$', description: 'An exact decimal, as PostgreSQL stores it.' },
        Invoice: {
          type: 'object',
          required: ['invoice_id', 'issue_date', 'issuer_id', 'issuer_name', 'receiver_id', 'receiver_name', 'amount'],
          properties: {
            invoice_id: ref('Id'),
            issue_date: { type: 'string', format: 'date-time', description: 'ISO 8601, UTC, microseconds.' },
            issuer_id: ref('Id'),
            issuer_name: { type: ['string', 'null'] },
            receiver_id: ref('Id'),
            receiver_name: { type: ['string', 'null'] },
            amount: ref('Money'),
          },
        },
        Risk: {
          type: 'object',
          required: ['invoice_id', 'model_version', 'status', 'score', 'level', 'reasons', 'scored_at', 'error'],
          properties: {
            invoice_id: ref('Id'),
            model_version: { type: 'string' },
            status: { enum: ['scored', 'pending', 'failed'] },
            score: { type: ['string', 'null'], description: '0 to 1, four decimals.' },
            level: { enum: ['low', 'medium', 'high', null] },
            reasons: { type: ['array', 'null'], items: { type: 'string' } },
            scored_at: { type: ['string', 'null'], format: 'date-time' },
            error: { type: ['string', 'null'], description: 'Why the model could not score it (failed).' },
          },
        },
        Summary: {
          type: 'object',
          required: ['customer_id', 'name', 'months', 'as_of', 'from', 'to', 'invoices', 'issued', 'received', 'net', 'total', 'average'],
          properties: {
            customer_id: ref('Id'),
            name: { type: ['string', 'null'] },
            months: { type: 'integer' },
            as_of: { type: 'string', format: 'date' },
            from: { type: 'string', format: 'date-time', description: 'Window start, inclusive.' },
            to: { type: 'string', format: 'date-time', description: 'Window end, exclusive.' },
            invoices: { type: 'integer', description: 'Invoices issued or received in the window.' },
            issued: ref('Money'),
            received: ref('Money'),
            net: ref('Money'),
            total: ref('Money'),
            average: { oneOf: [ref('Money'), { type: 'null' }] },
          },
        },
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: { code: { enum: Object.keys(ERROR_CODES) }, message: { type: 'string' } },
            },
          },
        },
      },
    },
  };
}
