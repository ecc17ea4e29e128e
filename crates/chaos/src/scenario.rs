//! The failures, one per scenario, injected while webhooks flow.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hookline_sandbox::Faults;

use crate::load::{self, Ledger};
use crate::stack::{Stack, StackOptions};
use crate::verify::{self, Counts};

/// One failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing goes wrong: the reference.
    None,
    /// `kill -9` of the worker mid-batch, restarted a second later.
    KillWorker,
    /// `kill -9` of the ingestor under load, restarted a second later.
    KillIngestor,
    /// `rabbitmqctl stop_app`, then `start_app`.
    RestartBroker,
    /// `FLUSHALL` on the worker's Redis.
    FlushRedis,
    /// The worker's Redis stopped, then started again (empty).
    StopRedis,
    /// `pg_terminate_backend` of every connection to the stack's database.
    TerminatePostgresConnections,
    /// PostgreSQL restarted.
    RestartPostgres,
    /// sevDesk answering 20 % 429/5xx, 5 % timeouts, 5 % commit-then-fail; the ERP 20 % 5xx.
    DownstreamFaults,
    /// The worker paused while webhooks keep coming, into a queue limited to 100 messages.
    Flood,
    /// sevDesk commits 30 % of writes only after the client gave up, lags its searches behind
    /// creates and ignores their filters: every call whose outcome is unknown must be settled
    /// and verified, never repeated blind.
    SevdeskLateCommit,
}

impl Fault {
    /// Every scenario, in the order they run (the ones that touch shared services last).
    pub const ALL: [Fault; 11] = [
        Fault::None,
        Fault::KillWorker,
        Fault::KillIngestor,
        Fault::FlushRedis,
        Fault::StopRedis,
        Fault::TerminatePostgresConnections,
        Fault::DownstreamFaults,
        Fault::SevdeskLateCommit,
        Fault::Flood,
        Fault::RestartBroker,
        Fault::RestartPostgres,
    ];

    /// Its name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::KillWorker => "worker-kill-9",
            Fault::KillIngestor => "ingestor-kill-9",
            Fault::RestartBroker => "rabbitmq-restart",
            Fault::FlushRedis => "redis-flushall",
            Fault::StopRedis => "redis-stopped",
            Fault::TerminatePostgresConnections => "postgres-terminate",
            Fault::RestartPostgres => "postgres-restart",
            Fault::DownstreamFaults => "downstream-faults",
            Fault::Flood => "flood-past-max-length",
            Fault::SevdeskLateCommit => "sevdesk-late-commit",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Deliveries per scenario.
    pub deliveries: usize,
    /// Deliveries per second.
    pub rate: f64,
    /// When the fault starts, after the traffic did.
    pub fault_at: Duration,
    /// How long an outage lasts.
    pub outage: Duration,
    /// How long to wait for everything accepted to be accounted for.
    pub settle_within: Duration,
}

impl Size {
    /// A few seconds per scenario, for `make test`.
    pub const SHORT: Size = Size {
        deliveries: 150,
        rate: 50.0,
        fault_at: Duration::from_secs(1),
        outage: Duration::from_secs(2),
        settle_within: Duration::from_secs(60),
    };
    /// `make chaos`.
    pub const LONG: Size = Size {
        deliveries: 3000,
        rate: 100.0,
        fault_at: Duration::from_secs(10),
        outage: Duration::from_secs(8),
        settle_within: Duration::from_secs(180),
    };
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario.
    pub fault: Fault,
    /// Deliveries sent (duplicates included).
    pub ledger_sent: usize,
    /// Deliveries answered 200.
    pub accepted: usize,
    /// Distinct changes accepted.
    pub accepted_changes: usize,
    /// Deliveries never answered 200 (the sender gave up).
    pub gave_up: usize,
    /// Attempts the sender had to repeat.
    pub retries: usize,
    /// Where the accepted changes ended.
    pub counts: Counts,
    /// From the end of the fault and the traffic to everything accounted for; `None` if it
    /// never settled.
    pub recovery: Option<Duration>,
}

