// Every statement of a conversion that depends on the table: built here from the names and the
// inspected facts, as text (the dry run prints the same text the phases run). The fixed DDL is in
// sql/convert-*.sql and sql/invoice-ids.sql, filled in here with the conversion's names.
import type { Client } from '../../db/client.js';
import { locatorSql, locatorTable } from '../apply.js';
import { monthBounds, type Month } from '../partitions.js';
import { sqlStatements, sqlTemplate } from '../sql-file.js';
import { ConversionError } from './types.js';
import { idUniqueIndex, type TableFacts } from './inspect.js';
import { prefixedName, type Names, type Quote } from './names.js';

/** The table's facts with what the statements derive from them. */
export interface Sql {
  q: Quote;
  facts: TableFacts;
  /** Stored columns, in the old table's order (generated ones are computed by the new table). */
  cols: string;
  monthExpr: string;
  n: Names;
}

export function sqlContext(q: Quote, facts: TableFacts, n: Names): Sql {
  const cols = facts.columns
    .filter((c) => !c.generated)
    .map((c) => q(c.name))
    .join(', ');
  return { q, facts, cols, monthExpr: monthExpr(n, facts.issueDate), n };
}

/** The month (UTC) of a row's issue date, as SQL. */
export function monthExpr(n: Names, issueDate: TableFacts['issueDate']): string {
  return issueDate === 'timestamptz' ? `date_trunc('month', ${n.date} AT TIME ZONE 'UTC')` : `date_trunc('month', ${n.date}::timestamp)`;
}

function dateType(s: Sql): string {
  return s.facts.columns.find((c) => c.name === s.n.dateName)?.type ?? 'timestamptz';
}

/** The fixed statements of a sql/convert-*.sql file, with the conversion's names. */
function convertSql(file: string, n: Names, extra: Record<string, string> = {}): string[] {
  return sqlStatements(
    sqlTemplate(file, {
      parent: n.parent,
      newTable: n.newTable,
      locator: n.locator,
      log: n.log,
      state: n.state,
      capture: n.capture,
      guard: n.guard,
      ...extra,
    }),
  );
}

/**
 * sql/invoice-ids.sql for the table, in three parts: the locator without its key (filled by the
 * backfill, keyed after it in one build), its key, and the trigger that keeps it in step (the switch).
 */
function locatorParts(s: Sql): { table: string; key: string; sync: string[] } {
  const [table, ...sync] = sqlStatements(locatorSql(s.n.tables, dateType(s)));
  const m = /^CREATE TABLE IF NOT EXISTS (\S+) \(([\s\S]*?),\s*(CONSTRAINT \S+ PRIMARY KEY [^\n]*)\n\)$/.exec(table);
  if (!m)
    throw new ConversionError(
      'sql/invoice-ids.sql does not start with CREATE TABLE IF NOT EXISTS ... (..., CONSTRAINT ... PRIMARY KEY ...)',
    );
  return { table: `CREATE TABLE IF NOT EXISTS ${m[1]} (${m[2]}\n)`, key: `ALTER TABLE ${m[1]} ADD ${m[3]}`, sync };
}

export interface IndexStep {
  /** Name while it is built on invoices_part; renamed to `finalName` at the switch. */
  name: string;
  finalName: string;
  sql: string;
  description: string;
}

