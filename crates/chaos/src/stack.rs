//! One isolated hookline deployment per scenario: its own RabbitMQ vhost, PostgreSQL database
//! and Redis server (a `redis-server` child on a free port, so stopping or flushing it touches
//! nobody else), the sandbox in-process, and the real `hookline-ingestor` and `hookline-worker`
//! binaries as child processes that can be killed, stopped and restarted.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hookline_sandbox::Sandbox;
use hookline_testkit::{TestDatabase, TestVhost};

/// The shop all webhooks come from.
pub const SHOP: &str = "chaos.myshopify.com";
/// The webhook secret the ingestor is given.
pub const SECRET: &str = "hookline-chaos-secret";

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process we own: killed when dropped.
pub struct Proc {
    name: String,
    command: Vec<(String, String)>,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(
        name: &str,
        program: PathBuf,
        args: &[&str],
        env: Vec<(String, String)>,
        logs: &Path,
    ) -> Self {
        Self {
            name: name.to_owned(),
            command: env,
            program,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log: logs.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts (or restarts) the process; its output is appended to its log file.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.command.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} ({}); run `make chaos`, which builds it",
                    self.name,
                    self.program.display()
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let Some(child) = &self.child else {
            bail!("{} is not running", self.name)
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the binaries are: next to this one (`target/<profile>/`).
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("no directory for the chaos binary")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found; build it first (`make chaos` does: cargo build -p hookline-ingestor -p hookline-worker)",
            path.display()
        );
    }
    Ok(path)
}

/// Settings of one stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `HOOKLINE_QUEUE_MAX_LENGTH` for the ingestor and the worker.
    pub queue_max_length: u32,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            queue_max_length: 100_000,
        }
    }
}

