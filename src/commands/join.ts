import type { Command } from 'commander';
import type { JoinRow } from '../analytics/join.js';
import { UsageError } from '../errors.js';
import type { Column } from '../output/render.js';
import { commandContext, defaultLake, LAKE_DEFAULT, positiveInt } from './context.js';

export const DEFAULT_PARTY = 'issuer';

export function command(program: Command): Command {
  return program
    .command('join')
    .description('invoice totals per attribute of a side source joined to customers, with a report of unmatched keys')
    .requiredOption('--with <name=path>', 'the side source (CSV, JSON, NDJSON, Parquet)')
    .requiredOption('--on <side=customers>', 'the side column and the customers column it matches (default customers column: id)')
    .option('--by <columns>', 'side attributes to group by, comma-separated: col, struct.field, list[] (default: every other column)')
    .option('--party <party>', 'which party of an invoice the side row describes: issuer or receiver', DEFAULT_PARTY)
    .option('--months <n>', 'only the last N calendar months (as in group)')
    .option('--as-of <date>', 'with --months: a day in the last month (YYYY-MM-DD, UTC)')
    .option('--lake <dir>', `the lake written by \`invoices export\` (default: ${LAKE_DEFAULT})`)
    .option('--unmatched', 'print the unmatched keys instead of the totals')
    .addHelpText(
      'after',
      `
Examples:
  $ invoices join --with crm=fixtures/crm.csv --on customer_id=id --by segment,region
  $ invoices join --with risk=fixtures/risk.json --on customer_id --by 'risk.flags[]'
  $ invoices join --with crm=fixtures/crm.csv --on customer_id --unmatched --format csv`,
    )
    .hook('preAction', defaultLake('--lake'))
    .action(run);
}

interface JoinOptions {
  with: string;
  on: string;
  by?: string;
  party: string;
  months?: string;
  asOf?: string;
  lake: string;
  unmatched?: boolean;
}

export async function run(opts: JoinOptions, cmd: Command): Promise<void> {
  const [{ joinSide, parseOn }, { parseSource }, { monthWindow }] = await Promise.all([
    import('../analytics/join.js'),
    import('../analytics/sources.js'),
    import('../analytics/window.js'),
  ]);
  const source = parseSource(opts.with);
  const on = parseOn(opts.on);
  if (opts.party !== 'issuer' && opts.party !== 'receiver') throw new UsageError(`--party must be issuer or receiver, got "${opts.party}"`);
  if (opts.asOf && !opts.months) throw new UsageError('--as-of goes with --months');
  const window = opts.months
    ? monthWindow(positiveInt('--months', opts.months), opts.asOf ?? new Date().toISOString().slice(0, 10))
    : undefined;
  const by = opts.by
    ? opts.by
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
  const ctx = await commandContext(cmd);
  const r = await joinSide({
    lake: opts.lake,
    source,
    on,
    by,
    party: opts.party,
    window,
    log: ctx.log,
    sample: opts.unmatched ? 1_000_000 : 10,
  });

  const list = (u: { count: number; sample: string[] }) =>
    u.count ? `: ${u.sample.join(', ')}${u.count > u.sample.length ? ', ...' : ''}` : '';
  ctx.log.info(`${source.name}: ${r.sideRows} row(s); ${r.unmatchedSideKeys.count} key(s) match no customer${list(r.unmatchedSideKeys)}`);
  ctx.log.info(`customers: ${r.customersWithoutSide.count} have no ${source.name} row${list(r.customersWithoutSide)}`);
  if (r.duplicateSideKeys.count)
    ctx.log.warn(
      `${r.duplicateSideKeys.count} key(s) appear more than once in ${source.name} (a customer counts once per attribute value)${list(r.duplicateSideKeys)}`,
    );

  if (opts.unmatched) {
    const rows = [
      ...r.unmatchedSideKeys.sample.map((key) => ({ kind: `${source.name} key without customer`, key })),
      ...r.customersWithoutSide.sample.map((key) => ({ kind: `customer without ${source.name} row`, key })),
    ];
    await ctx.printRows(rows, [{ key: 'kind' }, { key: 'key' }]);
    return;
  }
  const columns: Column<JoinRow>[] = [
    ...r.attributes.map((a) => ({ key: a })),
    { key: 'customers', kind: 'int' },
    { key: 'invoices', kind: 'int' },
    { key: 'total', kind: 'money' },
    { key: 'average', kind: 'money' },
  ];
  const rows =
    ctx.format === 'json'
      ? r.rows
      : r.rows.map(
          (row) =>
            Object.fromEntries(
              Object.entries(row).map(([k, v]) => [k, v !== null && typeof v === 'object' ? JSON.stringify(v) : v]),
            ) as JoinRow,
        );
  await ctx.printRows(rows, columns);
}
