#!/usr/bin/env node
// Lineage (issue 10): what binding derived data to its source costs. The check every command
// run makes (describe the table, read its lineage, compare, read the change log since the
// watermark) against a bare round trip; an incremental totals refresh against a rebuild (a
// refresh stays incremental when nothing was reset); and what the change-log trigger adds to
// an UPDATE (inserts carry no trigger). Written into BENCHMARKS.md between
// <!-- bench:lineage --> markers. Scratch database `invoices_bench_lineage` on the server the
// CLI would use. LINEAGE_INVOICES (default 1,000,000) over 48 monthly partitions.
import pg from 'pg';
import { resolveConfig } from '../dist/config.js';
import { groupInvoices } from '../dist/analytics/group.js';
import { monthWindow } from '../dist/analytics/window.js';
import { changesSince } from '../dist/table/changes.js';
import { describeTable } from '../dist/table/describe.js';
import { compareLineage, readLineage } from '../dist/table/lineage.js';
import {
  AS_OF,
  childEnv as envFor,
  cli,
  fmt,
  log,
  machine,
  median,
  quantile,
  ratio,
  scratchDatabase,
  timed,
  today,
  writeSection,
} from './lib.js';

const INVOICES = Number(process.env.LINEAGE_INVOICES ?? 1_000_000);
const CUSTOMERS = Math.max(2, Math.round(INVOICES / 50));
const MONTHS = 48;
const CHECKS = 300;

const { url, serverVersion } = await scratchDatabase('invoices_bench_lineage');
const env = envFor(url);
const ctx = { config: resolveConfig({ databaseUrl: url, env: {}, cwd: process.cwd() }) };
log(`seed: ${fmt(INVOICES)} invoices, ${fmt(CUSTOMERS)} customers over ${MONTHS} months`);
timed(
  'node',
  [
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
  ],
  { env },
);
timed('psql', [url, '-qc', 'VACUUM ANALYZE'], { env });

const client = new pg.Client({ connectionString: url });
await client.connect();
await client.query("SET TimeZone = 'UTC'");
const ms = async (fn) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};

// --- the check of every command run ---------------------------------------------------------
const source = await describeTable(client);
const stored = {
  lineage: await readLineage(client, source),
  watermark: (await client.query('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x')).rows[0].x,
};
const check = [];
const describe = [];
const roundTrip = [];
for (let i = 0; i < CHECKS; i++) {
  roundTrip.push(await ms(() => client.query('SELECT 1')));
  let s;
  describe.push(await ms(async () => (s = await describeTable(client))));
  check.push(
    await ms(async () => {
      if (compareLineage(stored.lineage, await readLineage(client, s)).kind !== 'same')
        throw new Error('lineage moved during the benchmark');
      await changesSince(client, s, stored, []);
    }),
  );
}
const partitions = Object.keys(stored.lineage.leaves).length;

// --- incremental refresh against a rebuild ----------------------------------------------------
const window = monthWindow(6, AS_OF);
const group = async () => {
  const t = performance.now();
  const r = await groupInvoices(ctx, { window, by: 'issuer', engine: 'totals', lake: '/nonexistent', top: 10 });
  return { seconds: (performance.now() - t) / 1000, reason: r.reason };
};
log('totals: first build');
const build = await group();
log('totals: 10,000 new invoices, then an incremental refresh');
await client.query(`INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount)
  SELECT timestamptz '${AS_OF}' - (g % 150) * interval '1 day', 1 + g % ${CUSTOMERS}, 1 + (g + 1) % ${CUSTOMERS}, (g % 9000) / 7.0 + 1 FROM generate_series(1, 10000) g`);
await new Promise((r) => setTimeout(r, 200));
const incremental = await group();
if (!/10000 invoice\(s\) added/.test(incremental.reason)) throw new Error(`not incremental: ${incremental.reason}`);
log('totals: TRUNCATE of one partition, then the refresh recomputes its month only');
const {
  rows: [victim],
} = await client.query(`SELECT c.relname AS name FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
  WHERE h.inhparent = 'invoices'::regclass AND c.relname ~ '_p\\d{4}_\\d{2}$' ORDER BY c.relname DESC OFFSET 2 LIMIT 1`);
