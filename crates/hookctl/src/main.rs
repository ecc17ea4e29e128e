//! `hookctl dlq list|show|replay|archive|purge`: dead letters for operators. See docs/worker.md, "Retry later, or dead-letter".
//! `hookctl events`, `hookctl order show`, `hookctl replay`: the audit trail (docs/audit.md).
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
    /// Check the sevDesk account the worker books into (token, bookkeeping version, SevUser,
    /// check accounts, tax settings) and each Shopify shop with credentials (token, granted
    /// scopes, API version, and with --url the webhook subscriptions), line by line, with the
    /// fix for each problem; exits non-zero when something blocks. Reads the worker's settings
    /// (`hookline-worker --help`).
    Doctor {
        /// Only this Shopify shop [default: every shop with credentials].
        #[arg(long)]
        shop: Option<String>,
        /// Check that every planned topic is subscribed to this webhook URL.
        #[arg(long)]
        url: Option<String>,
    },
    /// Deliveries the workers decided on, from the audit trail (oldest first; the newest
    /// --limit). Times are RFC 3339 or an age such as 2h, 30m, 7d.
    Events {
        #[command(flatten)]
        filter: EventArgs,
        /// Only this outcome: applied, duplicate, skipped, retried, dead_lettered.
        #[arg(long)]
        outcome: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per event instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One order's history.
    #[command(subcommand)]
    Order(OrderCommand),
    /// Re-publish envelopes from the audit trail to hookline.events (broker-confirmed, rate
    /// limited). Keys still recorded as processed are answered as duplicates: replaying what was
    /// applied is a no-op. --reapply gives each copy a fresh key derived from the original, so
    /// it applies again (see docs/audit.md for when that is safe).
    Replay {
        #[command(flatten)]
        filter: EventArgs,
        /// One event (its event id) instead of a window.
        #[arg(long = "event")]
        event_id: Option<uuid::Uuid>,
        /// Envelopes per second, e.g. 20/s.
        #[arg(long, default_value = "20/s", value_parser = hookctl::replay::parse_rate)]
        rate: f64,
        /// Only say what would be published.
        #[arg(long)]
        dry_run: bool,
        /// Give each copy a fresh idempotency key (original key + `:reapply:<run>`).
        #[arg(long)]
        reapply: bool,
    },
    /// Shopify: the webhook subscriptions hookline needs.
    #[command(subcommand)]
    Shopify(ShopifyCommand),
    /// The customers' e-mails with their invoices (the notification outbox).
    #[command(subcommand)]
    Notifications(NotificationsCommand),
}

#[derive(Subcommand)]
enum OrderCommand {
    /// Webhooks received (reconciled copies included) with what became of them, each state
    /// change of the order and its refunds, each sevDesk call with its result.
    Show {
        /// The shop, e.g. example.myshopify.com.
        shop: String,
        /// The Shopify order id.
        order_id: i64,
        /// The history as one JSON document.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct EventArgs {
    /// Only this shop.
    #[arg(long)]
    shop: Option<String>,
    /// Only this topic, e.g. orders/paid.
    #[arg(long)]
    topic: Option<String>,
    /// Only this resource: the payload's id, or the order an event concerns.
    #[arg(long)]
    resource: Option<i64>,
    /// Decided at or after (RFC 3339, or an age: 2h, 7d).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Decided before (RFC 3339, or an age).
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
}

impl EventArgs {
    fn into_filter(self) -> hookline_worker::audit::EventFilter {
        hookline_worker::audit::EventFilter {
            shop: self.shop.map(|s| s.to_ascii_lowercase()),
            topic: self.topic,
            resource: self.resource,
            since: self.since,
            until: self.until,
            ..Default::default()
        }
    }
}

/// RFC 3339, or an age before now (`90m`, `2h`, `7d`).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    archive::parse_age(s)
        .map(|age| Utc::now() - age)
        .ok_or_else(|| {
            format!("{s:?}: expected RFC 3339 (2026-11-23T10:00:00Z) or an age (2h, 7d)")
        })
}

