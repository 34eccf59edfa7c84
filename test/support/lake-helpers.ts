// Shared by the lake-*.test.ts files: the CLI as a child process we can stop, continue, kill
// or run under strace; what the lake holds (read from the files its manifest lists) against
// SQL; and the invariant every test ends on: the manifest matches the files exactly.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { expect } from 'vitest';
import { ROOT, runCli, tempDir, waitFor, withPg, type CliResult } from './helpers.js';

const CLI = path.join(ROOT, 'bin', 'invoices.js');

export interface LakeManifest {
  version: number;
  exportId?: string;
  watermark: string | null;
  exportedAt: string;
  months: Record<string, { files: string[]; fileInfo?: Record<string, { size: number; sha256: string }>; rows: number; sum: string }>;
  customers: { files: string[]; fileInfo?: Record<string, { size: number; sha256: string }>; rows: number };
}

export const readManifest = (lake: string): LakeManifest =>
  JSON.parse(readFileSync(path.join(lake, '_manifest.json'), 'utf8')) as LakeManifest;
export const manifestText = (lake: string): string => readFileSync(path.join(lake, '_manifest.json'), 'utf8');
export const listedFiles = (m: LakeManifest): string[] => [...Object.values(m.months).flatMap((e) => e.files), ...m.customers.files].sort();

/** A clean environment for the CLI, as runCli builds it. */
function cliEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? os.homedir(), TZ: 'UTC', ...extra };
}

let cwd: string | undefined;

export interface Running {
  child: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  done: Promise<CliResult>;
}

