//! Reading settings from the environment: the pieces every binary shares.
//!
//! Every setting is declared once, as a [`Setting`] constant: its variable, its type, its default
//! and what it does. That one declaration drives parsing ([`Env::read`]), the one rule for bad
//! values (the process refuses to start, naming the variable and what it expects), `--help`
//! ([`help_text`]) and `docs/configuration.md` ([`markdown`]). Each binary lists its settings in
//! one slice of [`SettingSpec`]s, and its tests check that it reads exactly those.
//!
//! Adding a setting: declare a `Setting` constant next to the binary's others (shared ones here),
//! add its `.spec()` to the binary's `SETTINGS`, read it with `env.read(&CONST)?` in its
//! `Settings::from_lookup`, and run `make config-docs`.
//!
//! A secret (its type is [`Secret`]) never prints, and may also be given as `<NAME>_FILE`: the
//! path of a file holding it (a mounted Kubernetes secret).
//!
//! ```
//! use hookline_core::config::{Env, Millis, Setting, pairs};
//!
//! const TIMEOUT: Setting<Millis> = Setting::new("MY_TIMEOUT_MS", "2000", "How long to wait.");
//! let env = Env::from_fn(pairs(&[("MY_TIMEOUT_MS", "soon")]));
//! let err = env.read(&TIMEOUT).unwrap_err().to_string();
//! assert_eq!(err, "MY_TIMEOUT_MS=\"soon\" is invalid: expected milliseconds");
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use crate::Domain;

/// The Shopify client secret of the development setup (`make run`, the compose stack): a start
/// with it is refused unless [`DEV`] says this is a developer's machine.
pub const DEV_SHOPIFY_SECRET: &str = "hookline_dev_secret";

/// The API token the sevDesk sandbox accepts: sent anywhere but a sandbox on this machine, a
/// start with it is refused unless [`DEV`] says this is a developer's machine.
pub const SANDBOX_SEVDESK_TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// What `deploy/k8s/secrets.yaml` holds until a real secret replaces it: a secret containing it
/// is refused.
pub const PLACEHOLDER: &str = "REPLACE_ME";

/// `HOOKLINE_DEV`: development values (the secrets above) are allowed.
pub const DEV: Setting<bool> = Setting::new(
    "HOOKLINE_DEV",
    "false",
    "A developer's machine or a test harness: allows the development secrets that production refuses (`hookline_dev_secret`, the sandbox's sevDesk token sent elsewhere). Set by `make run`, `make demo`, the compose stack and the chaos harness.",
);

/// `HOOKLINE_AMQP_URL`, shared by the ingestor, the worker and `hookctl`.
pub const AMQP_URL: Setting<Secret> = Setting::new(
    "HOOKLINE_AMQP_URL",
    "amqp://guest:guest@127.0.0.1:5672/%2f",
    "The broker and vhost (any vhost works; `%2f` is `/`), the same for every process.",
);

/// `HOOKLINE_DATABASE_URL`, shared by the worker and `hookctl`.
pub const DATABASE_URL: Setting<Secret> = Setting::new(
    "HOOKLINE_DATABASE_URL",
    "postgres://postgres@127.0.0.1:5432/test",
    "PostgreSQL: the worker's database (`hookctl` archives dead letters there).",
);

/// `HOOKLINE_QUEUE_MAX_LENGTH`, shared by the ingestor and the worker; its default is
/// [`crate::topology::DEFAULT_QUEUE_MAX_LENGTH`].
pub const QUEUE_MAX_LENGTH: Setting<u32> = Setting::new(
    "HOOKLINE_QUEUE_MAX_LENGTH",
    "100000",
    "Ready messages per work queue before the broker refuses more. **Must be the same in every process and in `deploy/rabbitmq/definitions.json`**: the queues are declared with it, and a declaration that differs is refused.",
);

/// `HOOKLINE_SHUTDOWN_TIMEOUT_SECS`, shared by the ingestor and the worker.
pub const SHUTDOWN_TIMEOUT: Setting<Seconds> = Setting::new(
    "HOOKLINE_SHUTDOWN_TIMEOUT_SECS",
    "25",
    "On SIGTERM or SIGINT: how long in-flight work (a request with its confirm, a delivery) may take to finish before the process exits anyway.",
);

