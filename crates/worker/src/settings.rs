//! Worker settings from environment variables, with localhost defaults.
//!
//! Each setting is declared once below (variable, type, default, doc); [`SETTINGS`] lists them
//! for `--help` and `docs/configuration.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use hookline_core::Domain;
use hookline_core::breaker::BreakerConfig;
use hookline_core::config::{
    AMQP_URL, ConfigError, DATABASE_URL, DEV, Env, Millis, QUEUE_MAX_LENGTH, SANDBOX_SEVDESK_TOKEN,
    SHUTDOWN_TIMEOUT, Seconds, Secret, Setting, SettingSpec,
};
use hookline_core::retry::RetryPolicy;
use hookline_core::topology::TopologySettings;
use hookline_telemetry::LOG_FORMAT;
pub use hookline_telemetry::LogFormat;

/// The most sevDesk requests one orders delivery makes, each bounded by
/// `HOOKLINE_SEVDESK_TIMEOUT_MS`: an `orders/paid` from scratch that finds a half-done invoice
/// makes find contact, create contact, search invoices (adopt), save invoice, send it, read it,
/// and book the payment; the account is read once per process. Cancellations and refunds make
/// fewer. The handler timeout must be at least this many sevDesk timeouts.
pub const SEVDESK_CALLS_PER_DELIVERY: u32 = 8;

/// `HOOKLINE_REDIS_URL`.
pub const REDIS_URL: Setting<Secret> = Setting::new(
    "HOOKLINE_REDIS_URL",
    "redis://127.0.0.1:6379",
    "Redis, the idempotency fast path (optional at run time: without it PostgreSQL decides alone).",
);
/// `HOOKLINE_REDIS_PREFIX`.
pub const REDIS_PREFIX: Setting<String> = Setting::new(
    "HOOKLINE_REDIS_PREFIX",
    "hookline",
    "Namespace of our Redis keys, so deployments (and tests) can share one Redis.",
);
/// `HOOKLINE_ERP_URL`.
pub const ERP_URL: Setting<String> = Setting::new(
    "HOOKLINE_ERP_URL",
    "http://127.0.0.1:8090/erp/stock-levels",
    "Where the outbox relay POSTs stock changes (default: the sandbox).",
);
/// `HOOKLINE_ERP_TIMEOUT_MS`.
pub const ERP_TIMEOUT: Setting<Millis> =
    Setting::new("HOOKLINE_ERP_TIMEOUT_MS", "5000", "Per request to the ERP.");
