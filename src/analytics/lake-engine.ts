// The duckdb engine of `group`: the Parquet lake's months of the window, plus what the lake
// does not hold yet, read from PostgreSQL in one read-only snapshot: rows inserted after the
// lake's watermark (an index range scan on created_xid), and whole months whose rows were
// updated or deleted, or whose partition was replaced, since the export.
import os from 'node:os';
import path from 'node:path';
import { rmSync } from 'node:fs';
import type { Client } from '../db/client.js';
import { transaction } from '../db/transaction.js';
import { copyIntoDuckDb, makeFifo } from '../lake/copy-stream.js';
import { queryRows, sqlString, withDuckDb, type DuckDBConnection } from '../lake/duckdb.js';
import type { Manifest } from '../lake/manifest.js';
import { fileList, lakeFileProblem } from '../lake/read.js';
import { monthBounds } from '../schema/partitions.js';
import { changesSince } from '../table/changes.js';
import { customersStamp } from '../table/customers.js';
import { untrackedAdvice } from '../table/describe.js';
import { rangeCondition, xidLiteral } from '../table/watermark.js';
import { rawAggregate, type RawRow } from './dimensions.js';
import type { EngineEnv, GroupResult } from './engines.js';
import { windowMonths } from './window.js';

/** The answer from a lake of this table; under auto, `passes` instead when the lake cannot say what changed since its export, a file is missing or changed, or most of the window changed. */
export async function lakeAnswer(env: EngineEnv, manifest: Manifest, auto: boolean): Promise<GroupResult | { passes: string }> {
  if (auto) {
    const lakeDir = path.resolve(env.opts.lake);
    const unfit =
      manifest.watermark === null
        ? `the lake at ${lakeDir} has no watermark to read what changed since its export`
        : lakeFileProblem(env.opts.lake, manifest);
    if (unfit) return { passes: unfit };
  }
  return lakeGroup(env, manifest, auto);
}