/// Runs one scenario on a fresh stack.
pub async fn run(fault: Fault, size: Size, index: usize, logs: &Path) -> anyhow::Result<Outcome> {
    let options = StackOptions {
        queue_max_length: if fault == Fault::Flood { 100 } else { 100_000 },
    };
    let mut stack = Stack::start(fault.name(), &options, logs).await?;
    // A flood is three times the traffic at three times the rate, into a queue of 100 whose
    // consumer is paused from the start: most deliveries meet a full queue (503) at first.
    let (deliveries, rate, fault_at) = if fault == Fault::Flood {
        (size.deliveries * 3, size.rate * 3.0, Duration::ZERO)
    } else {
        (size.deliveries, size.rate, size.fault_at)
    };
    let workload = load::workload(deliveries, 1_000_000 * (index as i64 + 1));
    let sending = Duration::from_secs_f64(deliveries as f64 / rate);
    // Shopify keeps retrying for 48 hours; the sender gives up only when the whole scenario
    // would have had to settle.
    let give_up_at = Instant::now() + sending + size.outage * 2 + size.settle_within;
    let sender = tokio::spawn(load::send(
        stack.webhook_url.clone(),
        workload.deliveries,
        rate,
        give_up_at,
    ));
    tokio::time::sleep(fault_at).await;
    let fault_ended = inject(fault, &mut stack, size.outage)
        .await
        .with_context(|| format!("injecting {}", fault.name()))?;
    let ledger: Ledger = sender.await?;
    // Recovery is measured from when both the fault and the traffic are over: from then on,
    // hookline only has to work off what it accepted.
    let recovery_from = fault_ended.max(Instant::now());

    let deadline = Instant::now() + size.settle_within;
    let (counts, settled_at) = loop {
        let counts = verify::check(&stack, &ledger, &workload.changes).await;
        match counts {
            Ok(c) if c.settled(ledger.accepted_keys.len()) => break (c, Some(Instant::now())),
            Ok(c) if Instant::now() > deadline => break (c, None),
            Err(_) if Instant::now() > deadline => {
                break (
                    verify::check(&stack, &ledger, &workload.changes).await?,
                    None,
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    if settled_at.is_none() {
        // What is still on its way, for whoever reads the report.
        let (_, queues) = hookline_testkit::management(
            "GET",
            &format!(
                "/api/queues/{}?columns=name,messages_ready,messages_unacknowledged,consumers",
                hookline_testkit::percent_encode(&stack.vhost.name)
            ),
            None,
        );
        eprintln!("  {}: not settled; queues: {queues}", fault.name());
    }
    let outcome = Outcome {
        fault,
        ledger_sent: ledger.sent,
        accepted: ledger.accepted,
        accepted_changes: ledger.accepted_keys.len(),
        gave_up: ledger.gave_up,
        retries: ledger.retries,
        counts,
        recovery: settled_at.map(|t| t.saturating_duration_since(recovery_from)),
    };
    if !ledger.unexpected.is_empty() {
        bail!(
            "{}: unexpected answers from the ingestor: {:?}",
            fault.name(),
            ledger.unexpected
        );
    }
    stack.stop().await;
    Ok(outcome)
}

/// Injects `fault`; returns when it is over (the moment recovery is measured from).
async fn inject(fault: Fault, stack: &mut Stack, outage: Duration) -> anyhow::Result<Instant> {
    match fault {
        Fault::None => {}
        Fault::KillWorker => {
            stack.worker.kill();
            tokio::time::sleep(Duration::from_secs(1)).await;
            stack.worker.start()?;
        }
        Fault::KillIngestor => {
            stack.ingestor.kill();
            tokio::time::sleep(Duration::from_secs(1)).await;
            stack.ingestor.start()?;
        }
        Fault::RestartBroker => {
            run_command("rabbitmqctl", &["stop_app"])?;
            tokio::time::sleep(outage).await;
            run_command("rabbitmqctl", &["start_app"])?;
        }
        Fault::FlushRedis => {
            run_command(
                "redis-cli",
                &["-p", &stack.redis_port.to_string(), "FLUSHALL"],
            )?;
        }
        Fault::StopRedis => {
            stack.redis.kill();
            tokio::time::sleep(outage).await;
            stack.redis.start()?;
        }
        Fault::TerminatePostgresConnections => {
            let url = stack.db.url();
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            let (admin, driver) = tokio_postgres::connect(
                &format!("{}/postgres", hookline_testkit::POSTGRES),
                tokio_postgres::NoTls,
            )
            .await?;
            tokio::spawn(driver);
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&name],
                )
                .await?;
        }
        Fault::RestartPostgres => {
            let version = std::fs::read_dir("/etc/postgresql")?
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .next()
                .context("no PostgreSQL cluster under /etc/postgresql")?;
            run_command(
                "pg_ctlcluster",
                &["--skip-systemctl-redirect", &version, "main", "restart"],
            )?;
        }
        Fault::DownstreamFaults => {
            let state = &stack.sandbox.state;
            state.sevdesk.set_faults(Faults {
                error_rate: 0.2,
                retry_after_secs: Some(0),
                timeout_rate: 0.05,
                commit_then_fail_rate: 0.05,
                ..Faults::default()
            });
            state.set_erp_faults(Faults {
                error_rate: 0.2,
                retry_after_secs: Some(0),
                ..Faults::default()
            });
            tokio::time::sleep(outage * 2).await;
            state.sevdesk.set_faults(Faults::default());
            state.set_erp_faults(Faults::default());
        }
        Fault::SevdeskLateCommit => {
            // The client gives up after 1 s; late writes land 1.2 s after they arrived and are
            // visible to searches 0.5 s later, within the harness's 3 s settle.
            let sevdesk = &stack.sandbox.state.sevdesk;
            sevdesk.set_faults(Faults {
                commit_late_rate: 0.3,
                commit_late_ms: 1_200,
                search_lag_ms: 500,
                search_ignores_filter: true,
                ..Faults::default()
            });
            tokio::time::sleep(outage * 2).await;
            sevdesk.set_faults(Faults::default());
        }
        Fault::Flood => {
            stack.worker.signal("STOP")?;
            tokio::time::sleep(outage).await;
            stack.worker.signal("CONT")?;
        }
    }
    Ok(Instant::now())
}

fn run_command(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
