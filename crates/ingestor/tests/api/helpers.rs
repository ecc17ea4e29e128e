//! `spawn_app`: boots the real ingestor on a random port against a fresh vhost.

use std::time::Duration;

use hookline_core::envelope::header::{self, HeaderForm};
use hookline_core::signature::sign;
use hookline_ingestor::settings::Settings;
use hookline_ingestor::startup::{Application, Stopper};
use lapin::{Connection, ConnectionProperties};

pub use hookline_testkit::SECRET;
use hookline_testkit::TestVhost;

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub vhost: TestVhost,
    pub client: reqwest::Client,
    pub amqp: Connection,
    server: Stopper,
}

/// Options a test may change; everything else is the production default.
pub struct AppOptions {
    pub secrets: String,
    pub queue_max_length: Option<u32>,
    pub confirm_timeout_ms: u64,
    pub max_body_bytes: Option<usize>,
    /// Replaces the vhost URL, e.g. with an address where no broker listens.
    pub amqp_url: Option<String>,
    /// `HOOKLINE_HTTP_CLIENT_TIMEOUT_MS`.
    pub client_timeout_ms: Option<u64>,
    /// `HOOKLINE_HTTP_KEEP_ALIVE_MS`.
    pub keep_alive_ms: Option<u64>,
    /// `HOOKLINE_SHOPS`.
    pub shops: Option<String>,
    /// `HOOKLINE_SHOPS_FILE`.
    pub shops_file: Option<String>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            secrets: SECRET.into(),
            queue_max_length: None,
            confirm_timeout_ms: 2000,
            max_body_bytes: None,
            amqp_url: None,
            client_timeout_ms: None,
            keep_alive_ms: None,
            shops: None,
            shops_file: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let vhost = TestVhost::create();
    let amqp_url = options.amqp_url.clone().unwrap_or_else(|| vhost.amqp_url());
    let settings = settings(&options, amqp_url);
    let app = Application::build(settings).expect("the ingestor builds");
    let port = app.port();
    let address = format!("http://127.0.0.1:{port}");
    let server = app.stopper();
    tokio::spawn(app.run_until_stopped());
    let amqp = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .expect("test connection to the broker");
    let app = TestApp {
        address,
        port,
        vhost,
        // Idle connections are dropped before actix closes them (its keep-alive is 5 s), so a
        // request never lands on a socket the server is closing.
        client: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
        amqp,
        server,
    };
    if options.amqp_url.is_none() {
        app.wait_ready(Duration::from_secs(20)).await;
    }
    app
}

/// Another ingestor process's worth, on the same vhost: started, ready, stopped by the test.
pub struct Ingestor {
    pub address: String,
    server: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Ingestor {
    /// Stops it as SIGTERM does, and waits until it has stopped.
    pub async fn stop(self) {
        self.server.stop().await;
        let _ = self.task.await;
    }
}

impl TestApp {
    /// Starts another ingestor with the default options on this app's vhost, and waits until it
    /// is ready.
    pub async fn start_another(&self) -> Ingestor {
        let settings = settings(&AppOptions::default(), self.vhost.amqp_url());
        let app = Application::build(settings).expect("the ingestor builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let server = app.stopper();
        let task = tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(format!("{address}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ingestor {
            address,
            server,
            task,
        }
    }
}

fn settings(options: &AppOptions, amqp_url: String) -> Settings {
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
    if let Some(ms) = options.client_timeout_ms {
        env.push(("HOOKLINE_HTTP_CLIENT_TIMEOUT_MS", ms.to_string()));
    }
    if let Some(ms) = options.keep_alive_ms {
        env.push(("HOOKLINE_HTTP_KEEP_ALIVE_MS", ms.to_string()));
    }
    if let Some(shops) = &options.shops {
        env.push(("HOOKLINE_SHOPS", shops.clone()));
    }
    if let Some(path) = &options.shops_file {
        env.push(("HOOKLINE_SHOPS_FILE", path.clone()));
    }
    Settings::from_lookup(|k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
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
    /// Names the default headers are sent under (`X-Shopify-*` unless a test says otherwise).
    pub form: HeaderForm,
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
            form: HeaderForm::Legacy,
        }
    }

    pub fn form(mut self, form: HeaderForm) -> Self {
        self.form = form;
        self
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
        self.try_send(reqwest::Method::POST, webhook).await
    }

    /// `webhook` with any method, e.g. to see what the endpoint does with a PUT.
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        webhook: &Webhook,
    ) -> reqwest::Result<reqwest::Response> {
        send_to(&self.client, &self.address, method, webhook).await
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
        hookline_testkit::drain(&self.amqp, queue).await
    }

    pub async fn stop(&self) {
        self.server.stop().await;
    }
}

/// Replaces the test's own AMQP connection (closed by an outage) with a fresh one.
pub async fn reconnect(mut app: TestApp) -> TestApp {
    app.amqp = Connection::connect(&app.vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    app
}

/// POSTs `webhook` to the ingestor at `address`.
pub async fn post_to(
    client: &reqwest::Client,
    address: &str,
    webhook: &Webhook,
) -> reqwest::Result<reqwest::Response> {
    send_to(client, address, reqwest::Method::POST, webhook).await
}

async fn send_to(
    client: &reqwest::Client,
    address: &str,
    method: reqwest::Method,
    webhook: &Webhook,
) -> reqwest::Result<reqwest::Response> {
    let mut request = client.request(method, format!("{address}/webhooks/shopify"));

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
    for (legacy, value) in defaults {
        for name in webhook.form.names(legacy) {
            let overridden = webhook.headers.iter().any(|(n, _)| n == name);
            if let (Some(value), false, false) = (&value, webhook.omit.contains(&name), overridden)
            {
                request = request.header(name, value);
            }
        }
    }
    for (name, value) in &webhook.headers {
        request = request.header(name, value);
    }
    request.body(webhook.body.clone()).send().await
}
