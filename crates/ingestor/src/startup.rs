//! Wiring: settings → verifier, publisher and HTTP server.

use std::net::TcpListener;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use hookline_core::Verifier;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

use crate::publish::{Publisher, PublisherSettings};
use crate::routes::{health, webhook};
use crate::settings::Settings;
use hookline_telemetry as telemetry;

/// What every request handler shares.
pub struct AppState {
    /// Checks signatures against every configured secret.
    pub verifier: Verifier,
    /// Publishes with confirms over a self-healing connection.
    pub publisher: Publisher,
    /// Bodies above this are refused with 413.
    pub max_body_bytes: usize,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// A built ingestor: bound to its port, broker connection under way, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    publisher: Publisher,
    supervisor: JoinHandle<()>,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and starts connecting to the broker.
    /// Must be called inside a Tokio runtime.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let verifier = Verifier::new(
            settings
                .shopify_secrets
                .iter()
                .map(|s| s.expose().as_bytes()),
        )
        .context("invalid HOOKLINE_SHOPIFY_SECRETS")?;
        let listener = TcpListener::bind(&settings.http_addr)
            .with_context(|| format!("cannot bind HOOKLINE_HTTP_ADDR={}", settings.http_addr))?;
        let port = listener.local_addr()?.port();
        let (publisher, supervisor) = Publisher::start(PublisherSettings {
            amqp_url: settings.amqp_url.expose().to_owned(),
            connection_name: format!("hookline-ingestor@{}:{port}", hostname()),
            channels: settings.amqp_channels,
            confirm_timeout: settings.confirm_timeout,
            topology: settings.topology,
        });
        let state = web::Data::new(AppState {
            verifier,
            publisher: publisher.clone(),
            max_body_bytes: settings.max_body_bytes,
            metrics: telemetry::metrics_handle(),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .service(webhook::receive)
                .service(health::healthz)
                .service(health::readyz)
                .service(health::metrics)
        })
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .listen(listener)?;
        if let Some(workers) = settings.http_workers {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
            publisher,
            supervisor,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully (tests; `main` relies on SIGTERM/SIGINT, which
    /// actix handles the same way: stop accepting, finish in-flight requests).
    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped, then closes the broker connection. In-flight requests
    /// finish first, with their confirms, within the shutdown timeout.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.publisher.close().await;
        let _ = self.supervisor.await;
        tracing::info!("ingestor stopped");
        served
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
