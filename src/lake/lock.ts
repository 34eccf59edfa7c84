// One writer per lake: `.invoices-lock` in the lake, created with O_EXCL ('wx'), holding who
// took it (pid, host, start). A second export waits, saying once who holds it, or refuses
// with --no-wait; a holder that is no longer alive on this host left a stale lock, which is
// removed with a message. Released on every way out: normal end, error, Ctrl-C (the command's
// abort signal ends the work, `finally` releases) and process.exit (an 'exit' hook).
import { closeSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { InterruptedError, InvoicesError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';

export const LOCK = '.invoices-lock';

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  since: string;
  /** What holds it: export, verify. */
  command: string;
  /** /proc/<pid>/stat start time (Linux): a pid reused by another process is not the holder. */
  start?: string;
  token: string;
}

export interface LakeLock {
  holder: LockHolder;
  release(): void;
}

export interface LockOptions {
  /** Wait for the holder (default) or refuse at once (exit 1). */
  wait: boolean;
  log: Logger;
  signal?: AbortSignal;
  command: string;
  pollMs?: number;
  /** A reader (verify): when the folder is not writable, go on without the lock (undefined) instead of failing. */
  optional?: boolean;
}

/** Takes the lake's lock, waiting for (or refusing) another holder; see the file comment. */
export async function acquireLakeLock(dir: string, opts: LockOptions & { optional: true }): Promise<LakeLock | undefined>;
export async function acquireLakeLock(dir: string, opts: LockOptions): Promise<LakeLock>;
export async function acquireLakeLock(dir: string, opts: LockOptions): Promise<LakeLock | undefined> {
  const file = path.join(dir, LOCK);
  const holder: LockHolder = {
    pid: process.pid,
    host: os.hostname(),
    since: new Date().toISOString(),
    command: opts.command,
    start: processStart(process.pid),
    token: randomBytes(8).toString('hex'),
  };
  const text = JSON.stringify(holder) + '\n';
  let announced = false;
  for (;;) {
    if (opts.signal?.aborted) throw new InterruptedError(`interrupted while waiting for the lock of ${dir}: nothing was changed`);
    const created = tryCreate(file, text, opts.optional);
    if (created === 'unwritable') return undefined;
    if (created) return held(file, holder, text);
    const current = readHolder(file);
    if (current === undefined) continue; // released in between: try again at once
    const stale = staleReason(current, file);
    if (stale) {
      let broken: boolean;
      try {
        broken = breakLock(file, current.raw);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (opts.optional && (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')) return undefined;
        throw new UsageError(
          `cannot remove the stale lock ${file} (${stale}; ${code ?? (err as Error).message}): the lake's folder must be writable`,
          { cause: err },
        );
      }
      if (broken) opts.log.warn(`removed a stale lock of ${dir}: ${stale}`);
      continue;
    }
    const who = current.holder ? describeHolder(current.holder) : 'an export that is starting';
    if (!opts.wait) {
      throw new InvoicesError(`the lake at ${dir} is locked by ${who}: try again when it ends, or run without --no-wait to wait for it`);
    }
    if (!announced) {
      opts.log.warn(`the lake at ${dir} is locked by ${who}: waiting for it to finish (Ctrl-C to give up)`);
      announced = true;
    }
    await sleep(opts.pollMs ?? 200, opts.signal);
  }
}

/** "export pid 123 on host h, since 2026-01-01T00:00:00.000Z" */
export function describeHolder(h: LockHolder): string {
  return `${h.command ?? 'export'} pid ${h.pid} on host ${h.host}, since ${h.since}`;
}

function tryCreate(file: string, text: string, optional?: boolean): boolean | 'unwritable' {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (optional && (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')) return 'unwritable';
    throw new UsageError(`cannot create the lock file ${file} (${code ?? (err as Error).message}): the lake's folder must be writable`, {
      cause: err,
    });
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return true;
}

function held(file: string, holder: LockHolder, text: string): LakeLock {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.removeListener('exit', release);
    // Only our own lock: one broken as stale and taken by another process stays theirs.
    try {
      if (readFileSync(file, 'utf8') === text) unlinkSync(file);
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return { holder, release };
}

function readHolder(file: string): { raw: string; holder?: LockHolder; mtimeMs: number } | undefined {
  try {
    const raw = readFileSync(file, 'utf8');
    const mtimeMs = statSync(file).mtimeMs;
    try {
      const h = JSON.parse(raw) as LockHolder;
      return { raw, holder: typeof h?.pid === 'number' && typeof h.host === 'string' ? h : undefined, mtimeMs };
    } catch {
      return { raw, mtimeMs };
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Why the lock is stale (its holder is gone), or undefined while it may still be held. */
function staleReason(l: { holder?: LockHolder; mtimeMs: number }, file: string): string | undefined {
  if (!l.holder) {
    // Created but never written: the writer died between the two (the write follows at once).
    return Date.now() - l.mtimeMs > 10_000 ? `${path.basename(file)} was left empty or unreadable by a run that stopped` : undefined;
  }
  const h = l.holder;
  if (h.host !== os.hostname()) return undefined; // another host: cannot tell, wait for it
  if (isAlive(h.pid, h.start)) return undefined;
  return `${describeHolder(h)} is no longer running`;
}

function isAlive(pid: number, start?: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  // The pid exists (or belongs to another user): the holder unless it was reused since.
  const now = processStart(pid);
  return !(start && now && now !== start);
}

/** A process's start time in clock ticks since boot (Linux /proc), or undefined. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the command name (which may hold spaces and parentheses).
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Removes a stale lock whose contents are `raw`: it is renamed aside first, so that of two
 * processes breaking it at once, one does, and a lock taken meanwhile by a third is put back.
 */
function breakLock(file: string, raw: string): boolean {
  const aside = `${file}.stale-${process.pid}-${randomBytes(3).toString('hex')}`;
  try {
    renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    if (readFileSync(aside, 'utf8') === raw) return true;
    try {
      linkSync(aside, file); // not the stale one: give it back unless a new lock is there already
    } catch {
      // a new lock was taken: the one set aside was released by then, or is stale in turn
    }
    return false;
  } finally {
    try {
      unlinkSync(aside);
    } catch {
      // gone
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
