//! Listing and replaying dead letters.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hookline_core::Domain;
use hookline_core::envelope::{Envelope, amqp_header as h};
use hookline_core::topology::{EVENTS_EXCHANGE, dead_letter_queue};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use serde::Serialize;

/// Header counting how often a message was replayed.
pub const REPLAYED: &str = "x-hookline-replayed";

/// Which dead letters an operation applies to.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this domain's DLQ (default: all).
    pub domain: Option<Domain>,
    /// Only this `x-hookline-reason`.
    pub reason: Option<String>,
    /// Only those whose last error (`x-hookline-error`) contains this text.
    pub error_contains: Option<String>,
    /// Only these envelope event ids.
    pub event_ids: Vec<String>,
    /// Only dead letters whose last failure is at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only dead letters whose last failure is before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// One dead letter, as an operator reads it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetter {
    /// The DLQ it is in.
    pub queue: String,
    /// The envelope's event id (empty if the body is not an envelope).
    pub event_id: String,
    /// The Shopify topic.
    pub topic: String,
    /// The shop.
    pub shop: String,
    /// `x-hookline-reason`.
    pub reason: String,
    /// `x-hookline-attempts`.
    pub attempts: u32,
    /// `x-hookline-error`.
    pub last_error: String,
    /// `x-hookline-last-failure`.
    pub last_failure: Option<DateTime<Utc>>,
    /// Times replayed before.
    pub replayed: u32,
    /// The routing key it will be replayed with.
    pub routing_key: String,
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// Broker error.
    #[error("broker error")]
    Amqp(#[from] lapin::Error),
    /// A republish was not confirmed: the dead letter stays where it is.
    #[error("the broker did not confirm the replay of {0}; it stays in the dead-letter queue")]
    NotConfirmed(String),
}

fn header(p: &BasicProperties, name: &str) -> Option<String> {
    match p.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        _ => None,
    }
}

fn describe(queue: &str, m: &BasicGetMessage) -> DeadLetter {
    let envelope = Envelope::from_json(&m.delivery.data).ok();
    let p = &m.delivery.properties;
    DeadLetter {
        queue: queue.to_owned(),
        event_id: envelope
            .as_ref()
            .map(|e| e.event_id.to_string())
            .unwrap_or_default(),
        topic: envelope
            .as_ref()
            .map(|e| e.topic.clone())
            .or_else(|| header(p, h::TOPIC))
            .unwrap_or_default(),
        shop: envelope
            .as_ref()
            .map(|e| e.shop_domain.clone())
            .or_else(|| header(p, h::SHOP_DOMAIN))
            .unwrap_or_default(),
        reason: header(p, h::REASON).unwrap_or_else(|| "rejected".into()),
        attempts: header(p, h::ATTEMPTS)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        last_error: header(p, h::ERROR).unwrap_or_default(),
        last_failure: header(p, h::LAST_FAILURE)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc)),
        replayed: header(p, REPLAYED)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        routing_key: header(p, h::ROUTING_KEY)
            .or_else(|| envelope.as_ref().map(Envelope::routing_key))
            .unwrap_or_else(|| m.delivery.routing_key.to_string()),
    }
}

impl Filter {
    fn matches(&self, d: &DeadLetter) -> bool {
        self.reason.as_ref().is_none_or(|r| *r == d.reason)
            && self
                .error_contains
                .as_ref()
                .is_none_or(|e| d.last_error.contains(e.as_str()))
            && (self.event_ids.is_empty() || self.event_ids.contains(&d.event_id))
            && self
                .since
                .is_none_or(|s| d.last_failure.is_some_and(|t| t >= s))
            && self
                .until
                .is_none_or(|u| d.last_failure.is_some_and(|t| t < u))
    }

    fn queues(&self) -> Vec<String> {
        match self.domain {
            Some(d) => vec![dead_letter_queue(d)],
            None => Domain::ALL.into_iter().map(dead_letter_queue).collect(),
        }
    }
}

/// Reads every message of `queue` on `channel` without acking: they return to the queue, in
/// order, when the channel closes.
async fn read_all(channel: &Channel, queue: &str) -> Result<Vec<BasicGetMessage>, lapin::Error> {
    let mut messages = vec![];
    while let Some(m) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        messages.push(m);
    }
    Ok(messages)
}

