//! `hookctl shopify subscriptions`: what to subscribe in Shopify, in Shopify's own terms.
//!
//! Shopify offers two ways to subscribe an app to webhook topics, and an operator needs the
//! words of whichever the app uses:
//!
//! - **App-specific subscriptions** in the app's configuration file (`shopify.app.toml`, deployed
//!   with Shopify CLI; the way for Dev Dashboard apps): one `[webhooks]` table with the API
//!   version and `[[webhooks.subscriptions]]` entries of topics and a URI. The mandatory
//!   compliance topics (`customers/data_request`, `customers/redact`, `shop/redact`) are
//!   subscribed there too, as `compliance_topics`, and only there.
//! - **Shop-specific subscriptions** through the GraphQL Admin API
//!   (`webhookSubscriptionCreate(topic:, webhookSubscription: {uri, format: JSON})`), which is
//!   what `--apply` does. Compliance topics cannot be subscribed this way.
//!
//! The topics are those hookline handles ([`hookline_core::topics::TOPICS`]); their GraphQL
//! names are the REST names upper-cased with `/` and `.` as `_` (`orders/paid` → `ORDERS_PAID`).
//!
//! `--apply` ([`apply`]) lists the shop's subscriptions first and creates only the topics that
//! do not deliver to the URI yet, so a second run creates nothing. A create whose outcome is
//! unknown (it failed after retries, or Shopify says the address is already taken for the topic)
//! is settled by listing again before it is reported: a subscription that exists counts as made,
//! and nothing is created blind a second time.

use std::fmt::Write;
use std::sync::Arc;

use anyhow::Context;
use hookline_core::topics::TOPICS;
use hookline_worker::settings::Settings;
use hookline_worker::shopify::setup::{self, Created, Subscription, UserError};
use hookline_worker::shopify::{AdminClient, AdminError, AdminSettings, Tokens};

/// The mandatory compliance topics: subscribed in the app's configuration, never per shop.
pub const COMPLIANCE_TOPICS: [&str; 3] =
    ["customers/data_request", "customers/redact", "shop/redact"];

/// What to subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Where Shopify delivers: the ingestor's public `…/webhooks/shopify` URL.
    pub uri: String,
    /// The webhook API version, which decides the payloads' shape.
    pub api_version: String,
    /// Topics subscribed per app or per shop, REST names.
    pub topics: Vec<&'static str>,
    /// The compliance topics (app configuration only).
    pub compliance: Vec<&'static str>,
}

impl Plan {
    /// The plan for delivering to `uri` at `api_version`.
    pub fn new(uri: &str, api_version: &str) -> Self {
        let (compliance, topics) = TOPICS
            .iter()
            .map(|t| t.topic)
            .partition(|t| COMPLIANCE_TOPICS.contains(t));
        Self {
            uri: uri.to_owned(),
            api_version: api_version.to_owned(),
            topics,
            compliance,
        }
    }

    /// A table for a terminal: topic, GraphQL name, URI and version.
    pub fn text(&self) -> String {
        let mut out = format!(
            "Deliver to {} with webhook API version {}.\n\n",
            self.uri, self.api_version
        );
        let _ = writeln!(out, "{:<30} GRAPHQL TOPIC", "TOPIC");
        for topic in &self.topics {
            let _ = writeln!(out, "{topic:<30} {}", graphql_topic(topic));
        }
        let _ = writeln!(
            out,
            "\nCompliance topics (in the app's configuration or Dev Dashboard only): {}",
            self.compliance.join(", ")
        );
        out
    }

    /// The `[webhooks]` part of a `shopify.app.toml`.
    pub fn app_toml(&self) -> String {
        let list = |topics: &[&str]| {
            topics
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "[webhooks]\napi_version = \"{version}\"\n\n  [[webhooks.subscriptions]]\n  topics = [ {topics} ]\n  uri = \"{uri}\"\n\n  [[webhooks.subscriptions]]\n  compliance_topics = [ {compliance} ]\n  uri = \"{uri}\"\n",
            version = self.api_version,
            topics = list(&self.topics),
            compliance = list(&self.compliance),
            uri = self.uri,
        )
    }
}

pub use hookline_worker::shopify::setup::graphql_topic;

