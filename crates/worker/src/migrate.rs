//! Database migrations: plain SQL files in `migrations/`, applied in order, once each.
//!
//! A table `hookline_migrations` records what was applied, with the SHA-256 of each file's text.
//! Replicas starting together take a PostgreSQL advisory lock first, so exactly one applies and
//! the others find the work done.
//!
//! **Checksums.** An applied migration whose file has changed since is refused at start
//! ([`MigrateError::Changed`]): the database was built from other SQL than the binary carries, and
//! continuing would leave the schema different from what the code and the next migrations expect.
//! A changed migration is a new migration. Rows applied before checksums existed get the current
//! file's checksum on the first start that sees them.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// Why migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A query failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// An applied migration's SQL differs from the file this binary carries.
    #[error(
        "migration {version} ({name}) was applied from other SQL than this binary carries (checksum {applied} in hookline_migrations, {carried} in migrations/): never edit an applied migration; restore the file and add a new migration for the change"
    )]
    Changed {
        /// The migration's version.
        version: i32,
        /// Its name.
        name: &'static str,
        /// The checksum recorded when it was applied.
        applied: String,
        /// The checksum of the file now.
        carried: String,
    },
}

/// The hex SHA-256 of a migration's text.
pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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
        "payment_sync",
        include_str!("../../../migrations/0014_payment_sync.sql"),
    ),
    (
        15,
        "shop_uninstalls",
        include_str!("../../../migrations/0015_shop_uninstalls.sql"),
    ),
];

/// Arbitrary but fixed: the advisory lock key all hookline processes use for migrations.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6c69_6e65; // "hookline"

/// Applies every migration not applied yet. Returns the versions applied by this call.
pub async fn run(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
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

async fn apply_pending(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS hookline_migrations (
                version    integer PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            );
            ALTER TABLE hookline_migrations ADD COLUMN IF NOT EXISTS checksum text",
        )
        .await?;
    let mut applied = vec![];
    for (version, name, sql) in MIGRATIONS {
        let carried = checksum(sql);
        let recorded = client
            .query_opt(
                "SELECT checksum FROM hookline_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .map(|row| row.get::<_, Option<String>>(0));
        match recorded {
            Some(Some(recorded)) if recorded == carried => continue,
            Some(Some(recorded)) => {
                return Err(MigrateError::Changed {
                    version: *version,
                    name,
                    applied: recorded,
                    carried,
                });
            }
            Some(None) => {
                client
                    .execute(
                        "UPDATE hookline_migrations SET checksum = $2 WHERE version = $1",
                        &[version, &carried],
                    )
                    .await?;
                continue;
            }
            None => {}
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO hookline_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[version, name, &carried],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "migration applied");
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `migrations/` is in [`MIGRATIONS`] under its own number and name, and the
    /// versions run 1, 2, 3… without a gap: a file added but not registered (or registered
    /// twice after a merge) fails here rather than in production.
    #[test]
    fn the_list_is_the_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, name, _)| format!("{v:04}_{name}.sql"))
            .collect();
        assert_eq!(listed, files);
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1, "versions without gaps");
        }
        for (version, name, sql) in MIGRATIONS {
            let file = std::fs::read_to_string(format!("{dir}/{version:04}_{name}.sql")).unwrap();
            assert_eq!(&file, sql, "migration {version} embeds its own file");
        }
    }

    #[test]
    fn a_checksum_is_the_hex_sha256() {
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