/** The new table's keys and the old table's indexes translated, with what is carried and what is not. */
export function translateIndexes(s: Sql): { steps: IndexStep[]; carried: string[]; warnings: string[] } {
  const { q, facts, n } = s;
  const { raw } = n;
  const locator = locatorTable(n.tables);
  const steps: IndexStep[] = [];
  const carried: string[] = [];
  const warnings: string[] = [];
  const idIndex = idUniqueIndex(facts, n);
  steps.push({
    name: `${raw.newTable}_pkey`,
    finalName: `${raw.parent}_pkey`,
    sql: `ALTER TABLE ${n.newTable} ADD CONSTRAINT ${q(`${raw.newTable}_pkey`)} PRIMARY KEY (${n.id}, ${n.date})`,
    description: `primary key (${n.idName}, ${n.dateName})`,
  });
  steps.push({
    name: `${locator}_pkey`,
    finalName: `${locator}_pkey`,
    sql: locatorParts(s).key,
    description: `${locator} primary key: invoice_id unique across partitions`,
  });
  carried.push(
    `${n.idName} stays unique across partitions: ${idIndex?.name ?? 'the unique index'} becomes ${locator}_pkey (kept in step by a trigger)`,
  );
  for (const ix of facts.indexes) {
    if (ix === idIndex) continue;
    if (!ix.valid) {
      warnings.push(`index ${ix.name} is invalid (an interrupted CREATE INDEX CONCURRENTLY?): not recreated`);
      continue;
    }
    if (ix.contype === 'x') {
      warnings.push(`exclusion constraint ${ix.constraint} cannot be carried to a partitioned table: not recreated`);
      continue;
    }
    let tmp = prefixedName(ix.name, n.raw.newTable, n.raw.parent);
    if (steps.some((x) => x.name === tmp)) tmp = prefixedName(`${ix.name}_${steps.length}`, n.raw.newTable, n.raw.parent);
    const samePk =
      ix.unique && !ix.partial && !ix.expressions && ix.keys.length === 2 && ix.keys.includes(n.idName) && ix.keys.includes(n.dateName);
    if (samePk) {
      carried.push(`index ${ix.name}: same keys as the new primary key, not duplicated`);
      continue;
    }
    // A unique index on a partitioned table must contain the partition key as a plain column.
    const canStayUnique = ix.unique && !ix.expressions && ix.keys.includes(n.dateName);
    const at = ix.def.indexOf(' USING ');
    const tail = at >= 0 ? ix.def.slice(at) : '';
    // The new primary key is (invoice_id, issue_date): an old primary key on other columns becomes a unique key.
    const finalName = ix.primary ? prefixedName(`${raw.parent}_${ix.keys.join('_')}_key`, raw.parent, raw.parent) : ix.name;
    if (ix.constraint && canStayUnique && ix.condef) {
      steps.push({
        name: tmp,
        finalName,
        sql: `ALTER TABLE ${n.newTable} ADD CONSTRAINT ${q(tmp)} ${ix.condef.replace(/^PRIMARY KEY/, 'UNIQUE')}`,
        description: `${ix.primary ? 'unique (was the primary key)' : 'unique constraint'} ${ix.name}`,
      });
      carried.push(`${ix.primary ? 'primary key' : 'unique constraint'} ${ix.name}${ix.primary ? ' (as a unique constraint)' : ''}`);
      continue;
    }
    if (ix.unique && !canStayUnique) {
      warnings.push(
        `${ix.constraint ? 'unique constraint' : 'unique index'} ${ix.name} (${ix.keys.join(', ') || 'an expression'}) cannot stay unique on a table partitioned by ${n.dateName}: recreated as a plain index; enforce that uniqueness another way`,
      );
    } else {
      carried.push(`index ${ix.name}`);
    }
    steps.push({
      name: tmp,
      finalName,
      sql: `CREATE ${ix.unique && canStayUnique ? 'UNIQUE ' : ''}INDEX ${q(tmp)} ON ${n.newTable}${tail}`,
      description: `index ${ix.name}`,
    });
  }
  return { steps, carried, warnings };
}

