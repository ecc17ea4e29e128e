//! The outbox relay: sends committed outbox rows to the ERP, each exactly once per success.
//!
//! A round claims due rows with `FOR UPDATE SKIP LOCKED` and a lease (`locked_until`,
//! `locked_by`) in one short statement, then sends them **after** that statement committed: no
//! HTTP call ever happens inside a transaction. Several relays (replicas) therefore never send one
//! row concurrently: they skip each other's locked and leased rows; a relay that dies mid-send
//! loses its lease when it runs out and the row is sent again (the ERP sees the same
//! `Idempotency-Key`).
//!
//! - **One item at a time, in order.** A row is due only when no earlier row of its aggregate (the
//!   stock item) is still pending, so a round claims at most the oldest row of each item, and an
//!   item's next change goes out only after the previous one was sent (or failed for good). Two
//!   changes of one item are never in flight at once, so the ERP cannot apply them out of order.
//!   A row waiting for a retry holds back the later rows of its item, not the other items.
//! - **Each result is written when it is known**, not after the whole round, and only if the
//!   lease is still ours.
//! - **The lease covers the work.** While a round's requests run, the relay extends the lease of
//!   its unfinished rows every third of `HOOKLINE_OUTBOX_LEASE_SECS`, so a slow ERP does not
//!   hand the rows to another relay mid-send. Only a relay that stops extending (it died, or lost
//!   its database) loses them.
//!
//! Rounds run every poll interval, at once when the inventory transaction's `NOTIFY` arrives, and
//! back to back while they find work (an item's next row becomes due when its previous one is
//! done).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use hookline_core::retry::RetryPolicy;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domains::inventory::OUTBOX_CHANNEL;
use crate::erp::{ErpClient, OutboxMessage, SendError};
use crate::settings::OutboxSettings;

/// Rows sent at once within a round.
const SEND_CONCURRENCY: usize = 8;

/// How one round went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundReport {
    /// Rows claimed.
    pub claimed: usize,
    /// Sent and marked `sent`.
    pub sent: usize,
    /// Scheduled for a later attempt.
    pub retried: usize,
    /// Marked `failed` (rejected, or out of attempts).
    pub failed: usize,
    /// Not attempted because the breaker was open; released for a later round.
    pub deferred: usize,
}

/// Errors of the relay's own database work.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A query failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// No connection from the pool.
    #[error("no database connection available")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// The relay.
pub struct Relay {
    pool: Pool,
    erp: ErpClient,
    settings: OutboxSettings,
    /// Delays between a row's attempts (the row's `retry_count` is the attempt number).
    policy: RetryPolicy,
    /// Identifies this relay's leases.
    relay_id: String,
    wake: Arc<Notify>,
}

enum Fate {
    Sent,
    Retry(String, Duration),
    Failed(String),
    Deferred,
}

