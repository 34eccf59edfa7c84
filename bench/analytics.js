#!/usr/bin/env node
// Use cases 2 and 3: `invoices export` against PostgreSQL's own COPY and a naive psql + DuckDB
// pipeline, and `invoices group` (the lake) against a plain GROUP BY on the live table, on the
// same rows in the same run, written into BENCHMARKS.md between <!-- bench:analytics --> markers.
// Scratch database `invoices_bench_analytics` (dropped and recreated) on the server the CLI would
// use (DATABASE_URL, ..., else the embedded server). BENCH_INVOICES (default 10,000,000).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { DuckDBInstance } from '@duckdb/node-api';
import { resolveConfig } from '../dist/config.js';
import { groupInvoices } from '../dist/analytics/group.js';
import { monthWindow } from '../dist/analytics/window.js';
import { AS_OF, childEnv as envFor, cli, CUSTOMERS, fmt, INVOICES, log, machine, median, ratio, scratchDatabase, today, writeSection } from './lib.js';

const MONTHS = 24;
const REPEAT = 5;

const { url, serverVersion } = await scratchDatabase('invoices_bench_analytics');
const childEnv = envFor(url);
const ctx = { config: resolveConfig({ databaseUrl: url, env: {}, cwd: process.cwd() }) };
const scratch = mkdtempSync(path.join(os.tmpdir(), 'invoices-bench-analytics-'));
chmodSync(scratch, 0o755);

/** Runs a command through sh, returns wall seconds and peak RSS in MB (GNU time). */
function timed(command, opts = {}) {
  const started = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', 'sh', '-c', command], { env: childEnv, encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
  const seconds = (performance.now() - started) / 1000;
  if (r.status !== 0) throw new Error(`${command} failed: ${r.stderr}`);
  return { seconds, rssMb: Number(r.stderr.trim().split('\n').pop()) / 1024, stdout: r.stdout };
}
const q = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

// --- data ---------------------------------------------------------------------------------
log(`seed: ${fmt(INVOICES)} invoices, ${fmt(CUSTOMERS)} customers over ${MONTHS} months`);
timed(`node ${q(cli)} seed --customers ${CUSTOMERS} --invoices ${INVOICES} --months ${MONTHS} --as-of ${AS_OF} --truncate --quiet`);
timed(`psql ${q(url)} -qc 'VACUUM ANALYZE'`);

// --- export ---------------------------------------------------------------------------------
const SELECT = 'SELECT invoice_id, issue_date, issuer_id, receiver_id, amount FROM invoices';
const rounds = { copyText: [], copyCsv: [], naive: [], naivePg: [], naiveDuck: [], ours: [], rss: [] };
for (let i = 0; i < 3; i++) {
  log(`export round ${i + 1}/3: COPY to /dev/null (text, csv), psql \\copy + DuckDB, invoices export --full`);
  rounds.copyText.push(timed(`psql ${q(url)} -qc ${q(`COPY (${SELECT}) TO STDOUT`)} > /dev/null`).seconds);
  rounds.copyCsv.push(timed(`psql ${q(url)} -qc ${q(`COPY (${SELECT}) TO STDOUT (FORMAT csv)`)} > /dev/null`).seconds);
  const csv = path.join(scratch, 'naive.csv');
  const t0 = performance.now();
  timed(`psql ${q(url)} -qc ${q(`\\copy (${SELECT}) TO '${csv}' csv`)}`);
  const t1 = performance.now();
  const duck = await (await DuckDBInstance.create(':memory:')).connect();
  await duck.run(`COPY (SELECT * FROM read_csv_auto('${csv}')) TO '${path.join(scratch, 'naive.parquet')}' (FORMAT parquet)`);
  duck.closeSync();
  const t2 = performance.now();
  rounds.naivePg.push((t1 - t0) / 1000);
  rounds.naiveDuck.push((t2 - t1) / 1000);
  rounds.naive.push((t2 - t0) / 1000);
  rmSync(csv, { force: true });
  const lake = path.join(scratch, 'lake');
  const ours = timed(`node ${q(cli)} export --full --out ${q(lake)} --quiet --json > /dev/null`);
  rounds.ours.push(ours.seconds);
  rounds.rss.push(ours.rssMb);
}
const lake = path.join(scratch, 'lake');
const verify = spawnSync('node', [cli, 'export', '--out', lake, '--verify-only', '--quiet', '--json'], { env: childEnv, encoding: 'utf8' });
const verified = verify.status === 0;
const incremental = timed(`node ${q(cli)} export --out ${q(lake)} --quiet --json > /dev/null`).seconds;
const lakeBytes = Number(spawnSync('du', ['-sb', lake], { encoding: 'utf8' }).stdout.split('\t')[0]);

