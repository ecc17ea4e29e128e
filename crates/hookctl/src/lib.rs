//! `hookctl`: what an operator does with dead letters.
//!
//! Dead letters sit in `hookline.<domain>.dlq` with the envelope untouched and the reason in
//! `x-hookline-*` headers. [`dlq::list`] reads them without taking them away (every message is
//! returned to its queue when the reading channel closes, in its original order);
//! [`dlq::replay`] republishes the selected ones to `hookline.events` with their original routing
//! key and a fresh attempt count, and acks each dead letter only **after** the broker confirmed
//! its republish — a crash mid-replay duplicates at worst (idempotency absorbs it) and never
//! loses a message. [`archive::archive`] moves the selected ones into PostgreSQL instead, each acked
//! only after its row is committed, and [`archive::purge`] deletes old archived rows.

pub mod archive;
pub mod dlq;

use hookline_core::config::{AMQP_URL, DATABASE_URL, SettingSpec};

/// Every setting of `hookctl` (shared with the worker; `--amqp-url` and `--database-url` override
/// them).
pub const SETTINGS: &[SettingSpec] = &[AMQP_URL.spec(), DATABASE_URL.spec()];

/// `hookctl`'s section of `docs/configuration.md`.
pub fn config_docs() -> String {
    hookline_core::config::markdown(
        "hookctl",
        "The operator CLI for dead letters; it reads the worker's broker and database settings.",
        SETTINGS,
    )
}
