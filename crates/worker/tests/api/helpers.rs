//! A world of one's own (vhost, database, Redis prefix, ERP) and workers running in it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::Domain;
use hookline_core::topology::{self, TopologySettings};
use hookline_sandbox::{Faults, Sandbox};
use hookline_testkit::{TestDatabase, TestRedis, TestVhost};
use hookline_worker::domains::DomainHandler;
use hookline_worker::settings::Settings;
use hookline_worker::startup::Worker;
use lapin::Connection;
use tokio_util::sync::CancellationToken;

pub const SHOP: &str = "example.myshopify.com";

/// A worker running only the orders bulkhead, without the outbox relay.
pub const ORDERS_ONLY: &[(&str, &str)] = &[
    ("HOOKLINE_WORKER_DOMAINS", "orders"),
    ("HOOKLINE_OUTBOX_RELAY", "false"),
];

/// The sample `orders/paid` webhook.
pub fn paid() -> hookline_core::Envelope {
    hookline_testkit::envelope(
        "orders/paid",
        SHOP,
        include_str!("../../../../fixtures/shopify/orders-paid.json"),
    )
}

/// The sample `orders/cancelled` webhook.
pub fn cancelled() -> hookline_core::Envelope {
    hookline_testkit::envelope(
        "orders/cancelled",
        SHOP,
        include_str!("../../../../fixtures/shopify/orders-cancelled.json"),
    )
}

/// What the ERP (played by the sandbox) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErpMode {
    Status(u16),
    /// Never answers (until the client gives up).
    Hang,
}

/// One request the ERP answered.
#[derive(Debug, Clone)]
pub struct ErpRequest {
    pub idempotency_key: String,
    pub traceparent: Option<String>,
    pub body: serde_json::Value,
    pub answered: u16,
}

/// The sandbox's ERP endpoint, with the few controls these tests use.
pub struct TestErp {
    pub url: String,
    /// The whole sandbox: it also plays sevDesk.
    pub sandbox: Sandbox,
}

impl TestErp {
    pub fn start() -> Self {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        Self {
            url: sandbox.erp_url(),
            sandbox,
        }
    }

    pub fn set(&self, mode: ErpMode) {
        let faults = match mode {
            ErpMode::Status(s) if s < 300 => Faults::default(),
            ErpMode::Status(s) => Faults {
                error_rate: 1.0,
                error_status: Some(s),
                retry_after_secs: Some(0),
                ..Faults::default()
            },
            ErpMode::Hang => Faults {
                hang: true,
                ..Faults::default()
            },
        };
        self.sandbox.state.set_erp_faults(faults);
    }

    pub fn requests(&self) -> Vec<ErpRequest> {
        self.sandbox
            .state
            .erp_requests()
            .into_iter()
            .map(|r| ErpRequest {
                idempotency_key: r.idempotency_key.unwrap_or_default(),
                traceparent: r.traceparent,
                body: r.body,
                answered: r.answered,
            })
            .collect()
    }

    /// Requests that arrived, answered or not (a hanging one counts at once).
    pub fn arrived(&self) -> usize {
        self.sandbox.state.erp_arrived()
    }

    /// Successful deliveries per idempotency key.
    pub fn successes(&self) -> HashMap<String, usize> {
        let mut map = HashMap::new();
        for r in self
            .requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
        {
            *map.entry(r.idempotency_key).or_insert(0) += 1;
        }
        map
    }
}

pub struct World {
    pub vhost: TestVhost,
    pub db: TestDatabase,
    pub redis: TestRedis,
    pub amqp: Connection,
    pub erp: TestErp,
}

impl World {
    pub async fn new() -> Self {
        // RUST_LOG=… shows the in-process workers' logs when a test needs a closer look.
        if std::env::var_os("RUST_LOG").is_some() {
            hookline_telemetry::init_logging(hookline_telemetry::LogFormat::Text);
        }
        let vhost = TestVhost::create();
        let amqp = vhost.connect().await;
        let channel = amqp.create_channel().await.unwrap();
        topology::declare(&channel, &TopologySettings::default())
            .await
            .unwrap();
        Self {
            vhost,
            db: TestDatabase::create().await,
            redis: TestRedis::new(),
            amqp,
            erp: TestErp::start(),
        }
    }

