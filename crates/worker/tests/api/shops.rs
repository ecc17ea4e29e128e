//! Several shops in one worker: the shops file gives each shop its sevDesk account and Admin API
//! credentials; a shop without an account is not invoiced; single-shop settings beside the file
//! are refused; `app/uninstalled` stops a shop's polling until it comes back, and `shop/redact`
//! removes what is left of it, its stored tokens included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_core::topology::TopologySettings;
use hookline_sandbox::sevdesk::DEFAULT_TOKEN;
use hookline_sandbox::shopify::{ACCESS_TOKEN, generate_order};
use hookline_sandbox::shopify_oauth::{CLIENT_ID, CLIENT_SECRET};
use hookline_testkit::envelope;
use hookline_worker::reconcile::{ReconcileSettings, Reconciler};
use hookline_worker::shopify::{AdminClient, AdminSettings, Credentials, Tokens};

use crate::helpers::{ORDERS_ONLY, SHOP, World};

const SECOND: &str = "second.myshopify.com";
const TOKEN_B: &str = "sevdesk-token-of-the-second-shop";

/// A shops file in a directory of its own, removed with it.
struct ShopsFile(std::path::PathBuf);

impl ShopsFile {
    fn new(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hookline-shops-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("shops.toml"), text).unwrap();
        Self(dir)
    }

    fn path(&self) -> String {
        self.0.join("shops.toml").display().to_string()
    }
}

impl Drop for ShopsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sample `orders/paid` of `shop`.
fn paid_of(shop: &str) -> hookline_core::Envelope {
    envelope(
        "orders/paid",
        shop,
        include_str!("../../../../fixtures/shopify/orders-paid.json"),
    )
}

