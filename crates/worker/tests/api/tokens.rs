//! Admin API tokens against the sandbox's token endpoint (real HTTP) and a database of their
//! own (real PostgreSQL): client credentials cached and renewed, expiring offline tokens rotated
//! through the database by one replica at a time.

use std::time::{Duration, Instant};

use hookline_core::config::Secret;
use hookline_sandbox::Sandbox;
use hookline_sandbox::shopify_oauth::{CLIENT_ID, CLIENT_SECRET, Grants, OAuthConfig};
use hookline_testkit::TestDatabase;
use hookline_worker::shopify::{Credentials, TokenError, Tokens};

const SHOP: &str = "tokens.myshopify.com";

struct Setup {
    sandbox: Sandbox,
    db: Option<TestDatabase>,
}

impl Setup {
    async fn new() -> Self {
        Self {
            sandbox: Sandbox::spawn("127.0.0.1:0").unwrap(),
            db: None,
        }
    }

    /// With a migrated database for offline pairs.
    async fn with_db() -> Self {
        let mut setup = Self::new().await;
        let db = TestDatabase::create().await;
        hookline_worker::startup::migrate(&db.url()).await.unwrap();
        setup.db = Some(db);
        setup
    }

    /// Token lifetimes, set through the sandbox's control endpoint.
    async fn lifetimes(&self, config: OAuthConfig) {
        let status = reqwest::Client::new()
            .put(format!("{}/_sandbox/shopify/oauth", self.sandbox.base_url))
            .json(&config)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    }

