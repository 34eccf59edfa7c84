// `invoices export --verify`: the lake's files, its manifest and PostgreSQL agree, per month,
// on row count and sum(amount), compared as exact strings.
import type { DbContext } from '../db/client.js';
import { withClient } from '../db/client.js';
import { queryRows, withDuckDb } from './duckdb.js';
import { registerLake, requireManifest } from './read.js';
import { describeTable } from '../table/describe.js';
import { monthStats } from './month-stats.js';

export interface MonthCheck {
  month: string;
  lake_rows: string;
  lake_sum: string;
  postgres_rows: string;
  postgres_sum: string;
  ok: boolean;
}

export interface VerifyResult {
  ok: boolean;
  watermark: string | null;
  months: MonthCheck[];
}

/**
 * Compares, per month, the lake files with the manifest and with PostgreSQL's rows below the
 * lake's watermark (what the lake should hold). A row deleted or changed since the export,
 * or a file tampered with, shows as a difference.
 */
export async function verifyLake(ctx: DbContext, dir: string): Promise<VerifyResult> {
  const manifest = requireManifest(dir);
  const lake = await withDuckDb(async (duck) => {
    await registerLake(duck, dir, manifest);
    const rows = await queryRows(duck, `SELECT month, count(*)::VARCHAR AS n, CAST(sum(amount) AS VARCHAR) AS s FROM invoices GROUP BY month`);
    return new Map(rows.map((r) => [String(r.month), { rows: String(r.n), sum: String(r.s) }]));
  });
  const pg = await withClient(ctx, async (client) => monthStats(client, await describeTable(client, ctx.config.tables), manifest.watermark ?? undefined));
  const months = [...new Set([...lake.keys(), ...pg.keys(), ...Object.keys(manifest.months)])].sort();
  const checks = months.map((month) => {
    const l = lake.get(month);
    const p = pg.get(month);
    const m = manifest.months[month];
    const lakeRows = l?.rows ?? '0';
    const lakeSum = l?.sum ?? '0';
    const pgRows = String(p?.rows ?? 0);
    const pgSum = p?.sum ?? '0';
    const manifestOk = m ? String(m.rows) === lakeRows && m.sum === lakeSum : !l;
    return { month, lake_rows: lakeRows, lake_sum: lakeSum, postgres_rows: pgRows, postgres_sum: pgSum, ok: manifestOk && lakeRows === pgRows && sameDecimal(lakeSum, pgSum) };
  });
  return { ok: checks.every((c) => c.ok), watermark: manifest.watermark, months: checks };
}

/** "0" and "0.00" are the same amount; otherwise both sides print the column's scale. */
function sameDecimal(a: string, b: string): boolean {
  const norm = (s: string) => (/^-?0(\.0*)?$/.test(s) ? '0' : s);
  return norm(a) === norm(b);
}
