//! The order's decisions, as a pure function: given the `order_sync` row and what this delivery
//! shows, which one step is next.
//!
//! [`next_step`] does no I/O, so every interleaving can be tried: the property test below runs it
//! against a model of sevDesk that commits late, drops answers and loses workers between a call
//! and its commit, and checks that no order ever gets two invoices, more booked than its total,
//! or a cancellation after a partial refund. The executor in [`super`] performs one [`Step`] —
//! at most one sevDesk call that may change something, and the commits around it — and asks
//! again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::notifications::MessageState;

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
    /// The draft is handed to the notification outbox: sevDesk opens it when it e-mails it,
    /// and the relay moves the order on to `invoice_sent` (see [`crate::notifications`]).
    InvoiceMailing,
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
            SyncState::InvoiceMailing => "invoice_mailing",
            SyncState::InvoiceSent => "invoice_sent",
            SyncState::PaymentBooked => "payment_booked",
            SyncState::Cancelled => "cancelled",
        }
    }

    /// Reads `order_sync.state`.
    pub fn parse(s: &str) -> SyncState {
        match s {
            "contact_ok" => SyncState::ContactOk,
            "invoice_creating" => SyncState::InvoiceCreating,
            "invoice_created" => SyncState::InvoiceCreated,
            "invoice_mailing" => SyncState::InvoiceMailing,
            "invoice_sent" => SyncState::InvoiceSent,
            "payment_booked" => SyncState::PaymentBooked,
            "cancelled" => SyncState::Cancelled,
            _ => SyncState::Pending,
        }
    }

    /// Whether an invoice exists in this state.
    pub fn has_invoice(self) -> bool {
        matches!(
            self,
            SyncState::InvoiceCreated
                | SyncState::InvoiceMailing
                | SyncState::InvoiceSent
                | SyncState::PaymentBooked
        )
    }
}

/// A call that may have changed sevDesk, recorded before it is made and cleared once its answer
/// is known. Still set on a later delivery, it means "outcome unknown": the call timed out, its
/// connection dropped, sevDesk answered 5xx, or the worker died before recording the answer.
/// sevDesk may still commit such a request later (it has no idempotency keys), so nothing is
/// called again before the settle time has passed; then sevDesk is asked what happened, and only
/// then is the call repeated or its result adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// `create_contact`, `save_invoice`, `send`, `book`, `cancel`, `save_credit_note`, …
    pub call: String,
    /// When it was recorded.
    pub since: DateTime<Utc>,
}

impl Pending {
    /// How long until `settle` has passed since the call, if it has not.
    pub fn remaining(&self, now: DateTime<Utc>, settle: Duration) -> Option<Duration> {
        let elapsed = (now - self.since).to_std().unwrap_or_default();
        (elapsed < settle).then(|| settle - elapsed)
    }
}

impl Pending {
    /// `Ok` once `settle` has passed since the call, else the error that waits for the rest.
    pub fn settled(&self, settle: Duration) -> Result<(), crate::error::HandlerError> {
        match self.remaining(Utc::now(), settle) {
            None => Ok(()),
            Some(retry_in) => Err(crate::error::HandlerError::Settling {
                call: self.call.clone(),
                retry_in,
            }),
        }
    }
}

/// The `order_sync` row, as far as the decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRow {
    /// The state.
    pub state: SyncState,
    /// Some delivery showed the order paid.
    pub paid: bool,
    /// Some delivery showed the order cancelled.
    pub cancel_requested: bool,
    /// Some delivery showed it a prepayment order (bank transfer): invoiced before it is paid.
    pub prepayment: bool,
    /// sevDesk's contact.
    pub contact_id: Option<String>,
    /// sevDesk's invoice.
    pub invoice_id: Option<String>,
    /// A call whose outcome is not known yet.
    pub pending: Option<Pending>,
}

