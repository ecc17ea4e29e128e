//! The publishing step: an envelope is accepted only once the broker has confirmed it.
//!
//! A [`Publisher`] owns one AMQP connection with a few confirm-mode channels. A supervisor task
//! (re)connects, declares the topology and swaps the live connection in; requests only ever read
//! the current one. When the broker goes away, requests fail fast with [`PublishError`] (the route
//! answers 503 and Shopify retries) while the supervisor reconnects with capped backoff — no
//! restart needed, and no request ever waits on a reconnect.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hookline_core::Envelope;
use hookline_core::confirm::ConfirmChannel;
use hookline_core::retry::RetryPolicy;
use hookline_core::topology::{self, EVENTS_EXCHANGE, TopologySettings};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Confirmation, Connection, ConnectionProperties, Event};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The `app_id` property of every message this process publishes.
pub const APP_ID: &str = "hookline-ingestor";

/// How long one connection attempt (TCP + AMQP handshake + topology) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the supervisor checks the connection even without an error event: a broker that
/// vanishes without closing the socket is only noticed by heartbeats, which lapin reports as a
/// status change.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Why an envelope was not confirmed. Every variant means "not accepted": answer 503.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No live connection right now (broker down, or reconnecting).
    #[error("not connected to the broker")]
    NotConnected,
    /// The broker has blocked publishers (memory or disk alarm).
    #[error("the broker is blocking publishers (resource alarm)")]
    Blocked,
    /// The broker refused the message, e.g. because the queue is at its max length.
    #[error("the broker refused the message (nack); a queue may be full")]
    Nacked,
    /// The message could not be routed anywhere, not even to the unrouted queue.
    #[error("the broker returned the message as unroutable")]
    Returned,
    /// No confirm in time. The message may still be confirmed later; the sender's retry then
    /// yields a duplicate, which the worker's idempotency absorbs.
    #[error("no confirm from the broker within {0:?}")]
    Timeout(Duration),
    /// The channel or connection failed.
    #[error("broker error")]
    Amqp(#[from] lapin::Error),
}

impl PublishError {
    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PublishError::NotConnected => "not_connected",
            PublishError::Blocked => "blocked",
            PublishError::Nacked => "nacked",
            PublishError::Returned => "returned",
            PublishError::Timeout(_) => "timeout",
            PublishError::Amqp(_) => "amqp_error",
        }
    }
}

/// What the publisher needs to know.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// The broker URL, vhost included.
    pub amqp_url: String,
    /// Shown in the management UI's connection list.
    pub connection_name: String,
    /// Publishing channels, used round-robin.
    pub channels: usize,
    /// How long to wait for a confirm.
    pub confirm_timeout: Duration,
    /// Topology arguments, declared on every (re)connect.
    pub topology: TopologySettings,
}

/// The live connection and its channels, replaced as a whole on reconnect.
struct Live {
    connection: Connection,
    channels: Vec<ConfirmChannel>,
}

impl Live {
    fn healthy(&self) -> bool {
        self.connection.status().connected()
            && self
                .channels
                .iter()
                .all(|c| c.channel().status().connected())
    }
}

struct Inner {
    settings: PublisherSettings,
    /// The current connection, if any. A std `RwLock` because it is held only to clone an `Arc`,
    /// never across an `.await`.
    live: RwLock<Option<Arc<Live>>>,
    /// Round-robin cursor over the channels.
    next: AtomicUsize,
    /// Woken by a request that saw an AMQP error, so the supervisor checks at once.
    suspect: tokio::sync::Notify,
    /// Stops the supervisor.
    shutdown: CancellationToken,
}

/// Publishes envelopes with confirms over a self-healing connection. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

impl Publisher {
    /// Starts the supervisor, which connects in the background. The publisher is usable at once:
    /// until the first connection is up, publishes fail with [`PublishError::NotConnected`].
    pub fn start(settings: PublisherSettings) -> (Self, JoinHandle<()>) {
        let inner = Arc::new(Inner {
            settings,
            live: RwLock::new(None),
            next: AtomicUsize::new(0),
            suspect: tokio::sync::Notify::new(),
            shutdown: CancellationToken::new(),
        });
        let task = tokio::spawn(
            supervise(inner.clone()).instrument(tracing::info_span!("amqp_supervisor")),
        );
        (Self { inner }, task)
    }

    /// Connected, topology declared, channels open.
    pub fn is_ready(&self) -> bool {
        self.current().is_some_and(|live| live.healthy())
    }

