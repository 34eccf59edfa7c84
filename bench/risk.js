#!/usr/bin/env node
// Use case 4: `invoices risk` on a backlog (features from history included) and `--follow`
// under a steady stream of inserts, written into BENCHMARKS.md between <!-- bench:risk -->
// markers. Scratch database `invoices_bench_risk` (dropped and recreated) on the server the CLI
// would use. RISK_INVOICES (default 1,000,000) sizes the backlog; FOLLOW_RATE (default 1000/s)
// and FOLLOW_SECONDS (default 60) the stream.
import { spawn } from 'node:child_process';
import pg from 'pg';
import { AS_OF, childEnv as envFor, cli, fmt, log, machine, quantile, ratio, scratchDatabase, timed, today, writeSection } from './lib.js';

const BACKLOG = Number(process.env.RISK_INVOICES ?? 1_000_000);
const CUSTOMERS = Math.max(2, Math.round(BACKLOG / 50));
const RATE = Number(process.env.FOLLOW_RATE ?? 1000);
const SECONDS = Number(process.env.FOLLOW_SECONDS ?? 60);

const { url, serverVersion } = await scratchDatabase('invoices_bench_risk');
const env = envFor(url);
const run = (...args) => timed('node', [cli, ...args], { env });
const db = new pg.Client({ connectionString: url });
await db.connect();

log(`seed: ${fmt(BACKLOG)} invoices, ${fmt(CUSTOMERS)} customers`);
run('seed', '--customers', String(CUSTOMERS), '--invoices', String(BACKLOG), '--as-of', AS_OF, '--truncate', '--quiet');
await db.query('VACUUM ANALYZE');
const init = run('risk', 'init', '--quiet');
log(`risk init: ${init.seconds.toFixed(1)} s`);

// --- batch: the whole backlog, then the floor of writing as many score rows with no model ---
log('risk: scoring the backlog');
const batch = run('risk', '--json', '--quiet');
const scored = JSON.parse(batch.stdout).scored;
const rate = scored / batch.seconds;
const verify = run('risk', 'verify', '--json', '--quiet');
const missing = JSON.parse(verify.stdout).missing;
const started = performance.now();
await db.query(
  `INSERT INTO risk_scores (source_id, invoice_id, model_version, invoice_xid, score, level, reasons) SELECT 0, invoice_id, 'floor', created_xid, 0, 'low', '{}' FROM invoices`,
);
const floorSeconds = (performance.now() - started) / 1000;
await db.query(`DELETE FROM risk_scores WHERE source_id = 0 AND model_version = 'floor'`);
log(
  `backlog: ${fmt(scored)} in ${batch.seconds.toFixed(1)} s = ${fmt(rate)}/s (floor: INSERT ... SELECT of the same rows ${floorSeconds.toFixed(1)} s)`,
);