/** The prepare transaction: state and log, the partitioned table and its partitions, the locator, rights, capture. */
export function prepareStatements(client: Client, s: Sql, partitions: Array<{ name: string; month: Month }>, rowsTotal: number): string[] {
  const { q, facts, n } = s;
  const lit = (v: string) => client.escapeLiteral(v);
  const out: string[] = [
    ...convertSql('convert-state.sql', n),
    `CREATE TABLE ${n.newTable} (LIKE ${n.parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED INCLUDING IDENTITY) PARTITION BY RANGE (${n.date})`,
    `COMMENT ON TABLE ${n.newTable} IS ${lit(facts.comment ?? `${n.raw.parent}, partitioned by month of ${n.dateName}: being filled by invoices partition --convert, renamed to ${n.raw.parent} when it finishes`)}`,
  ];
  // The watermark column of the tool's layout (sql/invoices.sql), for incremental export and scoring.
  if (!facts.columns.some((c) => c.name === 'created_xid'))
    out.push(`ALTER TABLE ${n.newTable} ADD COLUMN created_xid xid8 NOT NULL DEFAULT pg_current_xact_id()`);
  for (const p of partitions) {
    const { from, to } = monthBounds(p.month);
    out.push(`CREATE TABLE ${p.name} PARTITION OF ${n.newTable} FOR VALUES FROM (${lit(from)}) TO (${lit(to)})`);
  }
  out.push(`CREATE TABLE ${n.defaultPartition} PARTITION OF ${n.newTable} DEFAULT`);
  // invoice_ids from sql/invoice-ids.sql, issue_date of the table's own type; its key comes after the backfill.
  out.push(locatorParts(s).table);
  if (facts.owner !== facts.currentUser) {
    for (const t of [n.newTable, ...partitions.map((p) => p.name), n.defaultPartition, n.locator])
      out.push(`ALTER TABLE ${t} OWNER TO ${q(facts.owner)}`);
  }
  for (const g of facts.grants) {
    out.push(`GRANT ${g.privilege} ON ${n.newTable} TO ${g.grantee ? q(g.grantee) : 'PUBLIC'}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
  }
  // The invoice_ids trigger writes as the user who writes invoices: give invoice_ids the same readers and writers.
  const locatorPrivileges = new Map<string, Set<string>>();
  for (const g of facts.grants) {
    const set = locatorPrivileges.get(g.grantee) ?? new Set<string>();
    if (g.privilege === 'SELECT') set.add('SELECT');
    if (['INSERT', 'UPDATE', 'DELETE'].includes(g.privilege)) for (const p of ['SELECT', 'INSERT', 'UPDATE', 'DELETE']) set.add(p);
    if (set.size) locatorPrivileges.set(g.grantee, set);
  }
  for (const [grantee, set] of locatorPrivileges)
    out.push(`GRANT ${[...set].join(', ')} ON ${n.locator} TO ${grantee ? q(grantee) : 'PUBLIC'}`);
  out.push(...convertSql('convert-capture.sql', n, { schema: q(facts.schema), id: n.id, label: n.label.replace(/'/g, "''") }));
  // Last, so the locks on customers and invoices are held only for the commit.
  for (const c of facts.constraints.filter((x) => x.contype === 'f'))
    out.push(`ALTER TABLE ${n.newTable} ADD CONSTRAINT ${q(c.name)} ${c.def}`);
  out.push(...convertSql('convert-triggers.sql', n));
  out.push(`INSERT INTO ${n.state} (phase, old_table, rows_total) VALUES ('backfill', ${facts.oid}, ${rowsTotal})`);
  return out;
}

/** One backfill batch with its locator rows ($1 = batch size, $2 = last copied id): the rows copied and the last id. */
export function backfillSql(s: Sql, first: boolean): string {
  const { n } = s;
  return `WITH batch AS (
  SELECT ${s.cols} FROM ${n.parent}${first ? '' : ` WHERE ${n.id} > $2`} ORDER BY ${n.id} LIMIT $1
), copied AS (
  INSERT INTO ${n.newTable} (${s.cols}) OVERRIDING SYSTEM VALUE SELECT ${s.cols} FROM batch RETURNING ${n.id}, ${n.date}
), located AS (
  INSERT INTO ${n.locator} (invoice_id, issue_date) SELECT ${n.id}, ${n.date} FROM copied RETURNING invoice_id
)
SELECT count(*)::int8 AS n, max(invoice_id)::text AS last FROM located`;
}

/** The state's updates: the backfill's cursor ($1 last id, $2 rows), or the phase reached. */
export function stateSql(n: Names, phase?: 'indexes' | 'sync'): string {
  return phase
    ? `UPDATE ${n.state} SET phase = '${phase}', updated_at = now()`
    : `UPDATE ${n.state} SET last_copied_id = $1, rows_copied = rows_copied + $2, updated_at = now()`;
}

export function vacuumSql(n: Names): string {
  return `VACUUM (ANALYZE) ${n.newTable}, ${n.locator}`;
}

/** The catch-up's statements: take a batch of the log, delete and re-copy its ids, consume it; compare those rows. */
export function replaySql(s: Sql, limit: number | null) {
  const { n } = s;
  return {
    pick: `SELECT array_agg(seq)::text[] AS seqs, array_agg(DISTINCT invoice_id)::text[] AS ids
       FROM (SELECT seq, invoice_id FROM ${n.log} ORDER BY seq${limit ? ` LIMIT ${limit}` : ''}) l`,
    deleteLocated: `DELETE FROM ${n.locator} WHERE invoice_id = ANY ($1::bigint[])`,
    deleteCopied: `DELETE FROM ${n.newTable} WHERE ${n.id} = ANY ($1::bigint[])`,
    copy: `WITH copied AS (
       INSERT INTO ${n.newTable} (${s.cols}) OVERRIDING SYSTEM VALUE
       SELECT ${s.cols} FROM ${n.parent} WHERE ${n.id} = ANY ($1::bigint[]) RETURNING ${n.id}, ${n.date}
     ) INSERT INTO ${n.locator} (invoice_id, issue_date) SELECT ${n.id}, ${n.date} FROM copied`,
    consume: `DELETE FROM ${n.log} WHERE seq = ANY ($1::bigint[])`,
  };
}

/** Rows of the ids in $1 that differ between the table, the new table and the locator: a count and the first ids. */
export function compareRowsSql(s: Sql): string {
  const { n } = s;
  return `WITH o AS (SELECT ${n.id} AS invoice_id, ROW(${s.cols})::text AS r FROM ${n.parent} WHERE ${n.id} = ANY ($1::bigint[])),
          n AS MATERIALIZED (SELECT ${n.id} AS invoice_id, ${n.date} AS issue_date, ROW(${s.cols})::text AS r FROM ${n.newTable} WHERE ${n.id} = ANY ($1::bigint[])),
          l AS (SELECT invoice_id, issue_date FROM ${n.locator} WHERE invoice_id = ANY ($1::bigint[])),
          d AS ((SELECT invoice_id FROM (SELECT * FROM o EXCEPT ALL SELECT invoice_id, r FROM n) a)
                UNION ALL (SELECT invoice_id FROM (SELECT invoice_id, r FROM n EXCEPT ALL SELECT * FROM o) b)
                UNION ALL (SELECT invoice_id FROM (SELECT invoice_id, issue_date FROM n EXCEPT ALL SELECT * FROM l) c)
                UNION ALL (SELECT invoice_id FROM (SELECT * FROM l EXCEPT ALL SELECT invoice_id, issue_date FROM n) e))
     SELECT count(*)::text AS n, (array_agg(DISTINCT invoice_id::text))[1:5] AS ids FROM d`;
}

/** The verification's sums: per month of a table (logged ids left out), and of the locator. */
export function verifySql(s: Sql) {
  const { n } = s;
  return {
    months: (table: string) =>
      `SELECT to_char(${s.monthExpr}, 'YYYY-MM') AS month, count(*)::text AS n, ${s.facts.hasAmount ? `sum(${n.amount})::text` : 'NULL::text'} AS amount, sum(${n.id})::text AS ids
       FROM ${table} t WHERE NOT EXISTS (SELECT 1 FROM ${n.log} l WHERE l.invoice_id = t.${n.id}) GROUP BY 1 ORDER BY 1`,
    locator: `SELECT count(*)::text AS n, sum(invoice_id)::text AS ids, (SELECT count(DISTINCT invoice_id) FROM ${n.log})::text AS skipped
         FROM ${n.locator} t WHERE NOT EXISTS (SELECT 1 FROM ${n.log} l WHERE l.invoice_id = t.invoice_id)`,
  };
}

export interface Relations {
  /** Locked first: only this tool uses them, but autovacuum may. */
  own: string[];
  /** Locked once the own ones are held; the exclusive lock on invoices is timed from here. */
  shared: string[];
}

export interface SwitchPlan {
  relations: Relations;
  statements: Array<{ sql: string; optional?: string }>;
  carried: string[];
  warnings: string[];
}

/** The switch's DDL, from the catalog as it is; `newSequences`: the new table's identity sequences. */
export function switchStatements(
  s: Sql,
  steps: IndexStep[],
  newSequences: Array<{ name: string; sequence: string | null }>,
  lit: (v: string) => string,
): SwitchPlan {
  const { q, facts, n } = s;
  const statements: SwitchPlan['statements'] = [];
  const carried: string[] = [];
  const warnings: string[] = [];
  const views = facts.dependents.filter((v) => v.relkind === 'v');
  const relations: Relations = {
    own: [n.newTable, n.locator],
    shared: [n.parent, ...new Set(facts.inbound.map((f) => f.table)), ...views.map((v) => v.name)],
  };
  statements.push({ sql: `DROP TRIGGER ${n.capture} ON ${n.parent}` }, { sql: `DROP TRIGGER ${n.guard} ON ${n.parent}` });
  // Free the names the new table takes: the old table's indexes (and the constraints behind them) and identity sequences.
  for (const ix of facts.indexes)
    statements.push({ sql: `ALTER INDEX ${q(ix.name)} RENAME TO ${q(prefixedName(ix.name, n.raw.oldTable, n.raw.parent))}` });
  const identity = facts.columns.filter((c) => c.identity && c.sequence);
  for (const c of identity)
    statements.push({
      sql: `ALTER SEQUENCE ${c.sequence} RENAME TO ${q(prefixedName(`${n.raw.parent}_${c.name}_seq`, n.raw.oldTable, n.raw.parent))}`,
    });
  statements.push({ sql: `ALTER TABLE ${n.parent} RENAME TO ${n.oldTable}` }, { sql: `ALTER TABLE ${n.newTable} RENAME TO ${n.parent}` });
  for (const st of steps) if (st.name !== st.finalName) statements.push({ sql: `ALTER INDEX ${q(st.name)} RENAME TO ${q(st.finalName)}` });
  for (const c of identity) {
    // Identity: the new table's own sequence takes the usual name and continues where the old one
    // was, or past the largest id if ids were also written by hand.
    const schema = q(facts.schema);
    const current =
      newSequences.find((x) => x.name === c.name)?.sequence ??
      `${schema}.${q(prefixedName(`${n.raw.parent}_${c.name}_seq`, n.raw.newTable, n.raw.parent))}`;
    const finalName = q(prefixedName(`${n.raw.parent}_${c.name}_seq`, n.raw.parent, n.raw.parent));
    const oldSeq = `${schema}.${q(prefixedName(`${n.raw.parent}_${c.name}_seq`, n.raw.oldTable, n.raw.parent))}`;
    statements.push({ sql: `ALTER SEQUENCE ${current} RENAME TO ${finalName}` });
    const max = c.name === n.idName ? `(SELECT max(${n.id}) FROM ${n.parent})` : 'NULL::bigint';
    statements.push({
      sql: `SELECT setval(${lit(`${schema}.${finalName}`)}, CASE WHEN ${max} > s.last_value THEN ${max} ELSE s.last_value END, ${max} > s.last_value OR s.is_called) FROM ${oldSeq} s`,
    });
    carried.push(`identity ${c.name}: continues after the old sequence's last value and max(${c.name})`);
  }
  for (const c of facts.columns.filter((x) => !x.identity && x.sequence && x.ownedSequence)) {
    statements.push({ sql: `ALTER SEQUENCE ${c.sequence} OWNED BY ${n.parent}.${q(c.name)}` });
    carried.push(`sequence ${c.sequence}: the default of ${c.name} keeps using it; now owned by the new table`);
  }
  // The rest of sql/invoice-ids.sql: the trigger that keeps invoice_ids in step, on the partitioned table.
  for (const sql of locatorParts(s).sync) statements.push({ sql });
  for (const tg of facts.triggers) {
    const sql = tg.def.replace(/ ON (\S+) /, (_m, on: string) => (on.endsWith(n.parent) ? ` ON ${n.parent} ` : _m));
    // The old table's trigger keeps its name; a partitioned table takes it too (names are per table).
    statements.push({ sql, optional: `trigger ${tg.name} could not be recreated on the partitioned table` });
    // Keep its firing mode: disabled, or firing only in (or also in) replication sessions.
    const mode: Record<string, string> = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };
    if (mode[tg.enabled])
      statements.push({
        sql: `ALTER TABLE ${n.parent} ${mode[tg.enabled]} TRIGGER ${q(tg.name)}`,
        optional: `trigger ${tg.name} could not be set to ${mode[tg.enabled]}`,
      });
    carried.push(`trigger ${tg.name}`);
  }
  for (const v of views) {
    const options = v.options?.length ? ` WITH (${v.options.join(', ')})` : '';
    statements.push({
      sql: `CREATE OR REPLACE VIEW ${v.name}${options} AS ${v.def.trim().replace(/;$/, '')}`,
      optional: `view ${v.name} still reads ${n.oldTable}: recreate it on ${n.parent}`,
    });
    carried.push(`view ${v.name}: now reads the partitioned table`);
  }
  for (const v of facts.dependents.filter((x) => x.relkind !== 'v')) {
    warnings.push(
      `materialized view ${v.name} still reads ${n.oldTable} (it follows the table it was created on): recreate it (DROP MATERIALIZED VIEW ${v.name}; CREATE MATERIALIZED VIEW ${v.name} AS ...) before dropping ${n.oldTable}`,
    );
  }
  for (const f of facts.functions)
    warnings.push(
      `function ${f} has a SQL-standard body bound to the old table: recreate it (CREATE OR REPLACE FUNCTION) so it reads the partitioned table`,
    );
  for (const f of facts.inbound) {
    statements.push({ sql: `ALTER TABLE ${f.table} DROP CONSTRAINT ${q(f.name)}` });
    statements.push({ sql: `ALTER TABLE ${f.table} ADD CONSTRAINT ${q(f.name)} ${repointForeignKey(f.def, n.locator)} NOT VALID` });
    carried.push(`foreign key ${f.name} on ${f.table}: now references ${n.locator} (invoice_id), validated after the switch`);
  }
  statements.push({ sql: `UPDATE ${n.state} SET phase = 'switched', updated_at = now()` });
  return { relations, statements, carried, warnings };
}

