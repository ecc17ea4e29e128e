//! The webhook endpoint: what is accepted, what is refused, and what reaches the broker.

use hookline_core::envelope::{Envelope, Source, amqp_header, header};
use lapin::types::AMQPValue;
use serde_json::Value;

use crate::helpers::{AppOptions, SECRET, Webhook, spawn_app, spawn_app_with};

const ORDERS: &str = "hookline.orders";
const INVENTORY: &str = "hookline.inventory";
const UNROUTED: &str = "hookline.unrouted";

fn vectors() -> Value {
    serde_json::from_slice(&Webhook::fixture("hmac-vectors.json")).unwrap()
}

fn header_str(message: &lapin::message::BasicGetMessage, name: &str) -> String {
    let headers = message
        .properties
        .headers()
        .as_ref()
        .expect("message has headers");
    match headers.inner().get(name) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("header {name}: {other:?}"),
    }
}

#[tokio::test]
async fn every_valid_vector_is_accepted_and_published_byte_exact() {
    let app = spawn_app().await;
    for v in vectors()["valid"].as_array().unwrap() {
        let file = v["file"].as_str().unwrap();
        let body = Webhook::fixture(file);
        let topic = v["topic"].as_str().unwrap();
        let mut webhook = Webhook::new(topic, body.clone())
            .header(header::WEBHOOK_ID, v["webhook_id"].as_str().unwrap());
        webhook.signature = Some(v["hmac_sha256_base64"].as_str().unwrap().to_owned());
        let response = app.post(&webhook).await;
        assert_eq!(
            response.status(),
            200,
            "{file}: {}",
            response.text().await.unwrap()
        );

        let queue = if topic.starts_with("inventory") {
            INVENTORY
        } else {
            ORDERS
        };
        let messages = app.drain(queue).await;
        assert_eq!(messages.len(), 1, "{file} published once to {queue}");
        let envelope = Envelope::from_json(&messages[0].delivery.data).unwrap();
        assert_eq!(
            envelope.payload.get().as_bytes(),
            &body[..],
            "{file}: payload is the signed bytes"
        );
        assert_eq!(envelope.webhook_id, v["webhook_id"].as_str().unwrap());
    }
}

#[tokio::test]
async fn every_invalid_vector_is_rejected_with_401_and_nothing_is_published() {
    let app = spawn_app().await;
    for v in vectors()["invalid"].as_array().unwrap() {
        let mut webhook =
            Webhook::new("orders/paid", Webhook::fixture(v["file"].as_str().unwrap()));
        webhook.signature = Some(v["hmac_sha256_base64"].as_str().unwrap().to_owned());
        let response = app.post(&webhook).await;
        assert_eq!(response.status(), 401, "{}", v["why"]);
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().ends_with("signature"),
            "{body}"
        );
    }
    let missing = app
        .post(
            &Webhook::new("orders/paid", Webhook::fixture("orders-paid.json"))
                .without(header::HMAC),
        )
        .await;
    assert_eq!(missing.status(), 401);
    assert!(app.drain(ORDERS).await.is_empty());
    assert!(app.drain(UNROUTED).await.is_empty());
}

