// _manifest.json: what the lake holds, per month, and up to which transaction. Written last
// and atomically (temp file + rename), so a reader sees either the previous export or this one.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import type { Lineage } from '../table/lineage.js';

export const MANIFEST = '_manifest.json';
export const MANIFEST_VERSION = 1;

export interface MonthEntry {
  /** Paths relative to the lake root, e.g. invoices/month=2026-01/part-0.parquet. */
  files: string[];
  rows: number;
  /** sum(amount) as an exact decimal string. */
  sum: string;
  /** The watermark of the export that wrote this month (null: a table without created_xid). */
  watermark: string | null;
  exportedAt: string;
}

export interface Manifest {
  version: number;
  /**
   * Every row inserted by a transaction with id < watermark (xid8) that was not deleted is in
   * the lake; rows of later transactions are not, and wait for the next export. Null when the
   * table has no created_xid: the lake is a full snapshot, with no watermark to read a delta from.
   */
  watermark: string | null;
  exportedAt: string;
  /** The database the lake was exported from (URL without password, or the embedded directory). */
  source: string;
  amount: { precision: number; scale: number };
  months: Record<string, MonthEntry>;
  /** stamp: customersStamp at export time (names in group are read from PostgreSQL when it moved). */
  customers: { files: string[]; rows: number; exportedAt: string; stamp?: string };
  /** The invoices table and column mapping the lake was exported from. */
  sourceKey?: string;
  /** Which physical contents of that table (src/table/lineage.ts): a reload, truncate or restore since shows there. */
  lineage?: Lineage;
}

/** The manifest of the lake at dir, or undefined when there is none. */
export function readManifest(dir: string): Manifest | undefined {
  const file = path.join(dir, MANIFEST);
  if (!existsSync(file)) return undefined;
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: delete the lake and run \`invoices export --full\``, { cause: err });
  }
  if (m.version !== MANIFEST_VERSION || (typeof m.watermark !== 'string' && m.watermark !== null) || typeof m.months !== 'object') {
    throw new UsageError(`${file} is not an invoices lake manifest (version ${MANIFEST_VERSION}): run \`invoices export --full\``);
  }
  return m;
}

/** Writes the manifest atomically: a temp file beside it, then rename. */
export function writeManifest(dir: string, manifest: Manifest): void {
  const file = path.join(dir, MANIFEST);
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(manifest, null, 2) + '\n');
  renameSync(tmp, file);
}
