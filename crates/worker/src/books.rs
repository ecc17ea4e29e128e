//! Whose books a shop's documents go into: each shop's sevDesk account.
//!
//! Without a shops file, one account (`HOOKLINE_SEVDESK_TOKEN` and `HOOKLINE_SEVDESK_*`) books
//! every shop, as a single-shop deployment always did. With one (`HOOKLINE_SHOPS_FILE`), each
//! shop's `[shop.sevdesk]` names its own account; a shop without it is not invoiced, and its
//! orders deliveries are dead-lettered `shop_not_configured` rather than booked into another
//! shop's account (see `docs/shops.md`).
//!
//! Everything that talks to sevDesk for a shop — the orders handler, refunds, the notification
//! relay, `hookctl doctor`, and pollers that book payments — asks [`Books::for_shop`] for the
//! envelope's (or row's) shop. One [`SevDeskClient`] per API token, so one circuit breaker per
//! sevDesk account: an outage or a revoked token of one merchant's account holds that account's
//! calls only. Each shop resolves its account ([`Account`]) once, from its own settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::breaker::{BreakerConfig, CircuitBreaker, SystemClock};
use hookline_core::config::Secret;
use tokio::sync::OnceCell;

use crate::domains::orders::account::{self, Account, AccountSettings};
use crate::error::HandlerError;
use crate::sevdesk::SevDeskClient;

/// One shop's sevDesk account as the shops file gives it (fields not given there already filled
/// from the deployment's `HOOKLINE_SEVDESK_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopSevdesk {
    /// The account's API token.
    pub token: Secret,
    /// Its SevUser, check accounts and tax settings.
    pub account: AccountSettings,
}

/// A shop's sevDesk account: the client (its breaker shared by every shop with the same token),
/// what the settings say, and the account resolved on first use.
pub struct ShopBooks {
    /// sevDesk, behind the account's breaker.
    pub sevdesk: SevDeskClient,
    /// What the settings say about the account.
    pub settings: AccountSettings,
    account: OnceCell<Account>,
}

impl ShopBooks {
    /// An account booked through `sevdesk` as `settings` say.
    pub fn new(sevdesk: SevDeskClient, settings: AccountSettings) -> Self {
        Self {
            sevdesk,
            settings,
            account: OnceCell::new(),
        }
    }

    /// The account, resolved and checked on first use (see [`account`]).
    pub async fn account(&self, trace: Option<&str>) -> Result<&Account, HandlerError> {
        self.account
            .get_or_try_init(|| account::resolve(&self.sevdesk, &self.settings, trace))
            .await
    }
}

/// Why a shop has no books.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotInvoiced {
    /// Listed in the shops file without `[shop.sevdesk]`.
    #[error(
        "shop {0} has no sevDesk account in the shops file: its orders are not invoiced (add [shop.sevdesk] to invoice them, then replay)"
    )]
    NoAccount(String),
    /// Not in the shops file at all.
    #[error(
        "shop {0} is not in the shops file: nothing is booked for it (add it with [shop.sevdesk], then replay)"
    )]
    NotListed(String),
}

impl From<NotInvoiced> for HandlerError {
    fn from(e: NotInvoiced) -> Self {
        HandlerError::ShopNotConfigured(e.to_string())
    }
}

/// Every shop's books.
pub struct Books {
    /// Without a shops file: the one account of every shop.
    every_shop: Option<Arc<ShopBooks>>,
    /// With one: each listed shop's account, `None` for a shop that is not invoiced.
    shops: BTreeMap<String, Option<Arc<ShopBooks>>>,
}

impl Books {
    /// One account for every shop (the single-shop settings, and tests).
    pub fn single(books: ShopBooks) -> Self {
        Self {
            every_shop: Some(Arc::new(books)),
            shops: BTreeMap::new(),
        }
    }

