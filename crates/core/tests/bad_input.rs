//! Arbitrary bytes and headers at the edge: nothing panics, and nothing unsigned gets through.

use chrono::Utc;
use hookline_core::envelope::{Envelope, WebhookHeaders, header};
use hookline_core::idempotency;
use hookline_core::signature::{Verifier, sign};
use hookline_core::topics;
use hookline_core::trace::TraceParent;
use proptest::prelude::*;

const SECRET: &[u8] = b"hookline_test_secret_5f2c";

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_random_signature_never_verifies(body in proptest::collection::vec(any::<u8>(), 0..2048), signature in ".{0,64}") {
        let verifier = Verifier::new([SECRET]).unwrap();
        let result = verifier.verify(body.clone(), Some(&signature));
        if result.is_ok() {
            // Only possible if the header is the real signature, possibly padded with whitespace.
            prop_assert_eq!(signature.trim(), sign(SECRET, &body));
        }
    }

    #[test]
    fn a_tampered_body_never_verifies(body in proptest::collection::vec(any::<u8>(), 1..2048), flip in any::<prop::sample::Index>()) {
        let verifier = Verifier::new([SECRET]).unwrap();
        let signature = sign(SECRET, &body);
        let mut tampered = body.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        prop_assert!(verifier.verify(tampered, Some(&signature)).is_err());
        prop_assert!(verifier.verify(body, Some(&signature)).is_ok());
    }

    #[test]
    fn arbitrary_headers_are_parsed_or_refused_never_panic(
        topic in ".{0,120}", shop in ".{0,80}", webhook_id in ".{0,300}", api_version in ".{0,20}", triggered in ".{0,40}",
    ) {
        let get = |name: &str| match name {
            header::TOPIC => Some(topic.as_str()),
            header::SHOP_DOMAIN => Some(shop.as_str()),
            header::WEBHOOK_ID => Some(webhook_id.as_str()),
            header::API_VERSION => Some(api_version.as_str()),
            header::TRIGGERED_AT => Some(triggered.as_str()),
            _ => None,
        };
        if let Ok(parsed) = WebhookHeaders::parse(get) {
            // What gets through is safe to put in routing keys, labels and idempotency keys.
            prop_assert!(topics::is_acceptable(&parsed.topic));
            prop_assert!(parsed.topic.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert!(!parsed.shop_domain.contains(':') && !parsed.shop_domain.contains('/'));
            prop_assert!(parsed.webhook_id.bytes().all(|b| b.is_ascii_graphic()));
        }
    }

    #[test]
    fn arbitrary_signed_bodies_become_byte_exact_envelopes_or_clear_errors(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let verified = Verifier::new([SECRET]).unwrap().verify(body.clone(), Some(&sign(SECRET, &body))).unwrap();
        let headers = WebhookHeaders::parse(|name| match name {
            header::TOPIC => Some("orders/paid"),
            header::SHOP_DOMAIN => Some("shop.myshopify.com"),
            header::WEBHOOK_ID => Some("w"),
            header::API_VERSION => Some("2025-10"),
            _ => None,
        }).unwrap();
        if let Ok(envelope) = Envelope::from_webhook(headers, verified, Utc::now(), TraceParent::new_root()) {
            prop_assert_eq!(envelope.payload.get().as_bytes(), body.trim_ascii());
            let back = Envelope::from_json(&envelope.to_json()).unwrap();
            prop_assert_eq!(back.payload.get(), envelope.payload.get());
        }
    }

    #[test]
    fn json_objects_in_any_layout_keep_their_exact_bytes(id in any::<u64>(), note in ".{0,200}", ws in "[ \t\r\n]{0,4}") {
        let note = serde_json::to_string(&note).unwrap();
        let body = format!("{ws}{{{ws}\"id\"{ws}:{ws}{id},{ws}\"note\":{note}{ws}}}{ws}");
        let verified = Verifier::new([SECRET]).unwrap().verify(body.clone().into_bytes(), Some(&sign(SECRET, body.as_bytes()))).unwrap();
        let headers = WebhookHeaders::parse(|name| match name {
            header::TOPIC => Some("orders/paid"),
            header::SHOP_DOMAIN => Some("shop.myshopify.com"),
            header::WEBHOOK_ID => Some("w"),
            header::API_VERSION => Some("2025-10"),
            _ => None,
        }).unwrap();
        let envelope = Envelope::from_webhook(headers, verified, Utc::now(), TraceParent::new_root()).unwrap();
        prop_assert_eq!(envelope.payload.get(), body.trim_matches(|c: char| c.is_ascii_whitespace()));
        prop_assert_eq!(envelope.idempotency_key.as_str(), format!("shop.myshopify.com:orders/paid:{id}"));
    }

    #[test]
    fn arbitrary_json_objects_and_messages_never_panic(text in ".{0,512}", bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for topic in ["orders/paid", "orders/updated", "inventory_levels/update", "inventory_levels/disconnect", "carts/create"] {
            let _ = idempotency::derive("shop.myshopify.com", topic, &text);
            let _ = idempotency::derive("shop.myshopify.com", topic, &format!("{{\"id\":{text:?}}}"));
        }
        let _ = Envelope::from_json(&bytes);
        let _ = Envelope::from_json(text.as_bytes());
        let _ = TraceParent::parse(&text);
    }
}
