// The lake as a folder export owns: which names in it are ours, whether a folder may become a
// lake, and what export recorded about each file it wrote (size, mtime, sha256).
import { createHash } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
} from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { MANIFEST, type FileInfo } from './manifest.js';

/** Hidden names of ours at the lake's root (Spark, Hive and Trino skip names starting with `.` or `_`). */
export const STAGING = '.invoices-staging';
export const JOURNAL = '.invoices-journal.json';

/** Names at the lake's root that export made: its own, and leftovers of earlier versions. */
export function oursAtRoot(name: string): boolean {
  return name === MANIFEST || name.startsWith('.invoices-') || earlierLeftover(name) !== undefined;
}

/**
 * Leftovers of earlier versions of export (a month or customers staged or set aside, a named
 * pipe), with the pid that made them: `.tmp-customers-123`, `.old-customers-123`,
 * `.copy-123-ab12cd.pipe`, `_manifest.json.tmp-123` at the root; `.tmp-month=2025-01-123` and
 * `.old-month=2025-01-123` under invoices/. undefined: not such a name.
 */
export function earlierLeftover(name: string): number | undefined {
  const m =
    /^(?:\.(?:tmp|old)-customers-(\d+)|\.copy-(\d+)-[a-z0-9]+\.pipe|_manifest\.json\.tmp-(\d+)|\.(?:tmp|old)-month=\d{4}-\d{2}-(\d+))$/.exec(
      name,
    );
  return m ? Number(m[1] ?? m[2] ?? m[3] ?? m[4]) : undefined;
}

/**
 * What in `dir` export did not make: names other than its own, and folders `invoices` and
 * `customers` holding anything but empty month folders and leftovers of ours. Empty: the folder
 * may become a lake.
 */
export function foreignEntries(dir: string): string[] {
  const foreign: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (oursAtRoot(name)) continue;
    const full = path.join(dir, name);
    if ((name === 'invoices' || name === 'customers') && isDir(full)) {
      const inner = readdirSync(full).filter(
        (n) =>
          !(
            earlierLeftover(n) !== undefined ||
            (name === 'invoices' &&
              /^month=\d{4}-\d{2}$/.test(n) &&
              isDir(path.join(full, n)) &&
              readdirSync(path.join(full, n)).length === 0)
          ),
      );
      foreign.push(...inner.sort().map((n) => `${name}/${n}`));
      continue;
    }
    foreign.push(name);
  }
  return foreign;
}

