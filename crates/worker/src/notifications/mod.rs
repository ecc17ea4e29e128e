//! The customer's message with the invoice: exactly one per invoice, through an outbox.
//!
//! When an order's invoice is due to reach the customer — its payment came with the order, or it
//! is a prepayment order waiting for a bank transfer — the orders domain writes one
//! `notification_outbox` row **in the same transaction** as the `order_sync` state change that
//! makes it due (`invoice_created → invoice_mailing`). The row's unique key
//! `(shop, order, invoice)` makes "one message per invoice" a database fact: a duplicate webhook
//! or a second worker finds the row and adds none.
//!
//! The [`relay::Relay`] sends rows with sevDesk's `sendViaEmail` (sevDesk attaches the invoice
//! PDF and marks the invoice sent, which opens the draft), outside any transaction, and records
//! each result when it is known; the transaction that marks a row sent also moves its order to
//! `invoice_sent`, so the payment can be booked (sevDesk books only on an open invoice).
//!
//! **Unknown outcome.** sevDesk has no idempotency keys, and sends a second e-mail for a second
//! call. `attempt_started_at` is committed before each send and cleared with its result; a row
//! that still carries it (a timeout, a 5xx, a worker killed mid-call) is left alone for the
//! settle time (`HOOKLINE_SEVDESK_SETTLE_SECS`), then the invoice is read: sevDesk's spec offers
//! no listing of sent e-mails, but `sendViaEmail` leaves the invoice open with `sendType` `VM`
//! and a `sendDate`. An invoice showing that is recorded as sent **without sending**. The read
//! happens before every send, not only after an unknown outcome: a lost row or a hand-made retry
//! cannot mail twice either.
//!
//! An order without an e-mail address gets no row to send: its invoice is opened with `sendBy`,
//! as before, and a `skipped` row records why no e-mail went out.

pub mod relay;
pub mod template;

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use hookline_core::config::ConfigError;
use serde_json::json;

use crate::settings::{
    NOTIFY_BANK_DETAILS, NOTIFY_CHANNEL, NOTIFY_COPY, NOTIFY_MAX_ATTEMPTS, NOTIFY_POLL,
    NOTIFY_PREPAYMENT_SUBJECT, NOTIFY_PREPAYMENT_TEXT, NOTIFY_RELAY, NOTIFY_SUBJECT, NOTIFY_TEXT,
    PREPAYMENT_GATEWAYS,
};
pub use template::{Fields, Template, TemplateError};

/// How the customer gets the invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// sevDesk e-mails the invoice PDF (`sendViaEmail`).
    SevdeskEmail,
    /// No message: the invoice is marked sent (`sendBy`).
    Off,
}

/// Which message: the invoice of a paid order, or of a prepayment order (with bank details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Paid at checkout.
    Invoice,
    /// To be paid by bank transfer.
    Prepayment,
}

impl Kind {
    /// `notification_outbox.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Invoice => "invoice",
            Kind::Prepayment => "prepayment",
        }
    }

    fn parse(text: &str) -> Kind {
        if text == "prepayment" {
            Kind::Prepayment
        } else {
            Kind::Invoice
        }
    }
}

/// Subject and text of one kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate {
    /// The subject.
    pub subject: Template,
    /// The text.
    pub text: Template,
}

/// The notification settings (`HOOKLINE_NOTIFY_*`, `HOOKLINE_PREPAYMENT_GATEWAYS`).
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// [`NOTIFY_CHANNEL`].
    pub channel: Channel,
    /// [`NOTIFY_SUBJECT`], [`NOTIFY_TEXT`].
    pub paid: MessageTemplate,
    /// [`NOTIFY_PREPAYMENT_SUBJECT`], [`NOTIFY_PREPAYMENT_TEXT`].
    pub prepayment: MessageTemplate,
    /// [`NOTIFY_BANK_DETAILS`].
    pub bank_details: String,
    /// [`NOTIFY_COPY`].
    pub copy: bool,
    /// [`NOTIFY_RELAY`].
    pub run_relay: bool,
    /// [`NOTIFY_POLL`].
    pub poll_interval: Duration,
    /// [`NOTIFY_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// [`PREPAYMENT_GATEWAYS`], lower-cased.
    pub prepayment_gateways: Vec<String>,
}

