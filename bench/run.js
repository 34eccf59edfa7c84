#!/usr/bin/env node
// `npm run bench`: measurements against references taken in the same run on the same data,
// reported as ratios (these machines are shared and noisy), written into BENCHMARKS.md.
// Uses the database the CLI would use (DATABASE_URL, ..., else the embedded server), in a
// scratch database `invoices_bench` that it drops and recreates.
import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { resolveConfig, withDotEnv } from '../dist/config.js';
import { connectionSettings } from '../dist/db/client.js';
import { BinaryCopyWriter } from '../dist/db/copy-binary.js';
import { cacheScope } from '../dist/cache/keys.js';
import { ReadThrough } from '../dist/cache/read-through.js';
import { RedisInvoiceCache } from '../dist/cache/redis-cache.js';
import { getInvoice } from '../dist/lookup/get-invoice.js';
import { InvoiceGenerator } from '../dist/seed/invoices.js';
import { seedWindow } from '../dist/seed/seed.js';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const cli = path.join(root, 'bin', 'invoices.js');
const INVOICES = Number(process.env.BENCH_INVOICES ?? 10_000_000);
const CUSTOMERS = Math.max(2, Math.round(INVOICES / 50));
const AS_OF = '2026-11-25';
const DB = 'invoices_bench';

const log = (m) => process.stderr.write(m + '\n');
const median = (xs) => quantile(xs, 0.5);
function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

// --- the server and a scratch database -------------------------------------------------
const env = withDotEnv(process.env, process.cwd());
const config = resolveConfig({ env, cwd: process.cwd() });
const admin = await connectionSettings({ config });
const adminClient = new pg.Client({ ...admin });
await adminClient.connect();
await adminClient.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
await adminClient.query(`CREATE DATABASE ${DB}`);
const serverVersion = (await adminClient.query('SHOW server_version')).rows[0].server_version;
await adminClient.end();
const url = toUrl({ ...admin, database: DB });
const childEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TZ: 'UTC', DATABASE_URL: url };

function toUrl(s) {
  if (s.connectionString) {
    const u = new URL(s.connectionString);
    u.pathname = `/${DB}`;
    return u.toString();
  }
  const auth = s.user ? `${encodeURIComponent(s.user)}${s.password ? ':' + encodeURIComponent(s.password) : ''}@` : '';
  return `postgres://${auth}${s.host ?? 'localhost'}:${s.port ?? 5432}/${s.database}`;
}

/** Runs a command, returns wall seconds and peak RSS in MB (via GNU time when present). */
function timed(cmd, args, opts = {}) {
  const gnuTime = existsSync('/usr/bin/time');
  const started = performance.now();
  const r = gnuTime
    ? spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], { env: childEnv, encoding: 'utf8', ...opts })
    : spawnSync(cmd, args, { env: childEnv, encoding: 'utf8', ...opts });
  const seconds = (performance.now() - started) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  const rssKb = gnuTime ? Number(r.stderr.trim().split('\n').pop()) : NaN;
  return { seconds, rssMb: rssKb / 1024, stdout: r.stdout };
}

const results = { machine: machine(), serverVersion, invoices: INVOICES, customers: CUSTOMERS };

// --- seed ---------------------------------------------------------------------------------
log(`seed: ${fmt(INVOICES)} invoices, ${fmt(CUSTOMERS)} customers`);
const seedRun = timed('node', [cli, 'seed', '--customers', String(CUSTOMERS), '--invoices', String(INVOICES), '--as-of', AS_OF, '--truncate', '--quiet', '--json']);
const seedOut = JSON.parse(seedRun.stdout);
results.seed = { seconds: seedRun.seconds, rowsPerSecond: INVOICES / seedRun.seconds, rssMb: seedRun.rssMb, inner: seedOut };

// --- the COPY ceiling: psql loading the same rows from a binary file -------------------------
if (has('psql')) {
  const file = path.join(os.tmpdir(), `invoices-bench-${process.pid}.bin`);
  log(`ceiling: writing the same ${fmt(INVOICES)} rows to ${file}`);
  const out = createWriteStream(file);
  const w = new BinaryCopyWriter(out);
  const { startMicros, endMicros } = seedWindow(new Date(AS_OF), 24);
  const gen = new InvoiceGenerator({ count: INVOICES, firstId: 1, firstCustomerId: 1, customers: CUSTOMERS, startMicros, endMicros, seed: '1' });
  const row = {};
  while (gen.next(row)) {
    const p = w.row(5, 80);
    if (p) await p;
    w.int8(row.id); w.timestamptz(row.issueMicros); w.int8(row.issuerId); w.int8(row.receiverId); w.numericCents(row.cents);
  }
  await w.end();
  await finished(out);
  const copy = `\\copy invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) from '${file}' with (format binary)`;
  const psqlEnv = { ...childEnv, PGOPTIONS: '-c session_replication_role=replica' };
  const psql = (...cmds) => timed('psql', [url, '-v', 'ON_ERROR_STOP=1', '-q', ...cmds.flatMap((c) => ['-c', c])], { env: psqlEnv });
  psql('TRUNCATE invoices');
  log('ceiling: psql \\copy into the table as it stands (primary key in place)');
  results.copyPlain = psql(copy).seconds;
  log('ceiling: psql \\copy the way seed loads (one transaction: truncate, drop key, COPY FREEZE, rebuild key)');
  results.copyTuned = psql('BEGIN', 'TRUNCATE invoices', 'ALTER TABLE invoices DROP CONSTRAINT invoices_pkey',
    copy.replace('format binary', 'format binary, freeze'), 'ALTER TABLE invoices ADD CONSTRAINT invoices_pkey PRIMARY KEY (invoice_id)', 'COMMIT').seconds;
  log('floor: psql \\copy into an UNLOGGED table with no keys, checks or indexes');
  results.copyFloor = psql('CREATE UNLOGGED TABLE bench_floor (LIKE invoices)', copy.replace('invoices (', 'bench_floor ('), 'DROP TABLE bench_floor').seconds;
  rmSync(file, { force: true });
  psql('ANALYZE invoices');
}

