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
