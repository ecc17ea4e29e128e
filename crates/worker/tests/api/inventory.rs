//! Inventory effects happen exactly once, whatever the delivery does.

use std::time::Duration;

use hookline_core::Envelope;
use hookline_core::envelope::header;
use hookline_testkit::{envelope, envelope_with};
use hookline_worker::idempotency::Claims;

use crate::helpers::{SHOP, World, level, level_envelope};

const T1: &str = "2026-11-20T10:16:40-05:00";
const T2: &str = "2026-11-20T10:17:00-05:00";

/// One at a time, so "the sentinel is applied" means "everything before it was handled".
const SERIAL: &[(&str, &str)] = &[
    ("HOOKLINE_INVENTORY_CONCURRENCY", "1"),
    ("HOOKLINE_INVENTORY_PREFETCH", "1"),
];

#[tokio::test]
async fn an_inventory_update_changes_stock_and_writes_one_outbox_row_in_one_go() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    world.publish(&level_envelope(1, 10, 6, T1)).await;
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 1, Duration::from_secs(20))
            .await,
        1
    );
    assert_eq!(world.stock(1, 10).await, Some((Some(6), 1)));
    let client = world.db.client().await;
    let row = client
        .query_one(
            "SELECT aggregate_id, event_type, status, payload, traceparent FROM outbox_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1:10");
    assert_eq!(row.get::<_, String>(1), "stock_level_changed");
    assert_eq!(row.get::<_, String>(2), "pending");
    let payload: serde_json::Value = row.get(3);
    assert_eq!(payload["available"], 6);
    assert_eq!(payload["version"], 1);
    assert!(
        row.get::<_, Option<String>>(4)
            .is_some_and(|t| t.starts_with("00-"))
    );
}

#[tokio::test]
async fn a_duplicate_delivery_with_another_event_id_changes_nothing() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[SERIAL, &[("HOOKLINE_OUTBOX_RELAY", "false")]].concat())
        .await;
    let body = level(2, 20, 5, T1);
    let first = envelope("inventory_levels/update", SHOP, &body);
    let retry = envelope("inventory_levels/update", SHOP, &body);
    assert_ne!(first.event_id, retry.event_id);
    assert_eq!(first.idempotency_key, retry.idempotency_key);
    world.publish(&first).await;
    world.publish(&retry).await;
    world.publish(&level_envelope(99, 99, 1, T1)).await; // sentinel
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 2, Duration::from_secs(20))
            .await,
        2
    );
    assert_eq!(
        world.stock(99, 99).await,
        Some((Some(1), 1)),
        "sentinel applied, so the duplicate was handled"
    );
    assert_eq!(
        world.stock(2, 20).await,
        Some((Some(5), 1)),
        "one stock change"
    );
    assert_eq!(
        world
            .db
            .count("outbox_events WHERE aggregate_id = '2:20'")
            .await,
        1,
        "one outbox row"
    );
}

#[tokio::test]
async fn a_duplicate_after_redis_lost_everything_still_changes_nothing() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[SERIAL, &[("HOOKLINE_OUTBOX_RELAY", "false")]].concat())
        .await;
    let body = level(3, 30, 7, T1);
    world
        .publish(&envelope("inventory_levels/update", SHOP, &body))
        .await;
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 1, Duration::from_secs(20))
            .await,
        1
    );
    world.redis.flush().await; // what FLUSHALL does to our keys
    world
        .publish(&envelope("inventory_levels/update", SHOP, &body))
        .await;
    world.publish(&level_envelope(98, 98, 1, T1)).await; // sentinel
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 2, Duration::from_secs(20))
            .await,
        2
    );
    assert_eq!(world.stock(98, 98).await, Some((Some(1), 1)));
    assert_eq!(world.stock(3, 30).await, Some((Some(7), 1)));
    assert_eq!(
        world
            .db
            .count("outbox_events WHERE aggregate_id = '3:30'")
            .await,
        1
    );
}

