//! The audit trail: every envelope the worker decided on, what it decided (applied, duplicate,
//! skipped, retried, dead-lettered), the steps it took (sevDesk calls with their results, outbox
//! rows) and the state changes of orders and refunds. It answers "what happened to order #1042",
//! and it is what `hookctl replay` re-publishes from. See `docs/audit.md`.
//!
//! # Why PostgreSQL, written by the worker
//!
//! Two stores were weighed. A RabbitMQ stream bound to `hookline.events` would capture every
//! published envelope, even one no worker consumed yet, but it costs the broker on the ingest hot
//! path (a second durable copy of every message), it knows nothing of what the worker did, and a
//! stream cannot delete one customer's data: `customers/redact` could only be honoured by
//! dropping whole segments. The trail is therefore two PostgreSQL tables, `audit_events` (one
//! row per decided delivery) and `audit_steps` (its sevDesk calls and outbox rows, plus state
//! changes), both range-partitioned by day:
//!
//! - the ingestor pays nothing: rows are written by the worker, in the bulkhead
//!   ([`crate::consume`]), where the outcome of a delivery is decided, before the delivery is
//!   acked (or, for a retry or dead letter, once the broker confirmed the republish). One
//!   statement per delivery writes the envelope row and all its steps (a data-modifying CTE), on
//!   the trail's own small pool, under a timeout: a slow or failing trail is logged and counted
//!   (`hookline_worker_audit_write_failures_total`), never a reason to hold back an ack;
//! - retention drops whole day partitions ([`drop_expired`]), which costs nothing however many
//!   millions of rows they hold; the partitions of the coming days are created ahead;
//! - redaction is an `UPDATE`: `customers/redact` and `shop/redact` null the envelopes (and the
//!   e-mail and customer id) of the rows concerned and keep the skeleton (topic, outcome, steps,
//!   sevDesk document ids) — [`redact_customer`], [`redact_shop`].
//!
//! # What the trail does not hold
//!
//! - envelopes still queued (or waiting for a retry): they are in RabbitMQ, and get their row
//!   when a worker decides on them. An envelope that never reaches a worker is a dead letter or
//!   still in its queue, both visible with `hookctl dlq` and the broker's UI;
//! - bodies that are not envelopes at all (dead-lettered as unreadable, they are in the DLQ);
//! - the payloads of privacy requests (`customers/redact`, `customers/data_request`,
//!   `shop/redact`): their payload is the personal data itself, so only the skeleton is kept,
//!   and they cannot be replayed from the trail;
//! - a delivery whose effect committed but whose worker died before the row was written: the
//!   broker redelivers it (it was not acked), and the trail shows that copy as a duplicate. The
//!   row is not written inside the effect's transaction: the orders domain has no single one
//!   (each step commits on its own), and one hook point for every domain keeps the domains
//!   untouched.
//!
//! Steps are collected while the handler runs through a task-local [`Collector`]: the sevDesk
//! client records each call ([`record`], from one place: `SevDeskClient::call`), the inventory
//! domain its outbox rows. State changes of `order_sync` and `refund_sync` are written by a
//! trigger (migration `0011_audit_trail.sql`), so the state machine has no audit code at all.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use deadpool_postgres::Pool;
use hookline_core::{Domain, Envelope};
use lapin::BasicProperties;
use lapin::types::AMQPValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::ToSql;

/// AMQP header naming the `hookctl replay` run a copy comes from.
pub const REPLAY_HEADER: &str = "x-hookline-replay";

/// How long one trail write may take before it is given up (and counted).
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Day partitions created ahead of today (today included).
pub const DAYS_AHEAD: i32 = 3;

tokio::task_local! {
    static STEPS: Arc<Mutex<Vec<Step>>>;
}

/// One step of a delivery: a call to sevDesk, an outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `sevdesk_call` or `outbox`.
    pub kind: &'static str,
    /// E.g. `POST /Invoice/Factory/saveInvoice`, `stock_level_changed`.
    pub name: String,
    /// The HTTP status, when an answer came.
    pub status: Option<i32>,
    /// Whether it succeeded.
    pub ok: bool,
    /// The document it created, found or wrote (sevDesk id, outbox row id).
    pub document_id: Option<String>,
    /// The document's number (invoice number, credit note number, customer number), if any.
    pub document_number: Option<String>,
    /// The error, or what else is worth knowing (how many objects a search found).
    pub detail: Option<String>,
    /// How long it took.
    pub duration_ms: Option<i32>,
}

