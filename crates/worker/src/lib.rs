//! The hookline worker: envelopes in, effects applied exactly once.
//!
//! # Layout
//!
//! Following one delivery:
//!
//! - [`consume`]: one [`consume::Bulkhead`] per domain (own channel, prefetch, concurrency limit,
//!   handler with its own pools) pulls deliveries and decides ack / retry / dead letter;
//! - [`idempotency`]: claims the envelope's key in Redis (fast path) and records it in PostgreSQL
//!   inside the effect's transaction (the truth);
//! - [`domains`]: the effects ([`domains::inventory`]: stock + outbox in one transaction);
//! - [`schema`]: strict payload structs with field paths in errors, and drift counters;
//! - [`error`]: typed errors and their classification (retryable or permanent);
//! - [`failure`]: the failure headers a retry or dead letter carries;
//! - [`outbox`] + [`erp`]: the relay that sends committed outbox rows to the ERP;
//! - [`sevdesk`]: the sevDesk client of the orders domain ([`domains::orders`]), whose deliveries
//!   take the order's lock ([`order_lock`]);
//! - [`reconcile`]: the poller that republishes orders whose webhooks never got through;
//! - [`domains::compliance`]: Shopify's privacy webhooks; [`retention`]: pruning old rows;
//! - [`audit`]: the trail of every decided delivery, its steps and its orders' state changes;
//! - [`shopify`]: the Admin API (GraphQL) and its tokens.
//!
//! Around it: [`settings`], [`migrate`], [`startup`] (wiring, reconnects) and [`http`].

pub mod audit;
pub mod books;
pub mod consume;
pub mod doctor;
pub mod domains;
pub mod downstream;
pub mod erp;
pub mod error;
pub mod failure;
pub mod http;
pub mod idempotency;
pub mod migrate;
pub mod notifications;
pub mod order_lock;
pub mod outbox;
pub mod payments;
pub mod reconcile;
pub mod redrive;
pub mod retention;
pub mod schema;
pub mod settings;
pub mod sevdesk;
pub mod shopify;
pub mod startup;
