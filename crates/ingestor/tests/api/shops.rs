//! `HOOKLINE_SHOPS` and the shops file: an allowlist of shops, each optionally with secrets of
//! its own.

use hookline_core::envelope::header;
use serde_json::Value;

use crate::helpers::{AppOptions, SECRET, Webhook, spawn_app_with};

const ORDERS: &str = "hookline.orders";
const UNROUTED: &str = "hookline.unrouted";

fn paid(shop: &str) -> Webhook {
    Webhook::new("orders/paid", Webhook::fixture("orders-paid.json"))
        .header(header::SHOP_DOMAIN, shop)
}

#[tokio::test]
async fn an_allowlist_refuses_other_shops_with_403_and_publishes_nothing() {
    let app = spawn_app_with(AppOptions {
        shops: Some("example.myshopify.com, second.myshopify.com".into()),
        ..AppOptions::default()
    })
    .await;
    for shop in ["example.myshopify.com", "Second.myshopify.com"] {
        let response = app.post(&paid(shop)).await;
        assert_eq!(response.status(), 200, "{shop}");
    }
    assert_eq!(app.drain(ORDERS).await.len(), 2);

    let response = app.post(&paid("stranger.myshopify.com")).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "shop_not_allowed", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("stranger.myshopify.com"),
        "{body}"
    );
    // Unsigned requests learn nothing about the list: 401 as before.
    let response = app
        .post(&paid("stranger.myshopify.com").signed_with("guess"))
        .await;
    assert_eq!(response.status(), 401);
    assert!(app.drain(ORDERS).await.is_empty());
    assert!(app.drain(UNROUTED).await.is_empty());
}

#[tokio::test]
async fn a_body_signed_with_one_shops_secret_fails_when_sent_as_another_shop() {
    let app = spawn_app_with(AppOptions {
        // The global secret still serves shops without one of their own.
        shops: Some(
            "a.myshopify.com=secret-a,b.myshopify.com=secret-b,b.myshopify.com=secret-b-new,c.myshopify.com"
                .into(),
        ),
        ..AppOptions::default()
    })
    .await;
    let cases = [
        ("a.myshopify.com", "secret-a", 200),
        ("b.myshopify.com", "secret-b", 200),
        ("b.myshopify.com", "secret-b-new", 200),
        ("c.myshopify.com", SECRET, 200),
        // Shop A's body relabelled as shop B (or C): B's secrets are not A's.
        ("b.myshopify.com", "secret-a", 401),
        ("c.myshopify.com", "secret-a", 401),
        // A shop with its own secret is not checked against the global one.
        ("a.myshopify.com", SECRET, 401),
    ];
    for (shop, secret, status) in cases {
        let response = app.post(&paid(shop).signed_with(secret)).await;
        assert_eq!(response.status(), status, "{shop} signed with {secret}");
    }
    assert_eq!(app.drain(ORDERS).await.len(), 4, "only the accepted ones");
}

#[tokio::test]
async fn the_shops_file_is_the_allowlist_with_each_shops_secrets_read_from_files() {
    let dir = std::env::temp_dir().join(format!("hookline-shops-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("b")).unwrap();
    // A mounted Kubernetes secret: one per line during a rotation, trailing newline.
    std::fs::write(dir.join("b/webhook"), "secret-b-new\nsecret-b\n").unwrap();
    std::fs::write(
        dir.join("shops.toml"),
        r#"
        [[shop]]
        domain = "a.myshopify.com"
        webhook_secrets = ["secret-a"]

        [[shop]]
        domain = "b.myshopify.com"
        webhook_secrets_file = "b/webhook"
        "#,
    )
    .unwrap();
    let app = spawn_app_with(AppOptions {
        // No global secret: the file gives every shop its own.
        secrets: String::new(),
        shops_file: Some(dir.join("shops.toml").display().to_string()),
        ..AppOptions::default()
    })
    .await;
    let cases = [
        ("a.myshopify.com", "secret-a", 200),
        ("b.myshopify.com", "secret-b", 200),
        ("b.myshopify.com", "secret-b-new", 200),
        ("b.myshopify.com", "secret-a", 401),
        ("a.myshopify.com", SECRET, 401),
    ];
    for (shop, secret, status) in cases {
        let response = app.post(&paid(shop).signed_with(secret)).await;
        assert_eq!(response.status(), status, "{shop} signed with {secret}");
    }
    let response = app
        .post(&paid("c.myshopify.com").signed_with("secret-a"))
        .await;
    // No global secret: a shop not in the file has nothing its body could be checked with, and an
    // unverified request learns nothing about the list.
    assert_eq!(response.status(), 401, "a shop not in the file");
    assert_eq!(app.drain(ORDERS).await.len(), 3, "only the accepted ones");
    std::fs::remove_dir_all(&dir).unwrap();
}