/// Records `step` on the delivery being handled; outside a delivery (start-up checks, the
/// doctor) it is dropped.
pub fn record(step: Step) {
    let _ = STEPS.try_with(|steps| {
        if let Ok(mut steps) = steps.lock() {
            steps.push(step);
        }
    });
}

/// Records a sevDesk call: `result` is the answer's body, or the error as text.
pub fn record_sevdesk_call(
    method: &str,
    path: &str,
    status: Option<u16>,
    result: Result<&Value, String>,
    took: Duration,
) {
    let (document_id, document_number, detail) = match &result {
        Ok(body) => document_of(body),
        Err(error) => {
            let mut error = error.clone();
            crate::failure::truncate(&mut error, 300);
            (None, None, Some(error))
        }
    };
    record(Step {
        at: Utc::now(),
        kind: "sevdesk_call",
        name: format!("{method} {path}"),
        status: status.map(i32::from),
        ok: result.is_ok(),
        document_id,
        document_number,
        detail,
        duration_ms: i32::try_from(took.as_millis()).ok(),
    });
}

/// Records an outbox row written by the effect.
pub fn record_outbox(id: i64, event_type: &str, aggregate_id: &str, version: i64) {
    record(Step {
        at: Utc::now(),
        kind: "outbox",
        name: event_type.to_owned(),
        status: None,
        ok: true,
        document_id: Some(id.to_string()),
        document_number: None,
        detail: Some(format!("{aggregate_id} version {version}")),
        duration_ms: None,
    });
}

/// The document a sevDesk answer is about: `(id, number, detail)`. Factories answer
/// `objects.invoice` / `objects.creditNote`; other calls one object or a list (a search: its one
/// hit, or how many it found).
pub fn document_of(body: &Value) -> (Option<String>, Option<String>, Option<String>) {
    let objects = &body["objects"];
    let one = if objects["invoice"].is_object() {
        Some(&objects["invoice"])
    } else if objects["creditNote"].is_object() {
        Some(&objects["creditNote"])
    } else if let Some(list) = objects.as_array() {
        if list.len() != 1 {
            return (None, None, Some(format!("{} found", list.len())));
        }
        list.first()
    } else if objects.is_object() {
        Some(objects)
    } else {
        None
    };
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match one {
        Some(o) => (
            text(&o["id"]),
            ["invoiceNumber", "creditNoteNumber", "customerNumber"]
                .iter()
                .find_map(|k| text(&o[*k])),
            None,
        ),
        None => (None, None, None),
    }
}

/// Collects the steps of one delivery while its handler runs.
#[derive(Debug, Clone, Default)]
pub struct Collector(Arc<Mutex<Vec<Step>>>);

impl Collector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `future` with this collector as the place [`record`] writes to.
    pub async fn scope<F: Future>(&self, future: F) -> F::Output {
        STEPS.scope(self.0.clone(), future).await
    }

    /// The steps recorded so far.
    pub fn take(&self) -> Vec<Step> {
        self.0
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

/// What the worker decided for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The effect is committed.
    Applied,
    /// Applied before; nothing changed.
    Duplicate,
    /// Valid, but nothing to do.
    Skipped,
    /// Sent to a wait queue, to be tried again.
    Retried,
    /// Sent to the dead-letter queue.
    DeadLettered,
}

impl Decision {
    /// As stored (`audit_events.outcome`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Skipped => "skipped",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
        }
    }

    /// Every stored value, for argument checks.
    pub const ALL: [&'static str; 5] = [
        "applied",
        "duplicate",
        "skipped",
        "retried",
        "dead_lettered",
    ];
}

/// One decided delivery, as the bulkhead hands it to the trail.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The envelope.
    pub envelope: &'a Envelope,
    /// The delivery's properties (for the replay header).
    pub properties: &'a BasicProperties,
    /// Whose bulkhead.
    pub domain: Domain,
    /// What was decided.
    pub decision: Decision,
    /// The skip, retry or dead-letter reason.
    pub reason: Option<&'a str>,
    /// The error, for a retry or dead letter.
    pub error: Option<&'a str>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The steps the bulkhead or handler named.
    pub steps: &'a [&'a str],
    /// The steps recorded while the handler ran.
    pub calls: Vec<Step>,
}

