// The phases of a conversion, in the order the runner walks them. Each one sees from the state
// whether it has work left, so that a resumed run walks the same table.
import { backfill } from './backfill.js';
import { finish } from './finish.js';
import { indexes } from './indexes.js';
import type { Phase } from './context.js';
import { prepare } from './prepare.js';
import { switchPhase } from './switch.js';
import { sync } from './sync.js';

export const PHASES: readonly Phase[] = [prepare, backfill, indexes, sync, switchPhase, finish];
