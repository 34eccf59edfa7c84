import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  defaultLake,
  describeSettings,
  lakeName,
  legacyHome,
  maskUrl,
  parseDotEnv,
  resolveConfig,
  ROOT_HOME,
  withDotEnv,
  type Config,
  type ServerTarget,
} from '../../src/config.js';
import { DEFAULT_TABLES, parseTableMap } from '../../src/tables.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../support/helpers.js';

const FLAG = 'postgres://flag:flagpw@flag.example:5001/flagdb';
const ENV_URL = 'postgres://env:envpw@env.example:5002/envdb';
const FILE_URL = 'postgresql://file:filepw@file.example:5003/filedb';
const PG = { PGHOST: 'pg.example', PGPORT: '5004', PGUSER: 'pguser', PGDATABASE: 'pgdb', PGPASSWORD: 'pgpw' };

let root: string;
/** A directory holding invoices.config.json with FILE_URL. */
let withFile: string;
/** A directory with no config file. */
let empty: string;

beforeAll(() => {
  root = tempDir('config-');
  withFile = path.join(root, 'with-file');
  empty = path.join(root, 'empty');
  mkdirSync(withFile);
  mkdirSync(empty);
  writeFileSync(path.join(withFile, 'invoices.config.json'), JSON.stringify({ databaseUrl: FILE_URL }));
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

function server(config: Config): ServerTarget {
  expect(config.target.kind).toBe('server');
  return config.target as ServerTarget;
}

describe('resolveConfig: resolution order', () => {
  it('--database-url wins over everything', () => {
    const t = server(resolveConfig({ databaseUrl: FLAG, env: { DATABASE_URL: ENV_URL, ...PG }, cwd: withFile }));
    expect(t.source).toBe('--database-url');
    expect(t.connection).toEqual({ connectionString: FLAG });
  });

  it('DATABASE_URL wins over PG* variables and the config file', () => {
    const t = server(resolveConfig({ env: { DATABASE_URL: ENV_URL, ...PG }, cwd: withFile }));
    expect(t.source).toBe('DATABASE_URL');
    expect(t.connection).toEqual({ connectionString: ENV_URL });
  });

  it('PG* variables win over the config file', () => {
    const t = server(resolveConfig({ env: { ...PG }, cwd: withFile }));
    expect(t.source).toBe('PG* variables');
    expect(t.connection).toEqual({ host: 'pg.example', port: 5004, user: 'pguser', password: 'pgpw', database: 'pgdb' });
  });

  it.each(['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE'] as const)('%s alone selects the PG* variables, with libpq defaults', (name) => {
    const t = server(resolveConfig({ env: { [name]: PG[name], USER: 'osuser' }, cwd: withFile }));
    expect(t.source).toBe('PG* variables');
    const c = t.connection;
    expect(c.host).toBe(name === 'PGHOST' ? 'pg.example' : 'localhost');
    expect(c.port).toBe(name === 'PGPORT' ? 5004 : 5432);
    expect(c.user).toBe(name === 'PGUSER' ? 'pguser' : 'osuser');
    expect(c.database).toBe(name === 'PGDATABASE' ? 'pgdb' : c.user);
    expect(c.password).toBeUndefined();
  });

  it('PGPASSWORD alone does not select the PG* variables', () => {
    const t = server(resolveConfig({ env: { PGPASSWORD: 'x' }, cwd: withFile }));
    expect(t.source).toBe('config file');
  });

  it('a PGPORT that is not a port is a ConfigError', () => {
    expect(() => resolveConfig({ env: { PGPORT: 'abc' }, cwd: empty })).toThrow(ConfigError);
    expect(() => resolveConfig({ env: { PGPORT: '70000' }, cwd: empty })).toThrow(ConfigError);
  });

  it('the config file in the cwd is used when nothing else is set', () => {
    const config = resolveConfig({ env: {}, cwd: withFile });
    const t = server(config);
    expect(t.source).toBe('config file');
    expect(t.connection).toEqual({ connectionString: FILE_URL });
    expect(config.configFile).toBe(path.join(withFile, 'invoices.config.json'));
  });

  it('an explicit --config path is read relative to the cwd', () => {
    const other = path.join(root, 'other.json');
    writeFileSync(other, JSON.stringify({ databaseUrl: 'postgres://o@other.example/o' }));
    const t = server(resolveConfig({ configPath: '../other.json', env: {}, cwd: empty }));
    expect(t.source).toBe('config file');
    expect(t.connection).toEqual({ connectionString: 'postgres://o@other.example/o' });
  });

  it('falls back to the embedded server in the home', () => {
    const config = resolveConfig({ env: { XDG_DATA_HOME: '/xdg' }, cwd: empty });
    expect(config.target).toEqual({ kind: 'embedded', source: 'embedded', home: '/xdg/invoices' });
    expect(config.home).toBe('/xdg/invoices');
    expect(config.configFile).toBeUndefined();
  });

  it('a config file without databaseUrl falls back to the embedded server', () => {
    const dir = path.join(root, 'no-url');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'invoices.config.json'), '{}');
    expect(resolveConfig({ env: {}, cwd: dir }).target.kind).toBe('embedded');
  });
});

