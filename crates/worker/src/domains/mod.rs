//! The effects, one module per domain.

pub mod compliance;
pub mod inventory;
pub mod orders;

use std::future::Future;
use std::pin::Pin;

use hookline_core::Envelope;

use crate::error::HandlerError;

/// What a handler did with an envelope it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The effect is committed. `steps` says what was done, for logs.
    Applied {
        /// What happened, in order.
        steps: Vec<&'static str>,
    },
    /// The durable guard says this key was applied before: nothing was changed.
    Duplicate,
    /// The event is valid but changes nothing (older than what we hold, or a topic this
    /// domain receives but has no effect for). It is recorded so it is not redone.
    Skipped {
        /// Why.
        reason: &'static str,
    },
}

/// A boxed future, so handlers can sit behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The effect of one domain. Implementations own their pools and clients (the bulkhead's), so a
/// slow downstream can only use up its own domain's resources.
pub trait DomainHandler: Send + Sync + 'static {
    /// Applies `envelope`'s effect exactly once: the idempotency key must be recorded in the same
    /// transaction as the effect ([`crate::idempotency::record`]), and no HTTP
    /// call may happen inside an open transaction.
    fn handle<'a>(&'a self, envelope: &'a Envelope)
    -> BoxFuture<'a, Result<Outcome, HandlerError>>;
}
