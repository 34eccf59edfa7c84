// `invoices serve` end to end over real HTTP on the run's PostgreSQL: every route and its
// document (against `get --json`, `group --by customer` and SQL), every client error, the token,
// metrics, the request log line at --debug only.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adoptBilling, createDatabase, runCli, seedWithCli, tempDir, waitFor, withPg, type TestDatabase } from '../../support/helpers.js';
import { getJson, metric, startServe, type Served } from '../../support/serve.js';

let db: TestDatabase;
let server: Served;
const AS_OF = '2025-06-01';

beforeAll(async () => {
  db = await createDatabase();
  await seedWithCli(db.url, ['--customers', '30', '--invoices', '300', '--seed', '11', '--as-of', AS_OF, '--months', '6']);
  await withPg(db.url, (c) =>
    c.query(`UPDATE invoices SET amount = 1234.50, issue_date = '2025-04-30T23:59:59.123456Z' WHERE invoice_id = 7`),
  );
  server = await startServe(['--debug'], { DATABASE_URL: db.url });
});

afterAll(async () => {
  await server?.stop();
  await db?.drop();
});

const getCli = async (args: string[]) => {
  const r = await runCli(['get', ...args, '--json', '--no-cache'], { env: { DATABASE_URL: db.url } });
  return r;
};

