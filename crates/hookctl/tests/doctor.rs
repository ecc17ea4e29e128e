//! `hookctl doctor` as an operator runs it, against the sandbox's sevDesk: every check on its own
//! line, the fix for each problem, and a non-zero exit when booking is blocked.

use hookline_sandbox::Sandbox;
use hookline_sandbox::sevdesk::Account;

/// Runs `hookctl doctor` off the test's runtime, which serves the sandbox meanwhile.
async fn doctor(sandbox: &Sandbox, extra: &[(&str, &str)]) -> (bool, String) {
    let mut env: Vec<(String, String)> = vec![
        ("HOOKLINE_SEVDESK_URL".into(), sandbox.sevdesk_url()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookctl"))
            .arg("doctor")
            .env_remove("HOOKLINE_SEVDESK_TOKEN")
            .envs(env)
            .output()
            .expect("hookctl runs")
    })
    .await
    .expect("doctor ran");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test]
async fn doctor_says_line_by_line_what_is_right_and_what_to_fix() {
    let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
    let (ok, report) = doctor(&sandbox, &[]).await;
    assert!(ok, "{report}");
    for line in [
        "ok   token accepted by sevDesk",
        "ok   bookkeeping system: sevdesk-Update 2.0",
        "ok   contactPerson: SevUser 7",
        "ok   default check account: 5002",
        "warn gift-card payments go to the default check account",
    ] {
        assert!(report.contains(line), "{line:?} missing in:\n{report}");
    }

    sandbox.state.sevdesk.set_account(Account {
        sev_users: vec!["7".into(), "8".into()],
        ..Account::default()
    });
    let (ok, report) = doctor(
        &sandbox,
        &[("HOOKLINE_SEVDESK_CHECK_ACCOUNTS", "paypal=5001,gift_card=9")],
    )
    .await;
    assert!(!ok, "blocking problems exit non-zero:\n{report}");
    assert!(
        report.contains("FAIL the account has 2 SevUsers"),
        "{report}"
    );
    assert!(
        report.contains(
            "FAIL HOOKLINE_SEVDESK_CHECK_ACCOUNTS (paypal): check account 5001 (Geschäftskonto) is an online account"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "FAIL HOOKLINE_SEVDESK_CHECK_ACCOUNTS (gift_card): check account 9 does not exist"
        ),
        "{report}"
    );

    let (ok, report) = doctor(
        &sandbox,
        &[("HOOKLINE_SEVDESK_TOKEN", "ffffffffffffffffffffffffffffffff")],
    )
    .await;
    assert!(!ok);
    assert!(report.contains("refused the API token (401)"), "{report}");
}

const SHOP: &str = "doctor-shop.myshopify.com";
const URL: &str = "https://hooks.example.test/webhooks/shopify";

fn shopify_env(sandbox: &Sandbox, token: &str) -> Vec<(String, String)> {
    vec![
        (
            "HOOKLINE_SHOPIFY_ADMIN_URL".into(),
            sandbox.shopify_admin_url(),
        ),
        ("HOOKLINE_RECONCILE_SHOPS".into(), format!("{SHOP}={token}")),
    ]
}

async fn doctor_with(
    sandbox: &Sandbox,
    env: Vec<(String, String)>,
    args: &[&str],
) -> (bool, String) {
    let mut all: Vec<(String, String)> = vec![
        ("HOOKLINE_SEVDESK_URL".into(), sandbox.sevdesk_url()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    all.extend(env);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookctl"))
            .arg("doctor")
            .args(&args)
            .env_remove("HOOKLINE_SEVDESK_TOKEN")
            .env_remove("HOOKLINE_SHOPIFY_SHOP")
            .env_remove("HOOKLINE_SHOPIFY_CLIENT_ID")
            .env_remove("HOOKLINE_SHOPIFY_CLIENT_SECRET")
            .envs(all)
            .output()
            .expect("hookctl runs")
    })
    .await
    .expect("doctor ran");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test]
async fn doctor_checks_the_shopify_token_scopes_version_and_subscriptions() {
    let sandbox = Sandbox::spawn("127.0.0.1:0").unwrap();
    let token = hookline_sandbox::shopify::ACCESS_TOKEN;
    let (ok, report) = doctor_with(&sandbox, shopify_env(&sandbox, token), &[]).await;
    assert!(ok, "{report}");
    for line in [
        &format!("ok   {SHOP}: static token accepted (shop \"doctor-shop\")"),
        &format!("ok   {SHOP}: scope read_orders granted"),
        &format!("ok   {SHOP}: scope write_orders granted"),
        &format!("warn {SHOP}: scope read_all_orders missing"),
        &format!("ok   {SHOP}: API version 2026-07 supported by Shopify"),
    ] {
        assert!(report.contains(&line[..]), "{line:?} missing in:\n{report}");
    }
    assert!(
        !report.contains("subscribed to"),
        "no --url, no subscription check"
    );

    // Subscriptions: missing ones block, with the command that fixes them.
    let setup = &sandbox.state.shopify.setup;
    setup.add_subscription(SHOP, "ORDERS_PAID", URL);
    setup.add_subscription(
        SHOP,
        "ORDERS_CANCELLED",
        "https://old-connector.example/hook",
    );
    let (ok, report) = doctor_with(&sandbox, shopify_env(&sandbox, token), &["--url", URL]).await;
    assert!(!ok, "{report}");
    assert!(
        report.contains("planned topics not subscribed to"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "fix: hookctl shopify subscriptions --url {URL} --apply --shop {SHOP}"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "warn {SHOP}: ORDERS_CANCELLED is also delivered to https://old-connector.example/hook"
        )),
        "{report}"
    );
    assert!(
        !report.contains("ORDERS_PAID is also delivered"),
        "{report}"
    );

    // Scopes and version: a token without write_orders, a version Shopify no longer serves, a
    // lookback past 60 days.
    setup.set_scopes(SHOP, &["read_orders"]);
    setup.set_api_versions(&[("2026-10", true), ("2027-01", false)]);
    let mut env = shopify_env(&sandbox, token);
    env.push((
        "HOOKLINE_RECONCILE_LOOKBACK_SECS".into(),
        (90 * 86_400).to_string(),
    ));
    let (ok, report) = doctor_with(&sandbox, env, &["--shop", SHOP]).await;
    assert!(!ok, "{report}");
    for line in [
        &format!("FAIL {SHOP}: scope write_orders missing, needed to mark prepayment orders paid"),
        &format!("FAIL {SHOP}: scope read_all_orders missing"),
        &format!("FAIL {SHOP}: API version 2026-07 is not served"),
        "fix: set HOOKLINE_SHOPIFY_API_VERSION to a supported version, e.g. 2026-10",
    ] {
        assert!(report.contains(line), "{line:?} missing in:\n{report}");
    }

    // A token Shopify refuses: one line with the fix for static tokens, nothing asked after.
    let (ok, report) = doctor_with(&sandbox, shopify_env(&sandbox, "shpat_wrong"), &[]).await;
    assert!(!ok);
    assert!(report.contains(&format!("FAIL {SHOP}: token:")), "{report}");
    assert!(
        report.contains("(401)") && report.contains("HOOKLINE_RECONCILE_SHOPS as shop=token"),
        "{report}"
    );
    assert!(!report.contains("scope read_orders"), "{report}");
}
