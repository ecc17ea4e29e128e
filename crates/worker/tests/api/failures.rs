//! Retryable failures wait in the broker and come back; permanent ones end in the DLQ with a
//! reason a person can read.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookline_core::envelope::amqp_header as h;
use hookline_core::{Domain, Envelope};
use hookline_testkit::{envelope, header_text, publish_raw, wait_for_messages};
use hookline_worker::domains::{BoxFuture, DomainHandler, Outcome};
use hookline_worker::error::HandlerError;

use crate::helpers::{SHOP, World};

/// Fails with a retryable 503 the first `failures` times, then succeeds; records when it ran.
struct Flaky {
    failures: u32,
    calls: AtomicU32,
    at: Mutex<Vec<Instant>>,
}

impl Flaky {
    fn new(failures: u32) -> Arc<Self> {
        Arc::new(Self {
            failures,
            calls: AtomicU32::new(0),
            at: Mutex::new(vec![]),
        })
    }
}

impl DomainHandler for Flaky {
    fn handle<'a>(
        &'a self,
        _envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(async move {
            self.at.lock().unwrap().push(Instant::now());
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
                Err(HandlerError::Downstream {
                    downstream: "sevdesk",
                    status: 503,
                    body: "maintenance".into(),
                    retry_after: None,
                })
            } else {
                Ok(Outcome::Applied {
                    steps: vec!["done"],
                })
            }
        })
    }
}

