-- invoice_ids: one row per invoice, id -> issue_date, for a partitioned `invoices`.
-- 1. Global uniqueness: PostgreSQL cannot enforce UNIQUE (invoice_id) across partitions (a
--    partitioned table's unique index must include the partition key); this table's primary
--    key can, and the trigger below makes every insert, update and delete go through it.
-- 2. Lookups by id without probing every partition: `get` reads the issue_date here (an
--    index-only scan), then the one partition that holds it (run-time partition pruning).
-- Idempotent.
CREATE TABLE IF NOT EXISTS invoice_ids (
  invoice_id  bigint      NOT NULL,
  issue_date  timestamptz NOT NULL,
  CONSTRAINT invoice_ids_pkey PRIMARY KEY (invoice_id) INCLUDE (issue_date)
);

CREATE OR REPLACE FUNCTION invoice_ids_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- A row moved to another partition by an UPDATE arrives as DELETE then INSERT.
  IF TG_OP = 'INSERT' THEN
    INSERT INTO invoice_ids (invoice_id, issue_date) VALUES (NEW.invoice_id, NEW.issue_date);
  ELSIF TG_OP = 'DELETE' THEN
    DELETE FROM invoice_ids WHERE invoice_id = OLD.invoice_id;
  ELSIF NEW.invoice_id IS DISTINCT FROM OLD.invoice_id OR NEW.issue_date IS DISTINCT FROM OLD.issue_date THEN
    UPDATE invoice_ids SET invoice_id = NEW.invoice_id, issue_date = NEW.issue_date WHERE invoice_id = OLD.invoice_id;
  END IF;
  RETURN NULL;
END $$;

-- A row trigger on the partitioned table is cloned onto every partition, present and future,
-- so inserts straight into a partition are covered too.
CREATE OR REPLACE TRIGGER invoice_ids_sync
  AFTER INSERT OR DELETE OR UPDATE OF invoice_id, issue_date ON invoices
  FOR EACH ROW EXECUTE FUNCTION invoice_ids_sync();
