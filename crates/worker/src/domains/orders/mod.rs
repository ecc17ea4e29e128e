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

pub mod account;
pub mod machine;
pub mod mapping;
mod refunds;
pub mod tax;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use deadpool_postgres::{Object, Pool};
use hookline_core::Envelope;
use rust_decimal::Decimal;

use crate::books::{Books, ShopBooks};
use crate::domains::{BoxFuture, DomainHandler, Outcome};
use crate::error::HandlerError;
use crate::notifications::{
    self, Channel, Kind as NotifyKind, NewMessage, NotifySettings, OrderFacts,
};
use crate::order_lock::OrderLock;
use crate::sevdesk::{Booking, ContactDraft, InvoiceInfo, Parties};
use crate::{idempotency, schema};
use machine::Step;
pub use machine::{Pending, SyncRow, SyncState};
use mapping::{Order, Treatment};

/// The orders domain's effect.
pub struct OrdersHandler {
    /// The orders bulkhead's own pool.
    pool: Pool,
    /// Each shop's sevDesk account (see [`crate::books`]).
    books: Arc<Books>,
    /// `HOOKLINE_SEVDESK_SETTLE_SECS`: how long a call with an unknown outcome is left alone
    /// before sevDesk is asked what became of it.
    settle: Duration,
    /// How the customer gets the invoice; `None`: no message (`sendBy` only).
    notify: Option<NotifySettings>,
}

/// How long an `orders/paid` waits between looks at the e-mail that opens its invoice.
const MAIL_WAIT: Duration = Duration::from_secs(2);

impl OrdersHandler {
    /// A handler using `pool` (the orders bulkhead's), booking each shop into its account of
    /// `books`.
    pub fn new(pool: Pool, books: Arc<Books>, settle: Duration) -> Self {
        Self {
            pool,
            books,
            settle,
            notify: None,
        }
    }

    /// Sends the customer the invoice as `notify` says (see [`crate::notifications`]).
    pub fn with_notifications(mut self, notify: NotifySettings) -> Self {
        self.notify = Some(notify);
        self
    }

