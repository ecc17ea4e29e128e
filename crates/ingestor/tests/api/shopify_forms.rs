//! Shopify's webhooks as they really arrive: both header forms, in any letter case, topics in
//! every form, and event ids as the key of changes that repeat.

use hookline_core::envelope::Envelope;
use hookline_core::envelope::header::{self, HeaderForm};
use hookline_core::signature::sign;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{SECRET, TestApp, Webhook, spawn_app};

const ORDERS: &str = "hookline.orders";
const INVENTORY: &str = "hookline.inventory";
const COMPLIANCE: &str = "hookline.compliance";
const UNROUTED: &str = "hookline.unrouted";

async fn only_message(app: &TestApp, queue: &str) -> (String, Envelope) {
    let messages = app.drain(queue).await;
    assert_eq!(messages.len(), 1, "one message in {queue}");
    (
        messages[0].delivery.routing_key.to_string(),
        Envelope::from_json(&messages[0].delivery.data).unwrap(),
    )
}

async fn assert_nothing_published(app: &TestApp) {
    for queue in [ORDERS, INVENTORY, COMPLIANCE, UNROUTED] {
        assert!(app.drain(queue).await.is_empty(), "{queue} is empty");
    }
}

/// Posts `body` with exactly these header lines (names as written), over a raw connection so
/// that their letter case reaches the server as sent. Returns the status.
async fn post_raw(app: &TestApp, body: &[u8], lines: &[(&str, &str)]) -> u16 {
    let mut head = format!(
        "POST /webhooks/shopify HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in lines {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = vec![];
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[tokio::test]
async fn the_shopify_form_alone_is_accepted_in_any_letter_case() {
    let app = spawn_app().await;
    let body = Webhook::fixture("orders-paid.json");
    let signature = sign(SECRET.as_bytes(), &body);
    // An Events delivery: Shopify-* names only, no webhook id, the event id required.
    let status = post_raw(
        &app,
        &body,
        &[
            ("Content-Type", "application/json"),
            ("Shopify-Hmac-Sha256", &signature),
            ("SHOPIFY-TOPIC", "orders/paid"),
            ("shopify-shop-domain", "Example.myshopify.com"),
            ("Shopify-API-Version", "2026-01"),
            ("Shopify-Event-Id", "ev-1"),
            ("Shopify-Triggered-At", "2026-11-20T15:16:40.123Z"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let (routing_key, envelope) = only_message(&app, ORDERS).await;
    assert_eq!(routing_key, "orders.paid");
    assert_eq!(envelope.topic, "orders/paid");
    assert_eq!(envelope.shop_domain, "example.myshopify.com");
    assert_eq!(envelope.api_version, "2026-01");
    assert_eq!(envelope.shopify_event_id.as_deref(), Some("ev-1"));
    assert_eq!(envelope.webhook_id, "ev-1", "the event id stands in");
    assert!(envelope.triggered_at.is_some());
    assert_eq!(envelope.payload.get().as_bytes(), &body[..]);

    // The classic form, in odd letter case, still works the same.
    let status = post_raw(
        &app,
        &body,
        &[
            ("content-type", "application/json"),
            ("X-Shopify-HMAC-SHA256", &signature),
            ("x-SHOPIFY-topic", "orders/paid"),
            ("X-Shopify-Shop-Domain", "example.myshopify.com"),
            ("X-Shopify-Api-Version", "2025-10"),
            ("X-Shopify-Webhook-ID", "wh-2"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let (_, envelope) = only_message(&app, ORDERS).await;
    assert_eq!(envelope.webhook_id, "wh-2");
    assert_eq!(envelope.shopify_event_id, None);

    // An Events delivery without its event id has no id at all.
    let status = post_raw(
        &app,
        &body,
        &[
            ("content-type", "application/json"),
            ("Shopify-Hmac-Sha256", &signature),
            ("Shopify-Topic", "orders/paid"),
            ("Shopify-Shop-Domain", "example.myshopify.com"),
            ("Shopify-API-Version", "2026-01"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_nothing_published(&app).await;
}

#[tokio::test]
async fn both_forms_are_accepted_when_they_agree_and_refused_when_they_disagree() {
    let app = spawn_app().await;
    let both = || {
        Webhook::new("orders/paid", Webhook::fixture("orders-paid.json"))
            .form(HeaderForm::Both)
            .header(header::EVENT_ID, "ev-1")
            .header(header::events::EVENT_ID, "ev-1")
    };
    let response = app.post(&both()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let (_, envelope) = only_message(&app, ORDERS).await;
    assert_eq!(envelope.topic, "orders/paid");
    assert_eq!(envelope.shopify_event_id.as_deref(), Some("ev-1"));

    // Headers are not signed: a second value under the other name is a change on the way, and
    // neither is trusted. The body's signature is checked first, so this is a 400 only for a
    // signed body.
    for (what, webhook, status, code) in [
        (
            "topic",
            both().header(header::events::TOPIC, "shop/redact"),
            400,
            "conflicting_headers",
        ),
        (
            "shop",
            both().header(header::events::SHOP_DOMAIN, "other.myshopify.com"),
            400,
            "conflicting_headers",
        ),
        (
            "event id",
            Webhook::new("orders/paid", Webhook::fixture("orders-paid.json"))
                .form(HeaderForm::Both)
                .header(header::EVENT_ID, "ev-1")
                .header(header::events::EVENT_ID, "ev-2"),
            400,
            "conflicting_headers",
        ),
        (
            "signature",
            both().header(
                header::events::HMAC,
                &sign(b"another secret", &Webhook::fixture("orders-paid.json")),
            ),
            401,
            "invalid_signature",
        ),
    ] {
        let response = app.post(&webhook).await;
        assert_eq!(response.status(), status, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{what}: {body}");
    }
    assert_nothing_published(&app).await;
}

#[tokio::test]
async fn dotted_and_other_unknown_signed_topics_are_accepted_and_kept_in_unrouted() {
    let app = spawn_app().await;
    for topic in [
        "customer.tags_added",
        // Dotted forms of handled topics are not those topics: they must not reach a domain.
        "shop.redact",
        "orders.paid",
        "orders/edited",
        "ORDERS_PAID",
        "orders.#",
    ] {
        let response = app
            .post(&Webhook::new(
                topic,
                r#"{"id":1,"shop_domain":"example.myshopify.com"}"#,
            ))
            .await;
        assert_eq!(
            response.status(),
            200,
            "{topic}: {}",
            response.text().await.unwrap()
        );
        let (routing_key, envelope) = only_message(&app, UNROUTED).await;
        assert_eq!(envelope.topic, topic);
        assert_eq!(routing_key, format!("unrouted.{topic}"));
        for queue in [ORDERS, INVENTORY, COMPLIANCE] {
            assert!(app.drain(queue).await.is_empty(), "{topic} reached {queue}");
        }
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"hookline_ingest_requests_total{topic="unknown",status="200"}"#),
        "unknown topics share one label"
    );
}

#[tokio::test]
async fn same_second_inventory_changes_are_keyed_by_their_event_ids() {
    let app = spawn_app().await;
    let level = |available: i64| {
        format!(
            r#"{{"inventory_item_id":3,"location_id":4,"available":{available},"updated_at":"2026-11-20T10:16:40-05:00"}}"#
        )
    };
    let send = |available: i64, event_id: &'static str| {
        Webhook::new("inventory_levels/update", level(available)).header(header::EVENT_ID, event_id)
    };
    for (available, event_id) in [(5, "ev-a"), (4, "ev-b"), (4, "ev-b")] {
        assert_eq!(app.post(&send(available, event_id)).await.status(), 200);
    }
    let keys: Vec<String> = app
        .drain(INVENTORY)
        .await
        .iter()
        .map(|m| {
            Envelope::from_json(&m.delivery.data)
                .unwrap()
                .idempotency_key
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(
        keys,
        [
            "example.myshopify.com:inventory_levels/update:event:ev-a",
            "example.myshopify.com:inventory_levels/update:event:ev-b",
            "example.myshopify.com:inventory_levels/update:event:ev-b",
        ],
        "two changes in one second are two keys; Shopify's retry of one is the same key"
    );
    // Without an event id, the old rule: item, location and updated_at.
    assert_eq!(
        app.post(&Webhook::new("inventory_levels/update", level(5)))
            .await
            .status(),
        200
    );
    let (_, envelope) = only_message(&app, INVENTORY).await;
    assert_eq!(
        envelope.idempotency_key.as_str(),
        "example.myshopify.com:inventory_levels/update:3:4:2026-11-20T15:16:40Z"
    );
}
