//! Bank-transfer payments from sevDesk back to Shopify, exactly once: a prepayment order is
//! invoiced and mailed, the customer's transfer is matched in sevDesk, the payment poller marks
//! the Shopify order paid once, and the `orders/paid` webhook Shopify then sends (through the
//! ingestor) books nothing. Duplicate cycles and two pollers mark once; "already paid" is done;
//! a timed-out mutation is settled by reading; part payments wait; cancelled orders are left.
//!
//! Each test has its own shop, so the per-shop gauges of concurrent tests do not mix.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_core::breaker::{BreakerConfig, CircuitBreaker, SystemClock};
use hookline_core::config::Secret;
use hookline_ingestor::settings::Settings as IngestorSettings;
use hookline_ingestor::startup::Application;
use hookline_sandbox::sevdesk::{BankPayment, DEFAULT_TOKEN, Invoice};
use hookline_sandbox::shopify::{ACCESS_TOKEN, MarkPaidFault, MarkPaidMode, WebhookTarget};
use hookline_testkit::{SECRET, envelope};
use hookline_worker::payments::{PaymentPoller, PaymentReport, PaymentSettings, PaymentShop};
use hookline_worker::sevdesk::SevDeskClient;
use hookline_worker::shopify::{AdminClient, AdminSettings};

use crate::helpers::{ORDERS_ONLY, RunningWorker, World};

const ORDER_ID: i64 = 820982911946154508;
const CREATED: &str = include_str!("../../../../fixtures/shopify/orders-create.json");
const CANCELLED: &str = include_str!("../../../../fixtures/shopify/orders-cancelled.json");

fn prepayment_order() -> String {
    CREATED.replace(
        r#""financial_status": "pending","#,
        r#""financial_status": "pending", "payment_gateway_names": ["Bank Deposit"],"#,
    )
}

/// A world with the ingestor, a worker (orders), the sandbox's Shopify delivering its webhooks
/// to the ingestor, and one prepayment order of `shop` invoiced and mailed.
struct Shop {
    world: World,
    shop: &'static str,
    _worker: RunningWorker,
}

