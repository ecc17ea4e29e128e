//! Reconciliation through the GraphQL Admin API: lost webhooks are recovered, a failure mid-way
//! skips nothing, Shopify's throttling is waited out, a paid-then-refunded order gets its invoice
//! and its credit note, and a GraphQL order is parsed by the same code as its webhook.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::config::Secret;
use hookline_core::topology::TopologySettings;
use hookline_sandbox::shopify::{ACCESS_TOKEN, generate_order};
use hookline_testkit::envelope;
use hookline_worker::domains::orders::mapping::{self, Order, Refund};
use hookline_worker::domains::orders::tax::{Regime, TaxSettings};
use hookline_worker::reconcile::{ReconcileSettings, Reconciler, ShopAccess};
use hookline_worker::shopify::orders::{self as gql, OrderAnswer, OrderNode, RefundAnswer};
use hookline_worker::shopify::{AdminClient, AdminError, AdminSettings, static_tokens};
use serde_json::{Value, json};

use crate::helpers::{SHOP, World};

const VERSION: &str = "2026-07";

fn admin_settings(admin_url: String) -> AdminSettings {
    AdminSettings {
        timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(20),
        max_wait: Duration::from_secs(5),
        throttled_attempts: 30,
        ..AdminSettings::new(admin_url, VERSION)
    }
}

fn admin(admin_url: String, token: &str) -> Arc<AdminClient> {
    let token = Secret::new(token);
    Arc::new(
        AdminClient::new(
            Arc::new(static_tokens([(SHOP, &token)])),
            admin_settings(admin_url),
        )
        .unwrap(),
    )
}

/// A poller driven by the test, one cycle at a time, with no overlap: a watermark that moved too
/// far would lose orders for good.
async fn reconciler(world: &World, admin: Arc<AdminClient>, page_limit: u32) -> Reconciler {
    let (mut client, connection) = tokio_postgres::connect(&world.db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    hookline_worker::migrate::run(&mut client).await.unwrap();
    let settings = ReconcileSettings {
        shops: vec![ShopAccess {
            shop: SHOP.into(),
            token: Secret::new(ACCESS_TOKEN),
        }],
        interval: Duration::from_secs(3600),
        overlap: Duration::ZERO,
        lookback: Duration::from_secs(3600),
        admin_url: world.erp.sandbox.shopify_admin_url(),
        api_version: VERSION.into(),
        page_limit,
        republish_after: Duration::from_secs(3600),
    };
    Reconciler::new(
        hookline_worker::startup::pool(&world.db.url(), 2).unwrap(),
        admin,
        settings,
        world.vhost.amqp_url(),
        TopologySettings::default(),
    )
}

/// `(topic, id)` of every envelope waiting in the orders queue.
async fn published(world: &World) -> Vec<(String, i64)> {
    hookline_testkit::drain(&world.amqp, "hookline.orders")
        .await
        .iter()
        .map(|m| {
            let e = hookline_core::Envelope::from_json(&m.data).unwrap();
            let id = serde_json::from_str::<Value>(e.payload.get()).unwrap()["id"]
                .as_i64()
                .unwrap();
            (e.topic, id)
        })
        .collect()
}

async fn watermark(world: &World) -> chrono::DateTime<chrono::Utc> {
    world
        .db
        .client()
        .await
        .query_one(
            "SELECT updated_at_min FROM reconcile_watermarks WHERE shop_domain = $1",
            &[&SHOP],
        )
        .await
        .unwrap()
        .get(0)
}

/// `minutes_ago` before the test's start, to the second (Shopify's precision).
fn at(minutes_ago: i64) -> chrono::DateTime<chrono::FixedOffset> {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| chrono::Utc::now().timestamp());
    chrono::DateTime::from_timestamp(start - minutes_ago * 60, 0)
        .unwrap()
        .fixed_offset()
}

