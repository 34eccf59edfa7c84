// Use case 3, canned: invoice totals per attribute of a side source joined to customers
// (a CRM CSV's segment and region, a risk JSON's flags), and which keys matched nothing.
import { UsageError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { type DuckDBConnection, queryRows, sqlIdentifier, sqlString } from '../lake/duckdb.js';
import { readManifest } from '../lake/manifest.js';
import { average } from './decimal.js';
import { withAnalytics } from './query.js';
import type { SideSource } from './sources.js';
import type { Window } from './window.js';

export interface JoinOptions {
  lake: string;
  source: SideSource;
  /** Column of the side source (dotted for a nested field) and column of customers it matches. */
  on: { side: string; customers: string };
  /** Side attributes to group by: `col`, `struct.field`, `list[]` (one row per element). Default: every other top-level column. */
  by?: string[];
  /** Which party of an invoice the side row describes. */
  party: 'issuer' | 'receiver';
  window?: Window;
  /** How many unmatched keys to list. */
  sample?: number;
  log?: Logger;
}

export interface JoinRow {
  [attribute: string]: unknown;
  customers: string;
  invoices: string;
  total: string;
  average: string;
}

export interface Unmatched {
  count: number;
  sample: string[];
}

export interface JoinResult {
  attributes: string[];
  rows: JoinRow[];
  /** Side keys with no customer, customers with no side row; duplicate side keys. */
  unmatchedSideKeys: Unmatched;
  customersWithoutSide: Unmatched;
  duplicateSideKeys: Unmatched;
  sideRows: number;
}

interface Attr {
  label: string;
  expr: string;
  unnest: boolean;
}

/** `a.b.c` -> "a"."b"."c" with every part checked; `x[]` marks a list to unnest. */
function columnPath(spec: string, what: string): { path: string; unnest: boolean; top: string } {
  const unnest = spec.endsWith('[]');
  const parts = spec.replace(/\[\]$/, '').split('.');
  const quoted = parts.map((p) => sqlIdentifier(p, what));
  return { path: quoted.join('.'), unnest, top: parts[0] };
}

/** Parses `--on SIDE=CUSTOMERS` (or just SIDE, matched to customers.id). */
export function parseOn(spec: string): { side: string; customers: string } {
  const [side, customers = 'id', ...rest] = spec.split('=');
  if (!side || rest.length || !customers)
    throw new UsageError(`--on must be SIDE_COLUMN=CUSTOMERS_COLUMN (e.g. customer_id=id), got "${spec}"`);
  return { side, customers };
}

/** Totals per side attribute and the unmatched-keys report. */
export async function joinSide(opts: JoinOptions): Promise<JoinResult> {
  const log = opts.log ?? silentLogger;
  if (!readManifest(opts.lake))
    throw new UsageError(`join reads invoices from the lake, and there is none at ${opts.lake}: run \`invoices export\``);
  const name = sqlIdentifier(opts.source.name);
  const key = columnPath(opts.on.side, '--on column');
  const ckey = columnPath(opts.on.customers, '--on customers column');
  return withAnalytics(opts.lake, [opts.source], log, async (duck) => {
    const sideColumns = (await queryRows(duck, `SELECT column_name FROM (DESCRIBE ${name})`)).map((r) => String(r.column_name));
    const customerColumns = (await queryRows(duck, 'SELECT column_name FROM (DESCRIBE customers)')).map((r) => String(r.column_name));
    if (!sideColumns.includes(key.top))
      throw new UsageError(`${opts.source.name} has no column "${key.top}" (its columns: ${sideColumns.join(', ')})`);
    if (!customerColumns.includes(ckey.top))
      throw new UsageError(`customers has no column "${ckey.top}" (its columns: ${customerColumns.join(', ')})`);
    const bySpecs = opts.by?.length ? opts.by : sideColumns.filter((c) => c !== key.top);
    if (!bySpecs.length) throw new UsageError(`${opts.source.name} has no column to group by besides its key: give --by`);
    const attrs: Attr[] = bySpecs.map((spec) => {
      const p = columnPath(spec, '--by column');
      if (!sideColumns.includes(p.top))
        throw new UsageError(`${opts.source.name} has no column "${p.top}" (its columns: ${sideColumns.join(', ')})`);
      return { label: spec.replace(/\[\]$/, ''), expr: `m.${p.path}`, unnest: p.unnest };
    });
    if (attrs.filter((a) => a.unnest).length > 1) throw new UsageError('--by: one list attribute ([]) at a time');

    // Keys compare as text, so 36718, "36718" and 36718.0 are one key: a JSON column that mixes
    // numbers and strings reads as JSON values, whose text keeps the quotes of a string.
    const keyText = (expr: string) =>
      `regexp_replace(regexp_replace(trim(CAST(${expr} AS VARCHAR)), '^"(.*)"$', '\\1'), '^(-?[0-9]+)\\.0+$', '\\1')`;
    const sideKey = keyText(`s.${key.path}`);
    const custKey = keyText(`c.${ckey.path}`);
    const where = opts.window
      ? `WHERE issue_date >= TIMESTAMPTZ ${sqlString(opts.window.from)} AND issue_date < TIMESTAMPTZ ${sqlString(opts.window.to)}`
      : '';
    const aliases = attrs.map((_, i) => `a${i}`);
    const sql = `
      WITH m AS (SELECT s.*, c.id AS __cid FROM ${name} s JOIN customers c ON ${sideKey} = ${custKey}),
           x0 AS (SELECT __cid, ${attrs.map((a, i) => `${a.unnest ? `unnest(${a.expr})` : a.expr} AS ${aliases[i]}`).join(', ')} FROM m),
           -- A customer counts once per attribute value, however many side rows say so.
           x AS (SELECT DISTINCT * FROM x0),
           p AS (SELECT ${opts.party}_id AS id, count(*) AS n, sum(amount) AS s FROM invoices ${where} GROUP BY 1)
      SELECT ${aliases.map((a, i) => `${a} AS "${attrs[i].label}"`).join(', ')},
             count(DISTINCT x.__cid)::VARCHAR AS customers, coalesce(sum(p.n), 0)::VARCHAR AS invoices,
             CAST(coalesce(sum(p.s), 0) AS VARCHAR) AS total
        FROM x LEFT JOIN p ON p.id = x.__cid
       GROUP BY ${aliases.join(', ')}
       ORDER BY coalesce(sum(p.s), 0) DESC, ${aliases.map((a) => `${a} NULLS LAST`).join(', ')}`;
    const raw = await run(duck, sql);
    const scale = readManifest(opts.lake)!.amount.scale;
    const rows = raw.map((r) => ({ ...r, average: average(String(r.total), BigInt(String(r.invoices)), scale) })) as JoinRow[];
    const sample = opts.sample ?? 10;
    const unmatchedSideKeys = await unmatched(
      duck,
      `SELECT DISTINCT ${sideKey} AS k FROM ${name} s WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE ${custKey} = ${sideKey})`,
      sample,
    );
    const customersWithoutSide = await unmatched(
      duck,
      `SELECT ${custKey} AS k FROM customers c WHERE NOT EXISTS (SELECT 1 FROM ${name} s WHERE ${sideKey} = ${custKey})`,
      sample,
    );
    const duplicateSideKeys = await unmatched(
      duck,
      `SELECT ${sideKey} AS k FROM ${name} s WHERE ${sideKey} IS NOT NULL GROUP BY 1 HAVING count(*) > 1`,
      sample,
    );
    const sideRows = Number((await queryRows(duck, `SELECT count(*)::VARCHAR AS n FROM ${name}`))[0].n);
    return { attributes: attrs.map((a) => a.label), rows, unmatchedSideKeys, customersWithoutSide, duplicateSideKeys, sideRows };
  });
}

async function run(duck: DuckDBConnection, sql: string): Promise<Record<string, unknown>[]> {
  try {
    return await queryRows(duck, sql);
  } catch (err) {
    throw new UsageError(`join failed: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`, { cause: err });
  }
}

async function unmatched(duck: DuckDBConnection, sql: string, sample: number): Promise<Unmatched> {
  const [c] = await run(duck, `SELECT count(*)::VARCHAR AS n FROM (${sql})`);
  const rows = await run(duck, `SELECT k FROM (${sql}) ORDER BY TRY_CAST(k AS BIGINT) NULLS LAST, k LIMIT ${Math.trunc(sample)}`);
  return { count: Number(c.n), sample: rows.map((r) => (r.k === null ? 'NULL' : String(r.k))) };
}
