-- Shops that uninstalled the app (`app/uninstalled`). Their data stays until `shop/redact` (48 h
-- later) deletes it with this row; meanwhile the reconciliation poller and any other per-shop
-- poller skip them, since their Admin API tokens no longer work. A later webhook of the shop
-- (it installed the app again) deletes the row.
CREATE TABLE shop_uninstalls (
    shop_domain    text PRIMARY KEY,
    -- When hookline received the app/uninstalled webhook: a webhook received later than this
    -- is a sign of a reinstall; one received earlier (a late retry) is not.
    uninstalled_at timestamptz NOT NULL,
    webhook_id     text,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