#[tokio::test]
async fn a_failure_mid_way_skips_nothing_and_the_next_cycle_catches_up() {
    let world = World::new().await;
    let shopify = &world.erp.sandbox.state.shopify;
    // Twelve paid orders whose webhooks were lost, updated a minute apart — except the fifth
    // and sixth, which share their second and straddle the first page boundary.
    let ids: Vec<i64> = (0..12).map(|i| 71_000 + i).collect();
    for (i, id) in ids.iter().enumerate() {
        let minutes = 30 - i as i64 + i64::from(i >= 5);
        shopify.upsert_order(SHOP, generate_order(*id, true, at(minutes)));
    }
    // The second page fails, and so do its retries.
    shopify.fail_listing(2, 3);
    let poller = reconciler(
        &world,
        admin(world.erp.sandbox.shopify_admin_url(), ACCESS_TOKEN),
        5,
    )
    .await;

    let first = poller.run_cycle().await;
    let error = first.expect_err("the only shop failed");
    assert!(
        hookline_worker::failure::error_chain(&error).contains("unavailable after 3 attempts"),
        "{}",
        hookline_worker::failure::error_chain(&error)
    );
    let after_first = published(&world).await;
    assert_eq!(
        after_first.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        ids[..5],
        "page 1, in updated_at order"
    );
    assert_eq!(
        watermark(&world).await,
        at(26).with_timezone(&chrono::Utc),
        "the watermark stops at the last order handled"
    );

    let reports = poller.run_cycle().await.expect("the fault is over");
    assert_eq!(reports[0].1.published, 7, "{:?}", reports[0].1);
    let after_second = published(&world).await;
    let mut all: Vec<i64> = after_first
        .iter()
        .chain(&after_second)
        .map(|(_, id)| *id)
        .collect();
    all.sort();
    assert_eq!(all, ids, "every order published exactly once");
    assert!(after_second.iter().all(|(topic, _)| topic == "orders/paid"));
    assert_eq!(
        watermark(&world).await,
        at(20).with_timezone(&chrono::Utc),
        "and then to the newest"
    );
}

#[tokio::test]
async fn a_throttled_shop_is_waited_for_and_every_order_is_published_once() {
    let world = World::new().await;
    let shopify = &world.erp.sandbox.state.shopify;
    let ids: Vec<i64> = (0..8).map(|i| 72_000 + i).collect();
    for (i, id) in ids.iter().enumerate() {
        shopify.upsert_order(SHOP, generate_order(*id, true, at(20 - i as i64)));
    }
    // A small bucket, empty when the poller starts: an order query (requesting over 500
    // points) cannot fit until seconds later, and the poller does not know its cost yet.
    shopify.set_bucket(1000.0, 100.0);
    let client = admin(world.erp.sandbox.shopify_admin_url(), ACCESS_TOKEN);
    let poller = reconciler(&world, client.clone(), 3).await;
    shopify.drain_bucket(SHOP);
    let reports = poller.run_cycle().await.expect("throttling is waited out");
    assert_eq!(reports[0].1.published, 8);
    assert!(shopify.throttled() >= 1, "Shopify answered THROTTLED");
    let mut seen: Vec<i64> = published(&world).await.iter().map(|(_, id)| *id).collect();
    seen.sort();
    assert_eq!(seen, ids, "each once");
    let (bucket, _) = client.throttle(SHOP).expect("the bucket is known");
    assert_eq!(bucket.maximum_available, 1000.0);
    assert_eq!(bucket.restore_rate, 100.0);
}

/// A realistic refund of one unit of a generated order's line: net price plus 19 % tax.
fn refund_of(order: &Value, refund_id: i64) -> Value {
    let line = &order["line_items"][0];
    let net: rust_decimal::Decimal = line["price"].as_str().unwrap().parse().unwrap();
    let tax = (net * rust_decimal::Decimal::new(19, 2)).round_dp(2);
    json!({
        "id": refund_id,
        "order_id": order["id"],
        "created_at": order["updated_at"],
        "processed_at": order["updated_at"],
        "note": "zu groß",
        "refund_line_items": [{"quantity": 1, "subtotal": net.to_string(), "total_tax": tax.to_string(), "line_item": line}],
        "transactions": [{"kind": "refund", "status": "success", "amount": (net + tax).to_string(), "gateway": "shopify_payments"}],
        "order_adjustments": [],
    })
}

