-- invoices partition --convert, once the switch is done: drop what only the conversion needed
-- (the log, the trigger functions, the state). Idempotent: a re-run after an interruption
-- finishes the job. The names are those of convert-state.sql and convert-capture.sql.
DROP TABLE IF EXISTS {log};
DROP FUNCTION IF EXISTS {capture}();
DROP FUNCTION IF EXISTS {guard}();
DROP TABLE IF EXISTS {state};
