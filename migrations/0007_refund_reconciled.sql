-- When the reconciliation poller last republished a refund. A refund has no refund_sync row until
-- it can go ahead, so the "at most once per HOOKLINE_RECONCILE_REPUBLISH_SECS" mark lives here.
CREATE TABLE refund_reconciled (
    shop_domain   text        NOT NULL,
    refund_id     bigint      NOT NULL,
    reconciled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, refund_id)
);
