//! A shop's Admin API access token.
//!
//! Callers ask [`Tokens::get`] for a shop's token before each call and report a 401 with
//! [`Tokens::rejected`], after which the next `get` obtains a new one (where the credentials
//! allow it). Three kinds of credentials, by app type (see `docs/shopify-tokens.md`):
//!
//! - [`Credentials::Static`]: a `shpat_…` token of a custom app created in the shop admin
//!   before 2026-01-01 (no new ones since). It never expires; handed out as it is.
//! - [`Credentials::ClientCredentials`]: a Dev Dashboard app on a store of one's own
//!   organisation exchanges its client id and secret for a token valid about 24 hours. Each
//!   process holds its own; nothing is stored.
//! - [`Credentials::Offline`]: an expiring offline token (60 minutes) with a rotating refresh
//!   token, what public apps must use from 2027-01-01. The pair lives in PostgreSQL, shared by
//!   every replica, and refreshes are serialised there (see [`super::token_store`]).
//!
//! Expiring tokens are cached per shop and renewed **before** they expire, by
//! [`renewal_margin`]: 10 % of their lifetime, at most 5 minutes — long enough that a call
//! started just before renewal does not meet an expired token, short enough to use most of a
//! short lifetime. Concurrent `get`s of one shop make one grant call (single flight): the first
//! renews while the others wait for its result.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::config::Secret;

use super::grant::{Grant, GrantFailure, TokenEndpoint};
use super::token_store::{OfflineApp, TokenStore};

/// How a shop's Admin API token is obtained. One value per shop: the single-shop settings fill
/// one, a shops file fills one per shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A static Admin API token (`shpat_…`) of a custom app created in the shop's admin before
    /// 2026-01-01. It does not expire.
    Static(Secret),
    /// A Dev Dashboard app installed on a store of the same organisation: the
    /// client-credentials grant.
    ClientCredentials {
        /// The app's client id (Dev Dashboard → app → Settings).
        client_id: String,
        /// The app's client secret.
        client_secret: Secret,
    },
    /// An expiring offline token with a rotating refresh token; the current pair lives in
    /// PostgreSQL (`shopify_offline_tokens`).
    Offline {
        /// The app's client id.
        client_id: String,
        /// The app's client secret.
        client_secret: Secret,
        /// The refresh token of the app's OAuth install, written to the store when the shop has
        /// no pair there yet, or when the stored chain is dead and did not start from it.
        seed: Option<Secret>,
    },
}

impl Credentials {
    /// What kind these are, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Static(_) => "static",
            Self::ClientCredentials { .. } => "client_credentials",
            Self::Offline { .. } => "offline",
        }
    }
}

/// Why no token could be had. [`TokenError::is_retryable`] tells a passing outage from
/// something an operator has to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The shop has no credentials configured.
    #[error("no Admin API credentials for shop {0}: configure them (see docs/shopify-tokens.md)")]
    UnknownShop(String),
    /// Shopify refused the client id or secret.
    #[error(
        "Shopify refused the app credentials of shop {shop} ({grant} grant, HTTP {status}, {error}: {description}): check HOOKLINE_SHOPIFY_CLIENT_ID and HOOKLINE_SHOPIFY_CLIENT_SECRET (or the shop's entry in the shops file) against the app's Settings in the Dev Dashboard, and that the app is installed on the shop"
    )]
    CredentialsRefused {
        /// The shop.
        shop: String,
        /// The grant refused.
        grant: &'static str,
        /// The HTTP status.
        status: u16,
        /// OAuth's `error`.
        error: String,
        /// OAuth's `error_description`.
        description: String,
    },
    /// Shopify refused the refresh token: used up, revoked (the app was re-installed or
    /// uninstalled) or expired.
    #[error(
        "Shopify refused the refresh token of shop {shop} ({reason}): the stored token chain is dead; seed a new pair from the app's OAuth install (HOOKLINE_SHOPIFY_REFRESH_TOKEN, then restart; see docs/shopify-tokens.md)"
    )]
    RefreshRefused {
        /// The shop.
        shop: String,
        /// Shopify's `error: error_description`.
        reason: String,
    },
    /// The stored refresh token has expired (unused for its whole lifetime, 90 days).
    #[error(
        "the refresh token of shop {shop} has expired: re-install the app (or run its OAuth again) and seed the new refresh token with HOOKLINE_SHOPIFY_REFRESH_TOKEN, then restart (see docs/shopify-tokens.md)"
    )]
    RefreshTokenExpired {
        /// The shop.
        shop: String,
    },
    /// Offline credentials, but no pair stored and no seed configured.
    #[error(
        "no offline token pair stored for shop {shop}: seed the refresh token of the app's OAuth install with HOOKLINE_SHOPIFY_REFRESH_TOKEN (see docs/shopify-tokens.md)"
    )]
    NotSeeded {
        /// The shop.
        shop: String,
    },
    /// Offline credentials on a [`Tokens`] built without a store.
    #[error(
        "shop {shop} uses offline tokens, which live in PostgreSQL, but no token store was configured"
    )]
    NoStore {
        /// The shop.
        shop: String,
    },
    /// Shopify's token endpoint gave no usable answer (transport error, timeout, 429, 5xx).
    #[error("Shopify's token endpoint is unavailable for shop {shop} ({grant:?} grant): {reason}")]
    Unavailable {
        /// The shop.
        shop: String,
        /// The grant attempted.
        grant: Grant,
        /// What happened.
        reason: String,
    },
    /// PostgreSQL failed while reading or storing the pair.
    #[error("the token store failed for shop {shop}: {reason}")]
    Store {
        /// The shop.
        shop: String,
        /// What happened.
        reason: String,
    },
}

