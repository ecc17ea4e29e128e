//! sevDesk's contract for the calls hookline makes, as data: `fixtures/sevdesk/contract.json`.
//!
//! The fixture is our own compact reading of sevDesk's OpenAPI spec (sevdesk-Update 2.0):
//! required members with their JSON types and enums, the tax-rule → allowed-position-rates
//! table, and the destination rates One-Stop-Shop rules are checked against. The sandbox's sevDesk
//! refuses every request that breaks it, in sevDesk's status and error shape, and the worker's
//! tests check every request body its client can build against the same [`check`]. Keeping the
//! contract as data (not as code in the handlers) means a rule added to the fixture is enforced
//! everywhere at once, and a reviewer can read it side by side with the vendor's spec.
//!
//! Member order is not checked: the spec's prose says `saveInvoice` "ends with" its four trailing
//! members, but JSON objects are unordered, so what is checked is that all of them are present.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

const CONTRACT: &str = include_str!("../../../fixtures/sevdesk/contract.json");

/// One member of a request body.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// `integer`, `number`, `string`, `boolean`, `object`, `array` or `null` (present, null).
    #[serde(rename = "type")]
    pub kind: String,
    /// Must be present.
    #[serde(default)]
    pub required: bool,
    /// Must be present when every named member has the given value.
    #[serde(default)]
    pub required_when: BTreeMap<String, Value>,
    /// Allowed values.
    #[serde(default, rename = "enum")]
    pub allowed: Option<Vec<Value>>,
    /// Sent only by Update-1.0 clients: refused when its successor is missing.
    #[serde(default)]
    pub deprecated: Option<String>,
}

/// One operation.
#[derive(Debug, Clone, Deserialize)]
pub struct Operation {
    /// HTTP method.
    pub method: String,
    /// Path pattern, for people.
    pub path: String,
    /// Dotted member paths (`[]` for every element of an array) → their rule.
    pub members: BTreeMap<String, Member>,
    /// Members the spec says must always be sent, even when null.
    #[serde(default)]
    pub trailing: Vec<String>,
}

/// A tax rule's allowed position rates: a list, or the destination country's rates.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Rates {
    /// These rates, in percent.
    Fixed(Vec<Decimal>),
    /// `"destination"`: the rates of `deliveryAddressCountry` (One Stop Shop).
    Destination(String),
}

/// A tax rule.
#[derive(Debug, Clone, Deserialize)]
pub struct TaxRule {
    /// sevDesk's name.
    pub name: String,
    /// Allowed position rates.
    pub rates: Rates,
    /// A member the rule needs (`deliveryAddressCountry`).
    #[serde(default)]
    pub needs: Option<String>,
}

/// The whole contract.
#[derive(Debug, Clone, Deserialize)]
pub struct Contract {
    /// Operation name (`saveInvoice`, …) → its members.
    pub operations: BTreeMap<String, Operation>,
    /// Check account type → what a booking on it needs.
    pub check_account_types: BTreeMap<String, String>,
    /// What `GET /Tools/bookkeepingSystemVersion` can answer.
    pub bookkeeping_system_versions: Vec<String>,
    /// Tax rule id → rule.
    pub tax_rules: BTreeMap<String, TaxRule>,
    /// ISO country (EU, not DE) → VAT rates in percent.
    pub destination_rates: BTreeMap<String, Vec<Decimal>>,
}

/// The contract, parsed once.
pub fn contract() -> &'static Contract {
    static PARSED: OnceLock<Contract> = OnceLock::new();
    PARSED.get_or_init(|| {
        // The fixture is part of the build: a broken one must fail every test at once.
        serde_json::from_str(CONTRACT)
            .unwrap_or_else(|e| panic!("fixtures/sevdesk/contract.json is invalid: {e}"))
    })
}

/// Why a request breaks the contract; [`Violation::status`] is what sevDesk answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A required member is missing.
    #[error("{0} is required")]
    Missing(String),
    /// A member has the wrong JSON type.
    #[error("{path} must be of type {expected}")]
    WrongType {
        /// The member.
        path: String,
        /// The contract's type.
        expected: String,
    },
    /// A member has a value outside its enum.
    #[error("{path} has an invalid value {value}")]
    NotAllowed {
        /// The member.
        path: String,
        /// What was sent.
        value: String,
    },
    /// An Update-1.0 member without its Update-2.0 successor.
    #[error("{0} is not supported in sevdesk-Update 2.0; use taxRule")]
    Deprecated(String),
    /// A position rate the tax rule does not allow.
    #[error("tax rate {rate} is not allowed for tax rule {rule} ({name})")]
    TaxRate {
        /// Rule id.
        rule: String,
        /// Its name.
        name: String,
        /// The position's rate.
        rate: String,
    },
    /// A One-Stop-Shop rule without a valid `deliveryAddressCountry`.
    #[error("tax rule {0} needs deliveryAddressCountry of an EU country other than Germany")]
    NeedsDeliveryCountry(String),
    /// An unknown operation (a bug in the caller).
    #[error("unknown operation {0}")]
    UnknownOperation(String),
}

