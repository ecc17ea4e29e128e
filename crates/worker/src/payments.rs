//! Bank-transfer payments, from sevDesk back to Shopify, exactly once per order.
//!
//! A prepayment order (manual gateway, `financial_status: pending`) is invoiced and mailed when
//! it is placed (see [`crate::domains::orders`]). The customer transfers the money; the
//! merchant's bank feed in sevDesk matches the transfer to the invoice, which becomes paid
//! (status 1000) or partly paid (750, with `paidAmount`). Shopify knows nothing of it until it
//! is told: this poller tells it, with `orderMarkAsPaid`, and Shopify's `orders/paid` webhook that
//! follows books nothing (the orders domain finds the invoice paid, see `Step::Book`).
//!
//! Every interval, for each shop (replicas take turns per shop through a PostgreSQL advisory
//! lock, as reconciliation does), sevDesk is asked for invoices updated after the shop's
//! watermark minus an overlap, paid (`status=1000`) and partly paid (`partiallyPaid=true`), and
//! each is checked here, never trusting the filter ([`decide`]): is it ours (an `order_sync` row
//! of this shop with that invoice and `prepayment`), not cancelled, and does its `paidAmount`
//! match what the order owes? sevDesk cannot sort by update time, so the poller reads the whole
//! window, sorts it by `update` and handles it oldest first; the watermark moves over what was
//! handled and stops before the first invoice that failed.
//!
//! Exactly once, per order, in `payment_sync`:
//! - `marking` is committed **before** the mutation, with sevDesk's `update` (the lag's start);
//! - an answer without `userErrors` is `reported`; an answer with `userErrors` is followed by a
//!   read of the order: Shopify refuses an order that is already paid, so a paid order is
//!   `reported` too (`already_paid`), anything else `needs_review` with Shopify's message;
//! - no answer (a timeout, a 5xx: [`AdminError::Unknown`]) leaves `marking`, stops the shop's
//!   cycle, and the next cycle reads the order's `displayFinancialStatus` **before** it sends the
//!   mutation again: paid is `reported` (`found_paid`), unpaid is sent again. Shopify's refusal
//!   of a second payment backs this up: a late commit cannot pay an order twice.
//!
//! Partial payments stay pending in Shopify (`partial`, counted in the
//! `hookline_worker_payments_partial` gauge) until the rest arrives. Money that cannot be
//! matched — more than the order's total, "paid" with less than it, no readable amount — is
//! `needs_review` with both amounts: there is no delivery to dead-letter, so the row is the
//! record, `hookline_worker_payments_needs_review` the gauge and `HooklinePaymentNeedsReview` the
//! alert. A cancelled order is never marked paid.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::HandlerError;
use crate::sevdesk::{ChangedInvoice, SevDeskClient};
use crate::shopify::{AdminClient, AdminError};

/// First key of the advisory lock: "paym".
const LOCK_CLASS: i32 = 0x7061_796d;

/// Pages of 100 invoices one cycle reads at most; a longer window is read again next cycle.
const MAX_PAGES: usize = 50;

/// The mutation: Shopify records a sale for the outstanding amount.
pub const MARK_AS_PAID: &str = "mutation MarkAsPaid($input: OrderMarkAsPaidInput!) {
  orderMarkAsPaid(input: $input) {
    order { id displayFinancialStatus }
    userErrors { field message }
  }
}";

/// What settles an unknown outcome, and what a refusal is read against.
pub const ORDER_PAYMENT: &str = "query OrderPayment($id: ID!) {
  order(id: $id) { id displayFinancialStatus cancelledAt }
}";

/// A shop whose prepayment invoices are polled, with the sevDesk account they are in.
#[derive(Clone)]
pub struct PaymentShop {
    /// `example.myshopify.com`.
    pub shop: String,
    /// The shop's sevDesk account.
    pub sevdesk: SevDeskClient,
}

/// The poller's settings.
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// `HOOKLINE_PAYMENTS_INTERVAL_SECS` (15; 0: no polling).
    pub interval: Duration,
    /// `HOOKLINE_PAYMENTS_OVERLAP_SECS` (120): how far before the watermark each cycle reads.
    pub overlap: Duration,
    /// `HOOKLINE_PAYMENTS_LOOKBACK_SECS` (604800): where a shop's first cycle starts.
    pub lookback: Duration,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            overlap: Duration::from_secs(120),
            lookback: Duration::from_secs(7 * 86400),
        }
    }
}

