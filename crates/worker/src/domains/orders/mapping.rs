//! Shopify order → sevDesk invoice, in decimal money, checked to the cent before anything is sent.
//! The decisions and their reasons are in `docs/order-maths.md`; in short:
//!
//! - **What is invoiced** is the order as it stands: `current_quantity` units per line (lines with
//!   none left out, removed shipping lines too), checked against `current_total_price`. Gift cards
//!   sold are left out (a multi-purpose voucher is no supply); gift cards redeemed pay the invoice
//!   and are no discount ([`gateway_money`]). Duties and additional fees are positions of the
//!   export they belong to; a cash rounding is a 0 % position. A tip is dead-lettered.
//! - **Positions**: one per line item (its unit price and units, its rate from `tax_lines`), one
//!   negative position per line discount (so discounts stay visible and exact instead of being
//!   spread over unit prices), one per shipping line. Gross shops send gross prices.
//! - **Net shops**: Shopify computes tax per line and rounds per line; sevDesk computes it again
//!   from the positions, and the spec does not say whether per rate, per position or per unit.
//!   Net positions are sent only when all three give Shopify's tax to the cent. Otherwise the
//!   positions are sent gross, each carrying Shopify's own tax, so the document's total is the sum
//!   of the positions whichever way sevDesk rounds.
//! - **Total**: must equal [`invoiced_total`] to the cent, or nothing is sent (`amount_mismatch`):
//!   a wrong invoice is worse than a late one.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer};

use super::tax::{self, Regime, TaxFacts, TaxSettings, Undecidable};
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
    /// The amount taken off the line (net in a net shop, gross in a tax-inclusive one).
    pub amount: Dec,
    /// Which of the order's `discount_applications` it comes from (for the position's text).
    #[serde(default)]
    pub discount_application_index: Option<usize>,
}

/// A discount of the order (`discount_applications[]`): what allocations point to.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DiscountApplication {
    /// The code the customer entered (`discount_code` applications).
    #[serde(default)]
    pub code: Option<String>,
    /// The title (`manual` and `automatic` applications).
    #[serde(default)]
    pub title: Option<String>,
}

/// A line item.
#[derive(Debug, Clone, Deserialize)]
pub struct LineItem {
    /// Shopify id.
    pub id: i64,
    /// Product title.
    pub title: String,
    /// Units ordered.
    pub quantity: i64,
    /// Units left after edits and refunds; absent in payloads older than the field.
    #[serde(default)]
    pub current_quantity: Option<i64>,
    /// Unit price.
    pub price: Dec,
    /// A gift card sold (a multi-purpose voucher: no supply, no revenue at sale).
    #[serde(default)]
    pub gift_card: bool,
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
    /// Removed by an order edit.
    #[serde(default)]
    pub is_removed: bool,
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

/// A billing or shipping address.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// Street and number.
    #[serde(default)]
    pub address1: Option<String>,
    /// Second address line.
    #[serde(default)]
    pub address2: Option<String>,
    /// Postcode.
    #[serde(default)]
    pub zip: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[serde(default)]
    pub country_code: Option<String>,
}

