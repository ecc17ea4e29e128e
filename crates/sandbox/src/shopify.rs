//! Shopify, played: the GraphQL Admin API's orders (for the reconciliation poller, see
//! [`graphql`]) and a webhook sender that delivers signed webhooks to an ingestor the way Shopify
//! does — at least once, sometimes twice, not always in order, and now and then not at all.
//!
//! `POST /shops/{shop}/admin/api/{version}/graphql.json` requires `X-Shopify-Access-Token`
//! ([`Shopify::token_ok`]; anything else is 401), keeps Shopify's cost-based leaky bucket per shop
//! (2000 points, 100 restored per second, as a standard shop's) and answers `THROTTLED` when the
//! bucket cannot hold a query's requested cost. Faults: the generic [`Faults`] (latency, error
//! rate), a failing window of order-listing calls ([`Shopify::fail_listing`]), and a drained or
//! resized bucket ([`Shopify::drain_bucket`], [`Shopify::set_bucket`]).
//!
//! One mutation is played: `orderMarkAsPaid(input: {id})`. It refuses an order that is already
//! paid (or cancelled, or unknown) with a `userErrors` entry, as Shopify does; on success the
//! stored order becomes `financial_status: paid` and, when a webhook target is configured
//! (`PUT /_sandbox/shopify/webhooks`), the signed `orders/paid` webhook is delivered to it as
//! Shopify would. Its calls are counted ([`Shopify::mark_paid_calls`]) and it can fail on demand
//! ([`MarkPaidFault`], `PUT /_sandbox/shopify/mark-paid-fault`): a 500 before anything happens,
//! or applied and never answered (the client times out).

pub mod graphql;
pub mod setup;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
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

/// A standard shop's GraphQL bucket: size and points restored per second.
const BUCKET_SIZE: f64 = 2000.0;
const RESTORE_RATE: f64 = 100.0;
/// The most a single query may request.
const MAX_QUERY_COST: f64 = 1000.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    available: f64,
    at: Instant,
}

/// Listing calls that answer 500: numbers `from..from + times`, counted since it was set.
#[derive(Debug, Clone, Copy, Default)]
struct ListingFault {
    from: usize,
    times: usize,
    seen: usize,
}

struct Store {
    /// Orders per shop, in creation order.
    orders: HashMap<String, Vec<Value>>,
    buckets: HashMap<String, Bucket>,
    bucket_size: f64,
    restore_rate: f64,
    faults: Faults,
    listing_fault: ListingFault,
    calls: usize,
    listing_calls: usize,
    throttled: usize,
    mark_paid_calls: usize,
    mark_paid_fault: MarkPaidFault,
    mark_paid_fault_hits: u32,
    webhooks: Option<WebhookTarget>,
}

/// What happens to the next `orderMarkAsPaid` calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkPaidMode {
    /// Answered as Shopify would.
    #[default]
    Normal,
    /// HTTP 500 before anything is done.
    Fail,
    /// Applied (the order is paid, the webhook goes out), then never answered.
    CommitThenHang,
}

/// A fault of `orderMarkAsPaid` and how many calls it hits (0: every call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MarkPaidFault {
    /// What happens.
    pub mode: MarkPaidMode,
    /// How many of the next calls it hits (0: all).
    pub times: u32,
}

/// Where Shopify delivers the webhooks its own changes cause (`orders/paid` after
/// `orderMarkAsPaid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTarget {
    /// The ingestor's webhook URL.
    pub ingestor_url: String,
    /// The app's client secret, which signs them.
    pub secret: String,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            orders: HashMap::new(),
            buckets: HashMap::new(),
            bucket_size: BUCKET_SIZE,
            restore_rate: RESTORE_RATE,
            faults: Faults::default(),
            listing_fault: ListingFault::default(),
            calls: 0,
            listing_calls: 0,
            throttled: 0,
            mark_paid_calls: 0,
            mark_paid_fault: MarkPaidFault::default(),
            mark_paid_fault_hits: 0,
            webhooks: None,
        }
    }
}

/// A bucket's state as `extensions.cost.throttleStatus` reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// The bucket's size.
    pub maximum_available: f64,
    /// Points in it now.
    pub currently_available: f64,
    /// Points restored per second.
    pub restore_rate: f64,
}

impl Throttle {
    fn json(&self) -> Value {
        json!({
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": self.currently_available.floor(),
            "restoreRate": self.restore_rate,
        })
    }
}

