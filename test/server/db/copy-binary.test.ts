// BinaryCopyWriter against a real server: what PostgreSQL reads back must be exactly what was meant.
import { finished } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BinaryCopyWriter } from '../../../src/db/copy-binary.js';
import { createDatabase, type TestDatabase } from '../../support/helpers.js';

let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  db = await createDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query("SET TimeZone = 'UTC'");
});

afterAll(async () => {
  await client?.end().catch(() => {});
  await db?.drop();
});

let tables = 0;

/** Creates a temp table and COPYs `count` rows into it in binary through BinaryCopyWriter. */
async function copyRows(
  columns: string,
  fields: number,
  count: number,
  write: (w: BinaryCopyWriter, i: number) => void,
  opts: { chunkSize?: number; maxBytes?: number } = {},
): Promise<string> {
  const table = `t${++tables}`;
  await client.query(`CREATE TEMP TABLE ${table} (${columns})`);
  const stream = client.query(copyFrom(`COPY ${table} FROM STDIN (FORMAT binary)`));
  const writer = new BinaryCopyWriter(stream, opts.chunkSize);
  for (let i = 0; i < count; i++) {
    const wait = writer.row(fields, opts.maxBytes ?? 200);
    if (wait) await wait;
    write(writer, i);
  }
  await writer.end();
  await finished(stream);
  return table;
}

/** Cents as the exact decimal text PostgreSQL prints for a numeric of scale 2. */
function centsText(cents: number | bigint): string {
  const c = BigInt(cents);
  return `${c / 100n}.${String(c % 100n).padStart(2, '0')}`;
}

/** Microseconds since the Unix epoch as ISO 8601 with all six fractional digits. */
function isoMicros(micros: bigint): string {
  const ms = micros / 1000n;
  const base = new Date(Number(ms)).toISOString().slice(0, 19);
  return `${base}.${String(micros % 1_000_000n).padStart(6, '0')}Z`;
}

