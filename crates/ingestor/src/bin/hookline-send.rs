//! `hookline-send`: signs a webhook body as Shopify does and posts it, with Shopify's headers.
//!
//! For demos, tests and load generation against a local ingestor:
//!
//! ```text
//! hookline-send --secret s3cret --topic orders/paid fixtures/shopify/orders-paid.json
//! ```

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use hookline_core::config::{self, Env};
use hookline_core::envelope::header::{self, HeaderForm};
use hookline_core::signature::sign;
use hookline_ingestor::settings::send;

/// Sign a Shopify webhook body and POST it to a hookline ingestor.
#[derive(Parser, Debug)]
#[command(version, after_long_help = config::help_text(send::SETTINGS))]
struct Args {
    /// Where to post [default: HOOKLINE_SEND_URL or http://127.0.0.1:8080/webhooks/shopify].
    #[arg(long)]
    url: Option<String>,
    /// The app's client secret (the first of HOOKLINE_SHOPIFY_SECRETS) [default: HOOKLINE_SEND_SECRET].
    #[arg(long)]
    secret: Option<String>,
    /// X-Shopify-Topic.
    #[arg(long)]
    topic: String,
    /// X-Shopify-Shop-Domain.
    #[arg(long, default_value = "demo.myshopify.com")]
    shop: String,
    /// X-Shopify-API-Version.
    #[arg(long, default_value = "2025-10")]
    api_version: String,
    /// X-Shopify-Webhook-Id; a fresh UUID by default. Reuse one (and the event id) to play a
    /// Shopify retry.
    #[arg(long)]
    webhook_id: Option<String>,
    /// X-Shopify-Event-Id; a fresh UUID by default.
    #[arg(long)]
    event_id: Option<String>,
    /// Header names: `legacy` (X-Shopify-*), `events` (Shopify-*, without a webhook id, as
    /// Shopify's Events deliveries) or `both` (the same values under both names).
    #[arg(long, default_value = "legacy", value_parser = parse_form)]
    header_form: HeaderForm,
    /// Retries after a 503 or a connection error, waiting as Shopify would (Retry-After, else 1 s).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// The body: a file, or `-` for standard input.
    body: String,
}

fn parse_form(name: &str) -> Result<HeaderForm, String> {
    HeaderForm::parse(name).ok_or_else(|| format!("{name:?}: expected legacy, events or both"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hookline-send: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let env = Env::process();
    let url = match args.url {
        Some(url) => url,
        None => env.read(&send::URL)?,
    };
    let secret = match args.secret {
        Some(secret) => secret,
        None => env
            .read(&send::SECRET)?
            .context("no secret to sign with: give --secret or HOOKLINE_SEND_SECRET")?
            .expose()
            .to_owned(),
    };
    let body = if args.body == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
        buf
    } else {
        std::fs::read(&args.body).with_context(|| format!("cannot read {}", args.body))?
    };
    let signature = sign(secret.as_bytes(), &body);
    let webhook_id = args
        .webhook_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let event_id = args
        .event_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let triggered_at = chrono::Utc::now().to_rfc3339();
    let fields = [
        (header::HMAC, signature.as_str()),
        (header::TOPIC, args.topic.as_str()),
        (header::SHOP_DOMAIN, args.shop.as_str()),
        (header::API_VERSION, args.api_version.as_str()),
        (header::WEBHOOK_ID, webhook_id.as_str()),
        (header::EVENT_ID, event_id.as_str()),
        (header::TRIGGERED_AT, triggered_at.as_str()),
    ];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = client.post(&url).header("content-type", "application/json");
        for (legacy, value) in fields {
            for name in args.header_form.names(legacy) {
                request = request.header(name, value);
            }
        }
        let sent = request.body(body.clone()).send().await;
        let wait = match sent {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let text = response.text().await.unwrap_or_default();
                println!("{} {}", status.as_u16(), text);
                if status.is_success() {
                    return Ok(());
                }
                if status.as_u16() != 503 {
                    bail!("the ingestor refused the webhook with {status}");
                }
                Duration::from_secs(retry_after.unwrap_or(1).min(30))
            }
            Err(error) => {
                eprintln!("send failed: {error}");
                Duration::from_secs(1)
            }
        };
        if attempt > args.retries {
            bail!("not accepted after {attempt} attempt(s)");
        }
        tokio::time::sleep(wait).await;
    }
}
