//! A shop's Admin API access token.
//!
//! Callers ask [`Tokens::get`] for a shop's token before each call and report a 401 with
//! [`Tokens::rejected`], after which the next `get` obtains a new one (where the credentials
//! allow it). Static tokens are handed out as they are.

use std::collections::HashMap;

use hookline_core::config::Secret;

/// How a shop's Admin API token is obtained.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A static Admin API token (`shpat_…`) of a custom app created in the shop's admin before
    /// 2026-01-01. It does not expire.
    Static(Secret),
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The shop has no credentials configured.
    #[error("no Admin API credentials for shop {0}")]
    UnknownShop(String),
}

/// The tokens of every configured shop.
#[derive(Debug, Default)]
pub struct Tokens {
    shops: HashMap<String, Credentials>,
}

impl Tokens {
    /// No shops yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a shop's credentials.
    pub fn insert(&mut self, shop: impl Into<String>, credentials: Credentials) {
        self.shops.insert(shop.into(), credentials);
    }

    /// The shops with credentials.
    pub fn shops(&self) -> impl Iterator<Item = &str> {
        self.shops.keys().map(String::as_str)
    }

    /// A token for `shop`, valid now as far as we know.
    pub async fn get(&self, shop: &str) -> Result<Secret, TokenError> {
        match self.shops.get(shop) {
            Some(Credentials::Static(token)) => Ok(token.clone()),
            None => Err(TokenError::UnknownShop(shop.to_owned())),
        }
    }

    /// Shopify answered 401 to `token`: forget it, so the next [`Tokens::get`] obtains a fresh
    /// one. A static token cannot be renewed; the caller's next call fails the same way.
    pub fn rejected(&self, shop: &str, token: &Secret) {
        let _ = (shop, token);
    }
}
