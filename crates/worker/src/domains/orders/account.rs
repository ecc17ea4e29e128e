//! The merchant's sevDesk account as the orders domain books into it: the bookkeeping version,
//! the SevUser that signs documents (`contactPerson`), and the check accounts payments go to.
//!
//! Resolved once per process from the settings and the account itself, and checked:
//! - the bookkeeping system must be sevdesk-Update 2.0 (every account since 2024); on 1.0 the
//!   worker refuses to start, because its documents would be refused or mis-booked;
//! - `contactPerson`: `HOOKLINE_SEVDESK_SEV_USER_ID`, or — when unset — the account's only SevUser.
//!   sevDesk's published spec documents no SevUser endpoint; `GET /SevUser` lists the account's
//!   users, which identifies the token's user only when there is exactly one, so with several the
//!   setting is required (a guess would sign invoices in someone else's name);
//! - payments go to the account of the order's gateway (`HOOKLINE_SEVDESK_CHECK_ACCOUNTS`, e.g.
//!   `paypal=3,shopify_payments=2,gift_card=4`), else `HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID`, else the
//!   account's first `offline` (clearing) account. An `online` account (a bank feed, PayPal import)
//!   is never booked on: sevDesk accepts a booking there only with an existing bank transaction,
//!   which a webhook does not have. With none usable, the worker says which account to create.

use std::collections::BTreeMap;
use std::fmt;

use super::tax::TaxSettings;
use crate::error::HandlerError;
use crate::sevdesk::{CheckAccountInfo, SevDeskClient};

/// What the settings say about the account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSettings {
    /// `HOOKLINE_SEVDESK_SEV_USER_ID`.
    pub sev_user: Option<String>,
    /// `HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID`: the default check account.
    pub default_check_account: Option<String>,
    /// `HOOKLINE_SEVDESK_CHECK_ACCOUNTS`: gateway name → check account.
    pub gateway_accounts: BTreeMap<String, String>,
    /// `HOOKLINE_SEVDESK_SMALL_BUSINESS` and `HOOKLINE_SEVDESK_OSS`.
    pub tax: TaxSettings,
}

/// Parses `gateway=id,gateway=id`; the error names what is wrong.
pub fn parse_gateway_accounts(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (gateway, id) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not gateway=check-account-id"))?;
        let (gateway, id) = (gateway.trim(), id.trim());
        if gateway.is_empty() || id.is_empty() || id.parse::<u64>().is_err() {
            return Err(format!(
                "{pair:?}: expected a gateway name and a numeric check account id"
            ));
        }
        map.insert(gateway.to_lowercase(), id.to_owned());
    }
    Ok(map)
}

/// The resolved account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `contactPerson`.
    pub sev_user: String,
    /// Where payments of gateways without their own account go.
    pub default_check_account: String,
    /// Gateway → check account.
    pub gateway_accounts: BTreeMap<String, String>,
}

/// Why the account cannot be booked into; [`fmt::Display`] says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupProblem {
    /// Not sevdesk-Update 2.0.
    BookkeepingVersion(String),
    /// No SevUser can be named.
    SevUser(String),
    /// A check account is missing or unusable.
    CheckAccount(String),
}

impl fmt::Display for SetupProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupProblem::BookkeepingVersion(v) => write!(
                f,
                "the sevDesk account uses bookkeeping system {v}; hookline books on sevdesk-Update 2.0 only \
                 (sevDesk moved every account to it in 2024: ask sevDesk support to update the account)"
            ),
            SetupProblem::SevUser(why) => write!(f, "{why}"),
            SetupProblem::CheckAccount(why) => write!(f, "{why}"),
        }
    }
}

impl From<SetupProblem> for HandlerError {
    fn from(p: SetupProblem) -> Self {
        HandlerError::Misconfigured(p.to_string())
    }
}

fn usable(accounts: &[CheckAccountInfo], id: &str, setting: &str) -> Result<(), SetupProblem> {
    match accounts.iter().find(|a| a.id == id) {
        None => Err(SetupProblem::CheckAccount(format!(
            "{setting} names check account {id}, which the sevDesk account does not have"
        ))),
        Some(a) if a.kind == "online" => Err(SetupProblem::CheckAccount(format!(
            "{setting} names check account {id} ({}), an online account: sevDesk books on it only \
             with a matching bank transaction; name an offline (clearing) account instead",
            a.name
        ))),
        Some(_) => Ok(()),
    }
}

