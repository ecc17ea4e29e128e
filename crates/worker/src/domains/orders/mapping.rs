//! Shopify order → sevDesk invoice, in decimal money, checked to the cent before anything is sent.
//!
//! Positions: one per line item (unit price and quantity as Shopify has them, tax rate from the
//! line's `tax_lines`), one negative position per line discount (so discounts stay visible and
//! exact instead of being spread over unit prices), one per shipping line. Prices are net when the
//! shop's prices exclude tax (`showNet`), gross when they include it, exactly as in the order.
//!
//! Total: with net prices, tax is computed per tax rate on the sum of that rate's positions and
//! rounded half away from zero to the cent — how sevDesk sums an invoice — and added to the net
//! sum; with gross prices the total is the sum of the positions. It must equal Shopify's
//! `total_price` to the cent, or nothing is sent (`amount_mismatch`): a wrong invoice is worse
//! than a late one.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer};

use crate::schema::Schema;

/// An amount of money or a rate: Shopify sends prices as strings (`"25.00"`) and rates as
/// numbers (`0.19`); both are read into a `Decimal` from their text, never through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dec(pub Decimal);

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a decimal string or number, got {other}"
                )));
            }
        };
        Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map(Dec)
            .map_err(|e| serde::de::Error::custom(format!("invalid decimal {text:?}: {e}")))
    }
}

/// A tax line.
#[derive(Debug, Clone, Deserialize)]
pub struct TaxLine {
    /// E.g. `0.19`.
    pub rate: Dec,
    /// Tax amount of the line.
    #[serde(default)]
    pub price: Option<Dec>,
    /// E.g. `MwSt`.
    #[serde(default)]
    pub title: Option<String>,
}

/// A discount allocated to a line.
#[derive(Debug, Clone, Deserialize)]
pub struct DiscountAllocation {
    /// The amount taken off the line.
    pub amount: Dec,
}

/// A line item.
#[derive(Debug, Clone, Deserialize)]
pub struct LineItem {
    /// Shopify id.
    pub id: i64,
    /// Product title.
    pub title: String,
    /// Units.
    pub quantity: i64,
    /// Unit price.
    pub price: Dec,
    /// SKU.
    #[serde(default)]
    pub sku: Option<String>,
    /// Taxes of the line.
    #[serde(default)]
    pub tax_lines: Vec<TaxLine>,
    /// Discounts of the line.
    #[serde(default)]
    pub discount_allocations: Vec<DiscountAllocation>,
}

/// A shipping line.
#[derive(Debug, Clone, Deserialize)]
pub struct ShippingLine {
    /// E.g. `Standard`.
    pub title: String,
    /// Price of the shipping.
    pub price: Dec,
    /// Taxes of the shipping.
    #[serde(default)]
    pub tax_lines: Vec<TaxLine>,
    /// Discounts on the shipping.
    #[serde(default)]
    pub discount_allocations: Vec<DiscountAllocation>,
}

/// The customer.
#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    /// Shopify customer id.
    pub id: i64,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
}

/// The billing address.
#[derive(Debug, Clone, Deserialize)]
pub struct Address {
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Company.
    #[serde(default)]
    pub company: Option<String>,
}

/// An order as `orders/create|paid|cancelled|updated` send it (the fields hookline reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    /// Shopify order id.
    pub id: i64,
    /// `gid://shopify/Order/…`.
    #[serde(default)]
    pub admin_graphql_api_id: Option<String>,
    /// E.g. `#1001`.
    pub name: String,
    /// Customer e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// When the order was processed (invoice date).
    #[serde(default)]
    pub processed_at: Option<DateTime<FixedOffset>>,
    /// When the order was created.
    pub created_at: DateTime<FixedOffset>,
    /// ISO currency.
    pub currency: String,
    /// `pending`, `paid`, `refunded`, …
    #[serde(default)]
    pub financial_status: Option<String>,
    /// What the customer pays.
    pub total_price: Dec,
    /// Whether prices include tax.
    #[serde(default)]
    pub taxes_included: bool,
    /// The customer (absent on some guest checkouts).
    #[serde(default)]
    pub customer: Option<Customer>,
    /// Billing address.
    #[serde(default)]
    pub billing_address: Option<Address>,
    /// Items.
    pub line_items: Vec<LineItem>,
    /// Shipping.
    #[serde(default)]
    pub shipping_lines: Vec<ShippingLine>,
    /// When the order was cancelled.
    #[serde(default)]
    pub cancelled_at: Option<String>,
}