/// The dead letters matching `filter` with their bodies (the envelope as queued); nothing is
/// taken out of the queues.
pub async fn scan(
    connection: &Connection,
    filter: &Filter,
) -> Result<Vec<(DeadLetter, Vec<u8>)>, DlqError> {
    let mut found = vec![];
    for queue in filter.queues() {
        let channel = connection.create_channel().await?;
        let messages = read_all(&channel, &queue).await?;
        found.extend(
            messages
                .iter()
                .map(|m| (describe(&queue, m), m.delivery.data.clone()))
                .filter(|(d, _)| filter.matches(d)),
        );
        let _ = channel.close(200, "scanned".into()).await;
    }
    if let Some(limit) = filter.limit {
        found.truncate(limit);
    }
    Ok(found)
}

/// One dead letter taken out of its queue by [`take`].
#[derive(Debug, Clone)]
pub struct Taken {
    /// What it says.
    pub dead: DeadLetter,
    /// The body as queued.
    pub body: Vec<u8>,
    /// Its AMQP headers, as JSON.
    pub headers: serde_json::Value,
}

/// Takes the dead letters matching `filter` and `select` out of their queues: each is handed to
/// `keep` (which makes it durable elsewhere, or decides it is to be erased) and acked only after
/// `keep` returned `Ok`. Anything else returns to its queue in its original order. Returns what
/// was taken.
pub async fn take<S, K, F, E>(
    connection: &Connection,
    filter: &Filter,
    select: S,
    mut keep: K,
) -> Result<Vec<DeadLetter>, E>
where
    S: Fn(&DeadLetter, &[u8]) -> bool,
    K: FnMut(Taken) -> F,
    F: std::future::Future<Output = Result<(), E>>,
    E: From<DlqError>,
{
    let mut taken = vec![];
    for queue in filter.queues() {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| E::from(e.into()))?;
        let messages = read_all(&channel, &queue)
            .await
            .map_err(|e| E::from(e.into()))?;
        for m in &messages {
            let dead = describe(&queue, m);
            let within_limit = filter.limit.is_none_or(|l| taken.len() < l);
            if !filter.matches(&dead) || !within_limit || !select(&dead, &m.delivery.data) {
                continue;
            }
            keep(Taken {
                dead: dead.clone(),
                body: m.delivery.data.clone(),
                headers: headers_json(&m.delivery.properties),
            })
            .await?;
            m.delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| E::from(e.into()))?;
            taken.push(dead);
        }
        let _ = channel.close(200, "taken".into()).await;
    }
    Ok(taken)
}

/// AMQP headers as JSON (strings, numbers, booleans, tables and arrays; bytes as text).
pub fn headers_json(p: &BasicProperties) -> serde_json::Value {
    fn value(v: &AMQPValue) -> serde_json::Value {
        use serde_json::Value as J;
        match v {
            AMQPValue::Boolean(b) => J::Bool(*b),
            AMQPValue::ShortShortInt(n) => J::from(*n),
            AMQPValue::ShortShortUInt(n) => J::from(*n),
            AMQPValue::ShortInt(n) => J::from(*n),
            AMQPValue::ShortUInt(n) => J::from(*n),
            AMQPValue::LongInt(n) => J::from(*n),
            AMQPValue::LongUInt(n) => J::from(*n),
            AMQPValue::LongLongInt(n) => J::from(*n),
            AMQPValue::Float(f) => J::from(f64::from(*f)),
            AMQPValue::Double(f) => J::from(*f),
            AMQPValue::ShortString(s) => J::from(s.as_str()),
            AMQPValue::LongString(s) => J::from(s.to_string()),
            AMQPValue::Timestamp(t) => J::from(*t),
            AMQPValue::FieldArray(a) => J::Array(a.as_slice().iter().map(value).collect()),
            AMQPValue::FieldTable(t) => table(t),
            AMQPValue::ByteArray(b) => J::from(String::from_utf8_lossy(b.as_slice()).into_owned()),
            AMQPValue::DecimalValue(d) => J::from(format!("{d:?}")),
            AMQPValue::Void => J::Null,
        }
    }
    fn table(t: &FieldTable) -> serde_json::Value {
        serde_json::Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.to_string(), value(v)))
                .collect(),
        )
    }
    p.headers().as_ref().map_or(serde_json::Value::Null, table)
}