/// The Shopify part of the sandbox state.
#[derive(Default)]
pub struct Shopify {
    store: Mutex<Store>,
    /// Subscriptions, scopes and API versions ([`setup`]).
    pub setup: setup::Setup,
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

    /// Admin API calls that got past the token check so far.
    pub fn calls(&self) -> usize {
        self.store().calls
    }

    /// Order listing (`orders`) calls so far.
    pub fn listing_calls(&self) -> usize {
        self.store().listing_calls
    }

    /// Calls answered `THROTTLED` so far.
    pub fn throttled(&self) -> usize {
        self.store().throttled
    }

    /// Replaces the Admin API's faults.
    pub fn set_faults(&self, faults: Faults) {
        self.store().faults = faults;
    }

    /// `orderMarkAsPaid` calls that reached the mutation so far.
    pub fn mark_paid_calls(&self) -> usize {
        self.store().mark_paid_calls
    }

    /// Replaces the fault of the next `orderMarkAsPaid` calls.
    pub fn set_mark_paid_fault(&self, fault: MarkPaidFault) {
        let mut store = self.store();
        store.mark_paid_fault = fault;
        store.mark_paid_fault_hits = 0;
    }

    /// Where webhooks Shopify's own changes cause are delivered (`None`: nowhere).
    pub fn set_webhook_target(&self, target: Option<WebhookTarget>) {
        self.store().webhooks = target;
    }

    /// Counts an `orderMarkAsPaid` call; its fault.
    fn take_mark_paid_fault(&self) -> MarkPaidMode {
        let mut store = self.store();
        store.mark_paid_calls += 1;
        let fault = store.mark_paid_fault;
        if fault.mode == MarkPaidMode::Normal
            || (fault.times > 0 && store.mark_paid_fault_hits >= fault.times)
        {
            return MarkPaidMode::Normal;
        }
        store.mark_paid_fault_hits += 1;
        fault.mode
    }

    /// `orderMarkAsPaid` on the stored order: the payload (order node or null, userErrors)
    /// and, when it was marked paid, the order as its `orders/paid` webhook carries it.
    fn mark_as_paid(&self, shop: &str, gid: &str) -> (Value, Option<Value>) {
        let refuse = |message: &str, order: Value| {
            json!({
                "order": order,
                "userErrors": [{"field": ["id"], "message": message}],
            })
        };
        let mut store = self.store();
        let Some(order) = store.orders.get_mut(shop).and_then(|orders| {
            orders
                .iter_mut()
                .find(|o| graphql::order_node(o)["id"] == gid)
        }) else {
            return (refuse("Order does not exist", Value::Null), None);
        };
        let status = order["financial_status"].as_str().unwrap_or("pending");
        if matches!(status, "paid" | "partially_refunded" | "refunded") {
            return (
                refuse("Order has already been paid", graphql::order_node(order)),
                None,
            );
        }
        if !order["cancelled_at"].is_null() {
            return (
                refuse(
                    "Order cannot be marked as paid: it is cancelled",
                    graphql::order_node(order),
                ),
                None,
            );
        }
        order["financial_status"] = json!("paid");
        order["updated_at"] = json!(now().to_rfc3339());
        let paid = order.clone();
        (
            json!({"order": graphql::order_node(&paid), "userErrors": []}),
            Some(paid),
        )
    }

    /// From now on, order listing calls number `from` to `from + times - 1` (counting from 1)
    /// answer 500: "the second page fails, and its retries too".
    pub fn fail_listing(&self, from: usize, times: usize) {
        self.store().listing_fault = ListingFault {
            from,
            times,
            seen: 0,
        };
    }

    /// Resizes every shop's bucket (full again).
    pub fn set_bucket(&self, maximum: f64, restore_rate: f64) {
        let mut store = self.store();
        store.bucket_size = maximum;
        store.restore_rate = restore_rate;
        store.buckets.clear();
    }

    /// Empties the shop's bucket: the next query is throttled until it has restored enough.
    pub fn drain_bucket(&self, shop: &str) {
        self.store().buckets.insert(
            shop.to_owned(),
            Bucket {
                available: 0.0,
                at: Instant::now(),
            },
        );
    }

