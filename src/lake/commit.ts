// How an export puts its files into the lake without ever touching a file it did not write,
// and so that a crash at any instant leaves a lake the next export repairs:
//
// 1. every new file is written under a new name (part-<exportId>.parquet) in the staging
//    folder `.invoices-staging/`;
// 2. the journal `.invoices-journal.json` (atomic) lists the files about to be added and the
//    previous manifest's files to remove after the commit;
// 3. the new files are renamed into place (invoices/month=M/, customers/): readers follow the
//    manifest, which does not list them yet;
// 4. `_manifest.json` is replaced (temp + rename): the commit point;
// 5. the previous manifest's files are removed (a month folder too once it is empty), then the
//    journal.
//
// The next export (under the lock) finds a journal only after a crash between 2 and 5: when the
// manifest carries the journal's exportId the export committed and its cleanup is finished;
// otherwise its added files are removed (rolled back). Either way only files listed in the
// journal, which are ours, are removed, never one the current manifest lists.
import {
  fsyncSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InvoicesError } from '../errors.js';
import type { Logger } from '../log.js';
import { earlierLeftover, JOURNAL, STAGING } from './files.js';
import { manifestFiles, readManifest, readManifestText, recordedInfo, writeFileAtomic, writeManifest, type Manifest } from './manifest.js';

export interface Journal {
  version: 1;
  exportId: string;
  pid: number;
  host: string;
  startedAt: string;
  /** Files this export renames into place (relative to the lake root). */
  added: string[];
  /** Files of the previous manifest to remove once this export's manifest is committed. */
  removed: string[];
}

/** A file staged for the commit: `staged` (absolute, in the staging folder) goes to `file` (relative to the lake root). */
export interface StagedFile {
  staged: string;
  file: string;
}

/** Thrown when the manifest moved under an export: nothing of it was committed. */
export class ManifestMovedError extends InvoicesError {}

/**
 * Commits an export: see the file comment. `startedFrom`: the manifest's text when the export
 * began (undefined: there was none); the manifest must still be that one, else nothing is
 * committed (exit 1). `remove`: the previous manifest's files that the new one no longer lists.
 */
export function commitExport(
  dir: string,
  manifest: Manifest,
  staged: StagedFile[],
  remove: string[],
  startedFrom: string | undefined,
  log: Logger,
): void {
  const exportId = manifest.exportId!;
  assertUnmoved(dir, startedFrom);
  const journal: Journal = {
    version: 1,
    exportId,
    pid: process.pid,
    host: os.hostname(),
    startedAt: new Date().toISOString(),
    added: staged.map((s) => s.file),
    removed: remove,
  };
  writeFileAtomic(path.join(dir, JOURNAL), path.join(dir, STAGING, JOURNAL), JSON.stringify(journal, null, 2) + '\n');
  const placed: string[] = [];
  try {
    for (const s of staged) {
      const to = path.join(dir, s.file);
      mkdirSync(path.dirname(to), { recursive: true });
      // A name of this export only; never rename over anything.
      if (existsSync(to)) throw new InvoicesError(`${s.file} is already in the lake: not overwriting it`);
      renameSync(s.staged, to);
      placed.push(s.file);
      // The ctime in place (the rename set it): a later write in place moves it.
      const info = recordedInfo(manifest, s.file);
      if (info) info.ctimeMs = statSync(to).ctimeMs;
    }
    for (const d of new Set(staged.map((s) => path.dirname(path.join(dir, s.file))))) fsyncDir(d);
    assertUnmoved(dir, startedFrom);
    writeManifest(dir, manifest, path.join(dir, STAGING));
  } catch (err) {
    // Not committed: take back what was put in place (what cannot be is left to the journal).
    try {
      removeFiles(dir, placed, new Set());
      unlinkSync(path.join(dir, JOURNAL));
    } catch {
      // the next export rolls back with the journal
    }
    throw err;
  }
  fsyncDir(dir);
  // Committed: the previous export's files go, then the journal.
  removeFiles(dir, remove, new Set(manifestFiles(manifest)));
  unlinkSync(path.join(dir, JOURNAL));
  log.debug(`export ${exportId}: committed ${staged.length} file(s), removed ${remove.length}`);
}

