//! Orders: exactly one sevDesk invoice per paid Shopify order, with the payment booked.
//!
//! sevDesk has no idempotency keys, so the guarantee comes from a state machine in PostgreSQL,
//! one `order_sync` row per `(shop, order)`:
//!
//! ```text
//! pending ─contact found/created─▶ contact_ok ─▶ invoice_creating ─saveInvoice─▶ invoice_created
//!   ─sendBy─▶ invoice_sent ─bookAmount─▶ payment_booked            (any state) ─▶ cancelled
//! ```
//!
//! Each step's state is committed **after** its API call returned, and no call happens inside an
//! open transaction. After a crash the row names the one call that may have happened unrecorded,
//! and that step is made safe to repeat: the contact is searched by its deterministic customer
//! number before one is created; `invoice_creating` is committed before `saveInvoice`, and a
//! delivery that finds it searches sevDesk for the invoice carrying this order's marker and adopts
//! it instead of creating a second one; `sendBy` on an open invoice changes nothing; the invoice's
//! `paidAmount` is read before booking; an existing cancellation is adopted before cancelling.
//!
//! Deliveries for one order are serialised by a PostgreSQL advisory lock held (on the connection,
//! not in a transaction) while the steps run: a second delivery for the same order retries later
//! (`order_busy`). A crashed worker's lock goes with its connection; a delivery that times out or
//! panics closes its connection (see [`crate::order_lock`]).
//!
//! Topics: `orders/paid` drives the invoice; `orders/create` and `orders/updated` record the order
//! (no invoice while it is unpaid); `orders/cancelled` cancels an existing invoice (a cancellation
//! invoice) or, before any invoice, marks the order so a late `orders/paid` creates none.
//! `refunds/create` becomes a credit note with the refunded money booked (see [`refunds`]).

pub mod mapping;
mod refunds;

use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use hookline_core::Envelope;
use rust_decimal::Decimal;
use tokio::sync::OnceCell;

use crate::domains::{BoxFuture, DomainHandler, Outcome};
use crate::error::HandlerError;
use crate::order_lock::OrderLock;
use crate::sevdesk::{ContactDraft, SevDeskClient};
use crate::{idempotency, schema};
use mapping::Order;

/// Where an order's synchronisation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Known, nothing sent to sevDesk yet.
    Pending,
    /// The contact exists in sevDesk (`contact_id`).
    ContactOk,
    /// `saveInvoice` may have been sent: search before creating again.
    InvoiceCreating,
    /// The invoice exists (`invoice_id`), still a draft.
    InvoiceCreated,
    /// The invoice is open.
    InvoiceSent,
    /// The payment is booked: done.
    PaymentBooked,
    /// Cancelled: with a cancellation invoice if an invoice existed, else without one.
    Cancelled,
}

impl SyncState {
    /// The `order_sync.state` text.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Pending => "pending",
            SyncState::ContactOk => "contact_ok",
            SyncState::InvoiceCreating => "invoice_creating",
            SyncState::InvoiceCreated => "invoice_created",
            SyncState::InvoiceSent => "invoice_sent",
            SyncState::PaymentBooked => "payment_booked",
            SyncState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> SyncState {
        match s {
            "contact_ok" => SyncState::ContactOk,
            "invoice_creating" => SyncState::InvoiceCreating,
            "invoice_created" => SyncState::InvoiceCreated,
            "invoice_sent" => SyncState::InvoiceSent,
            "payment_booked" => SyncState::PaymentBooked,
            "cancelled" => SyncState::Cancelled,
            _ => SyncState::Pending,
        }
    }
}

/// The `order_sync` row, as far as the steps need it.
#[derive(Debug, Clone)]
struct SyncRow {
    state: SyncState,
    paid: bool,
    cancel_requested: bool,
    contact_id: Option<String>,
    invoice_id: Option<String>,
}

