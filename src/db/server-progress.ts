// What a long statement is doing on the server, from PostgreSQL's progress views
// (pg_stat_progress_create_index, _analyze, _copy): a live line can then show how far an index
// build or ANALYZE has come instead of a count that moves once per statement. Polled on a
// connection of its own, only while something is shown.
import { connect, type Client, type DbContext } from './client.js';

export interface ServerProgress {
  stop(): Promise<void>;
}

/**
 * Polls the progress views for server process `pid` every `everyMs` and calls `onSample` with a
 * short text ('' when nothing reportable runs). Errors end the polling quietly: it is decoration.
 */
export function watchServerProgress(ctx: DbContext, pid: number, onSample: (text: string) => void, everyMs = 500): ServerProgress {
  let stopped = false;
  let client: Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  const tick = async () => {
    if (stopped) return;
    try {
      client ??= await connect({ config: ctx.config });
      if (stopped) return;
      const { rows } = await client.query<Sample>(SAMPLE_SQL, [pid]);
      if (!stopped) onSample(rows[0] ? describeSample(rows[0]) : '');
    } catch {
      stopped = true;
      return;
    }
    if (!stopped) {
      timer = setTimeout(() => void tick(), everyMs);
      timer.unref();
    }
  };
  timer = setTimeout(() => void tick(), everyMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await client?.end().catch(() => {});
    },
  };
}

interface Sample {
  kind: 'index' | 'analyze' | 'copy';
  phase: string | null;
  done: string | null;
  total: string | null;
  children_done: string | null;
  children_total: string | null;
}

const SAMPLE_SQL = `
  SELECT 'index' AS kind, phase, (CASE WHEN tuples_total > 0 THEN tuples_done ELSE blocks_done END)::text AS done,
         (CASE WHEN tuples_total > 0 THEN tuples_total ELSE blocks_total END)::text AS total,
         partitions_done::text AS children_done, partitions_total::text AS children_total
    FROM pg_stat_progress_create_index WHERE pid = $1
  UNION ALL
  SELECT 'analyze', phase, sample_blks_scanned::text, sample_blks_total::text, child_tables_done::text, child_tables_total::text
    FROM pg_stat_progress_analyze WHERE pid = $1
  UNION ALL
  SELECT 'copy', NULL, tuples_processed::text, NULL, NULL, NULL
    FROM pg_stat_progress_copy WHERE pid = $1`;

/** "building index: loading tuples in tree 45%", "analyze: acquiring inherited sample rows, partition 3/28". */
export function describeSample(s: Sample): string {
  if (s.kind === 'copy') return '';
  const parts: string[] = [];
  if (s.phase) parts.push(s.phase);
  const done = Number(s.done ?? 0);
  const total = Number(s.total ?? 0);
  if (total > 0) parts.push(`${Math.min(100, Math.floor((done / total) * 100))}%`);
  const cd = Number(s.children_done ?? 0);
  const ct = Number(s.children_total ?? 0);
  if (ct > 0) parts.push(`partition ${Math.min(cd + 1, ct)}/${ct}`);
  return parts.join(' ');
}
