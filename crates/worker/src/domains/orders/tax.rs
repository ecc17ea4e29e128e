//! Which sevDesk tax rule (sevdesk-Update 2.0) an order's invoice is issued under.
//!
//! The decision is one table, decided from facts Shopify sends with the order and two settings
//! of the merchant. It is a pure function, so every row has a test, and an order that fits no
//! row is never booked under a guessed rule: it is dead-lettered `tax_rule_undecidable` with the
//! facts that were looked at, for a person to decide.
//!
//! The seller is a German business (sevDesk's tax rules are the German ones). Facts:
//! - **destination**: the shipping address's country, else the billing address's; a POS sale
//!   without either happened at the shop, in Germany.
//! - **VAT id**: a customer's VAT registration number. Shopify orders carry no standard field
//!   for it; hookline reads an order note attribute named `vat_id`, `vat_number`, `vat`,
//!   `ust_id`, `ustid`, `ust-idnr` or `tax_id` (case-insensitive), which checkout apps for EU
//!   B2B sales write.
//! - **rates**: the position rates (Shopify's per-line `tax_lines`, summed per line).
//! - settings: `HOOKLINE_SEVDESK_SMALL_BUSINESS` (§ 19 UStG, no VAT charged at all) and
//!   `HOOKLINE_SEVDESK_OSS` (the shop is registered for the One Stop Shop and charges EU
//!   consumers their country's VAT).
//!
//! | # | facts | rule | positions |
//! |---|---|---|---|
//! | 1 | small business | 11 (§ 19 UStG) | all 0 % |
//! | 2 | destination DE (or POS without address) | 1 (domestic) | 0 / 7 / 19 % |
//! | 3 | EU destination, VAT id, no VAT charged | 3 (intra-community supply) | all 0 % |
//! | 4 | EU destination, no VAT id, OSS on | 18 (OSS goods) + `deliveryAddressCountry` | the destination's rates |
//! | 5 | EU destination, no VAT id, OSS off | 1 (domestic, under the delivery threshold) | 0 / 7 / 19 % |
//! | 6 | destination outside the EU, no VAT charged | 2 (export) | all 0 % |
//! | — | anything else (rates that do not fit the row, VAT id with VAT charged, VAT charged on an export, no destination) | dead letter `tax_rule_undecidable` | — |

use std::fmt;

use rust_decimal::Decimal;

/// The merchant's tax settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaxSettings {
    /// Kleinunternehmer under § 19 UStG: no VAT on any invoice.
    pub small_business: bool,
    /// Registered for the One Stop Shop: EU consumers pay their own country's VAT.
    pub oss: bool,
}

/// The facts of one order the decision is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxFacts {
    /// ISO 3166-1 alpha-2 country the goods go to, upper case.
    pub destination: Option<String>,
    /// The customer's VAT registration number, if the order names one.
    pub vat_id: Option<String>,
    /// Every distinct position rate, in percent.
    pub rates: Vec<Decimal>,
    /// Sold at a point of sale (Shopify POS).
    pub pos: bool,
}

impl fmt::Display for TaxFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rates: Vec<String> = self
            .rates
            .iter()
            .map(|r| format!("{}%", r.normalize()))
            .collect();
        write!(
            f,
            "destination {}, VAT id {}, rates [{}], POS {}",
            self.destination.as_deref().unwrap_or("unknown"),
            if self.vat_id.is_some() {
                "given"
            } else {
                "none"
            },
            rates.join(", "),
            self.pos
        )
    }
}

/// The regime an invoice is issued under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regime {
    /// Rule 1: taxed in Germany.
    Domestic,
    /// Rule 2: export outside the EU, tax free.
    Export,
    /// Rule 3: intra-community supply to a business with a VAT id, tax free.
    IntraCommunity,
    /// Rule 11: small business, no VAT.
    SmallBusiness,
    /// Rule 18: One Stop Shop, taxed at the destination's rates.
    OneStopShop {
        /// The destination country (ISO code), sent as `deliveryAddressCountry`.
        country: String,
    },
}

