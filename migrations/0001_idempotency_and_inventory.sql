-- The durable idempotency guard: one row per idempotency key, inserted in the same transaction as
-- the effect, so a duplicate (after a Redis flush, or two workers racing) commits nothing.
CREATE TABLE processed_events (
    idempotency_key text PRIMARY KEY,
    event_id        uuid        NOT NULL,
    topic           text        NOT NULL,
    shop_domain     text        NOT NULL,
    received_at     timestamptz,          -- when the ingestor received the webhook (end-to-end lag)
    processed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- Stock per inventory item and location, as Shopify last reported it.
CREATE TABLE warehouse_stock (
    inventory_item_id bigint      NOT NULL,
    location_id       bigint      NOT NULL,
    available         bigint,                -- NULL: Shopify does not track this item's quantity
    version           bigint      NOT NULL,  -- +1 on every applied change
    source_updated_at timestamptz NOT NULL,  -- Shopify's updated_at of the applied change
    shop_domain       text        NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (inventory_item_id, location_id)
);

-- Transactional outbox towards the ERP: written with the stock change, sent by the relay.
CREATE TABLE outbox_events (
    id              bigserial   PRIMARY KEY,
    aggregate_id    text        NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    retry_count     integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    traceparent     text,
    -- clock_timestamp(), not now(): the moment the row was written, at the end of the effect's
    -- transaction, so received_at → created_at measures end to end up to the commit.
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at         timestamptz,
    -- A relay claims rows by setting a lease; the HTTP call happens after the claim committed,
    -- never inside a transaction. A crashed relay's lease simply runs out.
    locked_until    timestamptz,
    locked_by       text
);
CREATE INDEX outbox_events_status_created_at ON outbox_events (status, created_at);
CREATE INDEX outbox_events_due ON outbox_events (next_attempt_at) WHERE status = 'pending';
