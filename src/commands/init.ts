import type { Command } from 'commander';
import { commandContext } from './context.js';

export function command(program: Command): Command {
  return program
    .command('init')
    .description('create the schema (idempotent)')
    .addHelpText('after', '\nExample:\n  $ invoices init')
    .action(run);
}

export async function run(_opts: unknown, cmd: Command): Promise<void> {
  const [{ withClient }, { applySchema, existingTables }] = await Promise.all([import('../db/client.js'), import('../schema/apply.js')]);
  const ctx = await commandContext(cmd);
  const { tables } = ctx.config;
  if (tables.mapped) {
    // The application's tables: checked, never created; applySchema says what it adds beside them.
    const layout = await withClient(ctx, (client) => applySchema(client, tables, ctx.log));
    const inv = `${tables.invoices.schema}.${tables.invoices.table}`;
    ctx.log.info(
      `mapped tables ${inv} and ${tables.customers.schema}.${tables.customers.table} have the mapped columns; ` +
        (layout === 'plain'
          ? `${inv} is a plain table: nothing to add (\`invoices partition --convert\` partitions it in place)`
          : `${inv} is partitioned: its locator is in place`),
    );
    return;
  }
  const result = await withClient(ctx, async (client) => {
    const before = await existingTables(client);
    await applySchema(client);
    return { before, after: await existingTables(client) };
  });
  const created = result.after.filter((t) => !result.before.includes(t));
  ctx.log.info(created.length ? `created tables: ${created.join(', ')}` : 'schema up to date: nothing to create');
}
