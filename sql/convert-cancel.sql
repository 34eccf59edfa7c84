-- invoices partition --convert --cancel: remove everything an unfinished conversion created,
-- the triggers on {parent} first, so that writers stop feeding the log; {parent} itself is not
-- touched. Idempotent: whatever an interrupted prepare or cancel left is removed too.
DROP TRIGGER IF EXISTS {capture} ON {parent};
DROP TRIGGER IF EXISTS {guard} ON {parent};
DROP TABLE IF EXISTS {newTable};
DROP TABLE IF EXISTS {locator};
DROP FUNCTION IF EXISTS {capture}();
DROP FUNCTION IF EXISTS {guard}();
DROP TABLE IF EXISTS {log};
DROP TABLE IF EXISTS {state};