/// Where an order's payment report stands (`payment_sync.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// Part of the money is in sevDesk.
    Partial,
    /// `orderMarkAsPaid` may have been sent.
    Marking,
    /// Shopify shows the order paid.
    Reported,
    /// For a person.
    NeedsReview,
}

impl PaymentState {
    /// The column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Partial => "partial",
            PaymentState::Marking => "marking",
            PaymentState::Reported => "reported",
            PaymentState::NeedsReview => "needs_review",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "partial" => PaymentState::Partial,
            "marking" => PaymentState::Marking,
            "reported" => PaymentState::Reported,
            "needs_review" => PaymentState::NeedsReview,
            _ => return None,
        })
    }
}

/// The order an invoice belongs to, as `order_sync` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// The Shopify order.
    pub order_id: i64,
    /// Invoiced as a prepayment order.
    pub prepayment: bool,
    /// `order_sync.state`.
    pub state: String,
    /// A cancellation was received.
    pub cancel_requested: bool,
    /// What the order owes.
    pub total: Option<Decimal>,
}

/// What to do with one paid or partly paid invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not an invoice of this shop's prepayment orders, or nothing to do: `why`.
    Skip(&'static str),
    /// Part paid: record it, leave Shopify alone.
    Partial {
        /// sevDesk's `paidAmount`.
        paid: Decimal,
        /// The order's total.
        total: Decimal,
    },
    /// Paid in full: mark the order paid in Shopify.
    Mark,
    /// Paid in full, and a mutation may already have been sent: read the order first.
    ReadFirst,
    /// The money does not match: for a person.
    NeedsReview(String),
}

/// The decision for an invoice with sevDesk's `status` and `paid` amount, its order (`None`:
/// not ours) and the order's payment state. Pure, so every case is tested below.
pub fn decide(
    status: u16,
    paid: Option<Decimal>,
    order: Option<&OrderFacts>,
    payment: Option<PaymentState>,
) -> Decision {
    let Some(order) = order else {
        return Decision::Skip("not_ours");
    };
    if !order.prepayment {
        return Decision::Skip("not_prepayment");
    }
    if payment == Some(PaymentState::Reported) {
        return Decision::Skip("already_reported");
    }
    if order.cancel_requested || order.state == "cancelled" {
        return Decision::Skip("cancelled");
    }
    if order.state == "payment_booked" && payment.is_none() {
        // Shopify reported it paid first (orders/paid booked it): nothing to tell Shopify.
        return Decision::Skip("paid_in_shopify_first");
    }
    if !matches!(status, 750 | 1000) {
        return Decision::Skip("not_paid");
    }
    let Some(total) = order.total else {
        return Decision::NeedsReview(format!(
            "order {} has no total in order_sync: the payment cannot be matched",
            order.order_id
        ));
    };
    let Some(paid) = paid else {
        return Decision::NeedsReview(format!(
            "sevDesk did not say what is paid (status {status}); the order owes {total}"
        ));
    };
    if paid > total {
        return Decision::NeedsReview(format!(
            "over-paid: sevDesk has {paid} paid, the order owes {total}"
        ));
    }
    if paid == total {
        if status != 1000 {
            return Decision::NeedsReview(format!(
                "sevDesk has the full {paid} paid but status {status}, not 1000"
            ));
        }
        return if payment == Some(PaymentState::Marking) {
            Decision::ReadFirst
        } else {
            Decision::Mark
        };
    }
    if status == 1000 {
        return Decision::NeedsReview(format!(
            "sevDesk marks the invoice paid with {paid}, the order owes {total} (a discount or a write-off?)"
        ));
    }
    if paid <= Decimal::ZERO {
        return Decision::Skip("not_paid");
    }
    Decision::Partial { paid, total }
}

/// Whether a `displayFinancialStatus` means Shopify has the money.
pub fn shows_paid(status: Option<&str>) -> bool {
    matches!(status, Some("PAID" | "PARTIALLY_REFUNDED" | "REFUNDED"))
}

