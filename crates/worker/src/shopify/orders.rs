//! Orders and refunds read through the GraphQL Admin API, and their mapping to the payloads the
//! orders domain already parses.
//!
//! **One parser.** The orders domain reads orders and refunds in the REST/webhook shape
//! (`domains::orders::mapping`). Rather than teaching it a second shape, an order or refund read
//! here is mapped — by pure functions, [`order_payload`] and [`refund_payload`] — to exactly the
//! fields of that shape the domain reads, and then goes through the same parsing, tax decision
//! and mapping as a webhook: a test feeds a webhook and its GraphQL equivalent through the domain
//! and compares the invoices and credit notes.
//!
//! **Three queries, because of cost.** A query may request at most 1000 points, and a connection
//! costs its `first` times its node: one query listing 250 orders with their lines, shipping
//! lines and refunds (each with lines, transactions, shipping) would be requested at several
//! times the limit. So the listing ([`LIST_ORDERS`]) asks only what decides whether an order is
//! behind (status, cancellation, refund ids; about 2 points per order), and only the orders and
//! refunds that are behind are read in full ([`ORDER`], [`REFUND`]), one each.
//!
//! Mapping facts (Shopify's GraphQL vs. REST): ids are `gid://shopify/Order/123` → `123`; money
//! is `*Set { shopMoney { amount currencyCode } }`, a decimal *string* such as `"119.0"` (kept as
//! the string it is: the domain reads decimals from text); enums are upper case
//! (`displayFinancialStatus: PARTIALLY_REFUNDED` → `financial_status: "partially_refunded"`,
//! transaction `kind: REFUND, status: SUCCESS` → `"refund"`, `"success"`); a line's `quantity`
//! is what was ordered and `currentQuantity` what is left after edits and removals (the invoice,
//! issued for the sale, takes `quantity`; refunds are their own credit notes); refunds have no
//! `processedAt` (the credit note is dated `createdAt`); order adjustments have no `kind` in
//! stable versions (the domain reads it from the sign, and since 2024-10 refunded shipping is in
//! `refundShippingLines`).
//!
//! The order's current figures, as the domain checks them: `currentTotalPriceSet`,
//! `presentmentCurrencyCode`, `totalTipReceivedSet`, `currentTotalDutiesSet` (null without
//! duties), `dutiesIncluded`, `currentTotalAdditionalFeesSet`, `totalCashRoundingAdjustment {
//! paymentSet }` (REST's `total_cash_rounding_payment_adjustment_set`), `refunds { id }` (only
//! whether there are any), `LineItem.isGiftCard`, `ShippingLine.isRemoved` — removed shipping
//! lines are returned only with `shippingLines(includeRemovals: true)`. `discountApplications`
//! is a connection of an interface: `code` is on `DiscountCodeApplication`, `title` on the
//! automatic, manual and script ones (inline fragments); REST's list is in `index` order, which
//! is what an allocation's `discountApplication { index }` points to. `Order.transactions`,
//! which the webhook does not carry, tells how much a gift card paid; each is mapped in its own
//! currency (`amountSet.presentmentMoney`), as REST's `amount` and `currency` are.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::graphql::gid_id;

/// Line items read per order query; an order with more is read in several.
pub const LINE_ITEMS_PER_QUERY: u32 = 50;

/// The order's transactions [`ORDER`] reads (`transactions(first: 50)`, a list without
/// `pageInfo`): an order with as many may have more, and is not mapped from a partial list.
pub const TRANSACTIONS_PER_QUERY: usize = 50;

/// The listing: what decides whether an order is behind. `$query` is [`updated_since`].
pub const LIST_ORDERS: &str = r#"query ReconcileOrders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      updatedAt
      displayFinancialStatus
      cancelledAt
      refunds { id }
    }
  }
}"#;

