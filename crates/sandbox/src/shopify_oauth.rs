//! Shopify's token endpoint, played: `POST /shops/{shop}/admin/oauth/access_token` with the two
//! grants a server-side app uses without a merchant in front of it.
//!
//! - `grant_type=client_credentials` (Dev Dashboard apps on the organisation's own stores):
//!   `client_id` + `client_secret` → `{access_token, scope, expires_in}`. Shopify issues these
//!   for about 24 hours (`expires_in: 86399`).
//! - `grant_type=refresh_token` (expiring offline tokens, required for public apps from
//!   2027-01-01): `client_id` + `client_secret` + `refresh_token` → `{access_token, scope,
//!   expires_in, refresh_token, refresh_token_expires_in}`: a 60-minute access token and a
//!   **new** refresh token (90 days).
//!
//! Rotation follows Shopify's rules as of 2026-08: a used refresh token may be retried (a lost
//! answer can be recovered) until its replacement is used — then it is retired and refused —
//! and never past 30 days after its first use or its own expiry. Only one expiring offline token
//! is active per app and shop: every pair issued revokes the access token issued before it.
//!
//! Shopify's error shapes: `400 {"error": "invalid_client", "error_description": …}` for
//! credentials it does not know, `400 {"error": "invalid_grant", …}` for a refresh token that is
//! unknown, retired or expired, `400 {"error": "unsupported_grant_type", …}`.
//!
//! Bodies may be form-encoded (as Shopify documents) or JSON (as its libraries send).
//!
//! Control: `PUT /_sandbox/shopify/oauth` sets [`OAuthConfig`] (lifetimes in seconds, so tests
//! can see tokens expire); `POST /_sandbox/shopify/{shop}/oauth/install` issues an offline pair
//! as an app's OAuth install would (the seed an operator gives hookline); `GET
//! /_sandbox/shopify/oauth/grants` counts the grant calls; `PUT /_sandbox/faults/shopify-oauth`
//! injects faults into the token endpoint.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Faults;

/// The client id of the app the sandbox knows.
pub const CLIENT_ID: &str = "sandbox-client-id";
/// That app's client secret.
pub const CLIENT_SECRET: &str = "sandbox-client-secret";
/// The scopes its tokens carry.
pub const SCOPE: &str = "read_orders,write_orders,read_inventory";
/// How long after its first use a replaced refresh token may still be retried.
const RETRY_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// Token lifetimes, in seconds. Shopify's by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// Client-credentials access tokens (Shopify: 86399).
    pub client_credentials_secs: u64,
    /// Expiring offline access tokens (Shopify: 3600).
    pub offline_secs: u64,
    /// Refresh tokens (Shopify: 90 days).
    pub refresh_secs: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            client_credentials_secs: 86_399,
            offline_secs: 3_600,
            refresh_secs: 90 * 24 * 3_600,
        }
    }
}

/// Grant calls answered, per grant type, and what they answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// `client_credentials` calls (any outcome).
    pub client_credentials: usize,
    /// `refresh_token` calls (any outcome).
    pub refresh_token: usize,
    /// Calls answered with an error (refused or injected).
    pub refused: usize,
}

struct RefreshToken {
    shop: String,
    expires_at: Instant,
    /// When it was first exchanged.
    first_used: Option<Instant>,
    /// The refresh token its last exchange issued.
    replacement: Option<String>,
    /// Its replacement was used: refused from now on.
    retired: bool,
}

#[derive(Default)]
struct Store {
    config: OAuthConfig,
    faults: Faults,
    /// Access token → (shop, expiry).
    access: HashMap<String, (String, Instant)>,
    refresh: HashMap<String, RefreshToken>,
    /// The shop's active expiring offline access token.
    offline_active: HashMap<String, String>,
    grants: Grants,
    issued: u64,
}

impl Store {
    fn token(&mut self, prefix: &str) -> String {
        self.issued += 1;
        format!("{prefix}{}{:016x}", self.issued, fastrand::u64(..))
    }

    fn offline_pair(&mut self, shop: &str) -> Value {
        let now = Instant::now();
        let access = self.token("shpat_offline_");
        let refresh = self.token("shprt_");
        let config = self.config;
        if let Some(previous) = self.offline_active.insert(shop.to_owned(), access.clone()) {
            self.access.remove(&previous);
        }
        self.access.insert(
            access.clone(),
            (
                shop.to_owned(),
                now + Duration::from_secs(config.offline_secs),
            ),
        );
        self.refresh.insert(
            refresh.clone(),
            RefreshToken {
                shop: shop.to_owned(),
                expires_at: now + Duration::from_secs(config.refresh_secs),
                first_used: None,
                replacement: None,
                retired: false,
            },
        );
        json!({
            "access_token": access,
            "scope": SCOPE,
            "expires_in": config.offline_secs,
            "refresh_token": refresh,
            "refresh_token_expires_in": config.refresh_secs,
        })
    }