/// What one cycle did for one shop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PaymentReport {
    /// Invoices listed.
    pub seen: usize,
    /// Orders Shopify now shows paid (marked, or found paid).
    pub reported: usize,
    /// `orderMarkAsPaid` calls sent.
    pub mutations: usize,
    /// Invoices partly paid.
    pub partial: usize,
    /// Invoices recorded `needs_review`.
    pub needs_review: usize,
    /// Skipped: another replica holds the shop.
    pub skipped: bool,
    /// Whether the whole window was handled (the watermark reached its end).
    pub complete: bool,
}

/// Why a shop's cycle stopped.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// A query failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// No connection from the pool.
    #[error("no database connection available")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// sevDesk failed.
    #[error("sevDesk: {0}")]
    SevDesk(#[from] HandlerError),
    /// Shopify failed.
    #[error("Shopify Admin API")]
    Shopify(#[from] AdminError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkAnswer {
    order_mark_as_paid: Option<MarkPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkPayload {
    #[serde(default)]
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
struct UserError {
    #[serde(default)]
    field: Option<Vec<String>>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct OrderAnswer {
    order: Option<OrderPayment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderPayment {
    display_financial_status: Option<String>,
    cancelled_at: Option<String>,
}

/// The poller.
pub struct PaymentPoller {
    pool: Pool,
    shops: Vec<PaymentShop>,
    admin: Arc<AdminClient>,
    settings: PaymentSettings,
}

impl PaymentPoller {
    /// A poller over `shops` (each with its sevDesk account), marking orders paid through
    /// `admin`, with `pool` (its own).
    pub fn new(
        pool: Pool,
        shops: Vec<PaymentShop>,
        admin: Arc<AdminClient>,
        settings: PaymentSettings,
    ) -> Self {
        Self {
            pool,
            shops,
            admin,
            settings,
        }
    }

    /// Polls every interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            for (shop, result) in self.run_cycle().await {
                match result {
                    Ok(r) => tracing::debug!(
                        shop,
                        seen = r.seen,
                        reported = r.reported,
                        partial = r.partial,
                        needs_review = r.needs_review,
                        skipped = r.skipped,
                        "payment cycle"
                    ),
                    Err(error) => tracing::warn!(
                        shop,
                        error = %crate::failure::error_chain(&error),
                        "payment cycle stopped; the next cycle continues where it stopped"
                    ),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }

    /// One cycle over every shop (public for tests and operators' tools).
    pub async fn run_cycle(&self) -> Vec<(String, Result<PaymentReport, PaymentError>)> {
        let mut out = vec![];
        for shop in &self.shops {
            let result = self.run_shop(shop).await;
            if let Err(e) = &result {
                metrics::counter!("hookline_worker_payment_cycle_failures_total", "reason" => failure_reason(e)).increment(1);
            }
            out.push((shop.shop.clone(), result));
        }
        out
    }

    async fn run_shop(&self, shop: &PaymentShop) -> Result<PaymentReport, PaymentError> {
        let client = self.pool.get().await?;
        // An uninstalled shop cannot be told anything (see `crate::domains::compliance`).
        if crate::domains::compliance::is_uninstalled(&client, &shop.shop).await? {
            return Ok(PaymentReport {
                skipped: true,
                ..Default::default()
            });
        }
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &shop.shop],
            )
            .await?
            .get(0);
        if !locked {
            return Ok(PaymentReport {
                skipped: true,
                ..Default::default()
            });
        }
        let result = self.poll_shop(&client, shop).await;
        if let Err(e) = gauges(&client, &shop.shop).await {
            tracing::warn!(shop = %shop.shop, error = %e, "payment gauges not updated");
        }
        if client
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_CLASS, &shop.shop],
            )
            .await
            .is_err()
        {
            drop(Object::take(client));
        }
        result
    }

    #[tracing::instrument(name = "payment_cycle", skip_all, fields(shop = %shop.shop))]
    async fn poll_shop(
        &self,
        client: &Object,
        shop: &PaymentShop,
    ) -> Result<PaymentReport, PaymentError> {
        let watermark: DateTime<Utc> = client
            .query_opt(
                "SELECT update_after FROM payment_watermarks WHERE shop_domain = $1",
                &[&shop.shop],
            )
            .await?
            .map(|r| r.get(0))
            .unwrap_or_else(|| Utc::now() - to_chrono(self.settings.lookback));
        let since = watermark - to_chrono(self.settings.overlap);
        let mut invoices = vec![];
        let mut complete = true;
        for filter in [[("status", "1000")], [("partiallyPaid", "true")]] {
            let (found, whole) = shop
                .sevdesk
                .invoices_updated_after(&filter, since, MAX_PAGES, None)
                .await?;
            complete &= whole;
            invoices.extend(found);
        }
        // Both listings may name an invoice (it changed between them): its latest copy counts.
        let mut latest: HashMap<String, ChangedInvoice> = HashMap::new();
        for invoice in invoices {
            match latest.get(&invoice.info.id) {
                Some(known) if known.updated >= invoice.updated => {}
                _ => {
                    latest.insert(invoice.info.id.clone(), invoice);
                }
            }
        }
        let mut invoices: Vec<ChangedInvoice> = latest.into_values().collect();
        invoices.sort_by(|a, b| (a.updated, &a.info.id).cmp(&(b.updated, &b.info.id)));
        let mut report = PaymentReport {
            complete,
            ..Default::default()
        };
        let mut handled: Option<DateTime<Utc>> = None;
        let mut result = Ok(());
        for invoice in &invoices {
            report.seen += 1;
            if let Err(e) = self.handle(client, &shop.shop, invoice, &mut report).await {
                result = Err(e);
                break;
            }
            handled = Some(invoice.updated);
        }
        // The watermark moves over what was handled, oldest first, and stops before the first
        // failure. A window cut short by the page bound is not ordered: it moves nothing.
        let upto = handled.filter(|u| complete && *u > watermark);
        if let Some(upto) = upto {
            let advanced = advance(client, &shop.shop, upto).await;
            if result.is_ok() {
                advanced?;
            }
        }
        result.map(|()| report)
    }

    /// One listed invoice: decided, then acted on.
    async fn handle(
        &self,
        client: &Object,
        shop: &str,
        invoice: &ChangedInvoice,
        report: &mut PaymentReport,
    ) -> Result<(), PaymentError> {
        let id = &invoice.info.id;
        let row = client
            .query_opt(
                "SELECT o.order_id, o.prepayment, o.state, o.cancel_requested, o.total_price, p.state
                   FROM order_sync o
                   LEFT JOIN payment_sync p ON p.shop_domain = o.shop_domain AND p.order_id = o.order_id
                  WHERE o.shop_domain = $1 AND o.invoice_id = $2",
                &[&shop, id],
            )
            .await?;
        let order = row.as_ref().map(|r| OrderFacts {
            order_id: r.get(0),
            prepayment: r.get(1),
            state: r.get(2),
            cancel_requested: r.get(3),
            total: r.get(4),
        });
        let payment = row
            .as_ref()
            .and_then(|r| r.get::<_, Option<String>>(5))
            .and_then(|s| PaymentState::parse(&s));
        let decision = decide(
            invoice.info.status,
            invoice.info.paid_amount,
            order.as_ref(),
            payment,
        );
        let Some(order) = order else {
            return Ok(());
        };
        let order_id = order.order_id;
        let paid = invoice.info.paid_amount;
        match decision {
            Decision::Skip(why) => {
                if why == "cancelled" {
                    tracing::info!(shop, order_id, invoice = %id, "a cancelled prepayment order's invoice shows a payment; Shopify is not told (refund the customer)");
                }
                count(why);
                Ok(())
            }
            Decision::Partial { paid, total } => {
                record(
                    client,
                    shop,
                    order_id,
                    id,
                    PaymentState::Partial,
                    Some(paid),
                    Some(total),
                    None,
                    Some(invoice.updated),
                )
                .await?;
                tracing::info!(shop, order_id, invoice = %id, %paid, %total, "partly paid by bank transfer; the order stays pending");
                report.partial += 1;
                count("partial");
                Ok(())
            }
            Decision::NeedsReview(why) => {
                record(
                    client,
                    shop,
                    order_id,
                    id,
                    PaymentState::NeedsReview,
                    paid,
                    order.total,
                    Some(&why),
                    Some(invoice.updated),
                )
                .await?;
                tracing::warn!(shop, order_id, invoice = %id, reason = %why, "bank payment needs review");
                report.needs_review += 1;
                count("needs_review");
                Ok(())
            }
            decision @ (Decision::ReadFirst | Decision::Mark) => {
                // After an unknown outcome, Shopify's own view of the order decides first.
                if decision == Decision::ReadFirst {
                    let gid = order_gid(order_id);
                    match self.read(shop, &gid).await? {
                        Some(o) if shows_paid(o.display_financial_status.as_deref()) => {
                            return self
                                .reported(client, shop, order_id, "found_paid", report)
                                .await;
                        }
                        Some(o) if o.cancelled_at.is_some() => {
                            count("cancelled");
                            return Ok(());
                        }
                        None => {
                            return self
                                .review(
                                    client,
                                    shop,
                                    order_id,
                                    "the order does not exist in Shopify".into(),
                                    report,
                                )
                                .await;
                        }
                        Some(_) => {}
                    }
                }
                self.mark(
                    client,
                    shop,
                    order_id,
                    id,
                    paid,
                    order.total,
                    invoice.updated,
                    report,
                )
                .await
            }
        }
    }

    /// Commits `marking`, sends `orderMarkAsPaid`, and records what came back.
    #[allow(clippy::too_many_arguments)]
    async fn mark(
        &self,
        client: &Object,
        shop: &str,
        order_id: i64,
        invoice_id: &str,
        paid: Option<Decimal>,
        total: Option<Decimal>,
        seen: DateTime<Utc>,
        report: &mut PaymentReport,
    ) -> Result<(), PaymentError> {
        record(
            client,
            shop,
            order_id,
            invoice_id,
            PaymentState::Marking,
            paid,
            total,
            None,
            Some(seen),
        )
        .await?;
        client
            .execute(
                "UPDATE payment_sync SET attempts = attempts + 1 WHERE shop_domain = $1 AND order_id = $2",
                &[&shop, &order_id],
            )
            .await?;
        report.mutations += 1;
        let gid = order_gid(order_id);
        let answer: Result<MarkAnswer, AdminError> = self
            .admin
            .mutate(shop, MARK_AS_PAID, json!({"input": {"id": gid}}))
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let reason = if e.outcome_unknown() {
                    "unknown_outcome"
                } else {
                    "error"
                };
                metrics::counter!("hookline_worker_payment_mark_failures_total", "reason" => reason)
                    .increment(1);
                return Err(e.into());
            }
        };
        let errors = answer
            .order_mark_as_paid
            .map(|p| p.user_errors)
            .unwrap_or_default();
        if errors.is_empty() {
            return self
                .reported(client, shop, order_id, "marked_paid", report)
                .await;
        }
        // Shopify refuses an order that is already paid (or has nothing outstanding); its
        // userErrors carry no code, so the order says whether the refusal means "done".
        let message = errors
            .iter()
            .map(|e| match &e.field {
                Some(f) if !f.is_empty() => format!("{}: {}", f.join("."), e.message),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        match self.read(shop, &gid).await? {
            Some(o) if shows_paid(o.display_financial_status.as_deref()) => {
                self.reported(client, shop, order_id, "already_paid", report)
                    .await
            }
            _ => {
                metrics::counter!("hookline_worker_payment_mark_failures_total", "reason" => "refused")
                    .increment(1);
                self.review(
                    client,
                    shop,
                    order_id,
                    format!("Shopify refused orderMarkAsPaid: {message}"),
                    report,
                )
                .await
            }
        }
    }

    async fn read(&self, shop: &str, gid: &str) -> Result<Option<OrderPayment>, PaymentError> {
        let answer: OrderAnswer = self
            .admin
            .query(shop, ORDER_PAYMENT, json!({"id": gid}))
            .await?;
        Ok(answer.order)
    }

    async fn reported(
        &self,
        client: &Object,
        shop: &str,
        order_id: i64,
        outcome: &'static str,
        report: &mut PaymentReport,
    ) -> Result<(), PaymentError> {
        let seen: Option<DateTime<Utc>> = client
            .query_one(
                "UPDATE payment_sync SET state = 'reported', outcome = $3, reason = NULL, updated_at = now()
                  WHERE shop_domain = $1 AND order_id = $2 RETURNING paid_seen_at",
                &[&shop, &order_id, &outcome],
            )
            .await?
            .get(0);
        if let Some(seen) = seen {
            let lag = (Utc::now() - seen).to_std().unwrap_or_default();
            metrics::histogram!("hookline_worker_payment_sync_lag_seconds")
                .record(lag.as_secs_f64());
        }
        tracing::info!(
            shop,
            order_id,
            outcome,
            "Shopify shows the bank-transfer order paid"
        );
        report.reported += 1;
        count(outcome);
        Ok(())
    }

    async fn review(
        &self,
        client: &Object,
        shop: &str,
        order_id: i64,
        why: String,
        report: &mut PaymentReport,
    ) -> Result<(), PaymentError> {
        client
            .execute(
                "UPDATE payment_sync SET state = 'needs_review', reason = $3, updated_at = now()
                  WHERE shop_domain = $1 AND order_id = $2",
                &[&shop, &order_id, &why],
            )
            .await?;
        tracing::warn!(shop, order_id, reason = %why, "bank payment needs review");
        report.needs_review += 1;
        count("needs_review");
        Ok(())
    }
}

/// Writes the order's payment state (a `reported` row is never changed here).
#[allow(clippy::too_many_arguments)]
async fn record(
    client: &Object,
    shop: &str,
    order_id: i64,
    invoice_id: &str,
    state: PaymentState,
    paid: Option<Decimal>,
    total: Option<Decimal>,
    reason: Option<&str>,
    seen: Option<DateTime<Utc>>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO payment_sync (shop_domain, order_id, invoice_id, state, paid_amount, total_price, reason, paid_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (shop_domain, order_id) DO UPDATE SET
                invoice_id = EXCLUDED.invoice_id, state = EXCLUDED.state,
                paid_amount = EXCLUDED.paid_amount, total_price = EXCLUDED.total_price,
                reason = EXCLUDED.reason,
                paid_seen_at = COALESCE(payment_sync.paid_seen_at, EXCLUDED.paid_seen_at),
                updated_at = now()
              WHERE payment_sync.state <> 'reported'",
            &[&shop, &order_id, &invoice_id, &state.as_str(), &paid, &total, &reason, &seen],
        )
        .await?;
    Ok(())
}

/// The partial and needs-review gauges of `shop`.
async fn gauges(client: &Object, shop: &str) -> Result<(), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE p.state = 'partial' AND o.state <> 'cancelled' AND NOT o.cancel_requested),
                    count(*) FILTER (WHERE p.state = 'needs_review')
               FROM payment_sync p JOIN order_sync o USING (shop_domain, order_id)
              WHERE p.shop_domain = $1",
            &[&shop],
        )
        .await?;
    let (partial, review): (i64, i64) = (row.get(0), row.get(1));
    metrics::gauge!("hookline_worker_payments_partial", "shop" => shop.to_owned())
        .set(partial as f64);
    metrics::gauge!("hookline_worker_payments_needs_review", "shop" => shop.to_owned())
        .set(review as f64);
    Ok(())
}

