//! Retention: old rows pruned, recent and unfinished ones kept, one replica at a time.

use std::time::Duration;

use chrono::Utc;
use hookline_worker::retention::{BATCH, PruneReport, Retention, RetentionSettings};

use crate::helpers::World;

fn settings() -> RetentionSettings {
    RetentionSettings {
        interval: Duration::from_secs(3600),
        processed_events: chrono::Duration::days(30),
        outbox_sent: chrono::Duration::days(7),
        dead_letter_archive: chrono::Duration::days(90),
        exports: chrono::Duration::days(30),
        audit: chrono::Duration::days(90),
    }
}

#[tokio::test]
async fn old_rows_are_pruned_in_batches_and_recent_or_unsent_ones_kept() {
    let world = World::new().await;
    hookline_worker::startup::migrate(&world.db.url())
        .await
        .unwrap();
    let db = world.db.client().await;
    // More old processed events than one batch, so batching is exercised.
    let old_events = BATCH + 7;
    db.batch_execute(&format!(
        "INSERT INTO processed_events (idempotency_key, event_id, topic, shop_domain, processed_at)
           SELECT 'old-' || i, gen_random_uuid(), 'orders/paid', 's', now() - interval '31 days' FROM generate_series(1, {old_events}) i;
         INSERT INTO processed_events (idempotency_key, event_id, topic, shop_domain, processed_at)
           SELECT 'new-' || i, gen_random_uuid(), 'orders/paid', 's', now() - interval '29 days' FROM generate_series(1, 3) i;
         INSERT INTO outbox_events (aggregate_id, event_type, payload, status, sent_at) VALUES
           ('a', 'x', '{{}}', 'sent', now() - interval '8 days'),
           ('b', 'x', '{{}}', 'sent', now() - interval '6 days'),
           ('c', 'x', '{{}}', 'failed', NULL),
           ('d', 'x', '{{}}', 'pending', NULL);
         UPDATE outbox_events SET created_at = now() - interval '60 days';
         INSERT INTO dead_letter_archive (fingerprint, queue, event_id, topic, shop_domain, reason, attempts, last_error, archived_at) VALUES
           ('f1', 'q', 'e', 't', 's', 'r', 1, '', now() - interval '91 days'),
           ('f2', 'q', 'e', 't', 's', 'r', 1, '', now() - interval '10 days');
         INSERT INTO data_request_exports (shop_domain, request_id, export, created_at) VALUES
           ('s', '1', '{{}}', now() - interval '31 days'),
           ('s', '2', '{{}}', now());"
    ))
    .await
    .unwrap();

    let pool = deadpool_postgres::Config {
        url: Some(world.db.url()),
        ..Default::default()
    }
    .create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .unwrap();
    let retention = Retention::new(pool, settings());

    // Another replica holds the lock: this one skips the round.
    let other = world.db.client().await;
    other
        .execute("SELECT pg_advisory_lock($1)", &[&0x7265_746e_i64])
        .await
        .unwrap();
    assert_eq!(
        retention.run_once(Utc::now()).await.unwrap(),
        PruneReport::default()
    );
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&0x7265_746e_i64])
        .await
        .unwrap();

    let report = retention.run_once(Utc::now()).await.unwrap();
    assert_eq!(
        report,
        PruneReport {
            ran: true,
            processed_events: old_events as u64,
            outbox_sent: 1,
            dead_letter_archive: 1,
            exports: 1,
            audit_partitions: 0,
        }
    );
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM processed_events").await, 3);
    assert_eq!(
        count("SELECT count(*) FROM outbox_events WHERE aggregate_id IN ('b', 'c', 'd')").await,
        3,
        "recently sent, failed and pending rows stay"
    );
    assert_eq!(count("SELECT count(*) FROM outbox_events").await, 3);
    assert_eq!(count("SELECT count(*) FROM dead_letter_archive").await, 1);
    assert_eq!(count("SELECT count(*) FROM data_request_exports").await, 1);
    // A second round finds nothing more.
    assert_eq!(
        retention.run_once(Utc::now()).await.unwrap(),
        PruneReport {
            ran: true,
            ..PruneReport::default()
        }
    );
}
