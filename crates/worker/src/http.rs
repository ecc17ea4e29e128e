//! `GET /healthz`, `GET /readyz` and `GET /metrics` on `HOOKLINE_WORKER_HTTP_ADDR`.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, get, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

/// What the endpoints report on.
pub struct Health {
    /// Consumers are attached to the broker.
    pub consuming: AtomicBool,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

impl Health {
    /// Not yet consuming.
    pub fn new(metrics: PrometheusHandle) -> Arc<Self> {
        Arc::new(Self {
            consuming: AtomicBool::new(false),
            metrics,
        })
    }

    /// Records whether consumers are attached.
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
        metrics::gauge!("hookline_worker_consuming").set(if consuming { 1.0 } else { 0.0 });
    }
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/readyz")]
async fn readyz(health: web::Data<Arc<Health>>) -> HttpResponse {
    if health.consuming.load(Ordering::Relaxed) {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_consuming"}))
    }
}

#[get("/metrics")]
async fn metrics_route(health: web::Data<Arc<Health>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(health.metrics.render())
}

/// Builds the server on `listener` (one worker thread: these endpoints are cheap).
pub fn server(listener: TcpListener, health: Arc<Health>) -> std::io::Result<Server> {
    let data = web::Data::new(health);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .service(healthz)
            .service(readyz)
            .service(metrics_route)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}
