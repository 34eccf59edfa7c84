// _manifest.json: what the lake holds, per month, and up to which transaction. It marks the
// folder as a lake that export owns, and it is the commit point of every export: written last
// and atomically (temp file + rename), so a reader sees either the previous export or this one.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import type { Lineage } from '../table/lineage.js';

export const MANIFEST = '_manifest.json';
/** 2: files named per export (part-<exportId>.parquet) with their size and sha256, and the exportId. 1 is still read. */
export const MANIFEST_VERSION = 2;
const READABLE_VERSIONS = [1, 2];

/** What export recorded about a file it wrote (v2): a plain export compares size and mtime, --verify the hash. */
export interface FileInfo {
  size: number;
  sha256: string;
  mtimeMs: number;
  /** The inode's change time once in place: any write changes it, and utimes cannot set it back. */
  ctimeMs?: number;
}

export interface MonthEntry {
  /** Paths relative to the lake root, e.g. invoices/month=2026-01/part-<exportId>.parquet (one per month). */
  files: string[];
  /** Per file of `files` (v2). */
  fileInfo?: Record<string, FileInfo>;
  rows: number;
  /** sum(amount) as an exact decimal string. */
  sum: string;
  /** The watermark of the export that wrote this month (null: a table without created_xid). */
  watermark: string | null;
  exportedAt: string;
}

export interface Manifest {
  version: number;
  /** The export that committed this manifest (v2); also in the names of the files it wrote. */
  exportId?: string;
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
  customers: { files: string[]; fileInfo?: Record<string, FileInfo>; rows: number; exportedAt: string; stamp?: string };
  /** The invoices table and column mapping the lake was exported from. */
  sourceKey?: string;
  /** Which physical contents of that table (src/table/lineage.ts): a reload, truncate or restore since shows there. */
  lineage?: Lineage;
}

/** The manifest's text as it is on disk (compared byte for byte before a commit), or undefined when there is none. */
export function readManifestText(dir: string): string | undefined {
  try {
    return readFileSync(path.join(dir, MANIFEST), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'EISDIR')
      throw new UsageError(`${path.join(dir, MANIFEST)} is a folder, not an invoices lake manifest: choose another folder for the lake`);
    throw new UsageError(`cannot read ${path.join(dir, MANIFEST)} (${code ?? (err as Error).message})`, { cause: err });
  }
}

/** Parses a manifest's text (version 1 or 2); a usage error saying what to do when it is not one. */
export function parseManifest(text: string, file: string): Manifest {
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: delete the lake and run \`invoices export --full\``, { cause: err });
  }
  if (
    !m ||
    !READABLE_VERSIONS.includes(m.version) ||
    (typeof m.watermark !== 'string' && m.watermark !== null) ||
    typeof m.months !== 'object' ||
    !m.customers
  ) {
    throw new UsageError(
      `${file} is not an invoices lake manifest (version ${READABLE_VERSIONS.join(' or ')}): delete the lake and run \`invoices export --full\``,
    );
  }
  return m;
}

/** The manifest of the lake at dir, or undefined when there is none. */
export function readManifest(dir: string): Manifest | undefined {
  const text = readManifestText(dir);
  return text === undefined ? undefined : parseManifest(text, path.join(dir, MANIFEST));
}

/** Every file a manifest lists (months and customers), relative to the lake root. */
export function manifestFiles(m: Manifest): string[] {
  return [...Object.values(m.months).flatMap((e) => e.files), ...m.customers.files];
}

/** What the manifest recorded about a file it lists (v2), or undefined (v1). */
export function recordedInfo(m: Manifest, file: string): FileInfo | undefined {
  for (const e of [...Object.values(m.months), m.customers]) if (e.fileInfo?.[file]) return e.fileInfo[file];
  return undefined;
}

/** Writes a file atomically and durably: `tmp` (a path of ours), fsync, rename over `file`. */
export function writeFileAtomic(file: string, tmp: string, text: string): void {
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/** Writes the manifest atomically: a temp file (in `tmpDir`, beside the lake by default), then rename: the commit point. */
export function writeManifest(dir: string, manifest: Manifest, tmpDir = dir): void {
  const file = path.join(dir, MANIFEST);
  const tmp = tmpDir === dir ? `${file}.tmp-${process.pid}` : path.join(tmpDir, MANIFEST);
  writeFileAtomic(file, tmp, JSON.stringify(manifest, null, 2) + '\n');
}

/** True when a manifest file is there (the folder is a lake, even one this version cannot read). */
export function hasManifest(dir: string): boolean {
  return existsSync(path.join(dir, MANIFEST));
}