async fn advance(
    client: &Object,
    shop: &str,
    upto: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO payment_watermarks (shop_domain, update_after) VALUES ($1, $2)
             ON CONFLICT (shop_domain) DO UPDATE SET update_after = GREATEST(payment_watermarks.update_after, EXCLUDED.update_after), last_run_at = now()",
            &[&shop, &upto],
        )
        .await?;
    Ok(())
}

/// The GraphQL id of a Shopify order.
pub fn order_gid(order_id: i64) -> String {
    format!("gid://shopify/Order/{order_id}")
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

fn count(outcome: &'static str) {
    metrics::counter!("hookline_worker_payments_total", "outcome" => outcome).increment(1);
}

fn failure_reason(e: &PaymentError) -> &'static str {
    match e {
        PaymentError::Database(_) | PaymentError::Pool(_) => "database",
        PaymentError::SevDesk(_) => "sevdesk",
        PaymentError::Shopify(a) if a.outcome_unknown() => "shopify_unknown_outcome",
        PaymentError::Shopify(_) => "shopify",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(state: &str) -> OrderFacts {
        OrderFacts {
            order_id: 1,
            prepayment: true,
            state: state.into(),
            cancel_requested: false,
            total: Some(Decimal::from(119)),
        }
    }

    fn d(n: i64) -> Option<Decimal> {
        Some(Decimal::from(n))
    }

    #[test]
    fn a_fully_paid_prepayment_invoice_is_marked_paid_once() {
        let o = order("invoice_sent");
        assert_eq!(decide(1000, d(119), Some(&o), None), Decision::Mark);
        assert_eq!(
            decide(1000, d(119), Some(&o), Some(PaymentState::Partial)),
            Decision::Mark,
            "the rest arrived"
        );
        assert_eq!(
            decide(1000, d(119), Some(&o), Some(PaymentState::Marking)),
            Decision::ReadFirst,
            "a mutation may have been sent: read before sending again"
        );
        assert_eq!(
            decide(1000, d(119), Some(&o), Some(PaymentState::Reported)),
            Decision::Skip("already_reported")
        );
        // Still mailing (the relay has not moved the order on): the money is real all the same.
        assert_eq!(
            decide(1000, d(119), Some(&order("invoice_mailing")), None),
            Decision::Mark
        );
    }

    #[test]
    fn only_our_prepayment_orders_that_are_not_cancelled_are_touched() {
        assert_eq!(decide(1000, d(119), None, None), Decision::Skip("not_ours"));
        let card = OrderFacts {
            prepayment: false,
            ..order("payment_booked")
        };
        assert_eq!(
            decide(1000, d(119), Some(&card), None),
            Decision::Skip("not_prepayment")
        );
        assert_eq!(
            decide(1000, d(119), Some(&order("cancelled")), None),
            Decision::Skip("cancelled")
        );
        let cancelling = OrderFacts {
            cancel_requested: true,
            ..order("invoice_sent")
        };
        assert_eq!(
            decide(1000, d(119), Some(&cancelling), None),
            Decision::Skip("cancelled")
        );
        assert_eq!(
            decide(1000, d(119), Some(&order("payment_booked")), None),
            Decision::Skip("paid_in_shopify_first")
        );
        assert_eq!(
            decide(200, d(0), Some(&order("invoice_sent")), None),
            Decision::Skip("not_paid")
        );
    }

    #[test]
    fn part_payments_wait_and_unmatched_money_needs_review_with_both_amounts() {
        let o = order("invoice_sent");
        assert_eq!(
            decide(750, d(50), Some(&o), None),
            Decision::Partial {
                paid: Decimal::from(50),
                total: Decimal::from(119)
            }
        );
        for (status, paid) in [(1000, d(150)), (750, d(150)), (1000, d(100))] {
            match decide(status, paid, Some(&o), None) {
                Decision::NeedsReview(why) => {
                    assert!(
                        why.contains("119") && why.contains(&paid.unwrap().to_string()),
                        "{why}"
                    )
                }
                other => panic!("{status} {paid:?}: {other:?}"),
            }
        }
        assert!(matches!(
            decide(1000, None, Some(&o), None),
            Decision::NeedsReview(_)
        ));
        assert!(matches!(
            decide(750, d(119), Some(&o), None),
            Decision::NeedsReview(_)
        ));
        let no_total = OrderFacts { total: None, ..o };
        assert!(matches!(
            decide(1000, d(119), Some(&no_total), None),
            Decision::NeedsReview(_)
        ));
    }

    #[test]
    fn shopify_has_the_money_when_paid_or_refunded_after() {
        for s in ["PAID", "PARTIALLY_REFUNDED", "REFUNDED"] {
            assert!(shows_paid(Some(s)));
        }
        for s in ["PENDING", "AUTHORIZED", "PARTIALLY_PAID", "VOIDED"] {
            assert!(!shows_paid(Some(s)));
        }
        assert!(!shows_paid(None));
    }
}
