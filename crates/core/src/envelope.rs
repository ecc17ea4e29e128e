//! `Envelope` v1: the one message format on the broker.
//!
//! The envelope carries the verified body untouched (as a raw JSON value, so its bytes, escapes
//! and key order survive) together with what the edge learned about it: who sent it, when, under
//! which idempotency key and in which trace. Consumers never see a Shopify request, only this.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::idempotency::{self, IdempotencyKey};
use crate::signature::Verified;
use crate::topics;
use crate::trace::TraceParent;

/// The version this build writes and reads. A consumer that meets another version refuses it as
/// a permanent error (dead letter), rather than guessing at its meaning.
pub const SCHEMA_VERSION: u16 = 1;

/// Names of the Shopify request headers the envelope is built from.
///
/// Shopify sends each of them in one of two forms: the classic `X-Shopify-*` names (these
/// constants) and the `Shopify-*` names of its newer Events deliveries ([`events`]), which for
/// now also carry the classic ones. The ingestor accepts either form, or both; see
/// [`WebhookHeaders::parse`] for what happens when the two disagree. All names are lowercase
/// because HTTP header names are case-insensitive and lookups are by lowercase name.
pub mod header {
    /// Topic, e.g. `orders/paid`.
    pub const TOPIC: &str = "x-shopify-topic";
    /// base64 HMAC-SHA256 of the raw body.
    pub const HMAC: &str = "x-shopify-hmac-sha256";
    /// The shop, e.g. `example.myshopify.com`.
    pub const SHOP_DOMAIN: &str = "x-shopify-shop-domain";
    /// The webhook API version of the payload, e.g. `2025-10`.
    pub const API_VERSION: &str = "x-shopify-api-version";
    /// One webhook delivery; the same on Shopify's retries of it.
    pub const WEBHOOK_ID: &str = "x-shopify-webhook-id";
    /// The underlying event; several topics can share it. Optional.
    pub const EVENT_ID: &str = "x-shopify-event-id";
    /// When the event happened. Optional.
    pub const TRIGGERED_AT: &str = "x-shopify-triggered-at";

    /// The `Shopify-*` names of Events deliveries, as Shopify's own webhook validation (the
    /// `@shopify/shopify-api` package, 2026) reads them. Events deliveries carry no webhook id of
    /// their own: their event id is required instead.
    pub mod events {
        /// `Shopify-Topic`.
        pub const TOPIC: &str = "shopify-topic";
        /// `Shopify-Hmac-Sha256`.
        pub const HMAC: &str = "shopify-hmac-sha256";
        /// `Shopify-Shop-Domain`.
        pub const SHOP_DOMAIN: &str = "shopify-shop-domain";
        /// `Shopify-API-Version`.
        pub const API_VERSION: &str = "shopify-api-version";
        /// `Shopify-Webhook-Id`: not sent by Events deliveries today, read if a sender has it.
        pub const WEBHOOK_ID: &str = "shopify-webhook-id";
        /// `Shopify-Event-Id`.
        pub const EVENT_ID: &str = "shopify-event-id";
        /// `Shopify-Triggered-At`.
        pub const TRIGGERED_AT: &str = "shopify-triggered-at";
    }

    /// Each `X-Shopify-*` name with its `Shopify-*` counterpart.
    pub const PAIRS: [(&str, &str); 7] = [
        (TOPIC, events::TOPIC),
        (HMAC, events::HMAC),
        (SHOP_DOMAIN, events::SHOP_DOMAIN),
        (API_VERSION, events::API_VERSION),
        (WEBHOOK_ID, events::WEBHOOK_ID),
        (EVENT_ID, events::EVENT_ID),
        (TRIGGERED_AT, events::TRIGGERED_AT),
    ];