impl TokenError {
    /// A passing outage: trying again later may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Store { .. })
    }
}

/// The error for a refusal of `grant` by Shopify.
pub(super) fn refused(
    shop: &str,
    grant: Grant,
    status: u16,
    error: &str,
    description: &str,
) -> TokenError {
    // A bad refresh token is `invalid_grant`; anything else (`invalid_client`, an unknown shop)
    // is about the app's credentials.
    if grant == Grant::RefreshToken && error == "invalid_grant" {
        TokenError::RefreshRefused {
            shop: shop.to_owned(),
            reason: format!("{error}: {description}"),
        }
    } else {
        TokenError::CredentialsRefused {
            shop: shop.to_owned(),
            grant: grant.as_str(),
            status,
            error: error.to_owned(),
            description: description.to_owned(),
        }
    }
}

/// How long before its expiry a token of `lifetime` is renewed: 10 % of it, at most 5 minutes.
pub fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(300))
}

/// When a token issued at `issued_at` and expiring at `expires_at` is due for renewal.
pub fn renew_at(issued_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
    let lifetime = (expires_at - issued_at).to_std().unwrap_or_default();
    let margin = chrono::Duration::from_std(renewal_margin(lifetime)).unwrap_or_default();
    expires_at - margin
}

/// A token in hand.
#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    /// `None`: never renewed (static).
    renew_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Cache {
    current: Option<Cached>,
    /// The token Shopify last answered 401 to: not to be handed out again.
    rejected: Option<Secret>,
}

#[derive(Debug)]
struct Shop {
    credentials: Credentials,
    cache: Mutex<Cache>,
    /// Held while a token is obtained: one grant call per shop at a time.
    flight: tokio::sync::Mutex<()>,
}

impl Shop {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self) -> Option<Secret> {
        let cache = self.cache();
        cache
            .current
            .as_ref()
            .filter(|c| c.renew_at.is_none_or(|at| Instant::now() < at))
            .map(|c| c.token.clone())
    }
}

/// The tokens of every configured shop.
#[derive(Debug)]
pub struct Tokens {
    shops: HashMap<String, Shop>,
    endpoint: TokenEndpoint,
    store: Option<TokenStore>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            shops: HashMap::new(),
            endpoint: TokenEndpoint::new("https://{shop}", Duration::from_secs(10)),
            store: None,
        }
    }
}

impl Tokens {
    /// No shops yet; grants go to `https://{shop}/admin/oauth/access_token`; no store (offline
    /// credentials need [`Tokens::with_store`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants go to `admin_url` (`HOOKLINE_SHOPIFY_ADMIN_URL`, `{shop}` replaced) and time out
    /// after `timeout`.
    pub fn with_endpoint(mut self, admin_url: impl Into<String>, timeout: Duration) -> Self {
        self.endpoint = TokenEndpoint::new(admin_url, timeout);
        self
    }

