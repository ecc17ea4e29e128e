//! What a shop must have set up for hookline, read and changed through the GraphQL Admin API:
//! its webhook subscriptions, the scopes its token was granted, and whether the API version the
//! worker asks for is still supported. `hookctl shopify subscriptions --apply` and `hookctl
//! doctor` are built on this.
//!
//! **Subscriptions.** Since API 2025-10 a `WebhookSubscription` names its destination in one
//! `uri` field (HTTPS URLs, Pub/Sub and EventBridge URIs alike), and `webhookSubscriptionCreate`
//! takes `webhookSubscription: {uri, format}`; the older `endpoint { … on WebhookHttpEndpoint {
//! callbackUrl } }` and `callbackUrl` are deprecated. Topics are the `WebhookSubscriptionTopic`
//! enum: the REST name upper-cased, `/` and `.` as `_` ([`graphql_topic`]). Shopify answers a
//! second subscription of the same topic to the same address with a user error ("Address for
//! this topic has already been taken"), so creating only what [`missing`] reports keeps `--apply`
//! idempotent, and a user error is reported, never retried.
//!
//! **Scopes.** `currentAppInstallation { accessScopes { handle } }` lists what the token may do.
//! A `write_*` scope includes its `read_*` ([`granted`]). hookline reads orders (`read_orders`),
//! marks prepayment orders paid (`orderMarkAsPaid` needs `write_orders`), and reads orders older
//! than 60 days only with `read_all_orders` — needed when a backfill or the reconciliation
//! lookback reaches further back ([`SCOPES`]).
//!
//! **API version.** `publicApiVersions { handle supported }` lists the versions Shopify serves;
//! `supported` is false for the release candidate, `unstable` and versions past their end of
//! life. A version that is not supported is answered as the oldest supported one.

use serde::Deserialize;
use serde_json::json;

use super::{AdminClient, AdminError};

/// Orders older than this need `read_all_orders`.
pub const ALL_ORDERS_AFTER_DAYS: i64 = 60;

/// The scopes hookline asks for, and why.
pub const SCOPES: [(&str, &str); 3] = [
    (
        "read_orders",
        "to read orders and refunds (reconciliation, backfill)",
    ),
    (
        "write_orders",
        "to mark prepayment orders paid (orderMarkAsPaid)",
    ),
    (
        "read_all_orders",
        "to read orders older than 60 days (a backfill or reconciliation lookback further back)",
    ),
];

/// The shop's subscriptions, 100 per page.
pub const LIST_SUBSCRIPTIONS: &str = "query HooklineSubscriptions($after: String) {
  webhookSubscriptions(first: 100, after: $after) {
    edges { node { id topic uri } }
    pageInfo { hasNextPage endCursor }
  }
}";

/// Subscribes one topic.
pub const CREATE_SUBSCRIPTION: &str =
    "mutation HooklineSubscribe($topic: WebhookSubscriptionTopic!, $uri: String!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {uri: $uri, format: JSON}) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}";

/// The shop behind the token: the cheapest query that proves the token works.
pub const SHOP: &str = "query HooklineShop { shop { name myshopifyDomain } }";

/// The scopes granted to the app's installation.
pub const ACCESS_SCOPES: &str =
    "query HooklineScopes { currentAppInstallation { accessScopes { handle } } }";

/// The API versions Shopify serves.
pub const API_VERSIONS: &str = "query HooklineVersions { publicApiVersions { handle supported } }";

/// A REST topic's name in GraphQL's `WebhookSubscriptionTopic` enum (`orders/paid` →
/// `ORDERS_PAID`).
pub fn graphql_topic(topic: &str) -> String {
    topic.replace(['/', '.'], "_").to_ascii_uppercase()
}

/// One webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    /// `gid://shopify/WebhookSubscription/…`.
    pub id: String,
    /// The GraphQL topic, e.g. `ORDERS_PAID`.
    pub topic: String,
    /// Where it delivers.
    pub uri: String,
}

/// The topics of `topics` (REST names) with no subscription delivering to `uri`.
pub fn missing<'a>(topics: &[&'a str], uri: &str, existing: &[Subscription]) -> Vec<&'a str> {
    topics
        .iter()
        .copied()
        .filter(|t| {
            let name = graphql_topic(t);
            !existing.iter().any(|s| s.topic == name && s.uri == uri)
        })
        .collect()
}

/// Whether `scope` is among `granted`: itself, or the `write_` scope that includes a `read_`
/// one.
pub fn granted(granted: &[String], scope: &str) -> bool {
    granted.iter().any(|g| g == scope)
        || scope
            .strip_prefix("read_")
            .is_some_and(|rest| granted.iter().any(|g| *g == format!("write_{rest}")))
}

