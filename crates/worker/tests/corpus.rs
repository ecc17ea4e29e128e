//! The order-maths corpus (`fixtures/shopify/corpus/`): every order and refund there runs through
//! the mapping and must come out as its `expected` member says — the invoice's positions, its
//! total, the money booked and through which gateways, or the dead-letter reason. The payloads
//! are ours, written field for field after Shopify's REST 2026-07 order and refund samples, with
//! their figures computed the way Shopify computes them (tax per line, rounded per line).

use std::path::{Path, PathBuf};

use hookline_worker::domains::orders::mapping::{self, Order, Position, Refund};
use hookline_worker::domains::orders::tax::{Regime, TaxSettings};
use rust_decimal::Decimal;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/shopify/corpus")
}

/// Every `.json` file of `dir`, sorted, as (file name, payload without `expected`, `expected`).
fn load(dir: &Path) -> Vec<(String, Value, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut payload: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let expected = payload
                .as_object_mut()
                .unwrap()
                .remove("expected")
                .unwrap_or_else(|| panic!("{name} states no expected outcome"));
            (name, payload, expected)
        })
        .collect()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

fn positions(expected: &Value) -> Vec<Position> {
    expected["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Position {
            name: p[0].as_str().unwrap().to_owned(),
            quantity: dec(&p[1]),
            price: dec(&p[2]),
            tax_rate: dec(&p[3]),
        })
        .collect()
}

/// Positions compared by value (`25.00` and `25` are the same price).
fn same(actual: &[Position], expected: &[Position]) -> bool {
    actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(a, e)| {
            a.name == e.name
                && a.quantity == e.quantity
                && a.price == e.price
                && a.tax_rate.normalize() == e.tax_rate.normalize()
        })
}

fn regime(text: &str) -> Regime {
    match text.split_once(':') {
        Some(("18", country)) => Regime::OneStopShop {
            country: country.to_owned(),
        },
        _ => match text {
            "1" => Regime::Domestic,
            "2" => Regime::Export,
            "3" => Regime::IntraCommunity,
            "11" => Regime::SmallBusiness,
            other => panic!("unknown regime {other}"),
        },
    }
}

fn settings(expected: &Value) -> TaxSettings {
    let flag = |name: &str| expected["settings"][name].as_bool().unwrap_or(false);
    TaxSettings {
        small_business: flag("small_business"),
        oss: flag("oss"),
    }
}

#[test]
fn every_corpus_order_maps_as_expected() {
    let orders = load(&corpus_dir());
    assert!(orders.len() >= 30, "only {} orders", orders.len());
    let mut failures = vec![];
    for (name, payload, expected) in &orders {
        let order: Order = serde_json::from_value(payload.clone())
            .unwrap_or_else(|e| panic!("{name} does not parse as an order: {e}"));
        let result = mapping::invoice_for(&order, settings(expected));
        if let Some(reason) = expected["dead_letter"].as_str() {
            let contains = expected["error_contains"].as_str().unwrap();
            match result {
                Err(e) if e.reason() == reason && e.to_string().contains(contains) => {}
                other => failures.push(format!(
                    "{name}: expected dead letter {reason} ({contains}), got {other:?}"
                )),
            }
            continue;
        }
        let draft = match result {
            Ok(draft) => draft,
            Err(e) => {
                failures.push(format!("{name}: {} — {e}", e.reason()));
                continue;
            }
        };
        let want = positions(expected);
        if !same(&draft.positions, &want) {
            failures.push(format!(
                "{name}: positions\n  got  {:?}\n  want {want:?}",
                draft.positions
            ));
        }
        if draft.show_net != expected["show_net"].as_bool().unwrap() {
            failures.push(format!("{name}: show_net {}", draft.show_net));
        }
        let total = dec(&expected["total"]);
        if draft.total != total {
            failures.push(format!("{name}: total {} ≠ {total}", draft.total));
        }
        // What sevDesk will compute from the positions is the total, to the cent.
        if mapping::invoice_total(&draft.positions, draft.show_net) != total {
            failures.push(format!("{name}: the positions do not add up to {total}"));
        }
        if draft.treatment.regime != regime(expected["regime"].as_str().unwrap()) {
            failures.push(format!("{name}: regime {:?}", draft.treatment.regime));
        }
        if draft.currency != "EUR" {
            failures.push(format!("{name}: invoice in {}", draft.currency));
        }
        if let Some(header) = expected["header"].as_str()
            && draft.header != header
        {
            failures.push(format!("{name}: header {:?}", draft.header));
        }
        match (
            mapping::gateway_money(&order),
            expected["booking_dead_letter"].as_str(),
        ) {
            (Err(e), Some(reason)) if e.reason() == reason => {}
            (Ok(money), None) => {
                let booked = dec(&expected["booked"]);
                let gift = dec(&expected["gift_card"]);
                let gateways: Vec<String> =
                    serde_json::from_value(expected["gateways"].clone()).unwrap();
                if money.amount != booked || money.gift_card != gift || money.gateways != gateways {
                    failures.push(format!(
                        "{name}: booking {money:?}, want {booked} via {gateways:?} + {gift} gift card"
                    ));
                }
                if money.amount + money.gift_card != draft.total {
                    failures.push(format!(
                        "{name}: money and gift cards do not pay the invoice"
                    ));
                }
            }
            (other, want) => failures.push(format!("{name}: booking {other:?}, want {want:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_corpus_refund_maps_as_expected() {
    let refunds = load(&corpus_dir().join("refunds"));
    assert!(refunds.len() >= 8, "only {} refunds", refunds.len());
    let mut failures = vec![];
    for (name, payload, expected) in &refunds {
        let refund: Refund = serde_json::from_value(payload.clone())
            .unwrap_or_else(|e| panic!("{name} does not parse as a refund: {e}"));
        let context = &expected["context"];
        let result = mapping::credit_note_for(
            context["order_name"].as_str().unwrap(),
            context["currency"].as_str().unwrap(),
            &regime(context["regime"].as_str().unwrap()),
            &refund,
        );
        if expected["pending"].as_bool() == Some(true) {
            if !mapping::refund_money_pending(&refund) {
                failures.push(format!("{name}: money not seen as pending"));
            }
            continue;
        }
        if expected["none"].as_bool() == Some(true) {
            if result != Ok(None) {
                failures.push(format!("{name}: expected no credit note, got {result:?}"));
            }
            continue;
        }
        if let Some(reason) = expected["dead_letter"].as_str() {
            let contains = expected["error_contains"].as_str().unwrap();
            match result {
                Err(e) if e.reason() == reason && e.to_string().contains(contains) => {}
                other => failures.push(format!(
                    "{name}: expected dead letter {reason} ({contains}), got {other:?}"
                )),
            }
            continue;
        }
        match result {
            Ok(Some(draft)) => {
                let want = positions(expected);
                if !same(&draft.positions, &want) {
                    failures.push(format!(
                        "{name}: positions\n  got  {:?}\n  want {want:?}",
                        draft.positions
                    ));
                }
                if draft.total != dec(&expected["total"]) {
                    failures.push(format!("{name}: total {}", draft.total));
                }
            }
            other => failures.push(format!("{name}: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
