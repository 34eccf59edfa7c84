// What every benchmark shares: a scratch database on the server the CLI would use, timing of
// whole processes, statistics, and writing its section into BENCHMARKS.md.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { resolveConfig, withDotEnv } from '../dist/config.js';
import { connectionSettings } from '../dist/db/client.js';

export const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const cli = path.join(root, 'bin', 'invoices.js');
/** Rows of the benchmarks (10M by default, as the issues' targets are stated). */
export const INVOICES = Number(process.env.BENCH_INVOICES ?? 10_000_000);
export const CUSTOMERS = Math.max(2, Math.round(INVOICES / 50));
export const AS_OF = '2026-11-25';
/** `invoices seed` of n invoices over 24 months ending AS_OF, 50 invoices per customer (get-many.js, serve.js). */
export const seedArgs = (n) => [
  cli,
  'seed',
  '--customers',
  String(Math.max(2, Math.round(n / 50))),
  '--invoices',
  String(n),
  '--months',
  '24',
  '--as-of',
  AS_OF,
  '--quiet',
  '--json',
];

export const log = (m) => process.stderr.write(m + '\n');
export const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
export const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) ? (a / b).toFixed(2) + 'x' : 'n/a');
export const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
export const today = () => new Date().toISOString().slice(0, 10);
export function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
export const median = (xs) => quantile(xs, 0.5);

/**
 * Drops and recreates database `name` on the server the CLI would use (DATABASE_URL, ..., else
 * the embedded one); returns its URL, the server version and where the connection came from.
 */
export async function scratchDatabase(name) {
  const config = resolveConfig({ env: withDotEnv(process.env, process.cwd()), cwd: process.cwd() });
  const admin = await connectionSettings({ config });
  const client = new pg.Client({ ...admin });
  await client.connect();
  await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await client.query(`CREATE DATABASE ${name}`);
  const serverVersion = (await client.query('SHOW server_version')).rows[0].server_version;
  await client.end();
  const url = admin.connectionString
    ? new URL(admin.connectionString)
    : new URL(`postgres://${admin.host ?? 'localhost'}:${admin.port ?? 5432}`);
  if (!admin.connectionString) {
    if (admin.user) url.username = encodeURIComponent(admin.user);
    if (admin.password) url.password = encodeURIComponent(admin.password);
  }
  url.pathname = `/${name}`;
  return { url: url.toString(), serverVersion, source: config.target.source };
}

/** The environment of the processes a benchmark runs: nothing of ours leaks in but the database. */
export const childEnv = (url, extra = {}) => ({ PATH: process.env.PATH, HOME: process.env.HOME, TZ: 'UTC', DATABASE_URL: url, ...extra });

/** Runs a command to its end; wall seconds and peak RSS in MB (via GNU time when present). */
export function timed(cmd, args, opts) {
  const gnuTime = existsSync('/usr/bin/time');
  const started = performance.now();
  const r = gnuTime
    ? spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 28, ...opts })
    : spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28, ...opts });
  const seconds = (performance.now() - started) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  const rssKb = gnuTime ? Number(r.stderr.trim().split('\n').pop()) : NaN;
  return { seconds, rssMb: rssKb / 1024, stdout: r.stdout, stderr: r.stderr };
}

export function machine() {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}, Node ${process.versions.node}`;
}

/** Replaces the named section of BENCHMARKS.md (between its markers), or appends it; echoes it. */
export function writeSection(name, text) {
  const file = path.join(root, 'BENCHMARKS.md');
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  let doc = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n\n';
  const block = `${start}\n${text}${end}`;
  doc = doc.includes(start) ? doc.replace(new RegExp(`${start}[\\s\\S]*?${end}`), () => block) : doc + '\n' + block + '\n';
  writeFileSync(file, doc);
  process.stdout.write(text);
}
