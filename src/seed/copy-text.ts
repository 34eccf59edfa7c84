// PostgreSQL's text COPY format with the method names of BinaryCopyWriter, for tables whose
// column types the binary encoder does not write (integer ids, a date issue date, ...): the
// server converts each value to the column's own type. Values are formatted from integers
// (microseconds, cents), never through a float.
import type { Writable } from 'node:stream';
import type { BinaryCopyWriter } from '../db/copy-binary.js';

/** What the seed's COPY loops call: either encoder. */
export type RowWriter = Pick<BinaryCopyWriter, 'row' | 'int8' | 'timestamptz' | 'numericCents' | 'text' | 'end'>;

/** Encodes rows as tab-separated text lines and writes them to a COPY stream with backpressure. */
export class TextCopyWriter implements RowWriter {
  private chunk = '';
  private fields = -1;

  constructor(
    private readonly out: Writable,
    private readonly chunkSize = 1 << 20,
  ) {}

  /** Starts a row; flushes first when the chunk is full. Await it only when it returns a promise. */
  row(_fields: number, _maxBytes: number): Promise<void> | undefined {
    if (this.fields >= 0) this.chunk += '\n';
    this.fields = 0;
    return this.chunk.length >= this.chunkSize ? this.flush() : undefined;
  }

  int8(v: number): void {
    this.field(String(v));
  }

  /** "2026-03-01 23:30:00.123456+00": UTC for a timestamptz; a timestamp ignores the zone and keeps the UTC time. */
  timestamptz(unixMicros: number): void {
    const seconds = Math.floor(unixMicros / 1e6);
    const iso = new Date(seconds * 1000).toISOString();
    this.field(`${iso.slice(0, 10)} ${iso.slice(11, 19)}.${String(unixMicros - seconds * 1e6).padStart(6, '0')}+00`);
  }

  /** Cents as a decimal with two places; the server rounds it to the column's scale. */
  numericCents(cents: number): void {
    const whole = Math.floor(cents / 100);
    this.field(`${whole}.${String(cents - whole * 100).padStart(2, '0')}`);
  }

  /** Text with COPY's escapes; `null` writes SQL NULL. */
  text(s: string | null): void {
    this.field(
      s === null ? '\\N' : s.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r')),
    );
  }

  /** Ends the last row, writes what is buffered, then ends the stream. */
  async end(): Promise<void> {
    if (this.fields >= 0) this.chunk += '\n';
    await this.flush();
    this.out.end();
  }

  private field(value: string): void {
    this.chunk += this.fields++ === 0 ? value : `\t${value}`;
  }

  private flush(): Promise<void> | undefined {
    const data = this.chunk;
    this.chunk = '';
    if (!data || this.out.write(data)) return undefined;
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
