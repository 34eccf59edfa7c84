-- Risk scoring (use case 4): scores, dead letters and one watermark per source table and model
-- version. Created by `invoices risk init` (idempotent). The guarantee: a run scores the invoices
-- whose inserting transaction (created_xid) is below pg_snapshot_xmin(pg_current_snapshot())
-- -- every transaction below it has ended, so no earlier invoice can still appear -- walking
-- them in (created_xid, invoice_id) order after the stored cursor, and commits the scores and
-- the new cursor in one transaction. The primary keys make a retried batch harmless.
--
-- Everything is scoped by source_id: the invoices table and its column mapping (src/table/
-- describe.ts), so that two invoices tables in one database (this tool's and an adopted one)
-- keep separate scores, dead letters and cursors. A score is bound to the row it scored by
-- invoice_xid, that row's created_xid: an invoice id reused by other rows (a reseed, a reload)
-- is another invoice, and a score is current only while (invoice_id, invoice_xid) is a row of
-- the table.
--
-- Run as one transaction (one multi-statement query): the lock serialises two first runs, and
-- risk tables of an earlier version (no source_id: their scores cannot be attributed to a
-- table, nor to a row) are dropped before the current ones are created.
SELECT pg_advisory_xact_lock(hashtext('invoices:schema'));

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM unnest(ARRAY['risk_scores', 'risk_dead_letters', 'risk_watermarks']) t
              WHERE to_regclass(t) IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(t) AND a.attname = 'source_id' AND NOT a.attisdropped)) THEN
    DROP TABLE IF EXISTS risk_scores, risk_dead_letters, risk_watermarks;
  END IF;
END $$;

CREATE TABLE IF NOT EXISTS risk_scores (
  -- The source table (SourceTable.id: a 64-bit hash of its name and column mapping).
  source_id      bigint       NOT NULL,
  invoice_id     bigint       NOT NULL,
  model_version  text         NOT NULL,
  -- The created_xid of the row that was scored: the score is current while that row exists.
  invoice_xid    xid8         NOT NULL,
  score          numeric(5,4) NOT NULL CHECK (score BETWEEN 0 AND 1),
  level          text         NOT NULL CHECK (level IN ('low', 'medium', 'high')),
  -- Reason codes (AMOUNT_HIGH, NEAR_DUPLICATE, ...): `invoices risk explain <id>` says what each means.
  reasons        text[]       NOT NULL,
  -- The statement's clock, not the transaction start: commit-to-score latency reads it.
  scored_at      timestamptz  NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT risk_scores_pkey PRIMARY KEY (source_id, invoice_id, model_version)
);

-- Invoices the model could not score (an amount it cannot read, ...): they do not hold up the
-- others; `invoices risk --retry-failed` tries them again and removes those that score.
CREATE TABLE IF NOT EXISTS risk_dead_letters (
  source_id       bigint      NOT NULL,
  invoice_id      bigint      NOT NULL,
  model_version   text        NOT NULL,
  invoice_xid     xid8        NOT NULL,
  error           text        NOT NULL,
  attempts        integer     NOT NULL DEFAULT 1,
  first_failed_at timestamptz NOT NULL DEFAULT now(),
  last_failed_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT risk_dead_letters_pkey PRIMARY KEY (source_id, invoice_id, model_version)
);

-- Everything at or below (cursor_xid, cursor_invoice_id) has a score or a dead letter.
CREATE TABLE IF NOT EXISTS risk_watermarks (
  source_id            bigint      NOT NULL,
  model_version        text        NOT NULL,
  -- The source as readable text: schema.table and the column mapping.
  source               text        NOT NULL,
  -- The physical contents the scores were made from (src/table/lineage.ts): when it changes
  -- (TRUNCATE, reload, restore, a partition attached or dropped) the next run removes the
  -- scores of rows that are gone and rewinds the cursor to the first invoice left unscored.
  lineage              jsonb,
  cursor_xid           xid8        NOT NULL DEFAULT '0',
  cursor_invoice_id    bigint      NOT NULL DEFAULT -9223372036854775808,
  horizon              xid8,
  last_run_started_at  timestamptz,
  last_batch_at        timestamptz,
  last_run_scored      bigint      NOT NULL DEFAULT 0,
  last_run_failed      bigint      NOT NULL DEFAULT 0,
  total_scored         bigint      NOT NULL DEFAULT 0,
  CONSTRAINT risk_watermarks_pkey PRIMARY KEY (source_id, model_version)
);

-- A wake-up for `invoices risk --follow` (LISTEN invoices_risk). It carries nothing: the
-- follower reads the table from its cursor, so a lost notification costs latency, not an invoice.
CREATE OR REPLACE FUNCTION invoices_risk_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('invoices_risk', '');
  RETURN NULL;
END $$;
