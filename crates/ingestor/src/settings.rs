//! Settings from environment variables, with defaults that work on a developer's machine.

use std::time::Duration;

use hookline_core::config::Env;
pub use hookline_core::config::{ConfigError as SettingsError, Secret};

use hookline_core::topology::{DEFAULT_QUEUE_MAX_LENGTH, TopologySettings};

pub use hookline_telemetry::LogFormat;

/// Everything the ingestor can be told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOOKLINE_HTTP_ADDR`, default `127.0.0.1:8080`. Port 0 picks a free port (tests).
    pub http_addr: String,
    /// `HOOKLINE_HTTP_WORKERS`: actix worker threads; default one per core.
    pub http_workers: Option<usize>,
    /// `HOOKLINE_HTTP_BACKLOG`, default 1024 (actix-web's own default): connections the kernel queues before they are
    /// accepted (capped by `net.core.somaxconn`). Bursts beyond it wait for SYN retransmits.
    pub http_backlog: u32,
    /// `HOOKLINE_HTTP_MAX_CONNECTIONS`, default 25000: open connections per process, split evenly
    /// across the HTTP workers; beyond it, new connections wait in the backlog. Each open
    /// connection holds about 10 KiB, so this bounds the memory a connection flood can take.
    pub http_max_connections: usize,
    /// `HOOKLINE_HTTP_CLIENT_TIMEOUT_MS`, default 5000: a request's head must arrive within this
    /// time (or 408), and its body within this time again once the head is in (or 408).
    pub http_client_timeout: Duration,
    /// `HOOKLINE_HTTP_KEEP_ALIVE_MS`, default 5000: how long an idle connection is kept open for
    /// a next request; 0 closes every connection after its answer.
    pub http_keep_alive: Duration,
    /// `HOOKLINE_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub amqp_url: Secret,
    /// `HOOKLINE_AMQP_CHANNELS`, default 4: publishing channels used round-robin. RabbitMQ runs
    /// each channel in one Erlang process, so a few channels let confirms proceed in parallel.
    pub amqp_channels: usize,
    /// `HOOKLINE_SHOPIFY_SECRETS`: comma-separated app client secrets; all are accepted, so a
    /// secret can be rotated without downtime. Required, unless every shop of `HOOKLINE_SHOPS`
    /// has a secret of its own.
    pub shopify_secrets: Vec<Secret>,
    /// `HOOKLINE_SHOPS`: when set, the only shops whose webhooks are accepted, comma-separated;
    /// `shop=secret` gives a shop its own secret (repeat the shop to rotate it), checked instead
    /// of `HOOKLINE_SHOPIFY_SECRETS`. Unset: any shop, signed with `HOOKLINE_SHOPIFY_SECRETS`.
    pub shops: Option<Vec<ShopSetting>>,
    /// `HOOKLINE_MAX_BODY_BYTES`, default 2 MiB. Larger bodies are refused with 413 before being read.
    pub max_body_bytes: usize,
    /// `HOOKLINE_CONFIRM_TIMEOUT_MS`, default 2000: how long a request waits for the broker's
    /// confirm before answering 503. Well under the 5 s Shopify waits for an answer.
    pub confirm_timeout: Duration,
    /// `HOOKLINE_QUEUE_MAX_LENGTH`, default 100000. Must match every other process and the
    /// definitions file (see [`TopologySettings`]).
    pub topology: TopologySettings,
    /// `HOOKLINE_SHUTDOWN_TIMEOUT_SECS`, default 25: on SIGTERM or SIGINT, how long in-flight
    /// requests may take to finish (with their confirms and answers) before the process exits
    /// anyway (see [`crate::drain`]).
    pub shutdown_timeout: Duration,
    /// `HOOKLINE_LOG_FORMAT`: `json` or `text` (default).
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
        let shopify_secrets: Vec<Secret> = env
            .string("HOOKLINE_SHOPIFY_SECRETS", "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect();
        let shops = env
            .get("HOOKLINE_SHOPS")
            .map(|v| parse_shops(&v))
            .transpose()?;
        let every_shop_has_a_secret = shops
            .as_ref()
            .is_some_and(|shops| shops.iter().all(|s| s.secret.is_some()));
        if shopify_secrets.is_empty() && !every_shop_has_a_secret {
            return Err(SettingsError::Missing {
                name: "HOOKLINE_SHOPIFY_SECRETS",
                hint: "give the Shopify app's client secret (several, comma-separated, during a rotation)",
            });
        }
        let log_format = env.choice(
            "HOOKLINE_LOG_FORMAT",
            "text",
            LogFormat::parse,
            "expected json or text",
        )?;
        let http_client_timeout = Duration::from_millis(env.parse(
            "HOOKLINE_HTTP_CLIENT_TIMEOUT_MS",
            5000,
            "expected milliseconds",
        )?);
        if http_client_timeout.is_zero() {
            return Err(SettingsError::Invalid {
                name: "HOOKLINE_HTTP_CLIENT_TIMEOUT_MS",
                value: "0".into(),
                reason: "expected milliseconds above 0: without it a slow client holds its connection forever",
            });
        }
        Ok(Self {
            http_addr: env.string("HOOKLINE_HTTP_ADDR", "127.0.0.1:8080"),
            http_workers: env
                .parse_opt("HOOKLINE_HTTP_WORKERS", "expected a number of threads")?
                .filter(|n: &usize| *n > 0),
            http_backlog: env
                .parse(
                    "HOOKLINE_HTTP_BACKLOG",
                    1024u32,
                    "expected a number of connections",
                )?
                .max(1),
            http_max_connections: env
                .parse(
                    "HOOKLINE_HTTP_MAX_CONNECTIONS",
                    25_000usize,
                    "expected a number of connections",
                )?
                .max(1),
            http_client_timeout,
            http_keep_alive: Duration::from_millis(env.parse(
                "HOOKLINE_HTTP_KEEP_ALIVE_MS",
                5000,
                "expected milliseconds",
            )?),
            amqp_url: Secret::new(
                env.string("HOOKLINE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ),
            amqp_channels: env
                .parse(
                    "HOOKLINE_AMQP_CHANNELS",
                    4usize,
                    "expected a number of channels",
                )?
                .max(1),
            shopify_secrets,
            shops,
            max_body_bytes: env.parse(
                "HOOKLINE_MAX_BODY_BYTES",
                2 * 1024 * 1024,
                "expected a size in bytes",
            )?,
            confirm_timeout: Duration::from_millis(env.parse(
                "HOOKLINE_CONFIRM_TIMEOUT_MS",
                2000,
                "expected milliseconds",
            )?),
            topology: TopologySettings {
                queue_max_length: env.parse(
                    "HOOKLINE_QUEUE_MAX_LENGTH",
                    DEFAULT_QUEUE_MAX_LENGTH,
                    "expected a message count",
                )?,
            },
            shutdown_timeout: Duration::from_secs(env.parse(
                "HOOKLINE_SHUTDOWN_TIMEOUT_SECS",
                25,
                "expected seconds",
            )?),
            log_format,
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
        assert!(matches!(
            settings(&[("HOOKLINE_SHOPIFY_SECRETS", " , ")]),
            Err(SettingsError::Missing { .. })
        ));
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
}
