//! Settings from environment variables, with defaults that work on a developer's machine.
//!
//! Each setting is declared once below (variable, type, default, doc); [`SETTINGS`] lists them
//! for `--help` and `docs/configuration.md`.

use std::time::Duration;

use hookline_core::config::{
    AMQP_URL, DEV, DEV_SHOPIFY_SECRET, Env, Millis, QUEUE_MAX_LENGTH, SHUTDOWN_TIMEOUT, Setting,
    SettingSpec,
};
pub use hookline_core::config::{ConfigError as SettingsError, Secret};

use hookline_core::topology::TopologySettings;

use hookline_telemetry::LOG_FORMAT;
pub use hookline_telemetry::LogFormat;

/// `HOOKLINE_HTTP_ADDR`.
pub const HTTP_ADDR: Setting<String> = Setting::new(
    "HOOKLINE_HTTP_ADDR",
    "127.0.0.1:8080",
    "Listen address of the webhook endpoint, `/healthz`, `/readyz` and `/metrics`. Port 0 picks a free port (tests).",
);
/// `HOOKLINE_HTTP_WORKERS`.
pub const HTTP_WORKERS: Setting<Option<usize>> = Setting::optional(
    "HOOKLINE_HTTP_WORKERS",
    "one per core",
    "HTTP worker threads (0: one per core).",
);
/// `HOOKLINE_HTTP_BACKLOG`.
pub const HTTP_BACKLOG: Setting<u32> = Setting::new(
    "HOOKLINE_HTTP_BACKLOG",
    "1024",
    "Connections the kernel queues before they are accepted (capped by `net.core.somaxconn`); bursts beyond it wait for SYN retransmits.",
);
/// `HOOKLINE_HTTP_MAX_CONNECTIONS`.
pub const HTTP_MAX_CONNECTIONS: Setting<usize> = Setting::new(
    "HOOKLINE_HTTP_MAX_CONNECTIONS",
    "25000",
    "Open connections per process, split evenly across the HTTP workers; beyond it, new connections wait in the backlog. Each holds about 10 KiB, so this bounds the memory a connection flood can take.",
);
/// `HOOKLINE_HTTP_CLIENT_TIMEOUT_MS`.
pub const HTTP_CLIENT_TIMEOUT: Setting<Millis> = Setting::new(
    "HOOKLINE_HTTP_CLIENT_TIMEOUT_MS",
    "5000",
    "A request's head must arrive within this time, then its body within it again, or 408. 0 is refused: a slow client would hold its connection forever.",
);
/// `HOOKLINE_HTTP_KEEP_ALIVE_MS`.
pub const HTTP_KEEP_ALIVE: Setting<Millis> = Setting::new(
    "HOOKLINE_HTTP_KEEP_ALIVE_MS",
    "5000",
    "How long an idle connection is kept open for a next request; 0 closes every connection after its answer.",
);
/// `HOOKLINE_AMQP_CHANNELS`.
pub const AMQP_CHANNELS: Setting<usize> = Setting::new(
    "HOOKLINE_AMQP_CHANNELS",
    "4",
    "Confirm-mode publishing channels, used round-robin. RabbitMQ runs each channel in one Erlang process, so a few channels let confirms proceed in parallel.",
);
/// `HOOKLINE_SHOPIFY_SECRETS`.
pub const SHOPIFY_SECRETS: Setting<Option<Vec<Secret>>> = Setting::optional(
    "HOOKLINE_SHOPIFY_SECRETS",
    "required, unless every shop of HOOKLINE_SHOPS has its own secret",
    "The Shopify app's client secret; several, comma-separated, during a rotation (all are accepted). The ingestor refuses to start without one (unless every shop of `HOOKLINE_SHOPS` has its own), and with the development secret `hookline_dev_secret` unless `HOOKLINE_DEV` is set.",
);
/// `HOOKLINE_SHOPS`. Not a [`Secret`] setting although it may hold secrets: a secret setting may
/// also be given as `<NAME>_FILE`, and `HOOKLINE_SHOPS_FILE` is the shops file, which replaces
/// this setting for deployments that keep their secrets in files. Its value never prints: errors
/// show an entry without its secret, and the parsed secrets are [`Secret`]s.
pub const SHOPS: Setting<Option<String>> = Setting::optional(
    "HOOKLINE_SHOPS",
    "any shop",
    "The only shops whose webhooks are accepted, comma-separated (`a.myshopify.com,b.myshopify.com`); others get 403. `shop=secret` gives a shop its own client secret, checked instead of `HOOKLINE_SHOPIFY_SECRETS` (repeat the shop to rotate it), so a body signed for one shop fails as another. A malformed entry stops the ingestor at start. With secrets in files, list the shops in the shops file (`HOOKLINE_SHOPS_FILE`) instead.",
);
/// `HOOKLINE_MAX_BODY_BYTES`.
pub const MAX_BODY_BYTES: Setting<usize> = Setting::new(
    "HOOKLINE_MAX_BODY_BYTES",
    "2097152",
    "Largest accepted body (2 MiB by default); larger ones are refused with 413 before being read.",
);
/// `HOOKLINE_CONFIRM_TIMEOUT_MS`.
pub const CONFIRM_TIMEOUT: Setting<Millis> = Setting::new(
    "HOOKLINE_CONFIRM_TIMEOUT_MS",
    "2000",
    "How long a request waits for the broker's confirm before answering 503; well under the 5 s Shopify waits for an answer.",
);