describe('resolveConfig: errors', () => {
  it('a missing explicit config file is a ConfigError, even with a URL given', () => {
    expect(() => resolveConfig({ configPath: 'nope.json', env: {}, cwd: empty })).toThrow(ConfigError);
    expect(() => resolveConfig({ configPath: 'nope.json', databaseUrl: FLAG, env: {}, cwd: empty })).toThrow(/config file not found/);
  });

  it('an invalid config file is a ConfigError', () => {
    const bad = path.join(root, 'bad.json');
    writeFileSync(bad, '{ not json');
    expect(() => resolveConfig({ configPath: bad, env: {}, cwd: empty })).toThrow(ConfigError);
    writeFileSync(bad, '[1, 2]');
    expect(() => resolveConfig({ configPath: bad, env: {}, cwd: empty })).toThrow(/JSON object/);
    writeFileSync(bad, '{"databaseUrl": 5}');
    expect(() => resolveConfig({ configPath: bad, env: {}, cwd: empty })).toThrow(/must be a string/);
  });

  it.each([
    ['not a URL', 'hello'],
    ['another scheme', 'mysql://root:hunter2@db.example/app'],
    ['an unparseable postgres URL', 'postgres://user:hunter2@db.example:99999/app'],
  ])('rejects %s with a ConfigError that hides the password', (_what, url) => {
    for (const input of [{ databaseUrl: url, env: {} }, { env: { DATABASE_URL: url } }]) {
      let error: unknown;
      try {
        resolveConfig({ ...input, cwd: empty });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).not.toContain('hunter2');
      expect((error as ConfigError).exitCode).toBe(2);
    }
  });

  it('a bad URL in the config file is a ConfigError', () => {
    const dir = path.join(root, 'bad-url');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'invoices.config.json'), JSON.stringify({ databaseUrl: 'http://x:hunter2@y/z' }));
    expect(() => resolveConfig({ env: {}, cwd: dir })).toThrow(/config file must be a postgres:\/\/ URL/);
  });
});

describe('parseDotEnv', () => {
  it('parses KEY=VALUE lines, quotes, export and comments', () => {
    const text = [
      '# a comment',
      '',
      'A=1',
      '  B = two  ',
      'export C=three',
      'D="double # not a comment"',
      "E='single \\n stays'",
      'F="line1\\nline2"',
      'G=value # trailing comment',
      'H=',
      'I=a=b=c',
      'not a valid line',
      '1BAD=x',
      'J=postgres://u:p@h:5432/db?sslmode=disable',
    ].join('\r\n');
    expect(parseDotEnv(text)).toEqual({
      A: '1',
      B: 'two',
      C: 'three',
      D: 'double # not a comment',
      E: 'single \\n stays',
      F: 'line1\nline2',
      G: 'value',
      H: '',
      I: 'a=b=c',
      J: 'postgres://u:p@h:5432/db?sslmode=disable',
    });
  });

  it('a later line overrides an earlier one', () => {
    expect(parseDotEnv('X=1\nX=2\n')).toEqual({ X: '2' });
  });
});

