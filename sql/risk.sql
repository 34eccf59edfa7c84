-- Risk scoring (use case 4): scores, dead letters and one watermark per model version.
-- Created by `invoices risk init` (idempotent). The guarantee: a run scores the invoices
-- whose inserting transaction (created_xid) is below pg_snapshot_xmin(pg_current_snapshot())
-- -- every transaction below it has ended, so no earlier invoice can still appear -- walking
-- them in (created_xid, invoice_id) order after the stored cursor, and commits the scores and
-- the new cursor in one transaction. The primary keys make a retried batch harmless.

CREATE TABLE IF NOT EXISTS risk_scores (
  invoice_id     bigint       NOT NULL,
  model_version  text         NOT NULL,
  score          numeric(5,4) NOT NULL CHECK (score BETWEEN 0 AND 1),
  level          text         NOT NULL CHECK (level IN ('low', 'medium', 'high')),
  -- Reason codes (AMOUNT_HIGH, NEAR_DUPLICATE, ...): `invoices risk explain <id>` says what each means.
  reasons        text[]       NOT NULL,
  -- The statement's clock, not the transaction start: commit-to-score latency reads it.
  scored_at      timestamptz  NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT risk_scores_pkey PRIMARY KEY (invoice_id, model_version)
);

-- Invoices the model could not score (an amount it cannot read, ...): they do not hold up the
-- others; `invoices risk --retry-failed` tries them again and removes those that score.
CREATE TABLE IF NOT EXISTS risk_dead_letters (
  invoice_id      bigint      NOT NULL,
  model_version   text        NOT NULL,
  error           text        NOT NULL,
  attempts        integer     NOT NULL DEFAULT 1,
  first_failed_at timestamptz NOT NULL DEFAULT now(),
  last_failed_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT risk_dead_letters_pkey PRIMARY KEY (invoice_id, model_version)
);

-- Everything at or below (cursor_xid, cursor_invoice_id) has a score or a dead letter.
CREATE TABLE IF NOT EXISTS risk_watermarks (
  model_version        text        PRIMARY KEY,
  cursor_xid           xid8        NOT NULL DEFAULT '0',
  cursor_invoice_id    bigint      NOT NULL DEFAULT -9223372036854775808,
  horizon              xid8,
  last_run_started_at  timestamptz,
  last_batch_at        timestamptz,
  last_run_scored      bigint      NOT NULL DEFAULT 0,
  last_run_failed      bigint      NOT NULL DEFAULT 0,
  total_scored         bigint      NOT NULL DEFAULT 0
);

-- A wake-up for `invoices risk --follow` (LISTEN invoices_risk). It carries nothing: the
-- follower reads the table from its cursor, so a lost notification costs latency, not an invoice.
CREATE OR REPLACE FUNCTION invoices_risk_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('invoices_risk', '');
  RETURN NULL;
END $$;