async fn state_of(world: &World, shop: &str, order_id: i64, state: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current: Option<String> = world
            .db
            .client()
            .await
            .query_opt(
                "SELECT state FROM order_sync WHERE shop_domain = $1 AND order_id = $2",
                &[&shop, &order_id],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        if current.as_deref() == Some(state) || Instant::now() > deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn order_id() -> i64 {
    let paid: serde_json::Value = serde_json::from_str(include_str!(
        "../../../../fixtures/shopify/orders-paid.json"
    ))
    .unwrap();
    paid["id"].as_i64().unwrap()
}

async fn count(world: &World, sql: &str) -> i64 {
    world
        .db
        .client()
        .await
        .query_one(&format!("SELECT count(*) FROM {sql}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn each_shop_is_invoiced_in_its_own_sevdesk_account() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    sevdesk.add_account(TOKEN_B);
    let file = ShopsFile::new(&format!(
        r#"
[[shop]]
domain = "{SHOP}"
webhook_secrets = ["a"]
[shop.sevdesk]
token = "{DEFAULT_TOKEN}"

[[shop]]
domain = "{SECOND}"
webhook_secrets = ["b"]
[shop.sevdesk]
token = "{TOKEN_B}"
"#
    ));
    let mut extra = ORDERS_ONLY.to_vec();
    let path = file.path();
    extra.push(("HOOKLINE_SHOPS_FILE", &path));
    let worker = world.spawn_worker(&extra).await;
    world.publish(&paid_of(SHOP)).await;
    world.publish(&paid_of(SECOND)).await;
    let id = order_id();
    for shop in [SHOP, SECOND] {
        assert_eq!(
            state_of(&world, shop, id, "payment_booked")
                .await
                .as_deref(),
            Some("payment_booked"),
            "{shop}"
        );
    }
    worker.stop().await;

    let regular = |invoices: Vec<hookline_sandbox::sevdesk::Invoice>| {
        invoices
            .into_iter()
            .filter(|i| i.invoice_type == "RE")
            .map(|i| i.id)
            .collect::<Vec<_>>()
    };
    let in_a = regular(sevdesk.invoices());
    let in_b = regular(sevdesk.as_account(TOKEN_B, || sevdesk.invoices()));
    assert_eq!(in_a.len(), 1, "shop A's invoice in account A: {in_a:?}");
    assert_eq!(in_b.len(), 1, "shop B's invoice in account B: {in_b:?}");
    assert_ne!(in_a, in_b);
    assert_eq!(sevdesk.contacts().len(), 1, "each account its own contact");
    assert_eq!(sevdesk.as_account(TOKEN_B, || sevdesk.contacts()).len(), 1);
    // Each order_sync row names the invoice of its own account.
    let invoice_of = |shop: &'static str| {
        let world = &world;
        async move {
            world
                .db
                .client()
                .await
                .query_one(
                    "SELECT invoice_id FROM order_sync WHERE shop_domain = $1",
                    &[&shop],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(invoice_of(SHOP).await, in_a[0]);
    assert_eq!(invoice_of(SECOND).await, in_b[0]);
}

#[tokio::test]
async fn a_shop_without_a_sevdesk_account_is_dead_lettered_shop_not_configured() {
    let world = World::new().await;
    let file = ShopsFile::new(&format!(
        r#"
[[shop]]
domain = "{SHOP}"
webhook_secrets = ["a"]
[shop.sevdesk]
token = "{DEFAULT_TOKEN}"

[[shop]]
domain = "{SECOND}"
webhook_secrets = ["b"]
"#
    ));
    let mut extra = ORDERS_ONLY.to_vec();
    let path = file.path();
    extra.push(("HOOKLINE_SHOPS_FILE", &path));
    let worker = world.spawn_worker(&extra).await;
    world.publish(&paid_of(SECOND)).await;
    let dead = hookline_testkit::wait_for_messages(
        &world.amqp,
        "hookline.orders.dlq",
        Duration::from_secs(20),
    )
    .await;
    worker.stop().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        hookline_testkit::header_text(&dead[0].properties, "x-hookline-reason").as_deref(),
        Some("shop_not_configured")
    );
    let error =
        hookline_testkit::header_text(&dead[0].properties, "x-hookline-error").unwrap_or_default();
    assert!(
        error.contains(SECOND) && error.contains("[shop.sevdesk]"),
        "{error}"
    );
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    assert_eq!(sevdesk.calls("saveInvoice"), 0);
    assert_eq!(sevdesk.calls("createContact"), 0);
    assert_eq!(count(&world, "order_sync").await, 0, "nothing recorded");
}

#[tokio::test]
async fn the_shops_file_beside_a_single_shop_setting_stops_the_worker_with_what_to_fix() {
    let world = World::new().await;
    let file = ShopsFile::new(&format!(
        "[[shop]]\ndomain = \"{SHOP}\"\nwebhook_secrets = [\"a\"]\n"
    ));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
        .envs(world.env(&[
            ("HOOKLINE_SHOPS_FILE", &file.path()),
            ("HOOKLINE_RECONCILE_SHOPS", &format!("{SHOP}=shpat_x")),
        ]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not stop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("HOOKLINE_RECONCILE_SHOPS is set together with HOOKLINE_SHOPS_FILE")
            && stderr.contains("[shop.admin] token"),
        "{stderr}"
    );
    assert!(!stderr.contains("shpat_x"), "no secret shows: {stderr}");
}

#[tokio::test]
async fn a_client_credentials_shop_of_the_file_is_reconciled() {
    let world = World::new().await;
    let sandbox = &world.erp.sandbox;
    const SHOP_CC: &str = "dev-dashboard.myshopify.com";
    let updated = (chrono::Utc::now() - chrono::Duration::minutes(5)).fixed_offset();
    sandbox
        .state
        .shopify
        .upsert_order(SHOP_CC, generate_order(88_001, true, updated));
    let file = ShopsFile::new(&format!(
        r#"
[[shop]]
domain = "{SHOP_CC}"
webhook_secrets = ["a"]
[shop.admin]
client_id = "{CLIENT_ID}"
client_secret_file = "client-secret"
[shop.sevdesk]
token = "{DEFAULT_TOKEN}"
"#
    ));
    // Secrets beside the file, as a mounted Kubernetes secret.
    std::fs::write(file.0.join("client-secret"), format!("{CLIENT_SECRET}\n")).unwrap();
    let admin = sandbox.shopify_admin_url();
    let path = file.path();
    let worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "orders"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_SHOPS_FILE", &path),
            ("HOOKLINE_SHOPIFY_ADMIN_URL", &admin),
            ("HOOKLINE_RECONCILE_INTERVAL_SECS", "1"),
        ])
        .await;
    let state = state_of(&world, SHOP_CC, 88_001, "payment_booked").await;
    worker.stop().await;
    assert_eq!(state.as_deref(), Some("payment_booked"));
    assert!(
        sandbox.state.shopify_oauth.grants().client_credentials >= 1,
        "the token came from the client-credentials grant"
    );
    assert!(sandbox.state.shopify.listing_calls() >= 1);
}

/// A poller over [`SHOP`] with a static token, driven one cycle at a time.
async fn poller(world: &World) -> Reconciler {
    hookline_worker::startup::migrate(&world.db.url())
        .await
        .unwrap();
    let mut tokens = Tokens::new();
    tokens.insert(
        SHOP,
        Credentials::Static(hookline_core::config::Secret::new(ACCESS_TOKEN)),
    );
    let admin = Arc::new(
        AdminClient::new(
            Arc::new(tokens),
            AdminSettings {
                attempts: 2,
                backoff: Duration::from_millis(20),
                ..AdminSettings::new(world.erp.sandbox.shopify_admin_url(), "2026-07")
            },
        )
        .unwrap(),
    );
    Reconciler::new(
        hookline_worker::startup::pool(&world.db.url(), 2).unwrap(),
        admin,
        ReconcileSettings {
            shops: vec![],
            interval: Duration::from_secs(3600),
            overlap: Duration::ZERO,
            lookback: Duration::from_secs(3600),
            admin_url: world.erp.sandbox.shopify_admin_url(),
            api_version: "2026-07".into(),
            page_limit: 50,
            republish_after: Duration::from_secs(3600),
        },
        world.vhost.amqp_url(),
        TopologySettings::default(),
    )
}

async fn wait_count(world: &World, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(world, sql).await != n {
        assert!(Instant::now() < deadline, "{sql}: never {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_uninstalled_shop_is_not_polled_keeps_its_data_until_shop_redact_and_comes_back_on_its_next_webhook()
 {
    let world = World::new().await;
    // An unpaid order: listed, not behind, so the watermark moves over it.
    let updated = (chrono::Utc::now() - chrono::Duration::minutes(5)).fixed_offset();
    world
        .erp
        .sandbox
        .state
        .shopify
        .upsert_order(SHOP, generate_order(71_500, false, updated));
    let poller = poller(&world).await;
    let listings = || world.erp.sandbox.state.shopify.listing_calls();

    let first = poller.run_cycle().await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(!first[0].1.uninstalled);
    let polled = listings();
    assert!(polled >= 1);
    assert_eq!(count(&world, "reconcile_watermarks").await, 1);

    let worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "inventory,compliance"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
        ])
        .await;
    world
        .publish(&envelope(
            "app/uninstalled",
            SHOP,
            include_str!("../../../../fixtures/shopify/app-uninstalled.json"),
        ))
        .await;
    wait_count(&world, "shop_uninstalls", 1).await;
    let cycle = poller.run_cycle().await.unwrap();
    assert!(cycle[0].1.uninstalled, "{cycle:?}");
    assert_eq!(listings(), polled, "an uninstalled shop is not polled");
    assert_eq!(
        count(&world, "reconcile_watermarks").await,
        1,
        "its data stays"
    );

    // The shop installed the app again: its next webhook clears the mark.
    world
        .publish(&crate::helpers::level_envelope(
            4_001,
            9,
            3,
            "2026-12-01T10:00:00+01:00",
        ))
        .await;
    wait_count(&world, "shop_uninstalls", 0).await;
    let cycle = poller.run_cycle().await.unwrap();
    assert!(!cycle[0].1.uninstalled);
    assert!(listings() > polled, "polled again");

    // Uninstalled again, then erased 48 h later: the mark and the stored tokens go too.
    world
        .publish(&envelope(
            "app/uninstalled",
            SHOP,
            include_str!("../../../../fixtures/shopify/app-uninstalled.json"),
        ))
        .await;
    wait_count(&world, "shop_uninstalls", 1).await;
    world
        .db
        .client()
        .await
        .execute(
            "INSERT INTO shopify_offline_tokens (shop, access_token, access_expires_at, refresh_token)
             VALUES ($1, 'shpua_x', now() + interval '1 hour', 'shprt_x'),
                    ('other.myshopify.com', 'shpua_y', now() + interval '1 hour', 'shprt_y')",
            &[&SHOP],
        )
        .await
        .unwrap();
    world
        .publish(&envelope(
            "shop/redact",
            SHOP,
            include_str!("../../../../fixtures/shopify/shop-redact.json"),
        ))
        .await;
    wait_count(&world, "shop_uninstalls", 0).await;
    worker.stop().await;
    assert_eq!(
        count(
            &world,
            "shopify_offline_tokens WHERE shop = 'example.myshopify.com'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&world, "shopify_offline_tokens").await,
        1,
        "other shops' tokens stay"
    );
    assert_eq!(count(&world, "reconcile_watermarks").await, 0);
}

#[tokio::test]
async fn an_uninstall_body_sent_for_another_shop_is_refused_as_relabelled() {
    let world = World::new().await;
    let worker = world
        .spawn_worker(&[
            ("HOOKLINE_WORKER_DOMAINS", "compliance"),
            ("HOOKLINE_OUTBOX_RELAY", "false"),
        ])
        .await;
    world
        .publish(&envelope(
            "app/uninstalled",
            SECOND,
            include_str!("../../../../fixtures/shopify/app-uninstalled.json"),
        ))
        .await;
    let dead = hookline_testkit::wait_for_messages(
        &world.amqp,
        "hookline.compliance.dlq",
        Duration::from_secs(20),
    )
    .await;
    worker.stop().await;
    assert_eq!(
        hookline_testkit::header_text(&dead[0].properties, "x-hookline-reason").as_deref(),
        Some("relabelled")
    );
    assert_eq!(count(&world, "shop_uninstalls").await, 0);
}
