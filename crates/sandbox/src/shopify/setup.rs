//! What a shop has set up, played: `shop`, `currentAppInstallation { accessScopes }`,
//! `publicApiVersions`, `webhookSubscriptions` and the `webhookSubscriptionCreate` mutation.
//!
//! Subscriptions are kept per shop. `webhookSubscriptionCreate` answers as Shopify does: a topic
//! that is not a `WebhookSubscriptionTopic` (the compliance topics are not: they are subscribed
//! in the app's configuration only) is a top-level error; an address that is not `https://`
//! (nor a Pub/Sub or EventBridge URI) is the user error "Address protocol … is not supported" or
//! "Address is invalid"; a second subscription of a topic to the same address is the user error
//! "Address for this topic has already been taken". Nothing is created in either case.
//!
//! Scopes default to `read_orders, write_orders` (no `read_all_orders`); API versions to the
//! four quarterly releases of the twelve months before 2027-01 as supported, the 2027-01
//! release candidate and `unstable` as not. Tests change both.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

/// Topics `webhookSubscriptionCreate` refuses as not in the enum.
const NOT_TOPICS: [&str; 3] = ["CUSTOMERS_DATA_REQUEST", "CUSTOMERS_REDACT", "SHOP_REDACT"];

struct Store {
    subscriptions: HashMap<String, Vec<Value>>,
    scopes: HashMap<String, Vec<String>>,
    default_scopes: Vec<String>,
    versions: Vec<(String, bool)>,
    next_id: i64,
}

/// The set-up part of the sandbox's Shopify.
pub struct Setup {
    store: Mutex<Store>,
}

impl Default for Setup {
    fn default() -> Self {
        let versions = ["2026-01", "2026-04", "2026-07", "2026-10"]
            .iter()
            .map(|v| (v.to_string(), true))
            .chain([
                ("2027-01".to_owned(), false),
                ("unstable".to_owned(), false),
            ])
            .collect();
        Self {
            store: Mutex::new(Store {
                subscriptions: HashMap::new(),
                scopes: HashMap::new(),
                default_scopes: vec!["read_orders".into(), "write_orders".into()],
                versions,
                next_id: 1_000_000_000,
            }),
        }
    }
}

impl Setup {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shop's subscriptions as `webhookSubscriptions` lists them.
    pub fn subscriptions(&self, shop: &str) -> Vec<Value> {
        self.store()
            .subscriptions
            .get(shop)
            .cloned()
            .unwrap_or_default()
    }

    /// Adds a subscription as if someone else (a previous connector) had made it.
    pub fn add_subscription(&self, shop: &str, topic: &str, uri: &str) {
        let mut store = self.store();
        let id = store.next_id;
        store.next_id += 1;
        store
            .subscriptions
            .entry(shop.to_owned())
            .or_default()
            .push(subscription(id, topic, uri));
    }

