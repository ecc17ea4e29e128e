//! `hookline-ingestor`: receives Shopify webhooks and hands them to RabbitMQ.
//! Configuration: environment variables, listed by `--help` and in docs/configuration.md.

use anyhow::Context;
use clap::Parser;
use hookline_core::config;
use hookline_ingestor::settings::{SETTINGS, Settings};
use hookline_ingestor::startup::Application;
use hookline_telemetry as telemetry;

/// hookline ingestor: verifies Shopify webhooks and answers 200 once RabbitMQ has confirmed them.
#[derive(Parser)]
#[command(
    version,
    after_help = "Settings come from environment variables: --help lists them.",
    after_long_help = config::help_text(SETTINGS)
)]
struct Cli {
    /// Print this binary's section of docs/configuration.md and exit.
    #[arg(long, hide = true)]
    print_config_docs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_config_docs {
        print!("{}", hookline_ingestor::settings::config_docs());
        return Ok(());
    }
    let settings = Settings::from_env().context("cannot start the ingestor")?;
    let telemetry = telemetry::init(settings.log_format, "hookline-ingestor")
        .context("cannot set up trace export")?;
    tracing::info!(settings = ?settings, traces_exported = telemetry.exporting(), "starting hookline-ingestor");
    let app = Application::build(settings)?;
    tracing::info!(port = app.port(), "listening");
    let signals = tokio::spawn(app.stopper().stop_on_signals());
    let served = app.run_until_stopped().await.context("HTTP server failed");
    signals.abort();
    served
}
