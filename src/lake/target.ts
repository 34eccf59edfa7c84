import { describeSettings } from '../config.js';
import type { DbContext } from '../db/client.js';

/** The database a lake comes from, without password: recorded in the manifest. */
export function describeTarget(ctx: DbContext): string {
  const t = ctx.config.target;
  return t.kind === 'server' ? describeSettings(t.connection) : `embedded:${t.home}`;
}