    /// Takes `cost` points from the shop's bucket, or says how full it is.
    fn take(&self, shop: &str, cost: f64) -> Result<Throttle, Throttle> {
        let mut store = self.store();
        let (size, rate) = (store.bucket_size, store.restore_rate);
        let now = Instant::now();
        let bucket = store.buckets.entry(shop.to_owned()).or_insert(Bucket {
            available: size,
            at: now,
        });
        bucket.available =
            (bucket.available + now.duration_since(bucket.at).as_secs_f64() * rate).min(size);
        bucket.at = now;
        let fits = bucket.available >= cost;
        if fits {
            bucket.available -= cost;
        }
        let status = Throttle {
            maximum_available: size,
            currently_available: bucket.available,
            restore_rate: rate,
        };
        if fits {
            Ok(status)
        } else {
            store.throttled += 1;
            Err(status)
        }
    }

    /// Gives `points` back (requested minus actual cost).
    fn refund_points(&self, shop: &str, points: f64) -> Throttle {
        let mut store = self.store();
        let (size, rate) = (store.bucket_size, store.restore_rate);
        let bucket = store.buckets.entry(shop.to_owned()).or_insert(Bucket {
            available: size,
            at: Instant::now(),
        });
        bucket.available = (bucket.available + points.max(0.0)).min(size);
        Throttle {
            maximum_available: size,
            currently_available: bucket.available,
            restore_rate: rate,
        }
    }

