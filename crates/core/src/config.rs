//! Reading settings from the environment: the pieces every binary shares.
//!
//! Each binary has its own `Settings` struct with localhost defaults; this module gives them a
//! secret type that never prints, and parsing that names the variable when a value is wrong.

use std::fmt;
use std::str::FromStr;

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
