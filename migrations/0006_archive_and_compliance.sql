-- Dead letters an operator moved out of RabbitMQ (`hookctl dlq archive`), or that a privacy
-- request took out of the queues (then body and payload are NULL and redacted_at is set).
CREATE TABLE dead_letter_archive (
    id           bigserial   PRIMARY KEY,
    -- sha256 of body, queue and last failure: archiving the same dead letter twice adds nothing.
    fingerprint  text        NOT NULL UNIQUE,
    queue        text        NOT NULL,
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    shop_domain  text        NOT NULL,
    reason       text        NOT NULL,
    attempts     integer     NOT NULL,
    last_error   text        NOT NULL,
    last_failure timestamptz,
    headers      jsonb,
    body         text,        -- the envelope as it was queued
    payload      jsonb,       -- its Shopify payload, for queries
    redacted_at  timestamptz,
    archived_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letter_archive_archived_at ON dead_letter_archive (archived_at);
CREATE INDEX dead_letter_archive_shop ON dead_letter_archive (shop_domain);

-- Orders whose customer asked to be erased (customers/redact).
ALTER TABLE order_sync ADD COLUMN redacted_at timestamptz;

-- What each privacy request did: which request, when, and counts; never the data itself.
CREATE TABLE compliance_actions (
    id           bigserial   PRIMARY KEY,
    topic        text        NOT NULL,
    shop_domain  text        NOT NULL,
    webhook_id   text        NOT NULL,
    request_id   text,                  -- data_request.id for customers/data_request
    customer_id  bigint,
    summary      jsonb       NOT NULL,
    performed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX compliance_actions_shop ON compliance_actions (shop_domain, performed_at);

-- The answer to a customers/data_request: what hookline holds about that customer, for the
-- merchant to hand over. Pruned after HOOKLINE_RETENTION_EXPORT_DAYS.
CREATE TABLE data_request_exports (
    shop_domain  text        NOT NULL,
    request_id   text        NOT NULL,
    customer_id  bigint,
    export       jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_domain, request_id)
);
