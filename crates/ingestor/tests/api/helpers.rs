//! `spawn_app`: boots the real ingestor on a random port against a fresh vhost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hookline_core::envelope::header;
use hookline_core::signature::sign;
use hookline_ingestor::settings::Settings;
use hookline_ingestor::startup::Application;
use lapin::options::BasicGetOptions;
use lapin::{Connection, ConnectionProperties};

pub const SECRET: &str = "hookline_test_secret_5f2c";
pub const MANAGEMENT: &str = "127.0.0.1:15672";
pub const AMQP_HOST: &str = "amqp://guest:guest@127.0.0.1:5672";

/// A minimal HTTP/1.0 call to the RabbitMQ management API. Blocking on purpose, so a vhost can
/// also be deleted from `Drop`. HTTP/1.0 keeps the answer unchunked.
pub fn management(method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(MANAGEMENT).unwrap_or_else(|e| {
        panic!("RabbitMQ management API not reachable on {MANAGEMENT} ({e}); enable it with `rabbitmq-plugins enable rabbitmq_management` (`make services` does)")
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {MANAGEMENT}\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
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

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A vhost of our own, deleted (with everything in it) when dropped.
pub struct TestVhost {
    pub name: String,
}

impl TestVhost {
    pub fn create() -> Self {
        let name = format!("hookline-test-{}", uuid::Uuid::new_v4().simple());
        let (status, body) = management("PUT", &format!("/api/vhosts/{name}"), Some("{}"));
        assert!(
            status == 201 || status == 204,
            "creating vhost {name}: {status} {body}"
        );
        let vhost = Self { name };
        vhost.grant();
        vhost
    }

    pub fn amqp_url(&self) -> String {
        format!("{AMQP_HOST}/{}", self.name)
    }

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
    /// open connection closed. Other tests' vhosts are untouched.
    pub fn outage(&self) {
        let (status, body) = management(
            "DELETE",
            &format!("/api/permissions/{}/guest", self.name),
            None,
        );
        assert!(status == 204, "revoking permissions: {status} {body}");
        self.close_connections();
    }

    /// Closes every connection to this vhost. The management API learns of new connections
    /// through its statistics (every few seconds), so wait until the ingestor's shows up.
    pub fn close_connections(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let connections = loop {
            let (status, body) = management(
                "GET",
                &format!("/api/vhosts/{}/connections", self.name),
                None,
            );
            assert_eq!(status, 200, "{body}");
            let connections: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
            let ingestor_listed = connections.iter().any(|c| {
                c["user_provided_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("hookline-ingestor"))
            });
            if ingestor_listed {
                break connections;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the ingestor's connection never showed up in {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        for c in connections {
            let name = c["name"].as_str().unwrap();
            management(
                "DELETE",
                &format!("/api/connections/{}", percent_encode(name)),
                None,
            );
        }
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = management("DELETE", &format!("/api/vhosts/{}", self.name), None);
    }
}

pub struct TestApp {
    pub address: String,
    pub vhost: TestVhost,
    pub client: reqwest::Client,
    pub amqp: Connection,
    server: actix_web::dev::ServerHandle,
}

/// Options a test may change; everything else is the production default.
pub struct AppOptions {
    pub secrets: String,
    pub queue_max_length: Option<u32>,
    pub confirm_timeout_ms: u64,
    pub max_body_bytes: Option<usize>,
    /// Replaces the vhost URL, e.g. with an address where no broker listens.
    pub amqp_url: Option<String>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            secrets: SECRET.into(),
            queue_max_length: None,
            confirm_timeout_ms: 2000,
            max_body_bytes: None,
            amqp_url: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let vhost = TestVhost::create();
    let amqp_url = options.amqp_url.clone().unwrap_or_else(|| vhost.amqp_url());
    let mut env = vec![
        ("HOOKLINE_HTTP_ADDR", "127.0.0.1:0".to_string()),
        ("HOOKLINE_HTTP_WORKERS", "1".to_string()),
        ("HOOKLINE_AMQP_CHANNELS", "2".to_string()),
        ("HOOKLINE_AMQP_URL", amqp_url),
        ("HOOKLINE_SHOPIFY_SECRETS", options.secrets.clone()),
        (
            "HOOKLINE_CONFIRM_TIMEOUT_MS",
            options.confirm_timeout_ms.to_string(),
        ),
        ("HOOKLINE_SHUTDOWN_TIMEOUT_SECS", "5".to_string()),
    ];
    if let Some(n) = options.queue_max_length {
        env.push(("HOOKLINE_QUEUE_MAX_LENGTH", n.to_string()));
    }
    if let Some(n) = options.max_body_bytes {
        env.push(("HOOKLINE_MAX_BODY_BYTES", n.to_string()));
    }
    let settings = Settings::from_lookup(|k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let app = Application::build(settings).expect("the ingestor builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    let amqp = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .expect("test connection to the broker");
    let app = TestApp {
        address,
        vhost,
        client: reqwest::Client::new(),
        amqp,
        server,
    };
    if options.amqp_url.is_none() {
        app.wait_ready(Duration::from_secs(20)).await;
    }
    app
}

/// A webhook as Shopify would send it; tests change what they need.
#[derive(Clone)]
pub struct Webhook {
    pub body: Vec<u8>,
    pub topic: String,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub omit: Vec<&'static str>,
}

impl Webhook {
    pub fn new(topic: &str, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        Self {
            signature: Some(sign(SECRET.as_bytes(), &body)),
            body,
            topic: topic.into(),
            content_type: Some("application/json".into()),
            headers: vec![],
            omit: vec![],
        }
    }

    pub fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../fixtures/shopify/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    pub fn signed_with(mut self, secret: &str) -> Self {
        self.signature = Some(sign(secret.as_bytes(), &self.body));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn without(mut self, name: &'static str) -> Self {
        self.omit.push(name);
        self
    }
}

impl TestApp {
    pub async fn post(&self, webhook: &Webhook) -> reqwest::Response {
        self.try_post(webhook).await.expect("the ingestor answers")
    }

    pub async fn try_post(&self, webhook: &Webhook) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .client
            .post(format!("{}/webhooks/shopify", self.address));
        let defaults = [
            (header::TOPIC, Some(webhook.topic.clone())),
            (header::HMAC, webhook.signature.clone()),
            ("content-type", webhook.content_type.clone()),
            (
                header::SHOP_DOMAIN,
                Some("example.myshopify.com".to_string()),
            ),
            (header::API_VERSION, Some("2025-10".to_string())),
            (header::WEBHOOK_ID, Some(uuid::Uuid::new_v4().to_string())),
            (
                header::TRIGGERED_AT,
                Some("2026-11-20T15:16:40.123Z".to_string()),
            ),
        ];
        for (name, value) in defaults {
            let overridden = webhook.headers.iter().any(|(n, _)| n == name);
            if let (Some(value), false, false) = (value, webhook.omit.contains(&name), overridden) {
                request = request.header(name, value);
            }
        }
        for (name, value) in &webhook.headers {
            request = request.header(name, value);
        }
        request.body(webhook.body.clone()).send().await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the ingestor answers")
    }

    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.get("/readyz").await.status() == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ingestor not ready within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes every message from `queue` (acking it), oldest first.
    pub async fn drain(&self, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
        let channel = self.amqp.create_channel().await.unwrap();
        let mut messages = vec![];
        while let Some(m) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            messages.push(m);
        }
        messages
    }

    pub async fn stop(&self) {
        self.server.stop(true).await;
    }
}

/// Replaces the test's own AMQP connection (closed by an outage) with a fresh one.
pub async fn reconnect(mut app: TestApp) -> TestApp {
    app.amqp = Connection::connect(&app.vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    app
}
