//! Retention: a periodic task that deletes what hookline no longer needs, so its tables do not
//! grow without bound.
//!
//! - `processed_events` older than `HOOKLINE_RETENTION_PROCESSED_EVENTS_DAYS` (30). This is the
//!   durable duplicate guard, so it must outlive every way a duplicate can still arrive: Shopify
//!   retries a webhook for 48 hours, and reconciliation looks back
//!   `HOOKLINE_RECONCILE_LOOKBACK_SECS` (one day).
//! - outbox rows `sent` longer ago than `HOOKLINE_RETENTION_OUTBOX_SENT_DAYS` (7); `pending` and
//!   `failed` rows are never pruned.
//! - `dead_letter_archive` rows archived before `HOOKLINE_RETENTION_DEAD_LETTER_ARCHIVE_DAYS`
//!   (90), the same as `hookctl dlq purge`.
//! - `data_request_exports` older than `HOOKLINE_RETENTION_EXPORT_DAYS` (30).
//! - the audit trail ([`crate::audit`]) older than `HOOKLINE_RETENTION_AUDIT_DAYS` (90): whole
//!   day partitions are dropped (no row-by-row delete), and the partitions of the next days are
//!   created ahead, so the trail never waits for one.
//!
//! Deletes go in batches of [`BATCH`] rows, so no statement holds locks for long. Replicas take
//! a PostgreSQL advisory lock first: one prunes, the others skip that round. `compliance_actions`
//! is the record of privacy requests and is kept.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement.
pub const BATCH: i64 = 5_000;

/// Arbitrary but fixed: "retn".
const LOCK: i64 = 0x7265_746e;

/// How long each kind of row is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// `HOOKLINE_RETENTION_INTERVAL_SECS` (3600): how often to prune; 0 turns pruning off.
    pub interval: Duration,
    /// `processed_events`.
    pub processed_events: chrono::Duration,
    /// Sent outbox rows.
    pub outbox_sent: chrono::Duration,
    /// `dead_letter_archive`.
    pub dead_letter_archive: chrono::Duration,
    /// `data_request_exports`.
    pub exports: chrono::Duration,
    /// The audit trail.
    pub audit: chrono::Duration,
}

/// What one round deleted, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Whether this replica pruned (another held the lock otherwise).
    pub ran: bool,
    /// `processed_events` rows.
    pub processed_events: u64,
    /// Sent outbox rows.
    pub outbox_sent: u64,
    /// Archived dead letters.
    pub dead_letter_archive: u64,
    /// Exports.
    pub exports: u64,
    /// Day partitions of the audit trail dropped (both tables counted).
    pub audit_partitions: u64,
}

/// The pruning task.
pub struct Retention {
    pool: Pool,
    settings: RetentionSettings,
}

impl Retention {
    /// A task pruning through `pool` by `settings`.
    pub fn new(pool: Pool, settings: RetentionSettings) -> Self {
        Self { pool, settings }
    }

    /// Prunes every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once(Utc::now()).await {
                Ok(report) if report.ran => tracing::info!(?report, "retention: pruned"),
                Ok(_) => tracing::debug!("retention: another replica prunes this round"),
                Err(error) => {
                    tracing::warn!(%error, "retention: pruning failed, next round retries")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }

    /// One round, with `now` as the present (tests pass their own).
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<PruneReport, RetentionError> {
        let client = self.pool.get().await?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK])
            .await?
            .get(0);
        if !locked {
            return Ok(PruneReport::default());
        }
        let result = async {
            let s = &self.settings;
            Ok::<_, tokio_postgres::Error>(PruneReport {
                ran: true,
                processed_events: prune(
                    &client,
                    "processed_events",
                    "processed_at < $1",
                    now - s.processed_events,
                )
                .await?,
                outbox_sent: prune(
                    &client,
                    "outbox_events",
                    "status = 'sent' AND sent_at < $1",
                    now - s.outbox_sent,
                )
                .await?,
                dead_letter_archive: prune(
                    &client,
                    "dead_letter_archive",
                    "archived_at < $1",
                    now - s.dead_letter_archive,
                )
                .await?,
                exports: prune(
                    &client,
                    "data_request_exports",
                    "created_at < $1",
                    now - s.exports,
                )
                .await?,
                audit_partitions: {
                    crate::audit::ensure_partitions(&client, now.date_naive()).await?;
                    crate::audit::drop_expired(&client, now, s.audit)
                        .await?
                        .len() as u64
                },
            })
        }
        .await;
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
            .await;
        for (table, n) in result.iter().flat_map(|r| {
            [
                ("processed_events", r.processed_events),
                ("outbox_events", r.outbox_sent),
                ("dead_letter_archive", r.dead_letter_archive),
                ("data_request_exports", r.exports),
                ("audit_partitions", r.audit_partitions),
            ]
        }) {
            metrics::counter!("hookline_worker_retention_deleted_total", "table" => table)
                .increment(n);
        }
        Ok(result?)
    }
}

/// Deletes the rows of `table` matching `condition` (with `$1` = `before`), in batches.
async fn prune(
    client: &deadpool_postgres::Object,
    table: &str,
    condition: &str,
    before: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    let statement = format!(
        "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE {condition} LIMIT {BATCH})"
    );
    let mut total = 0;
    loop {
        let deleted = client.execute(&statement, &[&before]).await?;
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Why a pruning round failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// No connection.
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
}