/// Paid, then refunded, and both webhooks lost: what the Admin API has is the order as it stands,
/// refund included, whose current figures no longer show what was sold. The orders domain
/// refuses to invoice that (`docs/order-maths.md`: refunded before it was invoiced) and a person
/// decides; nothing is invoiced or credited from figures that would count the refund twice.
#[tokio::test]
async fn an_order_paid_then_refunded_whose_webhooks_were_all_lost_is_left_to_a_person() {
    use hookline_core::envelope::amqp_header as h;
    use hookline_testkit::{header_text, wait_for_messages};
    let world = World::new().await;
    let sandbox = &world.erp.sandbox;
    let mut order = generate_order(73_001, true, at(5));
    let refund = refund_of(&order, 93_001);
    order["financial_status"] = json!("partially_refunded");
    order["refunds"] = json!([refund.clone()]);
    sandbox.state.shopify.upsert_order(SHOP, order.clone());
    let shops = format!("{SHOP}={ACCESS_TOKEN}");
    let admin = sandbox.shopify_admin_url();
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_RECONCILE_SHOPS", &shops),
            ("HOOKLINE_SHOPIFY_ADMIN_URL", &admin),
            ("HOOKLINE_RECONCILE_INTERVAL_SECS", "1"),
            ("HOOKLINE_RECONCILE_LOOKBACK_SECS", "3600"),
            ("HOOKLINE_RETRY_INITIAL_MS", "200"),
        ])
        .await;
    let dead = wait_for_messages(&world.amqp, "hookline.orders.dlq", Duration::from_secs(60)).await;
    let reasons: Vec<(Option<String>, String)> = dead
        .iter()
        .map(|m| {
            (
                header_text(&m.properties, h::REASON),
                header_text(&m.properties, h::ERROR).unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(reason, error)| reason.as_deref() == Some("needs_review")
                && error.contains("refunded before it was invoiced")),
        "{reasons:?}"
    );
    assert!(
        world.regular_invoices().is_empty(),
        "no invoice from the current figures"
    );
    assert!(sandbox.state.sevdesk.credit_notes().is_empty());
    assert_eq!(sandbox.state.sevdesk.calls("saveInvoice"), 0);
}

#[tokio::test]
async fn an_order_that_keeps_failing_is_republished_once_not_every_cycle() {
    let world = World::new().await;
    let sandbox = &world.erp.sandbox;
    // Paid at Shopify, webhook lost, and its total does not add up: the republished event will be
    // dead-lettered (amount_mismatch), and the order stays behind.
    let mut broken = generate_order(80_001, true, at(1));
    broken["total_price"] = json!("1.00");
    sandbox.state.shopify.upsert_order(SHOP, broken);
    let shops = format!("{SHOP}={ACCESS_TOKEN}");
    let admin = sandbox.shopify_admin_url();
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_RECONCILE_SHOPS", &shops),
            ("HOOKLINE_SHOPIFY_ADMIN_URL", &admin),
            ("HOOKLINE_RECONCILE_INTERVAL_SECS", "1"),
        ])
        .await;
    let first = hookline_testkit::wait_for_messages(
        &world.amqp,
        "hookline.orders.dlq",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        hookline_testkit::header_text(&first[0].properties, "x-hookline-reason").as_deref(),
        Some("amount_mismatch")
    );
    // Several more cycles find the order behind; none republishes it within the hour.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        hookline_testkit::drain(&world.amqp, "hookline.orders.dlq")
            .await
            .is_empty(),
        "no copy per cycle"
    );
    assert!(sandbox.state.shopify.listing_calls() >= 3, "cycles did run");
}

