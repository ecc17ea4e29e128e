//! Refunds: one sevDesk **credit note** per Shopify refund, with the money paid back booked on it.
//!
//! Why a credit note and not a partial booking on the invoice: an invoice that was issued and paid
//! stays as it was (German bookkeeping wants corrections as their own documents), and a refund
//! gives money back, which sevDesk records as a credit note (`Gutschrift`, booking category
//! "underachievement": revenue reduced) whose booking takes the money off the check account. A
//! second partial refund is a second credit note, so each refund can be traced to its document.
//!
//! The steps mirror the invoice's, one `refund_sync` row per `(shop, refund)`:
//!
//! ```text
//! pending ─▶ credit_note_creating ─saveCreditNote─▶ credit_note_created ─sendBy─▶ credit_note_sent
//!   ─bookAmount─▶ refund_booked        (or at once: no_money_refunded, covered_by_cancellation)
//! ```
//!
//! `credit_note_creating` is committed before the create call; before every create the contact's
//! credit notes are searched for this refund's reference (after an unknown outcome only once the
//! settle time has passed), and one found is adopted. A credit note is issued under its invoice's
//! tax rule, linked to it (`refSrcInvoice`) and delivered when it was. sevDesk's credit-note
//! model has no `paidAmount`: whether the money is booked is read from its status (1000 paid).
//!
//! Refunds and cancellations must not take the same money off twice. Shopify sends both when a
//! paid order is cancelled with a refund, in either order, and they run under the same order lock:
//! - a refund of an order whose invoice is already cancelled is `covered_by_cancellation`: the
//!   cancellation invoice took the whole amount off, nothing more is created;
//! - a cancellation of an order whose refunds are credited in full needs no cancellation invoice;
//! - a cancellation after a partial refund is dead-lettered as `needs_review`, because sevDesk
//!   can only cancel the whole invoice, which would take the refunded part off a second time.
//!
//! A refund of an order whose payment is not booked yet waits (`waiting_for_dependency`, retried
//! with backoff): the invoice it reduces comes first.

use deadpool_postgres::Object;
use hookline_core::Envelope;
use rust_decimal::Decimal;

use chrono::{DateTime, Utc};

use super::mapping::{self, Refund, Treatment};
use super::tax::Regime;
use super::{OrdersHandler, Pending, SyncState};
use crate::domains::Outcome;
use crate::error::HandlerError;
use crate::order_lock::OrderLock;
use crate::sevdesk::{Booking, Parties};
use crate::{idempotency, schema};

/// Where a refund's synchronisation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefundState {
    Pending,
    CreditNoteCreating,
    CreditNoteCreated,
    CreditNoteSent,
    RefundBooked,
    CoveredByCancellation,
    NoMoneyRefunded,
    /// Dead-lettered for good: a cancellation of its order is flagged, not blocked.
    Failed,
}

impl RefundState {
    fn as_str(self) -> &'static str {
        match self {
            RefundState::Pending => "pending",
            RefundState::CreditNoteCreating => "credit_note_creating",
            RefundState::CreditNoteCreated => "credit_note_created",
            RefundState::CreditNoteSent => "credit_note_sent",
            RefundState::RefundBooked => "refund_booked",
            RefundState::CoveredByCancellation => "covered_by_cancellation",
            RefundState::NoMoneyRefunded => "no_money_refunded",
            RefundState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> RefundState {
        match s {
            "credit_note_creating" => RefundState::CreditNoteCreating,
            "credit_note_created" => RefundState::CreditNoteCreated,
            "credit_note_sent" => RefundState::CreditNoteSent,
            "refund_booked" => RefundState::RefundBooked,
            "covered_by_cancellation" => RefundState::CoveredByCancellation,
            "no_money_refunded" => RefundState::NoMoneyRefunded,
            "failed" => RefundState::Failed,
            _ => RefundState::Pending,
        }
    }
}

/// The money of `order`'s refunds that is on credit notes. A refund still between its steps is
/// not counted but waited for, so a cancellation never decides on half-known refunds.
pub(super) async fn credited(
    client: &Object,
    shop: &str,
    order_id: i64,
) -> Result<Decimal, HandlerError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state IN ('pending', 'credit_note_creating', 'credit_note_created', 'credit_note_sent')),
                    coalesce(sum(amount) FILTER (WHERE state = 'refund_booked'), 0),
                    count(*) FILTER (WHERE state = 'failed')
             FROM refund_sync WHERE shop_domain = $1 AND order_id = $2",
            &[&shop, &order_id],
        )
        .await?;
    let in_progress: i64 = row.get(0);
    let failed: i64 = row.get(2);
    if failed > 0 {
        return Err(HandlerError::NeedsReview(format!(
            "{failed} refund(s) of order {order_id} were dead-lettered: whether the cancellation \
             would take refunded money off twice is for a person to decide"
        )));
    }
    if in_progress > 0 {
        return Err(HandlerError::Waiting(format!(
            "{in_progress} refund(s) of order {order_id} are between their steps"
        )));
    }
    Ok(row.get(1))
}