    async fn grants(&self) -> Grants {
        reqwest::get(format!(
            "{}/_sandbox/shopify/oauth/grants",
            self.sandbox.base_url
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
    }

    /// A `Tokens` as one worker process builds it (its own pool: its own connections).
    fn tokens(&self, credentials: Credentials) -> Tokens {
        let mut tokens =
            Tokens::new().with_endpoint(self.sandbox.shopify_admin_url(), Duration::from_secs(5));
        if let Some(db) = &self.db {
            tokens = tokens.with_store(hookline_worker::startup::pool(&db.url(), 2).unwrap());
        }
        tokens.insert(SHOP, credentials);
        tokens
    }

    /// What the sandbox's Admin API answers to `token`.
    async fn admin_status(&self, token: &Secret) -> u16 {
        reqwest::Client::new()
            .post(format!(
                "{}/shops/{SHOP}/admin/api/2026-07/graphql.json",
                self.sandbox.base_url
            ))
            .header("x-shopify-access-token", token.expose())
            .json(&serde_json::json!({
                "query": hookline_worker::shopify::orders::LIST_ORDERS,
                "variables": {"first": 1, "after": null, "query": "updated_at:>='2026-01-01T00:00:00Z'"},
            }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The refresh token of an OAuth install of the app on the shop: what an operator seeds.
    async fn install(&self) -> String {
        let pair: serde_json::Value = reqwest::Client::new()
            .post(format!(
                "{}/_sandbox/shopify/{SHOP}/oauth/install",
                self.sandbox.base_url
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pair["refresh_token"].as_str().unwrap().to_owned()
    }

    /// Exchanges `refresh_token` directly, as a second client would.
    async fn refresh_status(&self, refresh_token: &str) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/shops/{SHOP}/admin/oauth/access_token",
                self.sandbox.base_url
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={refresh_token}"
            ))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn stored_refresh_token(&self) -> String {
        self.db
            .as_ref()
            .unwrap()
            .client()
            .await
            .query_one(
                "SELECT refresh_token FROM shopify_offline_tokens WHERE shop = $1",
                &[&SHOP],
            )
            .await
            .unwrap()
            .get(0)
    }
}

fn client_credentials(secret: &str) -> Credentials {
    Credentials::ClientCredentials {
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(secret),
    }
}

fn offline(seed: Option<&str>) -> Credentials {
    Credentials::Offline {
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        seed: seed.map(Secret::new),
    }
}

#[tokio::test]
async fn client_credentials_are_obtained_once_and_cached_across_many_gets() {
    let setup = Setup::new().await;
    let tokens = setup.tokens(client_credentials(CLIENT_SECRET));
    let concurrent = futures_util::future::join_all((0..20).map(|_| tokens.get(SHOP))).await;
    let first = concurrent[0].as_ref().unwrap().clone();
    assert!(
        concurrent.iter().all(|t| t.as_ref().ok() == Some(&first)),
        "one token for every concurrent get"
    );
    for _ in 0..30 {
        assert_eq!(tokens.get(SHOP).await.unwrap(), first);
    }
    assert_eq!(setup.grants().await.client_credentials, 1, "one grant call");
    assert_eq!(setup.admin_status(&first).await, 200);
}

#[tokio::test]
async fn client_credentials_are_renewed_before_they_expire() {
    let setup = Setup::new().await;
    setup
        .lifetimes(OAuthConfig {
            client_credentials_secs: 10,
            ..OAuthConfig::default()
        })
        .await;
    let tokens = setup.tokens(client_credentials(CLIENT_SECRET));
    let issued = Instant::now();
    let first = tokens.get(SHOP).await.unwrap();
    tokio::time::sleep(Duration::from_millis(8_500)).await;
    assert_eq!(tokens.get(SHOP).await.unwrap(), first, "not yet due");
    // Due from 9 s (10 % of 10 s early), expiring at 10 s.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let renewed = tokens.get(SHOP).await.unwrap();
    assert_ne!(renewed, first, "renewed inside the margin");
    assert_eq!(setup.grants().await.client_credentials, 2);
    if issued.elapsed() < Duration::from_millis(9_800) {
        assert_eq!(
            setup.admin_status(&first).await,
            200,
            "the old token had not expired yet"
        );
    }
    assert_eq!(setup.admin_status(&renewed).await, 200);
}

#[tokio::test]
async fn a_token_that_expires_between_two_calls_is_replaced_by_the_next_get() {
    let setup = Setup::new().await;
    setup
        .lifetimes(OAuthConfig {
            client_credentials_secs: 2,
            ..OAuthConfig::default()
        })
        .await;
    let tokens = setup.tokens(client_credentials(CLIENT_SECRET));
    let first = tokens.get(SHOP).await.unwrap();
    assert_eq!(setup.admin_status(&first).await, 200);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(setup.admin_status(&first).await, 401, "expired at Shopify");
    let next = tokens.get(SHOP).await.unwrap();
    assert_ne!(next, first);
    assert_eq!(setup.admin_status(&next).await, 200);
}

#[tokio::test]
async fn a_rejected_token_is_renewed_once_and_a_stale_rejection_keeps_the_new_one() {
    let setup = Setup::new().await;
    let tokens = setup.tokens(client_credentials(CLIENT_SECRET));
    let first = tokens.get(SHOP).await.unwrap();
    tokens.rejected(SHOP, &first);
    let second = tokens.get(SHOP).await.unwrap();
    assert_ne!(second, first);
    // A call that started with the old token reports its 401 late.
    tokens.rejected(SHOP, &first);
    assert_eq!(tokens.get(SHOP).await.unwrap(), second);
    assert_eq!(setup.grants().await.client_credentials, 2);
}

#[tokio::test]
async fn a_bad_client_secret_is_a_permanent_error_that_says_what_to_fix() {
    let setup = Setup::new().await;
    let tokens = setup.tokens(client_credentials("not-the-secret"));
    let err = tokens.get(SHOP).await.unwrap_err();
    assert!(
        matches!(err, TokenError::CredentialsRefused { ref error, .. } if error == "invalid_client"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("HOOKLINE_SHOPIFY_CLIENT_SECRET") && text.contains("Dev Dashboard"),
        "{text}"
    );
    assert_eq!(setup.grants().await.refused, 1);

    // An outage of the token endpoint is retryable, and passes.
    setup
        .sandbox
        .state
        .shopify_oauth
        .set_faults(hookline_sandbox::Faults {
            error_rate: 1.0,
            error_status: Some(503),
            ..Default::default()
        });
    let tokens = setup.tokens(client_credentials(CLIENT_SECRET));
    let err = tokens.get(SHOP).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    setup
        .sandbox
        .state
        .shopify_oauth
        .set_faults(hookline_sandbox::Faults::default());
    let token = tokens.get(SHOP).await.unwrap();
    assert_eq!(setup.admin_status(&token).await, 200);
}

#[tokio::test]
async fn an_offline_pair_is_rotated_stored_and_used_by_the_next_instance() {
    let setup = Setup::with_db().await;
    let seed = setup.install().await;
    let first = setup.tokens(offline(Some(&seed)));
    let token = first.get(SHOP).await.unwrap();
    assert_eq!(setup.admin_status(&token).await, 200);
    assert_eq!(setup.grants().await.refresh_token, 1);
    assert_ne!(
        setup.stored_refresh_token().await,
        seed,
        "the rotated token is stored"
    );

    // A restart (same seed) and a replica without one: the stored pair wins, no refresh.
    let restarted = setup.tokens(offline(Some(&seed)));
    assert_eq!(restarted.get(SHOP).await.unwrap(), token);
    let replica = setup.tokens(offline(None));
    assert_eq!(replica.get(SHOP).await.unwrap(), token);
    assert_eq!(setup.grants().await.refresh_token, 1);

    // A 401 on one instance refreshes through the store; Shopify keeps one offline token active,
    // so the replica's copy is now refused, and the replica finds the new one stored.
    first.rejected(SHOP, &token);
    let renewed = first.get(SHOP).await.unwrap();
    assert_ne!(renewed, token);
    assert_eq!(setup.admin_status(&token).await, 401);
    replica.rejected(SHOP, &token);
    assert_eq!(replica.get(SHOP).await.unwrap(), renewed);
    assert_eq!(
        setup.grants().await.refresh_token,
        2,
        "the replica did not refresh"
    );
    assert_eq!(setup.admin_status(&renewed).await, 200);

    // The seed's replacement has been used: Shopify refuses the seed now.
    let (status, body) = setup.refresh_status(&seed).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn two_instances_racing_to_refresh_make_one_refresh_call() {
    let setup = Setup::with_db().await;
    let seed = setup.install().await;
    for round in 1..=3 {
        let a = setup.tokens(offline(Some(&seed)));
        let b = setup.tokens(offline(Some(&seed)));
        if round > 1 {
            // Both hold the current token and both are told it was refused.
            let current = a.get(SHOP).await.unwrap();
            assert_eq!(b.get(SHOP).await.unwrap(), current);
            a.rejected(SHOP, &current);
            b.rejected(SHOP, &current);
        }
        let before = setup.grants().await.refresh_token;
        let (ta, tb) = tokio::join!(a.get(SHOP), b.get(SHOP));
        let (ta, tb) = (ta.unwrap(), tb.unwrap());
        assert_eq!(ta, tb, "round {round}: both end with the same token");
        assert_eq!(
            setup.grants().await.refresh_token - before,
            1,
            "round {round}: exactly one refresh"
        );
        assert_eq!(setup.admin_status(&ta).await, 200);
    }
    assert_eq!(setup.grants().await.refused, 0, "the chain never broke");
}

#[tokio::test]
async fn an_outage_during_a_refresh_writes_nothing_and_the_next_get_recovers() {
    let setup = Setup::with_db().await;
    let seed = setup.install().await;
    let tokens = setup.tokens(offline(Some(&seed)));
    let first = tokens.get(SHOP).await.unwrap();
    let stored = setup.stored_refresh_token().await;
    setup
        .sandbox
        .state
        .shopify_oauth
        .set_faults(hookline_sandbox::Faults {
            error_rate: 1.0,
            error_status: Some(503),
            ..Default::default()
        });
    tokens.rejected(SHOP, &first);
    let err = tokens.get(SHOP).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(
        setup.stored_refresh_token().await,
        stored,
        "nothing written"
    );
    setup
        .sandbox
        .state
        .shopify_oauth
        .set_faults(hookline_sandbox::Faults::default());
    let next = tokens.get(SHOP).await.unwrap();
    assert_ne!(next, first);
    assert_eq!(setup.admin_status(&next).await, 200);
    assert_ne!(setup.stored_refresh_token().await, stored, "rotated");
}

#[tokio::test]
async fn offline_tokens_expire_mid_run_and_are_refreshed_before_the_next_call() {
    let setup = Setup::with_db().await;
    setup
        .lifetimes(OAuthConfig {
            offline_secs: 2,
            ..OAuthConfig::default()
        })
        .await;
    let seed = setup.install().await;
    let tokens = setup.tokens(offline(Some(&seed)));
    let first = tokens.get(SHOP).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(setup.admin_status(&first).await, 401);
    let next = tokens.get(SHOP).await.unwrap();
    assert_ne!(next, first);
    assert_eq!(setup.admin_status(&next).await, 200);
    assert_eq!(setup.grants().await.refresh_token, 2);
}

#[tokio::test]
async fn a_dead_chain_says_to_reseed_and_a_new_seed_revives_it() {
    let setup = Setup::with_db().await;
    let seed = setup.install().await;
    let tokens = setup.tokens(offline(Some(&seed)));
    let token = tokens.get(SHOP).await.unwrap();
    // Someone else (a second installation of the app, another tool) uses the stored refresh
    // token: our chain is now broken.
    let stored = setup.stored_refresh_token().await;
    let (status, stolen) = setup.refresh_status(&stored).await;
    assert_eq!(status, 200);
    let (status, _) = setup
        .refresh_status(stolen["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "the replacement used: ours is retired");
    tokens.rejected(SHOP, &token);
    let err = tokens.get(SHOP).await.unwrap_err();
    assert!(matches!(err, TokenError::RefreshRefused { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("HOOKLINE_SHOPIFY_REFRESH_TOKEN"),
        "{err}"
    );
    // Restarting with the old seed does not help (it was used up too) …
    let restarted = setup.tokens(offline(Some(&seed)));
    assert!(matches!(
        restarted.get(SHOP).await,
        Err(TokenError::RefreshRefused { .. })
    ));
    // … a new seed from a new install does.
    let reseed = setup.install().await;
    let reseeded = setup.tokens(offline(Some(&reseed)));
    let revived = reseeded.get(SHOP).await.unwrap();
    assert_eq!(setup.admin_status(&revived).await, 200);
}

#[tokio::test]
async fn an_expired_refresh_token_is_not_sent_and_says_to_reinstall() {
    let setup = Setup::with_db().await;
    setup
        .lifetimes(OAuthConfig {
            offline_secs: 1,
            refresh_secs: 1,
            ..OAuthConfig::default()
        })
        .await;
    let seed = setup.install().await;
    let tokens = setup.tokens(offline(Some(&seed)));
    tokens.get(SHOP).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let before = setup.grants().await.refresh_token;
    let err = tokens.get(SHOP).await.unwrap_err();
    assert!(
        matches!(err, TokenError::RefreshTokenExpired { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("re-install"), "{err}");
    assert_eq!(setup.grants().await.refresh_token, before, "nothing sent");
}

#[tokio::test]
async fn offline_credentials_without_a_stored_pair_or_seed_say_how_to_seed() {
    let setup = Setup::with_db().await;
    let tokens = setup.tokens(offline(None));
    let err = tokens.get(SHOP).await.unwrap_err();
    assert!(matches!(err, TokenError::NotSeeded { .. }), "{err:?}");
    assert!(err.to_string().contains("HOOKLINE_SHOPIFY_REFRESH_TOKEN"));
}
