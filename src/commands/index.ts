import type { Command } from 'commander';
import { withClient } from '../db/client.js';
import { listIndexes, planIndexes } from '../schema/indexes.js';
import { formatBytes } from '../output/render.js';
import { commandContext } from './context.js';

export async function run(flags: { dryRun?: boolean }, cmd: Command): Promise<void> {
  const ctx = commandContext(cmd);
  await withClient(ctx, async (client) => {
    const steps = await planIndexes(client, ctx.config.tables);
    if (flags.dryRun) {
      ctx.print(steps.length ? steps.map((s) => `-- ${s.description}\n${s.sql};\n`).join('') : '-- nothing to do: every index exists and is valid\n');
      return;
    }
    for (const [i, s] of steps.entries()) {
      const started = performance.now();
      ctx.log.info(`[${i + 1}/${steps.length}] ${s.description}`);
      await client.query(s.sql);
      ctx.log.debug(`${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    if (!steps.length) ctx.log.info('every index exists and is valid: nothing to do');
    const indexes = await listIndexes(client, ctx.config.tables);
    await ctx.printRows(
      indexes.map((x) => ({ ...x, size: formatBytes(x.bytes), valid: x.valid ? 'yes' : 'NO' })),
      [{ key: 'name', label: 'index' }, { key: 'table' }, { key: 'size' }, { key: 'valid' }, { key: 'definition' }],
    );
  });
}
