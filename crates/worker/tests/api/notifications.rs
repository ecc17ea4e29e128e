//! The customer's e-mail with the invoice: exactly one per invoice, across duplicates, late
//! commits, time-outs after sending, a worker killed mid-send and exhausted retries; prepayment
//! orders get their invoice and e-mail without a booking; an order without an address gets
//! `sendBy` and no e-mail.

use std::time::{Duration, Instant};

use hookline_core::Envelope;
use hookline_sandbox::sevdesk::{Email, MailFault, MailMode};
use hookline_testkit::envelope;

use crate::helpers::{ORDERS_ONLY, SHOP, World, paid};

const ORDER_ID: i64 = 820982911946154508;
const PAID: &str = include_str!("../../../../fixtures/shopify/orders-paid.json");
const CREATED: &str = include_str!("../../../../fixtures/shopify/orders-create.json");

fn emails(world: &World) -> Vec<Email> {
    world.erp.sandbox.state.sevdesk.emails()
}

/// `(id, status, outcome, last_error)` of the order's notification.
async fn notification(world: &World) -> Option<(i64, String, Option<String>, Option<String>)> {
    world
        .db
        .client()
        .await
        .query_opt(
            "SELECT id, status, outcome, last_error FROM notification_outbox WHERE shop_domain = $1 AND order_id = $2",
            &[&SHOP, &ORDER_ID],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

async fn wait_notification(
    world: &World,
    status: &str,
    within: Duration,
) -> (i64, String, Option<String>, Option<String>) {
    let deadline = Instant::now() + within;
    loop {
        let current = notification(world).await;
        if let Some(n) = &current
            && n.1 == status
        {
            return n.clone();
        }
        assert!(
            Instant::now() < deadline,
            "notification not {status}: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_emails(world: &World, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while emails(world).len() < n {
        assert!(Instant::now() < deadline, "fewer than {n} e-mails");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn booked(world: &World) {
    assert_eq!(
        world
            .wait_order_state(ORDER_ID, "payment_booked", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("payment_booked")
    );
}

fn prepayment_create() -> Envelope {
    envelope(
        "orders/create",
        SHOP,
        &CREATED.replace(
            r#""financial_status": "pending","#,
            r#""financial_status": "pending", "payment_gateway_names": ["Bank Deposit"],"#,
        ),
    )
}

#[tokio::test]
async fn a_paid_order_gets_one_email_with_its_invoice_across_duplicate_webhooks() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    for _ in 0..3 {
        world.publish(&paid()).await;
    }
    booked(&world).await;
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = emails(&world);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let invoice = &world.regular_invoices()[0];
    assert_eq!(sent[0].object_id, invoice.id);
    assert_eq!(sent[0].to, "jon@example.com");
    assert_eq!(
        sent[0].subject,
        format!(
            "Ihre Rechnung {} zu Bestellung #1001",
            invoice.invoice_number
        )
    );
    assert!(
        sent[0].text.contains("Jön Müller") && sent[0].text.contains("119,00 EUR"),
        "{}",
        sent[0].text
    );
    // sendViaEmail opened the invoice: no sendBy, and the payment was booked on it.
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("sendBy"), 0);
    assert_eq!(invoice.send_type.as_deref(), Some("VM"));
    assert_eq!(invoice.bookings, 1);
    let (_, _, outcome, _) = wait_notification(&world, "sent", Duration::from_secs(1)).await;
    assert_eq!(outcome.as_deref(), Some("sent"));
}

#[tokio::test]
async fn an_order_without_an_email_address_gets_send_by_and_the_reason_recorded() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    let body = PAID.replace(r#""jon@example.com""#, r#""""#);
    world.publish(&envelope("orders/paid", SHOP, &body)).await;
    booked(&world).await;
    assert!(emails(&world).is_empty());
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("sendBy"), 1);
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("sendViaEmail"), 0);
    let (_, _, _, why) = wait_notification(&world, "skipped", Duration::from_secs(1)).await;
    assert!(
        why.as_deref()
            .is_some_and(|w| w.contains("no e-mail address")),
        "{why:?}"
    );
}

/// sevDesk answers 500, then sends the e-mail 1.5 s later (after the 1 s timeout, before the
/// 2 s settle): the relay settles, sees the invoice e-mailed and records it without sending.
#[tokio::test]
async fn a_late_commit_is_found_and_not_sent_again() {
    let world = World::new().await;
    world.erp.sandbox.state.sevdesk.set_mail_fault(MailFault {
        mode: MailMode::CommitLate,
        times: 1,
        delay_ms: 1500,
    });
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    booked(&world).await;
    let (_, _, outcome, _) = wait_notification(&world, "sent", Duration::from_secs(1)).await;
    assert_eq!(outcome.as_deref(), Some("found_sent"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(emails(&world).len(), 1);
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("sendViaEmail"), 1);
}

/// sevDesk sends the e-mail and never answers: the client times out, and the settle-then-verify
/// step finds it sent.
#[tokio::test]
async fn a_time_out_after_sending_is_found_and_not_sent_again() {
    let world = World::new().await;
    world.erp.sandbox.state.sevdesk.set_mail_fault(MailFault {
        mode: MailMode::TimeoutAfterSend,
        times: 0,
        delay_ms: 0,
    });
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&paid()).await;
    booked(&world).await;
    let (_, _, outcome, _) = wait_notification(&world, "sent", Duration::from_secs(1)).await;
    assert_eq!(outcome.as_deref(), Some("found_sent"));
    assert_eq!(emails(&world).len(), 1);
    assert_eq!(world.erp.sandbox.state.sevdesk.calls("sendViaEmail"), 1);
}

/// Every send answered 500 (an unknown outcome each time: settled, verified, sent again) until
/// the attempts run out: failed with its reason, the booking not held up (`sendBy` opened the
/// invoice). The operator's retry then sends it once.
#[tokio::test]
async fn exhausted_retries_fail_with_their_reason_and_a_retry_sends_once() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    sevdesk.set_mail_fault(MailFault {
        mode: MailMode::Fail,
        times: 0,
        delay_ms: 0,
    });
    let _worker = world
        .spawn_worker(&[ORDERS_ONLY, &[("HOOKLINE_NOTIFY_MAX_ATTEMPTS", "2")]].concat())
        .await;
    world.publish(&paid()).await;
    let (id, _, _, reason) = wait_notification(&world, "failed", Duration::from_secs(30)).await;
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("gave up after 2 attempts") && r.contains("500")),
        "{reason:?}"
    );
    booked(&world).await;
    assert_eq!(sevdesk.calls("sendViaEmail"), 2);
    assert_eq!(
        sevdesk.calls("sendBy"),
        1,
        "the failed e-mail did not hold the booking"
    );
    assert!(emails(&world).is_empty());

    sevdesk.set_mail_fault(MailFault::default());
    let db = world.db.client().await;
    hookline_worker::notifications::retry(&db, id)
        .await
        .unwrap();
    assert!(
        hookline_worker::notifications::retry(&db, id)
            .await
            .is_err(),
        "only a failed notification is retried"
    );
    let (_, _, outcome, _) = wait_notification(&world, "sent", Duration::from_secs(20)).await;
    assert_eq!(outcome.as_deref(), Some("sent"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(emails(&world).len(), 1);
    assert_eq!(sevdesk.calls("sendViaEmail"), 3);
}

/// The worker binary is killed (SIGKILL) while sevDesk has the e-mail and no answer has come:
/// after the restart the row settles, sevDesk shows the invoice e-mailed, and no second e-mail
/// goes out.
#[tokio::test]
async fn a_worker_killed_during_the_send_mails_once_after_restart() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    sevdesk.set_mail_fault(MailFault {
        mode: MailMode::TimeoutAfterSend,
        times: 0,
        delay_ms: 0,
    });
    hookline_worker::startup::migrate(&world.db.url())
        .await
        .unwrap();
    let mut worker = world.worker_process(ORDERS_ONLY);
    world.publish(&paid()).await;
    wait_emails(&world, 1, Duration::from_secs(30)).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    let (_, status, _, _) = notification(&world).await.unwrap();
    assert_eq!(status, "pending", "killed before the answer was recorded");

    let mut second = world.worker_process(ORDERS_ONLY);
    let sent = tokio::time::timeout(
        Duration::from_secs(40),
        wait_notification(&world, "sent", Duration::from_secs(40)),
    )
    .await;
    let state = world
        .wait_order_state(ORDER_ID, "payment_booked", Duration::from_secs(20))
        .await;
    second.kill().unwrap();
    second.wait().unwrap();
    let (_, _, outcome, _) = sent.unwrap();
    assert_eq!(outcome.as_deref(), Some("found_sent"));
    assert_eq!(emails(&world).len(), 1);
    assert_eq!(sevdesk.calls("sendViaEmail"), 1);
    assert_eq!(state.as_deref(), Some("payment_booked"));
}