/// One order in full: every field the orders domain reads; its lines paged by `$linesAfter`.
pub const ORDER: &str = r#"query ReconcileOrder($id: ID!, $lines: Int!, $linesAfter: String) {
  order(id: $id) {
    id
    name
    email
    createdAt
    updatedAt
    processedAt
    cancelledAt
    cancelReason
    currencyCode
    presentmentCurrencyCode
    displayFinancialStatus
    taxesIncluded
    dutiesIncluded
    sourceName
    paymentGatewayNames
    totalPriceSet { shopMoney { amount currencyCode } }
    subtotalPriceSet { shopMoney { amount currencyCode } }
    totalTaxSet { shopMoney { amount currencyCode } }
    currentTotalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
    totalTipReceivedSet { shopMoney { amount currencyCode } }
    currentTotalDutiesSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
    currentTotalAdditionalFeesSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
    totalCashRoundingAdjustment { paymentSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } } }
    discountApplications(first: 20) {
      pageInfo { hasNextPage endCursor }
      nodes {
        index
        ... on DiscountCodeApplication { code }
        ... on AutomaticDiscountApplication { title }
        ... on ManualDiscountApplication { title }
        ... on ScriptDiscountApplication { title }
      }
    }
    refunds(first: 1) { id }
    transactions(first: 50) { kind status gateway amountSet { presentmentMoney { amount currencyCode } } }
    customer { id firstName lastName defaultEmailAddress { emailAddress } }
    billingAddress { firstName lastName company address1 address2 zip city countryCodeV2 }
    shippingAddress { firstName lastName company address1 address2 zip city countryCodeV2 }
    customAttributes { key value }
    lineItems(first: $lines, after: $linesAfter) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id
        title
        quantity
        currentQuantity
        sku
        isGiftCard
        originalUnitPriceSet { shopMoney { amount currencyCode } }
        taxLines { title rate priceSet { shopMoney { amount currencyCode } } }
        discountAllocations { allocatedAmountSet { shopMoney { amount currencyCode } } discountApplication { index } }
      }
    }
    shippingLines(first: 10, includeRemovals: true) {
      pageInfo { hasNextPage endCursor }
      nodes {
        title
        isRemoved
        originalPriceSet { shopMoney { amount currencyCode } }
        taxLines { title rate priceSet { shopMoney { amount currencyCode } } }
        discountAllocations { allocatedAmountSet { shopMoney { amount currencyCode } } discountApplication { index } }
      }
    }
  }
}"#;

/// One refund in full: every field the refunds part of the orders domain reads.
pub const REFUND: &str = r#"query ReconcileRefund($id: ID!) {
  refund(id: $id) {
    id
    createdAt
    note
    order { id }
    refundLineItems(first: 50) {
      pageInfo { hasNextPage endCursor }
      nodes {
        quantity
        subtotalSet { shopMoney { amount currencyCode } }
        totalTaxSet { shopMoney { amount currencyCode } }
        lineItem { id title sku taxLines { title rate priceSet { shopMoney { amount currencyCode } } } }
      }
    }
    refundShippingLines(first: 10) {
      pageInfo { hasNextPage endCursor }
      nodes {
        subtotalAmountSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
        taxAmountSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
        shippingLine { title }
      }
    }
    transactions(first: 20) {
      pageInfo { hasNextPage endCursor }
      nodes { kind status gateway amountSet { shopMoney { amount currencyCode } } }
    }
    orderAdjustments(first: 10) {
      pageInfo { hasNextPage endCursor }
      nodes { reason amountSet { shopMoney { amount currencyCode } } taxAmountSet { shopMoney { amount currencyCode } } }
    }
  }
}"#;

/// The search filter of the listing: orders updated at or after `since` (to the second,
/// rounded down, so nothing at the boundary is missed).
pub fn updated_since(since: DateTime<Utc>) -> String {
    format!(
        "updated_at:>='{}'",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Why a GraphQL node cannot become a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// An id that is not a `gid://shopify/…/<number>`.
    #[error("{field}: {value:?} is not a Shopify gid")]
    BadId {
        /// Where.
        field: &'static str,
        /// What came.
        value: String,
    },
    /// A connection with more nodes than one query reads.
    #[error("{0} has more entries than one query reads; only its webhook can carry it")]
    Truncated(&'static str),
}

/// `pageInfo`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// More after this page.
    #[serde(default)]
    pub has_next_page: bool,
    /// The cursor of the last node.
    #[serde(default)]
    pub end_cursor: Option<String>,
}

/// A connection read through `nodes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection<T> {
    /// The page.
    #[serde(default = "Vec::new")]
    pub nodes: Vec<T>,
    /// Where it ends.
    #[serde(default)]
    pub page_info: PageInfo,
}

/// `{ orders: … }` of [`LIST_ORDERS`].
#[derive(Debug, Clone, Deserialize)]
pub struct OrdersPage {
    /// The page.
    pub orders: Connection<ListedOrder>,
}

