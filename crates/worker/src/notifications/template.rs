//! The subject and text of the customer's e-mail: settings with `{order_name}`-style
//! placeholders, parsed once at start so a typo refuses to start instead of reaching a customer
//! as `{ordr_name}`.
//!
//! Syntax: `{name}` is a placeholder, `{{` and `}}` are literal braces, `\n` in the setting is a
//! line break (environment variables rarely carry real ones). Anything else inside braces, or an
//! unclosed brace, is an error naming the setting.

use std::fmt;

/// The values a template can use.
pub const PLACEHOLDERS: &[&str] = &[
    "order_name",
    "invoice_number",
    "amount",
    "customer_name",
    "bank_details",
];

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{something}` that is not one of [`PLACEHOLDERS`].
    #[error("unknown placeholder {{{0}}} (known: {known})", known = known())]
    Unknown(String),
    /// A `{` without its `}`, or a lone `}`.
    #[error("unbalanced brace at character {0} (write {{{{ or }}}} for a literal brace)")]
    Unbalanced(usize),
}

fn known() -> String {
    PLACEHOLDERS
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(&'static str),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values of one message's placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// `{order_name}`: e.g. `#1001`.
    pub order_name: String,
    /// `{invoice_number}`: sevDesk's number, e.g. `RE-1001`.
    pub invoice_number: String,
    /// `{amount}`: e.g. `119,00 EUR`.
    pub amount: String,
    /// `{customer_name}`: e.g. `Jön Müller`.
    pub customer_name: String,
    /// `{bank_details}`: from the settings.
    pub bank_details: String,
}

impl Fields {
    fn get(&self, name: &str) -> &str {
        match name {
            "order_name" => &self.order_name,
            "invoice_number" => &self.invoice_number,
            "amount" => &self.amount,
            "customer_name" => &self.customer_name,
            _ => &self.bank_details,
        }
    }
}

impl Template {
    /// Parses `source`.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let source = source.replace("\\n", "\n");
        let mut parts = vec![];
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, n)| *n) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|(_, n)| *n) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err(TemplateError::Unbalanced(at)),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, '{')) | None => return Err(TemplateError::Unbalanced(at)),
                            Some((_, n)) => name.push(n),
                        }
                    }
                    let field = PLACEHOLDERS
                        .iter()
                        .find(|p| **p == name.trim())
                        .ok_or(TemplateError::Unknown(name))?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field(field));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self { parts })
    }

    /// The text with `fields` filled in.
    pub fn render(&self, fields: &Fields) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(t) => t.as_str(),
                Part::Field(name) => fields.get(name),
            })
            .collect()
    }

    /// Whether it uses `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Field(n) if *n == name))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => f.write_str(&t.replace('{', "{{").replace('}', "}}"))?,
                Part::Field(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// An amount as the German texts show it: `119,00 EUR`.
pub fn amount_text(amount: rust_decimal::Decimal, currency: &str) -> String {
    let cents =
        amount.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    format!("{cents:.2} {currency}").replacen('.', ",", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            order_name: "#1001".into(),
            invoice_number: "RE-1001".into(),
            amount: "119,00 EUR".into(),
            customer_name: "Jön Müller".into(),
            bank_details: "IBAN DE02 1203 0000 0000 2020 51".into(),
        }
    }

    #[test]
    fn placeholders_are_filled_in_and_line_breaks_are_read() {
        let t = Template::parse("Hallo {customer_name},\\nRechnung {invoice_number} zu {order_name}: {amount}.\\n{bank_details}").unwrap();
        assert_eq!(
            t.render(&fields()),
            "Hallo Jön Müller,\nRechnung RE-1001 zu #1001: 119,00 EUR.\nIBAN DE02 1203 0000 0000 2020 51"
        );
        assert!(t.uses("bank_details"));
        assert!(
            !Template::parse("{order_name}")
                .unwrap()
                .uses("bank_details")
        );
    }

    #[test]
    fn an_unknown_placeholder_is_refused_with_its_name_and_the_known_ones() {
        let error = Template::parse("Bestellung {ordr_name}").unwrap_err();
        assert_eq!(error, TemplateError::Unknown("ordr_name".into()));
        let message = error.to_string();
        assert!(
            message.contains("{ordr_name}") && message.contains("{order_name}"),
            "{message}"
        );
    }

    #[test]
    fn braces_must_balance_and_double_braces_are_literal() {
        assert_eq!(
            Template::parse("{order_name").unwrap_err(),
            TemplateError::Unbalanced(0)
        );
        assert!(matches!(
            Template::parse("a } b"),
            Err(TemplateError::Unbalanced(2))
        ));
        let t = Template::parse("{{literal}} {order_name}").unwrap();
        assert_eq!(t.render(&fields()), "{literal} #1001");
        assert_eq!(t.to_string(), "{{literal}} {order_name}");
    }

    #[test]
    fn amounts_read_the_german_way() {
        assert_eq!(amount_text("119".parse().unwrap(), "EUR"), "119,00 EUR");
        assert_eq!(amount_text("52.505".parse().unwrap(), "EUR"), "52,51 EUR");
    }
}
