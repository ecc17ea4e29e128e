//! Shopify's GraphQL Admin API, played for the orders hookline reads:
//! `POST /shops/{shop}/admin/api/{version}/graphql.json`.
//!
//! The sandbox keeps orders as their webhooks carry them (REST-shaped); a query is answered by
//! building each order's GraphQL node from that ([`order_node`], [`refund_node`]: gids, money as
//! `MoneyBag`s with Shopify's decimal strings such as `"119.0"`, upper-case enums, connections
//! with `nodes` and `pageInfo`) and returning **only the fields the query selects**, so a client
//! that forgets to ask for a field does not get it, and one that asks for a field the type does
//! not have gets Shopify's `undefinedField` error instead of a made-up value.
//!
//! Root fields answered: `orders(first, after, sortKey: UPDATED_AT, query: "updated_at:>='…'")`
//! (sorted by `updated_at`, then id; opaque cursors), `order(id:)`, `refund(id:)`, and what a
//! shop has set up (`shop`, `currentAppInstallation`, `publicApiVersions`,
//! `webhookSubscriptions`, the mutation `webhookSubscriptionCreate`: see [`super::setup`]).
//! Anything else is a GraphQL error, never a fake success. Connections answer both `nodes` and
//! `edges { node cursor }`; a mutation costs 10 points.
//!
//! Cost and throttling as Shopify documents them: a query's requested cost is computed before it
//! runs (scalars 0, objects 1, a connection `2 + first × its node`), more than 1000 is refused
//! with `MAX_COST_EXCEEDED`; the shop's leaky bucket (a standard shop's: 2000 points, restoring
//! 100 per second) must hold the requested cost or the answer is HTTP 200 with a `THROTTLED`
//! error; afterwards the difference to the actual cost (from what was returned) is refunded, and
//! every answer carries `extensions.cost`.

use serde_json::{Map, Value, json};

/// One field of a selection set.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The response key's alias, if any.
    pub alias: Option<String>,
    /// The field's name.
    pub name: String,
    /// Its arguments.
    pub args: Vec<(String, Arg)>,
    /// Its sub-selection (empty for scalars and enums).
    pub selection: Vec<Field>,
}

/// An argument's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `$name`.
    Var(String),
    /// A literal.
    Value(Value),
    /// An input object literal, `{uri: $uri, format: JSON}`.
    Object(Vec<(String, Arg)>),
}

impl Arg {
    fn resolve(&self, variables: &Value) -> Value {
        match self {
            Arg::Var(v) => variables.get(v).cloned().unwrap_or(Value::Null),
            Arg::Value(v) => v.clone(),
            Arg::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, a)| (k.clone(), a.resolve(variables)))
                    .collect(),
            ),
        }
    }
}

/// A query or a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `query` (or a bare selection set).
    Query,
    /// `mutation`.
    Mutation,
}

impl Field {
    /// The response key: the alias, else the name.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    /// The argument `name`, variables resolved.
    pub fn arg(&self, name: &str, variables: &Value) -> Option<Value> {
        let (_, arg) = self.args.iter().find(|(n, _)| n == name)?;
        Some(arg.resolve(variables)).filter(|v| !v.is_null())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Punct(char),
    Spread,
    Str(String),
    Num(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() || c == ',' || c == '\u{feff}' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' | '}' | '(' | ')' | ':' | '$' | '!' | '[' | ']' | '=' | '@' => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
            '.' if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') => {
                tokens.push(Token::Spread);
                i += 3;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') => {
                            let escaped = chars.get(i + 1).copied().unwrap_or('\\');
                            s.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                            i += 2;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                tokens.push(Token::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '+' | '-'))
                {
                    i += 1;
                }
                tokens.push(Token::Num(chars[start..i].iter().collect()));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Name(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.next() {
            Some(Token::Punct(p)) if p == c => Ok(()),
            other => Err(format!("expected {c:?}, found {other:?}")),
        }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Name(n)) => Ok(n),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, String> {
        self.expect('{')?;
        let mut fields = vec![];
        loop {
            match self.peek() {
                Some(Token::Punct('}')) => {
                    self.at += 1;
                    return Ok(fields);
                }
                Some(Token::Spread) => {
                    return Err("fragments are not supported by the sandbox".into());
                }
                Some(Token::Punct('@')) => {
                    return Err("directives are not supported by the sandbox".into());
                }
                None => return Err("unterminated selection set".into()),
                _ => fields.push(self.field()?),
            }
        }
    }

