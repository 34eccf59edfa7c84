-- {changes}: which months of {parent} had rows updated or deleted, and by which transaction.
-- The monthly totals, the lake and `group` read it to recompute exactly those months: a row
-- is written by the updating transaction itself, so it counts the moment that transaction
-- commits (and vanishes if it rolls back). Inserts are not logged: created_xid finds them.
-- One row per (transaction, month), whatever the number of rows it changed. Applied by
-- `invoices init` (this tool's table) or `invoices risk init` (an adopted one). Idempotent.
CREATE TABLE IF NOT EXISTS {changes} (
  xid    xid8 NOT NULL DEFAULT pg_current_xact_id(),
  month  date NOT NULL,  -- first day of the month (UTC) of the row before or after the change
  CONSTRAINT {changes_pkey} PRIMARY KEY (xid, month)
);

CREATE OR REPLACE FUNCTION {track}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- An update that leaves every column the tool reads as it was changes nothing derived.
  IF TG_OP = 'UPDATE' AND (NEW.{id}, NEW.{date}, NEW.{issuer}, NEW.{receiver}, NEW.{amount})
                          IS NOT DISTINCT FROM (OLD.{id}, OLD.{date}, OLD.{issuer}, OLD.{receiver}, OLD.{amount}) THEN
    RETURN NEW;
  END IF;
  INSERT INTO {changes} (month) VALUES ({old_month}) ON CONFLICT DO NOTHING;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  INSERT INTO {changes} (month) VALUES ({new_month}) ON CONFLICT DO NOTHING;
  RETURN NEW;
END $$;

-- BEFORE, not AFTER: an update that moves a row to another month's partition runs as a delete
-- and an insert, and fires no AFTER UPDATE trigger; BEFORE UPDATE fires on the old partition
-- with the new row. A row trigger on a partitioned table is cloned onto every partition,
-- including those created or attached later.
CREATE OR REPLACE TRIGGER {track_trigger} BEFORE UPDATE OR DELETE ON {parent}
  FOR EACH ROW EXECUTE FUNCTION {track}();
