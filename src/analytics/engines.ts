// The engines of `group`, in the order `--engine auto` tries them: each answers with identical
// numbers, or (under auto) passes saying why; the next one is then tried, and stderr gives the
// reasons. Asked for by name, an engine answers or fails with a usage error that says why.
// - duckdb: the Parquet lake plus what it does not hold yet (lake-engine.ts): the fastest scan;
// - totals: the monthly totals per customer (totals.ts), refreshed incrementally first, plus the
//   rows above their watermark read live in the same snapshot;
// - postgres: a GROUP BY on the live table over the window: always answers.
import path from 'node:path';
import type { Client, DbContext } from '../db/client.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { readManifest } from '../lake/manifest.js';
import { describeTarget } from '../lake/target.js';
import { untrackedAdvice, type SourceTable } from '../table/describe.js';
import { rangeCondition, xidLiteral } from '../table/watermark.js';
import { rawAggregate, type Dimension, type GroupRow, type RawRow } from './dimensions.js';
import { ensureWindow } from './totals-windows.js';
import { totalsAggregate, withFreshTotals, type RefreshResult, type TotalsBuildHook } from './totals.js';
import type { Window } from './window.js';

export interface GroupOptions {
  window: Window;
  /** A dimension's name (dimensions.ts). */
  by: string;
  top?: number;
  /** An engine's name, or auto. */
  engine: string;
  /** The lake directory (duckdb and auto). */
  lake: string;
  log?: Logger;
  /** Told when the monthly totals are built from scratch (first build, rebuild), for a live line. */
  onTotalsBuild?: TotalsBuildHook;
  /** Aborting it cancels the statement in flight on the server (a totals build rolls back whole). */
  signal?: AbortSignal;
}

export interface GroupResult {
  rows: GroupRow[];
  engine: EngineName;
  /** Why this engine answered, and how fresh its stored part was. */
  reason: string;
  /** duckdb and totals: rows read from PostgreSQL on top of the stored part. */
  deltaRows?: number;
  staleMonths?: string[];
  lakeExportedAt?: string;
  /** totals: what the refresh before the answer did. */
  refresh?: RefreshResult;
}

/** What an engine answers from: one connection, the table, the customers relation, the question. */
export interface EngineEnv {
  ctx: DbContext;
  client: Client;
  source: SourceTable;
  /** `(SELECT id, name[, the dimension's column] FROM customers)`. */
  customers: string;
  dim: Dimension;
  opts: GroupOptions;
  log: Logger;
}

export type EngineName = 'duckdb' | 'totals' | 'postgres';

export interface GroupEngine {
  name: EngineName;
  /** One line for --help. */
  help: string;
  /** Answers; under auto it may pass instead, saying why. */
  answer(env: EngineEnv, auto: boolean): Promise<GroupResult | { passes: string }>;
}

const limit = (top: number | undefined) => (top ? `LIMIT ${Math.trunc(top)}` : '');

const duckdb: GroupEngine = {
  name: 'duckdb',
  help: 'the lake plus what it does not hold yet, read from PostgreSQL in the same snapshot',
  async answer(env, auto) {
    const lakeDir = path.resolve(env.opts.lake);
    const manifest = readManifest(env.opts.lake);
    const origin = describeTarget(env.ctx);
    const passes = !manifest
      ? `no lake at ${lakeDir}`
      : manifest.source !== origin
        ? `the lake at ${lakeDir} comes from another database or table (${manifest.source})`
        : undefined;
    if (!auto && passes)
      throw new UsageError(
        !manifest
          ? `--engine duckdb needs a lake: none at ${lakeDir} (run \`invoices export\`)`
          : `the lake at ${lakeDir} was exported from ${manifest.source}, not ${origin}`,
      );
    if (passes) return { passes };
    // DuckDB is loaded only when there is a lake of this table to read.
    return (await import('./lake-engine.js')).lakeAnswer(env, manifest!, auto);
  },
};