/// `HOOKLINE_SEVDESK_URL`.
pub const SEVDESK_URL: Setting<String> = Setting::new(
    "HOOKLINE_SEVDESK_URL",
    "http://127.0.0.1:8090/api/v1",
    "The sevDesk API (default: the sandbox); in production `https://my.sevdesk.de/api/v1`.",
);
/// `HOOKLINE_SEVDESK_TOKEN`.
pub const SEVDESK_TOKEN: Setting<Secret> = Setting::new(
    "HOOKLINE_SEVDESK_TOKEN",
    SANDBOX_SEVDESK_TOKEN,
    "The sevDesk API token (default: the sandbox's, refused with any sevDesk URL but a sandbox on this machine unless `HOOKLINE_DEV` is set). With HOOKLINE_SHOPS_FILE, each shop's `[shop.sevdesk] token` is used instead; this one is not.",
);
/// `HOOKLINE_SEVDESK_TIMEOUT_MS`.
pub const SEVDESK_TIMEOUT: Setting<Millis> = Setting::new(
    "HOOKLINE_SEVDESK_TIMEOUT_MS",
    "10000",
    "Per sevDesk request.",
);
/// `HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID`.
pub const SEVDESK_CHECK_ACCOUNT: Setting<Option<String>> = Setting::optional(
    "HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID",
    "the account's first offline (clearing) check account",
    "The sevDesk check account payments of gateways without their own are booked on. Never an online (bank) account: sevDesk books there only with a bank transaction. See docs/sevdesk.md.",
);
/// `HOOKLINE_SEVDESK_CHECK_ACCOUNTS`.
pub const SEVDESK_CHECK_ACCOUNTS: Setting<Option<String>> = Setting::optional(
    "HOOKLINE_SEVDESK_CHECK_ACCOUNTS",
    "every gateway books on HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID",
    "The check account per Shopify payment gateway: `gateway=id` pairs, comma-separated, e.g. `paypal=3,shopify_payments=2,gift_card=4` (`gift_card` for gift-card payments).",
);
/// `HOOKLINE_SEVDESK_SEV_USER_ID`.
pub const SEVDESK_SEV_USER: Setting<Option<String>> = Setting::optional(
    "HOOKLINE_SEVDESK_SEV_USER_ID",
    "the account's only SevUser",
    "The SevUser who issues the documents (`contactPerson`); required when the account has several users.",
);
/// `HOOKLINE_SEVDESK_SMALL_BUSINESS`.
pub const SEVDESK_SMALL_BUSINESS: Setting<bool> = Setting::new(
    "HOOKLINE_SEVDESK_SMALL_BUSINESS",
    "false",
    "The merchant is a small business under § 19 UStG: documents carry no VAT (tax rule 11).",
);
/// `HOOKLINE_SEVDESK_OSS`.
pub const SEVDESK_OSS: Setting<bool> = Setting::new(
    "HOOKLINE_SEVDESK_OSS",
    "false",
    "The merchant is registered for the One Stop Shop: EU consumers are invoiced their country's VAT (tax rule 18).",
);
/// `HOOKLINE_SEVDESK_SETTLE_SECS`.
pub const SEVDESK_SETTLE: Setting<Seconds> = Setting::new(
    "HOOKLINE_SEVDESK_SETTLE_SECS",
    "60",
    "How long a sevDesk call whose outcome is unknown (timeout, dropped connection, 5xx) is left alone before sevDesk is searched for its result. At least twice HOOKLINE_SEVDESK_TIMEOUT_MS; above sevDesk's slowest answer plus its search lag.",
);
/// `HOOKLINE_NOTIFY_CHANNEL`.
pub const NOTIFY_CHANNEL: Setting<String> = Setting::new(
    "HOOKLINE_NOTIFY_CHANNEL",
    "sevdesk",
    "How the customer gets the invoice: `sevdesk` (sevDesk e-mails the invoice PDF, `sendViaEmail`, once per invoice) or `off` (the invoice is only marked sent, `sendBy`). See docs/notifications.md.",
)
.expecting("sevdesk or off");
/// `HOOKLINE_NOTIFY_SUBJECT`.
pub const NOTIFY_SUBJECT: Setting<String> = Setting::new(
    "HOOKLINE_NOTIFY_SUBJECT",
    "Ihre Rechnung {invoice_number} zu Bestellung {order_name}",
    "Subject of the e-mail with the invoice of a paid order. Placeholders: {order_name}, {invoice_number}, {amount}, {customer_name}, {bank_details}; an unknown one refuses to start.",
);
/// `HOOKLINE_NOTIFY_TEXT`.
pub const NOTIFY_TEXT: Setting<String> = Setting::new(
    "HOOKLINE_NOTIFY_TEXT",
    "Guten Tag {customer_name},\n\nvielen Dank für Ihre Bestellung {order_name}. Im Anhang finden Sie Ihre Rechnung {invoice_number} über {amount}; der Betrag ist bezahlt.\n\nMit freundlichen Grüßen",
    "Text of the e-mail with the invoice of a paid order (`\\n` is a line break). Placeholders as in HOOKLINE_NOTIFY_SUBJECT.",
);
/// `HOOKLINE_NOTIFY_PREPAYMENT_SUBJECT`.
pub const NOTIFY_PREPAYMENT_SUBJECT: Setting<String> = Setting::new(
    "HOOKLINE_NOTIFY_PREPAYMENT_SUBJECT",
    "Ihre Rechnung {invoice_number} zu Bestellung {order_name}: bitte überweisen Sie {amount}",
    "Subject of the e-mail with the invoice of a prepayment order (paid by bank transfer). Placeholders as in HOOKLINE_NOTIFY_SUBJECT.",
);
/// `HOOKLINE_NOTIFY_PREPAYMENT_TEXT`.
pub const NOTIFY_PREPAYMENT_TEXT: Setting<String> = Setting::new(
    "HOOKLINE_NOTIFY_PREPAYMENT_TEXT",
    "Guten Tag {customer_name},\n\nvielen Dank für Ihre Bestellung {order_name}. Im Anhang finden Sie Ihre Rechnung {invoice_number}. Bitte überweisen Sie {amount} mit dem Verwendungszweck {invoice_number}.\n\n{bank_details}\n\nSobald Ihre Zahlung eingegangen ist, versenden wir Ihre Bestellung.\n\nMit freundlichen Grüßen",
    "Text of the e-mail with the invoice of a prepayment order: the amount, the reference to pay with and the bank details. Placeholders as in HOOKLINE_NOTIFY_SUBJECT.",
);
/// `HOOKLINE_NOTIFY_BANK_DETAILS`.
pub const NOTIFY_BANK_DETAILS: Setting<String> = Setting::new(
    "HOOKLINE_NOTIFY_BANK_DETAILS",
    "Unsere Bankverbindung finden Sie auf der Rechnung.",
    "What {bank_details} stands for, e.g. `Kontoinhaber: Beispiel GmbH, IBAN: DE…, BIC: …` (sevDesk prints the account's bank details on the invoice, hence the default).",
);
/// `HOOKLINE_NOTIFY_COPY`.
pub const NOTIFY_COPY: Setting<bool> = Setting::new(
    "HOOKLINE_NOTIFY_COPY",
    "false",
    "sevDesk sends a copy of each e-mail to the account's own address (`copy`).",
);
/// `HOOKLINE_NOTIFY_RELAY`.
pub const NOTIFY_RELAY: Setting<bool> = Setting::new(
    "HOOKLINE_NOTIFY_RELAY",
    "true",
    "Run the notification relay (it sends the notification outbox) in this process.",
);
/// `HOOKLINE_NOTIFY_POLL_MS`.
pub const NOTIFY_POLL: Setting<Millis> = Setting::new(
    "HOOKLINE_NOTIFY_POLL_MS",
    "500",
    "How often the notification relay looks for due messages.",
);
/// `HOOKLINE_NOTIFY_MAX_ATTEMPTS`.
pub const NOTIFY_MAX_ATTEMPTS: Setting<u32> = Setting::new(
    "HOOKLINE_NOTIFY_MAX_ATTEMPTS",
    "8",
    "Sends of a message before it is marked `failed` (`hookctl notifications retry ID` sends it again).",
);
/// `HOOKLINE_PREPAYMENT_GATEWAYS`.
pub const PREPAYMENT_GATEWAYS: Setting<String> = Setting::new(
    "HOOKLINE_PREPAYMENT_GATEWAYS",
    "Bank Deposit,bank_deposit,Money Order,money_order,manual,Vorkasse,Überweisung",
    "Shopify payment gateways (`payment_gateway_names`, case-insensitive, comma-separated) that mean prepayment by bank transfer: an `orders/create` with one of them and `financial_status` pending gets its invoice at once, e-mailed with the bank details, and no payment booked. `none`: no prepayment.",
);
/// `HOOKLINE_WORKER_HTTP_ADDR`.
pub const HTTP_ADDR: Setting<String> = Setting::new(
    "HOOKLINE_WORKER_HTTP_ADDR",
    "127.0.0.1:8081",
    "Listen address of `/healthz`, `/readyz` and `/metrics`. Port 0 picks a free port (tests).",
);
/// `HOOKLINE_WORKER_DOMAINS`.
pub const DOMAINS: Setting<Vec<Domain>> = Setting::new(
    "HOOKLINE_WORKER_DOMAINS",
    "inventory,orders,compliance",
    "Which bulkheads this process runs; domains can be split across deployments and scaled apart.",
);
/// `HOOKLINE_INVENTORY_CONCURRENCY`.
pub const INVENTORY_CONCURRENCY: Setting<usize> = Setting::new(
    "HOOKLINE_INVENTORY_CONCURRENCY",
    "16",
    "Inventory deliveries handled at once: short PostgreSQL transactions, many at once.",
);
/// `HOOKLINE_INVENTORY_PREFETCH`.
pub const INVENTORY_PREFETCH: Setting<u16> = Setting::new(
    "HOOKLINE_INVENTORY_PREFETCH",
    "32",
    "Unacknowledged inventory deliveries the broker may push ahead.",
);
/// `HOOKLINE_INVENTORY_DB_POOL`.
pub const INVENTORY_DB_POOL: Setting<usize> = Setting::new(
    "HOOKLINE_INVENTORY_DB_POOL",
    "8",
    "PostgreSQL connections of the inventory bulkhead (fewer than its handlers: transactions are short).",
);
/// `HOOKLINE_ORDERS_CONCURRENCY`.
pub const ORDERS_CONCURRENCY: Setting<usize> = Setting::new(
    "HOOKLINE_ORDERS_CONCURRENCY",
    "8",
    "Orders deliveries handled at once (each waits on sevDesk).",
);
/// `HOOKLINE_ORDERS_PREFETCH`.
pub const ORDERS_PREFETCH: Setting<u16> = Setting::new(
    "HOOKLINE_ORDERS_PREFETCH",
    "16",
    "Unacknowledged orders deliveries the broker may push ahead.",
);
/// `HOOKLINE_ORDERS_DB_POOL`.
pub const ORDERS_DB_POOL: Setting<usize> = Setting::new(
    "HOOKLINE_ORDERS_DB_POOL",
    "10",
    "PostgreSQL connections of the orders bulkhead. An order in flight holds one (its advisory lock lives on it), so keep it above `HOOKLINE_ORDERS_CONCURRENCY`.",
);
/// `HOOKLINE_COMPLIANCE_CONCURRENCY`.
pub const COMPLIANCE_CONCURRENCY: Setting<usize> = Setting::new(
    "HOOKLINE_COMPLIANCE_CONCURRENCY",
    "2",
    "Compliance requests handled at once: rare, each scans the dead-letter queues.",
);
/// `HOOKLINE_COMPLIANCE_PREFETCH`.
pub const COMPLIANCE_PREFETCH: Setting<u16> = Setting::new(
    "HOOKLINE_COMPLIANCE_PREFETCH",
    "4",
    "Unacknowledged compliance deliveries the broker may push ahead.",
);
/// `HOOKLINE_COMPLIANCE_DB_POOL`.
pub const COMPLIANCE_DB_POOL: Setting<usize> = Setting::new(
    "HOOKLINE_COMPLIANCE_DB_POOL",
    "3",
    "PostgreSQL connections of the compliance bulkhead.",
);
/// `HOOKLINE_RETRY_MAX_ATTEMPTS`.
pub const RETRY_MAX_ATTEMPTS: Setting<u32> = Setting::new(
    "HOOKLINE_RETRY_MAX_ATTEMPTS",
    "5",
    "Attempts of a retryable failure (broker-held retries) before it is dead-lettered.",
);
/// `HOOKLINE_RETRY_INITIAL_MS`.
pub const RETRY_INITIAL: Setting<Millis> = Setting::new(
    "HOOKLINE_RETRY_INITIAL_MS",
    "1000",
    "The first retry's delay; later ones grow exponentially, with jitter.",
);
/// `HOOKLINE_RETRY_MAX_DELAY_MS`.
pub const RETRY_MAX_DELAY: Setting<Millis> = Setting::new(
    "HOOKLINE_RETRY_MAX_DELAY_MS",
    "30000",
    "The longest retry delay.",
);
/// `HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS`.
pub const CLAIM_TTL: Setting<Seconds> = Setting::new(
    "HOOKLINE_IDEMPOTENCY_CLAIM_TTL_SECS",
    "180",
    "A `processing` claim in Redis expires after this (at least 2 s), so a crashed worker cannot block a key forever. Handlers time out at half of it, which must fit 8 sevDesk calls of HOOKLINE_SEVDESK_TIMEOUT_MS when the orders domain runs (the worker refuses to start otherwise); a delivery waiting for its order or key longer than 4 handler timeouts is dead-lettered as `busy_too_long`.",
);
/// `HOOKLINE_IDEMPOTENCY_DONE_TTL_SECS`.
pub const DONE_TTL: Setting<Seconds> = Setting::new(
    "HOOKLINE_IDEMPOTENCY_DONE_TTL_SECS",
    "604800",
    "How long Redis remembers a finished key (7 days).",
);
/// `HOOKLINE_OUTBOX_RELAY`.
pub const OUTBOX_RELAY: Setting<bool> = Setting::new(
    "HOOKLINE_OUTBOX_RELAY",
    "true",
    "Run the outbox relay in this process.",
);
/// `HOOKLINE_OUTBOX_POLL_MS`.
pub const OUTBOX_POLL: Setting<Millis> = Setting::new(
    "HOOKLINE_OUTBOX_POLL_MS",
    "500",
    "How often the relay looks for due rows without a notification.",
);
/// `HOOKLINE_OUTBOX_BATCH`.
pub const OUTBOX_BATCH: Setting<u32> = Setting::new(
    "HOOKLINE_OUTBOX_BATCH",
    "50",
    "Outbox rows claimed per round.",
);
/// `HOOKLINE_OUTBOX_MAX_ATTEMPTS`.
pub const OUTBOX_MAX_ATTEMPTS: Setting<u32> = Setting::new(
    "HOOKLINE_OUTBOX_MAX_ATTEMPTS",
    "10",
    "Sends of an outbox row before it is marked `failed`.",
);
/// `HOOKLINE_OUTBOX_LEASE_SECS`.
pub const OUTBOX_LEASE: Setting<Seconds> = Setting::new(
    "HOOKLINE_OUTBOX_LEASE_SECS",
    "30",
    "How long a claimed outbox row is reserved for one relay; a relay that dies mid-send loses its claim after this. A live relay extends it every third of it while its requests run.",
);
/// `HOOKLINE_RECONCILE_SHOPS`.
pub const RECONCILE_SHOPS: Setting<Option<Secret>> = Setting::optional(
    "HOOKLINE_RECONCILE_SHOPS",
    "no reconciliation",
    "Shops the reconciliation poller checks, with static Admin API tokens: `shop=admin-token` pairs, comma-separated (the single-shop shortcut; see docs/shopify-admin.md). Refused beside HOOKLINE_SHOPS_FILE: the file's `[shop.admin]` replaces it, and the poller checks every shop with Admin API credentials of any kind.",
);
/// `HOOKLINE_RECONCILE_INTERVAL_SECS`.
pub const RECONCILE_INTERVAL: Setting<Seconds> = Setting::new(
    "HOOKLINE_RECONCILE_INTERVAL_SECS",
    "300",
    "How often each shop is polled.",
);
/// `HOOKLINE_RECONCILE_OVERLAP_SECS`.
pub const RECONCILE_OVERLAP: Setting<Seconds> = Setting::new(
    "HOOKLINE_RECONCILE_OVERLAP_SECS",
    "600",
    "How far before the watermark each cycle starts, for changes whose `updated_at` lags behind their visibility.",
);
/// `HOOKLINE_RECONCILE_LOOKBACK_SECS`.
pub const RECONCILE_LOOKBACK: Setting<Seconds> = Setting::new(
    "HOOKLINE_RECONCILE_LOOKBACK_SECS",
    "86400",
    "Where the first cycle of a shop starts.",
);
/// `HOOKLINE_RECONCILE_PAGE_LIMIT`.
pub const RECONCILE_PAGE_LIMIT: Setting<u32> = Setting::new(
    "HOOKLINE_RECONCILE_PAGE_LIMIT",
    "250",
    "Orders per page (250 is Shopify's maximum).",
)
.expecting("1 to 250");
/// `HOOKLINE_RECONCILE_REPUBLISH_SECS`.
pub const RECONCILE_REPUBLISH: Setting<Seconds> = Setting::new(
    "HOOKLINE_RECONCILE_REPUBLISH_SECS",
    "3600",
    "An order is republished at most once per this long, however many cycles find it behind.",
);
/// `HOOKLINE_PAYMENTS_INTERVAL_SECS`.
pub const PAYMENTS_INTERVAL: Setting<Seconds> = Setting::new(
    "HOOKLINE_PAYMENTS_INTERVAL_SECS",
    "15",
    "How often each shop's sevDesk invoices are checked for bank-transfer payments, which are then reported to Shopify (`orderMarkAsPaid`, see docs/payments.md); 0 turns the payment poller off. It runs for the shops of `HOOKLINE_RECONCILE_SHOPS` in a worker with the orders domain. 15 s keeps the lag from sevDesk's bank matching to Shopify well under a minute.",
);
/// `HOOKLINE_PAYMENTS_OVERLAP_SECS`.
pub const PAYMENTS_OVERLAP: Setting<Seconds> = Setting::new(
    "HOOKLINE_PAYMENTS_OVERLAP_SECS",
    "120",
    "How far before its watermark each payment cycle reads sevDesk (`updateAfter`), for invoices whose update time lags behind their visibility; what was handled already is skipped.",
);
/// `HOOKLINE_PAYMENTS_LOOKBACK_SECS`.
pub const PAYMENTS_LOOKBACK: Setting<Seconds> = Setting::new(
    "HOOKLINE_PAYMENTS_LOOKBACK_SECS",
    "604800",
    "Where a shop's first payment cycle starts: invoices paid this long before the poller first ran are still reported.",
);
/// `HOOKLINE_SHOPIFY_ADMIN_URL`.
pub const SHOPIFY_ADMIN_URL: Setting<String> = Setting::new(
    "HOOKLINE_SHOPIFY_ADMIN_URL",
    "https://{shop}",
    "The Shopify Admin API's base; `{shop}` is replaced by the shop's domain.",
);
/// `HOOKLINE_SHOPIFY_API_VERSION`.
pub const SHOPIFY_API_VERSION: Setting<String> = Setting::new(
    "HOOKLINE_SHOPIFY_API_VERSION",
    "2026-07",
    "The GraphQL Admin API version (`YYYY-MM`, quarterly: `01`, `04`, `07`, `10`) every Admin API call asks for; each is supported at least 12 months, 2026-07 until at least 2027-07-01. Move it before it expires (see docs/shopify-admin.md): Shopify answers an unsupported version with the oldest supported one.",
);
/// `HOOKLINE_SHOPIFY_SHOP`.
pub const SHOPIFY_SHOP: Setting<Option<String>> = Setting::optional(
    "HOOKLINE_SHOPIFY_SHOP",
    "no shop with client credentials or offline tokens",
    "The shop (`name.myshopify.com`) whose Admin API tokens the worker obtains with HOOKLINE_SHOPIFY_CLIENT_ID and HOOKLINE_SHOPIFY_CLIENT_SECRET. See docs/shopify-tokens.md.",
);
/// `HOOKLINE_SHOPIFY_CLIENT_ID`.
pub const SHOPIFY_CLIENT_ID: Setting<Option<String>> = Setting::optional(
    "HOOKLINE_SHOPIFY_CLIENT_ID",
    "no app credentials",
    "The client id of the app installed on HOOKLINE_SHOPIFY_SHOP (Dev Dashboard → app → Settings). Without HOOKLINE_SHOPIFY_REFRESH_TOKEN the worker uses the client-credentials grant (Dev Dashboard apps on your own stores).",
);
/// `HOOKLINE_SHOPIFY_CLIENT_SECRET`.
pub const SHOPIFY_CLIENT_SECRET: Setting<Option<Secret>> = Setting::optional(
    "HOOKLINE_SHOPIFY_CLIENT_SECRET",
    "no app credentials",
    "The client secret of that app (also the key Shopify signs its webhooks with).",
);
/// `HOOKLINE_SHOPIFY_REFRESH_TOKEN`.
pub const SHOPIFY_REFRESH_TOKEN: Setting<Option<Secret>> = Setting::optional(
    "HOOKLINE_SHOPIFY_REFRESH_TOKEN",
    "client credentials, if an app is configured",
    "Use expiring offline tokens (public apps): the refresh token of the app's OAuth install, seeding the pair stored in PostgreSQL. Once stored, the stored pair wins; a different value replaces it only after Shopify refused the stored one or it expired (re-seeding).",
);
/// `HOOKLINE_REDRIVE_RATE`.
pub const REDRIVE_RATE: Setting<f64> = Setting::new(
    "HOOKLINE_REDRIVE_RATE",
    "0",
    "Dead letters re-driven per second once sevDesk's breaker has closed again after an outage; 0 turns it off.",
);
/// `HOOKLINE_RETENTION_INTERVAL_SECS`.
pub const RETENTION_INTERVAL: Setting<Seconds> = Setting::new(
    "HOOKLINE_RETENTION_INTERVAL_SECS",
    "3600",
    "How often old rows are pruned; 0 turns pruning off.",
);
/// `HOOKLINE_RETENTION_PROCESSED_EVENTS_DAYS`.
pub const RETENTION_PROCESSED_EVENTS: Setting<u32> = Setting::new(
    "HOOKLINE_RETENTION_PROCESSED_EVENTS_DAYS",
    "30",
    "Days `processed_events` rows are kept; keep it above every redelivery window.",
)
.expecting("whole days ≥ 1");
/// `HOOKLINE_RETENTION_OUTBOX_SENT_DAYS`.
pub const RETENTION_OUTBOX_SENT: Setting<u32> = Setting::new(
    "HOOKLINE_RETENTION_OUTBOX_SENT_DAYS",
    "7",
    "Days sent outbox rows are kept (pending and failed rows are never pruned).",
)
.expecting("whole days ≥ 1");
/// `HOOKLINE_RETENTION_DEAD_LETTER_ARCHIVE_DAYS`.
pub const RETENTION_DEAD_LETTER_ARCHIVE: Setting<u32> = Setting::new(
    "HOOKLINE_RETENTION_DEAD_LETTER_ARCHIVE_DAYS",
    "90",
    "Days archived dead letters are kept.",
)
.expecting("whole days ≥ 1");
/// `HOOKLINE_RETENTION_EXPORT_DAYS`.
pub const RETENTION_EXPORT: Setting<u32> = Setting::new(
    "HOOKLINE_RETENTION_EXPORT_DAYS",
    "30",
    "Days compliance data exports are kept.",
)
.expecting("whole days ≥ 1");
/// `HOOKLINE_AUDIT`.
pub const AUDIT: Setting<bool> = Setting::new(
    "HOOKLINE_AUDIT",
    "true",
    "Record every decided delivery, its sevDesk calls and outbox rows in the audit trail (`hookctl events`, `hookctl order show`, `hookctl replay`; see docs/audit.md).",
);
/// `HOOKLINE_RETENTION_AUDIT_DAYS`.
pub const RETENTION_AUDIT: Setting<u32> = Setting::new(
    "HOOKLINE_RETENTION_AUDIT_DAYS",
    "90",
    "Days the audit trail is kept (whole day partitions are dropped).",
)
.expecting("whole days ≥ 1");
/// `HOOKLINE_BREAKER_OPEN_MS`.
pub const BREAKER_OPEN: Setting<Millis> = Setting::new(
    "HOOKLINE_BREAKER_OPEN_MS",
    "60000",
    "How long an open circuit breaker refuses calls to its downstream before it probes again.",
);

