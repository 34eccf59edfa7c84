#!/usr/bin/env node
// `node bench/convert.js`: `invoices partition --convert` of a plain invoices table of
// BENCH_INVOICES rows (default 10M), with an application writing to it all along, against the
// reference measured on the same rows in the same run: the offline conversion (one transaction
// that copies everything into a partitioned table and builds its keys), which is how long writers
// would be locked out without --convert. Written into BENCHMARKS.md between
// <!-- bench:convert --> markers. Uses the database the CLI would use, in a scratch database
// `invoices_bench_convert` that it drops and recreates.
import { spawn } from 'node:child_process';
import pg from 'pg';
import { AS_OF, CUSTOMERS, cli, fmt, INVOICES, log, machine, scratchDatabase, today, writeSection } from './lib.js';

/** Writes per second the simulated application attempts during the conversion (0: none). */
const WRITES = Number(process.env.BENCH_CONVERT_WRITES ?? 200);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { url, serverVersion, source } = await scratchDatabase('invoices_bench_convert');
const connect = async () => {
  const c = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  await c.connect();
  return c;
};

// --- a plain invoices table as an application would have it --------------------------------
// bigserial key, foreign keys to customers, a check, an index by issuer, and payments referencing
// invoices. Loaded the fast way (rows first, keys after); ids grow with the issue date, over the
// 24 months before AS_OF.
const c = await connect();
let t = performance.now();
log(`setup: ${fmt(INVOICES)} invoices, ${fmt(CUSTOMERS)} customers in a plain table`);
await c.query(`
  CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
  INSERT INTO customers SELECT g, 'Customer ' || g FROM generate_series(1, ${CUSTOMERS}) g;
  CREATE TABLE invoices (invoice_id bigserial, issue_date timestamptz NOT NULL, issuer_id bigint NOT NULL,
                         receiver_id bigint NOT NULL, amount numeric(14,2) NOT NULL);
  INSERT INTO invoices (invoice_id, issue_date, issuer_id, receiver_id, amount)
    SELECT g, timestamptz '${AS_OF}' - interval '24 months' + (g::float8 / ${INVOICES}) * (timestamptz '${AS_OF}' - (timestamptz '${AS_OF}' - interval '24 months')),
           1 + (g * 2654435761) % ${CUSTOMERS}, 1 + (g * 40503 + 7) % ${CUSTOMERS}, round(((g * 7919) % 100000 + 1) / 100.0, 2)
      FROM generate_series(1::bigint, ${INVOICES}) g;
  ALTER TABLE invoices ADD CONSTRAINT invoices_pkey PRIMARY KEY (invoice_id);
  ALTER TABLE invoices ADD CONSTRAINT invoices_issuer_id_fkey FOREIGN KEY (issuer_id) REFERENCES customers,
                       ADD CONSTRAINT invoices_receiver_id_fkey FOREIGN KEY (receiver_id) REFERENCES customers,
                       ADD CONSTRAINT invoices_amount_check CHECK (amount >= 0);
  CREATE INDEX invoices_issuer_date_idx ON invoices (issuer_id, issue_date);
  SELECT setval(pg_get_serial_sequence('invoices', 'invoice_id'), ${INVOICES});
  CREATE TABLE payments (payment_id bigserial PRIMARY KEY, invoice_id bigint NOT NULL REFERENCES invoices, paid numeric(14,2) NOT NULL);
  INSERT INTO payments (invoice_id, paid) SELECT 1 + (g * 977) % ${INVOICES}, 1.00 FROM generate_series(1::bigint, 10000) g;`);
await c.query('VACUUM ANALYZE');
const setupSeconds = (performance.now() - t) / 1000;
const {
  rows: [{ bytes }],
} = await c.query("SELECT pg_total_relation_size('invoices') AS bytes");

// --- the reference: the offline conversion (writers locked out for all of it) -----------------
log('reference: offline conversion in one transaction (copy into a partitioned table, then its keys)');
t = performance.now();
await c.query('BEGIN');
await c.query('CREATE TABLE offline (LIKE invoices INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (issue_date)');
await c
  .query(`SELECT format('CREATE TABLE offline_p%s PARTITION OF offline FOR VALUES FROM (%L) TO (%L)', to_char(m, 'YYYY_MM'), m, m + interval '1 month')
                 FROM generate_series(date_trunc('month', timestamptz '${AS_OF}' - interval '24 months'), timestamptz '${AS_OF}', interval '1 month') m`)
  .then(async ({ rows }) => {
    for (const r of rows) await c.query(r.format);
  });