#[tokio::test]
async fn a_refund_whose_webhook_was_lost_is_credited_and_one_that_arrived_is_not_credited_twice() {
    let world = World::new().await;
    let sandbox = &world.erp.sandbox;
    // Two paid orders, both delivered; each refunded once. The first refund's webhook arrives,
    // the second's is lost.
    for (i, id) in [(0, 81_001_i64), (1, 81_002)] {
        let mut order = generate_order(id, true, at(10 - i));
        world
            .publish(&envelope("orders/paid", SHOP, &order.to_string()))
            .await;
        let r = refund_of(&order, 91_000 + id);
        order["financial_status"] = json!("partially_refunded");
        order["refunds"] = json!([r.clone()]);
        sandbox.state.shopify.upsert_order(SHOP, order);
        if i == 0 {
            world
                .publish(&envelope("refunds/create", SHOP, &r.to_string()))
                .await;
        }
    }
    let shops = format!("{SHOP}={ACCESS_TOKEN}");
    let admin = sandbox.shopify_admin_url();
    let _worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_RECONCILE_SHOPS", &shops),
            ("HOOKLINE_SHOPIFY_ADMIN_URL", &admin),
            ("HOOKLINE_RECONCILE_INTERVAL_SECS", "1"),
            ("HOOKLINE_RECONCILE_LOOKBACK_SECS", "3600"),
            ("HOOKLINE_RETRY_INITIAL_MS", "200"),
        ])
        .await;
    assert_eq!(
        world
            .db
            .wait_count(
                "refund_sync WHERE state = 'refund_booked'",
                2,
                Duration::from_secs(60)
            )
            .await,
        2,
        "both refunds credited, the lost one through reconciliation"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    assert_eq!(sandbox.state.sevdesk.credit_notes().len(), 2);
    assert_eq!(sandbox.state.sevdesk.calls("saveCreditNote"), 2);
    assert_eq!(sandbox.state.sevdesk.calls("saveInvoice"), 2);
}

const PAID: &str = include_str!("../../../../fixtures/shopify/orders-paid.json");
const REFUND: &str = include_str!("../../../../fixtures/shopify/refunds-create.json");
const GQL_ORDER: &str = include_str!("../../../../fixtures/shopify/graphql/order-1001.json");
const GQL_REFUND: &str = include_str!("../../../../fixtures/shopify/graphql/refund-929361462.json");

const PLAIN: TaxSettings = TaxSettings {
    small_business: false,
    oss: false,
};

/// What the orders domain makes of an `orders/paid` payload: parsed as a delivery is, then its
/// invoice and contact.
fn invoice_of(payload: &str) -> (mapping::InvoiceDraft, String) {
    let order: Order =
        hookline_worker::schema::parse(&envelope("orders/paid", SHOP, payload)).unwrap();
    let contact = format!(
        "{:?}",
        hookline_worker::domains::orders::contact_for(&order)
    );
    (mapping::invoice_for(&order, PLAIN).unwrap(), contact)
}

fn credit_note_of(payload: &str) -> mapping::CreditNoteDraft {
    let refund: Refund =
        hookline_worker::schema::parse(&envelope("refunds/create", SHOP, payload)).unwrap();
    mapping::credit_note_for("#1001", "EUR", &Regime::Domestic, &refund)
        .unwrap()
        .unwrap()
}

