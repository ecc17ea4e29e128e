//! Isolation for black-box tests against the real local services.
//!
//! Every test gets a RabbitMQ vhost ([`TestVhost`]), a PostgreSQL database ([`TestDatabase`]) and
//! a Redis key prefix ([`TestRedis`]) of its own, so tests run in parallel and leave nothing
//! behind: each is removed when dropped, even when the test panics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hookline_core::envelope::{Envelope, WebhookHeaders, header};
use hookline_core::signature::{Verifier, sign};
use hookline_core::topology::EVENTS_EXCHANGE;
use hookline_core::trace::TraceParent;
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Confirmation, Connection, ConnectionProperties};

/// The RabbitMQ management API.
pub const MANAGEMENT: &str = "127.0.0.1:15672";
/// The broker, without vhost.
pub const AMQP_HOST: &str = "amqp://guest:guest@127.0.0.1:5672";
/// PostgreSQL server, without database.
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
/// Redis.
pub const REDIS: &str = "redis://127.0.0.1:6379";
/// The secret the fixtures' HMAC vectors were made with.
pub const SECRET: &str = "hookline_test_secret_5f2c";

/// A minimal HTTP/1.0 call to the RabbitMQ management API. Blocking on purpose, so cleanup can
/// run from `Drop`; HTTP/1.0 keeps the answer unchunked.
pub fn management(method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(MANAGEMENT).unwrap_or_else(|e| {
        panic!("RabbitMQ management API not reachable on {MANAGEMENT} ({e}); enable it with `rabbitmq-plugins enable rabbitmq_management` (`make services` does)")
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("socket timeout");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {MANAGEMENT}\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("management request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("management response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Percent-encodes a path segment.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A vhost of our own, deleted (with everything in it) when dropped.
pub struct TestVhost {
    /// The vhost's name.
    pub name: String,
}

impl TestVhost {
    /// Creates the vhost and grants `guest` everything on it.
    pub fn create() -> Self {
        let name = unique("hookline-test").replace('_', "-");
        let (status, body) = management("PUT", &format!("/api/vhosts/{name}"), Some("{}"));
        assert!(
            status == 201 || status == 204,
            "creating vhost {name}: {status} {body}"
        );
        let vhost = Self { name };
        vhost.grant();
        vhost
    }

    /// The AMQP URL of this vhost.
    pub fn amqp_url(&self) -> String {
        format!("{AMQP_HOST}/{}", self.name)
    }

    /// Grants `guest` full permissions.
    pub fn grant(&self) {
        let (status, body) = management(
            "PUT",
            &format!("/api/permissions/{}/guest", self.name),
            Some(r#"{"configure":".*","write":".*","read":".*"}"#),
        );
        assert!(
            status == 201 || status == 204,
            "granting permissions: {status} {body}"
        );
    }

    /// Takes the broker away from this vhost's clients: no permission to reconnect, and every
    /// open connection whose name starts with `client` closed. Other vhosts are untouched.
    pub fn outage(&self, client: &str) {
        let (status, body) = management(
            "DELETE",
            &format!("/api/permissions/{}/guest", self.name),
            None,
        );
        assert!(status == 204, "revoking permissions: {status} {body}");
        self.close_connections(client);
    }

    /// Closes every connection to this vhost, once one named `client…` is listed (the
    /// management API learns of new connections through statistics, every few seconds).
    pub fn close_connections(&self, client: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let connections = loop {
            let (status, body) = management(
                "GET",
                &format!("/api/vhosts/{}/connections", self.name),
                None,
            );
            assert_eq!(status, 200, "{body}");
            let connections: Vec<serde_json::Value> =
                serde_json::from_str(&body).expect("connections JSON");
            if connections.iter().any(|c| {
                c["user_provided_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(client))
            }) {
                break connections;
            }
            assert!(
                Instant::now() < deadline,
                "no connection named {client}… showed up in {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        for c in connections {
            if let Some(name) = c["name"].as_str() {
                management(
                    "DELETE",
                    &format!("/api/connections/{}", percent_encode(name)),
                    None,
                );
            }
        }
    }

    /// A new connection to this vhost.
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.amqp_url(), ConnectionProperties::default())
            .await
            .expect("test connection to the broker")
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = management("DELETE", &format!("/api/vhosts/{}", self.name), None);
    }
}

/// Runs `f` on a fresh current-thread runtime in its own thread: async cleanup from `Drop`,
/// whatever runtime (or none) the dropping code runs on.
fn block_on_side<F>(f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(f);
        }
    })
    .join();
}

/// A database of our own, dropped (with `FORCE`) when dropped.
pub struct TestDatabase {
    /// The database's name.
    pub name: String,
}

impl TestDatabase {
    /// Creates an empty database.
    pub async fn create() -> Self {
        let name = unique("hookline_test");
        let admin = admin_client().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        Self { name }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("{POSTGRES}/{}", self.name)
    }

    /// A client connected to it.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// `SELECT count(*) FROM <rest>`.
    pub async fn count(&self, rest: &str) -> i64 {
        self.client()
            .await
            .query_one(&format!("SELECT count(*) FROM {rest}"), &[])
            .await
            .expect("count")
            .get(0)
    }

    /// Waits until `SELECT count(*) FROM <rest>` reaches `n`, returning the last count.
    pub async fn wait_count(&self, rest: &str, n: i64, within: Duration) -> i64 {
        let client = self.client().await;
        let deadline = Instant::now() + within;
        loop {
            let count: i64 = client
                .query_one(&format!("SELECT count(*) FROM {rest}"), &[])
                .await
                .expect("count")
                .get(0);
            if count >= n || Instant::now() > deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&format!("{POSTGRES}/postgres"), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (make services starts it)");
    tokio::spawn(connection);
    client
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_side(async move {
            let admin = admin_client().await;
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        });
    }
}

/// A Redis key prefix of our own; its keys are deleted when dropped.
pub struct TestRedis {
    /// The prefix (`HOOKLINE_REDIS_PREFIX`).
    pub prefix: String,
}

impl TestRedis {
    /// A new prefix.
    pub fn new() -> Self {
        Self {
            prefix: unique("hookline-test"),
        }
    }

    /// Deletes every key under the prefix: a `FLUSHALL` that spares the other tests' keys.
    pub async fn flush(&self) {
        flush_prefix(&self.prefix).await;
    }

    /// Sets `key` (without the prefix) to `value` with a TTL, as another worker would.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) {
        let client = redis::Client::open(REDIS).expect("redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis on 127.0.0.1:6379");
        let _: () = redis::cmd("SET")
            .arg(format!("{}:{key}", self.prefix))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .expect("SET");
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

async fn flush_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(REDIS) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        block_on_side(async move { flush_prefix(&prefix).await });
    }
}

/// An envelope as the ingestor would build it from a signed webhook.
pub fn envelope(topic: &str, shop: &str, body: &str) -> Envelope {
    envelope_with(topic, shop, body, &[])
}

/// [`envelope`], with more Shopify headers (lowercase names, e.g. [`header::EVENT_ID`] or
/// [`header::TRIGGERED_AT`]), as a webhook that carried them.
pub fn envelope_with(topic: &str, shop: &str, body: &str, extra: &[(&str, &str)]) -> Envelope {
    let webhook_id = uuid::Uuid::new_v4().to_string();
    let headers = WebhookHeaders::parse(|name| match name {
        header::TOPIC => Some(topic),
        header::SHOP_DOMAIN => Some(shop),
        header::WEBHOOK_ID => Some(webhook_id.as_str()),
        header::API_VERSION => Some("2025-10"),
        other => extra.iter().find(|(n, _)| *n == other).map(|(_, v)| *v),
    })
    .expect("valid test headers");
    let verified = Verifier::new([SECRET])
        .expect("secret")
        .verify(
            body.as_bytes().to_vec(),
            Some(&sign(SECRET.as_bytes(), body.as_bytes())),
        )
        .expect("signed");
    Envelope::from_webhook(
        headers,
        verified,
        chrono::Utc::now(),
        TraceParent::new_root(),
    )
    .expect("valid test envelope")
}

/// Publishes to `hookline.events` with the routing key of the envelope's topic, confirmed.
pub async fn publish(connection: &Connection, envelope: &Envelope) {
    publish_raw(
        connection,
        EVENTS_EXCHANGE,
        &envelope.routing_key(),
        &envelope.to_json(),
        envelope.amqp_properties("hookline-test"),
    )
    .await;
}

/// Publishes arbitrary bytes, confirmed.
pub async fn publish_raw(
    connection: &Connection,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: lapin::BasicProperties,
) {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert_eq!(
        confirm,
        Confirmation::Ack(None),
        "the broker accepted the test message"
    );
    let _ = channel.close(200, "published".into()).await;
}

/// Takes every message from `queue` (acking it), oldest first.
pub async fn drain(connection: &Connection, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let channel = connection.create_channel().await.expect("channel");
    let mut messages = vec![];
    while let Some(m) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        messages.push(m);
    }
    let _ = channel.close(200, "drained".into()).await;
    messages
}

/// Waits until `queue` holds at least one message, then drains it.
pub async fn wait_for_messages(
    connection: &Connection,
    queue: &str,
    within: Duration,
) -> Vec<lapin::message::BasicGetMessage> {
    let deadline = Instant::now() + within;
    loop {
        let messages = drain(connection, queue).await;
        if !messages.is_empty() || Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A header of a message as text (strings, or numbers formatted).
pub fn header_text(properties: &lapin::BasicProperties, name: &str) -> Option<String> {
    use lapin::types::AMQPValue;
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}
