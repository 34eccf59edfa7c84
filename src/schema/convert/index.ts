// `invoices partition --convert`: converts a plain invoices table created outside this tool into
// the partitioned layout (sql/invoices.sql, sql/invoice-ids.sql) while the application keeps
// reading and writing it. What each file does:
//
//   inspect.ts     the table as the catalog describes it, and the refusals (the only catalog reader)
//   statements.ts  every statement that depends on the table; the fixed DDL is in sql/convert-*.sql
//   plan.ts        what a run would do or resume; dry-run.ts prints it (--dry-run)
//   run.ts         the session, the lock on the table, then the phases of phases.ts in order:
//     prepare      one short transaction: invoices_part, its partitions, invoice_ids, the log and its triggers
//     backfill     committed batches in invoice_id order, each with its cursor: resumable at any point
//     indexes      keys and the old table's indexes, built in bulk; VACUUM ANALYZE
//     sync         replay the log, verify counts and sums per month in one snapshot, replay again
//     switch       one transaction under lock_timeout, retried: replay the rest, swap the names
//     finish       validate repointed foreign keys, drop the log, the state and the functions
//   cancel.ts      --cancel: remove everything an unfinished conversion created
//
// The old table stays, renamed invoices_unpartitioned, until the user drops it.
export { cancelConversion } from './cancel.js';
export { describePlan } from './dry-run.js';
export { PHASES } from './phases.js';
export { planConversion, type ConversionPlan } from './plan.js';
export { convertInvoices } from './run.js';
export { ConversionError, type ConvertOptions, type ConvertPhase, type ConvertProgress, type ConvertResult } from './types.js';
