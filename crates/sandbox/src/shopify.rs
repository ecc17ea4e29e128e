//! Shopify, played: the Admin API's order list (for the reconciliation poller) and a webhook
//! sender that delivers signed webhooks to an ingestor the way Shopify does — at least once,
//! sometimes twice, not always in order, and now and then not at all.
//!
//! `GET /shops/{shop}/admin/api/{version}/orders.json?status=any&updated_at_min=…&limit=…` pages
//! with `Link: <…page_info=…>; rel="next"`, requires `X-Shopify-Access-Token`, and keeps Shopify's
//! leaky bucket (40 calls, 2 per second leak): every answer carries
//! `X-Shopify-Shop-Api-Call-Limit: used/40`, and a full bucket answers 429 with `Retry-After: 2.0`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Faults;

/// The access token the sandbox accepts.
pub const ACCESS_TOKEN: &str = "shpat_sandbox";

/// Whether Shopify accepts `token` for `shop`: the static [`ACCESS_TOKEN`], or a token the
/// token endpoint issued for the shop that has not expired or been revoked (see
/// [`crate::shopify_oauth`]). Refused tokens are answered 401 with Shopify's
/// `{"errors": "[API] Invalid API key or access token …"}`.
pub fn token_ok(state: &crate::State, shop: &str, token: &str) -> bool {
    token == ACCESS_TOKEN || state.shopify_oauth.token_ok(shop, token)
}

/// Shopify's REST bucket: capacity and leak per second.
const BUCKET: f64 = 40.0;
const LEAK_PER_SEC: f64 = 2.0;

struct Bucket {
    level: f64,
    at: Instant,
}

#[derive(Default)]
struct Store {
    /// Orders per shop, in creation order.
    orders: HashMap<String, Vec<Value>>,
    buckets: HashMap<String, Bucket>,
    faults: Faults,
    calls: usize,
}

/// The Shopify part of the sandbox state.
#[derive(Default)]
pub struct Shopify {
    store: Mutex<Store>,
}

impl Shopify {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds or replaces (by id) an order of `shop`.
    pub fn upsert_order(&self, shop: &str, order: Value) {
        let mut store = self.store();
        let orders = store.orders.entry(shop.to_owned()).or_default();
        match orders.iter_mut().find(|o| o["id"] == order["id"]) {
            Some(existing) => *existing = order,
            None => orders.push(order),
        }
    }

    /// The orders of `shop`.
    pub fn orders(&self, shop: &str) -> Vec<Value> {
        self.store().orders.get(shop).cloned().unwrap_or_default()
    }

    /// Admin API calls answered so far.
    pub fn calls(&self) -> usize {
        self.store().calls
    }

    /// Replaces the Admin API's faults.
    pub fn set_faults(&self, faults: Faults) {
        self.store().faults = faults;
    }

    /// Takes one call from the shop's bucket; `Err(used)` when it is full.
    fn take(&self, shop: &str) -> Result<f64, f64> {
        let mut store = self.store();
        store.calls += 1;
        let now = Instant::now();
        let bucket = store.buckets.entry(shop.to_owned()).or_insert(Bucket {
            level: 0.0,
            at: now,
        });
        bucket.level =
            (bucket.level - now.duration_since(bucket.at).as_secs_f64() * LEAK_PER_SEC).max(0.0);
        bucket.at = now;
        if bucket.level + 1.0 > BUCKET {
            return Err(bucket.level);
        }
        bucket.level += 1.0;
        Ok(bucket.level)
    }
}

/// A generated order, shaped like Shopify's (the fields hookline reads and a few more), paid or
/// pending, with one or two lines at 19 % tax on net prices.
pub fn generate_order(id: i64, paid: bool, updated_at: DateTime<FixedOffset>) -> Value {
    let quantity = 1 + id % 3;
    let cents = 500 + (id * 7919) % 9500;
    let price = format!("{}.{:02}", cents / 100, cents % 100);
    let net = cents * quantity;
    let tax = (net * 19 + 50) / 100; // cents, half up
    let total = net + tax;
    let money = |c: i64| format!("{}.{:02}", c / 100, c % 100);
    json!({
        "id": id,
        "admin_graphql_api_id": format!("gid://shopify/Order/{id}"),
        "name": format!("#{}", 1000 + id % 100_000),
        "email": format!("customer{}@example.com", id % 500),
        "created_at": updated_at.to_rfc3339(),
        "updated_at": updated_at.to_rfc3339(),
        "processed_at": updated_at.to_rfc3339(),
        "currency": "EUR",
        "financial_status": if paid { "paid" } else { "pending" },
        "total_price": money(total),
        "subtotal_price": money(net),
        "total_tax": money(tax),
        "taxes_included": false,
        "customer": {"id": 5_000_000 + id % 500, "email": format!("customer{}@example.com", id % 500), "first_name": "Kim", "last_name": format!("Kunde{}", id % 500)},
        "billing_address": {"first_name": "Kim", "last_name": format!("Kunde{}", id % 500), "company": null, "country_code": "DE"},
        "line_items": [{"id": id * 10, "title": "Sandbox item", "quantity": quantity, "price": price, "sku": format!("SB-{}", id % 50), "tax_lines": [{"rate": 0.19, "price": money(tax), "title": "MwSt"}]}],
        "tax_lines": [{"rate": 0.19, "price": money(tax), "title": "MwSt"}],
        "cancelled_at": null,
    })
}

#[derive(Deserialize)]
pub struct OrdersQuery {
    updated_at_min: Option<String>,
    limit: Option<usize>,
    page_info: Option<String>,
}

