//! The worker binary as operators run it: migrations, graceful shutdown, metrics.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookline_testkit::envelope;

use crate::helpers::{SHOP, World, level_envelope};

const T: &str = "2026-11-20T10:16:40-05:00";

#[tokio::test]
async fn migrate_creates_the_schema_once_and_is_idempotent() {
    let world = World::new().await;
    for _ in 0..2 {
        let status = Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
            .arg("migrate")
            .envs(world.env(&[]).iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let versions = hookline_worker::migrate::MIGRATIONS.len() as i64;
    assert_eq!(
        world.db.count("hookline_migrations").await,
        versions,
        "each migration applied once"
    );
    for table in [
        "processed_events",
        "warehouse_stock",
        "outbox_events",
        "order_sync",
    ] {
        assert_eq!(world.db.count(table).await, 0, "{table} exists");
    }
}

#[tokio::test]
async fn an_applied_migration_whose_sql_changed_stops_the_start_with_what_to_do() {
    let world = World::new().await;
    let migrate = || {
        Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
            .arg("migrate")
            .envs(world.env(&[]).iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    };
    assert!(migrate().status.success());
    let db = world.db.client().await;
    // Rows from before checksums existed get one on the next start, and pass.
    db.execute(
        "UPDATE hookline_migrations SET checksum = NULL WHERE version = 1",
        &[],
    )
    .await
    .unwrap();
    assert!(migrate().status.success());
    let restored: String = db
        .query_one(
            "SELECT checksum FROM hookline_migrations WHERE version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        restored,
        hookline_worker::migrate::checksum(hookline_worker::migrate::MIGRATIONS[0].2)
    );
    // As if the database had been built from an edited file.
    db.execute(
        "UPDATE hookline_migrations SET checksum = 'edited' WHERE version = 2",
        &[],
    )
    .await
    .unwrap();
    let out = migrate();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("migration 2 (order_sync) was applied from other SQL")
            && stderr.contains("add a new migration"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_work_exits_cleanly_and_loses_nothing() {
    let world = World::new().await;
    let n: i64 = 300;
    for i in 0..n {
        world.publish(&level_envelope(20_000 + i, 3, i, T)).await;
    }
    hookline_worker::startup::migrate(&world.db.url())
        .await
        .unwrap();
    let spawn = || {
        world.worker_process(&[
            ("HOOKLINE_OUTBOX_RELAY", "false"),
            ("HOOKLINE_INVENTORY_CONCURRENCY", "4"),
        ])
    };
    let mut worker = spawn();
    world
        .db
        .wait_count("processed_events", 30, Duration::from_secs(60))
        .await;
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .arg("-TERM")
            .arg(worker.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let status = worker.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "drained promptly"
    );
    let done_at_stop = world.db.count("processed_events").await;

    let mut second = spawn();
    let done = world
        .db
        .wait_count("processed_events", n, Duration::from_secs(60))
        .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(done_at_stop < n, "stopped mid-way ({done_at_stop} of {n})");
    assert_eq!(done, n, "what was not finished was redelivered");
    assert_eq!(
        world.db.count("warehouse_stock WHERE version <> 1").await,
        0
    );
    assert_eq!(world.db.count("outbox_events").await, n);
}

#[tokio::test]
async fn metrics_show_outcomes_lag_and_schema_drift() {
    let world = World::new().await;
    let worker = world
        .spawn_worker(&[("HOOKLINE_OUTBOX_RELAY", "false")])
        .await;
    let drifted = r#"{"inventory_item_id":1,"location_id":2,"available":3,"updated_at":"2026-11-20T10:16:40-05:00","brand_new_field_x7":true}"#;
    world
        .publish(&envelope("inventory_levels/update", SHOP, drifted))
        .await;
    assert_eq!(
        world
            .db
            .wait_count("processed_events", 1, Duration::from_secs(20))
            .await,
        1
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", worker.http_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"hookline_worker_messages_total{domain="inventory",outcome="applied"}"#,
        r#"hookline_worker_schema_unknown_fields_total{topic="inventory_levels/update",field="brand_new_field_x7",api_version="2025-10"}"#,
        r#"hookline_worker_schema_missing_optional_total{topic="inventory_levels/update",field="admin_graphql_api_id",api_version="2025-10"}"#,
        "hookline_worker_lag_seconds_bucket",
        "hookline_worker_handler_seconds_bucket",
        r#"hookline_worker_bulkhead_in_use{domain="inventory"}"#,
        "hookline_worker_redis_available",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}
