-- Bank-transfer payments reported from sevDesk to Shopify, exactly once per order.
--
-- The payment poller finds prepayment invoices that sevDesk's bank matching marked paid and
-- marks their Shopify orders paid (`orderMarkAsPaid`). One row per order says where that stands:
--
--   partial       sevDesk has part of the money (status 750): the order stays pending in Shopify
--   marking       committed before orderMarkAsPaid: a row still in it after a crash or timeout has
--                 an unknown outcome, settled by reading the order's displayFinancialStatus
--                 before the mutation is sent again
--   reported      Shopify shows the order paid (by our mutation, or it already was)
--   needs_review  the money does not match the order (over-paid, paid "in full" with less, not
--                 readable) or Shopify refused for another reason: for a person, with both amounts
CREATE TABLE payment_sync (
    shop_domain   text          NOT NULL,
    order_id      bigint        NOT NULL,
    invoice_id    text          NOT NULL,
    state         text          NOT NULL CHECK (state IN ('partial', 'marking', 'reported', 'needs_review')),
    paid_amount   numeric(18, 2),
    total_price   numeric(18, 2),
    -- sevDesk's `update` of the invoice when its payment was seen: the start of the payment lag.
    paid_seen_at  timestamptz,
    attempts      integer       NOT NULL DEFAULT 0,
    outcome       text,
    reason        text,
    created_at    timestamptz   NOT NULL DEFAULT now(),
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, order_id)
);
CREATE INDEX payment_sync_state ON payment_sync (shop_domain, state);

-- The poller finds an invoice's order by the invoice id.
CREATE INDEX order_sync_invoice ON order_sync (shop_domain, invoice_id);

-- How far the payment poller has looked at each shop's sevDesk invoices (sevDesk's `update`),
-- advanced only over invoices that were handled.
CREATE TABLE payment_watermarks (
    shop_domain  text        PRIMARY KEY,
    update_after timestamptz NOT NULL,
    last_run_at  timestamptz NOT NULL DEFAULT now()
);