/// One parser: the webhook and the GraphQL order of the same sale, each through the orders
/// domain's own parsing and mapping, give the same invoice (treatment, positions, total) and the
/// same contact; the same for the refund's credit note. Both for Shopify's GraphQL shape as
/// documented (the fixtures) and as the sandbox answers the worker's queries over HTTP.
#[tokio::test]
async fn a_graphql_order_is_invoiced_exactly_like_its_webhook() {
    let (from_webhook, contact) = invoice_of(PAID);
    let node: OrderNode = serde_json::from_str(GQL_ORDER).unwrap();
    let mapped = gql::order_payload(&node, &node.line_items.nodes).unwrap();
    let (from_graphql, graphql_contact) = invoice_of(&mapped.to_string());
    assert_eq!(from_graphql, from_webhook);
    assert_eq!(graphql_contact, contact);
    assert_eq!(from_graphql.total, "119.00".parse().unwrap());

    let refund_node = serde_json::from_str(GQL_REFUND).unwrap();
    let mapped = gql::refund_payload(&refund_node).unwrap();
    assert_eq!(credit_note_of(&mapped.to_string()), credit_note_of(REFUND));

    // The same through the sandbox, which answers only the fields the query selects.
    let sandbox = hookline_sandbox::Sandbox::spawn("127.0.0.1:0").unwrap();
    // The order as it was sold (with its refund its current figures no longer show the sale,
    // and the domain would rightly refuse to invoice it); the refund is stored further down.
    let mut stored: Value = serde_json::from_str(PAID).unwrap();
    sandbox.state.shopify.upsert_order(SHOP, stored.clone());
    let client = admin(sandbox.shopify_admin_url(), ACCESS_TOKEN);
    let answer: OrderAnswer = client
        .query(
            SHOP,
            gql::ORDER,
            json!({"id": "gid://shopify/Order/820982911946154508", "lines": 1}),
        )
        .await
        .unwrap();
    let first = answer.order.unwrap();
    assert!(
        first.line_items.page_info.has_next_page,
        "one line per query"
    );
    let cursor = first.line_items.page_info.end_cursor.clone();
    let rest: OrderAnswer = client
        .query(
            SHOP,
            gql::ORDER,
            json!({"id": "gid://shopify/Order/820982911946154508", "lines": 1, "linesAfter": cursor}),
        )
        .await
        .unwrap();
    let lines: Vec<_> = first
        .line_items
        .nodes
        .iter()
        .chain(&rest.order.unwrap().line_items.nodes)
        .cloned()
        .collect();
    let mapped = gql::order_payload(&first, &lines).unwrap();
    assert_eq!(invoice_of(&mapped.to_string()).0, from_webhook);
    stored["refunds"] = json!([serde_json::from_str::<Value>(REFUND).unwrap()]);
    sandbox.state.shopify.upsert_order(SHOP, stored);
    let answer: RefundAnswer = client
        .query(
            SHOP,
            gql::REFUND,
            json!({"id": "gid://shopify/Refund/929361462"}),
        )
        .await
        .unwrap();
    let mapped = gql::refund_payload(&answer.refund.unwrap()).unwrap();
    assert_eq!(credit_note_of(&mapped.to_string()), credit_note_of(REFUND));
    sandbox.stop().await;
}

/// Corpus orders that need more than the plain figures: an edit, gift cards sold and redeemed,
/// two discounts on a line, another currency, a tip, a removed shipping line.
const CORPUS: [(&str, &str); 9] = [
    (
        "10-edit-removed-line",
        include_str!("../../../../fixtures/shopify/corpus/10-edit-removed-line.json"),
    ),
    (
        "12-net-two-discounts-on-one-line",
        include_str!("../../../../fixtures/shopify/corpus/12-net-two-discounts-on-one-line.json"),
    ),
    (
        "13-edit-removed-shipping",
        include_str!("../../../../fixtures/shopify/corpus/13-edit-removed-shipping.json"),
    ),
    (
        "14-gift-card-sold",
        include_str!("../../../../fixtures/shopify/corpus/14-gift-card-sold.json"),
    ),
    (
        "17-gift-card-and-card-with-transactions",
        include_str!(
            "../../../../fixtures/shopify/corpus/17-gift-card-and-card-with-transactions.json"
        ),
    ),
    (
        "19-tip",
        include_str!("../../../../fixtures/shopify/corpus/19-tip.json"),
    ),
    (
        "23-presentment-chf-export",
        include_str!("../../../../fixtures/shopify/corpus/23-presentment-chf-export.json"),
    ),
    (
        "24-presentment-usd-domestic",
        include_str!("../../../../fixtures/shopify/corpus/24-presentment-usd-domestic.json"),
    ),
    (
        "28-pos-cash-rounding-up",
        include_str!("../../../../fixtures/shopify/corpus/28-pos-cash-rounding-up.json"),
    ),
];

