//! Idempotency keys: what makes "the same change" recognisable however often it arrives.
//!
//! The key is the business key `"{shop_domain}:{topic}:{resource_id}"`, with `":{updated_at}"`
//! appended for topics whose event legitimately repeats for one resource (see
//! [`crate::topics::TOPICS`] for the rule of each topic). It depends only on the shop, the topic
//! and the payload, never on delivery metadata, so Shopify's retries, RabbitMQ redeliveries and a
//! copy of the same change found by the reconciliation poller all get the same key. The one
//! exception is Shopify's event id, which is the same on every retry of one event: topics that
//! repeat per resource are keyed by it when a webhook carries one ([`derive_for_webhook`]).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use std::fmt;

use crate::topics::{self, KeyRule};

/// A derived idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key as text (Redis key suffix, PostgreSQL primary key, AMQP header).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key for a topic hookline does not know (or a known topic whose payload lacks the fields
    /// its rule needs): the Shopify webhook id, which is stable across Shopify's retries of one
    /// delivery. Such events still travel, and the worker decides what to do with them.
    pub fn from_webhook_id(shop_domain: &str, topic: &str, webhook_id: &str) -> Self {
        Self(format!("{shop_domain}:{topic}:webhook:{webhook_id}"))
    }

    /// A key from Shopify's event id (`X-Shopify-Event-Id`), which Shopify names as the thing to
    /// deduplicate on: the same on every retry of one event, different for every real change.
    /// Namespaced by topic because one event can trigger several topics.
    pub fn from_event_id(shop_domain: &str, topic: &str, event_id: &str) -> Self {
        Self(format!("{shop_domain}:{topic}:event:{event_id}"))
    }

    /// The key of a deliberate re-application (`hookctl replay --reapply`): derived from this
    /// key and the replay run's `tag`, so it is new to every guard (and the copy is applied
    /// again), yet the same for every copy of one run (a run that is repeated or redelivered
    /// still applies once).
    pub fn reapplied(&self, tag: &str) -> Self {
        Self(format!("{}:reapply:{tag}", self.0))
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key could not be derived from a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The topic is not in the registry, so there is no rule for it.
    #[error("no idempotency rule for topic {0}")]
    UnknownTopic(String),
    /// The payload is not a JSON object.
    #[error("payload is not a JSON object: {0}")]
    NotAnObject(String),
    /// A field the topic's rule needs is absent or of the wrong type.
    #[error("payload field `{field}` is missing or invalid for topic {topic}")]
    MissingField { topic: String, field: &'static str },
    /// The topic's key is its webhook id, which the payload does not carry.
    #[error("topic {0} is keyed by its webhook id")]
    ByWebhookId(String),
}

/// The few payload fields a key needs. Deserialising only these (serde skips the rest without
/// building values) keeps key derivation cheap on multi-kilobyte order payloads.
#[derive(Deserialize)]
struct KeyFields {
    #[serde(default)]
    id: Option<ResourceId>,
    #[serde(default)]
    inventory_item_id: Option<ResourceId>,
    #[serde(default)]
    location_id: Option<ResourceId>,
    #[serde(default)]
    updated_at: Option<String>,
}

/// Shopify ids are 64-bit integers in REST payloads; accept a string form too, as some API
/// versions and the GraphQL bridge send them quoted.
#[derive(Deserialize)]
#[serde(untagged)]
enum ResourceId {
    Int(u64),
    Text(String),
}

impl ResourceId {
    fn into_text(self) -> Option<String> {
        match self {
            ResourceId::Int(n) => Some(n.to_string()),
            ResourceId::Text(s) if !s.is_empty() && !s.contains(':') => Some(s),
            ResourceId::Text(_) => None,
        }
    }
}

/// Derives the key of a known topic's payload.
///
/// `updated_at` is normalised to UTC with the precision it came with, so a webhook
/// (`2026-11-20T10:16:40-05:00`) and the Admin API's copy of the same change
/// (`2026-11-20T15:16:40Z`) produce the same key.
pub fn derive(shop_domain: &str, topic: &str, payload: &str) -> Result<IdempotencyKey, KeyError> {
    let spec = topics::lookup(topic).ok_or_else(|| KeyError::UnknownTopic(topic.to_owned()))?;
    // serde would happily read a struct from a JSON array; a webhook payload is always an object.
    if !payload.trim_start().starts_with('{') {
        return Err(KeyError::NotAnObject("expected `{`".to_owned()));
    }
    let fields: KeyFields =
        serde_json::from_str(payload).map_err(|e| KeyError::NotAnObject(e.to_string()))?;
    let missing = |field| KeyError::MissingField {
        topic: topic.to_owned(),
        field,
    };
    let resource = match spec.key {
        KeyRule::WebhookId => return Err(KeyError::ByWebhookId(topic.to_owned())),
        KeyRule::Id | KeyRule::IdAndUpdatedAt => fields
            .id
            .and_then(ResourceId::into_text)
            .ok_or_else(|| missing("id"))?,
        KeyRule::InventoryLevel | KeyRule::InventoryLevelAndUpdatedAt => {
            let item = fields
                .inventory_item_id
                .and_then(ResourceId::into_text)
                .ok_or_else(|| missing("inventory_item_id"))?;
            let location = fields
                .location_id
                .and_then(ResourceId::into_text)
                .ok_or_else(|| missing("location_id"))?;
            format!("{item}:{location}")
        }
    };
    let key = match spec.key {
        KeyRule::Id | KeyRule::InventoryLevel | KeyRule::WebhookId => {
            format!("{shop_domain}:{topic}:{resource}")
        }
        KeyRule::IdAndUpdatedAt | KeyRule::InventoryLevelAndUpdatedAt => {
            let updated_at = fields
                .updated_at
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing("updated_at"))?;
            format!(
                "{shop_domain}:{topic}:{resource}:{}",
                normalise_timestamp(&updated_at)
            )
        }
    };
    Ok(IdempotencyKey(key))
}