impl Address {
    /// The recipient block as printed on the document (§ 14 Abs. 4 Nr. 1 UStG: the recipient's
    /// full name and address): name or company, street, postcode and city, country.
    pub fn printed(&self) -> String {
        let name = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let city = [self.zip.as_deref(), self.city.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        [
            self.company.clone(),
            Some(name),
            self.address1.clone(),
            self.address2.clone(),
            Some(city),
            self.country_code.clone(),
        ]
        .into_iter()
        .flatten()
        .filter(|line| !line.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
    }
}

/// A note attribute (`note_attributes[]`): checkout apps write the customer's VAT id here.
#[derive(Debug, Clone, Deserialize)]
pub struct NoteAttribute {
    /// Its name.
    pub name: String,
    /// Its value (Shopify sends strings; anything else is ignored).
    #[serde(default)]
    pub value: serde_json::Value,
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
    /// The customer's currency, when it differs from the shop's (`*_set.presentment_money`).
    #[serde(default)]
    pub presentment_currency: Option<String>,
    /// What the customer pays, as ordered.
    pub total_price: Dec,
    /// What the customer pays after edits and refunds; absent in older payloads.
    #[serde(default)]
    pub current_total_price: Option<Dec>,
    /// The same in both currencies.
    #[serde(default)]
    pub current_total_price_set: Option<MoneySet>,
    /// Tips (`0.00` when none).
    #[serde(default)]
    pub total_tip_received: Option<Dec>,
    /// Duties charged (null when none).
    #[serde(default)]
    pub current_total_duties_set: Option<MoneySet>,
    /// Whether the duties are inside the prices.
    #[serde(default)]
    pub duties_included: bool,
    /// Additional fees charged (null when none).
    #[serde(default)]
    pub current_total_additional_fees_set: Option<MoneySet>,
    /// Cash rounding of the payment: money received = total + this.
    #[serde(default)]
    pub total_cash_rounding_payment_adjustment_set: Option<MoneySet>,
    /// The order's discounts, for the positions' text.
    #[serde(default)]
    pub discount_applications: Vec<DiscountApplication>,
    /// Refunds already made (only whether there are any is read).
    #[serde(default)]
    pub refunds: Vec<serde_json::Value>,
    /// Payment transactions. Not part of Shopify's order webhook; an order read through the
    /// Admin API (reconciliation) carries them, and they are the only source of how much a gift
    /// card paid when another gateway paid the rest.
    #[serde(default)]
    pub transactions: Vec<Transaction>,
    /// Whether prices include tax.
    #[serde(default)]
    pub taxes_included: bool,
    /// The customer (absent on some guest checkouts).
    #[serde(default)]
    pub customer: Option<Customer>,
    /// Billing address.
    #[serde(default)]
    pub billing_address: Option<Address>,
    /// Shipping address (absent for digital goods and pick-up).
    #[serde(default)]
    pub shipping_address: Option<Address>,
    /// `web`, `pos`, …
    #[serde(default)]
    pub source_name: Option<String>,
    /// Extra checkout fields.
    #[serde(default)]
    pub note_attributes: Vec<NoteAttribute>,
    /// The gateways that took the money, e.g. `["shopify_payments"]`.
    #[serde(default)]
    pub payment_gateway_names: Vec<String>,
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
        "current_total_price",
        "current_total_price_set",
        "total_tip_received",
        "current_total_duties_set",
        "duties_included",
        "current_total_additional_fees_set",
        "total_cash_rounding_payment_adjustment_set",
        "discount_applications",
        "refunds",
        "transactions",
        "financial_status",
        "fulfillment_status",
        "total_price",
        "subtotal_price",
        "total_tax",
        "total_discounts",
        "taxes_included",
        "customer",
        "billing_address",
        "shipping_address",
        "source_name",
        "note_attributes",
        "payment_gateway_names",
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
        "shipping_address",
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

/// Where the document goes and under which tax rule: decided once per order (from the order,
/// see [`tax`]), kept on the order's row, and reused by its credit notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Treatment {
    /// The tax regime.
    pub regime: Regime,
    /// The recipient block printed on the document.
    pub address: String,
    /// The recipient's country (ISO), for `addressCountry`.
    pub address_country: String,
}

/// The invoice to create for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDraft {
    /// ISO currency.
    pub currency: String,
    /// Invoice date (the order's `processed_at`).
    pub date: DateTime<FixedOffset>,
    /// Delivery date (§ 14 Abs. 4 Nr. 6 UStG). Shopify knows when an order was paid, not when
    /// it ships (an invoice is issued at payment, before fulfilment): hookline takes the order's
    /// `processed_at`, the date the sale was concluded, as the date of supply.
    pub delivery_date: DateTime<FixedOffset>,
    /// Shown on the invoice: "Rechnung zu Bestellung #1001".
    pub header: String,
    /// The reference the customer sees (`customerInternalNote`, printed as "Referenz"), which
    /// is also how hookline finds the invoice again: see [`marker`].
    pub marker: String,
    /// Tax rule, recipient and country.
    pub treatment: Treatment,
    /// Prices are net (`true`) or gross.
    pub show_net: bool,
    /// Positions.
    pub positions: Vec<Position>,
    /// The total, equal to [`invoiced_total`].
    pub total: Decimal,
}

/// Why an order cannot become an invoice, or its payment cannot be booked. Each carries the
/// dead-letter reason it is filed under ([`MappingError::reason`]); the reasons are listed in
/// `docs/order-maths.md`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Our sum differs from what Shopify says the invoice is worth.
    #[error(
        "invoice total {computed} differs from Shopify's {shopify} (current_total_price without gift cards sold, with cash rounding)"
    )]
    AmountMismatch {
        /// What the positions add up to.
        computed: Decimal,
        /// `current_total_price` (else `total_price`) − gift cards sold + cash rounding.
        shopify: Decimal,
    },
    /// A line with a non-positive quantity.
    #[error("line item {0} has a quantity below 1")]
    BadQuantity(i64),
    /// The order fits no row of the tax table.
    #[error(transparent)]
    TaxRuleUndecidable(#[from] Undecidable),
    /// The documents cannot be issued in a currency the German VAT return accepts.
    #[error(
        "the shop's currency is {shop} (the customer paid in {presentment}): a German invoice must state its VAT in EUR, which the order does not carry"
    )]
    CurrencyUndecidable {
        /// `currency`.
        shop: String,
        /// `presentment_currency`.
        presentment: String,
    },
    /// A tip, whose VAT treatment depends on who keeps it.
    #[error(
        "the order carries a tip of {tip}: kept by the merchant it is taxable consideration at the rate of the supply, passed on to staff it is not the merchant's revenue; the order does not say which"
    )]
    TipUndecidable {
        /// `total_tip_received`.
        tip: Decimal,
    },
    /// Automatic booking could be wrong: a person decides.
    #[error("{0}")]
    NeedsReview(String),
}

impl MappingError {
    /// The dead-letter reason (`x-hookline-reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            MappingError::AmountMismatch { .. } | MappingError::BadQuantity(_) => "amount_mismatch",
            MappingError::TaxRuleUndecidable(_) => "tax_rule_undecidable",
            MappingError::CurrencyUndecidable { .. } => "currency_undecidable",
            MappingError::TipUndecidable { .. } => "tip_undecidable",
            MappingError::NeedsReview(_) => "needs_review",
        }
    }
}

/// The reference that identifies an order's invoice in sevDesk: `customerInternalNote`, which
/// sevDesk prints as "Referenz". It is what the customer knows (the order name) plus Shopify's
/// order id, which is unique across shops — harmless to show, and no internal marker or `gid://`
/// string on a customer's document. A search by it is always checked client-side (the exact
/// note, and the contact), never trusted.
pub fn marker(order_name: &str, order_id: i64) -> String {
    format!("Shopify-Bestellung {order_name} (ID {order_id})")
}

/// The order id in a reference made by [`marker`] or [`refund_marker`].
pub fn order_id_of(reference: &str) -> Option<i64> {
    let start = reference.find("(ID ")? + 4;
    let rest = &reference[start..];
    rest[..rest.find(')')?].parse().ok()
}

/// The facts the tax decision reads from an order.
pub fn tax_facts(order: &Order, line_rates: &[Decimal]) -> TaxFacts {
    let destination = order
        .shipping_address
        .as_ref()
        .and_then(|a| a.country_code.clone())
        .or_else(|| {
            order
                .billing_address
                .as_ref()
                .and_then(|a| a.country_code.clone())
        })
        .map(|c| c.trim().to_uppercase())
        .filter(|c| !c.is_empty());
    let vat_id = order
        .note_attributes
        .iter()
        .find(|a| {
            tax::VAT_ID_ATTRIBUTES
                .iter()
                .any(|n| a.name.trim().eq_ignore_ascii_case(n))
        })
        .and_then(|a| a.value.as_str())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let mut rates: Vec<Decimal> = line_rates.iter().map(|r| r.normalize()).collect();
    rates.sort();
    rates.dedup();
    TaxFacts {
        destination,
        vat_id,
        rates,
        pos: order.source_name.as_deref() == Some("pos"),
    }
}

/// Decides the order's treatment: its tax regime from [`tax::decide`], its recipient.
pub fn treatment_for(
    order: &Order,
    settings: TaxSettings,
    line_rates: &[Decimal],
) -> Result<Treatment, MappingError> {
    let facts = tax_facts(order, line_rates);
    let regime = tax::decide(settings, &facts)?;
    let recipient = order
        .billing_address
        .clone()
        .or_else(|| order.shipping_address.clone())
        .unwrap_or_default();
    let mut address = recipient.printed();
    if address.is_empty() {
        address = order.email.clone().unwrap_or_else(|| order.name.clone());
    }
    let address_country = recipient
        .country_code
        .clone()
        .or_else(|| facts.destination.clone())
        .unwrap_or_else(|| "DE".to_owned())
        .to_uppercase();
    Ok(Treatment {
        regime,
        address,
        address_country,
    })
}

