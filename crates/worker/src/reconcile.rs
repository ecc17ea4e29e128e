//! The reconciliation poller: finds paid or cancelled orders whose webhook never arrived (or
//! never got through) and publishes them again, so the orders domain catches up.
//!
//! It runs as a task inside the worker rather than as its own binary: it needs exactly what the
//! worker already has (PostgreSQL for `order_sync` and the watermark, the broker for publishing),
//! and running it in every worker replica costs nothing because replicas take turns per shop
//! through a PostgreSQL advisory lock — only the holder polls that shop, and a crashed holder's
//! lock goes with its connection.
//!
//! Every interval, for each configured shop: list orders updated since the watermark minus an
//! overlap (`GET /admin/api/{version}/orders.json?status=any&updated_at_min=…&limit=250`, cursor
//! pagination through the `Link` header's `page_info`), respecting Shopify's leaky bucket
//! (`X-Shopify-Shop-Api-Call-Limit`; 429 + `Retry-After`). An order is behind when Shopify says
//! paid but `order_sync` has not booked the payment, or cancelled but `order_sync` is not
//! cancelled; for each, an envelope with `source = reconciliation` and the same idempotency key a
//! webhook would have is published with a broker confirm. The watermark advances only after a
//! page's envelopes are all confirmed.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::Envelope;
use hookline_core::config::Secret;
use hookline_core::retry::parse_retry_after;
use hookline_core::topology::{self, EVENTS_EXCHANGE, TopologySettings};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

/// First key of the advisory lock: "reconcile".
const LOCK_CLASS: i32 = 0x7265_636f;

/// A shop to poll.
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
    /// `HOOKLINE_RECONCILE_SHOPS`: `shop=token` pairs, comma-separated. Empty: no polling.
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
    /// `HOOKLINE_SHOPIFY_API_VERSION` (`2025-10`).
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
    /// Envelopes published for orders that were behind.
    pub published: usize,
    /// Pages fetched.
    pub pages: usize,
    /// Skipped because another replica holds the shop.
    pub skipped: bool,
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
    #[error("Shopify Admin API: {0}")]
    Shopify(String),
    /// Publishing failed.
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    /// The broker did not confirm.
    #[error("the broker did not confirm a reconciled envelope")]
    NotConfirmed,
}

/// The fields of a listed order that decide whether it is behind.
#[derive(Deserialize)]
struct Listed {
    id: i64,
    #[serde(default)]
    financial_status: Option<String>,
    #[serde(default)]
    cancelled_at: Option<String>,
    updated_at: DateTime<chrono::FixedOffset>,
    /// The order's refunds, as `refunds/create` sends each.
    #[serde(default)]
    refunds: Vec<Box<RawValue>>,
}

/// The part of a listed refund the poller reads.
#[derive(Deserialize)]
struct ListedRefund {
    id: i64,
}

#[derive(Deserialize)]
struct Page {
    orders: Vec<Box<RawValue>>,
}

/// The poller.
pub struct Reconciler {
    pool: Pool,
    http: reqwest::Client,
    settings: ReconcileSettings,
    amqp_url: String,
    topology: TopologySettings,
}

