import type { Command } from 'commander';
import { withClient } from '../db/client.js';
import { applySchema, existingTables } from '../schema/apply.js';
import { commandContext, requireOwnTables } from './context.js';

export async function run(_opts: unknown, cmd: Command): Promise<void> {
  const ctx = commandContext(cmd);
  requireOwnTables(ctx, 'init');
  const tables = await withClient(ctx, async (client) => {
    const before = await existingTables(client);
    await applySchema(client);
    return { before, after: await existingTables(client) };
  });
  const created = tables.after.filter((t) => !tables.before.includes(t));
  ctx.log.info(created.length ? `created tables: ${created.join(', ')}` : 'schema up to date: nothing to create');
}
