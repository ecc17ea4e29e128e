//! Orders → sevDesk: exactly one invoice per paid order, across duplicates, reordering,
//! "commit then fail" answers and a worker killed mid-call.

use std::time::{Duration, Instant};

use hookline_core::Envelope;
use hookline_core::envelope::amqp_header as h;
use hookline_sandbox::Faults;
use hookline_sandbox::sevdesk::Invoice;
use hookline_testkit::{envelope, header_text, wait_for_messages};

use crate::helpers::{ORDERS_ONLY, SHOP, World, cancelled, paid};

const ORDER_ID: i64 = 820982911946154508;

fn created() -> Envelope {
    envelope(
        "orders/create",
        SHOP,
        include_str!("../../../../fixtures/shopify/orders-create.json"),
    )
}

async fn wait_state(world: &World, state: &str, within: Duration) -> Option<String> {
    world.wait_order_state(ORDER_ID, state, within).await
}

fn invoices(world: &World) -> Vec<Invoice> {
    world.erp.sandbox.state.sevdesk.invoices()
}

fn regular(invoices: &[Invoice]) -> Vec<&Invoice> {
    invoices.iter().filter(|i| i.invoice_type == "RE").collect()
}

#[tokio::test]
async fn a_paid_order_becomes_one_open_invoice_with_the_payment_booked() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&created()).await;
    world.publish(&paid()).await;
    assert_eq!(
        wait_state(&world, "payment_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    let all = invoices(&world);
    assert_eq!(all.len(), 1);
    let invoice = &all[0];
    assert_eq!(invoice.status, 1000, "paid");
    assert_eq!(invoice.paid_amount, "119.00");
    assert_eq!(invoice.bookings, 1);
    assert_eq!(invoice.currency, "EUR");
    assert!(invoice.show_net);
    assert_eq!(
        invoice.customer_internal_note.as_deref(),
        Some("Shopify-Bestellung #1001 (ID 820982911946154508)")
    );
    assert!(invoice.header.as_deref().unwrap().contains("#1001"));
    assert_eq!(invoice.positions.len(), 2);
    assert_eq!(invoice.positions[0].quantity, "2");
    assert_eq!(invoice.positions[0].price, "25");
    assert_eq!(invoice.positions[0].tax_rate, "19");
    let contacts = world.erp.sandbox.state.sevdesk.contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].customer_number.as_deref(),
        Some("SHOPIFY-115310627314723954")
    );
    assert_eq!(contacts[0].name, "Jön Müller");
}

#[tokio::test]
async fn a_paid_order_delivered_three_times_is_invoiced_and_booked_once() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    for _ in 0..3 {
        world.publish(&paid()).await;
    }
    assert_eq!(
        wait_state(&world, "payment_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // any retry of a busy order comes back
    let all = invoices(&world);
    assert_eq!(regular(&all).len(), 1, "{all:?}");
    assert_eq!(all[0].bookings, 1);
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("saveInvoice"), 1);
    assert_eq!(world.erp.sandbox.state.sevdesk.contacts().len(), 1);
}

#[tokio::test]
async fn a_cancellation_before_payment_means_no_invoice_ever() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(
            &[
                ORDERS_ONLY,
                &[
                    ("HOOKLINE_ORDERS_CONCURRENCY", "1"),
                    ("HOOKLINE_ORDERS_PREFETCH", "1"),
                ],
            ]
            .concat(),
        )
        .await;
    world.publish(&cancelled()).await;
    world.publish(&paid()).await;
    assert_eq!(
        wait_state(&world, "cancelled", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 2, Duration::from_secs(20))
            .await,
        2,
        "the late orders/paid was handled"
    );
    assert!(invoices(&world).is_empty());
}

