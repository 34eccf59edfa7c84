import type { Command } from 'commander';
import type { Column } from '../output/render.js';
import { commandContext, defaultLake, LAKE_DEFAULT } from './context.js';

export function command(program: Command): Command {
  return program
    .command('query')
    .description('DuckDB SQL over the lake (invoices, customers) and side files: CSV, JSON, NDJSON, Parquet, text')
    .argument('<sql>', 'one SQL statement (DuckDB dialect)')
    .option(
      '--with <name=path>',
      'a side source as a table NAME (repeatable); format from the extension or NAME=PATH:format',
      (v: string, acc: string[] = []) => [...acc, v],
    )
    .option('--lake <dir>', `the lake written by \`invoices export\` (default: ${LAKE_DEFAULT})`)
    .option(
      '--unsafe-files',
      "let the SQL read and write any file this user can (COPY ... TO, read_csv('/any/path'), ATTACH); default: only the lake and the --with files, read-only",
    )
    .addHelpText(
      'after',
      `
Examples:
  $ invoices query "SELECT month, count(*), sum(amount) FROM invoices GROUP BY ALL ORDER BY 1"
  $ invoices query "SELECT c.segment, sum(i.amount) FROM invoices i JOIN crm c ON c.customer_id = i.issuer_id GROUP BY ALL" --with crm=fixtures/crm.csv
  $ invoices query "SELECT line_number, line FROM notes WHERE line ILIKE '%overdue%'" --with notes=fixtures/notes.txt

Formats: .csv, .json (nested objects and arrays), .ndjson/.jsonl, .parquet, .txt/.log (columns line_number, line).
DuckDB may read the lake and the --with files only, and writes no file (COPY ... TO, EXPORT, ATTACH
are refused, exit 2), unless --unsafe-files.`,
    )
    .hook('preAction', defaultLake('--lake'))
    .action(run);
}

interface QueryOptions {
  with?: string[];
  lake: string;
  unsafeFiles?: boolean;
}

export async function run(sql: string, opts: QueryOptions, cmd: Command): Promise<void> {
  const [{ runQuery }, { parseSource }] = await Promise.all([import('../analytics/query.js'), import('../analytics/sources.js')]);
  const sources = (opts.with ?? []).map((s) => parseSource(s));
  const ctx = await commandContext(cmd);
  if (opts.unsafeFiles) ctx.log.warn('--unsafe-files: the SQL may read and write any file this user can');
  const r = await runQuery(opts.lake, sql, sources, ctx.log, { unsafeFiles: opts.unsafeFiles });
  ctx.log.info(`${r.rows.length} row(s)`);
  const columns: Column<Record<string, unknown>>[] = r.columns.map((c) => ({ key: c.name, kind: c.kind }));
  // Nested values (JSON objects and arrays) stay structured in JSON output, and print as JSON text elsewhere.
  const rows =
    ctx.format === 'json'
      ? r.rows
      : r.rows.map((row) =>
          Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v !== null && typeof v === 'object' ? JSON.stringify(v) : v])),
        );
  await ctx.printRows(rows, columns);
}