/// `HOOKLINE_SHOPS_FILE`: several shops in one deployment (see [`crate::shops`]).
pub const SHOPS_FILE: Setting<Option<String>> = Setting::optional(
    "HOOKLINE_SHOPS_FILE",
    "one shop, from the single-shop settings",
    "Path of the shops file (TOML): per shop its webhook secret(s), Admin API credentials and sevDesk account, for several shops in one deployment (see docs/shops.md). Relative secret paths in it are relative to the file. When set, the single-shop settings that name shops or their secrets (`HOOKLINE_SHOPS`, `HOOKLINE_RECONCILE_SHOPS`, `HOOKLINE_SHOPIFY_SHOP`, `HOOKLINE_SHOPIFY_CLIENT_ID`, `HOOKLINE_SHOPIFY_CLIENT_SECRET`, `HOOKLINE_SHOPIFY_REFRESH_TOKEN`) must not be; `HOOKLINE_SEVDESK_*` become the defaults of each shop's `[shop.sevdesk]`.",
);

/// Reads [`SHOPS_FILE`] and the file it names, if set.
pub fn read_shops_file<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<Vec<crate::shops::ShopEntry>>, ConfigError> {
    match env.read(&SHOPS_FILE)? {
        None => Ok(None),
        Some(path) => Ok(Some(crate::shops::load(std::path::Path::new(&path))?)),
    }
}

/// A secret (password, token, URL with credentials) that never shows up in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A setting that is missing or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{name} is not set: {hint}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// What to put there.
        hint: &'static str,
    },
    /// A value does not parse.
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it was set to.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A value does not parse as its declaration says.
    #[error("{name}={value:?} is invalid: expected {expected}")]
    Unexpected {
        /// The variable.
        name: &'static str,
        /// What it was set to (masked for a secret).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A secret's `_FILE` cannot be read.
    #[error("{name}_FILE={path:?} cannot be read: {error}")]
    File {
        /// The secret's variable (without `_FILE`).
        name: &'static str,
        /// The path given.
        path: String,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// A secret is given both directly and as a file.
    #[error("{name} and {name}_FILE are both set: give one of them")]
    Ambiguous {
        /// The variable.
        name: &'static str,
    },
    /// A secret still holds a placeholder of `deploy/k8s/secrets.yaml`.
    #[error(
        "{name} still holds the placeholder REPLACE_ME of deploy/k8s/secrets.yaml: put the real value there"
    )]
    Placeholder {
        /// The variable.
        name: &'static str,
    },
    /// The shops file ([`SHOPS_FILE`]) cannot be used.
    #[error(transparent)]
    ShopsFile(#[from] crate::shops::ShopsFileError),
    /// The shops file and a single-shop setting both say something about shops.
    #[error("{name} is set together with HOOKLINE_SHOPS_FILE: {fix}")]
    BesideShopsFile {
        /// The single-shop variable.
        name: &'static str,
        /// Where its value belongs instead.
        fix: &'static str,
    },
    /// A value that only suits development, in a process that is not told it runs in development.
    #[error("{name}: {problem}; {fix} (or set HOOKLINE_DEV=1 on a developer's machine)")]
    DevelopmentValue {
        /// The variable to fix.
        name: &'static str,
        /// What is wrong.
        problem: &'static str,
        /// What to do.
        fix: &'static str,
    },
}

/// What a setting is when its variable is unset (or blank).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// This value, read as if the variable held it.
    Default(&'static str),
    /// No value (the setting's type is an `Option`); the text says what that means.
    Means(&'static str),
    /// The process refuses to start.
    Required,
}

/// Everything declared about one setting, without its type: what docs and `--help` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// The environment variable.
    pub name: &'static str,
    /// Its value when unset.
    pub unset: Unset,
    /// What it does (Markdown, one paragraph).
    pub doc: &'static str,
    /// What a valid value looks like, e.g. `milliseconds`.
    pub expected: &'static str,
    /// Never printed; may be given as `<NAME>_FILE`.
    pub secret: bool,
}

/// One setting of type `T`, declared once; read with [`Env::read`].
#[derive(Debug, Clone, Copy)]
pub struct Setting<T> {
    spec: SettingSpec,
    _type: PhantomData<fn() -> T>,
}

impl<T: SettingValue> Setting<T> {
    /// A setting with a default, written as its variable would be.
    pub const fn new(name: &'static str, default: &'static str, doc: &'static str) -> Self {
        Self::with(name, Unset::Default(default), doc)
    }

