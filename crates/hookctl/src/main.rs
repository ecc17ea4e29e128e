//! `hookctl dlq list|show|replay|archive|purge`: dead letters for operators. See the README's "Dead letters".
//! `hookctl notifications list|retry ID`: the customers' e-mails with their invoices
//! (docs/notifications.md).

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use hookline_broker::archive;
use hookline_broker::dlq::{self, DeadLetter, Filter};
use hookline_core::Domain;
use hookline_core::config::{self, AMQP_URL, DATABASE_URL, Env};
use lapin::{Connection, ConnectionProperties};

#[derive(Parser)]
#[command(
    version,
    about = "hookline operator CLI",
    after_long_help = config::help_text(hookctl::SETTINGS)
)]
struct Cli {
    /// The broker, the same URL as the ingestor's and worker's [default: HOOKLINE_AMQP_URL].
    #[arg(long)]
    amqp_url: Option<String>,
    /// PostgreSQL, for the dead-letter archive: the worker's database [default: HOOKLINE_DATABASE_URL].
    #[arg(long)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Check the sevDesk account the worker books into, line by line (token, bookkeeping
    /// version, SevUser, check accounts, tax settings), with the fix for each problem; exits
    /// non-zero when something blocks booking. Reads the worker's settings
    /// (`hookline-worker --help`).
    Doctor,
    /// The customers' e-mails with their invoices (the notification outbox).
    #[command(subcommand)]
    Notifications(NotificationsCommand),
}

