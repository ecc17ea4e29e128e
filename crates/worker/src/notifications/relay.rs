//! The notification relay: sends `notification_outbox` rows through sevDesk, each at most once.
//!
//! The patterns of the ERP relay ([`crate::outbox`]): a round claims due rows with
//! `FOR UPDATE SKIP LOCKED` and a lease in one short statement, works on them **after** that
//! statement committed (no HTTP inside a transaction), and writes each row's result as soon as it
//! is known, only while the lease is still ours. Messages have no order between them, so any due
//! row may go.
//!
//! Per row:
//!
//! 1. **Read the invoice** (`GET /Invoice/{id}`). If sevDesk shows it e-mailed (open, `sendType`
//!    `VM`), the row is recorded `sent` (`found_sent`) without sending. The read also gives the
//!    invoice number for the template.
//! 2. **Commit `attempt_started_at`**, then `sendViaEmail`.
//! 3. **Record** the answer: 2xx → `sent`, and the order moves to `invoice_sent` in the same
//!    transaction; a refusal (4xx but 408/429) → `failed` with sevDesk's reason, nothing was sent;
//!    429 → retried, nothing was sent; a timeout, dropped connection or 5xx → **outcome unknown**:
//!    `attempt_started_at` stays, and the row is not claimed again before the settle time has
//!    passed since it (nor is a row whose worker died mid-send), so step 1 then sees what sevDesk
//!    committed. An open sevDesk breaker defers the row without using up an attempt.
//!
//! Attempts follow [`RetryPolicy`] (`HOOKLINE_NOTIFY_MAX_ATTEMPTS`); out of attempts, the row is
//! `failed` with its last reason, and `hookctl notifications retry ID` makes it due again (still
//! verifying first).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use hookline_core::retry::RetryPolicy;
use rust_decimal::Decimal;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::template::{Fields, amount_text};
use super::{Kind, NotifySettings};
use crate::books::Books;
use crate::error::HandlerError;
use crate::outbox::RelayError;
use crate::sevdesk::Mail;

/// Rows claimed per round.
const BATCH: i64 = 20;
/// Rows worked on at once.
const CONCURRENCY: usize = 4;

/// How one round went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundReport {
    /// Rows claimed.
    pub claimed: usize,
    /// Sent now.
    pub sent: usize,
    /// Found sent in sevDesk, recorded without sending.
    pub found_sent: usize,
    /// Scheduled for a later attempt.
    pub retried: usize,
    /// Failed for good.
    pub failed: usize,
    /// Not attempted (breaker open).
    pub deferred: usize,
}

/// A claimed row.
struct Claimed {
    id: i64,
    shop: String,
    order_id: i64,
    invoice_id: String,
    kind: Kind,
    recipient: String,
    payload: Value,
    attempts: i32,
    traceparent: Option<String>,
    unknown_since_before: bool,
}