impl Schema for Order {
    const KNOWN_FIELDS: &'static [&'static str] = &[
        "id",
        "admin_graphql_api_id",
        "name",
        "order_number",
        "email",
        "created_at",
        "updated_at",
        "processed_at",
        "currency",
        "presentment_currency",
        "financial_status",
        "fulfillment_status",
        "total_price",
        "subtotal_price",
        "total_tax",
        "total_discounts",
        "taxes_included",
        "customer",
        "billing_address",
        "line_items",
        "shipping_lines",
        "tax_lines",
        "cancelled_at",
        "cancel_reason",
        "note",
    ];
    const OPTIONAL_FIELDS: &'static [&'static str] = &[
        "customer",
        "billing_address",
        "shipping_lines",
        "processed_at",
        "email",
    ];
}

/// One invoice position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Text on the invoice.
    pub name: String,
    /// Units.
    pub quantity: Decimal,
    /// Unit price (net or gross, per [`InvoiceDraft::show_net`]).
    pub price: Decimal,
    /// Tax rate in percent, e.g. `19`.
    pub tax_rate: Decimal,
}

/// The invoice to create for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDraft {
    /// ISO currency.
    pub currency: String,
    /// Invoice date (the order's `processed_at`).
    pub date: DateTime<FixedOffset>,
    /// Shown on the invoice: order name and GID.
    pub header: String,
    /// Our marker, searched for before creating again: `hookline:<shop>:<order id>`.
    pub marker: String,
    /// Prices are net (`true`) or gross.
    pub show_net: bool,
    /// Positions.
    pub positions: Vec<Position>,
    /// The total, equal to Shopify's `total_price`.
    pub total: Decimal,
}

/// Why an order cannot become an invoice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Our sum differs from Shopify's `total_price`.
    #[error("invoice total {computed} differs from Shopify's total_price {shopify}")]
    AmountMismatch {
        /// What the positions add up to.
        computed: Decimal,
        /// `total_price`.
        shopify: Decimal,
    },
    /// A line with a non-positive quantity.
    #[error("line item {0} has a quantity below 1")]
    BadQuantity(i64),
}

/// The marker that identifies an order's invoice in sevDesk.
pub fn marker(shop_domain: &str, order_id: i64) -> String {
    format!("hookline:{shop_domain}:{order_id}")
}

