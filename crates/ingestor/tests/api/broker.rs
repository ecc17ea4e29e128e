//! The broker misbehaving: down, full, or gone for a while. In every case the answer is 503 with
//! Retry-After (so Shopify retries), and the ingestor recovers by itself.

use std::time::{Duration, Instant};

use crate::helpers::{AppOptions, Webhook, spawn_app, spawn_app_with};

fn order(id: u64) -> Webhook {
    Webhook::new("orders/create", format!(r#"{{"id":{id}}}"#))
}

#[tokio::test]
async fn an_unreachable_broker_answers_503_within_the_confirm_timeout() {
    let app = spawn_app_with(AppOptions {
        // Nothing listens on port 1.
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".into()),
        confirm_timeout_ms: 500,
        ..Default::default()
    })
    .await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    let started = Instant::now();
    let response = app.post(&order(1)).await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(response.headers().get("retry-after").unwrap(), "5");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "broker_unavailable");
}

#[tokio::test]
async fn a_full_queue_turns_into_503_backpressure() {
    let app = spawn_app_with(AppOptions {
        queue_max_length: Some(3),
        ..Default::default()
    })
    .await;
    let mut statuses = vec![];
    for id in 0..6 {
        statuses.push(app.post(&order(id)).await.status().as_u16());
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    // Quorum queues admit one message past the limit before rejecting publishes.
    assert!((3..=4).contains(&accepted), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    // Every 200 is in the queue; nothing answered 503 is.
    assert_eq!(app.drain("hookline.orders").await.len(), accepted);
    // Room again: accepted again, same connection.
    assert_eq!(app.post(&order(99)).await.status(), 200);
}

#[tokio::test]
async fn a_broker_outage_answers_503_and_recovers_without_a_restart() {
    let app = spawn_app().await;
    assert_eq!(app.post(&order(1)).await.status(), 200);

    app.vhost.outage("hookline-ingestor");
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/readyz").await.status() != 503 {
        assert!(
            Instant::now() < deadline,
            "the ingestor did not notice the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in 2..5 {
        let response = app.post(&order(id)).await;
        assert_eq!(response.status(), 503, "during the outage");
        assert!(response.headers().contains_key("retry-after"));
    }

    app.vhost.grant();
    app.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(app.post(&order(5)).await.status(), 200, "after the outage");

    // Our test connection was closed by the outage too: reconnect to count.
    let app = crate::helpers::reconnect(app).await;
    let ids: Vec<String> = app
        .drain("hookline.orders")
        .await
        .iter()
        .map(|m| {
            hookline_core::Envelope::from_json(&m.delivery.data)
                .unwrap()
                .payload
                .get()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        vec![r#"{"id":1}"#.to_string(), r#"{"id":5}"#.to_string()]
    );
}

#[tokio::test]
async fn in_flight_requests_finish_before_a_graceful_stop() {
    let app = spawn_app().await;
    let webhooks: Vec<Webhook> = (0..20).map(order).collect();
    let sends: Vec<_> = webhooks.iter().map(|w| app.try_post(w)).collect();
    let (responses, _) = tokio::join!(futures_util::future::join_all(sends), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        app.stop().await;
    });
    let accepted = responses
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count();
    // Whatever was answered 200 is in the queue, and nothing else: a stop neither loses an
    // accepted webhook nor publishes one whose answer never leaves (the client would see an
    // error and Shopify send it again).
    assert_eq!(app.drain("hookline.orders").await.len(), accepted);
}

#[tokio::test]
async fn fifty_graceful_stops_under_load_drop_no_answer_after_its_publish() {
    let app = spawn_app().await;
    let mut accepted = 0;
    let mut answered_otherwise = 0;
    for round in 0..50u64 {
        let ingestor = app.start_another().await;
        let client = reqwest::Client::new();
        // Eight senders, each posting one webhook after the other on its kept-alive connection
        // until the server stops answering.
        let senders: Vec<_> = (0..8u64)
            .map(|sender| {
                let (client, address) = (client.clone(), ingestor.address.clone());
                tokio::spawn(async move {
                    let (mut ok, mut other) = (0, 0);
                    for n in 0..40u64 {
                        let webhook = order(round * 10_000 + sender * 100 + n);
                        let sent = crate::helpers::post_to(&client, &address, &webhook).await;
                        match sent {
                            Ok(r) if r.status() == 200 => ok += 1,
                            Ok(_) => other += 1,
                            Err(_) => break,
                        }
                    }
                    (ok, other)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20 + round % 7 * 5)).await;
        ingestor.stop().await;
        for sender in senders {
            let (ok, other) = sender.await.unwrap();
            accepted += ok;
            answered_otherwise += other;
        }
    }
    let queued = app.drain("hookline.orders").await.len();
    assert!(
        accepted > 50,
        "the stops happened under load ({accepted} accepted)"
    );
    // A webhook in the queue that was not answered 200 is an answer dropped after its publish.
    assert_eq!(
        queued,
        accepted,
        "{} published webhooks lost their answer ({answered_otherwise} answered otherwise)",
        queued.saturating_sub(accepted)
    );
}