#[tokio::test]
async fn a_cancellation_after_payment_cancels_the_invoice_once() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    assert_eq!(
        wait_state(&world, "payment_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    world.publish(&cancelled()).await;
    world.publish(&cancelled()).await;
    assert_eq!(
        wait_state(&world, "cancelled", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("cancelled")
    );
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    let all = invoices(&world);
    let cancellations: Vec<&Invoice> = all.iter().filter(|i| i.invoice_type == "SR").collect();
    assert_eq!(regular(&all).len(), 1);
    assert_eq!(cancellations.len(), 1, "{all:?}");
    assert_eq!(cancellations[0].cancels, Some(all[0].id.clone()));
}

#[tokio::test]
async fn an_invoice_created_but_answered_500_is_adopted_not_created_twice() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    sevdesk.set_faults(Faults {
        commit_then_fail_rate: 1.0,
        ..Faults::default()
    });
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    // The contact is created and answered 500 too; the retries adopt it by customer number.
    world
        .wait_sevdesk_calls("saveInvoice", 1, Duration::from_secs(30))
        .await;
    sevdesk.set_faults(Faults::default());
    assert_eq!(
        wait_state(&world, "payment_booked", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    let all = invoices(&world);
    assert_eq!(regular(&all).len(), 1, "{all:?}");
    assert_eq!(all[0].bookings, 1);
    assert_eq!(
        sevdesk.calls("saveInvoice"),
        1,
        "the retry searched and adopted instead of creating"
    );
    assert_eq!(sevdesk.contacts().len(), 1);
}

#[tokio::test]
async fn a_worker_killed_between_invoice_created_and_state_committed_leaves_exactly_one_invoice() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    hookline_worker::startup::migrate(&world.db.url())
        .await
        .unwrap();
    let spawn = || world.worker_process(ORDERS_ONLY);
    // saveInvoice creates the invoice, then never answers: the worker is waiting for the answer
    // when it dies, with `invoice_creating` committed and no invoice id recorded.
    sevdesk.set_faults(Faults {
        commit_then_hang_rate: 1.0,
        ..Faults::default()
    });
    let mut first = spawn();
    world.publish(&paid()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while regular(&invoices(&world)).is_empty() {
        assert!(Instant::now() < deadline, "the invoice was never created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        wait_state(&world, "invoice_creating", Duration::from_secs(5))
            .await
            .as_deref(),
        Some("invoice_creating")
    );
    first.kill().unwrap();
    first.wait().unwrap();

    sevdesk.set_faults(Faults::default());
    let mut second = spawn();
    let state = wait_state(&world, "payment_booked", Duration::from_secs(60)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(state.as_deref(), Some("payment_booked"));
    let all = invoices(&world);
    assert_eq!(regular(&all).len(), 1, "exactly one invoice: {all:?}");
    assert_eq!(all[0].bookings, 1, "booked once");
    assert_eq!(all[0].status, 1000);
}

#[tokio::test]
async fn an_order_whose_total_does_not_add_up_is_dead_lettered_before_sevdesk_sees_it() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    let body = include_str!("../../../../fixtures/shopify/orders-paid.json")
        .replace(r#""total_price":"119.00""#, r#""total_price":"118.00""#);
    world.publish(&envelope("orders/paid", SHOP, &body)).await;
    let dead = wait_for_messages(&world.amqp, "hookline.orders.dlq", Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header_text(&dead[0].properties, h::REASON).as_deref(),
        Some("amount_mismatch")
    );
    assert!(
        header_text(&dead[0].properties, h::ERROR)
            .unwrap()
            .contains("119.00")
    );
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("saveInvoice"), 0);
}

#[tokio::test]
async fn updates_interleaved_with_a_duplicated_payment_end_in_one_booked_invoice() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[ORDERS_ONLY, &[("HOOKLINE_ORDERS_CONCURRENCY", "4")]].concat())
        .await;
    let body = include_str!("../../../../fixtures/shopify/orders-paid.json");
    let updated = |minute: u32| {
        let b = body.replace(
            "2026-11-20T10:16:40-05:00",
            &format!("2026-11-20T10:{minute:02}:00-05:00"),
        );
        envelope("orders/updated", SHOP, &b)
    };
    // Shopify's order of events, shuffled by retries: update, paid, update, create (late), paid again.
    world.publish(&updated(17)).await;
    world.publish(&paid()).await;
    world.publish(&updated(18)).await;
    world.publish(&created()).await;
    world.publish(&paid()).await;
    assert_eq!(
        wait_state(&world, "payment_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // a busy order's retry comes back
    // A delivery that found the order locked by another retries after a moment: wait for it.
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 4, Duration::from_secs(20))
            .await,
        4,
        "two updates, one create, one paid (the second paid is its duplicate)"
    );
    let all = invoices(&world);
    assert_eq!(regular(&all).len(), 1);
    assert_eq!(all[0].bookings, 1);
    assert_eq!(
        wait_state(&world, "payment_booked", Duration::from_secs(1))
            .await
            .as_deref(),
        Some("payment_booked"),
        "an update after payment changes nothing"
    );
}
