//! Shopify's Admin API as the worker speaks it: GraphQL only (REST Admin is legacy since
//! 2024-10), with the tokens apps get today.
//!
//! - [`token`]: where a shop's access token comes from — a static Admin token, the
//!   client-credentials grant of a Dev Dashboard app, or an expiring offline token with a
//!   rotating refresh token — cached, and fetched again before expiry or after a 401.
//! - [`grant`]: Shopify's token endpoint and what its answers mean.
//! - [`token_store`]: the offline token pairs in PostgreSQL, refreshed one replica at a time.

pub mod grant;
pub mod token;
pub mod token_store;

pub use token::{Credentials, TokenError, Tokens};