/** The exclusive locks of the switch: the conversion's own relations first, then the shared ones. */
export function lockSql(relations: Relations): { own: string; shared: string } {
  return {
    own: `LOCK TABLE ${relations.own.join(', ')} IN ACCESS EXCLUSIVE MODE`,
    shared: `LOCK TABLE ${relations.shared.join(', ')} IN ACCESS EXCLUSIVE MODE`,
  };
}

/** "FOREIGN KEY (x) REFERENCES invoices(invoice_id) ON DELETE CASCADE" -> the same, referencing invoice_ids. */
function repointForeignKey(def: string, locator = 'invoice_ids'): string {
  const at = def.indexOf(' REFERENCES ');
  const open = def.indexOf('(', at + 12);
  const close = def.indexOf(')', open);
  if (at < 0 || open < 0 || close < 0) throw new ConversionError(`cannot read foreign key definition "${def}"`);
  return `${def.slice(0, at)} REFERENCES ${locator}(invoice_id)${def.slice(close + 1).replace(/ NOT VALID$/, '')}`;
}

export function validateSql(fk: { name: string; table: string }, q: Quote): string {
  return `ALTER TABLE ${fk.table} VALIDATE CONSTRAINT ${q(fk.name)}`;
}

/** What the finish drops (sql/convert-finish.sql). */
export function finishStatements(n: Names): string[] {
  return convertSql('convert-finish.sql', n);
}

/** What --cancel drops (sql/convert-cancel.sql). */
export function cancelStatements(n: Names): string[] {
  return convertSql('convert-cancel.sql', n);
}