impl NotifySettings {
    /// Reads and checks the settings: an unknown placeholder refuses to start, naming the
    /// setting and the placeholders there are.
    pub fn read<F: Fn(&str) -> Option<String>>(
        env: &hookline_core::config::Env<F>,
    ) -> Result<Self, ConfigError> {
        let template = |setting: &hookline_core::config::Setting<String>| {
            let text = env.read(setting)?;
            Template::parse(&text).map_err(|e| {
                tracing::error!(setting = setting.name(), error = %e, "template refused");
                ConfigError::Invalid {
                    name: setting.name(),
                    value: text.clone(),
                    reason: "a template may use only {order_name}, {invoice_number}, {amount}, {customer_name} and {bank_details}, with balanced braces ({{ and }} for literal ones)",
                }
            })
        };
        let channel_text = env.read(&NOTIFY_CHANNEL)?;
        let channel = match channel_text.to_ascii_lowercase().as_str() {
            "sevdesk" => Channel::SevdeskEmail,
            "off" | "none" => Channel::Off,
            _ => {
                return Err(ConfigError::Invalid {
                    name: NOTIFY_CHANNEL.name(),
                    value: channel_text,
                    reason: "expected sevdesk (sevDesk e-mails the invoice) or off",
                });
            }
        };
        let gateways = env.read(&PREPAYMENT_GATEWAYS)?;
        let prepayment_gateways = if gateways.trim().eq_ignore_ascii_case("none") {
            vec![]
        } else {
            gateways
                .split(',')
                .map(|g| g.trim().to_lowercase())
                .filter(|g| !g.is_empty())
                .collect()
        };
        Ok(Self {
            channel,
            paid: MessageTemplate {
                subject: template(&NOTIFY_SUBJECT)?,
                text: template(&NOTIFY_TEXT)?,
            },
            prepayment: MessageTemplate {
                subject: template(&NOTIFY_PREPAYMENT_SUBJECT)?,
                text: template(&NOTIFY_PREPAYMENT_TEXT)?,
            },
            bank_details: env.read(&NOTIFY_BANK_DETAILS)?.replace("\\n", "\n"),
            copy: env.read(&NOTIFY_COPY)?,
            run_relay: env.read(&NOTIFY_RELAY)?,
            poll_interval: env.read(&NOTIFY_POLL)?.0,
            max_attempts: env.read(&NOTIFY_MAX_ATTEMPTS)?.max(1),
            prepayment_gateways,
        })
    }

    /// Whether an order paid through `gateways` is a prepayment (bank transfer) order.
    pub fn is_prepayment(&self, gateways: &[String]) -> bool {
        !gateways.is_empty()
            && gateways.iter().all(|g| {
                self.prepayment_gateways
                    .iter()
                    .any(|p| *p == g.trim().to_lowercase())
            })
    }

    /// The template of `kind`.
    pub fn template(&self, kind: Kind) -> &MessageTemplate {
        match kind {
            Kind::Invoice => &self.paid,
            Kind::Prepayment => &self.prepayment,
        }
    }
}

/// What a message says about its order, kept with the row (the invoice number is read from
/// sevDesk when it is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts<'a> {
    /// `#1001`.
    pub order_name: &'a str,
    /// The total.
    pub amount: rust_decimal::Decimal,
    /// ISO currency.
    pub currency: &'a str,
    /// Who is greeted.
    pub customer_name: &'a str,
}

/// The outbox row of one message.
pub struct NewMessage<'a> {
    /// The shop.
    pub shop: &'a str,
    /// Shopify's order id.
    pub order_id: i64,
    /// sevDesk's invoice id.
    pub invoice_id: &'a str,
    /// Which message.
    pub kind: Kind,
    /// The customer's address; `None` records a `skipped` row with `why`.
    pub recipient: Option<&'a str>,
    /// Why nothing is sent (no address, channel off).
    pub why: Option<&'a str>,
    /// The order's facts.
    pub facts: OrderFacts<'a>,
    /// The webhook's trace.
    pub traceparent: Option<&'a str>,
}

/// Writes the message's row (call it inside the transaction of the state change that makes it
/// due). A row for the same invoice already there is kept: `false`.
pub async fn enqueue(
    client: &impl GenericClient,
    message: &NewMessage<'_>,
) -> Result<bool, tokio_postgres::Error> {
    let payload = json!({
        "order_name": message.facts.order_name,
        "amount": message.facts.amount.to_string(),
        "currency": message.facts.currency,
        "customer_name": message.facts.customer_name,
    });
    let status = if message.recipient.is_some() {
        "pending"
    } else {
        "skipped"
    };
    let inserted = client
        .execute(
            "INSERT INTO notification_outbox (shop_domain, order_id, invoice_id, kind, recipient, payload, status, last_error, traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (shop_domain, order_id, invoice_id) DO NOTHING",
            &[
                &message.shop,
                &message.order_id,
                &message.invoice_id,
                &message.kind.as_str(),
                &message.recipient,
                &payload,
                &status,
                &message.why,
                &message.traceparent,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// Where an order's message stands, as the orders domain reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Not sent yet (or outcome unknown).
    Pending,
    /// Sent (or found sent).
    Sent,
    /// Failed for good, or nothing to send.
    Failed,
}

/// The state of the message for `invoice_id`, if there is one.
pub async fn state_of(
    client: &impl GenericClient,
    shop: &str,
    order_id: i64,
    invoice_id: &str,
) -> Result<Option<MessageState>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT status FROM notification_outbox WHERE shop_domain = $1 AND order_id = $2 AND invoice_id = $3",
            &[&shop, &order_id, &invoice_id],
        )
        .await?;
    Ok(row.map(|r| match r.get::<_, &str>(0) {
        "sent" => MessageState::Sent,
        "pending" => MessageState::Pending,
        _ => MessageState::Failed,
    }))
}