enum Fate {
    /// `sent`, or `found_sent`.
    Sent(&'static str),
    /// Try again after the delay; `unknown` keeps `attempt_started_at`.
    Retry {
        reason: String,
        delay: Duration,
        unknown: bool,
    },
    /// Failed for good; `unknown` keeps `attempt_started_at` (a retry verifies first).
    Failed { reason: String, unknown: bool },
    /// Released untouched.
    Deferred,
}

/// The relay.
pub struct Relay {
    pool: Pool,
    books: Arc<Books>,
    settings: NotifySettings,
    settle: Duration,
    lease: Duration,
    policy: RetryPolicy,
    relay_id: String,
}

impl Relay {
    /// A relay over `pool` sending through each row's shop's account of `books`; `settle` is `HOOKLINE_SEVDESK_SETTLE_SECS`
    /// and `request_timeout` sevDesk's per-request timeout (the lease covers a read and a send).
    pub fn new(
        pool: Pool,
        books: Arc<Books>,
        settings: NotifySettings,
        settle: Duration,
        request_timeout: Duration,
    ) -> Self {
        let policy = RetryPolicy {
            max_attempts: settings.max_attempts.max(1),
            ..RetryPolicy::default()
        };
        Self {
            pool,
            books,
            settings,
            settle,
            lease: (request_timeout * 3).max(Duration::from_secs(10)),
            policy,
            relay_id: format!("notify-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Runs rounds until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_gauges = tokio::time::Instant::now() - Duration::from_secs(60);
        loop {
            let busy = match self.run_round().await {
                Ok(report) => report.claimed as i64 == BATCH && report.deferred == 0,
                Err(error) => {
                    tracing::warn!(error = %crate::failure::error_chain(&error), "notification round failed");
                    false
                }
            };
            if last_gauges.elapsed() >= Duration::from_secs(5) {
                last_gauges = tokio::time::Instant::now();
                if let Err(error) = self.update_gauges().await {
                    tracing::debug!(%error, "notification gauges not updated");
                }
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    /// One round: claim due rows, work on each, record each result. Public so tests drive it.
    pub async fn run_round(&self) -> Result<RoundReport, RelayError> {
        let claimed = self.claim().await?;
        let mut report = RoundReport {
            claimed: claimed.len(),
            ..RoundReport::default()
        };
        let results: Vec<Result<Fate, RelayError>> = futures_util::stream::iter(claimed)
            .map(|row| self.work(row))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(Fate::Sent("found_sent")) => report.found_sent += 1,
                Ok(Fate::Sent(_)) => report.sent += 1,
                Ok(Fate::Retry { .. }) => report.retried += 1,
                Ok(Fate::Failed { .. }) => report.failed += 1,
                Ok(Fate::Deferred) => report.deferred += 1,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        metrics::counter!("hookline_worker_notifications_sent_total", "outcome" => "sent")
            .increment(report.sent as u64);
        metrics::counter!("hookline_worker_notifications_sent_total", "outcome" => "found_sent")
            .increment(report.found_sent as u64);
        metrics::counter!("hookline_worker_notifications_retried_total")
            .increment(report.retried as u64);
        metrics::counter!("hookline_worker_notifications_failed_total")
            .increment(report.failed as u64);
        match first_error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    async fn claim(&self) -> Result<Vec<Claimed>, RelayError> {
        let client = self.pool.get().await?;
        let lease_ms = self.lease.as_secs_f64() * 1000.0;
        let settle_ms = self.settle.as_secs_f64() * 1000.0;
        let rows = client
            .query(
                "UPDATE notification_outbox n
                    SET locked_until = now() + $2 * interval '1 millisecond', locked_by = $3
                  WHERE n.id IN (
                        SELECT id FROM notification_outbox
                         WHERE status = 'pending' AND next_attempt_at <= now()
                           AND (locked_until IS NULL OR locked_until < now())
                           -- An unknown outcome settles before sevDesk is asked about it.
                           AND (attempt_started_at IS NULL
                                OR attempt_started_at + $4 * interval '1 millisecond' <= now())
                         ORDER BY id
                         LIMIT $1
                           FOR UPDATE SKIP LOCKED)
                RETURNING n.id, n.shop_domain, n.order_id, n.invoice_id, n.kind, n.recipient, n.payload, n.attempts, n.traceparent, n.attempt_started_at IS NOT NULL",
                &[&BATCH, &lease_ms, &self.relay_id, &settle_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Claimed {
                id: r.get(0),
                shop: r.get(1),
                order_id: r.get(2),
                invoice_id: r.get(3),
                kind: Kind::parse(r.get(4)),
                recipient: r.get::<_, Option<String>>(5).unwrap_or_default(),
                payload: r.get(6),
                attempts: r.get(7),
                traceparent: r.get(8),
                unknown_since_before: r.get(9),
            })
            .collect())
    }

    /// Verifies, sends and records one row.
    async fn work(&self, row: Claimed) -> Result<Fate, RelayError> {
        let span = tracing::info_span!(
            "notification_send",
            notification_id = row.id,
            invoice_id = %row.invoice_id,
            attempt = row.attempts + 1,
            after_unknown_outcome = row.unknown_since_before,
        );
        if let Some(trace) = row.traceparent.as_deref() {
            hookline_telemetry::continue_trace(&span, trace);
        }
        let fate = self.decide(&row).instrument(span).await?;
        self.record(&row, &fate).await?;
        Ok(fate)
    }

    async fn decide(&self, row: &Claimed) -> Result<Fate, RelayError> {
        let trace = row.traceparent.as_deref();
        // The shop's own account; a shop that lost it (the shops file changed) sends nothing.
        let sevdesk = match self.books.for_shop(&row.shop) {
            Ok(books) => &books.sevdesk,
            Err(why) => {
                return Ok(Fate::Failed {
                    reason: why.to_string(),
                    unknown: row.unknown_since_before,
                });
            }
        };
        // 1. What sevDesk recorded: an invoice it already e-mailed is not e-mailed again.
        let invoice = match sevdesk.get_invoice(&row.invoice_id, trace).await {
            Ok(invoice) => invoice,
            Err(error) => return Ok(self.after_error(row, &error, false)),
        };
        if invoice.mailed() {
            tracing::info!(
                send_date = invoice.send_date.as_deref().unwrap_or("-"),
                "sevDesk shows the invoice e-mailed; recorded without sending"
            );
            return Ok(Fate::Sent("found_sent"));
        }
        let text = |key: &str| row.payload[key].as_str().unwrap_or_default().to_owned();
        let amount: Decimal = text("amount").parse().unwrap_or_default();
        let fields = Fields {
            order_name: text("order_name"),
            invoice_number: invoice.number.clone().unwrap_or_else(|| invoice.id.clone()),
            amount: amount_text(amount, &text("currency")),
            customer_name: text("customer_name"),
            bank_details: self.settings.bank_details.clone(),
        };
        let template = self.settings.template(row.kind);
        let mail = Mail {
            to: row.recipient.clone(),
            subject: template.subject.render(&fields),
            text: template.text.render(&fields),
            copy: self.settings.copy,
            bcc: None,
        };
        // 2. Committed before the call: if its answer is lost, the next claim settles first.
        {
            let client = self.pool.get().await?;
            let still_ours = client
                .execute(
                    "UPDATE notification_outbox SET attempt_started_at = now() WHERE id = $1 AND locked_by = $2",
                    &[&row.id, &self.relay_id],
                )
                .await?;
            if still_ours == 0 {
                return Ok(Fate::Deferred);
            }
        }
        match sevdesk.send_via_email(&row.invoice_id, &mail, trace).await {
            Ok(()) => Ok(Fate::Sent("sent")),
            Err(error) => Ok(self.after_error(row, &error, true)),
        }
    }

    /// What an error means for the row; `sending` says whether it came from the send itself.
    fn after_error(&self, row: &Claimed, error: &HandlerError, sending: bool) -> Fate {
        let reason = crate::failure::error_chain(error);
        // Whether this call may have changed sevDesk: a send that timed out, dropped or got a
        // 5xx may have gone out; a 429 or another refusal did not. A failed read changes
        // nothing: what was unknown before stays unknown. A send only follows a read that found
        // the invoice not e-mailed, which settles any earlier unknown outcome.
        let (this_unknown, refused) = match error {
            HandlerError::BreakerOpen(_) => return Fate::Deferred,
            HandlerError::Downstream { status, .. } if *status == 429 => (false, false),
            HandlerError::Downstream { status, .. } if *status == 408 || *status >= 500 => {
                (true, false)
            }
            HandlerError::Downstream { .. } => (false, true),
            _ => (true, false),
        };
        let unknown = if sending {
            this_unknown
        } else {
            row.unknown_since_before
        };
        if refused {
            return Fate::Failed {
                reason: format!("sevDesk refused: {reason}"),
                unknown,
            };
        }
        let retry_after = match error {
            HandlerError::Downstream { retry_after, .. } => *retry_after,
            _ => None,
        };
        let attempts = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
        match self
            .policy
            .next_delay_with_retry_after(attempts, retry_after)
        {
            Some(delay) => Fate::Retry {
                reason,
                delay,
                unknown,
            },
            None => Fate::Failed {
                reason: format!("gave up after {attempts} attempts: {reason}"),
                unknown,
            },
        }
    }

    async fn record(&self, row: &Claimed, fate: &Fate) -> Result<(), RelayError> {
        let mut client = self.pool.get().await?;
        match fate {
            Fate::Sent(outcome) => {
                // One transaction: the message is sent and the order's invoice is open.
                let tx = client.transaction().await?;
                let ours = tx
                    .execute(
                        "UPDATE notification_outbox SET status = 'sent', outcome = $3, sent_at = now(), attempt_started_at = NULL,
                                locked_until = NULL, locked_by = NULL
                          WHERE id = $1 AND locked_by = $2",
                        &[&row.id, &self.relay_id, outcome],
                    )
                    .await?;
                if ours == 1 {
                    tx.execute(
                        "UPDATE order_sync SET state = 'invoice_sent', pending_call = NULL, pending_since = NULL, updated_at = now()
                          WHERE shop_domain = $1 AND order_id = $2 AND invoice_id = $3 AND state = 'invoice_mailing'",
                        &[&row.shop, &row.order_id, &row.invoice_id],
                    )
                    .await?;
                }
                tx.commit().await?;
                tracing::info!(notification_id = row.id, outcome, "notification sent");
            }
            Fate::Deferred => {
                client
                    .execute(
                        "UPDATE notification_outbox SET locked_until = NULL, locked_by = NULL WHERE id = $1 AND locked_by = $2",
                        &[&row.id, &self.relay_id],
                    )
                    .await?;
            }
            Fate::Retry {
                reason,
                delay,
                unknown,
            } => {
                let delay_ms = delay.as_secs_f64() * 1000.0;
                client
                    .execute(
                        "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $3,
                                next_attempt_at = now() + $4 * interval '1 millisecond',
                                attempt_started_at = CASE WHEN $5 THEN attempt_started_at END,
                                locked_until = NULL, locked_by = NULL
                          WHERE id = $1 AND locked_by = $2",
                        &[&row.id, &self.relay_id, reason, &delay_ms, unknown],
                    )
                    .await?;
            }
            Fate::Failed { reason, unknown } => {
                tracing::warn!(
                    notification_id = row.id,
                    reason,
                    "notification failed for good"
                );
                client
                    .execute(
                        "UPDATE notification_outbox SET status = 'failed', attempts = attempts + 1, last_error = $3,
                                attempt_started_at = CASE WHEN $4 THEN attempt_started_at END,
                                locked_until = NULL, locked_by = NULL
                          WHERE id = $1 AND locked_by = $2",
                        &[&row.id, &self.relay_id, reason, unknown],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn update_gauges(&self) -> Result<(), RelayError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'pending'),
                        count(*) FILTER (WHERE status = 'failed'),
                        coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending'))::float8, 0)
                   FROM notification_outbox",
                &[],
            )
            .await?;
        let (pending, failed, oldest): (i64, i64, f64) = (row.get(0), row.get(1), row.get(2));
        metrics::gauge!("hookline_worker_notifications_pending").set(pending as f64);
        metrics::gauge!("hookline_worker_notifications_failed").set(failed as f64);
        metrics::gauge!("hookline_worker_notifications_oldest_pending_seconds").set(oldest);
        Ok(())
    }
}
