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
//! (default exchange)
//!   └─ hookline.<domain>.wait.<tier>ms (quorum, TTL = tier) ──expires──▶ hookline.<domain>
//! ```
//!
//! The wait queues hold retries: the worker republishes a message that failed with a retryable
//! error to the wait queue whose TTL matches the delay, and RabbitMQ dead-letters it back to the
//! work queue when the TTL expires. Delays are therefore held by the broker (they survive a
//! worker restart), and since every message in one wait queue has the same TTL, a long delay
//! never holds up a short one behind it (as per-message TTLs in one queue would: RabbitMQ only
//! expires messages at the head).
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

/// Redeliveries of one message before the broker dead-letters it (see [`work_queue_arguments`]).
/// High enough that crashes, restarts and SIGTERM drains never reach it for a healthy message.
pub const DELIVERY_LIMIT: i32 = 50;

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

/// Wait-queue tiers, in milliseconds. Powers of two cover the retry policy's range (1 s to 30 s
/// ± 20 %, and `Retry-After` values) with a handful of queues; [`pick_wait_tier`] rounds a delay
/// to one of its two neighbouring tiers at random, so the average delay is the one asked for and
/// jitter still spreads retries out.
pub const WAIT_TIERS_MS: [u32; 9] = [250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000];

/// `hookline.<domain>.wait.<tier>ms`.
pub fn wait_queue(domain: Domain, tier_ms: u32) -> String {
    format!("hookline.{}.wait.{tier_ms}ms", domain.name())
}

/// Chooses the wait tier for `delay`. `unit` is a uniform random number in `[0, 1)`.
///
/// Between tiers `lo ≤ delay ≤ hi` the choice is `hi` with probability `(delay − lo) / (hi − lo)`
/// (stochastic rounding): the expected delay equals `delay`. Below the smallest tier the smallest
/// is used; above the largest, the largest.
pub fn pick_wait_tier(delay: std::time::Duration, unit: f64) -> u32 {
    let ms = delay.as_secs_f64() * 1000.0;
    let first = WAIT_TIERS_MS[0];
    let last = WAIT_TIERS_MS[WAIT_TIERS_MS.len() - 1];
    if ms <= f64::from(first) {
        return first;
    }
    for pair in WAIT_TIERS_MS.windows(2) {
        let (lo, hi) = (f64::from(pair[0]), f64::from(pair[1]));
        if ms <= hi {
            let p_hi = (ms - lo) / (hi - lo);
            return if unit < p_hi { pair[1] } else { pair[0] };
        }
    }
    last
}

/// Arguments of a wait queue: TTL = tier, dead-lettered back to the domain's work queue through
/// the default exchange, at-least-once (a full work queue makes the message wait longer instead
/// of dropping it; that strategy needs `reject-publish`, hence the length limit).
pub fn wait_queue_arguments(
    domain: Domain,
    tier_ms: u32,
    settings: &TopologySettings,
) -> FieldTable {
    table(&[
        ("x-queue-type", string("quorum")),
        (
            "x-message-ttl",
            AMQPValue::LongInt(i32::try_from(tier_ms).unwrap_or(i32::MAX)),
        ),
        ("x-max-length", max_length(settings)),
        ("x-overflow", string("reject-publish")),
        ("x-dead-letter-exchange", string("")),
        ("x-dead-letter-routing-key", string(&queue(domain))),
        ("x-dead-letter-strategy", string("at-least-once")),
    ])
}