/// Decides the account from what sevDesk answered (pure: tested row by row).
pub fn decide(
    settings: &AccountSettings,
    version: &str,
    sev_users: &[String],
    accounts: &[CheckAccountInfo],
) -> Result<Account, SetupProblem> {
    if version != "2.0" {
        return Err(SetupProblem::BookkeepingVersion(version.to_owned()));
    }
    let sev_user = match &settings.sev_user {
        Some(id) if sev_users.contains(id) => id.clone(),
        Some(id) => {
            return Err(SetupProblem::SevUser(format!(
                "HOOKLINE_SEVDESK_SEV_USER_ID is {id}, which is not a SevUser of the account (it has {})",
                sev_users.join(", ")
            )));
        }
        None => match sev_users {
            [only] => only.clone(),
            [] => {
                return Err(SetupProblem::SevUser(
                    "the sevDesk account lists no SevUser; set HOOKLINE_SEVDESK_SEV_USER_ID".into(),
                ));
            }
            several => {
                return Err(SetupProblem::SevUser(format!(
                    "the sevDesk account has {} SevUsers ({}); set HOOKLINE_SEVDESK_SEV_USER_ID to the one who issues invoices",
                    several.len(),
                    several.join(", ")
                )));
            }
        },
    };
    for (gateway, id) in &settings.gateway_accounts {
        usable(
            accounts,
            id,
            &format!("HOOKLINE_SEVDESK_CHECK_ACCOUNTS ({gateway})"),
        )?;
    }
    let default_check_account = match &settings.default_check_account {
        Some(id) => {
            usable(accounts, id, "HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID")?;
            id.clone()
        }
        None => accounts
            .iter()
            .find(|a| a.kind == "offline")
            .map(|a| a.id.clone())
            .ok_or_else(|| {
                SetupProblem::CheckAccount(
                    "the sevDesk account has no offline (clearing) check account to book Shopify payments on: \
                     create one in sevDesk (Zahlungsverkehr → Konten → Verrechnungskonto, e.g. \"Shopify\") \
                     or set HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID"
                        .into(),
                )
            })?,
    };
    Ok(Account {
        sev_user,
        default_check_account,
        gateway_accounts: settings.gateway_accounts.clone(),
    })
}

/// Reads what [`decide`] needs from sevDesk.
pub async fn resolve(
    client: &SevDeskClient,
    settings: &AccountSettings,
    trace: Option<&str>,
) -> Result<Account, HandlerError> {
    let version = client.bookkeeping_version(trace).await?;
    let users = client.sev_users(trace).await?;
    let accounts = client.check_accounts(trace).await?;
    Ok(decide(settings, &version, &users, &accounts)?)
}

impl Account {
    /// The check account for an order paid through `gateways`. Several gateways with different
    /// accounts (a gift card and a card, say) cannot be split without the transactions' amounts,
    /// which the order webhook does not carry: a person books it.
    pub fn account_for(&self, gateways: &[String]) -> Result<&str, HandlerError> {
        let mut chosen: Vec<&str> = gateways
            .iter()
            .map(|g| {
                self.gateway_accounts
                    .get(&g.to_lowercase())
                    .map_or(self.default_check_account.as_str(), String::as_str)
            })
            .collect();
        chosen.sort_unstable();
        chosen.dedup();
        match chosen.as_slice() {
            [] => Ok(&self.default_check_account),
            [one] => Ok(one),
            several => Err(HandlerError::NeedsReview(format!(
                "paid through {} whose payments go to different check accounts ({}): the split is not in the webhook",
                gateways.join(" + "),
                several.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Vec<CheckAccountInfo> {
        vec![
            CheckAccountInfo {
                id: "1".into(),
                name: "Bank".into(),
                kind: "online".into(),
            },
            CheckAccountInfo {
                id: "2".into(),
                name: "Shopify".into(),
                kind: "offline".into(),
            },
            CheckAccountInfo {
                id: "3".into(),
                name: "Gutscheine".into(),
                kind: "offline".into(),
            },
        ]
    }

    fn users() -> Vec<String> {
        vec!["7".into()]
    }

    #[test]
    fn unset_settings_take_the_only_user_and_the_first_offline_account() {
        let account = decide(&AccountSettings::default(), "2.0", &users(), &accounts()).unwrap();
        assert_eq!(account.sev_user, "7");
        assert_eq!(account.default_check_account, "2");
    }

    #[test]
    fn update_1_0_is_refused() {
        let e = decide(&AccountSettings::default(), "1.0", &users(), &accounts()).unwrap_err();
        assert!(e.to_string().contains("sevdesk-Update 2.0"), "{e}");
    }

    #[test]
    fn several_users_need_the_setting() {
        let several = vec!["7".to_owned(), "8".to_owned()];
        let e = decide(&AccountSettings::default(), "2.0", &several, &accounts()).unwrap_err();
        assert!(
            e.to_string().contains("HOOKLINE_SEVDESK_SEV_USER_ID"),
            "{e}"
        );
        let settings = AccountSettings {
            sev_user: Some("8".into()),
            ..AccountSettings::default()
        };
        assert_eq!(
            decide(&settings, "2.0", &several, &accounts())
                .unwrap()
                .sev_user,
            "8"
        );
    }

    #[test]
    fn an_online_account_is_never_booked_on() {
        let settings = AccountSettings {
            default_check_account: Some("1".into()),
            ..AccountSettings::default()
        };
        let e = decide(&settings, "2.0", &users(), &accounts()).unwrap_err();
        assert!(e.to_string().contains("online account"), "{e}");
        let only_bank = &accounts()[..1];
        let e = decide(&AccountSettings::default(), "2.0", &users(), only_bank).unwrap_err();
        assert!(e.to_string().contains("Verrechnungskonto"), "{e}");
    }

    #[test]
    fn gateways_choose_their_account_and_mixed_ones_need_review() {
        let settings = AccountSettings {
            gateway_accounts: parse_gateway_accounts("gift_card=3, paypal=2").unwrap(),
            ..AccountSettings::default()
        };
        let account = decide(&settings, "2.0", &users(), &accounts()).unwrap();
        assert_eq!(account.account_for(&["gift_card".into()]).unwrap(), "3");
        assert_eq!(account.account_for(&["manual".into()]).unwrap(), "2");
        assert!(matches!(
            account.account_for(&["gift_card".into(), "paypal".into()]),
            Err(HandlerError::NeedsReview(_))
        ));
        assert!(parse_gateway_accounts("paypal").is_err());
        assert!(parse_gateway_accounts("paypal=x").is_err());
    }
}