/// The worker's Admin API client for the shops of its settings (static tokens of
/// `HOOKLINE_RECONCILE_SHOPS`, or `HOOKLINE_SHOPIFY_SHOP`'s app credentials), as the worker
/// builds it.
pub fn admin_client(settings: &Settings) -> anyhow::Result<AdminClient> {
    let pool = hookline_worker::startup::pool(settings.database_url.expose(), 1)?;
    let tokens = Tokens::from_credentials(
        &settings.shopify_credentials,
        &settings.reconcile.admin_url,
        Some(pool),
    );
    AdminClient::new(
        Arc::new(tokens),
        AdminSettings::new(
            settings.reconcile.admin_url.clone(),
            settings.reconcile.api_version.clone(),
        ),
    )
    .context("cannot build the Shopify Admin API client")
}

/// What `--apply` did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already delivering to the URI.
    Present,
    /// Created now.
    Created(Subscription),
    /// Shopify refused it.
    Refused(Vec<UserError>),
    /// The create failed, and listing again does not show it.
    Failed(String),
}

/// The shop-specific subscriptions of `plan` on `shop`, created where missing. Compliance
/// topics are never subscribed this way.
pub async fn apply(
    admin: &AdminClient,
    shop: &str,
    plan: &Plan,
) -> Result<Vec<(&'static str, Outcome)>, AdminError> {
    let topics: Vec<&'static str> = plan
        .topics
        .iter()
        .copied()
        .filter(|t| !COMPLIANCE_TOPICS.contains(t))
        .collect();
    let existing = setup::subscriptions(admin, shop).await?;
    let missing = setup::missing(&topics, &plan.uri, &existing);
    let mut outcomes = vec![];
    let mut unsettled = false;
    for topic in topics {
        if !missing.contains(&topic) {
            outcomes.push((topic, Outcome::Present));
            continue;
        }
        let outcome = match setup::subscribe(admin, shop, topic, &plan.uri).await {
            Ok(Created::Subscribed(s)) => Outcome::Created(s),
            Ok(Created::Refused(errors)) => Outcome::Refused(errors),
            Err(e) => Outcome::Failed(hookline_worker::failure::error_chain(&e)),
        };
        unsettled |= matches!(outcome, Outcome::Refused(_) | Outcome::Failed(_));
        outcomes.push((topic, outcome));
    }
    if unsettled {
        // A create that timed out may have been made, and its retry then refused as taken.
        let now = setup::subscriptions(admin, shop).await?;
        let name = |t: &str| graphql_topic(t);
        for (topic, outcome) in &mut outcomes {
            if matches!(outcome, Outcome::Refused(_) | Outcome::Failed(_))
                && let Some(s) = now
                    .iter()
                    .find(|s| s.topic == name(topic) && s.uri == plan.uri)
            {
                *outcome = Outcome::Created(s.clone());
            }
        }
    }
    Ok(outcomes)
}

/// Checks the delivery URI: Shopify delivers only to `https://` (a local `http://` sandbox is
/// allowed for development).
pub fn check_uri(uri: &str) -> Result<(), String> {
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    if uri.starts_with("https://") || local.iter().any(|l| uri.starts_with(l)) {
        Ok(())
    } else {
        Err(format!(
            "{uri} is not an https:// URL; Shopify delivers webhooks only over HTTPS (e.g. https://hooks.example.com/webhooks/shopify)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_names_follow_the_rest_names() {
        assert_eq!(graphql_topic("orders/paid"), "ORDERS_PAID");
        assert_eq!(
            graphql_topic("inventory_levels/update"),
            "INVENTORY_LEVELS_UPDATE"
        );
        assert_eq!(graphql_topic("customer.tags_added"), "CUSTOMER_TAGS_ADDED");
    }

    #[test]
    fn compliance_topics_are_kept_apart() {
        let plan = Plan::new("https://h.example/webhooks/shopify", "2026-10");
        assert!(plan.topics.contains(&"orders/paid"));
        assert!(plan.topics.contains(&"refunds/create"));
        for topic in COMPLIANCE_TOPICS {
            assert!(!plan.topics.contains(&topic));
            assert!(plan.compliance.contains(&topic));
        }
        let toml = plan.app_toml();
        assert!(toml.contains("api_version = \"2026-10\""));
        assert!(toml.contains("compliance_topics = [ \"customers/data_request\""));
        assert_eq!(
            toml.matches("uri = \"https://h.example/webhooks/shopify\"")
                .count(),
            2
        );
        assert!(plan.text().contains("ORDERS_PAID"));
    }

    #[test]
    fn only_https_is_a_delivery_url() {
        assert!(check_uri("https://h.example/webhooks/shopify").is_ok());
        assert!(check_uri("http://127.0.0.1:8080/webhooks/shopify").is_ok());
        assert!(check_uri("http://h.example/webhooks/shopify").is_err());
    }
}
