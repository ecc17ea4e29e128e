//! `doctor`: reads the configured sevDesk account and says, line by line, what is right and what
//! is missing, with the fix for each problem.
//!
//! It asks what the worker asks before it books ([`crate::domains::orders::account`]), but does
//! not stop at the first problem: an operator setting up a shop sees everything at once. A
//! problem is *blocking* when the worker would refuse to start or could not book an order; the
//! command's exit status is non-zero when any check blocks.
//!
//! The Shopify side ([`shopify`]) asks each shop with credentials what the worker relies on:
//! that the token works (`shop`), that the granted scopes include what hookline needs
//! (`currentAppInstallation.accessScopes`, see [`crate::shopify::setup::SCOPES`]), that the API
//! version asked for is one Shopify still supports (`publicApiVersions`; by the quarterly rule
//! when that cannot be read), and, given the delivery URL, that every planned topic is
//! subscribed to it.

use std::fmt;

use crate::domains::orders::account::AccountSettings;
use crate::error::HandlerError;
use crate::failure::error_chain;
use crate::sevdesk::{CheckAccountInfo, SevDeskClient};
use crate::shopify::setup::{self, ALL_ORDERS_AFTER_DAYS, SCOPES};
use crate::shopify::{AdminClient, AdminError, Credentials};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, and what was found.
    pub what: String,
    /// `None` when right; else how to fix it.
    pub fix: Option<String>,
    /// A problem that keeps orders from being booked.
    pub blocking: bool,
}

impl Check {
    fn ok(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            fix: None,
            blocking: false,
        }
    }

    fn problem(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            fix: Some(fix.into()),
            blocking: true,
        }
    }

    fn warning(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            blocking: false,
            ..Self::problem(what, fix)
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match (&self.fix, self.blocking) {
            (None, _) => "ok  ",
            (Some(_), false) => "warn",
            (Some(_), true) => "FAIL",
        };
        write!(f, "{mark} {}", self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n     fix: {fix}")?;
        }
        Ok(())
    }
}

/// Whether any check blocks booking.
pub fn blocking(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.blocking)
}

fn unreachable(what: &str, e: &HandlerError) -> Check {
    match e {
        HandlerError::Downstream { status: 401, .. } => Check::problem(
            format!("{what}: sevDesk refused the API token (401)"),
            "set HOOKLINE_SEVDESK_TOKEN to the account's API token (sevDesk: Einstellungen → Benutzer → API-Token)",
        ),
        other => Check::problem(
            format!("{what}: {}", error_chain(other)),
            "check HOOKLINE_SEVDESK_URL (https://my.sevdesk.de/api/v1) and that this host reaches it",
        ),
    }
}

fn account_check(accounts: &[CheckAccountInfo], setting: &str, id: &str) -> Check {
    match accounts.iter().find(|a| a.id == id) {
        None => Check::problem(
            format!("{setting}: check account {id} does not exist"),
            format!("name one of: {}", describe(accounts)),
        ),
        Some(a) if a.kind == "online" => Check::problem(
            format!(
                "{setting}: check account {id} ({}) is an online account",
                a.name
            ),
            "sevDesk books on online accounts only with a matching bank transaction; name an offline (clearing) account",
        ),
        Some(a) => Check::ok(format!(
            "{setting}: check account {id} ({}, {})",
            a.name, a.kind
        )),
    }
}

