// Errors as HTTP answers: `{ "error": { "code", "message" } }` with a stable code, never a stack
// trace. Database trouble is a 503 with Retry-After; its details go to the server's log only.
import { DatabaseError, InvoicesError, NotFoundError } from '../errors.js';

/** An answer that is an error: status, stable code, one-line message, seconds for Retry-After (503). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The codes a client may see, with their status (openapi.ts and docs/commands/serve.md list them). */
export const ERROR_CODES = {
  invalid_id: 400,
  invalid_parameter: 400,
  too_many_ids: 400,
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  invoice_not_found: 404,
  customer_not_found: 404,
  risk_not_set_up: 409,
  internal: 500,
  database_unavailable: 503,
  overloaded: 503,
  timeout: 503,
  shutting_down: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An HttpError of a known code. */
export function httpError(code: ErrorCode, message: string, retryAfter?: number): HttpError {
  return new HttpError(ERROR_CODES[code], code, message, retryAfter ?? (ERROR_CODES[code] === 503 ? 1 : undefined));
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

/**
 * Whether a connection that failed with this error should be dropped rather than reused: the
 * server went away, or the table's layout changed under its prepared statements.
 */
export function isBrokenConnection(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? '';
  const message = (err as Error)?.message ?? '';
  return (
    CONNECTION_CODES.has(code) ||
    /^(08|57P|42P01|0A000|26000)/.test(code) ||
    /Connection terminated|not queryable|Client has encountered a connection error/.test(message)
  );
}

/** The answer for any error a route throws (`internal` for what is not expected: the log gets it). */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const e = err as { code?: string; message?: string; statusCode?: number; cause?: unknown };
  if (err instanceof NotFoundError) return httpError('not_found', err.message);
  // Fastify's own client errors (a body too large, a malformed URL, ...).
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
    return new HttpError(e.statusCode, 'bad_request', e.message ?? 'bad request');
  const code = e?.code ?? (e?.cause as { code?: string } | undefined)?.code ?? '';
  if (code === '57014') return httpError('timeout', 'the database did not answer in time (statement timeout)');
  if (/timeout exceeded when trying to connect/.test(e?.message ?? ''))
    return httpError('timeout', 'no database connection became free in time', 1);
  if (code === '53300') return httpError('overloaded', 'the database has no connection to spare', 1);
  if (err instanceof DatabaseError || isBrokenConnection(err)) return httpError('database_unavailable', 'the database is unavailable', 5);
  if (err instanceof InvoicesError && /run `invoices init`/.test(err.message))
    return httpError('database_unavailable', 'the database has no invoices schema (run `invoices init`)', 30);
  return httpError('internal', 'internal error');
}

/** The JSON body of an error answer. */
export function errorBody(err: HttpError): { error: { code: string; message: string } } {
  return { error: { code: err.code, message: err.message } };
}