impl OrdersHandler {
    /// `refunds/create`: the credit note, under the order's lock.
    pub(super) async fn handle_refund(&self, envelope: &Envelope) -> Result<Outcome, HandlerError> {
        let refund: Refund = schema::parse(envelope)?;
        let client = self.pool.get().await?;
        if idempotency::is_recorded(&client, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        let lock = OrderLock::acquire(client, &envelope.shop_domain, refund.order_id).await?;
        let result = self.drive_refund(&lock, envelope, &refund).await;
        if let Err(e) = &result
            && matches!(
                e.disposition(),
                crate::error::Disposition::DeadLetter { .. }
            )
        {
            // Permanently refused: its row must not hold up the order's cancellation forever.
            let _ = lock
                .execute(
                    "UPDATE refund_sync SET state = 'failed', updated_at = now()
                     WHERE shop_domain = $1 AND refund_id = $2 AND state IN ('pending', 'credit_note_creating')",
                    &[&envelope.shop_domain, &refund.id],
                )
                .await;
        }
        lock.release().await;
        result
    }

    async fn drive_refund(
        &self,
        client: &Object,
        envelope: &Envelope,
        refund: &Refund,
    ) -> Result<Outcome, HandlerError> {
        let shop = envelope.shop_domain.as_str();
        let books = self.books.for_shop(shop)?;
        let trace = Some(envelope.traceparent.as_str());
        let order = client
            .query_opt(
                "SELECT state, order_name, currency, contact_id, invoice_id, tax_rule, delivery_country, address, address_country, delivery_date
                 FROM order_sync WHERE shop_domain = $1 AND order_id = $2",
                &[&shop, &refund.order_id],
            )
            .await?;
        let Some(order) = order else {
            return Err(HandlerError::Waiting(format!(
                "order {} of refund {} is not known yet",
                refund.order_id, refund.id
            )));
        };
        let order_state = SyncState::parse(order.get::<_, &str>(0));
        let order_name: Option<String> = order.get(1);
        let order_name = order_name.unwrap_or_else(|| refund.order_id.to_string());
        let currency: Option<String> = order.get(2);
        let contact_id: Option<String> = order.get(3);
        let invoice_id: Option<String> = order.get(4);
        let treatment = stored_treatment(order.get(5), order.get(6), order.get(7), order.get(8));
        let delivery_date: Option<DateTime<Utc>> = order.get(9);

        let mut steps: Vec<&'static str> = vec![];
        let existing = client
            .query_opt(
                "SELECT state, credit_note_id, pending_call, pending_since FROM refund_sync WHERE shop_domain = $1 AND refund_id = $2",
                &[&shop, &refund.id],
            )
            .await?;
        let mut pending: Option<Pending> = existing.as_ref().and_then(|row| {
            let call: Option<String> = row.get(2);
            let since: Option<DateTime<Utc>> = row.get(3);
            call.zip(since).map(|(call, since)| Pending { call, since })
        });
        let (mut state, mut credit_note_id) = match existing {
            Some(row) => (RefundState::parse(row.get::<_, &str>(0)), row.get(1)),
            // A row is written only once the refund can go ahead, so a refund waiting for its
            // invoice leaves nothing a cancellation would have to wait for in turn.
            None => {
                let initial = match order_state {
                    SyncState::Cancelled => {
                        steps.push("covered_by_cancellation");
                        RefundState::CoveredByCancellation
                    }
                    SyncState::PaymentBooked => RefundState::Pending,
                    other => {
                        return Err(HandlerError::Waiting(format!(
                            "order {order_name} of refund {} has no booked invoice yet (state {})",
                            refund.id,
                            other.as_str()
                        )));
                    }
                };
                client
                    .execute(
                        "INSERT INTO refund_sync (shop_domain, refund_id, order_id, amount, state) VALUES ($1, $2, $3, $4, $5)",
                        &[&shop, &refund.id, &refund.order_id, &mapping::refunded_amount(refund), &initial.as_str()],
                    )
                    .await?;
                steps.push("refund_recorded");
                (initial, None)
            }
        };
        let marker = mapping::refund_marker(&order_name, refund.order_id, refund.id);
        loop {
            let next = match state {
                RefundState::RefundBooked
                | RefundState::CoveredByCancellation
                | RefundState::NoMoneyRefunded => break,
                RefundState::Failed => {
                    // A replay after a fix: start again from the search.
                    RefundState::CreditNoteCreating
                }
                RefundState::Pending | RefundState::CreditNoteCreating => {
                    let currency = currency.clone().unwrap_or_else(|| "EUR".into());
                    let treatment = treatment.clone().ok_or_else(|| {
                        HandlerError::NeedsReview(format!(
                            "order {order_name} has no recorded tax treatment (invoiced before sevdesk-Update 2.0 support): \
                             the credit note's tax rule cannot be derived"
                        ))
                    })?;
                    if mapping::refund_money_pending(refund) {
                        return Err(HandlerError::Waiting(format!(
                            "money of refund {} is still pending at the payment provider",
                            refund.id
                        )));
                    }
                    let Some(draft) = mapping::credit_note_for(
                        &order_name,
                        &currency,
                        &treatment.regime,
                        refund,
                    )?
                    else {
                        steps.push("no_money_refunded");
                        set_refund_state(client, shop, refund.id, RefundState::NoMoneyRefunded)
                            .await?;
                        state = RefundState::NoMoneyRefunded;
                        continue;
                    };
                    let contact = contact_id.clone().ok_or(HandlerError::Unsupported(
                        "booked order without contact id".into(),
                    ))?;
                    let invoice = invoice_id.clone().ok_or(HandlerError::Unsupported(
                        "booked order without invoice id".into(),
                    ))?;
                    if let Some(p) = pending.as_ref().filter(|p| p.call == "save_credit_note") {
                        p.settled(self.settle)?;
                    }
                    let found = books
                        .sevdesk
                        .find_documents("CreditNote", &marker, Some(&contact), trace)
                        .await?;
                    if found.len() > 1 {
                        return Err(HandlerError::NeedsReview(format!(
                            "sevDesk has {} credit notes for refund {}",
                            found.len(),
                            refund.id
                        )));
                    }
                    let id = match found.into_iter().next() {
                        Some(found) => {
                            steps.push("credit_note_adopted");
                            found.id
                        }
                        None => {
                            let account = books.account(trace).await?;
                            let country = books
                                .sevdesk
                                .country_id(&treatment.address_country, trace)
                                .await?;
                            let parties = Parties {
                                contact: &contact,
                                sev_user: &account.sev_user,
                                country,
                            };
                            let delivered = delivery_date
                                .map(|d| d.fixed_offset())
                                .unwrap_or(draft.date);
                            // Committed before the call: if its answer is lost, the next
                            // delivery settles and searches before creating.
                            set_refund_state(
                                client,
                                shop,
                                refund.id,
                                RefundState::CreditNoteCreating,
                            )
                            .await?;
                            begin_refund_call(client, shop, refund.id, "save_credit_note").await?;
                            let created = books
                                .sevdesk
                                .save_credit_note(
                                    parties, &invoice, &treatment, delivered, &draft, trace,
                                )
                                .await?;
                            steps.push("credit_note_created");
                            created.id
                        }
                    };
                    client
                        .execute(
                            "UPDATE refund_sync SET credit_note_id = $3, amount = $4, pending_call = NULL, pending_since = NULL
                             WHERE shop_domain = $1 AND refund_id = $2",
                            &[&shop, &refund.id, &id, &draft.total],
                        )
                        .await?;
                    pending = None;
                    credit_note_id = Some(id);
                    RefundState::CreditNoteCreated
                }
                RefundState::CreditNoteCreated => {
                    let id = credit_note_id.clone().ok_or(HandlerError::Unsupported(
                        "credit note state without credit note id".into(),
                    ))?;
                    let already_open = match pending.as_ref().filter(|p| p.call == "send") {
                        Some(p) => {
                            p.settled(self.settle)?;
                            books.sevdesk.get_credit_note(&id, trace).await?.status >= 200
                        }
                        None => false,
                    };
                    if already_open {
                        steps.push("credit_note_found_sent");
                    } else {
                        begin_refund_call(client, shop, refund.id, "send").await?;
                        books.sevdesk.credit_note_send_by(&id, trace).await?;
                        steps.push("credit_note_sent");
                    }
                    end_refund_call(client, shop, refund.id).await?;
                    pending = None;
                    RefundState::CreditNoteSent
                }
                RefundState::CreditNoteSent => {
                    let id = credit_note_id.clone().ok_or(HandlerError::Unsupported(
                        "credit note state without credit note id".into(),
                    ))?;
                    if let Some(p) = pending.as_ref().filter(|p| p.call == "book_credit_note") {
                        p.settled(self.settle)?;
                    }
                    // Re-read before booking: a booking whose answer was lost is not repeated.
                    // The credit note has no paidAmount; its status says whether it is paid,
                    // and the whole refund is always booked in one FULL_PAYMENT, so "paid" and
                    // "booked" are the same thing here.
                    let note = books.sevdesk.get_credit_note(&id, trace).await?;
                    if note.status >= 1000 {
                        steps.push("refund_found_booked");
                    } else if note.status == 750 {
                        return Err(HandlerError::NeedsReview(format!(
                            "credit note {id} of refund {} is partly paid in sevDesk: not booking on top",
                            refund.id
                        )));
                    } else {
                        let due = mapping::refunded_amount(refund);
                        let account = books.account(trace).await?;
                        // The money went back through the refund's own transactions' gateways.
                        let gateways: Vec<String> = refund
                            .transactions
                            .iter()
                            .filter(|t| t.kind == "refund" && t.status == "success")
                            .filter_map(|t| t.gateway.clone())
                            .collect();
                        let check_account = account.account_for(&gateways)?;
                        let date = refund.processed_at.unwrap_or(refund.created_at);
                        begin_refund_call(client, shop, refund.id, "book_credit_note").await?;
                        let booking = Booking {
                            resource: "CreditNote",
                            id: &id,
                            amount: due,
                            date,
                            check_account,
                            settles: true,
                        };
                        books.sevdesk.book(booking, trace).await?;
                        steps.push("refund_booked");
                    }
                    end_refund_call(client, shop, refund.id).await?;
                    pending = None;
                    RefundState::RefundBooked
                }
            };
            set_refund_state(client, shop, refund.id, next).await?;
            state = next;
        }
        if !idempotency::record(client, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        metrics::counter!("hookline_worker_refund_states_total", "state" => state.as_str())
            .increment(1);
        if steps.is_empty() {
            return Ok(Outcome::Skipped {
                reason: "nothing_due",
            });
        }
        Ok(Outcome::Applied { steps })
    }
}

/// The order's treatment as recorded with its invoice; `None` for invoices made before it was
/// recorded.
fn stored_treatment(
    rule: Option<String>,
    delivery_country: Option<String>,
    address: Option<String>,
    address_country: Option<String>,
) -> Option<Treatment> {
    let regime = match rule.as_deref()? {
        "1" => Regime::Domestic,
        "2" => Regime::Export,
        "3" => Regime::IntraCommunity,
        "11" => Regime::SmallBusiness,
        "18" => Regime::OneStopShop {
            country: delivery_country?,
        },
        _ => return None,
    };
    Some(Treatment {
        regime,
        address: address.unwrap_or_default(),
        address_country: address_country.unwrap_or_else(|| "DE".into()),
    })
}

/// The refund's pending call's answer is known.
async fn end_refund_call(
    client: &Object,
    shop: &str,
    refund_id: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE refund_sync SET pending_call = NULL, pending_since = NULL WHERE shop_domain = $1 AND refund_id = $2",
            &[&shop, &refund_id],
        )
        .await?;
    Ok(())
}

async fn begin_refund_call(
    client: &Object,
    shop: &str,
    refund_id: i64,
    call: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE refund_sync SET pending_call = $3, pending_since = now() WHERE shop_domain = $1 AND refund_id = $2",
            &[&shop, &refund_id, &call],
        )
        .await?;
    Ok(())
}

async fn set_refund_state(
    client: &Object,
    shop: &str,
    refund_id: i64,
    state: RefundState,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE refund_sync SET state = $3, updated_at = now() WHERE shop_domain = $1 AND refund_id = $2",
            &[&shop, &refund_id, &state.as_str()],
        )
        .await?;
    Ok(())
}
