//! The worker's one client of Shopify's GraphQL Admin API.
//!
//! `POST {admin_url}/admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`, the token
//! asked from [`Tokens`] before every call. A 401 reports the token as rejected and retries once
//! with a fresh one (a rotated or expired token is renewed; a static one fails again, and then the
//! call fails as [`AdminError::Unauthorized`]).
//!
//! Shopify limits GraphQL by *calculated query cost*, not by request count: every app and shop
//! pair has a leaky bucket of points (a standard shop: 2000, restoring 100 per second), a query
//! must find its *requested* cost in the bucket before it runs, and the difference to its
//! *actual* cost is refunded afterwards. Every answer reports the bucket in
//! `extensions.cost.throttleStatus`. A query that does not fit is answered HTTP 200 with an error
//! whose `extensions.code` is `THROTTLED` and no `Retry-After`: the wait is ours to compute,
//! `(requested − currentlyAvailable) / restoreRate` seconds ([`throttle_wait`]). The client keeps
//! each shop's last bucket and each query's last requested cost, and waits *before* a query that
//! would not fit, so a steady poller is rarely throttled at all.
//!
//! 5xx, 429 and transport errors are retried with bounded exponential backoff (a 429's
//! `Retry-After` is honoured when present). Any other top-level `errors` are the caller's to see:
//! [`AdminError::GraphQl`] with the messages and codes, never a half-read `data`.
//!
//! The client is generic ([`AdminClient::query`] deserialises `data` into the caller's type) so
//! mutations (`orderMarkAsPaid`, `orderUpdate`, `webhookSubscriptionCreate`, …) go through the
//! same throttling, token and error handling: their `userErrors` are part of `data` and remain the
//! caller's to read. A mutation goes through [`AdminClient::mutate`], which retries only what
//! Shopify cannot have run (a refused connection, 429, `THROTTLED`, a 401 before the renewal): a
//! timeout, a dropped answer or a 5xx after the request went out is [`AdminError::Unknown`],
//! for the caller to settle by reading before it sends the mutation again.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{TokenError, Tokens};

/// Shopify's limit on one query's requested cost, whatever the plan.
pub const MAX_QUERY_COST: f64 = 1000.0;

/// A shop's bucket as Shopify last reported it (`extensions.cost.throttleStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleStatus {
    /// The bucket's size, e.g. 2000.
    pub maximum_available: f64,
    /// Points in the bucket when the answer was made.
    pub currently_available: f64,
    /// Points restored per second, e.g. 100.
    pub restore_rate: f64,
}

impl ThrottleStatus {
    /// The points in the bucket `elapsed` after this status was reported.
    pub fn available_after(&self, elapsed: Duration) -> f64 {
        (self.currently_available + self.restore_rate * elapsed.as_secs_f64())
            .min(self.maximum_available)
    }
}

/// `extensions.cost`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryCost {
    /// The cost computed before the query ran (what the bucket must hold).
    #[serde(default)]
    pub requested_query_cost: Option<f64>,
    /// The cost of what it returned (`null` when it did not run).
    #[serde(default)]
    pub actual_query_cost: Option<f64>,
    /// The bucket after the query.
    #[serde(default)]
    pub throttle_status: Option<ThrottleStatus>,
}

/// How long to wait until the bucket holds `requested` points: `(requested − available) /
/// restoreRate`, never more than `cap`. A bucket that says it restores nothing gets `cap`
/// rather than a division by zero.
pub fn throttle_wait(requested: f64, status: &ThrottleStatus, cap: Duration) -> Duration {
    let missing = requested - status.currently_available;
    if missing <= 0.0 {
        return Duration::ZERO;
    }
    if status.restore_rate <= 0.0 || !status.restore_rate.is_finite() {
        return cap;
    }
    Duration::try_from_secs_f64(missing / status.restore_rate)
        .unwrap_or(cap)
        .min(cap)
}

/// One entry of a GraphQL answer's top-level `errors`.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphQlError {
    /// Shopify's message.
    #[serde(default)]
    pub message: String,
    /// `extensions.code`, e.g. `THROTTLED`, `MAX_COST_EXCEEDED`, `ACCESS_DENIED`.
    #[serde(default)]
    pub extensions: Option<ErrorExtensions>,
}

/// `errors[].extensions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorExtensions {
    /// The error's code.
    #[serde(default)]
    pub code: Option<String>,
}

impl GraphQlError {
    /// `extensions.code`, if any.
    pub fn code(&self) -> Option<&str> {
        self.extensions.as_ref().and_then(|e| e.code.as_deref())
    }
}