/// Every setting of the worker, in the order `--help` and the docs show them.
pub const SETTINGS: &[SettingSpec] = &[
    AMQP_URL.spec(),
    DATABASE_URL.spec(),
    REDIS_URL.spec(),
    REDIS_PREFIX.spec(),
    ERP_URL.spec(),
    ERP_TIMEOUT.spec(),
    SEVDESK_URL.spec(),
    SEVDESK_TOKEN.spec(),
    SEVDESK_TIMEOUT.spec(),
    SEVDESK_CHECK_ACCOUNT.spec(),
    SEVDESK_CHECK_ACCOUNTS.spec(),
    SEVDESK_SEV_USER.spec(),
    SEVDESK_SMALL_BUSINESS.spec(),
    SEVDESK_OSS.spec(),
    SEVDESK_SETTLE.spec(),
    NOTIFY_CHANNEL.spec(),
    NOTIFY_SUBJECT.spec(),
    NOTIFY_TEXT.spec(),
    NOTIFY_PREPAYMENT_SUBJECT.spec(),
    NOTIFY_PREPAYMENT_TEXT.spec(),
    NOTIFY_BANK_DETAILS.spec(),
    NOTIFY_COPY.spec(),
    NOTIFY_RELAY.spec(),
    NOTIFY_POLL.spec(),
    NOTIFY_MAX_ATTEMPTS.spec(),
    PREPAYMENT_GATEWAYS.spec(),
    HTTP_ADDR.spec(),
    DOMAINS.spec(),
    INVENTORY_CONCURRENCY.spec(),
    INVENTORY_PREFETCH.spec(),
    INVENTORY_DB_POOL.spec(),
    ORDERS_CONCURRENCY.spec(),
    ORDERS_PREFETCH.spec(),
    ORDERS_DB_POOL.spec(),
    COMPLIANCE_CONCURRENCY.spec(),
    COMPLIANCE_PREFETCH.spec(),
    COMPLIANCE_DB_POOL.spec(),
    QUEUE_MAX_LENGTH.spec(),
    RETRY_MAX_ATTEMPTS.spec(),
    RETRY_INITIAL.spec(),
    RETRY_MAX_DELAY.spec(),
    CLAIM_TTL.spec(),
    DONE_TTL.spec(),
    OUTBOX_RELAY.spec(),
    OUTBOX_POLL.spec(),
    OUTBOX_BATCH.spec(),
    OUTBOX_MAX_ATTEMPTS.spec(),
    OUTBOX_LEASE.spec(),
    hookline_core::config::SHOPS_FILE.spec(),
    RECONCILE_SHOPS.spec(),
    RECONCILE_INTERVAL.spec(),
    RECONCILE_OVERLAP.spec(),
    RECONCILE_LOOKBACK.spec(),
    RECONCILE_PAGE_LIMIT.spec(),
    RECONCILE_REPUBLISH.spec(),
    PAYMENTS_INTERVAL.spec(),
    PAYMENTS_OVERLAP.spec(),
    PAYMENTS_LOOKBACK.spec(),
    SHOPIFY_ADMIN_URL.spec(),
    SHOPIFY_API_VERSION.spec(),
    SHOPIFY_SHOP.spec(),
    SHOPIFY_CLIENT_ID.spec(),
    SHOPIFY_CLIENT_SECRET.spec(),
    SHOPIFY_REFRESH_TOKEN.spec(),
    REDRIVE_RATE.spec(),
    RETENTION_INTERVAL.spec(),
    RETENTION_PROCESSED_EVENTS.spec(),
    RETENTION_OUTBOX_SENT.spec(),
    RETENTION_DEAD_LETTER_ARCHIVE.spec(),
    RETENTION_EXPORT.spec(),
    AUDIT.spec(),
    RETENTION_AUDIT.spec(),
    BREAKER_OPEN.spec(),
    SHUTDOWN_TIMEOUT.spec(),
    LOG_FORMAT.spec(),
    DEV.spec(),
];

