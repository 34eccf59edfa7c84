-- invoices partition --convert, first statements of its prepare transaction: where the
-- conversion stands (one row: phase, backfill cursor) and the log of invoice ids written in the
-- table meanwhile (fed by the trigger in convert-capture.sql). Both are dropped when it finishes
-- (convert-finish.sql) or is cancelled (convert-cancel.sql). The names in braces are filled in by
-- the tool (src/schema/convert/statements.ts): for its own table invoices_convert_state and
-- invoices_convert_log, for an adopted table the same derived from its name.
CREATE TABLE {state} (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  phase          text NOT NULL CHECK (phase IN ('backfill', 'indexes', 'sync', 'switched')),
  old_table      oid NOT NULL,
  last_copied_id bigint,
  rows_copied    bigint NOT NULL DEFAULT 0,
  rows_total     bigint NOT NULL,
  started_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE {state} IS 'Progress of invoices partition --convert (backfill cursor, phase); dropped when the conversion finishes';

CREATE TABLE {log} (
  seq        bigserial PRIMARY KEY,
  invoice_id bigint NOT NULL
);
COMMENT ON TABLE {log} IS 'invoice ids written in invoices during invoices partition --convert, replayed into the new table; dropped when the conversion finishes';