/// An order as the listing has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedOrder {
    /// `gid://shopify/Order/…`.
    pub id: String,
    /// The listing's sort key.
    pub updated_at: DateTime<Utc>,
    /// `PAID`, `PARTIALLY_REFUNDED`, … (`null` for some orders, e.g. drafts completed unpaid).
    #[serde(default)]
    pub display_financial_status: Option<String>,
    /// Set when cancelled.
    #[serde(default)]
    pub cancelled_at: Option<String>,
    /// Its refunds' ids.
    #[serde(default)]
    pub refunds: Vec<IdNode>,
}

/// `{ id }`.
#[derive(Debug, Clone, Deserialize)]
pub struct IdNode {
    /// A gid.
    pub id: String,
}

/// `{ order: … }` of [`ORDER`].
#[derive(Debug, Clone, Deserialize)]
pub struct OrderAnswer {
    /// `null` when there is no such order (deleted since it was listed).
    pub order: Option<OrderNode>,
}

/// `{ refund: … }` of [`REFUND`].
#[derive(Debug, Clone, Deserialize)]
pub struct RefundAnswer {
    /// `null` when there is no such refund.
    pub refund: Option<RefundNode>,
}

/// `MoneyBag`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoneyBag {
    /// In the shop's currency.
    pub shop_money: MoneyV2,
    /// In the customer's currency, when the query asks for it.
    #[serde(default)]
    pub presentment_money: Option<MoneyV2>,
}

/// `MoneyV2`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoneyV2 {
    /// A `Decimal` scalar: a string such as `"119.0"`.
    pub amount: Value,
    /// ISO currency.
    #[serde(default)]
    pub currency_code: Option<String>,
}

impl MoneyBag {
    /// The shop amount as the decimal text Shopify sent (a number is turned into its text).
    pub fn amount(&self) -> String {
        decimal_text(&self.shop_money.amount)
    }
}

/// A `MoneyBag` that is asked for its presentment money only (`OrderTransaction.amountSet`:
/// the transaction in its own currency, as REST's `amount` and `currency` are).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresentmentBag {
    /// In the currency the money moved in.
    pub presentment_money: MoneyV2,
}

fn decimal_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An order in full.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct OrderNode {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub processed_at: Option<String>,
    #[serde(default)]
    pub cancelled_at: Option<String>,
    #[serde(default)]
    pub cancel_reason: Option<String>,
    pub currency_code: String,
    #[serde(default)]
    pub presentment_currency_code: Option<String>,
    #[serde(default)]
    pub display_financial_status: Option<String>,
    #[serde(default)]
    pub taxes_included: bool,
    #[serde(default)]
    pub duties_included: bool,
    #[serde(default)]
    pub source_name: Option<String>,
    #[serde(default)]
    pub payment_gateway_names: Vec<String>,
    pub total_price_set: MoneyBag,
    #[serde(default)]
    pub subtotal_price_set: Option<MoneyBag>,
    #[serde(default)]
    pub total_tax_set: Option<MoneyBag>,
    #[serde(default)]
    pub current_total_price_set: Option<MoneyBag>,
    #[serde(default)]
    pub total_tip_received_set: Option<MoneyBag>,
    #[serde(default)]
    pub current_total_duties_set: Option<MoneyBag>,
    #[serde(default)]
    pub current_total_additional_fees_set: Option<MoneyBag>,
    #[serde(default)]
    pub total_cash_rounding_adjustment: Option<CashRoundingNode>,
    #[serde(default)]
    pub discount_applications: Option<Connection<DiscountApplicationNode>>,
    #[serde(default)]
    pub refunds: Vec<IdNode>,
    #[serde(default)]
    pub transactions: Vec<OrderTransactionNode>,
    #[serde(default)]
    pub customer: Option<CustomerNode>,
    #[serde(default)]
    pub billing_address: Option<AddressNode>,
    #[serde(default)]
    pub shipping_address: Option<AddressNode>,
    #[serde(default)]
    pub custom_attributes: Vec<AttributeNode>,
    pub line_items: Connection<LineItemNode>,
    pub shipping_lines: Connection<ShippingLineNode>,
}

/// `CashRoundingAdjustment`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct CashRoundingNode {
    /// Money received = total + this.
    pub payment_set: MoneyBag,
}

/// A `DiscountApplication` (interface): `code` for a code, `title` for the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct DiscountApplicationNode {
    pub index: usize,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
}

/// `{ index }` of a `DiscountApplication`.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct IndexNode {
    pub index: usize,
}

/// An `OrderTransaction` of the order (money taken: `SALE`, `CAPTURE`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct OrderTransactionNode {
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub gateway: Option<String>,
    pub amount_set: PresentmentBag,
}

/// `Customer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct CustomerNode {
    pub id: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub default_email_address: Option<EmailNode>,
}