fn describe(accounts: &[CheckAccountInfo]) -> String {
    accounts
        .iter()
        .map(|a| format!("{} {} ({})", a.id, a.name, a.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every check, in order. Stops early only when sevDesk cannot be asked at all.
pub async fn sevdesk(client: &SevDeskClient, settings: &AccountSettings) -> Vec<Check> {
    let mut checks = vec![];
    match client.bookkeeping_version(None).await {
        Err(e) => {
            checks.push(unreachable("token and URL", &e));
            return checks;
        }
        Ok(version) => {
            checks.push(Check::ok("token accepted by sevDesk"));
            if version == "2.0" {
                checks.push(Check::ok("bookkeeping system: sevdesk-Update 2.0"));
            } else {
                checks.push(Check::problem(
                    format!("bookkeeping system: {version}"),
                    "hookline books on sevdesk-Update 2.0 only; ask sevDesk support to update the account",
                ));
            }
        }
    }
    match client.sev_users(None).await {
        Err(e) => checks.push(unreachable("SevUser lookup", &e)),
        Ok(users) => checks.push(match (&settings.sev_user, users.as_slice()) {
            (Some(id), _) if users.contains(id) => Check::ok(format!(
                "contactPerson: SevUser {id} (HOOKLINE_SEVDESK_SEV_USER_ID)"
            )),
            (Some(id), _) => Check::problem(
                format!("HOOKLINE_SEVDESK_SEV_USER_ID={id} is not a SevUser of the account"),
                format!("set it to one of: {}", users.join(", ")),
            ),
            (None, [only]) => Check::ok(format!(
                "contactPerson: SevUser {only} (the account's only user; HOOKLINE_SEVDESK_SEV_USER_ID={only} pins it)"
            )),
            (None, []) => Check::problem(
                "the account lists no SevUser",
                "set HOOKLINE_SEVDESK_SEV_USER_ID to the id of the user who issues invoices",
            ),
            (None, several) => Check::problem(
                format!("the account has {} SevUsers ({})", several.len(), several.join(", ")),
                "set HOOKLINE_SEVDESK_SEV_USER_ID to the one who issues invoices",
            ),
        }),
    }
    match client.check_accounts(None).await {
        Err(e) => checks.push(unreachable("check accounts", &e)),
        Ok(accounts) => {
            for (gateway, id) in &settings.gateway_accounts {
                checks.push(account_check(
                    &accounts,
                    &format!("HOOKLINE_SEVDESK_CHECK_ACCOUNTS ({gateway})"),
                    id,
                ));
            }
            match &settings.default_check_account {
                Some(id) => checks.push(account_check(
                    &accounts,
                    "HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID",
                    id,
                )),
                None => checks.push(match accounts.iter().find(|a| a.kind == "offline") {
                    Some(a) => Check::ok(format!(
                        "default check account: {} ({}), the first offline account",
                        a.id, a.name
                    )),
                    None => Check::problem(
                        format!("no offline (clearing) check account; the account has: {}", describe(&accounts)),
                        "create one in sevDesk (Zahlungsverkehr → Konten → Verrechnungskonto, e.g. \"Shopify\") or set HOOKLINE_SEVDESK_CHECK_ACCOUNT_ID",
                    ),
                }),
            }
            if !settings.gateway_accounts.contains_key("gift_card") {
                checks.push(Check::warning(
                    "gift-card payments go to the default check account",
                    "name a gift-card account with HOOKLINE_SEVDESK_CHECK_ACCOUNTS=gift_card=<id>",
                ));
            }
        }
    }
    match client.country_id("DE", None).await {
        Ok(id) => checks.push(Check::ok(format!("StaticCountry: Germany is {id}"))),
        Err(e) => checks.push(unreachable("StaticCountry lookup", &e)),
    }
    let tax = settings.tax;
    checks.push(Check::ok(format!(
        "tax settings: small business (§ 19 UStG) {}, One Stop Shop {}",
        if tax.small_business { "on" } else { "off" },
        if tax.oss { "on" } else { "off" },
    )));
    checks
}

/// What the Shopify checks compare with.
#[derive(Debug, Clone, Default)]
pub struct ShopifyExpectations {
    /// The delivery URL and the REST topics to be subscribed to it (`--url`); `None`: not
    /// checked.
    pub subscriptions: Option<(String, Vec<String>)>,
    /// How far back hookline reads orders (the reconciliation lookback, or a planned backfill):
    /// beyond 60 days `read_all_orders` is needed.
    pub reach_days: i64,
}

fn credentials_fix(credentials: &Credentials) -> &'static str {
    match credentials {
        Credentials::Static(_) => {
            "set the shop's Admin API token (shpat_…) in HOOKLINE_RECONCILE_SHOPS as shop=token (the custom app's API credentials in the shop's admin)"
        }
        Credentials::ClientCredentials { .. } => {
            "check HOOKLINE_SHOPIFY_CLIENT_ID and HOOKLINE_SHOPIFY_CLIENT_SECRET (Dev Dashboard → app → Settings) and that the app is installed on the shop"
        }
        Credentials::Offline { .. } => {
            "the offline token chain is dead: reinstall the app on the shop and set HOOKLINE_SHOPIFY_REFRESH_TOKEN to the new refresh token (docs/shopify-tokens.md)"
        }
    }
}

fn shopify_unreachable(shop: &str, what: &str, e: &AdminError, credentials: &Credentials) -> Check {
    match e {
        AdminError::Unauthorized { .. } | AdminError::Token(_) => Check::problem(
            format!(
                "{shop}: {what}: {} ({} credentials)",
                error_chain(e),
                credentials.kind()
            ),
            credentials_fix(credentials),
        ),
        AdminError::GraphQl(errors) if errors.iter().any(|e| e.code() == Some("ACCESS_DENIED")) => {
            Check::problem(
                format!("{shop}: {what}: {}", error_chain(e)),
                "grant the app the scope the query needs (see the scopes line) and approve it on the shop",
            )
        }
        other => Check::problem(
            format!("{shop}: {what}: {}", error_chain(other)),
            "check HOOKLINE_SHOPIFY_ADMIN_URL (https://{shop}) and that this host reaches Shopify",
        ),
    }
}

/// Whether a quarterly version (`YYYY-MM`) is within the 12 months Shopify supports each,
/// counted from its release, on `today`; `None` for anything that is not a quarterly version.
pub fn supported_by_quarterly_rule(version: &str, today: chrono::NaiveDate) -> Option<bool> {
    let (year, month) = version.split_once('-')?;
    let (year, month): (i32, u32) = (year.parse().ok()?, month.parse().ok()?);
    if !matches!(month, 1 | 4 | 7 | 10) {
        return None;
    }
    let released = chrono::NaiveDate::from_ymd_opt(year, month, 1)?;
    let ends = chrono::NaiveDate::from_ymd_opt(year + 1, month, 1)?;
    Some(released <= today && today < ends)
}

/// The Shopify checks of one shop, in order. Stops early only when the token does not work.
pub async fn shopify(
    admin: &AdminClient,
    shop: &str,
    credentials: &Credentials,
    expect: &ShopifyExpectations,
) -> Vec<Check> {
    let mut checks = vec![];
    match setup::shop(admin, shop).await {
        Err(e) => {
            checks.push(shopify_unreachable(shop, "token", &e, credentials));
            return checks;
        }
        Ok(info) if info.myshopify_domain.eq_ignore_ascii_case(shop) => {
            checks.push(Check::ok(format!(
                "{shop}: {} token accepted (shop \"{}\")",
                credentials.kind(),
                info.name
            )))
        }
        Ok(info) => checks.push(Check::problem(
            format!(
                "{shop}: the token belongs to {} (\"{}\")",
                info.myshopify_domain, info.name
            ),
            "give each shop its own credentials (the shop's domain is name.myshopify.com)",
        )),
    }
    match setup::access_scopes(admin, shop).await {
        Err(e) => checks.push(shopify_unreachable(shop, "access scopes", &e, credentials)),
        Ok(scopes) => {
            for (scope, why) in SCOPES {
                let needed =
                    scope != "read_all_orders" || expect.reach_days > ALL_ORDERS_AFTER_DAYS;
                let fix = format!(
                    "add {scope} to the app's scopes (shopify.app.toml [access_scopes] scopes, deployed; or the custom app's Admin API scopes) and approve it on the shop{}",
                    if scope == "read_all_orders" {
                        "; a public app must first request access to all orders in the Partner Dashboard"
                    } else {
                        ""
                    }
                );
                checks.push(if setup::granted(&scopes, scope) {
                    Check::ok(format!("{shop}: scope {scope} granted"))
                } else if needed {
                    Check::problem(format!("{shop}: scope {scope} missing, needed {why}"), fix)
                } else {
                    Check::warning(format!("{shop}: scope {scope} missing, needed {why}"), fix)
                });
            }
        }
    }
    let version = admin.api_version();
    match setup::api_versions(admin, shop).await {
        Ok(versions) => {
            let newest = versions
                .iter()
                .filter(|v| v.supported)
                .map(|v| v.handle.as_str())
                .max();
            let fix = match newest {
                Some(n) => format!(
                    "set HOOKLINE_SHOPIFY_API_VERSION to a supported version, e.g. {n} (docs/shopify-admin.md, \"API version: how to move it\")"
                ),
                None => "set HOOKLINE_SHOPIFY_API_VERSION to a supported quarterly version".into(),
            };
            checks.push(match versions.iter().find(|v| v.handle == version) {
                Some(v) if v.supported => {
                    Check::ok(format!("{shop}: API version {version} supported by Shopify"))
                }
                Some(_) => Check::problem(
                    format!(
                        "{shop}: API version {version} is not supported (a release candidate, unstable, or past its end of life)"
                    ),
                    fix,
                ),
                None => Check::problem(
                    format!(
                        "{shop}: API version {version} is not served; Shopify answers it as the oldest supported version"
                    ),
                    fix,
                ),
            });
        }
        Err(e) => {
            let today = chrono::Utc::now().date_naive();
            checks.push(match supported_by_quarterly_rule(version, today) {
                Some(true) => Check::warning(
                    format!(
                        "{shop}: publicApiVersions unreadable ({}); API version {version} is within its 12 months by the quarterly rule",
                        error_chain(&e)
                    ),
                    "nothing to do now; move the version before its 12 months end",
                ),
                _ => Check::problem(
                    format!(
                        "{shop}: API version {version} is outside its 12 months by the quarterly rule (publicApiVersions unreadable: {})",
                        error_chain(&e)
                    ),
                    "set HOOKLINE_SHOPIFY_API_VERSION to a quarterly version released within the last 12 months",
                ),
            });
        }
    }
    if let Some((uri, topics)) = &expect.subscriptions {
        match setup::subscriptions(admin, shop).await {
            Err(e) => checks.push(shopify_unreachable(
                shop,
                "webhook subscriptions",
                &e,
                credentials,
            )),
            Ok(existing) => {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                let missing = setup::missing(&topics, uri, &existing);
                checks.push(if missing.is_empty() {
                    Check::ok(format!(
                        "{shop}: all {} planned topics subscribed to {uri}",
                        topics.len()
                    ))
                } else {
                    Check::problem(
                        format!(
                            "{shop}: {} of {} planned topics not subscribed to {uri}: {}",
                            missing.len(),
                            topics.len(),
                            missing.join(", ")
                        ),
                        format!(
                            "hookctl shopify subscriptions --url {uri} --apply --shop {shop} (an app that subscribes in shopify.app.toml instead: its subscriptions are not listed here; compare with --app-toml)"
                        ),
                    )
                });
                let mut elsewhere: Vec<&setup::Subscription> = existing
                    .iter()
                    .filter(|s| {
                        s.uri != *uri && topics.iter().any(|t| setup::graphql_topic(t) == s.topic)
                    })
                    .collect();
                elsewhere.sort_by(|a, b| a.topic.cmp(&b.topic));
                for s in elsewhere {
                    checks.push(Check::warning(
                        format!("{shop}: {} is also delivered to {}", s.topic, s.uri),
                        "a previous connector or an old URL: remove the subscription if nothing handles it any more",
                    ));
                }
            }
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarterly_rule_gives_each_version_twelve_months() {
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            supported_by_quarterly_rule("2026-01", day("2026-12-31")),
            Some(true)
        );
        assert_eq!(
            supported_by_quarterly_rule("2026-01", day("2027-01-01")),
            Some(false)
        );
        assert_eq!(
            supported_by_quarterly_rule("2027-01", day("2026-12-01")),
            Some(false)
        );
        assert_eq!(
            supported_by_quarterly_rule("2026-02", day("2026-12-01")),
            None
        );
        assert_eq!(
            supported_by_quarterly_rule("unstable", day("2026-12-01")),
            None
        );
    }

    #[test]
    fn a_report_blocks_on_a_problem_not_on_a_warning() {
        let fine = vec![Check::ok("a"), Check::warning("b", "c")];
        assert!(!blocking(&fine));
        let broken = vec![Check::ok("a"), Check::problem("b", "c")];
        assert!(blocking(&broken));
        assert_eq!(
            Check::problem("no account", "create one").to_string(),
            "FAIL no account\n     fix: create one"
        );
    }
}
