//! Shopify's privacy webhooks: a customer's data erased from hookline's tables and dead letters,
//! a shop's data deleted, and a customer's data exported — each recorded without the data.

use std::time::{Duration, Instant};

use hookline_broker::archive;
use hookline_broker::dlq::{self, Filter};
use hookline_core::{Domain, Envelope};
use hookline_testkit::envelope;
use serde_json::{Value, json};

use crate::helpers::{SHOP, World};

const CUSTOMER: i64 = 115310627314723954;
const ORDER: i64 = 820982911946154508;
const OTHER_SHOP: &str = "other.myshopify.com";

/// The sample order, with another id and customer; `poisoned` makes its total not add up, so it
/// is dead-lettered (`amount_mismatch`).
fn order(shop: &str, id: i64, customer: i64, poisoned: bool) -> Envelope {
    let mut o: Value = serde_json::from_str(include_str!(
        "../../../../fixtures/shopify/orders-paid.json"
    ))
    .unwrap();
    o["id"] = json!(id);
    o["name"] = json!(format!("#{}", id % 100_000));
    o["customer"]["id"] = json!(customer);
    if customer != CUSTOMER {
        o["email"] = json!(format!("someone{customer}@example.com"));
        o["customer"]["email"] = o["email"].clone();
    }
    if poisoned {
        o["total_price"] = json!("1.00");
    }
    envelope("orders/paid", shop, &o.to_string())
}

fn request(topic: &str, shop: &str, body: &str) -> Envelope {
    envelope(topic, shop, &body.replace("example.myshopify.com", shop))
}

fn orders_dlq() -> Filter {
    Filter {
        domain: Some(Domain::Orders),
        ..Filter::default()
    }
}

