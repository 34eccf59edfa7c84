// `invoices partition --convert --dry-run`: the plan as SQL a DBA can read, phase by phase,
// with what is carried over and what is not. Changes nothing.
import { quoteIdent } from '../../tables.js';
import type { ConversionPlan } from './plan.js';
import { vacuumSql } from './statements.js';
import { CONVERT_DEFAULTS, type ConvertOptions } from './types.js';

/** The plan as SQL a DBA can read (the dry run). */
export function describePlan(plan: ConversionPlan, opts: Pick<ConvertOptions, 'lockRetries'> = {}): string {
  const fmt = (x: number) => x.toLocaleString('en-US');
  const out: string[] = [];
  const n = plan.names;
  const finish = [
    `-- ALTER TABLE ... VALIDATE CONSTRAINT for each foreign key now referencing ${n.locator} (no lock against writers)`,
    ...plan.finish,
  ];
  if (plan.status === 'done') return `-- ${n.label} is already partitioned: nothing to convert\n`;
  if (plan.status === 'finish') return `-- the switch is done; what is left:\n${finish.join(';\n')};\n`;
  out.push(`-- invoices partition --convert: the plan (nothing has been changed)`);
  if (plan.status === 'resume')
    out.push(
      `-- a conversion is in progress (phase ${plan.phase}, ${fmt(plan.copiedRows)} of ~${fmt(plan.rows)} rows copied): a run resumes it`,
    );
  else
    out.push(
      `-- ${n.label}: ${fmt(plan.rows)} rows in ${plan.months.length} months${plan.months.length ? ` (${plan.months[0].month} .. ${plan.months[plan.months.length - 1].month})` : ''}`,
    );
  if (n.tables.mapped)
    out.push(
      `-- the names below are in schema ${n.tables.invoices.schema}, which the conversion puts alone in search_path:`,
      `SET search_path TO ${quoteIdent(n.tables.invoices.schema)};`,
    );
  out.push('--', '-- carried over:', ...plan.carried.map((c) => `--   ${c}`));
  if (plan.warnings.length) out.push('--', '-- not carried over (reported):', ...plan.warnings.map((w) => `--   ${w}`));
  // The transactions are written out as the runner's transaction() opens them.
  if (plan.prepare.length) {
    out.push(
      '',
      `-- 1. prepare: one transaction; ${plan.partitions.length} monthly partitions + DEFAULT; a trigger on ${n.label} logs changed ids`,
      'BEGIN;',
      ...plan.prepare.map((x) => `${x};`),
      'COMMIT;',
    );
  }
  const left = Math.max(0, plan.rows - plan.copiedRows);
  out.push(
    '',
    `-- 2. backfill: ~${fmt(Math.ceil(left / plan.batchSize))} batches of up to ${fmt(plan.batchSize)} rows, each one transaction with its cursor ($1 = batch size, $2 = last copied id)`,
    `${plan.backfill};`,
    `UPDATE ${n.state} SET last_copied_id = <last>, rows_copied = rows_copied + <n>;`,
  );
  out.push(
    '',
    '-- 3. indexes, built once the rows are in; then VACUUM ANALYZE',
    ...plan.indexes.map((x) => `${x.sql};`),
    `${vacuumSql(n)};`,
  );
  out.push(
    '',
    `-- 4. catch up: replay ${n.log} (delete each logged id from ${n.newTable} and ${n.locator}, copy it again from ${n.label})`,
    `--    each batch compares its ids row by row; verify: count, sum(${n.amountName}), sum(${n.idName}) per month equal in both tables (one REPEATABLE READ snapshot, logged ids aside)`,
  );
  const switchSql = ['BEGIN', `SET LOCAL lock_timeout = ${plan.lockTimeoutMs}`, ...plan.switchSql, 'COMMIT'];
  out.push(
    '',
    `-- 5. switch: up to ${(opts.lockRetries ?? CONVERT_DEFAULTS.lockRetries) + 1} attempts; the exclusive lock on ${n.label} is held from LOCK to COMMIT`,
    ...switchSql.map((x) => (x.startsWith('--') ? x : `${x};`)),
  );
  out.push('', '-- 6. finish', ...finish.map((x) => (x.startsWith('--') ? x : `${x};`)));
  out.push(`-- the old table is kept as ${n.oldTable}: DROP TABLE ${n.oldTable} once you are satisfied`);
  return out.join('\n') + '\n';
}
