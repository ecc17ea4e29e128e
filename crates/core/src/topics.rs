//! The topic registry: which Shopify topics hookline knows, which domain handles each, and how
//! each topic's idempotency key is formed.
//!
//! Routing is by RabbitMQ topic exchange. A Shopify topic `orders/paid` becomes the routing key
//! `orders.paid`; each domain queue binds the patterns of its resources (`orders.#`). A topic no
//! binding matches is not an error: the exchange's alternate exchange catches it in
//! `hookline.unrouted`, so a subscription added in Shopify before hookline supports it loses nothing.

use std::fmt;

/// A bulkhead: one queue, one dead-letter queue and (in the worker) its own consumer, pools and
/// concurrency limit, so a slow downstream of one domain never holds up another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// Stock levels in PostgreSQL, with an outbox to the ERP.
    Inventory,
    /// Orders, payments and refunds towards sevDesk.
    Orders,
    /// Shopify's mandatory privacy webhooks: erasing and exporting what hookline holds.
    Compliance,
}

impl Domain {
    /// Every domain, in a stable order (topology declaration, metrics, CLI listings).
    pub const ALL: [Domain; 3] = [Domain::Inventory, Domain::Orders, Domain::Compliance];

    /// Short name used in queue names, routing keys of dead letters, metrics labels and settings.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Inventory => "inventory",
            Domain::Orders => "orders",
            Domain::Compliance => "compliance",
        }
    }

    /// The routing-key patterns bound from `hookline.events` to this domain's queue.
    pub fn bindings(self) -> &'static [&'static str] {
        match self {
            Domain::Inventory => &["inventory_levels.#", "inventory_items.#", "products.#"],
            Domain::Orders => &["orders.#", "refunds.#"],
            // Exact keys: other `customers/*` and `shop/*` topics are not privacy requests.
            Domain::Compliance => &[
                "customers.data_request",
                "customers.redact",
                "shop.redact",
                "app.uninstalled",
            ],
        }
    }

    /// Parses a domain name as given on a command line or in settings.
    pub fn parse(name: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a topic's resource id is read from its payload, and whether the resource's `updated_at`
/// is part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// `payload.id`: the event happens once per resource (an order is paid once).
    Id,
    /// `payload.id` + `payload.updated_at`: the event legitimately repeats for one resource
    /// (every edit of a product), so each change is its own key while Shopify's retries of one
    /// change share it.
    IdAndUpdatedAt,
    /// `payload.inventory_item_id:payload.location_id`: inventory levels have no id of their own.
    InventoryLevel,
    /// Inventory level plus `updated_at`: stock at one location changes many times.
    InventoryLevelAndUpdatedAt,
    /// `X-Shopify-Webhook-Id`: the payload has no id of its own (the privacy requests), and
    /// Shopify's retries of one delivery share the webhook id.
    WebhookId,
}

impl KeyRule {
    /// Whether the event legitimately repeats for one resource. For these topics a webhook's key
    /// is its event id when Shopify sends one (see [`crate::idempotency::derive_for_webhook`]):
    /// `updated_at` has one-second precision, and two real changes within one second must not
    /// collapse into one.
    pub fn repeats(self) -> bool {
        matches!(
            self,
            KeyRule::IdAndUpdatedAt | KeyRule::InventoryLevelAndUpdatedAt
        )
    }
}

/// One known topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Shopify's topic name, as in `X-Shopify-Topic`.
    pub topic: &'static str,
    /// The domain whose queue receives it (must agree with [`Domain::bindings`]; a test checks).
    pub domain: Domain,
    /// How its idempotency key is formed.
    pub key: KeyRule,
}