/// Why a call gave no data.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No token for the shop.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Shopify refused the token, also a freshly obtained one.
    #[error("Shopify refused the Admin API token of {shop} (401): {body}")]
    Unauthorized {
        /// The shop.
        shop: String,
        /// Shopify's answer.
        body: String,
    },
    /// An HTTP status that no retry changes (402 frozen shop, 403, 404, 423 locked, …).
    #[error("Shopify Admin API answered {status}: {body}")]
    Http {
        /// The status.
        status: u16,
        /// The body, shortened.
        body: String,
    },
    /// Still failing (5xx, 429, transport) after every retry.
    #[error("Shopify Admin API unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Still throttled after every wait.
    #[error("still throttled by Shopify after {attempts} attempts")]
    Throttled {
        /// Attempts made.
        attempts: u32,
    },
    /// The query costs more than Shopify runs in one query (1000): ask for fewer items.
    #[error("query cost {requested:?} exceeds Shopify's single-query limit of 1000: {message}")]
    TooExpensive {
        /// The requested cost, when Shopify said.
        requested: Option<f64>,
        /// Shopify's message.
        message: String,
    },
    /// Top-level GraphQL errors.
    #[error("Shopify GraphQL errors: {}", .0.iter().map(|e| match e.code() { Some(c) => format!("{} ({c})", e.message), None => e.message.clone() }).collect::<Vec<_>>().join("; "))]
    GraphQl(Vec<GraphQlError>),
    /// The answer is not a GraphQL response, or its `data` is not what the query asks for.
    #[error("unreadable Shopify GraphQL answer: {0}")]
    Unreadable(String),
    /// A mutation was sent and no answer says what became of it (a timeout, a dropped
    /// connection, a 5xx): it may have run. Read before sending it again.
    #[error("no answer to the mutation, it may have run: {0}")]
    Unknown(String),
}

impl AdminError {
    /// Whether a mutation that failed so may have run.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, AdminError::Unknown(_))
    }
}

/// How the client retries and waits.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// `HOOKLINE_SHOPIFY_ADMIN_URL`: `{shop}` is replaced by the shop's domain.
    pub admin_url: String,
    /// `HOOKLINE_SHOPIFY_API_VERSION`.
    pub api_version: String,
    /// Shops that ask for another version (the shops file's `admin.api_version`).
    pub shop_versions: BTreeMap<String, String>,
    /// Per request.
    pub timeout: Duration,
    /// Attempts for 5xx / 429 / transport errors.
    pub attempts: u32,
    /// The first backoff; doubled per attempt.
    pub backoff: Duration,
    /// The longest single backoff or throttle wait.
    pub max_wait: Duration,
    /// Attempts while `THROTTLED`.
    pub throttled_attempts: u32,
}

impl AdminSettings {
    /// Production defaults for `admin_url` and `api_version`.
    pub fn new(admin_url: impl Into<String>, api_version: impl Into<String>) -> Self {
        Self {
            admin_url: admin_url.into(),
            api_version: api_version.into(),
            shop_versions: BTreeMap::new(),
            timeout: Duration::from_secs(30),
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
            throttled_attempts: 10,
        }
    }

    /// `shop_versions`: shops whose calls ask for their own API version.
    pub fn with_shop_versions(mut self, shop_versions: BTreeMap<String, String>) -> Self {
        self.shop_versions = shop_versions;
        self
    }

    /// The API version `shop`'s calls ask for.
    pub fn version_of(&self, shop: &str) -> &str {
        self.shop_versions
            .get(shop)
            .map_or(self.api_version.as_str(), String::as_str)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    status: ThrottleStatus,
    at: Instant,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Option<Value>,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Deserialize)]
struct Extensions {
    #[serde(default)]
    cost: Option<QueryCost>,
}

/// Shopify's GraphQL Admin API, for every shop in [`Tokens`].
pub struct AdminClient {
    http: reqwest::Client,
    tokens: Arc<Tokens>,
    settings: AdminSettings,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Query text (hashed) → its last requested cost: what the next call will need.
    costs: Mutex<HashMap<u64, f64>>,
}

impl AdminClient {
    /// A client with its own connection pool.
    pub fn new(tokens: Arc<Tokens>, settings: AdminSettings) -> Result<Self, reqwest::Error> {
        let http = crate::downstream::http_client(settings.timeout, Duration::from_secs(5))?;
        Ok(Self {
            http,
            tokens,
            settings,
            buckets: Mutex::new(HashMap::new()),
            costs: Mutex::new(HashMap::new()),
        })
    }

    /// The API version asked for.
    pub fn api_version(&self) -> &str {
        &self.settings.api_version
    }

