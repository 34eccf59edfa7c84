// One PostgreSQL server for the whole run: TEST_DATABASE_URL when set (it must allow
// CREATE DATABASE), else the project's own embedded PostgreSQL in a fresh temp dir.
// Tests receive the admin URL (database `postgres`) through inject('adminUrl'), and a
// temp directory removed at the end of the run through inject('tmpRoot').
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { embeddedUrl, startEmbedded, stopEmbedded } from '../../src/db/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A superuser URL on the test server, database `postgres`. */
    adminUrl: string;
    /** A 0755 directory for the run's scratch files, removed in teardown. */
    tmpRoot: string;
  }
}

let home: string | undefined;
let tmp: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'invoices-test-'));
  // mkdtemp gives 0700; the server runs as the `postgres` OS user when we are root.
  chmodSync(tmp, 0o755);
  project.provide('tmpRoot', tmp);

  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    project.provide('adminUrl', external);
    return;
  }
  home = path.join(tmp, 'pg');
  try {
    const { settings } = await startEmbedded(home);
    const url = new URL(embeddedUrl(settings));
    url.pathname = '/postgres';
    project.provide('adminUrl', url.toString());
  } catch (err) {
    await teardown();
    throw err;
  }
}

export async function teardown(): Promise<void> {
  try {
    if (home) await stopEmbedded(home);
    // A CLI run with no database configured starts one in the default home (helpers.ts testDataHome).
    if (tmp) await stopEmbedded(path.join(tmp, 'xdg-data', 'invoices'));
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    home = tmp = undefined;
  }
}
