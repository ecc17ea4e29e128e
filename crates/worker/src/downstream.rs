//! What every outbound HTTP client of the worker shares: its own connection pool with timeouts,
//! reading `Retry-After`, and reporting its breaker's state.

use std::time::{Duration, SystemTime};

use hookline_core::breaker::CircuitBreaker;
use hookline_core::retry::parse_retry_after;

/// A client with its own connection pool: one per downstream, so a slow one cannot exhaust the
/// connections of another. Connecting may take at most `connect_cap` of the request `timeout`.
pub fn http_client(
    timeout: Duration,
    connect_cap: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(connect_cap))
        .build()
}

/// The response's `Retry-After` (seconds or HTTP date), if any.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// Counts one call that reached the downstream (not one an open breaker refused):
/// `hookline_worker_downstream_requests_total{downstream, outcome="ok"|"error"}`, where an error
/// means unavailable (transport error, 408, 429, 5xx). The error-rate alert divides the two.
pub fn count_call(downstream: &'static str, unavailable: bool) {
    let outcome = if unavailable { "error" } else { "ok" };
    metrics::counter!("hookline_worker_downstream_requests_total", "downstream" => downstream, "outcome" => outcome).increment(1);
}

/// `hookline_worker_breaker_state{downstream}`: 0 closed, 1 open, 2 half-open.
pub fn report_breaker(downstream: &'static str, breaker: &CircuitBreaker) {
    metrics::gauge!("hookline_worker_breaker_state", "downstream" => downstream)
        .set(f64::from(breaker.state().gauge_value()));
}

/// The `traceparent` header of an outbound call: the current span's own when traces are
/// exported (the downstream's span becomes its child), else a child of the event's `trace`, so
/// the trace id reaches the downstream either way. `None` only when there is no trace at all.
pub fn outgoing_traceparent(trace: Option<&str>) -> Option<String> {
    hookline_telemetry::traceparent_of(&tracing::Span::current()).or_else(|| {
        trace
            .and_then(hookline_core::trace::TraceParent::parse)
            .map(|parent| parent.child().to_string())
    })
}
