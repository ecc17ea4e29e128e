//! The broker topology, declared by every hookline process at start-up.
//!
//! ```text
//! hookline.events (topic, alternate-exchange = hookline.unrouted)
//!   ├─ inventory_levels.# | inventory_items.# | products.#  → hookline.inventory (quorum)
//!   └─ orders.# | refunds.#                                  → hookline.orders    (quorum)
//! hookline.unrouted (fanout)                                 → hookline.unrouted  (quorum)
//! hookline.dlx (direct)
//!   ├─ inventory → hookline.inventory.dlq (quorum)
//!   └─ orders    → hookline.orders.dlq    (quorum)
//! ```
//!
//! Declaring is idempotent, so the ingestor and the worker both do it and either can start
//! first. RabbitMQ refuses a re-declaration whose arguments differ (`PRECONDITION_FAILED`), so
//! every process must be given the same [`TopologySettings`]; `deploy/rabbitmq/definitions.json`
//! holds the same topology with the default settings.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::topics::Domain;

/// Where the ingestor (and later the reconciliation poller) publishes envelopes.
pub const EVENTS_EXCHANGE: &str = "hookline.events";
/// Catches what no binding of [`EVENTS_EXCHANGE`] routes, so unknown topics are kept, not dropped.
pub const UNROUTED_EXCHANGE: &str = "hookline.unrouted";
/// The queue behind [`UNROUTED_EXCHANGE`].
pub const UNROUTED_QUEUE: &str = "hookline.unrouted";
/// Dead-letter exchange; the routing key is the domain name.
pub const DEAD_LETTER_EXCHANGE: &str = "hookline.dlx";

/// Default for [`TopologySettings::queue_max_length`].
pub const DEFAULT_QUEUE_MAX_LENGTH: u32 = 100_000;

/// `hookline.<domain>`: the domain's work queue.
pub fn queue(domain: Domain) -> String {
    format!("hookline.{}", domain.name())
}

/// `hookline.<domain>.dlq`: the domain's dead letters.
pub fn dead_letter_queue(domain: Domain) -> String {
    format!("hookline.{}.dlq", domain.name())
}

/// The tunable part of the topology. Must be the same in every process of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopologySettings {
    /// Maximum ready messages per work queue. When a queue is full RabbitMQ nacks new publishes
    /// (`x-overflow = reject-publish`), which the ingestor turns into 503s: a stalled worker
    /// becomes backpressure on Shopify, which retries, instead of a queue that grows until the
    /// broker's memory alarm stops everything.
    pub queue_max_length: u32,
}

impl Default for TopologySettings {
    fn default() -> Self {
        Self {
            queue_max_length: DEFAULT_QUEUE_MAX_LENGTH,
        }
    }
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// Arguments of a domain work queue.
///
/// - quorum: replicated, survives the loss of a broker node, and supports the two options below;
/// - `x-max-length` + `x-overflow=reject-publish`: backpressure (see [`TopologySettings`]);
/// - `x-dead-letter-strategy=at-least-once`: a message rejected by a consumer reaches the DLQ even
///   if a broker node fails during the hand-over (quorum queues only, needs `reject-publish`);
/// - `x-dead-letter-routing-key=<domain>`: dead letters of all topics of a domain meet in one DLQ,
///   while the original routing key stays readable in the `x-death` header.
pub fn work_queue_arguments(domain: Domain, settings: &TopologySettings) -> FieldTable {
    table(&[
        ("x-queue-type", string("quorum")),
        ("x-max-length", max_length(settings)),
        ("x-overflow", string("reject-publish")),
        ("x-dead-letter-exchange", string(DEAD_LETTER_EXCHANGE)),
        ("x-dead-letter-routing-key", string(domain.name())),
        ("x-dead-letter-strategy", string("at-least-once")),
    ])
}

fn max_length(settings: &TopologySettings) -> AMQPValue {
    AMQPValue::LongInt(i32::try_from(settings.queue_max_length).unwrap_or(i32::MAX))
}

/// Declares every exchange, queue and binding. Safe to call any number of times, from any number
/// of processes, as long as they share `settings`.
pub async fn declare(channel: &Channel, settings: &TopologySettings) -> Result<(), lapin::Error> {
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let quorum = table(&[("x-queue-type", string("quorum"))]);

    // The alternate exchange must exist before the exchange that names it receives traffic.
    channel
        .exchange_declare(
            UNROUTED_EXCHANGE.into(),
            ExchangeKind::Fanout,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            EVENTS_EXCHANGE.into(),
            ExchangeKind::Topic,
            durable_exchange,
            table(&[("alternate-exchange", string(UNROUTED_EXCHANGE))]),
        )
        .await?;

    // Unrouted events are bounded like any work queue: an unknown topic flooding in turns into
    // 503s rather than unbounded growth.
    let unrouted_args = table(&[
        ("x-queue-type", string("quorum")),
        ("x-max-length", max_length(settings)),
        ("x-overflow", string("reject-publish")),
    ]);
    channel
        .queue_declare(UNROUTED_QUEUE.into(), durable_queue, unrouted_args)
        .await?;
    channel
        .queue_bind(
            UNROUTED_QUEUE.into(),
            UNROUTED_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    for domain in Domain::ALL {
        // Dead-letter queues have no length limit: a dead letter is never dropped.
        let dlq = dead_letter_queue(domain);
        channel
            .queue_declare(dlq.as_str().into(), durable_queue, quorum.clone())
            .await?;
        channel
            .queue_bind(
                dlq.as_str().into(),
                DEAD_LETTER_EXCHANGE.into(),
                domain.name().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let q = queue(domain);
        channel
            .queue_declare(
                q.as_str().into(),
                durable_queue,
                work_queue_arguments(domain, settings),
            )
            .await?;
        for pattern in domain.bindings() {
            channel
                .queue_bind(
                    q.as_str().into(),
                    EVENTS_EXCHANGE.into(),
                    (*pattern).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}