/// The worker's section of `docs/configuration.md`.
pub fn config_docs() -> String {
    hookline_core::config::markdown(
        "hookline-worker",
        "Consumes envelopes and applies their effects exactly once (PostgreSQL, the outbox to the ERP, sevDesk); `hookline-worker migrate` applies the database migrations.",
        SETTINGS,
    )
}

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
    /// [`OUTBOX_POLL`].
    pub poll_interval: Duration,
    /// [`OUTBOX_BATCH`].
    pub batch_size: i64,
    /// [`OUTBOX_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// [`OUTBOX_LEASE`].
    pub lease: Duration,
    /// [`ERP_TIMEOUT`].
    pub request_timeout: Duration,
}

/// Everything the worker can be told; each field's setting is declared above.
#[derive(Debug, Clone)]
pub struct Settings {
    /// [`AMQP_URL`].
    pub amqp_url: Secret,
    /// [`DATABASE_URL`].
    pub database_url: Secret,
    /// [`REDIS_URL`].
    pub redis_url: Secret,
    /// [`REDIS_PREFIX`].
    pub redis_prefix: String,
    /// [`ERP_URL`].
    pub erp_url: String,
    /// [`SEVDESK_URL`].
    pub sevdesk_url: String,
    /// [`SEVDESK_TOKEN`].
    pub sevdesk_token: Secret,
    /// [`SEVDESK_TIMEOUT`].
    pub sevdesk_timeout: Duration,
    /// The sevDesk account: [`SEVDESK_SEV_USER`], [`SEVDESK_CHECK_ACCOUNT`],
    /// [`SEVDESK_CHECK_ACCOUNTS`], [`SEVDESK_SMALL_BUSINESS`], [`SEVDESK_OSS`].
    pub sevdesk_account: crate::domains::orders::account::AccountSettings,
    /// [`SEVDESK_SETTLE`].
    pub sevdesk_settle: Duration,
    /// The customer's message with the invoice (`HOOKLINE_NOTIFY_*`, `HOOKLINE_PREPAYMENT_GATEWAYS`).
    pub notify: crate::notifications::NotifySettings,
    /// [`HTTP_ADDR`]: `/healthz`, `/readyz`, `/metrics`.
    pub http_addr: String,
    /// [`DOMAINS`]: which bulkheads this process runs.
    pub domains: Vec<Domain>,
    /// Per-domain sizes (`HOOKLINE_<DOMAIN>_CONCURRENCY`, `_PREFETCH`, `_DB_POOL`).
    pub bulkheads: BTreeMap<Domain, BulkheadSettings>,
    /// [`QUEUE_MAX_LENGTH`]: must match the ingestor (see the topology docs).
    pub topology: TopologySettings,
    /// [`RETRY_MAX_ATTEMPTS`], [`RETRY_INITIAL`], [`RETRY_MAX_DELAY`]: broker-held retries of
    /// retryable failures.
    pub retry: RetryPolicy,
    /// [`CLAIM_TTL`]: handlers time out at half of it.
    pub claim_ttl: Duration,
    /// [`DONE_TTL`].
    pub done_ttl: Duration,
    /// The outbox relay.
    pub outbox: OutboxSettings,
    /// [`OUTBOX_RELAY`]: run the relay in this process.
    pub run_outbox_relay: bool,
    /// The reconciliation poller (off when no shop is configured).
    pub reconcile: crate::reconcile::ReconcileSettings,
    /// The payment poller ([`PAYMENTS_INTERVAL`] 0: off).
    pub payments: crate::payments::PaymentSettings,
    /// Each shop's Admin API credentials: static tokens of [`RECONCILE_SHOPS`], and
    /// [`SHOPIFY_SHOP`]'s app credentials ([`SHOPIFY_CLIENT_ID`], [`SHOPIFY_CLIENT_SECRET`],
    /// [`SHOPIFY_REFRESH_TOKEN`]). See [`crate::shopify::Tokens::from_credentials`].
    pub shopify_credentials: BTreeMap<String, crate::shopify::Credentials>,
    /// The shops file's sevDesk accounts ([`hookline_core::config::SHOPS_FILE`]): each listed
    /// shop's, `None` for a shop that is not invoiced. `None` without a shops file: the one
    /// account of [`SEVDESK_TOKEN`] and [`Settings::sevdesk_account`] books every shop.
    pub shop_sevdesk: Option<BTreeMap<String, Option<crate::books::ShopSevdesk>>>,
    /// The shops file's per-shop Admin API versions (shops without one use
    /// [`SHOPIFY_API_VERSION`]).
    pub shop_api_versions: BTreeMap<String, String>,
    /// What is pruned when.
    pub retention: crate::retention::RetentionSettings,
    /// [`AUDIT`]: write the audit trail.
    pub audit: bool,
    /// [`REDRIVE_RATE`] (see [`crate::redrive`]).
    pub redrive_rate: f64,
    /// Circuit breaker of each downstream ([`BREAKER_OPEN`], other values the core breaker's).
    pub breaker: BreakerConfig,
    /// [`SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
    /// [`LOG_FORMAT`].
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
        let domains = env.read(&DOMAINS)?;
        let mut bulkheads = BTreeMap::new();
        for domain in Domain::ALL {
            let (concurrency, prefetch, db_pool) = bulkhead_settings(domain);
            bulkheads.insert(
                domain,
                BulkheadSettings {
                    concurrency: env.read(concurrency)?.max(1),
                    prefetch: env.read(prefetch)?.max(1),
                    db_pool: env.read(db_pool)?.max(1),
                },
            );
        }
        let log_format = env.read(&LOG_FORMAT)?;
        let retry = RetryPolicy {
            initial: env.read(&RETRY_INITIAL)?.0,
            max_delay: env.read(&RETRY_MAX_DELAY)?.0,
            max_attempts: env.read(&RETRY_MAX_ATTEMPTS)?,
            ..RetryPolicy::default()
        };
        retry.validate().map_err(|e| ConfigError::Invalid {
            name: "HOOKLINE_RETRY_*",
            value: e.to_string(),
            reason: "the retry policy is inconsistent",
        })?;
        let sevdesk_url = env.read(&SEVDESK_URL)?;
        let sevdesk_token = env.read(&SEVDESK_TOKEN)?;
        if !env.read(&DEV)?
            && sevdesk_token.expose() == SANDBOX_SEVDESK_TOKEN
            && !is_on_this_machine(&sevdesk_url)
        {
            return Err(ConfigError::DevelopmentValue {
                name: SEVDESK_TOKEN.name(),
                problem: "is the sandbox's token (the default), but HOOKLINE_SEVDESK_URL is not a sandbox on this machine",
                fix: "set the sevDesk API token of the account (or point HOOKLINE_SEVDESK_URL at the sandbox)",
            });
        }
        let sevdesk_timeout = env.read(&SEVDESK_TIMEOUT)?.0;
        let sevdesk_settle = env.read(&SEVDESK_SETTLE)?.0;
        // A settle shorter than a request may take would verify before sevDesk is done.
        if sevdesk_settle < sevdesk_timeout * 2 {
            return Err(ConfigError::Invalid {
                name: SEVDESK_SETTLE.name(),
                value: sevdesk_settle.as_secs().to_string(),
                reason: "must be at least twice HOOKLINE_SEVDESK_TIMEOUT_MS, so a late commit lands before hookline verifies",
            });
        }
        let gateway_accounts = match env.read(&SEVDESK_CHECK_ACCOUNTS)? {
            None => BTreeMap::new(),
            Some(text) => crate::domains::orders::account::parse_gateway_accounts(&text).map_err(
                |_| ConfigError::Invalid {
                    name: SEVDESK_CHECK_ACCOUNTS.name(),
                    value: text.clone(),
                    reason: "expected gateway=check-account-id pairs, comma-separated (e.g. paypal=3,shopify_payments=2)",
                },
            )?,
        };
        let sevdesk_account = crate::domains::orders::account::AccountSettings {
            sev_user: env.read(&SEVDESK_SEV_USER)?,
            default_check_account: env.read(&SEVDESK_CHECK_ACCOUNT)?,
            gateway_accounts,
            tax: crate::domains::orders::tax::TaxSettings {
                small_business: env.read(&SEVDESK_SMALL_BUSINESS)?,
                oss: env.read(&SEVDESK_OSS)?,
            },
        };
        let mut settings = Self {
            amqp_url: env.read(&AMQP_URL)?,
            database_url: env.read(&DATABASE_URL)?,
            redis_url: env.read(&REDIS_URL)?,
            redis_prefix: env.read(&REDIS_PREFIX)?,
            erp_url: env.read(&ERP_URL)?,
            sevdesk_url,
            sevdesk_token,
            sevdesk_timeout,
            sevdesk_account,
            sevdesk_settle,
            notify: crate::notifications::NotifySettings::read(&env)?,
            http_addr: env.read(&HTTP_ADDR)?,
            domains,
            bulkheads,
            topology: TopologySettings {
                queue_max_length: env.read(&QUEUE_MAX_LENGTH)?,
            },
            retry,
            claim_ttl: env.read(&CLAIM_TTL)?.0.max(Duration::from_secs(2)),
            done_ttl: env.read(&DONE_TTL)?.0,
            outbox: OutboxSettings {
                poll_interval: env.read(&OUTBOX_POLL)?.0,
                batch_size: i64::from(env.read(&OUTBOX_BATCH)?),
                max_attempts: env.read(&OUTBOX_MAX_ATTEMPTS)?,
                lease: env.read(&OUTBOX_LEASE)?.0,
                request_timeout: env.read(&ERP_TIMEOUT)?.0,
            },
            run_outbox_relay: env.read(&OUTBOX_RELAY)?,
            reconcile: crate::reconcile::ReconcileSettings {
                shops: env
                    .read(&RECONCILE_SHOPS)?
                    .as_ref()
                    .map_or("", Secret::expose)
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|pair| {
                        let (shop, token) =
                            pair.split_once('=').ok_or_else(|| ConfigError::Invalid {
                                name: RECONCILE_SHOPS.name(),
                                value: pair.split('=').next().unwrap_or_default().to_owned(),
                                reason: "expected shop=token pairs, comma-separated",
                            })?;
                        Ok(crate::reconcile::ShopAccess {
                            shop: shop.trim().to_ascii_lowercase(),
                            token: Secret::new(token.trim()),
                        })
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?,
                interval: env.read(&RECONCILE_INTERVAL)?.0.max(Duration::from_secs(1)),
                overlap: env.read(&RECONCILE_OVERLAP)?.0,
                lookback: env.read(&RECONCILE_LOOKBACK)?.0,
                admin_url: env.read(&SHOPIFY_ADMIN_URL)?,
                api_version: api_version(env.read(&SHOPIFY_API_VERSION)?)?,
                page_limit: env.read(&RECONCILE_PAGE_LIMIT)?.clamp(1, 250),
                republish_after: env.read(&RECONCILE_REPUBLISH)?.0,
            },
            payments: crate::payments::PaymentSettings {
                interval: env.read(&PAYMENTS_INTERVAL)?.0,
                overlap: env.read(&PAYMENTS_OVERLAP)?.0,
                lookback: env.read(&PAYMENTS_LOOKBACK)?.0,
            },
            redrive_rate: env.read(&REDRIVE_RATE)?.max(0.0),
            shopify_credentials: BTreeMap::new(),
            shop_sevdesk: None,
            shop_api_versions: BTreeMap::new(),
            retention: crate::retention::RetentionSettings {
                interval: env.read(&RETENTION_INTERVAL)?.0,
                processed_events: days(&env, &RETENTION_PROCESSED_EVENTS)?,
                outbox_sent: days(&env, &RETENTION_OUTBOX_SENT)?,
                dead_letter_archive: days(&env, &RETENTION_DEAD_LETTER_ARCHIVE)?,
                exports: days(&env, &RETENTION_EXPORT)?,
                audit: days(&env, &RETENTION_AUDIT)?,
            },
            audit: env.read(&AUDIT)?,
            breaker: BreakerConfig {
                open_for: env.read(&BREAKER_OPEN)?.0,
                ..BreakerConfig::default()
            },
            shutdown_timeout: env.read(&SHUTDOWN_TIMEOUT)?.0,
            log_format,
        };
        match hookline_core::config::read_shops_file(&env)? {
            None => {
                settings.shopify_credentials =
                    shopify_credentials(&env, &settings.reconcile.shops)?;
            }
            Some(file) => {
                refuse_beside_shops_file(&env)?;
                let shops = FileShops::map(file, &settings.sevdesk_account);
                if !env.read(&DEV)?
                    && !is_on_this_machine(&settings.sevdesk_url)
                    && shops
                        .sevdesk
                        .values()
                        .flatten()
                        .any(|s| s.token.expose() == SANDBOX_SEVDESK_TOKEN)
                {
                    return Err(ConfigError::DevelopmentValue {
                        name: hookline_core::config::SHOPS_FILE.name(),
                        problem: "a shop's sevdesk.token is the sandbox's, but HOOKLINE_SEVDESK_URL is not a sandbox on this machine",
                        fix: "give each [shop.sevdesk] its account's API token",
                    });
                }
                settings.reconcile.shops = shops.static_tokens;
                settings.shopify_credentials = shops.credentials;
                settings.shop_sevdesk = Some(shops.sevdesk);
                settings.shop_api_versions = shops.api_versions;
            }
        }
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

/// With a shops file, the single-shop settings that name a shop or its Admin API secrets are
/// refused, each saying where its value belongs: two sources for one shop's credentials would
/// leave it to chance which one is used.
fn refuse_beside_shops_file<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<(), ConfigError> {
    let beside = |name: &'static str, fix: &'static str| ConfigError::BesideShopsFile { name, fix };
    if env.read(&RECONCILE_SHOPS)?.is_some() {
        return Err(beside(
            RECONCILE_SHOPS.name(),
            "give each shop's static Admin API token as [shop.admin] token in the shops file",
        ));
    }
    if env.read(&SHOPIFY_SHOP)?.is_some() {
        return Err(beside(
            SHOPIFY_SHOP.name(),
            "list the shop as a [[shop]] of the shops file, its app credentials under [shop.admin]",
        ));
    }
    if env.read(&SHOPIFY_CLIENT_ID)?.is_some() {
        return Err(beside(
            SHOPIFY_CLIENT_ID.name(),
            "give the app's client_id under the shop's [shop.admin] in the shops file",
        ));
    }
    if env.read(&SHOPIFY_CLIENT_SECRET)?.is_some() {
        return Err(beside(
            SHOPIFY_CLIENT_SECRET.name(),
            "give the app's client_secret (or client_secret_file) under the shop's [shop.admin] in the shops file",
        ));
    }
    if env.read(&SHOPIFY_REFRESH_TOKEN)?.is_some() {
        return Err(beside(
            SHOPIFY_REFRESH_TOKEN.name(),
            "give the refresh_token (or refresh_token_file) under the shop's [shop.admin] in the shops file",
        ));
    }
    Ok(())
}

/// What the worker takes from the shops file.
#[derive(Debug, Default)]
struct FileShops {
    credentials: BTreeMap<String, crate::shopify::Credentials>,
    static_tokens: Vec<crate::reconcile::ShopAccess>,
    sevdesk: BTreeMap<String, Option<crate::books::ShopSevdesk>>,
    api_versions: BTreeMap<String, String>,
}

impl FileShops {
    /// Maps the file's shops; a `[shop.sevdesk]` field not given falls back to `deployment`'s
    /// (`HOOKLINE_SEVDESK_*`), and a non-empty `check_accounts` replaces the deployment's map.
    fn map(
        file: Vec<hookline_core::shops::ShopEntry>,
        deployment: &crate::domains::orders::account::AccountSettings,
    ) -> Self {
        use crate::shopify::Credentials;
        use hookline_core::shops::AdminCredentials;
        let mut shops = Self::default();
        for entry in file {
            let shop = entry.domain;
            if let Some(admin) = entry.admin {
                let credentials = match admin.credentials {
                    AdminCredentials::Static { token } => {
                        shops.static_tokens.push(crate::reconcile::ShopAccess {
                            shop: shop.clone(),
                            token: token.clone(),
                        });
                        Credentials::Static(token)
                    }
                    AdminCredentials::ClientCredentials {
                        client_id,
                        client_secret,
                    } => Credentials::ClientCredentials {
                        client_id,
                        client_secret,
                    },
                    AdminCredentials::Offline {
                        client_id,
                        client_secret,
                        refresh_token,
                    } => Credentials::Offline {
                        client_id,
                        client_secret,
                        seed: Some(refresh_token),
                    },
                };
                shops.credentials.insert(shop.clone(), credentials);
                if let Some(version) = admin.api_version {
                    shops.api_versions.insert(shop.clone(), version);
                }
            }
            let sevdesk = entry.sevdesk.map(|s| crate::books::ShopSevdesk {
                token: s.token,
                account: crate::domains::orders::account::AccountSettings {
                    sev_user: s
                        .sev_user_id
                        .map(|id| id.to_string())
                        .or_else(|| deployment.sev_user.clone()),
                    default_check_account: s
                        .check_account_id
                        .map(|id| id.to_string())
                        .or_else(|| deployment.default_check_account.clone()),
                    gateway_accounts: if s.check_accounts.is_empty() {
                        deployment.gateway_accounts.clone()
                    } else {
                        s.check_accounts
                            .into_iter()
                            .map(|(gateway, id)| (gateway.trim().to_lowercase(), id.to_string()))
                            .collect()
                    },
                    tax: crate::domains::orders::tax::TaxSettings {
                        small_business: s.small_business.unwrap_or(deployment.tax.small_business),
                        oss: s.oss.unwrap_or(deployment.tax.oss),
                    },
                },
            });
            shops.sevdesk.insert(shop, sevdesk);
        }
        shops
    }
}

/// Each shop's Admin API credentials: the static tokens of `HOOKLINE_RECONCILE_SHOPS`, and the
/// single-shop shortcut (`HOOKLINE_SHOPIFY_SHOP` with the app's client id and secret: the
/// client-credentials grant, or expiring offline tokens when a refresh token seeds them).
/// Incomplete or contradictory settings are refused.
fn shopify_credentials<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    static_shops: &[crate::reconcile::ShopAccess],
) -> Result<BTreeMap<String, crate::shopify::Credentials>, ConfigError> {
    use crate::shopify::Credentials;
    let mut credentials: BTreeMap<String, Credentials> = static_shops
        .iter()
        .map(|s| (s.shop.clone(), Credentials::Static(s.token.clone())))
        .collect();
    let shop = env
        .read(&SHOPIFY_SHOP)?
        .map(|s| s.trim().to_ascii_lowercase());
    let client_id = env.read(&SHOPIFY_CLIENT_ID)?;
    let client_secret = env.read(&SHOPIFY_CLIENT_SECRET)?;
    let seed = env.read(&SHOPIFY_REFRESH_TOKEN)?;
    let (client_id, client_secret) = match (client_id, client_secret) {
        (Some(id), Some(secret)) => (id, secret),
        (None, None) => {
            if seed.is_some() {
                return Err(ConfigError::Missing {
                    name: SHOPIFY_CLIENT_ID.name(),
                    hint: "HOOKLINE_SHOPIFY_REFRESH_TOKEN needs the app's HOOKLINE_SHOPIFY_CLIENT_ID and HOOKLINE_SHOPIFY_CLIENT_SECRET to refresh with",
                });
            }
            if let Some(shop) = shop {
                return Err(ConfigError::Invalid {
                    name: SHOPIFY_SHOP.name(),
                    value: shop,
                    reason: "set HOOKLINE_SHOPIFY_CLIENT_ID and HOOKLINE_SHOPIFY_CLIENT_SECRET for it, or unset it (static tokens go in HOOKLINE_RECONCILE_SHOPS)",
                });
            }
            return Ok(credentials);
        }
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                name: SHOPIFY_CLIENT_SECRET.name(),
                hint: "HOOKLINE_SHOPIFY_CLIENT_ID is set: give the app's client secret too (Dev Dashboard → app → Settings)",
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                name: SHOPIFY_CLIENT_ID.name(),
                hint: "HOOKLINE_SHOPIFY_CLIENT_SECRET is set: give the app's client id too (Dev Dashboard → app → Settings)",
            });
        }
    };
    let Some(shop) = shop.filter(|s| !s.is_empty()) else {
        return Err(ConfigError::Missing {
            name: SHOPIFY_SHOP.name(),
            hint: "the app credentials are for one shop: set its domain (name.myshopify.com)",
        });
    };
    if credentials.contains_key(&shop) {
        return Err(ConfigError::Invalid {
            name: SHOPIFY_SHOP.name(),
            value: shop,
            reason: "HOOKLINE_RECONCILE_SHOPS also gives this shop a static token, and a shop has one kind of credentials: remove its pair there, or unset HOOKLINE_SHOPIFY_CLIENT_ID/_SECRET",
        });
    }
    let client_id = client_id.trim().to_owned();
    let entry = match seed {
        None => Credentials::ClientCredentials {
            client_id,
            client_secret,
        },
        Some(seed) => Credentials::Offline {
            client_id,
            client_secret,
            seed: Some(seed),
        },
    };
    credentials.insert(shop, entry);
    Ok(credentials)
}