async function lakeGroup(env: EngineEnv, manifest: Manifest, auto: boolean): Promise<GroupResult | { passes: string }> {
  const { client, source, dim, opts, log } = env;
  const { window } = opts;
  const watermark = manifest.watermark;
  const answer = await transaction(
    client,
    async () => {
      const months = windowMonths(window);
      // In the answer's snapshot: what the lake's rows may no longer be (updated, deleted, a partition truncated, the table replaced).
      const changes = watermark !== null ? await changesSince(client, source, manifest, months) : undefined;
      const stale = changes?.all ? months : months.filter((m) => changes?.months.has(m));
      const staleWhy = changes?.all ?? [...new Set(stale.map((m) => changes?.months.get(m)))].join('; ');
      if (auto && stale.length * 2 > months.length) {
        return {
          passes: `the lake is stale for ${stale.length} of the ${months.length} months since its export at ${manifest.exportedAt} (${staleWhy})`,
        };
      }
      const files = months.filter((m) => manifest.months[m] && !stale.includes(m)).flatMap((m) => manifest.months[m].files);
      const decimal = `DECIMAL(${manifest.amount.precision},${manifest.amount.scale})`;
      const staleCond = stale.map((m) => `(${rangeCondition(monthBounds(m).from, monthBounds(m).to)})`);
      const deltaWhere =
        watermark === null
          ? undefined
          : `${rangeCondition(window.from, window.to)} AND (created_xid >= ${xidLiteral(watermark)}${staleCond.length ? ' OR ' + staleCond.join(' OR ') : ''})`;
      // Customers as they are now when they changed since the export (reading every name costs ~0.1 s per 20,000).
      const customersMoved = stale.length > 0 || manifest.customers.stamp !== (await customersStamp(client, source.tables));

      const result = await withDuckDb(async (duck) => {
        // Usually nothing or little is missing from the lake: count it first (an index range scan on created_xid).
        const deltaRows = deltaWhere
          ? Number((await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${source.relation} WHERE ${deltaWhere}`)).rows[0].n)
          : 0;
        const invoiceTypes = { issue_date: 'TIMESTAMPTZ', issuer_id: 'BIGINT', receiver_id: 'BIGINT', amount: decimal };
        if (deltaRows > 0) {
          await copyFromPostgres(
            client,
            duck,
            `SELECT issue_date, issuer_id, receiver_id, amount FROM ${source.relation} WHERE ${deltaWhere}`,
            invoiceTypes,
            'delta',
          );
        } else {
          await duck.run(`CREATE TEMP TABLE delta (issue_date TIMESTAMPTZ, issuer_id BIGINT, receiver_id BIGINT, amount ${decimal})`);
        }
        const lakePart = files.length
          ? `SELECT issue_date, issuer_id, receiver_id, amount FROM read_parquet(${fileList(opts.lake, files)}) UNION ALL `
          : '';
        await duck.run(`CREATE TEMP VIEW win AS ${lakePart}SELECT issue_date, issuer_id, receiver_id, amount FROM delta`);
        if (customersMoved && dim.customerColumn) {
          // Grouped by a customer's attribute: every customer's, as it is now.
          await copyFromPostgres(
            client,
            duck,
            `SELECT id, name, ${dim.customerColumn} FROM ${env.customers} c`,
            { id: 'BIGINT', name: 'VARCHAR', [dim.customerColumn]: 'VARCHAR' },
            'customers',
          );
        } else {
          await duck.run(
            `CREATE TEMP VIEW customers AS SELECT id, name${dim.customerColumn ? `, ${dim.customerColumn}` : ''} FROM read_parquet(${fileList(opts.lake, manifest.customers.files)})`,
          );
        }
        const where = `issue_date >= TIMESTAMPTZ ${sqlString(window.from)} AND issue_date < TIMESTAMPTZ ${sqlString(window.to)}`;
        const raw = (await queryRows(
          duck,
          dim.sql(rawAggregate('win', where), 'customers', opts.top ? `LIMIT ${Math.trunc(opts.top)}` : ''),
        )) as unknown as RawRow[];
        return { raw, deltaRows };
      });
      // A customer's rows carry its name: the names of the rows shown, as they are now.
      if (customersMoved && !dim.customerColumn && result.raw.length) await refreshNames(client, env.customers, result.raw);
      return { ...result, stale, staleWhy, files: files.length, customersMoved };
    },
    { isolation: 'repeatable read', readOnly: true },
  );
  if (!('raw' in answer)) return answer;

  const snapshotOnly = `the lake is a snapshot of ${manifest.exportedAt}: rows inserted, updated or deleted since are NOT in this answer (${untrackedAdvice(source)})`;
  // Numbers that may be stale are said so even with --quiet.
  if (watermark === null) log.warn(snapshotOnly);
  const parts =
    watermark === null
      ? [snapshotOnly]
      : [
          `lake exported ${manifest.exportedAt} (watermark ${watermark})`,
          `${answer.deltaRows} row(s) not in the lake read from PostgreSQL`,
        ];
  if (answer.stale.length) parts.push(`months ${answer.stale.join(', ')} read whole from PostgreSQL (${answer.staleWhy} since the export)`);
  if (answer.customersMoved) parts.push(`customers' ${dim.customerColumn ?? 'names'} from PostgreSQL`);
  log.debug(`group: ${answer.files} lake file(s), delta ${answer.deltaRows} row(s)`);
  return {
    rows: answer.raw.map((r) => dim.row(r, manifest.amount.scale)),
    engine: 'duckdb',
    reason: parts.join('; '),
    deltaRows: answer.deltaRows,
    staleMonths: answer.stale,
    lakeExportedAt: manifest.exportedAt,
  };
}

/** Copies the rows of a PostgreSQL statement into a DuckDB temp table, through a FIFO beside the process (not in the lake: the lake holds only what export wrote). */
async function copyFromPostgres(
  client: Client,
  duck: DuckDBConnection,
  select: string,
  types: Record<string, string>,
  table: string,
): Promise<void> {
  const fifo = makeFifo(os.tmpdir());
  try {
    await copyIntoDuckDb(client, duck, select, types, fifo, (src) => `CREATE TEMP TABLE ${table} AS SELECT * FROM ${src}`);
  } finally {
    rmSync(fifo, { force: true });
  }
}

async function refreshNames(client: Client, customers: string, rows: RawRow[]): Promise<void> {
  const { rows: names } = await client.query<{ id: string; name: string }>(
    `SELECT id::text AS id, name FROM ${customers} c WHERE id = ANY($1::bigint[])`,
    [rows.map((r) => r.key)],
  );
  const byId = new Map(names.map((n) => [n.id, n.name]));
  for (const r of rows) r.name = byId.get(r.key) ?? null;
}
