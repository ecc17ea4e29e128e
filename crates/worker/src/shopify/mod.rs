//! Shopify's Admin API as the worker speaks it: GraphQL only (REST Admin is legacy since
//! 2024-10), with the tokens apps get today.
//!
//! - [`token`]: where a shop's access token comes from — a static Admin token, the
//!   client-credentials grant of a Dev Dashboard app, or an expiring offline token with a
//!   rotating refresh token — cached, and fetched again before expiry or after a 401.
//! - [`grant`]: Shopify's token endpoint and what its answers mean.
//! - [`token_store`]: the offline token pairs in PostgreSQL, refreshed one replica at a time.
//! - [`graphql`]: the one Admin API client ([`AdminClient`]): cost-based throttling, retries,
//!   typed errors; every query and mutation of the worker goes through it.
//! - [`orders`]: the orders and refunds the reconciliation poller reads, and their mapping to
//!   the webhook payloads the orders domain parses.
//! - [`setup`]: what a shop must have set up — webhook subscriptions, granted scopes, a
//!   supported API version — for `hookctl shopify subscriptions --apply` and `hookctl doctor`.

pub mod grant;
pub mod graphql;
pub mod orders;
pub mod setup;
pub mod token;
pub mod token_store;

pub use graphql::{AdminClient, AdminError, AdminSettings, ThrottleStatus};
pub use token::{Credentials, TokenError, Tokens};

/// Tokens for shops with static Admin API tokens (`HOOKLINE_RECONCILE_SHOPS`).
pub fn static_tokens<'a>(
    shops: impl IntoIterator<Item = (&'a str, &'a hookline_core::config::Secret)>,
) -> Tokens {
    let mut tokens = Tokens::new();
    for (shop, token) in shops {
        tokens.insert(shop, Credentials::Static(token.clone()));
    }
    tokens
}
