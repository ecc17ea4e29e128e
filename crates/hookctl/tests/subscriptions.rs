//! `hookctl shopify subscriptions` as an operator runs it: the printed plan, the
//! `shopify.app.toml` snippet, and `--apply` against the sandbox's GraphQL Admin API — missing
//! topics created once, a second run creating nothing, what Shopify refuses reported.

use hookline_sandbox::Sandbox;

const SHOP: &str = "setup-shop.myshopify.com";
const URL: &str = "https://hooks.example.test/webhooks/shopify";

/// Runs `hookctl` with the worker's Shopify settings pointing at the sandbox, off the test's
/// runtime (which serves the sandbox meanwhile).
async fn hookctl(sandbox: &Sandbox, args: &[&str]) -> (bool, String) {
    let env: Vec<(String, String)> = vec![
        (
            "HOOKLINE_SHOPIFY_ADMIN_URL".into(),
            sandbox.shopify_admin_url(),
        ),
        (
            "HOOKLINE_RECONCILE_SHOPS".into(),
            format!("{SHOP}={}", hookline_sandbox::shopify::ACCESS_TOKEN),
        ),
        ("HOOKLINE_SEVDESK_URL".into(), sandbox.sevdesk_url()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookctl"))
            .args(&args)
            .env_remove("HOOKLINE_SHOPIFY_SHOP")
            .env_remove("HOOKLINE_SHOPIFY_CLIENT_ID")
            .env_remove("HOOKLINE_SHOPIFY_CLIENT_SECRET")
            .envs(env)
            .output()
            .expect("hookctl runs")
    })
    .await
    .expect("hookctl ran");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test]
async fn the_plan_prints_as_a_table_and_as_an_app_toml_snippet() {
    let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
    let (ok, table) = hookctl(&sandbox, &["shopify", "subscriptions", "--url", URL]).await;
    assert!(ok, "{table}");
    assert!(table.contains(&format!("Deliver to {URL}")), "{table}");
    assert!(table.contains("orders/paid"), "{table}");
    assert!(table.contains("ORDERS_PAID"), "{table}");
    assert!(table.contains("Compliance topics"), "{table}");
    let (ok, toml) = hookctl(
        &sandbox,
        &["shopify", "subscriptions", "--url", URL, "--app-toml"],
    )
    .await;
    assert!(ok, "{toml}");
    assert!(toml.starts_with("[webhooks]\napi_version = \""), "{toml}");
    assert!(
        toml.contains("compliance_topics = [ \"customers/data_request\""),
        "{toml}"
    );
    assert_eq!(
        sandbox.state.shopify.calls(),
        0,
        "printing asks Shopify nothing"
    );
}

#[tokio::test]
async fn apply_creates_the_missing_subscriptions_once() {
    let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
    let setup = &sandbox.state.shopify.setup;
    // One topic is already subscribed; another is delivered elsewhere (a previous connector).
    setup.add_subscription(SHOP, "ORDERS_PAID", URL);
    setup.add_subscription(
        SHOP,
        "ORDERS_CANCELLED",
        "https://old-connector.example/hook",
    );
    let topics = hookline_core::topics::TOPICS
        .iter()
        .filter(|t| !hookctl::shopify::COMPLIANCE_TOPICS.contains(&t.topic))
        .count();

    let apply = [
        "shopify",
        "subscriptions",
        "--url",
        URL,
        "--apply",
        "--shop",
        SHOP,
    ];
    let (ok, report) = hookctl(&sandbox, &apply).await;
    assert!(ok, "{report}");
    assert!(report.contains("present  ORDERS_PAID"), "{report}");
    assert!(report.contains("created  ORDERS_CANCELLED"), "{report}");
    assert!(
        report.contains(&format!(
            "{} created, 1 already present, 0 refused",
            topics - 1
        )),
        "{report}"
    );
    let ours: Vec<_> = setup
        .subscriptions(SHOP)
        .into_iter()
        .filter(|s| s["uri"] == URL)
        .collect();
    assert_eq!(
        ours.len(),
        topics,
        "every planned topic delivers to the URL"
    );
    for compliance in ["CUSTOMERS_DATA_REQUEST", "CUSTOMERS_REDACT", "SHOP_REDACT"] {
        assert!(
            !ours.iter().any(|s| s["topic"] == compliance),
            "{compliance} is never subscribed per shop"
        );
    }

    let (ok, again) = hookctl(&sandbox, &apply).await;
    assert!(ok, "{again}");
    assert!(
        again.contains(&format!("0 created, {topics} already present, 0 refused")),
        "{again}"
    );
    assert_eq!(
        setup.subscriptions(SHOP).len(),
        topics + 1,
        "a second run creates nothing"
    );
}

#[tokio::test]
async fn plain_http_is_refused_before_and_by_shopify() {
    let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
    let (ok, report) = hookctl(
        &sandbox,
        &[
            "shopify",
            "subscriptions",
            "--url",
            "http://hooks.example.test/webhooks/shopify",
            "--apply",
            "--shop",
            SHOP,
        ],
    )
    .await;
    assert!(!ok);
    assert!(report.contains("not an https:// URL"), "{report}");
    assert_eq!(sandbox.state.shopify.calls(), 0, "nothing was asked");

    // A local http:// URL passes our check (for development), but Shopify refuses it.
    let (ok, report) = hookctl(
        &sandbox,
        &[
            "shopify",
            "subscriptions",
            "--url",
            "http://127.0.0.1:8080/webhooks/shopify",
            "--apply",
            "--shop",
            SHOP,
        ],
    )
    .await;
    assert!(!ok, "{report}");
    assert!(
        report.contains("refused  ORDERS_PAID")
            && report
                .contains("webhookSubscription.uri: Address protocol http:// is not supported"),
        "{report}"
    );
    assert!(sandbox.state.shopify.setup.subscriptions(SHOP).is_empty());

    let (ok, report) = hookctl(
        &sandbox,
        &["shopify", "subscriptions", "--url", URL, "--apply"],
    )
    .await;
    assert!(!ok, "--apply needs --shop: {report}");
}