#[derive(Subcommand)]
enum NotificationsCommand {
    /// List the newest notifications.
    List {
        /// Only pending, sent, failed or skipped ones.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per notification instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send a failed notification again. sevDesk is asked first whether it already e-mailed the
    /// invoice, so a retry never sends a second e-mail.
    Retry {
        /// The notification's id (`list` shows it).
        id: i64,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters (nothing is removed).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per dead letter instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with all it says.
    Show {
        /// The envelope's event id.
        event_id: String,
    },
    /// Republish dead letters to hookline.events; each is removed only after the broker confirmed it.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Only say what would be replayed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move dead letters into PostgreSQL's dead_letter_archive; each is removed from its queue
    /// only after its row is committed.
    Archive {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Delete archived dead letters archived longer ago than --older-than (e.g. 30d, 12h).
    Purge {
        /// Age, with a unit: d, h, m or s.
        #[arg(long)]
        older_than: String,
    },
}

#[derive(Args)]
struct FilterArgs {
    /// inventory, orders or compliance (default: all).
    #[arg(long)]
    domain: Option<String>,
    /// Only this reason, e.g. retries_exhausted.
    #[arg(long)]
    reason: Option<String>,
    /// Only those whose last error contains this text, e.g. sevdesk.
    #[arg(long)]
    error_contains: Option<String>,
    /// Only these event ids (repeatable).
    #[arg(long = "event-id")]
    event_ids: Vec<String>,
    /// Only those that last failed at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Only those that last failed before this time (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
}

impl FilterArgs {
    fn into_filter(self) -> anyhow::Result<Filter> {
        let domain = match self.domain.as_deref() {
            None | Some("") => None,
            Some(d) => Some(Domain::parse(d).with_context(|| {
                format!("unknown domain {d:?} (inventory, orders, compliance)")
            })?),
        };
        Ok(Filter {
            domain,
            reason: self.reason.filter(|r| !r.is_empty()),
            error_contains: self.error_contains.filter(|e| !e.is_empty()),
            event_ids: self.event_ids,
            since: self.since,
            until: self.until,
            limit: self.limit,
        })
    }
}

fn age(d: &DeadLetter) -> String {
    d.last_failure.map_or_else(
        || "-".into(),
        |t| {
            let secs = (Utc::now() - t).num_seconds().max(0);
            match secs {
                s if s < 120 => format!("{s}s"),
                s if s < 7200 => format!("{}m", s / 60),
                s if s < 172_800 => format!("{}h", s / 3600),
                s => format!("{}d", s / 86_400),
            }
        },
    )
}

fn table(rows: &[DeadLetter]) {
    println!(
        "{:<36}  {:<24}  {:<28}  {:<22}  {:>3}  {:>5}  last error",
        "event id", "topic", "shop", "reason", "att", "age"
    );
    for d in rows {
        let mut error = d.last_error.replace('\n', " ");
        if error.chars().count() > 80 {
            error = error.chars().take(79).collect::<String>() + "…";
        }
        println!(
            "{:<36}  {:<24}  {:<28}  {:<22}  {:>3}  {:>5}  {error}",
            d.event_id,
            d.topic,
            d.shop,
            d.reason,
            d.attempts,
            age(d)
        );
    }
    println!("{} dead letter(s)", rows.len());
}

async fn database(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, driver) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to PostgreSQL (HOOKLINE_DATABASE_URL)")?;
    tokio::spawn(driver);
    Ok(client)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command;
    if let Command::Doctor = command {
        return doctor().await;
    }
    let env = Env::process();
    let amqp_url = match cli.amqp_url {
        Some(url) => url,
        None => env.read(&AMQP_URL)?.expose().to_owned(),
    };
    let database_url = match cli.database_url {
        Some(url) => url,
        None => env.read(&DATABASE_URL)?.expose().to_owned(),
    };
    if let Command::Notifications(notifications) = &command {
        let db = database(&database_url).await?;
        return notifications_command(&db, notifications).await;
    }
    if let Command::Dlq(DlqCommand::Purge { older_than }) = &command {
        let age = archive::parse_age(older_than)
            .with_context(|| format!("--older-than {older_than:?}: expected e.g. 30d, 12h, 90m"))?;
        let db = database(&database_url).await?;
        let deleted = archive::purge(&db, Utc::now() - age)
            .await
            .context("cannot purge dead_letter_archive (has `hookline-worker migrate` run?)")?;
        println!("{deleted} archived dead letter(s) older than {older_than} deleted");
        return Ok(());
    }
    let connection = Connection::connect(
        &amqp_url,
        ConnectionProperties::default().with_connection_name("hookctl".into()),
    )
    .await
    .context("cannot connect to the broker (HOOKLINE_AMQP_URL)")?;
    match command {
        Command::Dlq(DlqCommand::List { filter, json }) => {
            let rows = dlq::list(&connection, &filter.into_filter()?).await?;
            if json {
                for row in &rows {
                    println!("{}", serde_json::to_string(row)?);
                }
            } else {
                table(&rows);
            }
        }
        Command::Dlq(DlqCommand::Show { event_id }) => {
            let filter = Filter {
                event_ids: vec![event_id.clone()],
                ..Filter::default()
            };
            let rows = dlq::list(&connection, &filter).await?;
            let row = rows
                .first()
                .with_context(|| format!("no dead letter with event id {event_id}"))?;
            println!("{}", serde_json::to_string_pretty(row)?);
        }
        Command::Dlq(DlqCommand::Replay {
            filter,
            rate,
            dry_run,
        }) => {
            let report = dlq::replay(&connection, &filter.into_filter()?, rate, dry_run).await?;
            table(&report.replayed);
            println!(
                "{} {}, {} kept in the dead-letter queues",
                report.replayed.len(),
                if dry_run {
                    "would be replayed"
                } else {
                    "replayed"
                },
                report.kept
            );
        }
        Command::Dlq(DlqCommand::Archive { filter }) => {
            let db = database(&database_url).await?;
            let archived = archive::archive(&connection, &db, &filter.into_filter()?).await?;
            table(&archived);
            println!("{} archived to dead_letter_archive", archived.len());
        }
        Command::Dlq(DlqCommand::Purge { .. }) | Command::Doctor | Command::Notifications(_) => {
            unreachable!("handled before connecting")
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hookctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn notifications_command(
    db: &tokio_postgres::Client,
    command: &NotificationsCommand,
) -> anyhow::Result<()> {
    use hookline_worker::notifications;
    let missing = "cannot read notification_outbox (has `hookline-worker migrate` run?)";
    match command {
        NotificationsCommand::List {
            status,
            limit,
            json,
        } => {
            let rows = notifications::list(db, status.as_deref(), *limit)
                .await
                .context(missing)?;
            if *json {
                for row in &rows {
                    println!("{}", serde_json::to_string(row)?);
                }
                return Ok(());
            }
            println!(
                "{:>8}  {:<10}  {:<10}  {:<10}  {:<30}  {:<8}  {:>3}  {:<10}  last error",
                "id", "order", "invoice", "kind", "to", "status", "att", "outcome"
            );
            for n in &rows {
                let mut error = n.last_error.clone().unwrap_or_default().replace('\n', " ");
                if error.chars().count() > 80 {
                    error = error.chars().take(79).collect::<String>() + "…";
                }
                println!(
                    "{:>8}  {:<10}  {:<10}  {:<10}  {:<30}  {:<8}  {:>3}  {:<10}  {error}",
                    n.id,
                    n.order_name,
                    n.invoice_id,
                    n.kind,
                    n.recipient.as_deref().unwrap_or("-"),
                    n.status,
                    n.attempts,
                    n.outcome.as_deref().unwrap_or("-"),
                );
            }
            println!("{} notification(s)", rows.len());
        }
        NotificationsCommand::Retry { id } => {
            notifications::retry(db, *id).await?;
            println!("notification {id} is due again; the relay checks sevDesk before it sends it");
        }
    }
    Ok(())
}

/// `hookctl doctor`: the worker's settings, the sevDesk checks, one line each.
async fn doctor() -> anyhow::Result<()> {
    let settings = hookline_worker::settings::Settings::from_env()
        .context("the worker's settings are not valid")?;
    let client = hookline_worker::startup::sevdesk_client(&settings)?;
    let checks = hookline_worker::doctor::sevdesk(&client, &settings.sevdesk_account).await;
    println!("sevDesk at {}", settings.sevdesk_url);
    for check in &checks {
        println!("{check}");
    }
    if hookline_worker::doctor::blocking(&checks) {
        anyhow::bail!("the sevDesk account is not ready for booking (see FAIL above)");
    }
    Ok(())
}