#[tokio::test]
async fn a_prepayment_order_gets_its_invoice_and_an_email_and_no_booking_until_paid() {
    let world = World::new().await;
    let sevdesk = &world.erp.sandbox.state.sevdesk;
    let _worker = world
        .spawn_worker(
            &[
                ORDERS_ONLY,
                &[(
                    "HOOKLINE_NOTIFY_BANK_DETAILS",
                    "IBAN DE02 1203 0000 0000 2020 51",
                )],
            ]
            .concat(),
        )
        .await;
    world.publish(&prepayment_create()).await;
    assert_eq!(
        world
            .wait_order_state(ORDER_ID, "invoice_sent", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("invoice_sent")
    );
    let prepayment: bool = world
        .db
        .client()
        .await
        .query_one(
            "SELECT prepayment FROM order_sync WHERE order_id = $1",
            &[&ORDER_ID],
        )
        .await
        .unwrap()
        .get(0);
    assert!(prepayment);
    let invoice = world.regular_invoices()[0].clone();
    assert_eq!(invoice.status, 200, "open, waiting for the transfer");
    assert_eq!(invoice.bookings, 0);
    let sent = emails(&world);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].subject.contains("überweisen"),
        "{}",
        sent[0].subject
    );
    for needle in [
        "IBAN DE02 1203 0000 0000 2020 51",
        invoice.invoice_number.as_str(),
        "119,00 EUR",
    ] {
        assert!(
            sent[0].text.contains(needle),
            "{needle} in {}",
            sent[0].text
        );
    }
    // A duplicate create sends nothing more; the payment is booked when Shopify says paid.
    world.publish(&prepayment_create()).await;
    world.publish(&paid()).await;
    booked(&world).await;
    world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    assert_eq!(emails(&world).len(), 1);
    assert_eq!(world.regular_invoices()[0].bookings, 1);
    assert_eq!(sevdesk.calls("saveInvoice"), 1);
}

#[tokio::test]
async fn a_cancelled_prepayment_order_gets_its_cancellation_invoice() {
    let world = World::new().await;
    let _worker = world.spawn_worker(ORDERS_ONLY).await;
    world.publish(&prepayment_create()).await;
    world
        .wait_order_state(ORDER_ID, "invoice_sent", Duration::from_secs(30))
        .await;
    world.publish(&crate::helpers::cancelled()).await;
    assert_eq!(
        world
            .wait_order_state(ORDER_ID, "cancelled", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("cancelled")
    );
    let all = world.erp.sandbox.state.sevdesk.invoices();
    assert_eq!(all.iter().filter(|i| i.invoice_type == "SR").count(), 1);
    assert_eq!(emails(&world).len(), 1);
}
