//! Shopify's mandatory privacy webhooks: `customers/redact`, `shop/redact` and
//! `customers/data_request`, in their own bulkhead so a long erasure never holds up orders.
//!
//! What hookline holds about a customer: `order_sync` rows (order name and the sevDesk contact
//! id; no names or addresses), and whole payloads in dead letters — still queued, or archived in
//! `dead_letter_archive`. Outbox rows carry stock levels only, no personal data. The invoices and
//! credit notes in sevDesk are the merchant's accounting records, which the merchant must keep by
//! law; hookline does not touch them.
//!
//! - `customers/redact`: the orders named in `orders_to_redact` lose their order name and contact
//!   id (`redacted_at` is set); the audit trail's rows about the customer (customer id, e-mail,
//!   or one of those orders) lose their envelope and keep their outcome ([`crate::audit`]); archived dead letters about the customer (their `customer.id`,
//!   e-mail, or one of those orders) lose body and payload; queued dead letters about the customer
//!   are taken out of the queues and archived without body and payload; earlier exports of
//!   `customers/data_request` about the customer are deleted. Shopify may send only the
//!   customer's e-mail, without `customer.id`: then everything is matched by e-mail (and orders).
//! - `shop/redact` (48 h after a shop uninstalled the app): everything of the shop is deleted —
//!   order and refund sync rows, processed events, stock levels, outbox rows, reconciliation
//!   watermarks, archived dead letters, exports — and its queued dead letters are taken out of
//!   the queues and dropped. The shop's audit trail rows lose their envelopes (their outcome
//!   skeleton stays until retention drops it).
//! - `customers/data_request`: what hookline holds about the customer is written to
//!   `data_request_exports` (one row per request) for the merchant to hand over.
//! - `app/uninstalled`: the shop is marked uninstalled (`shop_uninstalls`): the reconciliation
//!   poller and any other per-shop poller skip it ([`is_uninstalled`]), since its Admin API
//!   tokens stop working; nothing is deleted, because the shop may install the app again within
//!   the 48 hours before its `shop/redact`. A later webhook of the shop that is not a privacy
//!   webhook, received after the uninstall, is taken as a reinstall and clears the mark
//!   ([`crate::idempotency::record`], in the transaction of that webhook's effect). `shop/redact`
//!   deletes the mark with the rest, and the shop's stored offline Admin API tokens.
//!
//! Only the body is signed, not the headers, so before anything is erased the payload must fit
//! the envelope ([`check_label`]): its `shop_domain` must be the envelope's shop, and its shape
//! the topic's. Otherwise (a `customers/redact` body re-sent as `shop/redact`, which would wipe
//! the shop) the request is dead-lettered as `relabelled` and nothing is touched.
//!
//! Each action is recorded in `compliance_actions` (which request, when, counts), never with the
//! data itself, in the transaction that records the event as processed. Every step is safe to
//! repeat, so a crash mid-way is finished by the redelivery.

use deadpool_postgres::Pool;
use hookline_broker::dlq::{self, DeadLetter, Filter};
use hookline_core::Envelope;
use lapin::{Connection, ConnectionProperties};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domains::{BoxFuture, DomainHandler, Outcome};
use crate::error::HandlerError;
use crate::schema::Schema;
use crate::{idempotency, schema};

/// The customer a request is about.
#[derive(Debug, Clone, Deserialize)]
pub struct CustomerRef {
    /// Shopify customer id; absent when Shopify sends only the e-mail.
    #[serde(default)]
    pub id: Option<i64>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
}

/// `customers/redact`.
#[derive(Debug, Clone, Deserialize)]
pub struct CustomerRedact {
    /// The shop.
    pub shop_domain: String,
    /// The customer.
    pub customer: CustomerRef,
    /// Orders whose data is to be erased.
    #[serde(default)]
    pub orders_to_redact: Vec<i64>,
}

impl Schema for CustomerRedact {
    const KNOWN_FIELDS: &'static [&'static str] =
        &["shop_id", "shop_domain", "customer", "orders_to_redact"];
    const OPTIONAL_FIELDS: &'static [&'static str] = &["orders_to_redact"];
}

/// The `data_request` object.
#[derive(Debug, Clone, Deserialize)]
pub struct DataRequestRef {
    /// The request's id.
    pub id: i64,
}