/// Every topic hookline handles, with its key rule.
///
/// Why each rule:
/// - `orders/create|paid|cancelled|fulfilled|partially_fulfilled|delete`, `refunds/create`,
///   `products/create|delete`, `inventory_items/create|delete`: happen once per resource, `id`.
/// - `orders/updated`, `products/update`, `inventory_items/update`: repeat per resource, `id` +
///   `updated_at`.
/// - `inventory_levels/update` and `inventory_levels/connect`: repeat per item and location,
///   item + location + `updated_at`.
/// - For all the repeating ones above, a webhook that carries Shopify's event id is keyed by it
///   instead ([`KeyRule::repeats`]); reconciled copies and replays without one keep the rule.
/// - `inventory_levels/disconnect`: Shopify sends only item and location, so the key is those two;
///   a disconnect → connect → disconnect cycle within the dedupe window would be taken as a
///   duplicate, which is harmless because disconnecting twice has the same effect as once.
/// - `customers/data_request`, `customers/redact`, `shop/redact`: no resource id in the payload;
///   the webhook id (two requests are two actions, and doing one twice changes nothing).
/// - `app/uninstalled`: the payload is the shop itself, the same for every uninstall; the
///   webhook id keeps an uninstall after a reinstall from being taken as a duplicate.
pub const TOPICS: &[TopicSpec] = &[
    spec("orders/create", Domain::Orders, KeyRule::Id),
    spec("orders/updated", Domain::Orders, KeyRule::IdAndUpdatedAt),
    spec("orders/paid", Domain::Orders, KeyRule::Id),
    spec("orders/cancelled", Domain::Orders, KeyRule::Id),
    spec("orders/fulfilled", Domain::Orders, KeyRule::Id),
    spec("orders/partially_fulfilled", Domain::Orders, KeyRule::Id),
    spec("orders/delete", Domain::Orders, KeyRule::Id),
    spec("refunds/create", Domain::Orders, KeyRule::Id),
    spec("products/create", Domain::Inventory, KeyRule::Id),
    spec(
        "products/update",
        Domain::Inventory,
        KeyRule::IdAndUpdatedAt,
    ),
    spec("products/delete", Domain::Inventory, KeyRule::Id),
    spec("inventory_items/create", Domain::Inventory, KeyRule::Id),
    spec(
        "inventory_items/update",
        Domain::Inventory,
        KeyRule::IdAndUpdatedAt,
    ),
    spec("inventory_items/delete", Domain::Inventory, KeyRule::Id),
    spec(
        "inventory_levels/connect",
        Domain::Inventory,
        KeyRule::InventoryLevelAndUpdatedAt,
    ),
    spec(
        "inventory_levels/update",
        Domain::Inventory,
        KeyRule::InventoryLevelAndUpdatedAt,
    ),
    spec(
        "inventory_levels/disconnect",
        Domain::Inventory,
        KeyRule::InventoryLevel,
    ),
    spec(
        "customers/data_request",
        Domain::Compliance,
        KeyRule::WebhookId,
    ),
    spec("customers/redact", Domain::Compliance, KeyRule::WebhookId),
    spec("shop/redact", Domain::Compliance, KeyRule::WebhookId),
    spec("app/uninstalled", Domain::Compliance, KeyRule::WebhookId),
];

const fn spec(topic: &'static str, domain: Domain, key: KeyRule) -> TopicSpec {
    TopicSpec { topic, domain, key }
}

/// Looks up a known topic.
pub fn lookup(topic: &str) -> Option<&'static TopicSpec> {
    TOPICS.iter().find(|t| t.topic == topic)
}

/// Longest topic we accept; Shopify's longest is about 40 characters.
pub const MAX_TOPIC_LEN: usize = 100;

/// First word of the routing key of every topic not in [`TOPICS`]. No binding of
/// `hookline.events` starts with it (a test checks), so such a topic always ends in
/// `hookline.unrouted` through the alternate exchange, whatever dots it holds.
pub const UNROUTED_PREFIX: &str = "unrouted";

