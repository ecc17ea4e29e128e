//! The shops file: several shops in one deployment.
//!
//! One hookline deployment can serve several Shopify shops, each with its own webhook secret(s),
//! Admin API credentials and sevDesk account. They are listed in a TOML file whose path is in
//! `HOOKLINE_SHOPS_FILE`; the ingestor reads the webhook side, the worker the rest. Without the
//! file, the single-shop environment variables (`HOOKLINE_SHOPIFY_SECRETS`, `HOOKLINE_SHOPS`,
//! `HOOKLINE_RECONCILE_SHOPS`, `HOOKLINE_SEVDESK_*`) remain a shortcut for one shop.
//!
//! ```toml
//! [[shop]]
//! domain = "example.myshopify.com"
//! # The app's client secret: Shopify signs webhooks with it. Several during a rotation.
//! webhook_secrets_file = "/run/secrets/example/webhook"
//!
//! [shop.admin]                      # Admin API access (reconciliation, payments to Shopify)
//! client_id = "8c1f…"
//! client_secret_file = "/run/secrets/example/client-secret"
//!
//! [shop.sevdesk]
//! token_file = "/run/secrets/example/sevdesk"
//! sev_user_id = 7
//! check_account_id = 5002
//! check_accounts = { paypal = 5003 }
//! ```
//!
//! Every secret may be given inline (`token = "…"`) or as a file (`token_file = "…"`, a mounted
//! Kubernetes secret; one trailing newline is dropped), never both. The file is strict: an
//! unknown key, a shop listed twice or credentials of two kinds for one shop stop the process at
//! start with a message naming the shop and the key, because a typo here would silently drop a
//! shop's webhooks or book its invoices into another account.
//!
//! Admin API credentials take one of three forms, after the tokens Shopify hands out:
//! - `token`: a static Admin API token (`shpat_…`) of a custom app created in the shop's admin
//!   before 2026;
//! - `client_id` + `client_secret`: a Dev Dashboard app for the merchant's own store, which
//!   obtains tokens with the client-credentials grant;
//! - the same two plus `refresh_token`: a public app with expiring offline tokens; the refresh
//!   token seeds the chain, which the worker then keeps (rotated) in PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{PLACEHOLDER, Secret};

/// `HOOKLINE_SHOPS_FILE`'s setting name, for messages.
pub const SHOPS_FILE: &str = "HOOKLINE_SHOPS_FILE";

/// One shop of the file, its secrets read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopEntry {
    /// `example.myshopify.com`, lower case.
    pub domain: String,
    /// The keys its webhooks may be signed with (the first is the current one).
    pub webhook_secrets: Vec<Secret>,
    /// Admin API access; `None`: the shop is not polled and nothing is reported to it.
    pub admin: Option<AdminAccess>,
    /// Its sevDesk account; `None`: its orders are not invoiced.
    pub sevdesk: Option<SevdeskAccess>,
}

/// How a shop's Admin API tokens are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCredentials {
    /// A static Admin API token.
    Static {
        /// `shpat_…`.
        token: Secret,
    },
    /// The client-credentials grant of a Dev Dashboard app.
    ClientCredentials {
        /// The app's client id.
        client_id: String,
        /// The app's client secret.
        client_secret: Secret,
    },
    /// Expiring offline tokens, renewed with a rotating refresh token.
    Offline {
        /// The app's client id.
        client_id: String,
        /// The app's client secret.
        client_secret: Secret,
        /// The refresh token that starts the chain (later ones are kept in PostgreSQL).
        refresh_token: Secret,
    },
}

/// A shop's Admin API access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAccess {
    /// How tokens are obtained.
    pub credentials: AdminCredentials,
    /// The Admin API version for this shop; `None`: the deployment's `HOOKLINE_SHOPIFY_API_VERSION`.
    pub api_version: Option<String>,
}

/// A shop's sevDesk account; `None` fields fall back to the deployment's `HOOKLINE_SEVDESK_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevdeskAccess {
    /// The account's API token.
    pub token: Secret,
    /// The SevUser named as `contactPerson`.
    pub sev_user_id: Option<u64>,
    /// The clearing account payments are booked on.
    pub check_account_id: Option<u64>,
    /// Payment gateway → check account.
    pub check_accounts: BTreeMap<String, u64>,
    /// §19 UStG small business.
    pub small_business: Option<bool>,
    /// One-Stop-Shop registration.
    pub oss: Option<bool>,
}