// --- get: warm latency in one process, and whole processes against psql -------------------------
const ids = Array.from({ length: 3000 }, (_, i) => BigInt(1 + ((i * 2654435761) % INVOICES)));
{
  const client = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  await client.connect();
  for (const id of ids.slice(0, 300)) await getInvoice(client, id); // warm-up: plan cached, pages in memory
  const lat = [];
  for (const id of ids) {
    const t = performance.now();
    await getInvoice(client, id);
    lat.push(performance.now() - t);
  }
  const plan = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM invoices WHERE invoice_id = 4242`);
  results.get = { p50: median(lat), p99: quantile(lat, 0.99), serverMs: plan.rows[0]['QUERY PLAN'][0]['Execution Time'] };
  await client.end();

  const id = String(Math.floor(INVOICES / 2));
  const runs = 15;
  const cliTimes = [];
  const psqlTimes = [];
  const sql = `SELECT i.invoice_id, i.issue_date, i.issuer_id, ci.name, i.receiver_id, cr.name, i.amount FROM invoices i LEFT JOIN customers ci ON ci.id = i.issuer_id LEFT JOIN customers cr ON cr.id = i.receiver_id WHERE i.invoice_id = ${id}`;
  for (let i = 0; i < runs; i++) {
    cliTimes.push(timed('node', [cli, 'get', id, '--json']).seconds * 1000);
    if (has('psql')) psqlTimes.push(timed('psql', [url, '-Atc', sql]).seconds * 1000);
  }
  const nodeBare = [];
  for (let i = 0; i < runs; i++) nodeBare.push(timed('node', ['-e', '0']).seconds * 1000);
  results.getProcess = { cli: median(cliTimes), psql: psqlTimes.length ? median(psqlTimes) : NaN, nodeBare: median(nodeBare) };
}

// --- the Redis cache: hit vs miss vs PostgreSQL on the same ids, in one process and per process --
if (process.env.REDIS_URL) {
  const redisUrl = process.env.REDIS_URL;
  log(`cache: ${ids.length} ids through the Redis at REDIS_URL`);
  const client = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  await client.connect();
  const load = (id) => getInvoice(client, id);
  const scope = cacheScope({ kind: 'server', source: 'DATABASE_URL', connection: { connectionString: url } });
  const cache = await RedisInvoiceCache.open({ url: redisUrl, ttlSeconds: 600, scope });
  await cache.clear();
  const rt = new ReadThrough({ required: true, onUnavailable: () => {} });
  await rt.open(async () => cache);
  for (const id of ids.slice(0, 300)) await rt.lookup(id, load); // warm-up
  const lat = { postgres: [], hit: [], miss: [] };
  const time = async (bucket, fn) => {
    const t = performance.now();
    await fn();
    lat[bucket].push(performance.now() - t);
  };
  // Interleaved per id, so the three see the same machine and the same pages.
  for (const id of ids) {
    await time('postgres', () => load(id));
    await cache.delete(id);
    await time('miss', () => rt.lookup(id, load)); // GET (nothing), PostgreSQL, SET
    await time('hit', () => rt.lookup(id, load)); // GET
  }
  await rt.close();
  await client.end();

  const id = String(Math.floor(INVOICES / 2));
  const cacheEnv = { ...childEnv, REDIS_URL: redisUrl };
  timed('node', [cli, 'get', id, '--json'], { env: cacheEnv }); // fills the entry the CLI reads (default TTL)
  const runs = 15;
  const hitProcess = [];
  const directProcess = [];
  for (let i = 0; i < runs; i++) {
    hitProcess.push(timed('node', [cli, 'get', id, '--json'], { env: cacheEnv }).seconds * 1000);
    directProcess.push(timed('node', [cli, 'get', id, '--json', '--no-cache'], { env: cacheEnv }).seconds * 1000);
  }
  const cleanup = await RedisInvoiceCache.open({ url: redisUrl, ttlSeconds: 600, scope });
  await cleanup.clear();
  await cleanup.close();
  const summary = (xs) => ({ p50: median(xs), p99: quantile(xs, 0.99) });
  results.cache = {
    postgres: summary(lat.postgres), hit: summary(lat.hit), miss: summary(lat.miss),
    hitProcess: median(hitProcess), directProcess: median(directProcess),
  };
} else {
  log('cache: REDIS_URL is not set, skipping the cache section');
}

// --- report ---------------------------------------------------------------------------------
const r = results;
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) ? (a / b).toFixed(2) + 'x' : 'n/a');
const seedRate = r.seed.rowsPerSecond;
const plainRate = r.copyPlain ? INVOICES / r.copyPlain : NaN;
const tunedRate = r.copyTuned ? INVOICES / r.copyTuned : NaN;
const floorRate = r.copyFloor ? INVOICES / r.copyFloor : NaN;
const section = `## Foundation: seed and get (\`npm run bench\`, ${new Date().toISOString().slice(0, 10)})

Machine: ${r.machine}. Server: PostgreSQL ${r.serverVersion} (${config.target.source}). ${fmt(INVOICES)} invoices, ${fmt(CUSTOMERS)} customers.

| measure | figure | reference (same run) | ratio | target |
| --- | --- | --- | --- | --- |
| seed, end to end (\`invoices seed\` process) | ${fmt(seedRate)} invoices/s (${r.seed.seconds.toFixed(1)} s) | — | — | >= 1,500,000/s |
| seed vs psql \\copy binary into the table as it stands | ${fmt(seedRate)}/s | ${fmt(plainRate)}/s (${r.copyPlain?.toFixed(1)} s) | ${ratio(seedRate, plainRate)} | >= 0.6x |
| seed vs psql \\copy binary loaded the way seed loads | ${fmt(seedRate)}/s | ${fmt(tunedRate)}/s (${r.copyTuned?.toFixed(1)} s) | ${ratio(seedRate, tunedRate)} | >= 0.6x |
| the server's own limit: psql \\copy binary into an UNLOGGED table with no keys or checks | ${fmt(seedRate)}/s | ${fmt(floorRate)}/s (${r.copyFloor?.toFixed(1)} s) | ${ratio(seedRate, floorRate)} | — |
| seed peak RSS | ${fmt(r.seed.rssMb)} MB | — | — | <= 300 MB |
| get, warm, one process: p50 / p99 | ${r.get.p50.toFixed(3)} / ${r.get.p99.toFixed(3)} ms | server execution ${r.get.serverMs.toFixed(3)} ms | — | p50 <= 0.3 ms |
| whole \`invoices get\` process vs whole \`psql -c\` (median of 15) | ${r.getProcess.cli.toFixed(0)} ms | ${r.getProcess.psql.toFixed(0)} ms | ${ratio(r.getProcess.cli, r.getProcess.psql)} | <= 1.5x |
| bare \`node -e 0\` on this machine | ${r.getProcess.nodeBare.toFixed(0)} ms | ${r.getProcess.psql.toFixed(0)} ms (psql) | ${ratio(r.getProcess.nodeBare, r.getProcess.psql)} | — |
`;
writeSection('foundation', section);

if (r.cache) {
  const c = r.cache;
  const ms = (x) => `${x.p50.toFixed(3)} / ${x.p99.toFixed(3)} ms`;
  writeSection('cache', `## Cache: \`invoices get\` through Redis (\`npm run bench\` with REDIS_URL, ${new Date().toISOString().slice(0, 10)})

Same machine, server and ${fmt(INVOICES)} invoices as above; the same ${fmt(ids.length)} ids looked up three ways in one
process (interleaved per id, after a warm-up): PostgreSQL alone, a cache miss, a cache hit.

| measure | figure | reference (same run) | ratio | target |
| --- | --- | --- | --- | --- |
| cache hit (GET), one process: p50 / p99 | ${ms(c.hit)} | PostgreSQL lookup ${ms(c.postgres)} | ${ratio(c.hit.p50, c.postgres.p50)} | <= 0.5x |
| cache miss (GET, PostgreSQL lookup, SET): p50 / p99 | ${ms(c.miss)} | PostgreSQL lookup ${ms(c.postgres)} | ${ratio(c.miss.p50, c.postgres.p50)} | <= 2x |
| whole \`invoices get\` process, cache hit vs \`--no-cache\` (median of 15) | ${c.hitProcess.toFixed(0)} ms | ${c.directProcess.toFixed(0)} ms | ${ratio(c.hitProcess, c.directProcess)} | < 1x |
`);
}
process.exitCode = 0;

/** Replaces the named section of BENCHMARKS.md (between its markers), or appends it. */
function writeSection(name, text) {
  const file = path.join(root, 'BENCHMARKS.md');
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  let doc = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n\nWritten by `npm run bench`; each section is replaced by its own benchmark.\n\n';
  const block = `${start}\n${text}${end}`;
  doc = doc.includes(start) ? doc.replace(new RegExp(`${start}[\\s\\S]*?${end}`), () => block) : doc + '\n' + block + '\n';
  writeFileSync(file, doc);
  process.stdout.write(text);
}

function machine() {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}, Node ${process.versions.node}`;
}