    /// The `Shopify-*` counterpart of an `X-Shopify-*` name.
    pub fn events_name(legacy: &str) -> Option<&'static str> {
        PAIRS
            .iter()
            .find(|(l, _)| *l == legacy)
            .map(|(_, events)| *events)
    }

    /// Which header names a sender (the sandbox, `hookline-send`) uses.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum HeaderForm {
        /// `X-Shopify-*` only, as classic webhook subscriptions send.
        Legacy,
        /// `Shopify-*` only, without a webhook id.
        Events,
        /// Both, with the same values, as Events deliveries send today.
        #[default]
        Both,
    }

    impl HeaderForm {
        /// `legacy`, `events` or `both`.
        pub fn parse(name: &str) -> Option<Self> {
            match name {
                "legacy" => Some(Self::Legacy),
                "events" => Some(Self::Events),
                "both" => Some(Self::Both),
                _ => None,
            }
        }

        /// The names to send the field named `legacy` (an `X-Shopify-*` name) under. Empty for
        /// the webhook id in the Events form, which has none.
        pub fn names(self, legacy: &'static str) -> Vec<&'static str> {
            let events = events_name(legacy).filter(|_| legacy != WEBHOOK_ID);
            match self {
                Self::Legacy => vec![legacy],
                Self::Events => events.into_iter().collect(),
                Self::Both => std::iter::once(legacy).chain(events).collect(),
            }
        }
    }
}

/// Names of the AMQP message headers every envelope is published with, so operators can read and
/// filter messages (management UI, `hookctl`) without decoding the body.
pub mod amqp_header {
    /// The envelope's idempotency key.
    pub const IDEMPOTENCY_KEY: &str = "x-idempotency-key";
    /// Shopify's webhook id.
    pub const WEBHOOK_ID: &str = "x-shopify-webhook-id";
    /// The Shopify topic (the routing key has `.` where a handled topic has `/`, and is
    /// `unrouted.<topic>` for any other; see [`topics::routing_key`]).
    pub const TOPIC: &str = "x-shopify-topic";
    /// The shop domain.
    pub const SHOP_DOMAIN: &str = "x-shopify-shop-domain";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";

    /// Set by the worker on retries and dead letters, readable in the management UI:
    /// why the message is in a dead-letter queue (`schema_mismatch`, `retries_exhausted`, ...).
    pub const REASON: &str = "x-hookline-reason";
    /// The last error, with its causes.
    pub const ERROR: &str = "x-hookline-error";
    /// Failed attempts so far (a busy idempotency key is not an attempt).
    pub const ATTEMPTS: &str = "x-hookline-attempts";
    /// When handling first failed (RFC 3339).
    pub const FIRST_FAILURE: &str = "x-hookline-first-failure";
    /// When handling last failed (RFC 3339).
    pub const LAST_FAILURE: &str = "x-hookline-last-failure";
    /// What had been done when it last failed, comma-separated.
    pub const STEPS: &str = "x-hookline-steps";
    /// The routing key the message was first published with (wait queues change it).
    pub const ROUTING_KEY: &str = "x-hookline-routing-key";
    /// The domain whose bulkhead handled it.
    pub const DOMAIN: &str = "x-hookline-domain";
    /// How often it waited for another delivery's idempotency claim.
    pub const BUSY_RETRIES: &str = "x-hookline-busy-retries";
    /// Since when (RFC 3339) it has been waiting for another delivery of the same order or key,
    /// without getting its turn in between; gone once it got its turn.
    pub const WAITING_SINCE: &str = "x-hookline-waiting-since";
}

/// Where an envelope came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A signed Shopify webhook received by the ingestor.
    Webhook,
    /// A change found by polling the Shopify Admin API.
    Reconciliation,
}

