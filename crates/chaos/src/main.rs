//! `hookline-chaos`: runs hookline's real binaries against the real RabbitMQ, PostgreSQL and
//! Redis, injects one failure per scenario while signed webhooks flow, waits until everything
//! accepted is accounted for, and checks the result against the ground truth of what was sent.
//!
//! Exits non-zero if any scenario lost or duplicated anything. `--short` (in `make test`) runs a
//! few seconds per scenario; the default is the long run of `make chaos`. Scenarios that restart
//! RabbitMQ or PostgreSQL affect everything using those servers: run the harness alone.

mod load;
mod scenario;
mod stack;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use scenario::{Fault, Outcome, Size};

#[derive(Parser)]
#[command(about = "hookline under injected failures, checked against ground truth")]
struct Cli {
    /// A few seconds per scenario (what `make test` runs).
    #[arg(long)]
    short: bool,
    /// Only these scenarios (repeatable): none, worker-kill-9, ingestor-kill-9, redis-flushall,
    /// redis-stopped, postgres-terminate, downstream-faults, sevdesk-late-commit, flood-past-max-length,
    /// rabbitmq-restart, postgres-restart.
    #[arg(long = "only")]
    only: Vec<String>,
    /// Leave out the scenarios that restart the shared RabbitMQ or PostgreSQL.
    #[arg(long)]
    no_restarts: bool,
    /// Where the processes' logs go.
    #[arg(long, default_value = "target/chaos")]
    logs: PathBuf,
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn table(outcomes: &[Outcome]) {
    println!(
        "| scenario | webhooks sent | accepted | changes accepted | applied | dead-lettered | lost | duplicated | sender retries | recovery |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.fault.name(),
            o.ledger_sent,
            o.accepted,
            o.accepted_changes,
            o.counts.applied,
            o.counts.dead_lettered,
            o.counts.lost + o.gave_up,
            o.counts.duplicated,
            o.retries,
            seconds(o.recovery),
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let size = if cli.short { Size::SHORT } else { Size::LONG };
    let mut faults = vec![];
    for name in &cli.only {
        match Fault::parse(name) {
            Some(f) => faults.push(f),
            None => {
                eprintln!("hookline-chaos: unknown scenario {name:?} (see --help)");
                return ExitCode::from(2);
            }
        }
    }
    if faults.is_empty() {
        faults = Fault::ALL.to_vec();
    }
    if cli.no_restarts {
        faults.retain(|f| !matches!(f, Fault::RestartBroker | Fault::RestartPostgres));
    }
    let logs = cli
        .logs
        .join(chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string());
    eprintln!(
        "hookline-chaos: {} scenario(s), {} webhooks each at {}/s; logs in {}",
        faults.len(),
        size.deliveries,
        size.rate,
        logs.display()
    );
    let mut outcomes = vec![];
    let mut failed = false;
    for (index, fault) in faults.into_iter().enumerate() {
        eprintln!("hookline-chaos: {} …", fault.name());
        match scenario::run(fault, size, index, &logs).await {
            Ok(outcome) => {
                for problem in outcome.counts.problems.iter().take(10) {
                    eprintln!("  {}: {problem}", fault.name());
                }
                failed |= outcome.counts.lost + outcome.gave_up + outcome.counts.duplicated > 0
                    || outcome.recovery.is_none();
                outcomes.push(outcome);
            }
            Err(error) => {
                eprintln!("hookline-chaos: {} could not run: {error:#}", fault.name());
                failed = true;
            }
        }
    }
    table(&outcomes);
    if failed {
        eprintln!(
            "hookline-chaos: FAILED (something was lost, duplicated, never settled, or a scenario could not run)"
        );
        ExitCode::FAILURE
    } else {
        eprintln!("hookline-chaos: nothing lost, nothing duplicated");
        ExitCode::SUCCESS
    }
}
