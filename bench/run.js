#!/usr/bin/env node
// `npm run bench`: measurements against references taken in the same run on the same data,
// reported as ratios (these machines are shared and noisy), written into BENCHMARKS.md.
// Uses the database the CLI would use (DATABASE_URL, ..., else the embedded server), in a
// scratch database `invoices_bench` that it drops and recreates.
import { createWriteStream, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import pg from 'pg';
import { readCacheStamp } from '../dist/cache/generation.js';
import { cacheScope } from '../dist/cache/keys.js';
import { ReadThrough } from '../dist/cache/read-through.js';
import { RedisInvoiceCache } from '../dist/cache/redis-cache.js';
import { BinaryCopyWriter } from '../dist/db/copy-binary.js';
import { getInvoice } from '../dist/lookup/get-invoice.js';
import { InvoiceGenerator } from '../dist/seed/invoices.js';
import { seedWindow } from '../dist/seed/seed.js';
import { DEFAULT_TABLES } from '../dist/tables.js';
import {
  AS_OF,
  childEnv as envFor,
  cli,
  CUSTOMERS,
  fmt,
  has,
  INVOICES,
  log,
  machine,
  median,
  quantile,
  ratio,
  scratchDatabase,
  timed as run,
  today,
  writeSection,
} from './lib.js';

const MONTHS = 48; // 48 monthly partitions: the layout the lookup target is stated for

const { url, serverVersion, source } = await scratchDatabase('invoices_bench');
const childEnv = envFor(url);
const timed = (cmd, args, opts = {}) => run(cmd, args, { env: childEnv, ...opts });

const results = { machine: machine(), serverVersion, invoices: INVOICES, customers: CUSTOMERS };

// --- seed ---------------------------------------------------------------------------------
log(`seed: ${fmt(INVOICES)} invoices, ${fmt(CUSTOMERS)} customers`);
const seedRun = timed('node', [
  cli,
  'seed',
  '--customers',
  String(CUSTOMERS),
  '--invoices',
  String(INVOICES),
  '--months',
  String(MONTHS),
  '--as-of',
  AS_OF,
  '--truncate',
  '--quiet',
  '--json',
]);
const seedOut = JSON.parse(seedRun.stdout);
results.seed = { seconds: seedRun.seconds, rowsPerSecond: INVOICES / seedRun.seconds, rssMb: seedRun.rssMb, inner: seedOut };

// --- the COPY ceiling: psql loading the same rows (invoices and invoice_ids) from binary files ------
if (has('psql')) {
  const file = path.join(os.tmpdir(), `invoices-bench-${process.pid}.bin`);
  const idsFile = path.join(os.tmpdir(), `invoices-bench-ids-${process.pid}.bin`);
  log(`ceiling: writing the same ${fmt(INVOICES)} rows to ${file} and ${idsFile}`);
  const out = createWriteStream(file);
  const idsOut = createWriteStream(idsFile);
  const w = new BinaryCopyWriter(out);
  const wi = new BinaryCopyWriter(idsOut);
  const { startMicros, endMicros } = seedWindow(new Date(AS_OF), MONTHS);
  const gen = new InvoiceGenerator({
    count: INVOICES,
    firstId: 1,
    firstCustomerId: 1,
    customers: CUSTOMERS,
    startMicros,
    endMicros,
    seed: '1',
  });
  const row = {};
  while (gen.next(row)) {
    const p = w.row(5, 80);
    if (p) await p;
    w.int8(row.id);
    w.timestamptz(row.issueMicros);
    w.int8(row.issuerId);
    w.int8(row.receiverId);
    w.numericCents(row.cents);
    const q = wi.row(2, 32);
    if (q) await q;
    wi.int8(row.id);
    wi.timestamptz(row.issueMicros);
  }
  await Promise.all([w.end(), wi.end()]);
  await Promise.all([finished(out), finished(idsOut)]);
  const copy = `\\copy invoices (invoice_id, issue_date, issuer_id, receiver_id, amount) from '${file}' with (format binary)`;
  const copyIds = (freeze) =>
    `\\copy invoice_ids (invoice_id, issue_date) from '${idsFile}' with (format binary${freeze ? ', freeze' : ''})`;
  // The same trigger-skipping as seed (superuser): foreign keys and the invoice_ids trigger.
  const psqlEnv = { ...childEnv, PGOPTIONS: '-c session_replication_role=replica' };
  const psql = (...cmds) => timed('psql', [url, '-v', 'ON_ERROR_STOP=1', '-q', ...cmds.flatMap((c) => ['-c', c])], { env: psqlEnv });
  psql('TRUNCATE invoices, invoice_ids');
  log('ceiling: psql \\copy into the tables as they stand (keys in place)');
  results.copyPlain = psql(copy, copyIds(false)).seconds;
  log('ceiling: psql \\copy in one transaction with the keys dropped and rebuilt, as seed does');
  results.copyTuned = psql(
    'BEGIN',
    'TRUNCATE invoices, invoice_ids',
    'ALTER TABLE invoices DROP CONSTRAINT invoices_pkey',
    'ALTER TABLE invoice_ids DROP CONSTRAINT invoice_ids_pkey',
    copy,
    copyIds(true),
    'ALTER TABLE invoices ADD CONSTRAINT invoices_pkey PRIMARY KEY (invoice_id, issue_date)',
    'ALTER TABLE invoice_ids ADD CONSTRAINT invoice_ids_pkey PRIMARY KEY (invoice_id) INCLUDE (issue_date)',
    'COMMIT',
  ).seconds;
  log('floor: psql \\copy into an UNLOGGED table with no keys, checks or indexes');
  results.copyFloor = psql(
    'CREATE UNLOGGED TABLE bench_floor (invoice_id bigint, issue_date timestamptz, issuer_id bigint, receiver_id bigint, amount numeric(14,2))',
    copy.replace('invoices (', 'bench_floor ('),
    'DROP TABLE bench_floor',
  ).seconds;
  rmSync(file, { force: true });
  rmSync(idsFile, { force: true });
  psql('VACUUM ANALYZE invoices, invoice_ids');
}

const ids = Array.from({ length: 3000 }, (_, i) => BigInt(1 + ((i * 2654435761) % INVOICES)));

// --- lookups by id: 48 partitions against an unpartitioned copy of the same rows --------------
{
  log('partitions: an unpartitioned copy of the same rows for reference');
  const client = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  await client.connect();
  await client.query('CREATE TABLE invoices_flat AS SELECT * FROM invoices');
  await client.query('ALTER TABLE invoices_flat ADD PRIMARY KEY (invoice_id)');
  await client.query('VACUUM ANALYZE invoices_flat');
  const partitions = (await client.query("SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'invoices'::regclass")).rows[0].n;
  const cols = 'i.invoice_id, i.issue_date, i.issuer_id, ci.name AS issuer_name, i.receiver_id, cr.name AS receiver_name, i.amount';
  const joins = 'LEFT JOIN customers ci ON ci.id = i.issuer_id LEFT JOIN customers cr ON cr.id = i.receiver_id';
  const variants = {
    partitioned: (id) => getInvoice(client, id),
    flat: (id) =>
      client.query({ name: 'flat', text: `SELECT ${cols} FROM invoices_flat i ${joins} WHERE i.invoice_id = $1`, values: [String(id)] }),
    parent: (id) =>
      client.query({ name: 'parent', text: `SELECT ${cols} FROM invoices i ${joins} WHERE i.invoice_id = $1`, values: [String(id)] }),
  };
  const lat = { partitioned: [], flat: [], parent: [] };
  // Interleaved per id, after a warm-up: the three see the same machine and the same pages.
  for (const [n, id] of ids.entries()) {
    for (const [k, f] of Object.entries(variants)) {
      const t = performance.now();
      await f(id);
      if (n >= 300) lat[k].push(performance.now() - t);
    }
  }
  // Server time (planning + execution, EXPLAIN ANALYZE) of the statements each lookup runs.
  const server = async (sql) => {
    const plan = (await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`)).rows[0]['QUERY PLAN'][0];
    return plan['Planning Time'] + plan['Execution Time'];
  };
  // get goes straight to the partition whose id range holds the id (the ranges of seeded rows do
  // not overlap), so its server time is that one statement; the two-step path through invoice_ids
  // is measured too, for when ranges overlap or are stale.
  const leaves = (
    await client.query(
      "SELECT c.relname AS leaf FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid WHERE h.inhparent = 'invoices'::regclass",
    )
  ).rows;
  const ranges = (
    await client.query(
      leaves.map((l) => `SELECT '${l.leaf}' AS leaf, min(invoice_id) AS lo, max(invoice_id) AS hi FROM ${l.leaf}`).join(' UNION ALL '),
    )
  ).rows
    .filter((r) => r.lo !== null)
    .map((r) => ({ leaf: r.leaf, lo: BigInt(r.lo), hi: BigInt(r.hi) }));
  const serverFlat = [];
  const serverPartitioned = [];
  const serverTwoStep = [];
  let direct = 0;
  for (const id of ids.slice(0, 300)) {
    serverFlat.push(await server(`SELECT ${cols} FROM invoices_flat i ${joins} WHERE i.invoice_id = ${id}`));
    const hits = ranges.filter((r) => r.lo <= id && id <= r.hi);
    const leaf = (await client.query('SELECT tableoid::regclass::text AS leaf FROM invoices WHERE invoice_id = $1', [String(id)])).rows[0]
      .leaf;
    const inLeaf = await server(`SELECT ${cols} FROM ${leaf} i ${joins} WHERE i.invoice_id = ${id}`);
    if (hits.length === 1 && hits[0].leaf === leaf) direct++;
    serverPartitioned.push(
      hits.length === 1 ? inLeaf : inLeaf + (await server(`SELECT issue_date::text FROM invoice_ids WHERE invoice_id = ${id}`)),
    );
    serverTwoStep.push(inLeaf + (await server(`SELECT issue_date::text FROM invoice_ids WHERE invoice_id = ${id}`)));
  }
  results.partitions = {
    partitions,
    partitioned: { p50: median(lat.partitioned), p99: quantile(lat.partitioned, 0.99) },
    flat: { p50: median(lat.flat), p99: quantile(lat.flat, 0.99) },
    parent: { p50: median(lat.parent), p99: quantile(lat.parent, 0.99) },
    serverFlat: median(serverFlat),
    serverPartitioned: median(serverPartitioned),
    serverTwoStep: median(serverTwoStep),
    direct,
  };
  await client.query('DROP TABLE invoices_flat');
  await client.end();
}

// --- get: warm latency in one process, and whole processes against psql -------------------------
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
  results.get = { p50: median(lat), p99: quantile(lat, 0.99) };
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
  rt.bind(await readCacheStamp(client, DEFAULT_TABLES));
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
    postgres: summary(lat.postgres),
    hit: summary(lat.hit),
    miss: summary(lat.miss),
    hitProcess: median(hitProcess),
    directProcess: median(directProcess),
  };
} else {
  log('cache: REDIS_URL is not set, skipping the cache section');
}

// --- report ---------------------------------------------------------------------------------
const r = results;
const seedRate = r.seed.rowsPerSecond;
const plainRate = r.copyPlain ? INVOICES / r.copyPlain : NaN;
const tunedRate = r.copyTuned ? INVOICES / r.copyTuned : NaN;
const floorRate = r.copyFloor ? INVOICES / r.copyFloor : NaN;
const section = `## Foundation: seed and get (\`npm run bench\`, ${today()})

Machine: ${r.machine}. Server: PostgreSQL ${r.serverVersion} (${source}). ${fmt(INVOICES)} invoices, ${fmt(CUSTOMERS)} customers.

| measure | figure | reference (same run) | ratio | target |
| --- | --- | --- | --- | --- |
| seed, end to end (\`invoices seed\` process, ${MONTHS} monthly partitions + invoice_ids) | ${fmt(seedRate)} invoices/s (${r.seed.seconds.toFixed(1)} s) | — | — | >= 1,500,000/s |
| seed vs psql \\copy binary of the same rows into the tables as they stand | ${fmt(seedRate)}/s | ${fmt(plainRate)}/s (${r.copyPlain?.toFixed(1)} s) | ${ratio(seedRate, plainRate)} | >= 0.6x |
| seed vs psql \\copy binary in one transaction, keys dropped and rebuilt | ${fmt(seedRate)}/s | ${fmt(tunedRate)}/s (${r.copyTuned?.toFixed(1)} s) | ${ratio(seedRate, tunedRate)} | >= 0.6x |
| the server's own limit: psql \\copy binary into an UNLOGGED table with no keys or checks | ${fmt(seedRate)}/s | ${fmt(floorRate)}/s (${r.copyFloor?.toFixed(1)} s) | ${ratio(seedRate, floorRate)} | — |
| seed peak RSS | ${fmt(r.seed.rssMb)} MB | — | — | <= 300 MB |
| get, warm, one process (${r.partitions.partitions} partitions): p50 / p99 | ${r.get.p50.toFixed(3)} / ${r.get.p99.toFixed(3)} ms | — | — | p50 <= 0.3 ms |
| whole \`invoices get\` process vs whole \`psql -c\` (median of 15) | ${r.getProcess.cli.toFixed(0)} ms | ${r.getProcess.psql.toFixed(0)} ms | ${ratio(r.getProcess.cli, r.getProcess.psql)} | <= 1.5x |
| bare \`node -e 0\` on this machine | ${r.getProcess.nodeBare.toFixed(0)} ms | ${r.getProcess.psql.toFixed(0)} ms (psql) | ${ratio(r.getProcess.nodeBare, r.getProcess.psql)} | — |
`;
writeSection('foundation', section);

{
  const p = r.partitions;
  const ms = (x) => `${x.p50.toFixed(3)} / ${x.p99.toFixed(3)} ms`;
  writeSection(
    'partitions',
    `## Lookups by id across partitions (\`npm run bench\`, ${today()})

Same machine and rows as above: \`invoices\` in ${p.partitions} partitions (${p.partitions - 1} months + DEFAULT) against
\`invoices_flat\`, an unpartitioned copy with a primary key on invoice_id; the same ${fmt(ids.length - 300)} ids,
interleaved per id, prepared statements, one connection.

| measure | partitioned | unpartitioned (reference) | ratio | target |
| --- | --- | --- | --- | --- |
| server time per lookup, planning + execution (EXPLAIN ANALYZE, median of 300; ${p.direct}/300 ids went straight to their partition by id range) | ${p.serverPartitioned.toFixed(3)} ms | ${p.serverFlat.toFixed(3)} ms | ${ratio(p.serverPartitioned, p.serverFlat)} | <= 1.3x |
| the same through invoice_ids (ranges overlapping or stale): two statements | ${p.serverTwoStep.toFixed(3)} ms | ${p.serverFlat.toFixed(3)} ms | ${ratio(p.serverTwoStep, p.serverFlat)} | — |
| \`get\` as the client sees it: p50 / p99 | ${ms(p.partitioned)} | ${ms(p.flat)} | ${ratio(p.partitioned.p50, p.flat.p50)} | — |
| a plain \`WHERE invoice_id = $1\` on the partitioned parent: p50 / p99 | ${ms(p.parent)} | ${ms(p.flat)} | ${ratio(p.parent.p50, p.flat.p50)} | — |
`,
  );
}

if (r.cache) {
  const c = r.cache;
  const ms = (x) => `${x.p50.toFixed(3)} / ${x.p99.toFixed(3)} ms`;
  writeSection(
    'cache',
    `## Cache: \`invoices get\` through Redis (\`npm run bench\` with REDIS_URL, ${today()})

Same machine, server and ${fmt(INVOICES)} invoices as above; the same ${fmt(ids.length)} ids looked up three ways in one
process (interleaved per id, after a warm-up): PostgreSQL alone, a cache miss, a cache hit.

| measure | figure | reference (same run) | ratio | target |
| --- | --- | --- | --- | --- |
| cache hit (GET), one process: p50 / p99 | ${ms(c.hit)} | PostgreSQL lookup ${ms(c.postgres)} | ${ratio(c.hit.p50, c.postgres.p50)} | <= 0.5x |
| cache miss (GET, PostgreSQL lookup, SET): p50 / p99 | ${ms(c.miss)} | PostgreSQL lookup ${ms(c.postgres)} | ${ratio(c.miss.p50, c.postgres.p50)} | <= 2x |
| whole \`invoices get\` process, cache hit vs \`--no-cache\` (median of 15) | ${c.hitProcess.toFixed(0)} ms | ${c.directProcess.toFixed(0)} ms | ${ratio(c.hitProcess, c.directProcess)} | < 1x |
`,
  );
}
process.exitCode = 0;