function isDir(p: string): boolean {
  try {
    return lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Checks `--out` before any work and returns it absolute: an existing lake (it has a manifest,
 * or the journal of an export that stopped), a new folder (created) or an empty one. A regular
 * file, a folder that cannot be written, or a non-empty folder that is not a lake is a usage
 * error, one line saying what to do.
 */
export function prepareLakeDir(out: string): string {
  const abs = path.resolve(out);
  const choose = 'choose a new or empty folder for the lake (or an existing lake)';
  let st;
  try {
    st = statSync(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new UsageError(`--out ${abs}: ${blockingFile(abs)} is a file, not a folder: ${choose}`);
    if (code !== 'ENOENT')
      throw new UsageError(`--out ${abs}: cannot use it (${code ?? (err as Error).message}): ${choose}`, { cause: err });
    createFolder(abs, choose);
    return abs;
  }
  if (!st.isDirectory()) throw new UsageError(`--out ${abs} is ${kindOf(st)}, not a folder: ${choose}`);
  try {
    accessSync(abs, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new UsageError(
      `--out ${abs} is not writable (${(err as NodeJS.ErrnoException).code ?? 'permission denied'}): choose a folder you can write to`,
      { cause: err },
    );
  }
  if (existsSync(path.join(abs, MANIFEST)) || existsSync(path.join(abs, JOURNAL))) return abs;
  const foreign = foreignEntries(abs);
  if (foreign.length) {
    const shown = foreign.slice(0, 3).join(', ') + (foreign.length > 3 ? `, ... (${foreign.length} entries)` : '');
    throw new UsageError(
      `--out ${abs} is not an invoices lake (it has no ${MANIFEST}) and is not empty (${shown}): export writes only into a new or empty folder, or a lake it made; choose another --out`,
    );
  }
  return abs;
}

function createFolder(abs: string, choose: string): void {
  // The nearest existing ancestor says why a folder cannot be made, in one line.
  let parent = path.dirname(abs);
  while (!existsSync(parent) && path.dirname(parent) !== parent) parent = path.dirname(parent);
  try {
    if (!statSync(parent).isDirectory()) throw new UsageError(`--out ${abs}: ${parent} is a file, not a folder: ${choose}`);
    accessSync(parent, constants.W_OK | constants.X_OK);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(
      `--out ${abs}: cannot create it, ${parent} is not writable (${(err as NodeJS.ErrnoException).code ?? 'permission denied'}): choose a folder you can write to`,
      { cause: err },
    );
  }
  // One level at a time: Node's recursive mkdir loops for good on paths like /proc/x/lake, whose
  // parent accepts the access check but never takes a new folder.
  const missing: string[] = [];
  for (let p = abs; p !== parent; p = path.dirname(p)) missing.unshift(p);
  for (const dir of missing) {
    try {
      mkdirSync(dir);
    } catch (err) {
      throw new UsageError(
        `--out ${abs}: cannot create ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): choose a folder you can write to`,
        { cause: err },
      );
    }
  }
}

/** The first component of `p` that exists and is not a folder. */
function blockingFile(p: string): string {
  const parts = p.split(path.sep);
  for (let i = 2; i <= parts.length; i++) {
    const q = parts.slice(0, i).join(path.sep);
    try {
      if (!statSync(q).isDirectory()) return q;
    } catch {
      break;
    }
  }
  return p;
}

function kindOf(st: ReturnType<typeof statSync>): string {
  if (!st) return 'not a folder';
  if (st.isFile()) return 'a regular file';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a folder';
}

/** Size, mtime and sha256 of a file just written, flushed to disk on the way (the commit renames it next). */
export function describeFile(file: string): FileInfo {
  const fd = openSync(file, 'r');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
    fsyncSync(fd);
    const st = fstatSync(fd);
    return { size: st.size, sha256: hash.digest('hex'), mtimeMs: st.mtimeMs };
  } finally {
    closeSync(fd);
  }
}

/** sha256 of a file, hex. */
export function sha256File(file: string): string {
  return describeFile(file).sha256;
}

export interface FileCheck {
  /** Relative to the lake root. */
  file: string;
  /** What is wrong, for messages ("file ... is missing"); undefined: as recorded. */
  problem?: string;
  kind?: 'missing' | 'changed';
  /** The file is as recorded but its mtime or ctime moved (copied, restored; its hash was compared): the info to record now. */
  touched?: FileInfo;
}

/**
 * Whether a file the manifest lists is there as export wrote it. `hash`: always compare the
 * sha256 (--verify); otherwise only size and mtime, and the hash when the mtime moved. A v1
 * manifest recorded nothing: only that the file is there.
 */
export function checkFile(dir: string, file: string, info: FileInfo | undefined, hash: boolean): FileCheck {
  let st;
  try {
    st = statSync(path.resolve(dir, file));
  } catch {
    return { file, kind: 'missing', problem: `file ${file} is missing` };
  }
  if (!st.isFile()) return { file, kind: 'changed', problem: `file ${file} is not a regular file` };
  if (!info) return { file };
  if (st.size !== info.size)
    return { file, kind: 'changed', problem: `file ${file} changed (${st.size} bytes, ${info.size} when written)` };
  // Written in place, the file's ctime moves (utimes cannot set it back): then, or when the mtime moved, the hash decides.
  if (!hash && st.mtimeMs === info.mtimeMs && (info.ctimeMs === undefined || st.ctimeMs === info.ctimeMs)) return { file };
  const now = describeFile(path.resolve(dir, file));
  if (now.sha256 !== info.sha256)
    return { file, kind: 'changed', problem: `file ${file} changed (its sha256 is not the one recorded when it was written)` };
  const ctimeMs = statSync(path.resolve(dir, file)).ctimeMs;
  return now.mtimeMs === info.mtimeMs && ctimeMs === info.ctimeMs ? { file } : { file, touched: { ...now, ctimeMs } };
}
