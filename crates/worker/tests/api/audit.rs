//! The audit trail: every decided delivery is there with its outcome and steps, privacy requests
//! reach it, and retention drops whole day partitions.

use std::time::Duration;

use chrono::Utc;
use hookline_core::Envelope;
use hookline_testkit::envelope;
use hookline_worker::retention::{Retention, RetentionSettings};
use serde_json::{Value, json};

use crate::helpers::{SHOP, World, level};

const CUSTOMER: i64 = 115310627314723954;
const ORDER: i64 = 820982911946154508;

/// The sample `orders/paid`, with another id and customer; `poisoned` makes its total not add
/// up, so it is dead-lettered (`amount_mismatch`) without a call to sevDesk.
fn order(id: i64, customer: i64, poisoned: bool) -> Envelope {
    let mut o: Value = serde_json::from_str(include_str!(
        "../../../../fixtures/shopify/orders-paid.json"
    ))
    .unwrap();
    o["id"] = json!(id);
    o["name"] = json!(format!("#{}", id % 100_000));
    o["customer"]["id"] = json!(customer);
    if customer != CUSTOMER {
        o["email"] = json!(format!("someone{customer}@example.com"));
        o["customer"]["email"] = o["email"].clone();
    }
    if poisoned {
        o["total_price"] = json!("1.00");
    }
    envelope("orders/paid", SHOP, &o.to_string())
}