fn percent(tax_lines: &[TaxLine]) -> Decimal {
    tax_lines.iter().map(|t| t.rate.0).sum::<Decimal>() * Decimal::ONE_HUNDRED
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The gateway Shopify names for gift-card payments.
pub const GIFT_CARD_GATEWAY: &str = "gift_card";

/// The shop-currency amount of a money set (zero when absent or null). The plain amount fields
/// (`price`, `total_price`, …) are in the shop's currency, and so is every amount read here.
fn shop_amount(set: Option<&MoneySet>) -> Decimal {
    set.map_or(Decimal::ZERO, |s| s.shop_money.amount.0)
}

/// Units still on the order: `current_quantity` (edits and refunds taken off), else `quantity`.
fn units_now(line: &LineItem) -> i64 {
    line.current_quantity.unwrap_or(line.quantity)
}

/// The part of `amount` (given for all `ordered` units) that falls on the `now` units left.
/// Shopify's line discounts and taxes are for the units ordered; after an edit removed some of
/// them, the share is taken pro rata and rounded to the cent (the total check decides).
fn share(amount: Decimal, now: i64, ordered: i64) -> Decimal {
    if now == ordered || ordered == 0 {
        amount
    } else {
        cents(amount * Decimal::from(now) / Decimal::from(ordered))
    }
}

/// The money of gift cards sold on the order (as they stand now): not revenue, not invoiced.
fn gift_cards_sold(order: &Order) -> Decimal {
    order
        .line_items
        .iter()
        .filter(|l| l.gift_card && units_now(l) > 0)
        .map(|l| {
            let now = units_now(l);
            let discount: Decimal = l.discount_allocations.iter().map(|d| d.amount.0).sum();
            let tax: Decimal = if order.taxes_included {
                Decimal::ZERO
            } else {
                l.tax_lines
                    .iter()
                    .filter_map(|t| t.price)
                    .map(|p| p.0)
                    .sum()
            };
            Decimal::from(now) * l.price.0 - share(discount, now, l.quantity)
                + share(tax, now, l.quantity)
        })
        .sum()
}

/// The cash rounding of the payment (`total_cash_rounding_payment_adjustment_set`).
fn cash_rounding(order: &Order) -> Decimal {
    shop_amount(order.total_cash_rounding_payment_adjustment_set.as_ref())
}

/// What the order's invoice is worth as Shopify sees it: `current_total_price` (else
/// `total_price`) without gift cards sold and with the cash rounding of the payment, in the
/// shop's currency. The invoice's positions must add up to it to the cent.
pub fn invoiced_total(order: &Order) -> Decimal {
    let now = order.current_total_price.unwrap_or(order.total_price).0;
    cents(now - gift_cards_sold(order) + cash_rounding(order))
}

/// The money to book on the invoice from the payment gateways' check account, and through which
/// gateways it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayMoney {
    /// The invoice total less what gift cards paid.
    pub amount: Decimal,
    /// The gateways that paid it (`gift_card` left out).
    pub gateways: Vec<String>,
    /// What gift cards paid of the invoice: a redeemed voucher, not money received now.
    pub gift_card: Decimal,
}

/// Splits the invoice's payment into gift cards and money (see `docs/order-maths.md`): a gift
/// card redeemed pays the invoice but brings no money in (the money came when it was sold).
///
/// Without a gift card everything is money; paid by gift cards only, nothing is. Gift card and
/// another gateway: the split comes from the order's successful `sale`/`capture` transactions,
/// which the order webhook does not carry — without them a person books it (`needs_review`).
pub fn gateway_money(order: &Order) -> Result<GatewayMoney, MappingError> {
    let invoiced = invoiced_total(order);
    let is_gift = |g: &str| g.eq_ignore_ascii_case(GIFT_CARD_GATEWAY);
    let gateways: Vec<String> = order
        .payment_gateway_names
        .iter()
        .filter(|g| !is_gift(g))
        .cloned()
        .collect();
    let redeemed = order.payment_gateway_names.iter().any(|g| is_gift(g));
    let gift_card = if !redeemed {
        Decimal::ZERO
    } else if gateways.is_empty() {
        invoiced
    } else {
        let taken: Vec<&Transaction> = order
            .transactions
            .iter()
            .filter(|t| matches!(t.kind.as_str(), "sale" | "capture") && t.status == "success")
            .collect();
        if taken.is_empty() {
            return Err(MappingError::NeedsReview(format!(
                "order {} was paid with a gift card and {}: how much each paid is not in the order webhook",
                order.name,
                gateways.join(" + ")
            )));
        }
        if let Some(t) = taken
            .iter()
            .find(|t| t.currency.as_deref().is_some_and(|c| c != order.currency))
        {
            return Err(MappingError::NeedsReview(format!(
                "order {}: a payment transaction is in {}, not the shop's {}",
                order.name,
                t.currency.as_deref().unwrap_or_default(),
                order.currency
            )));
        }
        taken
            .iter()
            .filter(|t| t.gateway.as_deref().is_some_and(is_gift))
            .map(|t| t.amount.0)
            .sum()
    };
    let amount = invoiced - gift_card;
    if amount < Decimal::ZERO {
        return Err(MappingError::NeedsReview(format!(
            "order {}: gift cards paid {gift_card}, more than the invoice's {invoiced}",
            order.name
        )));
    }
    Ok(GatewayMoney {
        amount,
        gateways: if amount.is_zero() { vec![] } else { gateways },
        gift_card,
    })
}

/// What an order event that arrives after its invoice exists means for it (the decision of
/// `docs/order-maths.md`, for the state machine to call): nothing when the order still comes to
/// what was invoiced less what credit notes took off; otherwise a person decides — an issued
/// invoice is never changed silently, and an edit that adds or removes goods after invoicing
/// needs a correction document the webhook cannot tell hookline how to issue.
pub fn edit_after_invoice(
    invoiced: Decimal,
    credited: Decimal,
    order: &Order,
) -> Result<(), MappingError> {
    let now = invoiced_total(order);
    if now == cents(invoiced - credited) {
        return Ok(());
    }
    Err(MappingError::NeedsReview(format!(
        "order {} changed after its invoice: invoiced {invoiced}, credited {credited}, Shopify now says {now}",
        order.name
    )))
}

