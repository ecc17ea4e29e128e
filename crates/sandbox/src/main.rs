//! `hookline-sandbox`: serves the sandbox on `HOOKLINE_SANDBOX_ADDR` (default 127.0.0.1:8090).

use anyhow::Context;
use clap::Parser;
use hookline_core::config::{self, Env};
use hookline_sandbox::Sandbox;

/// hookline sandbox: the ERP, sevDesk and Shopify's Admin API on this machine, with fault injection.
#[derive(Parser)]
#[command(
    version,
    after_help = "Settings come from environment variables: --help lists them.",
    after_long_help = config::help_text(hookline_sandbox::SETTINGS)
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
        print!("{}", hookline_sandbox::config_docs());
        return Ok(());
    }
    let addr = Env::process()
        .read(&hookline_sandbox::ADDR)
        .context("cannot start the sandbox")?;
    hookline_telemetry::init_logging(hookline_telemetry::LogFormat::Text);
    let (sandbox, server) = Sandbox::bind(&addr)
        .with_context(|| format!("cannot bind HOOKLINE_SANDBOX_ADDR={addr}"))?;
    tracing::info!(url = %sandbox.base_url, erp = %sandbox.erp_url(), "sandbox listening");
    let server = tokio::spawn(server);
    tokio::signal::ctrl_c().await?;
    sandbox.stop().await;
    let _ = server.await;
    Ok(())
}