    /// Offline pairs live in the database behind `pool`.
    pub fn with_store(mut self, pool: Pool) -> Self {
        self.store = Some(TokenStore::new(pool));
        self
    }

    /// The shops of `credentials`, with grants to `admin_url` and offline pairs in `pool`.
    pub fn from_credentials<'a>(
        credentials: impl IntoIterator<Item = (&'a String, &'a Credentials)>,
        admin_url: &str,
        pool: Option<Pool>,
    ) -> Self {
        let mut tokens = Self::new().with_endpoint(admin_url, Duration::from_secs(10));
        if let Some(pool) = pool {
            tokens = tokens.with_store(pool);
        }
        for (shop, credentials) in credentials {
            tokens.insert(shop.clone(), credentials.clone());
        }
        tokens
    }

    /// Adds (or replaces) a shop's credentials.
    pub fn insert(&mut self, shop: impl Into<String>, credentials: Credentials) {
        self.shops.insert(
            shop.into(),
            Shop {
                credentials,
                cache: Mutex::default(),
                flight: tokio::sync::Mutex::new(()),
            },
        );
    }

    /// The shops with credentials.
    pub fn shops(&self) -> impl Iterator<Item = &str> {
        self.shops.keys().map(String::as_str)
    }

    /// A token for `shop`, valid now as far as we know.
    pub async fn get(&self, shop: &str) -> Result<Secret, TokenError> {
        let entry = self
            .shops
            .get(shop)
            .ok_or_else(|| TokenError::UnknownShop(shop.to_owned()))?;
        if let Credentials::Static(token) = &entry.credentials {
            return Ok(token.clone());
        }
        if let Some(token) = entry.fresh() {
            return Ok(token);
        }
        let _flight = entry.flight.lock().await;
        // Whoever held the flight before may have renewed it.
        if let Some(token) = entry.fresh() {
            return Ok(token);
        }
        let rejected = entry.cache().rejected.clone();
        let (token, renew_at) = self.obtain(shop, &entry.credentials, rejected).await?;
        let mut cache = entry.cache();
        cache.current = Some(Cached {
            token: token.clone(),
            renew_at: Some(renew_at),
        });
        cache.rejected = None;
        Ok(token)
    }

    /// Shopify answered 401 to `token`: forget it, so the next [`Tokens::get`] obtains a fresh
    /// one. A static token cannot be renewed; the caller's next call fails the same way. A
    /// token renewed meanwhile is kept.
    pub fn rejected(&self, shop: &str, token: &Secret) {
        let Some(entry) = self.shops.get(shop) else {
            return;
        };
        if matches!(entry.credentials, Credentials::Static(_)) {
            tracing::warn!(shop, "Shopify refused the static Admin API token");
            return;
        }
        let mut cache = entry.cache();
        if cache.current.as_ref().is_some_and(|c| &c.token == token) {
            cache.current = None;
        }
        cache.rejected = Some(token.clone());
        tracing::info!(
            shop,
            kind = entry.credentials.kind(),
            "Shopify refused a token; the next call obtains a new one"
        );
    }

    /// A new token and when to renew it.
    async fn obtain(
        &self,
        shop: &str,
        credentials: &Credentials,
        rejected: Option<Secret>,
    ) -> Result<(Secret, Instant), TokenError> {
        match credentials {
            Credentials::Static(token) => Ok((token.clone(), Instant::now())),
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => {
                let issued = self
                    .endpoint
                    .call(
                        shop,
                        Grant::ClientCredentials,
                        client_id,
                        client_secret,
                        None,
                    )
                    .await
                    .map_err(|failure| grant_error(shop, Grant::ClientCredentials, failure))?;
                // Shopify documents ~24 h; a token without a lifetime is renewed daily anyway.
                let lifetime = issued.lifetime().unwrap_or(Duration::from_secs(24 * 3600));
                tracing::info!(
                    shop,
                    lifetime_secs = lifetime.as_secs(),
                    "Shopify token obtained (client credentials)"
                );
                Ok((
                    Secret::new(issued.access_token),
                    Instant::now() + lifetime - renewal_margin(lifetime),
                ))
            }
            Credentials::Offline {
                client_id,
                client_secret,
                seed,
            } => {
                let store = self.store.as_ref().ok_or_else(|| TokenError::NoStore {
                    shop: shop.to_owned(),
                })?;
                let app = OfflineApp {
                    shop,
                    client_id,
                    client_secret,
                    seed: seed.as_ref(),
                };
                let access = store
                    .current(
                        &app,
                        &self.endpoint,
                        rejected.as_ref(),
                        |issued, expires| Utc::now() < renew_at(issued, expires),
                    )
                    .await?;
                let until = (renew_at(access.issued_at, access.expires_at) - Utc::now())
                    .to_std()
                    .unwrap_or_default();
                Ok((access.token, Instant::now() + until))
            }
        }
    }
}