await c.query('CREATE TABLE offline_default PARTITION OF offline DEFAULT');
await c.query('INSERT INTO offline SELECT * FROM invoices');
await c.query('ALTER TABLE offline ADD PRIMARY KEY (invoice_id, issue_date)');
await c.query('CREATE INDEX ON offline (issuer_id, issue_date)');
await c.query('CREATE TABLE offline_ids AS SELECT invoice_id, issue_date FROM offline');
await c.query('ALTER TABLE offline_ids ADD PRIMARY KEY (invoice_id) INCLUDE (issue_date)');
await c.query('ROLLBACK');
const offlineSeconds = (performance.now() - t) / 1000;
await c.end();

// --- the conversion, with an application writing -------------------------------------------
// The writer inserts new invoices and updates existing ones, each its own transaction, and
// records the longest any write waited: what the application notices of the switch.
let writing = WRITES > 0;
const writes = { inserts: 0, updates: 0, maxMs: 0, errors: 0 };
async function writer() {
  const w = await connect();
  const gap = 1000 / WRITES;
  let i = 0;
  while (writing) {
    const started = performance.now();
    try {
      if (i++ % 2 === 0) {
        await w.query('INSERT INTO invoices (issue_date, issuer_id, receiver_id, amount) VALUES (now(), 1, 2, 9.99)');
        writes.inserts++;
      } else {
        await w.query('UPDATE invoices SET amount = amount + 0.01 WHERE invoice_id = $1', [1 + ((i * 7_777_777) % INVOICES)]);
        writes.updates++;
      }
    } catch (err) {
      writes.errors++;
      log(`writer: ${err.message}`);
    }
    const ms = performance.now() - started;
    writes.maxMs = Math.max(writes.maxMs, ms);
    await sleep(Math.max(0, gap - ms));
  }
  await w.end();
}

log(`convert: invoices partition --convert${WRITES ? ` (an application writing ~${WRITES}/s meanwhile)` : ''}`);
const writerDone = WRITES > 0 ? writer() : Promise.resolve();
t = performance.now();
const run = await new Promise((resolve, reject) => {
  // BENCH_DEBUG=1: the CLI's --debug timing of every statement, on stderr.
  const child = spawn(
    process.execPath,
    [cli, 'partition', '--convert', '--json', '--as-of', AS_OF, ...(process.env.BENCH_DEBUG ? ['--debug'] : [])],
    {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, TZ: 'UTC', DATABASE_URL: url },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => {
    stderr += d;
    process.stderr.write(`  ${d}`);
  });
  child.on('error', reject);
  child.on('close', (code) => (code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`convert exited ${code}: ${stderr}`))));
});
const seconds = (performance.now() - t) / 1000;
writing = false;
await writerDone;
const out = JSON.parse(run.stdout);

const check = await connect();
const {
  rows: [after],
} = await check.query(
  `SELECT (SELECT count(*) FROM invoices)::int8::text AS rows, (SELECT relkind::text FROM pg_class WHERE oid = 'invoices'::regclass) AS kind`,
);
await check.end();
if (after.kind !== 'p' || Number(after.rows) !== INVOICES + writes.inserts) {
  throw new Error(`after the conversion: relkind ${after.kind}, ${after.rows} rows, expected ${INVOICES + writes.inserts}`);
}

// --- report ---------------------------------------------------------------------------------
const rate = INVOICES / seconds;
const lockTarget = out.lockMs < 1000 ? 'met' : 'missed';
const section = `## Converting a plain table: \`invoices partition --convert\` (\`node bench/convert.js\`, ${today()})

Machine: ${machine()}. Server: PostgreSQL ${serverVersion} (${source}). ${fmt(INVOICES)} invoices
(${fmt(Number(bytes) / 2 ** 20)} MB with indexes) in a plain table with a bigserial key, two foreign keys to
${fmt(CUSTOMERS)} customers, a check, an index by issuer and a payments table referencing it${
  WRITES
    ? `; an application
wrote ~${WRITES} times a second throughout (${fmt(writes.inserts)} inserts, ${fmt(writes.updates)} updates, every one kept)`
    : ''
}.

| measure | figure | reference (same run) | target |
| --- | --- | --- | --- |
| exclusive lock on invoices held at the switch | **${fmt(out.lockMs)} ms** (attempt ${out.lockAttempts}) | offline conversion holds it ${fmt(offlineSeconds, 1)} s | < 1 s: ${lockTarget} |
| longest single write of the application during the conversion | ${WRITES ? `${fmt(writes.maxMs)} ms` : 'n/a'} | — | — |
| conversion, end to end (\`invoices partition --convert\` process) | ${fmt(seconds, 1)} s, ${fmt(rate)} rows/s (${fmt(seconds / offlineSeconds, 1)}x the offline time) | offline ${fmt(offlineSeconds, 1)} s | — |
| backfill alone (batches of 100,000, each committed with its cursor) | ${fmt(out.rowsPerSecond)} rows/s | — | — |
`;
writeSection('convert', section);
log(`setup took ${setupSeconds.toFixed(1)} s; written to BENCHMARKS.md`);
