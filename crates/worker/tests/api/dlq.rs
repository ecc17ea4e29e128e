//! An operator's round trip: a poisoned message dead-letters with its reason, is listed (and
//! stays), and once the fault is fixed is replayed — its effect happening exactly once.

use std::time::{Duration, Instant};

use hookline_broker::archive;
use hookline_broker::dlq::{self, Filter};
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

/// Dead letters an operator will not replay are moved into PostgreSQL: acked only once their row
/// is committed, archived once even when archiving is interrupted, and purged by age.
#[tokio::test]
async fn dead_letters_are_archived_once_each_and_purged_by_age() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "inventory"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
        ])
        .await;
    let poisoned: Vec<_> = (0..3)
        .map(|i| {
            envelope(
                "inventory_levels/update",
                SHOP,
                &format!(
                    r#"{{"inventory_item_id":{i},"location_id":1,"available":"many","updated_at":"2026-11-20T10:00:00Z"}}"#
                ),
            )
        })
        .collect();
    for e in &poisoned {
        world.publish(e).await;
    }
    let inventory = Filter {
        domain: Some(Domain::Inventory),
        ..Filter::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while dlq::list(&world.amqp, &inventory).await.unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = world.db.client().await;

    // Interrupted: the row of the first is written, then archiving fails before its ack.
    let interrupted: Result<Vec<_>, archive::ArchiveError> = dlq::take(
        &world.amqp,
        &Filter {
            limit: Some(1),
            ..inventory.clone()
        },
        |_, _| true,
        |taken| {
            let db = &db;
            async move {
                archive::insert(db, &taken, false).await?;
                Err(archive::ArchiveError::Dlq(dlq::DlqError::NotConfirmed(
                    "simulated crash".into(),
                )))
            }
        },
    )
    .await;
    assert!(interrupted.is_err());
    assert_eq!(
        dlq::list(&world.amqp, &inventory).await.unwrap().len(),
        3,
        "nothing acked"
    );

    // Archiving two: the first is found archived already and only acked; then the second.
    let archived = archive::archive(
        &world.amqp,
        &db,
        &Filter {
            limit: Some(2),
            ..inventory.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(archived.len(), 2);
    assert_eq!(archived[0].event_id, poisoned[0].event_id.to_string());
    let left = dlq::list(&world.amqp, &inventory).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_id, poisoned[2].event_id.to_string());
    let row = db
        .query_one(
            "SELECT count(*), min(reason), min(topic), bool_and(payload IS NOT NULL AND body IS NOT NULL AND redacted_at IS NULL) FROM dead_letter_archive",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2, "archived once each");
    assert_eq!(row.get::<_, String>(1), "schema_mismatch");
    assert_eq!(row.get::<_, String>(2), "inventory_levels/update");
    assert!(row.get::<_, bool>(3), "reason, body and payload kept");

    // Purge: nothing is older than a day; everything is older than a second from now.
    let day = archive::parse_age("1d").unwrap();
    assert_eq!(
        archive::purge(&db, chrono::Utc::now() - day).await.unwrap(),
        0
    );
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(archive::purge(&db, later).await.unwrap(), 2);
}

/// With `HOOKLINE_REDRIVE_RATE` set, orders that ran out of attempts while sevDesk was down are
/// replayed by themselves once sevDesk's breaker has closed again, and booked once each.
#[tokio::test]
async fn dead_letters_of_an_outage_are_re_driven_when_the_breaker_closes_again() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    sevdesk.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(503),
        retry_after_secs: Some(0),
        ..Faults::default()
    });
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_ORDERS_CONCURRENCY", "1"),
            ("HOOKLINE_RETRY_MAX_ATTEMPTS", "1"),
            ("HOOKLINE_BREAKER_OPEN_MS", "300"),
            ("HOOKLINE_REDRIVE_RATE", "50"),
        ])
        .await;
    let now = chrono::Utc::now().fixed_offset();
    for id in 61..66 {
        let order = generate_order(id, true, now);
        world
            .publish(&envelope("orders/paid", SHOP, &order.to_string()))
            .await;
    }
    let orders = Filter {
        domain: Some(Domain::Orders),
        reason: Some("retries_exhausted".into()),
        ..Filter::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while dlq::list(&world.amqp, &orders).await.unwrap().len() < 5 {
        assert!(
            Instant::now() < deadline,
            "the outage's orders were not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // sevDesk is back; new orders probe it and the breaker closes.
    sevdesk.set_faults(Faults::default());
    for id in 66..69 {
        let order = generate_order(id, true, now);
        world
            .publish(&envelope("orders/paid", SHOP, &order.to_string()))
            .await;
    }
    assert_eq!(
        world
            .db
            .wait_count(
                "order_sync WHERE state = 'payment_booked'",
                8,
                Duration::from_secs(30)
            )
            .await,
        8,
        "the dead-lettered orders were re-driven and booked"
    );
    assert!(dlq::list(&world.amqp, &orders).await.unwrap().is_empty());
    let invoices = world.regular_invoices();
    assert_eq!(invoices.len(), 8);
    assert!(invoices.iter().all(|i| i.bookings == 1));
}