/// The orders domain's effect.
pub struct OrdersHandler {
    /// The orders bulkhead's own pool.
    pool: Pool,
    /// sevDesk, behind its breaker.
    sevdesk: SevDeskClient,
    /// `HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID`, or the first check account, asked once.
    check_account: Arc<OnceCell<String>>,
    configured_check_account: Option<String>,
}

impl OrdersHandler {
    /// A handler using `pool` (the orders bulkhead's) and `sevdesk`.
    pub fn new(pool: Pool, sevdesk: SevDeskClient, check_account: Option<String>) -> Self {
        Self {
            pool,
            sevdesk,
            check_account: Arc::new(OnceCell::new()),
            configured_check_account: check_account,
        }
    }

    async fn check_account(&self, trace: Option<&str>) -> Result<String, HandlerError> {
        if let Some(id) = &self.configured_check_account {
            return Ok(id.clone());
        }
        self.check_account
            .get_or_try_init(|| self.sevdesk.first_check_account(trace))
            .await
            .cloned()
    }

    async fn handle_order(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let order: Order = schema::parse(envelope)?;
        let client = self.pool.get().await?;
        if idempotency::is_recorded(&client, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        let lock = OrderLock::acquire(client, &envelope.shop_domain, order.id).await?;
        let result = self.drive(&lock, envelope, &order).await;
        lock.release().await;
        result
    }

    /// Records the event on the order, then runs every step the order is due for.
    async fn drive(
        &self,
        client: &Object,
        envelope: &Envelope,
        order: &Order,
    ) -> Result<Outcome, HandlerError> {
        let topic = envelope.topic.as_str();
        let trace = Some(envelope.traceparent.as_str());
        let shop = envelope.shop_domain.as_str();
        let total = mapping::Dec(order.total_price.0).0;
        let row = client
            .query_one(
                "INSERT INTO order_sync (shop_domain, order_id, order_name, financial_status, total_price, currency, paid, cancel_requested)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (shop_domain, order_id) DO UPDATE SET
                    order_name = EXCLUDED.order_name,
                    total_price = EXCLUDED.total_price,
                    currency = EXCLUDED.currency,
                    financial_status = EXCLUDED.financial_status,
                    paid = order_sync.paid OR EXCLUDED.paid,
                    cancel_requested = order_sync.cancel_requested OR EXCLUDED.cancel_requested,
                    updated_at = now()
                 RETURNING state, paid, cancel_requested, contact_id, invoice_id",
                &[
                    &shop,
                    &order.id,
                    &order.name,
                    &order.financial_status,
                    &total,
                    &order.currency,
                    &(topic == "orders/paid"),
                    &(topic == "orders/cancelled"),
                ],
            )
            .await?;
        let mut s = SyncRow {
            state: SyncState::parse(row.get::<_, &str>(0)),
            paid: row.get(1),
            cancel_requested: row.get(2),
            contact_id: row.get(3),
            invoice_id: row.get(4),
        };
        let mut steps: Vec<&'static str> = vec!["order_recorded"];
        let marker = mapping::marker(shop, order.id);
        loop {
            let next = match (s.state, s.cancel_requested) {
                (SyncState::Cancelled, _) | (SyncState::PaymentBooked, false) => break,
                (SyncState::Pending | SyncState::ContactOk, true) => {
                    steps.push("cancelled_before_invoice");
                    SyncState::Cancelled
                }
                (SyncState::InvoiceCreating, true) => {
                    match self.adopt_invoice(&marker, trace).await? {
                        Some(id) => {
                            s.invoice_id = Some(id);
                            steps.push("invoice_adopted");
                            SyncState::InvoiceCreated
                        }
                        None => {
                            steps.push("cancelled_before_invoice");
                            SyncState::Cancelled
                        }
                    }
                }
                (
                    SyncState::InvoiceCreated | SyncState::InvoiceSent | SyncState::PaymentBooked,
                    true,
                ) => {
                    let invoice_id = s.invoice_id.clone().ok_or(HandlerError::Unsupported(
                        "invoice state without invoice id".into(),
                    ))?;
                    let credited = refunds::credited(client, shop, order.id).await?;
                    if credited >= total {
                        // Every cent is already on credit notes: a cancellation invoice on top
                        // would take the revenue off twice.
                        steps.push("cancelled_fully_refunded");
                        set_state(client, shop, order.id, SyncState::Cancelled).await?;
                        s.state = SyncState::Cancelled;
                        continue;
                    }
                    if credited > Decimal::ZERO {
                        return Err(HandlerError::NeedsReview(format!(
                            "order {} is cancelled after {credited} of {total} were refunded on credit notes; \
                             a cancellation invoice would take the refunded part off twice",
                            order.name
                        )));
                    }
                    let existing = self
                        .sevdesk
                        .find_invoices(&marker, trace)
                        .await?
                        .into_iter()
                        .find(|i| i.invoice_type == "SR");
                    let cancellation = match existing {
                        Some(sr) => sr.id,
                        None => self.sevdesk.cancel_invoice(&invoice_id, trace).await?,
                    };
                    client
                        .execute("UPDATE order_sync SET cancellation_id = $3 WHERE shop_domain = $1 AND order_id = $2", &[&shop, &order.id, &cancellation])
                        .await?;
                    steps.push("invoice_cancelled");
                    SyncState::Cancelled
                }
                // Only an orders/paid (or its reconciled copy) creates and books invoices.
                (_, false) if !s.paid || topic != "orders/paid" => break,
                (SyncState::Pending, false) => {
                    let contact = contact_for(order);
                    let id = match self
                        .sevdesk
                        .find_contact(&contact.customer_number, trace)
                        .await?
                    {
                        Some(id) => id,
                        None => self.sevdesk.create_contact(&contact, trace).await?,
                    };
                    client.execute("UPDATE order_sync SET contact_id = $3 WHERE shop_domain = $1 AND order_id = $2", &[&shop, &order.id, &id]).await?;
                    s.contact_id = Some(id);
                    steps.push("contact_ok");
                    SyncState::ContactOk
                }
                (SyncState::ContactOk | SyncState::InvoiceCreating, false) => {
                    let draft = mapping::invoice_for(shop, order)?;
                    let adopted = if s.state == SyncState::InvoiceCreating {
                        self.adopt_invoice(&marker, trace).await?
                    } else {
                        None
                    };
                    let id = match adopted {
                        Some(id) => {
                            steps.push("invoice_adopted");
                            id
                        }
                        None => {
                            // Committed before the call: if we never learn its answer, the next
                            // delivery knows to search first.
                            set_state(client, shop, order.id, SyncState::InvoiceCreating).await?;
                            let contact = s.contact_id.clone().ok_or(HandlerError::Unsupported(
                                "contact_ok without contact id".into(),
                            ))?;
                            let created =
                                self.sevdesk.save_invoice(&contact, &draft, trace).await?;
                            steps.push("invoice_created");
                            created.id
                        }
                    };
                    client.execute("UPDATE order_sync SET invoice_id = $3 WHERE shop_domain = $1 AND order_id = $2", &[&shop, &order.id, &id]).await?;
                    s.invoice_id = Some(id);
                    SyncState::InvoiceCreated
                }
                (SyncState::InvoiceCreated, false) => {
                    let id = s.invoice_id.clone().ok_or(HandlerError::Unsupported(
                        "invoice state without invoice id".into(),
                    ))?;
                    self.sevdesk.send_by(&id, trace).await?;
                    steps.push("invoice_sent");
                    SyncState::InvoiceSent
                }
                (SyncState::InvoiceSent, false) => {
                    let id = s.invoice_id.clone().ok_or(HandlerError::Unsupported(
                        "invoice state without invoice id".into(),
                    ))?;
                    // Re-read before booking: a booking whose answer was lost must not be repeated.
                    let invoice = self.sevdesk.get_invoice(&id, trace).await?;
                    let due = total - invoice.paid_amount;
                    if due > Decimal::ZERO {
                        let account = self.check_account(trace).await?;
                        let date = order.processed_at.unwrap_or(order.created_at);
                        self.sevdesk
                            .book_amount(&id, due, date, &account, trace)
                            .await?;
                        steps.push("payment_booked");
                    } else {
                        steps.push("payment_found_booked");
                    }
                    SyncState::PaymentBooked
                }
            };
            set_state(client, shop, order.id, next).await?;
            s.state = next;
        }
        // The event is done: record its key, so a duplicate of it is answered at once.
        if !idempotency::record(client, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        metrics::counter!("hookline_worker_order_states_total", "state" => s.state.as_str())
            .increment(1);
        if steps.len() == 1 {
            return Ok(Outcome::Skipped {
                reason: "nothing_due",
            });
        }
        Ok(Outcome::Applied { steps })
    }

    /// The invoice (not a cancellation) carrying this order's marker, if sevDesk has one.
    async fn adopt_invoice(
        &self,
        marker: &str,
        trace: Option<&str>,
    ) -> Result<Option<String>, HandlerError> {
        let found = self.sevdesk.find_invoices(marker, trace).await?;
        Ok(found
            .into_iter()
            .find(|i| i.invoice_type == "RE")
            .map(|i| i.id))
    }

    async fn record_only(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let client = self.pool.get().await?;
        Ok(if !idempotency::record(&client, envelope).await? {
            Outcome::Duplicate
        } else {
            Outcome::Skipped {
                reason: "no_effect_for_topic",
            }
        })
    }
}

async fn set_state(
    client: &Object,
    shop: &str,
    order_id: i64,
    state: SyncState,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("UPDATE order_sync SET state = $3, updated_at = now() WHERE shop_domain = $1 AND order_id = $2", &[&shop, &order_id, &state.as_str()])
        .await?;
    Ok(())
}

/// The sevDesk contact of an order's customer: a deterministic customer number (searched before
/// creating), an organisation when the billing address names a company, else a person.
pub fn contact_for(order: &Order) -> ContactDraft {
    let billing = order.billing_address.as_ref();
    let customer = order.customer.as_ref();
    let first = customer
        .and_then(|c| c.first_name.clone())
        .or_else(|| billing.and_then(|b| b.first_name.clone()))
        .unwrap_or_default();
    let last = customer
        .and_then(|c| c.last_name.clone())
        .or_else(|| billing.and_then(|b| b.last_name.clone()))
        .unwrap_or_default();
    let organisation = billing
        .and_then(|b| b.company.clone())
        .filter(|c| !c.trim().is_empty());
    let (first, last) = if first.is_empty() && last.is_empty() && organisation.is_none() {
        (
            "Shopify".to_owned(),
            order
                .email
                .clone()
                .unwrap_or_else(|| format!("customer of {}", order.name)),
        )
    } else {
        (first, last)
    };
    let customer_number = match customer {
        Some(c) => format!("SHOPIFY-{}", c.id),
        None => format!("SHOPIFY-ORDER-{}", order.id),
    };
    ContactDraft {
        customer_number,
        organisation,
        first_name: first,
        last_name: last,
    }
}

impl DomainHandler for OrdersHandler {
    fn handle<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(async move {
            match envelope.topic.as_str() {
                "orders/create" | "orders/updated" | "orders/paid" | "orders/cancelled" => {
                    self.handle_order(envelope).await
                }
                "refunds/create" => self.handle_refund(envelope).await,
                topic
                    if hookline_core::topics::lookup(topic)
                        .is_some_and(|t| t.domain == hookline_core::Domain::Orders) =>
                {
                    self.record_only(envelope).await
                }
                topic => Err(HandlerError::UnknownTopic(topic.to_owned())),
            }
        })
    }
}