/// What the trail keeps of a payload besides the envelope: the ids it is found by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The payload's `id`.
    pub resource_id: Option<i64>,
    /// The order it concerns: an order's `id`, a refund's (or fulfillment's) `order_id`.
    pub order_id: Option<i64>,
    /// `customer.id`.
    pub customer_id: Option<i64>,
    /// `email` or `customer.email`, lowercased (for redaction by e-mail); never for privacy
    /// requests.
    pub email: Option<String>,
}

/// Reads [`Facts`] from an envelope's payload (what cannot be read stays `None`).
pub fn facts(topic: &str, payload: &str, domain: Domain) -> Facts {
    #[derive(Deserialize, Default)]
    struct Customer {
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        email: Option<String>,
    }
    #[derive(Deserialize, Default)]
    struct Probe {
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        order_id: Option<Value>,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        customer: Option<Customer>,
    }
    let probe: Probe = serde_json::from_str(payload).unwrap_or_default();
    let int = |v: &Option<Value>| {
        v.as_ref().and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let customer = probe.customer.unwrap_or_default();
    let privacy = domain == Domain::Compliance;
    let resource_id = if privacy { None } else { int(&probe.id) };
    Facts {
        resource_id,
        order_id: if topic.starts_with("orders/") {
            resource_id
        } else {
            int(&probe.order_id)
        },
        customer_id: int(&customer.id),
        email: if privacy {
            None
        } else {
            probe
                .email
                .or(customer.email)
                .filter(|e| !e.is_empty())
                .map(|e| e.to_lowercase())
        },
    }
}

/// The replay run a delivery comes from, if any.
pub fn replay_tag(properties: &BasicProperties) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(REPLAY_HEADER)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// The writer, shared by every bulkhead of a process.
#[derive(Clone)]
pub struct Trail {
    pool: Pool,
    /// The last day (days since the epoch) whose partitions this process made sure of.
    ensured: Arc<AtomicI64>,
}

impl Trail {
    /// A trail writing through `pool` (its own, small).
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            ensured: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// Writes one decided delivery. Never fails the delivery: a failure is logged and counted.
    pub async fn write(&self, entry: Entry<'_>) {
        let result = tokio::time::timeout(WRITE_TIMEOUT, self.try_write(&entry)).await;
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(error)) => crate::failure::error_chain(&error),
            Err(_) => format!("no answer within {WRITE_TIMEOUT:?}"),
        };
        tracing::warn!(%error, outcome = entry.decision.as_str(), "audit trail: delivery not recorded");
        metrics::counter!("hookline_worker_audit_write_failures_total").increment(1);
    }

    async fn try_write(&self, entry: &Entry<'_>) -> Result<(), AuditError> {
        let client = self.pool.get().await?;
        let today = Utc::now().date_naive();
        let day = i64::from(today.num_days_from_ce());
        if self.ensured.load(Ordering::Relaxed) < day {
            ensure_partitions(&client, today).await?;
            self.ensured.store(day, Ordering::Relaxed);
        }
        match insert(&client, entry).await {
            Err(e) if missing_partition(&e) => {
                ensure_partitions(&client, today).await?;
                insert(&client, entry).await?;
            }
            other => other?,
        }
        Ok(())
    }
}

fn missing_partition(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
        && error.to_string().contains("partition")
}

const INSERT: &str = "
WITH e AS (
    INSERT INTO audit_events (event_id, idempotency_key, webhook_id, source, topic, shop_domain, domain,
        resource_id, order_id, customer_id, email, received_at, outcome, reason, error, attempts, steps,
        envelope, replay)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
    RETURNING 1
)
INSERT INTO audit_steps (recorded_at, event_id, shop_domain, order_id, kind, name, status, ok,
    document_id, document_number, detail, duration_ms)
SELECT s.at, $1, $6, $9, s.kind, s.name, s.status, s.ok, s.document_id, s.document_number, s.detail, s.duration_ms
FROM e, unnest($20::timestamptz[], $21::text[], $22::text[], $23::int4[], $24::bool[], $25::text[],
    $26::text[], $27::text[], $28::int4[])
    AS s(at, kind, name, status, ok, document_id, document_number, detail, duration_ms)";