    /// A setting without which the process refuses to start.
    pub const fn required(name: &'static str, doc: &'static str) -> Self {
        Self::with(name, Unset::Required, doc)
    }

    const fn with(name: &'static str, unset: Unset, doc: &'static str) -> Self {
        Setting {
            spec: SettingSpec {
                name,
                unset,
                doc,
                expected: T::EXPECTED,
                secret: T::SECRET,
            },
            _type: PhantomData,
        }
    }

    /// Says more precisely than the type what a valid value is (e.g. `1 to 250`).
    pub const fn expecting(mut self, expected: &'static str) -> Self {
        self.spec.expected = expected;
        self
    }

    /// The declaration without its type.
    pub const fn spec(&self) -> SettingSpec {
        self.spec
    }

    /// The environment variable.
    pub const fn name(&self) -> &'static str {
        self.spec.name
    }
}

impl<T: SettingValue> Setting<Option<T>> {
    /// A setting that may be left unset; `means` says what happens then.
    pub const fn optional(name: &'static str, means: &'static str, doc: &'static str) -> Self {
        Self::with(name, Unset::Means(means), doc)
    }
}

/// A type a setting can have: how its text is read and described.
pub trait SettingValue: Sized {
    /// What a valid value looks like, for errors, `--help` and docs.
    const EXPECTED: &'static str;
    /// A secret: never printed, may be given as `<NAME>_FILE`.
    const SECRET: bool = false;
    /// The value of a (trimmed, non-blank) text; `None` if it is not one.
    fn parse_setting(text: &str) -> Option<Self>;
    /// The value of an unset variable without a default, if the type has one (`Option`: `None`).
    fn absent() -> Option<Self> {
        None
    }
}

/// A duration given in milliseconds (variables ending in `_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