/// One event on its way through hookline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`SCHEMA_VERSION`] for envelopes this build writes.
    pub schema_version: u16,
    /// hookline's own id for this envelope (UUIDv7: time-ordered, so ids sort by arrival).
    /// A Shopify retry of the same webhook gets a new `event_id` but the same `idempotency_key`.
    pub event_id: Uuid,
    /// `X-Shopify-Webhook-Id`; for an Events delivery (which has none), its event id.
    pub webhook_id: String,
    /// `X-Shopify-Event-Id` (or `Shopify-Event-Id`), when Shopify sent one.
    pub shopify_event_id: Option<String>,
    /// Shopify topic, e.g. `orders/paid`.
    pub topic: String,
    /// `X-Shopify-Shop-Domain`, lowercased.
    pub shop_domain: String,
    /// `X-Shopify-API-Version`: the schema of `payload`.
    pub api_version: String,
    /// `X-Shopify-Triggered-At`, when sent and parseable.
    pub triggered_at: Option<DateTime<Utc>>,
    /// When hookline received the request (end-to-end lag is measured from here).
    pub received_at: DateTime<Utc>,
    /// How the event reached us.
    pub source: Source,
    /// See [`crate::idempotency`].
    pub idempotency_key: IdempotencyKey,
    /// W3C `traceparent` of the trace this event belongs to.
    pub traceparent: String,
    /// The verified body: the JSON value byte for byte as Shopify signed it.
    pub payload: Box<RawValue>,
}

/// The Shopify headers of one webhook, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    /// `X-Shopify-Topic` or `Shopify-Topic`: any printable topic (see [`topics::is_acceptable`]);
    /// only the topics of [`topics::TOPICS`] reach a domain queue.
    pub topic: String,
    /// `X-Shopify-Shop-Domain` or `Shopify-Shop-Domain`, lowercased.
    pub shop_domain: String,
    /// `X-Shopify-Webhook-Id` (or `Shopify-Webhook-Id`); for an Events delivery, which has none,
    /// its event id.
    pub webhook_id: String,
    /// `X-Shopify-API-Version` or `Shopify-API-Version`.
    pub api_version: String,
    /// `X-Shopify-Event-Id` or `Shopify-Event-Id`, if sent.
    pub event_id: Option<String>,
    /// `X-Shopify-Triggered-At` or `Shopify-Triggered-At`, if sent and RFC 3339.
    pub triggered_at: Option<DateTime<Utc>>,
}

/// A required header is absent or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header is not there (or empty), in neither form. Named by its `X-Shopify-*` name.
    #[error("required header {0} (or its Shopify-* form) is missing")]
    Missing(&'static str),
    /// The header is there but cannot be used.
    #[error("header {header} is invalid: {reason}")]
    Invalid {
        /// Which header.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Both forms of a header are there with different values. Shopify sends the same value
    /// under both names, and headers are not signed, so one of them was changed on the way:
    /// neither is trusted.
    #[error("headers {legacy} and {events} disagree")]
    Conflict {
        /// The `X-Shopify-*` name.
        legacy: &'static str,
        /// The `Shopify-*` name.
        events: &'static str,
    },
}

/// Longest value accepted for id-like headers; Shopify's are UUIDs or short numbers.
const MAX_ID_LEN: usize = 255;

/// Reads the field named `legacy` in either form through `get`: trimmed, empty taken as absent,
/// and an error if both forms are there and differ (compared with `same`).
pub fn either_form<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    legacy: &'static str,
    same: impl Fn(&str, &str) -> bool,
) -> Result<Option<&'a str>, HeaderError> {
    let read = |name: &str| get(name).map(str::trim).filter(|v| !v.is_empty());
    let events = header::events_name(legacy);
    match (read(legacy), events.and_then(read)) {
        (Some(a), Some(b)) if !same(a, b) => Err(HeaderError::Conflict {
            legacy,
            events: events.unwrap_or(legacy),
        }),
        (a, b) => Ok(a.or(b)),
    }
}

fn exact(a: &str, b: &str) -> bool {
    a == b
}