/// What the orders domain decides about an `orders/paid` payload.
type Outcome = (
    Result<mapping::InvoiceDraft, String>,
    Result<mapping::GatewayMoney, String>,
);

/// Everything the orders domain decides about an `orders/paid` payload: the invoice (or why
/// not) and the money booked on it (or why not, as its dead-letter reason). Compared by value:
/// `35.7` is `35.70`, and a time in UTC is the same time with its offset.
fn outcome_of(payload: &str, settings: TaxSettings) -> Outcome {
    let order: Order =
        hookline_worker::schema::parse(&envelope("orders/paid", SHOP, payload)).unwrap();
    (
        mapping::invoice_for(&order, settings).map_err(|e| e.reason().to_owned()),
        mapping::gateway_money(&order).map_err(|e| e.reason().to_owned()),
    )
}

/// One parser, for the fields beyond the plain figures: each corpus order, stored in the
/// sandbox as its webhook and read back through the worker's `ORDER` query, comes out of the
/// orders domain exactly as its webhook does — the same invoice or the same dead-letter reason,
/// the same money booked and gift-card split.
#[tokio::test]
async fn corpus_orders_read_through_graphql_map_like_their_webhooks() {
    let sandbox = hookline_sandbox::Sandbox::spawn("127.0.0.1:0").unwrap();
    let client = admin(sandbox.shopify_admin_url(), ACCESS_TOKEN);
    for (name, text) in CORPUS {
        let mut webhook: Value = serde_json::from_str(text).unwrap();
        let expected = webhook.as_object_mut().unwrap().remove("expected").unwrap();
        let flag = |f: &str| expected["settings"][f].as_bool().unwrap_or(false);
        let settings = TaxSettings {
            small_business: flag("small_business"),
            oss: flag("oss"),
        };
        sandbox.state.shopify.upsert_order(SHOP, webhook.clone());
        let answer: OrderAnswer = client
            .query(
                SHOP,
                gql::ORDER,
                json!({"id": webhook["admin_graphql_api_id"], "lines": gql::LINE_ITEMS_PER_QUERY}),
            )
            .await
            .unwrap();
        let node = answer.order.unwrap();
        let mapped = gql::order_payload(&node, &node.line_items.nodes).unwrap();
        let from_graphql = outcome_of(&mapped.to_string(), settings);
        let from_webhook = outcome_of(&webhook.to_string(), settings);
        assert_eq!(from_graphql, from_webhook, "{name}: {mapped:#}");
        match (expected["dead_letter"].as_str(), &from_graphql.0) {
            (Some(reason), Err(e)) => assert_eq!(e, reason, "{name}"),
            (None, Ok(invoice)) => {
                assert_eq!(
                    invoice.total,
                    expected["total"].as_str().unwrap().parse().unwrap(),
                    "{name}"
                );
                let money = from_graphql.1.as_ref().unwrap();
                assert_eq!(
                    money.amount,
                    expected["booked"].as_str().unwrap().parse().unwrap(),
                    "{name}"
                );
                assert_eq!(
                    money.gift_card,
                    expected["gift_card"].as_str().unwrap().parse().unwrap(),
                    "{name}"
                );
            }
            (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
    }
    sandbox.stop().await;
}

/// The worker's queries stay within Shopify's single-query cost limit at their page sizes.
#[test]
fn every_query_fits_the_single_query_cost_limit() {
    use hookline_sandbox::shopify::graphql::{parse, requested_cost};
    for (query, variables) in [
        (gql::LIST_ORDERS, json!({"first": 250})),
        (gql::ORDER, json!({"lines": gql::LINE_ITEMS_PER_QUERY})),
        (gql::REFUND, json!({})),
    ] {
        let cost = requested_cost(&parse(query).unwrap(), &variables);
        assert!(cost <= 1000.0, "{cost}: {query}");
    }
}

/// An Admin API that answers what it should not: each case is a clear, typed error.
#[tokio::test]
async fn unsupported_and_garbage_answers_are_clear_errors() {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let answers: HashMap<&'static str, (u16, &'static str)> = HashMap::from([
        ("html.example", (200, "<html>maintenance</html>")),
        ("wrong-shape.example", (200, r#"{"data": {"orders": 5}}"#)),
        (
            "denied.example",
            (
                200,
                r#"{"errors": [{"message": "Access denied for orders field. Required access: `read_orders` access scope.", "extensions": {"code": "ACCESS_DENIED"}}]}"#,
            ),
        ),
        ("empty.example", (200, r#"{"data": null}"#)),
        ("gone.example", (404, r#"{"errors": "Not Found"}"#)),
    ]);
    let answers = web::Data::new(answers);
    let server = HttpServer::new(move || {
        App::new().app_data(answers.clone()).route(
            "/shops/{shop}/admin/api/{version}/graphql.json",
            web::post().to(
                |path: web::Path<(String, String)>,
                 answers: web::Data<HashMap<&'static str, (u16, &'static str)>>| async move {
                    let (status, body) = answers
                        .get(path.0.as_str())
                        .copied()
                        .unwrap_or((500, "no case"));
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .content_type("application/json")
                        .body(body)
                },
            ),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let running = server.run();
    let handle = running.handle();
    tokio::spawn(running);
    let url = format!("http://127.0.0.1:{port}/shops/{{shop}}");
    let token = Secret::new("shpat_x");
    let shops = [
        "html.example",
        "wrong-shape.example",
        "denied.example",
        "empty.example",
        "gone.example",
    ];
    let client = AdminClient::new(
        Arc::new(static_tokens(shops.iter().map(|s| (*s, &token)))),
        admin_settings(url),
    )
    .unwrap();
    let ask = |shop: &'static str| {
        let client = &client;
        async move {
            client
                .query::<gql::OrdersPage>(shop, gql::LIST_ORDERS, json!({"first": 1, "query": ""}))
                .await
                .unwrap_err()
        }
    };
    assert!(
        matches!(ask("html.example").await, AdminError::Unreadable(m) if m.contains("maintenance"))
    );
    assert!(
        matches!(ask("wrong-shape.example").await, AdminError::Unreadable(m) if m.contains("orders"))
    );
    let denied = ask("denied.example").await;
    assert!(
        matches!(&denied, AdminError::GraphQl(_))
            && denied.to_string().contains("read_orders")
            && denied.to_string().contains("ACCESS_DENIED"),
        "{denied}"
    );
    assert!(
        matches!(ask("empty.example").await, AdminError::Unreadable(m) if m.contains("no data"))
    );
    assert!(matches!(
        ask("gone.example").await,
        AdminError::Http { status: 404, .. }
    ));
    handle.stop(false).await;

    // The sandbox refuses a query shape it does not play, and a token Shopify would refuse.
    let sandbox = hookline_sandbox::Sandbox::spawn("127.0.0.1:0").unwrap();
    let client = admin(sandbox.shopify_admin_url(), ACCESS_TOKEN);
    let unknown = client
        .query::<Value>(SHOP, "{ ordrs(first: 1) { nodes { id } } }", json!({}))
        .await
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("doesn't exist on type 'QueryRoot'"),
        "{unknown}"
    );
    let sorted = client
        .query::<Value>(
            SHOP,
            "{ orders(first: 1, sortKey: CREATED_AT) { nodes { id } } }",
            json!({}),
        )
        .await
        .unwrap_err();
    assert!(matches!(sorted, AdminError::GraphQl(_)), "{sorted}");
    let expensive = client
        .query::<Value>(
            SHOP,
            "{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }",
            json!({}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(expensive, AdminError::TooExpensive { .. }),
        "{expensive}"
    );
    let refused = admin(sandbox.shopify_admin_url(), "shpat_wrong")
        .query::<Value>(SHOP, gql::LIST_ORDERS, json!({"first": 1, "query": ""}))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AdminError::Unauthorized { .. }),
        "{refused}"
    );
    sandbox.stop().await;
}
