// `invoices get -` with many ids on stdin against psql running the same lookups from a file
// (`psql -f`, one SELECT per line), on the same server in the same run; then through Redis.
// Sizes: BENCH_GET_MANY_INVOICES rows (default 1,000,000), BENCH_GET_MANY_IDS ids (default 100,000).
import { unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  childEnv as envFor,
  cli,
  fmt,
  has,
  log,
  machine,
  median,
  ratio,
  scratchDatabase,
  seedArgs,
  timed as run,
  today,
  writeSection,
} from './lib.js';

const INVOICES = Number(process.env.BENCH_GET_MANY_INVOICES ?? 1_000_000);
const IDS = Number(process.env.BENCH_GET_MANY_IDS ?? 100_000);
const RUNS = 3;
const REDIS_URL = process.env.REDIS_URL;

const { url, serverVersion } = await scratchDatabase('invoices_bench_get_many');
const env = envFor(url);
const timed = (cmd, args, opts = {}) => run(cmd, args, { env, ...opts });

log(`seeding ${fmt(INVOICES)} invoices (24 monthly partitions)`);
timed('node', seedArgs(INVOICES));
timed('psql', [url, '-qc', 'VACUUM ANALYZE']);

// The same ids for everyone: spread over the table, 1% of them not found.
const ids = Array.from({ length: IDS }, (_, i) => (i % 100 === 99 ? INVOICES + 1 + i : 1 + ((i * 2654435761) % INVOICES)));
const dir = os.tmpdir();
const idsFile = path.join(dir, `invoices-bench-ids-${process.pid}.txt`);
const sqlFile = path.join(dir, `invoices-bench-ids-${process.pid}.sql`);
writeFileSync(idsFile, ids.join('\n') + '\n');
// What one would write by hand: the fastest single-id form here (the parent by invoice_id; a
// join through invoice_ids measured slower per statement, it is planned over every partition too).
const select = (id) =>
  `SELECT i.invoice_id, i.issue_date, i.issuer_id, ci.name, i.receiver_id, cr.name, i.amount FROM invoices i LEFT JOIN customers ci ON ci.id = i.issuer_id LEFT JOIN customers cr ON cr.id = i.receiver_id WHERE i.invoice_id = ${id};`;
writeFileSync(sqlFile, ids.map(select).join('\n') + '\n');
const results = { machine: machine(), serverVersion };
const found = ids.filter((id) => id <= INVOICES).length;

if (has('psql')) {
  log(`psql -f: ${fmt(IDS)} SELECTs`);
  const r = timed('psql', [url, '-Atq', '-f', sqlFile]);
  results.psql = r.seconds;
  results.psqlRows = r.stdout.split('\n').filter(Boolean).length;
}

// The exit code is 3 (1% of the ids are not found) and timed() wants 0: run through sh, which maps 3 to 0.
function cliTimed(extraEnv, args = []) {
  const started = performance.now();
  const r = timedSh(`node ${JSON.stringify(cli)} get - ${args.join(' ')} < ${JSON.stringify(idsFile)}; test $? -eq 3`, extraEnv);
  const seconds = (performance.now() - started) / 1000;
  const lines = r.stdout.split('\n').filter(Boolean);
  if (lines.length !== found) throw new Error(`get - printed ${lines.length} invoices, expected ${found}`);
  const notFound = r.stderr.split('\n').filter((l) => / not found$/.test(l) && /invoice \d+ not found/.test(l)).length;
  if (notFound !== IDS - found) throw new Error(`get - reported ${notFound} ids not found, expected ${IDS - found}`);
  return { seconds, rssMb: r.rssMb };
}
function timedSh(script, extraEnv) {
  return timed('sh', ['-c', script], { env: { ...env, ...extraEnv }, maxBuffer: 1 << 30 });
}

log(`invoices get -: ${fmt(IDS)} ids on stdin, no cache (${RUNS} runs)`);
const noCache = Array.from({ length: RUNS }, () => cliTimed({}, ['--no-cache']));
results.cli = median(noCache.map((r) => r.seconds));
results.cliRss = Math.max(...noCache.map((r) => r.rssMb));

if (REDIS_URL) {
  log(`invoices get - through Redis (${REDIS_URL.replace(/\/\/[^@]*@/, '//***@')}): one cold run, then ${RUNS} warm`);
  const redis = { REDIS_URL };
  results.redisCold = cliTimed(redis, ['--cache-ttl', '3600']).seconds;
  results.redisWarm = median(Array.from({ length: RUNS }, () => cliTimed(redis, ['--cache-ttl', '3600']).seconds));
}
unlinkSync(idsFile);
unlinkSync(sqlFile);

const rate = (s) => (Number.isFinite(s) ? `${fmt(IDS / s)}/s (${s.toFixed(1)} s)` : 'n/a');
const r = results;
writeSection(
  'get-many',
  `## Many ids: \`invoices get -\` against \`psql -f\` (\`npm run bench\`, ${today()})

${r.machine}; PostgreSQL ${r.serverVersion}; ${fmt(INVOICES)} invoices in 24 monthly partitions; ${fmt(IDS)} ids
on stdin (1% not found), the same ids as ${fmt(IDS)} SELECTs in a file for psql. Whole processes, wall time;
the CLI's figure is the median of ${RUNS} runs. Output checked: ${fmt(found)} invoices printed, the missing ids named on stderr.

| what | rate | vs psql -f | target |
| --- | --- | --- | --- |
| \`psql -f\`: one SELECT per id (the parent table by invoice_id)${r.psqlRows !== undefined ? `, ${fmt(r.psqlRows)} rows` : ''} | ${rate(r.psql)} | 1.00x | — |
| \`invoices get - --no-cache\`: batches of 1,000 ids, one connection | ${rate(r.cli)} | ${ratio(r.psql, r.cli)} | >= 5x |
| \`invoices get -\` through Redis, cold (every id a miss: MGET, PostgreSQL, SET) | ${rate(r.redisCold)} | ${ratio(r.psql, r.redisCold)} | — |
| \`invoices get -\` through Redis, warm (every found id a hit) | ${rate(r.redisWarm)} | ${ratio(r.psql, r.redisWarm)} | faster than no cache |

Peak RSS of \`get -\` without the cache: ${r.cliRss?.toFixed(0)} MB (output streamed, memory flat in the number of ids).
${REDIS_URL ? '' : 'The Redis rows need REDIS_URL.\n'}`,
);
