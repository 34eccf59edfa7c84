-- invoice_ids: one row per invoice, id -> issue_date, for a partitioned `invoices`.
-- 1. Global uniqueness: PostgreSQL cannot enforce UNIQUE (invoice_id) across partitions (a
--    partitioned table's unique index must include the partition key); this table's primary
--    key can, and the trigger below makes every insert, update and delete go through it.
-- 2. Lookups by id without probing every partition: `get` reads the issue_date here (an
--    index-only scan), then the one partition that holds it (run-time partition pruning).
-- Idempotent. The names in braces are filled in by the tool (locatorSql in src/schema/apply.ts):
-- for its own table the locator is invoice_ids, the parent invoices, its columns invoice_id and
-- issue_date, the date type timestamptz; for an adopted table they follow it (see the README).
CREATE TABLE IF NOT EXISTS {locator} (
  invoice_id  bigint      NOT NULL,
  issue_date  {date_type} NOT NULL,
  CONSTRAINT {locator_pkey} PRIMARY KEY (invoice_id) INCLUDE (issue_date)
);

CREATE OR REPLACE FUNCTION {sync}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- A row moved to another partition by an UPDATE arrives as DELETE then INSERT.
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {locator} (invoice_id, issue_date) VALUES (NEW.{id}, NEW.{date});
  ELSIF TG_OP = 'DELETE' THEN
    DELETE FROM {locator} WHERE invoice_id = OLD.{id};
  ELSIF NEW.{id} IS DISTINCT FROM OLD.{id} OR NEW.{date} IS DISTINCT FROM OLD.{date} THEN
    UPDATE {locator} SET invoice_id = NEW.{id}, issue_date = NEW.{date} WHERE invoice_id = OLD.{id};
  END IF;
  RETURN NULL;
END $$;

-- A row trigger on the partitioned table is cloned onto every partition, present and future,
-- so inserts straight into a partition are covered too.
CREATE OR REPLACE TRIGGER {sync_trigger}
  AFTER INSERT OR DELETE OR UPDATE OF {id}, {date} ON {parent}
  FOR EACH ROW EXECUTE FUNCTION {sync}();
