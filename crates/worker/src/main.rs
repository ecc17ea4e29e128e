//! `hookline-worker`: consumes envelopes and applies their effects exactly once.
//! Configuration: environment variables, listed by `--help` and in docs/configuration.md.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookline_core::config;
use hookline_worker::settings::{SETTINGS, Settings};
use hookline_worker::startup::{Worker, migrate};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "hookline worker: applies webhook effects exactly once",
    after_help = "Settings come from environment variables: --help lists them.",
    after_long_help = config::help_text(SETTINGS)
)]
struct Cli {
    /// Print this binary's section of docs/configuration.md and exit.
    #[arg(long, hide = true)]
    print_config_docs: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume and apply (the default).
    Run,
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_config_docs {
        print!("{}", hookline_worker::settings::config_docs());
        return Ok(());
    }
    let settings = Settings::from_env().context("cannot start the worker")?;
    let telemetry = hookline_telemetry::init(settings.log_format, "hookline-worker")
        .context("cannot set up trace export")?;
    tracing::debug!(traces_exported = telemetry.exporting(), "telemetry ready");
    match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => {
            let applied = migrate(settings.database_url.expose()).await?;
            tracing::info!(?applied, "migrations up to date");
            Ok(())
        }
        Command::Run => {
            tracing::info!(settings = ?settings, "starting hookline-worker");
            let worker = Worker::build(settings).await?;
            tracing::info!(
                port = worker.http_port(),
                "metrics and health endpoint listening"
            );
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            worker.run(shutdown).await
        }
    }
}

/// SIGTERM or SIGINT: stop consuming, finish in-flight work, close cleanly.
async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested; finishing in-flight work");
    shutdown.cancel();
}
