-- invoice_monthly_totals: per source table, calendar month (UTC), customer and party (as
-- issuer, as receiver), the invoices and their exact sum. `invoices group` (engine totals)
-- reads these instead of the raw invoices (use case 2). Derived data, kept up to date
-- incrementally by `invoices group` itself (docs/design/totals.md); it can be deleted at any
-- time (with its state rows) and is then rebuilt from invoices by the next run. Idempotent.
CREATE TABLE IF NOT EXISTS invoice_monthly_totals (
  source_id    bigint  NOT NULL,  -- the invoices table and column mapping (its state row names it)
  party        text    NOT NULL CHECK (party IN ('issuer', 'receiver')),
  month        date    NOT NULL,  -- first day of the month of issue_date, UTC
  customer_id  bigint  NOT NULL,
  invoices     integer NOT NULL,  -- invoices this customer issued (or received) that month
  amount       numeric NOT NULL,  -- their sum(amount), exact
  -- Party first: grouping by issuer reads one contiguous range of the window, not the receivers too.
  CONSTRAINT invoice_monthly_totals_pkey PRIMARY KEY (source_id, party, month, customer_id)
);

-- One row per source: which table the totals were computed from, from which physical contents
-- of it (lineage: cluster, database, table and partition identities; a TRUNCATE, reload,
-- restore or conversion changes it), and up to where. Every invoice inserted by a transaction
-- whose id is below `watermark` (xid8) is counted, and no other; updates and deletes since are
-- found in the table's change log (sql/changes.sql).
CREATE TABLE IF NOT EXISTS invoice_monthly_totals_state (
  source_id     bigint      PRIMARY KEY,
  source        text        NOT NULL,  -- schema.table and the column mapping, readable
  lineage       jsonb       NOT NULL,
  watermark     xid8        NOT NULL,
  refreshed_at  timestamptz NOT NULL
);

-- Window totals: the sums of `invoice_monthly_totals` over a window of calendar months
-- [first_month, last_month], per customer and party, kept for the windows `group` was asked
-- for lately (invoice_totals_windows lists them). Every refresh adds what it adds to the months
-- to each window holding them, and takes off what it recomputes, in the same transaction: so a
-- 6-month answer reads one row per customer, already summed, in the order of its total, and
-- `--top K` reads K rows. A window is built from the monthly totals the first time it is asked
-- for, and dropped after 35 days unused (or when more than 8 are kept for a source).
CREATE TABLE IF NOT EXISTS invoice_totals_windows (
  source_id    bigint      NOT NULL,
  first_month  date        NOT NULL,
  last_month   date        NOT NULL,
  built_at     timestamptz NOT NULL,
  used_at      timestamptz NOT NULL,
  PRIMARY KEY (source_id, first_month, last_month)
);

CREATE TABLE IF NOT EXISTS invoice_window_totals (
  source_id    bigint  NOT NULL,
  party        text    NOT NULL CHECK (party IN ('issuer', 'receiver')),
  first_month  date    NOT NULL,
  last_month   date    NOT NULL,
  customer_id  bigint  NOT NULL,
  invoices     bigint  NOT NULL,  -- > 0: a customer left with none in the window loses its row
  amount       numeric NOT NULL,
  CONSTRAINT invoice_window_totals_pkey PRIMARY KEY (source_id, party, first_month, last_month, customer_id)
);
-- The answer's order (largest total first, then customer id): `--top K` is the first K entries.
CREATE INDEX IF NOT EXISTS invoice_window_totals_rank
  ON invoice_window_totals (source_id, party, first_month, last_month, amount DESC, customer_id);
