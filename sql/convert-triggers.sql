-- invoices partition --convert, last statements of its prepare transaction (so that the lock
-- they take on the table is held only until the commit): from here on every write to {parent} is
-- logged for the new table, and TRUNCATE is refused. The functions are in convert-capture.sql;
-- the switch drops both triggers, --cancel too (convert-cancel.sql).
CREATE TRIGGER {capture} AFTER INSERT OR UPDATE OR DELETE ON {parent} FOR EACH ROW EXECUTE FUNCTION {capture}();
CREATE TRIGGER {guard} BEFORE TRUNCATE ON {parent} FOR EACH STATEMENT EXECUTE FUNCTION {guard}();