/// `CustomerEmailAddress`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct EmailNode {
    #[serde(default)]
    pub email_address: Option<String>,
}

/// `MailingAddress`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct AddressNode {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub address1: Option<String>,
    #[serde(default)]
    pub address2: Option<String>,
    #[serde(default)]
    pub zip: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub country_code_v2: Option<String>,
}

/// `Attribute` (`customAttributes`, REST's `note_attributes`).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct AttributeNode {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// `TaxLine`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct TaxLineNode {
    #[serde(default)]
    pub title: Option<String>,
    /// A fraction, e.g. `0.19`.
    #[serde(default)]
    pub rate: Option<Value>,
    #[serde(default)]
    pub price_set: Option<MoneyBag>,
}

/// `DiscountAllocation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct DiscountAllocationNode {
    pub allocated_amount_set: MoneyBag,
    #[serde(default)]
    pub discount_application: Option<IndexNode>,
}

/// `LineItem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct LineItemNode {
    pub id: String,
    pub title: String,
    pub quantity: i64,
    #[serde(default)]
    pub current_quantity: Option<i64>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub is_gift_card: bool,
    pub original_unit_price_set: MoneyBag,
    #[serde(default)]
    pub tax_lines: Vec<TaxLineNode>,
    #[serde(default)]
    pub discount_allocations: Vec<DiscountAllocationNode>,
}

/// `ShippingLine`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ShippingLineNode {
    pub title: String,
    #[serde(default)]
    pub is_removed: bool,
    pub original_price_set: MoneyBag,
    #[serde(default)]
    pub tax_lines: Vec<TaxLineNode>,
    #[serde(default)]
    pub discount_allocations: Vec<DiscountAllocationNode>,
}

/// A refund in full.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RefundNode {
    pub id: String,
    pub created_at: String,
    #[serde(default)]
    pub note: Option<String>,
    pub order: IdNode,
    pub refund_line_items: Connection<RefundLineItemNode>,
    #[serde(default)]
    pub refund_shipping_lines: Option<Connection<RefundShippingLineNode>>,
    pub transactions: Connection<TransactionNode>,
    #[serde(default)]
    pub order_adjustments: Option<Connection<OrderAdjustmentNode>>,
}

/// `RefundLineItem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RefundLineItemNode {
    pub quantity: i64,
    pub subtotal_set: MoneyBag,
    pub total_tax_set: MoneyBag,
    pub line_item: RefundedLineNode,
}

/// The `LineItem` of a refund line.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RefundedLineNode {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub tax_lines: Vec<TaxLineNode>,
}

/// `RefundShippingLine`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RefundShippingLineNode {
    pub subtotal_amount_set: MoneyBag,
    #[serde(default)]
    pub tax_amount_set: Option<MoneyBag>,
    #[serde(default)]
    pub shipping_line: Option<ShippingTitleNode>,
}

/// `{ title }` of a shipping line.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct ShippingTitleNode {
    #[serde(default)]
    pub title: Option<String>,
}

/// `OrderTransaction`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct TransactionNode {
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub gateway: Option<String>,
    pub amount_set: MoneyBag,
}

/// `OrderAdjustment`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct OrderAdjustmentNode {
    #[serde(default)]
    pub reason: Option<String>,
    pub amount_set: MoneyBag,
    pub tax_amount_set: MoneyBag,
}

/// A GraphQL enum value as REST writes it: `PARTIALLY_REFUNDED` → `partially_refunded`.
pub fn rest_enum(value: &str) -> String {
    value.to_ascii_lowercase()
}

fn id(field: &'static str, gid: &str) -> Result<i64, MapError> {
    gid_id(gid).ok_or_else(|| MapError::BadId {
        field,
        value: gid.to_owned(),
    })
}

fn tax_lines(lines: &[TaxLineNode]) -> Value {
    lines
        .iter()
        .map(|t| {
            json!({
                "title": t.title,
                "rate": t.rate.clone().unwrap_or(Value::Null),
                "price": t.price_set.as_ref().map(MoneyBag::amount),
            })
        })
        .collect()
}

fn discounts(list: &[DiscountAllocationNode]) -> Value {
    list.iter()
        .map(|d| {
            json!({
                "amount": d.allocated_amount_set.amount(),
                "discount_application_index": d.discount_application.as_ref().map(|a| a.index),
            })
        })
        .collect()
}