/// One row, as `hookctl notifications list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// Row id (what `retry` takes).
    pub id: i64,
    /// The shop.
    pub shop: String,
    /// Shopify's order id.
    pub order_id: i64,
    /// The order's name.
    pub order_name: String,
    /// sevDesk's invoice id.
    pub invoice_id: String,
    /// `invoice` or `prepayment`.
    pub kind: String,
    /// The address.
    pub recipient: Option<String>,
    /// `pending`, `sent`, `failed`, `skipped`.
    pub status: String,
    /// Sends tried.
    pub attempts: i32,
    /// `sent` or `found_sent` (recorded from what sevDesk showed, without sending).
    pub outcome: Option<String>,
    /// Why it failed, was skipped, or is being retried.
    pub last_error: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

/// The newest rows, `status` only if given.
pub async fn list(
    client: &tokio_postgres::Client,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<Listed>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, shop_domain, order_id, payload->>'order_name', invoice_id, kind, recipient, status, attempts, outcome, last_error, created_at, sent_at
               FROM notification_outbox WHERE $1::text IS NULL OR status = $1 ORDER BY id DESC LIMIT $2",
            &[&status, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Listed {
            id: r.get(0),
            shop: r.get(1),
            order_id: r.get(2),
            order_name: r.get::<_, Option<String>>(3).unwrap_or_default(),
            invoice_id: r.get(4),
            kind: r.get(5),
            recipient: r.get(6),
            status: r.get(7),
            attempts: r.get(8),
            outcome: r.get(9),
            last_error: r.get(10),
            created_at: r.get(11),
            sent_at: r.get(12),
        })
        .collect())
}

/// Why a retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// No such row.
    #[error("no notification with id {0}")]
    NotFound(i64),
    /// Only failed rows are retried: a pending one is on its way, a sent one is done, a skipped
    /// one has no address.
    #[error("notification {id} is {status}; only failed notifications are retried")]
    NotFailed {
        /// The row.
        id: i64,
        /// Its status.
        status: String,
    },
    /// The database.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
}

/// Makes a failed row due again with fresh attempts. What sevDesk recorded is still read before
/// it is sent, and an unknown outcome still settles first: a retry cannot mail twice.
pub async fn retry(client: &tokio_postgres::Client, id: i64) -> Result<(), RetryError> {
    let updated = client
        .execute(
            "UPDATE notification_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),
                    last_error = 'retried by an operator after: ' || coalesce(last_error, '-')
              WHERE id = $1 AND status = 'failed'",
            &[&id],
        )
        .await?;
    if updated == 1 {
        return Ok(());
    }
    match client
        .query_opt(
            "SELECT status FROM notification_outbox WHERE id = $1",
            &[&id],
        )
        .await?
    {
        None => Err(RetryError::NotFound(id)),
        Some(row) => Err(RetryError::NotFailed {
            id,
            status: row.get(0),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(gateways: &str) -> NotifySettings {
        let env = hookline_core::config::Env::from_fn(|name| {
            (name == PREPAYMENT_GATEWAYS.name()).then(|| gateways.to_owned())
        });
        NotifySettings::read(&env).unwrap()
    }

    #[test]
    fn the_defaults_parse_and_know_shopifys_manual_gateways() {
        let s = settings("Bank Deposit,manual");
        assert_eq!(s.channel, Channel::SevdeskEmail);
        assert!(s.prepayment.text.uses("bank_details"));
        assert!(s.is_prepayment(&["bank deposit".into()]));
        assert!(s.is_prepayment(&["manual".into()]));
        assert!(!s.is_prepayment(&["shopify_payments".into()]));
        assert!(!s.is_prepayment(&[]), "no gateway is no prepayment");
        assert!(
            !s.is_prepayment(&["manual".into(), "gift_card".into()]),
            "partly paid with a gift card: not a plain bank transfer"
        );
        assert!(!settings("none").is_prepayment(&["manual".into()]));
    }

    #[test]
    fn an_unknown_placeholder_refuses_to_start_naming_the_setting() {
        let env = hookline_core::config::Env::from_fn(|name| {
            (name == NOTIFY_SUBJECT.name()).then(|| "Rechnung {invoice_nr}".to_owned())
        });
        let error = NotifySettings::read(&env).unwrap_err().to_string();
        assert!(
            error.contains("HOOKLINE_NOTIFY_SUBJECT") && error.contains("{invoice_nr}"),
            "{error}"
        );
        let env = hookline_core::config::Env::from_fn(|name| {
            (name == NOTIFY_CHANNEL.name()).then(|| "pigeon".to_owned())
        });
        assert!(NotifySettings::read(&env).is_err());
    }
}