fn order() -> Envelope {
    envelope("orders/paid", SHOP, r#"{"id":820982911946154508}"#)
}

#[tokio::test]
async fn a_retryable_failure_comes_back_through_a_wait_queue_after_the_policys_delay() {
    let world = World::new().await;
    let flaky = Flaky::new(2);
    // Policy: 1 s, then 2 s (± 20 %, rounded to the 0.5/1/2/4 s wait tiers).
    let _worker = world
        .spawn_worker_with(
            &[("HOOKLINE_OUTBOX_RELAY", "false")],
            Domain::Orders,
            flaky.clone(),
        )
        .await;
    world.publish(&order()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while flaky.calls.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "not retried to success");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = flaky.at.lock().unwrap().clone();
    let first_gap = at[1] - at[0];
    let second_gap = at[2] - at[1];
    // Jittered 1 s lands in the 500 ms or 1 s tier; jittered 2 s in the 1 s, 2 s or 4 s tier.
    assert!(
        first_gap >= Duration::from_millis(450) && first_gap < Duration::from_secs(3),
        "{first_gap:?}"
    );
    assert!(
        second_gap >= Duration::from_millis(950) && second_gap < Duration::from_secs(6),
        "{second_gap:?}"
    );
    assert!(
        hookline_testkit::drain(&world.amqp, "hookline.orders.dlq")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_message_out_of_attempts_is_dead_lettered_with_readable_headers() {
    let world = World::new().await;
    let flaky = Flaky::new(u32::MAX);
    let fast = [
        ("HOOKLINE_OUTBOX_RELAY", "false"),
        ("HOOKLINE_RETRY_INITIAL_MS", "100"),
        ("HOOKLINE_RETRY_MAX_DELAY_MS", "200"),
    ];
    let _worker = world
        .spawn_worker_with(&fast, Domain::Orders, flaky.clone())
        .await;
    let e = order();
    world.publish(&e).await;
    let dead = wait_for_messages(&world.amqp, "hookline.orders.dlq", Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        flaky.calls.load(Ordering::SeqCst),
        5,
        "five attempts, then no more"
    );
    let p = &dead[0].properties;
    assert_eq!(
        header_text(p, h::REASON).as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(header_text(p, h::ATTEMPTS).as_deref(), Some("5"));
    assert!(
        header_text(p, h::ERROR)
            .unwrap()
            .contains("sevdesk answered 503: maintenance")
    );
    assert_eq!(
        header_text(p, h::ROUTING_KEY).as_deref(),
        Some("orders.paid")
    );
    assert_eq!(header_text(p, h::DOMAIN).as_deref(), Some("orders"));
    assert_eq!(
        header_text(p, h::STEPS).as_deref(),
        Some("received,claimed,handler_failed")
    );
    assert_eq!(
        header_text(p, h::TRACEPARENT).as_deref(),
        Some(e.traceparent.as_str())
    );
    assert_eq!(
        header_text(p, h::IDEMPOTENCY_KEY).as_deref(),
        Some(e.idempotency_key.as_str())
    );
    let first = header_text(p, h::FIRST_FAILURE).unwrap();
    let last = header_text(p, h::LAST_FAILURE).unwrap();
    assert!(first < last, "{first} < {last}");
    // The body is the envelope, untouched: it can be replayed as it is.
    assert_eq!(
        Envelope::from_json(&dead[0].delivery.data)
            .unwrap()
            .event_id,
        e.event_id
    );
}

#[tokio::test]
async fn a_payload_that_breaks_the_schema_is_dead_lettered_naming_the_field() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    let broken = envelope(
        "inventory_levels/update",
        SHOP,
        r#"{"inventory_item_id":1,"location_id":"main-warehouse","available":3,"updated_at":"2026-11-20T10:16:40-05:00"}"#,
    );
    world.publish(&broken).await;
    let dead = wait_for_messages(
        &world.amqp,
        "hookline.inventory.dlq",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(dead.len(), 1);
    let p = &dead[0].properties;
    assert_eq!(
        header_text(p, h::REASON).as_deref(),
        Some("schema_mismatch")
    );
    let error = header_text(p, h::ERROR).unwrap();
    assert!(
        error.contains("`location_id`") && error.contains("api_version 2025-10"),
        "{error}"
    );
    assert_eq!(
        header_text(p, h::ATTEMPTS).as_deref(),
        Some("0"),
        "permanent: not retried"
    );
    assert_eq!(world.db.count("processed_events").await, 0);
}

#[tokio::test]
async fn a_message_that_is_not_an_envelope_is_dead_lettered_not_dropped() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    let props = lapin::BasicProperties::default().with_delivery_mode(2);
    publish_raw(
        &world.amqp,
        "hookline.events",
        "inventory_levels.update",
        b"not json",
        props.clone(),
    )
    .await;
    publish_raw(
        &world.amqp,
        "hookline.events",
        "inventory_levels.update",
        br#"{"schema_version":2}"#,
        props,
    )
    .await;
    let mut reasons = vec![];
    let deadline = Instant::now() + Duration::from_secs(20);
    while reasons.len() < 2 && Instant::now() < deadline {
        for m in wait_for_messages(
            &world.amqp,
            "hookline.inventory.dlq",
            Duration::from_secs(5),
        )
        .await
        {
            reasons.push(header_text(&m.properties, h::REASON).unwrap());
        }
    }
    reasons.sort();
    assert_eq!(
        reasons,
        vec!["invalid_envelope", "unsupported_schema_version"]
    );
}

#[tokio::test]
async fn a_key_held_by_another_delivery_is_retried_later_not_skipped() {
    let world = World::new().await;
    let e = crate::helpers::level_envelope(7, 70, 9, "2026-11-20T10:16:40-05:00");
    // The worker starts first: under load its start can outlast the other claim.
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    // Another worker, alive, holds the key for 1.5 s more.
    world
        .redis
        .set("worker:someoneelse", "1", Duration::from_secs(30))
        .await;
    world
        .redis
        .set(
            &format!("idem:{}", e.idempotency_key),
            "processing:someoneelse:delivery1",
            Duration::from_millis(1500),
        )
        .await;
    let published = Instant::now();
    world.publish(&e).await;
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 1, Duration::from_secs(20))
            .await,
        1
    );
    assert!(
        published.elapsed() >= Duration::from_millis(1000),
        "applied only after the other claim ended"
    );
    assert_eq!(world.stock(7, 70).await, Some((Some(9), 1)));
}

/// Panics on every call: a bug in a handler.
struct Panicking;

impl DomainHandler for Panicking {
    fn handle<'a>(
        &'a self,
        _envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(async move { panic!("invoice mapping bug for this order") })
    }
}

#[tokio::test]
async fn a_panicking_handler_dead_letters_its_message_and_the_bulkhead_keeps_going() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker_with(
            &[
                ("HOOKLINE_OUTBOX_RELAY", "false"),
                ("HOOKLINE_ORDERS_CONCURRENCY", "1"),
            ],
            Domain::Orders,
            Arc::new(Panicking),
        )
        .await;
    world.publish(&order()).await;
    world.publish(&order()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut dead = vec![];
    while dead.len() < 2 && Instant::now() < deadline {
        dead.extend(
            wait_for_messages(&world.amqp, "hookline.orders.dlq", Duration::from_secs(5)).await,
        );
    }
    assert_eq!(
        dead.len(),
        2,
        "both handled, with a concurrency of one: no permit or prefetch slot was lost"
    );
    assert_eq!(
        header_text(&dead[0].properties, h::REASON).as_deref(),
        Some("handler_panicked")
    );
    assert!(
        header_text(&dead[0].properties, h::ERROR)
            .unwrap()
            .contains("invoice mapping bug")
    );
}
