//! `doctor`: reads the configured sevDesk account and says, line by line, what is right and what
//! is missing, with the fix for each problem.
//!
//! It asks what the worker asks before it books ([`crate::domains::orders::account`]), but does
//! not stop at the first problem: an operator setting up a shop sees everything at once. A
//! problem is *blocking* when the worker would refuse to start or could not book an order; the
//! command's exit status is non-zero when any check blocks.

use std::fmt;

use crate::domains::orders::account::AccountSettings;
use crate::error::HandlerError;
use crate::failure::error_chain;
use crate::sevdesk::{CheckAccountInfo, SevDeskClient};

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

#[cfg(test)]
mod tests {
    use super::*;

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
