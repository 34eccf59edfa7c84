// What every phase of a conversion works with: one run's connection, names, plan, state and
// result, and the interruption message as of the last committed step.
import type { Client } from '../../db/client.js';
import type { Logger } from '../../log.js';
import type { StateRow } from './inspect.js';
import type { Names, Quote } from './names.js';
import type { ConversionPlan } from './plan.js';
import type { Sql } from './statements.js';
import type { ConvertOptions, ConvertPhase, ConvertProgress, ConvertResult } from './types.js';

export interface Run {
  client: Client;
  n: Names;
  q: Quote;
  log: Logger;
  opts: ConvertOptions;
  lockTimeoutMs: number;
  lockRetries: number;
  batchSize: number;
  /** Switch once a catch-up round replays fewer logged changes than this. */
  threshold: number;
  /** The plan; planned again once the prepare has created the conversion's objects. */
  plan: ConversionPlan;
  /** The table as inspected with what the statements derive from it. */
  s: Sql;
  /** The conversion's state row, read by the prepare; phases move it on. */
  state: StateRow | null;
  result: ConvertResult;
  /** synchronous_commit as the server sets it for the session (the run turns it off, the switch back on). */
  serverSynchronousCommit: string;
  /** Where an interruption leaves the conversion, for its message. */
  where: string;
  progress: (p: ConvertProgress) => void;
}

/** One step of the conversion: it does its work or sees from the state that it is done. */
export interface Phase {
  name: ConvertPhase;
  run: (r: Run) => Promise<void>;
}