impl Reconciler {
    /// A poller using `pool` (its own) and publishing to `amqp_url`.
    pub fn new(
        pool: Pool,
        settings: ReconcileSettings,
        amqp_url: String,
        topology: TopologySettings,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            pool,
            http,
            settings,
            amqp_url,
            topology,
        })
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
                            skipped = r.skipped,
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

    /// One cycle over every shop. Public so tests and operators' tools can trigger one.
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
        for access in &self.settings.shops {
            match self.run_shop(&channel, access).await {
                Ok(report) => reports.push((access.shop.clone(), report)),
                Err(error) => {
                    tracing::warn!(shop = %access.shop, error = %crate::failure::error_chain(&error), "reconciling the shop failed; next cycle retries");
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

    async fn run_shop(
        &self,
        channel: &Channel,
        access: &ShopAccess,
    ) -> Result<ShopReport, ReconcileError> {
        let client = self.pool.get().await?;
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &access.shop],
            )
            .await?
            .get(0);
        if !locked {
            return Ok(ShopReport {
                skipped: true,
                ..Default::default()
            });
        }
        let result = self.poll_shop(&client, channel, access).await;
        if client
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_CLASS, &access.shop],
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
        client: &deadpool_postgres::Object,
        channel: &Channel,
        access: &ShopAccess,
    ) -> Result<ShopReport, ReconcileError> {
        let watermark: DateTime<Utc> = client
            .query_opt(
                "SELECT updated_at_min FROM reconcile_watermarks WHERE shop_domain = $1",
                &[&access.shop],
            )
            .await?
            .map(|r| r.get(0))
            .unwrap_or_else(|| {
                Utc::now() - chrono::Duration::from_std(self.settings.lookback).unwrap_or_default()
            });
        let since =
            watermark - chrono::Duration::from_std(self.settings.overlap).unwrap_or_default();
        let base = self.settings.admin_url.replace("{shop}", &access.shop);
        let mut url = reqwest::Url::parse_with_params(
            &format!("{base}/admin/api/{}/orders.json", self.settings.api_version),
            &[
                ("status", "any"),
                ("updated_at_min", &since.to_rfc3339()),
                ("limit", &self.settings.page_limit.to_string()),
            ],
        )
        .map_err(|e| ReconcileError::Shopify(format!("bad admin URL: {e}")))?;
        let mut report = ShopReport::default();
        let mut newest = watermark;
        loop {
            let (page, next) = self.fetch(&url, access).await?;
            report.pages += 1;
            for raw in page.orders {
                let Ok(listed) = serde_json::from_str::<Listed>(raw.get()) else {
                    continue;
                };
                report.seen += 1;
                newest = newest.max(listed.updated_at.with_timezone(&Utc));
                let mut due = vec![];
                if let Some(topic) = self.behind(client, &access.shop, &listed).await? {
                    due.push((topic, raw.clone()));
                }
                // A refund whose webhook was lost: its credit note is due too. The order's own
                // event goes first; a refund that still finds no booked invoice waits for it.
                for refund in &listed.refunds {
                    if self.refund_behind(client, &access.shop, refund).await? {
                        due.push(("refunds/create", refund.clone()));
                    }
                }
                for (topic, payload) in due {
                    let envelope = Envelope::from_reconciliation(
                        &access.shop,
                        topic,
                        &self.settings.api_version,
                        payload,
                        Utc::now(),
                    )
                    .map_err(|e| ReconcileError::Shopify(e.to_string()))?;
                    publish(channel, &envelope).await?;
                    report.published += 1;
                    metrics::counter!("hookline_worker_reconciled_total", "topic" => topic)
                        .increment(1);
                }
            }
            // The page is published: only now may the watermark move past it.
            client
                .execute(
                    "INSERT INTO reconcile_watermarks (shop_domain, updated_at_min) VALUES ($1, $2)
                     ON CONFLICT (shop_domain) DO UPDATE SET updated_at_min = GREATEST(reconcile_watermarks.updated_at_min, EXCLUDED.updated_at_min), last_run_at = now()",
                    &[&access.shop, &newest],
                )
                .await?;
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(report)
    }

    /// Whether a refund Shopify lists has not reached a final state here, and may be
    /// republished now (at most once per `republish_after`, like orders).
    async fn refund_behind(
        &self,
        client: &deadpool_postgres::Object,
        shop: &str,
        refund: &RawValue,
    ) -> Result<bool, ReconcileError> {
        let Ok(listed) = serde_json::from_str::<ListedRefund>(refund.get()) else {
            return Ok(false);
        };
        let done = client
            .query_opt(
                "SELECT 1 FROM refund_sync WHERE shop_domain = $1 AND refund_id = $2
                   AND state IN ('refund_booked', 'covered_by_cancellation', 'no_money_refunded')",
                &[&shop, &listed.id],
            )
            .await?
            .is_some();
        if done {
            return Ok(false);
        }
        let republish_ms = self.settings.republish_after.as_secs_f64() * 1000.0;
        let claimed = client
            .query_opt(
                "INSERT INTO refund_reconciled (shop_domain, refund_id) VALUES ($1, $2)
                 ON CONFLICT (shop_domain, refund_id) DO UPDATE SET reconciled_at = now()
                  WHERE refund_reconciled.reconciled_at < now() - $3 * interval '1 millisecond'
                 RETURNING 1",
                &[&shop, &listed.id, &republish_ms],
            )
            .await?;
        Ok(claimed.is_some())
    }

    /// Which topic to publish for an order whose sync state is behind Shopify's, if any.
    async fn behind(
        &self,
        client: &deadpool_postgres::Object,
        shop: &str,
        listed: &Listed,
    ) -> Result<Option<&'static str>, ReconcileError> {
        let state: Option<String> = client
            .query_opt(
                "SELECT state FROM order_sync WHERE shop_domain = $1 AND order_id = $2",
                &[&shop, &listed.id],
            )
            .await?
            .map(|r| r.get(0));
        let state = state.as_deref();
        let topic = if listed.cancelled_at.is_some() {
            (state != Some("cancelled")).then_some("orders/cancelled")
        } else if listed.financial_status.as_deref() == Some("paid")
            && !matches!(state, Some("payment_booked" | "cancelled"))
        {
            Some("orders/paid")
        } else {
            None
        };
        let Some(topic) = topic else { return Ok(None) };
        // Claim the republish: at most once per interval per order, so an event that keeps
        // failing (and sits in the dead-letter queue) is not copied there every cycle.
        let republish_ms = self.settings.republish_after.as_secs_f64() * 1000.0;
        let claimed = client
            .query_opt(
                "INSERT INTO order_sync (shop_domain, order_id, reconciled_at) VALUES ($1, $2, now())
                 ON CONFLICT (shop_domain, order_id) DO UPDATE SET reconciled_at = now()
                  WHERE order_sync.reconciled_at IS NULL
                     OR order_sync.reconciled_at < now() - $3 * interval '1 millisecond'
                 RETURNING 1",
                &[&shop, &listed.id, &republish_ms],
            )
            .await?;
        Ok(claimed.map(|_| topic))
    }

    /// One page, waiting out Shopify's rate limit when asked to.
    async fn fetch(
        &self,
        url: &reqwest::Url,
        access: &ShopAccess,
    ) -> Result<(Page, Option<reqwest::Url>), ReconcileError> {
        for _ in 0..10 {
            let response = self
                .http
                .get(url.clone())
                .header("x-shopify-access-token", access.token.expose())
                .header(
                    "traceparent",
                    crate::downstream::outgoing_traceparent(None).unwrap_or_else(|| {
                        hookline_core::trace::TraceParent::new_root().to_string()
                    }),
                )
                .send()
                .await
                .map_err(|e| ReconcileError::Shopify(crate::failure::error_chain(&e)))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            if status == 429 || status >= 500 {
                let wait = headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()))
                    .unwrap_or(Duration::from_secs(2))
                    .min(Duration::from_secs(30));
                tracing::debug!(status, ?wait, "Shopify asked to slow down");
                tokio::time::sleep(wait).await;
                continue;
            }
            if !(200..300).contains(&status) {
                let body = response.text().await.unwrap_or_default();
                return Err(ReconcileError::Shopify(format!("{status}: {body}")));
            }
            // Leaky bucket: above 80 % full, give it a second to drain (2 calls/s).
            let fill = headers
                .get("x-shopify-shop-api-call-limit")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (used, limit) = v.split_once('/')?;
                    Some(used.trim().parse::<f64>().ok()? / limit.trim().parse::<f64>().ok()?)
                });
            if fill.is_some_and(|f| f > 0.8) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let next = headers
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let page: Page = response
                .json()
                .await
                .map_err(|e| ReconcileError::Shopify(format!("unreadable page: {e}")))?;
            return Ok((page, next));
        }
        Err(ReconcileError::Shopify(
            "still rate limited after 10 tries".into(),
        ))
    }
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(header: &str) -> Option<reqwest::Url> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .parse()
                .ok()
        })?
    })
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
    fn the_next_link_is_found_among_others() {
        let header = r#"<https://s.myshopify.com/admin/api/2025-10/orders.json?limit=250&page_info=abc>; rel="previous", <https://s.myshopify.com/admin/api/2025-10/orders.json?limit=250&page_info=def>; rel="next""#;
        assert_eq!(
            next_link(header).unwrap().query(),
            Some("limit=250&page_info=def")
        );
        assert!(next_link(r#"<https://x/a>; rel="previous""#).is_none());
    }
}
