//! sevDesk as it really is: the strict sandbox refuses what sevDesk refuses, and the worker books
//! exactly once when sevDesk answers late, lags in its searches or ignores their filters.

use std::time::{Duration, Instant};

use hookline_core::envelope::amqp_header as h;
use hookline_sandbox::Faults;
use hookline_sandbox::sevdesk::{Account, CheckAccount};
use hookline_testkit::{envelope, header_text, wait_for_messages};
use hookline_worker::startup::Worker;

use crate::helpers::{ORDERS_ONLY, SHOP, World, cancelled, paid};

const ORDER_ID: i64 = 820982911946154508;
const PAID: &str = include_str!("../../../../fixtures/shopify/orders-paid.json");

async fn wait_state(world: &World, order_id: i64, state: &str, within: Duration) -> Option<String> {
    world.wait_order_state(order_id, state, within).await
}

/// A second order of another customer, otherwise like the sample.
fn other_order() -> String {
    PAID.replace("820982911946154508", "820982911946154599")
        .replace("#1001", "#1002")
        .replace("115310627314723954", "115310627314723999")
}

#[tokio::test]
async fn invoices_follow_update_2_and_are_booked_as_a_full_payment_on_the_clearing_account() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    assert_eq!(
        wait_state(&world, ORDER_ID, "payment_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    let invoices = world.regular_invoices();
    assert_eq!(invoices.len(), 1);
    let invoice = &invoices[0];
    assert_eq!(invoice.tax_rule.as_deref(), Some("1"));
    assert_eq!(invoice.address_country, Some(1));
    assert_eq!(
        invoice.address.as_deref(),
        Some("Jön Müller\nHauptstraße 1\n10115 Berlin\nDE")
    );
    assert_eq!(invoice.delivery_date.as_deref(), Some("20.11.2026"));
    // The bank account is online: never booked on; the first offline account is.
    assert_eq!(
        invoice.booked_on,
        [hookline_sandbox::sevdesk::CHECK_ACCOUNT_ID]
    );
    assert_eq!(invoice.booking_types, ["FULL_PAYMENT"]);
    // Every write the worker sent met the contract (the sandbox refuses those that do not).
    for (operation, body) in sevdesk.requests() {
        let checked = match operation.as_str() {
            "createContact" | "saveInvoice" | "bookAmount" | "sendBy" | "sendViaEmail" => {
                operation.as_str()
            }
            other => panic!("unexpected write {other}"),
        };
        assert_eq!(
            hookline_sandbox::contract::check(checked, &body),
            Ok(()),
            "{body:#}"
        );
    }
}

#[tokio::test]
async fn a_worker_refuses_to_start_on_an_account_it_cannot_book_into() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    let bank_only = Account {
        check_accounts: vec![CheckAccount {
            id: "5001".into(),
            name: "Bank".into(),
            kind: "online".into(),
        }],
        ..Account::default()
    };
    sevdesk.set_account(bank_only.clone());
    let error = Worker::build(world.settings(ORDERS_ONLY))
        .await
        .err()
        .expect("no clearing account: refused");
    assert!(
        format!("{error:#}").contains("Verrechnungskonto"),
        "{error:#}"
    );
    // Naming the bank account does not help: sevDesk needs a bank transaction to book on it.
    let error = Worker::build(
        world.settings(
            &[
                ORDERS_ONLY,
                &[("HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID", "5001")],
            ]
            .concat(),
        ),
    )
    .await
    .err()
    .expect("an online account: refused");
    assert!(format!("{error:#}").contains("online account"), "{error:#}");
    sevdesk.set_account(Account {
        bookkeeping_version: "1.0".into(),
        ..Account::default()
    });
    let error = Worker::build(world.settings(ORDERS_ONLY))
        .await
        .err()
        .expect("Update 1.0: refused");
    assert!(
        format!("{error:#}").contains("sevdesk-Update 2.0"),
        "{error:#}"
    );
}

#[tokio::test]
async fn an_order_no_tax_rule_fits_is_dead_lettered_with_its_facts() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    // Shipped to Switzerland with German VAT charged: neither an export nor a domestic sale.
    let body = PAID.replace(r#""country_code":"DE""#, r#""country_code":"CH""#);
    world.publish(&envelope("orders/paid", SHOP, &body)).await;
    let dead = wait_for_messages(&world.amqp, "hookline.orders.dlq", Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header_text(&dead[0].properties, h::REASON).as_deref(),
        Some("tax_rule_undecidable")
    );
    let error = header_text(&dead[0].properties, h::ERROR).unwrap();
    assert!(
        error.contains("destination CH") && error.contains("19%"),
        "{error}"
    );
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("saveInvoice"), 0);
}

