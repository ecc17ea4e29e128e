//! Shopify webhook signatures: base64 HMAC-SHA256 over the **raw** request body.
//!
//! The HMAC is computed over the bytes exactly as they arrived. Parsing and re-serialising the
//! JSON first would change whitespace, key order or unicode escaping and break valid signatures,
//! so verification happens before anything looks inside the body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes; a header that decodes to anything else cannot match.
const TAG_LEN: usize = 32;

/// Why a body was not accepted as signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Shopify-Hmac-Sha256` (or `Shopify-Hmac-Sha256`) header, or an empty one.
    #[error("the X-Shopify-Hmac-Sha256 (or Shopify-Hmac-Sha256) header is missing")]
    Missing,
    /// Both `X-Shopify-Hmac-Sha256` and `Shopify-Hmac-Sha256` are there, with different values:
    /// Shopify sends one signature under both names, so one was changed on the way.
    #[error("the X-Shopify-Hmac-Sha256 and Shopify-Hmac-Sha256 headers disagree")]
    Conflicting,
    /// The header is not base64 of a 32-byte tag (hex, truncated, garbage).
    #[error("the X-Shopify-Hmac-Sha256 header is not a base64 HMAC-SHA256")]
    Malformed,
    /// Well-formed, but no configured secret produces it for this body.
    #[error("the signature does not match the body for any configured secret")]
    Mismatch,
}

/// Why a [`Verifier`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    /// A verifier without secrets would reject everything; refusing to build one makes a
    /// misconfigured deployment fail at start-up instead of answering 401 to every webhook.
    #[error("at least one non-empty Shopify webhook secret is required")]
    NoSecrets,
}

/// Checks signatures against every configured secret.
///
/// Several secrets are accepted at once so that an app's client secret can be rotated without
/// downtime: configure old and new, switch the app in Shopify, then drop the old one.
#[derive(Clone)]
pub struct Verifier {
    /// One keyed MAC per secret, prepared once: cloning a keyed state is cheaper than re-running
    /// the key schedule on every request.
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even derived state.
        f.debug_struct("Verifier")
            .field("secrets", &self.keys.len())
            .finish()
    }
}

/// A body whose signature was checked. Only [`Verifier::verify`] creates one, so any code that
/// takes a `Verified` cannot be reached with an unsigned body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    body: Vec<u8>,
}

impl Verified {
    /// The raw body bytes, exactly as signed.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Gives the body back, e.g. to move it into an envelope without copying.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

impl Verifier {
    /// Builds a verifier from the app's client secrets. Empty secrets are ignored.
    pub fn new<I, S>(secrets: I) -> Result<Self, VerifierError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let keys: Vec<HmacSha256> = secrets
            .into_iter()
            .filter(|s| !s.as_ref().is_empty())
            .map(|s| {
                HmacSha256::new_from_slice(s.as_ref()).expect("HMAC accepts keys of any length")
            })
            .collect();
        if keys.is_empty() {
            return Err(VerifierError::NoSecrets);
        }
        Ok(Self { keys })
    }

    /// Verifies `header` (the `X-Shopify-Hmac-Sha256` value) over `body`.
    ///
    /// The comparison is constant-time (`Mac::verify_slice`), and every secret is tried even after
    /// a match, so timing says nothing about the tag or about which secret matched.
    pub fn verify(&self, body: Vec<u8>, header: Option<&str>) -> Result<Verified, SignatureError> {
        let header = header
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or(SignatureError::Missing)?;
        let tag = BASE64
            .decode(header)
            .map_err(|_| SignatureError::Malformed)?;
        if tag.len() != TAG_LEN {
            return Err(SignatureError::Malformed);
        }
        let mut matched = false;
        for key in &self.keys {
            let mut mac = key.clone();
            mac.update(&body);
            matched |= mac.verify_slice(&tag).is_ok();
        }
        if matched {
            Ok(Verified { body })
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Signs `body` as Shopify does: base64 of HMAC-SHA256 with the app's client secret.
///
/// Used by the webhook sender (`hookline-send`), the sandbox and tests; the ingestor only verifies.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_round_trip() {
        let v = Verifier::new(["s3cret"]).unwrap();
        let sig = sign(b"s3cret", b"{\"id\":1}");
        assert!(v.verify(b"{\"id\":1}".to_vec(), Some(&sig)).is_ok());
        assert_eq!(
            v.verify(b"{\"id\":2}".to_vec(), Some(&sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_configured_secret_is_accepted() {
        let v = Verifier::new(["old", "", "new"]).unwrap();
        for secret in ["old", "new"] {
            let sig = sign(secret.as_bytes(), b"{}");
            assert!(v.verify(b"{}".to_vec(), Some(&sig)).is_ok(), "{secret}");
        }
        let sig = sign(b"other", b"{}");
        assert_eq!(
            v.verify(b"{}".to_vec(), Some(&sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_and_missing_headers_are_told_apart() {
        let v = Verifier::new(["k"]).unwrap();
        assert_eq!(v.verify(vec![], None), Err(SignatureError::Missing));
        assert_eq!(v.verify(vec![], Some("  ")), Err(SignatureError::Missing));
        assert_eq!(
            v.verify(vec![], Some("!!!")),
            Err(SignatureError::Malformed)
        );
        // Valid base64 of the wrong length (hex digest pasted in by mistake).
        let hex = "bcda7da1cd440ee4b86e6f66171f42e88b5a821a7d0ee749bd0ce4e852fb57af";
        assert_eq!(v.verify(vec![], Some(hex)), Err(SignatureError::Malformed));
    }

    #[test]
    fn no_secrets_is_a_configuration_error() {
        assert_eq!(
            Verifier::new(Vec::<String>::new()).unwrap_err(),
            VerifierError::NoSecrets
        );
        assert_eq!(Verifier::new([""]).unwrap_err(), VerifierError::NoSecrets);
    }
}