impl Violation {
    /// sevDesk answers structural errors with 400 and tax-rule validation with 422.
    pub fn status(&self) -> u16 {
        match self {
            Violation::TaxRate { .. } | Violation::NeedsDeliveryCountry(_) => 422,
            Violation::Deprecated(_) => 422,
            _ => 400,
        }
    }
}

/// The values at `path` (dotted, `[]` for every element of an array) in `body`, with the
/// concrete path of each: none when an object on the way is missing.
fn resolve<'a>(body: &'a Value, path: &str) -> Vec<(String, Option<&'a Value>)> {
    let mut current: Vec<(String, Option<&'a Value>)> = vec![(String::new(), Some(body))];
    for segment in path.split('.') {
        let (name, each) = match segment.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (segment, false),
        };
        let mut next = vec![];
        for (at, value) in current {
            let prefix = if at.is_empty() {
                name.to_owned()
            } else {
                format!("{at}.{name}")
            };
            let child = value.and_then(|v| v.as_object()).and_then(|o| o.get(name));
            if each {
                if let Some(items) = child.and_then(Value::as_array) {
                    for (i, item) in items.iter().enumerate() {
                        next.push((format!("{prefix}[{i}]"), Some(item)));
                    }
                }
            } else {
                next.push((prefix, child));
            }
        }
        current = next;
    }
    current
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn get<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(body, |v, k| v.as_object().and_then(|o| o.get(k)))
}

fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Checks `body` of `operation` against the contract: members, then tax rules.
pub fn check(operation: &str, body: &Value) -> Result<(), Violation> {
    let contract = contract();
    let op = contract
        .operations
        .get(operation)
        .ok_or_else(|| Violation::UnknownOperation(operation.to_owned()))?;
    if let Some((document, _)) = document_members(operation) {
        let doc = &body[document];
        if doc.get("taxType").is_some() && doc.get("taxRule").is_none() {
            return Err(Violation::Deprecated(format!("{document}.taxType")));
        }
    }
    for (path, member) in &op.members {
        let required = member.required
            || (!member.required_when.is_empty()
                && member
                    .required_when
                    .iter()
                    .all(|(other, value)| get(body, other) == Some(value)));
        for (at, value) in resolve(body, path) {
            match value {
                None if required => return Err(Violation::Missing(at)),
                None => {}
                Some(v) if member.kind != "null" && v.is_null() && !required => {}
                Some(v) if member.kind == "null" => {
                    // Present is what matters: sevDesk accepts null or the real thing.
                    let _ = v;
                }
                Some(v) => {
                    if !has_type(v, &member.kind) {
                        return Err(Violation::WrongType {
                            path: at,
                            expected: member.kind.clone(),
                        });
                    }
                    if let Some(allowed) = &member.allowed
                        && !allowed.contains(v)
                    {
                        return Err(Violation::NotAllowed {
                            path: at,
                            value: v.to_string(),
                        });
                    }
                }
            }
        }
    }
    for trailing in &op.trailing {
        if get(body, trailing).is_none() {
            return Err(Violation::Missing(trailing.clone()));
        }
    }
    check_tax(operation, body)
}

/// The document member and its positions' member, for the operations that have tax rules.
fn document_members(operation: &str) -> Option<(&'static str, &'static str)> {
    match operation {
        "saveInvoice" => Some(("invoice", "invoicePosSave")),
        "saveCreditNote" => Some(("creditNote", "creditNotePosSave")),
        _ => None,
    }
}

