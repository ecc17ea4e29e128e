//! Shopify's webhook delivery, played: signed webhooks to an ingestor, at least once.
//!
//! Real deliveries are duplicated (Shopify retries what it thinks failed), reordered (retries and
//! parallel deliveries overtake each other) and, rarely, lost (a subscription removed, a retry
//! budget exhausted). [`deliver`] does all three on purpose, at the rates it is given, and
//! retries 5xx answers the way Shopify does, so tests and demos see what production sees.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hookline_core::envelope::header::{self, HeaderForm};
use hookline_core::signature::sign;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One webhook to deliver.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// `orders/paid`, …
    pub topic: String,
    /// The body, exactly as it will be signed.
    pub body: String,
}

/// How to deliver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    /// Share of webhooks delivered twice (with the same webhook id, as Shopify's retries are).
    pub duplicate_rate: f64,
    /// Share of webhooks never delivered.
    pub loss_rate: f64,
    /// Swap each webhook with its successor at this rate.
    pub reorder_rate: f64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Retries after a 5xx or a connection error (Shopify retries for hours; tests need less).
    pub retries: u32,
    /// Which header names to send: `legacy` (`X-Shopify-*`), `events` (`Shopify-*`, no webhook
    /// id) or `both` (the default, as Shopify's Events deliveries do today).
    pub header_form: HeaderForm,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            duplicate_rate: 0.0,
            loss_rate: 0.0,
            reorder_rate: 0.0,
            concurrency: 8,
            retries: 20,
            header_form: HeaderForm::default(),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// HTTP requests made (first tries, duplicates and retries).
    pub requests: usize,
    /// Webhooks answered 200 at least once.
    pub accepted: usize,
    /// Webhooks deliberately not delivered, by index.
    pub lost: Vec<usize>,
    /// Webhooks still not accepted after all retries, by index.
    pub failed: Vec<usize>,
    /// When each accepted webhook was first answered 200, by index (for latency figures).
    pub accepted_at: Vec<Option<DateTime<Utc>>>,
}

/// Delivers `webhooks` for `shop` to `url`, signed with `secret`, following `plan`.
pub async fn deliver(
    url: &str,
    secret: &str,
    shop: &str,
    webhooks: &[Webhook],
    plan: &Plan,
) -> Report {
    let mut order: Vec<usize> = (0..webhooks.len()).collect();
    for i in 0..order.len().saturating_sub(1) {
        if fastrand::f64() < plan.reorder_rate {
            order.swap(i, i + 1);
        }
    }
    let mut report = Report {
        accepted_at: vec![None; webhooks.len()],
        ..Report::default()
    };
    let mut jobs = vec![];
    for index in order {
        if fastrand::f64() < plan.loss_rate {
            report.lost.push(index);
            continue;
        }
        let copies = if fastrand::f64() < plan.duplicate_rate {
            2
        } else {
            1
        };
        // A duplicate is Shopify's retry of one delivery: same webhook id, same event id.
        jobs.push((index, copies, uuid_v4(), uuid_v4()));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let results: Vec<(usize, usize, Option<DateTime<Utc>>)> =
        futures_util::StreamExt::collect(futures_util::StreamExt::buffer_unordered(
            futures_util::stream::iter(jobs.into_iter().map(
                |(index, copies, webhook_id, event_id)| {
                    let client = client.clone();
                    let webhook = &webhooks[index];
                    async move {
                        let mut requests = 0;
                        let mut first_ok = None;
                        for _ in 0..copies {
                            let (n, ok) = send(
                                &client,
                                Target { url, secret, shop },
                                webhook,
                                Ids {
                                    webhook_id: &webhook_id,
                                    event_id: &event_id,
                                },
                                plan,
                            )
                            .await;
                            requests += n;
                            if ok && first_ok.is_none() {
                                first_ok = Some(Utc::now());
                            }
                        }
                        (index, requests, first_ok)
                    }
                },
            )),
            plan.concurrency.max(1),
        ))
        .await;
    for (index, requests, ok) in results {
        report.requests += requests;
        match ok {
            Some(at) => {
                report.accepted += 1;
                report.accepted_at[index] = Some(at);
            }
            None => report.failed.push(index),
        }
    }
    report
}

/// Where and as whom to deliver.
#[derive(Clone, Copy)]
struct Target<'a> {
    url: &'a str,
    secret: &'a str,
    shop: &'a str,
}

/// The ids of one delivery, kept on its retries.
#[derive(Clone, Copy)]
struct Ids<'a> {
    webhook_id: &'a str,
    event_id: &'a str,
}

async fn send(
    client: &reqwest::Client,
    target: Target<'_>,
    webhook: &Webhook,
    ids: Ids<'_>,
    plan: &Plan,
) -> (usize, bool) {
    let signature = sign(target.secret.as_bytes(), webhook.body.as_bytes());
    // One event, one trigger time: a retry repeats it, as Shopify's do.
    let triggered_at = Utc::now().to_rfc3339();
    let fields = [
        (header::HMAC, signature.as_str()),
        (header::TOPIC, webhook.topic.as_str()),
        (header::SHOP_DOMAIN, target.shop),
        (header::API_VERSION, "2025-10"),
        (header::WEBHOOK_ID, ids.webhook_id),
        (header::EVENT_ID, ids.event_id),
        (header::TRIGGERED_AT, triggered_at.as_str()),
    ];
    let mut requests = 0;
    for attempt in 0..=plan.retries {
        requests += 1;
        let mut request = client
            .post(target.url)
            .header("content-type", "application/json");
        for (legacy, value) in fields {
            for name in plan.header_form.names(legacy) {
                request = request.header(name, value);
            }
        }
        let sent = request.body(webhook.body.clone()).send().await;
        match sent {
            Ok(r) if r.status().is_success() => return (requests, true),
            Ok(r) if r.status().is_client_error() => return (requests, false),
            _ => {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1).min(10)))
                    .await
            }
        }
    }
    (requests, false)
}

fn uuid_v4() -> String {
    let a = fastrand::u128(..);
    let hex = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The webhooks of a paid order as Shopify sends them: `orders/create` (pending), then
/// `orders/paid`.
pub fn order_webhooks(paid_order: &Value) -> [Webhook; 2] {
    let mut pending = paid_order.clone();
    pending["financial_status"] = Value::from("pending");
    [
        Webhook {
            topic: "orders/create".into(),
            body: pending.to_string(),
        },
        Webhook {
            topic: "orders/paid".into(),
            body: paid_order.to_string(),
        },
    ]
}
