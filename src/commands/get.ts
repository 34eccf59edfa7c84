import type { Command } from 'commander';
import { withClient } from '../db/client.js';
import { UsageError } from '../errors.js';
import { getInvoice, parseInvoiceId, type InvoiceDetail } from '../lookup/get-invoice.js';
import type { Column } from '../output/render.js';
import { commandContext } from './context.js';

const COLUMNS: Column<InvoiceDetail>[] = [
  { key: 'invoice_id', kind: 'int' },
  { key: 'issue_date', kind: 'time' },
  { key: 'issuer_id', kind: 'int' },
  { key: 'issuer_name' },
  { key: 'receiver_id', kind: 'int' },
  { key: 'receiver_name' },
  { key: 'amount', kind: 'money' },
];

export async function run(rawId: string, _opts: unknown, cmd: Command): Promise<void> {
  const id = parseInvoiceId(rawId);
  if (id === undefined) throw new UsageError(`invoice id must be a positive integer, got "${rawId}"`);
  const ctx = commandContext(cmd);
  const invoice = await withClient(ctx, (client) => getInvoice(client, id));
  await ctx.printRows([invoice], COLUMNS, { single: true });
}