// --- group ----------------------------------------------------------------------------------
const window = monthWindow(6, AS_OF);
const opts = (engine) => ({ window, by: 'issuer', engine, lake });
const pgTimes = [];
const duckTimes = [];
let identical = true;
let rowsCount = 0;
let reason = '';
for (let i = 0; i < REPEAT; i++) {
  let t = performance.now();
  const p = await groupInvoices(ctx, opts('postgres'));
  pgTimes.push((performance.now() - t) / 1000);
  t = performance.now();
  const d = await groupInvoices(ctx, opts('duckdb'));
  duckTimes.push((performance.now() - t) / 1000);
  identical &&= JSON.stringify(p.rows) === JSON.stringify(d.rows);
  rowsCount = d.rows.length;
  reason = d.reason;
}
// The whole CLI process, as cron runs it.
const cliGroup = median(Array.from({ length: 3 }, () => timed(`node ${q(cli)} group --months 6 --by issuer --as-of ${AS_OF} --lake ${q(lake)} --engine duckdb --json > /dev/null`).seconds));
const cliGroupPg = median(Array.from({ length: 3 }, () => timed(`node ${q(cli)} group --months 6 --by issuer --as-of ${AS_OF} --engine postgres --json > /dev/null`).seconds));
rmSync(scratch, { recursive: true, force: true });

// --- report ---------------------------------------------------------------------------------
const m = Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, median(v)]));
const rate = (s) => `${fmt(INVOICES / s)} rows/s`;
const peakRss = Math.max(...rounds.rss);
writeSection('analytics', `## Use cases 2 and 3: export and group (\`node bench/analytics.js\`, ${today()})

${machine()}; PostgreSQL ${serverVersion}; ${fmt(INVOICES)} invoices over ${MONTHS} months, ${fmt(CUSTOMERS)} customers
(\`invoices seed\`). Medians of 3 rounds (export) and ${REPEAT} runs (group), every reference measured in the same run on the same rows.

| measure | figure | reference (same run) | ratio | target |
| --- | --- | --- | --- | --- |
| \`invoices export --full\` throughput | ${m.ours.toFixed(2)} s, ${rate(m.ours)} | \`psql -c "COPY (SELECT ...) TO STDOUT" > /dev/null\`: ${m.copyText.toFixed(2)} s, ${rate(m.copyText)} | ${(m.copyText / m.ours).toFixed(2)}x the throughput | >= 0.5x |
| the same, against COPY in CSV | | \`COPY (...) TO STDOUT (FORMAT csv)\` > /dev/null: ${m.copyCsv.toFixed(2)} s | ${(m.copyCsv / m.ours).toFixed(2)}x | — |
| \`invoices export --full\` against the naive pipeline | ${m.ours.toFixed(2)} s | \`psql \\copy ... csv\` (${m.naivePg.toFixed(2)} s) then DuckDB CSV -> Parquet (${m.naiveDuck.toFixed(2)} s): ${m.naive.toFixed(2)} s | ${(m.naive / m.ours).toFixed(2)}x faster | >= 2x |
| peak RSS of the export process (max of 3) | ${fmt(peakRss)} MB | | | <= 400 MB |
| incremental \`invoices export\`, nothing changed | ${incremental.toFixed(2)} s | | | — |
| lake size (Parquet, snappy) | ${fmt(lakeBytes / 2 ** 20, 1)} MiB | | | — |
| \`--verify-only\` after the export | ${verified ? 'every month equal' : 'DIFFERENCES'} | | | equal |
| \`group --months 6 --by issuer\`, engine duckdb (lake + delta), in process | ${(median(duckTimes) * 1000).toFixed(0)} ms | engine postgres (GROUP BY on the live table): ${(median(pgTimes) * 1000).toFixed(0)} ms | ${ratio(median(duckTimes), median(pgTimes))} | <= 0.05x |
| the same, whole CLI process | ${(cliGroup * 1000).toFixed(0)} ms | ${(cliGroupPg * 1000).toFixed(0)} ms | ${ratio(cliGroup, cliGroupPg)} | — |
| identical results (${fmt(rowsCount)} issuers, every column) | ${identical ? 'yes' : 'NO'} | | | yes |

How: per month, psql runs \`COPY (SELECT ... FROM invoices WHERE <month> AND created_xid < <horizon>) TO STDOUT (FORMAT csv)\`
in the export's snapshot into a named pipe that DuckDB's CSV reader consumes as it arrives, writing
\`month=YYYY-MM/part-0.parquet\`; two months at a time (PostgreSQL, psql and DuckDB all run at once;
nothing is buffered beyond the pipe). The naive pipeline writes the whole CSV to disk first, then converts it. group's duckdb engine: ${reason}.
`);