async fn insert(
    client: &tokio_postgres::Client,
    entry: &Entry<'_>,
) -> Result<(), tokio_postgres::Error> {
    let e = entry.envelope;
    let facts = facts(&e.topic, e.payload.get(), entry.domain);
    let kept = (entry.domain != Domain::Compliance)
        .then(|| String::from_utf8_lossy(&e.to_json()).into_owned());
    let source = serde_json::to_value(e.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let steps: Vec<&str> = entry.steps.to_vec();
    let attempts = i32::try_from(entry.attempts).unwrap_or(i32::MAX);
    let c = &entry.calls;
    let at: Vec<DateTime<Utc>> = c.iter().map(|s| s.at).collect();
    let kind: Vec<&str> = c.iter().map(|s| s.kind).collect();
    let name: Vec<&str> = c.iter().map(|s| s.name.as_str()).collect();
    let status: Vec<Option<i32>> = c.iter().map(|s| s.status).collect();
    let ok: Vec<bool> = c.iter().map(|s| s.ok).collect();
    let doc: Vec<Option<&str>> = c.iter().map(|s| s.document_id.as_deref()).collect();
    let number: Vec<Option<&str>> = c.iter().map(|s| s.document_number.as_deref()).collect();
    let detail: Vec<Option<&str>> = c.iter().map(|s| s.detail.as_deref()).collect();
    let took: Vec<Option<i32>> = c.iter().map(|s| s.duration_ms).collect();
    client
        .execute(
            INSERT,
            &[
                &e.event_id,
                &e.idempotency_key.as_str(),
                &e.webhook_id,
                &source,
                &e.topic,
                &e.shop_domain,
                &entry.domain.name(),
                &facts.resource_id,
                &facts.order_id,
                &facts.customer_id,
                &facts.email,
                &e.received_at,
                &entry.decision.as_str(),
                &entry.reason,
                &entry.error,
                &attempts,
                &steps,
                &kept,
                &replay_tag(entry.properties),
                &at,
                &kind,
                &name,
                &status,
                &ok,
                &doc,
                &number,
                &detail,
                &took,
            ],
        )
        .await?;
    Ok(())
}

/// Creates the day partitions from yesterday to [`DAYS_AHEAD`] days ahead of `today`.
pub async fn ensure_partitions(
    client: &tokio_postgres::Client,
    today: NaiveDate,
) -> Result<(), tokio_postgres::Error> {
    let first = today - chrono::Duration::days(1);
    client
        .execute(
            "SELECT hookline_audit_partitions($1, $2)",
            &[&first, &(DAYS_AHEAD + 1)],
        )
        .await?;
    Ok(())
}

/// The day a partition of the trail holds, from its name (`audit_events_p20261123`).
pub fn partition_day(name: &str) -> Option<NaiveDate> {
    let (table, day) = name.rsplit_once("_p")?;
    if table != "audit_events" && table != "audit_steps" {
        return None;
    }
    NaiveDate::parse_from_str(day, "%Y%m%d").ok()
}

/// Whether the partition of `day` holds only rows older than `now - keep`.
pub fn expired(day: NaiveDate, now: DateTime<Utc>, keep: chrono::Duration) -> bool {
    let end = (day + chrono::Duration::days(1)).and_time(chrono::NaiveTime::MIN);
    end.and_utc() <= now - keep
}

/// Drops the trail's partitions whose rows are all older than `keep`; returns their names.
pub async fn drop_expired(
    client: &tokio_postgres::Client,
    now: DateTime<Utc>,
    keep: chrono::Duration,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class p ON p.oid = i.inhparent
              WHERE p.relname IN ('audit_events', 'audit_steps')
              ORDER BY 1",
            &[],
        )
        .await?;
    let mut dropped = vec![];
    for row in rows {
        let name: String = row.get(0);
        if partition_day(&name).is_some_and(|day| expired(day, now, keep)) {
            // The name was read from the catalogue and matched our pattern: safe to splice.
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS \"{name}\""))
                .await?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// `customers/redact`: the rows about the customer (by customer id, by e-mail, or about one of
/// `orders`) lose their envelope, e-mail and customer id; their skeleton stays. Returns how many.
pub async fn redact_customer(
    client: &tokio_postgres::Client,
    shop: &str,
    customer_id: Option<i64>,
    email: Option<&str>,
    orders: &[i64],
) -> Result<u64, tokio_postgres::Error> {
    let email = email.filter(|e| !e.is_empty()).map(str::to_lowercase);
    client
        .execute(
            "UPDATE audit_events SET envelope = NULL, email = NULL, customer_id = NULL, redacted_at = now()
              WHERE shop_domain = $1 AND redacted_at IS NULL
                AND (customer_id = $2 OR email = $3 OR order_id = ANY($4))",
            &[&shop, &customer_id, &email, &orders],
        )
        .await
}

/// `shop/redact`: every row of the shop loses its envelope, e-mail and customer id; the
/// skeleton stays until retention drops it. Returns how many.
pub async fn redact_shop(
    client: &tokio_postgres::Client,
    shop: &str,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE audit_events SET envelope = NULL, email = NULL, customer_id = NULL, redacted_at = now()
              WHERE shop_domain = $1 AND redacted_at IS NULL",
            &[&shop],
        )
        .await
}

