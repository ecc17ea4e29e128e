//! `hookctl`: what an operator does with dead letters, the audit trail (`events`, `order show`,
//! `replay`), and `doctor`.
//!
//! The dead-letter operations live in `hookline-broker` (the worker's re-drive and privacy
//! handlers use them too) and are re-exported here.

pub use hookline_broker::{archive, dlq};

pub mod replay;
pub mod shopify;

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
