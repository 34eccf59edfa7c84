// `invoices get 1 2 3` and `invoices get -` (ids on stdin): one connection, lookups batched and
// kept in flight while earlier batches are printed, output in input order as it is read.
import { NotFoundError, UsageError } from '../errors.js';
import type { Reader } from '../db/replica.js';
import type { RoutedLookup } from '../lookup/routed.js';
import { parseInvoiceId, type InvoiceDetail } from '../lookup/get-invoice.js';
import { renderRecordLine, render } from '../output/render.js';
import type { CommandContext } from './context.js';
import { cacheSetup, COLUMNS, type GetOptions } from './get.js';

/** Ids per statement: past ~1,000 a batch no longer gets cheaper per id, and output waits longer. */
export const BATCH = 1000;
/** Batches sent before the first one is printed: the server works while we print. */
const IN_FLIGHT = 3;

interface Batch {
  ids: bigint[];
  lookup: Promise<Array<InvoiceDetail | undefined>>;
}

/**
 * Prints the invoices of many ids in input order: JSON lines (json), one header then rows (csv),
 * a table per batch read (table). Missing ids are reported on stderr and end with exit 3; with
 * ids on stdin, a malformed line is reported with its line number and ends with exit 2 (after
 * the others are printed); malformed ids given as arguments are exit 2 before any output.
 */
export async function runMany(args: string[], opts: GetOptions, ctx: CommandContext): Promise<void> {
  const fromStdin = args.includes('-');
  if (fromStdin && args.length > 1) throw new UsageError('get -: read the ids from stdin only, give no other ids');
  const argIds: bigint[] = [];
  if (!fromStdin) {
    for (const raw of args) {
      const id = parseInvoiceId(raw);
      if (id === undefined) throw new UsageError(`invoice id must be a positive integer, got "${raw}"`);
      argIds.push(id);
    }
  }
  if (opts.repeat !== undefined) throw new UsageError('--repeat goes with --stats');
  const { rt, useCache, openBoth, endpoint, ttl } = await cacheSetup(opts, ctx);

  // Ctrl-C or SIGTERM (say, while waiting for ids on a terminal): what was printed stays, the
  // exit code says which signal (nothing is written, so there is nothing to leave clean).
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)
    process.once(sig, () => process.exit(code));
  let reader: Reader | undefined;
  let routed: RoutedLookup | undefined;
  let missing = 0;
  let malformed = 0;
  let hits = 0;
  let misses = 0;
  let printed = 0;
  let headerDone = false;
  try {
    const [{ connectReader }, { RoutedLookup }] = await Promise.all([import('../db/replica.js'), import('../lookup/routed.js')]);
    // A replica when one is configured and usable; ids it misses are asked of the primary.
    reader = useCache ? await openBoth() : await connectReader(ctx, 'get');
    routed = new RoutedLookup(ctx, reader, ctx.config.tables);
    const lookup = routed;
    const load = (ids: bigint[]) => lookup.many(ids);

    const queue: Batch[] = [];
    // node-postgres runs one statement at a time per connection: batches are chained, so the
    // next one is sent the moment the previous answers, while the JavaScript side prints.
    let previous: Promise<unknown> = Promise.resolve();
    const submit = (ids: bigint[]) => {
      const lookup = previous
        .then(() => rt.lookupMany(ids, load))
        .then((r) => {
          hits += r.hits;
          misses += r.misses;
          return r.invoices;
        });
      lookup.catch(() => {}); // awaited in order below; an early failure must not be unhandled
      previous = lookup.catch(() => {});
      queue.push({ ids, lookup });
    };
    const printOne = async () => {
      const batch = queue.shift()!;
      const invoices = await batch.lookup;
      const rows: InvoiceDetail[] = [];
      batch.ids.forEach((id, i) => {
        const invoice = invoices[i];
        if (invoice) rows.push(invoice);
        else {
          missing++;
          process.stderr.write(`invoices: invoice ${id} not found\n`);
        }
      });
      printed += rows.length;
      await write(await renderBatch(rows, ctx, !headerDone));
      headerDone = true;
    };
    const feed = async (ids: bigint[]) => {
      for (let i = 0; i < ids.length; i += BATCH) {
        submit(ids.slice(i, i + BATCH));
        if (queue.length >= IN_FLIGHT) await printOne();
      }
    };

    if (!fromStdin) await feed(argIds);
    else {
      let line = 0;
      for await (const lines of stdinLines()) {
        const ids: bigint[] = [];
        for (const text of lines) {
          line++;
          const raw = text.trim();
          if (!raw) continue;
          const id = parseInvoiceId(raw);
          if (id === undefined) {
            malformed++;
            process.stderr.write(
              `invoices: stdin line ${line}: invoice id must be a positive integer, got "${raw.length > 40 ? raw.slice(0, 40) + '...' : raw}"\n`,
            );
          } else ids.push(id);
        }
        await feed(ids);
        // What has been read is printed before waiting for more input (an interactive
        // producer sees its answers); a fast producer keeps IN_FLIGHT batches going.
        if (process.stdin.readableLength === 0) while (queue.length) await printOne();
      }
    }
    while (queue.length) await printOne();
  } finally {
    await rt.close();
    await routed?.close();
    await reader?.client.end().catch(() => {});
  }
  ctx.log.debug(
    `get: ${printed} printed, ${missing} not found, ${malformed} malformed${routed?.fromPrimary ? `, ${routed.fromPrimary} from the primary (not yet on the replica)` : ''}${useCache ? `; cache ${endpoint?.display} (ttl ${ttl} s): ${hits} hits, ${misses} misses` : ''}`,
  );
  if (malformed) throw new UsageError(`${malformed} malformed id${malformed === 1 ? '' : 's'} on stdin (see above)`);
  if (missing) throw new NotFoundError(`${missing} invoice${missing === 1 ? '' : 's'} not found (see above)`);
}

async function renderBatch(rows: InvoiceDetail[], ctx: CommandContext, first: boolean): Promise<string> {
  if (ctx.format === 'json') return rows.map((r) => renderRecordLine(r, COLUMNS)).join('');
  if (!rows.length) return '';
  if (ctx.format === 'csv') {
    const text = await render(rows, COLUMNS, 'csv');
    return first ? text : text.slice(text.indexOf('\n') + 1);
  }
  return render(rows, COLUMNS, 'table', { color: ctx.color && Boolean(process.stdout.isTTY) });
}

/** Writes to stdout and waits when the pipe is full, so memory stays flat on any input size. */
function write(text: string): Promise<void> {
  if (!text) return Promise.resolve();
  if (process.stdout.write(text)) return Promise.resolve();
  return new Promise((resolve) => process.stdout.once('drain', resolve));
}

/** stdin as arrays of complete lines, one array per chunk read. */
async function* stdinLines(): AsyncGenerator<string[]> {
  process.stdin.setEncoding('utf8');
  let rest = '';
  for await (const chunk of process.stdin as AsyncIterable<string>) {
    const text = rest + chunk;
    const cut = text.lastIndexOf('\n');
    if (cut < 0) {
      rest = text;
      continue;
    }
    rest = text.slice(cut + 1);
    yield text.slice(0, cut).split('\n');
  }
  if (rest) yield [rest];
}