/** Starts `invoices ...args` (or `prefix... node bin/invoices.js ...args`, e.g. under strace) and returns at once. */
export function startCli(args: string[], env: Record<string, string>, prefix: string[] = []): Running {
  cwd ??= tempDir('lake-cwd-');
  const [cmd, ...rest] = prefix.length ? [...prefix, process.execPath, CLI, ...args] : [process.execPath, CLI, ...args];
  const child = spawn(cmd, rest, { cwd, env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  return { child, pid: child.pid!, stdout: () => out, stderr: () => err, done };
}

/** Why strace cannot inject faults here (missing, or ptrace not permitted), or undefined when it can. */
export function straceUnavailable(): string | undefined {
  const r = spawnSync('strace', ['-f', '-o', '/dev/null', '-e', 'inject=getpid:retval=1', 'true'], { encoding: 'utf8' });
  if (r.error) return `strace is not installed (${(r.error as NodeJS.ErrnoException).code})`;
  if (r.status !== 0) return `strace cannot trace here: ${r.stderr.trim().split('\n')[0]}`;
  return undefined;
}

/** Per month: count and sum(amount) of every committed row, as PostgreSQL prints them. */
export async function pgMonths(url: string): Promise<Record<string, { n: string; s: string }>> {
  return withPg(url, async (c) => {
    const { rows } = await c.query<{ m: string; n: string; s: string }>(
      `SELECT to_char(issue_date AT TIME ZONE 'UTC', 'YYYY-MM') AS m, count(*)::text AS n, sum(amount)::text AS s FROM invoices GROUP BY 1 ORDER BY 1`,
    );
    return Object.fromEntries(rows.map((r) => [r.m, { n: r.n, s: r.s }]));
  });
}

/** Per month from exactly the files the manifest lists (what every reader of the lake reads). */
export async function lakeMonths(lake: string): Promise<Record<string, { n: string; s: string }>> {
  const m = readManifest(lake);
  const files = Object.values(m.months)
    .flatMap((e) => e.files)
    .map((f) => `'${path.join(lake, f)}'`);
  if (!files.length) return {};
  const conn = await (await DuckDBInstance.create(':memory:')).connect();
  try {
    const rows = (
      await conn.runAndReadAll(`SELECT month, count(*)::VARCHAR AS n, CAST(sum(amount) AS VARCHAR) AS s
        FROM read_parquet([${files.join(', ')}], hive_partitioning = true, hive_types = {'month': VARCHAR}) GROUP BY 1 ORDER BY 1`)
    ).getRowObjectsJson();
    return Object.fromEntries(rows.map((r) => [String(r.month), { n: String(r.n), s: String(r.s) }]));
  } finally {
    conn.closeSync();
  }
}

/** Every Parquet file under invoices/month=*\/ and customers/, relative to the lake. */
export function parquetOnDisk(lake: string): string[] {
  const out: string[] = [];
  const inv = path.join(lake, 'invoices');
  if (existsSync(inv)) {
    for (const d of readdirSync(inv)) {
      if (!statSync(path.join(inv, d)).isDirectory()) continue;
      for (const f of readdirSync(path.join(inv, d))) if (f.endsWith('.parquet')) out.push(`invoices/${d}/${f}`);
    }
  }
  const cust = path.join(lake, 'customers');
  if (existsSync(cust)) for (const f of readdirSync(cust)) if (f.endsWith('.parquet')) out.push(`customers/${f}`);
  return out.sort();
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/**
 * The invariant after every export: each file the manifest lists is there with its recorded size
 * and sha256, there is no other Parquet file of ours (only the user's `foreign` ones), and no
 * lock, journal or staging folder is left.
 */
export function expectManifestMatchesFiles(lake: string, foreign: string[] = []): LakeManifest {
  const m = readManifest(lake);
  expect(m.version).toBe(2);
  const listed = listedFiles(m);
  for (const e of Object.values(m.months)) expect(e.files).toHaveLength(1);
  for (const f of listed) {
    const info = [...Object.values(m.months), m.customers].find((e) => e.fileInfo?.[f])?.fileInfo?.[f];
    expect(info, `fileInfo of ${f}`).toBeDefined();
    expect(statSync(path.join(lake, f)).size, f).toBe(info!.size);
    expect(sha256(path.join(lake, f)), f).toBe(info!.sha256);
    expect(path.basename(f)).toMatch(/^part-\d{8}T\d{6}Z-[0-9a-f]{6}\.parquet$/);
  }
  expect(parquetOnDisk(lake).filter((f) => !foreign.includes(f))).toEqual(listed);
  expect(readdirSync(lake).filter((n) => n.startsWith('.'))).toEqual([]);
  return m;
}

/** `group --by issuer` over the seeded window with one engine: its rows (stdout JSON). */
export async function group(url: string, lake: string, engine: string, cwdArg?: string): Promise<unknown[]> {
  const r = await runCli(
    ['group', '--months', '6', '--by', 'issuer', '--as-of', '2025-05-15', '--lake', lake, '--engine', engine, '--json'],
    { env: { DATABASE_URL: url }, cwd: cwdArg },
  );
  if (r.code !== 0) throw new Error(`group --engine ${engine} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown[];
}

/** The answer on the lake (duckdb) equals the live table's (postgres), row for row. */
export async function expectGroupEnginesAgree(url: string, lake: string): Promise<unknown[]> {
  const [duck, pg] = [await group(url, lake, 'duckdb'), await group(url, lake, 'postgres')];
  expect(duck.length).toBeGreaterThan(0);
  expect(duck).toEqual(pg);
  return duck;
}

/** Waits until `fn` holds for the running child, checking every 10 ms (a short window: an export of a small seed takes ~1 s). */
export function waitUntil(what: string, fn: () => boolean, deadlineMs = 30_000): Promise<true> {
  return waitFor(what, async () => fn() || undefined, deadlineMs, 10);
}

/** The lock file's holder, or undefined. */
export function lockHolder(lake: string): { pid: number; host: string; since: string } | undefined {
  try {
    return JSON.parse(readFileSync(path.join(lake, '.invoices-lock'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** True when the export `pid` holds the lake's lock and has staged at least one month (it read the manifest and is writing). */
export function exportIsWriting(lake: string, pid: number): boolean {
  if (lockHolder(lake)?.pid !== pid) return false;
  try {
    return readdirSync(path.join(lake, '.invoices-staging')).some((f) => f.endsWith('.parquet'));
  } catch {
    return false;
  }
}
