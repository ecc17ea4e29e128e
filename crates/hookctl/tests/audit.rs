//! `hookctl events`, `hookctl order show` and `hookctl replay` as an operator runs them, against
//! a worker running in this test (real broker, PostgreSQL, Redis; the sandbox plays sevDesk).

use std::collections::HashMap;
use std::process::Output;
use std::time::{Duration, Instant};

use hookline_core::Envelope;
use hookline_core::topology::{self, TopologySettings};
use hookline_testkit::{TestDatabase, TestRedis, TestVhost, envelope};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SHOP: &str = "example.myshopify.com";
const ORDER: i64 = 820982911946154508;

struct World {
    vhost: TestVhost,
    db: TestDatabase,
    _redis: TestRedis,
    sandbox: hookline_sandbox::Sandbox,
    stop: CancellationToken,
}

impl World {
    async fn start() -> Self {
        let vhost = TestVhost::create();
        let amqp = vhost.connect().await;
        let channel = amqp.create_channel().await.unwrap();
        topology::declare(&channel, &TopologySettings::default())
            .await
            .unwrap();
        let db = TestDatabase::create().await;
        let redis = TestRedis::new();
        let sandbox = hookline_sandbox::Sandbox::spawn("127.0.0.1:0").unwrap();
        let env: HashMap<&str, String> = HashMap::from([
            ("HOOKLINE_AMQP_URL", vhost.amqp_url()),
            ("HOOKLINE_DATABASE_URL", db.url()),
            ("HOOKLINE_REDIS_PREFIX", redis.prefix.clone()),
            ("HOOKLINE_ERP_URL", sandbox.erp_url()),
            ("HOOKLINE_SEVDESK_URL", sandbox.sevdesk_url()),
            ("HOOKLINE_WORKER_HTTP_ADDR", "127.0.0.1:0".into()),
            ("HOOKLINE_OUTBOX_RELAY", "false".into()),
            ("HOOKLINE_IDEMPOTENCY_DONE_TTL_SECS", "120".into()),
            ("HOOKLINE_SHUTDOWN_TIMEOUT_SECS", "5".into()),
            // One decision per delivery: the order's payment is booked at once rather than after
            // the customer's e-mail (docs/notifications.md), which would add a retry to the trail.
            ("HOOKLINE_NOTIFY_CHANNEL", "off".into()),
        ]);
        let settings =
            hookline_worker::settings::Settings::from_lookup(|k| env.get(k).cloned()).unwrap();
        let worker = hookline_worker::startup::Worker::build(settings)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(worker.run(stop.clone()));
        Self {
            vhost,
            db,
            _redis: redis,
            sandbox,
            stop,
        }
    }

    async fn publish(&self, e: &Envelope) {
        let amqp = self.vhost.connect().await;
        hookline_testkit::publish(&amqp, e).await;
        let _ = amqp.close(200, "published".into()).await;
    }

