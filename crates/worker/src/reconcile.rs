//! The reconciliation poller: finds paid, cancelled or refunded orders whose webhook never
//! arrived (or never got through) and publishes them again, so the orders domain catches up.
//!
//! It runs as a task inside the worker rather than as its own binary: it needs exactly what the
//! worker already has (PostgreSQL for `order_sync` and the watermark, the broker for publishing),
//! and running it in every worker replica costs nothing because replicas take turns per shop
//! through a PostgreSQL advisory lock — only the holder polls that shop, and a crashed holder's
//! lock goes with its connection.
//!
//! Every interval, for each shop with Admin API credentials (of any kind) that has not
//! uninstalled the app, through the GraphQL Admin API
//! ([`crate::shopify::AdminClient`], which keeps to Shopify's cost-based rate limit): list the
//! orders updated since the watermark minus an overlap, **sorted by `UPDATED_AT`**
//! ([`orders::LIST_ORDERS`]), page by page. An order is behind ([`due_topic`]) when Shopify
//! reports it paid (`PAID`, `PARTIALLY_REFUNDED`, `REFUNDED`: an order refunded later was still
//! sold, and gets its invoice before its credit notes) and `order_sync` has not booked the
//! payment, or cancelled and `order_sync` is not cancelled; a refund is behind when `refund_sync`
//! has not reached a final state. Only what is behind is read in full ([`orders::ORDER`],
//! [`orders::REFUND`]), mapped to the webhook shape the orders domain parses, and published with
//! `source = reconciliation`, the idempotency key a webhook would have, and a broker confirm.
//!
//! The watermark moves only over orders that were handled, in the listing's order: after each
//! page, and when a cycle stops on an error, it is set to the `updated_at` of the last order
//! handled, so a failure on page 2 makes the next cycle start where page 1 ended — nothing is
//! skipped. The filter is `updated_at >= watermark − overlap`: orders sharing the last handled
//! order's timestamp are read again, not lost across a page boundary, and the republish claim
//! keeps a re-read order from being published twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};
use hookline_core::Envelope;
use hookline_core::config::Secret;
use hookline_core::topology::{self, EVENTS_EXCHANGE, TopologySettings};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties};
use serde_json::json;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::shopify::graphql::gid_id;
use crate::shopify::orders::{self, ListedOrder, OrderAnswer, OrdersPage, RefundAnswer};
use crate::shopify::{AdminClient, AdminError};

/// First key of the advisory lock: "reconcile".
const LOCK_CLASS: i32 = 0x7265_636f;

/// A shop to poll with a static Admin API token (`HOOKLINE_RECONCILE_SHOPS`).
#[derive(Debug, Clone)]
pub struct ShopAccess {
    /// `example.myshopify.com`.
    pub shop: String,
    /// Admin API access token.
    pub token: Secret,
}

/// The poller's settings.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// The shops with static Admin API tokens (`HOOKLINE_RECONCILE_SHOPS`, or the shops
    /// file's `[shop.admin] token`). The poller polls every shop of its Admin client's
    /// [`crate::shopify::Tokens`], which holds these and the shops of every other kind.
    pub shops: Vec<ShopAccess>,
    /// `HOOKLINE_RECONCILE_INTERVAL_SECS` (300).
    pub interval: Duration,
    /// `HOOKLINE_RECONCILE_OVERLAP_SECS` (600): how far before the watermark each cycle starts,
    /// for changes whose `updated_at` lags behind their visibility.
    pub overlap: Duration,
    /// `HOOKLINE_RECONCILE_LOOKBACK_SECS` (86400): where the first cycle of a shop starts.
    pub lookback: Duration,
    /// `HOOKLINE_SHOPIFY_ADMIN_URL` (`https://{shop}`): `{shop}` is replaced.
    pub admin_url: String,
    /// `HOOKLINE_SHOPIFY_API_VERSION`.
    pub api_version: String,
    /// `HOOKLINE_RECONCILE_PAGE_LIMIT` (250, Shopify's maximum): orders per page.
    pub page_limit: u32,
    /// `HOOKLINE_RECONCILE_REPUBLISH_SECS` (3600): an order is republished at most once per this
    /// long, however many cycles find it behind.
    pub republish_after: Duration,
}

