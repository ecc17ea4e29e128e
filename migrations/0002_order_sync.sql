-- One row per Shopify order: where its sevDesk synchronisation stands. Each step is committed
-- after its API call returned, never inside a transaction around the call, so after a crash the
-- row says exactly which call may have happened without being recorded.
CREATE TABLE order_sync (
    shop_domain       text    NOT NULL,
    order_id          bigint  NOT NULL,
    order_name        text,
    state             text    NOT NULL DEFAULT 'pending' CHECK (state IN
        ('pending', 'contact_ok', 'invoice_creating', 'invoice_created', 'invoice_sent', 'payment_booked', 'cancelled')),
    financial_status  text,
    total_price       numeric(18, 2),
    currency          text,
    paid              boolean NOT NULL DEFAULT false,  -- an orders/paid was received
    cancel_requested  boolean NOT NULL DEFAULT false,  -- an orders/cancelled was received
    contact_id        text,
    invoice_id        text,
    cancellation_id   text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, order_id)
);
CREATE INDEX order_sync_state ON order_sync (state, updated_at);