#[derive(Deserialize)]
struct Edge<T> {
    node: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionsPage {
    webhook_subscriptions: SubscriptionConnection,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionConnection {
    edges: Vec<Edge<Subscription>>,
    page_info: PageInfo,
}

/// Every subscription of `shop`.
pub async fn subscriptions(
    admin: &AdminClient,
    shop: &str,
) -> Result<Vec<Subscription>, AdminError> {
    let mut all = vec![];
    let mut after: Option<String> = None;
    loop {
        let page: SubscriptionsPage = admin
            .query(shop, LIST_SUBSCRIPTIONS, json!({ "after": after }))
            .await?;
        let connection = page.webhook_subscriptions;
        all.extend(connection.edges.into_iter().map(|e| e.node));
        match connection.page_info.end_cursor {
            Some(cursor) if connection.page_info.has_next_page => after = Some(cursor),
            _ => return Ok(all),
        }
    }
}

/// A `userErrors` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserError {
    /// The input path it concerns, e.g. `["webhookSubscription", "uri"]`.
    #[serde(default)]
    pub field: Option<Vec<String>>,
    /// Shopify's message.
    pub message: String,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(path) if !path.is_empty() => write!(f, "{}: {}", path.join("."), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// What `webhookSubscriptionCreate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Subscribed.
    Subscribed(Subscription),
    /// Refused with Shopify's user errors.
    Refused(Vec<UserError>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAnswer {
    webhook_subscription_create: CreatePayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatePayload {
    webhook_subscription: Option<Subscription>,
    #[serde(default)]
    user_errors: Vec<UserError>,
}

/// Subscribes `topic` (REST name) of `shop` to `uri`, as JSON.
pub async fn subscribe(
    admin: &AdminClient,
    shop: &str,
    topic: &str,
    uri: &str,
) -> Result<Created, AdminError> {
    let answer: CreateAnswer = admin
        .query(
            shop,
            CREATE_SUBSCRIPTION,
            json!({ "topic": graphql_topic(topic), "uri": uri }),
        )
        .await?;
    let payload = answer.webhook_subscription_create;
    Ok(match payload.webhook_subscription {
        Some(s) if payload.user_errors.is_empty() => Created::Subscribed(s),
        _ => Created::Refused(payload.user_errors),
    })
}

/// `shop { name myshopifyDomain }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShopInfo {
    /// The shop's name.
    pub name: String,
    /// `example.myshopify.com`.
    pub myshopify_domain: String,
}

#[derive(Deserialize)]
struct ShopAnswer {
    shop: ShopInfo,
}

/// The shop behind the token.
pub async fn shop(admin: &AdminClient, shop: &str) -> Result<ShopInfo, AdminError> {
    let answer: ShopAnswer = admin.query(shop, SHOP, json!({})).await?;
    Ok(answer.shop)
}

#[derive(Deserialize)]
struct Handle {
    handle: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Installation {
    access_scopes: Vec<Handle>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopesAnswer {
    current_app_installation: Installation,
}

/// The scopes granted to the app on `shop`.
pub async fn access_scopes(admin: &AdminClient, shop: &str) -> Result<Vec<String>, AdminError> {
    let answer: ScopesAnswer = admin.query(shop, ACCESS_SCOPES, json!({})).await?;
    Ok(answer
        .current_app_installation
        .access_scopes
        .into_iter()
        .map(|h| h.handle)
        .collect())
}

/// One of `publicApiVersions`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiVersion {
    /// `2026-10`, `unstable`.
    pub handle: String,
    /// Stable and not past its end of life.
    pub supported: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionsAnswer {
    public_api_versions: Vec<ApiVersion>,
}

/// The API versions Shopify serves.
pub async fn api_versions(admin: &AdminClient, shop: &str) -> Result<Vec<ApiVersion>, AdminError> {
    let answer: VersionsAnswer = admin.query(shop, API_VERSIONS, json!({})).await?;
    Ok(answer.public_api_versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(topic: &str, uri: &str) -> Subscription {
        Subscription {
            id: format!("gid://shopify/WebhookSubscription/{}", topic.len()),
            topic: topic.into(),
            uri: uri.into(),
        }
    }

    #[test]
    fn a_topic_is_missing_until_it_delivers_to_this_uri() {
        let uri = "https://h.example/webhooks/shopify";
        let existing = vec![
            sub("ORDERS_PAID", uri),
            sub("ORDERS_CANCELLED", "https://old.example/hooks"),
        ];
        assert_eq!(
            missing(
                &["orders/paid", "orders/cancelled", "refunds/create"],
                uri,
                &existing
            ),
            vec!["orders/cancelled", "refunds/create"]
        );
        assert!(missing(&["orders/paid"], uri, &existing).is_empty());
    }

    #[test]
    fn a_write_scope_includes_its_read_scope() {
        let scopes = vec!["write_orders".to_owned(), "read_products".to_owned()];
        assert!(granted(&scopes, "read_orders"));
        assert!(granted(&scopes, "write_orders"));
        assert!(!granted(&scopes, "read_all_orders"));
        assert!(!granted(&scopes, "write_products"));
    }

    #[test]
    fn user_errors_name_their_field() {
        let e = UserError {
            field: Some(vec!["webhookSubscription".into(), "uri".into()]),
            message: "Address is invalid".into(),
        };
        assert_eq!(e.to_string(), "webhookSubscription.uri: Address is invalid");
    }
}
