//! `make bench`: how fast the ingestor accepts webhooks, measured side by side with the raw
//! ceiling of the same broker, in one run on one machine.
//!
//! 1. **Raw ceiling**: a minimal lapin publisher sends the exact envelope bytes the ingestor would
//!    publish, persistently, with publisher confirms, to the same quorum queue, at the same
//!    concurrency and over the same number of channels.
//! 2. **Ingestor**: the release `hookline-ingestor` binary runs as a child process; a load
//!    generator posts signed ~1.5 KB order webhooks over keep-alive connections (closed loop,
//!    increasing concurrency): throughput, latency percentiles, ratio to (1).
//! 3. **Half of peak**: an open-loop run at half the best ingestor throughput; latency is measured
//!    from each request's scheduled start, so a stall is not hidden by the generator waiting.
//! 4. **Resources**: the ingestor's peak RSS and CPU time.
//!
//! Everything runs in a vhost of its own, deleted at the end. Absolute numbers on a shared
//! 2-core machine are noisy (and the generator shares the cores); ratios measured in the same
//! run are what to compare.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hookline_core::Envelope;
use hookline_core::envelope::{WebhookHeaders, header};
use hookline_core::signature::{Verifier, sign};
use hookline_core::topology::{self, EVENTS_EXCHANGE, TopologySettings};
use hookline_core::trace::TraceParent;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::{Confirmation, Connection, ConnectionProperties};

const SECRET: &str = "hookline_bench_secret";

#[derive(Parser, Debug)]
struct Args {
    /// Broker host part of the AMQP URL (the bench adds its own vhost).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672")]
    amqp: String,
    /// RabbitMQ management API, used to create and delete the bench vhost.
    #[arg(long, default_value = "http://guest:guest@127.0.0.1:15672")]
    management: String,
    /// Concurrency levels (requests or publishes in flight).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// AMQP channels, for the ingestor and the raw publisher alike.
    #[arg(long, default_value_t = 4)]
    channels: usize,
    /// Write the report here (markdown) as well as to standard output.
    #[arg(long)]
    out: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct RunResult {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p) as f64 / 1000.0
    }
    fn max(&self) -> f64 {
        self.latencies_us.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A ~1.5 KB order webhook body: the `orders/paid` sample with a longer note.
fn order_body() -> Vec<u8> {
    let sample = include_str!("../../../fixtures/shopify/orders-paid.json");
    let pad = "x".repeat(1536usize.saturating_sub(sample.len()));
    sample
        .replacen("\"note\":\"", &format!("\"note\":\"{pad} "), 1)
        .into_bytes()
}

fn envelope_bytes(body: &[u8]) -> anyhow::Result<(Vec<u8>, Envelope)> {
    let headers = WebhookHeaders::parse(|name| match name {
        header::TOPIC => Some("orders/paid"),
        header::SHOP_DOMAIN => Some("bench.myshopify.com"),
        header::WEBHOOK_ID => Some("bench"),
        header::API_VERSION => Some("2025-10"),
        _ => None,
    })?;
    let verified =
        Verifier::new([SECRET])?.verify(body.to_vec(), Some(&sign(SECRET.as_bytes(), body)))?;
    let envelope = Envelope::from_webhook(
        headers,
        verified,
        chrono::Utc::now(),
        TraceParent::new_root(),
    )?;
    Ok((envelope.to_json(), envelope))
}

struct Vhost {
    name: String,
    management: String,
    client: reqwest::Client,
}

impl Vhost {
    async fn create(management: &str) -> anyhow::Result<Self> {
        let name = format!("hookline-bench-{}", uuid::Uuid::new_v4().simple());
        let client = reqwest::Client::new();
        let put = |path: String, body: &'static str| {
            client
                .put(format!("{management}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        put(format!("/api/vhosts/{name}"), "{}")
            .await?
            .error_for_status()
            .context("creating the bench vhost (is the management API enabled?)")?;
        put(
            format!("/api/permissions/{name}/guest"),
            r#"{"configure":".*","write":".*","read":".*"}"#,
        )
        .await?
        .error_for_status()?;
        Ok(Self {
            name,
            management: management.to_owned(),
            client,
        })
    }
    async fn delete(&self) {
        let _ = self
            .client
            .delete(format!("{}/api/vhosts/{}", self.management, self.name))
            .send()
            .await;
    }
}

/// Closed loop over lapin: `concurrency` tasks, each publish + confirm, one after the other.
async fn raw_run(
    conn: &Connection,
    channels: usize,
    concurrency: usize,
    seconds: u64,
    envelope: &Envelope,
    bytes: &[u8],
) -> anyhow::Result<RunResult> {
    let mut chans = vec![];
    for _ in 0..channels {
        let c = conn.create_channel().await?;
        c.confirm_select(ConfirmSelectOptions::default()).await?;
        chans.push(c);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let bytes = Arc::new(bytes.to_vec());
    let routing_key = envelope.routing_key();
    let properties = envelope.amqp_properties("hookline-bench");
    let mut tasks = vec![];
    for i in 0..concurrency {
        let channel = chans[i % chans.len()].clone();
        let (bytes, routing_key, properties) =
            (bytes.clone(), routing_key.clone(), properties.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = RunResult::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let confirm = channel
                    .basic_publish(
                        EVENTS_EXCHANGE.into(),
                        routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &bytes,
                        properties.clone(),
                    )
                    .await;
                match confirm {
                    Ok(c) => match c.await {
                        Ok(Confirmation::Ack(None)) => {
                            r.ok += 1;
                            r.latencies_us.push(t.elapsed().as_micros() as u64);
                        }
                        _ => r.failed += 1,
                    },
                    Err(_) => r.failed += 1,
                }
            }
            r
        }));
    }
    let mut total = RunResult::default();
    for t in tasks {
        let r = t.await?;
        total.ok += r.ok;
        total.failed += r.failed;
        total.latencies_us.extend(r.latencies_us);
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    for c in chans {
        let _ = c.close(200, "done".into()).await;
    }
    Ok(total)
}

fn signed_request(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: &str,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .header(header::HMAC, signature)
        .header(header::TOPIC, "orders/paid")
        .header(header::SHOP_DOMAIN, "bench.myshopify.com")
        .header(header::API_VERSION, "2025-10")
        .header(header::WEBHOOK_ID, uuid::Uuid::new_v4().to_string())
        .body(body.to_vec())
}

/// Closed loop over HTTP: `concurrency` keep-alive connections, one request after the other.
async fn ingest_run(
    url: &str,
    concurrency: usize,
    seconds: u64,
    body: &[u8],
) -> anyhow::Result<RunResult> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let signature = sign(SECRET.as_bytes(), body);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = vec![];
    for _ in 0..concurrency {
        let (client, url, body, signature) = (
            client.clone(),
            url.to_owned(),
            body.to_vec(),
            signature.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut r = RunResult::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                match signed_request(&client, &url, &body, &signature)
                    .send()
                    .await
                {
                    Ok(resp) if resp.status() == 200 => {
                        let _ = resp.bytes().await;
                        r.ok += 1;
                        r.latencies_us.push(t.elapsed().as_micros() as u64);
                    }
                    _ => r.failed += 1,
                }
            }
            r
        }));
    }
    let mut total = RunResult::default();
    for t in tasks {
        let r = t.await?;
        total.ok += r.ok;
        total.failed += r.failed;
        total.latencies_us.extend(r.latencies_us);
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// Open loop at a fixed rate: request i starts at `i / rate`; latency counts from that moment.
async fn paced_run(url: &str, rate: f64, seconds: u64, body: &[u8]) -> anyhow::Result<RunResult> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let signature = sign(SECRET.as_bytes(), body);
    let total_requests = (rate * seconds as f64) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total_requests as usize);
    for i in 0..total_requests {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let request = signed_request(&client, url, body, &signature);
        tasks.push(tokio::spawn(async move {
            let ok = matches!(request.send().await, Ok(resp) if resp.status() == 200);
            (ok, scheduled.elapsed().as_micros() as u64)
        }));
    }
    let mut r = RunResult::default();
    for t in tasks {
        let (ok, us) = t.await?;
        if ok {
            r.ok += 1;
            r.latencies_us.push(us);
        } else {
            r.failed += 1;
        }
    }
    r.elapsed = started.elapsed();
    r.latencies_us.sort_unstable();
    Ok(r)
}