/// What this delivery shows, and what was read for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// This delivery is an `orders/paid` whose payload shows the order paid: only such a
    /// delivery (or its reconciled copy) creates and books.
    pub paid_now: bool,
    /// This delivery is an `orders/create` (or `orders/updated`) of a prepayment order: a
    /// manual gateway (bank transfer) and `financial_status` pending. It creates the invoice and
    /// sends it, so the customer knows what to transfer; it books nothing.
    pub prepayment_now: bool,
    /// The invoice can be e-mailed: the channel is on and the order has an address.
    pub can_mail: bool,
    /// The invoice's message in the notification outbox (read while `invoice_mailing`).
    pub mail: Option<crate::notifications::MessageState>,
    /// Shopify's total.
    pub total: Decimal,
    /// The money of the order's refunds already on credit notes (read only when a cancellation
    /// of an invoiced order is due).
    pub credited: Decimal,
}

/// The one step that is next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing is due: record the event.
    Done,
    /// A call's outcome is unknown and the settle time has not passed: retry later.
    Settle {
        /// The call.
        call: String,
        /// Until it has settled.
        retry_in: Duration,
    },
    /// Cancelled without a cancellation invoice (`why`: no invoice, or refunded in full).
    MarkCancelled {
        /// `cancelled_before_invoice` or `cancelled_fully_refunded`.
        why: &'static str,
    },
    /// Find the contact by its customer number, or create it.
    Contact,
    /// Search sevDesk for the order's invoice and adopt it; if there is none, create it
    /// (`create_if_missing`) or mark the order cancelled.
    Invoice {
        /// Whether a missing invoice is created.
        create_if_missing: bool,
    },
    /// Hand the draft to the notification outbox, in one transaction with the state
    /// `invoice_mailing`: sevDesk's `sendViaEmail` opens it.
    Mail {
        /// The prepayment message (bank details), not the paid one.
        prepayment: bool,
    },
    /// The e-mail that opens the invoice is not sent yet: retried later (no attempt used up).
    AwaitMail,
    /// The e-mail went out: the invoice is open.
    MailSent,
    /// Open the draft (`sendBy`); after an unknown outcome, look at its status first.
    Send {
        /// Read the invoice's status before sending.
        look_first: bool,
    },
    /// Re-read what is paid and book the rest as a full payment.
    Book,
    /// Find the cancellation invoice by its origin, or cancel.
    Cancel,
    /// Refunded in part: a cancellation would take the refunded money off twice.
    NeedsReview(String),
}