// --- follow: RATE inserts per second, one transaction each, for SECONDS ---------------------
log(`follow: ${RATE} invoices/s for ${SECONDS} s, one transaction each`);
const follower = spawn('node', [cli, 'risk', '--follow', '--quiet'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
let followerErr = '';
follower.stderr.on('data', (d) => (followerErr += d));
await db.query('LISTEN bench_ready');
// Wait until the follower holds its lock (it is then listening).
for (let i = 0; i < 200; i++) {
  const { rows } = await db.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 7115");
  if (rows[0].n) break;
  await new Promise((r) => setTimeout(r, 50));
}
const writers = await Promise.all(
  Array.from({ length: 4 }, async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    return { c, queue: Promise.resolve() };
  }),
);
const committed = new Map(); // invoice id -> commit time (ms, this clock: the same machine as the server)
let next = 0;
const t0 = performance.now();
const total = RATE * SECONDS;
const inflight = new Set();
while (next < total) {
  const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
  while (next < Math.min(due, total)) {
    const w = writers[next % writers.length];
    const issuer = 1 + ((next * 7919) % CUSTOMERS);
    const receiver = 1 + ((issuer + 1 + (next % 97)) % CUSTOMERS);
    // One statement at a time per connection (pg queues them anyway; this keeps the order explicit).
    const p = (w.queue = w.queue.then(() =>
      w.c
        .query('INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (now(), $1, $2, $3) RETURNING invoice_id', [
          issuer,
          receiver === issuer ? (issuer % CUSTOMERS) + 1 : receiver,
          (100 + (next % 5000)).toFixed(2),
        ])
        .then((r) => void committed.set(r.rows[0].invoice_id, Date.now())),
    ));
    inflight.add(p);
    p.finally(() => inflight.delete(p));
    next++;
  }
  await new Promise((r) => setTimeout(r, 2));
}
await Promise.all(inflight);
const insertSeconds = (performance.now() - t0) / 1000;
// Wait for the last scores.
const ids = [...committed.keys()];
for (let i = 0; i < 100; i++) {
  const { rows } = await db.query(
    "SELECT count(*)::int AS n FROM risk_scores WHERE model_version = 'v1' AND invoice_id = ANY($1::bigint[])",
    [ids],
  );
  if (rows[0].n === ids.length) break;
  await new Promise((r) => setTimeout(r, 100));
}
follower.kill('SIGTERM');
const exit = await new Promise((r) => follower.on('exit', (code) => r(code)));
const { rows } = await db.query(
  "SELECT invoice_id, (extract(epoch FROM scored_at) * 1000)::float8 AS at FROM risk_scores WHERE model_version = 'v1' AND invoice_id = ANY($1::bigint[])",
  [ids],
);
const latencies = rows.map((r) => Number(r.at) - committed.get(r.invoice_id)).sort((a, b) => a - b);
const p50 = quantile(latencies, 0.5);
const p99 = quantile(latencies, 0.99);
const unscored = ids.length - rows.length;
const followVerify = JSON.parse(run('risk', 'verify', '--json', '--quiet').stdout).missing;
await Promise.all(writers.map((w) => w.c.end()));
await db.end();
log(`follow: p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, ${unscored} unscored, exit ${exit}`);
if (exit !== 0) log(followerErr);

const met = (ok) => (ok ? 'met' : '**missed**');
writeSection(
  'risk',
  `
## Risk scoring (use case 4) — ${today()}

${machine()}; PostgreSQL ${serverVersion}. \`node bench/risk.js\`: a backlog of ${fmt(BACKLOG)} seeded invoices
(${fmt(CUSTOMERS)} customers), then \`invoices risk --follow\` while ${fmt(RATE)} invoices/s are inserted, one
transaction each from 4 connections, for ${SECONDS} s.

| measure | figure | target |
| --- | --- | --- |
| \`risk\` on the backlog (features from history, scores + watermark committed per 50,000) | ${fmt(scored)} in ${batch.seconds.toFixed(1)} s = **${fmt(rate)} invoices/s**, peak RSS ${fmt(batch.rssMb)} MB | >= 50,000/s: ${met(rate >= 50_000)} |
| floor: \`INSERT INTO risk_scores SELECT ...\` of as many constant scores, no model (same run) | ${floorSeconds.toFixed(1)} s = ${fmt(scored / floorSeconds)} rows/s; the scorer takes ${ratio(batch.seconds, floorSeconds)} its time | — |
| \`risk verify\` after it | ${missing} missing | 0 |
| \`risk init\` on the backlog (tables, trigger, 3 indexes built concurrently) | ${init.seconds.toFixed(1)} s | — |
| \`--follow\`, commit-to-score latency (scored_at − the inserter's commit time) | p50 **${p50.toFixed(0)} ms**, p99 **${p99.toFixed(0)} ms**, max ${latencies.length ? latencies[latencies.length - 1].toFixed(0) : 'n/a'} ms over ${fmt(latencies.length)} invoices | p50 <= 200 ms: ${met(p50 <= 200)}; p99 <= 1 s: ${met(p99 <= 1000)} |
| inserted by the stream | ${fmt(ids.length)} in ${insertSeconds.toFixed(1)} s (${fmt(ids.length / insertSeconds)}/s); unscored at the end ${unscored}; \`verify\` missing ${followVerify}; follower exit ${exit} on SIGTERM | every one scored once |

`,
);