    /// Counts a listing call; whether it is one that must fail.
    fn listing_fails(&self) -> bool {
        let mut store = self.store();
        store.listing_calls += 1;
        let fault = &mut store.listing_fault;
        fault.seen += 1;
        fault.times > 0 && fault.seen >= fault.from && fault.seen < fault.from + fault.times
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

/// A mutation's requested cost, as Shopify charges one: 10 points.
const MUTATION_COST: f64 = 10.0;

/// Answers a mutation document.
async fn admin_mutation(
    state: web::Data<crate::State>,
    shop: String,
    selection: Vec<graphql::Field>,
    variables: Value,
) -> HttpResponse {
    let shopify = &state.shopify;
    if let Some(unknown) = selection.iter().find(|f| f.name != "orderMarkAsPaid") {
        return errors_answer(
            vec![json!({
                "message": format!("Field '{}' doesn't exist on type 'Mutation'", unknown.name),
                "extensions": {"code": "undefinedField", "typeName": "Mutation", "fieldName": unknown.name},
            })],
            None,
        );
    }
    let status = match shopify.take(&shop, MUTATION_COST * selection.len() as f64) {
        Ok(status) => status,
        Err(status) => {
            return errors_answer(
                vec![
                    json!({"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/limits"}}),
                ],
                Some(
                    json!({"requestedQueryCost": MUTATION_COST, "actualQueryCost": null, "throttleStatus": status.json()}),
                ),
            );
        }
    };
    let mut data = serde_json::Map::new();
    let mut hang = false;
    for field in &selection {
        let Some(gid) = field
            .arg("input", &variables)
            .and_then(|input| input["id"].as_str().map(str::to_owned))
        else {
            return errors_answer(
                vec![graphql::error(
                    "Variable $input of type OrderMarkAsPaidInput! was provided invalid value for id (Expected value to not be null)",
                    "INVALID_VARIABLE",
                )],
                None,
            );
        };
        match shopify.take_mark_paid_fault() {
            MarkPaidMode::Fail => {
                return HttpResponse::InternalServerError().json(
                    json!({"errors": "Internal error. Looks like something went wrong on our end."}),
                );
            }
            MarkPaidMode::CommitThenHang => hang = true,
            MarkPaidMode::Normal => {}
        }
        let (mut payload, paid) = shopify.mark_as_paid(&shop, &gid);
        if let Some(order) = paid {
            deliver_paid(&state, &shop, order);
        }
        payload["__type"] = json!({"order": "Order", "userErrors": "UserError"});
        match graphql::project(
            &payload,
            &field.selection,
            &variables,
            "OrderMarkAsPaidPayload",
        ) {
            Ok(value) => {
                data.insert(
                    field.alias.clone().unwrap_or_else(|| field.name.clone()),
                    value,
                );
            }
            Err(m) => {
                return errors_answer(vec![graphql::error(&m, "undefinedField")], None);
            }
        }
    }
    if hang {
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
    HttpResponse::Ok().json(json!({
        "data": Value::Object(data),
        "extensions": {"cost": {
            "requestedQueryCost": MUTATION_COST,
            "actualQueryCost": MUTATION_COST,
            "throttleStatus": status.json(),
        }},
    }))
}

/// Delivers the `orders/paid` webhook of an order `orderMarkAsPaid` paid, in a task of its own
/// (Shopify's deliveries are asynchronous to the mutation's answer).
fn deliver_paid(state: &crate::State, shop: &str, order: Value) {
    let Some(target) = state.shopify.store().webhooks.clone() else {
        return;
    };
    let shop = shop.to_owned();
    tokio::spawn(async move {
        let webhook = crate::deliver::Webhook {
            topic: "orders/paid".into(),
            body: order.to_string(),
        };
        let report = crate::deliver::deliver(
            &target.ingestor_url,
            &target.secret,
            &shop,
            &[webhook],
            &crate::deliver::Plan::default(),
        )
        .await;
        if report.accepted == 0 {
            tracing::warn!(
                shop,
                "the orders/paid webhook after orderMarkAsPaid was not accepted"
            );
        }
    });
}

#[derive(Deserialize)]
struct GraphQlRequest {
    query: String,
    #[serde(default)]
    variables: Option<Value>,
}

/// Shopify's GraphQL answer for errors only (with the bucket, when known).
fn errors_answer(errors: Vec<Value>, cost: Option<Value>) -> HttpResponse {
    let mut body = json!({ "errors": errors });
    if let Some(cost) = cost {
        body["extensions"] = json!({ "cost": cost });
    }
    HttpResponse::Ok().json(body)
}

/// `POST /shops/{shop}/admin/api/{version}/graphql.json`
pub async fn admin_graphql(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let (shop, _version) = path.into_inner();
    let shopify = &state.shopify;
    let token = request
        .headers()
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok());
    if !token.is_some_and(|token| token_ok(&state, &shop, token)) {
        return HttpResponse::Unauthorized().json(json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}));
    }
    shopify.store().calls += 1;
    let faults = shopify.store().faults.clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
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
    let Ok(request) = serde_json::from_slice::<GraphQlRequest>(&body) else {
        return HttpResponse::BadRequest()
            .json(json!({"errors": {"query": "Required parameter missing or invalid"}}));
    };
    let variables = request.variables.unwrap_or_else(|| json!({}));
    let (operation, selection) = match graphql::parse_operation(&request.query) {
        // Marking an order paid changes orders and sends a webhook: its own handler.
        Ok((graphql::Operation::Mutation, s)) if s.iter().any(|f| f.name == "orderMarkAsPaid") => {
            return admin_mutation(state.clone(), shop, s, variables).await;
        }
        Ok(s) => s,
        Err(why) => {
            return errors_answer(
                vec![json!({"message": format!("Parse error: {why}")})],
                None,
            );
        }
    };
    let (root_type, known): (&str, &[&str]) = match operation {
        graphql::Operation::Query => ("QueryRoot", QUERY_ROOTS),
        graphql::Operation::Mutation => ("Mutation", MUTATION_ROOTS),
    };
    if let Some(unknown) = selection.iter().find(|f| !known.contains(&f.name.as_str())) {
        return errors_answer(
            vec![json!({
                "message": format!("Field '{}' doesn't exist on type '{root_type}'", unknown.name),
                "extensions": {"code": "undefinedField", "typeName": root_type, "fieldName": unknown.name},
            })],
            None,
        );
    }
    // A mutation costs 10 points, whatever it selects.
    let requested = match operation {
        graphql::Operation::Query => graphql::requested_cost(&selection, &variables),
        graphql::Operation::Mutation => 10.0 * selection.len() as f64,
    };
    if requested > MAX_QUERY_COST {
        return errors_answer(
            vec![json!({
                "message": format!("Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST})."),
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
            })],
            Some(json!({"requestedQueryCost": requested, "actualQueryCost": null})),
        );
    }
    if selection.iter().any(|f| f.name == "orders") && shopify.listing_fails() {
        return HttpResponse::InternalServerError().json(
            json!({"errors": "Internal error. Looks like something went wrong on our end."}),
        );
    }
    let status = match shopify.take(&shop, requested) {
        Ok(status) => status,
        Err(status) => {
            return errors_answer(
                vec![json!({
                    "message": "Throttled",
                    "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/limits"},
                })],
                Some(json!({
                    "requestedQueryCost": requested,
                    "actualQueryCost": null,
                    "throttleStatus": status.json(),
                })),
            );
        }
    };
    let mut data = serde_json::Map::new();
    for field in &selection {
        let answer = match field.name.as_str() {
            "orders" => list_orders(&shopify.orders(&shop), field, &variables),
            "order" => find_order(&shopify.orders(&shop), field, &variables),
            "refund" => find_refund(&shopify.orders(&shop), field, &variables),
            "webhookSubscriptionCreate" => shopify
                .setup
                .create(
                    &shop,
                    field.arg("topic", &variables).as_ref(),
                    field.arg("webhookSubscription", &variables).as_ref(),
                )
                .and_then(|payload| {
                    graphql::project(
                        &json!({"webhookSubscriptionCreate": payload, "__type": {"webhookSubscriptionCreate": "WebhookSubscriptionCreatePayload"}}),
                        std::slice::from_ref(field),
                        &variables,
                        "Mutation",
                    )
                    .map(|mut v| v[field.key()].take())
                    .map_err(|m| graphql::error(&m, "undefinedField"))
                }),
            _ => graphql::project(
                &shopify.setup.query_root(&shop),
                std::slice::from_ref(field),
                &variables,
                "QueryRoot",
            )
            .map(|mut v| v[field.key()].take())
            .map_err(|m| graphql::error(&m, "undefinedField")),
        };
        match answer {
            Ok(value) => {
                data.insert(
                    field.alias.clone().unwrap_or_else(|| field.name.clone()),
                    value,
                );
            }
            Err(error) => {
                shopify.refund_points(&shop, requested);
                return errors_answer(
                    vec![error],
                    Some(
                        json!({"requestedQueryCost": requested, "actualQueryCost": null, "throttleStatus": status.json()}),
                    ),
                );
            }
        }
    }
    let data = Value::Object(data);
    let actual = graphql::actual_cost(&selection, &data).min(requested);
    let status = shopify.refund_points(&shop, requested - actual);
    HttpResponse::Ok().json(json!({
        "data": data,
        "extensions": {"cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": status.json(),
        }},
    }))
}

