//! hookline's shared vocabulary: what every binary agrees on.
//!
//! # Layout
//!
//! One Shopify webhook travels `ingestor → RabbitMQ → worker`. The pieces both ends must agree on
//! live here, so that a change to the wire format or the broker topology is made in one place:
//!
//! - [`signature`]: Shopify's HMAC over the raw body. [`signature::Verifier`] is the only way to
//!   obtain a [`signature::Verified`] body, so nothing downstream can skip the check.
//! - [`topics`]: which Shopify topics we know, the domain (queue) each belongs to and its routing key.
//! - [`idempotency`]: the business key that makes a change to one resource happen once, shared by
//!   the webhook path and the reconciliation poller.
//! - [`envelope`]: `Envelope` v1, the one message format on the broker.
//! - [`topology`]: exchanges, queues and bindings, declared idempotently by every process at start-up.
//! - [`retry`]: capped exponential backoff with jitter and `Retry-After` handling.
//! - [`breaker`]: a circuit breaker per downstream, with an injectable clock.
//! - [`trace`]: W3C `traceparent` values minted at the edge.
//! - [`config`]: secrets that never print and environment parsing that names the variable.
//! - [`confirm`]: a confirm-mode channel several tasks can publish on without mixing up confirms.
//! - [`shops`]: the shops file, for several shops in one deployment.

pub mod breaker;
pub mod config;
pub mod confirm;
pub mod envelope;
pub mod idempotency;
pub mod retry;
pub mod shops;
pub mod signature;
pub mod topics;
pub mod topology;
pub mod trace;

pub use envelope::{Envelope, EnvelopeError, Source, WebhookHeaders};
pub use idempotency::{IdempotencyKey, KeyError};
pub use signature::{Verified, Verifier};
pub use topics::{Domain, TopicSpec};
