// Reading the lake back: views over the files its manifest lists (never a glob, so a month
// being replaced or a stray temp file is never read twice).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { type DuckDBConnection, sqlString } from './duckdb.js';
import { readManifest, type Manifest } from './manifest.js';

/** The lake's manifest, or a usage error saying how to create one. */
export function requireManifest(dir: string): Manifest {
  const m = readManifest(dir);
  if (!m) throw new UsageError(`no lake at ${path.resolve(dir)} (no _manifest.json): run \`invoices export --out ${dir}\` first`);
  return m;
}

/** A DuckDB list literal of the absolute paths of the given lake files (checked to exist). */
export function fileList(dir: string, files: string[]): string {
  const abs = files.map((f) => path.resolve(dir, f));
  for (const f of abs) if (!existsSync(f)) throw new UsageError(`the lake is missing ${f}: run \`invoices export --out ${dir}\` (it writes again the months whose files are missing)`);
  return `[${abs.map(sqlString).join(', ')}]`;
}

/**
 * Creates views `invoices` (with its hive column `month`) and `customers` over the lake.
 * A lake with no months yet gets an empty `invoices` view of the same shape.
 */
export async function registerLake(duck: DuckDBConnection, dir: string, manifest = requireManifest(dir)): Promise<Manifest> {
  const files = Object.values(manifest.months).flatMap((m) => m.files);
  const decimal = `DECIMAL(${manifest.amount.precision},${manifest.amount.scale})`;
  if (files.length) {
    await duck.run(
      `CREATE OR REPLACE VIEW invoices AS SELECT invoice_id, issue_date, issuer_id, receiver_id, amount, month
         FROM read_parquet(${fileList(dir, files)}, hive_partitioning = true, hive_types = {'month': VARCHAR})`,
    );
  } else {
    await duck.run(
      `CREATE OR REPLACE VIEW invoices AS SELECT NULL::BIGINT AS invoice_id, NULL::TIMESTAMPTZ AS issue_date, NULL::BIGINT AS issuer_id,
              NULL::BIGINT AS receiver_id, NULL::${decimal} AS amount, NULL::VARCHAR AS month WHERE false`,
    );
  }
  await duck.run(`CREATE OR REPLACE VIEW customers AS SELECT * FROM read_parquet(${fileList(dir, manifest.customers.files)})`);
  return manifest;
}
