//! `hookctl notifications list|retry` against the real PostgreSQL: a failed e-mail is listed
//! with its reason and made due again; anything but a failed one is refused.

use std::process::{Command, Output};

use hookline_testkit::TestDatabase;

fn hookctl(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookctl"))
        .args(args)
        .env("HOOKLINE_DATABASE_URL", db.url())
        .output()
        .expect("hookctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn a_failed_notification_is_listed_with_its_reason_and_retried_once() {
    let db = TestDatabase::create().await;
    hookline_worker::startup::migrate(&db.url()).await.unwrap();
    let client = db.client().await;
    let id: i64 = client
        .query_one(
            "INSERT INTO notification_outbox (shop_domain, order_id, invoice_id, kind, recipient, payload, status, attempts, last_error)
             VALUES ('example.myshopify.com', 1001, '5001', 'invoice', 'jon@example.com', '{\"order_name\": \"#1001\"}', 'failed', 8,
                     'gave up after 8 attempts: sevdesk answered 500')
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let listed = hookctl(&db, &["notifications", "list", "--status", "failed"]);
    assert!(listed.status.success(), "{listed:?}");
    let out = stdout(&listed);
    assert!(
        out.contains("#1001")
            && out.contains("gave up after 8 attempts")
            && out.contains("1 notification(s)"),
        "{out}"
    );

    let retried = hookctl(&db, &["notifications", "retry", &id.to_string()]);
    assert!(retried.status.success(), "{retried:?}");
    let (status, attempts): (String, i32) = client
        .query_one(
            "SELECT status, attempts FROM notification_outbox WHERE id = $1",
            &[&id],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));

    let again = hookctl(&db, &["notifications", "retry", &id.to_string()]);
    assert!(!again.status.success(), "a pending one is not retried");
    assert!(String::from_utf8_lossy(&again.stderr).contains("only failed notifications"));
    let missing = hookctl(&db, &["notifications", "retry", "999999"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no notification with id 999999"));
}