#[tokio::test]
async fn two_workers_racing_on_one_key_without_redis_apply_one_effect() {
    let world = World::new().await;
    // Redis unreachable: only the PostgreSQL guard stands between the two workers.
    let no_redis = [
        ("HOOKLINE_REDIS_URL", "redis://127.0.0.1:1"),
        ("HOOKLINE_OUTBOX_RELAY", "false"),
        ("HOOKLINE_INVENTORY_CONCURRENCY", "8"),
    ];
    let _a = world.spawn_worker(&no_redis).await;
    let _b = world.spawn_worker(&no_redis).await;
    let contested = level(4, 40, 3, T1);
    for i in 0..20 {
        world
            .publish(&envelope("inventory_levels/update", SHOP, &contested))
            .await;
        world.publish(&level_envelope(1000 + i, 1, i, T1)).await;
    }
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 21, Duration::from_secs(30))
            .await,
        21
    );
    // Every delivery of the contested key was handled once the queue is empty.
    world
        .wait_queue_empty("hookline.inventory", Duration::from_secs(20))
        .await;
    assert!(
        hookline_testkit::drain(&world.amqp, "hookline.inventory.dlq")
            .await
            .is_empty()
    );
    assert_eq!(
        world.stock(4, 40).await,
        Some((Some(3), 1)),
        "one effect: version 1"
    );
    assert_eq!(
        world
            .db
            .count("outbox_events WHERE aggregate_id = '4:40'")
            .await,
        1
    );
    assert_eq!(world.db.count("outbox_events").await, 21);
}

#[tokio::test]
async fn an_older_event_after_a_newer_one_changes_nothing() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[SERIAL, &[("HOOKLINE_OUTBOX_RELAY", "false")]].concat())
        .await;
    world.publish(&level_envelope(5, 50, 8, T2)).await;
    world.publish(&level_envelope(5, 50, 2, T1)).await;
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 2, Duration::from_secs(20))
            .await,
        2
    );
    assert_eq!(
        world.stock(5, 50).await,
        Some((Some(8), 1)),
        "the newer value stays"
    );
    assert_eq!(
        world.db.count("outbox_events").await,
        1,
        "no outbox row for the stale event"
    );
    // And a newer one still applies.
    world
        .publish(&level_envelope(5, 50, 4, "2026-11-20T10:18:00-05:00"))
        .await;
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 3, Duration::from_secs(20))
            .await,
        3
    );
    assert_eq!(world.stock(5, 50).await, Some((Some(4), 2)));
}

#[tokio::test]
async fn a_worker_killed_mid_batch_and_restarted_applies_every_event_exactly_once() {
    let world = World::new().await;
    let n: i64 = 400;
    for i in 0..n {
        world.publish(&level_envelope(10_000 + i, 7, i, T1)).await;
    }
    // Duplicates of the first 50, to be sure redelivery and retries meet the guard.
    for i in 0..50 {
        world.publish(&level_envelope(10_000 + i, 7, i, T1)).await;
    }
    let spawn = || {
        world.worker_process(&[
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_INVENTORY_CONCURRENCY", "8"),
        ])
    };
    hookline_worker::startup::migrate(&world.db.url())
        .await
        .unwrap();
    let mut first = spawn();
    let done_before_kill = world
        .db
        .wait_count("processed_events", 60, Duration::from_secs(60))
        .await;
    first.kill().expect("SIGKILL"); // no chance to finish, ack or close anything
    first.wait().unwrap();
    assert!(
        done_before_kill < n,
        "killed mid-batch ({done_before_kill} of {n} done)"
    );

    let mut second = spawn();
    let done = world
        .db
        .wait_count("processed_events", n, Duration::from_secs(90))
        .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(done, n);
    assert_eq!(world.db.count("warehouse_stock").await, n);
    assert_eq!(
        world.db.count("warehouse_stock WHERE version <> 1").await,
        0,
        "no change applied twice"
    );
    assert_eq!(
        world.db.count("outbox_events").await,
        n,
        "one outbox row per event"
    );
}

