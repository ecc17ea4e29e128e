//! The hookline ingestor: Shopify webhook in, broker-confirmed envelope out.
//!
//! # Layout
//!
//! One request follows one path, and each step has its module:
//!
//! - [`routes::webhook`]: `POST /webhooks/shopify` reads the raw body (bounded by
//!   `HOOKLINE_MAX_BODY_BYTES`), then
//! - [`verify`]: checks the signature over those exact bytes and the Shopify headers (pure, no I/O),
//! - [`hookline_core::Envelope::from_webhook`] wraps the verified body with ids, key and trace,
//! - [`publish`]: publishes it persistently and waits for the broker's confirm; only then does the
//!   route answer 200. Anything short of a confirm is a 503, so Shopify retries and nothing is lost.
//!
//! Around that path: [`settings`] (env vars with localhost defaults), [`startup`] (binds, wires and
//! runs the server), [`connection`] (a time limit on every connection, against slow clients),
//! [`drain`] (the graceful stop) and [`routes::health`]; logs and metrics are set up by `hookline-telemetry`.

pub mod connection;
pub mod drain;
pub mod publish;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod verify;