    /// Exchanges `token` of `shop`; `Err(description)` when Shopify would refuse it.
    fn exchange(&mut self, shop: &str, token: &str) -> Result<Value, &'static str> {
        let now = Instant::now();
        let Some(entry) = self.refresh.get(token) else {
            return Err("The refresh token is invalid or expired");
        };
        if entry.shop != shop || entry.retired || now >= entry.expires_at {
            return Err("The refresh token is invalid or expired");
        }
        if entry
            .first_used
            .is_some_and(|first| now.duration_since(first) > RETRY_WINDOW)
        {
            return Err("The refresh token is invalid or expired");
        }
        let previous = entry.replacement.clone();
        // Using a replacement retires the token it replaced.
        let replaced: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, t)| t.replacement.as_deref() == Some(token))
            .map(|(k, _)| k.clone())
            .collect();
        for old in replaced {
            if let Some(t) = self.refresh.get_mut(&old) {
                t.retired = true;
            }
        }
        // A retry of this token abandons the replacement its earlier exchange issued.
        if let Some(previous) = previous {
            self.refresh.remove(&previous);
        }
        let pair = self.offline_pair(shop);
        if let Some(entry) = self.refresh.get_mut(token) {
            entry.first_used.get_or_insert(now);
            entry.replacement = pair["refresh_token"].as_str().map(str::to_owned);
        }
        Ok(pair)
    }
}

/// The token endpoint's state.
#[derive(Default)]
pub struct OAuth {
    store: Mutex<Store>,
}