describe('invoices serve: routes', () => {
  it('GET /invoices/:id is the document of `get <id> --json`', async () => {
    for (const id of ['1', '7', '150']) {
      const r = await getJson(`${server.url}/invoices/${id}`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      const cli = await getCli([id]);
      expect(cli.code).toBe(0);
      expect(r.body).toEqual(JSON.parse(cli.stdout));
    }
    const seven = (await getJson(`${server.url}/invoices/7`)).body;
    expect(seven.amount).toBe('1234.50');
    expect(seven.issue_date).toBe('2025-04-30T23:59:59.123456Z');
  });

  it('GET /invoices?ids= gives the documents in the order asked, duplicates kept, and the ids not found', async () => {
    const r = await getJson(`${server.url}/invoices?ids=3,1,999999,3`);
    expect(r.status).toBe(200);
    const lines = (await runCli(['get', '3', '1', '3', '--json', '--no-cache'], { env: { DATABASE_URL: db.url } })).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(r.body.invoices).toEqual(lines);
    expect(r.body.not_found).toEqual([999999]);
    const max = await getJson(`${server.url}/invoices?ids=${Array.from({ length: 1000 }, (_, i) => i + 1).join(',')}`);
    expect(max.status).toBe(200);
    expect(max.body.invoices).toHaveLength(300);
    expect(max.body.not_found).toHaveLength(700);
  });

  it('400 for bad ids and parameters, 404 for what does not exist, never a stack trace', async () => {
    const cases: Array<[string, number, string]> = [
      ['/invoices/abc', 400, 'invalid_id'],
      ['/invoices/0', 400, 'invalid_id'],
      ['/invoices/-4', 400, 'invalid_id'],
      ['/invoices/1.5', 400, 'invalid_id'],
      ['/invoices/99999999999999999999', 400, 'invalid_id'],
      ['/invoices?ids=1,x', 400, 'invalid_id'],
      ['/invoices', 400, 'invalid_parameter'],
      [`/invoices?ids=${Array.from({ length: 1001 }, (_, i) => i + 1).join(',')}`, 400, 'too_many_ids'],
      ['/invoices/abc/risk', 400, 'invalid_id'],
      ['/customers/x/summary', 400, 'invalid_id'],
      ['/customers/1/summary?months=0', 400, 'invalid_parameter'],
      ['/customers/1/summary?months=abc', 400, 'invalid_parameter'],
      ['/customers/1/summary?as_of=2025-02-30', 400, 'invalid_parameter'],
      ['/invoices/999999', 404, 'invoice_not_found'],
      ['/customers/999999/summary', 404, 'customer_not_found'],
      ['/no/such/route', 404, 'not_found'],
    ];
    for (const [route, status, code] of cases) {
      const r = await getJson(server.url + route);
      expect({ route, status: r.status, code: r.body?.error?.code }).toEqual({ route, status, code });
      expect(typeof r.body.error.message).toBe('string');
      expect(JSON.stringify(r.body)).not.toMatch(/\n\s+at |stack/);
    }
  });

  it('GET /customers/:id/summary is the customer row of `group --by customer` and agrees with SQL', async () => {
    const g = await runCli(['group', '--months', '3', '--by', 'customer', '--engine', 'postgres', '--as-of', AS_OF, '--json'], {
      env: { DATABASE_URL: db.url },
    });
    expect(g.code).toBe(0);
    const rows = JSON.parse(g.stdout) as Array<Record<string, unknown>>;
    expect(rows.length).toBeGreaterThan(5);
    for (const row of rows.slice(0, 5)) {
      const r = await getJson(`${server.url}/customers/${row.customer_id}/summary?months=3&as_of=${AS_OF}`);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ ...row, months: 3, as_of: AS_OF, from: '2025-04-01T00:00:00Z', to: '2025-07-01T00:00:00Z' });
      const [sql] = await withPg(
        db.url,
        async (c) =>
          (
            await c.query(
              `SELECT coalesce(sum(amount) FILTER (WHERE issuer_id = $1), 0)::text AS issued, coalesce(sum(amount) FILTER (WHERE receiver_id = $1), 0)::text AS received,
                count(*)::int AS n
           FROM invoices WHERE (issuer_id = $1 OR receiver_id = $1) AND issue_date >= '2025-04-01' AND issue_date < '2025-07-01'`,
              [row.customer_id],
            )
          ).rows,
      );
      expect(Number(r.body.issued)).toBeCloseTo(Number(sql.issued), 2);
      expect(r.body.issued).toBe(Number(sql.issued).toFixed(2));
      expect(r.body.received).toBe(Number(sql.received).toFixed(2));
    }
    // A customer with no invoice in the window: zeros, not 404.
    await withPg(db.url, (c) => c.query(`INSERT INTO customers (id, name) VALUES (9001, 'Quiet Ltd')`));
    const quiet = await getJson(`${server.url}/customers/9001/summary?months=3&as_of=${AS_OF}`);
    expect(quiet.status).toBe(200);
    expect(quiet.body).toMatchObject({
      customer_id: 9001,
      name: 'Quiet Ltd',
      invoices: 0,
      issued: '0.00',
      received: '0.00',
      net: '0.00',
      average: null,
    });
  });

  it('GET /invoices/:id/risk: 409 before the scorer is set up, then the stored score', async () => {
    const before = await getJson(`${server.url}/invoices/5/risk`);
    expect(before.status).toBe(409);
    expect(before.body.error.code).toBe('risk_not_set_up');
    expect((await runCli(['risk', 'init', '--quiet'], { env: { DATABASE_URL: db.url } })).code).toBe(0);
    const pending = await getJson(`${server.url}/invoices/5/risk`);
    expect(pending.status).toBe(200);
    expect(pending.body).toMatchObject({ invoice_id: 5, model_version: 'v1', status: 'pending', score: null });
    const run = await runCli(['risk', '--since', 'all', '--quiet'], { env: { DATABASE_URL: db.url } });
    expect(run.code).toBe(0);
    const r = await getJson(`${server.url}/invoices/5/risk`);
    expect(r.status).toBe(200);
    const [stored] = await withPg(
      db.url,
      async (c) =>
        (await c.query(`SELECT score::text, level, reasons FROM risk_scores WHERE invoice_id = 5 AND model_version = 'v1'`)).rows,
    );
    expect(r.body).toMatchObject({
      invoice_id: 5,
      model_version: 'v1',
      status: 'scored',
      score: stored.score,
      level: stored.level,
      reasons: stored.reasons,
      error: null,
    });
    expect(r.body.scored_at).toMatch(/Z$/);
    expect((await getJson(`${server.url}/invoices/999999/risk`)).body.error.code).toBe('invoice_not_found');
    expect((await getJson(`${server.url}/invoices/5/risk?model=v9`)).body.status).toBe('pending');
  });

  it('/healthz, /readyz, /openapi.json, and /metrics whose counters move', async () => {
    expect(await getJson(`${server.url}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await getJson(`${server.url}/readyz`)).toMatchObject({ status: 200, body: { status: 'ready' } });
    const api = await getJson(`${server.url}/openapi.json`);
    expect(api.status).toBe(200);
    expect(api.body.openapi).toBe('3.1.0');
    expect(Object.keys(api.body.paths).sort()).toEqual([
      '/customers/{id}/summary',
      '/healthz',
      '/invoices',
      '/invoices/{id}',
      '/invoices/{id}/risk',
      '/metrics',
      '/openapi.json',
      '/readyz',
    ]);
    const before = (await getJson(`${server.url}/metrics`)).body as string;
    await getJson(`${server.url}/invoices/2`);
    await getJson(`${server.url}/invoices/999999`);
    const res = await fetch(`${server.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const after = await res.text();
    const ok = 'invoices_http_requests_total{route="/invoices/:id",method="GET",status="200"}';
    const missing = 'invoices_http_requests_total{route="/invoices/:id",method="GET",status="404"}';
    expect(metric(after, ok)).toBe(metric(before, ok) + 1);
    expect(metric(after, missing)).toBe(metric(before, missing) + 1);
    expect(metric(after, 'invoices_http_request_duration_seconds_count{route="/invoices/:id"}')).toBeGreaterThanOrEqual(
      metric(before, ok) + 2,
    );
    expect(after).toMatch(/^# TYPE invoices_http_request_duration_seconds histogram$/m);
    expect(after).toMatch(/^invoices_db_pool_connections\{state="idle"\} \d+$/m);
    expect(after).toMatch(/^invoices_db_pool_connections\{state="in_use"\} \d+$/m);
    expect(after).toMatch(/^invoices_db_pool_waiting 0$/m);
    expect(after).toMatch(/^invoices_cache_active 0$/m);
    expect(metric(after, 'invoices_http_errors_total{code="invoice_not_found"}')).toBeGreaterThanOrEqual(1);
  });

  it('writes one request line per request on stderr with --debug, none without', async () => {
    await getJson(`${server.url}/invoices/3`);
    // Written once the answer has gone out: wait for it.
    await waitFor('the request line', async () => /^debug: GET \/invoices\/3 200 [\d.]+ ms$/m.test(server.stderr()));
    const quiet = await startServe([], { DATABASE_URL: db.url });
    try {
      await getJson(`${quiet.url}/invoices/3`);
      await getJson(`${quiet.url}/invoices/abc`);
    } finally {
      expect(await quiet.stop()).toEqual({ code: 0, signal: null });
    }
    expect(quiet.stderr()).not.toMatch(/GET \/invoices/);
  });

  it('--token-file: 401 without the token or with another; /healthz and /readyz stay open', async () => {
    const dir = tempDir('token-');
    const file = path.join(dir, 'token');
    writeFileSync(file, 's3cret-token\n');
    const s = await startServe(['--token-file', file], { DATABASE_URL: db.url });
    try {
      for (const headers of [
        {},
        { authorization: 'Bearer wrong' },
        { authorization: 'Bearer s3cret-token-and-more' },
        { authorization: 's3cret-token' },
      ]) {
        const r = await getJson(`${s.url}/invoices/1`, headers);
        expect(r.status).toBe(401);
        expect(r.body.error.code).toBe('unauthorized');
        expect(r.headers.get('www-authenticate')).toBe('Bearer');
      }
      expect((await getJson(`${s.url}/metrics`)).status).toBe(401);
      expect((await getJson(`${s.url}/healthz`)).status).toBe(200);
      expect((await getJson(`${s.url}/readyz`)).status).toBe(200);
      const ok = await getJson(`${s.url}/invoices/1`, { authorization: 'Bearer s3cret-token' });
      expect(ok.status).toBe(200);
      expect(ok.body.invoice_id).toBe(1);
    } finally {
      await s.stop();
    }
    const empty = path.join(dir, 'empty');
    writeFileSync(empty, '\n');
    const r = await runCli(['serve', '--port', '0', '--token-file', empty], { env: { DATABASE_URL: db.url } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--token-file: .* is empty/);
  });

  it('an adopted table (config file mapping): the same documents as `get` and `group` on it', async () => {
    const adopted = await createDatabase();
    try {
      const cwd = await adoptBilling(
        adopted.url,
        `
        INSERT INTO billing.clients (customer_name) VALUES ('Acme'), ('Globex');
        INSERT INTO billing.invoice (issued_at, from_client, to_client, amount_usd) VALUES
          ('2025-05-10 10:00:00.123456', 1, 2, 10.125), ('2025-05-11 00:00:00', 2, 1, 3.5), ('2025-04-01 00:00:00', 1, 2, 1);`,
      );
      const s = await startServe([], { DATABASE_URL: adopted.url }, cwd);
      try {
        const one = await getJson(`${s.url}/invoices/1`);
        const cli = await runCli(['get', '1', '--json'], { env: { DATABASE_URL: adopted.url }, cwd });
        expect(cli.code).toBe(0);
        expect(one.body).toEqual(JSON.parse(cli.stdout));
        expect(one.body).toMatchObject({ issuer_name: 'Acme', receiver_name: 'Globex', amount: '10.125' });
        const g = await runCli(['group', '--months', '1', '--by', 'customer', '--engine', 'postgres', '--as-of', '2025-05-31', '--json'], {
          env: { DATABASE_URL: adopted.url },
          cwd,
        });
        const row = (JSON.parse(g.stdout) as Array<{ customer_id: number }>).find((r) => r.customer_id === 1);
        const summary = await getJson(`${s.url}/customers/1/summary?months=1&as_of=2025-05-31`);
        expect(summary.body).toMatchObject({ ...row, issued: '10.125', received: '3.500', net: '6.625' });
      } finally {
        await s.stop();
      }
    } finally {
      await adopted.drop();
    }
  });
});