    /// Each shop its own account, `None` for a shop that is not invoiced. Shops with the same
    /// token share one client, so one breaker per sevDesk account; each breaker is named after
    /// the account's first shop.
    pub fn per_shop(
        shops: &BTreeMap<String, Option<ShopSevdesk>>,
        url: &str,
        timeout: Duration,
        breaker: &BreakerConfig,
    ) -> Result<Self, reqwest::Error> {
        let mut clients: BTreeMap<&str, SevDeskClient> = BTreeMap::new();
        let mut books = BTreeMap::new();
        for (shop, entry) in shops {
            let Some(entry) = entry else {
                books.insert(shop.clone(), None);
                continue;
            };
            let client = match clients.get(entry.token.expose()) {
                Some(client) => client.clone(),
                None => {
                    let breaker = CircuitBreaker::new(
                        format!("sevdesk:{shop}"),
                        breaker.clone(),
                        Arc::new(SystemClock),
                    );
                    let client = SevDeskClient::new(url, entry.token.expose(), timeout, breaker)?;
                    clients.insert(entry.token.expose(), client.clone());
                    client
                }
            };
            books.insert(
                shop.clone(),
                Some(Arc::new(ShopBooks::new(client, entry.account.clone()))),
            );
        }
        Ok(Self {
            every_shop: None,
            shops: books,
        })
    }

    /// `shop`'s books, or why it has none.
    pub fn for_shop(&self, shop: &str) -> Result<&ShopBooks, NotInvoiced> {
        if let Some(books) = &self.every_shop {
            return Ok(books);
        }
        match self.shops.get(shop) {
            Some(Some(books)) => Ok(books),
            Some(None) => Err(NotInvoiced::NoAccount(shop.to_owned())),
            None => Err(NotInvoiced::NotListed(shop.to_owned())),
        }
    }

    /// Every shop with an account, by name (`None`: the one account of every shop), for the
    /// start-up check and `hookctl doctor`.
    pub fn accounts(&self) -> Vec<(Option<&str>, &ShopBooks)> {
        match &self.every_shop {
            Some(books) => vec![(None, books.as_ref())],
            None => self
                .shops
                .iter()
                .filter_map(|(shop, b)| b.as_deref().map(|b| (Some(shop.as_str()), b)))
                .collect(),
        }
    }

    /// The shops of the file without an account.
    pub fn not_invoiced(&self) -> impl Iterator<Item = &str> {
        self.shops
            .iter()
            .filter(|(_, b)| b.is_none())
            .map(|(s, _)| s.as_str())
    }

    /// One breaker per sevDesk account (for re-drive).
    pub fn breakers(&self) -> Vec<CircuitBreaker> {
        let mut seen: Vec<CircuitBreaker> = vec![];
        for (_, books) in self.accounts() {
            let breaker = books.sevdesk.breaker();
            if !seen.iter().any(|b| b.name() == breaker.name()) {
                seen.push(breaker.clone());
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &str) -> Option<ShopSevdesk> {
        Some(ShopSevdesk {
            token: Secret::new(token),
            account: AccountSettings::default(),
        })
    }

    #[test]
    fn each_shop_gets_its_account_and_one_breaker_per_token() {
        let shops = BTreeMap::from([
            ("a.myshopify.com".to_owned(), entry("ta")),
            ("b.myshopify.com".to_owned(), entry("tb")),
            ("c.myshopify.com".to_owned(), entry("ta")),
            ("d.myshopify.com".to_owned(), None),
        ]);
        let books = Books::per_shop(
            &shops,
            "http://127.0.0.1:1/api/v1",
            Duration::from_secs(1),
            &BreakerConfig::default(),
        )
        .unwrap();
        let breaker = |shop: &str| {
            books
                .for_shop(shop)
                .unwrap()
                .sevdesk
                .breaker()
                .name()
                .to_owned()
        };
        assert_eq!(breaker("a.myshopify.com"), "sevdesk:a.myshopify.com");
        assert_eq!(breaker("b.myshopify.com"), "sevdesk:b.myshopify.com");
        assert_eq!(
            breaker("c.myshopify.com"),
            "sevdesk:a.myshopify.com",
            "same token, same account, same breaker"
        );
        assert_eq!(books.breakers().len(), 2);
        assert_eq!(
            books.for_shop("d.myshopify.com").err(),
            Some(NotInvoiced::NoAccount("d.myshopify.com".into()))
        );
        assert!(matches!(
            books.for_shop("e.myshopify.com"),
            Err(NotInvoiced::NotListed(_))
        ));
        assert_eq!(
            books.not_invoiced().collect::<Vec<_>>(),
            ["d.myshopify.com"]
        );
        assert_eq!(books.accounts().len(), 3);
    }
}