fn percent(tax_lines: &[TaxLine]) -> Decimal {
    tax_lines.iter().map(|t| t.rate.0).sum::<Decimal>() * Decimal::ONE_HUNDRED
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Maps `order` to the invoice to create, or says why it cannot.
pub fn invoice_for(shop_domain: &str, order: &Order) -> Result<InvoiceDraft, MappingError> {
    let mut positions = vec![];
    for line in &order.line_items {
        if line.quantity < 1 {
            return Err(MappingError::BadQuantity(line.id));
        }
        let rate = percent(&line.tax_lines);
        let name = match &line.sku {
            Some(sku) if !sku.is_empty() => format!("{} ({sku})", line.title),
            _ => line.title.clone(),
        };
        positions.push(Position {
            name,
            quantity: Decimal::from(line.quantity),
            price: line.price.0,
            tax_rate: rate,
        });
        let discount: Decimal = line.discount_allocations.iter().map(|d| d.amount.0).sum();
        if !discount.is_zero() {
            positions.push(Position {
                name: format!("Rabatt: {}", line.title),
                quantity: Decimal::ONE,
                price: -discount,
                tax_rate: rate,
            });
        }
    }
    for shipping in &order.shipping_lines {
        let rate = percent(&shipping.tax_lines);
        positions.push(Position {
            name: format!("Versand: {}", shipping.title),
            quantity: Decimal::ONE,
            price: shipping.price.0,
            tax_rate: rate,
        });
        let discount: Decimal = shipping
            .discount_allocations
            .iter()
            .map(|d| d.amount.0)
            .sum();
        if !discount.is_zero() {
            positions.push(Position {
                name: format!("Rabatt: Versand {}", shipping.title),
                quantity: Decimal::ONE,
                price: -discount,
                tax_rate: rate,
            });
        }
    }
    let show_net = !order.taxes_included;
    let total = invoice_total(&positions, show_net);
    if total != cents(order.total_price.0) {
        return Err(MappingError::AmountMismatch {
            computed: total,
            shopify: order.total_price.0,
        });
    }
    let gid = order
        .admin_graphql_api_id
        .clone()
        .unwrap_or_else(|| format!("gid://shopify/Order/{}", order.id));
    Ok(InvoiceDraft {
        currency: order.currency.clone(),
        date: order.processed_at.unwrap_or(order.created_at),
        header: format!("Rechnung zu Bestellung {} ({gid})", order.name),
        marker: marker(shop_domain, order.id),
        show_net,
        positions,
        total,
    })
}

/// A refund as `refunds/create` sends it (the fields hookline reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    /// Shopify refund id.
    pub id: i64,
    /// The refunded order.
    pub order_id: i64,
    /// `gid://shopify/Refund/…`.
    #[serde(default)]
    pub admin_graphql_api_id: Option<String>,
    /// When the refund was created.
    pub created_at: DateTime<FixedOffset>,
    /// When the refund was processed (credit note date).
    #[serde(default)]
    pub processed_at: Option<DateTime<FixedOffset>>,
    /// The merchant's note.
    #[serde(default)]
    pub note: Option<String>,
    /// Refunded items.
    #[serde(default)]
    pub refund_line_items: Vec<RefundLineItem>,
    /// Money movements; `kind: refund, status: success` ones are what the customer got back.
    #[serde(default)]
    pub transactions: Vec<Transaction>,
    /// Shipping refunds and discrepancies between items and money.
    #[serde(default)]
    pub order_adjustments: Vec<OrderAdjustment>,
}

impl Schema for Refund {
    const KNOWN_FIELDS: &'static [&'static str] = &[
        "id",
        "order_id",
        "admin_graphql_api_id",
        "created_at",
        "processed_at",
        "note",
        "user_id",
        "restock",
        "duties",
        "total_duties_set",
        "return",
        "refund_line_items",
        "refund_shipping_lines",
        "transactions",
        "order_adjustments",
    ];
    const OPTIONAL_FIELDS: &'static [&'static str] = &["processed_at", "note"];
}

/// A refunded line.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundLineItem {
    /// Units refunded.
    pub quantity: i64,
    /// Their price after discounts, before tax.
    pub subtotal: Dec,
    /// Their tax.
    pub total_tax: Dec,
    /// The order's line.
    pub line_item: RefundedLine,
}

/// The order line a refund line refers to.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundedLine {
    /// Product title.
    pub title: String,
    /// SKU.
    #[serde(default)]
    pub sku: Option<String>,
    /// Taxes of the line (their rates).
    #[serde(default)]
    pub tax_lines: Vec<TaxLine>,
}

/// A payment transaction of a refund.
#[derive(Debug, Clone, Deserialize)]
pub struct Transaction {
    /// `refund` for money given back.
    pub kind: String,
    /// `success`, `pending`, `failure`, `error`.
    pub status: String,
    /// The amount.
    pub amount: Dec,
}

/// An order adjustment of a refund.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderAdjustment {
    /// Negative for money refunded (a shipping refund), positive when less money than the items'
    /// worth was refunded (a discrepancy).
    pub amount: Dec,
    /// Its tax, same sign.
    #[serde(default)]
    pub tax_amount: Dec,
    /// `shipping_refund` or `refund_discrepancy`.
    pub kind: String,
}

/// The credit note to create for a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditNoteDraft {
    /// ISO currency (the order's).
    pub currency: String,
    /// The refund's `processed_at`.
    pub date: DateTime<FixedOffset>,
    /// Shown on the credit note: order name and refund GID.
    pub header: String,
    /// Our marker, looked for before creating again: `hookline:<shop>:<order id>:refund:<id>`.
    pub marker: String,
    /// Gross positions, each `quantity 1` so every amount is exactly Shopify's.
    pub positions: Vec<Position>,
    /// The money refunded, equal to the positions' sum.
    pub total: Decimal,
}