/// Whether `url` names a host on this machine (where the sandbox runs in development).
fn is_on_this_machine(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A Shopify API version: `YYYY-01`, `-04`, `-07` or `-10` (Shopify's quarterly releases).
fn api_version(value: String) -> Result<String, ConfigError> {
    let valid = value.len() == 7
        && value.is_ascii()
        && value[..4].bytes().all(|b| b.is_ascii_digit())
        && value.as_bytes()[4] == b'-'
        && matches!(&value[5..], "01" | "04" | "07" | "10");
    if valid {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name: SHOPIFY_API_VERSION.name(),
            value,
            reason: "expected a quarterly Shopify API version such as 2026-07",
        })
    }
}

fn days<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    setting: &Setting<u32>,
) -> Result<chrono::Duration, ConfigError> {
    let n = env.read(setting)?;
    if n == 0 {
        return Err(ConfigError::Invalid {
            name: setting.name(),
            value: "0".into(),
            reason: "expected whole days ≥ 1",
        });
    }
    Ok(chrono::Duration::days(i64::from(n)))
}

/// The settings of `domain`'s bulkhead: concurrency, prefetch, database pool.
fn bulkhead_settings(
    domain: Domain,
) -> (
    &'static Setting<usize>,
    &'static Setting<u16>,
    &'static Setting<usize>,
) {
    match domain {
        Domain::Inventory => (
            &INVENTORY_CONCURRENCY,
            &INVENTORY_PREFETCH,
            &INVENTORY_DB_POOL,
        ),
        Domain::Orders => (&ORDERS_CONCURRENCY, &ORDERS_PREFETCH, &ORDERS_DB_POOL),
        Domain::Compliance => (
            &COMPLIANCE_CONCURRENCY,
            &COMPLIANCE_PREFETCH,
            &COMPLIANCE_DB_POOL,
        ),
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
    fn reads_exactly_the_declared_settings() {
        let read = std::cell::RefCell::new(Vec::new());
        Settings::from_lookup(|name| {
            read.borrow_mut().push(name.to_owned());
            None
        })
        .unwrap();
        let read = read.into_inner();
        hookline_core::config::check_reads(SETTINGS, read.iter().map(String::as_str)).unwrap();
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
    fn every_domain_runs_by_default() {
        assert_eq!(settings(&[]).unwrap().domains, Domain::ALL.to_vec());
    }

    #[test]
    fn the_sandbox_token_is_refused_with_a_real_sevdesk() {
        let real = ("HOOKLINE_SEVDESK_URL", "https://my.sevdesk.de/api/v1");
        let err = settings(&[real]).unwrap_err().to_string();
        assert!(
            err.contains("HOOKLINE_SEVDESK_TOKEN") && err.contains("HOOKLINE_DEV=1"),
            "{err}"
        );
        settings(&[real, ("HOOKLINE_SEVDESK_TOKEN", "a-real-token")]).unwrap();
        settings(&[real, ("HOOKLINE_DEV", "1")]).unwrap();
        for sandbox in [
            "http://127.0.0.1:8090/api/v1",
            "http://localhost:1234/api/v1",
            "http://[::1]:8090/api/v1",
        ] {
            settings(&[("HOOKLINE_SEVDESK_URL", sandbox)]).unwrap();
        }
        assert!(settings(&[("HOOKLINE_SEVDESK_URL", "http://sandbox:8090/api/v1")]).is_err());
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_expected() {
        let err = settings(&[("HOOKLINE_ORDERS_PREFETCH", "70000")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "HOOKLINE_ORDERS_PREFETCH=\"70000\" is invalid: expected a whole number up to 65535"
        );
        let err = settings(&[("HOOKLINE_RETENTION_EXPORT_DAYS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOOKLINE_RETENTION_EXPORT_DAYS"), "{err}");
    }

    #[test]
    fn shopify_credentials_come_from_static_pairs_or_the_app_of_one_shop() {
        use crate::shopify::Credentials;
        let s = settings(&[("HOOKLINE_RECONCILE_SHOPS", "A.myshopify.com=shpat_a")]).unwrap();
        assert_eq!(
            s.shopify_credentials.get("a.myshopify.com"),
            Some(&Credentials::Static(Secret::new("shpat_a")))
        );
        let app = [
            ("HOOKLINE_SHOPIFY_SHOP", "B.myshopify.com"),
            ("HOOKLINE_SHOPIFY_CLIENT_ID", "id"),
            ("HOOKLINE_SHOPIFY_CLIENT_SECRET", "secret"),
        ];
        let s = settings(&app).unwrap();
        assert_eq!(
            s.shopify_credentials.get("b.myshopify.com"),
            Some(&Credentials::ClientCredentials {
                client_id: "id".into(),
                client_secret: Secret::new("secret")
            })
        );
        let mut offline = app.to_vec();
        offline.push(("HOOKLINE_SHOPIFY_REFRESH_TOKEN", "shprt_1"));
        let s = settings(&offline).unwrap();
        assert!(matches!(
            s.shopify_credentials.get("b.myshopify.com"),
            Some(Credentials::Offline { seed: Some(seed), .. }) if seed.expose() == "shprt_1"
        ));
        assert!(settings(&[]).unwrap().shopify_credentials.is_empty());
    }

    #[test]
    fn incomplete_or_contradictory_shopify_credentials_are_refused_with_what_to_fix() {
        let err = |pairs: &[(&str, &str)]| settings(pairs).unwrap_err().to_string();
        let both = err(&[
            ("HOOKLINE_RECONCILE_SHOPS", "b.myshopify.com=shpat_b"),
            ("HOOKLINE_SHOPIFY_SHOP", "b.myshopify.com"),
            ("HOOKLINE_SHOPIFY_CLIENT_ID", "id"),
            ("HOOKLINE_SHOPIFY_CLIENT_SECRET", "secret"),
        ]);
        assert!(
            both.contains("HOOKLINE_RECONCILE_SHOPS") && both.contains("b.myshopify.com"),
            "{both}"
        );
        let no_secret = err(&[
            ("HOOKLINE_SHOPIFY_SHOP", "b.myshopify.com"),
            ("HOOKLINE_SHOPIFY_CLIENT_ID", "id"),
        ]);
        assert!(
            no_secret.contains("HOOKLINE_SHOPIFY_CLIENT_SECRET"),
            "{no_secret}"
        );
        let no_shop = err(&[
            ("HOOKLINE_SHOPIFY_CLIENT_ID", "id"),
            ("HOOKLINE_SHOPIFY_CLIENT_SECRET", "secret"),
        ]);
        assert!(no_shop.contains("HOOKLINE_SHOPIFY_SHOP"), "{no_shop}");
        let seed_alone = err(&[("HOOKLINE_SHOPIFY_REFRESH_TOKEN", "shprt_1")]);
        assert!(
            seed_alone.contains("HOOKLINE_SHOPIFY_CLIENT_ID"),
            "{seed_alone}"
        );
        let shop_alone = err(&[("HOOKLINE_SHOPIFY_SHOP", "b.myshopify.com")]);
        assert!(
            shop_alone.contains("HOOKLINE_SHOPIFY_CLIENT_ID"),
            "{shop_alone}"
        );
    }

    /// A shops file in a directory of its own, removed when dropped.
    struct ShopsFile(std::path::PathBuf);

    impl ShopsFile {
        fn new(text: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("hookline-worker-shops-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("shops.toml"), text).unwrap();
            Self(dir)
        }

        fn path(&self) -> String {
            self.0.join("shops.toml").display().to_string()
        }
    }

    impl Drop for ShopsFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const TWO_SHOPS: &str = r#"
[[shop]]
domain = "A.myshopify.com"
webhook_secrets = ["wa"]
[shop.admin]
client_id = "id-a"
client_secret = "secret-a"
api_version = "2026-10"
[shop.sevdesk]
token = "token-a"
sev_user_id = 7
check_accounts = { PayPal = 5003 }
oss = true

[[shop]]
domain = "b.myshopify.com"
webhook_secrets = ["wb"]
[shop.admin]
client_id = "id-b"
client_secret = "secret-b"
refresh_token = "shprt_b"
[shop.sevdesk]
token = "token-b"

[[shop]]
domain = "c.myshopify.com"
webhook_secrets = ["wc"]
[shop.admin]
token = "shpat_c"
"#;

    #[test]
    fn the_shops_file_gives_each_shop_its_admin_credentials_and_sevdesk_account() {
        use crate::shopify::Credentials;
        let file = ShopsFile::new(TWO_SHOPS);
        let s = settings(&[
            ("HOOKLINE_SHOPS_FILE", &file.path()),
            ("HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID", "9000"),
            ("HOOKLINE_SEVDESK_CHECK_ACCOUNTS", "gift_card=9001"),
            ("HOOKLINE_SEVDESK_SMALL_BUSINESS", "true"),
        ])
        .unwrap();
        assert_eq!(
            s.shopify_credentials.get("a.myshopify.com"),
            Some(&Credentials::ClientCredentials {
                client_id: "id-a".into(),
                client_secret: Secret::new("secret-a"),
            })
        );
        assert_eq!(
            s.shopify_credentials.get("b.myshopify.com"),
            Some(&Credentials::Offline {
                client_id: "id-b".into(),
                client_secret: Secret::new("secret-b"),
                seed: Some(Secret::new("shprt_b")),
            })
        );
        assert_eq!(
            s.shopify_credentials.get("c.myshopify.com"),
            Some(&Credentials::Static(Secret::new("shpat_c")))
        );
        assert_eq!(
            s.shop_api_versions,
            BTreeMap::from([("a.myshopify.com".to_owned(), "2026-10".to_owned())])
        );
        let sevdesk = s.shop_sevdesk.expect("per-shop accounts");
        let a = sevdesk["a.myshopify.com"].as_ref().unwrap();
        assert_eq!(a.token, Secret::new("token-a"));
        assert_eq!(a.account.sev_user.as_deref(), Some("7"));
        assert_eq!(
            a.account.default_check_account.as_deref(),
            Some("9000"),
            "unset: the deployment's"
        );
        assert_eq!(
            a.account.gateway_accounts,
            BTreeMap::from([("paypal".to_owned(), "5003".to_owned())]),
            "the file's map replaces the deployment's"
        );
        assert!(a.account.tax.oss && a.account.tax.small_business);
        let b = sevdesk["b.myshopify.com"].as_ref().unwrap();
        assert_eq!(b.token, Secret::new("token-b"));
        assert_eq!(b.account.sev_user, None);
        assert_eq!(
            b.account.gateway_accounts,
            BTreeMap::from([("gift_card".to_owned(), "9001".to_owned())])
        );
        assert!(!b.account.tax.oss && b.account.tax.small_business);
        assert_eq!(sevdesk["c.myshopify.com"], None, "not invoiced");
    }

    #[test]
    fn single_shop_settings_beside_the_shops_file_are_refused_saying_where_they_belong() {
        let file = ShopsFile::new(TWO_SHOPS);
        let path = file.path();
        for (name, value, belongs) in [
            (
                "HOOKLINE_RECONCILE_SHOPS",
                "a.myshopify.com=shpat_a",
                "[shop.admin] token",
            ),
            ("HOOKLINE_SHOPIFY_SHOP", "a.myshopify.com", "[[shop]]"),
            ("HOOKLINE_SHOPIFY_CLIENT_ID", "id-x7", "client_id"),
            (
                "HOOKLINE_SHOPIFY_CLIENT_SECRET",
                "s3cret-x7",
                "client_secret",
            ),
            (
                "HOOKLINE_SHOPIFY_REFRESH_TOKEN",
                "shprt_x7",
                "refresh_token",
            ),
        ] {
            let err = settings(&[("HOOKLINE_SHOPS_FILE", &path), (name, value)])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{name} is set together with HOOKLINE_SHOPS_FILE")),
                "{err}"
            );
            assert!(err.contains(belongs), "{err}");
            assert!(!err.contains(value), "no value shows: {err}");
        }
    }

    #[test]
    fn without_the_shops_file_one_account_books_every_shop() {
        let s = settings(&[("HOOKLINE_RECONCILE_SHOPS", "a.myshopify.com=shpat_a")]).unwrap();
        assert!(s.shop_sevdesk.is_none());
        assert!(s.shop_api_versions.is_empty());
    }

    #[test]
    fn a_shop_with_the_sandbox_token_is_refused_with_a_real_sevdesk() {
        let file = ShopsFile::new(&format!(
            "[[shop]]\ndomain = \"a.myshopify.com\"\nwebhook_secrets = [\"w\"]\n[shop.sevdesk]\ntoken = \"{SANDBOX_SEVDESK_TOKEN}\"\n"
        ));
        let err = settings(&[
            ("HOOKLINE_SHOPS_FILE", &file.path()),
            ("HOOKLINE_SEVDESK_URL", "https://my.sevdesk.de/api/v1"),
            ("HOOKLINE_SEVDESK_TOKEN", "the-deployment-token"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("sandbox"), "{err}");
    }

    #[test]
    fn the_api_version_is_a_quarterly_release_supported_through_2026() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.reconcile.api_version, "2026-07");
        assert!(settings(&[("HOOKLINE_SHOPIFY_API_VERSION", "2027-01")]).is_ok());
        for bad in ["2026-05", "latest", "2026-7", "unstable"] {
            let err = settings(&[("HOOKLINE_SHOPIFY_API_VERSION", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("HOOKLINE_SHOPIFY_API_VERSION") && err.contains("quarterly"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_domains_are_refused_by_name() {
        let err = settings(&[("HOOKLINE_WORKER_DOMAINS", "billing")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOOKLINE_WORKER_DOMAINS"), "{err}");
    }
}