describe('withDotEnv', () => {
  let dir: string;
  beforeAll(() => {
    dir = path.join(root, 'dotenv');
    mkdirSync(dir);
    writeFileSync(path.join(dir, '.env'), 'DATABASE_URL=postgres://dotenv@h/db\nPGHOST=dotenv-host\nONLY_IN_FILE=yes\n');
  });

  it('adds the variables of ./.env that are not set', () => {
    const env = withDotEnv({ OTHER: 'x' }, dir);
    expect(env).toMatchObject({ DATABASE_URL: 'postgres://dotenv@h/db', PGHOST: 'dotenv-host', ONLY_IN_FILE: 'yes', OTHER: 'x' });
  });

  it('variables already set win over .env', () => {
    const env = withDotEnv({ DATABASE_URL: 'postgres://real@h/db', PGHOST: '' }, dir);
    expect(env.DATABASE_URL).toBe('postgres://real@h/db');
    expect(env.PGHOST).toBe(''); // set, even if empty
    expect(env.ONLY_IN_FILE).toBe('yes');
  });

  it('an unset (undefined) variable does not hide the .env value', () => {
    expect(withDotEnv({ DATABASE_URL: undefined }, dir).DATABASE_URL).toBe('postgres://dotenv@h/db');
  });

  it('without .env the environment is unchanged', () => {
    const env = { A: '1' };
    expect(withDotEnv(env, empty)).toEqual({ A: '1' });
  });

  it('feeds resolveConfig: DATABASE_URL from .env is used', () => {
    const t = server(resolveConfig({ env: withDotEnv({}, dir), cwd: dir }));
    expect(t.source).toBe('DATABASE_URL');
    expect(t.connection.connectionString).toBe('postgres://dotenv@h/db');
  });
});

describe('maskUrl and describeSettings', () => {
  it.each([
    ['postgres://user:s3cret@host:5432/db', 's3cret'],
    ['postgresql://user:s3cret@host/db?sslmode=require', 's3cret'],
    ['postgres://:s3cret@host/db', 's3cret'],
    ['postgres://user:p%40ss%3Aw0rd@host/db', 'p%40ss'],
    ['postgres://user:p@ss@host/db', 'p@ss'],
    ['postgres://user:s3cret@host:99999/db', 's3cret'], // not a valid URL: the regex fallback
    ['postgres://user:p@ss@host:99999/db', 'ss@host'], // invalid URL, raw @ in the password
  ])('hides the password of %s', (url, secret) => {
    const masked = maskUrl(url);
    expect(masked).not.toContain(secret);
    expect(masked).toContain('***');
    expect(masked).toContain('host');
  });

  it('leaves a URL without password as it is', () => {
    expect(maskUrl('postgres://user@host:5432/db')).toBe('postgres://user@host:5432/db');
  });

  it('describeSettings never shows the password', () => {
    expect(describeSettings({ connectionString: 'postgres://u:topsecret@h:1/d' })).toBe('postgres://u:***@h:1/d');
    const s = describeSettings({ host: 'h', port: 6543, user: 'u', password: 'topsecret', database: 'd' });
    expect(s).toBe('postgres://u@h:6543/d');
  });
});