    /// Settings pointing at this world, with `extra` variables on top.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut env: HashMap<String, String> = HashMap::from([
            ("HOOKLINE_AMQP_URL".into(), self.vhost.amqp_url()),
            ("HOOKLINE_DATABASE_URL".into(), self.db.url()),
            ("HOOKLINE_REDIS_PREFIX".into(), self.redis.prefix.clone()),
            ("HOOKLINE_ERP_URL".into(), self.erp.url.clone()),
            (
                "HOOKLINE_SEVDESK_URL".into(),
                self.erp.sandbox.sevdesk_url(),
            ),
            ("HOOKLINE_WORKER_HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("HOOKLINE_IDEMPOTENCY_DONE_TTL_SECS".into(), "120".into()),
            ("HOOKLINE_SHUTDOWN_TIMEOUT_SECS".into(), "5".into()),
            // Unknown outcomes settle quickly in tests: requests time out after 1 s, and a
            // late commit lands within the 2 s settle.
            ("HOOKLINE_SEVDESK_TIMEOUT_MS".into(), "1000".into()),
            ("HOOKLINE_SEVDESK_SETTLE_SECS".into(), "2".into()),
        ]);
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        Settings::from_lookup(|k| env.get(k).cloned()).unwrap()
    }

    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vec![
            ("HOOKLINE_AMQP_URL".to_string(), self.vhost.amqp_url()),
            ("HOOKLINE_DATABASE_URL".to_string(), self.db.url()),
            (
                "HOOKLINE_REDIS_PREFIX".to_string(),
                self.redis.prefix.clone(),
            ),
            ("HOOKLINE_ERP_URL".to_string(), self.erp.url.clone()),
            (
                "HOOKLINE_SEVDESK_URL".to_string(),
                self.erp.sandbox.sevdesk_url(),
            ),
            (
                "HOOKLINE_WORKER_HTTP_ADDR".to_string(),
                "127.0.0.1:0".to_string(),
            ),
            (
                "HOOKLINE_IDEMPOTENCY_DONE_TTL_SECS".to_string(),
                "120".to_string(),
            ),
            (
                "HOOKLINE_SEVDESK_TIMEOUT_MS".to_string(),
                "1000".to_string(),
            ),
            ("HOOKLINE_SEVDESK_SETTLE_SECS".to_string(), "2".to_string()),
            ("RUST_LOG".to_string(), "warn".to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// The worker binary as a separate process, as operators run it (to be killed or signalled).
    pub fn worker_process(&self, extra: &[(&str, &str)]) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
            .envs(self.env(extra))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the worker binary starts")
    }

    pub async fn spawn_worker(&self, extra: &[(&str, &str)]) -> RunningWorker {
        RunningWorker::start(
            Worker::build(self.settings(extra))
                .await
                .expect("worker builds"),
        )
        .await
    }

    pub async fn spawn_worker_with(
        &self,
        extra: &[(&str, &str)],
        domain: Domain,
        handler: Arc<dyn DomainHandler>,
    ) -> RunningWorker {
        let worker = Worker::build(self.settings(extra))
            .await
            .expect("worker builds")
            .with_handler(domain, handler);
        RunningWorker::start(worker).await
    }

    pub async fn publish(&self, envelope: &hookline_core::Envelope) {
        hookline_testkit::publish(&self.amqp, envelope).await;
    }

    /// The `order_sync` state of `order_id` in [`SHOP`], if the order is known.
    pub async fn order_state(&self, order_id: i64) -> Option<String> {
        self.db
            .client()
            .await
            .query_opt(
                "SELECT state FROM order_sync WHERE shop_domain = $1 AND order_id = $2",
                &[&SHOP, &order_id],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0))
    }

    /// Waits until `order_id` is in `state` or `within` has passed; returns the last state seen.
    pub async fn wait_order_state(
        &self,
        order_id: i64,
        state: &str,
        within: Duration,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let current = self.order_state(order_id).await;
            if current.as_deref() == Some(state) || std::time::Instant::now() > deadline {
                return current;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the sandbox's sevDesk has seen `operation` at least `n` times.
    pub async fn wait_sevdesk_calls(&self, operation: &str, n: usize, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while self.erp.sandbox.state.sevdesk.calls(operation) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{operation} called fewer than {n} times"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The invoices the sandbox's sevDesk holds, cancellations (`SR`) left out.
    pub fn regular_invoices(&self) -> Vec<hookline_sandbox::sevdesk::Invoice> {
        self.erp
            .sandbox
            .state
            .sevdesk
            .invoices()
            .into_iter()
            .filter(|i| i.invoice_type == "RE")
            .collect()
    }

    /// Ready messages in `queue`.
    pub async fn depth(&self, queue: &str) -> u32 {
        let channel = self.amqp.create_channel().await.unwrap();
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = channel
            .queue_declare(queue.into(), options, Default::default())
            .await
            .unwrap();
        let _ = channel.close(200, "".into()).await;
        q.message_count()
    }

    /// Waits until `queue` has no ready message, then a moment for in-flight ones to finish.
    pub async fn wait_queue_empty(&self, queue: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.depth(queue).await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} did not empty"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// `available` and `version` of one stock row.
    pub async fn stock(&self, item: i64, location: i64) -> Option<(Option<i64>, i64)> {
        let client = self.db.client().await;
        client
            .query_opt("SELECT available, version FROM warehouse_stock WHERE inventory_item_id = $1 AND location_id = $2", &[&item, &location])
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
    }
}

pub struct RunningWorker {
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub http_port: u16,
}

impl RunningWorker {
    async fn start(worker: Worker) -> Self {
        let http_port = worker.http_port();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        let running = Self {
            shutdown,
            task: Some(task),
            http_port,
        };
        running.wait_consuming().await;
        running
    }

    async fn wait_consuming(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let ready = client
                .get(format!("http://127.0.0.1:{}/readyz", self.http_port))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the worker did not start consuming");
    }

    #[allow(dead_code)]
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An `inventory_levels/update` body.
pub fn level(item: i64, location: i64, available: i64, updated_at: &str) -> String {
    format!(
        r#"{{"inventory_item_id":{item},"location_id":{location},"available":{available},"updated_at":"{updated_at}","admin_graphql_api_id":"gid://shopify/InventoryLevel/{location}?inventory_item_id={item}"}}"#
    )
}

pub fn level_envelope(
    item: i64,
    location: i64,
    available: i64,
    updated_at: &str,
) -> hookline_core::Envelope {
    hookline_testkit::envelope(
        "inventory_levels/update",
        SHOP,
        &level(item, location, available, updated_at),
    )
}
