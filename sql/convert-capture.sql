-- invoices partition --convert: the functions behind its two triggers on the table being
-- converted (created by convert-triggers.sql). {capture} logs the id of every row a write touches
-- into {log}, which the conversion replays into the new table; it runs as its owner (SECURITY
-- DEFINER), so writers of the table need no rights on the log. {guard} refuses TRUNCATE, which
-- would not reach the new table. {schema} is the table's schema, {id} its invoice id column,
-- {label} the table as messages name it (quotes doubled). Filled in by src/schema/convert/statements.ts.
CREATE FUNCTION {capture}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Every id a write touched, old and new: the converter re-copies each from invoices.
  IF TG_OP <> 'INSERT' THEN
    INSERT INTO {schema}.{log} (invoice_id) VALUES (OLD.{id});
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.{id} IS DISTINCT FROM OLD.{id}) THEN
    INSERT INTO {schema}.{log} (invoice_id) VALUES (NEW.{id});
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION {guard}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '{label} is being converted by invoices partition --convert: TRUNCATE would not reach the new table; finish the conversion or cancel it (--convert --cancel) first';
END $$;