/// One thing charged, before it is written as positions.
struct Charge {
    /// Text of the position.
    name: String,
    /// Text of its discount position.
    discount_name: String,
    /// Units.
    quantity: Decimal,
    /// Unit price as the order has it (net or gross).
    unit: Decimal,
    /// Taken off (same basis as `unit`).
    discount: Decimal,
    /// Percent.
    rate: Decimal,
    /// Shopify's tax on it after the discount, when known (net shops).
    tax: Option<Decimal>,
}

impl Charge {
    fn net(&self) -> Decimal {
        self.quantity * self.unit - self.discount
    }
}

fn discount_label(order: &Order, allocations: &[DiscountAllocation]) -> String {
    let mut labels: Vec<String> = allocations
        .iter()
        .filter_map(|a| a.discount_application_index)
        .filter_map(|i| order.discount_applications.get(i))
        .filter_map(|a| a.code.clone().or_else(|| a.title.clone()))
        .filter(|l| !l.trim().is_empty())
        .collect();
    labels.dedup();
    match labels.as_slice() {
        [one] => format!("Rabatt {one}"),
        _ => "Rabatt".to_owned(),
    }
}

fn shopify_tax(tax_lines: &[TaxLine]) -> Option<Decimal> {
    tax_lines
        .iter()
        .map(|t| t.price.map(|p| p.0))
        .sum::<Option<Decimal>>()
}

/// Whether sevDesk, summing net positions, arrives at Shopify's tax to the cent whichever way it
/// rounds: per rate on the sum, per position, or per unit. The published spec does not say which
/// (a position carries `priceTax` per unit and `sumTax` per position), so net positions are sent
/// only when all three agree with each other and with Shopify's per-line tax.
fn net_is_exact(charges: &[Charge]) -> bool {
    let mut groups: BTreeMap<Decimal, Vec<&Charge>> = BTreeMap::new();
    for c in charges {
        groups.entry(c.rate.normalize()).or_default().push(c);
    }
    groups.iter().all(|(rate, group)| {
        let r = *rate / Decimal::ONE_HUNDRED;
        let per_rate = cents(group.iter().map(|c| c.net()).sum::<Decimal>() * r);
        let per_position: Decimal = group
            .iter()
            .map(|c| cents(c.quantity * c.unit * r) - cents(c.discount * r))
            .sum();
        let per_unit: Decimal = group
            .iter()
            .map(|c| c.quantity * cents(c.unit * r) - cents(c.discount * r))
            .sum();
        let shopify = group.iter().map(|c| c.tax).sum::<Option<Decimal>>();
        per_rate == per_position && per_rate == per_unit && shopify.is_none_or(|t| t == per_rate)
    })
}

/// Positions as the order states its prices: a position per charge, a negative one per discount.
fn stated_positions(charges: &[Charge]) -> Vec<Position> {
    let mut positions = vec![];
    for c in charges {
        positions.push(Position {
            name: c.name.clone(),
            quantity: c.quantity,
            price: c.unit,
            tax_rate: c.rate,
        });
        if !c.discount.is_zero() {
            positions.push(Position {
                name: c.discount_name.clone(),
                quantity: Decimal::ONE,
                price: -c.discount,
                tax_rate: c.rate,
            });
        }
    }
    positions
}

/// Gross positions for a net shop whose tax sevDesk could round differently: each charge with
/// Shopify's own tax added (its discount taken off), so the document's total is the sum of the
/// positions whichever way sevDesk rounds. The unit price stays when the gross amount divides by
/// the units to the cent; otherwise the position is the line's amount, its units in the text.
fn gross_positions(charges: &[Charge]) -> Vec<Position> {
    charges
        .iter()
        .map(|c| {
            let net = c.net();
            let gross = net
                + c.tax
                    .unwrap_or_else(|| cents(net * c.rate / Decimal::ONE_HUNDRED));
            let name = if c.discount.is_zero() {
                c.name.clone()
            } else {
                format!(
                    "{} ({} {} netto abgezogen)",
                    c.name, c.discount_name, c.discount
                )
            };
            let unit = gross / c.quantity;
            if unit == cents(unit) {
                Position {
                    name,
                    quantity: c.quantity,
                    price: cents(unit),
                    tax_rate: c.rate,
                }
            } else {
                Position {
                    name: format!("{} × {name}", c.quantity.normalize()),
                    quantity: Decimal::ONE,
                    price: gross,
                    tax_rate: c.rate,
                }
            }
        })
        .collect()
}

