//! Wiring: settings → verifier, publisher and HTTP server.

use std::future::ready;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{ConnectionType, HttpService, KeepAlive, error::DispatchError};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::{AppConfig, Server, ServerHandle, Service};
use actix_web::rt::net::TcpStream;
use actix_web::{App, web};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

use crate::connection::{self, Watchdog};
use crate::drain::Drain;
use crate::publish::{Publisher, PublisherSettings};
use crate::routes::{health, webhook};
use crate::settings::Settings;
use crate::verify::Secrets;
use hookline_telemetry as telemetry;

/// What every request handler shares.
pub struct AppState {
    /// Checks signatures against the configured secrets of the shop a request names.
    pub secrets: Secrets,
    /// Publishes with confirms over a self-healing connection.
    pub publisher: Publisher,
    /// Bodies above this are refused with 413.
    pub max_body_bytes: usize,
    /// A body must arrive within this time once the head is in, or 408.
    pub client_timeout: Duration,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// In-flight requests and whether the ingestor is stopping (`/readyz` fails then).
    pub drain: Arc<Drain>,
}

/// A built ingestor: bound to its port, broker connection under way, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    publisher: Publisher,
    supervisor: JoinHandle<()>,
    stopper: Stopper,
}

/// Stops the ingestor gracefully (see [`crate::drain`]); cheap to clone.
#[derive(Clone)]
pub struct Stopper {
    drain: Arc<Drain>,
    server: ServerHandle,
    timeout: Duration,
}

impl Stopper {
    /// Fails `/readyz`, stops accepting, closes connections as they go idle, waits until no
    /// request is in flight and no connection is open (up to `HOOKLINE_SHUTDOWN_TIMEOUT_SECS`),
    /// then stops the server. Returns when it has stopped.
    pub async fn stop(&self) {
        if self.drain.is_stopping() {
            // Stopping already (a second signal): wait for that stop.
            self.drain.settled().await;
            return;
        }
        self.drain.begin();
        tracing::info!(
            in_flight = self.drain.in_flight(),
            connections = self.drain.connections(),
            "stopping: not ready, not accepting; waiting for in-flight requests"
        );
        self.server.pause().await;
        if tokio::time::timeout(self.timeout, self.drain.settled())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.drain.in_flight(),
                connections = self.drain.connections(),
                "shutdown timeout reached; dropping what is left"
            );
        }
        self.server.stop(false).await;
    }

    /// Waits for SIGTERM or SIGINT (Ctrl-C), then stops gracefully. Both mean "drain": an
    /// orchestrator sends SIGTERM, a person at a terminal SIGINT.
    pub async fn stop_on_signals(self) -> std::io::Result<()> {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            interrupted = tokio::signal::ctrl_c() => { interrupted?; "SIGINT" }
        };
        tracing::info!(signal, "stop requested");
        self.stop().await;
        Ok(())
    }
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and starts connecting to the broker.
    /// Must be called inside a Tokio runtime.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let secrets = Secrets::new(&settings.shopify_secrets, settings.shops.as_deref())
            .context("invalid HOOKLINE_SHOPIFY_SECRETS or HOOKLINE_SHOPS")?;
        let listener = TcpListener::bind(&settings.http_addr)
            .with_context(|| format!("cannot bind HOOKLINE_HTTP_ADDR={}", settings.http_addr))?;
        // The standard library listens with a backlog of 128; a burst of webhooks beyond it
        // waits for SYN retransmits (a second or more). Listening again sets the backlog asked for.
        socket2::SockRef::from(&listener)
            .listen(i32::try_from(settings.http_backlog).unwrap_or(i32::MAX))
            .context("cannot set HOOKLINE_HTTP_BACKLOG")?;
        let local_addr = listener.local_addr()?;
        let port = local_addr.port();
        let (publisher, supervisor) = Publisher::start(PublisherSettings {
            amqp_url: settings.amqp_url.expose().to_owned(),
            connection_name: format!("hookline-ingestor@{}:{port}", hostname()),
            channels: settings.amqp_channels,
            confirm_timeout: settings.confirm_timeout,
            topology: settings.topology,
        });
        let drain = Drain::new();
        let state = web::Data::new(AppState {
            secrets,
            publisher: publisher.clone(),
            max_body_bytes: settings.max_body_bytes,
            client_timeout: settings.http_client_timeout,
            metrics: telemetry::metrics_handle(),
            drain: drain.clone(),
        });
        let keep_alive = if settings.http_keep_alive.is_zero() {
            KeepAlive::Disabled
        } else {
            KeepAlive::Timeout(settings.http_keep_alive)
        };
        let client_timeout = settings.http_client_timeout;
        let silence_limit = connection::silence_limit(
            settings.http_keep_alive,
            client_timeout,
            settings.confirm_timeout,
        );
        // actix counts connections per worker; the setting is per process.
        let workers = settings.http_workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        // What `HttpServer` does, but with each socket wrapped in a `Watchdog`: `HttpServer`
        // cannot wrap its sockets, and actix alone lets slow clients hold connections for ever.
        let watched = drain.clone();
        // Signals are ours (`Stopper::stop_on_signals`): actix-server's stop drops in-flight
        // requests (see `crate::drain`), and its SIGINT does not even try to drain.
        let server = Server::build()
            .workers(workers)
            .max_concurrent_connections(settings.http_max_connections.div_ceil(workers))
            .disable_signals()
            .shutdown_timeout(settings.shutdown_timeout.as_secs())
            .listen("hookline-ingestor", listener, move || {
                let counting = watched.clone();
                let watched = watched.clone();
                let app = App::new()
                    .app_data(state.clone())
                    // Counts each request until its answer is ready; while stopping, the answer
                    // closes its connection.
                    .wrap_fn(move |request, service| {
                        let counted = counting.request();
                        let drain = counting.clone();
                        let answer = service.call(request);
                        async move {
                            let mut response = answer.await?;
                            if drain.is_stopping() {
                                response
                                    .response_mut()
                                    .head_mut()
                                    .set_connection_type(ConnectionType::Close);
                            }
                            drop(counted);
                            Ok(response)
                        }
                    })
                    .service(webhook::service())
                    .service(health::healthz)
                    .service(health::readyz)
                    .service(health::metrics)
                    .into_factory()
                    .map_err(|e: actix_web::Error| e.error_response());
                fn_service(move |io: TcpStream| {
                    let peer = io.peer_addr().ok();
                    ready(Ok::<_, DispatchError>((
                        Watchdog::new(io, silence_limit).drained_by(&watched),
                        peer,
                    )))
                })
                .and_then(
                    HttpService::build()
                        .keep_alive(keep_alive)
                        .client_request_timeout(client_timeout)
                        // `HttpServer`'s default: how long a closing client gets to read the end.
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .local_addr(local_addr)
                        // AppConfig only serves URL generation, which no route uses.
                        .h1(map_config(app, |_| AppConfig::default())),
                )
            })?;
        let server = server.run();
        let stopper = Stopper {
            drain,
            server: server.handle(),
            timeout: settings.shutdown_timeout,
        };
        Ok(Self {
            port,
            server,
            publisher,
            supervisor,
            stopper,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the ingestor gracefully: `main` calls it on SIGTERM/SIGINT
    /// ([`Stopper::stop_on_signals`]), tests directly.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
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
