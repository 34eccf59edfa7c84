// Helpers for the risk scorer's integration tests: the CLI as a child process that can be
// signalled, polling with generous deadlines, counts that show "exactly once".
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { sourceId, sourceKey } from '../../src/table/describe.js';
import { DEFAULT_TABLES, type TableMap } from '../../src/tables.js';
import { ROOT, runCli, type CliResult } from './helpers.js';

/** A long-running `invoices ...` child: its output so far and its exit. */
export interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node bin/invoices.js ...args` with a clean environment (as runCli) without waiting for it. */
export function startCli(args: string[], env: Record<string, string>, cwd?: string): Child {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', TZ: 'UTC', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code, signal) => resolve({ code, signal }));
  });
  return { proc, stdout: () => out, stderr: () => err, exit };
}

/** The source_id the scorer stores for a table mapping (the default: this tool's public.invoices). */
export function sourceIdOf(tables: TableMap = DEFAULT_TABLES): string {
  return sourceId(sourceKey(tables));
}

/**
 * Score rows of a model (of one source when given): total, distinct invoices, invoices of the
 * table without a score made for their row (invoice_xid = created_xid), dead letters.
 */
export async function scoreCounts(
  c: pg.Client,
  model = 'v1',
  table = 'invoices',
  id = 'invoice_id',
  source?: string,
): Promise<{ scores: number; distinct: number; invoices: number; unscored: number; dead: number }> {
  const { rows } = await c.query(
    `SELECT (SELECT count(*) FROM risk_scores WHERE model_version = $1 AND ($2::bigint IS NULL OR source_id = $2))::int AS scores,
            (SELECT count(DISTINCT invoice_id) FROM risk_scores WHERE model_version = $1 AND ($2::bigint IS NULL OR source_id = $2))::int AS distinct,
            (SELECT count(*) FROM ${table})::int AS invoices,
            (SELECT count(*) FROM ${table} i WHERE NOT EXISTS (SELECT 1 FROM risk_scores s WHERE s.invoice_id = i.${id} AND s.invoice_xid = i.created_xid AND s.model_version = $1 AND ($2::bigint IS NULL OR s.source_id = $2)))::int AS unscored,
            (SELECT count(*) FROM risk_dead_letters WHERE model_version = $1 AND ($2::bigint IS NULL OR source_id = $2))::int AS dead`,
    [model, source ?? null],
  );
  return rows[0];
}

/**
 * Scores of one source and model against its table: invoices, scores, those made for a row of
 * the table now (joined on invoice id and created_xid), and stale ones (their row is gone).
 */
export async function currentScores(
  c: pg.Client,
  source: string,
  model = 'v1',
  table = 'invoices',
  id = 'invoice_id',
): Promise<{ invoices: number; scores: number; current: number; stale: number; dead: number }> {
  const { rows } = await c.query(
    `SELECT (SELECT count(*) FROM ${table})::int AS invoices,
            (SELECT count(*) FROM risk_scores WHERE source_id = $1 AND model_version = $2)::int AS scores,
            (SELECT count(*) FROM risk_scores s JOIN ${table} i ON i.${id} = s.invoice_id AND i.created_xid = s.invoice_xid WHERE s.source_id = $1 AND s.model_version = $2)::int AS current,
            (SELECT count(*) FROM risk_scores s WHERE s.source_id = $1 AND s.model_version = $2
                AND NOT EXISTS (SELECT 1 FROM ${table} i WHERE i.${id} = s.invoice_id AND i.created_xid = s.invoice_xid))::int AS stale,
            (SELECT count(*) FROM risk_dead_letters WHERE source_id = $1 AND model_version = $2)::int AS dead`,
    [source, model],
  );
  return rows[0];
}

export interface RunJson {
  source: string;
  model: string;
  scored: number;
  failed: number;
  already_scored: number;
  high: number;
  medium: number;
  low: number;
  batches: number;
  /** xid/invoice_id (formatCursor), null before the first row. */
  cursor: string | null;
}

/** `invoices risk --json ...`: the summary, failing loudly on another exit code. */
export async function riskRun(
  url: string,
  args: string[] = [],
  opts: { cwd?: string; expectCode?: number } = {},
): Promise<RunJson & { result: CliResult }> {
  const r = await runCli(['risk', '--json', ...args], { env: { DATABASE_URL: url }, cwd: opts.cwd });
  if (r.code !== (opts.expectCode ?? 0)) throw new Error(`risk ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return { ...(JSON.parse(r.stdout) as RunJson), result: r };
}

/** Inserts invoices (issuer, receiver, amount, issue date defaulting to now) in one statement; returns their ids. */
export async function insertInvoices(
  c: pg.Client,
  rows: { issuer: number; receiver: number; amount: string; at?: string }[],
  table = 'invoices',
): Promise<string[]> {
  const values = rows.map(
    (_, i) => `(coalesce($${4 * i + 4}::timestamptz, now()), $${4 * i + 1}::bigint, $${4 * i + 2}::bigint, $${4 * i + 3}::numeric)`,
  );
  const params = rows.flatMap((r) => [r.issuer, r.receiver, r.amount, r.at ?? null]);
  const { rows: ids } = await c.query<{ id: string }>(
    `INSERT INTO ${table} (issue_date, issuer_id, receiver_id, amount) VALUES ${values.join(', ')} RETURNING invoice_id::text AS id`,
    params,
  );
  return ids.map((r) => r.id);
}

/** A connected client the caller ends. */
export async function connectPg(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {}); // a terminated test connection must not crash the worker
  await c.connect();
  return c;
}
