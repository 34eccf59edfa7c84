import type { Command } from 'commander';
import { runQuery } from '../analytics/query.js';
import { parseSource } from '../analytics/sources.js';
import type { Column } from '../output/render.js';
import { commandContext } from './context.js';

interface QueryOptions {
  with?: string[];
  lake: string;
  unsafeFiles?: boolean;
}

export async function run(sql: string, opts: QueryOptions, cmd: Command): Promise<void> {
  const sources = (opts.with ?? []).map((s) => parseSource(s));
  const ctx = commandContext(cmd);
  if (opts.unsafeFiles) ctx.log.warn('--unsafe-files: the SQL may read and write any file this user can');
  const r = await runQuery(opts.lake, sql, sources, ctx.log, { unsafeFiles: opts.unsafeFiles });
  ctx.log.info(`${r.rows.length} row(s)`);
  const columns: Column<Record<string, unknown>>[] = r.columns.map((c) => ({ key: c.name, kind: c.kind }));
  // Nested values (JSON objects and arrays) stay structured in JSON output, and print as JSON text elsewhere.
  const rows = ctx.format === 'json' ? r.rows : r.rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v !== null && typeof v === 'object' ? JSON.stringify(v) : v])));
  await ctx.printRows(rows, columns);
}