/// Which rows of the trail to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// One shop.
    pub shop: Option<String>,
    /// One topic.
    pub topic: Option<String>,
    /// The payload's `id`, or the order it concerns.
    pub resource: Option<i64>,
    /// Decided at or after.
    pub since: Option<DateTime<Utc>>,
    /// Decided before.
    pub until: Option<DateTime<Utc>>,
    /// One outcome ([`Decision::ALL`]).
    pub outcome: Option<String>,
    /// One envelope.
    pub event_id: Option<uuid::Uuid>,
    /// At most this many (newest first for listing).
    pub limit: Option<i64>,
}

impl EventFilter {
    fn clause(&self) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut conditions: Vec<String> = vec!["true".into()];
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![];
        let mut add = |sql: &str, value: Box<dyn ToSql + Sync + Send>| {
            params.push(value);
            conditions.push(sql.replace('?', &format!("${}", params.len())));
        };
        if let Some(v) = &self.shop {
            add("shop_domain = ?", Box::new(v.clone()));
        }
        if let Some(v) = &self.topic {
            add("topic = ?", Box::new(v.clone()));
        }
        if let Some(v) = self.resource {
            add("(resource_id = ? OR order_id = ?)", Box::new(v));
        }
        if let Some(v) = self.since {
            add("recorded_at >= ?", Box::new(v));
        }
        if let Some(v) = self.until {
            add("recorded_at < ?", Box::new(v));
        }
        if let Some(v) = &self.outcome {
            add("outcome = ?", Box::new(v.clone()));
        }
        if let Some(v) = self.event_id {
            add("event_id = ?", Box::new(v));
        }
        (conditions.join(" AND "), params)
    }
}

/// One row of `audit_events`, as `hookctl` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// When the worker decided.
    pub recorded_at: DateTime<Utc>,
    /// When hookline received the envelope.
    pub received_at: DateTime<Utc>,
    /// The envelope's id.
    pub event_id: uuid::Uuid,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// `webhook` or `reconciliation`.
    pub source: String,
    /// The topic.
    pub topic: String,
    /// The shop.
    pub shop: String,
    /// The payload's id.
    pub resource_id: Option<i64>,
    /// The order concerned.
    pub order_id: Option<i64>,
    /// [`Decision::as_str`].
    pub outcome: String,
    /// Why (skip, retry, dead letter).
    pub reason: Option<String>,
    /// The error.
    pub error: Option<String>,
    /// Failed attempts.
    pub attempts: i32,
    /// Steps named by the handler.
    pub steps: Vec<String>,
    /// The replay run it came from.
    pub replay: Option<String>,
    /// Whether its envelope was erased (or, for privacy requests, never kept).
    pub envelope_kept: bool,
}

const EVENT_COLUMNS: &str = "recorded_at, received_at, event_id, idempotency_key, source, topic, shop_domain, \
     resource_id, order_id, outcome, reason, error, attempts, steps, replay, envelope IS NOT NULL";

fn event_row(r: &tokio_postgres::Row) -> EventRow {
    EventRow {
        recorded_at: r.get(0),
        received_at: r.get(1),
        event_id: r.get(2),
        idempotency_key: r.get(3),
        source: r.get(4),
        topic: r.get(5),
        shop: r.get(6),
        resource_id: r.get(7),
        order_id: r.get(8),
        outcome: r.get(9),
        reason: r.get(10),
        error: r.get(11),
        attempts: r.get(12),
        steps: r.get(13),
        replay: r.get(14),
        envelope_kept: r.get(15),
    }
}