/// Maps `order` to the invoice to create, or says why it cannot. The decisions, with their
/// reasons, are in `docs/order-maths.md`.
pub fn invoice_for(order: &Order, settings: TaxSettings) -> Result<InvoiceDraft, MappingError> {
    if let Some(tip) = order.total_tip_received.filter(|t| !t.0.is_zero()) {
        return Err(MappingError::TipUndecidable { tip: tip.0 });
    }
    if !order.refunds.is_empty() {
        return Err(MappingError::NeedsReview(format!(
            "order {} was refunded before it was invoiced: its current figures no longer show what was sold",
            order.name
        )));
    }
    let taxes_included = order.taxes_included;
    let mut charges = vec![];
    for line in &order.line_items {
        let now = units_now(line);
        if line.quantity < 1 || now < 0 {
            return Err(MappingError::BadQuantity(line.id));
        }
        if now == 0 || line.gift_card {
            continue;
        }
        let name = match &line.sku {
            Some(sku) if !sku.is_empty() => format!("{} ({sku})", line.title),
            _ => line.title.clone(),
        };
        let discount: Decimal = line.discount_allocations.iter().map(|d| d.amount.0).sum();
        charges.push(Charge {
            discount_name: format!(
                "{}: {}",
                discount_label(order, &line.discount_allocations),
                line.title
            ),
            name,
            quantity: Decimal::from(now),
            unit: line.price.0,
            discount: share(discount, now, line.quantity),
            rate: percent(&line.tax_lines),
            tax: shopify_tax(&line.tax_lines).filter(|_| now == line.quantity),
        });
    }
    for shipping in order.shipping_lines.iter().filter(|s| !s.is_removed) {
        let discount: Decimal = shipping
            .discount_allocations
            .iter()
            .map(|d| d.amount.0)
            .sum();
        charges.push(Charge {
            name: format!("Versand: {}", shipping.title),
            discount_name: format!(
                "{}: Versand {}",
                discount_label(order, &shipping.discount_allocations),
                shipping.title
            ),
            quantity: Decimal::ONE,
            unit: shipping.price.0,
            discount,
            rate: percent(&shipping.tax_lines),
            tax: shopify_tax(&shipping.tax_lines),
        });
    }
    if charges.is_empty() {
        return Err(MappingError::NeedsReview(format!(
            "order {} sells nothing but gift cards: a multi-purpose voucher (§ 3 Abs. 15 UStG) is no supply, so there is nothing to invoice; its money is a liability until redeemed",
            order.name
        )));
    }
    // Charges no tax line covers: duties and additional fees (tax free with the export they
    // belong to, checked below), and the cash rounding of the payment.
    let duties = if order.duties_included {
        Decimal::ZERO
    } else {
        shop_amount(order.current_total_duties_set.as_ref())
    };
    let fees = shop_amount(order.current_total_additional_fees_set.as_ref());
    let rounding = cash_rounding(order);
    if rounding.abs() >= Decimal::new(10, 2) {
        return Err(MappingError::NeedsReview(format!(
            "order {}: a cash rounding of {rounding} is no rounding",
            order.name
        )));
    }
    for (amount, name) in [
        (duties, "Zölle und Einfuhrabgaben"),
        (fees, "Zusatzgebühren"),
        (rounding, "Rundungsdifferenz Barzahlung"),
    ] {
        if !amount.is_zero() {
            charges.push(Charge {
                name: name.to_owned(),
                discount_name: String::new(),
                quantity: Decimal::ONE,
                unit: amount,
                discount: Decimal::ZERO,
                rate: Decimal::ZERO,
                tax: Some(Decimal::ZERO),
            });
        }
    }
    let (show_net, positions) = if taxes_included {
        (false, stated_positions(&charges))
    } else if net_is_exact(&charges) {
        (true, stated_positions(&charges))
    } else {
        (false, gross_positions(&charges))
    };
    let total = invoice_total(&positions, show_net);
    let expected = invoiced_total(order);
    if total != expected {
        return Err(MappingError::AmountMismatch {
            computed: total,
            shopify: expected,
        });
    }
    let rates: Vec<Decimal> = positions.iter().map(|p| p.tax_rate).collect();
    let treatment = treatment_for(order, settings, &rates)?;
    if (!duties.is_zero() || !fees.is_zero()) && treatment.regime != Regime::Export {
        return Err(Undecidable {
            why: format!(
                "duties ({duties}) or additional fees ({fees}) outside an export: the order carries no tax for them"
            ),
            facts: tax_facts(order, &rates).to_string(),
        }
        .into());
    }
    if order.currency != "EUR" {
        return Err(MappingError::CurrencyUndecidable {
            shop: order.currency.clone(),
            presentment: order
                .presentment_currency
                .clone()
                .unwrap_or_else(|| order.currency.clone()),
        });
    }
    let date = order.processed_at.unwrap_or(order.created_at);
    let header = match order.presentment_currency.as_deref() {
        Some(paid_in) if paid_in != order.currency => format!(
            "Rechnung zu Bestellung {} (Beträge in {}, bezahlt in {paid_in})",
            order.name, order.currency
        ),
        _ => format!("Rechnung zu Bestellung {}", order.name),
    };
    Ok(InvoiceDraft {
        currency: order.currency.clone(),
        date,
        delivery_date: date,
        header,
        marker: marker(&order.name, order.id),
        treatment,
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
    /// Shipping refunds (before API 2024-10) and discrepancies between items and money.
    #[serde(default)]
    pub order_adjustments: Vec<OrderAdjustment>,
    /// Refunded shipping, since API 2024-10.
    #[serde(default)]
    pub refund_shipping_lines: Vec<RefundShippingLine>,
}

/// Money in the shop's and the customer's currency (`*_set`).
#[derive(Debug, Clone, Deserialize)]
pub struct MoneySet {
    /// In the shop's currency, which the order's documents are in.
    pub shop_money: Money,
    /// In the currency the customer paid in.
    #[serde(default)]
    pub presentment_money: Option<Money>,
}

/// An amount.
#[derive(Debug, Clone, Deserialize)]
pub struct Money {
    /// E.g. `"4.90"`.
    pub amount: Dec,
    /// E.g. `EUR`.
    #[serde(default)]
    pub currency_code: Option<String>,
}

/// A refunded shipping line (`refund_shipping_lines[]`, API 2024-10 and later).
#[derive(Debug, Clone, Deserialize)]
pub struct RefundShippingLine {
    /// The shipping refunded, before tax.
    pub subtotal_amount_set: MoneySet,
    /// Its tax.
    #[serde(default)]
    pub tax_amount_set: Option<MoneySet>,
    /// The order's shipping line.
    #[serde(default)]
    pub shipping_line: Option<RefundedShipping>,
}

/// The shipping line a refunded shipping line refers to.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundedShipping {
    /// E.g. `Standard`.
    #[serde(default)]
    pub title: Option<String>,
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

/// A payment transaction: of a refund, or of an order read through the Admin API.
#[derive(Debug, Clone, Deserialize)]
pub struct Transaction {
    /// `refund` for money given back; `sale` or `capture` for money taken.
    pub kind: String,
    /// `success`, `pending`, `failure`, `error`.
    pub status: String,
    /// The amount.
    pub amount: Dec,
    /// The gateway the money moved through, e.g. `shopify_payments`.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The transaction's currency.
    #[serde(default)]
    pub currency: Option<String>,
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
    /// `shipping_refund` or `refund_discrepancy`. Shopify deprecated the field for removal:
    /// absent, the adjustment is a discrepancy when it is positive (less money than the items'
    /// worth) and a shipping refund when negative.
    #[serde(default)]
    pub kind: Option<String>,
}

impl OrderAdjustment {
    /// What it is, from `kind` or, without it, from its sign.
    pub fn kind(&self) -> &str {
        match self.kind.as_deref() {
            Some(kind) => kind,
            None if self.amount.0 > Decimal::ZERO => "refund_discrepancy",
            None => "shipping_refund",
        }
    }
}

/// The credit note to create for a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditNoteDraft {
    /// ISO currency (the order's).
    pub currency: String,
    /// The refund's `processed_at`.
    pub date: DateTime<FixedOffset>,
    /// Shown on the credit note: "Gutschrift zu Bestellung #1001".
    pub header: String,
    /// The reference the customer sees and hookline searches by: see [`refund_marker`].
    pub marker: String,
    /// Gross positions, each `quantity 1` so every amount is exactly Shopify's.
    pub positions: Vec<Position>,
    /// The money refunded, equal to the positions' sum.
    pub total: Decimal,
}

/// The reference of a refund's credit note: the order's reference (see [`marker`]) and
/// Shopify's refund id.
pub fn refund_marker(order_name: &str, order_id: i64, refund_id: i64) -> String {
    format!("Erstattung {refund_id} zu {}", marker(order_name, order_id))
}

/// The position rate, among those `regime` allows, whose tax on `net` is Shopify's `tax` to the
/// cent. A refunded shipping line carries amounts, not a rate: 2.53 tax on 13.33 "implies"
/// 18.98 %, which no tax rule accepts, while 19 % of 13.33 is 2.53 exactly. Only a rate that
/// reproduces the cents is taken; none is an undecidable treatment, never a guess.
pub fn rate_for(regime: &Regime, net: Decimal, tax: Decimal) -> Option<Decimal> {
    if tax.is_zero() {
        return regime.allows(Decimal::ZERO).then_some(Decimal::ZERO);
    }
    [
        "0", "2.1", "3", "4", "4.8", "5", "5.5", "6", "7", "8", "9", "9.5", "10", "11", "12", "13",
        "13.5", "14", "17", "18", "19", "20", "21", "22", "23", "24", "25", "25.5", "27",
    ]
    .iter()
    .filter_map(|r| r.parse::<Decimal>().ok())
    .filter(|r| regime.allows(*r))
    .find(|r| cents(net * *r / Decimal::ONE_HUNDRED) == cents(tax))
}

/// Whether money of the refund is still on its way (a `refund` transaction `pending`): its credit
/// note waits, instead of the refund being recorded as one that moved no money.
pub fn refund_money_pending(refund: &Refund) -> bool {
    refund
        .transactions
        .iter()
        .any(|t| t.kind == "refund" && t.status == "pending")
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
    order_name: &str,
    currency: &str,
    regime: &Regime,
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
        let rate = percent(&item.tax_lines);
        if !regime.allows(rate) {
            return Err(Undecidable {
                why: format!(
                    "refunded line at {}% under the invoice's tax rule {}",
                    rate.normalize(),
                    regime.rule_id()
                ),
                facts: format!("refund {} of order {order_name}", refund.id),
            }
            .into());
        }
        positions.push(Position {
            name: format!("Erstattung: {} × {name}", line.quantity),
            quantity: Decimal::ONE,
            price: cents(line.subtotal.0 + line.total_tax.0),
            tax_rate: rate,
        });
    }
    // Since API 2024-10 refunded shipping is in `refund_shipping_lines`; a payload that also
    // carries the old shipping adjustment would count the shipping twice, so the new shape wins.
    for line in &refund.refund_shipping_lines {
        let net = line.subtotal_amount_set.shop_money.amount.0;
        let tax = line
            .tax_amount_set
            .as_ref()
            .map_or(Decimal::ZERO, |t| t.shop_money.amount.0);
        let rate = rate_for(regime, net, tax).ok_or_else(|| Undecidable {
            why: format!(
                "no rate of tax rule {} gives {tax} tax on {net} of refunded shipping",
                regime.rule_id()
            ),
            facts: format!("refund {}", refund.id),
        })?;
        let title = line
            .shipping_line
            .as_ref()
            .and_then(|s| s.title.clone())
            .map_or_else(
                || "Erstattung: Versand".to_owned(),
                |t| format!("Erstattung: Versand {t}"),
            );
        positions.push(Position {
            name: title,
            quantity: Decimal::ONE,
            price: cents(net + tax),
            tax_rate: rate,
        });
    }
    let shipping_in_new_shape = !refund.refund_shipping_lines.is_empty();
    for adjustment in &refund.order_adjustments {
        if shipping_in_new_shape && adjustment.kind() == "shipping_refund" {
            continue;
        }
        let (amount, tax) = (adjustment.amount.0, adjustment.tax_amount.0);
        let rate = rate_for(regime, amount.abs(), tax.abs()).ok_or_else(|| Undecidable {
            why: format!(
                "no rate of tax rule {} gives {tax} tax on {amount}",
                regime.rule_id()
            ),
            facts: format!("refund {} adjustment {}", refund.id, adjustment.kind()),
        })?;
        let name = match adjustment.kind() {
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
    Ok(Some(CreditNoteDraft {
        currency: currency.to_owned(),
        date: refund.processed_at.unwrap_or(refund.created_at),
        header: format!("Gutschrift zu Bestellung {order_name}"),
        marker: refund_marker(order_name, refund.order_id, refund.id),
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

    const PLAIN: TaxSettings = TaxSettings {
        small_business: false,
        oss: false,
    };

    /// Orders written inline ship to Berlin unless they say otherwise.
    fn in_germany(json: &str) -> String {
        json.replacen(
            "{",
            r#"{"shipping_address":{"first_name":"Jön","last_name":"Müller","address1":"Hauptstraße 1","zip":"10115","city":"Berlin","country_code":"DE"},"#,
            1,
        )
    }

    #[test]
    fn the_sample_order_becomes_a_net_invoice_of_119_eur() {
        let draft = invoice_for(&order(SAMPLE), PLAIN).unwrap();
        assert!(draft.show_net);
        assert_eq!(draft.currency, "EUR");
        assert_eq!(draft.total, dec("119.00"));
        assert_eq!(
            draft.marker,
            "Shopify-Bestellung #1001 (ID 820982911946154508)"
        );
        assert_eq!(order_id_of(&draft.marker), Some(820982911946154508));
        assert_eq!(draft.header, "Rechnung zu Bestellung #1001");
        assert!(!draft.header.contains("gid://") && !draft.marker.contains("hookline"));
        assert_eq!(draft.treatment.regime, Regime::Domestic);
        assert_eq!(draft.treatment.address_country, "DE");
        assert_eq!(
            draft.treatment.address,
            "Jön Müller\nHauptstraße 1\n10115 Berlin\nDE"
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

    /// Hand-computed, as Shopify computes it: per line and rounded per line. Socks 3 × 9.99 =
    /// 29.97 − 2.00 discount = 27.97 at 19 % → 5.31 (5.3143); book 12.50 at 7 % → 0.88 (0.875);
    /// shipping 4.90 at 19 % → 0.93 (0.931). Total 27.97 + 5.31 + 12.50 + 0.88 + 4.90 + 0.93 =
    /// 52.49. sevDesk summing the 19 % net (32.87) would get 6.25 tax, a cent more than Shopify's
    /// 6.24: the positions go gross, each with Shopify's tax in it, and add up to 52.49.
    #[test]
    fn several_tax_rates_discounts_and_shipping_add_up_to_the_cent() {
        let json = r##"{"id":1,"name":"#2","created_at":"2026-11-20T10:15:02+01:00","currency":"EUR","total_price":"52.49","taxes_included":false,
          "line_items":[
            {"id":10,"title":"Socks","quantity":3,"price":"9.99","tax_lines":[{"rate":0.19,"price":"5.31"}],"discount_allocations":[{"amount":"2.00"}]},
            {"id":11,"title":"Book","quantity":1,"price":"12.50","tax_lines":[{"rate":0.07,"price":"0.88"}]}],
          "shipping_lines":[{"title":"DHL","price":"4.90","tax_lines":[{"rate":0.19,"price":"0.93"}]}]}"##;
        let draft = invoice_for(&order(&in_germany(json)), PLAIN).unwrap();
        assert!(!draft.show_net);
        assert_eq!(draft.total, dec("52.49"));
        let names: Vec<&str> = draft.positions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "3 × Socks (Rabatt: Socks 2.00 netto abgezogen)",
                "Book",
                "Versand: DHL"
            ]
        );
        assert_eq!(draft.positions[0].price, dec("33.28"));
        assert_eq!(draft.positions[1].price, dec("13.38"));
        assert_eq!(draft.positions[1].tax_rate, dec("7"));
        // A line tax that does not add up to Shopify's total is refused, not spread.
        let per_rate = json.replace(r#""price":"5.31""#, r#""price":"5.32""#);
        assert!(matches!(
            invoice_for(&order(&in_germany(&per_rate)), PLAIN),
            Err(MappingError::AmountMismatch { .. })
        ));
    }

    #[test]
    fn gross_prices_stay_gross() {
        let json = r##"{"id":2,"name":"#3","created_at":"2026-11-20T10:15:02+01:00","currency":"EUR","total_price":"64.85","taxes_included":true,
          "line_items":[{"id":10,"title":"Mug","quantity":3,"price":"19.95","tax_lines":[{"rate":0.19,"price":"9.56"}]}],
          "shipping_lines":[{"title":"Post","price":"5.00","tax_lines":[]}]}"##;
        let draft = invoice_for(&order(&in_germany(json)), PLAIN).unwrap();
        assert!(!draft.show_net);
        assert_eq!(draft.total, dec("64.85")); // 3 × 19.95 + 5.00
        assert_eq!(draft.positions[0].tax_rate, dec("19"));
        assert_eq!(draft.positions[1].tax_rate, dec("0"));
    }

    /// Swiss VAT (8.1 %) collected on a sale to Switzerland fits no German tax rule: an export
    /// is tax free, and sevDesk refuses 8.1 % under every rule. Dead-lettered with the facts.
    #[test]
    fn swiss_vat_on_a_sale_to_switzerland_is_undecidable() {
        let json = r##"{"id":2,"name":"#3","created_at":"2026-11-20T10:15:02+01:00","currency":"CHF","total_price":"64.85","taxes_included":true,
          "shipping_address":{"country_code":"CH","city":"Zürich"},
          "line_items":[{"id":10,"title":"Mug","quantity":3,"price":"19.95","tax_lines":[{"rate":0.081,"price":"4.48"}]}],
          "shipping_lines":[{"title":"Post","price":"5.00","tax_lines":[]}]}"##;
        match invoice_for(&order(json), PLAIN) {
            Err(MappingError::TaxRuleUndecidable(u)) => {
                assert!(
                    u.facts.contains("destination CH") && u.facts.contains("8.1%"),
                    "{u}"
                )
            }
            other => panic!("expected tax_rule_undecidable, got {other:?}"),
        }
    }

    #[test]
    fn an_oss_sale_to_austria_names_its_country() {
        let json = r##"{"id":3,"name":"#4","created_at":"2026-11-20T10:15:02+01:00","currency":"EUR","total_price":"24.00","taxes_included":false,
          "shipping_address":{"first_name":"Anna","last_name":"Berger","address1":"Ring 1","zip":"1010","city":"Wien","country_code":"AT"},
          "line_items":[{"id":10,"title":"Mug","quantity":1,"price":"20.00","tax_lines":[{"rate":0.2}]}]}"##;
        let oss = TaxSettings {
            small_business: false,
            oss: true,
        };
        let draft = invoice_for(&order(json), oss).unwrap();
        assert_eq!(
            draft.treatment.regime,
            Regime::OneStopShop {
                country: "AT".into()
            }
        );
        assert_eq!(draft.treatment.address_country, "AT");
        assert!(
            invoice_for(&order(json), PLAIN).is_err(),
            "20 % is not German VAT"
        );
    }

    #[test]
    fn a_total_that_does_not_add_up_is_refused() {
        let json = SAMPLE.replace(r#""total_price":"119.00""#, r#""total_price":"119.01""#);
        assert_eq!(
            invoice_for(&order(&json), PLAIN),
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
        let draft = credit_note_for("#1001", "EUR", &Regime::Domestic, &refund(REFUND))
            .unwrap()
            .unwrap();
        assert_eq!(draft.total, dec("29.75"));
        assert_eq!(
            draft.marker,
            "Erstattung 929361462 zu Shopify-Bestellung #1001 (ID 820982911946154508)"
        );
        assert_eq!(order_id_of(&draft.marker), Some(820982911946154508));
        assert_eq!(draft.header, "Gutschrift zu Bestellung #1001");
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

    /// Shipping 4.90 + 0.93 tax refunded with the socks: 29.75 + 5.83 = 35.58. The amounts imply
    /// 18.98 %, which sevDesk refuses; 19 % of 4.90 is 0.93 to the cent, so the position is 19 %.
    #[test]
    fn a_shipping_refund_takes_the_allowed_rate_that_reproduces_its_tax() {
        let r = with_adjustment(
            "35.58",
            r#"{"amount": "-4.90", "tax_amount": "-0.93", "kind": "shipping_refund"}"#,
        );
        let draft = credit_note_for("#1", "EUR", &Regime::Domestic, &r)
            .unwrap()
            .unwrap();
        assert_eq!(draft.total, dec("35.58"));
        assert_eq!(
            draft.positions[1],
            Position {
                name: "Erstattung: Versand".into(),
                quantity: dec("1"),
                price: dec("5.83"),
                tax_rate: dec("19")
            }
        );
        // Under an export invoice no rate but 0 is allowed: tax on the refund cannot be placed.
        assert!(matches!(
            credit_note_for("#1", "EUR", &Regime::Export, &r),
            Err(MappingError::TaxRuleUndecidable(_))
        ));
    }

    /// The API 2024-10 shape: refunded shipping in `refund_shipping_lines`, 4.90 + 0.93 tax.
    fn with_shipping_line(amount: &str, adjustments: &str) -> Refund {
        refund(
            &REFUND
                .replace(r#""amount": "29.75""#, &format!(r#""amount": "{amount}""#))
                .replace(
                    r#""order_adjustments": []"#,
                    &format!(
                        r#""order_adjustments": [{adjustments}], "refund_shipping_lines": [{{"id": 1, "shipping_line_id": 2,
                          "subtotal_amount_set": {{"shop_money": {{"amount": "4.90", "currency_code": "EUR"}}, "presentment_money": {{"amount": "4.90", "currency_code": "EUR"}}}},
                          "tax_amount_set": {{"shop_money": {{"amount": "0.93", "currency_code": "EUR"}}, "presentment_money": {{"amount": "0.93", "currency_code": "EUR"}}}},
                          "shipping_line": {{"id": 2, "title": "DHL", "price": "4.90"}}}}]"#
                    ),
                ),
        )
    }

    #[test]
    fn refunded_shipping_in_the_2024_10_shape_is_one_position() {
        let r = with_shipping_line("35.58", "");
        let draft = credit_note_for("#1", "EUR", &Regime::Domestic, &r)
            .unwrap()
            .unwrap();
        assert_eq!(draft.total, dec("35.58"));
        assert_eq!(
            draft.positions[1],
            Position {
                name: "Erstattung: Versand DHL".into(),
                quantity: dec("1"),
                price: dec("5.83"),
                tax_rate: dec("19")
            }
        );
    }

    #[test]
    fn shipping_in_both_shapes_is_counted_once() {
        let r = with_shipping_line(
            "35.58",
            r#"{"amount": "-4.90", "tax_amount": "-0.93", "kind": "shipping_refund"}"#,
        );
        let draft = credit_note_for("#1", "EUR", &Regime::Domestic, &r)
            .unwrap()
            .unwrap();
        assert_eq!(draft.positions.len(), 2);
        assert_eq!(draft.total, dec("35.58"));
    }

    #[test]
    fn an_adjustment_without_kind_is_read_from_its_sign() {
        let r = with_adjustment("25.00", r#"{"amount": "4.75", "tax_amount": "0.00"}"#);
        let draft = credit_note_for("#1", "EUR", &Regime::Domestic, &r)
            .unwrap()
            .unwrap();
        assert_eq!(draft.positions[1].name, "Erstattung: Differenz");
        let r = with_adjustment("35.58", r#"{"amount": "-4.90", "tax_amount": "-0.93"}"#);
        let draft = credit_note_for("#1", "EUR", &Regime::Domestic, &r)
            .unwrap()
            .unwrap();
        assert_eq!(draft.positions[1].name, "Erstattung: Versand");
    }

    #[test]
    fn pending_refund_money_is_waited_for() {
        let mut r = refund(REFUND);
        assert!(!refund_money_pending(&r));
        r.transactions[0].status = "pending".into();
        assert!(refund_money_pending(&r));
    }

    #[test]
    fn a_restock_without_money_needs_no_credit_note_and_failed_transactions_do_not_count() {
        let mut r = refund(REFUND);
        r.transactions[0].status = "failure".into();
        assert_eq!(
            credit_note_for("#1", "EUR", &Regime::Domestic, &r),
            Ok(None)
        );
        r.transactions.clear();
        assert_eq!(
            credit_note_for("#1", "EUR", &Regime::Domestic, &r),
            Ok(None)
        );
    }

    /// A refund of 25.00 for items worth 29.75: Shopify adds a discrepancy of +4.75, which the
    /// credit note shows as a position of −4.75.
    #[test]
    fn a_discrepancy_between_items_and_money_is_its_own_position() {
        let r = with_adjustment(
            "25.00",
            r#"{"amount": "4.75", "tax_amount": "0.00", "kind": "refund_discrepancy"}"#,
        );
        let draft = credit_note_for("#1", "EUR", &Regime::Domestic, &r)
            .unwrap()
            .unwrap();
        assert_eq!(draft.total, dec("25.00"));
        assert_eq!(draft.positions[1].name, "Erstattung: Differenz");
        assert_eq!(draft.positions[1].price, dec("-4.75"));
        assert_eq!(draft.positions[1].tax_rate, dec("0"));
    }

    #[test]
    fn money_that_the_items_do_not_explain_is_refused() {
        let json = REFUND.replace(r#""amount": "29.75""#, r#""amount": "40.00""#);
        assert_eq!(
            credit_note_for("#1", "EUR", &Regime::Domestic, &refund(&json)),
            Err(MappingError::AmountMismatch {
                computed: dec("29.75"),
                shopify: dec("40.00")
            })
        );
    }

    /// The hook for an order event after its invoice: unchanged (refunds accounted for) is fine,
    /// anything else is for a person, with both figures.
    #[test]
    fn an_order_changed_after_its_invoice_needs_review() {
        let sample = order(SAMPLE);
        assert_eq!(
            edit_after_invoice(dec("119.00"), Decimal::ZERO, &sample),
            Ok(())
        );
        let refunded = order(&SAMPLE.replace(
            r#""total_price":"119.00""#,
            r#""total_price":"119.00","current_total_price":"89.25""#,
        ));
        assert_eq!(
            edit_after_invoice(dec("119.00"), dec("29.75"), &refunded),
            Ok(())
        );
        let edited = edit_after_invoice(dec("119.00"), Decimal::ZERO, &refunded).unwrap_err();
        assert_eq!(edited.reason(), "needs_review");
        assert!(edited.to_string().contains("119.00") && edited.to_string().contains("89.25"));
    }

    #[test]
    fn gift_card_money_in_another_currency_is_not_split_on_a_guess() {
        let json = SAMPLE.replace(
            r#""total_price":"119.00""#,
            r#""total_price":"119.00","payment_gateway_names":["gift_card","paypal"],
              "transactions":[{"kind":"sale","status":"success","amount":"20.00","gateway":"gift_card","currency":"USD"}]"#,
        );
        let e = gateway_money(&order(&json)).unwrap_err();
        assert_eq!(e.reason(), "needs_review");
        let json = json.replace(r#""currency":"USD""#, r#""currency":"EUR""#);
        let money = gateway_money(&order(&json)).unwrap();
        assert_eq!(
            (money.amount, money.gift_card, money.gateways),
            (dec("99.00"), dec("20.00"), vec!["paypal".to_owned()])
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