describe('resolveConfig: the home (never the working directory)', () => {
  const USER = 1000;
  const home = (env: Record<string, string>, cwd = empty, uid = USER) => {
    const c = resolveConfig({ env, cwd, uid });
    return [c.home, c.homeSource];
  };

  it('defaults to ~/.local/share/invoices, whatever the working directory', () => {
    expect(home({ HOME: '/home/ann' })).toEqual(['/home/ann/.local/share/invoices', 'default']);
    expect(home({ HOME: '/home/ann' }, withFile)).toEqual(['/home/ann/.local/share/invoices', 'default']);
    expect(home({ HOME: '/home/ann' }, '/')).toEqual(['/home/ann/.local/share/invoices', 'default']);
  });

  it('$XDG_DATA_HOME/invoices wins over ~/.local/share; an empty or relative one is ignored, as the XDG spec says', () => {
    expect(home({ HOME: '/home/ann', XDG_DATA_HOME: '/data/ann' })).toEqual(['/data/ann/invoices', 'XDG_DATA_HOME']);
    expect(home({ HOME: '/home/ann', XDG_DATA_HOME: '' })).toEqual(['/home/ann/.local/share/invoices', 'default']);
    expect(home({ HOME: '/home/ann', XDG_DATA_HOME: 'rel/data' })).toEqual(['/home/ann/.local/share/invoices', 'default']);
  });

  it('root defaults to /var/lib/invoices (the postgres OS user cannot enter /root), unless told otherwise', () => {
    expect(ROOT_HOME).toBe('/var/lib/invoices');
    expect(home({ HOME: '/root' }, empty, 0)).toEqual(['/var/lib/invoices', 'default']);
    expect(home({ HOME: '/root', XDG_DATA_HOME: '/srv/xdg' }, empty, 0)).toEqual(['/srv/xdg/invoices', 'XDG_DATA_HOME']);
    expect(home({ HOME: '/root', INVOICES_HOME: '/srv/inv' }, empty, 0)).toEqual(['/srv/inv', 'INVOICES_HOME']);
  });

  it('the config file\'s "home" wins over XDG_DATA_HOME, relative to the file; ~ is the user\'s home', () => {
    const dir = path.join(root, 'home-key');
    mkdirSync(path.join(dir, 'sub'), { recursive: true });
    writeFileSync(path.join(dir, 'invoices.config.json'), JSON.stringify({ home: 'state' }));
    writeFileSync(path.join(dir, 'tilde.json'), JSON.stringify({ home: '~/inv' }));
    expect(home({ HOME: '/home/ann', XDG_DATA_HOME: '/xdg' }, dir)).toEqual([path.join(dir, 'state'), 'config file']);
    const viaFlag = resolveConfig({ configPath: '../invoices.config.json', env: {}, cwd: path.join(dir, 'sub'), uid: USER });
    expect(viaFlag.home).toBe(path.join(dir, 'state'));
    expect(resolveConfig({ configPath: 'tilde.json', env: { HOME: '/home/ann' }, cwd: dir, uid: USER }).home).toBe('/home/ann/inv');
  });

  it('INVOICES_HOME wins over everything (relative to the working directory)', () => {
    const dir = path.join(root, 'home-key');
    expect(home({ INVOICES_HOME: '/srv/inv', XDG_DATA_HOME: '/xdg' }, dir)).toEqual(['/srv/inv', 'INVOICES_HOME']);
    expect(home({ INVOICES_HOME: 'data/pg' }, dir)).toEqual([path.join(dir, 'data', 'pg'), 'INVOICES_HOME']);
    expect(home({ INVOICES_HOME: '~/x', HOME: '/home/ann' }, dir)).toEqual(['/home/ann/x', 'INVOICES_HOME']);
  });

  it("the home is the same with a server configured (it holds that server's default lake)", () => {
    const c = resolveConfig({ env: { DATABASE_URL: ENV_URL, XDG_DATA_HOME: '/xdg' }, cwd: withFile, uid: USER });
    expect(c.target.kind).toBe('server');
    expect(c.home).toBe('/xdg/invoices');
  });

  it('a "home" that is not a non-empty string is a ConfigError', () => {
    const bad = path.join(root, 'bad-home.json');
    for (const value of [5, '', null, ['a']]) {
      writeFileSync(bad, JSON.stringify({ home: value }));
      expect(() => resolveConfig({ configPath: bad, env: {}, cwd: empty })).toThrow(/"home" must be a directory path/);
    }
  });

  it('legacyHome: ./.invoices of an earlier version is reported (never used) only when the home was not chosen', () => {
    const dir = path.join(root, 'legacy');
    mkdirSync(path.join(dir, '.invoices', 'pgdata'), { recursive: true });
    writeFileSync(path.join(dir, '.invoices', 'pgdata', 'PG_VERSION'), '18\n');
    const config = resolveConfig({ env: { XDG_DATA_HOME: '/xdg' }, cwd: dir, uid: USER });
    expect(config.home).toBe('/xdg/invoices');
    expect(legacyHome(config, dir)).toBe(path.join(dir, '.invoices'));
    expect(legacyHome(resolveConfig({ env: { INVOICES_HOME: '/srv/inv' }, cwd: dir, uid: USER }), dir)).toBeUndefined();
    expect(legacyHome(resolveConfig({ env: { INVOICES_HOME: '.invoices' }, cwd: dir, uid: USER }), dir)).toBeUndefined();
    expect(legacyHome(resolveConfig({ env: { DATABASE_URL: ENV_URL }, cwd: dir, uid: USER }), dir)).toBeUndefined();
    expect(legacyHome(config, empty)).toBeUndefined();
  });
});

