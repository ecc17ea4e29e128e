//! Worker settings from environment variables, with localhost defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use hookline_core::Domain;
use hookline_core::breaker::BreakerConfig;
use hookline_core::config::{ConfigError, Env, Secret};
use hookline_core::retry::RetryPolicy;
use hookline_core::topology::{DEFAULT_QUEUE_MAX_LENGTH, TopologySettings};
pub use hookline_telemetry::LogFormat;

/// The most sevDesk requests one orders delivery makes, each bounded by
/// `HOOKLINE_SEVDESK_TIMEOUT_MS`: an `orders/paid` from scratch that finds a half-done invoice
/// makes find contact, create contact, find invoice (adopt), save invoice, send it, read it,
/// find the check account (once per process) and book the payment. Cancellations and refunds make
/// fewer. The handler timeout must be at least this many sevDesk timeouts.
pub const SEVDESK_CALLS_PER_DELIVERY: u32 = 8;

/// The sizes of one domain's bulkhead. Each domain has its own, so a slow downstream can only
/// exhaust its own permits, connections and prefetched messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadSettings {
    /// `HOOKLINE_<DOMAIN>_CONCURRENCY`: deliveries handled at once.
    pub concurrency: usize,
    /// `HOOKLINE_<DOMAIN>_PREFETCH`: unacknowledged deliveries the broker may push ahead.
    pub prefetch: u16,
    /// `HOOKLINE_<DOMAIN>_DB_POOL`: PostgreSQL connections of this domain.
    pub db_pool: usize,
}

/// The outbox relay's settings.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `HOOKLINE_OUTBOX_POLL_MS` (500): how often due rows are looked for without a notification.
    pub poll_interval: Duration,
    /// `HOOKLINE_OUTBOX_BATCH` (50): rows claimed per round.
    pub batch_size: i64,
    /// `HOOKLINE_OUTBOX_MAX_ATTEMPTS` (10): sends before a row is marked `failed`.
    pub max_attempts: u32,
    /// `HOOKLINE_OUTBOX_LEASE_SECS` (30): how long a claimed row is reserved for one relay; a
    /// relay that dies mid-send loses its claim after this. A live relay extends it every third
    /// of it while its requests run, so it need not cover a whole round.
    pub lease: Duration,
    /// `HOOKLINE_ERP_TIMEOUT_MS` (5000): per request to the ERP.
    pub request_timeout: Duration,
}

