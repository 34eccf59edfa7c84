// Side sources for use case 3: files registered in DuckDB under a name, next to the lake's
// `invoices` and `customers` views. The format comes from the extension (or NAME=PATH:format);
// the path reaches SQL only through sqlString, the name only through sqlIdentifier.
import { createReadStream, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { UsageError } from '../errors.js';
import { type DuckDBConnection, sqlIdentifier, sqlString } from '../lake/duckdb.js';

export type SourceFormat = 'csv' | 'json' | 'ndjson' | 'parquet' | 'text';
export const SOURCE_FORMATS: readonly SourceFormat[] = ['csv', 'json', 'ndjson', 'parquet', 'text'];

const BY_EXTENSION: Record<string, SourceFormat> = {
  '.csv': 'csv',
  '.tsv': 'csv',
  '.json': 'json',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
  '.parquet': 'parquet',
  '.txt': 'text',
  '.log': 'text',
  '.md': 'text',
};

const CSV_CHECK_BYTES = 256 * 2 ** 20;

const RESERVED = new Set(['invoices', 'customers', 'delta', 'win']);

export interface SideSource {
  name: string;
  path: string;
  format: SourceFormat;
}

/** Parses `NAME=PATH` or `NAME=PATH:format`; checks the name, the file and the format. */
export function parseSource(spec: string, cwd = process.cwd()): SideSource {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new UsageError(`--with must be NAME=PATH (or NAME=PATH:format), got "${spec}"`);
  const name = spec.slice(0, eq);
  sqlIdentifier(name, '--with name');
  if (RESERVED.has(name.toLowerCase())) throw new UsageError(`--with name "${name}" is taken by the lake: choose another`);
  let file = spec.slice(eq + 1);
  let format: SourceFormat | undefined;
  const colon = file.lastIndexOf(':');
  if (colon > 0 && (SOURCE_FORMATS as readonly string[]).includes(file.slice(colon + 1).toLowerCase())) {
    format = file.slice(colon + 1).toLowerCase() as SourceFormat;
    file = file.slice(0, colon);
  }
  const abs = path.resolve(cwd, file);
  if (!existsSync(abs)) throw new UsageError(`${name}: file not found: ${file}`);
  if (!statSync(abs).isFile()) throw new UsageError(`${name}: not a file: ${file}`);
  if (!format) {
    const ext = path.extname(abs).toLowerCase();
    format = BY_EXTENSION[ext];
    if (!format)
      throw new UsageError(
        `${name}: unknown format for "${file}" (extension "${ext || 'none'}"): use .csv, .json, .ndjson/.jsonl, .parquet, .txt/.log, or NAME=PATH:format with one of ${SOURCE_FORMATS.join(', ')}`,
      );
  }
  return { name, path: abs, format };
}

/** The DuckDB relation that reads a side source. */
function reader(s: SideSource): string {
  const p = sqlString(s.path);
  switch (s.format) {
    case 'csv':
      return `SELECT * FROM read_csv(${p}, header = true, strict_mode = true${path.extname(s.path).toLowerCase() === '.tsv' ? ", delim = '\\t'" : ''})`;
    case 'json':
      return `SELECT * FROM read_json(${p}, format = 'auto')`;
    case 'ndjson':
      return `SELECT * FROM read_json(${p}, format = 'newline_delimited')`;
    case 'parquet':
      return `SELECT * FROM read_parquet(${p})`;
    case 'text':
      // One row per line, numbered from 1; a final newline does not make an empty last line.
      return `SELECT line_number, rtrim(line, chr(13)) AS line FROM (
                SELECT unnest(generate_series(1, len(l))) AS line_number, unnest(l) AS line
                  FROM (SELECT string_split(regexp_replace(content, '\\r?\\n$', ''), chr(10)) AS l FROM read_text(${p}) WHERE content <> ''))`;
  }
}

/**
 * Registers each side source as a table under its name (Parquet as a view: it can be large and
 * is read column by column). Reading happens here, so a malformed file fails before the query,
 * with its name, format and, where the parser can tell, the line.
 */
export async function registerSources(duck: DuckDBConnection, sources: SideSource[]): Promise<void> {
  const seen = new Set<string>();
  for (const s of sources) {
    if (seen.has(s.name.toLowerCase())) throw new UsageError(`--with name "${s.name}" is given twice`);
    seen.add(s.name.toLowerCase());
    const kind = s.format === 'parquet' ? 'VIEW' : 'TABLE';
    // DuckDB's CSV sniffer accepts a ragged file by guessing another dialect: check the shape
    // first (side files are small; a very large one is left to DuckDB).
    if (s.format === 'csv' && path.extname(s.path).toLowerCase() === '.csv' && statSync(s.path).size <= CSV_CHECK_BYTES) {
      const bad = await firstBadCsvLine(s.path);
      if (bad) throw new UsageError(`${s.name}: cannot read ${s.path} as csv: line ${bad.line}: ${bad.why}`);
    }
    try {
      await duck.run(`CREATE OR REPLACE TEMP ${kind} ${sqlIdentifier(s.name)} AS ${reader(s)}`);
      if (kind === 'VIEW') await duck.run(`SELECT * FROM ${sqlIdentifier(s.name)} LIMIT 0`);
    } catch (err) {
      throw new UsageError(`${s.name}: cannot read ${s.path} as ${s.format}: ${await explain(err, s)}`, { cause: err });
    }
  }
}

/** DuckDB's message, first line only, with the line number found by our own scan when DuckDB gives none. */
async function explain(err: unknown, s: SideSource): Promise<string> {
  const message = (err instanceof Error ? err.message : String(err))
    .split('\n')[0]
    .replace(/^[A-Za-z ]+ Error: /, '')
    .trim();
  if (s.format === 'csv' && !/line/i.test(message)) {
    const bad = await firstBadCsvLine(s.path);
    if (bad) return `line ${bad.line}: ${bad.why}`;
  }
  if (s.format === 'ndjson') {
    // DuckDB's line numbers in NDJSON errors are not reliable: find the line ourselves.
    const bad = await firstBadJsonLine(s.path);
    if (bad) return `line ${bad.line}: ${bad.why}`;
  }
  return message;
}

/** The first line of a CSV whose field count differs from the header's, or an unterminated quote. */
export async function firstBadCsvLine(file: string): Promise<{ line: number; why: string } | undefined> {
  let line = 1;
  let fields = 1;
  let header: number | undefined;
  let quoted = false;
  let rowStart = 1;
  let empty = true;
  const endRow = (): { line: number; why: string } | undefined => {
    if (empty && fields === 1) return undefined; // blank line
    if (header === undefined) header = fields;
    else if (fields !== header) return { line: rowStart, why: `${fields} fields where the header has ${header}` };
    return undefined;
  };
  for await (const chunk of createReadStream(file, { encoding: 'utf8' })) {
    for (const ch of chunk as string) {
      if (quoted) {
        if (ch === '"')
          quoted = false; // a doubled quote ("") closes and reopens: same state after
        else if (ch === '\n') line++;
        continue;
      }
      if (ch === '"') {
        quoted = true;
        empty = false;
      } else if (ch === ',') {
        fields++;
        empty = false;
      } else if (ch === '\n') {
        const bad = endRow();
        if (bad) return bad;
        line++;
        rowStart = line;
        fields = 1;
        empty = true;
      } else if (ch !== '\r') {
        empty = false;
      }
    }
  }
  if (quoted) return { line: rowStart, why: 'a quoted field is never closed' };
  return endRow();
}

/** The first non-empty line of an NDJSON file that is not a JSON value. */
export async function firstBadJsonLine(file: string): Promise<{ line: number; why: string } | undefined> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const text of lines) {
    n++;
    if (!text.trim()) continue;
    try {
      JSON.parse(text);
    } catch (err) {
      lines.close();
      return { line: n, why: `not valid JSON (${(err as Error).message.split('\n')[0]})` };
    }
  }
  return undefined;
}