/// Whether a topic header is accepted at all: 1 to [`MAX_TOPIC_LEN`] visible ASCII characters.
///
/// Anything printable passes, in any form Shopify uses or may use (`orders/paid`, the Events
/// deliveries' dotted `customer.tags_added`, upper case): the body is signed, and a refused
/// webhook is retried by Shopify and finally unsubscribed. An unknown topic cannot change any
/// routing, since only topics of [`TOPICS`] are routed by their name ([`routing_key`]), and it
/// never becomes a metrics label (those use `unknown`).
pub fn is_acceptable(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && topic.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `topic` has the classic shape of a Shopify topic (`resource/event`, lowercase
/// letters, digits and `_`). Not a condition of acceptance (see [`is_acceptable`]): other forms
/// exist, such as the dotted topics of Events deliveries.
pub fn is_well_formed(topic: &str) -> bool {
    let mut parts = topic.split('/');
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    topic.len() <= MAX_TOPIC_LEN
        && matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if ok_part(a) && ok_part(b))
}

/// The AMQP routing key of a topic: `orders/paid` → `orders.paid` for a topic of [`TOPICS`];
/// `unrouted.<topic>` for any other, so that its own dots (word separators on a topic exchange)
/// can never make it match a domain's binding: `shop.redact` sent as a topic name is not
/// `shop/redact`, and `orders/edited` (not handled) is kept in `hookline.unrouted` rather than
/// dead-lettered by the orders domain.
pub fn routing_key(topic: &str) -> String {
    if lookup(topic).is_some() {
        topic.replace('/', ".")
    } else {
        format!("{UNROUTED_PREFIX}.{topic}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mirrors RabbitMQ's topic matching for the patterns we use (`word.#`).
    fn binding_matches(pattern: &str, key: &str) -> bool {
        match pattern.strip_suffix(".#") {
            Some(prefix) => key == prefix || key.starts_with(&format!("{prefix}.")),
            None => pattern == key,
        }
    }

    #[test]
    fn every_known_topic_is_bound_to_its_domain_and_no_other() {
        for t in TOPICS {
            let key = routing_key(t.topic);
            for d in Domain::ALL {
                let bound = d.bindings().iter().any(|p| binding_matches(p, &key));
                assert_eq!(bound, d == t.domain, "{} vs {}", t.topic, d);
            }
        }
    }

    #[test]
    fn routing_keys_replace_slashes() {
        assert_eq!(routing_key("orders/paid"), "orders.paid");
        assert_eq!(
            routing_key("inventory_levels/update"),
            "inventory_levels.update"
        );
    }

    #[test]
    fn unknown_topics_match_no_binding_whatever_their_dots() {
        for topic in [
            "customer.tags_added",
            "shop.redact",
            "orders.paid",
            "orders/edited",
            "customers/create",
            "ORDERS_PAID",
            "orders.#",
            "#",
            "*.redact",
        ] {
            let key = routing_key(topic);
            assert!(key.starts_with("unrouted."), "{topic} → {key}");
            for d in Domain::ALL {
                assert!(
                    !d.bindings().iter().any(|p| binding_matches(p, &key)),
                    "{topic} would reach {d}"
                );
            }
        }
        for d in Domain::ALL {
            for pattern in d.bindings() {
                let first = pattern.split('.').next().unwrap_or_default();
                assert!(
                    first != UNROUTED_PREFIX && first != "#" && first != "*",
                    "{pattern} could catch unrouted topics"
                );
            }
        }
    }

    #[test]
    fn any_printable_topic_is_acceptable() {
        for ok in [
            "orders/paid",
            "customer.tags_added",
            "ORDERS_PAID",
            "orders.#",
        ] {
            assert!(is_acceptable(ok), "{ok}");
        }
        for bad in ["", "orders paid", "orders/\u{e9}", "a\tb"] {
            assert!(!is_acceptable(bad), "{bad:?}");
        }
        assert!(!is_acceptable(&"a".repeat(MAX_TOPIC_LEN + 1)));
    }

    #[test]
    fn topic_shape_is_checked() {
        assert!(is_well_formed("orders/paid"));
        assert!(is_well_formed(
            "app_subscriptions/approaching_capped_amount"
        ));
        for bad in [
            "",
            "orders",
            "orders/",
            "/paid",
            "orders/paid/x",
            "Orders/paid",
            "orders.paid",
            "orders/#",
            "a:b/c",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
        assert!(!is_well_formed(&format!("a/{}", "b".repeat(MAX_TOPIC_LEN))));
    }

    #[test]
    fn domains_parse_by_name() {
        for d in Domain::ALL {
            assert_eq!(Domain::parse(d.name()), Some(d));
        }
        assert_eq!(Domain::parse("billing"), None);
    }
}
