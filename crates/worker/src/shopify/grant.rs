//! Shopify's token endpoint, `POST https://{shop}/admin/oauth/access_token`, for the two grants
//! a server-side app uses without a merchant in front of it.
//!
//! The body is form-encoded, as shopify.dev documents it (Shopify's own libraries send JSON;
//! both are accepted). A success carries `access_token`, `scope` and `expires_in` (seconds);
//! a refresh also carries the **new** `refresh_token` and its `refresh_token_expires_in`.
//! Shopify refuses with `400 {"error": "invalid_client" | "invalid_grant" | …,
//! "error_description": …}`.
//!
//! What an answer means is decided by [`classify`], a pure function: a refusal (4xx but 408 and
//! 429) is permanent — the same request will be refused again until an operator changes
//! something — while a transport error, 408, 429 or 5xx is retryable.

use std::time::Duration;

use hookline_core::config::Secret;
use serde::Deserialize;
use tracing::Instrument;

/// Which grant a call made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=client_credentials`.
    ClientCredentials,
    /// `grant_type=refresh_token`.
    RefreshToken,
}

impl Grant {
    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// A token endpoint's success.
#[derive(Debug, Clone, Deserialize)]
pub struct Issued {
    /// The access token.
    pub access_token: String,
    /// Its scopes.
    #[serde(default)]
    pub scope: String,
    /// Its lifetime in seconds; absent for a token that does not expire.
    pub expires_in: Option<u64>,
    /// The refresh token that replaces the one used (refresh grant only).
    pub refresh_token: Option<String>,
    /// That refresh token's lifetime in seconds.
    pub refresh_token_expires_in: Option<u64>,
}

impl Issued {
    /// The access token's lifetime, if it has one.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }
}

/// A call that did not issue a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantFailure {
    /// Shopify refused the request: permanent until the credentials change.
    Refused {
        /// The HTTP status.
        status: u16,
        /// OAuth's `error` (`invalid_client`, `invalid_grant`, …), or the status if none.
        error: String,
        /// OAuth's `error_description`, if any.
        description: String,
    },
    /// No usable answer (transport error, timeout, 408, 429, 5xx, an unreadable success):
    /// retryable. After a refresh its outcome is unknown; Shopify lets the same refresh token be
    /// retried until its replacement is used, so retrying recovers.
    Unavailable(String),
}

/// Decides what an answer of the token endpoint means.
pub fn classify(status: u16, body: &str) -> Result<Issued, GrantFailure> {
    if (200..300).contains(&status) {
        return serde_json::from_str::<Issued>(body)
            .ok()
            .filter(|issued| !issued.access_token.is_empty())
            .ok_or_else(|| {
                GrantFailure::Unavailable(format!("unreadable token answer (HTTP {status})"))
            });
    }
    if status == 408 || status == 429 || status >= 500 {
        return Err(GrantFailure::Unavailable(format!("HTTP {status}")));
    }
    #[derive(Deserialize)]
    struct OAuthError {
        error: Option<String>,
        error_description: Option<String>,
        errors: Option<serde_json::Value>,
    }
    let parsed: Option<OAuthError> = serde_json::from_str(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|e| e.error.clone())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let description = parsed
        .and_then(|e| {
            e.error_description
                .or_else(|| e.errors.map(|v| v.to_string()))
        })
        .unwrap_or_default();
    Err(GrantFailure::Refused {
        status,
        error,
        description,
    })
}

/// Calls the token endpoint of every shop: `{shop}` in the admin URL is the shop's domain.
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    http: reqwest::Client,
    admin_url: String,
}

