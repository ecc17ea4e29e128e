//! Expiring offline tokens in PostgreSQL (`shopify_offline_tokens`, one row per shop): the pair
//! every replica of every process shares.
//!
//! A refresh token is exchanged for a new access token **and a new refresh token**; once the
//! new refresh token is used, the old one is refused. And Shopify keeps one expiring offline
//! token active per app and shop, so a second refresh also revokes the access token the first
//! one handed out. So replicas must never refresh one shop at the same time, and a new pair
//! must be durable before anything uses it:
//!
//! - [`TokenStore::current`] takes the shop's row lock (`SELECT … FOR UPDATE` in a transaction),
//!   then re-reads: a replica that waited finds the pair the other one committed and uses it
//!   without calling Shopify.
//! - A refresh happens inside that transaction; the new pair is written and **committed before
//!   the access token is returned**. If the commit fails, the new token is not used: the stored
//!   refresh token stays retryable at Shopify until its replacement is used, so the next attempt
//!   recovers. A refresh whose answer is lost (timeout) is the same unknown outcome, recovered
//!   the same way.
//! - A refusal (`invalid_grant`: used up, revoked by a re-install, expired) marks the row
//!   refused. The chain is dead; only a new seed revives it.
//!
//! Seeding: the operator gives the refresh token of the app's OAuth install (requested with
//! expiring offline tokens) as `HOOKLINE_SHOPIFY_REFRESH_TOKEN`. It is written only when the
//! shop has no row yet; afterwards the stored pair wins, however often the process restarts
//! with the same seed. When the stored chain is dead (refused, or its refresh token expired),
//! a seed other than the one the chain started from replaces it: re-seeding is giving a new
//! refresh token and restarting. (A seed is used once, so leaving the first one configured is
//! harmless.)

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::config::Secret;

use super::grant::{Grant, GrantFailure, Issued, TokenEndpoint};
use super::token::{TokenError, refused};

/// A usable access token from the store, with when it stops being usable.
#[derive(Debug, Clone)]
pub struct StoredAccess {
    /// The access token.
    pub token: Secret,
    /// When Shopify says it expires.
    pub expires_at: DateTime<Utc>,
    /// When it was issued (stored), for the renewal margin.
    pub issued_at: DateTime<Utc>,
}

/// What an offline shop needs to refresh.
pub struct OfflineApp<'a> {
    /// The shop.
    pub shop: &'a str,
    /// The app's client id.
    pub client_id: &'a str,
    /// The app's client secret.
    pub client_secret: &'a Secret,
    /// The refresh token from configuration, if any.
    pub seed: Option<&'a Secret>,
}

/// The offline token pairs, in PostgreSQL.
#[derive(Clone)]
pub struct TokenStore {
    pool: Pool,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenStore")
    }
}

/// The stored row.
struct Row {
    access_token: String,
    access_expires_at: DateTime<Utc>,
    refresh_token: String,
    refresh_expires_at: Option<DateTime<Utc>>,
    refused_reason: Option<String>,
    updated_at: DateTime<Utc>,
    seed: Option<String>,
}