    /// The shops with credentials.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The shop's bucket as last reported, and how long ago (for metrics and operators).
    pub fn throttle(&self, shop: &str) -> Option<(ThrottleStatus, Duration)> {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(shop)
            .map(|b| (b.status, b.at.elapsed()))
    }

    fn endpoint(&self, shop: &str) -> String {
        format!(
            "{}/admin/api/{}/graphql.json",
            self.settings.admin_url.replace("{shop}", shop),
            self.settings.version_of(shop)
        )
    }

    fn remember(&self, shop: &str, key: u64, cost: Option<&QueryCost>) {
        let Some(cost) = cost else { return };
        if let Some(status) = cost.throttle_status {
            metrics::gauge!("hookline_worker_shopify_points_available", "shop" => shop.to_owned())
                .set(status.currently_available);
            self.buckets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    shop.to_owned(),
                    Bucket {
                        status,
                        at: Instant::now(),
                    },
                );
        }
        if let Some(requested) = cost.requested_query_cost {
            self.costs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, requested);
        }
    }

    /// Before a query whose last requested cost does not fit in the bucket as it stands now:
    /// the wait until it does.
    fn wait_before(&self, shop: &str, key: u64) -> Duration {
        let expected = self
            .costs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied();
        let bucket = self
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(shop)
            .copied();
        match (expected, bucket) {
            (Some(expected), Some(b)) => {
                let now = ThrottleStatus {
                    currently_available: b.status.available_after(b.at.elapsed()),
                    ..b.status
                };
                throttle_wait(expected, &now, self.settings.max_wait)
            }
            _ => Duration::ZERO,
        }
    }

    /// Runs `query` with `variables` against `shop` and reads `data` as `T`.
    #[tracing::instrument(name = "shopify_graphql", skip_all, fields(shop = %shop))]
    pub async fn query<T: DeserializeOwned>(
        &self,
        shop: &str,
        query: &str,
        variables: Value,
    ) -> Result<T, AdminError> {
        self.run(shop, query, variables, false).await
    }

    /// Runs the mutation `mutation` with `variables` against `shop` and reads `data` as `T`; an
    /// attempt that may have run is not repeated but answered [`AdminError::Unknown`].
    #[tracing::instrument(name = "shopify_graphql_mutation", skip_all, fields(shop = %shop))]
    pub async fn mutate<T: DeserializeOwned>(
        &self,
        shop: &str,
        mutation: &str,
        variables: Value,
    ) -> Result<T, AdminError> {
        self.run(shop, mutation, variables, true).await
    }

    async fn run<T: DeserializeOwned>(
        &self,
        shop: &str,
        query: &str,
        variables: Value,
        mutation: bool,
    ) -> Result<T, AdminError> {
        let key = {
            let mut h = DefaultHasher::new();
            query.hash(&mut h);
            h.finish()
        };
        let body = serde_json::json!({ "query": query, "variables": variables });
        let mut token = self.tokens.get(shop).await?;
        let mut renewed = false;
        let mut failures = 0u32;
        let mut throttled = 0u32;
        loop {
            let wait = self.wait_before(shop, key);
            if !wait.is_zero() {
                tracing::debug!(shop, ?wait, "waiting for the bucket before the query");
                metrics::counter!("hookline_worker_shopify_throttle_waits_total", "reason" => "expected_cost").increment(1);
                tokio::time::sleep(wait).await;
            }
            let sent = self
                .http
                .post(self.endpoint(shop))
                .header("x-shopify-access-token", token.expose())
                .header(
                    "traceparent",
                    crate::downstream::outgoing_traceparent(None).unwrap_or_else(|| {
                        hookline_core::trace::TraceParent::new_root().to_string()
                    }),
                )
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    count("transport_error");
                    if mutation && !e.is_connect() {
                        return Err(AdminError::Unknown(crate::failure::error_chain(&e)));
                    }
                    failures += 1;
                    self.back_off(failures, None, crate::failure::error_chain(&e))
                        .await?;
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status == 401 {
                count("unauthorized");
                let text = short(response.text().await.unwrap_or_default());
                if renewed {
                    return Err(AdminError::Unauthorized {
                        shop: shop.to_owned(),
                        body: text,
                    });
                }
                self.tokens.rejected(shop, &token);
                token = self.tokens.get(shop).await?;
                renewed = true;
                continue;
            }
            if mutation && status >= 500 {
                count("unavailable");
                return Err(AdminError::Unknown(format!("HTTP {status}")));
            }
            if status == 429 || status >= 500 {
                count("unavailable");
                let retry_after = crate::downstream::retry_after(&response);
                failures += 1;
                self.back_off(failures, retry_after, format!("HTTP {status}"))
                    .await?;
                continue;
            }
            if !(200..300).contains(&status) {
                count("refused");
                return Err(AdminError::Http {
                    status,
                    body: short(response.text().await.unwrap_or_default()),
                });
            }
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) if mutation => {
                    count("transport_error");
                    return Err(AdminError::Unknown(crate::failure::error_chain(&e)));
                }
                Err(e) => {
                    count("transport_error");
                    failures += 1;
                    self.back_off(failures, None, crate::failure::error_chain(&e))
                        .await?;
                    continue;
                }
            };
            let answer: Response = serde_json::from_str(&text).map_err(|e| {
                count("unreadable");
                AdminError::Unreadable(format!("{e}: {}", short(text.clone())))
            })?;
            let cost = answer.extensions.as_ref().and_then(|e| e.cost);
            self.remember(shop, key, cost.as_ref());
            match classify(answer.errors) {
                Errors::None => {}
                Errors::Throttled => {
                    count("throttled");
                    throttled += 1;
                    if throttled >= self.settings.throttled_attempts {
                        return Err(AdminError::Throttled {
                            attempts: throttled,
                        });
                    }
                    let wait = throttle_pause(cost.as_ref(), self.settings.max_wait);
                    tracing::info!(shop, ?wait, "throttled by Shopify; waiting for the bucket");
                    metrics::counter!("hookline_worker_shopify_throttle_waits_total", "reason" => "throttled").increment(1);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Errors::TooExpensive(message) => {
                    count("too_expensive");
                    return Err(AdminError::TooExpensive {
                        requested: cost.and_then(|c| c.requested_query_cost),
                        message,
                    });
                }
                Errors::Other(errors) => {
                    count("graphql_error");
                    return Err(AdminError::GraphQl(errors));
                }
            }
            let data = answer.data.filter(|d| !d.is_null()).ok_or_else(|| {
                count("unreadable");
                AdminError::Unreadable(format!("no data and no errors: {}", short(text.clone())))
            })?;
            count("ok");
            return serde_path_to_error::deserialize(data).map_err(|e| {
                AdminError::Unreadable(format!("data does not match the query at {e}"))
            });
        }
    }

    /// Sleeps before retry `failures`, or gives up.
    async fn back_off(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        last: String,
    ) -> Result<(), AdminError> {
        if failures >= self.settings.attempts {
            return Err(AdminError::Unavailable {
                attempts: failures,
                last,
            });
        }
        let exp = self
            .settings
            .backoff
            .saturating_mul(1 << (failures - 1).min(16));
        let wait = retry_after.unwrap_or(exp).min(self.settings.max_wait);
        tracing::debug!(failures, ?wait, last, "Shopify Admin API failed; retrying");
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// The pause after a `THROTTLED` answer: until the bucket holds the requested cost, at least a
/// tenth of a second (the bucket is restoring while we wait), at most `cap`; a second when the
/// answer said nothing about the bucket.
fn throttle_pause(cost: Option<&QueryCost>, cap: Duration) -> Duration {
    match cost.and_then(|c| c.requested_query_cost.zip(c.throttle_status)) {
        Some((requested, status)) => {
            throttle_wait(requested, &status, cap).max(Duration::from_millis(100))
        }
        None => Duration::from_secs(1).min(cap),
    }
}

enum Errors {
    None,
    Throttled,
    TooExpensive(String),
    Other(Vec<GraphQlError>),
}

/// Sorts a response's top-level `errors`. Shopify sends a list of objects; anything else (a bare
/// string, as REST-style gateways answer) is an error too, with its text as the message.
fn classify(errors: Option<Value>) -> Errors {
    let errors: Vec<GraphQlError> = match errors {
        None | Some(Value::Null) => return Errors::None,
        Some(Value::Array(list)) if list.is_empty() => return Errors::None,
        Some(Value::Array(list)) => list
            .into_iter()
            .map(|e| {
                serde_json::from_value(e.clone()).unwrap_or_else(|_| GraphQlError {
                    message: e.to_string(),
                    extensions: None,
                })
            })
            .collect(),
        Some(other) => vec![GraphQlError {
            message: other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned),
            extensions: None,
        }],
    };
    if errors.iter().all(|e| e.code() == Some("THROTTLED")) {
        Errors::Throttled
    } else if let Some(e) = errors
        .iter()
        .find(|e| e.code() == Some("MAX_COST_EXCEEDED"))
    {
        Errors::TooExpensive(e.message.clone())
    } else {
        Errors::Other(errors)
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("hookline_worker_shopify_calls_total", "outcome" => outcome).increment(1);
}

fn short(mut text: String) -> String {
    if text.len() > 500 {
        let mut end = 500;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The numeric id of a `gid://shopify/{Type}/{id}` (a query string after the id is ignored).
pub fn gid_id(gid: &str) -> Option<i64> {
    let rest = gid.strip_prefix("gid://shopify/")?;
    let (_, id) = rest.split_once('/')?;
    let id = id.split(['?', '/']).next()?;
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shop_with_its_own_api_version_asks_for_it_and_the_others_for_the_deployments() {
        let settings = AdminSettings::new("https://{shop}", "2026-07").with_shop_versions(
            BTreeMap::from([("a.myshopify.com".to_owned(), "2026-10".to_owned())]),
        );
        let client = AdminClient::new(Arc::new(Tokens::new()), settings).unwrap();
        assert_eq!(
            client.endpoint("a.myshopify.com"),
            "https://a.myshopify.com/admin/api/2026-10/graphql.json"
        );
        assert_eq!(
            client.endpoint("b.myshopify.com"),
            "https://b.myshopify.com/admin/api/2026-07/graphql.json"
        );
    }

    fn status(available: f64) -> ThrottleStatus {
        ThrottleStatus {
            maximum_available: 2000.0,
            currently_available: available,
            restore_rate: 100.0,
        }
    }

    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn the_wait_is_the_missing_points_over_the_restore_rate() {
        assert_eq!(
            throttle_wait(502.0, &status(2.0), CAP),
            Duration::from_secs(5)
        );
        assert_eq!(
            throttle_wait(150.0, &status(100.0), CAP),
            Duration::from_millis(500)
        );
        assert_eq!(throttle_wait(100.0, &status(1990.0), CAP), Duration::ZERO);
    }

    #[test]
    fn the_wait_is_bounded_and_survives_a_bucket_that_restores_nothing() {
        assert_eq!(throttle_wait(1000.0, &status(-9000.0), CAP), CAP);
        let stuck = ThrottleStatus {
            restore_rate: 0.0,
            ..status(0.0)
        };
        assert_eq!(throttle_wait(10.0, &stuck, CAP), CAP);
    }

    #[test]
    fn the_bucket_restores_while_time_passes_up_to_its_size() {
        let s = status(100.0);
        assert_eq!(s.available_after(Duration::from_secs(2)), 300.0);
        assert_eq!(s.available_after(Duration::from_secs(60)), 2000.0);
    }

    #[test]
    fn a_throttled_answer_without_cost_pauses_a_second() {
        assert_eq!(throttle_pause(None, CAP), Duration::from_secs(1));
        let cost = QueryCost {
            requested_query_cost: Some(752.0),
            actual_query_cost: None,
            throttle_status: Some(status(2.0)),
        };
        assert_eq!(
            throttle_pause(Some(&cost), CAP),
            Duration::from_millis(7500)
        );
    }

    #[test]
    fn errors_are_sorted_by_their_code() {
        let throttled = serde_json::json!([{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/limits"}}]);
        assert!(matches!(classify(Some(throttled)), Errors::Throttled));
        let cost = serde_json::json!([{"message": "Query cost is 1502, which exceeds the single query max cost limit (1000).", "extensions": {"code": "MAX_COST_EXCEEDED", "cost": 1502, "maxCost": 1000}}]);
        assert!(matches!(classify(Some(cost)), Errors::TooExpensive(m) if m.contains("1502")));
        let undefined = serde_json::json!([{"message": "Field 'ordrs' doesn't exist on type 'QueryRoot'", "extensions": {"code": "undefinedField"}}]);
        match classify(Some(undefined)) {
            Errors::Other(e) => {
                let text = AdminError::GraphQl(e).to_string();
                assert!(
                    text.contains("ordrs") && text.contains("undefinedField"),
                    "{text}"
                );
            }
            _ => panic!("not a plain error"),
        }
        assert!(matches!(
            classify(Some(serde_json::json!("[API] Invalid API key"))),
            Errors::Other(e) if e[0].message == "[API] Invalid API key"
        ));
        assert!(matches!(
            classify(Some(serde_json::json!([]))),
            Errors::None
        ));
        assert!(matches!(classify(None), Errors::None));
    }

    #[test]
    fn gids_give_their_numeric_id() {
        assert_eq!(
            gid_id("gid://shopify/Order/820982911946154508"),
            Some(820982911946154508)
        );
        assert_eq!(gid_id("gid://shopify/LineItem/1?x=y"), Some(1));
        assert_eq!(gid_id("gid://shopify/Order/abc"), None);
        assert_eq!(gid_id("820982911946154508"), None);
    }
}
