//! The verification step: raw body + Shopify headers → a verified body and checked headers.
//!
//! Pure (no I/O), so it is tested and fuzzed without a server. The signature is checked first:
//! a caller that cannot sign learns nothing about what else we expect.

use hookline_core::envelope::{HeaderError, WebhookHeaders, either_form, header};
use hookline_core::signature::{SignatureError, Verified, Verifier};

/// What the webhook route needs from a request once it is known to come from Shopify.
#[derive(Debug)]
pub struct VerifiedWebhook {
    /// The body, exactly as signed.
    pub body: Verified,
    /// The Shopify headers, checked.
    pub headers: WebhookHeaders,
}

/// Why a request was refused at verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Missing or wrong signature (401).
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Not `application/json` (415).
    #[error("content type must be application/json")]
    ContentType,
    /// A required Shopify header is missing or malformed (400).
    #[error(transparent)]
    Headers(#[from] HeaderError),
}

/// Checks one request. `get` returns a header's value by lowercase name. The signature may come
/// as `X-Shopify-Hmac-Sha256` or `Shopify-Hmac-Sha256`; two different ones are refused (401).
pub fn verify<'a>(
    verifier: &Verifier,
    body: Vec<u8>,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<VerifiedWebhook, VerifyError> {
    let signature =
        either_form(&get, header::HMAC, |a, b| a == b).map_err(|_| SignatureError::Conflicting)?;
    let body = verifier.verify(body, signature)?;
    if !is_json_content_type(get("content-type")) {
        return Err(VerifyError::ContentType);
    }
    let headers = WebhookHeaders::parse(get)?;
    Ok(VerifiedWebhook { body, headers })
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json_content_type(value: Option<&str>) -> bool {
    value
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::signature::sign;
    use std::collections::HashMap;

    fn request(
        body: &str,
        overrides: &[(&'static str, Option<&'static str>)],
    ) -> (Vec<u8>, HashMap<&'static str, String>) {
        let mut h: HashMap<&'static str, String> = HashMap::from([
            (header::HMAC, sign(b"k", body.as_bytes())),
            ("content-type", "application/json".to_string()),
            (header::TOPIC, "orders/paid".to_string()),
            (header::SHOP_DOMAIN, "shop.myshopify.com".to_string()),
            (header::WEBHOOK_ID, "w1".to_string()),
            (header::API_VERSION, "2025-10".to_string()),
        ]);
        for (k, v) in overrides {
            match v {
                Some(v) => h.insert(k, v.to_string()),
                None => h.remove(k),
            };
        }
        (body.as_bytes().to_vec(), h)
    }

    fn run(
        body: &str,
        overrides: &[(&'static str, Option<&'static str>)],
    ) -> Result<VerifiedWebhook, VerifyError> {
        let verifier = Verifier::new(["k"]).unwrap();
        let (body, h) = request(body, overrides);
        verify(&verifier, body, |n| h.get(n).map(String::as_str))
    }

    #[test]
    fn two_different_signatures_are_refused_as_a_signature_error() {
        let good = sign(b"k", b"{}");
        let err = run(
            "{}",
            &[(
                header::events::HMAC,
                Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            )],
        )
        .unwrap_err();
        assert!(
            matches!(err, VerifyError::Signature(SignatureError::Conflicting)),
            "{err:?}"
        );
        let (body, mut h) = request("{}", &[(header::HMAC, None)]);
        h.insert(header::events::HMAC, good);
        let verifier = Verifier::new(["k"]).unwrap();
        assert!(
            verify(&verifier, body, |n| h.get(n).map(String::as_str)).is_ok(),
            "the Shopify-* form alone"
        );
    }

    #[test]
    fn a_signed_json_request_passes() {
        let ok = run(
            "{\"id\":1}",
            &[("content-type", Some("application/json; charset=utf-8"))],
        )
        .unwrap();
        assert_eq!(ok.body.body(), b"{\"id\":1}");
        assert_eq!(ok.headers.topic, "orders/paid");
    }

    #[test]
    fn the_signature_is_checked_before_anything_else() {
        let err = run(
            "{}",
            &[
                (header::HMAC, Some("AAAA")),
                ("content-type", None),
                (header::TOPIC, None),
            ],
        )
        .unwrap_err();
        assert!(
            matches!(err, VerifyError::Signature(SignatureError::Malformed)),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_content_type_and_missing_headers_are_refused() {
        assert!(matches!(
            run("{}", &[("content-type", Some("text/plain"))]),
            Err(VerifyError::ContentType)
        ));
        assert!(matches!(
            run("{}", &[("content-type", None)]),
            Err(VerifyError::ContentType)
        ));
        assert!(matches!(
            run("{}", &[(header::WEBHOOK_ID, None)]),
            Err(VerifyError::Headers(HeaderError::Missing(_)))
        ));
    }
}