/// What one cycle did for one shop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShopReport {
    /// Orders listed.
    pub seen: usize,
    /// Envelopes published for orders and refunds that were behind.
    pub published: usize,
    /// Pages fetched.
    pub pages: usize,
    /// Orders or refunds behind that cannot be read in the webhook shape (logged, counted).
    pub unreadable: usize,
    /// Skipped because another replica holds the shop.
    pub skipped: bool,
    /// Not polled: the shop uninstalled the app.
    pub uninstalled: bool,
}

/// Why a cycle for a shop stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A query failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// No connection from the pool.
    #[error("no database connection available")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The Admin API failed.
    #[error("Shopify Admin API")]
    Shopify(#[from] AdminError),
    /// A payload could not become an envelope.
    #[error("envelope: {0}")]
    Envelope(String),
    /// Publishing failed.
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    /// The broker did not confirm.
    #[error("the broker did not confirm a reconciled envelope")]
    NotConfirmed,
}

/// Which topic to publish for an order Shopify reports as `financial_status` (REST words:
/// `paid`, `partially_refunded`, …) and `cancelled`, while `order_sync` is in `state`; `None`
/// when it is not behind.
///
/// An order refunded after it was paid is still a sale: it is published as `orders/paid`
/// (whose handler books `paid`, `partially_refunded` and `refunded` alike) so its invoice
/// exists, and its refunds follow as credit notes. A cancelled order is `orders/cancelled`,
/// whatever its payment, which cancels an invoice or prevents one.
pub fn due_topic(
    financial_status: Option<&str>,
    cancelled: bool,
    state: Option<&str>,
) -> Option<&'static str> {
    if cancelled {
        return (state != Some("cancelled")).then_some("orders/cancelled");
    }
    let sold = matches!(
        financial_status,
        Some("paid" | "partially_refunded" | "refunded")
    );
    (sold && !matches!(state, Some("payment_booked" | "cancelled"))).then_some("orders/paid")
}

/// The poller.
pub struct Reconciler {
    pool: Pool,
    admin: Arc<AdminClient>,
    settings: ReconcileSettings,
    amqp_url: String,
    topology: TopologySettings,
}

impl Reconciler {
    /// A poller using `pool` (its own), reading through `admin` and publishing to `amqp_url`.
    pub fn new(
        pool: Pool,
        admin: Arc<AdminClient>,
        settings: ReconcileSettings,
        amqp_url: String,
        topology: TopologySettings,
    ) -> Self {
        Self {
            pool,
            admin,
            settings,
            amqp_url,
            topology,
        }
    }