/// Everything the worker can be told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOOKLINE_AMQP_URL`.
    pub amqp_url: Secret,
    /// `HOOKLINE_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
    pub database_url: Secret,
    /// `HOOKLINE_REDIS_URL`, default `redis://127.0.0.1:6379`.
    pub redis_url: Secret,
    /// `HOOKLINE_REDIS_PREFIX` (`hookline`): namespace of our Redis keys, so deployments (and
    /// tests) can share one Redis.
    pub redis_prefix: String,
    /// `HOOKLINE_ERP_URL`, default `http://127.0.0.1:8090/erp/stock-levels`: where the outbox
    /// relay POSTs stock changes.
    pub erp_url: String,
    /// `HOOKLINE_SEVDESK_URL`, default the sandbox's `http://127.0.0.1:8090/api/v1`; in production
    /// `https://my.sevdesk.de/api/v1`.
    pub sevdesk_url: String,
    /// `HOOKLINE_SEVDESK_TOKEN`: the API token (default: the sandbox's).
    pub sevdesk_token: Secret,
    /// `HOOKLINE_SEVDESK_TIMEOUT_MS` (10000): per sevDesk request.
    pub sevdesk_timeout: Duration,
    /// The sevDesk account: `HOOKLINE_SEVDESK_SEV_USER_ID` (the SevUser that issues documents;
    /// default: the account's only one), `HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID` (default check
    /// account; default: the first offline one), `HOOKLINE_SEVDESK_CHECK_ACCOUNTS`
    /// (`gateway=id,…`), `HOOKLINE_SEVDESK_SMALL_BUSINESS` and `HOOKLINE_SEVDESK_OSS` (`true` or
    /// `false`, default `false`; see the orders domain's tax table).
    pub sevdesk_account: crate::domains::orders::account::AccountSettings,
    /// `HOOKLINE_SEVDESK_SETTLE_SECS` (60): how long a sevDesk call whose outcome is unknown is
    /// left alone before hookline searches sevDesk for its result. Must be well above sevDesk's
    /// slowest answer and `HOOKLINE_SEVDESK_TIMEOUT_MS`.
    pub sevdesk_settle: Duration,
    /// `HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID`: where payments are booked; default: the first check
    /// account sevDesk lists.
    pub sevdesk_check_account: Option<String>,
    /// `HOOKLINE_WORKER_HTTP_ADDR`, default `127.0.0.1:8081`: `/healthz`, `/readyz`, `/metrics`.
    pub http_addr: String,
    /// `HOOKLINE_WORKER_DOMAINS` (`inventory,orders`): which bulkheads this process runs. Domains
    /// can be split across deployments and scaled apart.
    pub domains: Vec<Domain>,
    /// Per-domain sizes.
    pub bulkheads: BTreeMap<Domain, BulkheadSettings>,
    /// `HOOKLINE_QUEUE_MAX_LENGTH`: must match the ingestor (see the topology docs).
    pub topology: TopologySettings,
    /// `HOOKLINE_RETRY_MAX_ATTEMPTS` (5), `HOOKLINE_RETRY_INITIAL_MS` (1000),
    /// `HOOKLINE_RETRY_MAX_DELAY_MS` (30000): broker-held retries of retryable failures.
    pub retry: RetryPolicy,
    /// `HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS` (180): a `processing` claim in Redis expires after
    /// this, so a crashed worker cannot block a key forever. Handlers time out at half of it
    /// ([`Settings::handler_timeout`]), which must fit [`SEVDESK_CALLS_PER_DELIVERY`] sevDesk
    /// calls of `HOOKLINE_SEVDESK_TIMEOUT_MS` each when the orders domain runs: 8 × 10 s = 80 s
    /// ≤ 90 s by default; start-up refuses settings that do not.
    pub claim_ttl: Duration,
    /// `HOOKLINE_IDEMPOTENCY_DONE_TTL_SECS` (7 days): how long Redis remembers a finished key.
    pub done_ttl: Duration,
    /// The outbox relay.
    pub outbox: OutboxSettings,
    /// `HOOKLINE_OUTBOX_RELAY` (`true`): run the relay in this process.
    pub run_outbox_relay: bool,
    /// The reconciliation poller (off when no shop is configured).
    pub reconcile: crate::reconcile::ReconcileSettings,
    /// What is pruned when.
    pub retention: crate::retention::RetentionSettings,
    /// `HOOKLINE_REDRIVE_RATE` (0, off): dead letters re-driven per second after a downstream's
    /// breaker closed again (see [`crate::redrive`]).
    pub redrive_rate: f64,
    /// Circuit breaker of each downstream (defaults of the core breaker).
    pub breaker: BreakerConfig,
    /// `HOOKLINE_SHUTDOWN_TIMEOUT_SECS` (25): on SIGTERM, how long in-flight work may take.
    pub shutdown_timeout: Duration,
    /// `HOOKLINE_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get` (tests pass their own).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::from_fn(get);
        let domains = env
            .string("HOOKLINE_WORKER_DOMAINS", "inventory,orders,compliance")
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                Domain::parse(d).ok_or_else(|| ConfigError::Invalid {
                    name: "HOOKLINE_WORKER_DOMAINS",
                    value: d.to_owned(),
                    reason: "expected a comma-separated list of inventory, orders, compliance",
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut bulkheads = BTreeMap::new();
        for domain in Domain::ALL {
            let [concurrency, prefetch, db_pool] = bulkhead_variables(domain);
            let defaults = BulkheadSettings::default_for(domain);
            bulkheads.insert(
                domain,
                BulkheadSettings {
                    concurrency: env
                        .parse::<usize>(concurrency, defaults.concurrency, "expected a number ≥ 1")?
                        .max(1),
                    prefetch: env
                        .parse(
                            prefetch,
                            defaults.prefetch,
                            "expected a number from 1 to 65535",
                        )?
                        .max(1),
                    db_pool: env
                        .parse::<usize>(db_pool, defaults.db_pool, "expected a number ≥ 1")?
                        .max(1),
                },
            );
        }
        let log_format = env.choice(
            "HOOKLINE_LOG_FORMAT",
            "text",
            LogFormat::parse,
            "expected json or text",
        )?;
        let retry = RetryPolicy {
            initial: Duration::from_millis(env.parse(
                "HOOKLINE_RETRY_INITIAL_MS",
                1000,
                "expected milliseconds",
            )?),
            max_delay: Duration::from_millis(env.parse(
                "HOOKLINE_RETRY_MAX_DELAY_MS",
                30_000,
                "expected milliseconds",
            )?),
            max_attempts: env.parse("HOOKLINE_RETRY_MAX_ATTEMPTS", 5, "expected a number ≥ 1")?,
            ..RetryPolicy::default()
        };
        retry.validate().map_err(|e| ConfigError::Invalid {
            name: "HOOKLINE_RETRY_*",
            value: e.to_string(),
            reason: "the retry policy is inconsistent",
        })?;
        let sevdesk_timeout = Duration::from_millis(env.parse(
            "HOOKLINE_SEVDESK_TIMEOUT_MS",
            10_000,
            "expected milliseconds",
        )?);
        let settings = Self {
            amqp_url: Secret::new(
                env.string("HOOKLINE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ),
            database_url: Secret::new(env.string(
                "HOOKLINE_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            )),
            redis_url: Secret::new(env.string("HOOKLINE_REDIS_URL", "redis://127.0.0.1:6379")),
            redis_prefix: env.string("HOOKLINE_REDIS_PREFIX", "hookline"),
            erp_url: env.string("HOOKLINE_ERP_URL", "http://127.0.0.1:8090/erp/stock-levels"),
            sevdesk_url: env.string("HOOKLINE_SEVDESK_URL", "http://127.0.0.1:8090/api/v1"),
            sevdesk_token: Secret::new(
                env.string("HOOKLINE_SEVDESK_TOKEN", "0123456789abcdef0123456789abcdef"),
            ),
            sevdesk_timeout,
            sevdesk_check_account: env.get("HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID"),
            sevdesk_account: crate::domains::orders::account::AccountSettings {
                sev_user: env.get("HOOKLINE_SEVDESK_SEV_USER_ID"),
                default_check_account: env.get("HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID"),
                gateway_accounts: env.choice(
                    "HOOKLINE_SEVDESK_CHECK_ACCOUNTS",
                    "",
                    |v| crate::domains::orders::account::parse_gateway_accounts(v).ok(),
                    "expected gateway=check-account-id pairs, comma-separated (e.g. paypal=3,shopify_payments=2)",
                )?,
                tax: crate::domains::orders::tax::TaxSettings {
                    small_business: env.choice(
                        "HOOKLINE_SEVDESK_SMALL_BUSINESS",
                        "false",
                        parse_bool,
                        "expected true or false",
                    )?,
                    oss: env.choice("HOOKLINE_SEVDESK_OSS", "false", parse_bool, "expected true or false")?,
                },
            },
            sevdesk_settle: {
                let settle = Duration::from_secs(env.parse(
                    "HOOKLINE_SEVDESK_SETTLE_SECS",
                    60,
                    "expected seconds",
                )?);
                // A settle shorter than a request may take would verify before sevDesk is done.
                if settle < sevdesk_timeout * 2 {
                    return Err(ConfigError::Invalid {
                        name: "HOOKLINE_SEVDESK_SETTLE_SECS",
                        value: settle.as_secs().to_string(),
                        reason: "must be at least twice HOOKLINE_SEVDESK_TIMEOUT_MS, so a late commit lands before hookline verifies",
                    });
                }
                settle
            },
            http_addr: env.string("HOOKLINE_WORKER_HTTP_ADDR", "127.0.0.1:8081"),
            domains,
            bulkheads,
            topology: TopologySettings {
                queue_max_length: env.parse(
                    "HOOKLINE_QUEUE_MAX_LENGTH",
                    DEFAULT_QUEUE_MAX_LENGTH,
                    "expected a message count",
                )?,
            },
            retry,
            claim_ttl: Duration::from_secs(
                env.parse(
                    "HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS",
                    180,
                    "expected seconds",
                )?
                .max(2),
            ),
            done_ttl: Duration::from_secs(env.parse(
                "HOOKLINE_IDEMPOTENCY_DONE_TTL_SECS",
                7 * 24 * 3600,
                "expected seconds",
            )?),
            outbox: OutboxSettings {
                poll_interval: Duration::from_millis(env.parse(
                    "HOOKLINE_OUTBOX_POLL_MS",
                    500,
                    "expected milliseconds",
                )?),
                batch_size: env.parse("HOOKLINE_OUTBOX_BATCH", 50, "expected a number of rows")?,
                max_attempts: env.parse(
                    "HOOKLINE_OUTBOX_MAX_ATTEMPTS",
                    10,
                    "expected a number ≥ 1",
                )?,
                lease: Duration::from_secs(env.parse(
                    "HOOKLINE_OUTBOX_LEASE_SECS",
                    30,
                    "expected seconds",
                )?),
                request_timeout: Duration::from_millis(env.parse(
                    "HOOKLINE_ERP_TIMEOUT_MS",
                    5000,
                    "expected milliseconds",
                )?),
            },
            run_outbox_relay: env.parse("HOOKLINE_OUTBOX_RELAY", true, "expected true or false")?,
            reconcile: crate::reconcile::ReconcileSettings {
                shops: env
                    .string("HOOKLINE_RECONCILE_SHOPS", "")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|pair| {
                        let (shop, token) =
                            pair.split_once('=').ok_or_else(|| ConfigError::Invalid {
                                name: "HOOKLINE_RECONCILE_SHOPS",
                                value: pair.split('=').next().unwrap_or_default().to_owned(),
                                reason: "expected shop=token pairs, comma-separated",
                            })?;
                        Ok(crate::reconcile::ShopAccess {
                            shop: shop.trim().to_ascii_lowercase(),
                            token: Secret::new(token.trim()),
                        })
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?,
                interval: Duration::from_secs(
                    env.parse("HOOKLINE_RECONCILE_INTERVAL_SECS", 300, "expected seconds")?
                        .max(1),
                ),
                overlap: Duration::from_secs(env.parse(
                    "HOOKLINE_RECONCILE_OVERLAP_SECS",
                    600,
                    "expected seconds",
                )?),
                lookback: Duration::from_secs(env.parse(
                    "HOOKLINE_RECONCILE_LOOKBACK_SECS",
                    86_400,
                    "expected seconds",
                )?),
                admin_url: env.string("HOOKLINE_SHOPIFY_ADMIN_URL", "https://{shop}"),
                api_version: env.string("HOOKLINE_SHOPIFY_API_VERSION", "2025-10"),
                page_limit: env
                    .parse::<u32>("HOOKLINE_RECONCILE_PAGE_LIMIT", 250, "expected 1 to 250")?
                    .clamp(1, 250),
                republish_after: Duration::from_secs(env.parse(
                    "HOOKLINE_RECONCILE_REPUBLISH_SECS",
                    3600,
                    "expected seconds",
                )?),
            },
            redrive_rate: env
                .parse::<f64>(
                    "HOOKLINE_REDRIVE_RATE",
                    0.0,
                    "expected replays per second (0: off)",
                )?
                .max(0.0),
            retention: crate::retention::RetentionSettings {
                interval: Duration::from_secs(env.parse(
                    "HOOKLINE_RETENTION_INTERVAL_SECS",
                    3600,
                    "expected seconds (0: off)",
                )?),
                processed_events: days(&env, "HOOKLINE_RETENTION_PROCESSED_EVENTS_DAYS", 30)?,
                outbox_sent: days(&env, "HOOKLINE_RETENTION_OUTBOX_SENT_DAYS", 7)?,
                dead_letter_archive: days(&env, "HOOKLINE_RETENTION_DEAD_LETTER_ARCHIVE_DAYS", 90)?,
                exports: days(&env, "HOOKLINE_RETENTION_EXPORT_DAYS", 30)?,
            },
            breaker: BreakerConfig {
                open_for: Duration::from_millis(env.parse(
                    "HOOKLINE_BREAKER_OPEN_MS",
                    60_000,
                    "expected milliseconds",
                )?),
                ..BreakerConfig::default()
            },
            shutdown_timeout: Duration::from_secs(env.parse(
                "HOOKLINE_SHUTDOWN_TIMEOUT_SECS",
                25,
                "expected seconds",
            )?),
            log_format,
        };
        settings.check_handler_timeout()?;
        Ok(settings)
    }

    /// How long one delivery's handler may run: half the claim TTL, so the Redis claim always
    /// outlives the delivery that holds it. A handler past it is dropped (its order lock goes
    /// with it, see [`crate::order_lock`]) and retried.
    pub fn handler_timeout(&self) -> Duration {
        self.claim_ttl / 2
    }

    /// How long a delivery may wait for other deliveries of its order or key before it is
    /// dead-lettered (`busy_too_long`): four handler timeouts. A delivery holding an order ends
    /// within one; waiting four means something holds it that does not end.
    pub fn busy_limit(&self) -> Duration {
        self.handler_timeout() * 4
    }

    /// Refuses a handler timeout that cannot fit the sevDesk calls an orders delivery may make:
    /// a delivery that is cut off mid-way through a working sevDesk only wastes its calls, is
    /// retried, and is cut off again.
    fn check_handler_timeout(&self) -> Result<(), ConfigError> {
        if !self.domains.contains(&Domain::Orders) {
            return Ok(());
        }
        let calls = self.sevdesk_timeout * SEVDESK_CALLS_PER_DELIVERY;
        if self.handler_timeout() < calls {
            return Err(ConfigError::Invalid {
                name: "HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS",
                value: format!(
                    "{} (handler timeout {:?} < {SEVDESK_CALLS_PER_DELIVERY} sevDesk calls × HOOKLINE_SEVDESK_TIMEOUT_MS {:?})",
                    self.claim_ttl.as_secs(),
                    self.handler_timeout(),
                    self.sevdesk_timeout
                ),
                reason: "the handler timeout (half the claim TTL) must fit the sevDesk calls one orders delivery may make; raise the claim TTL or lower HOOKLINE_SEVDESK_TIMEOUT_MS",
            });
        }
        Ok(())
    }

    /// The bulkhead sizes of `domain`.
    pub fn bulkhead(&self, domain: Domain) -> BulkheadSettings {
        self.bulkheads[&domain]
    }
}

impl BulkheadSettings {
    /// Sizes that suit each domain's work. Inventory is short PostgreSQL transactions: many at
    /// once, fewer connections than handlers. Orders wait on sevDesk and hold one connection per
    /// order in flight (the order's advisory lock lives on it), so their pool is larger than
    /// their concurrency.
    pub fn default_for(domain: Domain) -> Self {
        match domain {
            Domain::Inventory => Self {
                concurrency: 16,
                prefetch: 32,
                db_pool: 8,
            },
            Domain::Orders => Self {
                concurrency: 8,
                prefetch: 16,
                db_pool: 10,
            },
            // Rare requests, each scanning the dead-letter queues: one or two at a time.
            Domain::Compliance => Self {
                concurrency: 2,
                prefetch: 4,
                db_pool: 3,
            },
        }
    }
}

fn days<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    name: &'static str,
    default: u32,
) -> Result<chrono::Duration, ConfigError> {
    let n: u32 = env.parse(name, default, "expected whole days ≥ 1")?;
    if n == 0 {
        return Err(ConfigError::Invalid {
            name,
            value: "0".into(),
            reason: "expected whole days ≥ 1",
        });
    }
    Ok(chrono::Duration::days(i64::from(n)))
}

/// `HOOKLINE_<DOMAIN>_CONCURRENCY`, `_PREFETCH`, `_DB_POOL`.
fn bulkhead_variables(domain: Domain) -> [&'static str; 3] {
    match domain {
        Domain::Inventory => [
            "HOOKLINE_INVENTORY_CONCURRENCY",
            "HOOKLINE_INVENTORY_PREFETCH",
            "HOOKLINE_INVENTORY_DB_POOL",
        ],
        Domain::Orders => [
            "HOOKLINE_ORDERS_CONCURRENCY",
            "HOOKLINE_ORDERS_PREFETCH",
            "HOOKLINE_ORDERS_DB_POOL",
        ],
        Domain::Compliance => [
            "HOOKLINE_COMPLIANCE_CONCURRENCY",
            "HOOKLINE_COMPLIANCE_PREFETCH",
            "HOOKLINE_COMPLIANCE_DB_POOL",
        ],
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`).
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(hookline_core::config::pairs(pairs))
    }

    #[test]
    fn orders_default_to_a_pool_larger_than_their_concurrency() {
        let s = settings(&[]).unwrap();
        let orders = &s.bulkheads[&Domain::Orders];
        assert_eq!(
            (orders.concurrency, orders.prefetch, orders.db_pool),
            (8, 16, 10)
        );
        let inventory = &s.bulkheads[&Domain::Inventory];
        assert_eq!(
            (inventory.concurrency, inventory.prefetch, inventory.db_pool),
            (16, 32, 8)
        );
        let tuned = settings(&[("HOOKLINE_ORDERS_DB_POOL", "3")]).unwrap();
        assert_eq!(tuned.bulkheads[&Domain::Orders].db_pool, 3);
    }

    #[test]
    fn defaults_are_localhost_and_per_domain_sizes_are_read() {
        let s = settings(&[
            ("HOOKLINE_ORDERS_CONCURRENCY", "3"),
            ("HOOKLINE_WORKER_DOMAINS", "inventory,orders"),
        ])
        .unwrap();
        assert_eq!(
            s.database_url.expose(),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(s.redis_url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(s.http_addr, "127.0.0.1:8081");
        assert_eq!(s.domains, vec![Domain::Inventory, Domain::Orders]);
        assert_eq!(s.bulkhead(Domain::Orders).concurrency, 3);
        assert_eq!(s.bulkhead(Domain::Inventory).concurrency, 16);
        assert!(s.bulkhead(Domain::Orders).db_pool > s.bulkhead(Domain::Orders).concurrency);
        assert_eq!(s.retry.max_attempts, 5);
        assert_eq!(s.done_ttl, Duration::from_secs(604_800));
    }

    #[test]
    fn a_handler_timeout_shorter_than_the_sevdesk_calls_it_allows_is_refused() {
        let s = settings(&[]).unwrap();
        assert!(s.handler_timeout() >= s.sevdesk_timeout * SEVDESK_CALLS_PER_DELIVERY);
        assert!(
            s.claim_ttl > s.handler_timeout(),
            "the claim outlives the handler"
        );
        let err = settings(&[("HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS", "60")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS"), "{err}");
        assert!(err.contains("HOOKLINE_SEVDESK_TIMEOUT_MS"), "{err}");
        assert!(
            settings(&[
                ("HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS", "60"),
                ("HOOKLINE_SEVDESK_TIMEOUT_MS", "3000"),
            ])
            .is_ok()
        );
        assert!(
            settings(&[
                ("HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS", "2"),
                ("HOOKLINE_WORKER_DOMAINS", "inventory"),
            ])
            .is_ok(),
            "no sevDesk calls without the orders domain"
        );
    }

    #[test]
    fn unknown_domains_are_refused_by_name() {
        let err = settings(&[("HOOKLINE_WORKER_DOMAINS", "billing")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOOKLINE_WORKER_DOMAINS"), "{err}");
    }
}
