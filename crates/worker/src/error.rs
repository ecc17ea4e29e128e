//! Typed handler errors and what each means for the message: retry later or dead-letter.
//!
//! The classifier matches on error kinds, never on message text, so a reworded error cannot
//! change what happens to a message.

use std::time::Duration;

use hookline_core::breaker::BreakerOpen;

/// Why handling an envelope failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The message body is not an envelope this build reads.
    #[error("invalid envelope: {0}")]
    Envelope(#[from] hookline_core::EnvelopeError),
    /// The payload does not match the topic's strict schema.
    #[error(
        "payload of {topic} (api_version {api_version}) does not match its schema at `{path}`: {message}"
    )]
    Schema {
        /// The topic.
        topic: String,
        /// Field path, e.g. `line_items[0].price`.
        path: String,
        /// `X-Shopify-API-Version` the payload was sent with.
        api_version: String,
        /// What serde said.
        message: String,
    },
    /// The topic reached a domain that has no handler for it.
    #[error("topic {0} is not handled by this domain")]
    UnknownTopic(String),
    /// The order's total cannot be reproduced as an invoice.
    #[error(transparent)]
    AmountMismatch(#[from] crate::domains::orders::mapping::MappingError),
    /// A topic of this domain that hookline does not handle yet; dead-lettered so it can be
    /// replayed once it is, instead of being recorded as done.
    #[error("topic {0} is not supported yet")]
    Unsupported(String),
    /// Applying the event automatically could book money twice: a person decides (the dead
    /// letter says why; replay it once the books are right, or archive it).
    #[error("needs review: {0}")]
    NeedsReview(String),
    /// The payload does not belong to the envelope's headers: another shop's, or another
    /// topic's shape (a `customers/redact` body sent as `shop/redact`). Only the body is signed,
    /// so headers can be changed on the way; nothing is done, and a person looks at it.
    #[error("relabelled: {0}")]
    Relabelled(String),
    /// The event needs a document that does not exist yet (a refund of an order whose invoice is
    /// not booked yet): retried, and dead-lettered if it never appears.
    #[error("waiting for another step: {0}")]
    Waiting(String),
    /// A sevDesk call's outcome is unknown (it timed out, the connection dropped, or sevDesk
    /// answered 5xx) and the settle time has not passed: nothing is called again until sevDesk
    /// has had time to commit what it may have received. Uses up no attempt.
    #[error("outcome of {call} is unknown; settling for {retry_in:?} before verifying")]
    Settling {
        /// The call (`save_invoice`, `book`, `cancel`, …).
        call: String,
        /// Until the settle time has passed.
        retry_in: Duration,
    },
    /// The sevDesk account is not set up for booking (the message says what to fix).
    #[error("sevDesk account not usable: {0}")]
    Misconfigured(String),
    /// The shop has no sevDesk account (a shops file lists it without `[shop.sevdesk]`, or does
    /// not list it): nothing is booked; dead-lettered so it can be replayed once it has one.
    #[error("shop not configured: {0}")]
    ShopNotConfigured(String),
    /// Another delivery is working on the same order right now.
    #[error("another delivery is working on this order")]
    OrderBusy,
    /// The idempotency key is held by another delivery.
    #[error("idempotency key is being processed by another delivery")]
    KeyBusy {
        /// How long the other claim still lives, if known.
        retry_in: Option<Duration>,
    },
    /// The broker could not be used for a step of the effect (reading dead-letter queues).
    #[error("broker unavailable: {0}")]
    Broker(String),
    /// A database error.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// No database connection could be had from the pool.
    #[error("no database connection available")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A downstream answered with an error status.
    #[error("{downstream} answered {status}: {body}")]
    Downstream {
        /// Which downstream.
        downstream: &'static str,
        /// HTTP status.
        status: u16,
        /// Start of the response body, for the dead letter.
        body: String,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// A downstream could not be reached or did not answer in time.
    #[error("{downstream} unreachable")]
    Transport {
        /// Which downstream.
        downstream: &'static str,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The downstream's circuit breaker refused the call.
    #[error(transparent)]
    BreakerOpen(#[from] BreakerOpen),
    /// The handler panicked: a bug, not a passing condition.
    #[error("handler panicked: {0}")]
    Panicked(String),
    /// The handler took longer than allowed.
    #[error("handler timed out after {0:?}")]
    Timeout(Duration),
}

impl From<hookline_broker::dlq::DlqError> for HandlerError {
    fn from(e: hookline_broker::dlq::DlqError) -> Self {
        HandlerError::Broker(crate::failure::error_chain(&e))
    }
}

/// What to do with a message whose handling failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again later, through a wait queue.
    Retry {
        /// Short reason, for metrics and headers.
        reason: &'static str,
        /// The downstream's or the claim's own idea of when.
        retry_after: Option<Duration>,
        /// Whether this failure uses up one of the policy's attempts. Waiting for another
        /// delivery's claim, or for an open breaker, does not: nothing was tried.
        counts_as_attempt: bool,
    },
    /// Never going to work: dead-letter with this reason.
    DeadLetter {
        /// `x-hookline-reason`.
        reason: &'static str,
    },
}

impl HandlerError {
    /// Retryable: HTTP 408/429/5xx, timeouts, connection errors, database connection and
    /// serialisation errors, a busy key, an open breaker. Permanent: other HTTP 4xx, schema and
    /// envelope errors, unknown topics, database errors that say the data or statement is wrong.
    pub fn disposition(&self) -> Disposition {
        use Disposition::{DeadLetter, Retry};
        let retry = |reason, retry_after| Retry {
            reason,
            retry_after,
            counts_as_attempt: true,
        };
        match self {
            HandlerError::Envelope(hookline_core::EnvelopeError::UnsupportedVersion(_)) => {
                DeadLetter {
                    reason: "unsupported_schema_version",
                }
            }
            HandlerError::Envelope(_) => DeadLetter {
                reason: "invalid_envelope",
            },
            HandlerError::Schema { .. } => DeadLetter {
                reason: "schema_mismatch",
            },
            HandlerError::UnknownTopic(_) => DeadLetter {
                reason: "unknown_topic",
            },
            HandlerError::AmountMismatch(mapping) => DeadLetter {
                reason: mapping.reason(),
            },
            HandlerError::Settling { retry_in, .. } => Retry {
                reason: "outcome_unknown",
                retry_after: Some(*retry_in),
                counts_as_attempt: false,
            },
            HandlerError::Misconfigured(_) => retry("sevdesk_misconfigured", None),
            HandlerError::Panicked(_) => DeadLetter {
                reason: "handler_panicked",
            },
            HandlerError::Unsupported(_) => DeadLetter {
                reason: "not_supported",
            },
            HandlerError::NeedsReview(_) => DeadLetter {
                reason: "needs_review",
            },
            HandlerError::Relabelled(_) => DeadLetter {
                reason: "relabelled",
            },
            HandlerError::ShopNotConfigured(_) => DeadLetter {
                reason: "shop_not_configured",
            },
            HandlerError::Waiting(_) => retry("waiting_for_dependency", None),
            HandlerError::OrderBusy => Retry {
                reason: "order_busy",
                retry_after: Some(Duration::from_secs(1)),
                counts_as_attempt: false,
            },
            HandlerError::KeyBusy { retry_in } => Retry {
                reason: "key_busy",
                retry_after: *retry_in,
                counts_as_attempt: false,
            },
            HandlerError::Database(e) if database_error_is_transient(e) => {
                retry("database_unavailable", None)
            }
            HandlerError::Database(_) => DeadLetter {
                reason: "database_rejected",
            },
            HandlerError::Pool(_) => retry("database_unavailable", None),
            HandlerError::Broker(_) => retry("broker_unavailable", None),
            HandlerError::Downstream {
                status,
                retry_after,
                ..
            } if *status == 408 || *status == 429 || *status >= 500 => {
                retry("downstream_unavailable", *retry_after)
            }
            HandlerError::Downstream { .. } => DeadLetter {
                reason: "downstream_rejected",
            },
            HandlerError::Transport { .. } => retry("downstream_unreachable", None),
            // Nothing was tried, so no attempt is used up: during a downstream outage messages
            // wait in the broker until the breaker lets calls through again, instead of running
            // out of attempts and filling the dead-letter queue.
            HandlerError::BreakerOpen(open) => Retry {
                reason: "breaker_open",
                retry_after: Some(open.retry_in),
                counts_as_attempt: false,
            },
            HandlerError::Timeout(_) => retry("timeout", None),
        }
    }
}

impl HandlerError {
    /// Whether the delivery could not have its turn because another delivery of the same order
    /// (`order_busy`) or idempotency key (`key_busy`) was being handled. A live holder ends within
    /// one handler timeout, so such waits are bounded (see `Bulkhead::busy_limit`): a delivery
    /// that keeps waiting is behind something that does not end, and is dead-lettered
    /// (`busy_too_long`) instead of circling through wait queues unseen. Breaker waits are not
    /// this: they end when the downstream recovers.
    pub fn waits_for_another_delivery(&self) -> bool {
        matches!(self, HandlerError::OrderBusy | HandlerError::KeyBusy { .. })
    }
}

/// Connection-level failures (no SQLSTATE: the socket broke), and the SQLSTATE classes that mean
/// "try again": serialisation failure and deadlock (40xxx), lock not available (55P03),
/// connection exceptions (08xxx), operator intervention such as a restart (57xxx), insufficient
/// resources (53xxx).
pub fn database_error_is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(state) => {
            let code = state.code();
            code.starts_with("40")
                || code.starts_with("08")
                || code.starts_with("57")
                || code.starts_with("53")
                || code == "55P03"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream(status: u16) -> HandlerError {
        HandlerError::Downstream {
            downstream: "erp",
            status,
            body: String::new(),
            retry_after: Some(Duration::from_secs(7)),
        }
    }

    #[test]
    fn http_statuses_are_classified() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(downstream(status).disposition(), Disposition::Retry { .. }),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 409, 422] {
            assert_eq!(
                downstream(status).disposition(),
                Disposition::DeadLetter {
                    reason: "downstream_rejected"
                },
                "{status}"
            );
        }
        assert_eq!(
            downstream(429).disposition(),
            Disposition::Retry {
                reason: "downstream_unavailable",
                retry_after: Some(Duration::from_secs(7)),
                counts_as_attempt: true
            }
        );
    }

    #[test]
    fn schema_and_envelope_errors_are_permanent_and_a_busy_key_costs_no_attempt() {
        let schema = HandlerError::Schema {
            topic: "t".into(),
            path: "p".into(),
            api_version: "v".into(),
            message: "m".into(),
        };
        assert_eq!(
            schema.disposition(),
            Disposition::DeadLetter {
                reason: "schema_mismatch"
            }
        );
        let version = HandlerError::Envelope(hookline_core::EnvelopeError::UnsupportedVersion(9));
        assert_eq!(
            version.disposition(),
            Disposition::DeadLetter {
                reason: "unsupported_schema_version"
            }
        );
        assert!(matches!(
            HandlerError::KeyBusy { retry_in: None }.disposition(),
            Disposition::Retry {
                counts_as_attempt: false,
                ..
            }
        ));
        assert!(HandlerError::OrderBusy.waits_for_another_delivery());
        assert!(!HandlerError::Timeout(Duration::from_secs(1)).waits_for_another_delivery());
        assert!(matches!(
            HandlerError::OrderBusy.disposition(),
            Disposition::Retry {
                counts_as_attempt: false,
                ..
            }
        ));
    }

    #[test]
    fn a_relabelled_payload_is_dead_lettered_at_once() {
        assert_eq!(
            HandlerError::Relabelled("x".into()).disposition(),
            Disposition::DeadLetter {
                reason: "relabelled"
            }
        );
    }

    #[test]
    fn an_open_breaker_waits_without_using_up_attempts() {
        let open = hookline_core::breaker::BreakerOpen {
            name: "sevdesk".into(),
            state: hookline_core::breaker::BreakerState::Open,
            retry_in: Duration::from_secs(42),
        };
        assert_eq!(
            HandlerError::BreakerOpen(open).disposition(),
            Disposition::Retry {
                reason: "breaker_open",
                retry_after: Some(Duration::from_secs(42)),
                counts_as_attempt: false
            }
        );
    }
}