/// Every setting of the ingestor, in the order `--help` and the docs show them.
pub const SETTINGS: &[SettingSpec] = &[
    SHOPIFY_SECRETS.spec(),
    SHOPS.spec(),
    hookline_core::config::SHOPS_FILE.spec(),
    HTTP_ADDR.spec(),
    HTTP_WORKERS.spec(),
    HTTP_BACKLOG.spec(),
    HTTP_MAX_CONNECTIONS.spec(),
    HTTP_CLIENT_TIMEOUT.spec(),
    HTTP_KEEP_ALIVE.spec(),
    AMQP_URL.spec(),
    AMQP_CHANNELS.spec(),
    MAX_BODY_BYTES.spec(),
    CONFIRM_TIMEOUT.spec(),
    QUEUE_MAX_LENGTH.spec(),
    SHUTDOWN_TIMEOUT.spec(),
    LOG_FORMAT.spec(),
    DEV.spec(),
];

/// The ingestor's section of `docs/configuration.md`.
pub fn config_docs() -> String {
    hookline_core::config::markdown(
        "hookline-ingestor",
        "Receives Shopify webhooks, verifies them and publishes them to RabbitMQ.",
        SETTINGS,
    )
}

/// `hookline-send`'s settings (its other options are flags: `hookline-send --help`).
pub mod send {
    use hookline_core::config::{Secret, Setting, SettingSpec};

    /// `HOOKLINE_SEND_URL` (or `--url`).
    pub const URL: Setting<String> = Setting::new(
        "HOOKLINE_SEND_URL",
        "http://127.0.0.1:8080/webhooks/shopify",
        "Where `hookline-send` posts (`--url` overrides it).",
    );
    /// `HOOKLINE_SEND_SECRET` (or `--secret`).
    pub const SECRET: Setting<Option<Secret>> = Setting::optional(
        "HOOKLINE_SEND_SECRET",
        "--secret is required",
        "The app's client secret `hookline-send` signs with, the first of the ingestor's `HOOKLINE_SHOPIFY_SECRETS` (`--secret` overrides it).",
    );

    /// Every setting of `hookline-send`.
    pub const SETTINGS: &[SettingSpec] = &[URL.spec(), SECRET.spec()];

    /// `hookline-send`'s section of `docs/configuration.md`.
    pub fn config_docs() -> String {
        hookline_core::config::markdown(
            "hookline-send",
            "Signs a webhook body as Shopify does and posts it (demos, tests, load).",
            SETTINGS,
        )
    }
}