/// One scenario's deployment.
pub struct Stack {
    /// The vhost (deleted on drop).
    pub vhost: TestVhost,
    /// The database (dropped on drop).
    pub db: TestDatabase,
    /// The sandbox (sevDesk, ERP) in this process.
    pub sandbox: Sandbox,
    /// Redis, our own server.
    pub redis: Proc,
    /// Its port.
    pub redis_port: u16,
    /// The ingestor process.
    pub ingestor: Proc,
    /// The worker process.
    pub worker: Proc,
    /// The ingestor's webhook URL.
    pub webhook_url: String,
    ingestor_port: u16,
    worker_port: u16,
    sandbox_server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Stack {
    /// Creates the vhost, database and Redis, starts the sandbox, the ingestor and the worker,
    /// and waits until both report ready.
    pub async fn start(name: &str, options: &StackOptions, logs: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs)?;
        let vhost = TestVhost::create();
        let db = TestDatabase::create().await;
        let (sandbox, server) = Sandbox::bind("127.0.0.1:0")?;
        let sandbox_server = tokio::spawn(server);

        let redis_port = free_port()?;
        let mut redis = Proc::new(
            &format!("{name}-redis"),
            PathBuf::from("redis-server"),
            &[
                "--bind",
                "127.0.0.1",
                "--port",
                &redis_port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            vec![],
            logs,
        );
        redis.start()?;

        let ingestor_port = free_port()?;
        let worker_port = free_port()?;
        let max_length = options.queue_max_length.to_string();
        let common = vec![
            ("HOOKLINE_AMQP_URL".to_owned(), vhost.amqp_url()),
            ("HOOKLINE_QUEUE_MAX_LENGTH".to_owned(), max_length),
            ("RUST_LOG".to_owned(), "info".to_owned()),
            // A test harness: development values are allowed.
            ("HOOKLINE_DEV".to_owned(), "1".to_owned()),
        ];
        let mut ingestor_env = common.clone();
        ingestor_env.extend([
            (
                "HOOKLINE_HTTP_ADDR".to_owned(),
                format!("127.0.0.1:{ingestor_port}"),
            ),
            ("HOOKLINE_HTTP_WORKERS".to_owned(), "2".to_owned()),
            ("HOOKLINE_SHOPIFY_SECRETS".to_owned(), SECRET.to_owned()),
        ]);
        let mut worker_env = common;
        worker_env.extend(
            [
                ("HOOKLINE_DATABASE_URL", db.url()),
                (
                    "HOOKLINE_REDIS_URL",
                    format!("redis://127.0.0.1:{redis_port}"),
                ),
                ("HOOKLINE_REDIS_PREFIX", "chaos".to_owned()),
                ("HOOKLINE_ERP_URL", sandbox.erp_url()),
                ("HOOKLINE_SEVDESK_URL", sandbox.sevdesk_url()),
                (
                    "HOOKLINE_WORKER_HTTP_ADDR",
                    format!("127.0.0.1:{worker_port}"),
                ),
                ("HOOKLINE_WORKER_DOMAINS", "inventory,orders".to_owned()),
                // Transient faults are waited out, not dead-lettered: enough attempts, short
                // delays, a breaker that probes again soon.
                ("HOOKLINE_RETRY_MAX_ATTEMPTS", "30".to_owned()),
                ("HOOKLINE_RETRY_INITIAL_MS", "200".to_owned()),
                ("HOOKLINE_RETRY_MAX_DELAY_MS", "2000".to_owned()),
                ("HOOKLINE_BREAKER_OPEN_MS", "500".to_owned()),
                ("HOOKLINE_SEVDESK_TIMEOUT_MS", "1000".to_owned()),
                ("HOOKLINE_SEVDESK_SETTLE_SECS", "3".to_owned()),
                ("HOOKLINE_ERP_TIMEOUT_MS", "1000".to_owned()),
                ("HOOKLINE_OUTBOX_POLL_MS", "200".to_owned()),
                ("HOOKLINE_SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
                // After a kill -9, the dead worker's claims and outbox leases must run out
                // before others take over: recovery is bounded by these two.
                // Half of it is the handler timeout, which must fit 8 sevDesk calls of 1 s.
                ("HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS", "20".to_owned()),
                ("HOOKLINE_OUTBOX_LEASE_SECS", "10".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let ingestor = Proc::new(
            &format!("{name}-ingestor"),
            binary("hookline-ingestor")?,
            &[],
            ingestor_env,
            logs,
        );
        let worker = Proc::new(
            &format!("{name}-worker"),
            binary("hookline-worker")?,
            &[],
            worker_env,
            logs,
        );
        let mut stack = Self {
            vhost,
            db,
            sandbox,
            redis,
            redis_port,
            ingestor,
            worker,
            webhook_url: format!("http://127.0.0.1:{ingestor_port}/webhooks/shopify"),
            ingestor_port,
            worker_port,
            sandbox_server,
        };
        // The worker first: it applies the migrations and declares the topology.
        stack.worker.start()?;
        stack.wait_worker_ready(Duration::from_secs(30)).await?;
        stack.ingestor.start()?;
        stack.wait_ingestor_ready(Duration::from_secs(30)).await?;
        Ok(stack)
    }

    /// Waits until the ingestor's `/readyz` answers 200.
    pub async fn wait_ingestor_ready(&self, within: Duration) -> anyhow::Result<()> {
        wait_ready(self.ingestor_port, within)
            .await
            .context("the ingestor did not become ready (see its log under target/chaos/)")
    }

    /// Waits until the worker's `/readyz` answers 200 (it is consuming).
    pub async fn wait_worker_ready(&self, within: Duration) -> anyhow::Result<()> {
        wait_ready(self.worker_port, within)
            .await
            .context("the worker did not become ready (see its log under target/chaos/)")
    }

    /// Stops everything the stack started; the vhost and database go when it is dropped.
    pub async fn stop(mut self) {
        self.ingestor.kill();
        let _ = self.worker.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            if self
                .worker
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.worker.kill();
        self.redis.kill();
        self.sandbox.stop().await;
        self.sandbox_server.abort();
    }
}

async fn wait_ready(port: u16, within: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?;
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("127.0.0.1:{port}/readyz not ready after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
