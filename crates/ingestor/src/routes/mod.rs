//! HTTP routes: the webhook endpoint and the operational ones.

pub mod health;
pub mod webhook;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;

/// The small JSON body of every error answer: a stable machine-readable `error` code and a
/// sentence for the person reading Shopify's delivery log.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Stable code, e.g. `invalid_signature`.
    pub error: &'a str,
    /// What went wrong, for a person.
    pub message: String,
}

/// Builds an error answer.
pub fn error_response(status: StatusCode, error: &str, message: String) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody { error, message })
}

/// Writes an error and its whole `source()` chain, for logs (the HTTP body stays short).
pub fn error_chain_fmt(
    e: &impl std::error::Error,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    write!(f, "{e}")?;
    let mut current = e.source();
    while let Some(cause) = current {
        write!(f, ": {cause}")?;
        current = cause.source();
    }
    Ok(())
}
