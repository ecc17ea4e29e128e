//! The sandbox: hookline's outside HTTP APIs, played on localhost over real HTTP.
//!
//! Tests and `make demo` point hookline at the sandbox instead of the real services. It keeps
//! what it receives in memory for assertions, and injects faults on demand, so failure handling
//! is tested against a real socket rather than a mock.
//!
//! # Endpoints
//!
//! - `POST /erp/stock-levels`: the ERP endpoint of the inventory outbox (see the worker's `erp`
//!   module for the wire format). Answers `200 {"accepted": true}`.
//! - `GET /_sandbox/erp/requests`: what the ERP endpoint received, oldest first.
//! - `PUT /_sandbox/faults/erp`: set the ERP's [`Faults`]; `DELETE` clears them.
//! - sevDesk API v1 under `/api/v1` (see [`sevdesk`]), its state at `/_sandbox/sevdesk/…`, its
//!   faults at `PUT /_sandbox/faults/sevdesk`.
//! - Shopify's GraphQL Admin API (orders, refunds) under
//!   `/shops/{shop}/admin/api/{version}/graphql.json` (see [`shopify`]), and its token endpoint
//!   `/shops/{shop}/admin/oauth/access_token` with the client-credentials and refresh-token grants
//!   (see [`shopify_oauth`]).
//! - `GET /healthz`.

use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub mod contract;
pub mod deliver;
pub mod sevdesk;
pub mod shopify;
pub mod shopify_oauth;

use hookline_core::config::{Setting, SettingSpec};

/// `HOOKLINE_SANDBOX_ADDR`.
pub const ADDR: Setting<String> = Setting::new(
    "HOOKLINE_SANDBOX_ADDR",
    "127.0.0.1:8090",
    "Listen address of the sandbox (the ERP, sevDesk and Shopify's Admin API, for development and tests).",
);

/// Every setting of `hookline-sandbox`.
pub const SETTINGS: &[SettingSpec] = &[ADDR.spec()];

/// The sandbox's section of `docs/configuration.md`.
pub fn config_docs() -> String {
    hookline_core::config::markdown(
        "hookline-sandbox",
        "Plays the outside APIs on this machine, for development and tests only. Logs are text, filtered by `RUST_LOG`.",
        SETTINGS,
    )
}

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Faults to inject into one API. All off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Extra latency before answering, in milliseconds.
    pub latency_ms: u64,
    /// Share of requests (0.0–1.0) answered with `error_status` instead of success.
    pub error_rate: f64,
    /// The status of injected errors; by default 429, 500 or 503 at random.
    pub error_status: Option<u16>,
    /// `Retry-After` seconds sent with injected 429/503 answers.
    pub retry_after_secs: Option<u64>,
    /// Never answer: hold the request until the client gives up.
    pub hang: bool,
    /// Share of requests (sevDesk) held for 30 s before anything is done: the client times out.
    pub timeout_rate: f64,
    /// Share of requests whose connection is dropped (reset) before anything is done.
    pub drop_rate: f64,
    /// Share of writes (sevDesk) that are applied and then answered 500.
    pub commit_then_fail_rate: f64,
    /// Share of writes (sevDesk) that are applied and then never answered.
    pub commit_then_hang_rate: f64,
    /// Share of writes (sevDesk) that are applied only `commit_late_ms` after they arrived,
    /// while the answer never comes: the client gives up first, and the effect lands later.
    pub commit_late_rate: f64,
    /// How late a late commit lands (sevDesk), in milliseconds; set it above the client's timeout.
    pub commit_late_ms: u64,
    /// A new invoice or credit note is invisible to searches for this long (sevDesk), in
    /// milliseconds: a search right after a create finds nothing.
    pub search_lag_ms: u64,
    /// Searches (sevDesk) ignore their filters and return every document: a client that trusts
    /// the filter adopts another order's invoice.
    pub search_ignores_filter: bool,
    /// Validation errors (sevDesk) are answered 500 instead of 400/422, as sevDesk documents that
    /// it sometimes does.
    pub validation_as_500: bool,
}

