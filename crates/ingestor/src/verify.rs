//! The verification step: raw body + Shopify headers → a verified body and checked headers.
//!
//! Pure (no I/O), so it is tested and fuzzed without a server. The signature is checked first:
//! a caller that cannot sign learns nothing about what else we expect. Which secrets it is
//! checked against depends on the shop the request names ([`Secrets`]); whether that shop is
//! allowed at all is decided only after the signature held.

use std::collections::HashMap;

use hookline_core::envelope::{HeaderError, WebhookHeaders, either_form, header};
use hookline_core::signature::{SignatureError, Verified, Verifier, VerifierError};

use crate::settings::{Secret, ShopSetting};

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
    /// Correctly signed, but the shop is not in `HOOKLINE_SHOPS` (403).
    #[error(
        "shop {0} is not one of the shops this ingestor accepts (HOOKLINE_SHOPS or the shops file)"
    )]
    ShopNotAllowed(String),
}

/// The secrets to check a signature with, per shop.
///
/// Without an allowlist every request is checked against the global secrets. With one, a
/// listed shop that has secrets of its own is checked against those only, so a body signed with
/// shop A's secret fails when sent as shop B; other shops are checked against the global
/// secrets (and, if the signature holds but the shop is not listed, refused with 403).
#[derive(Debug, Clone)]
pub struct Secrets {
    /// `HOOKLINE_SHOPIFY_SECRETS`; none when every listed shop has its own.
    global: Option<Verifier>,
    /// `HOOKLINE_SHOPS`: each allowed shop, with its own verifier if it has secrets.
    shops: Option<HashMap<String, Option<Verifier>>>,
}

impl Secrets {
    /// Builds the verifiers from the settings' secrets and shop list.
    pub fn new(global: &[Secret], shops: Option<&[ShopSetting]>) -> Result<Self, VerifierError> {
        // No global secrets is fine when every listed shop has its own (checked below).
        let global = Verifier::new(global.iter().map(|s| s.expose().as_bytes())).ok();
        let shops = match shops {
            None => None,
            Some(shops) => {
                let mut own: HashMap<String, Vec<&[u8]>> = HashMap::new();
                for shop in shops {
                    let secrets = own.entry(shop.domain.clone()).or_default();
                    if let Some(secret) = &shop.secret {
                        secrets.push(secret.expose().as_bytes());
                    }
                }
                let mut verifiers = HashMap::new();
                for (domain, secrets) in own {
                    let verifier = if secrets.is_empty() {
                        if global.is_none() {
                            return Err(VerifierError::NoSecrets);
                        }
                        None
                    } else {
                        Some(Verifier::new(secrets)?)
                    };
                    verifiers.insert(domain, verifier);
                }
                Some(verifiers)
            }
        };
        if global.is_none() && shops.is_none() {
            return Err(VerifierError::NoSecrets);
        }
        Ok(Self { global, shops })
    }

    /// The verifier for a request naming `shop` (lowercase), if any can check it.
    fn for_shop(&self, shop: Option<&str>) -> Option<&Verifier> {
        let own = self
            .shops
            .as_ref()
            .zip(shop)
            .and_then(|(shops, shop)| shops.get(shop))
            .and_then(Option::as_ref);
        own.or(self.global.as_ref())
    }

    /// Whether `shop` may send webhooks.
    fn allows(&self, shop: &str) -> bool {
        self.shops
            .as_ref()
            .is_none_or(|shops| shops.contains_key(shop))
    }
}

/// Checks one request. `get` returns a header's value by lowercase name. The signature may come
/// as `X-Shopify-Hmac-Sha256` or `Shopify-Hmac-Sha256`; two different ones are refused (401).
pub fn verify<'a>(
    secrets: &Secrets,
    body: Vec<u8>,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<VerifiedWebhook, VerifyError> {
    let signature =
        either_form(&get, header::HMAC, |a, b| a == b).map_err(|_| SignatureError::Conflicting)?;
    // The shop only chooses which secrets to try; it is checked properly once the body is.
    let claimed_shop = either_form(&get, header::SHOP_DOMAIN, |a, b| a.eq_ignore_ascii_case(b))
        .ok()
        .flatten()
        .map(str::to_ascii_lowercase);
    let verifier = secrets
        .for_shop(claimed_shop.as_deref())
        .ok_or(SignatureError::Mismatch)?;
    let body = verifier.verify(body, signature)?;
    if !is_json_content_type(get("content-type")) {
        return Err(VerifyError::ContentType);
    }
    let headers = WebhookHeaders::parse(get)?;
    if !secrets.allows(&headers.shop_domain) {
        return Err(VerifyError::ShopNotAllowed(headers.shop_domain));
    }
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
        let secrets = Secrets::new(&[Secret::new("k")], None).unwrap();
        let (body, h) = request(body, overrides);
        verify(&secrets, body, |n| h.get(n).map(String::as_str))
    }

    fn shop(domain: &str, secret: Option<&str>) -> ShopSetting {
        ShopSetting {
            domain: domain.into(),
            secret: secret.map(Secret::new),
        }
    }

    #[test]
    fn per_shop_secrets_and_the_allowlist() {
        let secrets = Secrets::new(
            &[Secret::new("k")],
            Some(&[
                shop("a.myshopify.com", Some("secret-a")),
                shop("shop.myshopify.com", None),
            ]),
        )
        .unwrap();
        let send = |shop: &'static str, secret: &[u8]| {
            let (body, mut h) = request("{}", &[(header::SHOP_DOMAIN, Some(shop))]);
            h.insert(header::HMAC, sign(secret, &body));
            verify(&secrets, body, |n| h.get(n).map(String::as_str))
        };
        assert!(send("a.myshopify.com", b"secret-a").is_ok());
        assert!(
            matches!(
                send("a.myshopify.com", b"k"),
                Err(VerifyError::Signature(SignatureError::Mismatch))
            ),
            "a shop with its own secret is not checked against the global ones"
        );
        assert!(send("shop.myshopify.com", b"k").is_ok());
        assert!(matches!(
            send("shop.myshopify.com", b"secret-a"),
            Err(VerifyError::Signature(SignatureError::Mismatch))
        ));
        assert!(matches!(
            send("other.myshopify.com", b"k"),
            Err(VerifyError::ShopNotAllowed(s)) if s == "other.myshopify.com"
        ));
        assert!(
            matches!(
                send("other.myshopify.com", b"wrong"),
                Err(VerifyError::Signature(_))
            ),
            "unsigned: 401 before anything else"
        );
        // Only shops with their own secrets: nothing to check another shop with.
        let own_only =
            Secrets::new(&[], Some(&[shop("a.myshopify.com", Some("secret-a"))])).unwrap();
        let (body, mut h) = request("{}", &[(header::SHOP_DOMAIN, Some("b.myshopify.com"))]);
        h.insert(header::HMAC, sign(b"secret-a", &body));
        assert!(matches!(
            verify(&own_only, body, |n| h.get(n).map(String::as_str)),
            Err(VerifyError::Signature(SignatureError::Mismatch))
        ));
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
        let secrets = Secrets::new(&[Secret::new("k")], None).unwrap();
        assert!(
            verify(&secrets, body, |n| h.get(n).map(String::as_str)).is_ok(),
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
