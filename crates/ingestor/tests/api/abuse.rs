//! Hostile HTTP traffic: slow clients, huge heads, endless bodies, wrong methods and content
//! types, 10,000 connections at once. Each abuse gets its documented answer (or its connection
//! closed) and publishes nothing, while webhooks from well-behaved clients are accepted meanwhile.
//!
//! Clients that misbehave below what `reqwest` allows talk raw TCP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Range;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookline_core::envelope::{Envelope, header};
use hookline_core::signature::sign;
use hookline_ingestor::connection::silence_limit;
use hookline_testkit::TestVhost;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{AppOptions, SECRET, TestApp, Webhook, spawn_app, spawn_app_with};

const ORDERS: &str = "hookline.orders";

/// `HOOKLINE_HTTP_CLIENT_TIMEOUT_MS` in the slow-client tests.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How late an answer to an abuse may come, on two cores shared with the whole suite.
const MARGIN: Duration = Duration::from_millis(1500);
/// How early our own deadlines may seem to fire: tokio timers tick in milliseconds, and the
/// server's clock for a connection starts a little after ours.
const SLOP: Duration = Duration::from_millis(50);
/// How early actix's own timers (the head's 408) may fire: they count from a clock it refreshes
/// every 500 ms.
const ACTIX_SLOP: Duration = Duration::from_millis(550);
/// One byte this often: a slow client.
const TRICKLE: Duration = Duration::from_millis(200);

fn order(id: u64) -> Webhook {
    Webhook::new("orders/create", format!(r#"{{"id":{id}}}"#))
}

/// Webhooks from a well-behaved client, `spacing` apart: each must be accepted.
async fn accepted_meanwhile(app: &TestApp, ids: Range<u64>, spacing: Duration) {
    for id in ids {
        let response = app.post(&order(id)).await;
        let status = response.status();
        assert_eq!(
            status,
            200,
            "webhook {id} from a well-behaved client: {}",
            response.text().await.unwrap_or_default()
        );
        tokio::time::sleep(spacing).await;
    }
}

/// The `id` of every order published, sorted: what the abuse tests compare with what the
/// well-behaved clients sent.
async fn published_ids(app: &TestApp) -> Vec<u64> {
    let mut ids: Vec<u64> = app
        .drain(ORDERS)
        .await
        .iter()
        .map(|m| {
            let envelope = Envelope::from_json(&m.delivery.data).unwrap();
            let payload: Value = serde_json::from_str(envelope.payload.get()).unwrap();
            payload["id"].as_u64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// The head of a signed `orders/create` webhook, raw: `framing` is the `content-length` or
/// `transfer-encoding` line, `extra` more header lines (each ending in CRLF).
fn signed_head(body: &[u8], framing: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /webhooks/shopify HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         {framing}\r\n{}: {}\r\n{}: orders/create\r\n{}: example.myshopify.com\r\n{}: 2025-10\r\n\
         {}: {}\r\n{extra}\r\n",
        header::HMAC,
        sign(SECRET.as_bytes(), body),
        header::TOPIC,
        header::SHOP_DOMAIN,
        header::API_VERSION,
        header::WEBHOOK_ID,
        uuid::Uuid::new_v4(),
    )
    .into_bytes()
}

fn content_length(body: &[u8]) -> String {
    format!("content-length: {}", body.len())
}

/// What a raw client saw.
struct Seen {
    /// Everything the server sent.
    bytes: Vec<u8>,
    /// Whether the server closed the connection.
    closed: bool,
    /// From the start of the abuse to the server's first byte or its close.
    after: Duration,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.bytes);
        let shown: String = text.chars().take(300).collect();
        f.debug_struct("Seen")
            .field("bytes", &shown)
            .field("len", &self.bytes.len())
            .field("closed", &self.closed)
            .field("after", &self.after)
            .finish()
    }
}

impl Seen {
    fn status(&self) -> Option<u16> {
        let line = std::str::from_utf8(self.bytes.get(..12)?).ok()?;
        line.strip_prefix("HTTP/1.1 ")?.parse().ok()
    }

    fn head(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        text.split("\r\n\r\n").next().unwrap_or("").to_lowercase()
    }

    fn json(&self) -> Value {
        let text = String::from_utf8_lossy(&self.bytes);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {self:?}"))
    }

    /// Answered `status` and closed the connection `bound` after the abuse started: no more
    /// than `early` before, no more than [`MARGIN`] after.
    fn assert_answered(&self, status: u16, bound: Duration, early: Duration) {
        assert_eq!(self.status(), Some(status), "{self:?}");
        self.assert_closed_after(bound, early);
    }

    fn assert_closed_after(&self, bound: Duration, early: Duration) {
        assert!(self.closed, "the connection is closed: {self:?}");
        assert!(
            self.after + early >= bound && self.after <= bound + MARGIN,
            "after {:?}, expected {bound:?} (-{early:?}, +{MARGIN:?})",
            self.after
        );
    }
}

/// Reads until the server closes the connection (or resets it), for at most `within`.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> Seen {
    let started = Instant::now();
    let mut bytes = vec![];
    let mut first = None;
    let mut buf = [0; 8192];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => {
                return Seen {
                    bytes,
                    closed: false,
                    after: first.unwrap_or(within),
                };
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Seen {
                    bytes,
                    closed: true,
                    after: first.unwrap_or_else(|| started.elapsed()),
                };
            }
            Ok(Ok(n)) => {
                first.get_or_insert_with(|| started.elapsed());
                bytes.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// Sends `bytes` one at a time, [`TRICKLE`] apart, until the server answers or closes; then
/// reads until it closes. Gives up after `within`.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], within: Duration) -> Seen {
    let started = Instant::now();
    let mut buf = [0; 4096];
    for byte in bytes {
        if started.elapsed() > within || stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(TRICKLE, stream.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Seen {
                    bytes: vec![],
                    closed: true,
                    after: started.elapsed(),
                };
            }
            Ok(Ok(n)) => {
                let after = started.elapsed();
                let mut rest = read_until_closed(stream, MARGIN).await;
                rest.bytes.splice(0..0, buf[..n].iter().copied());
                rest.after = after;
                return rest;
            }
        }
    }
    let sent_in = started.elapsed();
    let mut rest = read_until_closed(stream, MARGIN).await;
    rest.after += sent_in;
    rest
}

/// Sends `request` whole (the server may close before reading it all) and reads the answer.
async fn exchange(address: SocketAddr, request: Vec<u8>, within: Duration) -> Seen {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write // keep the write half open: a shutdown would read as the end of the request
    });
    let seen = read_until_closed(&mut read, within).await;
    drop(writer.await);
    seen
}