#[tokio::test]
async fn the_envelope_and_message_properties_carry_what_consumers_need() {
    let app = spawn_app().await;
    let body = Webhook::fixture("orders-paid.json");
    let webhook = Webhook::new("orders/paid", body)
        .header(header::WEBHOOK_ID, "wh-1")
        .header(header::EVENT_ID, "ev-1")
        .header(header::SHOP_DOMAIN, "Example.myshopify.com");
    let response = app.post(&webhook).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();

    let messages = app.drain(ORDERS).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    let envelope = Envelope::from_json(&m.delivery.data).unwrap();
    assert_eq!(envelope.schema_version, 1);
    assert_eq!(envelope.event_id.get_version_num(), 7, "UUIDv7");
    assert_eq!(answer["event_id"], envelope.event_id.to_string());
    assert_eq!(envelope.webhook_id, "wh-1");
    assert_eq!(envelope.shopify_event_id.as_deref(), Some("ev-1"));
    assert_eq!(envelope.topic, "orders/paid");
    assert_eq!(envelope.shop_domain, "example.myshopify.com");
    assert_eq!(envelope.api_version, "2025-10");
    assert_eq!(
        envelope.triggered_at.unwrap().to_rfc3339(),
        "2026-11-20T15:16:40.123+00:00"
    );
    assert!((chrono::Utc::now() - envelope.received_at).num_seconds() < 60);
    assert_eq!(envelope.source, Source::Webhook);
    assert_eq!(
        envelope.idempotency_key.as_str(),
        "example.myshopify.com:orders/paid:820982911946154508"
    );
    assert!(
        hookline_core::trace::TraceParent::parse(&envelope.traceparent).is_some(),
        "{}",
        envelope.traceparent
    );

    assert_eq!(m.delivery.routing_key.as_str(), "orders.paid");
    let p = &m.properties;
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        p.message_id().as_ref().map(|s| s.to_string()),
        Some(envelope.event_id.to_string())
    );
    assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some("orders/paid"));
    assert_eq!(
        header_str(m, amqp_header::IDEMPOTENCY_KEY),
        envelope.idempotency_key.as_str()
    );
    assert_eq!(header_str(m, amqp_header::WEBHOOK_ID), "wh-1");
    assert_eq!(
        header_str(m, amqp_header::TRACEPARENT),
        envelope.traceparent
    );
}