/// `GET /shops/{shop}/admin/api/{version}/orders.json`
pub async fn list_orders(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<OrdersQuery>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let (shop, version) = path.into_inner();
    let shopify = &state.shopify;
    let token = request
        .headers()
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok());
    if !token.is_some_and(|token| token_ok(&state, &shop, token)) {
        return HttpResponse::Unauthorized().json(json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}));
    }
    let faults = shopify.store().faults.clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let used = match shopify.take(&shop) {
        Ok(used) => used,
        Err(used) => {
            return HttpResponse::TooManyRequests()
                .insert_header(("retry-after", "2.0"))
                .insert_header(("x-shopify-shop-api-call-limit", format!("{}/{}", used.ceil() as u64, BUCKET as u64)))
                .json(json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}));
        }
    };
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        let status = faults.error_status.unwrap_or(503);
        let mut r = HttpResponse::build(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        );
        if let Some(secs) = faults.retry_after_secs {
            r.insert_header(("retry-after", format!("{secs}.0")));
        }
        return r.json(json!({"errors": "injected fault"}));
    }
    let limit = query.limit.unwrap_or(50).clamp(1, 250);
    // page_info is opaque to clients; here it carries the filter and the offset.
    let (min, offset) = match &query.page_info {
        Some(cursor) => {
            let mut parts = cursor.splitn(2, '~');
            let offset = parts
                .next()
                .and_then(|o| o.parse::<usize>().ok())
                .unwrap_or(0);
            (
                parts.next().map(str::to_owned).filter(|m| !m.is_empty()),
                offset,
            )
        }
        None => (query.updated_at_min.clone(), 0),
    };
    let min_time = min
        .as_deref()
        .and_then(|m| DateTime::parse_from_rfc3339(m).ok());
    let mut matching: Vec<Value> = shopify
        .orders(&shop)
        .into_iter()
        .filter(|o| {
            let updated = o["updated_at"]
                .as_str()
                .and_then(|u| DateTime::parse_from_rfc3339(u).ok());
            match (min_time, updated) {
                (Some(min), Some(u)) => u >= min,
                _ => true,
            }
        })
        .collect();
    matching.sort_by_key(|o| {
        (
            o["updated_at"].as_str().unwrap_or_default().to_owned(),
            o["id"].as_i64().unwrap_or(0),
        )
    });
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
    let mut response = HttpResponse::Ok();
    response.insert_header((
        "x-shopify-shop-api-call-limit",
        format!("{}/{}", used.ceil() as u64, BUCKET as u64),
    ));
    if offset + limit < matching.len() {
        let cursor = format!("{}~{}", offset + limit, min.unwrap_or_default());
        let host = request.connection_info().host().to_owned();
        let link = format!(
            "<http://{host}/shops/{shop}/admin/api/{version}/orders.json?limit={limit}&page_info={}>; rel=\"next\"",
            urlencode(&cursor)
        );
        response.insert_header(("link", link));
    }
    response.json(json!({"orders": page}))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `PUT /_sandbox/faults/shopify`
pub async fn put_faults(faults: web::Json<Faults>, state: web::Data<crate::State>) -> HttpResponse {
    state.shopify.set_faults(faults.into_inner());
    HttpResponse::NoContent().finish()
}

/// `GET /_sandbox/shopify/{shop}/orders`
pub async fn sandbox_orders(
    shop: web::Path<String>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    HttpResponse::Ok().json(state.shopify.orders(&shop))
}

/// `POST /_sandbox/shopify/{shop}/simulate`: what Shopify would do for `count` new paid orders.
#[derive(Debug, Deserialize)]
pub struct Simulation {
    /// Orders to create (kept for the Admin API) and announce.
    pub count: usize,
    /// The ingestor's webhook URL.
    pub ingestor_url: String,
    /// The app's client secret.
    pub secret: String,
    /// How to deliver (duplicates, losses, reordering).
    #[serde(default)]
    pub plan: crate::deliver::Plan,
}

/// Generates the orders, keeps them for the Admin API, delivers their webhooks; answers the
/// delivery report.
pub async fn simulate(
    shop: web::Path<String>,
    simulation: web::Json<Simulation>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let base = fastrand::i64(1_000_000_000..2_000_000_000) * 1000;
    let now = now();
    let orders: Vec<Value> = (0..simulation.count as i64)
        .map(|i| generate_order(base + i, true, now))
        .collect();
    for order in &orders {
        state.shopify.upsert_order(&shop, order.clone());
    }
    let webhooks: Vec<crate::deliver::Webhook> = orders
        .iter()
        .flat_map(crate::deliver::order_webhooks)
        .collect();
    let report = crate::deliver::deliver(
        &simulation.ingestor_url,
        &simulation.secret,
        &shop,
        &webhooks,
        &simulation.plan,
    )
    .await;
    HttpResponse::Ok().json(report)
}

/// Registers the Shopify routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/_sandbox/shopify/{shop}/simulate",
        web::post().to(simulate),
    )
    .route(
        "/shops/{shop}/admin/api/{version}/orders.json",
        web::get().to(list_orders),
    )
    .route("/_sandbox/faults/shopify", web::put().to(put_faults))
    .route(
        "/_sandbox/shopify/{shop}/orders",
        web::get().to(sandbox_orders),
    );
}

/// Now, as Shopify writes timestamps.
pub fn now() -> DateTime<FixedOffset> {
    Utc::now().fixed_offset()
}
