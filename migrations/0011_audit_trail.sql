-- The audit trail (see crates/worker/src/audit.rs and docs/audit.md): one row per delivery the
-- worker decided on, and the steps of it (sevDesk calls, outbox rows, order and refund state
-- changes). Both tables are range-partitioned by day on `recorded_at`, so retention drops whole
-- partitions instead of deleting rows. Partitions are created ahead by the worker
-- (`hookline_audit_partitions`); there is no default partition, because a row in it would keep
-- the day's real partition from ever being created.
CREATE TABLE audit_events (
    id               bigserial,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    event_id         uuid        NOT NULL,
    idempotency_key  text        NOT NULL,
    webhook_id       text        NOT NULL,
    source           text        NOT NULL,
    topic            text        NOT NULL,
    shop_domain      text        NOT NULL,
    domain           text        NOT NULL,
    resource_id      bigint,
    order_id         bigint,
    customer_id      bigint,
    email            text,
    received_at      timestamptz NOT NULL,
    outcome          text        NOT NULL CHECK (outcome IN
        ('applied', 'duplicate', 'skipped', 'retried', 'dead_lettered')),
    reason           text,
    error            text,
    attempts         integer     NOT NULL DEFAULT 0,
    steps            text[]      NOT NULL DEFAULT '{}',
    replay           text,            -- the `hookctl replay` run this copy came from
    -- The envelope as it was delivered (payload byte for byte); NULL once redacted, or for
    -- privacy requests, whose payload is the personal data itself.
    envelope         text,
    redacted_at      timestamptz,
    PRIMARY KEY (recorded_at, id)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX audit_events_shop_time ON audit_events (shop_domain, recorded_at);
CREATE INDEX audit_events_order ON audit_events (shop_domain, order_id) WHERE order_id IS NOT NULL;
CREATE INDEX audit_events_customer ON audit_events (shop_domain, customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX audit_events_email ON audit_events (shop_domain, email) WHERE email IS NOT NULL;
CREATE INDEX audit_events_event ON audit_events (event_id);

CREATE TABLE audit_steps (
    id               bigserial,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    event_id         uuid,            -- NULL for state changes (written by a trigger)
    shop_domain      text        NOT NULL,
    order_id         bigint,
    kind             text        NOT NULL,  -- sevdesk_call | outbox | order_state | refund_state
    name             text        NOT NULL,  -- e.g. POST /Invoice/Factory/saveInvoice, invoice_sent
    status           integer,               -- HTTP status of a call
    ok               boolean,
    document_id      text,
    document_number  text,
    detail           text,
    duration_ms      integer,
    PRIMARY KEY (recorded_at, id)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX audit_steps_order ON audit_steps (shop_domain, order_id, recorded_at);
CREATE INDEX audit_steps_event ON audit_steps (event_id) WHERE event_id IS NOT NULL;

-- Creates the day partitions of both tables for `days` days from `first` (existing ones are
-- left alone). Partition names end in _pYYYYMMDD: retention reads the day from the name.
CREATE FUNCTION hookline_audit_partitions(first date, days integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    t text;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := first + i;
        FOREACH t IN ARRAY ARRAY['audit_events', 'audit_steps'] LOOP
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                t || '_p' || to_char(d, 'YYYYMMDD'), t,
                d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        END LOOP;
    END LOOP;
END $$;
SELECT hookline_audit_partitions((now() AT TIME ZONE 'UTC')::date - 1, 4);

-- State changes of order_sync and refund_sync, without touching the code that makes them. An
-- audit failure (a missing partition) must never fail the state change: it is caught and only
-- logged by PostgreSQL.
CREATE FUNCTION hookline_audit_state() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row jsonb := to_jsonb(NEW);
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN
        BEGIN
            INSERT INTO audit_steps (shop_domain, order_id, kind, name, document_id, detail)
            VALUES (NEW.shop_domain, NEW.order_id,
                    CASE TG_TABLE_NAME WHEN 'order_sync' THEN 'order_state' ELSE 'refund_state' END,
                    NEW.state,
                    COALESCE(row->>'invoice_id', row->>'credit_note_id'),
                    NULLIF(concat_ws(' ',
                        'refund ' || (row->>'refund_id'),
                        CASE WHEN TG_OP = 'UPDATE' THEN '(was ' || OLD.state || ')' END), ''));
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'audit trail: state change of % not recorded: %', TG_TABLE_NAME, SQLERRM;
        END;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER order_sync_audit AFTER INSERT OR UPDATE OF state ON order_sync
    FOR EACH ROW EXECUTE FUNCTION hookline_audit_state();
CREATE TRIGGER refund_sync_audit AFTER INSERT OR UPDATE OF state ON refund_sync
    FOR EACH ROW EXECUTE FUNCTION hookline_audit_state();
