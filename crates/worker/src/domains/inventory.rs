//! Inventory: stock levels in PostgreSQL, with a transactional outbox towards the ERP.
//!
//! `inventory_levels/update` → in ONE transaction: record the idempotency key, upsert the stock
//! row only if the event is newer than what we hold, bumping `version`, and insert the outbox
//! row. Commit, then the caller acks. An older event arriving late commits only its idempotency
//! row: it changes nothing and is not retried.
//!
//! "Newer" is decided on Shopify's clocks, never on arrival order, so the result is the same
//! whatever order the events come in: first `updated_at`; on a tie (it has one-second
//! precision, and two sales of one item can fall into the same second — with their own event
//! ids, so both get here), the webhook's `Triggered-At` (milliseconds), a known one beating an
//! unknown one; and if that ties too, the lower `available`, so that of two same-instant
//! readings the one that cannot oversell is kept.
//!
//! Other topics routed to this domain (`inventory_levels/connect|disconnect`, `inventory_items/*`,
//! `products/*`) have no effect yet: they are recorded as skipped, not dead-lettered, so a shop
//! subscribed to them does not fill the dead-letter queue.

use chrono::{DateTime, FixedOffset};
use deadpool_postgres::Pool;
use hookline_core::Envelope;
use serde::Deserialize;
use serde_json::json;

use crate::domains::{BoxFuture, DomainHandler, Outcome};
use crate::error::HandlerError;
use crate::idempotency::record;
use crate::schema::{self, Schema};

/// The outbox `event_type` of a stock change.
pub const STOCK_LEVEL_CHANGED: &str = "stock_level_changed";

/// Channel notified when outbox rows are inserted; the relay listens to it.
pub const OUTBOX_CHANNEL: &str = "hookline_outbox";

/// `inventory_levels/update`, as Shopify sends it.
#[derive(Debug, Deserialize)]
pub struct InventoryLevelUpdate {
    /// The inventory item.
    pub inventory_item_id: i64,
    /// The location.
    pub location_id: i64,
    /// Units available; `null` when Shopify does not track the item's quantity.
    pub available: Option<i64>,
    /// When the level changed at Shopify: orders events, and is part of the idempotency key.
    pub updated_at: DateTime<FixedOffset>,
    /// GraphQL id; read only to know it (drift counting).
    #[serde(default)]
    pub admin_graphql_api_id: Option<String>,
}

impl Schema for InventoryLevelUpdate {
    const KNOWN_FIELDS: &'static [&'static str] = &[
        "inventory_item_id",
        "location_id",
        "available",
        "updated_at",
        "admin_graphql_api_id",
    ];
    const OPTIONAL_FIELDS: &'static [&'static str] = &["admin_graphql_api_id"];
}

/// The inventory domain's effect.
pub struct InventoryHandler {
    /// This bulkhead's own pool.
    pool: Pool,
}

impl InventoryHandler {
    /// A handler using `pool` (the inventory bulkhead's).
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn apply_level_update(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let level: InventoryLevelUpdate = schema::parse(envelope)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !record(&tx, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        // Optimistic concurrency on Shopify's own clocks: the row changes only when this event is
        // newer than the one applied last (see the module's doc for the order on a tie).
        let applied = tx
            .query_opt(
                "INSERT INTO warehouse_stock (inventory_item_id, location_id, available, version, source_updated_at, source_triggered_at, shop_domain)
                 VALUES ($1, $2, $3, 1, $4, $5, $6)
                 ON CONFLICT (inventory_item_id, location_id) DO UPDATE
                    SET available = EXCLUDED.available,
                        version = warehouse_stock.version + 1,
                        source_updated_at = EXCLUDED.source_updated_at,
                        source_triggered_at = EXCLUDED.source_triggered_at,
                        shop_domain = EXCLUDED.shop_domain,
                        updated_at = now()
                  WHERE warehouse_stock.source_updated_at < EXCLUDED.source_updated_at
                     OR (warehouse_stock.source_updated_at = EXCLUDED.source_updated_at
                         AND (COALESCE(warehouse_stock.source_triggered_at, '-infinity') < COALESCE(EXCLUDED.source_triggered_at, '-infinity')
                              OR (COALESCE(warehouse_stock.source_triggered_at, '-infinity') = COALESCE(EXCLUDED.source_triggered_at, '-infinity')
                                  AND EXCLUDED.available IS NOT NULL
                                  AND (warehouse_stock.available IS NULL OR EXCLUDED.available < warehouse_stock.available))))
                 RETURNING version",
                &[&level.inventory_item_id, &level.location_id, &level.available, &level.updated_at, &envelope.triggered_at, &envelope.shop_domain],
            )
            .await?;
        let Some(row) = applied else {
            tx.commit().await?;
            return Ok(Outcome::Skipped {
                reason: "older_than_current",
            });
        };
        let version: i64 = row.get(0);
        let aggregate_id = format!("{}:{}", level.inventory_item_id, level.location_id);
        let payload = json!({
            "shop_domain": envelope.shop_domain,
            "inventory_item_id": level.inventory_item_id,
            "location_id": level.location_id,
            "available": level.available,
            "version": version,
            "source_updated_at": level.updated_at,
            "event_id": envelope.event_id,
            "idempotency_key": envelope.idempotency_key.as_str(),
        });
        let outbox_id: i64 = tx
            .query_one(
                "INSERT INTO outbox_events (aggregate_id, event_type, payload, traceparent) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&aggregate_id, &STOCK_LEVEL_CHANGED, &payload, &envelope.traceparent],
            )
            .await?
            .get(0);
        // Delivered at commit, wakes the relay without waiting for its next poll.
        tx.execute(&format!("NOTIFY {OUTBOX_CHANNEL}"), &[]).await?;
        tx.commit().await?;
        crate::audit::record_outbox(outbox_id, STOCK_LEVEL_CHANGED, &aggregate_id, version);
        Ok(Outcome::Applied {
            steps: vec![
                "idempotency_recorded",
                "stock_upserted",
                "outbox_inserted",
                "committed",
            ],
        })
    }

    async fn record_only(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !record(&tx, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        tx.commit().await?;
        Ok(Outcome::Skipped {
            reason: "no_effect_for_topic",
        })
    }
}

impl DomainHandler for InventoryHandler {
    fn handle<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(async move {
            match envelope.topic.as_str() {
                "inventory_levels/update" => self.apply_level_update(envelope).await,
                topic
                    if hookline_core::topics::lookup(topic)
                        .is_some_and(|t| t.domain == hookline_core::Domain::Inventory) =>
                {
                    self.record_only(envelope).await
                }
                topic => Err(HandlerError::UnknownTopic(topic.to_owned())),
            }
        })
    }
}
