// Phase 6, finish: once switched, validate the foreign keys the switch repointed to invoice_ids
// (no lock against writers), drop what only the conversion needed (sql/convert-finish.sql) and
// report the new table; a re-run after an interruption does it again.
import type { Client } from '../../db/client.js';
import { transaction } from '../../db/transaction.js';
import type { Logger } from '../../log.js';
import { relationExists } from '../../db/catalog/index.js';
import { unvalidatedReferences } from '../../db/catalog/table-facts.js';
import { convertedCounts } from './inspect.js';
import type { Names, Quote } from './names.js';
import type { Phase } from './context.js';
import { finishStatements, validateSql } from './statements.js';
import type { ConvertResult } from './types.js';

export const finish: Phase = {
  name: 'finish',
  async run(r) {
    r.where = 'after the switch';
    r.progress({ phase: 'finish', done: 0, total: 1 });
    await finishConversion(r.client, r.n, r.q, r.log, r.result);
  },
};

/** After the switch: validate repointed foreign keys, drop the conversion's objects, report the DEFAULT partition. */
async function finishConversion(client: Client, n: Names, q: Quote, log: Logger, result: ConvertResult): Promise<void> {
  for (const f of await unvalidatedReferences(client, n.locator)) {
    try {
      await client.query(validateSql(f, q));
      log.info(`validated foreign key ${f.name} on ${f.table} against ${n.locator}`);
    } catch (err) {
      const w = `foreign key ${f.name} on ${f.table} stays NOT VALID (${(err as Error).message}): new rows are checked; fix the old ones and VALIDATE it`;
      result.warnings.push(w);
      log.warn(w);
    }
  }
  await transaction(client, async () => {
    for (const sql of finishStatements(n)) await client.query(sql);
  });
  const counts = await convertedCounts(client, n);
  result.rows = counts.rows;
  result.partitions = counts.partitions;
  result.defaultRows = counts.defaultRows;
  if (result.defaultRows) {
    const w = `${result.defaultRows} rows are in the DEFAULT partition (months without a partition of their own): run \`invoices partition\` to move them`;
    result.warnings.push(w);
    log.warn(w);
  }
  result.oldTable = (await relationExists(client, n.oldTable)) ? n.oldTable : null;
}
