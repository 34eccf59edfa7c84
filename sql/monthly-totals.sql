-- invoice_monthly_totals: per calendar month (UTC), customer and party (as issuer, as receiver),
-- the invoices and their exact sum. `invoices group` (engine totals, the default) reads these
-- instead of the raw invoices (use case 2). Derived data, kept up to date incrementally by
-- `invoices group` itself (see README, "monthly totals"); it can be truncated at any time
-- (together with its state row) and is then rebuilt from invoices by the next run. Idempotent.
CREATE TABLE IF NOT EXISTS invoice_monthly_totals (
  party        text    NOT NULL CHECK (party IN ('issuer', 'receiver')),
  month        date    NOT NULL,  -- first day of the month of issue_date, UTC
  customer_id  bigint  NOT NULL,
  invoices     integer NOT NULL,  -- invoices this customer issued (or received) that month
  amount       numeric NOT NULL,  -- their sum(amount), exact
  -- Party first: grouping by issuer reads one contiguous range of the window, not the receivers too.
  CONSTRAINT invoice_monthly_totals_pkey PRIMARY KEY (party, month, customer_id)
);

-- One row: up to where the totals are complete. Every invoice inserted by a transaction whose id
-- is below `watermark` (xid8, see README, watermark) is counted, and no other; the counters are
-- pg_stat_user_tables' per partition at that time, which tell the next refresh which months saw
-- updates or deletes (those months are recomputed whole).
CREATE TABLE IF NOT EXISTS invoice_monthly_totals_state (
  singleton        boolean     NOT NULL DEFAULT true PRIMARY KEY CHECK (singleton),
  source           text        NOT NULL,  -- the invoices table and column mapping they were computed from
  watermark        xid8        NOT NULL,
  change_counters  jsonb       NOT NULL,  -- updates + deletes per partition
  insert_counters  jsonb       NOT NULL,  -- inserts per partition
  refreshed_at     timestamptz NOT NULL
);
