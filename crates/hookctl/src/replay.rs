//! `hookctl replay`: re-publishes envelopes from the audit trail through the normal path.
//!
//! Each envelope (the newest row of each idempotency key in the window) is published to
//! `hookline.events` with its topic's routing key, mandatory, and waits for the broker's confirm
//! before the next, as the reconciler and the dead-letter replay do. The workers then treat it as
//! any delivery: a key still recorded in `processed_events` is answered as a duplicate, so a
//! replay of something applied is a no-op, and the summary says how many that is.
//!
//! `--reapply` gives every copy a fresh key derived from the original and the run
//! ([`IdempotencyKey::reapplied`]) and a new event id: the guards no longer recognise it, and it
//! is applied again as far as the domain's own state allows (see `docs/audit.md`).

use std::time::Duration;

use hookline_core::Envelope;
use hookline_core::idempotency::IdempotencyKey;
use hookline_core::topology::EVENTS_EXCHANGE;
use hookline_worker::audit::{self, EventFilter, ReplayCandidate};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::{Confirmation, Connection};

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The window (and filters).
    pub filter: EventFilter,
    /// Say what would be published, publish nothing.
    pub dry_run: bool,
    /// Envelopes per second.
    pub rate: f64,
    /// Fresh idempotency keys.
    pub reapply: bool,
    /// The run's tag (`x-hookline-replay`, and the suffix of re-applied keys).
    pub tag: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Published (or, in a dry run, would be).
    pub published: Vec<ReplayCandidate>,
    /// Of those, how many keys are still recorded as processed (a plain replay of them is a
    /// duplicate).
    pub recorded: usize,
    /// Rows whose envelope was erased or never kept (privacy requests): not replayable.
    pub not_kept: usize,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trail could not be read.
    #[error("cannot read the audit trail (has `hookline-worker migrate` run?)")]
    Database(#[from] tokio_postgres::Error),
    /// The broker failed.
    #[error("broker error")]
    Amqp(#[from] lapin::Error),
    /// The broker did not take a message: the replay stops there (what was confirmed stays).
    #[error("the broker did not confirm event {0}; stopped (the events before it were published)")]
    NotConfirmed(String),
    /// A stored envelope no longer reads (a newer schema version?).
    #[error("the stored envelope of event {0} does not read: {1}")]
    Unreadable(String, String),
}

/// The envelope as it is re-published: the stored one, or for `--reapply` a copy with a key
/// derived from the original and `tag`, and a new event id.
pub fn prepare(stored: &str, reapply: bool, tag: &str) -> Result<Envelope, String> {
    let mut envelope = Envelope::from_json(stored.as_bytes()).map_err(|e| e.to_string())?;
    if reapply {
        envelope.idempotency_key = IdempotencyKey::reapplied(&envelope.idempotency_key, tag);
        envelope.event_id = uuid::Uuid::now_v7();
    }
    Ok(envelope)
}

/// Replays `request`'s window; `progress` is told after each envelope (done, total).
pub async fn replay(
    db: &tokio_postgres::Client,
    connection: &Connection,
    request: &ReplayRequest,
    mut progress: impl FnMut(usize, usize, &ReplayCandidate),
) -> Result<ReplayReport, ReplayError> {
    let candidates = audit::replay_candidates(db, &request.filter).await?;
    let mut report = ReplayReport::default();
    let (kept, not_kept): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|c| c.envelope.is_some());
    report.not_kept = not_kept.len();
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let pause = Duration::from_secs_f64(1.0 / request.rate.max(0.001));
    let total = kept.len();
    for (i, candidate) in kept.into_iter().enumerate() {
        let stored = candidate.envelope.as_deref().unwrap_or_default();
        let envelope = prepare(stored, request.reapply, &request.tag)
            .map_err(|e| ReplayError::Unreadable(candidate.row.event_id.to_string(), e))?;
        if !request.dry_run {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            let mut properties = envelope.amqp_properties("hookctl-replay");
            let mut headers = properties.headers().clone().unwrap_or_default();
            headers.insert(
                ShortString::from(audit::REPLAY_HEADER),
                AMQPValue::LongString(LongString::from(request.tag.as_str())),
            );
            properties = properties.with_headers(headers);
            let confirm = channel
                .basic_publish(
                    EVENTS_EXCHANGE.into(),
                    envelope.routing_key().as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &envelope.to_json(),
                    properties,
                )
                .await?
                .await?;
            if confirm != Confirmation::Ack(None) {
                return Err(ReplayError::NotConfirmed(
                    candidate.row.event_id.to_string(),
                ));
            }
        }
        if candidate.recorded {
            report.recorded += 1;
        }
        progress(i + 1, total, &candidate);
        report.published.push(candidate);
    }
    let _ = channel.close(200, "replayed".into()).await;
    Ok(report)
}

/// `--rate`: `20`, `20/s` or `0.5/s`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("{s:?}: expected envelopes per second, e.g. 20/s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_a_positive_number_per_second() {
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