fn check_tax(operation: &str, body: &Value) -> Result<(), Violation> {
    let Some((document, positions)) = document_members(operation) else {
        return Ok(());
    };
    let doc = &body[document];
    let rule_id = doc["taxRule"]["id"].as_str().unwrap_or_default();
    let rules = &contract().tax_rules;
    let Some(rule) = rules.get(rule_id) else {
        return Err(Violation::NotAllowed {
            path: format!("{document}.taxRule.id"),
            value: rule_id.to_owned(),
        });
    };
    let allowed: &[Decimal] = match &rule.rates {
        Rates::Fixed(rates) => rates,
        Rates::Destination(_) => {
            let country = doc["deliveryAddressCountry"].as_str().unwrap_or_default();
            match contract().destination_rates.get(country) {
                Some(rates) => rates,
                None => return Err(Violation::NeedsDeliveryCountry(rule_id.to_owned())),
            }
        }
    };
    for position in body[positions].as_array().into_iter().flatten() {
        let rate = decimal(&position["taxRate"]).unwrap_or(Decimal::NEGATIVE_ONE);
        if !allowed.iter().any(|a| a.normalize() == rate.normalize()) {
            return Err(Violation::TaxRate {
                rule: rule_id.to_owned(),
                name: rule.name.clone(),
                rate: position["taxRate"].to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invoice() -> Value {
        json!({
            "invoice": {
                "objectName": "Invoice", "mapAll": true, "invoiceDate": "01.12.2026",
                "contact": {"id": 1, "objectName": "Contact"},
                "contactPerson": {"id": 7, "objectName": "SevUser"},
                "discount": 0, "status": "100",
                "addressCountry": {"id": 1, "objectName": "StaticCountry"},
                "taxRate": 0, "taxRule": {"id": "1", "objectName": "TaxRule"},
                "taxText": "Umsatzsteuer ausweisen", "invoiceType": "RE", "currency": "EUR"
            },
            "invoicePosSave": [{"objectName": "InvoicePos", "mapAll": true, "quantity": 1,
                "price": 10.0, "name": "Mug", "taxRate": 19,
                "unity": {"id": 1, "objectName": "Unity"}}],
            "invoicePosDelete": null, "discountSave": null, "discountDelete": null,
            "takeDefaultAddress": false
        })
    }

    #[test]
    fn a_complete_domestic_invoice_passes() {
        assert_eq!(check("saveInvoice", &invoice()), Ok(()));
    }

    #[test]
    fn each_required_member_and_trailing_member_is_enforced() {
        for path in [
            "invoice.contactPerson",
            "invoice.taxRule",
            "invoice.taxText",
            "invoicePosDelete",
            "takeDefaultAddress",
        ] {
            let mut body = invoice();
            let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
            let target = if parent.is_empty() {
                &mut body
            } else {
                &mut body[parent]
            };
            target.as_object_mut().map(|o| o.remove(key));
            assert!(
                matches!(check("saveInvoice", &body), Err(Violation::Missing(_))),
                "{path} removed"
            );
        }
    }

    #[test]
    fn the_deprecated_tax_type_without_a_rule_is_a_422() {
        let mut body = invoice();
        body["invoice"]["taxType"] = json!("default");
        body["invoice"].as_object_mut().map(|o| o.remove("taxRule"));
        let v = check("saveInvoice", &body).unwrap_err();
        assert_eq!(v.status(), 422, "{v}");
    }

    #[test]
    fn rates_outside_the_rule_are_a_422() {
        let mut body = invoice();
        body["invoicePosSave"][0]["taxRate"] = json!(18.98);
        let v = check("saveInvoice", &body).unwrap_err();
        assert!(matches!(v, Violation::TaxRate { .. }), "{v}");
        assert_eq!(v.status(), 422);
    }

    #[test]
    fn one_stop_shop_needs_the_destination_and_its_rates() {
        let mut body = invoice();
        body["invoice"]["taxRule"]["id"] = json!("18");
        body["invoicePosSave"][0]["taxRate"] = json!(20);
        assert!(matches!(
            check("saveInvoice", &body),
            Err(Violation::NeedsDeliveryCountry(_))
        ));
        body["invoice"]["deliveryAddressCountry"] = json!("AT");
        assert_eq!(check("saveInvoice", &body), Ok(()));
        body["invoicePosSave"][0]["taxRate"] = json!(19);
        assert!(matches!(
            check("saveInvoice", &body),
            Err(Violation::TaxRate { .. })
        ));
    }

    #[test]
    fn ids_and_amounts_must_be_json_numbers() {
        let mut body = invoice();
        body["invoice"]["contact"]["id"] = json!("1");
        assert!(matches!(
            check("saveInvoice", &body),
            Err(Violation::WrongType { .. })
        ));
        let mut body = invoice();
        body["invoicePosSave"][0]["price"] = json!("10.00");
        assert!(matches!(
            check("saveInvoice", &body),
            Err(Violation::WrongType { .. })
        ));
    }

    #[test]
    fn an_underachievement_credit_note_needs_its_invoice() {
        let note = json!({
            "creditNote": {
                "objectName": "CreditNote", "mapAll": true, "creditNoteDate": "01.12.2026",
                "contact": {"id": 1, "objectName": "Contact"},
                "contactPerson": {"id": 7, "objectName": "SevUser"},
                "status": "100", "deliveryDate": "01.12.2026",
                "addressCountry": {"id": 1, "objectName": "StaticCountry"},
                "taxRate": 0, "taxRule": {"id": "1", "objectName": "TaxRule"},
                "taxText": "Umsatzsteuer ausweisen", "bookingCategory": "UNDERACHIEVEMENT",
                "currency": "EUR", "header": "Gutschrift"
            },
            "creditNotePosSave": [], "creditNotePosDelete": null, "discountSave": null,
            "discountDelete": null, "takeDefaultAddress": false, "forCashRegister": false
        });
        assert_eq!(
            check("saveCreditNote", &note),
            Err(Violation::Missing("creditNote.refSrcInvoice.id".into()))
        );
        let mut linked = note.clone();
        linked["creditNote"]["refSrcInvoice"] = json!({"id": 5, "objectName": "Invoice"});
        assert_eq!(check("saveCreditNote", &linked), Ok(()));
    }

    #[test]
    fn a_booking_names_its_type_from_the_update_2_list() {
        let booking = json!({"amount": 119.0, "date": 1764547200, "type": "FULL_PAYMENT",
            "checkAccount": {"id": 5002, "objectName": "CheckAccount"}});
        assert_eq!(check("bookAmount", &booking), Ok(()));
        let mut cf = booking.clone();
        cf["type"] = json!("CF");
        assert!(matches!(
            check("bookAmount", &cf),
            Err(Violation::NotAllowed { .. })
        ));
    }
}