/// Everything the ingestor can be told; each field's setting is declared above.
#[derive(Debug, Clone)]
pub struct Settings {
    /// [`HTTP_ADDR`].
    pub http_addr: String,
    /// [`HTTP_WORKERS`]; `None`: one per core.
    pub http_workers: Option<usize>,
    /// [`HTTP_BACKLOG`].
    pub http_backlog: u32,
    /// [`HTTP_MAX_CONNECTIONS`].
    pub http_max_connections: usize,
    /// [`HTTP_CLIENT_TIMEOUT`].
    pub http_client_timeout: Duration,
    /// [`HTTP_KEEP_ALIVE`].
    pub http_keep_alive: Duration,
    /// [`AMQP_URL`].
    pub amqp_url: Secret,
    /// [`AMQP_CHANNELS`].
    pub amqp_channels: usize,
    /// [`SHOPIFY_SECRETS`]: all are accepted, so a secret can be rotated without downtime.
    pub shopify_secrets: Vec<Secret>,
    /// `HOOKLINE_SHOPS`: when set, the only shops whose webhooks are accepted, comma-separated;
    /// `shop=secret` gives a shop its own secret (repeat the shop to rotate it), checked instead
    /// of `HOOKLINE_SHOPIFY_SECRETS`. Unset: any shop, signed with `HOOKLINE_SHOPIFY_SECRETS`.
    pub shops: Option<Vec<ShopSetting>>,
    /// [`MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// [`CONFIRM_TIMEOUT`].
    pub confirm_timeout: Duration,
    /// [`QUEUE_MAX_LENGTH`]: must match every other process and the definitions file (see
    /// [`TopologySettings`]).
    pub topology: TopologySettings,
    /// [`SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
    /// [`LOG_FORMAT`].
    pub log_format: LogFormat,
}

/// One entry of `HOOKLINE_SHOPS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopSetting {
    /// The shop, lowercased: `example.myshopify.com`.
    pub domain: String,
    /// The shop's own client secret, if it has one.
    pub secret: Option<Secret>,
}