/// The next step for `row`, given what this delivery shows.
pub fn next_step(row: &SyncRow, facts: &Facts, now: DateTime<Utc>, settle: Duration) -> Step {
    let settling = |call: &str| -> Option<Step> {
        let pending = row.pending.as_ref().filter(|p| p.call == call)?;
        pending.remaining(now, settle).map(|retry_in| Step::Settle {
            call: call.to_owned(),
            retry_in,
        })
    };
    let pending_is = |call: &str| row.pending.as_ref().is_some_and(|p| p.call == call);
    match (row.state, row.cancel_requested) {
        (SyncState::Cancelled, _) | (SyncState::PaymentBooked, false) => Step::Done,
        (SyncState::Pending | SyncState::ContactOk, true) => Step::MarkCancelled {
            why: "cancelled_before_invoice",
        },
        (SyncState::InvoiceCreating, true) => settling("save_invoice").unwrap_or(Step::Invoice {
            create_if_missing: false,
        }),
        // A cancellation waits for the e-mail in flight (the invoice is opened by it), or opens
        // the invoice itself when the e-mail failed; then the open invoice is cancelled.
        (SyncState::InvoiceMailing, true) if facts.credited.is_zero() => match facts.mail {
            None => Step::Mail {
                prepayment: !facts.paid_now && row.prepayment,
            },
            Some(MessageState::Pending) => Step::AwaitMail,
            Some(MessageState::Sent) => Step::MailSent,
            Some(MessageState::Failed) => Step::Send { look_first: true },
        },
        (state, true) if state.has_invoice() => {
            if facts.credited >= facts.total {
                Step::MarkCancelled {
                    why: "cancelled_fully_refunded",
                }
            } else if facts.credited > Decimal::ZERO {
                Step::NeedsReview(format!(
                    "cancelled after {} of {} were refunded on credit notes; a cancellation invoice \
                     would take the refunded part off twice",
                    facts.credited, facts.total
                ))
            } else {
                settling("cancel").unwrap_or(Step::Cancel)
            }
        }
        (_, true) => Step::Done,
        (_, false) if !(facts.prepayment_now || (row.paid && facts.paid_now)) => Step::Done,
        (SyncState::Pending, false) => settling("create_contact").unwrap_or(Step::Contact),
        (SyncState::ContactOk | SyncState::InvoiceCreating, false) => settling("save_invoice")
            .unwrap_or(Step::Invoice {
                create_if_missing: true,
            }),
        // A `sendBy` whose outcome is unknown is settled as one; otherwise the e-mail opens it.
        (SyncState::InvoiceCreated, false) => {
            settling("send").unwrap_or(if facts.can_mail && !pending_is("send") {
                Step::Mail {
                    prepayment: !facts.paid_now,
                }
            } else {
                Step::Send {
                    look_first: pending_is("send"),
                }
            })
        }
        // Only a payment waits for the e-mail (it can be booked on an open invoice only); a
        // failed e-mail does not hold it: `sendBy` opens the invoice, the e-mail is retried by
        // an operator.
        (SyncState::InvoiceMailing, false) => match facts.mail {
            None => Step::Mail {
                prepayment: !facts.paid_now,
            },
            Some(MessageState::Sent) => Step::MailSent,
            Some(MessageState::Pending) if facts.paid_now => Step::AwaitMail,
            Some(MessageState::Failed) if facts.paid_now => Step::Send { look_first: true },
            Some(_) => Step::Done,
        },
        (SyncState::InvoiceSent, false) if !facts.paid_now => Step::Done,
        (SyncState::InvoiceSent, false) => settling("book").unwrap_or(Step::Book),
    }
}

#[cfg(test)]
mod tests {
    //! `next_step` against a model of sevDesk and of the executor, under random interleavings
    //! of deliveries (paid, cancelled, duplicates), timeouts, late commits and workers killed
    //! between a call and its commit.
    use super::*;
    use proptest::prelude::*;

    const SETTLE: i64 = 10;

    fn at(tick: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(tick)
    }

