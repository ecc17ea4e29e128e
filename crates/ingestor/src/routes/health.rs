//! `GET /healthz` (the process is up), `GET /readyz` (it can accept webhooks) and `GET /metrics`.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::startup::AppState;

/// Liveness: answers while the process runs. A load balancer should not use this for routing.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: 200 only while the broker connection is up with the topology declared, so a load
/// balancer sends webhooks only to replicas that can confirm them; 503 once stopping.
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.drain.is_stopping() {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({"status": "stopping"}))
    } else if state.publisher.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready", "broker": "connected"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({"status": "not_ready", "broker": "disconnected"}))
    }
}

/// Prometheus text exposition.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
