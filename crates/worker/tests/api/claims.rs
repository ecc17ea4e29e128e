//! Idempotency claims tell deliveries apart: two copies of one event (a republish whose ack was
//! lost, a replay) never run at once, and a delivery only ever ends its own claim.

use std::time::Duration;

use hookline_testkit::{REDIS, TestRedis};
use hookline_worker::idempotency::{Claim, Claims};

use crate::helpers::level_envelope;

const T: &str = "2026-11-20T10:16:40-05:00";

/// One worker process's claims (each process has its own).
fn process(redis: &TestRedis, claim_ttl: Duration) -> Claims {
    Claims::new(REDIS, &redis.prefix, claim_ttl, Duration::from_secs(60)).unwrap()
}

#[tokio::test]
async fn a_copy_of_an_event_being_handled_waits_instead_of_running_alongside() {
    let redis = TestRedis::new();
    let (a, b) = (
        process(&redis, Duration::from_secs(30)),
        process(&redis, Duration::from_secs(30)),
    );
    let event = level_envelope(1, 1, 1, T);
    let copy = event.clone();
    assert!(matches!(a.claim(&event).await, Claim::Claimed(_)));
    assert!(
        matches!(b.claim(&copy).await, Claim::Busy { .. }),
        "the copy waits while the first delivery runs"
    );
}

#[tokio::test]
async fn a_delivery_whose_claim_ran_out_cannot_release_the_claim_of_the_next() {
    let redis = TestRedis::new();
    let ttl = Duration::from_secs(1);
    let (a, b, c) = (
        process(&redis, ttl),
        process(&redis, ttl),
        process(&redis, ttl),
    );
    let event = level_envelope(2, 1, 1, T);
    // A is slow: its claim runs out, and B (a copy) claims the key.
    let Claim::Claimed(first) = a.claim(&event).await else {
        panic!("A claims the key");
    };
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(b.claim(&event).await, Claim::Claimed(_)));
    // A fails at last and releases: only its own claim, which is gone.
    a.release(&event, &first).await;
    assert!(
        matches!(c.claim(&event).await, Claim::Busy { .. }),
        "B still holds the key"
    );
}

#[tokio::test]
async fn a_delivery_that_finishes_after_its_claim_ran_out_leaves_the_next_claim_alone() {
    let redis = TestRedis::new();
    let ttl = Duration::from_secs(1);
    let (a, b, c) = (
        process(&redis, ttl),
        process(&redis, ttl),
        process(&redis, ttl),
    );
    let event = level_envelope(3, 1, 1, T);
    let Claim::Claimed(first) = a.claim(&event).await else {
        panic!("A claims the key");
    };
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(b.claim(&event).await, Claim::Claimed(_)));
    // A's effect committed after all; B is running and finds it recorded in PostgreSQL.
    a.mark_done(&event, Some(&first)).await;
    assert!(
        matches!(c.claim(&event).await, Claim::Busy { .. }),
        "B's claim is B's to end"
    );
}

#[tokio::test]
async fn the_claim_of_a_worker_that_is_gone_is_taken_over_at_once_and_done_is_final() {
    let redis = TestRedis::new();
    let event = level_envelope(4, 1, 1, T);
    // A crashed worker's claim, with a long TTL; that worker no longer keeps itself alive.
    redis
        .set(
            &format!("idem:{}", event.idempotency_key),
            "processing:crashedworker:delivery1",
            Duration::from_secs(300),
        )
        .await;
    let (b, c) = (
        process(&redis, Duration::from_secs(30)),
        process(&redis, Duration::from_secs(30)),
    );
    let Claim::Claimed(held) = b.claim(&event).await else {
        panic!("taken over without waiting for the TTL");
    };
    b.mark_done(&event, Some(&held)).await;
    assert_eq!(c.claim(&event).await, Claim::Done);
    b.release(&event, &held).await;
    assert_eq!(
        c.claim(&event).await,
        Claim::Done,
        "a release after done changes nothing"
    );
}