    /// Polls every interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_cycle().await {
                Ok(reports) => {
                    for (shop, r) in reports {
                        tracing::info!(
                            shop,
                            seen = r.seen,
                            published = r.published,
                            pages = r.pages,
                            unreadable = r.unreadable,
                            skipped = r.skipped,
                            uninstalled = r.uninstalled,
                            "reconciliation cycle"
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %crate::failure::error_chain(&error), "reconciliation cycle failed")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }

    /// One cycle over every shop. Public so tests and operators' tools can trigger one. A shop
    /// that fails is logged and retried next cycle; the error is returned when every shop failed.
    pub async fn run_cycle(&self) -> Result<Vec<(String, ShopReport)>, ReconcileError> {
        let connection = Connection::connect(
            &self.amqp_url,
            ConnectionProperties::default().with_connection_name("hookline-reconciler".into()),
        )
        .await?;
        let channel = connection.create_channel().await?;
        topology::declare(&channel, &self.topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut reports = vec![];
        let mut failure = None;
        for shop in self.shops() {
            match self.run_shop(&channel, &shop).await {
                Ok(report) => reports.push((shop, report)),
                Err(error) => {
                    tracing::warn!(shop = %shop, error = %crate::failure::error_chain(&error), "reconciling the shop failed; next cycle retries");
                    failure = Some(error);
                }
            }
        }
        let _ = connection.close(200, "cycle done".into()).await;
        match failure {
            Some(error) if reports.is_empty() => Err(error),
            _ => Ok(reports),
        }
    }

    /// Every shop with Admin API credentials, in a stable order.
    fn shops(&self) -> Vec<String> {
        let mut shops: Vec<String> = self.admin.tokens().shops().map(str::to_owned).collect();
        shops.sort_unstable();
        shops
    }

    async fn run_shop(&self, channel: &Channel, shop: &str) -> Result<ShopReport, ReconcileError> {
        let client = self.pool.get().await?;
        // An uninstalled shop's tokens no longer work, and it owes us nothing until it installs
        // the app again (see `crate::domains::compliance`).
        if crate::domains::compliance::is_uninstalled(&client, shop).await? {
            return Ok(ShopReport {
                uninstalled: true,
                ..Default::default()
            });
        }
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &shop],
            )
            .await?
            .get(0);
        if !locked {
            return Ok(ShopReport {
                skipped: true,
                ..Default::default()
            });
        }
        let result = self.poll_shop(&client, channel, shop).await;
        if client
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_CLASS, &shop],
            )
            .await
            .is_err()
        {
            drop(deadpool_postgres::Object::take(client));
        }
        result
    }

    async fn poll_shop(
        &self,
        client: &Object,
        channel: &Channel,
        shop: &str,
    ) -> Result<ShopReport, ReconcileError> {
        let watermark: DateTime<Utc> = client
            .query_opt(
                "SELECT updated_at_min FROM reconcile_watermarks WHERE shop_domain = $1",
                &[&shop],
            )
            .await?
            .map(|r| r.get(0))
            .unwrap_or_else(|| {
                Utc::now() - chrono::Duration::from_std(self.settings.lookback).unwrap_or_default()
            });
        let since =
            watermark - chrono::Duration::from_std(self.settings.overlap).unwrap_or_default();
        let mut report = ShopReport::default();
        let mut handled: Option<DateTime<Utc>> = None;
        let result = self
            .walk(client, channel, shop, since, &mut report, &mut handled)
            .await;
        // Whatever stopped the walk: the watermark moves over what was handled, no further.
        if let Some(upto) = handled {
            let advanced = advance(client, shop, upto).await;
            if result.is_ok() {
                advanced?;
            }
        }
        result.map(|()| report)
    }

    /// Pages through the orders updated since `since`, oldest first, handling each in turn;
    /// `handled` is the `updated_at` of the last order fully handled.
    async fn walk(
        &self,
        client: &Object,
        channel: &Channel,
        shop: &str,
        since: DateTime<Utc>,
        report: &mut ShopReport,
        handled: &mut Option<DateTime<Utc>>,
    ) -> Result<(), ReconcileError> {
        let filter = orders::updated_since(since);
        let mut first = self.settings.page_limit.clamp(1, 250);
        let mut after: Option<String> = None;
        loop {
            let variables = json!({ "first": first, "after": after, "query": filter });
            let page: OrdersPage = match self
                .admin
                .query(shop, orders::LIST_ORDERS, variables)
                .await
            {
                Ok(page) => page,
                Err(AdminError::TooExpensive { requested, .. }) if first > 1 => {
                    first = (first / 2).max(1);
                    tracing::warn!(
                        shop,
                        ?requested,
                        first,
                        "the order listing costs more than Shopify runs in one query; asking for fewer orders per page"
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            report.pages += 1;
            for listed in &page.orders.nodes {
                report.seen += 1;
                self.handle(client, channel, shop, listed, report).await?;
                *handled = Some(listed.updated_at);
            }
            let info = page.orders.page_info;
            match info.end_cursor {
                Some(cursor) if info.has_next_page => {
                    if let Some(upto) = *handled {
                        advance(client, shop, upto).await?;
                    }
                    after = Some(cursor);
                }
                _ => return Ok(()),
            }
        }
    }

    /// Publishes what is behind of one listed order: the order's own event first, then its
    /// refunds (a refund that still finds no booked invoice waits for it).
    async fn handle(
        &self,
        client: &Object,
        channel: &Channel,
        shop: &str,
        listed: &ListedOrder,
        report: &mut ShopReport,
    ) -> Result<(), ReconcileError> {
        let Some(order_id) = gid_id(&listed.id) else {
            tracing::warn!(shop, id = %listed.id, "listed order without a numeric gid; skipped");
            unreadable(report, "order");
            return Ok(());
        };
        let state: Option<String> = client
            .query_opt(
                "SELECT state FROM order_sync WHERE shop_domain = $1 AND order_id = $2",
                &[&shop, &order_id],
            )
            .await?
            .map(|r| r.get(0));
        let status = listed
            .display_financial_status
            .as_deref()
            .map(orders::rest_enum);
        if let Some(topic) = due_topic(
            status.as_deref(),
            listed.cancelled_at.is_some(),
            state.as_deref(),
        ) {
            // Read in full before claiming: a failed read leaves no claim that would keep the
            // next cycle from publishing it.
            match self.read_order(shop, &listed.id).await? {
                Read::Payload(payload) => {
                    if self.claim_order(client, shop, order_id).await? {
                        if let Err(e) = self.publish(channel, shop, topic, &payload).await {
                            release_order(client, shop, order_id).await;
                            return Err(e);
                        }
                        report.published += 1;
                    }
                }
                Read::Gone => {}
                Read::Unreadable(why) => {
                    tracing::warn!(shop, order_id, %why, "order behind, but not readable in the webhook shape; its webhook is the only way");
                    unreadable(report, "order");
                }
            }
        }
        for refund in &listed.refunds {
            let Some(refund_id) = gid_id(&refund.id) else {
                unreadable(report, "refund");
                continue;
            };
            if self.refund_done(client, shop, refund_id).await? {
                continue;
            }
            match self.read_refund(shop, &refund.id).await? {
                Read::Payload(payload) => {
                    if self.claim_refund(client, shop, refund_id).await? {
                        if let Err(e) = self
                            .publish(channel, shop, "refunds/create", &payload)
                            .await
                        {
                            release_refund(client, shop, refund_id).await;
                            return Err(e);
                        }
                        report.published += 1;
                    }
                }
                Read::Gone => {}
                Read::Unreadable(why) => {
                    tracing::warn!(shop, refund_id, %why, "refund behind, but not readable in the webhook shape; its webhook is the only way");
                    unreadable(report, "refund");
                }
            }
        }
        Ok(())
    }

    /// The order in the webhook shape, its line items read page by page.
    async fn read_order(&self, shop: &str, gid: &str) -> Result<Read, ReconcileError> {
        let mut lines = vec![];
        let mut after: Option<String> = None;
        let mut first_page = None;
        loop {
            let variables = json!({
                "id": gid,
                "lines": orders::LINE_ITEMS_PER_QUERY,
                "linesAfter": after,
            });
            let answer: OrderAnswer = self.admin.query(shop, orders::ORDER, variables).await?;
            let Some(node) = answer.order else {
                return Ok(Read::Gone);
            };
            lines.extend(node.line_items.nodes.iter().cloned());
            let info = node.line_items.page_info.clone();
            first_page.get_or_insert(node);
            match info.end_cursor {
                Some(cursor) if info.has_next_page => after = Some(cursor),
                _ => break,
            }
        }
        let Some(node) = first_page else {
            return Ok(Read::Gone);
        };
        Ok(match orders::order_payload(&node, &lines) {
            Ok(payload) => Read::Payload(payload),
            Err(e) => Read::Unreadable(e.to_string()),
        })
    }

    /// The refund in the webhook shape.
    async fn read_refund(&self, shop: &str, gid: &str) -> Result<Read, ReconcileError> {
        let answer: RefundAnswer = self
            .admin
            .query(shop, orders::REFUND, json!({ "id": gid }))
            .await?;
        Ok(match answer.refund {
            None => Read::Gone,
            Some(node) => match orders::refund_payload(&node) {
                Ok(payload) => Read::Payload(payload),
                Err(e) => Read::Unreadable(e.to_string()),
            },
        })
    }

    /// Claims the republish of an order: at most once per `republish_after`, so an event that
    /// keeps failing (and sits in the dead-letter queue) is not copied there every cycle.
    async fn claim_order(
        &self,
        client: &Object,
        shop: &str,
        order_id: i64,
    ) -> Result<bool, ReconcileError> {
        let republish_ms = self.settings.republish_after.as_secs_f64() * 1000.0;
        Ok(client
            .query_opt(
                "INSERT INTO order_sync (shop_domain, order_id, reconciled_at) VALUES ($1, $2, now())
                 ON CONFLICT (shop_domain, order_id) DO UPDATE SET reconciled_at = now()
                  WHERE order_sync.reconciled_at IS NULL
                     OR order_sync.reconciled_at < now() - $3 * interval '1 millisecond'
                 RETURNING 1",
                &[&shop, &order_id, &republish_ms],
            )
            .await?
            .is_some())
    }

    /// Whether a refund has reached a final state here.
    async fn refund_done(
        &self,
        client: &Object,
        shop: &str,
        refund_id: i64,
    ) -> Result<bool, ReconcileError> {
        Ok(client
            .query_opt(
                "SELECT 1 FROM refund_sync WHERE shop_domain = $1 AND refund_id = $2
                   AND state IN ('refund_booked', 'covered_by_cancellation', 'no_money_refunded')",
                &[&shop, &refund_id],
            )
            .await?
            .is_some())
    }

    /// Claims the republish of a refund, like [`Reconciler::claim_order`].
    async fn claim_refund(
        &self,
        client: &Object,
        shop: &str,
        refund_id: i64,
    ) -> Result<bool, ReconcileError> {
        let republish_ms = self.settings.republish_after.as_secs_f64() * 1000.0;
        Ok(client
            .query_opt(
                "INSERT INTO refund_reconciled (shop_domain, refund_id) VALUES ($1, $2)
                 ON CONFLICT (shop_domain, refund_id) DO UPDATE SET reconciled_at = now()
                  WHERE refund_reconciled.reconciled_at < now() - $3 * interval '1 millisecond'
                 RETURNING 1",
                &[&shop, &refund_id, &republish_ms],
            )
            .await?
            .is_some())
    }

    async fn publish(
        &self,
        channel: &Channel,
        shop: &str,
        topic: &'static str,
        payload: &serde_json::Value,
    ) -> Result<(), ReconcileError> {
        let raw = RawValue::from_string(payload.to_string())
            .map_err(|e| ReconcileError::Envelope(e.to_string()))?;
        let envelope =
            Envelope::from_reconciliation(shop, topic, self.admin.api_version(), raw, Utc::now())
                .map_err(|e| ReconcileError::Envelope(e.to_string()))?;
        publish(channel, &envelope).await?;
        metrics::counter!("hookline_worker_reconciled_total", "topic" => topic).increment(1);
        Ok(())
    }
}

/// An order or refund read in full.
enum Read {
    Payload(serde_json::Value),
    /// Deleted since it was listed.
    Gone,
    /// Not mappable to the webhook shape.
    Unreadable(String),
}

fn unreadable(report: &mut ShopReport, kind: &'static str) {
    report.unreadable += 1;
    metrics::counter!("hookline_worker_reconcile_unreadable_total", "kind" => kind).increment(1);
}

/// Moves the shop's watermark forward to `upto` (never back).
async fn advance(client: &Object, shop: &str, upto: DateTime<Utc>) -> Result<(), ReconcileError> {
    client
        .execute(
            "INSERT INTO reconcile_watermarks (shop_domain, updated_at_min) VALUES ($1, $2)
             ON CONFLICT (shop_domain) DO UPDATE SET updated_at_min = GREATEST(reconcile_watermarks.updated_at_min, EXCLUDED.updated_at_min), last_run_at = now()",
            &[&shop, &upto],
        )
        .await?;
    Ok(())
}

/// A publish failed after its claim: give the claim back, so the next cycle publishes again
/// (a duplicate of an envelope that did arrive is answered by its idempotency key).
async fn release_order(client: &Object, shop: &str, order_id: i64) {
    let _ = client
        .execute(
            "UPDATE order_sync SET reconciled_at = NULL WHERE shop_domain = $1 AND order_id = $2",
            &[&shop, &order_id],
        )
        .await;
}

async fn release_refund(client: &Object, shop: &str, refund_id: i64) {
    let _ = client
        .execute(
            "DELETE FROM refund_reconciled WHERE shop_domain = $1 AND refund_id = $2",
            &[&shop, &refund_id],
        )
        .await;
}

async fn publish(channel: &Channel, envelope: &Envelope) -> Result<(), ReconcileError> {
    let confirm = channel
        .basic_publish(
            EVENTS_EXCHANGE.into(),
            envelope.routing_key().as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &envelope.to_json(),
            envelope.amqp_properties("hookline-reconciler"),
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        _ => Err(ReconcileError::NotConfirmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_and_later_refunded_orders_are_due_for_their_invoice() {
        for status in ["paid", "partially_refunded", "refunded"] {
            assert_eq!(due_topic(Some(status), false, None), Some("orders/paid"));
            assert_eq!(
                due_topic(Some(status), false, Some("invoice_sent")),
                Some("orders/paid")
            );
            assert_eq!(due_topic(Some(status), false, Some("payment_booked")), None);
        }
        for status in [None, Some("pending"), Some("authorized"), Some("voided")] {
            assert_eq!(due_topic(status, false, None), None, "{status:?}");
        }
    }

    #[test]
    fn cancelled_orders_are_due_until_cancelled_here() {
        assert_eq!(
            due_topic(Some("refunded"), true, Some("payment_booked")),
            Some("orders/cancelled")
        );
        assert_eq!(
            due_topic(Some("pending"), true, None),
            Some("orders/cancelled")
        );
        assert_eq!(due_topic(Some("paid"), true, Some("cancelled")), None);
        assert_eq!(due_topic(Some("paid"), false, Some("cancelled")), None);
    }
}
