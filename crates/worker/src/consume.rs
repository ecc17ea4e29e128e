//! One bulkhead per domain: its own channel, prefetch, concurrency limit and handler (which owns
//! the domain's database pool and HTTP client).
//!
//! For each delivery: parse the envelope, claim its idempotency key, run the handler, and then
//! exactly one of: ack (effect durable, or a duplicate), republish to a wait queue (retryable;
//! confirmed before the ack), or publish to the dead-letter exchange with the reason (permanent or
//! out of attempts; confirmed before the ack). A message is never acked before one of those is
//! durable; if even the republish fails, it is nacked back to its queue.
//!
//! Each of those decisions is written to the audit trail ([`crate::audit`]) just before the ack,
//! with the steps the handler recorded while it ran: one statement per delivery, on the trail's
//! own pool, never holding back the ack if the trail cannot be written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{FutureExt, StreamExt};
use hookline_core::confirm::ConfirmChannel;
use hookline_core::retry::RetryPolicy;
use hookline_core::topology::{self, DEAD_LETTER_EXCHANGE};
use hookline_core::{Domain, Envelope};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::audit::{self, Collector, Decision, Trail};
use crate::domains::{DomainHandler, Outcome};
use crate::error::{Disposition, HandlerError};
use crate::failure::{FailureNote, FailureState, annotate, error_chain};
use crate::idempotency::{Claim, Claims};
use crate::settings::BulkheadSettings;

/// Everything one bulkhead needs.
#[derive(Clone)]
pub struct Bulkhead {
    /// Which domain.
    pub domain: Domain,
    /// Its effect.
    pub handler: Arc<dyn DomainHandler>,
    /// Its sizes.
    pub sizes: BulkheadSettings,
    /// Redis claims (shared: one connection manager per process).
    pub claims: Claims,
    /// Retry policy for retryable failures.
    pub retry: RetryPolicy,
    /// A handler running longer than this fails as retryable (`timeout`).
    pub handler_timeout: Duration,
    /// How long in-flight work may take after shutdown was asked for.
    pub drain_timeout: Duration,
    /// How long a delivery may keep waiting for other deliveries of its order or key
    /// ([`HandlerError::waits_for_another_delivery`]) before it is dead-lettered as
    /// `busy_too_long`. Longer than a few handler timeouts: a holder that is alive ends by then.
    pub busy_limit: Duration,
    /// Where decisions are recorded (`None`: `HOOKLINE_AUDIT=false`).
    pub audit: Option<Trail>,
}

/// The channel a bulkhead uses to republish (retries, dead letters), in confirm mode.
pub struct Republisher(ConfirmChannel);

/// Why republishing did not succeed.
#[derive(Debug, thiserror::Error)]
enum RepublishError {
    #[error("broker error")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not accept the message ({0})")]
    NotConfirmed(&'static str),
}

impl Republisher {
    /// Puts `channel` in confirm mode.
    pub async fn new(channel: Channel) -> Result<Self, lapin::Error> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self(ConfirmChannel::new(channel)))
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: lapin::BasicProperties,
    ) -> Result<(), RepublishError> {
        let confirm = self
            .0
            .publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => {
                Err(RepublishError::NotConfirmed("returned as unroutable"))
            }
            Confirmation::Nack(_) => Err(RepublishError::NotConfirmed("nack")),
            Confirmation::NotRequested => Err(RepublishError::NotConfirmed("no confirm mode")),
        }
    }
}

