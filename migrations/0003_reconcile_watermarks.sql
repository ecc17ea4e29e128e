-- How far the reconciliation poller has looked at each shop's orders. Advanced only after every
-- order of a page that needed it was published (with a broker confirm).
CREATE TABLE reconcile_watermarks (
    shop_domain    text PRIMARY KEY,
    updated_at_min timestamptz NOT NULL,
    last_run_at    timestamptz NOT NULL DEFAULT now()
);