impl OAuth {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `token` is an access token issued for `shop` that has not expired (nor been
    /// revoked by a newer offline token).
    pub fn token_ok(&self, shop: &str, token: &str) -> bool {
        self.store()
            .access
            .get(token)
            .is_some_and(|(s, expires)| s == shop && Instant::now() < *expires)
    }

    /// Replaces the lifetimes of tokens issued from now on.
    pub fn set_config(&self, config: OAuthConfig) {
        self.store().config = config;
    }

    /// Replaces the token endpoint's faults.
    pub fn set_faults(&self, faults: Faults) {
        self.store().faults = faults;
    }

    /// Grant calls so far.
    pub fn grants(&self) -> Grants {
        self.store().grants.clone()
    }

    /// An offline pair for `shop`, as the app's OAuth install with `expiring=1` answers it.
    pub fn install(&self, shop: &str) -> Value {
        self.store().offline_pair(shop)
    }
}

/// Reads a form-encoded or JSON body into its string fields.
fn fields(request: &HttpRequest, body: &[u8]) -> HashMap<String, String> {
    let json = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if json {
        return serde_json::from_slice::<HashMap<String, Value>>(body)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect();
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 2;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn oauth_error(error: &str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": error, "error_description": description}))
}

/// `POST /shops/{shop}/admin/oauth/access_token`
pub async fn access_token(
    request: HttpRequest,
    shop: web::Path<String>,
    body: web::Bytes,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let shop = shop.into_inner();
    let fields = fields(&request, &body);
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    let faults = {
        let mut store = state.shopify_oauth.store();
        match field("grant_type") {
            "client_credentials" => store.grants.client_credentials += 1,
            "refresh_token" => store.grants.refresh_token += 1,
            _ => {}
        }
        store.faults.clone()
    };
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let mut store = state.shopify_oauth.store();
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        store.grants.refused += 1;
        let status = crate::injected_status(&faults);
        return HttpResponse::build(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        )
        .json(json!({"errors": "injected fault"}));
    }
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        store.grants.refused += 1;
        return oauth_error("invalid_client", "Client authentication failed");
    }
    match field("grant_type") {
        "client_credentials" => {
            let token = store.token("shpat_cc_");
            let secs = store.config.client_credentials_secs;
            store.access.insert(
                token.clone(),
                (shop, Instant::now() + Duration::from_secs(secs)),
            );
            HttpResponse::Ok()
                .json(json!({"access_token": token, "scope": SCOPE, "expires_in": secs}))
        }
        "refresh_token" => match store.exchange(&shop, field("refresh_token")) {
            Ok(pair) => HttpResponse::Ok().json(pair),
            Err(description) => {
                store.grants.refused += 1;
                oauth_error("invalid_grant", description)
            }
        },
        _ => {
            store.grants.refused += 1;
            oauth_error(
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server",
            )
        }
    }
}

/// `PUT /_sandbox/shopify/oauth`
async fn put_config(
    config: web::Json<OAuthConfig>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    state.shopify_oauth.set_config(config.into_inner());
    HttpResponse::NoContent().finish()
}

/// `POST /_sandbox/shopify/{shop}/oauth/install`
async fn install(shop: web::Path<String>, state: web::Data<crate::State>) -> HttpResponse {
    HttpResponse::Ok().json(state.shopify_oauth.install(&shop))
}

/// `GET /_sandbox/shopify/oauth/grants`
async fn grants(state: web::Data<crate::State>) -> HttpResponse {
    HttpResponse::Ok().json(state.shopify_oauth.grants())
}

/// `PUT /_sandbox/faults/shopify-oauth`
async fn put_faults(faults: web::Json<Faults>, state: web::Data<crate::State>) -> HttpResponse {
    state.shopify_oauth.set_faults(faults.into_inner());
    HttpResponse::NoContent().finish()
}

/// Registers the token endpoint and its controls.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/shops/{shop}/admin/oauth/access_token",
        web::post().to(access_token),
    )
    .route("/_sandbox/shopify/oauth", web::put().to(put_config))
    .route("/_sandbox/shopify/oauth/grants", web::get().to(grants))
    .route(
        "/_sandbox/shopify/{shop}/oauth/install",
        web::post().to(install),
    )
    .route("/_sandbox/faults/shopify-oauth", web::put().to(put_faults));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sandbox;

    const SHOP: &str = "oauth.myshopify.com";

    async fn grant(sandbox: &Sandbox, body: String) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/shops/{SHOP}/admin/oauth/access_token",
                sandbox.base_url
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    fn refresh_body(token: &Value) -> String {
        format!(
            "grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={}",
            token.as_str().unwrap()
        )
    }

    /// The status of a small Admin API (GraphQL) query made with `token`.
    async fn orders_status(sandbox: &Sandbox, token: &str) -> u16 {
        reqwest::Client::new()
            .post(format!(
                "{}/shops/{SHOP}/admin/api/2026-07/graphql.json",
                sandbox.base_url
            ))
            .header("x-shopify-access-token", token)
            .json(&serde_json::json!({
                "query": "query L($first: Int!, $after: String, $query: String!) { orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) { pageInfo { hasNextPage endCursor } nodes { id updatedAt } } }",
                "variables": {"first": 1, "after": null, "query": "updated_at:>='2026-01-01T00:00:00Z'"},
            }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn client_credentials_issue_tokens_that_expire() {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        sandbox.state.shopify_oauth.set_config(OAuthConfig {
            client_credentials_secs: 1,
            ..OAuthConfig::default()
        });
        let (status, body) = grant(
            &sandbox,
            format!(
                "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["expires_in"], 1);
        assert_eq!(body["scope"], SCOPE);
        let token = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(orders_status(&sandbox, &token).await, 200);
        assert_eq!(orders_status(&sandbox, ACCESS_TOKEN_STATIC).await, 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(orders_status(&sandbox, &token).await, 401, "expired");
        assert_eq!(sandbox.state.shopify_oauth.grants().client_credentials, 1);
    }

    const ACCESS_TOKEN_STATIC: &str = crate::shopify::ACCESS_TOKEN;

    #[tokio::test]
    async fn unknown_credentials_are_refused_in_shopifys_shape() {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        let (status, body) = grant(
            &sandbox,
            format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret=wrong"),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_client");
        assert!(body["error_description"].is_string());
        let (status, body) = grant(
            &sandbox,
            format!("grant_type=password&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        assert_eq!(sandbox.state.shopify_oauth.grants().refused, 2);
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_a_replaced_one_is_retired_once_its_replacement_is_used() {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        let installed = sandbox.state.shopify_oauth.install(SHOP);
        let first_access = installed["access_token"].as_str().unwrap().to_owned();
        assert_eq!(orders_status(&sandbox, &first_access).await, 200);

        let (status, second) = grant(&sandbox, refresh_body(&installed["refresh_token"])).await;
        assert_eq!(status, 200, "{second}");
        assert_eq!(second["expires_in"], 3600);
        assert_eq!(second["refresh_token_expires_in"], 90 * 24 * 3600);
        assert_ne!(second["refresh_token"], installed["refresh_token"]);
        assert_eq!(
            orders_status(&sandbox, &first_access).await,
            401,
            "one active offline token per shop"
        );

        // The answer was lost: the used refresh token may be retried, and the retry's pair wins.
        let (status, retried) = grant(&sandbox, refresh_body(&installed["refresh_token"])).await;
        assert_eq!(status, 200, "{retried}");
        let (status, lost) = grant(&sandbox, refresh_body(&second["refresh_token"])).await;
        assert_eq!(
            (status, lost["error"].as_str()),
            (400, Some("invalid_grant")),
            "abandoned"
        );

        // Using the replacement retires the token it replaced.
        let (status, third) = grant(&sandbox, refresh_body(&retried["refresh_token"])).await;
        assert_eq!(status, 200, "{third}");
        let (status, refused) = grant(&sandbox, refresh_body(&installed["refresh_token"])).await;
        assert_eq!(status, 400);
        assert_eq!(refused["error"], "invalid_grant");
        let access = third["access_token"].as_str().unwrap();
        assert_eq!(orders_status(&sandbox, access).await, 200);
        assert_eq!(sandbox.state.shopify_oauth.grants().refresh_token, 5);
    }

    #[tokio::test]
    async fn an_expired_refresh_token_is_refused() {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        sandbox.state.shopify_oauth.set_config(OAuthConfig {
            refresh_secs: 1,
            ..OAuthConfig::default()
        });
        let installed = sandbox.state.shopify_oauth.install(SHOP);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, body) = grant(&sandbox, refresh_body(&installed["refresh_token"])).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }

    #[test]
    fn form_values_are_percent_decoded() {
        assert_eq!(decode("a%2Bb+c%3D"), "a+b c=");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