impl TokenEndpoint {
    /// `admin_url` like `HOOKLINE_SHOPIFY_ADMIN_URL` (`https://{shop}`); requests time out after
    /// `timeout`.
    pub fn new(admin_url: impl Into<String>, timeout: Duration) -> Self {
        let http = crate::downstream::http_client(timeout, Duration::from_secs(5))
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            admin_url: admin_url.into(),
        }
    }

    /// The endpoint's URL for `shop`.
    pub fn url(&self, shop: &str) -> String {
        format!(
            "{}/admin/oauth/access_token",
            self.admin_url.replace("{shop}", shop).trim_end_matches('/')
        )
    }

    /// Makes one grant call.
    pub async fn call(
        &self,
        shop: &str,
        grant: Grant,
        client_id: &str,
        client_secret: &Secret,
        refresh_token: Option<&Secret>,
    ) -> Result<Issued, GrantFailure> {
        let mut fields = vec![
            ("grant_type", grant.as_str()),
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
        ];
        if let Some(token) = refresh_token {
            fields.push(("refresh_token", token.expose()));
        }
        let request = self
            .http
            .post(self.url(shop))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form(&fields));
        let result = async {
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    classify(status, &body)
                }
                Err(e) => Err(GrantFailure::Unavailable(format!(
                    "{} ({e})",
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "no answer"
                    }
                ))),
            }
        }
        .instrument(tracing::info_span!(
            "shopify_token_grant",
            shop,
            grant = grant.as_str()
        ))
        .await;
        let outcome = match &result {
            Ok(_) => "issued",
            Err(GrantFailure::Refused { .. }) => "refused",
            Err(GrantFailure::Unavailable(_)) => "unavailable",
        };
        metrics::counter!("hookline_worker_shopify_token_grants_total", "grant" => grant.as_str(), "outcome" => outcome).increment(1);
        crate::downstream::count_call("shopify_oauth", outcome == "unavailable");
        result
    }
}

/// `application/x-www-form-urlencoded`.
fn form(fields: &[(&str, &str)]) -> String {
    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_carries_the_token_and_its_lifetimes() {
        let issued = classify(
            200,
            r#"{"access_token":"a","scope":"read_orders","expires_in":3600,"refresh_token":"r","refresh_token_expires_in":7776000}"#,
        )
        .unwrap();
        assert_eq!(issued.access_token, "a");
        assert_eq!(issued.lifetime(), Some(Duration::from_secs(3600)));
        assert_eq!(issued.refresh_token.as_deref(), Some("r"));
        assert_eq!(issued.refresh_token_expires_in, Some(7_776_000));
        let cc = classify(
            200,
            r#"{"access_token":"a","scope":"s","expires_in":86399}"#,
        )
        .unwrap();
        assert_eq!(cc.refresh_token, None);
    }

    #[test]
    fn refusals_are_permanent_and_outages_retryable() {
        assert_eq!(
            classify(
                400,
                r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#
            )
            .unwrap_err(),
            GrantFailure::Refused {
                status: 400,
                error: "invalid_client".into(),
                description: "Client authentication failed".into()
            }
        );
        assert!(matches!(
            classify(404, "Not Found"),
            Err(GrantFailure::Refused { status: 404, .. })
        ));
        for status in [408, 429, 500, 502, 503] {
            assert!(
                matches!(classify(status, "{}"), Err(GrantFailure::Unavailable(_))),
                "{status}"
            );
        }
        assert!(matches!(
            classify(200, "<html>"),
            Err(GrantFailure::Unavailable(_))
        ));
        assert!(matches!(
            classify(200, r#"{"access_token":""}"#),
            Err(GrantFailure::Unavailable(_))
        ));
    }

    #[test]
    fn the_body_is_form_encoded_and_the_url_follows_the_admin_url() {
        assert_eq!(
            form(&[("grant_type", "refresh_token"), ("refresh_token", "a+b/c=")]),
            "grant_type=refresh_token&refresh_token=a%2Bb%2Fc%3D"
        );
        let endpoint = TokenEndpoint::new("https://{shop}", Duration::from_secs(1));
        assert_eq!(
            endpoint.url("x.myshopify.com"),
            "https://x.myshopify.com/admin/oauth/access_token"
        );
        let sandbox = TokenEndpoint::new(
            "http://127.0.0.1:8090/shops/{shop}/",
            Duration::from_secs(1),
        );
        assert_eq!(
            sandbox.url("x.myshopify.com"),
            "http://127.0.0.1:8090/shops/x.myshopify.com/admin/oauth/access_token"
        );
    }
}