/// A duration given in seconds (variables ending in `_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl SettingValue for String {
    const EXPECTED: &'static str = "text";
    fn parse_setting(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl SettingValue for Secret {
    const EXPECTED: &'static str = "text";
    const SECRET: bool = true;
    fn parse_setting(text: &str) -> Option<Self> {
        Some(Secret::new(text))
    }
}

impl SettingValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse_setting(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

macro_rules! whole_numbers {
    ($($t:ty: $expected:literal),*) => {$(
        impl SettingValue for $t {
            const EXPECTED: &'static str = $expected;
            fn parse_setting(text: &str) -> Option<Self> {
                text.parse().ok()
            }
        }
    )*};
}
whole_numbers!(
    u16: "a whole number up to 65535",
    u32: "a whole number",
    u64: "a whole number",
    usize: "a whole number"
);

impl SettingValue for f64 {
    const EXPECTED: &'static str = "a number";
    fn parse_setting(text: &str) -> Option<Self> {
        text.parse().ok().filter(|n: &f64| n.is_finite())
    }
}

impl SettingValue for Millis {
    const EXPECTED: &'static str = "milliseconds";
    fn parse_setting(text: &str) -> Option<Self> {
        text.parse().ok().map(|n| Millis(Duration::from_millis(n)))
    }
}

impl SettingValue for Seconds {
    const EXPECTED: &'static str = "seconds";
    fn parse_setting(text: &str) -> Option<Self> {
        text.parse().ok().map(|n| Seconds(Duration::from_secs(n)))
    }
}

impl<T: SettingValue> SettingValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    const SECRET: bool = T::SECRET;
    fn parse_setting(text: &str) -> Option<Self> {
        T::parse_setting(text).map(Some)
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
}

/// Comma-separated, blanks between commas ignored; at least one item.
fn list<T>(text: &str, item: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    let items = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(item)
        .collect::<Option<Vec<T>>>()?;
    (!items.is_empty()).then_some(items)
}

impl SettingValue for Vec<Secret> {
    const EXPECTED: &'static str = "one or more secrets, comma-separated";
    const SECRET: bool = true;
    fn parse_setting(text: &str) -> Option<Self> {
        list(text, |s| Some(Secret::new(s)))
    }
}

impl SettingValue for Vec<Domain> {
    const EXPECTED: &'static str = "a comma-separated list of inventory, orders, compliance";
    fn parse_setting(text: &str) -> Option<Self> {
        list(text, Domain::parse)
    }
}

/// Looks variables up through a function, so tests pass their own values without touching the
/// process environment (which parallel tests share). Blank values count as unset.
pub struct Env<F: Fn(&str) -> Option<String>> {
    get: F,
}

impl Env<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn process() -> Self {
        Env {
            get: |name| std::env::var(name).ok(),
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// Variables from `get`.
    pub fn from_fn(get: F) -> Self {
        Env { get }
    }

    /// The trimmed value, `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value or a default.
    ///
    /// This and the readers below take an undeclared name: prefer [`Env::read`] with a declared
    /// [`Setting`], so the variable shows in `--help` and the docs (each binary's test that it
    /// reads exactly its declared settings fails on an undeclared one).
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    /// A parsed value or a default; an unparseable value is an error naming the variable.
    pub fn parse<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        reason: &'static str,
    ) -> Result<T, ConfigError> {
        Ok(self.parse_opt(name, reason)?.unwrap_or(default))
    }

    /// One of a fixed set of words, read by `parse` (e.g. `HOOKLINE_LOG_FORMAT`: text or json).
    pub fn choice<T>(
        &self,
        name: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Option<T>,
        reason: &'static str,
    ) -> Result<T, ConfigError> {
        let value = self.string(name, default);
        parse(&value).ok_or(ConfigError::Invalid {
            name,
            value,
            reason,
        })
    }

    /// A parsed value, if set.
    pub fn parse_opt<T: FromStr>(
        &self,
        name: &'static str,
        reason: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|value| {
                value.parse().map_err(|_| ConfigError::Invalid {
                    name,
                    value,
                    reason,
                })
            })
            .transpose()
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The value of a declared setting: from its variable, else (for a secret) from the file
    /// `<NAME>_FILE` names, else its default. A value that does not parse is an error naming the
    /// variable and what it expects, with a secret's value masked.
    pub fn read<T: SettingValue>(&self, setting: &Setting<T>) -> Result<T, ConfigError> {
        let spec = &setting.spec;
        let invalid = |value: &str| ConfigError::Unexpected {
            name: spec.name,
            value: if spec.secret {
                "***".to_owned()
            } else {
                value.to_owned()
            },
            expected: spec.expected,
        };
        match self.text(spec)? {
            Some(text) if spec.secret && text.contains(PLACEHOLDER) => {
                Err(ConfigError::Placeholder { name: spec.name })
            }
            Some(text) => T::parse_setting(&text).ok_or_else(|| invalid(&text)),
            None => match spec.unset {
                Unset::Default(default) => {
                    T::parse_setting(default).ok_or_else(|| invalid(default))
                }
                Unset::Means(_) => T::absent().ok_or(ConfigError::Missing {
                    name: spec.name,
                    hint: spec.doc,
                }),
                Unset::Required => Err(ConfigError::Missing {
                    name: spec.name,
                    hint: spec.doc,
                }),
            },
        }
    }

    fn text(&self, spec: &SettingSpec) -> Result<Option<String>, ConfigError> {
        let direct = self.get(spec.name);
        if !spec.secret {
            return Ok(direct);
        }
        match (direct, self.get(&format!("{}_FILE", spec.name))) {
            (Some(_), Some(_)) => Err(ConfigError::Ambiguous { name: spec.name }),
            (direct, None) => Ok(direct),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
                Err(error) => Err(ConfigError::File {
                    name: spec.name,
                    path,
                    error,
                }),
            },
        }
    }
}

/// The settings of a binary, for the end of its `--help`: each variable with its default and
/// what it does.
pub fn help_text(specs: &[SettingSpec]) -> String {
    let mut out = String::from("Settings (environment variables; docs/configuration.md):\n");
    for spec in specs {
        let default = match spec.unset {
            Unset::Default(d) => format!("default: {}", if d.is_empty() { "empty" } else { d }),
            Unset::Means(m) => format!("unset: {m}"),
            Unset::Required => "required".to_owned(),
        };
        let secret = if spec.secret {
            format!(", secret, or a file named by {}_FILE", spec.name)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {}  ({}; {default}{secret})\n      {}\n",
            spec.name,
            spec.expected,
            spec.doc.replace('`', "")
        ));
    }
    out
}

