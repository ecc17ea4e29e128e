//! Automatic re-drive: when a downstream's circuit breaker closes again after being open, the
//! dead letters that ran out of attempts against it are replayed, at a bounded rate.
//!
//! Off by default (`HOOKLINE_REDRIVE_RATE=0`): replaying is an operator's decision in most
//! setups. Turned on, an outage of sevDesk long enough to exhaust some orders' attempts heals by
//! itself once sevDesk answers again: the breaker's recovery (it closes only after successful
//! probes) is the signal that the cause is gone. Only dead letters with reason
//! `retries_exhausted` whose last error names the downstream are replayed — a `downstream_rejected`
//! or `amount_mismatch` would only fail again. Replays go through `hookctl`'s replay, so each dead
//! letter is removed only after its republish is confirmed, and idempotency absorbs a duplicate.

use std::time::Duration;

use hookline_core::Domain;
use hookline_core::breaker::{BreakerState, CircuitBreaker};
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

/// Watches one downstream's breaker and re-drives its domain's dead letters.
pub struct Redrive {
    /// The downstream's breaker (a clone shares its state).
    pub breaker: CircuitBreaker,
    /// The domain whose dead-letter queue holds the downstream's failures.
    pub domain: Domain,
    /// The text the dead letters' last error contains, e.g. `sevdesk`.
    pub downstream: &'static str,
    /// Replays per second.
    pub rate: f64,
    /// The broker.
    pub amqp_url: String,
}

impl Redrive {
    /// Checks the breaker every `every` until `shutdown`; each time it is found closed after
    /// having changed state (it was open in between, however briefly), replays the matching
    /// dead letters.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        let mut seen_closed_at = self.breaker.changes();
        loop {
            let changes = self.breaker.changes();
            match self.breaker.state() {
                BreakerState::Closed if changes != seen_closed_at => {
                    seen_closed_at = changes;
                    match self.replay().await {
                        Ok(n) => tracing::info!(
                            downstream = self.downstream,
                            replayed = n,
                            "breaker closed again: dead letters re-driven"
                        ),
                        Err(error) => tracing::warn!(
                            downstream = self.downstream,
                            error = %crate::failure::error_chain(&*error),
                            "re-drive failed; the dead letters stay for an operator"
                        ),
                    }
                }
                _ => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn replay(&self) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        let connection = Connection::connect(
            &self.amqp_url,
            ConnectionProperties::default().with_connection_name("hookline-redrive".into()),
        )
        .await?;
        let filter = hookline_broker::dlq::Filter {
            domain: Some(self.domain),
            reason: Some("retries_exhausted".into()),
            error_contains: Some(self.downstream.into()),
            ..Default::default()
        };
        let report =
            hookline_broker::dlq::replay(&connection, &filter, Some(self.rate), false).await;
        let _ = connection.close(200, "re-driven".into()).await;
        Ok(report?.replayed.len())
    }
}