/// One request the ERP endpoint received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErpRequest {
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// The JSON body.
    pub body: serde_json::Value,
    /// The status answered.
    pub answered: u16,
    /// Requests for the same `aggregate_id` that were still being answered when this one
    /// arrived: more than 0 means one item's changes were sent concurrently, so the ERP could
    /// apply them out of order.
    #[serde(default)]
    pub overlapping: usize,
}

#[derive(Default)]
struct ErpState {
    faults: Faults,
    requests: Vec<ErpRequest>,
    arrived: usize,
    /// Requests being answered, per `aggregate_id`.
    in_flight: std::collections::HashMap<String, usize>,
}

/// One request of an aggregate being answered; counted down however the handler ends (answered,
/// or dropped with its connection).
struct InFlight {
    state: web::Data<State>,
    aggregate: Option<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(aggregate) = &self.aggregate
            && let Some(n) = self.state.erp().in_flight.get_mut(aggregate)
        {
            *n = n.saturating_sub(1);
        }
    }
}

/// Shared state of a running sandbox. A std `Mutex`: held for a push or a clone, never across
/// an `.await`.
#[derive(Default)]
pub struct State {
    erp: Mutex<ErpState>,
    /// The sevDesk API's state.
    pub sevdesk: sevdesk::SevDesk,
    /// The Shopify Admin API's state.
    pub shopify: shopify::Shopify,
    /// Shopify's token endpoint's state.
    pub shopify_oauth: shopify_oauth::OAuth,
}

impl State {
    fn erp(&self) -> std::sync::MutexGuard<'_, ErpState> {
        self.erp.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests the ERP endpoint answered (or dropped), oldest first.
    pub fn erp_requests(&self) -> Vec<ErpRequest> {
        self.erp().requests.clone()
    }

    /// Requests that reached the ERP endpoint, including ones still hanging.
    pub fn erp_arrived(&self) -> usize {
        self.erp().arrived
    }

    /// Replaces the ERP's faults.
    pub fn set_erp_faults(&self, faults: Faults) {
        self.erp().faults = faults;
    }
}

/// The socket of an HTTP connection, kept so a handler can drop the connection on purpose.
/// A duplicated descriptor: closed with the connection's extensions, shutting it down resets the
/// client's connection without an answer.
#[derive(Clone)]
struct ConnSocket(Arc<std::os::fd::OwnedFd>);

fn remember_socket(connection: &dyn std::any::Any, extensions: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsFd;
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Ok(fd) = tcp.as_fd().try_clone_to_owned()
    {
        extensions.insert(ConnSocket(Arc::new(fd)));
    }
}

/// Drops the request's connection: the client sees a reset, never an answer.
pub fn drop_connection(request: &HttpRequest) {
    if let Some(socket) = request.conn_data::<ConnSocket>() {
        let _ = socket2::SockRef::from(&*socket.0).shutdown(std::net::Shutdown::Both);
    }
}

/// The status to answer, given the faults: an injected error at `error_rate`, else `success`.
fn decide(faults: &Faults, success: u16) -> u16 {
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        return injected_status(faults);
    }
    success
}

/// The status of an injected error: the configured one, or 429, 500 or 503 at random.
pub fn injected_status(faults: &Faults) -> u16 {
    faults
        .error_status
        .unwrap_or_else(|| [429, 500, 503][fastrand::usize(..3)])
}