/// The key of a webhook: for a topic whose event repeats per resource ([`KeyRule::repeats`]) and
/// a webhook that carries an event id, [`IdempotencyKey::from_event_id`]; otherwise
/// [`derive`].
///
/// Why only those topics: their `updated_at` has one-second precision, so two real changes in
/// one second (two sales of one item) would share a key and the second would be dropped as a
/// duplicate. Topics that happen once per resource keep their business key, so that a copy of
/// the same change found by reconciliation (which has no event id) still meets the webhook's
/// key. Repeating topics' reconciled copies get a key of their own, which is harmless: their
/// effect is a versioned upsert that applies a change at most once.
pub fn derive_for_webhook(
    shop_domain: &str,
    topic: &str,
    payload: &str,
    event_id: Option<&str>,
) -> Result<IdempotencyKey, KeyError> {
    match (topics::lookup(topic), event_id) {
        (Some(spec), Some(event_id)) if spec.key.repeats() => {
            Ok(IdempotencyKey::from_event_id(shop_domain, topic, event_id))
        }
        _ => derive(shop_domain, topic, payload),
    }
}

/// RFC 3339 timestamps in UTC; anything unparseable is kept as sent (still deterministic).
fn normalise_timestamp(value: &str) -> String {
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        Err(_) => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = "example.myshopify.com";

    #[test]
    fn once_per_resource_topics_use_the_id() {
        let key = derive(
            SHOP,
            "orders/paid",
            r#"{"id":820982911946154508,"updated_at":"2026-11-20T10:16:40-05:00"}"#,
        )
        .unwrap();
        assert_eq!(
            key.as_str(),
            "example.myshopify.com:orders/paid:820982911946154508"
        );
    }

    #[test]
    fn repeating_topics_add_updated_at_in_utc() {
        let webhook = derive(
            SHOP,
            "orders/updated",
            r#"{"id":5,"updated_at":"2026-11-20T10:16:40-05:00"}"#,
        )
        .unwrap();
        let polled = derive(
            SHOP,
            "orders/updated",
            r#"{"updated_at":"2026-11-20T15:16:40Z","id":"5"}"#,
        )
        .unwrap();
        assert_eq!(webhook, polled);
        assert_eq!(
            webhook.as_str(),
            "example.myshopify.com:orders/updated:5:2026-11-20T15:16:40Z"
        );
        let later = derive(
            SHOP,
            "orders/updated",
            r#"{"id":5,"updated_at":"2026-11-20T10:16:41-05:00"}"#,
        )
        .unwrap();
        assert_ne!(webhook, later, "a second real change is not a duplicate");
    }

    #[test]
    fn inventory_levels_use_item_and_location() {
        let body = r#"{"inventory_item_id":271878346596884015,"location_id":24826418,"available":6,"updated_at":"2026-11-20T10:16:40-05:00"}"#;
        let key = derive(SHOP, "inventory_levels/update", body).unwrap();
        assert_eq!(
            key.as_str(),
            "example.myshopify.com:inventory_levels/update:271878346596884015:24826418:2026-11-20T15:16:40Z"
        );
        let key = derive(
            SHOP,
            "inventory_levels/disconnect",
            r#"{"inventory_item_id":1,"location_id":2}"#,
        )
        .unwrap();
        assert_eq!(
            key.as_str(),
            "example.myshopify.com:inventory_levels/disconnect:1:2"
        );
    }

    #[test]
    fn missing_fields_and_unknown_topics_are_errors() {
        assert_eq!(
            derive(SHOP, "orders/paid", r#"{"name":"x"}"#),
            Err(KeyError::MissingField {
                topic: "orders/paid".into(),
                field: "id"
            })
        );
        assert_eq!(
            derive(SHOP, "products/update", r#"{"id":1}"#),
            Err(KeyError::MissingField {
                topic: "products/update".into(),
                field: "updated_at"
            })
        );
        assert!(matches!(
            derive(SHOP, "orders/paid", "[1,2]"),
            Err(KeyError::NotAnObject(_))
        ));
        assert!(matches!(
            derive(SHOP, "carts/create", "{}"),
            Err(KeyError::UnknownTopic(_))
        ));
        assert!(
            derive(SHOP, "orders/paid", r#"{"id":"a:b"}"#).is_err(),
            "a ':' would make keys ambiguous"
        );
    }

    #[test]
    fn repeating_topics_are_keyed_by_their_event_id_when_there_is_one() {
        let sale = r#"{"inventory_item_id":1,"location_id":2,"available":5,"updated_at":"2026-11-20T10:16:40-05:00"}"#;
        let next_sale = r#"{"inventory_item_id":1,"location_id":2,"available":4,"updated_at":"2026-11-20T10:16:40-05:00"}"#;
        let topic = "inventory_levels/update";
        let a = derive_for_webhook(SHOP, topic, sale, Some("ev-1")).unwrap();
        let b = derive_for_webhook(SHOP, topic, next_sale, Some("ev-2")).unwrap();
        assert_ne!(a, b, "two changes in one second are two keys");
        assert_eq!(
            a.as_str(),
            "example.myshopify.com:inventory_levels/update:event:ev-1"
        );
        assert_eq!(
            derive_for_webhook(SHOP, topic, sale, Some("ev-1")).unwrap(),
            a,
            "a retry of one event"
        );
        // Without an event id (reconciliation, replays), the old rule.
        assert_eq!(
            derive_for_webhook(SHOP, topic, sale, None).unwrap(),
            derive(SHOP, topic, sale).unwrap()
        );
        // Once-per-resource topics keep their business key.
        assert_eq!(
            derive_for_webhook(SHOP, "orders/paid", r#"{"id":7}"#, Some("ev-3"))
                .unwrap()
                .as_str(),
            "example.myshopify.com:orders/paid:7"
        );
    }

    #[test]
    fn webhook_id_fallback_is_namespaced() {
        let key = IdempotencyKey::from_webhook_id(SHOP, "carts/create", "abc");
        assert_eq!(
            key.as_str(),
            "example.myshopify.com:carts/create:webhook:abc"
        );
    }
}
