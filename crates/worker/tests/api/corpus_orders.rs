//! Orders of the order-maths corpus (`fixtures/shopify/corpus/`) end to end: published as
//! `orders/paid`, through the worker, into the sandbox's sevDesk — the invoice there must carry
//! the expected positions, add up to the expected total and have the expected money booked; an
//! order the corpus says is undecidable must end in the DLQ with its reason and nothing sent.

use std::collections::BTreeSet;
use std::time::Duration;

use hookline_core::envelope::amqp_header as h;
use hookline_sandbox::sevdesk::Invoice;
use hookline_testkit::{envelope, header_text, wait_for_messages};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::helpers::{ORDERS_ONLY, SHOP, World};

/// A corpus file as (payload without `expected`, `expected`).
fn corpus(text: &str) -> (String, Value) {
    let mut payload: Value = serde_json::from_str(text).unwrap();
    let expected = payload.as_object_mut().unwrap().remove("expected").unwrap();
    (payload.to_string(), expected)
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// The invoice of order `name` (by its reference), once.
fn invoice_of<'a>(invoices: &'a [Invoice], name: &str) -> &'a Invoice {
    let reference = format!("Shopify-Bestellung {name} ");
    let found: Vec<&Invoice> = invoices
        .iter()
        .filter(|i| {
            i.invoice_type == "RE"
                && i.customer_internal_note
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&reference))
        })
        .collect();
    assert_eq!(found.len(), 1, "one invoice for {name}: {invoices:?}");
    found[0]
}

/// What sevDesk computes as the document's total from the positions: gross positions add up;
/// net ones get their tax per rate (the corpus orders sent net are exact under every rounding).
fn document_total(invoice: &Invoice) -> Decimal {
    let mut net_per_rate = std::collections::BTreeMap::<Decimal, Decimal>::new();
    let mut sum = Decimal::ZERO;
    for p in &invoice.positions {
        let amount = dec(&p.quantity) * dec(&p.price);
        sum += amount;
        *net_per_rate.entry(dec(&p.tax_rate)).or_default() += amount;
    }
    if !invoice.show_net {
        return sum.round_dp(2);
    }
    let tax: Decimal = net_per_rate
        .iter()
        .map(|(rate, net)| (*net * *rate / Decimal::ONE_HUNDRED).round_dp(2))
        .sum();
    sum.round_dp(2) + tax
}

const INVOICED: &[&str] = &[
    include_str!("../../../../fixtures/shopify/corpus/02-net-per-line-rounding-goes-gross.json"),
    include_str!("../../../../fixtures/shopify/corpus/03-net-two-rates-discount-shipping.json"),
    include_str!("../../../../fixtures/shopify/corpus/10-edit-removed-line.json"),
    include_str!("../../../../fixtures/shopify/corpus/14-gift-card-sold.json"),
    include_str!(
        "../../../../fixtures/shopify/corpus/17-gift-card-and-card-with-transactions.json"
    ),
    include_str!("../../../../fixtures/shopify/corpus/23-presentment-chf-export.json"),
    include_str!("../../../../fixtures/shopify/corpus/30-gross-two-rates-discount-shipping.json"),
];

#[tokio::test]
async fn corpus_orders_become_invoices_with_their_positions_total_and_money() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    let orders: Vec<(Value, Value)> = INVOICED
        .iter()
        .map(|text| {
            let (body, expected) = corpus(text);
            // What reaches the worker is the payload as Shopify would send it.
            assert!(!body.contains("\"expected\""));
            (serde_json::from_str(&body).unwrap(), expected)
        })
        .collect();
    for (order, _) in &orders {
        world
            .publish(&envelope("orders/paid", SHOP, &order.to_string()))
            .await;
    }
    for (order, _) in &orders {
        let id = order["id"].as_i64().unwrap();
        assert_eq!(
            world
                .wait_order_state(id, "payment_booked", Duration::from_secs(40))
                .await
                .as_deref(),
            Some("payment_booked"),
            "order {}",
            order["name"]
        );
    }
    let invoices = world.erp.sandbox.state.sevdesk.invoices();
    for (order, expected) in &orders {
        let name = order["name"].as_str().unwrap();
        let invoice = invoice_of(&invoices, name);
        let want: Vec<(String, Decimal, Decimal, Decimal)> = expected["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_owned(),
                    dec(p[1].as_str().unwrap()),
                    dec(p[2].as_str().unwrap()),
                    dec(p[3].as_str().unwrap()),
                )
            })
            .collect();
        let got: Vec<(String, Decimal, Decimal, Decimal)> = invoice
            .positions
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    dec(&p.quantity),
                    dec(&p.price),
                    dec(&p.tax_rate),
                )
            })
            .collect();
        assert_eq!(got, want, "positions of {name}");
        assert_eq!(
            invoice.show_net,
            expected["show_net"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(invoice.currency, "EUR", "{name}");
        assert_eq!(
            document_total(invoice),
            dec(expected["total"].as_str().unwrap()),
            "total of {name}"
        );
        assert_eq!(
            dec(&invoice.paid_amount),
            dec(expected["booked"].as_str().unwrap()),
            "money booked on {name}"
        );
        if let Some(header) = expected["header"].as_str() {
            assert_eq!(invoice.header.as_deref(), Some(header));
        }
    }
}

#[tokio::test]
async fn corpus_orders_that_cannot_be_decided_are_dead_lettered_with_their_reason() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    let cases = [
        include_str!("../../../../fixtures/shopify/corpus/19-tip.json"),
        include_str!("../../../../fixtures/shopify/corpus/25-shop-currency-chf.json"),
        include_str!("../../../../fixtures/shopify/corpus/15-gift-card-only.json"),
    ];
    let mut want = BTreeSet::new();
    for text in cases {
        let (body, expected) = corpus(text);
        want.insert(expected["dead_letter"].as_str().unwrap().to_owned());
        world.publish(&envelope("orders/paid", SHOP, &body)).await;
    }
    let mut dead = vec![];
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while dead.len() < cases.len() && std::time::Instant::now() < deadline {
        dead.extend(
            wait_for_messages(&world.amqp, "hookline.orders.dlq", Duration::from_secs(5)).await,
        );
    }
    let reasons: BTreeSet<String> = dead
        .iter()
        .filter_map(|m| header_text(&m.properties, h::REASON))
        .collect();
    assert_eq!(reasons, want);
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("saveInvoice"), 0);
}