impl Shop {
    async fn new(shop: &'static str) -> Self {
        let world = World::new().await;
        let env: HashMap<&str, String> = HashMap::from([
            ("HOOKLINE_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("HOOKLINE_HTTP_WORKERS", "1".to_string()),
            ("HOOKLINE_AMQP_URL", world.vhost.amqp_url()),
            ("HOOKLINE_SHOPIFY_SECRETS", SECRET.to_string()),
        ]);
        let ingestor =
            Application::build(IngestorSettings::from_lookup(|k| env.get(k).cloned()).unwrap())
                .unwrap();
        let ingest_url = format!("http://127.0.0.1:{}/webhooks/shopify", ingestor.port());
        tokio::spawn(ingestor.run_until_stopped());
        let sandbox = &world.erp.sandbox.state;
        sandbox.shopify.set_webhook_target(Some(WebhookTarget {
            ingestor_url: ingest_url,
            secret: SECRET.to_string(),
        }));
        sandbox
            .shopify
            .upsert_order(shop, serde_json::from_str(&prepayment_order()).unwrap());
        let worker = world
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
        world
            .publish(&envelope("orders/create", shop, &prepayment_order()))
            .await;
        let this = Self {
            world,
            shop,
            _worker: worker,
        };
        this.wait_state("invoice_sent").await;
        this
    }

    fn poller(&self) -> PaymentPoller {
        let sandbox = &self.world.erp.sandbox;
        let breaker =
            CircuitBreaker::new("sevdesk", BreakerConfig::default(), Arc::new(SystemClock));
        let sevdesk = SevDeskClient::new(
            &sandbox.sevdesk_url(),
            DEFAULT_TOKEN,
            Duration::from_secs(2),
            breaker,
        )
        .unwrap();
        let token = Secret::new(ACCESS_TOKEN);
        let tokens = hookline_worker::shopify::static_tokens([(self.shop, &token)]);
        let admin = AdminClient::new(
            Arc::new(tokens),
            AdminSettings {
                timeout: Duration::from_secs(1),
                attempts: 2,
                backoff: Duration::from_millis(50),
                ..AdminSettings::new(sandbox.shopify_admin_url(), "2026-07")
            },
        )
        .unwrap();
        PaymentPoller::new(
            hookline_worker::startup::pool(&self.world.db.url(), 2).unwrap(),
            vec![PaymentShop {
                shop: self.shop.to_owned(),
                sevdesk,
            }],
            Arc::new(admin),
            PaymentSettings::default(),
        )
    }

    async fn cycle(&self, poller: &PaymentPoller) -> Result<PaymentReport, String> {
        let mut results = poller.run_cycle().await;
        assert_eq!(results.len(), 1);
        let (_, result) = results.remove(0);
        result.map_err(|e| hookline_worker::failure::error_chain(&e))
    }

    fn invoice(&self) -> Invoice {
        self.world
            .erp
            .sandbox
            .state
            .sevdesk
            .invoices()
            .into_iter()
            .find(|i| i.invoice_type == "RE")
            .expect("the order's invoice")
    }

    fn pay(&self, amount: f64) {
        self.world
            .erp
            .sandbox
            .state
            .sevdesk
            .bank_payment(&BankPayment {
                invoice_id: self.invoice().id,
                amount,
            })
            .unwrap();
    }

    fn mark_calls(&self) -> usize {
        self.world.erp.sandbox.state.shopify.mark_paid_calls()
    }

    fn shopify_status(&self) -> Option<String> {
        self.world
            .erp
            .sandbox
            .state
            .shopify
            .orders(self.shop)
            .first()
            .and_then(|o| o["financial_status"].as_str().map(str::to_owned))
    }

    async fn state(&self) -> Option<String> {
        self.world
            .db
            .client()
            .await
            .query_opt(
                "SELECT state FROM order_sync WHERE shop_domain = $1 AND order_id = $2",
                &[&self.shop, &ORDER_ID],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    }

    async fn wait_state(&self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.state().await;
            if now.as_deref() == Some(state) {
                return;
            }
            assert!(Instant::now() < deadline, "order not {state}: {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `(state, outcome, reason, attempts)` of the order's payment report.
    async fn payment(&self) -> Option<(String, Option<String>, Option<String>, i32)> {
        self.world
            .db
            .client()
            .await
            .query_opt(
                "SELECT state, outcome, reason, attempts FROM payment_sync WHERE shop_domain = $1 AND order_id = $2",
                &[&self.shop, &ORDER_ID],
            )
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        let text = hookline_telemetry::metrics_handle().render();
        let prefix = format!("{name}{{shop=\"{}\"}} ", self.shop);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }
}

#[tokio::test]
async fn a_bank_transfer_marks_the_order_paid_once_and_its_webhook_books_nothing() {
    let shop = Shop::new("pay-flow.myshopify.com").await;
    let sevdesk = &shop.world.erp.sandbox.state.sevdesk;
    assert_eq!(
        sevdesk.emails().len(),
        1,
        "the invoice went to the customer"
    );
    let poller = shop.poller();
    let before = shop.cycle(&poller).await.unwrap();
    assert_eq!(before.mutations, 0, "nothing paid yet: {before:?}");

    shop.pay(119.0);
    let report = shop.cycle(&poller).await.unwrap();
    assert_eq!((report.mutations, report.reported), (1, 1), "{report:?}");
    assert_eq!(shop.mark_calls(), 1);
    assert_eq!(shop.shopify_status().as_deref(), Some("paid"));
    let (state, outcome, _, attempts) = shop.payment().await.unwrap();
    assert_eq!(
        (state.as_str(), outcome.as_deref(), attempts),
        ("reported", Some("marked_paid"), 1)
    );

    // Shopify's orders/paid arrives through the ingestor and ends the order without a booking.
    shop.wait_state("payment_booked").await;
    shop.world
        .wait_queue_empty("hookline.orders", Duration::from_secs(20))
        .await;
    assert_eq!(sevdesk.calls("bookAmount"), 0, "no second booking");
    let invoice = shop.invoice();
    assert_eq!(
        (invoice.status, invoice.paid_amount.as_str()),
        (1000, "119.00")
    );
    assert_eq!(sevdesk.calls("saveInvoice"), 1);

    // Later cycles (the overlap reads the invoice again) change nothing.
    for _ in 0..2 {
        let again = shop.cycle(&poller).await.unwrap();
        assert_eq!(again.mutations, 0, "{again:?}");
    }
    assert_eq!(shop.mark_calls(), 1);
}

#[tokio::test]
async fn two_pollers_at_once_mark_the_order_paid_once() {
    let shop = Shop::new("pay-two.myshopify.com").await;
    shop.pay(119.0);
    let (a, b) = (shop.poller(), shop.poller());
    let (ra, rb) = tokio::join!(shop.cycle(&a), shop.cycle(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.mutations + rb.mutations, 1, "{ra:?} {rb:?}");
    let (rc, rd) = tokio::join!(shop.cycle(&a), shop.cycle(&b));
    assert_eq!(rc.unwrap().mutations + rd.unwrap().mutations, 0);
    assert_eq!(shop.mark_calls(), 1);
    shop.wait_state("payment_booked").await;
}

#[tokio::test]
async fn an_order_shopify_already_shows_paid_is_done_on_its_refusal() {
    let shop = Shop::new("pay-already.myshopify.com").await;
    // The merchant marked it paid by hand (its webhook is not part of this test).
    let sandbox = &shop.world.erp.sandbox.state;
    let mut order = sandbox.shopify.orders(shop.shop)[0].clone();
    order["financial_status"] = serde_json::json!("paid");
    sandbox.shopify.upsert_order(shop.shop, order);
    shop.pay(119.0);
    let poller = shop.poller();
    let report = shop.cycle(&poller).await.unwrap();
    assert_eq!(
        (report.mutations, report.reported, report.needs_review),
        (1, 1, 0),
        "{report:?}"
    );
    let (state, outcome, _, _) = shop.payment().await.unwrap();
    assert_eq!(
        (state.as_str(), outcome.as_deref()),
        ("reported", Some("already_paid"))
    );
    shop.cycle(&poller).await.unwrap();
    assert_eq!(shop.mark_calls(), 1);
}

#[tokio::test]
async fn a_timed_out_mutation_is_settled_by_reading_and_not_sent_again() {
    let shop = Shop::new("pay-timeout.myshopify.com").await;
    shop.world
        .erp
        .sandbox
        .state
        .shopify
        .set_mark_paid_fault(MarkPaidFault {
            mode: MarkPaidMode::CommitThenHang,
            times: 1,
        });
    shop.pay(119.0);
    let poller = shop.poller();
    let failed = shop.cycle(&poller).await;
    assert!(
        failed.as_ref().is_err_and(|e| e.contains("may have run")),
        "{failed:?}"
    );
    assert_eq!(
        shop.payment().await.unwrap().0,
        "marking",
        "the marker stays"
    );
    assert_eq!(shop.mark_calls(), 1);
    // Shopify did mark it paid, and its webhook books nothing (the marker says why).
    shop.wait_state("payment_booked").await;

    let report = shop.cycle(&poller).await.unwrap();
    assert_eq!((report.mutations, report.reported), (0, 1), "{report:?}");
    let (state, outcome, _, attempts) = shop.payment().await.unwrap();
    assert_eq!(
        (state.as_str(), outcome.as_deref(), attempts),
        ("reported", Some("found_paid"), 1)
    );
    assert_eq!(shop.mark_calls(), 1, "no second mutation");
    assert_eq!(shop.world.erp.sandbox.state.sevdesk.calls("bookAmount"), 0);
}

#[tokio::test]
async fn a_part_payment_waits_counted_and_the_rest_marks_the_order_paid() {
    let shop = Shop::new("pay-partial.myshopify.com").await;
    let poller = shop.poller();
    shop.pay(50.0);
    let report = shop.cycle(&poller).await.unwrap();
    assert_eq!((report.partial, report.mutations), (1, 0), "{report:?}");
    assert_eq!(shop.invoice().status, 750);
    assert_eq!(shop.payment().await.unwrap().0, "partial");
    assert_eq!(shop.gauge("hookline_worker_payments_partial"), Some(1.0));
    assert_eq!(shop.shopify_status().as_deref(), Some("pending"));
    assert_eq!(shop.state().await.as_deref(), Some("invoice_sent"));

    shop.pay(69.0);
    let report = shop.cycle(&poller).await.unwrap();
    assert_eq!((report.mutations, report.reported), (1, 1), "{report:?}");
    assert_eq!(shop.gauge("hookline_worker_payments_partial"), Some(0.0));
    assert_eq!(shop.mark_calls(), 1);
    shop.wait_state("payment_booked").await;
    assert_eq!(shop.world.erp.sandbox.state.sevdesk.calls("bookAmount"), 0);
}

#[tokio::test]
async fn an_over_payment_needs_review_with_both_amounts() {
    let shop = Shop::new("pay-over.myshopify.com").await;
    shop.pay(150.0);
    let poller = shop.poller();
    let report = shop.cycle(&poller).await.unwrap();
    assert_eq!(
        (report.needs_review, report.mutations),
        (1, 0),
        "{report:?}"
    );
    let (state, _, reason, _) = shop.payment().await.unwrap();
    assert_eq!(state, "needs_review");
    let reason = reason.unwrap_or_default();
    assert!(reason.contains("150") && reason.contains("119"), "{reason}");
    assert_eq!(
        shop.gauge("hookline_worker_payments_needs_review"),
        Some(1.0)
    );
    assert_eq!(shop.mark_calls(), 0);
}

#[tokio::test]
async fn a_cancelled_prepayment_order_gets_its_cancellation_and_is_not_marked_paid() {
    let shop = Shop::new("pay-cancel.myshopify.com").await;
    // The transfer arrives, and the order is cancelled before the poller looks.
    shop.pay(119.0);
    let cancelled = CANCELLED.replace(
        r#""financial_status": "refunded""#,
        r#""financial_status": "voided""#,
    );
    shop.world
        .erp
        .sandbox
        .state
        .shopify
        .upsert_order(shop.shop, serde_json::from_str(&cancelled).unwrap());
    shop.world
        .publish(&envelope("orders/cancelled", shop.shop, &cancelled))
        .await;
    shop.wait_state("cancelled").await;
    let all = shop.world.erp.sandbox.state.sevdesk.invoices();
    assert_eq!(all.iter().filter(|i| i.invoice_type == "SR").count(), 1);

    let poller = shop.poller();
    let report = shop.cycle(&poller).await.unwrap();
    assert_eq!((report.mutations, report.reported), (0, 0), "{report:?}");
    assert_eq!(shop.mark_calls(), 0);
    assert!(shop.payment().await.is_none());
}