/// The section of `docs/configuration.md` about one binary: a table of its settings.
pub fn markdown(binary: &str, intro: &str, specs: &[SettingSpec]) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "## `{binary}`\n\n{intro}\n\n| Variable | Default | Expected | What it does |\n|---|---|---|---|\n"
    );
    for spec in specs {
        let default = match spec.unset {
            Unset::Default("") => "empty".to_owned(),
            Unset::Default(d) => format!("`{}`", cell(d)),
            Unset::Means(m) => format!("unset: {}", cell(m)),
            Unset::Required => "**required**".to_owned(),
        };
        let expected = if spec.secret {
            format!("{}; secret, or `{}_FILE`", cell(spec.expected), spec.name)
        } else {
            cell(spec.expected)
        };
        out.push_str(&format!(
            "| `{}` | {default} | {expected} | {} |\n",
            spec.name,
            cell(spec.doc)
        ));
    }
    out
}

/// Compares the variables a binary's settings reader asked for with its declarations: each read
/// variable must be declared (a secret's `_FILE` counts as its secret), and each declared one read.
/// For the binaries' tests, which record the names their lookup is asked for.
pub fn check_reads<'a>(
    specs: &[SettingSpec],
    read: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    let read: std::collections::BTreeSet<&str> = read.into_iter().collect();
    let declared = |name: &str| {
        specs
            .iter()
            .any(|s| s.name == name || (s.secret && name.strip_suffix("_FILE") == Some(s.name)))
    };
    let undeclared: Vec<&str> = read.iter().copied().filter(|n| !declared(n)).collect();
    let unread: Vec<&str> = specs
        .iter()
        .map(|s| s.name)
        .filter(|n| !read.contains(n))
        .collect();
    if undeclared.is_empty() && unread.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "read but not declared as a Setting: {undeclared:?}; declared but never read: {unread:?}"
        ))
    }
}

