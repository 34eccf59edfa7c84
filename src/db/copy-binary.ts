// PostgreSQL's binary COPY format, written straight into large buffers: no per-row
// allocation, which is what lets `seed` approach the server's own COPY speed.
// Format: https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4
import type { Writable } from 'node:stream';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const TWO_32 = 4294967296;
/** Microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01. */
const PG_EPOCH_MICROS = 946_684_800_000_000;

/** Encodes rows into fixed-size chunks and writes them to a COPY stream with backpressure. */
export class BinaryCopyWriter {
  private buf: Buffer;
  private view: DataView;
  private pos = 0;
  private readonly digits = new Int32Array(5);

  constructor(
    private readonly out: Writable,
    private readonly chunkSize = 1 << 20,
  ) {
    this.buf = Buffer.allocUnsafe(chunkSize);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, chunkSize);
    SIGNATURE.copy(this.buf, 0);
    this.view.setInt32(11, 0); // flags
    this.view.setInt32(15, 0); // header extension length
    this.pos = 19;
  }

  /** Starts a row of `fields` columns; flushes first when fewer than `maxBytes` remain. Await it only when it returns a promise. */
  row(fields: number, maxBytes: number): Promise<void> | undefined {
    let wait: Promise<void> | undefined;
    if (this.pos + maxBytes + 2 > this.chunkSize) wait = this.flush();
    this.view.setInt16(this.pos, fields);
    this.pos += 2;
    return wait;
  }

  /** A bigint from a safe integer (|v| < 2^53). */
  int8(v: number): void {
    const b = this.view;
    let p = this.pos;
    b.setInt32(p, 8);
    const hi = Math.floor(v / TWO_32);
    b.setInt32(p + 4, hi);
    b.setUint32(p + 8, v - hi * TWO_32);
    this.pos = p + 12;
  }

  /** A timestamptz given as microseconds since the Unix epoch (UTC). */
  timestamptz(unixMicros: number): void {
    this.int8(unixMicros - PG_EPOCH_MICROS);
  }

  /** numeric with scale 2, from an integer number of cents (0 <= cents < 1e16): base-10000 digits, no float. */
  numericCents(cents: number): void {
    const d = this.digits;
    const whole = Math.floor(cents / 100);
    d[0] = Math.floor(whole / 1e12) % 10000;
    d[1] = Math.floor(whole / 1e8) % 10000;
    d[2] = Math.floor(whole / 1e4) % 10000;
    d[3] = whole % 10000;
    d[4] = (cents - whole * 100) * 100; // the cents as one base-10000 digit: .05 -> 0500
    let first = 0;
    while (first < 4 && d[first] === 0) first++; // leading zero groups of the whole part
    let last = 4;
    while (last >= first && d[last] === 0) last--; // trailing zero groups
    const n = last - first + 1;
    const b = this.view;
    let p = this.pos;
    b.setInt32(p, 8 + 2 * n);
    b.setInt16(p + 4, n);
    b.setInt16(p + 6, n === 0 ? 0 : 3 - first); // weight: base-10000 exponent of the first digit
    b.setInt16(p + 8, 0); // sign: positive
    b.setInt16(p + 10, 2); // display scale
    p += 12;
    for (let i = first; i <= last; i++, p += 2) b.setInt16(p, d[i]);
    this.pos = p;
  }

  /** UTF-8 text; `null` writes SQL NULL. Callers bound its length through row()'s maxBytes. */
  text(s: string | null): void {
    if (s === null) {
      this.view.setInt32(this.pos, -1);
      this.pos += 4;
      return;
    }
    const n = this.buf.write(s, this.pos + 4, 'utf8');
    this.view.setInt32(this.pos, n);
    this.pos += 4 + n;
  }

  /** Writes the trailer and what is buffered, then ends the stream. */
  async end(): Promise<void> {
    if (this.pos + 2 > this.chunkSize) await this.flush();
    this.view.setInt16(this.pos, -1);
    this.pos += 2;
    await this.flush();
    this.out.end();
  }

  private flush(): Promise<void> | undefined {
    const chunk = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(this.chunkSize);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.chunkSize);
    this.pos = 0;
    if (this.out.write(chunk)) return undefined;
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        this.out.off('error', onError);
        resolve();
      };
      const onError = (err: Error) => {
        this.out.off('drain', onDrain);
        reject(err);
      };
      this.out.once('drain', onDrain);
      this.out.once('error', onError);
    });
  }
}
