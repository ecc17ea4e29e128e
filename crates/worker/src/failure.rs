//! The failure bookkeeping that travels with a message in its AMQP headers.
//!
//! A retry is a new publish of the same body to a wait queue, not a requeue, so everything the
//! next attempt (or a person reading the dead-letter queue) needs rides along in headers:
//! attempts, first and last failure time, last error and reason, steps done, original routing key.

use chrono::{SecondsFormat, Utc};
use hookline_core::Domain;
use hookline_core::envelope::amqp_header as h;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Longest error text kept in a header: enough for a cause chain, small enough for the UI.
const MAX_ERROR_LEN: usize = 1000;

/// What the headers say about earlier failures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureState {
    /// Failed attempts so far.
    pub attempts: u32,
    /// Waits for another delivery's claim so far.
    pub busy_retries: u32,
    /// First failure, RFC 3339.
    pub first_failure: Option<String>,
    /// Original routing key, if a previous failure recorded it.
    pub routing_key: Option<String>,
    /// Since when it has been waiting for other deliveries of its order or key, RFC 3339.
    pub waiting_since: Option<String>,
}

fn get<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

fn as_u32(value: Option<&AMQPValue>) -> u32 {
    let n: i64 = match value {
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::ShortInt(n)) => i64::from(*n),
        Some(AMQPValue::LongString(s)) => s.to_string().parse().unwrap_or(0),
        _ => 0,
    };
    u32::try_from(n).unwrap_or(0)
}

fn as_string(value: Option<&AMQPValue>) -> Option<String> {
    match value {
        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
        Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
        _ => None,
    }
}

impl FailureState {
    /// Reads the state from a delivery's properties (all zero for a first delivery).
    pub fn read(properties: &BasicProperties) -> Self {
        Self {
            attempts: as_u32(get(properties, h::ATTEMPTS)),
            busy_retries: as_u32(get(properties, h::BUSY_RETRIES)),
            first_failure: as_string(get(properties, h::FIRST_FAILURE)),
            routing_key: as_string(get(properties, h::ROUTING_KEY)),
            waiting_since: as_string(get(properties, h::WAITING_SINCE)),
        }
    }
}

/// What to write on a retry or dead letter.
#[derive(Debug, Clone)]
pub struct FailureNote<'a> {
    /// The domain whose bulkhead failed.
    pub domain: Domain,
    /// Failed attempts including this one.
    pub attempts: u32,
    /// Busy waits including this one.
    pub busy_retries: u32,
    /// `x-hookline-reason`.
    pub reason: &'a str,
    /// The error with its causes.
    pub error: String,
    /// Steps done, in order.
    pub steps: &'a [&'a str],
    /// The original routing key.
    pub routing_key: String,
    /// First failure (kept from earlier headers), RFC 3339.
    pub first_failure: Option<String>,
    /// Since when it has been waiting for other deliveries (RFC 3339); `None` removes the header:
    /// this failure was not such a wait.
    pub waiting_since: Option<String>,
}

/// Copies `properties` and writes the note's headers over the failure headers; every other
/// header (idempotency key, webhook id, traceparent, ...) is kept.
pub fn annotate(properties: &BasicProperties, note: &FailureNote<'_>) -> BasicProperties {
    let mut headers: FieldTable = properties.headers().clone().unwrap_or_default();
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut put = |name: &str, value: AMQPValue| {
        headers.insert(ShortString::from(name), value);
    };
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut error = note.error.clone();
    truncate(&mut error, MAX_ERROR_LEN);
    put(h::REASON, text(note.reason));
    put(h::ERROR, text(&error));
    put(
        h::ATTEMPTS,
        AMQPValue::LongInt(i32::try_from(note.attempts).unwrap_or(i32::MAX)),
    );
    put(
        h::BUSY_RETRIES,
        AMQPValue::LongInt(i32::try_from(note.busy_retries).unwrap_or(i32::MAX)),
    );
    put(
        h::FIRST_FAILURE,
        text(note.first_failure.as_deref().unwrap_or(&now)),
    );
    put(h::LAST_FAILURE, text(&now));
    put(h::STEPS, text(&note.steps.join(",")));
    put(h::ROUTING_KEY, text(&note.routing_key));
    put(h::DOMAIN, text(note.domain.name()));
    if let Some(since) = &note.waiting_since {
        put(h::WAITING_SINCE, text(since));
    } else if headers.contains_key(h::WAITING_SINCE) {
        // It got its turn since it last waited: the clock starts again at its next wait.
        let mut map = headers.inner().clone();
        map.retain(|name, _| name.as_str() != h::WAITING_SINCE);
        headers = FieldTable::from(map);
    }
    properties.clone().with_headers(headers)
}

/// Shortens `text` to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
}

/// Writes an error and its causes on one line: `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_through_headers_and_keep_other_headers() {
        let mut original = FieldTable::default();
        original.insert(
            "x-idempotency-key".into(),
            AMQPValue::LongString("k".into()),
        );
        let props = BasicProperties::default().with_headers(original);
        assert_eq!(FailureState::read(&props), FailureState::default());

        let note = FailureNote {
            domain: Domain::Inventory,
            attempts: 2,
            busy_retries: 1,
            reason: "database_unavailable",
            error: "é".repeat(MAX_ERROR_LEN),
            steps: &["received", "claimed"],
            routing_key: "inventory_levels.update".into(),
            first_failure: Some("2026-11-23T10:00:00.000Z".into()),
            waiting_since: Some("2026-11-23T10:00:01.000Z".into()),
        };
        let annotated = annotate(&props, &note);
        let state = FailureState::read(&annotated);
        assert_eq!(state.attempts, 2);
        assert_eq!(state.busy_retries, 1);
        assert_eq!(
            state.first_failure.as_deref(),
            Some("2026-11-23T10:00:00.000Z")
        );
        assert_eq!(
            state.routing_key.as_deref(),
            Some("inventory_levels.update")
        );
        assert_eq!(
            state.waiting_since.as_deref(),
            Some("2026-11-23T10:00:01.000Z")
        );
        let done_waiting = annotate(
            &annotated,
            &FailureNote {
                waiting_since: None,
                ..note.clone()
            },
        );
        assert_eq!(FailureState::read(&done_waiting).waiting_since, None);
        let headers = annotated.headers().as_ref().unwrap().inner();
        assert!(headers.contains_key("x-idempotency-key"));
        assert_eq!(
            as_string(headers.get(h::STEPS)).as_deref(),
            Some("received,claimed")
        );
        assert!(as_string(headers.get(h::ERROR)).unwrap().len() <= MAX_ERROR_LEN + '…'.len_utf8());
    }
}
