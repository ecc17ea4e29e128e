-- The customer's message with the invoice, sent exactly once.
--
-- `notification_outbox` holds one row per document to send, written in the same transaction as
-- the order_sync state change that makes it due (`invoice_mailing`), and relayed apart from the
-- ERP outbox (which is ordered per stock item; messages are not). The unique key is the
-- guarantee "one message per invoice": a duplicate webhook, a replay or a second worker finds
-- the row and adds none.
--
-- `attempt_started_at` is committed before the send and cleared with its result: a row that
-- still carries it was sent with an unknown outcome (a timeout, a 5xx, a worker killed mid-call).
-- Such a row is not touched before the settle time has passed; then sevDesk is asked what it
-- recorded (the invoice's `sendType`/`sendDate`) and the row is recorded as sent without
-- sending again when sevDesk shows it mailed.
CREATE TABLE notification_outbox (
    id                 bigserial   PRIMARY KEY,
    shop_domain        text        NOT NULL,
    order_id           bigint      NOT NULL,
    invoice_id         text        NOT NULL,
    channel            text        NOT NULL DEFAULT 'sevdesk_email',
    kind               text        NOT NULL CHECK (kind IN ('invoice', 'prepayment')),
    recipient          text,
    payload            jsonb       NOT NULL,
    status             text        NOT NULL DEFAULT 'pending'
                                   CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    locked_until       timestamptz,
    locked_by          text,
    attempt_started_at timestamptz,
    last_error         text,
    outcome            text,
    traceparent        text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    UNIQUE (shop_domain, order_id, invoice_id)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE status = 'pending';

-- `invoice_mailing`: the draft invoice is handed to the notification outbox; sevDesk opens it
-- when it e-mails it, and the relay moves the order to `invoice_sent` in the transaction that
-- records the e-mail. `prepayment`: the order is paid by bank transfer (a manual gateway), its
-- invoice was issued before the money came.
ALTER TABLE order_sync DROP CONSTRAINT order_sync_state_check;
ALTER TABLE order_sync ADD CONSTRAINT order_sync_state_check CHECK (state IN
    ('pending', 'contact_ok', 'invoice_creating', 'invoice_created', 'invoice_mailing',
     'invoice_sent', 'payment_booked', 'cancelled'));
ALTER TABLE order_sync ADD COLUMN prepayment boolean NOT NULL DEFAULT false;
