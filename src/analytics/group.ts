// Use case 2: invoices of the last N months grouped by a dimension (dimensions.ts: issuer,
// receiver, customer, country, segment), exact to the cent, by one of the engines of
// engines.ts, which return identical numbers; auto takes the first that can answer.
import { withClient, type Client, type DbContext } from '../db/client.js';
import { withReader } from '../db/replica.js';
import { asInterrupted, cancelOnAbort } from '../db/cancel.js';
import { UsageError } from '../errors.js';
import { silentLogger } from '../log.js';
import { customersSelect } from '../table/customers.js';
import { describeTable } from '../table/describe.js';
import { dimension, GROUP_BYS, type Dimension } from './dimensions.js';
import { answerWith, ENGINES, type GroupOptions, type GroupResult } from './engines.js';

/** The dimension of `--by`, after checking `--by` and `--engine` (a usage error names the values they take). */
export function groupingOf(by: string, engine: string): Dimension {
  const dim = dimension(by);
  if (!dim) throw new UsageError(`--by must be one of ${GROUP_BYS.join(', ')}, got "${by}"`);
  if (!ENGINES.includes(engine)) throw new UsageError(`--engine must be one of ${ENGINES.join(', ')}, got "${engine}"`);
  return dim;
}

/** Groups the window's invoices; see GroupOptions. */
export async function groupInvoices(ctx: DbContext, opts: GroupOptions): Promise<GroupResult> {
  const log = opts.log ?? ctx.log ?? silentLogger;
  const dim = groupingOf(opts.by, opts.engine);
  // --engine postgres only reads: a replica may answer (src/db/replica.ts). Every other choice
  // may refresh the monthly totals (auto may too), so it runs on the primary.
  const run = async (client: Client, on: DbContext) => {
    const cancel = cancelOnAbort(on, client, opts.signal);
    try {
      const source = await describeTable(client, ctx.config.tables);
      const columns = ['id', 'name', ...(dim.customerColumn ? [dim.customerColumn] : [])];
      const customers = `(${await customersSelect(client, ctx.config.tables, columns, { required: columns, by: dim.name })})`;
      return await answerWith({ ctx, client, source, customers, dim, opts, log });
    } catch (err) {
      await cancel.settled();
      throw asInterrupted(err, opts.signal, 'interrupted: nothing was changed (a monthly totals refresh in flight rolled back)');
    } finally {
      cancel.dispose();
    }
  };
  if (opts.engine === 'postgres') return withReader(ctx, (client, route) => run(client, route.ctx), 'group --engine postgres');
  return withClient(ctx, (client) => run(client, ctx));
}