/// REST's `discount_applications`, where an allocation's `discount_application_index` is the
/// place in the list: each node at its `index` (a gap, which Shopify does not leave, stays an
/// application without code or title).
fn discount_applications(nodes: &[DiscountApplicationNode]) -> Value {
    let len = nodes.iter().map(|d| d.index + 1).max().unwrap_or(0);
    let mut list = vec![json!({"code": null, "title": null}); len];
    for d in nodes {
        list[d.index] = json!({ "code": d.code, "title": d.title });
    }
    Value::Array(list)
}

fn address(a: &AddressNode) -> Value {
    json!({
        "first_name": a.first_name,
        "last_name": a.last_name,
        "company": a.company,
        "address1": a.address1,
        "address2": a.address2,
        "zip": a.zip,
        "city": a.city,
        "country_code": a.country_code_v2,
    })
}

/// The order as `orders/paid` (or `orders/cancelled`) would carry it — the fields the orders
/// domain reads. `lines` are all its line items (the node's first page and any further ones).
pub fn order_payload(node: &OrderNode, lines: &[LineItemNode]) -> Result<Value, MapError> {
    if node.shipping_lines.page_info.has_next_page {
        return Err(MapError::Truncated("the order's shipping lines"));
    }
    let applications = node.discount_applications.as_ref();
    if applications.is_some_and(|c| c.page_info.has_next_page) {
        return Err(MapError::Truncated("the order's discounts"));
    }
    if node.transactions.len() >= TRANSACTIONS_PER_QUERY {
        return Err(MapError::Truncated("the order's transactions"));
    }
    let line_items = lines
        .iter()
        .map(|l| {
            Ok(json!({
                "id": id("lineItems.id", &l.id)?,
                "title": l.title,
                "quantity": l.quantity,
                "current_quantity": l.current_quantity.unwrap_or(l.quantity),
                "price": l.original_unit_price_set.amount(),
                "sku": l.sku,
                "gift_card": l.is_gift_card,
                "tax_lines": tax_lines(&l.tax_lines),
                "discount_allocations": discounts(&l.discount_allocations),
            }))
        })
        .collect::<Result<Vec<_>, MapError>>()?;
    let shipping_lines: Vec<Value> = node
        .shipping_lines
        .nodes
        .iter()
        .map(|s| {
            json!({
                "title": s.title,
                "price": s.original_price_set.amount(),
                "is_removed": s.is_removed,
                "tax_lines": tax_lines(&s.tax_lines),
                "discount_allocations": discounts(&s.discount_allocations),
            })
        })
        .collect();
    let customer = match &node.customer {
        Some(c) => json!({
            "id": id("customer.id", &c.id)?,
            "email": c.default_email_address.as_ref().and_then(|e| e.email_address.clone()),
            "first_name": c.first_name,
            "last_name": c.last_name,
        }),
        None => Value::Null,
    };
    let transactions: Vec<Value> = node
        .transactions
        .iter()
        .map(|t| {
            let money = &t.amount_set.presentment_money;
            json!({
                "kind": rest_enum(&t.kind),
                "status": rest_enum(&t.status),
                "amount": decimal_text(&money.amount),
                "gateway": t.gateway,
                "currency": money.currency_code,
            })
        })
        .collect();
    let current_total = node.current_total_price_set.as_ref();
    let mut payload = json!({
        "presentment_currency": node.presentment_currency_code,
        "current_total_price": current_total.map(MoneyBag::amount),
        "current_total_price_set": current_total.map(money_set),
        "total_tip_received": node.total_tip_received_set.as_ref().map(MoneyBag::amount),
        "current_total_duties_set": node.current_total_duties_set.as_ref().map(money_set),
        "duties_included": node.duties_included,
        "current_total_additional_fees_set": node.current_total_additional_fees_set.as_ref().map(money_set),
        "total_cash_rounding_payment_adjustment_set": node.total_cash_rounding_adjustment.as_ref().map(|c| money_set(&c.payment_set)),
        "discount_applications": discount_applications(applications.map(|c| c.nodes.as_slice()).unwrap_or_default()),
        "refunds": node.refunds.iter().map(|r| Ok(json!({"id": id("refunds.id", &r.id)?}))).collect::<Result<Vec<_>, MapError>>()?,
        "transactions": transactions,
    });
    let basics = json!({
        "id": id("order.id", &node.id)?,
        "admin_graphql_api_id": node.id,
        "name": node.name,
        "email": node.email,
        "created_at": node.created_at,
        "updated_at": node.updated_at,
        "processed_at": node.processed_at,
        "currency": node.currency_code,
        "financial_status": node.display_financial_status.as_deref().map(rest_enum),
        "total_price": node.total_price_set.amount(),
        "subtotal_price": node.subtotal_price_set.as_ref().map(MoneyBag::amount),
        "total_tax": node.total_tax_set.as_ref().map(MoneyBag::amount),
        "taxes_included": node.taxes_included,
        "customer": customer,
        "billing_address": node.billing_address.as_ref().map(address),
        "shipping_address": node.shipping_address.as_ref().map(address),
        "source_name": node.source_name,
        "note_attributes": node.custom_attributes.iter().map(|a| json!({"name": a.key, "value": a.value})).collect::<Vec<_>>(),
        "payment_gateway_names": node.payment_gateway_names,
        "line_items": line_items,
        "shipping_lines": shipping_lines,
        "cancelled_at": node.cancelled_at,
        "cancel_reason": node.cancel_reason.as_deref().map(rest_enum),
    });
    if let (Some(all), Value::Object(basics)) = (payload.as_object_mut(), basics) {
        all.extend(basics);
    }
    Ok(payload)
}