/// The marker that identifies a refund's credit note in sevDesk.
pub fn refund_marker(shop_domain: &str, order_id: i64, refund_id: i64) -> String {
    format!("hookline:{shop_domain}:{order_id}:refund:{refund_id}")
}

/// The money a refund gave back: its successful `refund` transactions.
pub fn refunded_amount(refund: &Refund) -> Decimal {
    refund
        .transactions
        .iter()
        .filter(|t| t.kind == "refund" && t.status == "success")
        .map(|t| t.amount.0)
        .sum()
}

/// Maps a refund of the order `order_name` to its credit note, or `None` when no money was
/// refunded (a restock only).
///
/// Positions are gross and carry Shopify's own amounts: per refunded line `subtotal + total_tax`
/// (quantity 1, the unit count in the text, so no unit price has to be divided and rounded), per
/// adjustment `-(amount + tax_amount)` with the rate its tax implies. They must add up to the
/// money refunded, to the cent, or nothing is sent (`amount_mismatch`).
pub fn credit_note_for(
    shop_domain: &str,
    order_name: &str,
    currency: &str,
    refund: &Refund,
) -> Result<Option<CreditNoteDraft>, MappingError> {
    let refunded = cents(refunded_amount(refund));
    if refunded.is_zero() {
        return Ok(None);
    }
    let mut positions = vec![];
    for line in &refund.refund_line_items {
        let item = &line.line_item;
        let name = match &item.sku {
            Some(sku) if !sku.is_empty() => format!("{} ({sku})", item.title),
            _ => item.title.clone(),
        };
        positions.push(Position {
            name: format!("Erstattung: {} × {name}", line.quantity),
            quantity: Decimal::ONE,
            price: cents(line.subtotal.0 + line.total_tax.0),
            tax_rate: percent(&item.tax_lines),
        });
    }
    for adjustment in &refund.order_adjustments {
        let (amount, tax) = (adjustment.amount.0, adjustment.tax_amount.0);
        let rate = if amount.is_zero() || tax.is_zero() {
            Decimal::ZERO
        } else {
            (tax / amount * Decimal::ONE_HUNDRED).round_dp(2)
        };
        let name = match adjustment.kind.as_str() {
            "shipping_refund" => "Erstattung: Versand".to_owned(),
            "refund_discrepancy" => "Erstattung: Differenz".to_owned(),
            other => format!("Erstattung: {other}"),
        };
        positions.push(Position {
            name,
            quantity: Decimal::ONE,
            price: cents(-(amount + tax)),
            tax_rate: rate,
        });
    }
    let total = invoice_total(&positions, false);
    if total != refunded {
        return Err(MappingError::AmountMismatch {
            computed: total,
            shopify: refunded,
        });
    }
    let gid = refund
        .admin_graphql_api_id
        .clone()
        .unwrap_or_else(|| format!("gid://shopify/Refund/{}", refund.id));
    Ok(Some(CreditNoteDraft {
        currency: currency.to_owned(),
        date: refund.processed_at.unwrap_or(refund.created_at),
        header: format!("Gutschrift zu Bestellung {order_name} ({gid})"),
        marker: refund_marker(shop_domain, refund.order_id, refund.id),
        positions,
        total,
    }))
}