    /// What happens to the one risky call of a delivery.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        /// Answered.
        None,
        /// No answer, and nothing happened.
        Lost,
        /// No answer; sevDesk commits it this many ticks later (always < the settle time).
        Late(i64),
        /// Committed, answered, and the worker died before recording the answer.
        Crash,
    }

    #[derive(Debug, Clone, Copy)]
    enum Delivery {
        Paid,
        Cancelled,
    }

    /// sevDesk, as far as one order goes.
    #[derive(Debug, Default)]
    struct SevDesk {
        invoices: usize,
        booked: Decimal,
        cancellations: usize,
        /// Late commits: when, and what.
        late: Vec<(i64, Write)>,
    }

    #[derive(Debug, Clone, Copy)]
    enum Write {
        Invoice,
        Book(Decimal),
        Cancel,
    }

    impl SevDesk {
        fn apply(&mut self, write: Write) {
            match write {
                Write::Invoice => self.invoices += 1,
                Write::Book(amount) => self.booked += amount,
                Write::Cancel => self.cancellations += 1,
            }
        }

        fn land(&mut self, now: i64) {
            let (due, later): (Vec<_>, Vec<_>) = self.late.drain(..).partition(|(t, _)| *t <= now);
            self.late = later;
            for (_, write) in due {
                self.apply(write);
            }
        }
    }

    struct World {
        row: SyncRow,
        sevdesk: SevDesk,
        now: i64,
        total: Decimal,
        credited: Decimal,
        creates: usize,
        reviews: usize,
    }

    impl World {
        /// Makes the risky call under `fault`; `Ok` when its answer is known.
        fn call(&mut self, write: Write, fault: Fault, call: &str) -> Result<(), ()> {
            // Committed before the call.
            self.row.pending = Some(Pending {
                call: call.to_owned(),
                since: at(self.now),
            });
            match fault {
                Fault::None => {
                    self.sevdesk.apply(write);
                    self.row.pending = None;
                    Ok(())
                }
                Fault::Lost => Err(()),
                Fault::Late(after) => {
                    self.sevdesk.late.push((self.now + after, write));
                    Err(())
                }
                Fault::Crash => {
                    self.sevdesk.apply(write);
                    Err(())
                }
            }
        }

        /// One delivery: steps until done or the first failure; the fault hits the first risky
        /// call.
        fn deliver(&mut self, delivery: Delivery, mut fault: Fault) {
            match delivery {
                Delivery::Paid => self.row.paid = true,
                Delivery::Cancelled => self.row.cancel_requested = true,
            }
            let facts = Facts {
                paid_now: matches!(delivery, Delivery::Paid),
                prepayment_now: false,
                can_mail: false,
                mail: None,
                total: self.total,
                credited: self.credited,
            };
            for _ in 0..20 {
                self.sevdesk.land(self.now);
                let step = next_step(
                    &self.row,
                    &facts,
                    at(self.now),
                    Duration::from_secs(SETTLE as u64),
                );
                let mut take_fault = || std::mem::replace(&mut fault, Fault::None);
                let next = match step {
                    Step::Done => return,
                    Step::Settle { .. } => return,
                    Step::NeedsReview(_) => {
                        self.reviews += 1;
                        return;
                    }
                    Step::MarkCancelled { .. } => SyncState::Cancelled,
                    Step::Contact => SyncState::ContactOk,
                    Step::Invoice { create_if_missing } => {
                        let found = self.sevdesk.invoices;
                        if found > 1 {
                            self.reviews += 1;
                            return;
                        }
                        if found == 1 {
                            self.row.pending = None;
                            SyncState::InvoiceCreated
                        } else if !create_if_missing {
                            SyncState::Cancelled
                        } else {
                            // The property: no create while an earlier one may still land.
                            assert!(
                                self.sevdesk
                                    .late
                                    .iter()
                                    .all(|(_, w)| !matches!(w, Write::Invoice)),
                                "a create while an earlier create may still commit"
                            );
                            self.creates += 1;
                            self.row.state = SyncState::InvoiceCreating;
                            if self
                                .call(Write::Invoice, take_fault(), "save_invoice")
                                .is_err()
                            {
                                return;
                            }
                            SyncState::InvoiceCreated
                        }
                    }
                    Step::Send { .. } => {
                        self.row.pending = None;
                        SyncState::InvoiceSent
                    }
                    Step::Mail { .. } | Step::AwaitMail | Step::MailSent => {
                        panic!("this model has no e-mail address: {step:?}")
                    }
                    Step::Book => {
                        let due = self.total - self.sevdesk.booked;
                        assert!(due >= Decimal::ZERO, "more booked than the total");
                        if due > Decimal::ZERO
                            && self.call(Write::Book(due), take_fault(), "book").is_err()
                        {
                            return;
                        }
                        self.row.pending = None;
                        SyncState::PaymentBooked
                    }
                    Step::Cancel => {
                        assert!(
                            self.credited.is_zero(),
                            "a cancellation of a partly refunded invoice"
                        );
                        if self.sevdesk.cancellations == 0
                            && self.call(Write::Cancel, take_fault(), "cancel").is_err()
                        {
                            return;
                        }
                        self.row.pending = None;
                        SyncState::Cancelled
                    }
                };
                self.row.state = next;
            }
        }
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            3 => Just(Fault::None),
            1 => Just(Fault::Lost),
            1 => (1..SETTLE).prop_map(Fault::Late),
            1 => Just(Fault::Crash),
        ]
    }

    fn delivery() -> impl Strategy<Value = Delivery> {
        prop_oneof![4 => Just(Delivery::Paid), 1 => Just(Delivery::Cancelled)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn no_interleaving_makes_two_invoices_books_too_much_or_cancels_a_partial_refund(
            deliveries in proptest::collection::vec((delivery(), fault(), 0..15i64), 1..25),
            credited in prop_oneof![Just(0i64), Just(50), Just(119)],
        ) {
            let mut world = World {
                row: SyncRow {
                    state: SyncState::Pending,
                    paid: false,
                    cancel_requested: false,
                    prepayment: false,
                    contact_id: None,
                    invoice_id: None,
                    pending: None,
                },
                sevdesk: SevDesk::default(),
                now: 0,
                total: Decimal::from(119),
                credited: Decimal::from(credited),
                creates: 0,
                reviews: 0,
            };
            let mut cancelled = false;
            for (delivery, fault, wait) in deliveries {
                cancelled |= matches!(delivery, Delivery::Cancelled);
                world.deliver(delivery, fault);
                world.now += wait;
                prop_assert!(world.sevdesk.invoices <= 1, "two invoices");
                prop_assert!(world.sevdesk.booked <= world.total, "booked too much");
                prop_assert!(world.sevdesk.cancellations <= 1, "two cancellations");
            }
            // Shopify keeps redelivering: once the faults are over, everything settles.
            for _ in 0..5 {
                world.now += SETTLE;
                world.deliver(if cancelled { Delivery::Cancelled } else { Delivery::Paid }, Fault::None);
            }
            world.sevdesk.land(world.now);
            prop_assert!(world.sevdesk.invoices <= 1);
            prop_assert!(world.sevdesk.booked <= world.total);
            if !cancelled && world.row.paid {
                prop_assert_eq!(world.row.state, SyncState::PaymentBooked);
                prop_assert_eq!(world.sevdesk.invoices, 1);
                prop_assert_eq!(world.sevdesk.booked, world.total);
            }
            if cancelled && world.reviews == 0 {
                prop_assert_eq!(world.row.state, SyncState::Cancelled);
            }
        }
    }

    fn row(state: SyncState) -> SyncRow {
        SyncRow {
            state,
            paid: true,
            cancel_requested: false,
            prepayment: false,
            contact_id: Some("1".into()),
            invoice_id: Some("2".into()),
            pending: None,
        }
    }

    const PAID: Facts = Facts {
        paid_now: true,
        prepayment_now: false,
        can_mail: false,
        mail: None,
        total: Decimal::ONE_HUNDRED,
        credited: Decimal::ZERO,
    };

    const MAILABLE: Facts = Facts {
        can_mail: true,
        ..PAID
    };

    #[test]
    fn with_an_address_the_e_mail_opens_the_invoice_and_the_payment_waits_for_it() {
        let created = row(SyncState::InvoiceCreated);
        assert_eq!(
            next_step(&created, &MAILABLE, at(0), Duration::ZERO),
            Step::Mail { prepayment: false }
        );
        assert_eq!(
            next_step(&created, &PAID, at(0), Duration::ZERO),
            Step::Send { look_first: false },
            "no address: sendBy, as before"
        );
        let mailing = row(SyncState::InvoiceMailing);
        let with = |mail| Facts {
            mail: Some(mail),
            ..MAILABLE
        };
        assert_eq!(
            next_step(
                &mailing,
                &with(MessageState::Pending),
                at(0),
                Duration::ZERO
            ),
            Step::AwaitMail
        );
        assert_eq!(
            next_step(&mailing, &with(MessageState::Sent), at(0), Duration::ZERO),
            Step::MailSent
        );
        assert_eq!(
            next_step(&mailing, &with(MessageState::Failed), at(0), Duration::ZERO),
            Step::Send { look_first: true },
            "a failed e-mail does not hold the booking"
        );
        // A lost outbox row is written again (the unique key keeps it one).
        assert_eq!(
            next_step(&mailing, &MAILABLE, at(0), Duration::ZERO),
            Step::Mail { prepayment: false }
        );
        // A sendBy whose outcome is unknown is settled as a sendBy, never followed by a mail.
        let mut sending = row(SyncState::InvoiceCreated);
        sending.pending = Some(Pending {
            call: "send".into(),
            since: at(0),
        });
        assert_eq!(
            next_step(&sending, &MAILABLE, at(100), Duration::from_secs(10)),
            Step::Send { look_first: true }
        );
    }

    #[test]
    fn a_prepayment_order_is_invoiced_and_mailed_on_create_and_booked_only_when_paid() {
        let mut r = row(SyncState::Pending);
        r.paid = false;
        r.prepayment = true;
        let create = Facts {
            paid_now: false,
            prepayment_now: true,
            ..MAILABLE
        };
        assert_eq!(next_step(&r, &create, at(0), Duration::ZERO), Step::Contact);
        r.state = SyncState::InvoiceCreated;
        assert_eq!(
            next_step(&r, &create, at(0), Duration::ZERO),
            Step::Mail { prepayment: true }
        );
        r.state = SyncState::InvoiceMailing;
        let pending = Facts {
            mail: Some(MessageState::Pending),
            ..create
        };
        assert_eq!(
            next_step(&r, &pending, at(0), Duration::ZERO),
            Step::Done,
            "the create does not wait for the e-mail"
        );
        r.state = SyncState::InvoiceSent;
        assert_eq!(next_step(&r, &create, at(0), Duration::ZERO), Step::Done);
        // A later orders/updated that is not a prepayment any more does nothing either.
        let updated = Facts {
            prepayment_now: false,
            ..create
        };
        assert_eq!(next_step(&r, &updated, at(0), Duration::ZERO), Step::Done);
        // orders/paid books (what is left: Book re-reads what sevDesk has paid).
        r.paid = true;
        assert_eq!(next_step(&r, &MAILABLE, at(0), Duration::ZERO), Step::Book);
        // Cancelled while invoiced: the cancellation invoice, as for any open invoice.
        r.cancel_requested = true;
        assert_eq!(next_step(&r, &create, at(0), Duration::ZERO), Step::Cancel);
        r.state = SyncState::InvoiceMailing;
        assert_eq!(
            next_step(&r, &pending, at(0), Duration::ZERO),
            Step::AwaitMail
        );
    }

    #[test]
    fn an_unknown_outcome_settles_before_anything_is_called_again() {
        let mut r = row(SyncState::InvoiceCreating);
        r.pending = Some(Pending {
            call: "save_invoice".into(),
            since: at(0),
        });
        let settle = Duration::from_secs(10);
        assert_eq!(
            next_step(&r, &PAID, at(4), settle),
            Step::Settle {
                call: "save_invoice".into(),
                retry_in: Duration::from_secs(6)
            }
        );
        assert_eq!(
            next_step(&r, &PAID, at(10), settle),
            Step::Invoice {
                create_if_missing: true
            }
        );
    }

    #[test]
    fn only_a_delivery_that_shows_the_order_paid_books() {
        let other = Facts {
            paid_now: false,
            ..PAID
        };
        assert_eq!(
            next_step(&row(SyncState::InvoiceSent), &other, at(0), Duration::ZERO),
            Step::Done
        );
        assert_eq!(
            next_step(&row(SyncState::InvoiceSent), &PAID, at(0), Duration::ZERO),
            Step::Book
        );
    }

    #[test]
    fn a_cancellation_after_a_partial_refund_needs_review() {
        let mut r = row(SyncState::PaymentBooked);
        r.cancel_requested = true;
        let partial = Facts {
            credited: Decimal::TEN,
            ..PAID
        };
        assert!(matches!(
            next_step(&r, &partial, at(0), Duration::ZERO),
            Step::NeedsReview(_)
        ));
        let full = Facts {
            credited: Decimal::ONE_HUNDRED,
            ..PAID
        };
        assert_eq!(
            next_step(&r, &full, at(0), Duration::ZERO),
            Step::MarkCancelled {
                why: "cancelled_fully_refunded"
            }
        );
        assert_eq!(next_step(&r, &PAID, at(0), Duration::ZERO), Step::Cancel);
    }
}
