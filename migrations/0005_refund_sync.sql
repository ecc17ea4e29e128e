-- One row per Shopify refund: where its sevDesk credit note stands. Like order_sync, each step is
-- committed after its API call returned, and `credit_note_creating` is committed before the call
-- that may create a credit note, so a redelivery knows to search sevDesk before creating again.
CREATE TABLE refund_sync (
    shop_domain     text    NOT NULL,
    refund_id       bigint  NOT NULL,
    order_id        bigint  NOT NULL,
    state           text    NOT NULL DEFAULT 'pending' CHECK (state IN
        ('pending', 'credit_note_creating', 'credit_note_created', 'credit_note_sent', 'refund_booked',
         'covered_by_cancellation', 'no_money_refunded')),
    amount          numeric(18, 2),
    credit_note_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, refund_id)
);
CREATE INDEX refund_sync_order ON refund_sync (shop_domain, order_id);