/// A lookup over fixed `(name, value)` pairs — for tests and tools that pass settings without
/// touching the process environment. A later pair overrides an earlier one of the same name.
pub fn pairs<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: Setting<String> = Setting::new("T_ADDR", "127.0.0.1:1", "Where.");
    const LIMIT: Setting<u32> = Setting::new("T_LIMIT", "250", "How many.").expecting("1 to 250");
    const TOKEN: Setting<Secret> = Setting::required("T_TOKEN", "The token.");
    const SHOPS: Setting<Option<Secret>> = Setting::optional("T_SHOPS", "off", "Shops.");
    const DOMAINS: Setting<Vec<Domain>> = Setting::new("T_DOMAINS", "inventory,orders", "Which.");

    #[test]
    fn declared_settings_read_defaults_values_and_refuse_bad_ones_by_name() {
        let env = Env::from_fn(pairs(&[
            ("T_LIMIT", "many"),
            ("T_TOKEN", "hunter2"),
            ("T_DOMAINS", " orders , "),
        ]));
        assert_eq!(env.read(&ADDR).unwrap(), "127.0.0.1:1");
        assert_eq!(env.read(&TOKEN).unwrap().expose(), "hunter2");
        assert_eq!(env.read(&SHOPS).unwrap(), None);
        assert_eq!(env.read(&DOMAINS).unwrap(), vec![Domain::Orders]);
        let err = env.read(&LIMIT).unwrap_err().to_string();
        assert_eq!(err, "T_LIMIT=\"many\" is invalid: expected 1 to 250");
        let err = Env::from_fn(pairs(&[]))
            .read(&TOKEN)
            .unwrap_err()
            .to_string();
        assert!(err.contains("T_TOKEN is not set"), "{err}");
        let err = Env::from_fn(pairs(&[("T_DOMAINS", "billing")]))
            .read(&DOMAINS)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("T_DOMAINS") && err.contains("inventory, orders"),
            "{err}"
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_showing_them() {
        const PIN: Setting<Option<Vec<Secret>>> = Setting::optional("T_PIN", "none", "Pins.");
        let err = Env::from_fn(pairs(&[("T_PIN", " , ")]))
            .read(&PIN)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "T_PIN=\"***\" is invalid: expected one or more secrets, comma-separated"
        );
    }

    #[test]
    fn a_secret_left_at_its_placeholder_is_refused() {
        let env = Env::from_fn(pairs(&[("T_TOKEN", "amqp://hookline:REPLACE_ME@broker/")]));
        let err = env.read(&TOKEN).unwrap_err().to_string();
        assert!(
            err.starts_with("T_TOKEN still holds the placeholder"),
            "{err}"
        );
        assert!(!err.contains("hookline:"), "{err}");
        let env = Env::from_fn(pairs(&[("T_ADDR", "REPLACE_ME")]));
        assert_eq!(env.read(&ADDR).unwrap(), "REPLACE_ME");
    }

    #[test]
    fn a_secret_may_come_from_a_file() {
        let path = std::env::temp_dir().join(format!("hookline-secret-{}", std::process::id()));
        std::fs::write(&path, "from-a-file\n").unwrap();
        let file = path.to_string_lossy().into_owned();
        let from_file = [("T_TOKEN_FILE", file.as_str())];
        let env = Env::from_fn(pairs(&from_file));
        assert_eq!(env.read(&TOKEN).unwrap().expose(), "from-a-file");
        let given_twice = [("T_TOKEN_FILE", file.as_str()), ("T_TOKEN", "x")];
        let both = Env::from_fn(pairs(&given_twice));
        assert!(matches!(
            both.read(&TOKEN),
            Err(ConfigError::Ambiguous { name: "T_TOKEN" })
        ));
        std::fs::remove_file(&path).unwrap();
        let err = env.read(&TOKEN).unwrap_err().to_string();
        assert!(err.starts_with("T_TOKEN_FILE="), "{err}");
        // Only secrets are read from files.
        let env = Env::from_fn(pairs(&[("T_ADDR_FILE", "/nonexistent")]));
        assert_eq!(env.read(&ADDR).unwrap(), "127.0.0.1:1");
    }

    #[test]
    fn help_and_markdown_show_every_setting_with_its_default() {
        let specs = [ADDR.spec(), LIMIT.spec(), TOKEN.spec(), SHOPS.spec()];
        let help = help_text(&specs);
        assert!(
            help.contains("T_ADDR  (text; default: 127.0.0.1:1)"),
            "{help}"
        );
        assert!(
            help.contains("T_TOKEN  (text; required, secret, or a file named by T_TOKEN_FILE)"),
            "{help}"
        );
        let md = markdown("demo", "Intro.", &specs);
        assert!(
            md.contains("| `T_LIMIT` | `250` | 1 to 250 | How many. |"),
            "{md}"
        );
        assert!(
            md.contains("| `T_SHOPS` | unset: off | text; secret, or `T_SHOPS_FILE` | Shops. |"),
            "{md}"
        );
    }

    #[test]
    fn check_reads_finds_undeclared_and_unread_variables() {
        let specs = [ADDR.spec(), TOKEN.spec()];
        assert!(check_reads(&specs, ["T_ADDR", "T_TOKEN", "T_TOKEN_FILE"]).is_ok());
        let err = check_reads(&specs, ["T_ADDR", "T_ADDR_FILE", "T_OTHER"]).unwrap_err();
        assert!(
            err.contains("T_ADDR_FILE") && err.contains("T_OTHER") && err.contains("T_TOKEN"),
            "{err}"
        );
    }

    #[test]
    fn booleans_take_the_usual_spellings() {
        for (text, value) in [
            ("1", true),
            ("TRUE", true),
            ("yes", true),
            ("0", false),
            ("off", false),
        ] {
            assert_eq!(bool::parse_setting(text), Some(value), "{text}");
        }
        assert_eq!(bool::parse_setting("maybe"), None);
    }

    #[test]
    fn shared_defaults_agree_with_the_code() {
        let env = Env::from_fn(pairs(&[]));
        assert_eq!(
            env.read(&QUEUE_MAX_LENGTH).unwrap(),
            crate::topology::DEFAULT_QUEUE_MAX_LENGTH
        );
        assert!(!env.read(&DEV).unwrap());
    }

    #[test]
    fn later_pairs_override_earlier_ones() {
        let get = pairs(&[("A", "1"), ("B", "2"), ("A", "3")]);
        assert_eq!(get("A").as_deref(), Some("3"));
        assert_eq!(get("B").as_deref(), Some("2"));
        assert_eq!(get("C"), None);
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    #[test]
    fn parse_names_the_variable_and_blank_means_unset() {
        let env = Env::from_fn(|k| match k {
            "A" => Some("12".into()),
            "B" => Some("soon".into()),
            "C" => Some("   ".into()),
            _ => None,
        });
        assert_eq!(env.parse("A", 0u32, "a number").unwrap(), 12);
        assert_eq!(env.parse("C", 7u32, "a number").unwrap(), 7);
        let err = env.parse("B", 0u32, "a number").unwrap_err().to_string();
        assert!(
            err.contains("B=\"soon\"") && err.contains("a number"),
            "{err}"
        );
    }
}
