//! Database migrations: plain SQL files in `migrations/`, applied in order, once each.
//!
//! A table `hookline_migrations` records what was applied. Replicas starting together take a
//! PostgreSQL advisory lock first, so exactly one applies and the others find the work done.

use tokio_postgres::Client;

/// `(version, name, sql)`, in order. Embedded at build time: the binary carries its schema.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "idempotency_and_inventory",
        include_str!("../../../migrations/0001_idempotency_and_inventory.sql"),
    ),
    (
        2,
        "order_sync",
        include_str!("../../../migrations/0002_order_sync.sql"),
    ),
    (
        3,
        "reconcile_watermarks",
        include_str!("../../../migrations/0003_reconcile_watermarks.sql"),
    ),
    (
        4,
        "order_sync_reconciled_at",
        include_str!("../../../migrations/0004_order_sync_reconciled_at.sql"),
    ),
    (
        5,
        "refund_sync",
        include_str!("../../../migrations/0005_refund_sync.sql"),
    ),
    (
        6,
        "archive_and_compliance",
        include_str!("../../../migrations/0006_archive_and_compliance.sql"),
    ),
    (
        7,
        "refund_reconciled",
        include_str!("../../../migrations/0007_refund_reconciled.sql"),
    ),
    (
        8,
        "outbox_aggregate_order",
        include_str!("../../../migrations/0008_outbox_aggregate_order.sql"),
    ),
    (
        9,
        "sevdesk_update_2",
        include_str!("../../../migrations/0009_sevdesk_update_2.sql"),
    ),
    (
        10,
        "stock_triggered_at",
        include_str!("../../../migrations/0010_stock_triggered_at.sql"),
    ),
    (
        11,
        "audit_trail",
        include_str!("../../../migrations/0011_audit_trail.sql"),
    ),
    (
        12,
        "shopify_offline_tokens",
        include_str!("../../../migrations/0012_shopify_offline_tokens.sql"),
    ),
    (
        13,
        "notification_outbox",
        include_str!("../../../migrations/0013_notification_outbox.sql"),
    ),
    (
        14,
        "shop_uninstalls",
        include_str!("../../../migrations/0014_shop_uninstalls.sql"),
    ),
];

/// Arbitrary but fixed: the advisory lock key all hookline processes use for migrations.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6c69_6e65; // "hookline"

/// Applies every migration not applied yet. Returns the versions applied by this call.
pub async fn run(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply_pending(client).await;
    // Unlock even when a migration failed, so another replica can try (and fail loudly too).
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply_pending(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS hookline_migrations (
                version    integer PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let mut applied = vec![];
    for (version, name, sql) in MIGRATIONS {
        let done = client
            .query_opt(
                "SELECT 1 FROM hookline_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO hookline_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "migration applied");
        applied.push(*version);
    }
    Ok(applied)
}
