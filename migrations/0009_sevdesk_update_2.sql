-- sevDesk on sevdesk-Update 2.0: what an order's documents were issued under, and calls whose
-- outcome is unknown.
--
-- The tax rule, recipient and delivery date are decided once, when the invoice is created, and
-- kept here so the order's credit notes are issued under the same rule, to the same recipient,
-- delivered when the invoice was (sevDesk refuses a credit note that contradicts its invoice).
--
-- `pending_call` / `pending_since`: a call that may have changed sevDesk (a create, a booking, a
-- cancellation) is recorded before it is made and cleared once its answer is known. A row that
-- still names one after a timeout, a dropped connection or a 5xx is "outcome unknown": nothing
-- is called again before `pending_since` + the settle time, then sevDesk is searched and only
-- then is the call repeated or its result adopted.
ALTER TABLE order_sync
    ADD COLUMN tax_rule text,
    ADD COLUMN delivery_country text,
    ADD COLUMN address text,
    ADD COLUMN address_country text,
    ADD COLUMN delivery_date timestamptz,
    ADD COLUMN pending_call text,
    ADD COLUMN pending_since timestamptz;

ALTER TABLE refund_sync
    ADD COLUMN pending_call text,
    ADD COLUMN pending_since timestamptz;

-- A refund whose handling failed for good: a later cancellation is flagged for review instead
-- of waiting for it.
ALTER TABLE refund_sync DROP CONSTRAINT refund_sync_state_check;
ALTER TABLE refund_sync ADD CONSTRAINT refund_sync_state_check CHECK (state IN
    ('pending', 'credit_note_creating', 'credit_note_created', 'credit_note_sent', 'refund_booked',
     'covered_by_cancellation', 'no_money_refunded', 'failed'));
