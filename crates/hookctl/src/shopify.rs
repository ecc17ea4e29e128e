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

use std::fmt::Write;

use hookline_core::topics::TOPICS;

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

/// A REST topic's name in GraphQL's `WebhookSubscriptionTopic` enum.
pub fn graphql_topic(topic: &str) -> String {
    topic.replace(['/', '.'], "_").to_ascii_uppercase()
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
