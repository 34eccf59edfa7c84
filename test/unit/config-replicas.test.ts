// Read replicas in the configuration: --replica-url > DATABASE_REPLICA_URL > the config file's
// "replicas", the lag policy, bad URLs refused with the password hidden.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_REPLICA_LAG, describeSettings, resolveConfig } from '../../src/config.js';
import { lsnValue } from '../../src/db/replica.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../support/helpers.js';

const R1 = 'postgres://ro:ropw@replica1.example:5432/billing';
const R2 = 'postgres://ro:ropw@replica2.example:5432/billing';
const R3 = 'postgres://ro@replica3.example:5432/billing';
let root: string;
let withFile: string;

beforeAll(() => {
  root = tempDir('config-replicas-');
  withFile = path.join(root, 'with-file');
  mkdirSync(withFile);
  writeFileSync(
    path.join(withFile, 'invoices.config.json'),
    JSON.stringify({ databaseUrl: 'postgres://app@primary.example/billing', replicas: [R3] }),
  );
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const urls = (c: ReturnType<typeof resolveConfig>) => (c.replicas ?? []).map((r) => [r.source, describeSettings(r.connection)]);

describe('read replicas: resolution', () => {
  it('--replica-url (repeatable) wins over DATABASE_REPLICA_URL and the config file', () => {
    const c = resolveConfig({ replicaUrls: [R1, R2], env: { DATABASE_REPLICA_URL: R3 }, cwd: withFile });
    expect(urls(c)).toEqual([
      ['--replica-url', 'postgres://ro:***@replica1.example:5432/billing'],
      ['--replica-url', 'postgres://ro:***@replica2.example:5432/billing'],
    ]);
  });
  it('DATABASE_REPLICA_URL, comma-separated, wins over the config file', () => {
    const c = resolveConfig({ env: { DATABASE_REPLICA_URL: ` ${R1} ,${R2},` }, cwd: withFile });
    expect(urls(c).map(([s]) => s)).toEqual(['DATABASE_REPLICA_URL', 'DATABASE_REPLICA_URL']);
    expect(urls(c)).toHaveLength(2);
  });
  it('the config file\'s "replicas", else none', () => {
    expect(urls(resolveConfig({ env: {}, cwd: withFile }))).toEqual([['config file', 'postgres://ro@replica3.example:5432/billing']]);
    expect(resolveConfig({ env: {}, cwd: root }).replicas).toEqual([]);
  });
  it('the lag policy: the default, --max-replica-lag, --replica-only', () => {
    expect(resolveConfig({ env: {}, cwd: root }).reads).toEqual({ maxLagSeconds: DEFAULT_MAX_REPLICA_LAG, replicaOnly: false });
    expect(resolveConfig({ env: {}, cwd: root, maxReplicaLag: 0, replicaOnly: true }).reads).toEqual({
      maxLagSeconds: 0,
      replicaOnly: true,
    });
  });
  it('refuses a URL that is not postgres:// without printing its password, and a "replicas" that is not a list of URLs', () => {
    expect(() => resolveConfig({ env: { DATABASE_REPLICA_URL: 'mysql://u:secret@h/db' }, cwd: root })).toThrow(ConfigError);
    expect(() => resolveConfig({ env: { DATABASE_REPLICA_URL: 'mysql://u:secret@h/db' }, cwd: root })).toThrow(
      /DATABASE_REPLICA_URL must be a postgres:\/\/ URL, got "mysql:\/\/u:\*\*\*@h\/db"/,
    );
    const bad = path.join(root, 'bad.json');
    writeFileSync(bad, JSON.stringify({ replicas: 'postgres://x/y' }));
    expect(() => resolveConfig({ env: {}, cwd: root, configPath: bad })).toThrow(/"replicas" must be a list of postgres:\/\/ URLs/);
  });
});

describe('lsnValue', () => {
  it('orders WAL positions as PostgreSQL does', () => {
    expect(lsnValue('0/0')).toBe(0n);
    expect(lsnValue('1/0') > lsnValue('0/FFFFFFFF')).toBe(true);
    expect(lsnValue('16/B374D848')).toBe((0x16n << 32n) + 0xb374d848n);
    expect(() => lsnValue('nope')).toThrow();
  });
});
