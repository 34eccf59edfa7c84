// Builds the `invoices` program. Each command's module is imported only when it runs,
// so `invoices get` never loads DuckDB, Faker or the seed code.
import { readFileSync } from 'node:fs';
import { Argument, Command, CommanderError, Option } from 'commander';
import { ExitCode, InterruptedError, InvoicesError } from './errors.js';
import { MODEL_VERSION } from './risk/model.js';

type Loader = () => Promise<{ run: (...args: never[]) => Promise<void> }>;
/** The default of --out/--lake, said in --help: the value itself is known once the config is resolved. */
const LAKE_DEFAULT = "this database's own lake, <home>/lakes/<name> (README: Where everything lives)";
const lazy = (load: Loader) => async (...args: unknown[]) => (await load()).run(...(args as never[]));

export function buildProgram(): Command {
  const program = new Command('invoices')
    .description('A data toolkit for a fast-growing PostgreSQL invoices table.')
    .version(packageVersion(), '-V, --version')
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL, PG* variables, config file, else the embedded server)')
    .option('--config <path>', 'config file (default: ./invoices.config.json)')
    .addOption(new Option('--format <format>', 'output format: table, json or csv (default: table on a terminal, else json)'))
    .option('--json', 'same as --format json')
    .option('-q, --quiet', 'no progress or information on stderr')
    .option('--debug', 'show stack traces and debug lines on stderr')
    .option('--no-color', 'no colour (also NO_COLOR)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride() // subcommands inherit it: usage errors reach main() and exit 2
    .configureOutput({ outputError: (str, write) => write(str) })
    .addHelpText('after', `
Examples:
  $ invoices seed --customers 1000          fill the embedded PostgreSQL with fake data
  $ invoices get 42 --json                  one invoice, as JSON
  $ invoices get 42 --cache redis://localhost:6380   the same, read through Redis
  $ invoices group --months 6 --by issuer --top 10  the last 6 months' largest issuers
  $ invoices risk --follow                  score every new invoice as it commits, exactly once
  $ invoices db psql                        psql on the same database (the password not on its command line)

Exit codes: 0 ok, 1 runtime failure, 2 usage error or bad input, 3 not found, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).`);

  program.command('init')
    .description('create the schema (idempotent)')
    .addHelpText('after', '\nExample:\n  $ invoices init')
    .action(lazy(() => import('./commands/init.js')));

  program.command('seed')
    .description('fill customers and invoices with realistic fake data (binary COPY)')
    .requiredOption('--customers <n>', 'number of customers to create')
    .option('--invoices <n>', 'number of invoices (default: 50 per customer)')
    .option('--months <k>', 'spread issue dates over the last K months', '24')
    .option('--seed <s>', 'random seed: the same seed and --as-of give the same rows', '1')
    .option('--as-of <date>', 'last day of the window, exclusive (YYYY-MM-DD, UTC; default: today)')
    .option('--append', 'add a new cohort of customers and invoices to existing rows')
    .option('--truncate', 'replace existing rows')
    .option('--batch-size <n>', 'invoices per COPY transaction', '1000000')
    .option('--no-wait', 'when another seed or conversion is writing the tables, exit 1 instead of waiting for it')
    .addHelpText('after', `
Examples:
  $ invoices seed --customers 1000                        50,000 invoices over 24 months
  $ invoices seed --customers 200000 --invoices 10000000 --truncate
  $ invoices seed --customers 10 --invoices 100 --seed 7 --as-of 2026-01-01 --append`)
    .action(lazy(() => import('./commands/seed.js')));

  program.command('get')
    .description('show invoices by id, with their issuer and receiver (many ids: JSON lines, in input order)')
    .argument('<id...>', 'invoice ids, or - to read them from stdin (one per line)')
    .option('--cache <url>', 'read through this Redis (redis://host:port[/db], rediss:// for TLS; default: REDIS_URL)')
    .option('--no-cache', 'ignore REDIS_URL: read PostgreSQL only')
    .option('--cache-ttl <seconds>', 'entries expire after this long, so an update shows within it (default: 60; 0: no cache)')
    .option('--cache-required', 'a cache that fails is an error (exit 1) instead of a warning and PostgreSQL')
    .option('--stats', 'time repeated lookups: cache hit, cache miss, PostgreSQL alone (p50/p99 on stderr)')
    .option('--repeat <n>', 'lookups of each kind with --stats (default: 200)')
    .addHelpText('after', `
Examples:
  $ invoices get 42
  $ invoices get 42 --format csv
  $ REDIS_URL=redis://localhost:6380 invoices get 42     through Redis: a hit never connects to PostgreSQL
  $ invoices get 42 --cache redis://localhost:6380 --cache-ttl 5
  $ invoices get 42 --no-cache                            straight to PostgreSQL
  $ invoices get 42 --stats --repeat 1000                 hit vs miss latency
  $ invoices get 1 2 3                                    several: one JSON object per line when piped
  $ cut -d, -f1 ids.csv | invoices get - > invoices.jsonl   ids on stdin, streamed out in input order

Many ids: ids not found are named on stderr and the run exits 3 after printing the others; a
malformed id argument exits 2 before any output; a malformed stdin line is named with its line
number and the run exits 2 after printing the others.

The cache never serves an entry older than --cache-ttl. When it cannot be reached, get
warns once and answers from PostgreSQL (exit 0), unless --cache-required.`)
    .action(lazy(() => import('./commands/get.js')));

  program.command('partition')
    .description('create monthly partitions of invoices (months in the DEFAULT partition + months ahead); check them; convert a plain table')
    .option('--ahead <n>', 'months ahead of the current one to create (default: 3)')
    .option('--check', 'report partitions, rows and sizes; exit 1 when rows sit in DEFAULT or months ahead are missing')
    .option('--convert', 'convert a plain invoices table into the partitioned layout, online')
    .option('--dry-run', 'print the SQL instead of running it')
    .option('--as-of <date>', 'the current month for --ahead (YYYY-MM-DD, UTC; default: today)')
    .option('--batch-size <n>', 'with --convert: rows copied per transaction (default: 100000)')
    .option('--lock-timeout <ms>', 'with --convert: how long each attempt at the exclusive lock may wait (default: 500)')
    .option('--lock-retries <n>', 'with --convert: attempts after the first before giving up (default: 10)')
    .option('--cancel', 'with --convert: remove everything an unfinished conversion created; invoices is left as it was')
    .option('--no-wait', 'with --convert: when another conversion or seed is writing the table, exit 1 instead of waiting for it')
    .addHelpText('after', `
Examples:
  $ invoices partition                 partitions for stranded months and the next 3 months
  $ invoices partition --check         rows and size per partition (cron: exit 1 when something needs doing)
  $ invoices partition --convert --dry-run     the conversion plan of a plain invoices table, as SQL
  $ invoices partition --convert               convert it online: writers blocked only for the final switch
  $ invoices partition --convert --cancel      abandon an interrupted conversion

An interrupted --convert (Ctrl-C, a crash) resumes where it stopped when run again.`)
    .action(lazy(() => import('./commands/partition.js')));

  program.command('index')
    .description('create the indexes the use cases need (CONCURRENTLY: writers are not blocked) and list them with sizes')
    .option('--dry-run', 'print the SQL instead of running it')
    .addHelpText('after', `
Creates, when missing: a unique index on invoice_id (plain table; a partitioned one has invoice_ids),
(issuer_id, issue_date) INCLUDE (amount) and (receiver_id, issue_date) INCLUDE (amount).

Examples:
  $ invoices index --dry-run
  $ invoices index --format json`)
    .action(lazy(() => import('./commands/index.js')));

  program.command('export')
    .description('export invoices (hive-partitioned by month) and customers to a Parquet lake; incremental, atomic per month')
    .option('--out <dir>', `the lake directory (default: ${LAKE_DEFAULT})`)
    .option('--full', 'rewrite every month, ignoring the manifest')
    .option('--verify', 'after exporting, reconcile rows and sum(amount) per month with PostgreSQL; exit 1 on any difference')
    .option('--verify-only', 'reconcile the lake with PostgreSQL without exporting')
    .option('--no-wait', 'when another export holds the lake\'s lock, exit 1 at once instead of waiting for it')
    .addHelpText('after', `
Examples:
  $ invoices export                          the database's own lake: only the months that changed since the last run
  $ invoices export --out /data/lake --full  rewrite everything
  $ invoices export --verify --quiet         cron: export, then exit 1 if a month differs from PostgreSQL

Layout: <dir>/invoices/month=YYYY-MM/part-<export id>.parquet, <dir>/customers/part-<export id>.parquet,
<dir>/_manifest.json (lists every file, with its size and sha256). The folder must be new, empty or a
lake export made; export never touches a file it did not write. One export at a time (a lock file;
--no-wait refuses instead of waiting); a run that was killed is finished or rolled back by the next.
Rows are exported up to a transaction-id watermark, so a transaction that commits late is picked up
by the next run; months whose rows were updated or deleted, or whose file is missing or changed, are
written again.`)
    .action(lazy(() => import('./commands/export.js')));

  program.command('group')
    .description('invoices of the last N calendar months grouped by issuer, receiver or customer (exact totals)')
    .requiredOption('--months <n>', 'the N calendar months ending with the month of --as-of (the current month included)')
    .requiredOption('--by <party>', 'issuer, receiver or customer (issued + received, and net)')
    .option('--as-of <date>', 'a day in the last month of the window (YYYY-MM-DD, UTC; default: today)')
    .option('--top <k>', 'only the K customers with the largest totals')
    .option('--engine <engine>', 'auto (the fastest that is exact and fresh: a fresh lake, else the totals, else postgres), duckdb (the lake plus what it does not hold yet), totals (monthly totals per customer, refreshed first) or postgres', 'auto')
    .option('--lake <dir>', `the lake written by \`invoices export\` (default: ${LAKE_DEFAULT})`)
    .option('--chart', 'draw the totals as a bar chart')
    .addHelpText('after', `
Examples:
  $ invoices group --months 6 --by issuer --top 10
  $ invoices group --months 12 --by customer --as-of 2026-06-30 --format csv > customers.csv
  $ invoices group --months 3 --by receiver --top 15 --chart
  $ invoices group --months 6 --by issuer --engine postgres      the live table, no lake

The window is printed on stderr, with the engine that answered and why. Amounts are exact
decimal strings; average is total / invoices rounded half away from zero to the cent.`)
    .action(lazy(() => import('./commands/group.js')));

  program.command('query')
    .description('DuckDB SQL over the lake (invoices, customers) and side files: CSV, JSON, NDJSON, Parquet, text')
    .argument('<sql>', 'one SQL statement (DuckDB dialect)')
    .option('--with <name=path>', 'a side source as a table NAME (repeatable); format from the extension or NAME=PATH:format', (v: string, acc: string[] = []) => [...acc, v])
    .option('--lake <dir>', `the lake written by \`invoices export\` (default: ${LAKE_DEFAULT})`)
    .option('--unsafe-files', 'let the SQL read and write any file this user can (COPY ... TO, read_csv(\'/any/path\'), ATTACH); default: only the lake and the --with files, read-only')
    .addHelpText('after', `
Examples:
  $ invoices query "SELECT month, count(*), sum(amount) FROM invoices GROUP BY ALL ORDER BY 1"
  $ invoices query "SELECT c.segment, sum(i.amount) FROM invoices i JOIN crm c ON c.customer_id = i.issuer_id GROUP BY ALL" --with crm=fixtures/crm.csv
  $ invoices query "SELECT line_number, line FROM notes WHERE line ILIKE '%overdue%'" --with notes=fixtures/notes.txt

Formats: .csv, .json (nested objects and arrays), .ndjson/.jsonl, .parquet, .txt/.log (columns line_number, line).
DuckDB may read the lake and the --with files only, and writes no file (COPY ... TO, EXPORT, ATTACH
are refused, exit 2), unless --unsafe-files.`)
    .action(lazy(() => import('./commands/query.js')));

  program.command('join')
    .description('invoice totals per attribute of a side source joined to customers, with a report of unmatched keys')
    .requiredOption('--with <name=path>', 'the side source (CSV, JSON, NDJSON, Parquet)')
    .requiredOption('--on <side=customers>', 'the side column and the customers column it matches (default customers column: id)')
    .option('--by <columns>', 'side attributes to group by, comma-separated: col, struct.field, list[] (default: every other column)')
    .option('--party <party>', 'which party of an invoice the side row describes: issuer or receiver', 'issuer')
    .option('--months <n>', 'only the last N calendar months (as in group)')
    .option('--as-of <date>', 'with --months: a day in the last month (YYYY-MM-DD, UTC)')
    .option('--lake <dir>', `the lake written by \`invoices export\` (default: ${LAKE_DEFAULT})`)
    .option('--unmatched', 'print the unmatched keys instead of the totals')
    .addHelpText('after', `
Examples:
  $ invoices join --with crm=fixtures/crm.csv --on customer_id=id --by segment,region
  $ invoices join --with risk=fixtures/risk.json --on customer_id --by 'risk.flags[]'
  $ invoices join --with crm=fixtures/crm.csv --on customer_id --unmatched --format csv`)
    .action(lazy(() => import('./commands/join.js')));

  program.command('risk')
    .description('score new invoices with the risk model, exactly once (use case 4); status, verify, explain, init')
    .addArgument(new Argument('[action]', 'status, verify, explain <id> or init (default: score)').choices(['run', 'status', 'verify', 'explain', 'init']))
    .argument('[id]', 'invoice id, for explain')
    .option('--since <when>', 'last: invoices committed since the watermark; all: (re)score everything; YYYY-MM-DD: (re)score those issued since that day', 'last')
    .option('--follow', 'keep running: score new invoices within a second of their commit (Ctrl-C or SIGTERM stops it)')
    .option('--limit <n>', 'score at most N invoices in this run')
    .option('--batch-size <n>', 'invoices per transaction', '50000')
    .option('--model-version <v>', 'model version: scores, watermark and lock are per version', MODEL_VERSION)
    .option('--retry-failed', 'score the dead letters again; those that score leave the dead-letter table')
    .option('--wait', 'when another run of the same model is scoring, wait for it instead of exiting 1')
    .option('--poll-interval <ms>', 'with --follow: look for invoices at least this often even without a notification', '2000')
    .option('--dry-run', 'with init: print the statements without running them')
    .addHelpText('after', `
Examples:
  $ invoices risk init --dry-run            what setting the scorer up would change
  $ invoices risk                           score every invoice committed since the last run (cron-safe)
  $ invoices risk --follow                  keep scoring as invoices commit
  $ invoices risk status                    backlog, last run, dead letters, what holds the watermark
  $ invoices risk verify                    every invoice below the watermark scored? (exit 1 if not)
  $ invoices risk explain 42                the features and reasons of one invoice
  $ invoices risk --since 2026-01-01 --model-version v2   rescore what was issued since a day

Every committed invoice is scored exactly once per model version, even when transactions commit
out of order: the watermark is the inserting transaction's id (created_xid), read only below the
oldest running transaction. A second run of the same model exits 1 (or queues with --wait).`)
    .action(lazy(() => import('./commands/risk.js')));

  program.command('db')
    .description('manage the embedded PostgreSQL (used when no database is configured)')
    .addArgument(new Argument('<action>', 'start, stop, status, url or psql').choices(['start', 'stop', 'status', 'url', 'psql']))
    .argument('[psql-args...]', 'with psql: arguments for psql (-c SQL, -f FILE, -A, -t, ...)')
    // psql's own options (-c, -f, ...) reach it untouched; those of invoices (-q, -h, -V) go after --.
    .allowUnknownOption()
    .addHelpText('after', `
Examples:
  $ invoices db status                      state, version, pid, URL without password, home, default lake
  $ invoices db psql                        psql on the database: the password in its environment, never on argv
  $ invoices db psql -c 'SELECT count(*) FROM invoices'
  $ invoices db psql -- -q -f report.sql    after --, options that invoices would otherwise take
  $ invoices db url                         the URL, password included (embedded server): for clients that need one`)
    .action(lazy(() => import('./commands/db.js')));

  // --out/--lake have no static default: the lake belongs to the database (config.ts defaultLake),
  // known only once the configuration is resolved.
  program.hook('preAction', async (_program, action) => {
    const key = action.name() === 'export' ? 'out' : 'lake';
    if (!action.options.some((o) => o.attributeName() === key) || action.getOptionValue(key) !== undefined) return;
    const [{ commandContext }, { defaultLakeFor }] = await Promise.all([import('./commands/context.js'), import('./commands/home.js')]);
    const ctx = commandContext(action);
    action.setOptionValueWithSource(key, defaultLakeFor(ctx.config, process.cwd(), ctx.log, `--${key}` as '--out' | '--lake'), 'default');
  });

  return program;
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** Runs the CLI: maps errors to one line on stderr and an exit code (stack only with --debug). */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  const debug = argv.includes('--debug');
  // pg tells Cloudflare Workers apart by building a `new Response()` when there is no global
  // navigator; on Node 20 that loads the whole fetch implementation, ~60 ms on every command.
  // Node 21+ defines navigator itself: define the same here before any command loads pg.
  if (!('navigator' in globalThis)) {
    Object.defineProperty(globalThis, 'navigator', { value: { userAgent: `Node.js/${process.versions.node.split('.')[0]}` }, configurable: true, writable: true });
  }
  // `invoices ... | head`: the reader went away; stop quietly rather than crash on EPIPE.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = exitCodeFor(err);
    // 130 after SIGINT, 143 after SIGTERM: which one came is known where the signals are caught.
    if (err instanceof InterruptedError) process.exitCode = (await import('./commands/context.js')).interruptExitCode();
    if (err instanceof CommanderError) return; // commander already printed help or the error
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`invoices: ${message}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    else if (!(err instanceof InvoicesError)) process.stderr.write('(run with --debug for details)\n');
  }
}

function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  return err instanceof InvoicesError ? err.exitCode : ExitCode.failure;
}
