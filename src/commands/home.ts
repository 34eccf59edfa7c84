// The default lake of a command (--out/--lake not given) and what an earlier version left in
// the working directory: said once on stderr, never used.
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { defaultLake, legacyHome, type Config } from '../config.js';
import type { Logger } from '../log.js';

const MARKER = 'NOT-USED-ANY-MORE.txt';

/**
 * An embedded server in ./.invoices from an earlier version: one warning naming the home now in
 * use and how to move it there, then a marker file in that directory so it is said only once.
 */
export function noticeLegacyHome(config: Config, cwd: string, log: Logger): void {
  // Moved here as advised: the marker has done its work.
  if (existsSync(path.join(config.home, MARKER))) rmSync(path.join(config.home, MARKER), { force: true });
  const old = legacyHome(config, cwd);
  if (!old || existsSync(path.join(old, MARKER))) return;
  // mv renames only onto a path that does not exist (else it moves into it).
  const fresh = !existsSync(config.home);
  const move = fresh
    ? `To keep its data, stop it and move it: INVOICES_HOME=${old} invoices db stop && mkdir -p ${path.dirname(config.home)} && mv ${old} ${config.home}`
    : `${config.home} is in use already: to keep using the old server, set INVOICES_HOME=${old} (or move it elsewhere and set INVOICES_HOME there)`;
  log.warn(
    `${old} holds an embedded PostgreSQL of an earlier version, which kept it in the working directory; it is no longer used: the home is ${config.home}. ${move} (said once; see "Where everything lives" in the README)`,
  );
  try {
    writeFileSync(
      path.join(old, MARKER),
      `invoices no longer uses this directory: its home is ${config.home} (or $INVOICES_HOME).\n${move}\n`,
    );
  } catch {
    // Not ours to write (another user's): the warning comes again next time, which is no harm.
  }
}

/**
 * The lake when --out/--lake is not given, and a warning when ./lake (the default of an earlier
 * version) holds a lake while the default one does not exist yet.
 */
export function defaultLakeFor(config: Config, cwd: string, log: Logger, flag: '--out' | '--lake'): string {
  const lake = defaultLake(config);
  const old = path.join(cwd, 'lake');
  if (old !== lake && existsSync(path.join(old, '_manifest.json')) && !existsSync(path.join(lake, '_manifest.json'))) {
    log.warn(
      `${old} is a lake of an earlier version, whose default lake was ./lake; the default is now ${lake} (one per database). ` +
        `Pass ${flag} ${old} to use it, or move it: mkdir -p ${path.dirname(lake)} && mv ${old} ${lake}`,
    );
  }
  return lake;
}