/// Reads one answer on a kept-alive connection: status and body (by `content-length`).
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut bytes = vec![];
    let mut buf = [0; 4096];
    loop {
        let n = tokio::time::timeout(MARGIN, stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering: {bytes:?}");
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("content-length: ")?
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            if body.len() >= length {
                let status = head[9..12].parse().unwrap();
                return (status, body.as_bytes().to_vec());
            }
        }
    }
}

fn address(app: &TestApp) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], app.port))
}

fn millis(d: Duration) -> Option<u64> {
    Some(d.as_millis() as u64)
}

#[tokio::test]
async fn a_slow_request_head_gets_408_within_the_client_timeout_while_others_are_served() {
    let app = spawn_app_with(AppOptions {
        client_timeout_ms: millis(CLIENT_TIMEOUT),
        ..Default::default()
    })
    .await;
    let address = address(&app);
    let body = br#"{"id":1}"#;
    let slowloris: Vec<_> = (0..20)
        .map(|_| {
            let head = signed_head(body, &content_length(body), "");
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(address).await.unwrap();
                // The ~250-byte head would take a minute.
                trickle(&mut stream, &head, CLIENT_TIMEOUT + MARGIN * 2).await
            })
        })
        .collect();
    accepted_meanwhile(&app, 100..110, Duration::from_millis(100)).await;
    for task in slowloris {
        // actix's own answer: no body.
        task.await
            .unwrap()
            .assert_answered(408, CLIENT_TIMEOUT, ACTIX_SLOP);
    }
    assert_eq!(published_ids(&app).await, (100..110).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_slow_or_withheld_body_gets_408_and_nothing_is_published() {
    let app = spawn_app_with(AppOptions {
        client_timeout_ms: millis(CLIENT_TIMEOUT),
        ..Default::default()
    })
    .await;
    let address = address(&app);
    // Signed correctly: were the body to arrive, it would be accepted.
    let body = br#"{"id":1,"note":"sent one byte at a time"}"#.to_vec();
    let head = signed_head(&body, &content_length(&body), "");
    let trickled = tokio::spawn({
        let head = head.clone();
        async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(&head).await.unwrap();
            trickle(&mut stream, &body, CLIENT_TIMEOUT + MARGIN * 2).await
        }
    });
    let withheld = tokio::spawn(async move {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(&head).await.unwrap();
        read_until_closed(&mut stream, CLIENT_TIMEOUT + MARGIN * 2).await
    });
    accepted_meanwhile(&app, 100..110, Duration::from_millis(100)).await;
    for (what, task) in [("trickled", trickled), ("withheld", withheld)] {
        let seen = task.await.unwrap();
        seen.assert_answered(408, CLIENT_TIMEOUT, SLOP);
        assert_eq!(seen.json()["error"], "request_timeout", "{what}");
        assert!(
            seen.head().contains("connection: close"),
            "{what}: {seen:?}"
        );
    }
    assert_eq!(published_ids(&app).await, (100..110).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_slow_next_request_on_a_kept_alive_connection_is_cut_off_and_patient_clients_are_not() {
    let keep_alive = Duration::from_millis(1000);
    let client_timeout = Duration::from_millis(500);
    let confirm_timeout = Duration::from_millis(1000);
    let app = spawn_app_with(AppOptions {
        client_timeout_ms: millis(client_timeout),
        keep_alive_ms: millis(keep_alive),
        confirm_timeout_ms: 1000,
        ..Default::default()
    })
    .await;
    // 1 s + 2 × 0.5 s + 1 s + 1 s of slack.
    let limit = silence_limit(keep_alive, client_timeout, confirm_timeout);
    let address = address(&app);
    const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";

    // actix times out the head of a connection's first request only; these send theirs after
    // one good request, and are cut off by the watchdog instead, without an answer.
    let after_one_request = |next: &'static [u8]| async move {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(HEALTHZ).await.unwrap();
        assert_eq!(read_response(&mut stream).await.0, 200);
        if next.len() == 1 {
            stream.write_all(next).await.unwrap();
            read_until_closed(&mut stream, limit + MARGIN * 2).await
        } else {
            trickle(&mut stream, next, limit + MARGIN * 2).await
        }
    };
    let trickling = tokio::spawn(after_one_request(HEALTHZ));
    let one_byte = tokio::spawn(after_one_request(b"G"));
    // A client that sends request after request on one connection, for longer than the limit,
    // is answered every time: each answer restarts the clock.
    let patient = tokio::spawn(async move {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let started = Instant::now();
        let mut answered = 0;
        while started.elapsed() < limit + Duration::from_millis(500) {
            stream.write_all(HEALTHZ).await.unwrap();
            assert_eq!(read_response(&mut stream).await.0, 200);
            answered += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        answered
    });
    accepted_meanwhile(&app, 100..110, Duration::from_millis(200)).await;
    for (what, task) in [("trickling", trickling), ("one byte", one_byte)] {
        let seen = task.await.unwrap();
        assert!(seen.bytes.is_empty(), "{what}: no answer: {seen:?}");
        seen.assert_closed_after(limit, SLOP);
    }
    assert!(patient.await.unwrap() >= 10);
    assert_eq!(published_ids(&app).await, (100..110).collect::<Vec<_>>());
}

#[tokio::test]
async fn heads_over_128_kib_or_96_headers_get_431_and_a_64_kib_header_is_read_like_any_other() {
    let app = spawn_app().await;
    let address = address(&app);
    let body = br#"{"id":7}"#;
    let with_headers = |extra: String| {
        [
            signed_head(body, &content_length(body), &extra),
            body.to_vec(),
        ]
        .concat()
    };
    let within = Duration::from_secs(5);
    // Under actix's 128 KiB for the whole head: an ordinary request (closed after the answer
    // only so that reading to the end is quick).
    let padded = tokio::spawn(exchange(
        address,
        with_headers(format!(
            "x-padding: {}\r\nconnection: close\r\n",
            "a".repeat(64 * 1024)
        )),
        within,
    ));
    let oversized = tokio::spawn(exchange(
        address,
        with_headers(format!("x-padding: {}\r\n", "a".repeat(200 * 1024))),
        within,
    ));
    let too_many = tokio::spawn(exchange(
        address,
        with_headers((0..500).map(|i| format!("x-header-{i}: {i}\r\n")).collect()),
        within,
    ));
    accepted_meanwhile(&app, 100..105, Duration::ZERO).await;

    let padded = padded.await.unwrap();
    assert_eq!(padded.status(), Some(200), "{padded:?}");
    for (what, task) in [("200 KiB header", oversized), ("500 headers", too_many)] {
        let seen = task.await.unwrap();
        assert_eq!(seen.status(), Some(431), "{what}: {seen:?}");
        assert!(seen.closed, "{what}: closed");
    }
    assert_eq!(published_ids(&app).await, vec![7, 100, 101, 102, 103, 104]);
}

#[tokio::test]
async fn an_endless_chunked_body_gets_413_once_over_the_limit_and_its_connection_is_closed() {
    // The finite case (two chunks over the limit) is in `webhook.rs`; this body never ends.
    let app = spawn_app_with(AppOptions {
        max_body_bytes: Some(64 * 1024),
        ..Default::default()
    })
    .await;
    let stream = TcpStream::connect(address(&app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = signed_head(b"{}", "transfer-encoding: chunked", "");
    let writer = tokio::spawn(async move {
        let started = Instant::now();
        let chunk = [b"1000\r\n".as_slice(), &[b' '; 0x1000], b"\r\n"].concat();
        write.write_all(&head).await.unwrap();
        let mut sent = 0usize;
        // Until the server stops reading: it must, long before ten seconds.
        while started.elapsed() < Duration::from_secs(10) {
            if write.write_all(&chunk).await.is_err() {
                return Some(sent);
            }
            sent += 0x1000;
        }
        None
    });
    let seen = read_until_closed(&mut read, Duration::from_secs(10)).await;
    assert_eq!(seen.status(), Some(413), "{seen:?}");
    assert_eq!(seen.json()["error"], "payload_too_large");
    assert!(seen.closed, "closed");
    let sent = writer.await.unwrap();
    assert!(sent.is_some(), "the server kept reading an endless body");
    accepted_meanwhile(&app, 100..103, Duration::ZERO).await;
    assert_eq!(published_ids(&app).await, vec![100, 101, 102]);
}

#[tokio::test]
async fn other_methods_get_405_with_allow_post_and_a_json_error() {
    let app = spawn_app().await;
    // Signed, complete webhooks: only the method is wrong.
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.try_send(method.clone(), &order(1)).await.unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST", "{method}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{method}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let head = app
        .try_send(reqwest::Method::HEAD, &order(1))
        .await
        .unwrap();
    assert_eq!(head.status(), 405);
    assert_eq!(head.headers()["allow"], "POST");
    accepted_meanwhile(&app, 100..101, Duration::ZERO).await;
    assert_eq!(published_ids(&app).await, vec![100]);
}

#[tokio::test]
async fn other_content_types_get_415_after_the_signature_and_publish_nothing() {
    // `text/plain` and no content type at all are in `webhook.rs`.
    let app = spawn_app().await;
    let typed = |content_type: &str, body: &str| {
        let mut webhook = Webhook::new("orders/create", body);
        webhook.content_type = Some(content_type.into());
        webhook
    };
    let multipart = "--x\r\ncontent-disposition: form-data; name=\"id\"\r\n\r\n1\r\n--x--\r\n";
    let cases = [
        (
            typed("multipart/form-data; boundary=x", multipart),
            415,
            "unsupported_media_type",
        ),
        (
            typed("multipart/form-data; boundary=x", r#"{"id":1}"#),
            415,
            "unsupported_media_type",
        ),
        (
            typed("application/x-www-form-urlencoded", "id=1"),
            415,
            "unsupported_media_type",
        ),
        (
            typed("application/jsonx", r#"{"id":1}"#),
            415,
            "unsupported_media_type",
        ),
        // The signature is checked first: an unsigned caller learns nothing about content types.
        (
            typed("multipart/form-data; boundary=x", multipart).signed_with("not-the-secret"),
            401,
            "invalid_signature",
        ),
    ];
    for (webhook, status, code) in cases {
        let what = webhook.content_type.clone().unwrap();
        let response = app.post(&webhook).await;
        assert_eq!(response.status(), status, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{what}: {body}");
    }
    // Parameters after `application/json` are fine.
    let response = app
        .post(&typed("application/json; charset=utf-8", r#"{"id":100}"#))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(published_ids(&app).await, vec![100]);
}

/// The real binary in a process of its own, so that its memory can be read from `/proc`.
struct IngestorProcess {
    child: Child,
    port: u16,
}

impl IngestorProcess {
    fn start(vhost: &TestVhost, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookline-ingestor"))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("HOOKLINE_HTTP_ADDR", "127.0.0.1:0")
            .env("HOOKLINE_AMQP_URL", vhost.amqp_url())
            .env("HOOKLINE_SHOPIFY_SECRETS", SECRET)
            .env("HOOKLINE_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the ingestor binary starts");
        let stdout = child.stdout.take().unwrap();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        // Reads the port from the "listening" line, then keeps draining so the pipe never fills.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let log = serde_json::from_str::<Value>(&line).unwrap_or_default();
                if log["message"] == "listening" {
                    let _ = port_tx.send(log["port"].as_u64());
                }
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .and_then(|p| u16::try_from(p).ok())
            .expect("the ingestor logs the port it listens on");
        Self { child, port }
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }

    fn mib(&self, field: &str) -> f64 {
        self.status_kib(field) as f64 / 1024.0
    }

    /// Sockets (and other files) the process holds open.
    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    async fn wait_open_files(&self, until: impl Fn(usize) -> bool, within: Duration) -> usize {
        let started = Instant::now();
        loop {
            let open = self.open_files();
            if until(open) || started.elapsed() > within {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for IngestorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this process's soft limit on open files to `wanted` (at most the hard limit); the
/// ingestor, started after, inherits it.
fn raise_open_files_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    limit.rlim_cur
}

/// Idle connections and half-sent request heads, held open at once.
const CONNECTIONS: usize = 10_000;
/// What the process may reach, at its peak, with them (measured: about 125 MiB in a debug build,
/// about 10 KiB per connection over the 18 MiB it starts with).
const RSS_BOUND_MIB: f64 = 256.0;

#[tokio::test]
async fn ten_thousand_connections_held_open_do_not_stop_webhooks_and_memory_stays_bounded() {
    // Both processes need a file per connection, and the rest of the suite runs alongside.
    let files = raise_open_files_limit(2 * CONNECTIONS as u64 + 4096);
    assert!(
        files > CONNECTIONS as u64 + 1024,
        "this test needs `ulimit -n` of at least {} (it is {files})",
        CONNECTIONS + 1024
    );
    let vhost = TestVhost::create();
    let ingestor = IngestorProcess::start(
        &vhost,
        &[
            ("HOOKLINE_HTTP_WORKERS", "2"),
            // Long enough that the server holds every connection for the whole test.
            ("HOOKLINE_HTTP_CLIENT_TIMEOUT_MS", "30000"),
        ],
    );
    let address = SocketAddr::from(([127, 0, 0, 1], ingestor.port));
    let base = format!("http://{address}");
    // No idle connections kept: the ingestor's open files are then its own plus ours.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    loop {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = ingestor.mib("VmRSS");
    let files_idle = ingestor.open_files();

    // Half of them never send a byte; the other half stop in the middle of a request head.
    let started = Instant::now();
    let mut held = Vec::with_capacity(CONNECTIONS);
    while held.len() < CONNECTIONS {
        let batch = futures_util::future::join_all((0..500).map(|i| async move {
            let mut stream = TcpStream::connect(address).await?;
            if i % 2 == 1 {
                stream
                    .write_all(b"POST /webhooks/shopify HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n")
                    .await?;
            }
            Ok::<_, std::io::Error>(stream)
        }))
        .await;
        for stream in batch {
            held.push(stream.expect("a connection to the ingestor"));
        }
    }
    let opened_in = started.elapsed();
    let accepted = ingestor
        .wait_open_files(|n| n >= files_idle + CONNECTIONS, Duration::from_secs(10))
        .await;
    assert!(
        accepted >= files_idle + CONNECTIONS,
        "the ingestor holds {} of {CONNECTIONS} connections",
        accepted.saturating_sub(files_idle)
    );
    let with_connections = ingestor.mib("VmRSS");

    // While they are held, webhooks are accepted, promptly.
    let webhook = |id: u64| {
        let body = format!(r#"{{"id":{id}}}"#);
        let mut request = client
            .post(format!("{base}/webhooks/shopify"))
            .timeout(Duration::from_secs(5))
            .header("content-type", "application/json")
            .header(header::HMAC, sign(SECRET.as_bytes(), body.as_bytes()))
            .header(header::TOPIC, "orders/create")
            .header(header::SHOP_DOMAIN, "example.myshopify.com")
            .header(header::API_VERSION, "2025-10")
            .header(header::WEBHOOK_ID, uuid::Uuid::new_v4().to_string());
        request = request.body(body);
        async move { request.send().await.map(|r| r.status().as_u16()) }
    };
    let started = Instant::now();
    let statuses = futures_util::future::join_all((0..20).map(webhook)).await;
    let answered_in = started.elapsed();
    for status in &statuses {
        assert!(matches!(status, Ok(200)), "{statuses:?}");
    }
    // Still all there: the server closed none of them.
    let still_open = held
        .iter()
        .filter(|s| {
            matches!(s.try_read(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(still_open, CONNECTIONS);

    drop(held);
    let left = ingestor
        .wait_open_files(|n| n <= files_idle + 10, Duration::from_secs(10))
        .await;
    assert!(left <= files_idle + 10, "{left} files open after closing");
    let after = ingestor.mib("VmRSS");
    let peak = ingestor.mib("VmHWM");
    assert_eq!(webhook(20).await.ok(), Some(200));

    eprintln!(
        "ingestor RSS: idle {idle:.1} MiB, with {CONNECTIONS} connections {with_connections:.1} MiB, \
         after closing them {after:.1} MiB, peak (VmHWM) {peak:.1} MiB; connections opened in \
         {opened_in:.2?}, 20 webhooks answered in {answered_in:.2?} meanwhile"
    );
    assert!(
        peak < RSS_BOUND_MIB,
        "peak RSS {peak:.1} MiB over {RSS_BOUND_MIB} MiB"
    );
    let amqp = vhost.connect().await;
    assert_eq!(hookline_testkit::drain(&amqp, ORDERS).await.len(), 21);
}

/// SIGTERM and SIGINT both drain: a request whose body is still arriving when the signal comes
/// is read, published and answered (with `Connection: close`), then the process exits cleanly.
#[tokio::test]
async fn sigterm_and_sigint_let_a_request_in_flight_finish_and_answer() {
    let app = spawn_app().await;
    for (n, signal) in [(1u64, libc::SIGTERM), (2, libc::SIGINT)] {
        let mut ingestor = IngestorProcess::start(&app.vhost, &[]);
        let address = SocketAddr::from(([127, 0, 0, 1], ingestor.port));
        let mut ready = false;
        for _ in 0..200 {
            let answer = reqwest::get(format!("http://{address}/readyz")).await;
            if answer.is_ok_and(|r| r.status() == 200) {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "the ingestor got ready");
        let body = format!(r#"{{"id":{n}}}"#).into_bytes();
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(&signed_head(&body, &content_length(&body), ""))
            .await
            .unwrap();
        stream.write_all(&body[..2]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pid = libc::pid_t::try_from(ingestor.child.id()).unwrap();
        // SAFETY: sends a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(&body[2..]).await.unwrap();
        let (status, _) = read_response(&mut stream).await;
        assert_eq!(
            status, 200,
            "signal {signal}: the request in flight was answered"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(exit) = ingestor.child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "signal {signal}: the ingestor stopped"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(exit.success(), "signal {signal}: {exit:?}");
    }
    assert_eq!(published_ids(&app).await, vec![1, 2]);
}