/// REST's `*_set`: `shop_money`, and `presentment_money` when it was asked for.
fn money_set(bag: &MoneyBag) -> Value {
    let money =
        |m: &MoneyV2| json!({"amount": decimal_text(&m.amount), "currency_code": m.currency_code});
    let mut set = json!({ "shop_money": money(&bag.shop_money) });
    if let Some(p) = &bag.presentment_money {
        set["presentment_money"] = money(p);
    }
    set
}

/// The refund as `refunds/create` would carry it — the fields the refunds part of the orders
/// domain reads.
pub fn refund_payload(node: &RefundNode) -> Result<Value, MapError> {
    if node.refund_line_items.page_info.has_next_page {
        return Err(MapError::Truncated("the refund's lines"));
    }
    if node.transactions.page_info.has_next_page {
        return Err(MapError::Truncated("the refund's transactions"));
    }
    let shipping = node.refund_shipping_lines.as_ref();
    let adjustments = node.order_adjustments.as_ref();
    if shipping.is_some_and(|c| c.page_info.has_next_page)
        || adjustments.is_some_and(|c| c.page_info.has_next_page)
    {
        return Err(MapError::Truncated(
            "the refund's shipping lines or adjustments",
        ));
    }
    let lines = node
        .refund_line_items
        .nodes
        .iter()
        .map(|l| {
            Ok(json!({
                "quantity": l.quantity,
                "subtotal": l.subtotal_set.amount(),
                "total_tax": l.total_tax_set.amount(),
                "line_item": {
                    "id": id("refundLineItems.lineItem.id", &l.line_item.id)?,
                    "title": l.line_item.title,
                    "sku": l.line_item.sku,
                    "tax_lines": tax_lines(&l.line_item.tax_lines),
                },
            }))
        })
        .collect::<Result<Vec<_>, MapError>>()?;
    let shipping_lines: Vec<Value> = shipping
        .map(|c| c.nodes.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            json!({
                "subtotal_amount_set": money_set(&s.subtotal_amount_set),
                "tax_amount_set": s.tax_amount_set.as_ref().map(money_set),
                "shipping_line": s.shipping_line.as_ref().map(|l| json!({"title": l.title})),
            })
        })
        .collect();
    let transactions: Vec<Value> = node
        .transactions
        .nodes
        .iter()
        .map(|t| {
            json!({
                "kind": rest_enum(&t.kind),
                "status": rest_enum(&t.status),
                "amount": t.amount_set.amount(),
                "gateway": t.gateway,
            })
        })
        .collect();
    let order_adjustments: Vec<Value> = adjustments
        .map(|c| c.nodes.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|a| {
            json!({
                "amount": a.amount_set.amount(),
                "tax_amount": a.tax_amount_set.amount(),
            })
        })
        .collect();
    Ok(json!({
        "id": id("refund.id", &node.id)?,
        "order_id": id("refund.order.id", &node.order.id)?,
        "admin_graphql_api_id": node.id,
        "created_at": node.created_at,
        "note": node.note,
        "refund_line_items": lines,
        "refund_shipping_lines": shipping_lines,
        "transactions": transactions,
        "order_adjustments": order_adjustments,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(amount: &str) -> Value {
        json!({"shopMoney": {"amount": amount, "currencyCode": "EUR"}})
    }

    fn order_node() -> OrderNode {
        serde_json::from_value(order_json()).unwrap()
    }

    fn order_json() -> Value {
        json!({
            "id": "gid://shopify/Order/42",
            "name": "#1042",
            "email": "kim@example.com",
            "createdAt": "2026-11-20T15:15:02Z",
            "updatedAt": "2026-11-21T09:00:00Z",
            "processedAt": "2026-11-20T15:15:02Z",
            "cancelledAt": null,
            "cancelReason": null,
            "currencyCode": "EUR",
            "displayFinancialStatus": "PARTIALLY_REFUNDED",
            "taxesIncluded": false,
            "sourceName": "web",
            "paymentGatewayNames": ["shopify_payments"],
            "totalPriceSet": bag("59.5"),
            "subtotalPriceSet": bag("50.0"),
            "totalTaxSet": bag("9.5"),
            "customer": {"id": "gid://shopify/Customer/7", "firstName": "Kim", "lastName": "Kunde", "defaultEmailAddress": {"emailAddress": "kim@example.com"}},
            "billingAddress": {"firstName": "Kim", "lastName": "Kunde", "company": null, "address1": "Ring 1", "address2": null, "zip": "10115", "city": "Berlin", "countryCodeV2": "DE"},
            "shippingAddress": null,
            "customAttributes": [{"key": "vat_id", "value": "DE123456789"}],
            "lineItems": {"pageInfo": {"hasNextPage": false, "endCursor": null}, "nodes": [
                {"id": "gid://shopify/LineItem/9", "title": "Mug", "quantity": 2, "currentQuantity": 1, "sku": "MUG",
                 "originalUnitPriceSet": bag("25.0"),
                 "taxLines": [{"title": "MwSt", "rate": 0.19, "priceSet": bag("9.5")}],
                 "discountAllocations": []}]},
            "shippingLines": {"pageInfo": {"hasNextPage": false, "endCursor": null}, "nodes": []}
        })
    }

    #[test]
    fn an_order_maps_ids_money_and_status_to_the_rest_shape() {
        let node = order_node();
        let payload = order_payload(&node, &node.line_items.nodes).unwrap();
        assert_eq!(payload["id"], 42);
        assert_eq!(payload["financial_status"], "partially_refunded");
        assert_eq!(payload["total_price"], "59.5");
        assert_eq!(payload["customer"]["id"], 7);
        assert_eq!(payload["customer"]["email"], "kim@example.com");
        assert_eq!(payload["billing_address"]["country_code"], "DE");
        assert_eq!(payload["note_attributes"][0]["name"], "vat_id");
        assert_eq!(payload["line_items"][0]["id"], 9);
        assert_eq!(payload["line_items"][0]["quantity"], 2);
        assert_eq!(payload["line_items"][0]["current_quantity"], 1);
        assert_eq!(payload["line_items"][0]["price"], "25.0");
        assert_eq!(payload["line_items"][0]["tax_lines"][0]["rate"], 0.19);
        assert_eq!(payload["payment_gateway_names"][0], "shopify_payments");
        let order: crate::domains::orders::mapping::Order =
            serde_json::from_value(payload).unwrap();
        assert_eq!(order.total_price.0, "59.50".parse().unwrap());
    }

    #[test]
    fn current_figures_discounts_and_transactions_map_to_the_rest_shape() {
        let extra = json!({
            "presentmentCurrencyCode": "CHF",
            "dutiesIncluded": false,
            "currentTotalPriceSet": {"shopMoney": {"amount": "49.98", "currencyCode": "EUR"}, "presentmentMoney": {"amount": "47.1", "currencyCode": "CHF"}},
            "totalTipReceivedSet": bag("3.0"),
            "currentTotalDutiesSet": null,
            "currentTotalAdditionalFeesSet": bag("2.5"),
            "totalCashRoundingAdjustment": {"paymentSet": bag("0.01")},
            "discountApplications": {"pageInfo": {"hasNextPage": false}, "nodes": [
                {"index": 1, "title": "Herbst"}, {"index": 0, "code": "KETTE10"}]},
            "refunds": [{"id": "gid://shopify/Refund/5"}],
            "transactions": [
                {"kind": "SALE", "status": "SUCCESS", "gateway": "gift_card", "amountSet": {"presentmentMoney": {"amount": "20.0", "currencyCode": "EUR"}}},
                {"kind": "SALE", "status": "FAILURE", "gateway": "shopify_payments", "amountSet": {"presentmentMoney": {"amount": "29.98", "currencyCode": "EUR"}}}],
        });
        let mut value = order_json();
        value
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        value["lineItems"]["nodes"][0]["isGiftCard"] = json!(true);
        value["lineItems"]["nodes"][0]["discountAllocations"] =
            json!([{"allocatedAmountSet": bag("5.0"), "discountApplication": {"index": 1}}]);
        value["shippingLines"]["nodes"] =
            json!([{"title": "DHL", "isRemoved": true, "originalPriceSet": bag("4.9")}]);
        let node: OrderNode = serde_json::from_value(value).unwrap();
        let p = order_payload(&node, &node.line_items.nodes).unwrap();
        assert_eq!(p["presentment_currency"], "CHF");
        assert_eq!(p["current_total_price"], "49.98");
        assert_eq!(
            p["current_total_price_set"]["presentment_money"]["amount"],
            "47.1"
        );
        assert_eq!(
            p["current_total_price_set"]["presentment_money"]["currency_code"],
            "CHF"
        );
        assert_eq!(p["total_tip_received"], "3.0");
        assert_eq!(p["current_total_duties_set"], Value::Null);
        assert_eq!(
            p["current_total_additional_fees_set"]["shop_money"]["amount"],
            "2.5"
        );
        assert_eq!(
            p["total_cash_rounding_payment_adjustment_set"]["shop_money"]["amount"],
            "0.01"
        );
        assert_eq!(p["discount_applications"][0]["code"], "KETTE10");
        assert_eq!(p["discount_applications"][1]["title"], "Herbst");
        assert_eq!(p["line_items"][0]["gift_card"], true);
        assert_eq!(
            p["line_items"][0]["discount_allocations"][0]["discount_application_index"],
            1
        );
        assert_eq!(p["shipping_lines"][0]["is_removed"], true);
        assert_eq!(p["refunds"][0]["id"], 5);
        assert_eq!(
            p["transactions"][0],
            json!({"kind": "sale", "status": "success", "amount": "20.0", "gateway": "gift_card", "currency": "EUR"})
        );
        assert_eq!(p["transactions"][1]["status"], "failure");
        let order: crate::domains::orders::mapping::Order = serde_json::from_value(p).unwrap();
        assert_eq!(order.transactions.len(), 2);
        assert_eq!(order.discount_applications.len(), 2);
    }

    #[test]
    fn a_page_of_discounts_or_transactions_that_may_go_on_is_not_mapped() {
        let mut value = order_json();
        value["discountApplications"] = json!({"pageInfo": {"hasNextPage": true}, "nodes": []});
        let node: OrderNode = serde_json::from_value(value).unwrap();
        assert_eq!(
            order_payload(&node, &[]),
            Err(MapError::Truncated("the order's discounts"))
        );
        let mut value = order_json();
        let sale = json!({"kind": "SALE", "status": "SUCCESS", "gateway": "x", "amountSet": {"presentmentMoney": {"amount": "1.0", "currencyCode": "EUR"}}});
        value["transactions"] = Value::Array(vec![sale; TRANSACTIONS_PER_QUERY]);
        let node: OrderNode = serde_json::from_value(value).unwrap();
        assert_eq!(
            order_payload(&node, &[]),
            Err(MapError::Truncated("the order's transactions"))
        );
    }

    #[test]
    fn statuses_and_kinds_become_rest_words() {
        for (graphql, rest) in [
            ("PAID", "paid"),
            ("PARTIALLY_REFUNDED", "partially_refunded"),
            ("REFUNDED", "refunded"),
            ("PARTIALLY_PAID", "partially_paid"),
            ("PENDING", "pending"),
            ("AUTHORIZED", "authorized"),
            ("VOIDED", "voided"),
        ] {
            assert_eq!(rest_enum(graphql), rest);
        }
    }

    #[test]
    fn a_bad_gid_is_refused_with_its_field() {
        let mut node = order_node();
        node.id = "820982911946154508".into();
        assert_eq!(
            order_payload(&node, &[]),
            Err(MapError::BadId {
                field: "order.id",
                value: "820982911946154508".into()
            })
        );
    }

    #[test]
    fn money_sent_as_a_number_keeps_its_digits() {
        let b: MoneyBag =
            serde_json::from_value(json!({"shopMoney": {"amount": 4.75, "currencyCode": "EUR"}}))
                .unwrap();
        assert_eq!(b.amount(), "4.75");
    }

    #[test]
    fn the_filter_is_rounded_down_to_the_second() {
        let t = DateTime::parse_from_rfc3339("2026-11-20T10:15:02.987-05:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(updated_since(t), "updated_at:>='2026-11-20T15:15:02Z'");
    }
}
