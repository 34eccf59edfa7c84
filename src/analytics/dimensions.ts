// What `group --by` groups by: one entry per dimension. Every engine computes the same
// per-customer aggregates of a party (`SELECT id, n, s`: the invoices a customer issued, or
// received, in the window); a dimension says which parties it reads and how their rows become
// the answer's rows (the statement below runs unchanged in PostgreSQL and DuckDB), and which
// columns it prints. Adding a dimension is one entry here plus its tests.
import type { Column } from '../output/render.js';
import { atScale, average, fromUnits, toUnits } from './decimal.js';

export type Party = 'issuer' | 'receiver';

/** A row of the answer: the dimension's key columns, then invoices, total and average (strings: exact decimals). */
export type GroupRow = Record<string, string | null>;

/** A statement's row, before the amounts are put at the column's scale. */
export interface RawRow {
  key: string;
  name?: string | null;
  n: string;
  total: string;
  issued?: string;
  received?: string;
}

/** Per-party aggregates: a statement `SELECT id, n, s` (customer id, invoices, sum of amounts). */
export type Aggregate = (party: Party) => string;

export interface Dimension {
  /** The `--by` value. */
  name: string;
  /** One line for --help. */
  help: string;
  /** The parties whose aggregates it reads. */
  parties: readonly Party[];
  /** Its rows are the aggregate's rows in the aggregate's order (largest s first): a top K needs only the aggregate's first K. */
  ranked?: boolean;
  /** The customers column it needs (a mapped customers table without it is a usage error). */
  customerColumn?: 'country' | 'segment';
  /** The statement: `agg` per party, names and attributes from `customers` (id, name, country, segment), largest totals first. */
  sql(agg: Aggregate, customers: string, limit: string): string;
  /** The printed columns (after invoices, total, average come the same three for every dimension). */
  columns: Column<GroupRow>[];
  /** The answer's row from a statement's row. */
  row(raw: RawRow, scale: number): GroupRow;
  /** A row's label on a chart. */
  label(row: GroupRow): string;
}

const MEASURES: Column<GroupRow>[] = [
  { key: 'invoices', kind: 'int' },
  { key: 'total', kind: 'money' },
  { key: 'average', kind: 'money' },
];

/** invoices, total and average of a statement's row, exact at the column's scale. */
function measures(raw: RawRow, scale: number): GroupRow {
  const total = atScale(raw.total, scale);
  return { invoices: raw.n, total, average: average(total, BigInt(raw.n), scale) };
}

/** Grouped by the customer on one side of the invoice. */
function party(p: Party): Dimension {
  return {
    name: p,
    help: `the ${p === 'issuer' ? 'issuing' : 'receiving'} customer`,
    parties: [p],
    ranked: true,
    sql: (agg, customers, limit) => `SELECT g.id::text AS key, c.name AS name, g.n::text AS n, g.s::text AS total
        FROM (${agg(p)}) g LEFT JOIN ${customers} c ON c.id = g.id
       ORDER BY g.s DESC, g.id ${limit}`,
    columns: [{ key: 'customer_id', kind: 'int' }, { key: 'name' }, ...MEASURES],
    row: (raw, scale) => ({ customer_id: raw.key, name: raw.name ?? null, ...measures(raw, scale) }),
    label: (r) => (r.name ? `${r.name} (${r.customer_id})` : String(r.customer_id)),
  };
}

/** Grouped by a column of the issuing customer; customers without one (or unknown ids) as `unknown`. */
function issuerAttribute(column: 'country' | 'segment', help: string): Dimension {
  return {
    name: column,
    help,
    parties: ['issuer'],
    customerColumn: column,
    sql: (
      agg,
      customers,
      limit,
    ) => `SELECT coalesce(nullif(c.${column}, ''), 'unknown') AS key, sum(g.n)::text AS n, sum(g.s)::text AS total
        FROM (${agg('issuer')}) g LEFT JOIN ${customers} c ON c.id = g.id
       GROUP BY 1 ORDER BY sum(g.s) DESC, 1 ${limit}`,
    columns: [{ key: column }, ...MEASURES],
    row: (raw, scale) => ({ [column]: raw.key, ...measures(raw, scale) }),
    label: (r) => String(r[column]),
  };
}

/** Every dimension of `group --by`, in the order --help lists them. */
export const DIMENSIONS: readonly Dimension[] = [
  party('issuer'),
  party('receiver'),
  {
    name: 'customer',
    help: 'the customer on either side: issued + received, and net = issued - received',
    parties: ['issuer', 'receiver'],
    sql: (agg, customers, limit) => `WITH i AS (${agg('issuer')}), r AS (${agg('receiver')}),
        g AS (SELECT coalesce(i.id, r.id) AS id, coalesce(i.n, 0) + coalesce(r.n, 0) AS n,
                     coalesce(i.s, 0) + coalesce(r.s, 0) AS s, coalesce(i.s, 0) AS issued, coalesce(r.s, 0) AS received
                FROM i FULL JOIN r ON i.id = r.id)
        SELECT g.id::text AS key, c.name AS name, g.n::text AS n, g.s::text AS total, g.issued::text AS issued, g.received::text AS received
          FROM g LEFT JOIN ${customers} c ON c.id = g.id
         ORDER BY g.s DESC, g.id ${limit}`,
    columns: [
      { key: 'customer_id', kind: 'int' },
      { key: 'name' },
      ...MEASURES,
      { key: 'issued', kind: 'money' },
      { key: 'received', kind: 'money' },
      { key: 'net', kind: 'money' },
    ],
    row: (raw, scale) => {
      const issued = atScale(raw.issued ?? '0', scale);
      const received = atScale(raw.received ?? '0', scale);
      return {
        customer_id: raw.key,
        name: raw.name ?? null,
        ...measures(raw, scale),
        issued,
        received,
        net: fromUnits(toUnits(issued, scale) - toUnits(received, scale), scale),
      };
    },
    label: (r) => (r.name ? `${r.name} (${r.customer_id})` : String(r.customer_id)),
  },
  issuerAttribute('country', "the issuing customer's country"),
  issuerAttribute('segment', "the issuing customer's segment (enterprise, mid-market, smb, freelancer)"),
];

export const GROUP_BYS: readonly string[] = DIMENSIONS.map((d) => d.name);

/** The dimension named by `--by`, or undefined. */
export const dimension = (name: string): Dimension | undefined => DIMENSIONS.find((d) => d.name === name);

/** Per-party aggregates of raw invoice rows in `relation` matching `where`. */
export function rawAggregate(relation: string, where: string): Aggregate {
  return (p) => `SELECT ${p}_id AS id, count(*) AS n, sum(amount) AS s FROM ${relation} WHERE ${where} GROUP BY ${p}_id`;
}