/// Why the shops file cannot be used. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ShopsFileError {
    /// The file (or a secret file it names) cannot be read.
    #[error("{SHOPS_FILE}: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape.
    #[error("{SHOPS_FILE}: {0}")]
    Syntax(String),
    /// A shop's entry is inconsistent.
    #[error("{SHOPS_FILE}: shop {shop}: {problem}")]
    Shop {
        /// The shop's domain (or its position when the domain is the problem).
        shop: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The file lists no shop.
    #[error("{SHOPS_FILE}: the file lists no [[shop]]")]
    Empty,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    shop: Vec<RawShop>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShop {
    domain: String,
    webhook_secrets: Option<Vec<String>>,
    webhook_secrets_file: Option<PathBuf>,
    admin: Option<RawAdmin>,
    sevdesk: Option<RawSevdesk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    api_version: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    refresh_token: Option<String>,
    refresh_token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSevdesk {
    token: Option<String>,
    token_file: Option<PathBuf>,
    sev_user_id: Option<u64>,
    check_account_id: Option<u64>,
    #[serde(default)]
    check_accounts: BTreeMap<String, u64>,
    small_business: Option<bool>,
    oss: Option<bool>,
}

/// Reads and checks the shops file at `path`; secret files are read from disk.
pub fn load(path: &Path) -> Result<Vec<ShopEntry>, ShopsFileError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| ShopsFileError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let text = read(path)?;
    // Relative secret paths are relative to the shops file, as a reader of the file expects.
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, |p| read(&base.join(p)))
}

/// Parses the file's `text`; `read` returns a secret file's contents.
pub fn parse(
    text: &str,
    read: impl Fn(&Path) -> Result<String, ShopsFileError>,
) -> Result<Vec<ShopEntry>, ShopsFileError> {
    let file: File = toml::from_str(text).map_err(|e| ShopsFileError::Syntax(e.to_string()))?;
    if file.shop.is_empty() {
        return Err(ShopsFileError::Empty);
    }
    let mut seen = BTreeSet::new();
    let mut shops = Vec::with_capacity(file.shop.len());
    for (index, raw) in file.shop.into_iter().enumerate() {
        let domain = raw.domain.trim().to_ascii_lowercase();
        let fail = |problem: String| ShopsFileError::Shop {
            shop: if domain.is_empty() {
                format!("#{}", index + 1)
            } else {
                domain.clone()
            },
            problem,
        };
        if !crate::envelope::is_shop_domain(&domain) {
            return Err(fail(format!(
                "domain {:?} is not a shop's domain (expected e.g. example.myshopify.com)",
                raw.domain
            )));
        }
        if !seen.insert(domain.clone()) {
            return Err(fail("is listed twice; keep one [[shop]] per domain".into()));
        }
        let secret = |key: &str, inline: Option<String>, file: Option<PathBuf>| {
            one_secret(key, inline, file, &read).map_err(|e| match e {
                Problem::Text(p) => fail(p),
                Problem::Io(e) => e,
            })
        };
        let webhook_secrets = match (raw.webhook_secrets, raw.webhook_secrets_file) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    "has both webhook_secrets and webhook_secrets_file; give one".into(),
                ));
            }
            (Some(list), None) => list.into_iter().map(Secret::new).collect(),
            (None, Some(file)) => read(&file)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Secret::new)
                .collect(),
            (None, None) => vec![],
        };
        if webhook_secrets.is_empty() {
            return Err(fail(
                "has no webhook secret: set webhook_secrets (the app's client secret) or webhook_secrets_file (one per line)".into(),
            ));
        }
        if webhook_secrets
            .iter()
            .any(|s: &Secret| s.expose().is_empty() || s.expose().contains(PLACEHOLDER))
        {
            return Err(fail(format!(
                "a webhook secret is empty or still {PLACEHOLDER}"
            )));
        }
        let admin = match raw.admin {
            None => None,
            Some(a) => {
                let token = secret("admin.token", a.token, a.token_file)?;
                let client_secret =
                    secret("admin.client_secret", a.client_secret, a.client_secret_file)?;
                let refresh_token =
                    secret("admin.refresh_token", a.refresh_token, a.refresh_token_file)?;
                let client_id = a.client_id.map(|s| s.trim().to_owned());
                let credentials = match (token, client_id, client_secret, refresh_token) {
                    (Some(token), None, None, None) => AdminCredentials::Static { token },
                    (Some(_), ..) => {
                        return Err(fail("admin: a static token and client credentials are two kinds of access; keep the one the app has".into()));
                    }
                    (None, Some(client_id), Some(client_secret), None) => {
                        AdminCredentials::ClientCredentials {
                            client_id,
                            client_secret,
                        }
                    }
                    (None, Some(client_id), Some(client_secret), Some(refresh_token)) => {
                        AdminCredentials::Offline {
                            client_id,
                            client_secret,
                            refresh_token,
                        }
                    }
                    (None, ..) => {
                        return Err(fail("admin: set token (static Admin API token), or client_id and client_secret (with refresh_token for expiring offline tokens)".into()));
                    }
                };
                if let Some(v) = &a.api_version
                    && !is_api_version(v)
                {
                    return Err(fail(format!(
                        "admin.api_version {v:?} is not a Shopify API version (YYYY-01, -04, -07 or -10)"
                    )));
                }
                Some(AdminAccess {
                    credentials,
                    api_version: a.api_version,
                })
            }
        };
        let sevdesk = match raw.sevdesk {
            None => None,
            Some(s) => {
                let Some(token) = secret("sevdesk.token", s.token, s.token_file)? else {
                    return Err(fail(
                        "sevdesk: set token or token_file (the account's API token)".into(),
                    ));
                };
                if let Some((gateway, _)) =
                    s.check_accounts.iter().find(|(g, _)| g.trim().is_empty())
                {
                    return Err(fail(format!(
                        "sevdesk.check_accounts has an empty gateway name {gateway:?}"
                    )));
                }
                Some(SevdeskAccess {
                    token,
                    sev_user_id: s.sev_user_id,
                    check_account_id: s.check_account_id,
                    check_accounts: s.check_accounts,
                    small_business: s.small_business,
                    oss: s.oss,
                })
            }
        };
        shops.push(ShopEntry {
            domain,
            webhook_secrets,
            admin,
            sevdesk,
        });
    }
    Ok(shops)
}