describe('BinaryCopyWriter', () => {
  it('numericCents writes exact numeric values with scale 2', async () => {
    const cents = [
      0,
      1,
      5,
      10,
      99,
      100,
      101,
      999,
      1000,
      9999,
      10000,
      10001,
      10050,
      99999,
      100000,
      1000000,
      100000000,
      100000001,
      123456789,
      1000000000000,
      99999999999999,
      Number.MAX_SAFE_INTEGER,
    ];
    const table = await copyRows('i bigint, n numeric', 2, cents.length, (w, i) => {
      w.int8(i);
      w.numericCents(cents[i]);
    });
    const { rows } = await client.query<{ n: string; scale: number; ok: boolean }>(
      `SELECT n::text AS n, scale(n) AS scale, n = ($1::text[])[i + 1]::numeric AS ok FROM ${table} ORDER BY ${table}.i`,
      [cents.map(centsText)],
    );
    expect(rows.map((r) => r.n)).toEqual(cents.map(centsText));
    expect(rows.every((r) => r.scale === 2 && r.ok)).toBe(true);
    // Spot checks written out, not computed.
    expect(rows[0].n).toBe('0.00');
    expect(rows[2].n).toBe('0.05');
    expect(rows[3].n).toBe('0.10');
    expect(rows[12].n).toBe('100.50');
    expect(rows[16].n).toBe('1000000.00');
    expect(rows[18].n).toBe('1234567.89');
    expect(rows[20].n).toBe('999999999999.99');
    expect(rows[21].n).toBe('90071992547409.91');
  });

  it('numericCents fits numeric(14,2) up to its maximum', async () => {
    const table = await copyRows('n numeric(14,2)', 1, 3, (w, i) => w.numericCents([0, 1, 99_999_999_999_999][i]));
    const { rows } = await client.query(`SELECT n::text AS n FROM ${table} ORDER BY ${table}.n`);
    expect(rows.map((r) => r.n)).toEqual(['0.00', '0.01', '999999999999.99']);
  });

  it('int8 writes values around and above 2^32, and negatives', async () => {
    const values = [
      0,
      1,
      -1,
      2 ** 31 - 1,
      2 ** 31,
      2 ** 32 - 1,
      2 ** 32,
      2 ** 32 + 1,
      2 ** 40 + 12345,
      1_000_000_000_000_000,
      Number.MAX_SAFE_INTEGER,
      -(2 ** 32),
      -(2 ** 40) - 7,
      -Number.MAX_SAFE_INTEGER,
    ];
    const ok = await copyRows('k bigint, v bigint', 2, values.length, (w, i) => {
      w.int8(i);
      w.int8(values[i]);
    });
    const { rows } = await client.query<{ v: string }>(`SELECT v::text AS v FROM ${ok} ORDER BY k`);
    expect(rows.map((r) => r.v)).toEqual(values.map((v) => BigInt(v).toString()));
    expect(rows[6].v).toBe('4294967296');
    expect(rows[8].v).toBe('1099511640121');
  });

  it('timestamptz keeps exact microseconds', async () => {
    const micros = [
      BigInt(Date.UTC(2000, 0, 1)) * 1000n, // PostgreSQL's epoch: encoded as 0
      BigInt(Date.UTC(2000, 0, 1)) * 1000n + 1n,
      BigInt(Date.UTC(2024, 1, 29, 12, 34, 56)) * 1000n + 789_012n,
      BigInt(Date.UTC(2025, 11, 31, 23, 59, 59)) * 1000n + 999_999n,
      BigInt(Date.UTC(2026, 0, 1)) * 1000n,
      BigInt(Date.UTC(2099, 5, 15, 6, 7, 8)) * 1000n + 500_000n,
    ];
    const table = await copyRows('k bigint, ts timestamptz', 2, micros.length, (w, i) => {
      w.int8(i);
      w.timestamptz(Number(micros[i]));
    });
    const { rows } = await client.query<{ us: string; text: string; ok: boolean }>(
      `SELECT (extract(epoch FROM ts) * 1000000)::bigint::text AS us, ts::text AS text, ts = ($1::text[])[k + 1]::timestamptz AS ok
         FROM ${table} ORDER BY k`,
      [micros.map(isoMicros)],
    );
    expect(rows.map((r) => r.us)).toEqual(micros.map(String));
    expect(rows.every((r) => r.ok)).toBe(true);
    expect(rows[0].text).toBe('2000-01-01 00:00:00+00');
    expect(rows[1].text).toBe('2000-01-01 00:00:00.000001+00');
    expect(rows[2].text).toBe('2024-02-29 12:34:56.789012+00');
    expect(rows[3].text).toBe('2025-12-31 23:59:59.999999+00');
  });

  it('text writes UTF-8 and NULL', async () => {
    const texts: Array<string | null> = [
      'plain',
      '',
      'héllo wörld',
      '日本語の請求書',
      '🧾 invoice 💶',
      'O\'Brien, "quoted"\ttab\nnewline\\back',
      null,
      'Ünïcödé ß',
      null,
    ];
    const table = await copyRows('k bigint, s text', 2, texts.length, (w, i) => {
      w.int8(i);
      w.text(texts[i]);
    });
    const { rows } = await client.query<{ s: string | null; bytes: number | null }>(
      `SELECT s, octet_length(s) AS bytes FROM ${table} ORDER BY k`,
    );
    expect(rows.map((r) => r.s)).toEqual(texts);
    expect(rows.map((r) => r.bytes)).toEqual(texts.map((t) => (t === null ? null : Buffer.byteLength(t, 'utf8'))));
    const {
      rows: [nulls],
    } = await client.query(`SELECT count(*)::int AS n FROM ${table} WHERE s IS NULL`);
    expect(nulls.n).toBe(2);
  });

  it('flushes across many small chunks without losing or corrupting rows', async () => {
    const n = 20_000;
    // 256-byte chunks: a flush every few rows, rows never split, backpressure exercised.
    const table = await copyRows(
      'id bigint, ts timestamptz, amount numeric(14,2), note text',
      4,
      n,
      (w, i) => {
        w.int8(2 ** 33 + i);
        w.timestamptz(Date.UTC(2024, 0, 1) * 1000 + i * 1_000_001);
        w.numericCents(i * 37);
        w.text(i % 7 === 0 ? null : `row ${i} ✓`);
      },
      { chunkSize: 256, maxBytes: 80 },
    );
    const {
      rows: [r],
    } = await client.query(
      `SELECT count(*)::int AS n, sum(id - 8589934592)::text AS ids, sum(amount)::text AS amount,
              count(note)::int AS notes, sum(octet_length(note))::int AS note_bytes,
              max(ts)::text AS max_ts, count(*) FILTER (WHERE note <> 'row ' || (id - 8589934592) || ' ✓')::int AS bad
         FROM ${table}`,
    );
    expect(r.n).toBe(n);
    expect(r.ids).toBe(String((n * (n - 1)) / 2));
    expect(r.amount).toBe(centsText(((BigInt(n) * BigInt(n - 1)) / 2n) * 37n));
    const notes = Array.from({ length: n }, (_, i) => i).filter((i) => i % 7 !== 0);
    expect(r.notes).toBe(notes.length);
    expect(r.note_bytes).toBe(notes.reduce((s, i) => s + Buffer.byteLength(`row ${i} ✓`), 0));
    expect(r.bad).toBe(0);
    expect(r.max_ts).toBe('2024-01-01 05:33:19.019999+00'); // 19999 * 1.000001 s after midnight
  });

  it('end() with an empty buffer still writes a valid (empty) COPY', async () => {
    const table = await copyRows('k bigint', 1, 0, () => {});
    const {
      rows: [r],
    } = await client.query(`SELECT count(*)::int AS n FROM ${table}`);
    expect(r.n).toBe(0);
  });
});
