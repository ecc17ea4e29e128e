//! `hookline-ingestor`: receives Shopify webhooks and hands them to RabbitMQ.
//! Configuration: environment variables, see the README or `hookline_ingestor::settings`.

use anyhow::Context;
use hookline_ingestor::settings::Settings;
use hookline_ingestor::startup::Application;
use hookline_telemetry as telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