#[tokio::test]
async fn a_stale_processing_claim_of_a_crashed_delivery_is_taken_over_by_its_redelivery() {
    let world = World::new().await;
    let e = level_envelope(6, 60, 1, T1);
    // A crashed worker left this very event's claim behind, with a long TTL; that worker no
    // longer keeps itself alive in Redis.
    let claims = Claims::new(
        hookline_testkit::REDIS,
        &world.redis.prefix,
        Duration::from_secs(300),
        Duration::from_secs(60),
    )
    .unwrap();
    let key = claims.redis_key(e.idempotency_key.as_str());
    world
        .redis
        .set(
            key.strip_prefix(&format!("{}:", world.redis.prefix))
                .unwrap(),
            "processing:crashedworker:delivery1",
            Duration::from_secs(300),
        )
        .await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    world.publish(&e).await;
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 1, Duration::from_secs(10))
            .await,
        1,
        "not blocked for the claim's 300 s"
    );
}

/// An `inventory_levels/update` webhook with Shopify's event id and trigger time.
fn sale(item: i64, available: i64, event_id: &str, triggered_at: Option<&str>) -> Envelope {
    let mut headers = vec![(header::EVENT_ID, event_id)];
    if let Some(at) = triggered_at {
        headers.push((header::TRIGGERED_AT, at));
    }
    envelope_with(
        "inventory_levels/update",
        SHOP,
        &level(item, 70, available, T1),
        &headers,
    )
}

#[tokio::test]
async fn two_sales_in_one_second_with_their_own_event_ids_both_count_in_either_order() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[SERIAL, &[("HOOKLINE_OUTBOX_RELAY", "false")]].concat())
        .await;
    // Stock 6; one sale leaves 5, the next (same second of updated_at, 600 ms later) 4.
    let first = |item| {
        sale(
            item,
            5,
            &format!("ev-{item}-1"),
            Some("2026-11-20T15:16:40.100Z"),
        )
    };
    let second = |item| {
        sale(
            item,
            4,
            &format!("ev-{item}-2"),
            Some("2026-11-20T15:16:40.700Z"),
        )
    };
    assert_ne!(first(7).idempotency_key, second(7).idempotency_key);
    // Item 7 in order, item 8 the other way round.
    for e in [first(7), second(7), second(8), first(8)] {
        world.publish(&e).await;
    }
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 4, Duration::from_secs(20))
            .await,
        4,
        "all four handled, none taken for a duplicate"
    );
    assert_eq!(
        world.stock(7, 70).await,
        Some((Some(4), 2)),
        "both sales applied, the later one last"
    );
    assert_eq!(
        world.stock(8, 70).await,
        Some((Some(4), 1)),
        "the earlier sale arriving late changes nothing"
    );
    assert_eq!(
        world
            .db
            .count("outbox_events WHERE aggregate_id = '7:70'")
            .await,
        2
    );
    assert_eq!(
        world
            .db
            .count("outbox_events WHERE aggregate_id = '8:70'")
            .await,
        1
    );

    // Shopify's retry of an event already applied is still a duplicate.
    world.publish(&second(7)).await;
    world.publish(&level_envelope(97, 97, 1, T1)).await; // sentinel
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 5, Duration::from_secs(20))
            .await,
        5
    );
    assert_eq!(world.stock(97, 97).await, Some((Some(1), 1)));
    assert_eq!(world.stock(7, 70).await, Some((Some(4), 2)));
}

#[tokio::test]
async fn same_second_levels_without_trigger_times_settle_on_the_lower_one_in_either_order() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[SERIAL, &[("HOOKLINE_OUTBOX_RELAY", "false")]].concat())
        .await;
    for e in [
        sale(9, 7, "ev-9-a", None),
        sale(9, 3, "ev-9-b", None),
        sale(10, 3, "ev-10-b", None),
        sale(10, 7, "ev-10-a", None),
    ] {
        world.publish(&e).await;
    }
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 4, Duration::from_secs(20))
            .await,
        4
    );
    assert_eq!(world.stock(9, 70).await.map(|s| s.0), Some(Some(3)));
    assert_eq!(world.stock(10, 70).await.map(|s| s.0), Some(Some(3)));
}
