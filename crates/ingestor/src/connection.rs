//! A time limit on every connection, for the slow clients actix does not time out.
//!
//! actix answers 408 when the head of a connection's *first* request is slow
//! (`client_request_timeout`) and closes kept-alive connections that stay silent. But once a
//! connection has served a request, a client that sends one byte of a next request and then
//! nothing, or one byte every few seconds, holds the connection for ever: no timer runs while a
//! later request's head is arriving. Enough such clients fill the workers' connection limits and
//! the server stops accepting. (Request bodies have no time limit in actix either; the webhook
//! route sets its own and answers 408.)
//!
//! [`Watchdog`] wraps each accepted socket and closes the connection once the server has
//! written nothing on it for [`silence_limit`]: longer than any legitimate request can take to
//! arrive and be answered, so only clients that are stuck or stalling on purpose hit it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::drain::{Counted, Drain};

/// Added to the sum of the phases in [`silence_limit`], for scheduling and the route's own work.
const SLACK: Duration = Duration::from_secs(1);

/// The longest a connection may go without the server writing to it: an idle keep-alive period,
/// then a request's head and its body (each bounded by the client timeout), then the broker's
/// confirm, plus [`SLACK`]. With the defaults (5 s, 5 s, 2 s) that is 18 s.
pub fn silence_limit(
    keep_alive: Duration,
    client_timeout: Duration,
    confirm_timeout: Duration,
) -> Duration {
    keep_alive + client_timeout * 2 + confirm_timeout + SLACK
}

/// A socket that fails with [`io::ErrorKind::TimedOut`] once nothing was written to it for
/// `limit`; actix then drops the connection.
pub struct Watchdog<T> {
    io: T,
    /// How long the server may stay silent on this connection.
    limit: Duration,
    /// When the server last wrote (or the connection was accepted).
    last_write: Instant,
    /// Wakes the connection's task at `last_write + limit`, so a client that sends nothing at
    /// all is noticed too. Boxed: `Sleep` is not `Unpin`, and actix wants an `Unpin` stream.
    timer: Pin<Box<Sleep>>,
    /// Whether anything was read since the server last wrote: a request is arriving or being
    /// handled. A connection without is idle between requests.
    read_since_write: bool,
    /// Set for the server's connections: closes the connection once it is idle during a stop.
    drain: Option<DrainWatch>,
}

/// What a connection needs of the ingestor's [`Drain`].
struct DrainWatch {
    stopping: CancellationToken,
    /// Wakes the connection's task when the stop begins, so an idle one is closed at once.
    woken: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Counts the connection as open until it is dropped.
    _open: Counted,
}

impl DrainWatch {
    fn stopping(&mut self, cx: &mut Context<'_>) -> bool {
        self.stopping.is_cancelled() || self.woken.as_mut().poll(cx).is_ready()
    }
}

impl<T> Watchdog<T> {
    /// Starts the clock now (at accept).
    pub fn new(io: T, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            io,
            limit,
            last_write: now,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
            read_since_write: false,
            drain: None,
        }
    }

    /// Counts this connection in `drain`, and ends it (end of file to the server) once the stop
    /// has begun and nothing was read since its last answer. A request whose first bytes come
    /// in then was never read, so it was not published; it sees the connection close.
    pub fn drained_by(mut self, drain: &Arc<Drain>) -> Self {
        let stopping = drain.stopping();
        self.drain = Some(DrainWatch {
            woken: Box::pin(stopping.clone().cancelled_owned()),
            stopping,
            _open: drain.connection(),
        });
        self
    }

    fn deadline(&self) -> Instant {
        self.last_write + self.limit
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline()
    }

    /// Arms the timer for the current deadline (writes move it) so that the task is woken then.
    /// `Err` if it has already passed.
    fn wait_for_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let deadline = self.deadline();
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Err(timed_out(self.limit)),
            Poll::Pending => Ok(()),
        }
    }
}

