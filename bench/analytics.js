#!/usr/bin/env node
// Use cases 2 and 3: `invoices export` against PostgreSQL's own COPY and a naive psql + DuckDB
// pipeline, and `invoices group` (monthly totals, the lake) against a plain GROUP BY on the live table, on the
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
import {
  AS_OF,
  childEnv as envFor,
  cli,
  CUSTOMERS,
  fmt,
  INVOICES,
  log,
  machine,
  median,
  ratio,
  scratchDatabase,
  today,
  writeSection,
} from './lib.js';

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
const opts = (engine, extra = {}) => ({ window, by: 'issuer', engine, lake, ...extra });
const inProcess = async (engine, extra) => {
  const t = performance.now();
  const r = await groupInvoices(ctx, opts(engine, extra));
  return { ...r, seconds: (performance.now() - t) / 1000 };
};
const pgc = new pg.Client({ connectionString: url });
await pgc.connect();
// The first run of the totals engine builds them from every row (once).
log('group: building the monthly totals');
const build = await inProcess('totals');
const totalsRowCount = Number((await pgc.query('SELECT count(*) AS n FROM invoice_monthly_totals')).rows[0].n);
const times = { postgres: [], duckdb: [], totals: [], postgresTop: [], totalsTop: [] };
let identical = true;
let rowsCount = 0;
let reason = '';
let totalsReason = '';
for (let i = 0; i < REPEAT; i++) {
  log(`group round ${i + 1}/${REPEAT}: postgres, duckdb, totals (6 months by issuer; and --top 10)`);
  const p = await inProcess('postgres');
  const d = await inProcess('duckdb');
  const t = await inProcess('totals');
  times.postgres.push(p.seconds);
  times.duckdb.push(d.seconds);
  times.totals.push(t.seconds);
  times.postgresTop.push((await inProcess('postgres', { top: 10 })).seconds);
  times.totalsTop.push((await inProcess('totals', { top: 10 })).seconds);
  identical &&= JSON.stringify(p.rows) === JSON.stringify(d.rows) && JSON.stringify(p.rows) === JSON.stringify(t.rows);
  rowsCount = d.rows.length;
  reason = d.reason;
  totalsReason = t.reason;
}
// What no engine can go below: the 147k-row answer, already computed, sent to this process.
await pgc.query(`CREATE TABLE bench_answer AS SELECT issuer_id AS id, count(*) AS n, sum(amount) AS s FROM invoices
                  WHERE issue_date >= '${window.from}' AND issue_date < '${window.to}' GROUP BY 1`);
const floor = [];
for (let i = 0; i < REPEAT; i++) {
  const t = performance.now();
  await pgc.query(
    'SELECT a.id::text AS id, c.name, a.n::text AS n, a.s::text AS total FROM bench_answer a LEFT JOIN customers c ON c.id = a.id ORDER BY a.s DESC, a.id',
  );
  floor.push((performance.now() - t) / 1000);
}
// Incremental: 10,000 new invoices in the window, committed, then one totals answer (refresh + read).
const NEW = 10_000;
log(`group: ${fmt(NEW)} new invoices, then the totals engine (incremental refresh + answer)`);
await pgc.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount)
  SELECT '${window.from}'::timestamptz + random() * ('${AS_OF}'::timestamptz - '${window.from}'::timestamptz), c, c % ${CUSTOMERS} + 1, round((random() * 5000)::numeric, 2)
    FROM (SELECT 1 + floor(random() * ${CUSTOMERS})::int AS c FROM generate_series(1, ${NEW})) g`);
const inc = await inProcess('totals');
const afterInsert = await inProcess('postgres');
identical &&= JSON.stringify(inc.rows) === JSON.stringify(afterInsert.rows);
await pgc.query('DROP TABLE bench_answer');
await pgc.end();
// The whole CLI process, as cron runs it.
const cliRun = (engine) =>
  median(
    Array.from(
      { length: 3 },
      () =>
        timed(`node ${q(cli)} group --months 6 --by issuer --as-of ${AS_OF} --lake ${q(lake)} --engine ${engine} --json > /dev/null`)
          .seconds,
    ),
  );
const cliGroup = cliRun('duckdb');
const cliTotals = cliRun('totals');
const cliGroupPg = cliRun('postgres');
rmSync(scratch, { recursive: true, force: true });

// --- report ---------------------------------------------------------------------------------
const m = Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, median(v)]));
const rate = (s) => `${fmt(INVOICES / s)} rows/s`;
const ms = (s) => `${(s * 1000).toFixed(0)} ms`;
const peakRss = Math.max(...rounds.rss);
writeSection(
  'analytics',
  `## Use cases 2 and 3: export and group (\`node bench/analytics.js\`, ${today()})

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
| \`group --months 6 --by issuer\`, engine totals (refresh with nothing new + read), in process | ${ms(median(times.totals))} | engine postgres (GROUP BY on the live table): ${ms(median(times.postgres))} | ${ratio(median(times.totals), median(times.postgres))} | <= 0.25x: ${median(times.totals) <= 0.25 * median(times.postgres) ? 'met' : '**missed**'} |
| the same after ${fmt(NEW)} new invoices (incremental refresh: ${fmt(inc.refresh.added)} added, + read) | ${ms(inc.seconds)} | engine postgres, same rows: ${ms(afterInsert.seconds)} | ${ratio(inc.seconds, afterInsert.seconds)} | — |
| the same, \`--top 10\` | ${ms(median(times.totalsTop))} | ${ms(median(times.postgresTop))} | ${ratio(median(times.totalsTop), median(times.postgresTop))} | <= 0.05x: ${median(times.totalsTop) <= 0.05 * median(times.postgresTop) ? 'met' : '**missed**'} |
| floor: the finished ${fmt(rowsCount)}-row answer (precomputed) read into this process, with names | ${ms(median(floor))} | ${ms(median(times.postgres))} | ${ratio(median(floor), median(times.postgres))} | — |
| engine duckdb (lake + delta), in process | ${ms(median(times.duckdb))} | ${ms(median(times.postgres))} | ${ratio(median(times.duckdb), median(times.postgres))} | — |
| whole CLI process: totals / duckdb | ${ms(cliTotals)} / ${ms(cliGroup)} | ${ms(cliGroupPg)} | ${ratio(cliTotals, cliGroupPg)} / ${ratio(cliGroup, cliGroupPg)} | — |
| building the monthly totals (first run of the engine: every row) | ${(build.seconds).toFixed(1)} s, ${fmt(totalsRowCount)} rows (party, month, customer) | | | — |
| identical results (${fmt(rowsCount)} issuers, every column; every engine, before and after the inserts) | ${identical ? 'yes' : 'NO'} | | | yes |

How: per month, psql runs \`COPY (SELECT ... FROM invoices WHERE <month> AND created_xid < <horizon>) TO STDOUT\` (text format)
in the export's snapshot into a named pipe that DuckDB's CSV reader consumes as it arrives, writing
\`month=YYYY-MM/part-<exportId>.parquet\` (staged, then committed by the manifest); two months at a time (PostgreSQL, psql and DuckDB all run at once;
nothing is buffered beyond the pipe). The naive pipeline writes the whole CSV to disk first, then converts it.
group's totals engine: ${totalsReason}. After the inserts: ${inc.reason}. duckdb engine: ${reason}.
Load average (1 min) at the end of the run: ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores (other work on the machine slows the three-process export most).
`,
);