    /// The scopes granted on `shop` from now on.
    pub fn set_scopes(&self, shop: &str, scopes: &[&str]) {
        self.store().scopes.insert(
            shop.to_owned(),
            scopes.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// Replaces `publicApiVersions`: handles with whether each is supported.
    pub fn set_api_versions(&self, versions: &[(&str, bool)]) {
        self.store().versions = versions.iter().map(|(h, s)| (h.to_string(), *s)).collect();
    }

    /// The full values of the root query fields this module answers, for `shop`.
    pub fn query_root(&self, shop: &str) -> Value {
        let store = self.store();
        let scopes = store.scopes.get(shop).unwrap_or(&store.default_scopes);
        json!({
            "shop": {
                "name": shop.split('.').next().unwrap_or(shop),
                "myshopifyDomain": shop,
            },
            "currentAppInstallation": {
                "accessScopes": scopes.iter().map(|s| json!({"handle": s, "description": s})).collect::<Vec<_>>(),
                "__type": {"accessScopes": "AccessScope"},
            },
            "publicApiVersions": store.versions.iter().map(|(h, s)| json!({
                "handle": h,
                "displayName": h,
                "supported": s,
            })).collect::<Vec<_>>(),
            "webhookSubscriptions": {
                "nodes": store.subscriptions.get(shop).cloned().unwrap_or_default(),
            },
            "__type": {
                "shop": "Shop",
                "currentAppInstallation": "AppInstallation",
                "publicApiVersions": "ApiVersion",
                "webhookSubscriptions": "WebhookSubscriptionConnection",
            },
        })
    }

    /// `webhookSubscriptionCreate(topic:, webhookSubscription: {uri, format})`: the payload
    /// (`webhookSubscription`, `userErrors`), or a top-level error.
    pub fn create(
        &self,
        shop: &str,
        topic: Option<&Value>,
        input: Option<&Value>,
    ) -> Result<Value, Value> {
        let topic = topic.and_then(Value::as_str).unwrap_or_default();
        let valid_topic = !topic.is_empty()
            && topic
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && !NOT_TOPICS.contains(&topic);
        if !valid_topic {
            return Err(json!({
                "message": format!("Variable $topic of type WebhookSubscriptionTopic! was provided invalid value {topic:?}"),
                "extensions": {"code": "INVALID_VARIABLE"},
            }));
        }
        let uri = input
            .and_then(|i| i.get("uri").or_else(|| i.get("callbackUrl")))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let user_error = |message: String| {
            json!({
                "webhookSubscription": null,
                "userErrors": [{"field": ["webhookSubscription", "uri"], "message": message}],
            })
        };
        if let Some(why) = uri_error(uri) {
            return Ok(user_error(why));
        }
        let mut store = self.store();
        let id = store.next_id;
        let list = store.subscriptions.entry(shop.to_owned()).or_default();
        if list.iter().any(|s| s["topic"] == topic && s["uri"] == uri) {
            return Ok(user_error(
                "Address for this topic has already been taken".into(),
            ));
        }
        let created = subscription(id, topic, uri);
        list.push(created.clone());
        store.next_id += 1;
        Ok(json!({"webhookSubscription": created, "userErrors": []}))
    }
}

/// Why Shopify refuses a subscription's address, if it does.
fn uri_error(uri: &str) -> Option<String> {
    if let Some(rest) = uri.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        return (host.is_empty() || host.contains(' ')).then(|| "Address is invalid".into());
    }
    if uri.starts_with("pubsub://") || uri.starts_with("arn:aws:events:") {
        return None;
    }
    match uri.split_once("://") {
        Some((scheme, _)) if !scheme.is_empty() => {
            Some(format!("Address protocol {scheme}:// is not supported"))
        }
        _ => Some("Address is invalid".into()),
    }
}

fn subscription(id: i64, topic: &str, uri: &str) -> Value {
    json!({
        "id": format!("gid://shopify/WebhookSubscription/{id}"),
        "legacyResourceId": id.to_string(),
        "topic": topic,
        "uri": uri,
        "format": "JSON",
        "includeFields": [],
        "filter": null,
        "createdAt": crate::shopify::now().with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_subscribed_to_an_address_once() {
        let setup = Setup::default();
        let topic = json!("ORDERS_PAID");
        let input = json!({"uri": "https://h.example/webhooks/shopify", "format": "JSON"});
        let first = setup.create("s", Some(&topic), Some(&input)).unwrap();
        assert!(first["userErrors"].as_array().unwrap().is_empty());
        let again = setup.create("s", Some(&topic), Some(&input)).unwrap();
        assert_eq!(
            again["userErrors"][0]["message"],
            "Address for this topic has already been taken"
        );
        assert_eq!(setup.subscriptions("s").len(), 1);
    }

    #[test]
    fn plain_http_and_compliance_topics_are_refused() {
        let setup = Setup::default();
        let http = json!({"uri": "http://h.example/webhooks/shopify"});
        let answer = setup
            .create("s", Some(&json!("ORDERS_PAID")), Some(&http))
            .unwrap();
        assert_eq!(
            answer["userErrors"][0]["message"],
            "Address protocol http:// is not supported"
        );
        let https = json!({"uri": "https://h.example/webhooks/shopify"});
        assert!(
            setup
                .create("s", Some(&json!("SHOP_REDACT")), Some(&https))
                .is_err()
        );
        assert!(setup.subscriptions("s").is_empty());
    }
}