/// The invoice total as sevDesk computes it (see the module docs).
pub fn invoice_total(positions: &[Position], show_net: bool) -> Decimal {
    let sum: Decimal = positions.iter().map(|p| p.quantity * p.price).sum();
    if !show_net {
        return cents(sum);
    }
    let mut net_per_rate: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for p in positions {
        *net_per_rate.entry(p.tax_rate.normalize()).or_default() += p.quantity * p.price;
    }
    let tax: Decimal = net_per_rate
        .iter()
        .map(|(rate, net)| cents(*net * *rate / Decimal::ONE_HUNDRED))
        .sum();
    cents(sum) + tax
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn order(json: &str) -> Order {
        serde_json::from_str(json).unwrap()
    }

    const SAMPLE: &str = include_str!("../../../../../fixtures/shopify/orders-paid.json");

    #[test]
    fn the_sample_order_becomes_a_net_invoice_of_119_eur() {
        let draft = invoice_for("example.myshopify.com", &order(SAMPLE)).unwrap();
        assert!(draft.show_net);
        assert_eq!(draft.currency, "EUR");
        assert_eq!(draft.total, dec("119.00"));
        assert_eq!(
            draft.marker,
            "hookline:example.myshopify.com:820982911946154508"
        );
        assert!(
            draft.header.contains("#1001")
                && draft
                    .header
                    .contains("gid://shopify/Order/820982911946154508")
        );
        assert_eq!(
            draft.positions,
            vec![
                Position {
                    name: "Wool socks (SOCK-01)".into(),
                    quantity: dec("2"),
                    price: dec("25.00"),
                    tax_rate: dec("19.00")
                },
                Position {
                    name: "Beanie (HAT-02)".into(),
                    quantity: dec("1"),
                    price: dec("50.00"),
                    tax_rate: dec("19.00")
                },
            ]
        );
    }

    /// Hand-computed: net 3 × 9.99 = 29.97 at 19 % → 5.69 (5.6943); 1 × 12.50 book at 7 % → 0.88
    /// (0.875, half away from zero); shipping 4.90 at 19 %; a 2.00 discount on the socks at 19 %.
    /// 19 %: 29.97 − 2.00 + 4.90 = 32.87 → tax 6.25 (6.2453). 7 %: 12.50 → 0.88.
    /// Total: 32.87 + 12.50 + 6.25 + 0.88 = 52.50.
    #[test]
    fn several_tax_rates_discounts_and_shipping_add_up_to_the_cent() {
        let json = r##"{"id":1,"name":"#2","created_at":"2026-11-20T10:15:02+01:00","currency":"EUR","total_price":"52.50","taxes_included":false,
          "line_items":[
            {"id":10,"title":"Socks","quantity":3,"price":"9.99","tax_lines":[{"rate":0.19}],"discount_allocations":[{"amount":"2.00"}]},
            {"id":11,"title":"Book","quantity":1,"price":"12.50","tax_lines":[{"rate":0.07}]}],
          "shipping_lines":[{"title":"DHL","price":"4.90","tax_lines":[{"rate":0.19}]}]}"##;
        let draft = invoice_for("s.myshopify.com", &order(json)).unwrap();
        assert_eq!(draft.total, dec("52.50"));
        let names: Vec<&str> = draft.positions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Socks", "Rabatt: Socks", "Book", "Versand: DHL"]);
        assert_eq!(draft.positions[1].price, dec("-2.00"));
        assert_eq!(draft.positions[2].tax_rate, dec("7"));
    }

    #[test]
    fn gross_prices_stay_gross_in_a_foreign_currency() {
        let json = r##"{"id":2,"name":"#3","created_at":"2026-11-20T10:15:02+01:00","currency":"CHF","total_price":"64.85","taxes_included":true,
          "line_items":[{"id":10,"title":"Mug","quantity":3,"price":"19.95","tax_lines":[{"rate":0.081,"price":"4.48"}]}],
          "shipping_lines":[{"title":"Post","price":"5.00","tax_lines":[]}]}"##;
        let draft = invoice_for("s.myshopify.com", &order(json)).unwrap();
        assert!(!draft.show_net);
        assert_eq!(draft.currency, "CHF");
        assert_eq!(draft.total, dec("64.85")); // 3 × 19.95 + 5.00
        assert_eq!(draft.positions[0].tax_rate, dec("8.1"));
        assert_eq!(draft.positions[1].tax_rate, dec("0"));
    }

    #[test]
    fn a_total_that_does_not_add_up_is_refused() {
        let json = SAMPLE.replace(r#""total_price":"119.00""#, r#""total_price":"119.01""#);
        assert_eq!(
            invoice_for("s.myshopify.com", &order(&json)),
            Err(MappingError::AmountMismatch {
                computed: dec("119.00"),
                shopify: dec("119.01")
            })
        );
    }

    const REFUND: &str = include_str!("../../../../../fixtures/shopify/refunds-create.json");

    fn refund(json: &str) -> Refund {
        serde_json::from_str(json).unwrap()
    }

    /// The sample: one pair of socks, 25.00 net + 4.75 tax = 29.75, refunded by one successful
    /// transaction of 29.75.
    #[test]
    fn the_sample_refund_becomes_a_gross_credit_note_of_29_75() {
        let draft = credit_note_for("s.myshopify.com", "#1001", "EUR", &refund(REFUND))
            .unwrap()
            .unwrap();
        assert_eq!(draft.total, dec("29.75"));
        assert_eq!(
            draft.marker,
            "hookline:s.myshopify.com:820982911946154508:refund:929361462"
        );
        assert!(
            draft.header.contains("#1001")
                && draft.header.contains("gid://shopify/Refund/929361462")
        );
        assert_eq!(
            draft.positions,
            vec![Position {
                name: "Erstattung: 1 × Wool socks (SOCK-01)".into(),
                quantity: dec("1"),
                price: dec("29.75"),
                tax_rate: dec("19.00")
            }]
        );
    }

    fn with_adjustment(amount: &str, adjustment: &str) -> Refund {
        refund(
            &REFUND
                .replace(r#""amount": "29.75""#, &format!(r#""amount": "{amount}""#))
                .replace(
                    r#""order_adjustments": []"#,
                    &format!(r#""order_adjustments": [{adjustment}]"#),
                ),
        )
    }

    /// Shipping 4.90 + 0.93 tax refunded with the socks: 29.75 + 5.83 = 35.58, the shipping at
    /// 18.98 %, the rate its rounded tax implies.
    #[test]
    fn a_shipping_refund_is_a_position_with_the_rate_its_tax_implies() {
        let r = with_adjustment(
            "35.58",
            r#"{"amount": "-4.90", "tax_amount": "-0.93", "kind": "shipping_refund"}"#,
        );
        let draft = credit_note_for("s", "#1", "EUR", &r).unwrap().unwrap();
        assert_eq!(draft.total, dec("35.58"));
        assert_eq!(
            draft.positions[1],
            Position {
                name: "Erstattung: Versand".into(),
                quantity: dec("1"),
                price: dec("5.83"),
                tax_rate: dec("18.98")
            }
        );
    }

    #[test]
    fn a_restock_without_money_needs_no_credit_note_and_failed_transactions_do_not_count() {
        let mut r = refund(REFUND);
        r.transactions[0].status = "failure".into();
        assert_eq!(credit_note_for("s", "#1", "EUR", &r), Ok(None));
        r.transactions.clear();
        assert_eq!(credit_note_for("s", "#1", "EUR", &r), Ok(None));
    }

    /// A refund of 25.00 for items worth 29.75: Shopify adds a discrepancy of +4.75, which the
    /// credit note shows as a position of −4.75.
    #[test]
    fn a_discrepancy_between_items_and_money_is_its_own_position() {
        let r = with_adjustment(
            "25.00",
            r#"{"amount": "4.75", "tax_amount": "0.00", "kind": "refund_discrepancy"}"#,
        );
        let draft = credit_note_for("s", "#1", "EUR", &r).unwrap().unwrap();
        assert_eq!(draft.total, dec("25.00"));
        assert_eq!(draft.positions[1].name, "Erstattung: Differenz");
        assert_eq!(draft.positions[1].price, dec("-4.75"));
        assert_eq!(draft.positions[1].tax_rate, dec("0"));
    }

    #[test]
    fn money_that_the_items_do_not_explain_is_refused() {
        let json = REFUND.replace(r#""amount": "29.75""#, r#""amount": "40.00""#);
        assert_eq!(
            credit_note_for("s", "#1", "EUR", &refund(&json)),
            Err(MappingError::AmountMismatch {
                computed: dec("29.75"),
                shopify: dec("40.00")
            })
        );
    }

    #[test]
    fn rates_are_read_without_float_error() {
        let t: TaxLine = serde_json::from_str(r#"{"rate":0.1}"#).unwrap();
        assert_eq!(t.rate.0 * Decimal::ONE_HUNDRED, dec("10"));
        let bad: Result<TaxLine, _> = serde_json::from_str(r#"{"rate":"abc"}"#);
        assert!(bad.is_err());
    }
}