/// sevDesk commits every write 1.5 s after it arrived and never answers: each call times out
/// (after 1 s) as "outcome unknown". The worker settles (2 s), finds what landed, and books once.
#[tokio::test]
async fn writes_that_sevdesk_commits_after_the_timeout_are_found_not_repeated() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    sevdesk.set_faults(Faults {
        commit_late_rate: 1.0,
        commit_late_ms: 1_500,
        ..Faults::default()
    });
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    assert_eq!(
        wait_state(&world, ORDER_ID, "payment_booked", Duration::from_secs(60))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    let invoices = world.regular_invoices();
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    assert_eq!(invoices[0].bookings, 1, "booked once");
    assert_eq!(sevdesk.calls("saveInvoice"), 1, "created once, then found");
    assert_eq!(sevdesk.calls("bookAmount"), 1, "booked once, then re-read");
    assert_eq!(
        sevdesk.contacts().len(),
        1,
        "the contact created once, then found"
    );
    // The cancellation commits late too: one cancellation invoice.
    world.publish(&cancelled()).await;
    assert_eq!(
        wait_state(&world, ORDER_ID, "cancelled", Duration::from_secs(60))
            .await
            .as_deref(),
        Some("cancelled")
    );
    let all = sevdesk.invoices();
    let cancellations: Vec<_> = all.iter().filter(|i| i.invoice_type == "SR").collect();
    assert_eq!(cancellations.len(), 1, "{all:?}");
    assert_eq!(sevdesk.calls("cancelInvoice"), 1);
}

/// Searches lag 1 s behind creates and the first create is answered 500 after it committed:
/// the verify after the 2 s settle sees the invoice, so no second one is made.
#[tokio::test]
async fn a_lagging_search_after_an_unknown_create_still_finds_the_invoice() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    sevdesk.set_faults(Faults {
        search_lag_ms: 1_000,
        commit_then_fail_rate: 1.0,
        ..Faults::default()
    });
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    world
        .wait_sevdesk_calls("saveInvoice", 1, Duration::from_secs(30))
        .await;
    sevdesk.set_faults(Faults {
        search_lag_ms: 1_000,
        ..Faults::default()
    });
    assert_eq!(
        wait_state(&world, ORDER_ID, "payment_booked", Duration::from_secs(60))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    assert_eq!(world.regular_invoices().len(), 1);
    assert_eq!(sevdesk.calls("saveInvoice"), 1);
}

/// A search that ignores its filter returns another customer's invoice: the worker checks the
/// reference and the contact itself and adopts nothing that is not this order's.
#[tokio::test]
async fn a_search_that_ignores_its_filter_adopts_no_other_orders_invoice() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    assert_eq!(
        wait_state(&world, ORDER_ID, "payment_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    sevdesk.set_faults(Faults {
        search_ignores_filter: true,
        ..Faults::default()
    });
    world
        .publish(&envelope("orders/paid", SHOP, &other_order()))
        .await;
    assert_eq!(
        wait_state(
            &world,
            820982911946154599,
            "payment_booked",
            Duration::from_secs(20)
        )
        .await
        .as_deref(),
        Some("payment_booked")
    );
    let invoices = world.regular_invoices();
    assert_eq!(
        invoices.len(),
        2,
        "each order its own invoice: {invoices:?}"
    );
    assert!(invoices.iter().all(|i| i.bookings == 1));
}

/// Only the body is signed: a paid order's body relabelled as `orders/cancelled` (its
/// `cancelled_at` is null) cancels nothing.
#[tokio::test]
async fn a_paid_body_relabelled_as_cancelled_cancels_nothing() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    assert_eq!(
        wait_state(&world, ORDER_ID, "payment_booked", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("payment_booked")
    );
    world
        .publish(&envelope("orders/cancelled", SHOP, PAID))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        world.order_state(ORDER_ID).await.as_deref(),
        Some("payment_booked")
    );
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("cancelInvoice"), 0);
}

/// Only the body is signed: the paid body re-sent under another shop's domain finds the
/// order's invoice (by Shopify's order id, unique across shops) booked, and creates and books
/// nothing more.
#[tokio::test]
async fn a_paid_body_relabelled_with_another_shop_creates_no_second_invoice() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    world
        .publish(&envelope("orders/paid", "elsewhere.myshopify.com", PAID))
        .await;
    let client = world.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let booked: i64 = client
            .query_one(
                "SELECT count(*) FROM order_sync WHERE order_id = $1 AND state = 'payment_booked'",
                &[&ORDER_ID],
            )
            .await
            .unwrap()
            .get(0);
        if booked == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "both deliveries settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let invoices = world.regular_invoices();
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    assert_eq!(invoices[0].bookings, 1);
    assert_eq!(sevdesk.calls("saveInvoice"), 1);
}