enum Problem {
    Text(String),
    Io(ShopsFileError),
}

fn one_secret(
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    read: &impl Fn(&Path) -> Result<String, ShopsFileError>,
) -> Result<Option<Secret>, Problem> {
    let value = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(Problem::Text(format!(
                "has both {key} and {key}_file; give one"
            )));
        }
        (Some(v), None) => v,
        (None, Some(path)) => {
            let text = read(&path).map_err(Problem::Io)?;
            text.strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text)
                .to_owned()
        }
        (None, None) => return Ok(None),
    };
    if value.trim().is_empty() || value.contains(PLACEHOLDER) {
        return Err(Problem::Text(format!(
            "{key} is empty or still {PLACEHOLDER}"
        )));
    }
    Ok(Some(Secret::new(value)))
}

/// `YYYY-MM` with a quarterly month, or `unstable`.
pub fn is_api_version(version: &str) -> bool {
    if version == "unstable" {
        return true;
    }
    let Some((year, month)) = version.split_once('-') else {
        return false;
    };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && matches!(month, "01" | "04" | "07" | "10")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_files(_: &Path) -> Result<String, ShopsFileError> {
        Err(ShopsFileError::Syntax("no files here".into()))
    }

    fn err(text: &str) -> String {
        parse(text, no_files).unwrap_err().to_string()
    }

    #[test]
    fn two_shops_with_three_kinds_of_access() {
        let files = |p: &Path| match p.to_str() {
            Some("sev-b") => Ok("b".repeat(32) + "\n"),
            Some("hooks-b") => Ok("new\nold\n".to_owned()),
            other => Err(ShopsFileError::Syntax(format!("unexpected {other:?}"))),
        };
        let shops = parse(
            r#"
            [[shop]]
            domain = "A.myshopify.com"
            webhook_secrets = ["sa"]
            [shop.admin]
            token = "shpat_a"
            api_version = "2026-10"
            [shop.sevdesk]
            token = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            sev_user_id = 7
            check_accounts = { paypal = 3 }

            [[shop]]
            domain = "b.myshopify.com"
            webhook_secrets_file = "hooks-b"
            [shop.admin]
            client_id = "cid"
            client_secret = "csecret"
            refresh_token = "rt"
            [shop.sevdesk]
            token_file = "sev-b"
            oss = true
            "#,
            files,
        )
        .unwrap();
        assert_eq!(shops.len(), 2);
        assert_eq!(shops[0].domain, "a.myshopify.com");
        assert_eq!(
            shops[0].admin.as_ref().unwrap().credentials,
            AdminCredentials::Static {
                token: Secret::new("shpat_a")
            }
        );
        let sev = shops[0].sevdesk.as_ref().unwrap();
        assert_eq!(sev.sev_user_id, Some(7));
        assert_eq!(sev.check_accounts.get("paypal"), Some(&3));
        assert_eq!(
            shops[1].webhook_secrets,
            vec![Secret::new("new"), Secret::new("old")]
        );
        assert!(matches!(
            shops[1].admin.as_ref().unwrap().credentials,
            AdminCredentials::Offline { .. }
        ));
        assert_eq!(
            shops[1].sevdesk.as_ref().unwrap().token.expose(),
            "b".repeat(32),
            "one trailing newline of a secret file is dropped"
        );
    }

    #[test]
    fn client_credentials_without_a_refresh_token() {
        let shops = parse(
            "[[shop]]\ndomain = \"a.myshopify.com\"\nwebhook_secrets = [\"s\"]\n[shop.admin]\nclient_id = \"c\"\nclient_secret = \"x\"\n",
            no_files,
        )
        .unwrap();
        assert!(matches!(
            shops[0].admin.as_ref().unwrap().credentials,
            AdminCredentials::ClientCredentials { .. }
        ));
        assert!(shops[0].sevdesk.is_none());
    }

    #[test]
    fn mistakes_name_the_shop_and_the_key() {
        let base = "[[shop]]\ndomain = \"a.myshopify.com\"\nwebhook_secrets = [\"s\"]\n";
        assert!(err("").contains("lists no [[shop]]"));
        assert!(err(&format!("{base}colour = 1\n")).contains("colour"));
        assert!(err(&format!("{base}{base}")).contains("listed twice"));
        assert!(err("[[shop]]\ndomain = \"a.myshopify.com\"\n").contains("has no webhook secret"));
        assert!(
            err("[[shop]]\ndomain = \"not a shop\"\nwebhook_secrets=[\"s\"]\n")
                .contains("not a shop's domain")
        );
        let both = err(&format!(
            "{base}[shop.admin]\ntoken = \"t\"\nclient_id = \"c\"\nclient_secret = \"x\"\n"
        ));
        assert!(
            both.contains("a.myshopify.com") && both.contains("two kinds"),
            "{both}"
        );
        assert!(err(&format!("{base}[shop.admin]\nclient_id = \"c\"\n")).contains("client_secret"));
        assert!(
            err(&format!(
                "{base}[shop.admin]\ntoken = \"t\"\ntoken_file = \"f\"\n"
            ))
            .contains("both admin.token and admin.token_file")
        );
        assert!(
            err(&format!("{base}[shop.sevdesk]\nsev_user_id = 1\n")).contains("sevdesk: set token")
        );
        assert!(
            err(&format!("{base}[shop.sevdesk]\ntoken = \"REPLACE_ME\"\n")).contains("REPLACE_ME")
        );
        assert!(
            err(&format!(
                "{base}[shop.admin]\ntoken = \"t\"\napi_version = \"2026-11\"\n"
            ))
            .contains("not a Shopify API version")
        );
    }

    #[test]
    fn secrets_never_print() {
        let shops = parse(
            "[[shop]]\ndomain = \"a.myshopify.com\"\nwebhook_secrets = [\"hunter2\"]\n",
            no_files,
        )
        .unwrap();
        assert!(!format!("{shops:?}").contains("hunter2"));
    }

    #[test]
    fn api_versions() {
        assert!(is_api_version("2026-10"));
        assert!(is_api_version("unstable"));
        assert!(!is_api_version("2026-09"));
        assert!(!is_api_version("26-10"));
    }
}