    /// Runs `hookctl` off the test's runtime, which serves the worker and sandbox meanwhile.
    async fn hookctl(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = [
            ("HOOKLINE_AMQP_URL", self.vhost.amqp_url()),
            ("HOOKLINE_DATABASE_URL", self.db.url()),
        ];
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_hookctl"))
                .args(args)
                .envs(env)
                .output()
                .expect("hookctl runs")
        })
        .await
        .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.hookctl(args).await;
        assert!(out.status.success(), "hookctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn events(&self, args: &[&str]) -> Vec<Value> {
        let args = [&["events", "--json"], args].concat();
        self.ok(&args)
            .await
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn wait(&self, rest: &str, n: i64) {
        let got = self.db.wait_count(rest, n, Duration::from_secs(30)).await;
        assert!(got >= n, "{rest}: {got} < {n}");
    }

    async fn stock(&self) -> Option<i64> {
        self.db
            .client()
            .await
            .query_opt(
                "SELECT version FROM warehouse_stock WHERE inventory_item_id = 7 AND location_id = 70",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn level() -> Envelope {
    envelope(
        "inventory_levels/update",
        SHOP,
        r#"{"inventory_item_id":7,"location_id":70,"available":3,"updated_at":"2026-11-23T10:00:00Z","admin_graphql_api_id":"gid://shopify/InventoryLevel/70?inventory_item_id=7"}"#,
    )
}

fn poisoned() -> Envelope {
    let mut o: Value =
        serde_json::from_str(include_str!("../../../fixtures/shopify/orders-paid.json")).unwrap();
    o["id"] = json!(2);
    o["total_price"] = json!("1.00");
    envelope("orders/paid", SHOP, &o.to_string())
}

#[tokio::test]
async fn an_operator_reads_the_trail_an_orders_history_and_replays_a_window() {
    let world = World::start().await;
    let paid = envelope(
        "orders/paid",
        SHOP,
        include_str!("../../../fixtures/shopify/orders-paid.json"),
    );
    let (level, poisoned) = (level(), poisoned());
    for e in [&paid, &level, &poisoned] {
        world.publish(e).await;
    }
    world.wait("audit_events", 3).await;

    // events: everything, then each filter.
    let all = world.events(&[]).await;
    assert_eq!(all.len(), 3, "{all:?}");
    let by_topic = world.events(&["--topic", "inventory_levels/update"]).await;
    assert_eq!(by_topic.len(), 1);
    assert_eq!(by_topic[0]["event_id"], level.event_id.to_string());
    assert_eq!(by_topic[0]["outcome"], "applied");
    let dead = world.events(&["--outcome", "dead_lettered"]).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["event_id"], poisoned.event_id.to_string());
    assert_eq!(dead[0]["reason"], "amount_mismatch");
    let of_order = world
        .events(&["--shop", SHOP, "--resource", &ORDER.to_string()])
        .await;
    assert_eq!(of_order.len(), 1);
    assert_eq!(of_order[0]["event_id"], paid.event_id.to_string());
    assert!(world.events(&["--until", "1h"]).await.is_empty());
    assert_eq!(
        world.events(&["--since", "1h", "--limit", "2"]).await.len(),
        2
    );
    assert!(
        !world
            .hookctl(&["events", "--outcome", "bogus"])
            .await
            .status
            .success()
    );
    let table = world.ok(&["events"]).await;
    assert!(table.contains("3 event(s)"), "{table}");

    // order show: the webhook, each state, each sevDesk call with the invoice it created.
    let invoice = world
        .sandbox
        .state
        .sevdesk
        .invoices()
        .into_iter()
        .find(|i| i.invoice_type == "RE")
        .expect("the invoice");
    let history = world.ok(&["order", "show", SHOP, &ORDER.to_string()]).await;
    for expected in [
        "webhook   orders/paid (webhook",
        "applied",
        "order     pending",
        "order     invoice_created",
        "order     payment_booked",
        "POST /Invoice/Factory/saveInvoice -> 201 ok",
        &format!("doc {} ({})", invoice.id, invoice.invoice_number),
        "/bookAmount -> 200 ok",
    ] {
        assert!(history.contains(expected), "{expected:?} in:\n{history}");
    }
    assert!(
        !world
            .hookctl(&["order", "show", SHOP, "1"])
            .await
            .status
            .success(),
        "an unknown order is an error"
    );

    // A dry run publishes nothing.
    let dry = world
        .ok(&["replay", "--since", "1h", "--dry-run", "--rate", "100/s"])
        .await;
    assert!(dry.contains("3 would publish; 2 still recorded"), "{dry}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        world
            .db
            .count("audit_events WHERE replay IS NOT NULL")
            .await,
        0
    );

    // A replay of the window: what was applied is answered as a duplicate; the dead letter is
    // tried again (and dead-lettered again).
    let replayed = world
        .ok(&["replay", "--since", "1h", "--rate", "100/s"])
        .await;
    assert!(
        replayed.contains("3 published; 2 still recorded"),
        "{replayed}"
    );
    world.wait("audit_events WHERE replay IS NOT NULL", 3).await;
    let copies = world
        .db
        .client()
        .await
        .query(
            "SELECT event_id, outcome FROM audit_events WHERE replay IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    for c in &copies {
        let (id, outcome): (uuid::Uuid, String) = (c.get(0), c.get(1));
        let expected = if id == poisoned.event_id {
            "dead_lettered"
        } else {
            "duplicate"
        };
        assert_eq!(outcome, expected, "{id}");
    }
    assert_eq!(world.stock().await, Some(1), "the stock row did not change");
    assert_eq!(
        world
            .sandbox
            .state
            .sevdesk
            .invoices()
            .iter()
            .filter(|i| i.invoice_type == "RE")
            .count(),
        1,
        "no second invoice"
    );

    // --reapply: after the stock row was lost, the event applies again with a derived key.
    world
        .db
        .client()
        .await
        .batch_execute("DELETE FROM warehouse_stock")
        .await
        .unwrap();
    let reapplied = world
        .ok(&[
            "replay",
            "--event",
            &level.event_id.to_string(),
            "--reapply",
        ])
        .await;
    assert!(
        reapplied.contains("1 published with fresh idempotency keys"),
        "{reapplied}"
    );
    world
        .wait(
            "audit_events WHERE outcome = 'applied' AND idempotency_key LIKE '%:reapply:replay-%'",
            1,
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while world.stock().await.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(world.stock().await, Some(1), "the stock row is back");
}