struct Ingestor {
    child: Child,
}

impl Ingestor {
    fn start(amqp_url: &str, port: u16, channels: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("hookline-ingestor");
        if !exe.exists() {
            bail!(
                "{} not found: build it first (make bench does: cargo build --release)",
                exe.display()
            );
        }
        let child = Command::new(exe)
            .env("HOOKLINE_AMQP_URL", amqp_url)
            .env("HOOKLINE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("HOOKLINE_SHOPIFY_SECRETS", SECRET)
            .env("HOOKLINE_AMQP_CHANNELS", channels.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Self { child })
    }
    fn proc_status(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    format!(
        "{cores} cores ({cpu}), {:.0} GiB RAM",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

async fn purge(conn: &Connection) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
    ch.queue_purge("hookline.orders".into(), QueuePurgeOptions::default())
        .await?;
    let _ = ch.close(200, "purged".into()).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let vhost = Vhost::create(&args.management).await?;
    let result = run(&args, &vhost).await;
    vhost.delete().await;
    let report = result?;
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {out}"))?;
        eprintln!("written to {out}");
    }
    Ok(())
}

async fn run(args: &Args, vhost: &Vhost) -> anyhow::Result<String> {
    let amqp_url = format!("{}/{}", args.amqp, vhost.name);
    let body = order_body();
    let (bytes, envelope) = envelope_bytes(&body)?;
    let conn = Connection::connect(&amqp_url, ConnectionProperties::default()).await?;
    let setup = conn.create_channel().await?;
    topology::declare(&setup, &TopologySettings::default()).await?;

    let port = free_port()?;
    let ingestor = Ingestor::start(&amqp_url, port, args.channels)?;
    let url = format!("http://127.0.0.1:{port}/webhooks/shopify");
    let ready_url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(&ready_url)
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        if Instant::now() > deadline {
            bail!("the ingestor did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_idle = ingestor.proc_status("VmRSS:").unwrap_or(0);
    // Warm up both paths (connections, JIT-free but caches and pools).
    ingest_run(&url, 4, 1, &body).await?;
    raw_run(&conn, args.channels, 4, 1, &envelope, &bytes).await?;
    purge(&conn).await?;

    let mut rows = vec![];
    let mut best_ingest: f64 = 0.0;
    let cpu_before = ingestor.cpu_seconds().unwrap_or(0.0);
    let mut ingest_time = 0.0;
    for &c in &args.concurrency {
        eprintln!("concurrency {c}: raw publisher…");
        let raw = raw_run(&conn, args.channels, c, args.seconds, &envelope, &bytes).await?;
        purge(&conn).await?;
        eprintln!("concurrency {c}: ingestor…");
        let ing = ingest_run(&url, c, args.seconds, &body).await?;
        ingest_time += ing.elapsed.as_secs_f64();
        purge(&conn).await?;
        best_ingest = best_ingest.max(ing.rate());
        rows.push((c, raw, ing));
    }
    let cpu_used = ingestor.cpu_seconds().unwrap_or(0.0) - cpu_before;

    let half = (best_ingest / 2.0).max(1.0);
    eprintln!("open loop at {half:.0}/s…");
    let paced = paced_run(&url, half, args.seconds, &body).await?;
    purge(&conn).await?;
    let rss_peak = ingestor.proc_status("VmHWM:").unwrap_or(0);
    drop(ingestor);
    let _ = conn.close(200, "done".into()).await;

    let mut md = String::new();
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Produced by `make bench` (release build, then `target/release/hookline-bench --out BENCHMARKS.md`) on {}.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(
        md,
        "Machine: {}. Broker: the local RabbitMQ, a quorum queue, persistent messages, publisher confirms.",
        machine()
    )?;
    writeln!(
        md,
        "Message: a {}-byte `orders/paid` body, {} bytes as an envelope. {} AMQP channels on both sides; {} s per run. \
         The load generator runs on the same two cores as the ingestor and the broker.\n",
        body.len(),
        bytes.len(),
        args.channels,
        args.seconds
    )?;
    writeln!(
        md,
        "## Ingestor vs raw publish-confirm ceiling (closed loop)\n"
    )?;
    writeln!(
        md,
        "| in flight | raw publish+confirm /s | raw p50 ms | raw p99 ms | ingestor webhooks/s | p50 ms | p99 ms | p99.9 ms | max ms | failed | ratio to raw |"
    )?;
    writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for (c, raw, ing) in &rows {
        writeln!(
            md,
            "| {c} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.0} % |",
            raw.rate(),
            raw.pct(50.0),
            raw.pct(99.0),
            ing.rate(),
            ing.pct(50.0),
            ing.pct(99.0),
            ing.pct(99.9),
            ing.max(),
            ing.failed,
            100.0 * ing.rate() / raw.rate().max(1e-9)
        )?;
    }
    let best_raw = rows.iter().map(|(_, r, _)| r.rate()).fold(0.0, f64::max);
    writeln!(
        md,
        "\nPeak: ingestor {best_ingest:.0}/s, raw {best_raw:.0}/s: **{:.0} %** of the raw ceiling (target ≥ 80 %).\n",
        100.0 * best_ingest / best_raw.max(1e-9)
    )?;
    writeln!(md, "## Half of peak, open loop\n")?;
    writeln!(
        md,
        "| target rate /s | achieved /s | p50 ms | p99 ms | p99.9 ms | max ms | failed |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|")?;
    writeln!(
        md,
        "| {half:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
        paced.rate(),
        paced.pct(50.0),
        paced.pct(99.0),
        paced.pct(99.9),
        paced.max(),
        paced.failed
    )?;
    writeln!(
        md,
        "\np99 at half of peak: **{:.2} ms** (target ≤ 10 ms).\n",
        paced.pct(99.0)
    )?;
    writeln!(md, "## Ingestor resources\n")?;
    writeln!(
        md,
        "| RSS idle | RSS peak (VmHWM) | CPU during closed-loop runs |"
    )?;
    writeln!(md, "|---:|---:|---:|")?;
    writeln!(
        md,
        "| {:.1} MiB | {:.1} MiB | {:.1} s over {:.0} s ({:.0} % of one core) |",
        rss_idle as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        cpu_used,
        ingest_time,
        100.0 * cpu_used / ingest_time.max(1e-9)
    )?;
    writeln!(md, "\nTarget: RSS ≤ 64 MiB.")?;
    Ok(md)
}
