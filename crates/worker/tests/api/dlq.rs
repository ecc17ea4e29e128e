//! An operator's round trip: a poisoned message dead-letters with its reason, is listed (and
//! stays), and once the fault is fixed is replayed — its effect happening exactly once.

use std::time::{Duration, Instant};

use hookctl::dlq::{self, Filter};
use hookline_core::Domain;
use hookline_sandbox::Faults;
use hookline_sandbox::shopify::generate_order;
use hookline_testkit::envelope;

use crate::helpers::{SHOP, World};

#[tokio::test]
async fn a_dead_letter_is_listed_then_replayed_after_the_fault_is_fixed_and_applied_once() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    // sevDesk refuses everything with a 400: permanent, so straight to the DLQ.
    sevdesk.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(400),
        ..Faults::default()
    });
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            // One at a time, so the dead letters arrive in the order the orders were published.
            ("HOOKLINE_ORDERS_CONCURRENCY", "1"),
            ("HOOKLINE_ORDERS_PREFETCH", "1"),
        ])
        .await;
    let now = chrono::Utc::now().fixed_offset();
    let first = envelope(
        "orders/paid",
        SHOP,
        &generate_order(41, true, now).to_string(),
    );
    let second = envelope(
        "orders/paid",
        SHOP,
        &generate_order(42, true, now).to_string(),
    );
    world.publish(&first).await;
    world.publish(&second).await;

    let orders = Filter {
        domain: Some(Domain::Orders),
        ..Filter::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed = dlq::list(&world.amqp, &orders).await.unwrap();
        if listed.len() == 2 || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0].event_id,
        first.event_id.to_string(),
        "in the order they failed"
    );
    assert_eq!(listed[0].reason, "downstream_rejected");
    assert_eq!(listed[0].topic, "orders/paid");
    assert_eq!(listed[0].routing_key, "orders.paid");
    assert!(
        listed[0].last_error.contains("400"),
        "{}",
        listed[0].last_error
    );
    assert_eq!(
        dlq::list(&world.amqp, &orders).await.unwrap(),
        listed,
        "listing takes nothing away and keeps the order"
    );

    // A dry run and a filter that matches nothing move nothing.
    let dry = dlq::replay(&world.amqp, &orders, None, true).await.unwrap();
    assert_eq!(dry.replayed.len(), 2);
    let other_reason = Filter {
        reason: Some("schema_mismatch".into()),
        ..orders.clone()
    };
    assert!(
        dlq::replay(&world.amqp, &other_reason, None, false)
            .await
            .unwrap()
            .replayed
            .is_empty()
    );
    assert_eq!(dlq::list(&world.amqp, &orders).await.unwrap().len(), 2);

    // Fixed: replay one by event id, then the rest by reason.
    sevdesk.set_faults(Faults::default());
    let by_id = Filter {
        event_ids: vec![first.event_id.to_string()],
        ..orders.clone()
    };
    assert_eq!(
        dlq::replay(&world.amqp, &by_id, Some(50.0), false)
            .await
            .unwrap()
            .replayed
            .len(),
        1
    );
    let by_reason = Filter {
        reason: Some("downstream_rejected".into()),
        ..orders.clone()
    };
    let report = dlq::replay(&world.amqp, &by_reason, None, false)
        .await
        .unwrap();
    assert_eq!(report.replayed.len(), 1);
    assert_eq!(report.replayed[0].event_id, second.event_id.to_string());

    assert_eq!(
        world
            .db
            .wait_count(
                "order_sync WHERE state = 'payment_booked'",
                2,
                Duration::from_secs(20)
            )
            .await,
        2
    );
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    let invoices = sevdesk.invoices();
    assert_eq!(invoices.len(), 2, "one invoice per order");
    assert!(invoices.iter().all(|i| i.bookings == 1));
    assert!(
        dlq::list(&world.amqp, &orders).await.unwrap().is_empty(),
        "the DLQ is empty"
    );
    // Replaying again finds nothing to do.
    assert!(
        dlq::replay(&world.amqp, &orders, None, false)
            .await
            .unwrap()
            .replayed
            .is_empty()
    );
}