/// The dead letters matching `filter`; nothing is taken out of the queues.
pub async fn list(connection: &Connection, filter: &Filter) -> Result<Vec<DeadLetter>, DlqError> {
    let mut found = vec![];
    for queue in filter.queues() {
        let channel = connection.create_channel().await?;
        let messages = read_all(&channel, &queue).await?;
        found.extend(
            messages
                .iter()
                .map(|m| describe(&queue, m))
                .filter(|d| filter.matches(d)),
        );
        // Closing without acks returns every message.
        let _ = channel.close(200, "listed".into()).await;
    }
    if let Some(limit) = filter.limit {
        found.truncate(limit);
    }
    Ok(found)
}

/// How a replay went.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReplayReport {
    /// Republished (confirmed) and removed from the DLQ; with `dry_run`, what would be.
    pub replayed: Vec<DeadLetter>,
    /// Left in the DLQ (not matching, or over the limit).
    pub kept: usize,
}

/// Republishes the matching dead letters to `hookline.events` with their original routing key,
/// a fresh attempt count and `x-hookline-replayed` + 1, at most `rate` per second; each is acked
/// only after its republish was confirmed. With `dry_run`, nothing moves.
pub async fn replay(
    connection: &Connection,
    filter: &Filter,
    rate: Option<f64>,
    dry_run: bool,
) -> Result<ReplayReport, DlqError> {
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut report = ReplayReport::default();
    let pause = rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    for queue in filter.queues() {
        let channel = connection.create_channel().await?;
        let messages = read_all(&channel, &queue).await?;
        for m in &messages {
            let dead = describe(&queue, m);
            let within_limit = filter.limit.is_none_or(|l| report.replayed.len() < l);
            if !filter.matches(&dead) || !within_limit {
                report.kept += 1;
                continue;
            }
            if !dry_run {
                let confirm = publisher
                    .basic_publish(
                        EVENTS_EXCHANGE.into(),
                        dead.routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &m.delivery.data,
                        fresh_properties(&m.delivery.properties, dead.replayed + 1),
                    )
                    .await?
                    .await?;
                if confirm != Confirmation::Ack(None) {
                    return Err(DlqError::NotConfirmed(dead.event_id));
                }
                m.delivery.ack(BasicAckOptions::default()).await?;
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
            report.replayed.push(dead);
        }
        // Unacked (kept, or everything in a dry run) return to the queue in their order.
        let _ = channel.close(200, "replayed".into()).await;
    }
    let _ = publisher.close(200, "replayed".into()).await;
    Ok(report)
}

/// The original properties without the failure bookkeeping (a replay starts with a fresh attempt
/// count) and with the replay counter.
fn fresh_properties(p: &BasicProperties, replayed: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(original) = p.headers() {
        for (k, v) in original.inner() {
            let name = k.as_str();
            let bookkeeping = matches!(
                name,
                h::REASON
                    | h::ERROR
                    | h::ATTEMPTS
                    | h::FIRST_FAILURE
                    | h::LAST_FAILURE
                    | h::STEPS
                    | h::ROUTING_KEY
                    | h::DOMAIN
                    | h::BUSY_RETRIES
                    | h::WAITING_SINCE
            ) || name == "x-death"
                || name.starts_with("x-first-death")
                || name.starts_with("x-last-death");
            if !bookkeeping {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    headers.insert(
        ShortString::from(REPLAYED),
        AMQPValue::LongInt(i32::try_from(replayed).unwrap_or(i32::MAX)),
    );
    headers.insert(
        ShortString::from("x-hookline-replayed-at"),
        AMQPValue::LongString(LongString::from(Utc::now().to_rfc3339())),
    );
    p.clone().with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_starts_the_failure_bookkeeping_afresh_and_keeps_the_rest() {
        let mut headers = FieldTable::default();
        for (name, value) in [
            ("x-idempotency-key", "k"),
            (h::REASON, "busy_too_long"),
            (h::BUSY_RETRIES, "7"),
            (h::WAITING_SINCE, "2026-11-23T10:00:00.000Z"),
        ] {
            headers.insert(ShortString::from(name), AMQPValue::LongString(value.into()));
        }
        let fresh = fresh_properties(&BasicProperties::default().with_headers(headers), 1);
        let fresh = fresh.headers().clone().unwrap_or_default();
        assert!(fresh.contains_key("x-idempotency-key"));
        for gone in [h::REASON, h::BUSY_RETRIES, h::WAITING_SINCE] {
            // A replayed busy_too_long message must not count its old wait: its first wait
            // after the replay would dead-letter it again at once.
            assert!(!fresh.contains_key(gone), "{gone}");
        }
    }
}
