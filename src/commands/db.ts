import type { Command } from 'commander';
import { describeSettings } from '../config.js';
import { embeddedSettings, embeddedStatus, embeddedUrl, startEmbedded, stopEmbedded } from '../db/embedded.js';
import { UsageError } from '../errors.js';
import { commandContext, type CommandContext } from './context.js';

type Action = 'start' | 'stop' | 'status' | 'url';

export async function run(action: Action, _opts: unknown, cmd: Command): Promise<void> {
  const ctx = commandContext(cmd);
  const { target } = ctx.config;
  if (target.kind !== 'embedded') {
    if (action === 'url') return ctx.print(describeSettings(target.connection) + '\n');
    throw new UsageError(`\`invoices db ${action}\` manages the embedded PostgreSQL, but the database comes from ${target.source} (${describeSettings(target.connection)})`);
  }
  const home = target.home;
  switch (action) {
    case 'start': {
      const { settings, started } = await startEmbedded(home, ctx.log.info);
      ctx.log.info(`${started ? 'started' : 'already running'}: ${describeSettings(settings)} (data in ${home})`);
      return;
    }
    case 'stop':
      ctx.log.info((await stopEmbedded(home)) ? 'stopped' : 'not running');
      return;
    case 'status':
      return status(ctx, home);
    case 'url': {
      const settings = embeddedSettings(home) ?? (await startEmbedded(home, ctx.log.info)).settings;
      ctx.print(embeddedUrl(settings) + '\n');
      return;
    }
  }
}

async function status(ctx: CommandContext, home: string): Promise<void> {
  const s = embeddedStatus(home);
  const settings = embeddedSettings(home);
  const row = {
    state: !s.initialised ? 'not initialised' : s.running ? 'running' : 'stopped',
    version: s.version ?? null,
    pid: s.pid ? String(s.pid) : null,
    url: s.running && settings ? describeSettings(settings) : null,
    data: s.dataDir,
  };
  await ctx.printRows([row], [{ key: 'state' }, { key: 'version' }, { key: 'pid', kind: 'int' }, { key: 'url' }, { key: 'data' }], { single: true });
  if (!s.running) process.exitCode = 3;
}
