// The default lake belongs to its source database: exports from two configured databases, with no
// --out, go to two lakes under the home, and each database's query reads its own.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, runCli, seedWithCli, tempDir, type TestDatabase } from '../../support/helpers.js';

let one: TestDatabase;
let two: TestDatabase;
let xdg: string;

beforeAll(async () => {
  [one, two] = await Promise.all([createDatabase(), createDatabase()]);
  await seedWithCli(one.url, ['--customers', '10', '--invoices', '100', '--months', '2', '--as-of', '2025-03-01']);
  await seedWithCli(two.url, ['--customers', '10', '--invoices', '250', '--months', '2', '--as-of', '2025-03-01', '--seed', '2']);
  xdg = tempDir('lakes-');
});

afterAll(async () => {
  await Promise.all([one?.drop(), two?.drop()]);
});

const cli = (url: string, args: string[]) => runCli(args, { env: { DATABASE_URL: url, XDG_DATA_HOME: xdg } });
const count = async (url: string) => {
  const r = await cli(url, ['query', 'SELECT count(*) AS n FROM invoices', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return { n: JSON.parse(r.stdout)[0].n as number, lake: /^lake: (\S+),/m.exec(r.stderr)?.[1] };
};

describe('the default lake of a configured database', () => {
  it('two databases export to two lakes under the home, and neither replaces the other', async () => {
    const e1 = await cli(one.url, ['export', '--quiet']);
    expect(e1.code, e1.stderr).toBe(0);
    const first = await count(one.url);
    expect(first.n).toBe(100);

    const e2 = await cli(two.url, ['export', '--quiet']);
    expect(e2.code, e2.stderr).toBe(0);
    const second = await count(two.url);
    expect(second.n).toBe(250);

    const lakes = path.join(xdg, 'invoices', 'lakes');
    const names = readdirSync(lakes).sort();
    expect(names).toHaveLength(2);
    for (const name of names) expect(existsSync(path.join(lakes, name, '_manifest.json'))).toBe(true);
    expect([first.lake, second.lake].sort()).toEqual(names.map((n) => path.join(lakes, n)));
    expect(first.lake).toMatch(new RegExp(`-${one.name}-[0-9a-f]{8}$`));
    expect(second.lake).toMatch(new RegExp(`-${two.name}-[0-9a-f]{8}$`));

    // The first lake is still the first database's.
    expect(await count(one.url)).toEqual(first);
    const password = new URL(one.url).password;
    if (password) for (const name of names) expect(name).not.toContain(decodeURIComponent(password));
  });

  it('another user, password or parameters for the same database keep its lake (query never connects)', async () => {
    const u = new URL(one.url);
    u.username = 'someone_else';
    u.password = 'another-password';
    u.searchParams.set('application_name', 'another-client');
    expect(await count(u.toString())).toEqual(await count(one.url));
  });
});