/// `(outcome, reason, steps, envelope kept)` of the newest row of `event`.
async fn row(world: &World, event: &Envelope) -> (String, Option<String>, Vec<String>, bool) {
    let n = world
        .db
        .wait_count(
            &format!("audit_events WHERE event_id = '{}'", event.event_id),
            1,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        n >= 1,
        "event {} ({}) is in the trail",
        event.event_id,
        event.topic
    );
    let r = world
        .db
        .client()
        .await
        .query_one(
            "SELECT outcome, reason, steps, envelope IS NOT NULL FROM audit_events WHERE event_id = $1
              ORDER BY recorded_at DESC LIMIT 1",
            &[&event.event_id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

#[tokio::test]
async fn every_decided_delivery_is_in_the_trail_with_its_outcome_steps_and_documents() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    let body = level(7, 70, 3, "2026-11-23T10:00:00Z");
    let applied = envelope("inventory_levels/update", SHOP, &body);
    let duplicate = envelope("inventory_levels/update", SHOP, &body);
    let paid = order(ORDER, CUSTOMER, false);
    let poisoned = order(2, CUSTOMER, true);
    world.publish(&applied).await;
    world.publish(&paid).await;
    world.publish(&poisoned).await;
    let (outcome, _, steps, kept) = row(&world, &applied).await;
    assert_eq!(outcome, "applied");
    assert!(steps.contains(&"outbox_inserted".to_owned()), "{steps:?}");
    assert!(kept, "the envelope is kept for replay");
    world.publish(&duplicate).await;
    assert_eq!(row(&world, &duplicate).await.0, "duplicate");
    let (outcome, reason, _, _) = row(&world, &poisoned).await;
    assert_eq!(
        (outcome.as_str(), reason.as_deref()),
        ("dead_lettered", Some("amount_mismatch"))
    );
    // The payment waits (a retry) until the customer's e-mail opened the invoice; then it applies.
    let applied_rows = world
        .db
        .wait_count(
            &format!(
                "audit_events WHERE event_id = '{}' AND outcome = 'applied'",
                paid.event_id
            ),
            1,
            Duration::from_secs(60),
        )
        .await;
    let (outcome, _, steps, _) = row(&world, &paid).await;
    assert_eq!(
        (applied_rows, outcome.as_str()),
        (1, "applied"),
        "{steps:?}"
    );

    let db = world.db.client().await;
    let stored: String = db
        .query_one(
            "SELECT envelope FROM audit_events WHERE event_id = $1",
            &[&applied.event_id],
        )
        .await
        .unwrap()
        .get(0);
    let stored = Envelope::from_json(stored.as_bytes()).unwrap();
    assert_eq!(stored.idempotency_key, applied.idempotency_key);
    assert_eq!(stored.payload.get(), applied.payload.get(), "byte for byte");

    let outbox: i64 = db
        .query_one(
            "SELECT count(*) FROM audit_steps s JOIN outbox_events o ON o.id::text = s.document_id
              WHERE s.event_id = $1 AND s.kind = 'outbox'",
            &[&applied.event_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outbox, 1, "the outbox row the effect wrote is named");

    let invoice = world
        .regular_invoices()
        .into_iter()
        .next()
        .expect("an invoice");
    let created = db
        .query(
            "SELECT document_id, document_number, status FROM audit_steps
              WHERE event_id = $1 AND kind = 'sevdesk_call' AND name = 'POST /Invoice/Factory/saveInvoice'",
            &[&paid.event_id],
        )
        .await
        .unwrap();
    assert_eq!(created.len(), 1, "one saveInvoice recorded");
    assert_eq!(
        created[0].get::<_, Option<String>>(0),
        Some(invoice.id.clone())
    );
    assert!(
        created[0]
            .get::<_, Option<i32>>(2)
            .is_some_and(|s| (200..300).contains(&s)),
        "with sevDesk's answer"
    );
    let states: Vec<String> = db
        .query(
            "SELECT name FROM audit_steps WHERE shop_domain = $1 AND order_id = $2 AND kind = 'order_state'
              ORDER BY recorded_at, id",
            &[&SHOP, &ORDER],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("pending"));
    assert_eq!(
        states.last().map(String::as_str),
        Some("payment_booked"),
        "{states:?}"
    );
}

#[tokio::test]
async fn privacy_requests_erase_envelopes_from_the_trail_and_keep_the_outcomes() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    let theirs = order(ORDER, CUSTOMER, true);
    let by_email_only = {
        // Another order of the customer under a different customer id: matched by e-mail.
        let mut o: Value = serde_json::from_str(theirs.payload.get()).unwrap();
        o["id"] = json!(3);
        o["customer"]["id"] = json!(999);
        envelope("orders/paid", SHOP, &o.to_string())
    };
    let someone_else = order(4, 777, true);
    for e in [&theirs, &by_email_only, &someone_else] {
        world.publish(e).await;
    }
    for e in [&theirs, &by_email_only, &someone_else] {
        assert!(row(&world, e).await.3, "kept before the request");
    }

    let redact = envelope(
        "customers/redact",
        SHOP,
        include_str!("../../../../fixtures/shopify/customers-redact.json"),
    );
    world.publish(&redact).await;
    let (outcome, _, _, kept) = row(&world, &redact).await;
    assert_eq!(outcome, "applied");
    assert!(!kept, "a privacy request's payload is never kept");
    for e in [&theirs, &by_email_only] {
        let (outcome, _, _, kept) = row(&world, e).await;
        assert_eq!(outcome, "dead_lettered", "the outcome stays");
        assert!(!kept, "the customer's envelope is erased");
    }
    assert!(
        row(&world, &someone_else).await.3,
        "another customer's stays"
    );
    let db = world.db.client().await;
    let left: i64 = db
        .query_one(
            // The request's own row keeps the customer id, as `compliance_actions` does.
            "SELECT count(*) FROM audit_events WHERE (email = 'jon@example.com' OR customer_id = $1) AND domain <> 'compliance'",
            &[&CUSTOMER],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no e-mail or customer id of theirs is left");

    let shop_redact = envelope(
        "shop/redact",
        SHOP,
        include_str!("../../../../fixtures/shopify/shop-redact.json"),
    );
    world.publish(&shop_redact).await;
    row(&world, &shop_redact).await;
    let counts = db
        .query_one(
            "SELECT count(*), count(envelope) FROM audit_events WHERE shop_domain = $1 AND event_id <> $2",
            &[&SHOP, &shop_redact.event_id],
        )
        .await
        .unwrap();
    assert_eq!(
        counts.get::<_, i64>(1),
        0,
        "no envelope of the shop is left"
    );
    assert!(counts.get::<_, i64>(0) >= 4, "the skeleton stays");
}

#[tokio::test]
async fn retention_drops_day_partitions_older_than_the_retention_and_creates_the_next_ones() {
    let world = World::new().await;
    hookline_worker::startup::migrate(&world.db.url())
        .await
        .unwrap();
    let db = world.db.client().await;
    db.batch_execute(
        "SELECT hookline_audit_partitions((now() AT TIME ZONE 'UTC')::date - 100, 2);
         INSERT INTO audit_events (recorded_at, event_id, idempotency_key, webhook_id, source, topic, shop_domain, domain, received_at, outcome)
           VALUES (now() - interval '100 days', gen_random_uuid(), 'old', 'w', 'webhook', 'orders/paid', 's', 'orders', now(), 'applied'),
                  (now(), gen_random_uuid(), 'new', 'w', 'webhook', 'orders/paid', 's', 'orders', now(), 'applied');
         INSERT INTO audit_steps (recorded_at, shop_domain, kind, name)
           VALUES (now() - interval '99 days', 's', 'order_state', 'pending');
         DROP TABLE audit_events_p{tomorrow}, audit_steps_p{tomorrow};"
            .replace(
                "{tomorrow}",
                &(Utc::now().date_naive() + chrono::Duration::days(1))
                    .format("%Y%m%d")
                    .to_string(),
            )
            .as_str(),
    )
    .await
    .unwrap();
    let pool = deadpool_postgres::Config {
        url: Some(world.db.url()),
        ..Default::default()
    }
    .create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .unwrap();
    let retention = Retention::new(
        pool,
        RetentionSettings {
            interval: Duration::from_secs(3600),
            processed_events: chrono::Duration::days(30),
            outbox_sent: chrono::Duration::days(7),
            dead_letter_archive: chrono::Duration::days(90),
            exports: chrono::Duration::days(30),
            audit: chrono::Duration::days(90),
        },
    );
    let report = retention.run_once(Utc::now()).await.unwrap();
    assert_eq!(report.audit_partitions, 4, "two old days of both tables");
    assert_eq!(world.db.count("audit_events").await, 1, "today's row stays");
    assert_eq!(world.db.count("audit_steps").await, 0);
    let tomorrow = (Utc::now() + chrono::Duration::days(1))
        .format("%Y%m%d")
        .to_string();
    assert_eq!(
        world
            .db
            .count(&format!(
                "pg_class WHERE relname IN ('audit_events_p{tomorrow}', 'audit_steps_p{tomorrow}')"
            ))
            .await,
        2,
        "tomorrow's partitions are created ahead"
    );
}