/// The rows matching `filter`, oldest first (the newest `limit` when limited).
pub async fn events(
    client: &tokio_postgres::Client,
    filter: &EventFilter,
) -> Result<Vec<EventRow>, tokio_postgres::Error> {
    let (clause, params) = filter.clause();
    let limit = filter.limit.unwrap_or(i64::MAX).max(0);
    let sql = format!(
        "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM audit_events WHERE {clause}
           ORDER BY recorded_at DESC, id DESC LIMIT {limit}) newest ORDER BY 1, 3"
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
    Ok(client
        .query(&sql, &refs)
        .await?
        .iter()
        .map(event_row)
        .collect())
}

/// One row of `audit_steps`.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    /// When.
    pub at: DateTime<Utc>,
    /// The delivery it belongs to (none for state changes).
    pub event_id: Option<uuid::Uuid>,
    /// `sevdesk_call`, `outbox`, `order_state`, `refund_state`.
    pub kind: String,
    /// The call, or the new state.
    pub name: String,
    /// HTTP status.
    pub status: Option<i32>,
    /// Succeeded.
    pub ok: Option<bool>,
    /// Document id.
    pub document_id: Option<String>,
    /// Document number.
    pub document_number: Option<String>,
    /// Error or note.
    pub detail: Option<String>,
    /// Duration.
    pub duration_ms: Option<i32>,
}

/// One order's whole history: its webhooks (with reconciled copies), the state changes of its
/// `order_sync` and `refund_sync` rows, and its recorded sevDesk calls.
#[derive(Debug, Clone, Serialize)]
pub struct OrderHistory {
    /// `order_sync` as it is now: state, invoice, cancellation (if the order is known).
    pub current: Option<Value>,
    /// Its deliveries, oldest first.
    pub events: Vec<EventRow>,
    /// State changes and calls, oldest first.
    pub steps: Vec<StepRow>,
}

/// Reads one order's history.
pub async fn order_history(
    client: &tokio_postgres::Client,
    shop: &str,
    order_id: i64,
) -> Result<OrderHistory, tokio_postgres::Error> {
    let current = client
        .query_opt(
            "SELECT jsonb_build_object('state', state, 'order_name', order_name, 'invoice_id', invoice_id,
                    'cancellation_id', cancellation_id, 'pending_call', pending_call, 'updated_at', updated_at)
               FROM order_sync WHERE shop_domain = $1 AND order_id = $2",
            &[&shop, &order_id],
        )
        .await?
        .map(|r| r.get(0));
    let events = client
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM audit_events WHERE shop_domain = $1 AND order_id = $2 ORDER BY recorded_at, id"
            ),
            &[&shop, &order_id],
        )
        .await?
        .iter()
        .map(event_row)
        .collect();
    let steps = client
        .query(
            "SELECT recorded_at, event_id, kind, name, status, ok, document_id, document_number, detail, duration_ms
               FROM audit_steps WHERE shop_domain = $1 AND order_id = $2 ORDER BY recorded_at, id",
            &[&shop, &order_id],
        )
        .await?
        .iter()
        .map(|r| StepRow {
            at: r.get(0),
            event_id: r.get(1),
            kind: r.get(2),
            name: r.get(3),
            status: r.get(4),
            ok: r.get(5),
            document_id: r.get(6),
            document_number: r.get(7),
            detail: r.get(8),
            duration_ms: r.get(9),
        })
        .collect();
    Ok(OrderHistory {
        current,
        events,
        steps,
    })
}

/// An envelope the trail can re-publish: the newest row of each idempotency key in the window.
#[derive(Debug, Clone)]
pub struct ReplayCandidate {
    /// The row.
    pub row: EventRow,
    /// The envelope as delivered; `None` when it was erased (or never kept).
    pub envelope: Option<String>,
    /// Whether its key is still recorded in `processed_events`: a plain replay of it is answered
    /// as a duplicate.
    pub recorded: bool,
}