fn timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("nothing answered on this connection for {limit:?}: closing it"),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for Watchdog<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Checked before reading too: a client that keeps sending never makes the read pend.
        if this.expired() {
            return Poll::Ready(Err(timed_out(this.limit)));
        }
        if !this.read_since_write
            && let Some(drain) = &mut this.drain
            && drain.stopping(cx)
        {
            // Idle while the ingestor stops: end of file, and actix closes the connection.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => match this.wait_for_deadline(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                if buf.filled().len() > before {
                    this.read_since_write = true;
                }
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watchdog<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<T> Watchdog<T> {
    /// A write that went through restarts the clock; one that pends (the client does not read
    /// its answer) is bounded by the same deadline.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.last_write = Instant::now();
                self.read_since_write = false;
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.wait_for_deadline(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMIT: Duration = Duration::from_millis(200);

    #[test]
    fn the_limit_is_the_sum_of_the_phases_plus_slack() {
        assert_eq!(
            silence_limit(
                Duration::from_secs(5),
                Duration::from_secs(5),
                Duration::from_secs(2)
            ),
            Duration::from_secs(18)
        );
    }

    #[tokio::test]
    async fn a_silent_client_is_cut_off_after_the_limit() {
        let (server, _client) = tokio::io::duplex(64);
        let mut server = Watchdog::new(server, LIMIT);
        let started = std::time::Instant::now();
        let err = server.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= LIMIT && waited < LIMIT * 5, "{waited:?}");
    }

    #[tokio::test]
    async fn a_trickling_client_is_cut_off_too() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = Watchdog::new(server, LIMIT);
        tokio::spawn(async move {
            for _ in 0..100 {
                if client.write_all(b"G").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let started = std::time::Instant::now();
        let mut buf = [0; 16];
        let err = loop {
            match server.read(&mut buf).await {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < LIMIT * 5, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn each_answer_restarts_the_clock() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut server = Watchdog::new(server, LIMIT);
        for _ in 0..4 {
            client.write_all(b"request").await.unwrap();
            let mut buf = [0; 7];
            server.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(LIMIT / 2).await;
            server.write_all(b"answer").await.unwrap();
        }
        // Four rounds took twice the limit, yet the connection is alive.
        client.write_all(b"more").await.unwrap();
        let mut buf = [0; 4];
        server.read_exact(&mut buf).await.unwrap();
    }

    #[tokio::test]
    async fn during_a_stop_a_connection_ends_once_idle_not_mid_request() {
        let drain = Drain::new();
        let (server, mut client) = tokio::io::duplex(1024);
        let mut server = Watchdog::new(server, Duration::from_secs(30)).drained_by(&drain);
        assert_eq!(drain.connections(), 1);
        client.write_all(b"request").await.unwrap();
        let mut buf = [0; 7];
        server.read_exact(&mut buf).await.unwrap();
        drain.begin();
        // Mid-request: the rest of it is still read.
        client.write_all(b"body").await.unwrap();
        let mut body = [0; 4];
        server.read_exact(&mut body).await.unwrap();
        server.write_all(b"answer").await.unwrap();
        // Answered: idle, so the next read is the end, even with a next request waiting.
        client.write_all(b"next").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        drop(server);
        assert_eq!(drain.connections(), 0);
    }

    #[tokio::test]
    async fn an_idle_connection_is_woken_and_ended_when_the_stop_begins() {
        let drain = Drain::new();
        let (server, _client) = tokio::io::duplex(64);
        let mut server = Watchdog::new(server, Duration::from_secs(30)).drained_by(&drain);
        let reading = tokio::spawn(async move { server.read(&mut [0; 16]).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drain.begin();
        let read = tokio::time::timeout(Duration::from_secs(5), reading)
            .await
            .expect("woken by the stop")
            .unwrap();
        assert_eq!(read.unwrap(), 0);
    }
}