/// Parses `HOOKLINE_SHOPS`. Strict, because a typo here would silently refuse a shop's webhooks
/// (or accept them under the wrong secret): every entry must be a host name, optionally followed
/// by `=` and a non-empty secret. Errors show the entry without its secret.
fn parse_shops(value: &str) -> Result<Vec<ShopSetting>, SettingsError> {
    let invalid = |entry: &str, reason| SettingsError::Invalid {
        name: "HOOKLINE_SHOPS",
        value: match entry.split_once('=') {
            Some((domain, _)) => format!("{}=***", domain.trim()),
            None => entry.trim().to_owned(),
        },
        reason,
    };
    value
        .split(',')
        .map(|entry| {
            let (domain, secret) = match entry.split_once('=') {
                Some((domain, secret)) => (domain.trim(), Some(secret.trim())),
                None => (entry.trim(), None),
            };
            let domain = domain.to_ascii_lowercase();
            if domain.is_empty() {
                return Err(invalid(entry, "expected shop domains separated by commas, each optionally =secret; found an empty entry"));
            }
            if !hookline_core::envelope::is_shop_domain(&domain) {
                return Err(invalid(entry, "expected a shop domain such as example.myshopify.com"));
            }
            if secret.is_some_and(str::is_empty) {
                return Err(invalid(entry, "expected a secret after `=`"));
            }
            if secret.is_some_and(|s| s.contains(hookline_core::config::PLACEHOLDER)) {
                return Err(invalid(entry, "the secret still holds the placeholder REPLACE_ME of deploy/k8s/secrets.yaml"));
            }
            Ok(ShopSetting {
                domain,
                secret: secret.map(Secret::new),
            })
        })
        .collect()
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get`, so tests can pass their own values without touching the
    /// process environment (which is shared by parallel tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let env = Env::from_fn(get);
        let shopify_secrets = env.read(&SHOPIFY_SECRETS)?.unwrap_or_default();
        let shops = match hookline_core::config::read_shops_file(&env)? {
            // The file is the allowlist, each shop with its own secrets.
            Some(file) => {
                if env.read(&SHOPS)?.is_some() {
                    return Err(SettingsError::BesideShopsFile {
                        name: SHOPS.name(),
                        fix: "list the shops (and their secrets) in the shops file only",
                    });
                }
                Some(
                    file.into_iter()
                        .flat_map(|shop| {
                            let domain = shop.domain;
                            shop.webhook_secrets
                                .into_iter()
                                .map(move |secret| ShopSetting {
                                    domain: domain.clone(),
                                    secret: Some(secret),
                                })
                        })
                        .collect(),
                )
            }
            None => env.read(&SHOPS)?.map(|v| parse_shops(&v)).transpose()?,
        };
        let every_shop_has_a_secret = shops
            .as_ref()
            .is_some_and(|shops| shops.iter().all(|s| s.secret.is_some()));
        if shopify_secrets.is_empty() && !every_shop_has_a_secret {
            return Err(SettingsError::Missing {
                name: "HOOKLINE_SHOPIFY_SECRETS",
                hint: "give the Shopify app's client secret (several, comma-separated, during a rotation)",
            });
        }
        if !env.read(&DEV)?
            && shopify_secrets
                .iter()
                .any(|s| s.expose() == DEV_SHOPIFY_SECRET)
        {
            return Err(SettingsError::DevelopmentValue {
                name: SHOPIFY_SECRETS.name(),
                problem: "holds the development secret hookline_dev_secret, which anyone can sign webhooks with",
                fix: "set the Shopify app's client secret",
            });
        }
        let http_client_timeout = env.read(&HTTP_CLIENT_TIMEOUT)?.0;
        if http_client_timeout.is_zero() {
            return Err(SettingsError::Invalid {
                name: HTTP_CLIENT_TIMEOUT.name(),
                value: "0".into(),
                reason: "expected milliseconds above 0: without it a slow client holds its connection forever",
            });
        }
        Ok(Self {
            http_addr: env.read(&HTTP_ADDR)?,
            http_workers: env.read(&HTTP_WORKERS)?.filter(|n| *n > 0),
            http_backlog: env.read(&HTTP_BACKLOG)?.max(1),
            http_max_connections: env.read(&HTTP_MAX_CONNECTIONS)?.max(1),
            http_client_timeout,
            http_keep_alive: env.read(&HTTP_KEEP_ALIVE)?.0,
            amqp_url: env.read(&AMQP_URL)?,
            amqp_channels: env.read(&AMQP_CHANNELS)?.max(1),
            shopify_secrets,
            shops,
            max_body_bytes: env.read(&MAX_BODY_BYTES)?,
            confirm_timeout: env.read(&CONFIRM_TIMEOUT)?.0,
            topology: TopologySettings {
                queue_max_length: env.read(&QUEUE_MAX_LENGTH)?,
            },
            shutdown_timeout: env.read(&SHUTDOWN_TIMEOUT)?.0,
            log_format: env.read(&LOG_FORMAT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_lookup(hookline_core::config::pairs(pairs))
    }

    #[test]
    fn refuses_to_start_without_a_secret() {
        let err = settings(&[]).unwrap_err();
        assert!(
            err.to_string().contains("HOOKLINE_SHOPIFY_SECRETS"),
            "{err}"
        );
        let err = settings(&[("HOOKLINE_SHOPIFY_SECRETS", " , ")]).unwrap_err();
        assert!(
            err.to_string().contains("HOOKLINE_SHOPIFY_SECRETS"),
            "{err}"
        );
    }

    #[test]
    fn defaults_are_localhost() {
        let s = settings(&[("HOOKLINE_SHOPIFY_SECRETS", "a, b")]).unwrap();
        assert_eq!(s.http_addr, "127.0.0.1:8080");
        assert_eq!(s.amqp_url.expose(), "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(s.shopify_secrets, vec![Secret::new("a"), Secret::new("b")]);
        assert_eq!(s.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(s.confirm_timeout, Duration::from_secs(2));
        assert_eq!(s.http_backlog, 1024);
        assert_eq!(s.http_max_connections, 25_000);
        assert_eq!(s.http_client_timeout, Duration::from_secs(5));
        assert_eq!(s.http_keep_alive, Duration::from_secs(5));
        assert_eq!(s.topology.queue_max_length, 100_000);
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn a_client_timeout_of_zero_is_refused() {
        let err = settings(&[
            ("HOOKLINE_SHOPIFY_SECRETS", "a"),
            ("HOOKLINE_HTTP_CLIENT_TIMEOUT_MS", "0"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("HOOKLINE_HTTP_CLIENT_TIMEOUT_MS"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let s = settings(&[
            ("HOOKLINE_SHOPIFY_SECRETS", "topsecret"),
            ("HOOKLINE_AMQP_URL", "amqp://u:pw@h/"),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("topsecret") && !printed.contains("pw@"),
            "{printed}"
        );
    }

    #[test]
    fn the_development_secret_is_refused_outside_development() {
        let err = settings(&[("HOOKLINE_SHOPIFY_SECRETS", "new, hookline_dev_secret")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HOOKLINE_SHOPIFY_SECRETS") && err.contains("HOOKLINE_DEV=1"),
            "{err}"
        );
        settings(&[
            ("HOOKLINE_SHOPIFY_SECRETS", "hookline_dev_secret"),
            ("HOOKLINE_DEV", "1"),
        ])
        .unwrap();
    }

    #[test]
    fn reads_exactly_the_declared_settings() {
        let read = std::cell::RefCell::new(Vec::new());
        Settings::from_lookup(|name| {
            read.borrow_mut().push(name.to_owned());
            (name == "HOOKLINE_SHOPIFY_SECRETS").then(|| "a".to_owned())
        })
        .unwrap();
        let read = read.into_inner();
        hookline_core::config::check_reads(SETTINGS, read.iter().map(String::as_str)).unwrap();
    }

    #[test]
    fn invalid_numbers_name_the_variable() {
        let err = settings(&[
            ("HOOKLINE_SHOPIFY_SECRETS", "a"),
            ("HOOKLINE_CONFIRM_TIMEOUT_MS", "soon"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("HOOKLINE_CONFIRM_TIMEOUT_MS"),
            "{err}"
        );
    }
    #[test]
    fn shops_are_an_allowlist_with_optional_secrets_of_their_own() {
        let s = settings(&[("HOOKLINE_SHOPIFY_SECRETS", "g")]).unwrap();
        assert_eq!(s.shops, None, "unset: any shop");
        let s = settings(&[
            ("HOOKLINE_SHOPIFY_SECRETS", "g"),
            ("HOOKLINE_SHOPS", " A.myshopify.com=sa , b.myshopify.com"),
        ])
        .unwrap();
        assert_eq!(
            s.shops,
            Some(vec![
                ShopSetting {
                    domain: "a.myshopify.com".into(),
                    secret: Some(Secret::new("sa"))
                },
                ShopSetting {
                    domain: "b.myshopify.com".into(),
                    secret: None
                },
            ])
        );
        // Every shop with its own secret: no global secret needed.
        assert!(settings(&[("HOOKLINE_SHOPS", "a.myshopify.com=sa")]).is_ok());
        // A shop without one needs the global secrets.
        let err =
            settings(&[("HOOKLINE_SHOPS", "a.myshopify.com=sa,b.myshopify.com")]).unwrap_err();
        assert!(
            err.to_string().contains("HOOKLINE_SHOPIFY_SECRETS"),
            "{err}"
        );
    }

    #[test]
    fn the_shops_file_stands_alone() {
        let path = std::env::temp_dir().join(format!("hookline-shops-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[[shop]]\ndomain = \"a.myshopify.com\"\nwebhook_secrets = [\"sa\", \"sa-old\"]\n",
        )
        .unwrap();
        let file = path.display().to_string();
        let s = settings(&[("HOOKLINE_SHOPS_FILE", &file)]).unwrap();
        let shops = s.shops.unwrap();
        assert_eq!(shops.len(), 2, "one entry per secret");
        assert!(shops.iter().all(|s| s.domain == "a.myshopify.com"));
        let err = settings(&[
            ("HOOKLINE_SHOPS_FILE", &file),
            ("HOOKLINE_SHOPS", "a.myshopify.com"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HOOKLINE_SHOPS is set together with HOOKLINE_SHOPS_FILE"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = settings(&[("HOOKLINE_SHOPS_FILE", &file)])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("HOOKLINE_SHOPS_FILE: cannot read"), "{err}");
    }

    #[test]
    fn a_malformed_shop_list_is_refused_without_showing_secrets() {
        for bad in [
            "a.myshopify.com,,b.myshopify.com",
            "a.myshopify.com,",
            "a.myshopify.com=",
            "=topsecret",
            "localhost=topsecret",
            "a b.myshopify.com=topsecret",
            "https://a.myshopify.com",
        ] {
            let err = settings(&[("HOOKLINE_SHOPIFY_SECRETS", "g"), ("HOOKLINE_SHOPS", bad)])
                .unwrap_err();
            let text = err.to_string();
            assert!(text.contains("HOOKLINE_SHOPS"), "{bad}: {text}");
            assert!(!text.contains("topsecret"), "{bad}: {text}");
        }
    }
}
