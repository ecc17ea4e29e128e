//! A graceful stop that loses no answer: the ingestor's own, not actix-server's.
//!
//! The server is built from actix-server directly (so each socket can be wrapped in the
//! connection [`Watchdog`](crate::connection::Watchdog)). On stop, actix-server wakes its acceptor
//! before it tells the workers to stop; a worker that sees its connection channel close first
//! exits at once and drops its connections, in-flight requests included, some of them already
//! published: the broker holds the webhook, the client never hears 200 and Shopify sends it
//! again. Its SIGINT handling is a forced stop besides.
//!
//! So actix-server's signal handling is off, and [`Drain`] stops the ingestor in this order:
//!
//! 1. `/readyz` answers 503 (load balancers stop sending), and every answer from now on carries
//!    `Connection: close`;
//! 2. the acceptor is paused: no new connection is taken (waiting ones are refused when the
//!    listener closes, before anything was read from them, so nothing of theirs was published);
//! 3. connections close as soon as they are idle: the watchdog ends a connection from which
//!    nothing was read since its last answer (a request that arrives at that instant was never
//!    read, so it was not published either);
//! 4. once no request is in flight and no connection is open — or the shutdown timeout passed —
//!    the server is stopped. Nothing is left for actix-server to drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The in-flight requests and open connections of one ingestor, and whether it is stopping.
#[derive(Debug, Default)]
pub struct Drain {
    stopping: CancellationToken,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
    changed: Notify,
}

impl Drain {
    /// A drain of a running ingestor (not stopping).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether the stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Begins the stop (idempotent): fails readiness, closes idle connections.
    pub fn begin(&self) {
        self.stopping.cancel();
    }

    /// Cancelled when the stop begins (connections watch it).
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// Counts one request from its start until the guard is dropped (its answer is ready).
    pub fn request(self: &Arc<Self>) -> Counted {
        Counted::new(self.clone(), Kind::Request)
    }

    /// Counts one connection from accept until the guard is dropped (the socket is closed).
    pub fn connection(self: &Arc<Self>) -> Counted {
        Counted::new(self.clone(), Kind::Connection)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Connections open.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Returns once no request is in flight and no connection is open.
    pub async fn settled(&self) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the check, so a change in between is not missed.
            changed.as_mut().enable();
            if self.in_flight() == 0 && self.connections() == 0 {
                return;
            }
            changed.await;
        }
    }

    fn counter(&self, kind: Kind) -> &AtomicUsize {
        match kind {
            Kind::Request => &self.in_flight,
            Kind::Connection => &self.connections,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Request,
    Connection,
}

/// One counted request or connection; dropping it counts it out.
#[derive(Debug)]
pub struct Counted {
    drain: Arc<Drain>,
    kind: Kind,
}

impl Counted {
    fn new(drain: Arc<Drain>, kind: Kind) -> Self {
        drain.counter(kind).fetch_add(1, Ordering::SeqCst);
        Self { drain, kind }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drain.counter(self.kind).fetch_sub(1, Ordering::SeqCst);
        self.drain.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn settles_when_the_last_request_and_connection_are_gone() {
        let drain = Drain::new();
        let connection = drain.connection();
        let request = drain.request();
        assert!(!drain.is_stopping());
        drain.begin();
        assert!(drain.is_stopping());
        let waiting = tokio::spawn({
            let drain = drain.clone();
            async move { drain.settled().await }
        });
        drop(request);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a connection is still open");
        drop(connection);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("settled")
            .unwrap();
    }
}
