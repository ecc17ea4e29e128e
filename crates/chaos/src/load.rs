//! The traffic: signed inventory and order webhooks, with duplicates and reorderings, sent the way
//! Shopify sends them — a delivery that is not answered 200 (a 503, a refused or dropped
//! connection) is sent again, with the same webhook id, until it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{Offset, TimeZone, Utc};
use hookline_core::envelope::header;
use hookline_core::idempotency;

use crate::stack::{SECRET, SHOP};

/// One webhook delivery (a duplicate is a second delivery with the same webhook id and body).
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Shopify topic.
    pub topic: &'static str,
    /// The signed body.
    pub body: String,
    /// `X-Shopify-Webhook-Id`.
    pub webhook_id: String,
    /// The idempotency key hookline derives for it: the identity of its effect.
    pub key: String,
}

/// The ground truth of one change, by idempotency key.
#[derive(Debug, Clone)]
pub enum Change {
    /// Stock of `item` at location 1 is `available` as of `seq`.
    Stock {
        /// Inventory item id.
        item: i64,
        /// Order of the change for that item (its `updated_at`).
        seq: i64,
        /// The level.
        available: i64,
    },
    /// Order `id` was paid, `total` due.
    Paid {
        /// Order id.
        id: i64,
        /// `total_price` text.
        total: String,
    },
}

/// What a scenario sends.
pub struct Workload {
    /// In sending order (duplicates and swaps included).
    pub deliveries: Vec<Webhook>,
    /// Each distinct change.
    pub changes: HashMap<String, Change>,
}

/// Builds `n` deliveries: 70 % stock changes over 25 items, 30 % paid orders (ids from
/// `order_base`), 10 % delivered twice, 10 % of stock changes swapped with their predecessor.
pub fn workload(n: usize, order_base: i64) -> Workload {
    let base = Utc
        .with_ymd_and_hms(2026, 11, 20, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let offset = Utc.fix();
    let mut seq_of_item: HashMap<i64, i64> = HashMap::new();
    let mut deliveries = vec![];
    let mut changes = HashMap::new();
    let mut order_id = order_base;
    while deliveries.len() < n {
        let (topic, body, change) = if fastrand::u8(..100) < 70 {
            let item = 1000 + fastrand::i64(0..25);
            let seq = seq_of_item.entry(item).or_insert(0);
            *seq += 1;
            let available = fastrand::i64(0..500);
            let updated_at = (base + chrono::Duration::seconds(*seq)).with_timezone(&offset);
            let body = serde_json::json!({
                "inventory_item_id": item,
                "location_id": 1,
                "available": available,
                "updated_at": updated_at.to_rfc3339(),
            })
            .to_string();
            (
                "inventory_levels/update",
                body,
                Change::Stock {
                    item,
                    seq: *seq,
                    available,
                },
            )
        } else {
            order_id += 1;
            let order = hookline_sandbox::shopify::generate_order(
                order_id,
                true,
                base.with_timezone(&offset),
            );
            let total = order["total_price"].as_str().unwrap_or_default().to_owned();
            (
                "orders/paid",
                order.to_string(),
                Change::Paid {
                    id: order_id,
                    total,
                },
            )
        };
        let Ok(key) = idempotency::derive(SHOP, topic, &body) else {
            continue;
        };
        let webhook = Webhook {
            topic,
            body,
            webhook_id: uuid::Uuid::new_v4().to_string(),
            key: key.as_str().to_owned(),
        };
        changes.insert(webhook.key.clone(), change);
        let duplicate = fastrand::u8(..100) < 10;
        let swap = webhook.topic.starts_with("inventory") && fastrand::u8(..100) < 10;
        deliveries.push(webhook.clone());
        if swap && deliveries.len() >= 2 {
            let last = deliveries.len() - 1;
            deliveries.swap(last, last - 1);
        }
        if duplicate {
            deliveries.push(webhook);
        }
    }
    Workload {
        deliveries,
        changes,
    }
}

/// How each delivery ended.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Deliveries sent (first attempts).
    pub sent: usize,
    /// Deliveries answered 200 in the end.
    pub accepted: usize,
    /// Keys of accepted deliveries: their effect must happen.
    pub accepted_keys: std::collections::HashSet<String>,
    /// The webhook id accepted for each key, to find it in the processes' logs.
    pub webhook_of: HashMap<String, String>,
    /// Deliveries never answered 200 before the deadline.
    pub gave_up: usize,
    /// Attempts answered other than 200 (or not answered), retried.
    pub retries: usize,
    /// Answers other than 200 and 503, by status (never expected).
    pub unexpected: HashMap<u16, usize>,
}

/// Sends `deliveries` at `rate` per second, each retried with backoff until accepted or
/// `give_up_at`. Returns when every delivery has ended.
pub async fn send(url: String, deliveries: Vec<Webhook>, rate: f64, give_up_at: Instant) -> Ledger {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(32)
        .build()
        .unwrap_or_default();
    let mut tasks = vec![];
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    for webhook in deliveries {
        tick.tick().await;
        let (client, ledger, url) = (client.clone(), ledger.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let lock = || ledger.lock().unwrap_or_else(PoisonError::into_inner);
            lock().sent += 1;
            let signature =
                hookline_core::signature::sign(SECRET.as_bytes(), webhook.body.as_bytes());
            // Like Shopify, back off between attempts: 200 ms, doubling to 3.2 s, ±25 %.
            let mut pause = Duration::from_millis(200);
            loop {
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(header::HMAC, &signature)
                    .header(header::TOPIC, webhook.topic)
                    .header(header::SHOP_DOMAIN, SHOP)
                    .header(header::API_VERSION, "2025-10")
                    .header(header::WEBHOOK_ID, &webhook.webhook_id)
                    .body(webhook.body.clone())
                    .send()
                    .await;
                match answer.map(|r| r.status().as_u16()) {
                    Ok(200) => {
                        let mut l = lock();
                        l.accepted += 1;
                        l.accepted_keys.insert(webhook.key.clone());
                        l.webhook_of
                            .insert(webhook.key.clone(), webhook.webhook_id.clone());
                        return;
                    }
                    // Refused for now (a full queue, an unreachable broker; a request the
                    // overloaded server could not read in time; a dropped connection): retried.
                    Ok(503 | 408 | 429) | Err(_) => {}
                    Ok(other) => *lock().unexpected.entry(other).or_insert(0) += 1,
                }
                lock().retries += 1;
                if Instant::now() > give_up_at {
                    lock().gave_up += 1;
                    return;
                }
                tokio::time::sleep(pause.mul_f64(0.75 + fastrand::f64() / 2.0)).await;
                pause = (pause * 2).min(Duration::from_millis(3200));
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Arc::try_unwrap(ledger)
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .unwrap_or_default()
}
