//! The `hookctl` binary as an operator runs it (what `make dlq-*` wraps), against the real broker
//! and PostgreSQL: list, dry run, replay, archive, purge, and clear errors for bad arguments.

use std::process::{Command, Output};

use hookline_core::topology::{self, TopologySettings};
use hookline_testkit::{TestDatabase, TestVhost};
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection};

fn hookctl(vhost: &TestVhost, db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookctl"))
        .args(args)
        .env("HOOKLINE_AMQP_URL", vhost.amqp_url())
        .env("HOOKLINE_DATABASE_URL", db.url())
        .output()
        .expect("hookctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Puts a dead letter of an `orders/paid` envelope into `hookline.orders.dlq`, as the worker
/// leaves one; returns its event id.
async fn dead_letter(amqp: &Connection) -> String {
    let envelope = hookline_testkit::envelope(
        "orders/paid",
        "example.myshopify.com",
        include_str!("../../../fixtures/shopify/orders-paid.json"),
    );
    let mut headers = FieldTable::default();
    for (k, v) in [
        ("x-hookline-reason", "downstream_rejected"),
        (
            "x-hookline-error",
            "sevdesk answered 400: contact does not exist",
        ),
        ("x-hookline-routing-key", "orders.paid"),
        ("x-hookline-last-failure", "2026-11-23T10:00:00+00:00"),
    ] {
        headers.insert(
            ShortString::from(k),
            AMQPValue::LongString(LongString::from(v)),
        );
    }
    let channel = amqp.create_channel().await.unwrap();
    channel
        .basic_publish(
            "".into(),
            "hookline.orders.dlq".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&envelope).unwrap(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    envelope.event_id.to_string()
}

async fn depth(amqp: &Connection, queue: &str) -> usize {
    let channel = amqp.create_channel().await.unwrap();
    let mut n = 0;
    while channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .is_some()
    {
        n += 1;
    }
    let _ = channel.close(200, "counted".into()).await;
    n
}

#[tokio::test]
async fn an_operator_lists_replays_archives_and_purges_dead_letters_with_the_binary() {
    let vhost = TestVhost::create();
    let db = TestDatabase::create().await;
    hookline_worker::startup::migrate(&db.url()).await.unwrap();
    let amqp = vhost.connect().await;
    let channel = amqp.create_channel().await.unwrap();
    topology::declare(&channel, &TopologySettings::default())
        .await
        .unwrap();

    let first = dead_letter(&amqp).await;
    let listed = hookctl(&vhost, &db, &["dlq", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let row: serde_json::Value = serde_json::from_str(stdout(&listed).trim()).unwrap();
    assert_eq!(row["event_id"], first.as_str());
    assert_eq!(row["reason"], "downstream_rejected");
    assert_eq!(row["routing_key"], "orders.paid");

    let table = stdout(&hookctl(
        &vhost,
        &db,
        &["dlq", "list", "--domain", "orders"],
    ));
    assert!(
        table.contains(&first) && table.contains("1 dead letter(s)"),
        "{table}"
    );

    let dry = stdout(&hookctl(&vhost, &db, &["dlq", "replay", "--dry-run"]));
    assert!(dry.contains("1 would be replayed"), "{dry}");
    assert_eq!(
        depth(&amqp, "hookline.orders.dlq").await,
        1,
        "a dry run moves nothing"
    );

    let other_reason = stdout(&hookctl(
        &vhost,
        &db,
        &["dlq", "replay", "--reason", "schema_mismatch"],
    ));
    assert!(
        other_reason.contains("0 replayed, 1 kept"),
        "{other_reason}"
    );

    let replayed = hookctl(&vhost, &db, &["dlq", "replay", "--domain", "orders"]);
    assert!(replayed.status.success(), "{replayed:?}");
    assert!(stdout(&replayed).contains("1 replayed"));
    assert_eq!(depth(&amqp, "hookline.orders.dlq").await, 0);
    assert_eq!(
        depth(&amqp, "hookline.orders").await,
        1,
        "back on the work queue by its routing key"
    );

    let second = dead_letter(&amqp).await;
    let archived = hookctl(&vhost, &db, &["dlq", "archive", "--event-id", &second]);
    assert!(archived.status.success(), "{archived:?}");
    assert!(stdout(&archived).contains("1 archived"));
    assert_eq!(depth(&amqp, "hookline.orders.dlq").await, 0);
    let client = db.client().await;
    let count = |sql| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM dead_letter_archive WHERE reason = 'downstream_rejected'")
            .await,
        1
    );

    let kept = stdout(&hookctl(
        &vhost,
        &db,
        &["dlq", "purge", "--older-than", "1d"],
    ));
    assert!(kept.starts_with("0 archived"), "{kept}");
    let purged = stdout(&hookctl(
        &vhost,
        &db,
        &["dlq", "purge", "--older-than", "0s"],
    ));
    assert!(purged.starts_with("1 archived"), "{purged}");
    assert_eq!(count("SELECT count(*) FROM dead_letter_archive").await, 0);

    // Bad arguments: a clear message and a failing exit status, nothing touched.
    for (args, expected) in [
        (&["dlq", "purge", "--older-than", "3x"][..], "--older-than"),
        (&["dlq", "list", "--domain", "nope"][..], "unknown domain"),
    ] {
        let out = hookctl(&vhost, &db, args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn help_lists_every_setting_and_version_answers() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookctl"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("hookctl runs");
    assert!(output.status.success());
    let help = stdout(&output);
    for spec in hookctl::SETTINGS {
        assert!(help.contains(&format!("  {}  (", spec.name)), "{help}");
    }
    let version = Command::new(env!("CARGO_BIN_EXE_hookctl"))
        .arg("--version")
        .output()
        .expect("hookctl runs");
    assert_eq!(
        stdout(&version).trim(),
        concat!("hookctl ", env!("CARGO_PKG_VERSION"))
    );
}