impl TokenStore {
    /// Pairs stored through `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// A usable access token of `app.shop`: the stored one while it is `fresh` and not
    /// `rejected`, else a refreshed one (committed before it is returned). At most one process
    /// refreshes a shop at a time.
    pub async fn current(
        &self,
        app: &OfflineApp<'_>,
        endpoint: &TokenEndpoint,
        rejected: Option<&Secret>,
        fresh: impl Fn(DateTime<Utc>, DateTime<Utc>) -> bool,
    ) -> Result<StoredAccess, TokenError> {
        let shop = app.shop;
        let store = |e: &dyn std::fmt::Display| TokenError::Store {
            shop: shop.to_owned(),
            reason: e.to_string(),
        };
        let mut client = self.pool.get().await.map_err(|e| store(&e))?;
        if let Some(seed) = app.seed {
            client
                .execute(
                    "INSERT INTO shopify_offline_tokens (shop, access_token, access_expires_at, refresh_token, seed)
                     VALUES ($1, '', to_timestamp(0), $2, $2) ON CONFLICT (shop) DO NOTHING",
                    &[&shop, &seed.expose()],
                )
                .await
                .map_err(|e| store(&e))?;
        }
        let tx = client.transaction().await.map_err(|e| store(&e))?;
        let row = tx
            .query_opt(
                "SELECT access_token, access_expires_at, refresh_token, refresh_expires_at,
                        refused_reason, updated_at, seed
                   FROM shopify_offline_tokens WHERE shop = $1 FOR UPDATE",
                &[&shop],
            )
            .await
            .map_err(|e| store(&e))?
            .map(|r| Row {
                access_token: r.get(0),
                access_expires_at: r.get(1),
                refresh_token: r.get(2),
                refresh_expires_at: r.get(3),
                refused_reason: r.get(4),
                updated_at: r.get(5),
                seed: r.get(6),
            })
            .ok_or_else(|| TokenError::NotSeeded {
                shop: shop.to_owned(),
            })?;
        let now = Utc::now();
        let rejected_here = rejected.is_some_and(|r| r.expose() == row.access_token);
        if !row.access_token.is_empty()
            && row.refused_reason.is_none()
            && !rejected_here
            && fresh(row.updated_at, row.access_expires_at)
        {
            tx.commit().await.map_err(|e| store(&e))?;
            return Ok(StoredAccess {
                token: Secret::new(row.access_token),
                expires_at: row.access_expires_at,
                issued_at: row.updated_at,
            });
        }
        // The refresh tokens to try, in order: the stored chain while it lives, then a seed
        // that has not started a chain yet (a seed is used once: the one the chain started
        // from is used up).
        let alive =
            row.refused_reason.is_none() && row.refresh_expires_at.is_none_or(|at| now < at);
        let mut candidates: Vec<(Secret, Option<&str>)> = vec![];
        if alive {
            candidates.push((Secret::new(row.refresh_token.clone()), None));
        }
        if let Some(seed) = app.seed
            && Some(seed.expose()) != row.seed.as_deref()
            && seed.expose() != row.refresh_token
        {
            candidates.push((seed.clone(), Some(seed.expose())));
        }
        let mut last = if alive {
            None
        } else {
            Some(dead_chain(shop, &row))
        };
        for (refresh_token, seeded) in candidates {
            let issued = match endpoint
                .call(
                    shop,
                    Grant::RefreshToken,
                    app.client_id,
                    app.client_secret,
                    Some(&refresh_token),
                )
                .await
            {
                Ok(issued) => issued,
                Err(GrantFailure::Unavailable(reason)) => {
                    // Nothing written: the stored refresh token stays the one to retry.
                    return Err(TokenError::Unavailable {
                        shop: shop.to_owned(),
                        grant: Grant::RefreshToken,
                        reason,
                    });
                }
                Err(GrantFailure::Refused {
                    status,
                    error,
                    description,
                }) => {
                    let reason = format!("{error}: {description}");
                    tx.execute(
                        "UPDATE shopify_offline_tokens
                            SET refresh_token = $2, refused_at = now(), refused_reason = $3,
                                seed = COALESCE($4, seed)
                          WHERE shop = $1",
                        &[&shop, &refresh_token.expose(), &reason, &seeded],
                    )
                    .await
                    .map_err(|e| store(&e))?;
                    last = Some(refused(
                        shop,
                        Grant::RefreshToken,
                        status,
                        &error,
                        &description,
                    ));
                    continue;
                }
            };
            let access = save(&tx, shop, &issued, &refresh_token, seeded)
                .await
                .map_err(|e| store(&e))?;
            // Durable before used: a pair that was not committed is never handed out.
            tx.commit().await.map_err(|e| store(&e))?;
            tracing::info!(shop, expires_at = %access.expires_at, "Shopify offline token refreshed and stored");
            return Ok(access);
        }
        tx.commit().await.map_err(|e| store(&e))?;
        Err(last.unwrap_or_else(|| dead_chain(shop, &row)))
    }
}

/// The error for a chain that cannot be refreshed any more.
fn dead_chain(shop: &str, row: &Row) -> TokenError {
    match &row.refused_reason {
        Some(reason) => TokenError::RefreshRefused {
            shop: shop.to_owned(),
            reason: reason.clone(),
        },
        None => TokenError::RefreshTokenExpired {
            shop: shop.to_owned(),
        },
    }
}

/// Stores the pair `issued` answered for `used`. A refresh that carries no new refresh token
/// keeps the one used.
async fn save(
    tx: &deadpool_postgres::Transaction<'_>,
    shop: &str,
    issued: &Issued,
    used: &Secret,
    seeded: Option<&str>,
) -> Result<StoredAccess, tokio_postgres::Error> {
    let refresh_token = issued
        .refresh_token
        .clone()
        .unwrap_or_else(|| used.expose().to_owned());
    let secs = |s: Option<u64>| s.map(|s| i64::try_from(s).unwrap_or(i64::MAX / 1000));
    let row = tx
        .query_one(
            "UPDATE shopify_offline_tokens SET
                    access_token = $2,
                    access_expires_at = now() + COALESCE($3::bigint, 3600) * interval '1 second',
                    refresh_token = $4,
                    refresh_expires_at = now() + $5::bigint * interval '1 second',
                    refused_at = NULL, refused_reason = NULL, updated_at = now(),
                    seed = COALESCE($6, seed)
              WHERE shop = $1
          RETURNING access_expires_at, updated_at",
            &[
                &shop,
                &issued.access_token,
                &secs(issued.expires_in),
                &refresh_token,
                &secs(issued.refresh_token_expires_in),
                &seeded,
            ],
        )
        .await?;
    Ok(StoredAccess {
        token: Secret::new(issued.access_token.clone()),
        expires_at: row.get(0),
        issued_at: row.get(1),
    })
}