    /// Whether invoices are e-mailed.
    fn mailing(&self) -> bool {
        self.notify
            .as_ref()
            .is_some_and(|n| n.channel == Channel::SevdeskEmail)
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
    ///
    /// What the event may do follows the payload, not the topic header (only the body is
    /// signed): an `orders/paid` books only when its `financial_status` says the order is paid,
    /// and an `orders/cancelled` cancels only when its `cancelled_at` is set.
    async fn drive(
        &self,
        client: &Object,
        envelope: &Envelope,
        order: &Order,
    ) -> Result<Outcome, HandlerError> {
        let topic = envelope.topic.as_str();
        let trace = Some(envelope.traceparent.as_str());
        let shop = envelope.shop_domain.as_str();
        let books = self.books.for_shop(shop)?;
        let total = mapping::invoiced_total(order);
        let paid_now = topic == "orders/paid"
            && matches!(
                order.financial_status.as_deref(),
                Some("paid" | "partially_refunded" | "refunded")
            );
        let cancel_now = topic == "orders/cancelled" && order.cancelled_at.is_some();
        // Prepayment (bank transfer): invoiced when ordered, so the customer has the invoice to
        // pay by; booked when Shopify reports it paid.
        let prepayment_now = matches!(topic, "orders/create" | "orders/updated")
            && order.financial_status.as_deref() == Some("pending")
            && order.cancelled_at.is_none()
            && self
                .notify
                .as_ref()
                .is_some_and(|n| n.is_prepayment(&order.payment_gateway_names));
        let row = client
            .query_one(
                "INSERT INTO order_sync (shop_domain, order_id, order_name, financial_status, total_price, currency, paid, cancel_requested, prepayment)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (shop_domain, order_id) DO UPDATE SET
                    order_name = EXCLUDED.order_name,
                    total_price = EXCLUDED.total_price,
                    currency = EXCLUDED.currency,
                    financial_status = EXCLUDED.financial_status,
                    paid = order_sync.paid OR EXCLUDED.paid,
                    cancel_requested = order_sync.cancel_requested OR EXCLUDED.cancel_requested,
                    prepayment = order_sync.prepayment OR EXCLUDED.prepayment,
                    updated_at = now()
                 RETURNING state, paid, cancel_requested, contact_id, invoice_id, pending_call, pending_since, prepayment",
                &[
                    &shop,
                    &order.id,
                    &order.name,
                    &order.financial_status,
                    &total,
                    &order.currency,
                    &paid_now,
                    &cancel_now,
                    &prepayment_now,
                ],
            )
            .await?;
        let pending_call: Option<String> = row.get(5);
        let pending_since: Option<DateTime<Utc>> = row.get(6);
        let mut s = SyncRow {
            state: SyncState::parse(row.get::<_, &str>(0)),
            paid: row.get(1),
            cancel_requested: row.get(2),
            prepayment: row.get(7),
            contact_id: row.get(3),
            invoice_id: row.get(4),
            pending: pending_call
                .zip(pending_since)
                .map(|(call, since)| Pending { call, since }),
        };
        let mut steps: Vec<&'static str> = vec!["order_recorded"];
        let marker = mapping::marker(&order.name, order.id);
        loop {
            // What refunds already took off is read only when a cancellation of an invoiced
            // order is due (it waits for refunds still between their steps).
            let credited = if s.cancel_requested && s.state.has_invoice() {
                refunds::credited(client, shop, order.id).await?
            } else {
                Decimal::ZERO
            };
            // The e-mail that opens the invoice, while it is on its way.
            let mail = match (&s.invoice_id, s.state) {
                (Some(invoice), SyncState::InvoiceMailing) => {
                    notifications::state_of(client, shop, order.id, invoice).await?
                }
                _ => None,
            };
            let facts = machine::Facts {
                paid_now,
                prepayment_now,
                can_mail: self.mailing() && recipient(order).is_some(),
                mail,
                total,
                credited,
            };
            let next = match machine::next_step(&s, &facts, Utc::now(), self.settle) {
                Step::Done => break,
                Step::Settle { call, retry_in } => {
                    return Err(HandlerError::Settling { call, retry_in });
                }
                Step::NeedsReview(why) => {
                    return Err(HandlerError::NeedsReview(format!(
                        "order {}: {why}",
                        order.name
                    )));
                }
                Step::MarkCancelled { why } => {
                    steps.push(why);
                    SyncState::Cancelled
                }
                Step::Contact => {
                    let contact = contact_for(order);
                    let id = match books
                        .sevdesk
                        .find_contact(&contact.customer_number, trace)
                        .await?
                    {
                        Some(id) => id,
                        None => {
                            begin_call(client, shop, order.id, "create_contact").await?;
                            books.sevdesk.create_contact(&contact, trace).await?
                        }
                    };
                    client.execute("UPDATE order_sync SET contact_id = $3, pending_call = NULL, pending_since = NULL WHERE shop_domain = $1 AND order_id = $2", &[&shop, &order.id, &id]).await?;
                    s.contact_id = Some(id);
                    s.pending = None;
                    steps.push("contact_ok");
                    SyncState::ContactOk
                }
                Step::Invoice { create_if_missing } => {
                    // Search before every create: a lost order_sync row (a restore, a hand
                    // clean-up) or an unknown outcome must not make a second invoice.
                    match self.find_invoice(books, order, &s, &marker, trace).await? {
                        Some(id) => {
                            steps.push("invoice_adopted");
                            // An adopted invoice was issued under the order's treatment as it is
                            // decided now; an order that no longer maps keeps none (its credit
                            // notes then need review).
                            if let Ok(draft) = mapping::invoice_for(order, books.settings.tax) {
                                record_treatment(
                                    client,
                                    shop,
                                    order.id,
                                    &draft.treatment,
                                    draft.delivery_date,
                                )
                                .await?;
                            }
                            self.keep_invoice(client, shop, order, &mut s, id).await?;
                            SyncState::InvoiceCreated
                        }
                        None if !create_if_missing => {
                            steps.push("cancelled_before_invoice");
                            SyncState::Cancelled
                        }
                        None => {
                            let draft = mapping::invoice_for(order, books.settings.tax)?;
                            let account = books.account(trace).await?;
                            let contact = s.contact_id.clone().ok_or(HandlerError::Unsupported(
                                "contact_ok without contact id".into(),
                            ))?;
                            let country = books
                                .sevdesk
                                .country_id(&draft.treatment.address_country, trace)
                                .await?;
                            let parties = Parties {
                                contact: &contact,
                                sev_user: &account.sev_user,
                                country,
                            };
                            // Committed before the call: if we never learn its answer, the next
                            // delivery settles and searches first.
                            record_treatment(
                                client,
                                shop,
                                order.id,
                                &draft.treatment,
                                draft.delivery_date,
                            )
                            .await?;
                            set_state(client, shop, order.id, SyncState::InvoiceCreating).await?;
                            begin_call(client, shop, order.id, "save_invoice").await?;
                            let created =
                                books.sevdesk.save_invoice(parties, &draft, trace).await?;
                            steps.push("invoice_created");
                            self.keep_invoice(client, shop, order, &mut s, created.id)
                                .await?;
                            SyncState::InvoiceCreated
                        }
                    }
                }
                Step::Mail { prepayment } => {
                    let id = invoice_id(&s)?;
                    let to = recipient(order);
                    let name = customer_name(order);
                    let message = NewMessage {
                        shop,
                        order_id: order.id,
                        invoice_id: &id,
                        kind: if prepayment {
                            NotifyKind::Prepayment
                        } else {
                            NotifyKind::Invoice
                        },
                        recipient: to.as_deref(),
                        why: None,
                        facts: OrderFacts {
                            order_name: &order.name,
                            amount: total,
                            currency: &order.currency,
                            customer_name: &name,
                        },
                        traceparent: trace,
                    };
                    // One transaction: the state that says "the e-mail opens it" and the
                    // e-mail's outbox row. A row already there (a redelivery) is kept.
                    let mut tx_client = self.pool.get().await?;
                    let tx = tx_client.transaction().await?;
                    tx.execute(
                        "UPDATE order_sync SET state = 'invoice_mailing', updated_at = now()
                          WHERE shop_domain = $1 AND order_id = $2 AND state IN ('invoice_created', 'invoice_mailing')",
                        &[&shop, &order.id],
                    )
                    .await?;
                    let queued = notifications::enqueue(&tx, &message).await?;
                    tx.commit().await?;
                    steps.push(if queued {
                        "invoice_mail_queued"
                    } else {
                        "invoice_mail_already_queued"
                    });
                    s.state = SyncState::InvoiceMailing;
                    continue;
                }
                Step::AwaitMail => {
                    return Err(HandlerError::Settling {
                        call: "send_mail".into(),
                        retry_in: MAIL_WAIT,
                    });
                }
                Step::MailSent => {
                    steps.push("invoice_mailed");
                    SyncState::InvoiceSent
                }
                Step::Send { look_first } => {
                    let id = invoice_id(&s)?;
                    // After an unknown outcome, look before sending again: a `sendBy` that
                    // keeps timing out must not keep the order from moving on once it landed.
                    if look_first && books.sevdesk.get_invoice(&id, trace).await?.status >= 200 {
                        steps.push("invoice_found_sent");
                    } else {
                        begin_call(client, shop, order.id, "send").await?;
                        books.sevdesk.send_by(&id, trace).await?;
                        steps.push("invoice_sent");
                    }
                    // Why the customer got no e-mail, where one was meant to go.
                    if self.mailing() && recipient(order).is_none() {
                        let name = customer_name(order);
                        notifications::enqueue(
                            client,
                            &NewMessage {
                                shop,
                                order_id: order.id,
                                invoice_id: &id,
                                kind: if paid_now {
                                    NotifyKind::Invoice
                                } else {
                                    NotifyKind::Prepayment
                                },
                                recipient: None,
                                why: Some(
                                    "the order has no e-mail address: no e-mail sent; the invoice was marked sent (sendBy)",
                                ),
                                facts: OrderFacts {
                                    order_name: &order.name,
                                    amount: total,
                                    currency: &order.currency,
                                    customer_name: &name,
                                },
                                traceparent: trace,
                            },
                        )
                        .await?;
                        steps.push("no_email_address");
                    }
                    end_call(client, shop, order.id).await?;
                    s.pending = None;
                    SyncState::InvoiceSent
                }
                Step::Book if paid_by_bank_transfer(client, shop, order.id).await? => {
                    // The customer's transfer paid the invoice in sevDesk and the payment
                    // poller told Shopify (see crate::payments): this orders/paid is the echo,
                    // and there is nothing to book.
                    end_call(client, shop, order.id).await?;
                    s.pending = None;
                    steps.push("paid_by_bank_transfer");
                    SyncState::PaymentBooked
                }
                Step::Book => {
                    let id = invoice_id(&s)?;
                    // Re-read before booking: a booking whose answer was lost, or that sevDesk
                    // committed late, must not be repeated.
                    let invoice = books.sevdesk.get_invoice(&id, trace).await?;
                    let paid = invoice.paid_amount.ok_or_else(|| {
                        HandlerError::NeedsReview(format!(
                            "sevDesk did not say what is paid on invoice {id}; not booking blind"
                        ))
                    })?;
                    let money = mapping::gateway_money(order)?;
                    let due = money.amount - paid;
                    if due < Decimal::ZERO {
                        return Err(HandlerError::NeedsReview(format!(
                            "invoice {id} of order {} has {paid} booked, more than its total {total}",
                            order.name
                        )));
                    }
                    if due > Decimal::ZERO {
                        let account = books.account(trace).await?;
                        let check_account = account.account_for(&money.gateways)?;
                        let booking = Booking {
                            resource: "Invoice",
                            id: &id,
                            amount: due,
                            date: order.processed_at.unwrap_or(order.created_at),
                            check_account,
                            // A gift card paid the rest: that part is not money.
                            settles: money.gift_card.is_zero(),
                        };
                        begin_call(client, shop, order.id, "book").await?;
                        books.sevdesk.book(booking, trace).await?;
                        steps.push("payment_booked");
                    } else {
                        steps.push("payment_found_booked");
                    }
                    end_call(client, shop, order.id).await?;
                    s.pending = None;
                    SyncState::PaymentBooked
                }
                Step::Cancel => {
                    let id = invoice_id(&s)?;
                    let contact = s.contact_id.clone().ok_or(HandlerError::Unsupported(
                        "invoice without contact id".into(),
                    ))?;
                    // The cancellation is found by its origin: sevDesk does not copy the
                    // invoice's reference onto it.
                    let cancellation = match books
                        .sevdesk
                        .find_cancellation(&contact, &id, trace)
                        .await?
                    {
                        Some(sr) => sr,
                        None => {
                            begin_call(client, shop, order.id, "cancel").await?;
                            books.sevdesk.cancel_invoice(&id, trace).await?
                        }
                    };
                    client
                        .execute("UPDATE order_sync SET cancellation_id = $3, pending_call = NULL, pending_since = NULL WHERE shop_domain = $1 AND order_id = $2", &[&shop, &order.id, &cancellation])
                        .await?;
                    s.pending = None;
                    steps.push("invoice_cancelled");
                    SyncState::Cancelled
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

    /// This order's invoice in sevDesk, if there is one: the search is paged and checked here
    /// (exact reference, this contact, a regular invoice); more than one match is for a person.
    async fn find_invoice(
        &self,
        books: &ShopBooks,
        order: &Order,
        s: &SyncRow,
        marker: &str,
        trace: Option<&str>,
    ) -> Result<Option<String>, HandlerError> {
        let found: Vec<InvoiceInfo> = books
            .sevdesk
            .find_documents("Invoice", marker, s.contact_id.as_deref(), trace)
            .await?
            .into_iter()
            .filter(|i| i.invoice_type == "RE")
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.id.clone())),
            several => Err(HandlerError::NeedsReview(format!(
                "sevDesk has {} invoices for order {} ({}): which one counts is for a person to decide",
                several.len(),
                order.name,
                several
                    .iter()
                    .map(|i| i.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Records the invoice, created or adopted; its call's outcome is known.
    async fn keep_invoice(
        &self,
        client: &Object,
        shop: &str,
        order: &Order,
        s: &mut SyncRow,
        id: String,
    ) -> Result<(), HandlerError> {
        client.execute("UPDATE order_sync SET invoice_id = $3, pending_call = NULL, pending_since = NULL WHERE shop_domain = $1 AND order_id = $2", &[&shop, &order.id, &id]).await?;
        s.invoice_id = Some(id);
        s.pending = None;
        Ok(())
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

/// Records that `call` is about to be made (committed before the call).
async fn begin_call(
    client: &Object,
    shop: &str,
    order_id: i64,
    call: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE order_sync SET pending_call = $3, pending_since = now() WHERE shop_domain = $1 AND order_id = $2",
            &[&shop, &order_id, &call],
        )
        .await?;
    Ok(())
}

/// Whether the payment poller found the invoice paid in full by the customer's transfer (and is
/// marking, or has marked, the Shopify order paid).
async fn paid_by_bank_transfer(
    client: &Object,
    shop: &str,
    order_id: i64,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM payment_sync WHERE shop_domain = $1 AND order_id = $2 AND state IN ('marking', 'reported')",
            &[&shop, &order_id],
        )
        .await?
        .is_some())
}

/// The pending call's answer is known.
async fn end_call(client: &Object, shop: &str, order_id: i64) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE order_sync SET pending_call = NULL, pending_since = NULL WHERE shop_domain = $1 AND order_id = $2",
            &[&shop, &order_id],
        )
        .await?;
    Ok(())
}

/// Keeps what the invoice is issued under, for its credit notes.
async fn record_treatment(
    client: &Object,
    shop: &str,
    order_id: i64,
    treatment: &Treatment,
    delivery_date: DateTime<FixedOffset>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE order_sync SET tax_rule = $3, delivery_country = $4, address = $5, address_country = $6, delivery_date = $7
             WHERE shop_domain = $1 AND order_id = $2",
            &[
                &shop,
                &order_id,
                &treatment.regime.rule_id(),
                &treatment.regime.delivery_country(),
                &treatment.address,
                &treatment.address_country,
                &delivery_date,
            ],
        )
        .await?;
    Ok(())
}

fn invoice_id(s: &SyncRow) -> Result<String, HandlerError> {
    s.invoice_id.clone().ok_or(HandlerError::Unsupported(
        "invoice state without invoice id".into(),
    ))
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

/// Where the customer's e-mail goes: the order's address, else the customer's.
pub fn recipient(order: &Order) -> Option<String> {
    order
        .email
        .clone()
        .or_else(|| order.customer.as_ref().and_then(|c| c.email.clone()))
        .map(|e| e.trim().to_owned())
        .filter(|e| e.contains('@'))
}

/// Whom the e-mail greets: the customer's name, else the billing address's, else the company.
pub fn customer_name(order: &Order) -> String {
    let contact = contact_for(order);
    match contact.organisation {
        Some(org) if contact.first_name.is_empty() && contact.last_name.is_empty() => org,
        _ if contact.first_name == "Shopify" => String::new(),
        _ => format!("{} {}", contact.first_name, contact.last_name)
            .trim()
            .to_owned(),
    }
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
    let facts = mapping::tax_facts(order, &[]);
    let description = [
        order.email.clone(),
        billing.map(|b| b.printed().replace('\n', ", ")),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(" · ");
    ContactDraft {
        customer_number,
        organisation,
        first_name: first,
        last_name: last,
        vat_number: facts.vat_id,
        description: (!description.is_empty()).then_some(description),
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
