//! `hookline-sandbox`: serves the sandbox on `HOOKLINE_SANDBOX_ADDR` (default 127.0.0.1:8090).

use anyhow::Context;
use hookline_sandbox::Sandbox;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookline_telemetry::init_logging(hookline_telemetry::LogFormat::Text);
    let addr = std::env::var("HOOKLINE_SANDBOX_ADDR").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let (sandbox, server) = Sandbox::bind(&addr)
        .with_context(|| format!("cannot bind HOOKLINE_SANDBOX_ADDR={addr}"))?;
    tracing::info!(url = %sandbox.base_url, erp = %sandbox.erp_url(), "sandbox listening");
    let server = tokio::spawn(server);
    tokio::signal::ctrl_c().await?;
    sandbox.stop().await;
    let _ = server.await;
    Ok(())
}
