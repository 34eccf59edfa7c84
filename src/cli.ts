// Assembles the `invoices` program from the command modules (src/commands/<name>.ts: each
// declares its flags, defaults, help and examples beside its run()) and maps errors to exit
// codes. Only the module of the command named on the command line is loaded (all of them for
// the program's own help), and a module loads its core only when it runs: `invoices get` never
// loads DuckDB, Faker or the seed code.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ExitCode, InterruptedError, InvoicesError } from './errors.js';
import { addGlobalOptions, interruptExitCode } from './commands/context.js';

/** What a command module exports. */
export interface CommandModule<Values = unknown> {
  /**
   * Adds the command to the program (program.command(name), so it inherits exitOverride and the
   * output settings): flags, defaults, description, help and examples; its action is the
   * module's run().
   */
  command(program: Command, values?: Values): Command;
  /**
   * Values of the core that the help names (group: the --by and --engine lists), from a module
   * too heavy to load for every command: loaded only for the command named on the command line.
   */
  helpValues?(): Promise<Values>;
}

/** The commands, in the order of the help, each loaded only when needed. */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  init: () => import('./commands/init.js'),
  seed: () => import('./commands/seed.js'),
  get: () => import('./commands/get.js'),
  partition: () => import('./commands/partition.js'),
  index: () => import('./commands/index.js'),
  export: () => import('./commands/export.js'),
  group: () => import('./commands/group.js'),
  query: () => import('./commands/query.js'),
  join: () => import('./commands/join.js'),
  risk: () => import('./commands/risk.js'),
  db: () => import('./commands/db.js'),
};

/** The program for these arguments (process.argv without node and the script). */
export async function buildProgram(args: string[]): Promise<Command> {
  const program = addGlobalOptions(
    new Command('invoices')
      .description('A data toolkit for a fast-growing PostgreSQL invoices table.')
      .version(packageVersion(), '-V, --version'),
  )
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride() // commands inherit it: usage errors reach main() and exit 2
    .configureOutput({ outputError: (str, write) => write(str) })
    .addHelpText(
      'after',
      `
Examples:
  $ invoices seed --customers 1000          fill the embedded PostgreSQL with fake data
  $ invoices get 42 --json                  one invoice, as JSON
  $ invoices get 42 --cache redis://localhost:6380   the same, read through Redis
  $ invoices group --months 6 --by issuer --top 10  the last 6 months' largest issuers
  $ invoices risk --follow                  score every new invoice as it commits, exactly once
  $ invoices db psql                        psql on the same database (the password not on its command line)

Exit codes: 0 ok, 1 runtime failure, 2 usage error or bad input, 3 not found, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).`,
    );
  // A command named: only its module, which may name values of its core in its help. Otherwise
  // (the program's help, an unknown command) every command, for the list and the suggestions.
  const named = commandNamed(args);
  const names = named ? [named] : Object.keys(COMMANDS);
  const modules = await Promise.all(names.map((name) => COMMANDS[name]()));
  for (const [i, m] of modules.entries()) {
    const cmd = m.command(program, named && m.helpValues ? await m.helpValues() : undefined);
    if (cmd.name() !== names[i]) throw new Error(`the module of \`${names[i]}\` declares \`${cmd.name()}\``);
  }
  return program;
}

/**
 * The command these arguments run or show the help of (`invoices [global options] <name> ...` or
 * `invoices help <name>`), found as commander dispatches: the first argument that is neither a
 * global option nor its value; undefined when that is no command.
 */
function commandNamed(args: string[]): string | undefined {
  const globals = addGlobalOptions(new Command()).options;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') return undefined;
    if (arg.startsWith('-')) {
      const o = globals.find((o) => o.long === arg || o.short === arg);
      if (o?.required || o?.optional) i++;
      continue;
    }
    const name = arg === 'help' ? args[i + 1] : arg;
    return name !== undefined && Object.hasOwn(COMMANDS, name) ? name : undefined;
  }
  return undefined;
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** Runs the CLI: maps errors to one line on stderr and an exit code (stack only with --debug). */
export async function main(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug');
  // pg tells Cloudflare Workers apart by building a `new Response()` when there is no global
  // navigator; on Node 20 that loads the whole fetch implementation, ~60 ms on every command.
  // Node 21+ defines navigator itself: define the same here before any command loads pg.
  if (!('navigator' in globalThis)) {
    Object.defineProperty(globalThis, 'navigator', {
      value: { userAgent: `Node.js/${process.versions.node.split('.')[0]}` },
      configurable: true,
      writable: true,
    });
  }
  // `invoices ... | head`: the reader went away; stop quietly rather than crash on EPIPE.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  try {
    const program = await buildProgram(argv.slice(2));
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = exitCodeFor(err);
    // 130 after SIGINT, 143 after SIGTERM: which one came is known where the signals are caught.
    if (err instanceof InterruptedError) process.exitCode = interruptExitCode();
    if (err instanceof CommanderError) return; // commander already printed help or the error
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`invoices: ${message}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    else if (!(err instanceof InvoicesError)) process.stderr.write('(run with --help for usage)\n');
  }
}

function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  return err instanceof InvoicesError ? err.exitCode : ExitCode.failure;
}
