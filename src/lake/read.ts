// Reading the lake back: views over the files its manifest lists (never a glob, so a month
// being replaced or a stray temp file is never read twice).
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { type DuckDBConnection, sqlString } from './duckdb.js';
import { manifestFiles, readManifest, recordedInfo, type Manifest } from './manifest.js';

/** The lake's manifest, or a usage error saying how to create one. */
export function requireManifest(dir: string): Manifest {
  const m = readManifest(dir);
  if (!m) throw new UsageError(`no lake at ${path.resolve(dir)} (no _manifest.json): run \`invoices export --out ${dir}\` first`);
  return m;
}

/** A DuckDB list literal of the absolute paths of the given lake files (checked to exist). */
export function fileList(dir: string, files: string[]): string {
  const abs = files.map((f) => path.resolve(dir, f));
  for (const f of abs)
    if (!existsSync(f))
      throw new UsageError(
        `the lake is missing ${f}: run \`invoices export --out ${dir}\` (it writes again the months whose files are missing)`,
      );
  return `[${abs.map(sqlString).join(', ')}]`;
}

/**
 * Why the lake cannot be read as its manifest says (a listed file missing, or not of the size
 * written), or undefined: a stat per file, for a reader choosing whether to use the lake at all
 * (group's auto). `--verify` compares the content hashes too.
 */
export function lakeFileProblem(dir: string, manifest: Manifest, files = manifestFiles(manifest)): string | undefined {
  for (const f of files) {
    let size: number;
    try {
      size = statSync(path.resolve(dir, f)).size;
    } catch {
      return `the lake at ${path.resolve(dir)} is missing ${f} (\`invoices export\` writes it again)`;
    }
    const info = recordedInfo(manifest, f);
    if (info && info.size !== size) return `the lake's ${f} is not the file written (\`invoices export\` writes it again)`;
  }
  return undefined;
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