async fn erp_stock_levels(
    request: HttpRequest,
    body: web::Json<serde_json::Value>,
    state: web::Data<State>,
) -> HttpResponse {
    let aggregate = body["aggregate_id"].as_str().map(str::to_owned);
    let (faults, overlapping) = {
        let mut erp = state.erp();
        erp.arrived += 1;
        let overlapping = aggregate.as_ref().map_or(0, |a| {
            let n = erp.in_flight.entry(a.clone()).or_insert(0);
            *n += 1;
            *n - 1
        });
        (erp.faults.clone(), overlapping)
    };
    let _in_flight = InFlight {
        state: state.clone(),
        aggregate,
    };
    if faults.hang {
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if faults.drop_rate > 0.0 && fastrand::f64() < faults.drop_rate {
        drop_connection(&request);
        return HttpResponse::InternalServerError().finish();
    }
    let status = decide(&faults, 200);
    state.erp().requests.push(ErpRequest {
        idempotency_key: header("idempotency-key"),
        traceparent: header("traceparent"),
        body: body.into_inner(),
        answered: status,
        overlapping,
    });
    let mut response = HttpResponse::build(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    if let (Some(secs), 429 | 503) = (faults.retry_after_secs, status) {
        response.insert_header(("retry-after", secs.to_string()));
    }
    if status < 300 {
        response.json(json!({"accepted": true}))
    } else {
        response.json(json!({"error": "injected fault", "status": status}))
    }
}

async fn erp_requests(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(state.erp_requests())
}

async fn put_erp_faults(faults: web::Json<Faults>, state: web::Data<State>) -> HttpResponse {
    state.set_erp_faults(faults.into_inner());
    HttpResponse::NoContent().finish()
}

async fn delete_erp_faults(state: web::Data<State>) -> HttpResponse {
    state.set_erp_faults(Faults::default());
    HttpResponse::NoContent().finish()
}

/// A running sandbox.
pub struct Sandbox {
    /// Its base URL, e.g. `http://127.0.0.1:8090`.
    pub base_url: String,
    /// Its state, for in-process assertions.
    pub state: web::Data<State>,
    handle: ServerHandle,
}

impl Sandbox {
    /// Binds `addr` (port 0 picks a free one) and builds the server; spawn the returned
    /// [`Server`] (or await it) to serve.
    pub fn bind(addr: &str) -> anyhow::Result<(Self, Server)> {
        let listener = TcpListener::bind(addr)?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let state = web::Data::new(State::default());
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(sevdesk::configure)
                .configure(shopify::configure)
                .configure(shopify_oauth::configure)
                .route("/erp/stock-levels", web::post().to(erp_stock_levels))
                .route("/_sandbox/erp/requests", web::get().to(erp_requests))
                .route("/_sandbox/faults/erp", web::put().to(put_erp_faults))
                .route("/_sandbox/faults/erp", web::delete().to(delete_erp_faults))
                .route(
                    "/healthz",
                    web::get().to(|| async { HttpResponse::Ok().json(json!({"status": "ok"})) }),
                )
        })
        .workers(1)
        .disable_signals()
        .on_connect(remember_socket)
        .listen(listener)?
        .run();
        let handle = server.handle();
        Ok((
            Self {
                base_url,
                state,
                handle,
            },
            server,
        ))
    }

    /// Binds and serves in the background on the current Tokio runtime.
    pub fn spawn(addr: &str) -> anyhow::Result<Self> {
        let (sandbox, server) = Self::bind(addr)?;
        tokio::spawn(server);
        Ok(sandbox)
    }

    /// The ERP endpoint's URL (`HOOKLINE_ERP_URL`).
    pub fn erp_url(&self) -> String {
        format!("{}/erp/stock-levels", self.base_url)
    }

    /// The sevDesk base URL (`HOOKLINE_SEVDESK_URL`).
    pub fn sevdesk_url(&self) -> String {
        format!("{}/api/v1", self.base_url)
    }

    /// The Shopify Admin base URL template (`HOOKLINE_SHOPIFY_ADMIN_URL`): `{shop}` is replaced.
    pub fn shopify_admin_url(&self) -> String {
        format!("{}/shops/{{shop}}", self.base_url)
    }

    /// Stops serving.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::Verifier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stand-in ingestor that verifies signatures and counts deliveries per webhook id.
    #[tokio::test]
    async fn simulated_shopify_signs_duplicates_and_loses_webhooks_as_asked() {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        let received: web::Data<Mutex<Vec<(String, String)>>> = web::Data::new(Mutex::new(vec![]));
        let bad = web::Data::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/webhooks/shopify", listener.local_addr().unwrap());
        let (r, b) = (received.clone(), bad.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(r.clone()).app_data(b.clone()).route(
                "/webhooks/shopify",
                web::post().to(
                    |req: HttpRequest,
                     body: web::Bytes,
                     r: web::Data<Mutex<Vec<(String, String)>>>,
                     b: web::Data<AtomicUsize>| async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        if Verifier::new(["s3cret"])
                            .unwrap()
                            .verify(body.to_vec(), Some(&h("x-shopify-hmac-sha256")))
                            .is_err()
                        {
                            b.fetch_add(1, Ordering::SeqCst);
                            return HttpResponse::Unauthorized().finish();
                        }
                        r.lock()
                            .unwrap()
                            .push((h("x-shopify-webhook-id"), h("x-shopify-topic")));
                        HttpResponse::Ok().finish()
                    },
                ),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);

        let simulation = json!({"count": 50, "ingestor_url": url, "secret": "s3cret", "plan": {"duplicate_rate": 0.5, "loss_rate": 0.2, "reorder_rate": 0.3}});
        let response = reqwest::Client::new()
            .post(format!(
                "{}/_sandbox/shopify/shop.myshopify.com/simulate",
                sandbox.base_url
            ))
            .json(&simulation)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        let received = received.lock().unwrap().clone();
        assert_eq!(
            bad.load(Ordering::SeqCst),
            0,
            "every webhook correctly signed"
        );
        let lost = report["lost"].as_array().unwrap().len();
        let accepted = report["accepted"].as_u64().unwrap() as usize;
        assert_eq!(accepted + lost, 100, "50 orders, two webhooks each");
        assert!((5..=40).contains(&lost), "about 20 % lost: {lost}");
        let mut ids: Vec<&String> = received.iter().map(|(id, _)| id).collect();
        let deliveries = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), accepted, "one webhook id per webhook");
        assert!(
            deliveries > accepted + 10,
            "duplicates reuse the webhook id: {deliveries} deliveries of {accepted}"
        );
        assert_eq!(
            sandbox.state.shopify.orders("shop.myshopify.com").len(),
            50,
            "kept for the Admin API"
        );
    }

    #[tokio::test]
    async fn records_requests_and_injects_faults_over_real_http() {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        let client = reqwest::Client::new();
        let post = |key: &'static str| {
            client
                .post(sandbox.erp_url())
                .header("idempotency-key", key)
                .json(&json!({"n": key}))
                .send()
        };
        assert_eq!(post("a").await.unwrap().status(), 200);

        let faults = Faults {
            error_rate: 1.0,
            error_status: Some(429),
            retry_after_secs: Some(3),
            ..Faults::default()
        };
        let put = client
            .put(format!("{}/_sandbox/faults/erp", sandbox.base_url))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 204);
        let limited = post("b").await.unwrap();
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "3");

        sandbox.state.set_erp_faults(Faults {
            latency_ms: 200,
            ..Faults::default()
        });
        let started = std::time::Instant::now();
        assert_eq!(post("c").await.unwrap().status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(200));

        sandbox.state.set_erp_faults(Faults::default());
        let listed: Vec<ErpRequest> = client
            .get(format!("{}/_sandbox/erp/requests", sandbox.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let answered: Vec<(Option<String>, u16)> = listed
            .into_iter()
            .map(|r| (r.idempotency_key, r.answered))
            .collect();
        assert_eq!(
            answered,
            vec![
                (Some("a".into()), 200),
                (Some("b".into()), 429),
                (Some("c".into()), 200)
            ]
        );
    }

    #[tokio::test]
    async fn a_dropped_connection_reaches_the_client_as_an_error_without_an_answer() {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        sandbox.state.set_erp_faults(Faults {
            drop_rate: 1.0,
            ..Faults::default()
        });
        let result = reqwest::Client::new()
            .post(sandbox.erp_url())
            .json(&json!({}))
            .send()
            .await;
        let error = result.expect_err("no answer arrives");
        assert!(!error.is_timeout(), "a reset, not a timeout: {error:?}");
        assert_eq!(sandbox.state.erp_arrived(), 1);
    }

    #[tokio::test]
    async fn a_hanging_erp_holds_the_request_until_the_client_gives_up() {
        let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
        sandbox.state.set_erp_faults(Faults {
            hang: true,
            ..Faults::default()
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let err = client
            .post(sandbox.erp_url())
            .json(&json!({}))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(sandbox.state.erp_arrived(), 1);
        assert!(sandbox.state.erp_requests().is_empty(), "never answered");
    }
}