impl Regime {
    /// sevDesk's `taxRule.id`.
    pub fn rule_id(&self) -> &'static str {
        match self {
            Regime::Domestic => "1",
            Regime::Export => "2",
            Regime::IntraCommunity => "3",
            Regime::SmallBusiness => "11",
            Regime::OneStopShop { .. } => "18",
        }
    }

    /// The `taxText` printed on the document.
    pub fn tax_text(&self) -> String {
        match self {
            Regime::Domestic => "Umsatzsteuer ausweisen".into(),
            Regime::Export => "Steuerfreie Ausfuhrlieferung (§ 4 Nr. 1a UStG)".into(),
            Regime::IntraCommunity => {
                "Steuerfreie innergemeinschaftliche Lieferung (§ 4 Nr. 1b UStG)".into()
            }
            Regime::SmallBusiness => "Gemäß § 19 UStG wird keine Umsatzsteuer berechnet.".into(),
            Regime::OneStopShop { country } => {
                format!("Umsatzsteuer des Bestimmungslands {country} (One Stop Shop)")
            }
        }
    }

    /// `deliveryAddressCountry`, for the rules that need it.
    pub fn delivery_country(&self) -> Option<&str> {
        match self {
            Regime::OneStopShop { country } => Some(country),
            _ => None,
        }
    }

    /// Whether `rate` is a position rate this regime allows.
    pub fn allows(&self, rate: Decimal) -> bool {
        let allowed: &[&str] = match self {
            Regime::Domestic => &["0", "7", "19"],
            Regime::Export | Regime::IntraCommunity | Regime::SmallBusiness => &["0"],
            Regime::OneStopShop { country } => eu_rates(country).unwrap_or(&[]),
        };
        allowed
            .iter()
            .any(|a| a.parse::<Decimal>().is_ok_and(|a| a == rate.normalize()))
    }
}

/// The order fits no row of the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no tax rule fits: {why} ({facts})")]
pub struct Undecidable {
    /// Which row came closest and why it does not fit.
    pub why: String,
    /// The facts looked at.
    pub facts: String,
}

/// VAT rates (percent) of the EU member states other than Germany, for the One Stop Shop.
/// Checked against the member states' published rates in 2026; a rate change is a one-line
/// edit here.
const EU_RATES: &[(&str, &[&str])] = &[
    ("AT", &["0", "10", "13", "20"]),
    ("BE", &["0", "6", "12", "21"]),
    ("BG", &["0", "9", "20"]),
    ("CY", &["0", "3", "5", "9", "19"]),
    ("CZ", &["0", "12", "21"]),
    ("DK", &["0", "25"]),
    ("EE", &["0", "9", "13", "24"]),
    ("ES", &["0", "4", "10", "21"]),
    ("FI", &["0", "10", "13.5", "14", "25.5"]),
    ("FR", &["0", "2.1", "5.5", "10", "20"]),
    ("GR", &["0", "6", "13", "24"]),
    ("HR", &["0", "5", "13", "25"]),
    ("HU", &["0", "5", "18", "27"]),
    ("IE", &["0", "4.8", "9", "13.5", "23"]),
    ("IT", &["0", "4", "5", "10", "22"]),
    ("LT", &["0", "5", "9", "12", "21"]),
    ("LU", &["0", "3", "8", "14", "17"]),
    ("LV", &["0", "5", "12", "21"]),
    ("MT", &["0", "5", "7", "18"]),
    ("NL", &["0", "9", "21"]),
    ("PL", &["0", "5", "8", "23"]),
    ("PT", &["0", "6", "13", "23"]),
    ("RO", &["0", "11", "21"]),
    ("SE", &["0", "6", "12", "25"]),
    ("SI", &["0", "5", "9.5", "22"]),
    ("SK", &["0", "5", "19", "23"]),
];

fn eu_rates(country: &str) -> Option<&'static [&'static str]> {
    EU_RATES
        .iter()
        .find(|(c, _)| *c == country)
        .map(|(_, rates)| *rates)
}

/// Decides the regime of an order, or says why none fits.
pub fn decide(settings: TaxSettings, facts: &TaxFacts) -> Result<Regime, Undecidable> {
    let undecidable = |why: &str| Undecidable {
        why: why.to_owned(),
        facts: facts.to_string(),
    };
    let all_fit = |regime: &Regime| facts.rates.iter().all(|r| regime.allows(*r));
    let checked = |regime: Regime, why: &str| {
        if all_fit(&regime) {
            Ok(regime)
        } else {
            Err(undecidable(why))
        }
    };
    if settings.small_business {
        return checked(
            Regime::SmallBusiness,
            "a small business (§ 19 UStG) charges no VAT, but the order has VAT",
        );
    }
    let destination = match (&facts.destination, facts.pos) {
        (Some(country), _) => country.as_str(),
        (None, true) => "DE",
        (None, false) => return Err(undecidable("the order has no shipping or billing country")),
    };
    if destination == "DE" {
        return checked(
            Regime::Domestic,
            "a domestic sale allows only 0, 7 and 19 % VAT",
        );
    }
    if eu_rates(destination).is_some() {
        if facts.vat_id.is_some() {
            return checked(
                Regime::IntraCommunity,
                "a customer with a VAT id in another EU country was charged VAT",
            );
        }
        if settings.oss {
            return checked(
                Regime::OneStopShop {
                    country: destination.to_owned(),
                },
                "the rates are not the destination country's (One Stop Shop)",
            );
        }
        return checked(
            Regime::Domestic,
            "without the One Stop Shop an EU consumer pays German VAT (0, 7 or 19 %)",
        );
    }
    checked(
        Regime::Export,
        "VAT was charged on an export outside the EU",
    )
}

