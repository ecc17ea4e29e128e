//! Strict payload schemas, and watching Shopify's payloads drift before anything breaks.
//!
//! Each handled topic has a typed struct: required fields and their types are enforced, unknown
//! fields are tolerated (Shopify adds fields within an API version). A mismatch is a permanent
//! error naming the field path and the `api_version` seen. Two counters watch drift at the top
//! level of each payload: fields we do not know, and optional fields that stopped arriving.

use hookline_core::Envelope;
use serde::de::DeserializeOwned;

use crate::error::HandlerError;

/// A topic's payload type.
pub trait Schema: DeserializeOwned {
    /// Every top-level field the struct reads.
    const KNOWN_FIELDS: &'static [&'static str];
    /// The known fields that may be absent.
    const OPTIONAL_FIELDS: &'static [&'static str];
}

/// Parses the envelope's payload as `T`, counting drift.
pub fn parse<T: Schema>(envelope: &Envelope) -> Result<T, HandlerError> {
    let raw = envelope.payload.get();
    let mut deserializer = serde_json::Deserializer::from_str(raw);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let parsed = parsed.map_err(|e| HandlerError::Schema {
        topic: envelope.topic.clone(),
        path: e.path().to_string(),
        api_version: envelope.api_version.clone(),
        message: e.inner().to_string(),
    })?;
    count_drift::<T>(envelope);
    Ok(parsed)
}

fn count_drift<T: Schema>(envelope: &Envelope) {
    let Ok(fields) =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(envelope.payload.get())
    else {
        return;
    };
    for name in fields.keys() {
        if !T::KNOWN_FIELDS.contains(&name.as_str()) {
            metrics::counter!(
                "hookline_worker_schema_unknown_fields_total",
                "topic" => envelope.topic.clone(),
                "field" => name.clone(),
                "api_version" => envelope.api_version.clone()
            )
            .increment(1);
        }
    }
    for name in T::OPTIONAL_FIELDS {
        if !fields.contains_key(*name) {
            metrics::counter!(
                "hookline_worker_schema_missing_optional_total",
                "topic" => envelope.topic.clone(),
                "field" => *name,
                "api_version" => envelope.api_version.clone()
            )
            .increment(1);
        }
    }
}