/// Arguments of a domain work queue.
///
/// - quorum: replicated, survives the loss of a broker node, and supports the two options below;
/// - `x-max-length` + `x-overflow=reject-publish`: backpressure (see [`TopologySettings`]);
/// - `x-dead-letter-strategy=at-least-once`: a message rejected by a consumer reaches the DLQ even
///   if a broker node fails during the hand-over (quorum queues only, needs `reject-publish`);
/// - `x-dead-letter-routing-key=<domain>`: dead letters of all topics of a domain meet in one DLQ,
///   while the original routing key stays readable in the `x-death` header;
/// - `x-delivery-limit`: a message redelivered this often — one that kills the worker process
///   itself, so no handler ever gets to dead-letter it — goes to the DLQ instead of looping
///   forever (its `x-death` reason is `delivery_limit`).
pub fn work_queue_arguments(domain: Domain, settings: &TopologySettings) -> FieldTable {
    table(&[
        ("x-queue-type", string("quorum")),
        ("x-delivery-limit", AMQPValue::LongInt(DELIVERY_LIMIT)),
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

/// One exchange of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeSpec {
    /// Exchange name.
    pub name: &'static str,
    /// Exchange type.
    pub kind: ExchangeKind,
    /// Declaration arguments.
    pub arguments: FieldTable,
}

/// One queue of the plan (all are durable).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Queue name.
    pub name: String,
    /// Declaration arguments.
    pub arguments: FieldTable,
}

/// One binding of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    /// Source exchange.
    pub exchange: &'static str,
    /// Destination queue.
    pub queue: String,
    /// Routing key or pattern.
    pub routing_key: String,
}

/// The whole topology as data: what [`declare`] declares, and what a test compares with
/// `deploy/rabbitmq/definitions.json` so the two cannot drift apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In declaration order: the alternate exchange before the exchange that names it.
    pub exchanges: Vec<ExchangeSpec>,
    /// Queues.
    pub queues: Vec<QueueSpec>,
    /// Bindings.
    pub bindings: Vec<BindingSpec>,
}

/// The topology for `settings`.
pub fn plan(settings: &TopologySettings) -> Plan {
    let mut exchanges = vec![
        ExchangeSpec {
            name: UNROUTED_EXCHANGE,
            kind: ExchangeKind::Fanout,
            arguments: FieldTable::default(),
        },
        ExchangeSpec {
            name: DEAD_LETTER_EXCHANGE,
            kind: ExchangeKind::Direct,
            arguments: FieldTable::default(),
        },
    ];
    exchanges.push(ExchangeSpec {
        name: EVENTS_EXCHANGE,
        kind: ExchangeKind::Topic,
        arguments: table(&[("alternate-exchange", string(UNROUTED_EXCHANGE))]),
    });
    // Unrouted events are bounded like any work queue: an unknown topic flooding in turns into
    // 503s rather than unbounded growth.
    let mut queues = vec![QueueSpec {
        name: UNROUTED_QUEUE.to_owned(),
        arguments: table(&[
            ("x-queue-type", string("quorum")),
            ("x-max-length", max_length(settings)),
            ("x-overflow", string("reject-publish")),
        ]),
    }];
    let mut bindings = vec![BindingSpec {
        exchange: UNROUTED_EXCHANGE,
        queue: UNROUTED_QUEUE.to_owned(),
        routing_key: String::new(),
    }];
    for domain in Domain::ALL {
        // Dead-letter queues have no length limit: a dead letter is never dropped.
        queues.push(QueueSpec {
            name: dead_letter_queue(domain),
            arguments: table(&[("x-queue-type", string("quorum"))]),
        });
        bindings.push(BindingSpec {
            exchange: DEAD_LETTER_EXCHANGE,
            queue: dead_letter_queue(domain),
            routing_key: domain.name().to_owned(),
        });
        queues.push(QueueSpec {
            name: queue(domain),
            arguments: work_queue_arguments(domain, settings),
        });
        for tier in WAIT_TIERS_MS {
            queues.push(QueueSpec {
                name: wait_queue(domain, tier),
                arguments: wait_queue_arguments(domain, tier, settings),
            });
        }
        for pattern in domain.bindings() {
            bindings.push(BindingSpec {
                exchange: EVENTS_EXCHANGE,
                queue: queue(domain),
                routing_key: (*pattern).to_owned(),
            });
        }
    }
    Plan {
        exchanges,
        queues,
        bindings,
    }
}