/// `customers/data_request`.
#[derive(Debug, Clone, Deserialize)]
pub struct DataRequest {
    /// The shop.
    pub shop_domain: String,
    /// The customer.
    pub customer: CustomerRef,
    /// Orders the customer asked about.
    #[serde(default)]
    pub orders_requested: Vec<i64>,
    /// The request.
    pub data_request: DataRequestRef,
}

impl Schema for DataRequest {
    const KNOWN_FIELDS: &'static [&'static str] = &[
        "shop_id",
        "shop_domain",
        "customer",
        "orders_requested",
        "data_request",
    ];
    const OPTIONAL_FIELDS: &'static [&'static str] = &["orders_requested"];
}

/// `shop/redact`.
#[derive(Debug, Clone, Deserialize)]
pub struct ShopRedact {
    /// The shop.
    pub shop_domain: String,
}

impl Schema for ShopRedact {
    const KNOWN_FIELDS: &'static [&'static str] = &["shop_id", "shop_domain"];
    const OPTIONAL_FIELDS: &'static [&'static str] = &[];
}

/// Whether a Shopify payload is about `customer` or one of `orders`: its customer id, its
/// (customer's) e-mail, its order id (`id` of an order, `order_id` of a refund).
pub fn concerns(payload: &Value, customer: &CustomerRef, orders: &[i64]) -> bool {
    let id_of = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let same_email = |v: &Value| {
        matches!((v.as_str(), customer.email.as_deref()),
            (Some(a), Some(b)) if !b.is_empty() && a.eq_ignore_ascii_case(b))
    };
    (customer.id.is_some() && id_of(&payload["customer"]["id"]) == customer.id)
        || same_email(&payload["email"])
        || same_email(&payload["customer"]["email"])
        || id_of(&payload["order_id"]).is_some_and(|o| orders.contains(&o))
        || (payload.get("line_items").is_some()
            && id_of(&payload["id"]).is_some_and(|o| orders.contains(&o)))
}

/// Whether a queued dead letter (its body, an envelope) belongs to `shop` and concerns the
/// customer.
fn dead_letter_concerns(body: &[u8], shop: &str, customer: &CustomerRef, orders: &[i64]) -> bool {
    let Ok(envelope) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    envelope["shop_domain"].as_str() == Some(shop)
        && concerns(&envelope["payload"], customer, orders)
}

/// Top-level fields that only one privacy topic's payload has: a payload holding one of them
/// is that topic's, whatever the envelope's topic says.
const OWN_FIELDS: &[(&str, &[&str])] = &[
    ("customers/redact", &["orders_to_redact"]),
    (
        "customers/data_request",
        &["data_request", "orders_requested"],
    ),
    ("shop/redact", &[]),
    ("app/uninstalled", &["myshopify_domain"]),
];

/// Fields each topic's payload must have for it to be that topic's at all.
const REQUIRED_FIELDS: &[(&str, &[&str])] = &[
    ("customers/redact", &["shop_domain", "customer"]),
    (
        "customers/data_request",
        &["shop_domain", "customer", "data_request"],
    ),
    ("shop/redact", &["shop_id", "shop_domain"]),
    ("app/uninstalled", &["id", "myshopify_domain"]),
];

/// Whether the payload fits the envelope it came in: its `shop_domain` is the envelope's shop
/// (case aside), it has its topic's fields, none of another privacy topic's, and no `customer`
/// if it is a `shop/redact`.
///
/// Headers are not signed: anyone who saw one signed privacy webhook could re-send its body
/// under another topic or shop header. A `customers/redact` body re-sent as `shop/redact` would
/// otherwise delete a whole shop's data; one re-sent for another shop would erase that shop's
/// rows about the customer's order ids.
pub fn check_label(topic: &str, shop: &str, payload: &Value) -> Result<(), HandlerError> {
    let relabelled = |why: String| {
        Err(HandlerError::Relabelled(format!(
            "{topic} for {shop}: {why}"
        )))
    };
    let Some(fields) = payload.as_object() else {
        return relabelled("the payload is not an object".into());
    };
    // The shop's own resource (`app/uninstalled`) names it `myshopify_domain`.
    for key in ["shop_domain", "myshopify_domain"] {
        if let Some(claimed) = fields.get(key).and_then(Value::as_str)
            && !claimed.eq_ignore_ascii_case(shop)
        {
            return relabelled(format!("the payload is about shop {claimed}"));
        }
    }
    let required = REQUIRED_FIELDS
        .iter()
        .find(|(t, _)| *t == topic)
        .map_or(&[][..], |(_, f)| *f);
    if let Some(missing) = required.iter().find(|f| !fields.contains_key(**f)) {
        return relabelled(format!(
            "the payload has no `{missing}`, which every {topic} has"
        ));
    }
    for (other, own) in OWN_FIELDS.iter().filter(|(t, _)| *t != topic) {
        if let Some(field) = own.iter().find(|f| fields.contains_key(**f)) {
            return relabelled(format!("the payload has `{field}`, so it is a {other}"));
        }
    }
    if topic == "shop/redact" && fields.contains_key("customer") {
        return relabelled("the payload is about a customer, so it is not a shop/redact".into());
    }
    Ok(())
}