describe('defaultLake: one per source database and table mapping, under the home', () => {
  const lake = (env: Record<string, string>, tables = DEFAULT_TABLES) =>
    defaultLake({ ...resolveConfig({ env: { XDG_DATA_HOME: '/xdg', ...env }, cwd: empty, uid: 1000 }), tables });
  const MAPPING = parseTableMap({ invoices: { table: 'billing.invoice' }, customers: { table: 'billing.clients' } }, 'test.json');

  it("the embedded server's is <home>/lakes/embedded", () => {
    expect(lake({})).toBe('/xdg/invoices/lakes/embedded');
  });

  it('two databases never share one; a readable name with a hash', () => {
    const a = lake({ DATABASE_URL: 'postgres://u:pw@db.example:5432/billing' });
    const b = lake({ DATABASE_URL: 'postgres://u:pw@db.example:5432/other' });
    const c = lake({ DATABASE_URL: 'postgres://u:pw@db2.example:5432/billing' });
    const d = lake({ DATABASE_URL: 'postgres://u:pw@db.example:5433/billing' });
    expect(new Set([a, b, c, d, lake({})]).size).toBe(5);
    expect(path.dirname(a)).toBe('/xdg/invoices/lakes');
    expect(path.basename(a)).toMatch(/^db\.example-5432-billing-[0-9a-f]{8}$/);
  });

  it('the same database however it is named: password, user, URL or PG* variables', () => {
    const a = lake({ DATABASE_URL: 'postgres://u:pw@db.example:5432/billing' });
    expect(lake({ DATABASE_URL: 'postgres://other:pw2@db.example/billing?sslmode=require' })).toBe(a);
    expect(lake({ PGHOST: 'db.example', PGPORT: '5432', PGDATABASE: 'billing', PGUSER: 'x', PGPASSWORD: 'y' })).toBe(a);
    expect(lake({ DATABASE_URL: 'postgres://u:secret-pw-1@db.example/billing' })).not.toContain('secret-pw-1');
  });

  it('a mapped table is another source in the same database: another lake', () => {
    const url = { DATABASE_URL: 'postgres://u@db.example/billing' };
    expect(lake(url, MAPPING)).not.toBe(lake(url));
    expect(path.basename(lake(url, MAPPING))).toMatch(/^db\.example-5432-billing-billing\.invoice-[0-9a-f]{8}$/);
    expect(path.basename(lake({}, MAPPING))).toMatch(/^embedded-billing\.invoice-[0-9a-f]{8}$/);
  });

  it('names are safe directory names', () => {
    const name = lakeName({
      kind: 'server',
      source: 'DATABASE_URL',
      connection: { connectionString: 'postgres:///db%2Fx%20y?host=/var/run/postgresql' },
    });
    expect(name).toMatch(/^[A-Za-z0-9_][A-Za-z0-9._-]*$/);
    expect(name).not.toContain('/');
  });
});
