//! One trace from the webhook to its side effects: the ingestor's request span starts it, the
//! worker's spans continue it, and the ERP request (via the outbox) and the dead letter carry it.
//!
//! Its own test binary, because it installs the process-wide subscriber: spans are exported to an
//! in-memory exporter exactly as they would be over OTLP.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use helpers::{SHOP, World};
use hookline_core::envelope::{amqp_header as h, header};
use hookline_ingestor::settings::Settings as IngestorSettings;
use hookline_ingestor::startup::Application;
use hookline_testkit::{header_text, wait_for_messages};
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

const SECRET: &str = "trace-test-secret";

fn exporter() -> InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            hookline_telemetry::install_with_provider(
                hookline_telemetry::LogFormat::Text,
                provider,
                "hookline-test",
            );
            exporter
        })
        .clone()
}

/// The ingestor on `world`'s vhost; returns its webhook URL.
fn start_ingestor(world: &World) -> String {
    let env: HashMap<&str, String> = HashMap::from([
        ("HOOKLINE_HTTP_ADDR", "127.0.0.1:0".to_string()),
        ("HOOKLINE_HTTP_WORKERS", "1".to_string()),
        ("HOOKLINE_AMQP_URL", world.vhost.amqp_url()),
        ("HOOKLINE_SHOPIFY_SECRETS", SECRET.to_string()),
    ]);
    let ingestor =
        Application::build(IngestorSettings::from_lookup(|k| env.get(k).cloned()).unwrap())
            .unwrap();
    let url = format!("http://127.0.0.1:{}/webhooks/shopify", ingestor.port());
    tokio::spawn(ingestor.run_until_stopped());
    url
}

async fn send(url: &str, topic: &str, webhook_id: &str, body: &str) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header(
            header::HMAC,
            hookline_core::signature::sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .header(header::TOPIC, topic)
        .header(header::SHOP_DOMAIN, SHOP)
        .header(header::API_VERSION, "2025-10")
        .header(header::WEBHOOK_ID, webhook_id)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(s) => s.as_str().to_owned(),
            other => other.to_string(),
        })
}

/// The ingestor's request span for the webhook `webhook_id`.
fn request_span(webhook_id: &str) -> SpanData {
    let spans = exporter().get_finished_spans().unwrap();
    spans
        .into_iter()
        .find(|s| s.name == "webhook" && attribute(s, "webhook_id").as_deref() == Some(webhook_id))
        .unwrap_or_else(|| panic!("no exported request span for webhook {webhook_id}"))
}

/// Trace id and parent span id of a W3C `traceparent`.
fn parse_traceparent(value: &str) -> (TraceId, SpanId) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (
        TraceId::from_hex(parts[1]).unwrap(),
        SpanId::from_hex(parts[2]).unwrap(),
    )
}

fn spans_of(trace: TraceId, name: &str) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace && s.name == name)
        .collect()
}

#[tokio::test]
async fn the_request_spans_trace_reaches_the_erp_through_the_outbox() {
    exporter();
    let world = World::new().await;
    let url = start_ingestor(&world);
    let _worker = world
        .spawn_worker(&[("HOOKLINE_WORKER_DOMAINS", "inventory")])
        .await;
    let webhook_id = uuid::Uuid::new_v4().to_string();
    send(
        &url,
        "inventory_levels/update",
        &webhook_id,
        include_str!("../../../fixtures/shopify/inventory-levels-update.json"),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let erp_request = loop {
        if let Some(r) = world.erp.requests().into_iter().next() {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the ERP never got the stock level"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let request = request_span(&webhook_id);
    let trace = request.span_context.trace_id();
    assert_ne!(trace, TraceId::INVALID);

    let (erp_trace, erp_parent) =
        parse_traceparent(erp_request.traceparent.as_deref().expect("a traceparent"));
    assert_eq!(
        erp_trace, trace,
        "the ERP request continues the webhook's trace"
    );

    // The worker's spans are in the same trace, and the ERP call is a child of the outbox span.
    let deadline = Instant::now() + Duration::from_secs(5);
    while spans_of(trace, "outbox_send").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handle = spans_of(trace, "handle");
    assert_eq!(handle.len(), 1, "the worker's span joins the trace");
    assert_eq!(
        handle[0].parent_span_id,
        request.span_context.span_id(),
        "the worker's span is the request span's child"
    );
    let sends = spans_of(trace, "outbox_send");
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].span_context.span_id(), erp_parent);
}

#[tokio::test]
async fn the_request_spans_trace_reaches_the_dead_letter() {
    exporter();
    let world = World::new().await;
    let url = start_ingestor(&world);
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "inventory"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
        ])
        .await;
    let webhook_id = uuid::Uuid::new_v4().to_string();
    // Signed, so accepted; but `available` is not a number, so the worker dead-letters it.
    let body = include_str!("../../../fixtures/shopify/inventory-levels-update.json")
        .replace(r#""available":6"#, r#""available":"six""#);
    send(&url, "inventory_levels/update", &webhook_id, &body).await;

    let dead = wait_for_messages(
        &world.amqp,
        "hookline.inventory.dlq",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header_text(&dead[0].properties, h::REASON).as_deref(),
        Some("schema_mismatch")
    );
    let traceparent = header_text(&dead[0].properties, h::TRACEPARENT).expect("a traceparent");
    let (dead_trace, _) = parse_traceparent(&traceparent);
    assert_eq!(
        dead_trace,
        request_span(&webhook_id).span_context.trace_id(),
        "the dead letter carries the webhook's trace"
    );
}