async fn wait_dead_letters(world: &World, n: usize) -> Vec<dlq::DeadLetter> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = dlq::list(&world.amqp, &orders_dlq()).await.unwrap();
        if listed.len() >= n || Instant::now() > deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn action(world: &World, topic: &str) -> Value {
    let sql = format!("compliance_actions WHERE topic = '{topic}'");
    assert_eq!(
        world.db.wait_count(&sql, 1, Duration::from_secs(20)).await,
        1,
        "{topic} recorded once"
    );
    world
        .db
        .client()
        .await
        .query_one(
            "SELECT summary FROM compliance_actions WHERE topic = $1",
            &[&topic],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_customer_redact_erases_the_customer_from_tables_and_dead_letters_and_nothing_else() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    // A booked order of the customer; two of their orders dead-lettered, one of them archived;
    // a dead letter of another customer.
    world.publish(&order(SHOP, ORDER, CUSTOMER, false)).await;
    let archived = order(SHOP, 2, CUSTOMER, true);
    world.publish(&archived).await;
    world.publish(&order(SHOP, 3, CUSTOMER, true)).await;
    let unrelated = order(SHOP, 4, 777, true);
    world.publish(&unrelated).await;
    assert_eq!(wait_dead_letters(&world, 3).await.len(), 3);
    let db = world.db.client().await;
    archive::archive(
        &world.amqp,
        &db,
        &Filter {
            event_ids: vec![archived.event_id.to_string()],
            ..Filter::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        world
            .db
            .wait_count(
                "order_sync WHERE state = 'payment_booked'",
                1,
                Duration::from_secs(20)
            )
            .await,
        1
    );

    let redact = request(
        "customers/redact",
        SHOP,
        include_str!("../../../../fixtures/shopify/customers-redact.json"),
    );
    world.publish(&redact).await;
    let summary = action(&world, "customers/redact").await;
    assert_eq!(summary["order_sync_rows_redacted"], 1);
    assert_eq!(summary["archived_dead_letters_erased"], 1);
    assert_eq!(summary["queued_dead_letters_erased"], 1);

    let row = db
        .query_one(
            "SELECT order_name, contact_id, redacted_at IS NOT NULL FROM order_sync WHERE order_id = $1",
            &[&ORDER],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert!(row.get::<_, bool>(2));
    let archive_rows = db
        .query(
            "SELECT reason, body IS NULL AND payload IS NULL AND redacted_at IS NOT NULL FROM dead_letter_archive",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        archive_rows.len(),
        2,
        "the archived one, and the queued one taken out"
    );
    assert!(
        archive_rows
            .iter()
            .all(|r| r.get::<_, bool>(1) && r.get::<_, String>(0) == "amount_mismatch"),
        "erased, the reason kept"
    );
    let left = dlq::list(&world.amqp, &orders_dlq()).await.unwrap();
    assert_eq!(left.len(), 1, "the other customer's dead letter stays");
    assert_eq!(left[0].event_id, unrelated.event_id.to_string());

    // Shopify's retry of the same request changes nothing and records nothing more.
    world.publish(&redact).await;
    world
        .wait_queue_empty("hookline.compliance", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        world
            .db
            .wait_count("compliance_actions", 1, Duration::ZERO)
            .await,
        1
    );
}

#[tokio::test]
async fn a_data_request_exports_what_hookline_holds_and_leaves_it_in_place() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    world.publish(&order(SHOP, ORDER, CUSTOMER, false)).await;
    let dead = order(SHOP, 5, CUSTOMER, true);
    world.publish(&dead).await;
    world.publish(&order(SHOP, 6, 777, true)).await;
    assert_eq!(wait_dead_letters(&world, 2).await.len(), 2);
    world
        .db
        .wait_count(
            "order_sync WHERE state = 'payment_booked'",
            1,
            Duration::from_secs(20),
        )
        .await;

    world
        .publish(&request(
            "customers/data_request",
            SHOP,
            include_str!("../../../../fixtures/shopify/customers-data-request.json"),
        ))
        .await;
    let summary = action(&world, "customers/data_request").await;
    assert_eq!(
        summary,
        json!({"orders": 1, "refunds": 0, "dead_letters_archived": 0, "dead_letters_queued": 1})
    );
    let export: Value = world
        .db
        .client()
        .await
        .query_one(
            "SELECT export FROM data_request_exports WHERE shop_domain = $1 AND request_id = '9999'",
            &[&SHOP],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(export["customer_id"], CUSTOMER);
    assert_eq!(export["orders"][0]["order_id"], ORDER);
    assert_eq!(export["orders"][0]["sync_state"], "payment_booked");
    assert_eq!(
        export["dead_letters_queued"][0]["event_id"],
        dead.event_id.to_string()
    );
    assert_eq!(
        export["dead_letters_queued"][0]["payload"]["customer"]["id"],
        CUSTOMER
    );
    assert_eq!(
        dlq::list(&world.amqp, &orders_dlq()).await.unwrap().len(),
        2,
        "an export takes nothing away"
    );
}

#[tokio::test]
async fn a_shop_redact_deletes_that_shops_data_and_only_that_shops() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    for shop in [SHOP, OTHER_SHOP] {
        world.publish(&order(shop, ORDER, CUSTOMER, false)).await;
        world.publish(&order(shop, 7, CUSTOMER, true)).await;
    }
    let dead = wait_dead_letters(&world, 2).await;
    assert_eq!(
        dead.len(),
        2,
        "{:#?}",
        dead.iter()
            .map(|d| (&d.reason, &d.last_error))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        world
            .db
            .wait_count(
                "order_sync WHERE state = 'payment_booked'",
                2,
                Duration::from_secs(20)
            )
            .await,
        2
    );

    world
        .publish(&request(
            "shop/redact",
            SHOP,
            include_str!("../../../../fixtures/shopify/shop-redact.json"),
        ))
        .await;
    let summary = action(&world, "shop/redact").await;
    // The booked order, and the poisoned one (recorded before its total was found wrong).
    assert_eq!(summary["order_sync_deleted"], 2);
    assert_eq!(summary["queued_dead_letters_deleted"], 1);
    let db = world.db.client().await;
    for (table, ours, theirs) in [
        ("order_sync", 0, 2),
        // The other shop's paid order; ours is only the redact request itself.
        ("processed_events", 1, 1),
    ] {
        let count = |shop: &str| {
            let sql = format!("SELECT count(*) FROM {table} WHERE shop_domain = $1");
            let shop = shop.to_owned();
            let db = &db;
            async move { db.query_one(&sql, &[&shop]).await.unwrap().get::<_, i64>(0) }
        };
        assert_eq!(count(SHOP).await, ours, "{table} of the redacted shop");
        assert_eq!(count(OTHER_SHOP).await, theirs, "{table} of the other shop");
    }
    let left = dlq::list(&world.amqp, &orders_dlq()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].shop, OTHER_SHOP);
}

fn compliance_dlq() -> Filter {
    Filter {
        domain: Some(Domain::Compliance),
        ..Filter::default()
    }
}

async fn wait_compliance_dead_letters(world: &World, n: usize) -> Vec<dlq::DeadLetter> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = dlq::list(&world.amqp, &compliance_dlq()).await.unwrap();
        if listed.len() >= n || Instant::now() > deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn relabelled_privacy_requests_are_dead_lettered_and_erase_nothing() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    world.publish(&order(SHOP, ORDER, CUSTOMER, false)).await;
    world.publish(&order(SHOP, 8, CUSTOMER, true)).await;
    assert_eq!(wait_dead_letters(&world, 1).await.len(), 1);
    assert_eq!(
        world
            .db
            .wait_count(
                "order_sync WHERE state = 'payment_booked'",
                1,
                Duration::from_secs(20)
            )
            .await,
        1
    );

    let customer_redact = include_str!("../../../../fixtures/shopify/customers-redact.json");
    let data_request = include_str!("../../../../fixtures/shopify/customers-data-request.json");
    let shop_redact = include_str!("../../../../fixtures/shopify/shop-redact.json");
    let relabelled = [
        // A customer's erasure re-sent as the shop's: it would delete the whole shop.
        request("shop/redact", SHOP, customer_redact),
        // A data request re-sent as an erasure.
        request("customers/redact", SHOP, data_request),
        // A shop's erasure re-sent as a customer's.
        request("customers/redact", SHOP, shop_redact),
        // Another shop's signed request, sent with our shop's header.
        envelope(
            "shop/redact",
            SHOP,
            &shop_redact.replace("example.myshopify.com", OTHER_SHOP),
        ),
        envelope(
            "customers/redact",
            SHOP,
            &customer_redact.replace("example.myshopify.com", OTHER_SHOP),
        ),
    ];
    for e in &relabelled {
        world.publish(e).await;
    }
    let dead = wait_compliance_dead_letters(&world, relabelled.len()).await;
    assert_eq!(dead.len(), relabelled.len());
    assert!(
        dead.iter().all(|d| d.reason == "relabelled"),
        "{:?}",
        dead.iter()
            .map(|d| (&d.topic, &d.reason, &d.last_error))
            .collect::<Vec<_>>()
    );
    assert!(
        dead.iter().all(|d| d.last_error.contains("relabelled")),
        "the reason is spelled out"
    );
    let db = world.db.client().await;
    let row = db
        .query_one(
            "SELECT order_name IS NOT NULL, redacted_at IS NULL FROM order_sync WHERE order_id = $1",
            &[&ORDER],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1), "not erased");
    assert_eq!(world.db.count("order_sync").await, 2, "the shop kept");
    assert_eq!(world.db.count("compliance_actions").await, 0);
    assert_eq!(
        dlq::list(&world.amqp, &orders_dlq()).await.unwrap().len(),
        1,
        "the shop's dead letter kept"
    );
}

