-- The relay sends one item's rows in order, one at a time: a row is due only when no earlier row
-- of its aggregate is still pending. This index answers "is there an earlier pending row?".
CREATE INDEX outbox_events_pending_aggregate ON outbox_events (aggregate_id, id) WHERE status = 'pending';