    fn field(&mut self) -> Result<Field, String> {
        let first = self.name()?;
        let (alias, name) = if self.peek() == Some(&Token::Punct(':')) {
            self.at += 1;
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        let mut args = vec![];
        if self.peek() == Some(&Token::Punct('(')) {
            self.at += 1;
            while self.peek() != Some(&Token::Punct(')')) {
                let arg = self.name()?;
                self.expect(':')?;
                args.push((arg, self.value()?));
            }
            self.at += 1;
        }
        let selection = if self.peek() == Some(&Token::Punct('{')) {
            self.selection_set()?
        } else {
            vec![]
        };
        Ok(Field {
            alias,
            name,
            args,
            selection,
        })
    }

    fn value(&mut self) -> Result<Arg, String> {
        match self.next() {
            Some(Token::Punct('$')) => Ok(Arg::Var(self.name()?)),
            Some(Token::Str(s)) => Ok(Arg::Value(Value::String(s))),
            Some(Token::Num(n)) => n
                .parse::<i64>()
                .map(|i| Arg::Value(json!(i)))
                .or_else(|_| n.parse::<f64>().map(|f| Arg::Value(json!(f))))
                .map_err(|_| format!("bad number {n}")),
            Some(Token::Name(n)) => Ok(Arg::Value(match n.as_str() {
                "true" => json!(true),
                "false" => json!(false),
                "null" => Value::Null,
                _ => Value::String(n),
            })),
            Some(Token::Punct('{')) => {
                let mut fields = vec![];
                while self.peek() != Some(&Token::Punct('}')) {
                    if self.peek().is_none() {
                        return Err("unterminated input object".into());
                    }
                    let key = self.name()?;
                    self.expect(':')?;
                    fields.push((key, self.value()?));
                }
                self.at += 1;
                Ok(Arg::Object(fields))
            }
            other => Err(format!("unsupported argument value {other:?}")),
        }
    }

    /// `query Name($a: T!, …) { … }`, `mutation Name(…) { … }` or `{ … }`.
    fn operation(&mut self) -> Result<(Operation, Vec<Field>), String> {
        let mut operation = Operation::Query;
        match self.peek() {
            Some(Token::Name(n)) if n == "query" || n == "mutation" => {
                if n == "mutation" {
                    operation = Operation::Mutation;
                }
                self.at += 1;
                if let Some(Token::Name(_)) = self.peek() {
                    self.at += 1;
                }
                if self.peek() == Some(&Token::Punct('(')) {
                    let mut depth = 0;
                    loop {
                        match self.next() {
                            Some(Token::Punct('(')) => depth += 1,
                            Some(Token::Punct(')')) => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            None => return Err("unterminated variable definitions".into()),
                            _ => {}
                        }
                    }
                }
            }
            Some(Token::Name(n)) if n == "subscription" => {
                return Err(format!("{n}s are not supported by the sandbox"));
            }
            _ => {}
        }
        let fields = self.selection_set()?;
        if self.peek().is_some() {
            return Err("more than one operation is not supported by the sandbox".into());
        }
        Ok((operation, fields))
    }
}

/// Parses a document of one query or mutation into its kind and root selection.
pub fn parse_operation(document: &str) -> Result<(Operation, Vec<Field>), String> {
    Parser {
        tokens: tokenize(document)?,
        at: 0,
    }
    .operation()
}

/// Parses a query document into its root selection (a mutation is refused).
pub fn parse(query: &str) -> Result<Vec<Field>, String> {
    match parse_operation(query)? {
        (Operation::Query, fields) => Ok(fields),
        (Operation::Mutation, _) => Err("a mutation where a query was expected".into()),
    }
}

fn is_connection(field: &Field) -> bool {
    field
        .selection
        .iter()
        .any(|f| matches!(f.name.as_str(), "nodes" | "edges" | "pageInfo"))
}

fn first_of(field: &Field, variables: &Value) -> Option<f64> {
    field
        .arg("first", variables)
        .or_else(|| field.arg("last", variables))
        .and_then(|v| v.as_f64())
}

/// The requested cost of a selection, as Shopify computes it before running a query: scalars
/// and enums 0, an object 1 plus its fields, a connection `2 + first × (1 + its node's fields)`.
pub fn requested_cost(selection: &[Field], variables: &Value) -> f64 {
    selection.iter().map(|f| field_cost(f, variables)).sum()
}

fn field_cost(field: &Field, variables: &Value) -> f64 {
    if field.selection.is_empty() {
        return 0.0;
    }
    if is_connection(field) {
        let per_node: f64 = field
            .selection
            .iter()
            .map(|f| match f.name.as_str() {
                "pageInfo" => 0.0,
                "nodes" => 1.0 + requested_cost(&f.selection, variables),
                "edges" => f
                    .selection
                    .iter()
                    .filter(|e| e.name == "node")
                    .map(|n| 1.0 + requested_cost(&n.selection, variables))
                    .sum(),
                _ => field_cost(f, variables),
            })
            .sum();
        return 2.0 + first_of(field, variables).unwrap_or(1.0) * per_node;
    }
    1.0 + requested_cost(&field.selection, variables)
}

/// The actual cost of what was returned: like [`requested_cost`], with the connections' real
/// sizes and nothing for `null` objects.
pub fn actual_cost(selection: &[Field], value: &Value) -> f64 {
    selection
        .iter()
        .map(|f| actual_field_cost(f, value.get(f.key()).unwrap_or(&Value::Null)))
        .sum()
}

fn actual_field_cost(field: &Field, value: &Value) -> f64 {
    if field.selection.is_empty() || value.is_null() {
        return 0.0;
    }
    if is_connection(field) {
        let nodes = field
            .selection
            .iter()
            .find(|f| f.name == "nodes")
            .map_or(0.0, |n| {
                value
                    .get(n.key())
                    .and_then(Value::as_array)
                    .map_or(0.0, |list| {
                        list.iter()
                            .map(|node| 1.0 + actual_cost(&n.selection, node))
                            .sum()
                    })
            });
        let edges = field
            .selection
            .iter()
            .find(|f| f.name == "edges")
            .map_or(0.0, |e| {
                let node = e.selection.iter().find(|n| n.name == "node");
                value
                    .get(e.key())
                    .and_then(Value::as_array)
                    .map_or(0.0, |list| {
                        list.iter()
                            .map(|edge| {
                                node.map_or(0.0, |n| {
                                    1.0 + actual_cost(&n.selection, &edge[n.key()])
                                })
                            })
                            .sum()
                    })
            });
        return 2.0 + nodes + edges;
    }
    match value {
        Value::Array(list) => list
            .iter()
            .map(|item| 1.0 + actual_cost(&field.selection, item))
            .sum(),
        other => 1.0 + actual_cost(&field.selection, other),
    }
}

/// `value` (a full node of type `type_name`) cut down to `selection`; connections honour
/// `first`. A selected field the node does not have is Shopify's `undefinedField`.
pub fn project(
    value: &Value,
    selection: &[Field],
    variables: &Value,
    type_name: &str,
) -> Result<Value, String> {
    let Some(object) = value.as_object() else {
        return Ok(value.clone());
    };
    let mut out = Map::new();
    for field in selection {
        if field.name == "__typename" {
            out.insert(field.key().to_owned(), json!(type_name));
            continue;
        }
        let Some(found) = object.get(&field.name) else {
            return Err(format!(
                "Field '{}' doesn't exist on type '{type_name}'",
                field.name
            ));
        };
        let child_type = object
            .get("__type")
            .and_then(|t| t.get(&field.name))
            .and_then(Value::as_str)
            .unwrap_or(&field.name)
            .to_owned();
        let projected = match (found, field.selection.is_empty()) {
            (Value::Null, _) => Value::Null,
            (Value::Object(_) | Value::Array(_), true) if !matches!(found, Value::Array(a) if a.iter().all(|v| !v.is_object())) =>
            {
                return Err(format!(
                    "Field must have selections (field '{}' returns {child_type} but has no selections.)",
                    field.name
                ));
            }
            (_, true) => found.clone(),
            (Value::Array(list), false) => {
                let limit = first_of(field, variables).map_or(list.len(), |f| f as usize);
                Value::Array(
                    list.iter()
                        .take(limit)
                        .map(|item| project(item, &field.selection, variables, &child_type))
                        .collect::<Result<_, _>>()?,
                )
            }
            (Value::Object(_), false) if is_connection(field) => {
                let nodes = found
                    .get("nodes")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let limit = first_of(field, variables).map_or(nodes.len(), |f| f as usize);
                let offset = field
                    .arg("after", variables)
                    .and_then(|a| a.as_str().map(str::to_owned))
                    .and_then(|a| decode_offset(&a))
                    .unwrap_or(0);
                let page: Vec<Value> = nodes.iter().skip(offset).take(limit).cloned().collect();
                let end = offset + page.len();
                let edges: Vec<Value> = page
                    .iter()
                    .enumerate()
                    .map(|(i, node)| json!({"node": node, "cursor": encode_offset(offset + i + 1)}))
                    .collect();
                let connection = json!({
                    "nodes": page,
                    "edges": edges,
                    "pageInfo": {
                        "hasNextPage": end < nodes.len(),
                        "hasPreviousPage": offset > 0,
                        "endCursor": (!page.is_empty()).then(|| encode_offset(end)),
                        "startCursor": (!page.is_empty()).then(|| encode_offset(offset + 1)),
                    },
                });
                project(&connection, &field.selection, variables, &child_type)?
            }
            (other, false) => project(other, &field.selection, variables, &child_type)?,
        };
        out.insert(field.key().to_owned(), projected);
    }
    Ok(Value::Object(out))
}

/// An opaque cursor (base64 of a position), as Shopify's look.
pub fn encode_cursor(position: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = position.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

/// The position in a cursor made by [`encode_cursor`]; `None` for anything else.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = vec![];
    for c in cursor.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
}

fn encode_offset(offset: usize) -> String {
    encode_cursor(&format!("offset:{offset}"))
}

fn decode_offset(cursor: &str) -> Option<usize> {
    decode_cursor(cursor)?.strip_prefix("offset:")?.parse().ok()
}

/// Shopify's `Decimal` text: `"25.00"` → `"25.0"`, `"4.75"` stays, a number becomes text.
fn decimal(value: &Value) -> Value {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Value::Null,
    };
    let Ok(d) = text.parse::<rust_decimal::Decimal>() else {
        return Value::String(text);
    };
    let mut s = d.normalize().to_string();
    if !s.contains('.') {
        s.push_str(".0");
    }
    Value::String(s)
}