fn grant_error(shop: &str, grant: Grant, failure: GrantFailure) -> TokenError {
    match failure {
        GrantFailure::Refused {
            status,
            error,
            description,
        } => refused(shop, grant, status, &error, &description),
        GrantFailure::Unavailable(reason) => TokenError::Unavailable {
            shop: shop.to_owned(),
            grant,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_a_tenth_of_their_lifetime_early_at_most_five_minutes() {
        assert_eq!(
            renewal_margin(Duration::from_secs(86_399)),
            Duration::from_secs(300)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(3_600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(4)),
            Duration::from_millis(400)
        );
        let issued = Utc::now();
        let expires = issued + chrono::Duration::seconds(3600);
        assert_eq!(
            renew_at(issued, expires),
            expires - chrono::Duration::seconds(300)
        );
        assert_eq!(renew_at(expires, issued), issued, "nonsense stays expired");
    }

    #[tokio::test]
    async fn static_tokens_are_handed_out_as_they_are_and_unknown_shops_refused() {
        let mut tokens = Tokens::new();
        tokens.insert(
            "a.myshopify.com",
            Credentials::Static(Secret::new("shpat_a")),
        );
        let token = tokens.get("a.myshopify.com").await.unwrap();
        assert_eq!(token.expose(), "shpat_a");
        tokens.rejected("a.myshopify.com", &token);
        assert_eq!(
            tokens.get("a.myshopify.com").await.unwrap().expose(),
            "shpat_a"
        );
        let err = tokens.get("b.myshopify.com").await.unwrap_err();
        assert!(matches!(err, TokenError::UnknownShop(_)));
        assert!(!err.is_retryable());
    }

    #[test]
    fn tokens_can_be_shared_and_get_held_across_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let tokens = Tokens::new();
        send_sync(&tokens);
        send(tokens.get("a.myshopify.com"));
    }

    #[tokio::test]
    async fn offline_credentials_without_a_store_say_so() {
        let mut tokens = Tokens::new();
        tokens.insert(
            "a.myshopify.com",
            Credentials::Offline {
                client_id: "id".into(),
                client_secret: Secret::new("s"),
                seed: None,
            },
        );
        let err = tokens.get("a.myshopify.com").await.unwrap_err();
        assert!(matches!(err, TokenError::NoStore { .. }), "{err}");
    }

    #[test]
    fn refusals_say_what_to_fix_and_outages_are_retryable() {
        let bad_secret = refused(
            "a.myshopify.com",
            Grant::ClientCredentials,
            400,
            "invalid_client",
            "Client authentication failed",
        );
        let text = bad_secret.to_string();
        assert!(text.contains("HOOKLINE_SHOPIFY_CLIENT_SECRET"), "{text}");
        assert!(text.contains("invalid_client"), "{text}");
        assert!(!bad_secret.is_retryable());
        let used = refused(
            "a.myshopify.com",
            Grant::RefreshToken,
            400,
            "invalid_grant",
            "The refresh token is invalid or expired",
        );
        assert!(matches!(used, TokenError::RefreshRefused { .. }));
        assert!(used.to_string().contains("HOOKLINE_SHOPIFY_REFRESH_TOKEN"));
        assert!(!used.is_retryable());
        let down = grant_error(
            "a.myshopify.com",
            Grant::RefreshToken,
            GrantFailure::Unavailable("HTTP 503".into()),
        );
        assert!(down.is_retryable());
    }
}
