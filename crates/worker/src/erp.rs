//! The ERP endpoint the inventory outbox is relayed to.
//!
//! Wire format (hookline's own; an ERP adapter receives it): `POST <HOOKLINE_ERP_URL>` with
//! `Content-Type: application/json`, `Idempotency-Key: hookline-outbox-<id>` (the same on every
//! attempt of one row, so the ERP can drop repeats), `traceparent` continuing the webhook's trace,
//! and the body `{"outbox_id", "event_type", "aggregate_id", "created_at", "payload"}`.
//! Any 2xx is success; 408, 429 and 5xx are retried (honouring `Retry-After`); other statuses are
//! permanent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hookline_core::breaker::{BreakerOpen, CircuitBreaker};
use serde_json::json;

/// One outbox row to send.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// Row id.
    pub id: i64,
    /// E.g. `271878346596884015:24826418`.
    pub aggregate_id: String,
    /// E.g. `stock_level_changed`.
    pub event_type: String,
    /// The row's payload.
    pub payload: serde_json::Value,
    /// The trace of the webhook that caused it.
    pub traceparent: Option<String>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

/// Why a send did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The ERP refused the message for good (4xx other than 408/429).
    #[error("ERP rejected it with {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// Try again later.
    #[error("ERP unavailable: {detail}")]
    Unavailable {
        /// Status or transport error.
        detail: String,
        /// The ERP's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The breaker is open: nothing was sent.
    #[error(transparent)]
    BreakerOpen(#[from] BreakerOpen),
}

/// An HTTP client for the ERP, behind a circuit breaker.
#[derive(Clone)]
pub struct ErpClient {
    http: reqwest::Client,
    url: String,
    breaker: CircuitBreaker,
}

impl ErpClient {
    /// A client with its own connection pool and the given per-request timeout.
    pub fn new(
        url: &str,
        timeout: Duration,
        breaker: CircuitBreaker,
    ) -> Result<Self, reqwest::Error> {
        let http = crate::downstream::http_client(timeout, Duration::from_secs(2))?;
        Ok(Self {
            http,
            url: url.to_owned(),
            breaker,
        })
    }

    /// The breaker, for its state gauge.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Sends one row.
    pub async fn send(&self, message: &OutboxMessage) -> Result<(), SendError> {
        let permit = self.breaker.try_acquire()?;
        let mut request = self
            .http
            .post(&self.url)
            .header("idempotency-key", format!("hookline-outbox-{}", message.id))
            .json(&json!({
                "outbox_id": message.id,
                "event_type": message.event_type,
                "aggregate_id": message.aggregate_id,
                "created_at": message.created_at,
                "payload": message.payload,
            }));
        if let Some(traceparent) =
            crate::downstream::outgoing_traceparent(message.traceparent.as_deref())
        {
            request = request.header("traceparent", traceparent);
        }
        let result = match request.send().await {
            Err(error) => Err(SendError::Unavailable {
                detail: crate::failure::error_chain(&error),
                retry_after: None,
            }),
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = crate::downstream::retry_after(&response);
                let mut body = response.text().await.unwrap_or_default();
                crate::failure::truncate(&mut body, 300);
                if status == 408 || status == 429 || status >= 500 {
                    Err(SendError::Unavailable {
                        detail: format!("{status}: {body}"),
                        retry_after,
                    })
                } else {
                    Err(SendError::Rejected { status, body })
                }
            }
        };
        // A rejection is the ERP answering, i.e. healthy: only unavailability trips the breaker.
        match &result {
            Err(SendError::Unavailable { .. }) => permit.failure(),
            _ => permit.success(),
        }
        crate::downstream::count_call("erp", matches!(result, Err(SendError::Unavailable { .. })));
        crate::downstream::report_breaker("erp", &self.breaker);
        result
    }
}
