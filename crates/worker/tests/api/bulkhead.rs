//! A domain whose downstream hangs must not slow the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_core::{Domain, Envelope};
use hookline_testkit::envelope;
use hookline_worker::domains::{BoxFuture, DomainHandler, Outcome};
use hookline_worker::error::HandlerError;

use crate::helpers::{ErpMode, SHOP, TestErp, World, level_envelope};

/// An orders handler whose downstream never answers: each call holds its bulkhead permit until
/// the HTTP client gives up.
struct Stalled {
    http: reqwest::Client,
    url: String,
}

impl DomainHandler for Stalled {
    fn handle<'a>(
        &'a self,
        _envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(async move {
            let response = self
                .http
                .post(&self.url)
                .json(&serde_json::json!({}))
                .send()
                .await;
            match response {
                Ok(_) => Ok(Outcome::Applied {
                    steps: vec!["sent"],
                }),
                Err(source) => Err(HandlerError::Transport {
                    downstream: "stalled",
                    source,
                }),
            }
        })
    }
}

async fn apply_inventory(world: &World, base: i64, n: i64) -> Duration {
    let started = Instant::now();
    let before = world
        .db
        .count("processed_events WHERE topic = 'inventory_levels/update'")
        .await;
    for i in 0..n {
        world
            .publish(&level_envelope(base + i, 1, i, "2026-11-20T10:16:40-05:00"))
            .await;
    }
    let done = world
        .db
        .wait_count(
            "processed_events WHERE topic = 'inventory_levels/update'",
            before + n,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(done, before + n, "every inventory event applied");
    started.elapsed()
}

#[tokio::test]
async fn a_stalled_orders_downstream_does_not_slow_inventory() {
    let world = World::new().await;
    let stalled = TestErp::start();
    stalled.set(ErpMode::Hang);
    let handler = Arc::new(Stalled {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        url: stalled.url.clone(),
    });
    let sizes = [
        ("HOOKLINE_OUTBOX_RELAY", "false"),
        ("HOOKLINE_ORDERS_CONCURRENCY", "4"),
        ("HOOKLINE_ORDERS_PREFETCH", "8"),
        ("HOOKLINE_INVENTORY_CONCURRENCY", "8"),
    ];
    let _worker = world
        .spawn_worker_with(&sizes, Domain::Orders, handler)
        .await;

    let baseline = apply_inventory(&world, 1_000, 150).await;

    // Saturate the orders bulkhead: every permit is stuck on the hanging downstream.
    for i in 0..40 {
        world
            .publish(&envelope("orders/paid", SHOP, &format!(r#"{{"id":{i}}}"#)))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stalled.arrived() < 4 {
        assert!(
            Instant::now() < deadline,
            "the orders bulkhead never reached its downstream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let during_stall = apply_inventory(&world, 2_000, 150).await;
    // Orders are still stuck: nothing of theirs finished while inventory completed.
    assert_eq!(
        world
            .db
            .count("processed_events WHERE topic = 'orders/paid'")
            .await,
        0
    );
    assert!(
        world.depth("hookline.orders").await > 0,
        "orders still waiting in their own queue"
    );
    eprintln!("inventory: 150 events in {baseline:?} alone, {during_stall:?} with orders stalled");
}