impl Relay {
    /// A relay over `pool` (its own, not a bulkhead's) sending with `erp`.
    pub fn new(pool: Pool, erp: ErpClient, settings: OutboxSettings) -> Self {
        let policy = RetryPolicy {
            max_attempts: settings.max_attempts.max(1),
            ..RetryPolicy::default()
        };
        Self {
            pool,
            erp,
            settings,
            policy,
            relay_id: format!("relay-{}", uuid::Uuid::new_v4().simple()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Runs rounds until `shutdown`. `database_url` is used for the `LISTEN` connection, which
    /// cannot come from a pool (it must stay open and be polled for notifications).
    pub async fn run(self, database_url: String, shutdown: CancellationToken) {
        let listener = tokio::spawn(listen(database_url, self.wake.clone(), shutdown.clone()));
        let mut last_gauges = tokio::time::Instant::now() - Duration::from_secs(60);
        loop {
            let full = match self.run_round().await {
                // Work done: an item's next row may be due now, or the batch was full.
                Ok(report) => report.claimed > 0 && report.deferred == 0,
                Err(error) => {
                    tracing::warn!(error = %crate::failure::error_chain(&error), "outbox round failed");
                    false
                }
            };
            if last_gauges.elapsed() >= Duration::from_secs(5) {
                last_gauges = tokio::time::Instant::now();
                if let Err(error) = self.update_gauges().await {
                    tracing::debug!(%error, "outbox gauges not updated");
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
        listener.abort();
    }

    /// One round: claim due rows, send them (extending their lease meanwhile), record each
    /// result as it comes. Public so tests drive it.
    pub async fn run_round(&self) -> Result<RoundReport, RelayError> {
        let messages = self.claim().await?;
        let mut report = RoundReport {
            claimed: messages.len(),
            ..Default::default()
        };
        if messages.is_empty() {
            return Ok(report);
        }
        let ids: Vec<i64> = messages.iter().map(|(m, _)| m.id).collect();
        let sends = futures_util::stream::iter(messages)
            .map(|(message, retry_count)| self.send_and_record(message, retry_count))
            .buffer_unordered(SEND_CONCURRENCY)
            .collect::<Vec<_>>();
        let mut sends = std::pin::pin!(sends);
        let mut extend =
            tokio::time::interval((self.settings.lease / 3).max(Duration::from_millis(100)));
        extend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        extend.tick().await;
        let results = loop {
            tokio::select! {
                results = &mut sends => break results,
                _ = extend.tick() => {
                    if let Err(error) = self.extend_lease(&ids).await {
                        tracing::warn!(error = %crate::failure::error_chain(&error), "outbox lease not extended; another relay may send these rows again once it runs out");
                    }
                }
            }
        };
        let mut first_error = None;
        for result in results {
            match result {
                Ok(Fate::Sent) => report.sent += 1,
                Ok(Fate::Deferred) => report.deferred += 1,
                Ok(Fate::Failed(_)) => report.failed += 1,
                Ok(Fate::Retry(..)) => report.retried += 1,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        metrics::counter!("hookline_worker_outbox_sent_total").increment(report.sent as u64);
        metrics::counter!("hookline_worker_outbox_failed_total").increment(report.failed as u64);
        metrics::counter!("hookline_worker_outbox_retried_total").increment(report.retried as u64);
        match first_error {
            // A result that was not written: the row stays leased to us until the lease runs
            // out, then it is sent again (same Idempotency-Key).
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Sends one row and writes its result at once.
    async fn send_and_record(
        &self,
        message: OutboxMessage,
        retry_count: i32,
    ) -> Result<Fate, RelayError> {
        // The row's trace continues here: the ERP call is part of the webhook's trace.
        let span = tracing::info_span!(
            "outbox_send",
            outbox_id = message.id,
            attempt = retry_count + 1
        );
        if let Some(trace) = message.traceparent.as_deref() {
            hookline_telemetry::continue_trace(&span, trace);
        }
        let fate = match self.erp.send(&message).instrument(span).await {
            Ok(()) => Fate::Sent,
            Err(SendError::BreakerOpen(_)) => Fate::Deferred,
            Err(e @ SendError::Rejected { .. }) => Fate::Failed(e.to_string()),
            Err(SendError::Unavailable {
                detail,
                retry_after,
            }) => {
                let attempts = u32::try_from(retry_count + 1).unwrap_or(u32::MAX);
                match self
                    .policy
                    .next_delay_with_retry_after(attempts, retry_after)
                {
                    Some(delay) => Fate::Retry(detail, delay),
                    None => Fate::Failed(format!("gave up after {attempts} attempts: {detail}")),
                }
            }
        };
        let client = self.pool.get().await?;
        match &fate {
            Fate::Sent => {
                client
                    .execute(
                        "UPDATE outbox_events SET status = 'sent', sent_at = now(), last_error = NULL, locked_until = NULL, locked_by = NULL
                          WHERE id = $1 AND locked_by = $2",
                        &[&message.id, &self.relay_id],
                    )
                    .await?
            }
            Fate::Deferred => {
                client
                    .execute(
                        "UPDATE outbox_events SET locked_until = NULL, locked_by = NULL WHERE id = $1 AND locked_by = $2",
                        &[&message.id, &self.relay_id],
                    )
                    .await?
            }
            Fate::Failed(error) => {
                tracing::warn!(outbox_id = message.id, error, "outbox row failed for good");
                client
                    .execute(
                        "UPDATE outbox_events SET status = 'failed', retry_count = retry_count + 1, last_error = $3, locked_until = NULL, locked_by = NULL
                          WHERE id = $1 AND locked_by = $2",
                        &[&message.id, &self.relay_id, error],
                    )
                    .await?
            }
            Fate::Retry(error, delay) => {
                let delay_ms = delay.as_secs_f64() * 1000.0;
                client
                    .execute(
                        "UPDATE outbox_events SET retry_count = retry_count + 1, last_error = $3,
                            next_attempt_at = now() + $4 * interval '1 millisecond', locked_until = NULL, locked_by = NULL
                          WHERE id = $1 AND locked_by = $2",
                        &[&message.id, &self.relay_id, error, &delay_ms],
                    )
                    .await?
            }
        };
        Ok(fate)
    }

    /// Renews the lease of those of `ids` that are still ours and not done.
    async fn extend_lease(&self, ids: &[i64]) -> Result<(), RelayError> {
        let client = self.pool.get().await?;
        let lease_ms = self.settings.lease.as_secs_f64() * 1000.0;
        client
            .execute(
                "UPDATE outbox_events SET locked_until = now() + $3 * interval '1 millisecond'
                  WHERE id = ANY($1) AND locked_by = $2 AND status = 'pending'",
                &[&ids, &self.relay_id, &lease_ms],
            )
            .await?;
        Ok(())
    }

    async fn claim(&self) -> Result<Vec<(OutboxMessage, i32)>, RelayError> {
        let client = self.pool.get().await?;
        let lease_ms = self.settings.lease.as_secs_f64() * 1000.0;
        let rows = client
            .query(
                "UPDATE outbox_events o
                    SET locked_until = now() + $2 * interval '1 millisecond', locked_by = $3
                  WHERE o.id IN (
                        SELECT e.id FROM outbox_events e
                         WHERE e.status = 'pending' AND e.next_attempt_at <= now()
                           AND (e.locked_until IS NULL OR e.locked_until < now())
                           -- Only the oldest pending row of its item: in order, one at a time.
                           AND NOT EXISTS (
                                 SELECT 1 FROM outbox_events p
                                  WHERE p.aggregate_id = e.aggregate_id AND p.status = 'pending'
                                    AND p.id < e.id)
                         ORDER BY e.id
                         LIMIT $1
                           FOR UPDATE SKIP LOCKED)
                RETURNING o.id, o.aggregate_id, o.event_type, o.payload, o.traceparent, o.created_at, o.retry_count",
                &[&self.settings.batch_size, &lease_ms, &self.relay_id],
            )
            .await?;
        let mut messages: Vec<(OutboxMessage, i32)> = rows
            .iter()
            .map(|row| {
                (
                    OutboxMessage {
                        id: row.get(0),
                        aggregate_id: row.get(1),
                        event_type: row.get(2),
                        payload: row.get(3),
                        traceparent: row.get(4),
                        created_at: row.get(5),
                    },
                    row.get(6),
                )
            })
            .collect();
        messages.sort_by_key(|(m, _)| m.id);
        Ok(messages)
    }

    async fn update_gauges(&self) -> Result<(), RelayError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one("SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed') FROM outbox_events", &[])
            .await?;
        let (pending, failed): (i64, i64) = (row.get(0), row.get(1));
        metrics::gauge!("hookline_worker_outbox_pending").set(pending as f64);
        metrics::gauge!("hookline_worker_outbox_failed").set(failed as f64);
        Ok(())
    }
}

/// Keeps a `LISTEN` connection open and turns notifications into wake-ups; reconnects when it
/// drops (polling carries on meanwhile).
async fn listen(database_url: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        match tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let listening = async {
                    client
                        .batch_execute(&format!("LISTEN {OUTBOX_CHANNEL}"))
                        .await?;
                    Ok::<_, tokio_postgres::Error>(())
                };
                // The connection must be polled for LISTEN to complete, so drive both together.
                let mut listening = std::pin::pin!(listening);
                let mut listened = false;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        done = &mut listening, if !listened => {
                            listened = true;
                            if let Err(error) = done {
                                tracing::warn!(%error, "LISTEN failed");
                                break;
                            }
                        }
                        message = messages.next() => match message {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => wake.notify_one(),
                            Some(Ok(_)) => {}
                            Some(Err(error)) => {
                                tracing::warn!(%error, "outbox LISTEN connection lost");
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "outbox LISTEN connection failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