#[tokio::test]
async fn topics_route_to_their_domain_queue_and_unknown_topics_to_unrouted() {
    let app = spawn_app().await;
    let cases = [
        ("orders/create", r#"{"id":1}"#, ORDERS),
        ("refunds/create", r#"{"id":2,"order_id":1}"#, ORDERS),
        (
            "inventory_levels/update",
            r#"{"inventory_item_id":3,"location_id":4,"updated_at":"2026-11-20T10:16:40-05:00"}"#,
            INVENTORY,
        ),
        (
            "products/update",
            r#"{"id":5,"updated_at":"2026-11-20T10:16:40-05:00"}"#,
            INVENTORY,
        ),
        ("inventory_items/create", r#"{"id":6}"#, INVENTORY),
        ("carts/create", r#"{"id":"c1"}"#, UNROUTED),
    ];
    for (topic, body, queue) in cases {
        assert_eq!(
            app.post(&Webhook::new(topic, body)).await.status(),
            200,
            "{topic}"
        );
        let messages = app.drain(queue).await;
        assert_eq!(messages.len(), 1, "{topic} → {queue}");
        assert_eq!(
            Envelope::from_json(&messages[0].delivery.data)
                .unwrap()
                .topic,
            topic
        );
    }
    for queue in [ORDERS, INVENTORY, UNROUTED] {
        assert!(
            app.drain(queue).await.is_empty(),
            "{queue} holds nothing else"
        );
    }
}

#[tokio::test]
async fn a_shopify_retry_gets_a_new_event_id_and_the_same_idempotency_key() {
    let app = spawn_app().await;
    let webhook = Webhook::new("orders/paid", Webhook::fixture("orders-paid.json"))
        .header(header::WEBHOOK_ID, "same");
    assert_eq!(app.post(&webhook).await.status(), 200);
    assert_eq!(app.post(&webhook).await.status(), 200);
    let envelopes: Vec<Envelope> = app
        .drain(ORDERS)
        .await
        .iter()
        .map(|m| Envelope::from_json(&m.delivery.data).unwrap())
        .collect();
    assert_eq!(envelopes.len(), 2);
    assert_ne!(envelopes[0].event_id, envelopes[1].event_id);
    assert_eq!(envelopes[0].idempotency_key, envelopes[1].idempotency_key);
}

#[tokio::test]
async fn bad_requests_get_their_status_and_a_json_error_and_publish_nothing() {
    let app = spawn_app_with(AppOptions {
        max_body_bytes: Some(1024),
        ..Default::default()
    })
    .await;
    let ok = || Webhook::new("orders/paid", r#"{"id":1}"#);
    let mut wrong_type = ok();
    wrong_type.content_type = Some("text/plain".into());
    let mut no_type = ok();
    no_type.content_type = None;
    let cases: Vec<(&str, Webhook, u16, &str)> = vec![
        (
            "too large",
            Webhook::new(
                "orders/paid",
                format!(r#"{{"id":1,"pad":"{}"}}"#, "x".repeat(2000)),
            ),
            413,
            "payload_too_large",
        ),
        (
            "not json",
            Webhook::new("orders/paid", "id=1"),
            400,
            "invalid_json",
        ),
        (
            "not an object",
            Webhook::new("orders/paid", "[1]"),
            400,
            "invalid_json",
        ),
        (
            "no topic",
            ok().without(header::TOPIC),
            400,
            "missing_header",
        ),
        (
            "no shop",
            ok().without(header::SHOP_DOMAIN),
            400,
            "missing_header",
        ),
        (
            "no webhook id",
            ok().without(header::WEBHOOK_ID),
            400,
            "missing_header",
        ),
        (
            "no api version",
            ok().without(header::API_VERSION),
            400,
            "missing_header",
        ),
        (
            "topic with a space",
            ok().header(header::TOPIC, "orders paid"),
            400,
            "invalid_header",
        ),
        (
            "wrong content type",
            wrong_type,
            415,
            "unsupported_media_type",
        ),
        ("no content type", no_type, 415, "unsupported_media_type"),
        (
            "wrong secret",
            ok().signed_with("not-the-secret"),
            401,
            "invalid_signature",
        ),
    ];
    for (what, webhook, status, code) in cases {
        let response = app.post(&webhook).await;
        assert_eq!(response.status(), status, "{what}");
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: JSON error body: {e}"));
        assert_eq!(body["error"], code, "{what}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty(), "{what}");
    }
    for queue in [ORDERS, INVENTORY, UNROUTED] {
        assert!(app.drain(queue).await.is_empty(), "{queue} is empty");
    }
    // A chunked body over the limit (no Content-Length) is cut off while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 800]), Ok(vec![b' '; 800])];
    let response = app
        .client
        .post(format!("{}/webhooks/shopify", app.address))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Other methods, other content types, endless bodies, slow clients: see `abuse.rs`.
}

#[tokio::test]
async fn old_and_new_secrets_are_both_accepted_during_a_rotation() {
    let app = spawn_app_with(AppOptions {
        secrets: format!("{SECRET}, new_secret_after_rotation"),
        ..Default::default()
    })
    .await;
    let body = Webhook::fixture("orders-paid.json");
    assert_eq!(
        app.post(&Webhook::new("orders/paid", body.clone()))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post(
            &Webhook::new("orders/paid", body.clone()).signed_with("new_secret_after_rotation")
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.post(&Webhook::new("orders/paid", body).signed_with("retired_secret"))
            .await
            .status(),
        401
    );
    assert_eq!(app.drain(ORDERS).await.len(), 2);
}

#[tokio::test]
async fn health_readiness_and_metrics_endpoints_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(
        app.post(&Webhook::new("orders/paid", r#"{"id":1}"#))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post(&Webhook::new("orders/paid", r#"{"id":1}"#).signed_with("x"))
            .await
            .status(),
        401
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        r#"hookline_ingest_requests_total{topic="orders/paid",status="200"}"#,
        r#"hookline_ingest_requests_total{topic="unverified",status="401"}"#,
        r#"hookline_ingest_verify_failures_total{reason="mismatch"}"#,
        "hookline_ingest_confirm_seconds_bucket",
        "hookline_ingest_publish_in_flight",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}
