//! Refunds → sevDesk credit notes: one per refund, the money booked once, and never taken off
//! twice when the same order is also cancelled.

use std::time::{Duration, Instant};

use hookline_core::Envelope;
use hookline_core::envelope::amqp_header as h;
use hookline_sandbox::Faults;
use hookline_sandbox::sevdesk::Invoice;
use hookline_testkit::{envelope, header_text, wait_for_messages};
use serde_json::{Value, json};

use crate::helpers::{ORDERS_ONLY, SHOP, World, cancelled, paid};

const ORDER_ID: i64 = 820982911946154508;
const REFUND_ID: i64 = 929361462;
const REFUND: &str = include_str!("../../../../fixtures/shopify/refunds-create.json");

/// The sample refund: one pair of socks, 29.75.
fn partial_refund() -> Envelope {
    envelope("refunds/create", SHOP, REFUND)
}

/// Everything back: both lines of the sample order, 119.00.
fn full_refund() -> Envelope {
    let mut refund: Value = serde_json::from_str(REFUND).unwrap();
    let socks = refund["refund_line_items"][0].clone();
    let mut socks_both = socks.clone();
    socks_both["quantity"] = json!(2);
    socks_both["subtotal"] = json!(50.0);
    socks_both["total_tax"] = json!(9.5);
    let mut beanie = socks;
    beanie["quantity"] = json!(1);
    beanie["subtotal"] = json!(50.0);
    beanie["total_tax"] = json!(9.5);
    beanie["line_item"]["title"] = json!("Beanie");
    beanie["line_item"]["sku"] = json!("HAT-02");
    refund["refund_line_items"] = json!([socks_both, beanie]);
    refund["transactions"][0]["amount"] = json!("119.00");
    envelope("refunds/create", SHOP, &refund.to_string())
}

async fn wait_for(world: &World, sql: &str, expected: &str, within: Duration) -> Option<String> {
    let client = world.db.client().await;
    let deadline = Instant::now() + within;
    loop {
        let current: Option<String> = client
            .query_opt(sql, &[&SHOP])
            .await
            .unwrap_or(None)
            .map(|r| r.get(0));
        if current.as_deref() == Some(expected) || Instant::now() > deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refund_state(world: &World, expected: &str, within: Duration) -> Option<String> {
    let sql =
        format!("SELECT state FROM refund_sync WHERE shop_domain = $1 AND refund_id = {REFUND_ID}");
    wait_for(world, &sql, expected, within).await
}

async fn order_state(world: &World, expected: &str, within: Duration) -> Option<String> {
    let sql =
        format!("SELECT state FROM order_sync WHERE shop_domain = $1 AND order_id = {ORDER_ID}");
    wait_for(world, &sql, expected, within).await
}

fn credit_notes(world: &World) -> Vec<Invoice> {
    world.erp.sandbox.state.sevdesk.credit_notes()
}

fn cancellations(world: &World) -> Vec<Invoice> {
    world
        .erp
        .sandbox
        .state
        .sevdesk
        .invoices()
        .into_iter()
        .filter(|i| i.invoice_type == "SR")
        .collect()
}

/// Publishes `paid` and waits until its payment is booked.
async fn booked_order(world: &World) {
    world.publish(&paid()).await;
    assert_eq!(
        order_state(world, "payment_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("payment_booked")
    );
}

#[tokio::test]
async fn a_refund_becomes_one_open_credit_note_with_the_money_booked() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    booked_order(&world).await;
    world.publish(&partial_refund()).await;
    assert_eq!(
        refund_state(&world, "refund_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("refund_booked")
    );
    let notes = credit_notes(&world);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert_eq!(note.paid_amount, "29.75");
    assert_eq!(note.bookings, 1);
    assert_eq!(note.status, 1000);
    assert!(!note.show_net, "gross positions");
    assert_eq!(
        note.customer_internal_note.as_deref(),
        Some("Erstattung 929361462 zu Shopify-Bestellung #1001 (ID 820982911946154508)")
    );
    assert_eq!(note.positions.len(), 1);
    assert_eq!(note.positions[0].price, "29.75");
    assert_eq!(note.positions[0].tax_rate, "19");
    let invoices = world.regular_invoices();
    assert_eq!(invoices.len(), 1);
    assert_eq!(
        note.contact_id, invoices[0].contact_id,
        "the order's contact"
    );
    assert_eq!(
        invoices[0].paid_amount, "119.00",
        "the invoice is left as it was"
    );
    assert!(cancellations(&world).is_empty());

    // The same refund again changes nothing.
    world.publish(&partial_refund()).await;
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("saveCreditNote"), 1);
    assert_eq!(credit_notes(&world)[0].bookings, 1);
}

#[tokio::test]
async fn a_refund_delivered_before_its_payment_waits_for_the_invoice() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&partial_refund()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(credit_notes(&world).is_empty(), "nothing to credit yet");
    world.publish(&paid()).await;
    assert_eq!(
        refund_state(&world, "refund_booked", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("refund_booked")
    );
    assert_eq!(credit_notes(&world).len(), 1);
    assert_eq!(world.regular_invoices().len(), 1);
}

#[tokio::test]
async fn a_credit_note_created_but_answered_500_is_adopted_not_created_twice() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    booked_order(&world).await;
    sevdesk.set_faults(Faults {
        commit_then_fail_rate: 1.0,
        ..Faults::default()
    });
    world.publish(&partial_refund()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while sevdesk.calls("saveCreditNote") < 1 {
        assert!(Instant::now() < deadline, "saveCreditNote never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sevdesk.set_faults(Faults::default());
    assert_eq!(
        refund_state(&world, "refund_booked", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("refund_booked")
    );
    let notes = credit_notes(&world);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].bookings, 1);
    assert_eq!(
        sevdesk.calls("saveCreditNote"),
        1,
        "adopted, not created again"
    );
}

#[tokio::test]
async fn a_cancellation_then_a_full_refund_take_the_money_off_once() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    booked_order(&world).await;
    world.publish(&cancelled()).await;
    assert_eq!(
        order_state(&world, "cancelled", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("cancelled")
    );
    world.publish(&full_refund()).await;
    assert_eq!(
        refund_state(&world, "covered_by_cancellation", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("covered_by_cancellation")
    );
    assert_eq!(cancellations(&world).len(), 1);
    assert!(
        credit_notes(&world).is_empty(),
        "{:?}",
        credit_notes(&world)
    );
}

#[tokio::test]
async fn a_full_refund_then_a_cancellation_take_the_money_off_once() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    booked_order(&world).await;
    world.publish(&full_refund()).await;
    assert_eq!(
        refund_state(&world, "refund_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("refund_booked")
    );
    world.publish(&cancelled()).await;
    assert_eq!(
        order_state(&world, "cancelled", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("cancelled")
    );
    let notes = credit_notes(&world);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].paid_amount, "119.00");
    assert!(
        cancellations(&world).is_empty(),
        "no cancellation invoice on top"
    );
}

#[tokio::test]
async fn a_cancellation_after_a_partial_refund_is_dead_lettered_for_review() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    booked_order(&world).await;
    world.publish(&partial_refund()).await;
    assert_eq!(
        refund_state(&world, "refund_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("refund_booked")
    );
    world.publish(&cancelled()).await;
    let dead = wait_for_messages(&world.amqp, "hookline.orders.dlq", Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header_text(&dead[0].properties, h::REASON).as_deref(),
        Some("needs_review")
    );
    let error = header_text(&dead[0].properties, h::ERROR).unwrap();
    assert!(error.contains("29.75") && error.contains("119"), "{error}");
    assert!(cancellations(&world).is_empty());
}
