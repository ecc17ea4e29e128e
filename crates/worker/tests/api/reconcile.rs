//! Lost webhooks are recovered by the reconciliation poller, and nothing is invoiced twice.

use std::time::Duration;

use hookline_sandbox::Faults;
use hookline_sandbox::shopify::{ACCESS_TOKEN, generate_order};
use hookline_testkit::envelope;

use crate::helpers::{SHOP, World};

#[tokio::test]
async fn orders_whose_webhooks_were_lost_are_invoiced_after_one_reconciliation_cycle() {
    let world = World::new().await;
    let sandbox = &world.erp.sandbox;
    let now = chrono::Utc::now().fixed_offset();
    let n: i64 = 20;
    for i in 0..n {
        let order = generate_order(70_000 + i, true, now - chrono::Duration::minutes(30 - i));
        sandbox.state.shopify.upsert_order(SHOP, order.clone());
        // Shopify delivers three quarters of the webhooks; the rest are lost.
        if i % 4 != 0 {
            world
                .publish(&envelope("orders/paid", SHOP, &order.to_string()))
                .await;
        }
    }
    // And the Admin API is rate limited now and then.
    sandbox.state.shopify.set_faults(Faults {
        error_rate: 0.3,
        error_status: Some(429),
        retry_after_secs: Some(1),
        ..Faults::default()
    });
    let shops = format!("{SHOP}={ACCESS_TOKEN}");
    let admin = sandbox.shopify_admin_url();
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_RECONCILE_SHOPS", &shops),
            ("HOOKLINE_SHOPIFY_ADMIN_URL", &admin),
            ("HOOKLINE_RECONCILE_INTERVAL_SECS", "2"),
            ("HOOKLINE_RECONCILE_LOOKBACK_SECS", "3600"),
            ("HOOKLINE_RECONCILE_PAGE_LIMIT", "7"),
        ])
        .await;
    let booked = world
        .db
        .wait_count(
            "order_sync WHERE state = 'payment_booked'",
            n,
            Duration::from_secs(90),
        )
        .await;
    assert_eq!(
        booked, n,
        "every paid order is booked, the lost ones through reconciliation"
    );
    // Let another cycle run: everything is in sync, so nothing more is published or created.
    tokio::time::sleep(Duration::from_secs(3)).await;
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    let invoices = world.regular_invoices();
    assert_eq!(invoices.len(), n as usize);
    assert!(
        invoices.iter().all(|i| i.bookings == 1 && i.status == 1000),
        "each paid once"
    );
    assert_eq!(sandbox.state.sevdesk.calls("saveInvoice"), n as usize);
    assert!(
        sandbox.state.shopify.calls() >= 3,
        "paged through the orders (7 per page)"
    );
    let client = world.db.client().await;
    let watermark: chrono::DateTime<chrono::Utc> = client
        .query_one(
            "SELECT updated_at_min FROM reconcile_watermarks WHERE shop_domain = $1",
            &[&SHOP],
        )
        .await
        .unwrap()
        .get(0);
    let newest = (now - chrono::Duration::minutes(30 - (n - 1))).with_timezone(&chrono::Utc);
    // PostgreSQL keeps microseconds; the sandbox wrote nanoseconds.
    assert!(
        (watermark - newest).num_milliseconds().abs() < 1,
        "watermark {watermark} advanced to the newest order {newest}"
    );
}

#[tokio::test]
async fn an_order_that_keeps_failing_is_republished_once_not_every_cycle() {
    let world = World::new().await;
    let sandbox = &world.erp.sandbox;
    // Paid at Shopify, webhook lost, and its total does not add up: the republished event will be
    // dead-lettered (amount_mismatch), and the order stays behind.
    let mut broken = generate_order(80_001, true, chrono::Utc::now().fixed_offset());
    broken["total_price"] = serde_json::json!("1.00");
    sandbox.state.shopify.upsert_order(SHOP, broken);
    let shops = format!("{SHOP}={ACCESS_TOKEN}");
    let admin = sandbox.shopify_admin_url();
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_RECONCILE_SHOPS", &shops),
            ("HOOKLINE_SHOPIFY_ADMIN_URL", &admin),
            ("HOOKLINE_RECONCILE_INTERVAL_SECS", "1"),
        ])
        .await;
    let first = hookline_testkit::wait_for_messages(
        &world.amqp,
        "hookline.orders.dlq",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        hookline_testkit::header_text(&first[0].properties, "x-hookline-reason").as_deref(),
        Some("amount_mismatch")
    );
    // Several more cycles find the order behind; none republishes it within the hour.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        hookline_testkit::drain(&world.amqp, "hookline.orders.dlq")
            .await
            .is_empty(),
        "no copy per cycle"
    );
    assert!(sandbox.state.shopify.calls() >= 3, "cycles did run");
}

/// A refund Shopify lists on an order: credited once whether its webhook arrived or was lost.
fn refund(id: i64, order_id: i64) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "order_id": order_id,
        "created_at": "2026-11-22T09:30:00-05:00",
        "processed_at": "2026-11-22T09:30:00-05:00",
        "refund_line_items": [],
        "transactions": [{"kind": "refund", "status": "success", "amount": "5.00"}],
        "order_adjustments": [{"amount": "-5.00", "tax_amount": "0.00", "kind": "refund_discrepancy"}],
    })
}

#[tokio::test]
async fn a_refund_whose_webhook_was_lost_is_credited_after_a_reconciliation_cycle() {
    let world = World::new().await;
    let sandbox = &world.erp.sandbox;
    let now = chrono::Utc::now().fixed_offset();
    // Two paid orders, both delivered; each refunded by 5.00. The first refund's webhook arrives,
    // the second's is lost.
    for (i, id) in [(0, 80_001_i64), (1, 80_002)] {
        let mut order = generate_order(id, true, now - chrono::Duration::minutes(10 - i));
        world
            .publish(&envelope("orders/paid", SHOP, &order.to_string()))
            .await;
        let r = refund(90_000 + id, id);
        order["refunds"] = serde_json::json!([r.clone()]);
        sandbox.state.shopify.upsert_order(SHOP, order);
        if i == 0 {
            world
                .publish(&envelope("refunds/create", SHOP, &r.to_string()))
                .await;
        }
    }
    let shops = format!("{SHOP}={ACCESS_TOKEN}");
    let admin = sandbox.shopify_admin_url();
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_RECONCILE_SHOPS", &shops),
            ("HOOKLINE_SHOPIFY_ADMIN_URL", &admin),
            ("HOOKLINE_RECONCILE_INTERVAL_SECS", "1"),
            ("HOOKLINE_RECONCILE_LOOKBACK_SECS", "3600"),
            ("HOOKLINE_RETRY_INITIAL_MS", "200"),
        ])
        .await;
    assert_eq!(
        world
            .db
            .wait_count(
                "refund_sync WHERE state = 'refund_booked'",
                2,
                Duration::from_secs(60)
            )
            .await,
        2,
        "both refunds credited, the lost one through reconciliation"
    );
    // More cycles find nothing to do: each refund has one credit note, booked once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    let notes = sandbox.state.sevdesk.credit_notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes
            .iter()
            .all(|n| n.bookings == 1 && n.paid_amount == "5.00")
    );
    assert_eq!(sandbox.state.sevdesk.calls("saveCreditNote"), 2);
}