/// Whether an earlier data-request export is about `customer` (or one of `orders`).
fn export_concerns(export: &Value, customer: &CustomerRef, orders: &[i64]) -> bool {
    let listed = |field: &str| export[field].as_array().cloned().unwrap_or_default();
    (customer.id.is_some() && export["customer_id"].as_i64() == customer.id)
        || listed("orders").iter().any(|o| {
            o["order_id"]
                .as_i64()
                .is_some_and(|id| orders.contains(&id))
        })
        || listed("dead_letters_archived")
            .iter()
            .chain(listed("dead_letters_queued").iter())
            .any(|d| concerns(&d["payload"], customer, orders))
}

/// The compliance domain's effect.
pub struct ComplianceHandler {
    pool: Pool,
    /// For the dead-letter queues (a connection per request: they are rare).
    amqp_url: String,
}

impl ComplianceHandler {
    /// A handler using `pool` (the compliance bulkhead's) and the broker at `amqp_url`.
    pub fn new(pool: Pool, amqp_url: String) -> Self {
        Self { pool, amqp_url }
    }

    async fn broker(&self) -> Result<Connection, HandlerError> {
        Connection::connect(
            &self.amqp_url,
            ConnectionProperties::default().with_connection_name("hookline-compliance".into()),
        )
        .await
        .map_err(|e| HandlerError::Broker(crate::failure::error_chain(&e)))
    }