impl Bulkhead {
    /// Consumes the domain's queue until `shutdown`, or until the connection fails (then returns
    /// the error, and the caller reconnects). On shutdown: stop consuming, let in-flight
    /// deliveries finish (up to the drain timeout), close; unacked messages return to the queue.
    pub async fn run(
        self,
        connection: &Connection,
        shutdown: CancellationToken,
    ) -> Result<(), lapin::Error> {
        let queue = topology::queue(self.domain);
        let consume = connection.create_channel().await?;
        consume
            .basic_qos(self.sizes.prefetch, BasicQosOptions { global: false })
            .await?;
        let publisher = Arc::new(Republisher::new(connection.create_channel().await?).await?);
        let tag = format!(
            "hookline-worker-{}-{}",
            self.domain,
            uuid::Uuid::new_v4().simple()
        );
        let mut consumer = consume
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(domain = %self.domain, %queue, prefetch = self.sizes.prefetch, concurrency = self.sizes.concurrency, "consuming");

        let permits = Arc::new(Semaphore::new(self.sizes.concurrency));
        let tracker = TaskTracker::new();
        let in_use =
            metrics::gauge!("hookline_worker_bulkhead_in_use", "domain" => self.domain.name());
        let result = loop {
            // The permit is taken before the next delivery, so at most `concurrency` are handled
            // at once and the rest stay with the broker (or in the prefetch buffer).
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break Ok(()) },
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                delivery = consumer.next() => delivery,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => break Err(error),
                None => {
                    break Err(lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                        lapin::ChannelState::Closed,
                        "consumer stream ended",
                    )));
                }
            };
            in_use.set((self.sizes.concurrency - permits.available_permits()) as f64);
            let (this, publisher, in_use, permits) = (
                self.clone(),
                publisher.clone(),
                in_use.clone(),
                permits.clone(),
            );
            let concurrency = self.sizes.concurrency;
            tracker.spawn(async move {
                this.process(&publisher, delivery).await;
                drop(permit);
                in_use.set((concurrency - permits.available_permits()) as f64);
            });
        };
        let _ = consume
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        tracker.close();
        if tokio::time::timeout(self.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(domain = %self.domain, "in-flight deliveries did not finish in time; they return to the queue");
        }
        let _ = consume.close(200, "bulkhead stopped".into()).await;
        let _ = publisher
            .0
            .channel()
            .close(200, "bulkhead stopped".into())
            .await;
        result
    }

    /// Handles one delivery to the end: ack, retry or dead letter.
    pub async fn process(&self, publisher: &Republisher, delivery: Delivery) {
        let started = Instant::now();
        let envelope = match Envelope::from_json(&delivery.data) {
            Ok(envelope) => envelope,
            Err(error) => {
                let error = HandlerError::from(error);
                return self
                    .fail(publisher, &delivery, None, &error, &["received"], vec![])
                    .await;
            }
        };
        let span = tracing::info_span!(
            "handle",
            domain = %self.domain,
            topic = %envelope.topic,
            event_id = %envelope.event_id,
            key = %envelope.idempotency_key,
            trace_id = tracing::field::Empty,
        );
        if let Some(trace) = hookline_core::trace::TraceParent::parse(&envelope.traceparent) {
            span.record("trace_id", trace.trace_id_hex());
            hookline_telemetry::continue_trace(&span, &envelope.traceparent);
        }
        async {
            let mut steps = vec!["received"];
            let held = match self.claims.claim(&envelope).await {
                Claim::Done => {
                    self.count("duplicate");
                    self.record(&delivery, &envelope, Decision::Duplicate, None, &steps, vec![]).await;
                    self.ack(&delivery).await;
                    return;
                }
                Claim::Busy { retry_in } => {
                    return self.fail(publisher, &delivery, Some(&envelope), &HandlerError::KeyBusy { retry_in }, &steps, vec![]).await;
                }
                Claim::Claimed(token) => {
                    steps.push("claimed");
                    Some(token)
                }
                Claim::Unavailable => {
                    steps.push("claim_skipped_redis_unavailable");
                    None
                }
            };
            // A panicking handler must not leave its delivery unacked (holding a prefetch slot
            // until the channel closes): it is caught and dead-lettered like a permanent error.
            let collector = Collector::new();
            let handled = collector.scope(std::panic::AssertUnwindSafe(self.handler.handle(&envelope)).catch_unwind());
            let result = match tokio::time::timeout(self.handler_timeout, handled).await {
                Ok(Ok(result)) => result,
                Ok(Err(panic)) => Err(HandlerError::Panicked(panic_message(panic.as_ref()))),
                Err(_) => Err(HandlerError::Timeout(self.handler_timeout)),
            };
            metrics::histogram!("hookline_worker_handler_seconds", "domain" => self.domain.name()).record(started.elapsed().as_secs_f64());
            match result {
                Ok(outcome) => {
                    self.claims.mark_done(&envelope, held.as_ref()).await;
                    let (decision, reason, done): (_, _, Vec<&str>) = match &outcome {
                        Outcome::Applied { steps: done } => (Decision::Applied, None, steps.iter().chain(done).copied().collect()),
                        Outcome::Duplicate => (Decision::Duplicate, None, steps.clone()),
                        Outcome::Skipped { reason } => (Decision::Skipped, Some(*reason), steps.clone()),
                    };
                    self.record(&delivery, &envelope, decision, reason, &done, collector.take()).await;
                    self.ack(&delivery).await;
                    match &outcome {
                        Outcome::Applied { steps } => {
                            let lag = (Utc::now() - envelope.received_at).to_std().unwrap_or_default();
                            metrics::histogram!("hookline_worker_lag_seconds", "domain" => self.domain.name()).record(lag.as_secs_f64());
                            tracing::info!(steps = ?steps, lag_ms = lag.as_millis() as u64, "applied");
                            self.count("applied");
                        }
                        Outcome::Duplicate => {
                            tracing::info!("duplicate: applied before, nothing changed");
                            self.count("duplicate");
                        }
                        Outcome::Skipped { reason } => {
                            tracing::info!(reason, "skipped");
                            self.count("skipped");
                        }
                    }
                }
                Err(error) => {
                    if let Some(token) = &held {
                        self.claims.release(&envelope, token).await;
                    }
                    steps.push("handler_failed");
                    self.fail(publisher, &delivery, Some(&envelope), &error, &steps, collector.take()).await;
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Writes the decision to the audit trail (a no-op when it is off).
    async fn record(
        &self,
        delivery: &Delivery,
        envelope: &Envelope,
        decision: Decision,
        reason: Option<&str>,
        steps: &[&str],
        calls: Vec<audit::Step>,
    ) {
        self.record_failure(delivery, envelope, decision, reason, None, 0, steps, calls)
            .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_failure(
        &self,
        delivery: &Delivery,
        envelope: &Envelope,
        decision: Decision,
        reason: Option<&str>,
        error: Option<&str>,
        attempts: u32,
        steps: &[&str],
        calls: Vec<audit::Step>,
    ) {
        if let Some(trail) = &self.audit {
            let attempts = attempts.max(FailureState::read(&delivery.properties).attempts);
            trail
                .write(audit::Entry {
                    envelope,
                    properties: &delivery.properties,
                    domain: self.domain,
                    decision,
                    reason,
                    error,
                    attempts,
                    steps,
                    calls,
                })
                .await;
        }
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!("hookline_worker_messages_total", "domain" => self.domain.name(), "outcome" => outcome).increment(1);
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
            // The channel is gone: the broker redelivers, and idempotency makes that harmless.
            tracing::warn!(%error, "ack failed; the message will be redelivered");
        }
    }

    /// Retry through a wait queue, or dead-letter, depending on the error and the attempts made.
    async fn fail(
        &self,
        publisher: &Republisher,
        delivery: &Delivery,
        envelope: Option<&Envelope>,
        error: &HandlerError,
        steps: &[&str],
        calls: Vec<audit::Step>,
    ) {
        let state = FailureState::read(&delivery.properties);
        let routing_key = state
            .routing_key
            .clone()
            .or_else(|| envelope.map(Envelope::routing_key))
            .unwrap_or_else(|| delivery.routing_key.to_string());
        let mut note = FailureNote {
            domain: self.domain,
            attempts: state.attempts,
            busy_retries: state.busy_retries,
            reason: "",
            error: error_chain(error),
            steps,
            routing_key,
            first_failure: state.first_failure.clone(),
            waiting_since: None,
        };
        let mut waited_too_long = false;
        if error.waits_for_another_delivery() {
            let now = Utc::now();
            let since = state
                .waiting_since
                .as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map_or(now, |t| t.with_timezone(&Utc));
            waited_too_long = (now - since).to_std().unwrap_or_default() > self.busy_limit;
            note.waiting_since = Some(since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        let disposition = if waited_too_long {
            Disposition::DeadLetter {
                reason: "busy_too_long",
            }
        } else {
            error.disposition()
        };
        let (exchange, target, reason) = match disposition {
            Disposition::Retry {
                reason,
                retry_after,
                counts_as_attempt,
            } => {
                let delay = if counts_as_attempt {
                    note.attempts += 1;
                    self.retry
                        .next_delay_with_retry_after(note.attempts, retry_after)
                } else {
                    note.busy_retries += 1;
                    Some(
                        retry_after
                            .unwrap_or(Duration::from_secs(1))
                            .clamp(Duration::from_millis(250), self.retry.max_delay),
                    )
                };
                match delay {
                    Some(delay) => {
                        let tier = topology::pick_wait_tier(delay, fastrand::f64());
                        note.reason = reason;
                        tracing::info!(reason, error = %note.error, attempts = note.attempts, delay_ms = tier, "retrying later");
                        metrics::counter!("hookline_worker_retries_total", "domain" => self.domain.name(), "reason" => reason).increment(1);
                        ("", topology::wait_queue(self.domain, tier), reason)
                    }
                    None => {
                        note.reason = "retries_exhausted";
                        (
                            DEAD_LETTER_EXCHANGE,
                            self.domain.name().to_owned(),
                            "retries_exhausted",
                        )
                    }
                }
            }
            Disposition::DeadLetter { reason } => {
                note.reason = reason;
                (DEAD_LETTER_EXCHANGE, self.domain.name().to_owned(), reason)
            }
        };
        if exchange == DEAD_LETTER_EXCHANGE {
            tracing::warn!(reason, error = %note.error, attempts = note.attempts, "dead-lettered");
            metrics::counter!("hookline_worker_dead_letters_total", "domain" => self.domain.name(), "reason" => reason).increment(1);
        }
        let properties = annotate(&delivery.properties, &note);
        match publisher
            .publish(exchange, &target, &delivery.data, properties)
            .await
        {
            Ok(()) => {
                if let Some(envelope) = envelope {
                    let decision = if exchange == DEAD_LETTER_EXCHANGE {
                        Decision::DeadLettered
                    } else {
                        Decision::Retried
                    };
                    self.record_failure(
                        delivery,
                        envelope,
                        decision,
                        Some(reason),
                        Some(&note.error),
                        note.attempts,
                        steps,
                        calls,
                    )
                    .await;
                }
                self.ack(delivery).await
            }
            Err(republish) => {
                // Not handed over: keep the message where it is. Pause first so a broker that
                // refuses wait-queue publishes is not hammered by an instant redelivery loop.
                tracing::error!(error = %republish, reason, "could not hand the message to the broker; returning it to its queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
            }
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