await client.query(`TRUNCATE ${victim.name}`);
const afterTruncate = await group();
if (!/recomputed/.test(afterTruncate.reason)) throw new Error(`expected one month recomputed: ${afterTruncate.reason}`);

// --- what the change-log trigger adds to an UPDATE --------------------------------------------
const UPDATED = 100_000;
const update = async () =>
  ms(() =>
    client.query(
      `UPDATE invoices SET amount = amount + 0.01 WHERE invoice_id IN (SELECT invoice_id FROM invoices ORDER BY invoice_id LIMIT ${UPDATED})`,
    ),
  );
const withTrigger = [];
const without = [];
for (let i = 0; i < 3; i++) {
  withTrigger.push(await update());
  await client.query('ALTER TABLE invoices DISABLE TRIGGER invoice_changes_track');
  without.push(await update());
  await client.query('ALTER TABLE invoices ENABLE TRIGGER invoice_changes_track');
}
const single = [];
const singleWithout = [];
for (let i = 0; i < 200; i++)
  single.push(await ms(() => client.query('UPDATE invoices SET amount = amount + 0.01 WHERE invoice_id = $1', [1000 + i])));
await client.query('ALTER TABLE invoices DISABLE TRIGGER invoice_changes_track');
for (let i = 0; i < 200; i++)
  singleWithout.push(await ms(() => client.query('UPDATE invoices SET amount = amount + 0.01 WHERE invoice_id = $1', [1000 + i])));
await client.query('ALTER TABLE invoices ENABLE TRIGGER invoice_changes_track');
await client.end();

const f = (x) => fmt(x, 2);
writeSection(
  'lineage',
  `## Lineage: derived data bound to its source (\`node bench/lineage.js\`, ${today()})

${machine()}; PostgreSQL ${serverVersion}; ${fmt(INVOICES)} invoices over ${MONTHS} months (${partitions} partitions), ${fmt(CUSTOMERS)} customers.

| measure | figure | reference (same run) | ratio | target |
| --- | --- | --- | --- | --- |
| the lineage check of a command run (read the lineage, compare, read the change log since the watermark), median of ${CHECKS} | ${f(median(check))} ms (p95 ${f(quantile(check, 0.95))} ms) | \`SELECT 1\` round trip: ${f(median(roundTrip))} ms | ${ratio(median(check), median(roundTrip))} | <= 5 ms |
| describing the table (columns, layout, change log present: one query every command made before lineage too) | ${f(median(describe))} ms (p95 ${f(quantile(describe, 0.95))} ms) | | | — |
| totals refresh after 10,000 new invoices (incremental), with \`--top 10\` | ${f(incremental.seconds * 1000)} ms | the first build of the same totals: ${f(build.seconds * 1000)} ms | ${ratio(incremental.seconds, build.seconds)} | incremental |
| totals refresh after a TRUNCATE of one partition (that month recomputed) | ${f(afterTruncate.seconds * 1000)} ms | first build: ${f(build.seconds * 1000)} ms | ${ratio(afterTruncate.seconds, build.seconds)} | — |
| UPDATE of ${fmt(UPDATED)} rows in one statement, change-log trigger on (median of 3) | ${f(median(withTrigger))} ms | trigger disabled: ${f(median(without))} ms | ${ratio(median(withTrigger), median(without))} | — |
| UPDATE of one row, trigger on (median of 200) | ${f(median(single))} ms | trigger disabled: ${f(median(singleWithout))} ms | ${ratio(median(single), median(singleWithout))} | — |

What they said: incremental: ${incremental.reason}. After the TRUNCATE: ${afterTruncate.reason}.
Inserts fire no trigger of ours (created_xid finds them), so seed and application inserts pay nothing.
`,
);
