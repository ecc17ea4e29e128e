//! Dead-letter queues, for everyone who reads them: the worker's re-drive and privacy handlers,
//! and `hookctl`.
//!
//! Dead letters sit in `hookline.<domain>.dlq` with the envelope untouched and the reason in
//! `x-hookline-*` headers. [`dlq::list`] reads them without taking them away (every message is
//! returned to its queue when the reading channel closes, in its original order);
//! [`dlq::replay`] republishes the selected ones to `hookline.events` with their original routing
//! key and a fresh attempt count, and acks each dead letter only **after** the broker confirmed
//! its republish — a crash mid-replay duplicates at worst (idempotency absorbs it) and never
//! loses a message. [`archive::archive`] moves the selected ones into PostgreSQL instead, each
//! acked only after its row is committed, and [`archive::purge`] deletes old archived rows.
//!
//! One crate under the worker and the CLI, so the worker does not depend on the CLI.

pub mod archive;
pub mod dlq;