impl WebhookHeaders {
    /// Reads and checks the headers through `get`, which returns a header's value by lowercase
    /// name. Pure: the caller adapts whatever header map its HTTP framework has.
    ///
    /// Each field is read from its `X-Shopify-*` or its `Shopify-*` name, whichever is there;
    /// when both are, they must agree ([`HeaderError::Conflict`] otherwise; shop domains are
    /// compared case-insensitively). A webhook id is required unless an event id is there, which
    /// then stands in for it (Events deliveries have only the event id).
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, HeaderError> {
        let required =
            |name: &'static str| either_form(&get, name, exact)?.ok_or(HeaderError::Missing(name));
        let topic = required(header::TOPIC)?;
        if !topics::is_acceptable(topic) {
            return Err(HeaderError::Invalid {
                header: header::TOPIC,
                reason: "expected a topic of at most 100 visible ASCII characters",
            });
        }
        let shop_domain = either_form(&get, header::SHOP_DOMAIN, |a, b| a.eq_ignore_ascii_case(b))?
            .ok_or(HeaderError::Missing(header::SHOP_DOMAIN))?
            .to_ascii_lowercase();
        if !is_shop_domain(&shop_domain) {
            return Err(HeaderError::Invalid {
                header: header::SHOP_DOMAIN,
                reason: "expected a host name",
            });
        }
        let event_id = either_form(&get, header::EVENT_ID, exact)?
            .filter(|v| is_token(v))
            .map(str::to_owned);
        let webhook_id = match (either_form(&get, header::WEBHOOK_ID, exact)?, &event_id) {
            (Some(id), _) => id,
            (None, Some(event_id)) => event_id.as_str(),
            (None, None) => return Err(HeaderError::Missing(header::WEBHOOK_ID)),
        };
        if !is_token(webhook_id) {
            return Err(HeaderError::Invalid {
                header: header::WEBHOOK_ID,
                reason: "expected an id of at most 255 visible characters",
            });
        }
        let api_version = required(header::API_VERSION)?;
        if !is_token(api_version) {
            return Err(HeaderError::Invalid {
                header: header::API_VERSION,
                reason: "expected a version such as 2025-10",
            });
        }
        // An unparseable timestamp is informational only: dropping it is better than refusing a
        // genuine webhook, which Shopify would retry in vain and eventually unsubscribe.
        let triggered_at = either_form(&get, header::TRIGGERED_AT, exact)?
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(Self {
            topic: topic.to_owned(),
            shop_domain,
            webhook_id: webhook_id.to_owned(),
            api_version: api_version.to_owned(),
            event_id,
            triggered_at,
        })
    }
}

/// Whether `s` is a host name such as `example.myshopify.com` (lowercase it first): safe in
/// idempotency keys and as a key of the shop allowlist.
pub fn is_shop_domain(s: &str) -> bool {
    is_domain(s)
}

fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').count() >= 2
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Why an envelope could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not UTF-8 JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object, which no Shopify webhook is.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// A message on the broker carries a schema version this build does not know.
    #[error("unsupported envelope schema_version {0} (this build reads {SCHEMA_VERSION})")]
    UnsupportedVersion(u64),
    /// A message on the broker is not a valid envelope.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl Envelope {
    /// Builds the envelope of a verified webhook.
    ///
    /// The idempotency key follows the topic's rule ([`idempotency::derive_for_webhook`]: the
    /// event id, when Shopify sent one, for topics that repeat per resource). For a topic we do
    /// not know, or a payload missing the fields its rule needs, the key falls back to the
    /// webhook id: the event is still published (nothing is refused that Shopify signed), and the
    /// worker decides its fate, with a dead letter that names the problem if it cannot be handled.
    pub fn from_webhook(
        headers: WebhookHeaders,
        verified: Verified,
        received_at: DateTime<Utc>,
        traceparent: TraceParent,
    ) -> Result<Self, EnvelopeError> {
        let body = String::from_utf8(verified.into_body())
            .map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        let payload =
            RawValue::from_string(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        if !payload.get().starts_with('{') {
            return Err(EnvelopeError::NotAnObject);
        }
        let idempotency_key = match idempotency::derive_for_webhook(
            &headers.shop_domain,
            &headers.topic,
            payload.get(),
            headers.event_id.as_deref(),
        ) {
            Ok(key) => key,
            Err(error) => {
                tracing::debug!(%error, topic = %headers.topic, "idempotency key falls back to the webhook id");
                IdempotencyKey::from_webhook_id(
                    &headers.shop_domain,
                    &headers.topic,
                    &headers.webhook_id,
                )
            }
        };
        Ok(Self {
            schema_version: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            webhook_id: headers.webhook_id,
            shopify_event_id: headers.event_id,
            topic: headers.topic,
            shop_domain: headers.shop_domain,
            api_version: headers.api_version,
            triggered_at: headers.triggered_at,
            received_at,
            source: Source::Webhook,
            idempotency_key,
            traceparent: traceparent.to_string(),
            payload,
        })
    }

    /// Builds the envelope of a change found by polling the Shopify Admin API.
    ///
    /// The idempotency key comes from the same [`idempotency::derive`] as a webhook's, so a change
    /// that arrives both ways is applied once. `webhook_id` is a synthetic `reconciliation:<uuid>`
    /// (there was no webhook), and a new trace starts here.
    pub fn from_reconciliation(
        shop_domain: &str,
        topic: &str,
        api_version: &str,
        payload: Box<RawValue>,
        received_at: DateTime<Utc>,
    ) -> Result<Self, EnvelopeError> {
        if !payload.get().starts_with('{') {
            return Err(EnvelopeError::NotAnObject);
        }
        let webhook_id = format!("reconciliation:{}", Uuid::now_v7());
        let idempotency_key = idempotency::derive(shop_domain, topic, payload.get())
            .unwrap_or_else(|_| IdempotencyKey::from_webhook_id(shop_domain, topic, &webhook_id));
        Ok(Self {
            schema_version: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            webhook_id,
            shopify_event_id: None,
            topic: topic.to_owned(),
            shop_domain: shop_domain.to_owned(),
            api_version: api_version.to_owned(),
            triggered_at: None,
            received_at,
            source: Source::Reconciliation,
            idempotency_key,
            traceparent: TraceParent::new_root().to_string(),
            payload,
        })
    }

    /// Serialises the envelope as published (compact JSON, payload embedded verbatim).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .expect("an envelope always serialises: string keys, no maps of non-strings")
    }

    /// Reads an envelope from a message body, refusing unknown schema versions explicitly.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct Probe {
            schema_version: u64,
        }
        let probe: Probe = serde_json::from_slice(bytes)?;
        if probe.schema_version != u64::from(SCHEMA_VERSION) {
            return Err(EnvelopeError::UnsupportedVersion(probe.schema_version));
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The routing key on `hookline.events` (see [`topics::routing_key`]).
    pub fn routing_key(&self) -> String {
        topics::routing_key(&self.topic)
    }

    /// AMQP properties: persistent, JSON, `message_id` = `event_id`, `type` = topic, and the
    /// headers operators filter on.
    pub fn amqp_properties(&self, app_id: &str) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in [
            (amqp_header::IDEMPOTENCY_KEY, self.idempotency_key.as_str()),
            (amqp_header::WEBHOOK_ID, &self.webhook_id),
            (amqp_header::TOPIC, &self.topic),
            (amqp_header::SHOP_DOMAIN, &self.shop_domain),
            (amqp_header::TRACEPARENT, &self.traceparent),
        ] {
            headers.insert(
                ShortString::from(k),
                AMQPValue::LongString(LongString::from(v)),
            );
        }
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(self.event_id.to_string().into())
            .with_type(self.topic.as_str().into())
            .with_timestamp(u64::try_from(self.received_at.timestamp()).unwrap_or(0))
            .with_app_id(app_id.into())
            .with_headers(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{Verifier, sign};
    use std::collections::HashMap;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    fn good_headers() -> HashMap<&'static str, &'static str> {
        headers(&[
            (header::TOPIC, "orders/paid"),
            (header::SHOP_DOMAIN, "Example.myshopify.com"),
            (header::WEBHOOK_ID, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd040"),
            (header::API_VERSION, "2025-10"),
            (header::EVENT_ID, "98880550-7158-44d4-b7cd-2c97c8a091b0"),
            (header::TRIGGERED_AT, "2026-11-20T15:16:40.123Z"),
        ])
    }

    fn verified(body: &str) -> Verified {
        Verifier::new(["k"])
            .unwrap()
            .verify(body.as_bytes().to_vec(), Some(&sign(b"k", body.as_bytes())))
            .unwrap()
    }

    #[test]
    fn headers_are_parsed_and_normalised() {
        let h = good_headers();
        let parsed = WebhookHeaders::parse(|n| h.get(n).copied()).unwrap();
        assert_eq!(parsed.shop_domain, "example.myshopify.com");
        assert_eq!(parsed.topic, "orders/paid");
        assert_eq!(
            parsed.triggered_at.unwrap().timestamp_millis(),
            1_795_187_800_123
        );
    }

    #[test]
    fn each_required_header_is_named_when_missing() {
        for name in [
            header::TOPIC,
            header::SHOP_DOMAIN,
            header::WEBHOOK_ID,
            header::API_VERSION,
        ] {
            let mut h = good_headers();
            h.remove(name);
            if name == header::WEBHOOK_ID {
                // The event id would stand in for it.
                h.remove(header::EVENT_ID);
            }
            assert_eq!(
                WebhookHeaders::parse(|n| h.get(n).copied()),
                Err(HeaderError::Missing(name))
            );
        }
    }

    #[test]
    fn hostile_header_values_are_refused() {
        for (name, value) in [
            (header::TOPIC, "orders paid"),
            (header::SHOP_DOMAIN, "evil:shop"),
            (header::SHOP_DOMAIN, "localhost"),
            (header::WEBHOOK_ID, "has space"),
        ] {
            let mut h = good_headers();
            h.insert(name, value);
            assert!(
                matches!(
                    WebhookHeaders::parse(|n| h.get(n).copied()),
                    Err(HeaderError::Invalid { .. })
                ),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn the_shopify_form_alone_is_read_and_its_event_id_stands_in_for_the_webhook_id() {
        let h = headers(&[
            (header::events::TOPIC, "customer.tags_added"),
            (header::events::SHOP_DOMAIN, "Example.myshopify.com"),
            (header::events::API_VERSION, "2026-01"),
            (header::events::EVENT_ID, "ev-9"),
            (header::events::TRIGGERED_AT, "2026-11-20T15:16:40.123Z"),
        ]);
        let parsed = WebhookHeaders::parse(|n| h.get(n).copied()).unwrap();
        assert_eq!(parsed.topic, "customer.tags_added");
        assert_eq!(parsed.shop_domain, "example.myshopify.com");
        assert_eq!(parsed.webhook_id, "ev-9");
        assert_eq!(parsed.event_id.as_deref(), Some("ev-9"));
        assert_eq!(parsed.api_version, "2026-01");
        assert!(parsed.triggered_at.is_some());
    }

    #[test]
    fn both_forms_must_agree() {
        let mut h = good_headers();
        for (legacy, events) in header::PAIRS {
            if let Some(v) = h.get(legacy).copied() {
                h.insert(events, v);
            }
        }
        h.insert(header::events::SHOP_DOMAIN, "EXAMPLE.myshopify.com");
        let both = WebhookHeaders::parse(|n| h.get(n).copied()).unwrap();
        let alone = WebhookHeaders::parse(|n| good_headers().get(n).copied()).unwrap();
        assert_eq!(both, alone, "agreeing forms read as one");
        for (legacy, events, other) in [
            (header::TOPIC, header::events::TOPIC, "orders/cancelled"),
            (
                header::SHOP_DOMAIN,
                header::events::SHOP_DOMAIN,
                "b.myshopify.com",
            ),
            (header::WEBHOOK_ID, header::events::WEBHOOK_ID, "w2"),
            (header::EVENT_ID, header::events::EVENT_ID, "ev-2"),
            (header::API_VERSION, header::events::API_VERSION, "2026-01"),
            (
                header::TRIGGERED_AT,
                header::events::TRIGGERED_AT,
                "2026-11-20T15:16:41Z",
            ),
        ] {
            let mut conflicting = h.clone();
            conflicting.insert(events, other);
            assert_eq!(
                WebhookHeaders::parse(|n| conflicting.get(n).copied()),
                Err(HeaderError::Conflict { legacy, events }),
                "{events}"
            );
        }
    }

    #[test]
    fn header_forms_name_what_a_sender_sends() {
        use header::HeaderForm;
        assert_eq!(HeaderForm::Legacy.names(header::TOPIC), vec![header::TOPIC]);
        assert_eq!(
            HeaderForm::Both.names(header::HMAC),
            vec![header::HMAC, header::events::HMAC]
        );
        assert_eq!(
            HeaderForm::Events.names(header::EVENT_ID),
            vec![header::events::EVENT_ID]
        );
        assert!(HeaderForm::Events.names(header::WEBHOOK_ID).is_empty());
        assert_eq!(HeaderForm::parse("events"), Some(HeaderForm::Events));
        assert_eq!(HeaderForm::parse("x"), None);
    }

    #[test]
    fn envelope_keeps_the_payload_byte_exact_and_round_trips() {
        let body = "{\"id\": 7,\n  \"name\":\"M\\u00fcller 🚀\", \"updated_at\":\"2026-11-20T10:16:40-05:00\"}";
        let h = good_headers();
        let headers = WebhookHeaders::parse(|n| h.get(n).copied()).unwrap();
        let env =
            Envelope::from_webhook(headers, verified(body), Utc::now(), TraceParent::new_root())
                .unwrap();
        assert_eq!(env.payload.get(), body);
        assert_eq!(
            env.idempotency_key.as_str(),
            "example.myshopify.com:orders/paid:7"
        );
        assert_eq!(env.event_id.get_version_num(), 7);
        let back = Envelope::from_json(&env.to_json()).unwrap();
        assert_eq!(back.payload.get(), body);
        assert_eq!(back.event_id, env.event_id);
        assert_eq!(back.source, Source::Webhook);
    }

    #[test]
    fn non_objects_and_non_json_are_refused() {
        let h = good_headers();
        let parse = || WebhookHeaders::parse(|n| h.get(n).copied()).unwrap();
        let now = Utc::now();
        assert!(matches!(
            Envelope::from_webhook(parse(), verified("[1]"), now, TraceParent::new_root()),
            Err(EnvelopeError::NotAnObject)
        ));
        assert!(matches!(
            Envelope::from_webhook(parse(), verified("{nope"), now, TraceParent::new_root()),
            Err(EnvelopeError::NotJson(_))
        ));
    }

    #[test]
    fn unknown_topics_fall_back_to_the_webhook_id() {
        let mut h = good_headers();
        h.insert(header::TOPIC, "carts/create");
        let headers = WebhookHeaders::parse(|n| h.get(n).copied()).unwrap();
        let env =
            Envelope::from_webhook(headers, verified("{}"), Utc::now(), TraceParent::new_root())
                .unwrap();
        assert_eq!(
            env.idempotency_key.as_str(),
            "example.myshopify.com:carts/create:webhook:b54557e4-bdd9-4b37-8a5f-bf7d70bcd040"
        );
    }

    #[test]
    fn a_reconciled_change_gets_the_same_key_as_its_webhook() {
        let body = r#"{"id":7,"updated_at":"2026-11-20T10:16:40-05:00"}"#;
        let h = good_headers();
        let headers = WebhookHeaders::parse(|n| h.get(n).copied()).unwrap();
        let webhook =
            Envelope::from_webhook(headers, verified(body), Utc::now(), TraceParent::new_root())
                .unwrap();
        let raw = RawValue::from_string(body.to_owned()).unwrap();
        let polled = Envelope::from_reconciliation(
            "example.myshopify.com",
            "orders/paid",
            "2025-10",
            raw,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(polled.idempotency_key, webhook.idempotency_key);
        assert_eq!(polled.source, Source::Reconciliation);
        assert!(polled.webhook_id.starts_with("reconciliation:"));
    }

    #[test]
    fn other_schema_versions_are_refused_by_name() {
        let err = Envelope::from_json(br#"{"schema_version":2,"whatever":true}"#).unwrap_err();
        assert!(matches!(err, EnvelopeError::UnsupportedVersion(2)));
    }
}