/// Names of order note attributes that carry the customer's VAT id (compared case-insensitively).
pub const VAT_ID_ATTRIBUTES: &[&str] = &[
    "vat_id",
    "vat_number",
    "vat",
    "ust_id",
    "ustid",
    "ust-idnr",
    "tax_id",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(destination: Option<&str>, vat_id: bool, rates: &[&str]) -> TaxFacts {
        TaxFacts {
            destination: destination.map(str::to_owned),
            vat_id: vat_id.then(|| "ATU12345678".to_owned()),
            rates: rates.iter().map(|r| r.parse().unwrap()).collect(),
            pos: false,
        }
    }

    const PLAIN: TaxSettings = TaxSettings {
        small_business: false,
        oss: false,
    };
    const OSS: TaxSettings = TaxSettings {
        small_business: false,
        oss: true,
    };

    #[test]
    fn row_1_small_business_issues_rule_11_without_vat() {
        let small = TaxSettings {
            small_business: true,
            oss: false,
        };
        assert_eq!(
            decide(small, &facts(Some("DE"), false, &["0"])),
            Ok(Regime::SmallBusiness)
        );
        assert!(decide(small, &facts(Some("DE"), false, &["19"])).is_err());
    }

    #[test]
    fn row_2_domestic_is_rule_1_with_german_rates() {
        let regime = decide(PLAIN, &facts(Some("DE"), false, &["19", "7", "0"])).unwrap();
        assert_eq!(regime.rule_id(), "1");
        let err = decide(PLAIN, &facts(Some("DE"), false, &["18.98"])).unwrap_err();
        assert!(err.facts.contains("18.98%"), "{err}");
    }

    #[test]
    fn row_2_a_pos_sale_without_address_is_domestic() {
        let mut pos = facts(None, false, &["19"]);
        pos.pos = true;
        assert_eq!(decide(PLAIN, &pos), Ok(Regime::Domestic));
    }

    #[test]
    fn row_3_eu_business_with_vat_id_and_no_tax_is_rule_3() {
        let regime = decide(OSS, &facts(Some("AT"), true, &["0"])).unwrap();
        assert_eq!(regime.rule_id(), "3");
        assert!(decide(OSS, &facts(Some("AT"), true, &["20"])).is_err());
    }

    #[test]
    fn row_4_eu_consumer_under_oss_is_rule_18_at_the_destination_rate() {
        let regime = decide(OSS, &facts(Some("AT"), false, &["20", "10"])).unwrap();
        assert_eq!(regime.rule_id(), "18");
        assert_eq!(regime.delivery_country(), Some("AT"));
        // German rates on an OSS sale to Austria do not fit.
        assert!(decide(OSS, &facts(Some("AT"), false, &["19"])).is_err());
    }

    #[test]
    fn row_5_eu_consumer_without_oss_pays_german_vat() {
        assert_eq!(
            decide(PLAIN, &facts(Some("FR"), false, &["19"])),
            Ok(Regime::Domestic)
        );
        assert!(decide(PLAIN, &facts(Some("FR"), false, &["20"])).is_err());
    }

    #[test]
    fn row_6_export_outside_the_eu_is_rule_2_without_vat() {
        assert_eq!(
            decide(PLAIN, &facts(Some("US"), false, &["0"])),
            Ok(Regime::Export)
        );
        // Swiss VAT collected by the shop: not a German export invoice.
        let err = decide(PLAIN, &facts(Some("CH"), false, &["8.1"])).unwrap_err();
        assert!(err.why.contains("export"), "{err}");
    }

    #[test]
    fn no_destination_is_undecidable() {
        assert!(decide(PLAIN, &facts(None, false, &["19"])).is_err());
    }
}