/// The root query fields the sandbox answers.
const QUERY_ROOTS: &[&str] = &[
    "orders",
    "order",
    "refund",
    "shop",
    "currentAppInstallation",
    "publicApiVersions",
    "webhookSubscriptions",
];

/// The mutations the sandbox answers.
const MUTATION_ROOTS: &[&str] = &["webhookSubscriptionCreate"];

fn unsupported(what: String) -> Value {
    graphql::error(&what, "SANDBOX_UNSUPPORTED")
}

/// The `updated_at:>='…'` filter of a listing; `Ok(None)` without a filter.
fn updated_min(query: Option<&str>) -> Result<Option<DateTime<FixedOffset>>, Value> {
    let Some(query) = query.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let value = query
        .strip_prefix("updated_at:>=")
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"'))
        .ok_or_else(|| {
            unsupported(format!(
                "the sandbox filters orders by updated_at:>='…' only, not {query:?}"
            ))
        })?;
    DateTime::parse_from_rfc3339(value)
        .map(Some)
        .map_err(|_| unsupported(format!("not an ISO 8601 timestamp: {value:?}")))
}

fn updated_at(order: &Value) -> Option<DateTime<FixedOffset>> {
    order["updated_at"]
        .as_str()
        .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
}

/// An order's position in the `UPDATED_AT` order, as its cursor carries it.
fn position(order: &Value) -> String {
    format!(
        "{}|{:020}",
        updated_at(order).map_or_else(String::new, |t| t
            .with_timezone(&Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        order["id"].as_i64().unwrap_or(0)
    )
}

/// `orders(first:, after:, sortKey: UPDATED_AT, query:)`.
fn list_orders(
    orders: &[Value],
    field: &graphql::Field,
    variables: &Value,
) -> Result<Value, Value> {
    let first = field
        .arg("first", variables)
        .and_then(|f| f.as_i64())
        .ok_or_else(|| {
            graphql::error(
                "you must provide one of first or last",
                "argumentLiteralsIncompatible",
            )
        })?;
    if !(1..=250).contains(&first) {
        return Err(graphql::error(
            "The value of first must be between 1 and 250.",
            "BAD_REQUEST",
        ));
    }
    match field
        .arg("sortKey", variables)
        .as_ref()
        .and_then(Value::as_str)
    {
        Some("UPDATED_AT") => {}
        other => {
            return Err(unsupported(format!(
                "the sandbox sorts orders by UPDATED_AT only, not {other:?}"
            )));
        }
    }
    if field.arg("reverse", variables) == Some(json!(true)) {
        return Err(unsupported("the sandbox lists oldest first only".into()));
    }
    let min = updated_min(
        field
            .arg("query", variables)
            .as_ref()
            .and_then(Value::as_str),
    )?;
    let after = match field.arg("after", variables) {
        Some(Value::String(cursor)) => Some(
            graphql::decode_cursor(&cursor)
                .filter(|p| p.contains('|'))
                .ok_or_else(|| {
                    graphql::error("Invalid cursor for current pagination.", "BAD_REQUEST")
                })?,
        ),
        _ => None,
    };
    let mut matching: Vec<&Value> = orders
        .iter()
        .filter(|o| match (min, updated_at(o)) {
            (Some(min), Some(u)) => u >= min,
            _ => true,
        })
        .collect();
    matching.sort_by_key(|o| position(o));
    let rest: Vec<&Value> = matching
        .into_iter()
        .filter(|o| after.as_ref().is_none_or(|a| position(o) > *a))
        .collect();
    let page: Vec<&Value> = rest.iter().take(first as usize).copied().collect();
    let connection = json!({
        "nodes": page.iter().map(|o| graphql::order_node(o)).collect::<Vec<_>>(),
        "pageInfo": {
            "hasNextPage": rest.len() > page.len(),
            "hasPreviousPage": after.is_some(),
            "startCursor": page.first().map(|o| graphql::encode_cursor(&position(o))),
            "endCursor": page.last().map(|o| graphql::encode_cursor(&position(o))),
        },
    });
    // The page is cut already: its selection is applied to it as it is.
    graphql::project(&connection, &field.selection, variables, "OrderConnection")
        .map_err(|m| graphql::error(&m, "undefinedField"))
}

fn id_arg(field: &graphql::Field, variables: &Value) -> Result<String, Value> {
    field
        .arg("id", variables)
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| {
            graphql::error(
                "Variable $id of type ID! was provided invalid value",
                "INVALID_VARIABLE",
            )
        })
}

/// `order(id:)`.
fn find_order(orders: &[Value], field: &graphql::Field, variables: &Value) -> Result<Value, Value> {
    let id = id_arg(field, variables)?;
    let Some(node) = orders
        .iter()
        .map(graphql::order_node)
        .find(|n| n["id"] == id.as_str())
    else {
        return Ok(Value::Null);
    };
    graphql::project(&node, &field.selection, variables, "Order")
        .map_err(|m| graphql::error(&m, "undefinedField"))
}

/// `refund(id:)`.
fn find_refund(
    orders: &[Value],
    field: &graphql::Field,
    variables: &Value,
) -> Result<Value, Value> {
    let id = id_arg(field, variables)?;
    let node = orders.iter().find_map(|o| {
        let currency = o["currency"].as_str().unwrap_or("EUR");
        o["refunds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| graphql::refund_node(r, currency))
            .find(|r| r["id"] == id.as_str())
    });
    match node {
        None => Ok(Value::Null),
        Some(node) => graphql::project(&node, &field.selection, variables, "Refund")
            .map_err(|m| graphql::error(&m, "undefinedField")),
    }
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

/// `PUT /_sandbox/shopify/mark-paid-fault`
pub async fn put_mark_paid_fault(
    fault: web::Json<MarkPaidFault>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    state.shopify.set_mark_paid_fault(fault.into_inner());
    HttpResponse::NoContent().finish()
}

/// `PUT /_sandbox/shopify/webhooks`: where webhooks of the sandbox's own changes go.
pub async fn put_webhooks(
    target: web::Json<WebhookTarget>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    state.shopify.set_webhook_target(Some(target.into_inner()));
    HttpResponse::NoContent().finish()
}

/// Registers the Shopify routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/_sandbox/shopify/{shop}/simulate",
        web::post().to(simulate),
    )
    .route(
        "/shops/{shop}/admin/api/{version}/graphql.json",
        web::post().to(admin_graphql),
    )
    .route("/_sandbox/faults/shopify", web::put().to(put_faults))
    .route(
        "/_sandbox/shopify/mark-paid-fault",
        web::put().to(put_mark_paid_fault),
    )
    .route("/_sandbox/shopify/webhooks", web::put().to(put_webhooks))
    .route(
        "/_sandbox/shopify/{shop}/orders",
        web::get().to(sandbox_orders),
    );
}

/// Now, as Shopify writes timestamps.
pub fn now() -> DateTime<FixedOffset> {
    Utc::now().fixed_offset()
}