const totals: GroupEngine = {
  name: 'totals',
  help: 'the monthly totals per customer, refreshed first, plus the rows above their watermark',
  async answer(env, auto) {
    const { client, source, dim, opts, log } = env;
    // Under auto, a table that cannot be tracked is passed over; this tool's own table gets its change log on the way (a database of an earlier version).
    if (auto && !source.incremental && source.tables.mapped) return { passes: untrackedAdvice(source) };
    const { window } = opts;
    try {
      const { refresh, value } = await withFreshTotals(
        client,
        source,
        log,
        async (watermark) => {
          const {
            rows: [{ n }],
          } = await client.query<{ n: string }>(
            `SELECT count(*)::text AS n FROM ${source.relation} WHERE created_xid >= ${xidLiteral(watermark)} AND ${rangeCondition(window.from, window.to)}`,
          );
          const live = Number(n);
          await ensureWindow(client, source, window, log);
          const top = dim.ranked ? opts.top : undefined;
          const { rows } = await client.query<RawRow>(
            dim.sql((party) => totalsAggregate(source, party, window, watermark, { live, top }), env.customers, limit(opts.top)),
          );
          return { rows, live };
        },
        { onBuild: opts.onTotalsBuild, signal: opts.signal },
      );
      const parts = [
        refresh.rebuilt
          ? `monthly totals computed from scratch (${refresh.rebuilt})`
          : `monthly totals refreshed from watermark ${refresh.previous} to ${refresh.watermark}: ${refresh.added} invoice(s) added`,
      ];
      if (refresh.recomputed.length)
        parts.push(`months ${refresh.recomputed.join(', ')} recomputed (${refresh.reasons.join('; ')} since the last refresh)`);
      parts.push(`${value.live} row(s) above the watermark read live`);
      return {
        rows: value.rows.map((r) => dim.row(r, source.amount.scale)),
        engine: 'totals',
        reason: parts.join('; '),
        deltaRows: value.live,
        staleMonths: refresh.recomputed,
        refresh,
      };
    } catch (err) {
      // auto: a role that may not create or write the totals still gets an answer, and is told why.
      const code = (err as { code?: string }).code;
      if (!auto || (code !== '42501' && code !== '25006')) throw err;
      const why = `the monthly totals cannot be refreshed (${(err as Error).message})`;
      log.warn(why);
      return { passes: why };
    }
  },
};

const postgres: GroupEngine = {
  name: 'postgres',
  help: 'a GROUP BY on the live table: the reference',
  async answer({ client, source, customers, dim, opts }, auto) {
    const agg = rawAggregate(source.relation, rangeCondition(opts.window.from, opts.window.to));
    const { rows } = await client.query<RawRow>(dim.sql(agg, customers, limit(opts.top)));
    return { rows: rows.map((r) => dim.row(r, source.amount.scale)), engine: 'postgres', reason: auto ? '' : 'asked for' };
  },
};

/** The engines, in the order auto tries them. */
export const GROUP_ENGINES: readonly GroupEngine[] = [duckdb, totals, postgres];

/** What auto does, for --help. */
export const AUTO_HELP = 'the first of these that can answer exactly and fresh; stderr says why the others could not';

/** --engine's values. */
export const ENGINES: readonly string[] = ['auto', ...GROUP_ENGINES.map((e) => e.name)];

/** The answer of the engine asked for, or under auto of the first that answers; the reasons of those passed over follow its own, the nearest first. */
export async function answerWith(env: EngineEnv): Promise<GroupResult> {
  const asked = GROUP_ENGINES.find((e) => e.name === env.opts.engine);
  if (asked) return (await asked.answer(env, false)) as GroupResult;
  const passed: string[] = [];
  for (const engine of GROUP_ENGINES) {
    const r = await engine.answer(env, true);
    if ('rows' in r) return { ...r, reason: [r.reason, ...passed.reverse()].filter(Boolean).join('; ') };
    passed.push(r.passes);
  }
  throw new Error('no engine answered'); // postgres always answers
}