function assertUnmoved(dir: string, startedFrom: string | undefined): void {
  if (readManifestText(dir) !== startedFrom) {
    throw new ManifestMovedError(
      `the lake's ${'_manifest.json'} changed while this export ran (another export that did not take the lock?): nothing was committed; run \`invoices export\` again`,
    );
  }
}

/**
 * Finishes or rolls back an export that stopped after writing its journal, and removes what
 * stopped exports left (the staging folder, leftovers of earlier versions whose process is
 * gone). Run under the lock, before anything else. Returns what it did, for messages.
 */
export function recoverLake(dir: string, log: Logger): void {
  const journalFile = path.join(dir, JOURNAL);
  if (existsSync(journalFile)) {
    let journal: Journal | undefined;
    try {
      journal = JSON.parse(readFileSync(journalFile, 'utf8')) as Journal;
      if (typeof journal.exportId !== 'string' || !Array.isArray(journal.added) || !Array.isArray(journal.removed)) journal = undefined;
    } catch {
      journal = undefined;
    }
    const manifest = readManifest(dir);
    const listed = new Set(manifest ? manifestFiles(manifest) : []);
    if (!journal) {
      log.warn(`${JOURNAL} in ${dir} is unreadable: removing it; files it named, if any, stay until --full`);
    } else if (manifest?.exportId === journal.exportId) {
      const n = removeFiles(dir, journal.removed, listed);
      log.warn(
        `the export ${journal.exportId} (pid ${journal.pid} on ${journal.host}) stopped after its commit: finished removing ${n} file(s) of the export before it`,
      );
    } else {
      const n = removeFiles(dir, journal.added, listed);
      log.warn(
        `the export ${journal.exportId} (pid ${journal.pid} on ${journal.host}) stopped before its commit: rolled back, removed ${n} file(s) it had put in place; the lake is as of the export before it`,
      );
    }
    unlinkSync(journalFile);
  }
  rmSync(path.join(dir, STAGING), { recursive: true, force: true });
  removeEarlierLeftovers(dir, log);
}

/** Removes the given lake files (not those in `keep`), and each month folder they leave empty. Returns how many were there. */
function removeFiles(dir: string, files: string[], keep: Set<string>): number {
  let n = 0;
  const folders = new Set<string>();
  for (const f of files) {
    if (keep.has(f) || !isLakeFile(f)) continue;
    const abs = path.join(dir, f);
    try {
      unlinkSync(abs);
      n++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    folders.add(path.dirname(abs));
  }
  for (const d of folders) {
    if (!/^month=\d{4}-\d{2}$/.test(path.basename(d))) continue; // customers/ and invoices/ stay
    try {
      rmdirSync(d); // only when empty: a file of the user's keeps it
    } catch {
      // not empty, or gone
    }
  }
  return n;
}

/** A path export writes: invoices/month=YYYY-MM/<name>.parquet or customers/<name>.parquet, nothing outside. */
function isLakeFile(f: string): boolean {
  return /^(invoices\/month=\d{4}-\d{2}|customers)\/[^/]+\.parquet$/.test(f) && !f.includes('..');
}

/** Leftovers of earlier versions (staged or set-aside months, pipes) whose process is gone: their names are ours. */
function removeEarlierLeftovers(dir: string, log: Logger): void {
  const found: string[] = [];
  for (const [folder, names] of [
    [dir, safeList(dir)],
    [path.join(dir, 'invoices'), safeList(path.join(dir, 'invoices'))],
  ] as const) {
    for (const name of names) {
      const pid = earlierLeftover(name);
      if (pid === undefined || alive(pid)) continue;
      rmSync(path.join(folder, name), { recursive: true, force: true });
      found.push(path.relative(dir, path.join(folder, name)));
    }
  }
  if (found.length)
    log.info(
      `removed ${found.length} leftover(s) of an earlier export that stopped: ${found.slice(0, 3).join(', ')}${found.length > 3 ? ', ...' : ''}`,
    );
}

function safeList(d: string): string[] {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function fsyncDir(d: string): void {
  try {
    const fd = openSync(d, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // best effort (some filesystems refuse fsync on a folder)
  }
}
