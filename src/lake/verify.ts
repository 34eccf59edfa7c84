// `invoices export --verify`: the lake's files, its manifest and PostgreSQL agree. Each file
// the manifest lists is there with the size and sha256 recorded when it was written; per
// month, row count and sum(amount) of the files equal the manifest's and PostgreSQL's, compared
// as exact strings. Anything else is a failed check (exit 1), never a usage error.
import path from 'node:path';
import type { DbContext } from '../db/client.js';
import { withClient } from '../db/client.js';
import { InterruptedError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { queryRows, sqlString, withDuckDb } from './duckdb.js';
import { checkFile, type FileCheck } from './files.js';
import { acquireLakeLock } from './lock.js';
import { recordedInfo } from './manifest.js';
import { requireManifest } from './read.js';
import { describeTable } from '../table/describe.js';
import { monthStats } from './month-stats.js';

export interface MonthCheck {
  month: string;
  /** null: the month's file is missing, or changed and unreadable. */
  lake_rows: string | null;
  lake_sum: string | null;
  postgres_rows: string;
  postgres_sum: string;
  ok: boolean;
  /** The month's file is missing or is not the one written: what is wrong. */
  file?: 'missing' | 'changed';
  problem?: string;
}

export interface VerifyResult {
  ok: boolean;
  watermark: string | null;
  months: MonthCheck[];
  /** Files the manifest lists that are missing or changed (months and customers). */
  files: FileCheck[];
}

export interface VerifyOptions {
  signal?: AbortSignal;
  /** Wait for an export that holds the lake's lock (default), or refuse (exit 1). */
  wait?: boolean;
  log?: Logger;
}

/**
 * Compares the lake's files with what the manifest recorded, then per month with PostgreSQL's
 * rows below the lake's watermark (what the lake should hold). A row deleted or changed since
 * the export, or a file deleted or tampered with, shows as a difference. Takes the lake's lock
 * when it can (an export in progress removes the previous files once it commits).
 */
export async function verifyLake(ctx: DbContext, dir: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const log = opts.log ?? ctx.log ?? silentLogger;
  const abs = path.resolve(dir);
  requireManifest(abs);
  const lock = await acquireLakeLock(abs, { wait: opts.wait !== false, log, signal: opts.signal, command: 'verify', optional: true });
  try {
    const manifest = requireManifest(abs);
    const checks: FileCheck[] = [];
    const interrupted = () => {
      if (opts.signal?.aborted) throw new InterruptedError('verify interrupted: nothing was changed');
    };
    const monthOf = new Map<string, string>();
    for (const [m, e] of Object.entries(manifest.months)) for (const f of e.files) monthOf.set(f, m);
    for (const f of [...monthOf.keys(), ...manifest.customers.files]) {
      interrupted();
      checks.push(checkFile(abs, f, recordedInfo(manifest, f), true));
    }
    const bad = checks.filter((c) => c.problem);
    const badMonths = new Map(bad.filter((c) => monthOf.has(c.file)).map((c) => [monthOf.get(c.file)!, c]));
    const readable = [...monthOf.keys()].filter((f) => !badMonths.has(monthOf.get(f)!));
    const changedHolds = new Map<string, { rows: string; sum: string }>();
    interrupted();
    const lake = await withDuckDb(async (duck) => {
      const byMonth = async (files: string[]) => {
        if (!files.length) return [];
        const list = `[${files.map((f) => sqlString(path.resolve(abs, f))).join(', ')}]`;
        const rows = await queryRows(
          duck,
          `SELECT month, count(*)::VARCHAR AS n, CAST(sum(amount) AS VARCHAR) AS s
                                              FROM read_parquet(${list}, hive_partitioning = true, hive_types = {'month': VARCHAR}) GROUP BY month`,
        );
        return rows.map((r): [string, { rows: string; sum: string }] => [String(r.month), { rows: String(r.n), sum: String(r.s) }]);
      };
      const found = new Map(await byMonth(readable));
      // A changed file is still read when it can be, to show what it holds now.
      for (const c of badMonths.values()) {
        if (c.kind !== 'changed') continue;
        const r = await byMonth([c.file]).catch(() => undefined); // truncated, not Parquet: null
        if (r) changedHolds.set(monthOf.get(c.file)!, r[0]?.[1] ?? { rows: '0', sum: '0' });
      }
      return found;
    });
    interrupted();
    const pg = await withClient(ctx, async (client) =>
      monthStats(client, await describeTable(client, ctx.config.tables), manifest.watermark ?? undefined),
    );
    const months = [...new Set([...lake.keys(), ...pg.keys(), ...Object.keys(manifest.months)])].sort();
    const monthChecks = months.map((month): MonthCheck => {
      const l = lake.get(month);
      const p = pg.get(month);
      const m = manifest.months[month];
      const pgRows = String(p?.rows ?? 0);
      const pgSum = p?.sum ?? '0';
      const fileBad = badMonths.get(month);
      const holds = changedHolds.get(month);
      if (fileBad)
        return {
          month,
          lake_rows: holds?.rows ?? null,
          lake_sum: holds?.sum ?? null,
          postgres_rows: pgRows,
          postgres_sum: pgSum,
          ok: false,
          file: fileBad.kind,
          problem: fileBad.problem,
        };
      const lakeRows = l?.rows ?? '0';
      const lakeSum = l?.sum ?? '0';
      const manifestOk = m ? String(m.rows) === lakeRows && m.sum === lakeSum : !l;
      return {
        month,
        lake_rows: lakeRows,
        lake_sum: lakeSum,
        postgres_rows: pgRows,
        postgres_sum: pgSum,
        ok: manifestOk && lakeRows === pgRows && sameDecimal(lakeSum, pgSum),
      };
    });
    return { ok: !bad.length && monthChecks.every((c) => c.ok), watermark: manifest.watermark, months: monthChecks, files: bad };
  } finally {
    lock?.release();
  }
}

/** "0" and "0.00" are the same amount; otherwise both sides print the column's scale. */
function sameDecimal(a: string, b: string): boolean {
  const norm = (s: string) => (/^-?0(\.0*)?$/.test(s) ? '0' : s);
  return norm(a) === norm(b);
}
