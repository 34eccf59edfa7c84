// Running the CLI as a child process that a test interrupts: wait for a line on stderr or a
// state on the server, send a signal, measure how long the process takes to exit.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { adminUrl, ROOT, tempDir, waitFor, withPg } from './helpers.js';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() at the exit. */
  at: number;
}

export interface Running {
  pid: number;
  stderr(): string;
  stdout(): string;
  /** Resolves once stderr matches (fails after the deadline, or if the process exits first). */
  waitForStderr(re: RegExp, deadlineMs?: number): Promise<void>;
  /** Sends the signal and resolves with the exit, and the milliseconds from the signal to it. */
  interrupt(sig?: NodeJS.Signals): Promise<Exit & { stopMs: number; stderr: string }>;
  exit: Promise<Exit>;
}

/** Starts `node bin/invoices.js ...args` on DATABASE_URL=url, in a clean environment and an empty folder. */
export function startCli(url: string, args: string[], env: Record<string, string> = {}): Running {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), ...args], {
    cwd: tempDir('cwd-'),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', TZ: 'UTC', DATABASE_URL: url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  let exited: Exit | undefined;
  const exit = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve((exited = { code, signal, at: performance.now() })));
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  void exit.finally(() => clearTimeout(killer));
  return {
    pid: child.pid!,
    stderr: () => stderr,
    stdout: () => stdout,
    async waitForStderr(re, deadlineMs = 60_000) {
      await waitFor(
        `stderr to match ${re} (stderr so far: ${stderr.slice(-400)})`,
        async () => {
          if (re.test(stderr)) return true;
          if (exited) throw new Error(`exited ${exited.code} before stderr matched ${re}: ${stderr.slice(-1500)}`);
          return false;
        },
        deadlineMs,
        10,
      );
    },
    async interrupt(sig = 'SIGINT') {
      if (exited) throw new Error(`already exited ${exited.code}: ${stderr.slice(-1500)}`);
      const sent = performance.now();
      child.kill(sig);
      const e = await exit;
      return { ...e, stopMs: Math.round(e.at - sent), stderr };
    },
    exit,
  };
}

/** The server processes of the CLI (application_name invoices...) still connected to this database. */
export async function cliBackends(database: string): Promise<Array<{ pid: number; state: string; query: string }>> {
  return withPg(
    adminUrl(),
    async (c) =>
      (
        await c.query(
          "SELECT pid, state, left(query, 80) AS query FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'invoices%'",
          [database],
        )
      ).rows,
  );
}

/** Waits until no server process of the CLI is left on the database; returns how long that took (ms). */
export async function noBackendLeft(database: string, deadlineMs = 3000): Promise<number> {
  const started = performance.now();
  await waitFor(`the CLI's server processes on ${database} to end`, async () => (await cliBackends(database)).length === 0, deadlineMs, 20);
  return Math.round(performance.now() - started);
}

/** Waits until a server process of the CLI is building an index on this database (pg_stat_progress_create_index). */
export async function indexBuildRunning(database: string, deadlineMs = 60_000): Promise<void> {
  await withPg(adminUrl(), (c) =>
    waitFor(
      `an index build on ${database}`,
      async () =>
        (
          await c.query(
            "SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_stat_activity a USING (pid) WHERE p.datname = $1 AND a.application_name LIKE 'invoices%'",
            [database],
          )
        ).rows.length > 0,
      deadlineMs,
      5,
    ),
  );
}

/** Waits until a server process of the CLI is running a statement that matches `like` (SQL LIKE) on this database. */
export async function statementRunning(database: string, like: string, deadlineMs = 60_000): Promise<void> {
  await withPg(adminUrl(), (c) =>
    waitFor(
      `a statement like ${like} on ${database}`,
      async () =>
        (
          await c.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'invoices%' AND state = 'active' AND query LIKE $2",
            [database, like],
          )
        ).rows.length > 0,
      deadlineMs,
      5,
    ),
  );
}

/** Stop times measured in this file, printed at the end (the report quotes them). */
export const stopTimes: Array<{ what: string; stopMs: number }> = [];
export function recordStop(what: string, stopMs: number): void {
  stopTimes.push({ what, stopMs });
  process.stdout.write(`stop time: ${what}: ${stopMs} ms\n`);
}