#[tokio::test]
async fn a_customer_redact_with_only_an_email_erases_what_matches_the_email() {
    let world = World::new().await;
    let _worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    // Two dead letters with the customer's e-mail (one archived), one of somebody else's.
    let archived = order(SHOP, 11, CUSTOMER, true);
    world.publish(&archived).await;
    world.publish(&order(SHOP, 12, CUSTOMER, true)).await;
    let unrelated = order(SHOP, 13, 777, true);
    world.publish(&unrelated).await;
    assert_eq!(wait_dead_letters(&world, 3).await.len(), 3);
    let db = world.db.client().await;
    archive::archive(
        &world.amqp,
        &db,
        &Filter {
            event_ids: vec![archived.event_id.to_string()],
            ..Filter::default()
        },
    )
    .await
    .unwrap();
    // An earlier export about the customer holds their data too.
    world
        .publish(&request(
            "customers/data_request",
            SHOP,
            include_str!("../../../../fixtures/shopify/customers-data-request.json"),
        ))
        .await;
    action(&world, "customers/data_request").await;
    assert_eq!(world.db.count("data_request_exports").await, 1);

    // Shopify's documented shape when it knows only the e-mail: no customer id.
    let redact = request(
        "customers/redact",
        SHOP,
        r#"{"shop_id":954889,"shop_domain":"example.myshopify.com","customer":{"email":"JON@example.com"},"orders_to_redact":[]}"#,
    );
    world.publish(&redact).await;
    let summary = action(&world, "customers/redact").await;
    assert_eq!(summary["archived_dead_letters_erased"], 1, "{summary}");
    assert_eq!(summary["queued_dead_letters_erased"], 1, "{summary}");
    assert_eq!(summary["data_request_exports_deleted"], 1, "{summary}");
    assert_eq!(summary["matched_by"], "email");
    let customer_id: Option<i64> = db
        .query_one(
            "SELECT customer_id FROM compliance_actions WHERE topic = 'customers/redact'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(customer_id, None);
    assert_eq!(
        world
            .db
            .count("dead_letter_archive WHERE payload IS NOT NULL OR body IS NOT NULL")
            .await,
        0,
        "the archived one erased, the queued one archived without its data"
    );
    assert_eq!(world.db.count("data_request_exports").await, 0);
    let left = dlq::list(&world.amqp, &orders_dlq()).await.unwrap();
    assert_eq!(left.len(), 1, "the other customer's dead letter stays");
    assert_eq!(left[0].event_id, unrelated.event_id.to_string());
}
