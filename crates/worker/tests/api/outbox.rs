//! The outbox relay: every committed stock change reaches the ERP, once per success.

use std::time::{Duration, Instant};

use hookline_sandbox::Faults;

use crate::helpers::{ErpMode, World, level_envelope};

const T: &str = "2026-11-20T10:16:40-05:00";

async fn wait_status(world: &World, status: &str, n: i64, within: Duration) -> i64 {
    world
        .db
        .wait_count(
            &format!("outbox_events WHERE status = '{status}'"),
            n,
            within,
        )
        .await
}

#[tokio::test]
async fn stock_changes_reach_the_erp_with_their_trace_and_idempotency_key() {
    let world = World::new().await;
    let _worker = world.spawn_worker(&[]).await;
    let e = level_envelope(1, 1, 5, T);
    world.publish(&e).await;
    assert_eq!(
        wait_status(&world, "sent", 1, Duration::from_secs(20)).await,
        1
    );
    let requests = world.erp.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert!(
        r.idempotency_key.starts_with("hookline-outbox-"),
        "{}",
        r.idempotency_key
    );
    assert_eq!(r.body["event_type"], "stock_level_changed");
    assert_eq!(r.body["payload"]["available"], 5);
    // Same trace id as the webhook's, new span id.
    let sent = r.traceparent.clone().unwrap();
    assert_eq!(sent[3..35], e.traceparent[3..35]);
    assert_ne!(sent, e.traceparent);
}

#[tokio::test]
async fn an_erp_outage_opens_the_breaker_rows_wait_and_all_are_sent_once_after_recovery() {
    let world = World::new().await;
    world.erp.set(ErpMode::Status(503));
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_BREAKER_OPEN_MS", "1500"),
            ("HOOKLINE_OUTBOX_POLL_MS", "100"),
            ("HOOKLINE_OUTBOX_MAX_ATTEMPTS", "50"),
        ])
        .await;
    for i in 0..10 {
        world.publish(&level_envelope(100 + i, 1, i, T)).await;
    }
    assert_eq!(
        world
            .db
            .wait_count("outbox_events", 10, Duration::from_secs(20))
            .await,
        10
    );
    // Five consecutive failures open the breaker.
    let deadline = Instant::now() + Duration::from_secs(20);
    while world.erp.requests().len() < 5 {
        assert!(Instant::now() < deadline, "the relay never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tried = world.erp.requests().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        world.erp.requests().len(),
        tried,
        "breaker open: nothing is sent while it is"
    );
    assert_eq!(
        world
            .db
            .count("outbox_events WHERE status = 'pending'")
            .await,
        10,
        "rows wait, none lost or failed"
    );

    world.erp.set(ErpMode::Status(200));
    assert_eq!(
        wait_status(&world, "sent", 10, Duration::from_secs(60)).await,
        10
    );
    let successes = world.erp.successes();
    assert_eq!(successes.len(), 10, "every row delivered");
    assert!(
        successes.values().all(|n| *n == 1),
        "each delivered exactly once: {successes:?}"
    );
}

#[tokio::test]
async fn a_row_the_erp_rejects_is_marked_failed_and_visible() {
    let world = World::new().await;
    world.erp.set(ErpMode::Status(422));
    let _worker = world.spawn_worker(&[]).await;
    world.publish(&level_envelope(200, 1, 1, T)).await;
    assert_eq!(
        wait_status(&world, "failed", 1, Duration::from_secs(20)).await,
        1
    );
    let client = world.db.client().await;
    let row = client
        .query_one("SELECT retry_count, last_error FROM outbox_events", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1, "not retried");
    assert!(row.get::<_, String>(1).contains("422"));
    assert_eq!(world.erp.requests().len(), 1);
}

#[tokio::test]
async fn several_relays_never_send_one_row_twice() {
    let world = World::new().await;
    let _a = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_POLL_MS", "20")])
        .await;
    let _b = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_POLL_MS", "20")])
        .await;
    let _c = world
        .spawn_worker(&[
            ("HOOKLINE_OUTBOX_POLL_MS", "20"),
            ("HOOKLINE_WORKER_DOMAINS", "inventory"),
        ])
        .await;
    for i in 0..60 {
        world.publish(&level_envelope(300 + i, 1, i, T)).await;
    }
    assert_eq!(
        wait_status(&world, "sent", 60, Duration::from_secs(60)).await,
        60
    );
    let requests = world.erp.requests();
    assert_eq!(requests.len(), 60, "60 rows, 60 requests");
    assert!(world.erp.successes().values().all(|n| *n == 1));
}

#[tokio::test]
async fn with_a_slow_erp_two_relays_send_each_row_once_and_each_item_in_order() {
    let world = World::new().await;
    hookline_worker::startup::migrate(&world.db.url())
        .await
        .unwrap();
    // Four items with five stock changes each, all due at once.
    let client = world.db.client().await;
    for version in 1..=5 {
        for item in 0..4 {
            client
                .execute(
                    "INSERT INTO outbox_events (aggregate_id, event_type, payload) VALUES ($1, 'stock_level_changed', $2::text::jsonb)",
                    &[&format!("item-{item}"), &format!(r#"{{"version":{version}}}"#)],
                )
                .await
                .unwrap();
        }
    }
    // Each answer takes 0.4 s: a round of the whole batch outlasts the one-second lease.
    world.erp.sandbox.state.set_erp_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let relay = [
        ("HOOKLINE_WORKER_DOMAINS", "inventory"),
        ("HOOKLINE_OUTBOX_LEASE_SECS", "1"),
        ("HOOKLINE_OUTBOX_POLL_MS", "50"),
    ];
    let _a = world.spawn_worker(&relay).await;
    let _b = world.spawn_worker(&relay).await;
    assert_eq!(
        wait_status(&world, "sent", 20, Duration::from_secs(60)).await,
        20
    );
    // Whatever is still on its way (a row sent twice) arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let successes = world.erp.successes();
    assert_eq!(successes.len(), 20);
    assert!(
        successes.values().all(|n| *n == 1),
        "no row sent again because its lease ran out: {successes:?}"
    );
    let requests = world.erp.sandbox.state.erp_requests();
    let concurrent: Vec<_> = requests
        .iter()
        .filter(|r| r.overlapping > 0)
        .map(|r| (r.body["aggregate_id"].clone(), r.body["outbox_id"].clone()))
        .collect();
    assert!(
        concurrent.is_empty(),
        "one item's rows one at a time: {concurrent:?}"
    );
    for item in 0..4 {
        let versions: Vec<i64> = requests
            .iter()
            .filter(|r| r.body["aggregate_id"] == format!("item-{item}").as_str())
            .filter_map(|r| r.body["payload"]["version"].as_i64())
            .collect();
        assert_eq!(
            versions,
            vec![1, 2, 3, 4, 5],
            "item-{item} in version order"
        );
    }
}