    async fn customer_redact(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let request: CustomerRedact = schema::parse(envelope)?;
        let shop = envelope.shop_domain.as_str();
        let orders = &request.orders_to_redact;
        let mut client = self.pool.get().await?;
        if idempotency::is_recorded(&client, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        let orders_redacted = client
            .execute(
                "UPDATE order_sync SET order_name = NULL, contact_id = NULL, redacted_at = now()
                 WHERE shop_domain = $1 AND order_id = ANY($2) AND redacted_at IS NULL",
                &[&shop, orders],
            )
            .await?;
        let archived = client
            .query(
                "SELECT id, payload FROM dead_letter_archive WHERE shop_domain = $1 AND payload IS NOT NULL",
                &[&shop],
            )
            .await?;
        let ids: Vec<i64> = archived
            .iter()
            .filter(|r| concerns(&r.get::<_, Value>(1), &request.customer, orders))
            .map(|r| r.get(0))
            .collect();
        let archive_erased = client
            .execute(
                "UPDATE dead_letter_archive SET body = NULL, payload = NULL, redacted_at = now() WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        let exports = client
            .query(
                "SELECT request_id, export FROM data_request_exports WHERE shop_domain = $1",
                &[&shop],
            )
            .await?;
        let export_ids: Vec<String> = exports
            .iter()
            .filter(|r| export_concerns(&r.get::<_, Value>(1), &request.customer, orders))
            .map(|r| r.get(0))
            .collect();
        let exports_deleted = client
            .execute(
                "DELETE FROM data_request_exports WHERE shop_domain = $1 AND request_id = ANY($2)",
                &[&shop, &export_ids],
            )
            .await?;
        let trail_redacted = crate::audit::redact_customer(
            &client,
            shop,
            request.customer.id,
            request.customer.email.as_deref(),
            orders,
        )
        .await?;
        // Queued dead letters: archived without body or payload, then acked.
        let connection = self.broker().await?;
        let taken = dlq::take(
            &connection,
            &Filter::default(),
            |_: &DeadLetter, body: &[u8]| {
                dead_letter_concerns(body, shop, &request.customer, orders)
            },
            |taken| {
                let client = &client;
                async move {
                    hookline_broker::archive::insert(client, &taken, true).await?;
                    Ok::<_, HandlerError>(())
                }
            },
        )
        .await;
        let _ = connection.close(200, "redacted".into()).await;
        let queued_erased = taken?.len();
        let summary = json!({
            "orders_to_redact": orders.len(),
            "order_sync_rows_redacted": orders_redacted,
            "archived_dead_letters_erased": archive_erased,
            "queued_dead_letters_erased": queued_erased,
            "data_request_exports_deleted": exports_deleted,
            "audit_events_redacted": trail_redacted,
            "matched_by": if request.customer.id.is_some() { "customer_id_and_email" } else { "email" },
        });
        finish(&mut client, envelope, request.customer.id, None, summary).await
    }

    async fn shop_redact(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let _: ShopRedact = schema::parse(envelope)?;
        let shop = envelope.shop_domain.as_str();
        let mut client = self.pool.get().await?;
        if idempotency::is_recorded(&client, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        let mut summary = serde_json::Map::new();
        let tx = client.transaction().await?;
        for (table, condition) in [
            ("order_sync", "shop_domain = $1"),
            ("refund_sync", "shop_domain = $1"),
            ("processed_events", "shop_domain = $1"),
            ("warehouse_stock", "shop_domain = $1"),
            ("outbox_events", "payload->>'shop_domain' = $1"),
            ("reconcile_watermarks", "shop_domain = $1"),
            ("dead_letter_archive", "shop_domain = $1"),
            ("data_request_exports", "shop_domain = $1"),
            ("notification_outbox", "shop_domain = $1"),
            ("payment_sync", "shop_domain = $1"),
            ("payment_watermarks", "shop_domain = $1"),
            ("shopify_offline_tokens", "shop = $1"),
            ("shop_uninstalls", "shop_domain = $1"),
        ] {
            let deleted = tx
                .execute(&format!("DELETE FROM {table} WHERE {condition}"), &[&shop])
                .await?;
            summary.insert(format!("{table}_deleted"), json!(deleted));
        }
        tx.commit().await?;
        summary.insert(
            "audit_events_redacted".into(),
            json!(crate::audit::redact_shop(&client, shop).await?),
        );
        let connection = self.broker().await?;
        let taken = dlq::take(
            &connection,
            &Filter::default(),
            |dead: &DeadLetter, _: &[u8]| dead.shop == shop,
            |_| async { Ok::<_, HandlerError>(()) },
        )
        .await;
        let _ = connection.close(200, "redacted".into()).await;
        summary.insert("queued_dead_letters_deleted".into(), json!(taken?.len()));
        finish(&mut client, envelope, None, None, Value::Object(summary)).await
    }

    async fn data_request(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let request: DataRequest = schema::parse(envelope)?;
        let shop = envelope.shop_domain.as_str();
        let orders = &request.orders_requested;
        let customer = &request.customer;
        let mut client = self.pool.get().await?;
        if idempotency::is_recorded(&client, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        let order_rows = client
            .query(
                "SELECT order_id, order_name, state, financial_status, total_price::text, currency,
                        contact_id, invoice_id, cancellation_id, created_at, updated_at
                 FROM order_sync WHERE shop_domain = $1 AND order_id = ANY($2) ORDER BY order_id",
                &[&shop, orders],
            )
            .await?
            .iter()
            .map(|r| {
                json!({
                    "order_id": r.get::<_, i64>(0),
                    "order_name": r.get::<_, Option<String>>(1),
                    "sync_state": r.get::<_, String>(2),
                    "financial_status": r.get::<_, Option<String>>(3),
                    "total_price": r.get::<_, Option<String>>(4),
                    "currency": r.get::<_, Option<String>>(5),
                    "sevdesk_contact_id": r.get::<_, Option<String>>(6),
                    "sevdesk_invoice_id": r.get::<_, Option<String>>(7),
                    "sevdesk_cancellation_id": r.get::<_, Option<String>>(8),
                    "first_seen": r.get::<_, chrono::DateTime<chrono::Utc>>(9),
                    "last_changed": r.get::<_, chrono::DateTime<chrono::Utc>>(10),
                })
            })
            .collect::<Vec<_>>();
        let refund_rows = client
            .query(
                "SELECT refund_id, order_id, state, amount::text, credit_note_id FROM refund_sync
                 WHERE shop_domain = $1 AND order_id = ANY($2) ORDER BY refund_id",
                &[&shop, orders],
            )
            .await?
            .iter()
            .map(|r| {
                json!({
                    "refund_id": r.get::<_, i64>(0),
                    "order_id": r.get::<_, i64>(1),
                    "sync_state": r.get::<_, String>(2),
                    "amount": r.get::<_, Option<String>>(3),
                    "sevdesk_credit_note_id": r.get::<_, Option<String>>(4),
                })
            })
            .collect::<Vec<_>>();
        let archived = client
            .query(
                "SELECT event_id, topic, reason, archived_at, payload FROM dead_letter_archive
                 WHERE shop_domain = $1 AND payload IS NOT NULL ORDER BY id",
                &[&shop],
            )
            .await?
            .iter()
            .filter(|r| concerns(&r.get::<_, Value>(4), customer, orders))
            .map(|r| {
                json!({
                    "event_id": r.get::<_, String>(0),
                    "topic": r.get::<_, String>(1),
                    "reason": r.get::<_, String>(2),
                    "archived_at": r.get::<_, chrono::DateTime<chrono::Utc>>(3),
                    "payload": r.get::<_, Value>(4),
                })
            })
            .collect::<Vec<_>>();
        let connection = self.broker().await?;
        let scanned = dlq::scan(&connection, &Filter::default()).await;
        let _ = connection.close(200, "scanned".into()).await;
        let queued = scanned?
            .into_iter()
            .filter(|(_, body)| dead_letter_concerns(body, shop, customer, orders))
            .map(|(dead, body)| {
                let payload = serde_json::from_slice::<Value>(&body)
                    .map(|e| e["payload"].clone())
                    .unwrap_or(Value::Null);
                json!({"event_id": dead.event_id, "topic": dead.topic, "reason": dead.reason, "payload": payload})
            })
            .collect::<Vec<_>>();
        let export = json!({
            "shop_domain": shop,
            "customer_id": customer.id,
            "data_request_id": request.data_request.id,
            "orders": order_rows,
            "refunds": refund_rows,
            "dead_letters_archived": archived,
            "dead_letters_queued": queued,
            "not_held": "hookline keeps no names, addresses or phone numbers outside dead-letter payloads; invoices and credit notes are in the merchant's sevDesk account",
        });
        let summary = json!({
            "orders": order_rows.len(),
            "refunds": refund_rows.len(),
            "dead_letters_archived": archived.len(),
            "dead_letters_queued": queued.len(),
        });
        let request_id = request.data_request.id.to_string();
        client
            .execute(
                "INSERT INTO data_request_exports (shop_domain, request_id, customer_id, export) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (shop_domain, request_id) DO NOTHING",
                &[&shop, &request_id, &customer.id, &export],
            )
            .await?;
        finish(
            &mut client,
            envelope,
            customer.id,
            Some(request_id),
            summary,
        )
        .await
    }
}

impl ComplianceHandler {
    /// `app/uninstalled`: marks the shop, in the transaction that records the event. A second
    /// uninstall (after a reinstall) moves the mark to the later one.
    async fn app_uninstalled(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !idempotency::record(&tx, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        tx.execute(
            "INSERT INTO shop_uninstalls (shop_domain, uninstalled_at, webhook_id) VALUES ($1, $2, $3)
             ON CONFLICT (shop_domain) DO UPDATE SET
                uninstalled_at = GREATEST(shop_uninstalls.uninstalled_at, EXCLUDED.uninstalled_at),
                webhook_id = EXCLUDED.webhook_id, recorded_at = now()",
            &[&envelope.shop_domain, &envelope.received_at, &envelope.webhook_id],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(shop = %envelope.shop_domain, "shop uninstalled the app: no longer polled; its data stays until shop/redact");
        Ok(Outcome::Applied {
            steps: vec!["shop_uninstalled"],
        })
    }
}

/// Whether `shop` uninstalled the app (and has not sent a webhook since): per-shop pollers skip
/// it.
pub async fn is_uninstalled<C: deadpool_postgres::GenericClient>(
    client: &C,
    shop: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM shop_uninstalls WHERE shop_domain = $1",
            &[&shop],
        )
        .await?
        .is_some())
}

/// Records the action and the event as processed, in one transaction.
async fn finish(
    client: &mut deadpool_postgres::Object,
    envelope: &Envelope,
    customer_id: Option<i64>,
    request_id: Option<String>,
    summary: Value,
) -> Result<Outcome, HandlerError> {
    let tx = client.transaction().await?;
    if !idempotency::record(&tx, envelope).await? {
        return Ok(Outcome::Duplicate);
    }
    tx.execute(
        "INSERT INTO compliance_actions (topic, shop_domain, webhook_id, request_id, customer_id, summary)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &envelope.topic,
            &envelope.shop_domain,
            &envelope.webhook_id,
            &request_id,
            &customer_id,
            &summary,
        ],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(topic = %envelope.topic, shop = %envelope.shop_domain, %summary, "privacy request done");
    Ok(Outcome::Applied {
        steps: vec!["privacy_request_done"],
    })
}

impl DomainHandler for ComplianceHandler {
    fn handle<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(async move {
            let payload: Value =
                serde_json::from_str(envelope.payload.get()).map_err(|e| HandlerError::Schema {
                    topic: envelope.topic.clone(),
                    path: ".".into(),
                    api_version: envelope.api_version.clone(),
                    message: e.to_string(),
                })?;
            check_label(&envelope.topic, &envelope.shop_domain, &payload)?;
            match envelope.topic.as_str() {
                "customers/redact" => self.customer_redact(envelope).await,
                "shop/redact" => self.shop_redact(envelope).await,
                "customers/data_request" => self.data_request(envelope).await,
                "app/uninstalled" => self.app_uninstalled(envelope).await,
                topic => Err(HandlerError::UnknownTopic(topic.to_owned())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> CustomerRef {
        CustomerRef {
            id: Some(7),
            email: Some("Jon@Example.com".into()),
            phone: None,
        }
    }

    #[test]
    fn a_payload_concerns_the_customer_by_id_email_or_order() {
        let c = customer();
        assert!(concerns(&json!({"customer": {"id": 7}}), &c, &[]));
        assert!(concerns(&json!({"customer": {"id": "7"}}), &c, &[]));
        assert!(concerns(&json!({"email": "jon@example.com"}), &c, &[]));
        assert!(concerns(&json!({"id": 99, "line_items": []}), &c, &[99]));
        assert!(concerns(&json!({"id": 5, "order_id": 99}), &c, &[99]));
        assert!(!concerns(
            &json!({"customer": {"id": 8}, "email": "x@y.z"}),
            &c,
            &[99]
        ));
        // An inventory level's `id`-less payload, or a product id equal to an order id, is not
        // an order.
        assert!(!concerns(&json!({"id": 99, "title": "Socks"}), &c, &[99]));
        let no_email = CustomerRef {
            email: Some(String::new()),
            ..c.clone()
        };
        assert!(!concerns(&json!({"email": ""}), &no_email, &[]));
        // Only an e-mail: matched by e-mail, never by a missing id.
        let email_only = CustomerRef { id: None, ..c };
        assert!(concerns(
            &json!({"customer": {"id": 8, "email": "JON@example.com"}}),
            &email_only,
            &[]
        ));
        assert!(!concerns(
            &json!({"customer": {"id": null}}),
            &email_only,
            &[]
        ));
    }

    #[test]
    fn a_payload_must_fit_its_topic_and_shop() {
        let shop = "example.myshopify.com";
        let redact = json!({"shop_id": 1, "shop_domain": shop, "customer": {"id": 7}, "orders_to_redact": [1]});
        let data = json!({"shop_id": 1, "shop_domain": shop, "customer": {"id": 7}, "orders_requested": [], "data_request": {"id": 9}});
        let shop_redact = json!({"shop_id": 1, "shop_domain": shop});
        assert!(check_label("customers/redact", shop, &redact).is_ok());
        assert!(check_label("customers/redact", "EXAMPLE.myshopify.com", &redact).is_ok());
        assert!(check_label("customers/data_request", shop, &data).is_ok());
        assert!(check_label("shop/redact", shop, &shop_redact).is_ok());
        for (topic, shop, payload) in [
            ("shop/redact", shop, &redact),
            ("shop/redact", shop, &data),
            ("customers/redact", shop, &data),
            ("customers/redact", shop, &shop_redact),
            ("customers/data_request", shop, &redact),
            ("shop/redact", "other.myshopify.com", &shop_redact),
            ("customers/redact", "other.myshopify.com", &redact),
        ] {
            assert!(
                matches!(
                    check_label(topic, shop, payload),
                    Err(HandlerError::Relabelled(_))
                ),
                "{topic} for {shop}: {payload}"
            );
        }
    }
}