/// Declares every exchange, queue and binding of [`plan`]. Safe to call any number of times,
/// from any number of processes, as long as they share `settings`.
pub async fn declare(channel: &Channel, settings: &TopologySettings) -> Result<(), lapin::Error> {
    let plan = plan(settings);
    for e in plan.exchanges {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(e.name.into(), e.kind, options, e.arguments)
            .await?;
    }
    for q in plan.queues {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(q.name.as_str().into(), options, q.arguments)
            .await?;
    }
    for b in plan.bindings {
        channel
            .queue_bind(
                b.queue.as_str().into(),
                b.exchange.into(),
                b.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn to_json(t: &FieldTable) -> Value {
        let map = t
            .inner()
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    AMQPValue::LongString(s) => json!(s.to_string()),
                    AMQPValue::LongInt(n) => json!(n),
                    other => panic!("unexpected argument type {other:?}"),
                };
                (k.to_string(), v)
            })
            .collect();
        Value::Object(map)
    }

    #[test]
    fn wait_tiers_round_to_a_neighbour_and_keep_the_mean() {
        use std::time::Duration;
        assert_eq!(pick_wait_tier(Duration::from_millis(10), 0.5), 250);
        assert_eq!(pick_wait_tier(Duration::from_secs(1), 0.99), 1_000);
        assert_eq!(pick_wait_tier(Duration::from_secs(600), 0.0), 64_000);
        // 3 s lies halfway between the 2 s and 4 s tiers.
        assert_eq!(pick_wait_tier(Duration::from_secs(3), 0.49), 4_000);
        assert_eq!(pick_wait_tier(Duration::from_secs(3), 0.51), 2_000);
        let n = 10_000;
        let mean: f64 = (0..n)
            .map(|i| {
                f64::from(pick_wait_tier(
                    Duration::from_millis(2_600),
                    (f64::from(i) + 0.5) / f64::from(n),
                ))
            })
            .sum::<f64>()
            / f64::from(n);
        assert!((mean - 2_600.0).abs() < 5.0, "{mean}");
    }

    /// `deploy/rabbitmq/definitions.json` is what operators import; the code declares the same
    /// objects at start-up. If they differ, RabbitMQ refuses one of them with PRECONDITION_FAILED.
    #[test]
    fn the_definitions_file_matches_the_declared_topology() {
        let defs: Value =
            serde_json::from_str(include_str!("../../../deploy/rabbitmq/definitions.json"))
                .unwrap();
        let plan = plan(&TopologySettings::default());

        let exchanges = defs["exchanges"].as_array().unwrap();
        assert_eq!(exchanges.len(), plan.exchanges.len());
        for e in &plan.exchanges {
            let d = exchanges
                .iter()
                .find(|d| d["name"] == e.name)
                .unwrap_or_else(|| panic!("exchange {} missing", e.name));
            let kind = match e.kind {
                ExchangeKind::Direct => "direct",
                ExchangeKind::Fanout => "fanout",
                ExchangeKind::Topic => "topic",
                ref other => panic!("unexpected exchange kind {other:?}"),
            };
            assert_eq!(d["type"], kind, "{}", e.name);
            assert_eq!(d["durable"], true);
            assert_eq!(d["arguments"], to_json(&e.arguments), "{}", e.name);
        }

        let queues = defs["queues"].as_array().unwrap();
        assert_eq!(queues.len(), plan.queues.len());
        for q in &plan.queues {
            let d = queues
                .iter()
                .find(|d| d["name"] == q.name.as_str())
                .unwrap_or_else(|| panic!("queue {} missing", q.name));
            assert_eq!(d["durable"], true);
            assert_eq!(d["arguments"], to_json(&q.arguments), "{}", q.name);
        }

        let mut defined: Vec<(String, String, String)> = defs["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                assert_eq!(b["destination_type"], "queue");
                (
                    b["source"].as_str().unwrap().to_owned(),
                    b["destination"].as_str().unwrap().to_owned(),
                    b["routing_key"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut planned: Vec<(String, String, String)> = plan
            .bindings
            .iter()
            .map(|b| {
                (
                    b.exchange.to_owned(),
                    b.queue.clone(),
                    b.routing_key.clone(),
                )
            })
            .collect();
        defined.sort();
        planned.sort();
        assert_eq!(defined, planned);
    }
}
