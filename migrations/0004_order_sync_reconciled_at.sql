-- When the reconciliation poller last republished an order. It republishes one at most once per
-- HOOKLINE_RECONCILE_REPUBLISH_SECS, so an order whose republished event was dead-lettered (say,
-- amount_mismatch) does not add a copy to the dead-letter queue every cycle.
ALTER TABLE order_sync ADD COLUMN reconciled_at timestamptz;