/// The envelopes of `filter`'s window, one per idempotency key (its newest row), oldest first.
pub async fn replay_candidates(
    client: &tokio_postgres::Client,
    filter: &EventFilter,
) -> Result<Vec<ReplayCandidate>, tokio_postgres::Error> {
    let (clause, params) = filter.clause();
    let limit = filter.limit.unwrap_or(i64::MAX).max(0);
    let sql = format!(
        "SELECT * FROM (
            SELECT DISTINCT ON (idempotency_key) {EVENT_COLUMNS}, envelope,
                   EXISTS (SELECT 1 FROM processed_events p WHERE p.idempotency_key = a.idempotency_key)
              FROM audit_events a WHERE {clause}
             ORDER BY idempotency_key, recorded_at DESC, id DESC) newest
          ORDER BY 1, 3 LIMIT {limit}"
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
    Ok(client
        .query(&sql, &refs)
        .await?
        .iter()
        .map(|r| ReplayCandidate {
            row: event_row(r),
            envelope: r.get(16),
            recorded: r.get(17),
        })
        .collect())
}

/// Why the trail could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// No connection.
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_document_of_a_sevdesk_answer_is_found_in_each_shape() {
        let factory = json!({"objects": {"invoice": {"id": "77", "invoiceNumber": "RE-1001"}, "invoicePos": []}});
        assert_eq!(
            document_of(&factory),
            (Some("77".into()), Some("RE-1001".into()), None)
        );
        let credit = json!({"objects": {"creditNote": {"id": 5, "creditNoteNumber": "GU-7"}}});
        assert_eq!(
            document_of(&credit),
            (Some("5".into()), Some("GU-7".into()), None)
        );
        let one = json!({"objects": [{"id": "9", "customerNumber": "SHOPIFY-1"}]});
        assert_eq!(
            document_of(&one),
            (Some("9".into()), Some("SHOPIFY-1".into()), None)
        );
        let many = json!({"objects": [{"id": "1"}, {"id": "2"}]});
        assert_eq!(document_of(&many), (None, None, Some("2 found".into())));
        assert_eq!(document_of(&json!(null)), (None, None, None));
    }

    #[test]
    fn facts_name_the_order_of_orders_and_refunds_and_keep_no_email_of_privacy_requests() {
        let order = facts(
            "orders/paid",
            r#"{"id": 1042, "email": "Jon@Example.com", "customer": {"id": 8}}"#,
            Domain::Orders,
        );
        assert_eq!(
            order,
            Facts {
                resource_id: Some(1042),
                order_id: Some(1042),
                customer_id: Some(8),
                email: Some("jon@example.com".into()),
            }
        );
        let refund = facts(
            "refunds/create",
            r#"{"id": 5, "order_id": "1042"}"#,
            Domain::Orders,
        );
        assert_eq!((refund.resource_id, refund.order_id), (Some(5), Some(1042)));
        let redact = facts(
            "customers/redact",
            r#"{"shop_domain": "s", "customer": {"id": 8, "email": "jon@example.com"}}"#,
            Domain::Compliance,
        );
        assert_eq!(redact.customer_id, Some(8));
        assert_eq!(redact.email, None);
        assert_eq!(facts("x", "not json", Domain::Inventory), Facts::default());
    }

    #[test]
    fn a_partition_expires_when_its_whole_day_is_older_than_the_retention() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
        assert_eq!(partition_day("audit_events_p20260110"), Some(day));
        assert_eq!(partition_day("audit_steps_p20260110"), Some(day));
        assert_eq!(partition_day("other_p20260110"), None);
        assert_eq!(partition_day("audit_events_pxyz"), None);
        let keep = chrono::Duration::days(90);
        let end = (day + chrono::Duration::days(1))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        assert!(!expired(
            day,
            end + keep - chrono::Duration::seconds(1),
            keep
        ));
        assert!(expired(day, end + keep, keep));
    }

    #[test]
    fn filters_number_their_parameters_in_order() {
        let filter = EventFilter {
            shop: Some("s".into()),
            resource: Some(7),
            outcome: Some("applied".into()),
            ..EventFilter::default()
        };
        let (clause, params) = filter.clause();
        assert_eq!(
            clause,
            "true AND shop_domain = $1 AND (resource_id = $2 OR order_id = $2) AND outcome = $3"
        );
        assert_eq!(params.len(), 3);
    }
}
