//! An order's advisory lock ends with the delivery that took it, however that delivery ends
//! (answered, timed out, panicked), and a delivery that never gets the lock does not wait forever.

use std::time::{Duration, Instant};

use hookline_core::envelope::amqp_header as h;
use hookline_testkit::{header_text, wait_for_messages};

use crate::helpers::{SHOP, World, paid};

const ORDER_ID: i64 = 820982911946154508;
/// The orders lock's first key ("ords").
const LOCK_CLASS: i32 = 0x6f72_6473;

/// A handler timeout of one second (half the claim TTL); sevDesk calls that fit in it.
const FAST_TIMEOUTS: &[(&str, &str)] = &[
    ("HOOKLINE_WORKER_DOMAINS", "orders"),
    ("HOOKLINE_OUTBOX_RELAY", "false"),
    ("HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS", "2"),
    ("HOOKLINE_SEVDESK_TIMEOUT_MS", "100"),
    ("HOOKLINE_RETRY_INITIAL_MS", "200"),
    ("HOOKLINE_RETRY_MAX_ATTEMPTS", "20"),
];

/// Order locks held by any session of this test's database.
async fn order_locks(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks
              WHERE locktype = 'advisory' AND objsubid = 2 AND classid::bigint = $1
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&i64::from(LOCK_CLASS)],
        )
        .await
        .unwrap()
        .get(0)
}

async fn wait_state(client: &tokio_postgres::Client, state: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let row = client
            .query_opt(
                "SELECT state FROM order_sync WHERE shop_domain = $1 AND order_id = $2",
                &[&SHOP, &ORDER_ID],
            )
            .await
            .unwrap();
        if row.is_some_and(|r| r.get::<_, String>(0) == state) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_handler_that_times_out_holding_the_order_lock_leaves_no_lock_behind() {
    let world = World::new().await;
    let _worker = world.spawn_worker(FAST_TIMEOUTS).await;
    // The database stalls the order's first write (a long lock, a slow disk): the handler holds
    // the order lock and waits until its timeout drops it.
    let mut blocker = world.db.client().await;
    let stall = blocker.transaction().await.unwrap();
    stall
        .batch_execute("LOCK TABLE order_sync IN EXCLUSIVE MODE")
        .await
        .unwrap();
    world.publish(&paid()).await;
    let observer = world.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while order_locks(&observer).await == 0 {
        assert!(Instant::now() < deadline, "the handler never took the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the one-second handler timeout: that delivery is given up on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stall.commit().await.unwrap();

    assert!(
        wait_state(&observer, "payment_booked", Duration::from_secs(30)).await,
        "the retry got the order and finished it"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = order_locks(&observer).await;
    while left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = order_locks(&observer).await;
    }
    assert_eq!(
        left, 0,
        "no session (pooled connection) still holds the order's lock"
    );
    assert_eq!(world.regular_invoices().len(), 1);
}

#[tokio::test]
async fn a_delivery_that_never_gets_its_order_lock_is_dead_lettered_not_retried_forever() {
    let world = World::new().await;
    // Someone holds the order's lock and never lets go (what a leaked lock looks like).
    let holder = world.db.client().await;
    holder
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &ORDER_ID.to_string()],
        )
        .await
        .unwrap();
    let _worker = world.spawn_worker(FAST_TIMEOUTS).await;
    world.publish(&paid()).await;
    let dead = wait_for_messages(&world.amqp, "hookline.orders.dlq", Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1, "dead-lettered once it waited too long");
    assert_eq!(
        header_text(&dead[0].properties, h::REASON).as_deref(),
        Some("busy_too_long")
    );
    assert!(
        header_text(&dead[0].properties, h::ERROR)
            .unwrap()
            .contains("another delivery is working on this order"),
    );
    assert!(world.regular_invoices().is_empty(), "nothing was sent");
}