fn money(value: &Value, currency: &str) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    let m = json!({"amount": decimal(value), "currencyCode": currency});
    json!({"shopMoney": m, "presentmentMoney": m})
}

fn gid(kind: &str, id: &Value) -> Value {
    match id {
        Value::Number(n) => json!(format!("gid://shopify/{kind}/{n}")),
        Value::String(s) => json!(format!("gid://shopify/{kind}/{s}")),
        _ => Value::Null,
    }
}

/// Shopify's `DateTime`: UTC, to the second (`2026-11-20T15:15:02Z`).
fn utc(value: &Value) -> Value {
    value
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map_or(Value::Null, |t| {
            json!(
                t.with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
}

fn upper(value: &Value) -> Value {
    value
        .as_str()
        .map_or(Value::Null, |s| json!(s.to_ascii_uppercase()))
}

fn connection(nodes: Vec<Value>) -> Value {
    json!({ "nodes": nodes })
}

fn list<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_or_null(value: &Value, key: &str) -> Value {
    value.get(key).cloned().unwrap_or(Value::Null)
}

fn tax_lines(value: &Value, currency: &str) -> Value {
    list(value, "tax_lines")
        .map(|t| {
            json!({
                "title": str_or_null(t, "title"),
                "rate": t.get("rate").and_then(Value::as_f64),
                "ratePercentage": t.get("rate").and_then(Value::as_f64).map(|r| r * 100.0),
                "priceSet": money(&str_or_null(t, "price"), currency),
                "channelLiable": false,
            })
        })
        .collect()
}

fn discount_allocations(value: &Value, currency: &str) -> Value {
    list(value, "discount_allocations")
        .map(|d| json!({"allocatedAmountSet": money(&str_or_null(d, "amount"), currency)}))
        .collect()
}

fn address(value: &Value) -> Value {
    if !value.is_object() {
        return Value::Null;
    }
    json!({
        "firstName": str_or_null(value, "first_name"),
        "lastName": str_or_null(value, "last_name"),
        "company": str_or_null(value, "company"),
        "address1": str_or_null(value, "address1"),
        "address2": str_or_null(value, "address2"),
        "zip": str_or_null(value, "zip"),
        "city": str_or_null(value, "city"),
        "province": str_or_null(value, "province"),
        "countryCodeV2": str_or_null(value, "country_code"),
        "phone": str_or_null(value, "phone"),
    })
}

/// The GraphQL `Order` of a stored (webhook-shaped) order.
pub fn order_node(order: &Value) -> Value {
    let currency = order["currency"].as_str().unwrap_or("EUR");
    let customer = match order.get("customer") {
        Some(c) if c.is_object() => json!({
            "id": gid("Customer", &c["id"]),
            "firstName": str_or_null(c, "first_name"),
            "lastName": str_or_null(c, "last_name"),
            "defaultEmailAddress": c.get("email").filter(|e| e.is_string()).map(|e| json!({"emailAddress": e})),
        }),
        _ => Value::Null,
    };
    let line_items = list(order, "line_items")
        .map(|l| {
            json!({
                "id": gid("LineItem", &l["id"]),
                "title": str_or_null(l, "title"),
                "name": str_or_null(l, "title"),
                "quantity": str_or_null(l, "quantity"),
                "currentQuantity": l.get("current_quantity").cloned().unwrap_or_else(|| str_or_null(l, "quantity")),
                "sku": str_or_null(l, "sku"),
                "originalUnitPriceSet": money(&str_or_null(l, "price"), currency),
                "taxLines": tax_lines(l, currency),
                "discountAllocations": discount_allocations(l, currency),
            })
        })
        .collect();
    let shipping_lines = list(order, "shipping_lines")
        .map(|s| {
            json!({
                "title": str_or_null(s, "title"),
                "originalPriceSet": money(&str_or_null(s, "price"), currency),
                "taxLines": tax_lines(s, currency),
                "discountAllocations": discount_allocations(s, currency),
            })
        })
        .collect();
    json!({
        "id": gid("Order", &order["id"]),
        "legacyResourceId": order["id"].to_string(),
        "name": str_or_null(order, "name"),
        "email": str_or_null(order, "email"),
        "createdAt": utc(&str_or_null(order, "created_at")),
        "updatedAt": utc(&str_or_null(order, "updated_at")),
        "processedAt": utc(&str_or_null(order, "processed_at")),
        "cancelledAt": utc(&str_or_null(order, "cancelled_at")),
        "cancelReason": upper(&str_or_null(order, "cancel_reason")),
        "currencyCode": currency,
        "displayFinancialStatus": upper(&str_or_null(order, "financial_status")),
        "taxesIncluded": order.get("taxes_included").and_then(Value::as_bool).unwrap_or(false),
        "sourceName": str_or_null(order, "source_name"),
        "paymentGatewayNames": order.get("payment_gateway_names").cloned().unwrap_or_else(|| json!([])),
        "totalPriceSet": money(&str_or_null(order, "total_price"), currency),
        "subtotalPriceSet": money(&str_or_null(order, "subtotal_price"), currency),
        "totalTaxSet": money(&str_or_null(order, "total_tax"), currency),
        "customer": customer,
        "billingAddress": address(&str_or_null(order, "billing_address")),
        "shippingAddress": address(&str_or_null(order, "shipping_address")),
        "customAttributes": list(order, "note_attributes").map(|a| json!({"key": str_or_null(a, "name"), "value": str_or_null(a, "value")})).collect::<Vec<_>>(),
        "lineItems": connection(line_items),
        "shippingLines": connection(shipping_lines),
        "refunds": list(order, "refunds").map(|r| refund_node(r, currency)).collect::<Vec<_>>(),
        "__type": {
            "customer": "Customer",
            "billingAddress": "MailingAddress",
            "shippingAddress": "MailingAddress",
            "lineItems": "LineItemConnection",
            "shippingLines": "ShippingLineConnection",
            "refunds": "Refund",
            "totalPriceSet": "MoneyBag",
        },
    })
}

/// The GraphQL `Refund` of a stored (webhook-shaped) refund of an order in `currency`.
pub fn refund_node(refund: &Value, currency: &str) -> Value {
    let lines = list(refund, "refund_line_items")
        .map(|l| {
            let item = &l["line_item"];
            json!({
                "quantity": str_or_null(l, "quantity"),
                "subtotalSet": money(&str_or_null(l, "subtotal"), currency),
                "totalTaxSet": money(&str_or_null(l, "total_tax"), currency),
                "lineItem": {
                    "id": gid("LineItem", &item["id"]),
                    "title": str_or_null(item, "title"),
                    "sku": str_or_null(item, "sku"),
                    "taxLines": tax_lines(item, currency),
                },
            })
        })
        .collect();
    let shipping = list(refund, "refund_shipping_lines")
        .map(|s| {
            json!({
                "subtotalAmountSet": money(&s["subtotal_amount_set"]["shop_money"]["amount"], currency),
                "taxAmountSet": money(&s["tax_amount_set"]["shop_money"]["amount"], currency),
                "shippingLine": s.get("shipping_line").filter(|l| l.is_object()).map(|l| json!({"title": str_or_null(l, "title")})),
            })
        })
        .collect();
    let transactions = list(refund, "transactions")
        .map(|t| {
            json!({
                "kind": upper(&str_or_null(t, "kind")),
                "status": upper(&str_or_null(t, "status")),
                "gateway": str_or_null(t, "gateway"),
                "amountSet": money(&str_or_null(t, "amount"), currency),
            })
        })
        .collect();
    // Stable versions have no adjustment `kind`; the reason of a discrepancy is all there is.
    let adjustments = list(refund, "order_adjustments")
        .map(|a| {
            json!({
                "reason": (a.get("kind").and_then(Value::as_str) == Some("refund_discrepancy")).then_some("REFUND_DISCREPANCY"),
                "amountSet": money(&str_or_null(a, "amount"), currency),
                "taxAmountSet": money(&str_or_null(a, "tax_amount"), currency),
            })
        })
        .collect();
    json!({
        "id": gid("Refund", &refund["id"]),
        "legacyResourceId": refund["id"].to_string(),
        "createdAt": utc(&str_or_null(refund, "created_at")),
        "updatedAt": utc(&str_or_null(refund, "created_at")),
        "note": str_or_null(refund, "note"),
        "order": {"id": gid("Order", &refund["order_id"])},
        "refundLineItems": connection(lines),
        "refundShippingLines": connection(shipping),
        "transactions": connection(transactions),
        "orderAdjustments": connection(adjustments),
    })
}

/// A GraphQL error entry.
pub fn error(message: &str, code: &str) -> Value {
    json!({"message": message, "extensions": {"code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = r#"query Q($first: Int!, $after: String) {
      orders(first: $first, after: $after, sortKey: UPDATED_AT, query: "updated_at:>='2026-01-01T00:00:00Z'") {
        pageInfo { hasNextPage endCursor }
        nodes { id updatedAt lineItems(first: 2) { nodes { id quantity originalUnitPriceSet { shopMoney { amount } } } } }
      }
    }"#;

    #[test]
    fn a_query_parses_into_its_selection_with_arguments() {
        let root = parse(QUERY).unwrap();
        assert_eq!(root.len(), 1);
        assert_eq!(root[0].name, "orders");
        let vars = json!({"first": 5});
        assert_eq!(root[0].arg("first", &vars), Some(json!(5)));
        assert_eq!(root[0].arg("sortKey", &vars), Some(json!("UPDATED_AT")));
        assert_eq!(root[0].arg("after", &vars), None);
        assert!(parse("mutation { x }").is_err());
        let (op, root) = parse_operation(
            "mutation M($t: WebhookSubscriptionTopic!) { create(topic: $t, input: {uri: \"https://h\", format: JSON}) { userErrors { message } } }",
        )
        .unwrap();
        assert_eq!(op, Operation::Mutation);
        assert_eq!(
            root[0].arg("input", &json!({})),
            Some(json!({"uri": "https://h", "format": "JSON"}))
        );
        assert_eq!(
            root[0].arg("topic", &json!({"t": "ORDERS_PAID"})),
            Some(json!("ORDERS_PAID"))
        );
        assert!(parse("{ orders { ...F } }").is_err());
        assert!(parse("{ orders(first: 1) { id ").is_err());
    }

    /// Shopify's documented example: `products(first: 10) { edges { node { id title } } }`
    /// requests 12.
    #[test]
    fn costs_follow_shopifys_rules() {
        let q = parse("{ products(first: 10) { edges { node { id title } } } }").unwrap();
        assert_eq!(requested_cost(&q, &json!({})), 12.0);
        let q = parse(QUERY).unwrap();
        // 2 + 5 × (1 + lineItems (2 + 2 × (1 + MoneyBag 1 + MoneyV2 1)))
        assert_eq!(requested_cost(&q, &json!({"first": 5})), 2.0 + 5.0 * 9.0);
    }

    #[test]
    fn only_selected_fields_are_returned_and_unknown_ones_are_refused() {
        let order = crate::shopify::generate_order(7, true, chrono::Utc::now().fixed_offset());
        let node = order_node(&order);
        let sel = parse("{ x { id totalPriceSet { shopMoney { amount } } } }").unwrap();
        let out = project(&node, &sel[0].selection, &json!({}), "Order").unwrap();
        assert_eq!(out.as_object().unwrap().len(), 2);
        assert_eq!(out["id"], "gid://shopify/Order/7");
        assert!(out["totalPriceSet"]["shopMoney"]["amount"].is_string());
        let sel = parse("{ x { id financialStatus } }").unwrap();
        let e = project(&node, &sel[0].selection, &json!({}), "Order").unwrap_err();
        assert!(e.contains("financialStatus"), "{e}");
        let sel = parse("{ x { customer } }").unwrap();
        assert!(project(&node, &sel[0].selection, &json!({}), "Order").is_err());
    }

    #[test]
    fn money_is_shopifys_decimal_text() {
        assert_eq!(decimal(&json!("25.00")), json!("25.0"));
        assert_eq!(decimal(&json!("4.75")), json!("4.75"));
        assert_eq!(decimal(&json!(25.0)), json!("25.0"));
    }

    #[test]
    fn cursors_round_trip() {
        for p in ["offset:5", "2026-11-20T10:15:02Z|123", "x"] {
            assert_eq!(decode_cursor(&encode_cursor(p)).as_deref(), Some(p));
        }
        assert_eq!(decode_cursor("not a cursor!"), None);
    }
}