#[derive(Subcommand)]
enum ShopifyCommand {
    /// Print the topics, URL and API version to subscribe, as a table or as the `[webhooks]`
    /// part of a `shopify.app.toml` (app-specific subscriptions of a Dev Dashboard app).
    Subscriptions {
        /// The ingestor's public webhook URL, e.g. https://hooks.example.com/webhooks/shopify.
        #[arg(long)]
        url: String,
        /// The webhook API version [default: the worker's HOOKLINE_SHOPIFY_API_VERSION].
        #[arg(long)]
        api_version: Option<String>,
        /// Print a `shopify.app.toml` snippet instead of a table.
        #[arg(long, conflicts_with = "apply")]
        app_toml: bool,
        /// Create the shop-specific subscriptions that are missing, through the GraphQL Admin
        /// API (credentials from the worker's settings); a second run creates nothing.
        #[arg(long, requires = "shop")]
        apply: bool,
        /// The shop to subscribe, e.g. example.myshopify.com.
        #[arg(long)]
        shop: Option<String>,
    },
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
    if let Command::Doctor { shop, url } = &command {
        return doctor(shop.as_deref(), url.as_deref()).await;
    }
    if let Command::Shopify(ShopifyCommand::Subscriptions {
        url,
        api_version,
        app_toml,
        apply,
        shop,
    }) = &command
    {
        hookctl::shopify::check_uri(url).map_err(anyhow::Error::msg)?;
        let api_version = match api_version {
            Some(v) => v.clone(),
            None => Env::process().read(&hookline_worker::settings::SHOPIFY_API_VERSION)?,
        };
        let plan = hookctl::shopify::Plan::new(url, &api_version);
        if let (true, Some(shop)) = (apply, shop) {
            return apply_subscriptions(&shop.to_ascii_lowercase(), &plan).await;
        }
        print!(
            "{}",
            if *app_toml {
                plan.app_toml()
            } else {
                plan.text()
            }
        );
        return Ok(());
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
    match command {
        Command::Events {
            filter,
            outcome,
            limit,
            json,
        } => {
            if let Some(o) = &outcome
                && !hookline_worker::audit::Decision::ALL.contains(&o.as_str())
            {
                anyhow::bail!(
                    "--outcome {o:?}: expected one of {}",
                    hookline_worker::audit::Decision::ALL.join(", ")
                );
            }
            let db = database(&database_url).await?;
            let filter = hookline_worker::audit::EventFilter {
                outcome,
                limit: Some(limit),
                ..filter.into_filter()
            };
            let rows = hookline_worker::audit::events(&db, &filter)
                .await
                .context("cannot read the audit trail (has `hookline-worker migrate` run?)")?;
            if json {
                for row in &rows {
                    println!("{}", serde_json::to_string(row)?);
                }
            } else {
                events_table(&rows);
            }
            Ok(())
        }
        Command::Order(OrderCommand::Show {
            shop,
            order_id,
            json,
        }) => {
            let db = database(&database_url).await?;
            let shop = shop.to_ascii_lowercase();
            let history = hookline_worker::audit::order_history(&db, &shop, order_id)
                .await
                .context("cannot read the audit trail (has `hookline-worker migrate` run?)")?;
            if history.current.is_none() && history.events.is_empty() && history.steps.is_empty() {
                anyhow::bail!("nothing is known about order {order_id} of {shop}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&history)?);
            } else {
                print_history(&shop, order_id, &history);
            }
            Ok(())
        }
        Command::Replay {
            filter,
            event_id,
            rate,
            dry_run,
            reapply,
        } => {
            if event_id.is_none() && filter.since.is_none() {
                anyhow::bail!("replay needs a window (--since, and --until or now) or --event ID");
            }
            let db = database(&database_url).await?;
            let connection = Connection::connect(
                &amqp_url,
                ConnectionProperties::default().with_connection_name("hookctl".into()),
            )
            .await
            .context("cannot connect to the broker (HOOKLINE_AMQP_URL)")?;
            let request = hookctl::replay::ReplayRequest {
                filter: hookline_worker::audit::EventFilter {
                    event_id,
                    ..filter.into_filter()
                },
                dry_run,
                rate,
                reapply,
                tag: format!("replay-{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")),
            };
            let verb = if dry_run {
                "would publish"
            } else {
                "published"
            };
            let report = hookctl::replay::replay(&db, &connection, &request, |done, total, c| {
                eprintln!(
                    "[{done}/{total}] {verb} {} {} {} ({}, last outcome {})",
                    c.row.event_id, c.row.topic, c.row.shop, c.row.idempotency_key, c.row.outcome
                );
            })
            .await?;
            let _ = connection.close(200, "done".into()).await;
            let n = report.published.len();
            if reapply {
                println!(
                    "{n} {verb} with fresh idempotency keys (original key + :reapply:{}): the workers apply them again as far as each domain's own state allows (docs/audit.md)",
                    request.tag
                );
            } else {
                println!(
                    "{n} {verb}; {} still recorded as processed: the workers answer them as duplicates (a no-op); {} not recorded: they apply",
                    report.recorded,
                    n - report.recorded
                );
            }
            if report.not_kept > 0 {
                println!(
                    "{} left out: their envelope was redacted or never kept (privacy requests)",
                    report.not_kept
                );
            }
            Ok(())
        }
        command => run_dlq(command, amqp_url, database_url).await,
    }
}

async fn run_dlq(command: Command, amqp_url: String, database_url: String) -> anyhow::Result<()> {
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
        Command::Dlq(DlqCommand::Purge { .. })
        | Command::Doctor { .. }
        | Command::Events { .. }
        | Command::Order(_)
        | Command::Replay { .. }
        | Command::Shopify(_)
        | Command::Notifications(_) => {
            unreachable!("handled before connecting")
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

fn short(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

fn events_table(rows: &[hookline_worker::audit::EventRow]) {
    println!(
        "{:<23}  {:<36}  {:<24}  {:<28}  {:>14}  {:<13}  {:>3}  reason / steps",
        "decided", "event id", "topic", "shop", "resource", "outcome", "att"
    );
    for r in rows {
        let mut why = match (&r.reason, &r.error) {
            (Some(reason), Some(error)) => format!("{reason}: {}", error.replace('\n', " ")),
            (Some(reason), None) => reason.clone(),
            _ => r.steps.join(","),
        };
        if let Some(tag) = &r.replay {
            why = format!("[{tag}] {why}");
        }
        if why.chars().count() > 90 {
            why = why.chars().take(89).collect::<String>() + "…";
        }
        println!(
            "{:<23}  {:<36}  {:<24}  {:<28}  {:>14}  {:<13}  {:>3}  {why}",
            short(r.recorded_at),
            r.event_id,
            r.topic,
            r.shop,
            r.resource_id
                .map_or_else(|| "-".into(), |id| id.to_string()),
            r.outcome,
            r.attempts
        );
    }
    println!("{} event(s)", rows.len());
}

fn print_history(shop: &str, order_id: i64, h: &hookline_worker::audit::OrderHistory) {
    println!("order {order_id} of {shop}");
    match &h.current {
        Some(now) => println!("  now: {now}"),
        None => println!("  now: no order_sync row (never handled, or erased by shop/redact)"),
    }
    enum Line<'a> {
        Event(&'a hookline_worker::audit::EventRow),
        Step(&'a hookline_worker::audit::StepRow),
    }
    let mut lines: Vec<(DateTime<Utc>, Line)> = h
        .events
        .iter()
        .map(|e| (e.recorded_at, Line::Event(e)))
        .chain(h.steps.iter().map(|s| (s.at, Line::Step(s))))
        .collect();
    lines.sort_by_key(|(t, _)| *t);
    for (t, line) in lines {
        match line {
            Line::Event(e) => println!(
                "{}  webhook   {} ({}, received {}) {} {}{}",
                short(t),
                e.topic,
                e.source,
                short(e.received_at),
                e.outcome,
                e.reason
                    .as_deref()
                    .map(|r| format!("{r} "))
                    .unwrap_or_default(),
                e.steps.join(",")
            ),
            Line::Step(s) => {
                let doc = match (&s.document_id, &s.document_number) {
                    (Some(id), Some(n)) => format!(" doc {id} ({n})"),
                    (Some(id), None) => format!(" doc {id}"),
                    _ => String::new(),
                };
                let detail = s
                    .detail
                    .as_deref()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default();
                match s.kind.as_str() {
                    "sevdesk_call" => println!(
                        "{}  sevdesk   {} -> {}{}{}{}",
                        short(t),
                        s.name,
                        s.status
                            .map_or_else(|| "no answer".into(), |c| c.to_string()),
                        if s.ok == Some(true) { " ok" } else { " FAILED" },
                        doc,
                        detail
                    ),
                    kind => println!(
                        "{}  {:<9} {}{}{}",
                        short(t),
                        kind.trim_end_matches("_state"),
                        s.name,
                        doc,
                        detail
                    ),
                }
            }
        }
    }
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

/// `hookctl doctor`: the worker's settings, the sevDesk checks of every shop's account (under
/// the shop's name when a shops file gives each shop its own), then each Shopify shop's, one
/// line each.
async fn doctor(shop: Option<&str>, url: Option<&str>) -> anyhow::Result<()> {
    use hookline_worker::doctor;
    let settings = hookline_worker::settings::Settings::from_env()
        .context("the worker's settings are not valid")?;
    let books = hookline_worker::startup::books(&settings)?;
    println!("sevDesk at {}", settings.sevdesk_url);
    let mut not_ready = vec![];
    for (account_shop, account) in books.accounts() {
        if let Some(account_shop) = account_shop {
            println!("shop {account_shop}:");
        }
        let checks = doctor::sevdesk(&account.sevdesk, &account.settings).await;
        for check in &checks {
            println!("{check}");
        }
        if doctor::blocking(&checks) {
            not_ready.push(account_shop.unwrap_or("the account").to_owned());
        }
    }
    for not_invoiced in books.not_invoiced() {
        println!(
            "warn shop {not_invoiced}: no [shop.sevdesk] in the shops file; its orders are not invoiced"
        );
    }
    let sevdesk_blocks = !not_ready.is_empty();
    let shop = shop.map(str::to_ascii_lowercase);
    let shops: Vec<_> = settings
        .shopify_credentials
        .iter()
        .filter(|(s, _)| shop.as_ref().is_none_or(|only| only == *s))
        .collect();
    let mut shopify_blocks = false;
    println!(
        "\nShopify Admin API at {}, version {}",
        settings.reconcile.admin_url, settings.reconcile.api_version
    );
    if shops.is_empty() {
        let missing = match &shop {
            Some(s) => format!("{s} has no Admin API credentials"),
            None => "no shop has Admin API credentials".into(),
        };
        let line = format!(
            "{missing}\n     fix: set HOOKLINE_RECONCILE_SHOPS (shop=token) or HOOKLINE_SHOPIFY_SHOP with the app's HOOKLINE_SHOPIFY_CLIENT_ID/_SECRET (docs/shopify-tokens.md)"
        );
        if shop.is_some() {
            println!("FAIL {line}");
            shopify_blocks = true;
        } else {
            println!("warn {line}");
        }
    } else {
        if let Some(url) = url {
            hookctl::shopify::check_uri(url).map_err(anyhow::Error::msg)?;
        }
        let admin = hookctl::shopify::admin_client(&settings)?;
        let expect = doctor::ShopifyExpectations {
            subscriptions: url.map(|u| {
                let plan = hookctl::shopify::Plan::new(u, &settings.reconcile.api_version);
                (
                    plan.uri.clone(),
                    plan.topics.iter().map(|t| t.to_string()).collect(),
                )
            }),
            reach_days: (settings.reconcile.lookback.as_secs() / 86_400) as i64,
        };
        for (shop, credentials) in shops {
            for check in doctor::shopify(&admin, shop, credentials, &expect).await {
                shopify_blocks |= check.blocking;
                println!("{check}");
            }
        }
    }
    match (sevdesk_blocks, shopify_blocks) {
        (false, false) => Ok(()),
        (true, false) => anyhow::bail!(
            "not ready for booking (see FAIL above): {}",
            not_ready.join(", ")
        ),
        (false, true) => anyhow::bail!("a Shopify shop is not ready (see FAIL above)"),
        (true, true) => anyhow::bail!("neither sevDesk nor Shopify is ready (see FAIL above)"),
    }
}

/// `hookctl shopify subscriptions --apply --shop S`.
async fn apply_subscriptions(shop: &str, plan: &hookctl::shopify::Plan) -> anyhow::Result<()> {
    use hookctl::shopify::Outcome;
    let settings = hookline_worker::settings::Settings::from_env()
        .context("the worker's settings are not valid")?;
    if !settings.shopify_credentials.contains_key(shop) {
        anyhow::bail!(
            "{shop} has no Admin API credentials: set HOOKLINE_RECONCILE_SHOPS ({shop}=token) or HOOKLINE_SHOPIFY_SHOP={shop} with the app's HOOKLINE_SHOPIFY_CLIENT_ID/_SECRET"
        );
    }
    let admin = hookctl::shopify::admin_client(&settings)?;
    let outcomes = hookctl::shopify::apply(&admin, shop, plan)
        .await
        .with_context(|| format!("cannot read the webhook subscriptions of {shop}"))?;
    println!("{shop}: deliver to {}", plan.uri);
    let (mut created, mut present, mut refused) = (0, 0, 0);
    for (topic, outcome) in &outcomes {
        let name = hookctl::shopify::graphql_topic(topic);
        match outcome {
            Outcome::Present => {
                present += 1;
                println!("present  {name:<30} {topic}");
            }
            Outcome::Created(s) => {
                created += 1;
                println!("created  {name:<30} {topic} ({})", s.id);
            }
            Outcome::Refused(errors) => {
                refused += 1;
                let why = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                println!("refused  {name:<30} {topic}: {why}");
            }
            Outcome::Failed(why) => {
                refused += 1;
                println!("failed   {name:<30} {topic}: {why}");
            }
        }
    }
    println!(
        "{created} created, {present} already present, {refused} refused; compliance topics ({}) are subscribed in the app's configuration only",
        hookctl::shopify::COMPLIANCE_TOPICS.join(", ")
    );
    if refused > 0 {
        anyhow::bail!("{refused} subscription(s) not created (see above)");
    }
    Ok(())
}