    fn current(&self) -> Option<Arc<Live>> {
        self.inner
            .live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes `envelope` to `hookline.events` and waits for the broker's confirm.
    /// Returns how long the confirm took.
    pub async fn publish(&self, envelope: &Envelope) -> Result<Duration, PublishError> {
        let live = self.current().ok_or(PublishError::NotConnected)?;
        if live.connection.status().blocked() {
            return Err(PublishError::Blocked);
        }
        let index = self.inner.next.fetch_add(1, Ordering::Relaxed) % live.channels.len();
        let channel = &live.channels[index];
        let body = envelope.to_json();
        let properties = envelope.amqp_properties(APP_ID);
        let routing_key = envelope.routing_key();
        let started = Instant::now();
        let confirmed = async {
            let confirm = channel
                .publish(
                    EVENTS_EXCHANGE.into(),
                    routing_key.as_str().into(),
                    // mandatory: with the alternate exchange nothing should come back; if the
                    // topology was tampered with, a return tells us instead of a silent drop.
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    properties,
                )
                .await?;
            confirm.await
        };
        let timeout = self.inner.settings.confirm_timeout;
        match tokio::time::timeout(timeout, confirmed).await {
            Err(_) => Err(PublishError::Timeout(timeout)),
            Ok(Err(error)) => {
                self.inner.suspect.notify_one();
                Err(PublishError::Amqp(error))
            }
            Ok(Ok(Confirmation::Ack(None))) => Ok(started.elapsed()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(PublishError::Returned),
            Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Nacked),
            // Channels are put in confirm mode before they are made live; reaching this means
            // that invariant broke, and the only safe answer is "not accepted".
            Ok(Ok(Confirmation::NotRequested)) => {
                self.inner.suspect.notify_one();
                Err(PublishError::NotConnected)
            }
        }
    }

    /// Stops the supervisor and closes the connection. Call after the HTTP server has drained,
    /// so in-flight requests still get their confirms.
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        let live = self
            .inner
            .live
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(live) = live {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                live.connection.close(200, "shutdown".into()),
            )
            .await;
        }
    }
}

/// Reconnect backoff: 100 ms doubling to 5 s, ±20 % jitter, forever. The attempt cap of the
/// policy is irrelevant here; the supervisor never gives up while the process runs.
fn reconnect_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

async fn supervise(inner: Arc<Inner>) {
    let policy = reconnect_policy();
    let mut failures: u32 = 0;
    loop {
        if inner.shutdown.is_cancelled() {
            return;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(&inner.settings)).await {
            Ok(Ok(live)) => {
                failures = 0;
                let live = Arc::new(live);
                let events = live.connection.events_listener();
                *inner.live.write().unwrap_or_else(PoisonError::into_inner) = Some(live.clone());
                metrics::gauge!("hookline_ingest_broker_connected").set(1.0);
                tracing::info!(
                    channels = live.channels.len(),
                    "connected to the broker, topology declared"
                );
                watch(&inner, &live, events).await;
                inner
                    .live
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                metrics::gauge!("hookline_ingest_broker_connected").set(0.0);
                if inner.shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!("broker connection lost; publishes answer 503 until it is back");
                // Best effort: the connection may be half-open; don't wait long on it.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    live.connection.close(320, "reconnecting".into()),
                )
                .await;
            }
            Ok(Err(error)) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %error, failures, "cannot connect to the broker");
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                tracing::warn!(timeout = ?CONNECT_TIMEOUT, failures, "connecting to the broker timed out");
            }
        }
        metrics::counter!("hookline_ingest_broker_reconnects_total").increment(1);
        let delay = policy.delay_with_jitter(failures.clamp(1, 16), fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

async fn connect(settings: &PublisherSettings) -> Result<Live, lapin::Error> {
    let properties = ConnectionProperties::default()
        .with_connection_name(settings.connection_name.as_str().into());
    let connection = Connection::connect(&settings.amqp_url, properties).await?;
    let setup = connection.create_channel().await?;
    topology::declare(&setup, &settings.topology).await?;
    let _ = setup.close(200, "topology declared".into()).await;
    let mut channels = Vec::with_capacity(settings.channels);
    for _ in 0..settings.channels.max(1) {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(ConfirmChannel::new(channel));
    }
    Ok(Live {
        connection,
        channels,
    })
}

/// Returns when the connection is no longer usable, or on shutdown.
async fn watch(inner: &Inner, live: &Live, events: impl futures_util::Stream<Item = Event> + Send) {
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(HEALTH_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    tracing::warn!(error = %error, "broker connection error");
                    return;
                }
                Some(Event::ConnectionBlocked(reason)) => tracing::warn!(%reason, "broker blocked publishers"),
                Some(Event::ConnectionUnblocked) => tracing::info!("broker unblocked publishers"),
                Some(_) => {}
                None => return,
            },
            _ = inner.suspect.notified() => if !live.healthy() { return },
            _ = tick.tick() => if !live.healthy() { return },
        }
    }
}
