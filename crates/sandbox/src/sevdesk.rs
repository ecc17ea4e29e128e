//! sevDesk API v1, as the orders domain uses it, with its wire format: data wrapped in
//! `{"objects": …}`, ids and sums as strings, errors as `{"error": {"message", "exceptionUUID"}}`,
//! the token in a bare `Authorization` header.
//!
//! What the sandbox holds is inspectable at `GET /_sandbox/sevdesk/invoices` and
//! `GET /_sandbox/sevdesk/contacts`. Besides the common faults, writes can be made to "commit then
//! fail": the invoice (contact, booking, cancellation) is created, and the answer is a 500 or never
//! comes — the case a client without idempotency keys must survive.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Faults;

/// The token the sandbox accepts (the worker's default `HOOKLINE_SEVDESK_TOKEN`).
pub const DEFAULT_TOKEN: &str = hookline_core::config::SANDBOX_SEVDESK_TOKEN;

/// The check account bookings go to.
pub const CHECK_ACCOUNT_ID: &str = "5001";

/// A contact as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Contact {
    /// sevDesk id.
    pub id: String,
    /// `customerNumber`.
    pub customer_number: Option<String>,
    /// Organisation name, or `surename familyname` for a person.
    pub name: String,
}

/// One invoice position as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Position {
    /// Text.
    pub name: String,
    /// Quantity, as sent.
    pub quantity: String,
    /// Unit price, as sent.
    pub price: String,
    /// Tax rate in percent, as sent.
    pub tax_rate: String,
}

/// An invoice as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Invoice {
    /// sevDesk id.
    pub id: String,
    /// `RE-…` (invoices) or `SR-…` (cancellations).
    pub invoice_number: String,
    /// `RE` or `SR`.
    pub invoice_type: String,
    /// 100 draft, 200 open, 750 partially paid, 1000 paid.
    pub status: u16,
    /// The contact's id.
    pub contact_id: String,
    /// `header`.
    pub header: Option<String>,
    /// `customerInternalNote`.
    pub customer_internal_note: Option<String>,
    /// Currency.
    pub currency: String,
    /// Whether prices are net.
    pub show_net: bool,
    /// Positions.
    pub positions: Vec<Position>,
    /// Sum of bookings.
    pub paid_amount: String,
    /// Number of `bookAmount` calls that booked.
    pub bookings: u32,
    /// When the last booking was made.
    pub booked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// For a cancellation: the invoice it cancels.
    pub cancels: Option<String>,
    /// Set on an invoice that has been cancelled.
    pub cancelled_by: Option<String>,
}

#[derive(Default)]
struct Store {
    faults: Faults,
    /// Share of writes that are applied and then answered 500.
    contacts: Vec<Contact>,
    invoices: Vec<Invoice>,
    /// Credit notes, stored like invoices with type `CN` and numbers `GU-…`.
    credit_notes: Vec<Invoice>,
    next_id: u64,
    calls: HashMap<String, usize>,
}

/// The sevDesk part of the sandbox state.
pub struct SevDesk {
    store: Mutex<Store>,
    token: String,
}

impl Default for SevDesk {
    fn default() -> Self {
        Self {
            store: Mutex::new(Store {
                next_id: 1000,
                ..Store::default()
            }),
            token: DEFAULT_TOKEN.to_owned(),
        }
    }
}

impl SevDesk {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Invoices (and cancellations), oldest first.
    pub fn invoices(&self) -> Vec<Invoice> {
        self.store().invoices.clone()
    }

    /// Credit notes, oldest first.
    pub fn credit_notes(&self) -> Vec<Invoice> {
        self.store().credit_notes.clone()
    }

    /// Contacts, oldest first.
    pub fn contacts(&self) -> Vec<Contact> {
        self.store().contacts.clone()
    }

    /// How often each operation was called (e.g. `saveInvoice`).
    pub fn calls(&self, operation: &str) -> usize {
        self.store().calls.get(operation).copied().unwrap_or(0)
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        self.store().faults = faults;
    }
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"error": {"message": message, "exceptionUUID": uuid_like()}}))
}

fn uuid_like() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        fastrand::u16(..0x1000),
        fastrand::u64(..1 << 48)
    )
}

/// What happens to one call after faults are considered.
enum Plan {
    /// Fail before doing anything.
    FailBefore(u16, Option<u64>),
    /// Do it and answer normally.
    Proceed,
    /// Do it, then answer 500.
    CommitThenFail,
    /// Do it, then never answer.
    CommitThenHang,
}

async fn plan(
    state: &SevDesk,
    request: &HttpRequest,
    operation: &str,
    write: bool,
) -> Result<Plan, HttpResponse> {
    let faults = {
        let mut store = state.store();
        *store.calls.entry(operation.to_owned()).or_insert(0) += 1;
        store.faults.clone()
    };
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(state.token.as_str());
    if !authorized {
        return Err(error(StatusCode::UNAUTHORIZED, "Authentication required"));
    }
    if faults.hang {
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.drop_rate > 0.0 && fastrand::f64() < faults.drop_rate {
        crate::drop_connection(request);
        return Ok(Plan::FailBefore(500, None));
    }
    if faults.timeout_rate > 0.0 && fastrand::f64() < faults.timeout_rate {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return Ok(Plan::FailBefore(504, None));
    }
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        return Ok(Plan::FailBefore(
            crate::injected_status(&faults),
            faults.retry_after_secs.or(Some(1)),
        ));
    }
    if write && faults.commit_then_fail_rate > 0.0 && fastrand::f64() < faults.commit_then_fail_rate
    {
        return Ok(Plan::CommitThenFail);
    }
    if write && faults.commit_then_hang_rate > 0.0 && fastrand::f64() < faults.commit_then_hang_rate
    {
        return Ok(Plan::CommitThenHang);
    }
    Ok(Plan::Proceed)
}

async fn answer(plan: Plan, status: StatusCode, body: Value) -> HttpResponse {
    match plan {
        Plan::FailBefore(code, retry_after) => {
            let mut r = HttpResponse::build(
                StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            );
            if let Some(secs) = retry_after {
                r.insert_header(("retry-after", secs.to_string()));
            }
            r.json(json!({"error": {"message": "injected fault", "exceptionUUID": uuid_like()}}))
        }
        Plan::Proceed => HttpResponse::build(status).json(body),
        Plan::CommitThenFail => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected: committed, then failed",
        ),
        Plan::CommitThenHang => {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            error(StatusCode::GATEWAY_TIMEOUT, "unreachable")
        }
    }
}

macro_rules! planned {
    ($state:expr, $request:expr, $operation:expr, $write:expr) => {
        match plan(&$state.sevdesk, &$request, $operation, $write).await {
            Ok(Plan::FailBefore(code, retry_after)) => {
                return answer(
                    Plan::FailBefore(code, retry_after),
                    StatusCode::OK,
                    Value::Null,
                )
                .await
            }
            Ok(p) => p,
            Err(response) => return response,
        }
    };
}

fn invoice_json(i: &Invoice) -> Value {
    let gross: f64 = i
        .positions
        .iter()
        .map(|p| p.quantity.parse::<f64>().unwrap_or(0.0) * p.price.parse::<f64>().unwrap_or(0.0))
        .sum();
    json!({
        "id": i.id,
        "objectName": "Invoice",
        "invoiceNumber": i.invoice_number,
        "invoiceType": i.invoice_type,
        "status": i.status.to_string(),
        "contact": {"id": i.contact_id, "objectName": "Contact"},
        "header": i.header,
        "customerInternalNote": i.customer_internal_note,
        "currency": i.currency,
        "showNet": if i.show_net { "1" } else { "0" },
        "paidAmount": i.paid_amount,
        "sumPositions": format!("{gross:.2}"),
    })
}

fn credit_note_json(c: &Invoice) -> Value {
    let mut v = invoice_json(c);
    v["objectName"] = json!("CreditNote");
    v["creditNoteNumber"] = json!(c.invoice_number);
    v["bookingCategory"] = json!("UNDERACHIEVEMENT");
    if let Some(map) = v.as_object_mut() {
        map.remove("invoiceNumber");
        map.remove("invoiceType");
    }
    v
}

fn contact_json(c: &Contact) -> Value {
    json!({"id": c.id, "objectName": "Contact", "customerNumber": c.customer_number, "name": c.name, "category": {"id": "3", "objectName": "Category"}})
}

/// `GET /CheckAccount`
pub async fn check_accounts(request: HttpRequest, state: web::Data<crate::State>) -> HttpResponse {
    let p = planned!(state, request, "CheckAccount", false);
    answer(p, StatusCode::OK, json!({"objects": [{"id": CHECK_ACCOUNT_ID, "objectName": "CheckAccount", "name": "Sandbox bank", "type": "online"}]})).await
}

#[derive(Deserialize)]
pub struct ContactQuery {
    #[serde(rename = "customerNumber")]
    customer_number: Option<String>,
}

/// `GET /Contact?customerNumber=…&depth=1`
pub async fn search_contacts(
    request: HttpRequest,
    query: web::Query<ContactQuery>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "Contact.search", false);
    let found: Vec<Value> = state
        .sevdesk
        .contacts()
        .iter()
        .filter(|c| query.customer_number.is_none() || c.customer_number == query.customer_number)
        .map(contact_json)
        .collect();
    answer(p, StatusCode::OK, json!({"objects": found})).await
}

/// `POST /Contact`
pub async fn create_contact(
    request: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "Contact.create", true);
    let b = body.into_inner();
    if b["category"]["id"].as_i64() != Some(3) && b["category"]["id"].as_str() != Some("3") {
        return error(StatusCode::BAD_REQUEST, "category is required");
    }
    let name = b["name"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            Some(format!(
                "{} {}",
                b["surename"].as_str()?,
                b["familyname"].as_str()?
            ))
        })
        .unwrap_or_default();
    if name.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "name or surename/familyname is required",
        );
    }
    let contact = {
        let mut store = state.sevdesk.store();
        store.next_id += 1;
        let c = Contact {
            id: store.next_id.to_string(),
            customer_number: b["customerNumber"].as_str().map(str::to_owned),
            name,
        };
        store.contacts.push(c.clone());
        c
    };
    answer(
        p,
        StatusCode::CREATED,
        json!({"objects": contact_json(&contact)}),
    )
    .await
}

/// `POST /Invoice/Factory/saveInvoice`
pub async fn save_invoice(
    request: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "saveInvoice", true);
    let b = body.into_inner();
    let inv = &b["invoice"];
    let (contact_id, positions) =
        match read_document(&state.sevdesk, inv, &b["invoicePosSave"], "invoice") {
            Ok(read) => read,
            Err(response) => return response,
        };
    let invoice = {
        let mut store = state.sevdesk.store();
        store.next_id += 1;
        let number = store
            .invoices
            .iter()
            .filter(|i| i.invoice_type == "RE")
            .count()
            + 1;
        let i = stored(
            store.next_id.to_string(),
            format!("RE-{number:05}"),
            "RE",
            contact_id,
            inv,
            positions,
        );
        store.invoices.push(i.clone());
        i
    };
    answer(
        p,
        StatusCode::CREATED,
        json!({"objects": {"invoice": invoice_json(&invoice), "invoicePos": []}}),
    )
    .await
}

/// `POST /CreditNote/Factory/saveCreditNote`
pub async fn save_credit_note(
    request: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "saveCreditNote", true);
    let b = body.into_inner();
    let note = &b["creditNote"];
    let (contact_id, positions) =
        match read_document(&state.sevdesk, note, &b["creditNotePosSave"], "creditNote") {
            Ok(read) => read,
            Err(response) => return response,
        };
    let created = {
        let mut store = state.sevdesk.store();
        store.next_id += 1;
        let number = store.credit_notes.len() + 1;
        let c = stored(
            store.next_id.to_string(),
            format!("GU-{number:05}"),
            "CN",
            contact_id,
            note,
            positions,
        );
        store.credit_notes.push(c.clone());
        c
    };
    answer(
        p,
        StatusCode::CREATED,
        json!({"objects": {"creditNote": credit_note_json(&created), "creditNotePos": []}}),
    )
    .await
}

#[derive(Deserialize)]
pub struct CreditNoteQuery {
    #[serde(rename = "contact[id]")]
    contact_id: Option<String>,
}

/// `GET /CreditNote?contact[id]=…&contact[objectName]=Contact`: sevDesk offers no search by
/// internal note for credit notes, so clients list a contact's and look for their marker.
pub async fn search_credit_notes(
    request: HttpRequest,
    query: web::Query<CreditNoteQuery>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "CreditNote.search", false);
    let found: Vec<Value> = state
        .sevdesk
        .credit_notes()
        .iter()
        .filter(|c| {
            query
                .contact_id
                .as_ref()
                .is_none_or(|id| &c.contact_id == id)
        })
        .map(credit_note_json)
        .collect();
    answer(p, StatusCode::OK, json!({"objects": found})).await
}

/// `GET /CreditNote/{id}`
pub async fn get_credit_note(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "CreditNote.get", false);
    match state.sevdesk.credit_notes().iter().find(|c| c.id == *id) {
        Some(c) => answer(p, StatusCode::OK, json!({"objects": [credit_note_json(c)]})).await,
        None => Kind::CreditNote.not_found(),
    }
}

/// What `saveInvoice` and `saveCreditNote` both read: the document's contact, which must exist,
/// and its positions.
// The error is the answer itself, built once per refused request: its size does not matter here.
#[allow(clippy::result_large_err)]
fn read_document(
    state: &SevDesk,
    document: &Value,
    positions: &Value,
    name: &str,
) -> Result<(String, Vec<Position>), HttpResponse> {
    let contact_id = document["contact"]["id"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| document["contact"]["id"].as_i64().map(|n| n.to_string()))
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("{name}.contact is required"),
            )
        })?;
    if !state.contacts().iter().any(|c| c.id == contact_id) {
        return Err(error(StatusCode::BAD_REQUEST, "contact does not exist"));
    }
    let positions = positions.as_array().ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("{name}PosSave is required"),
        )
    })?;
    Ok((contact_id, read_positions(positions)))
}

/// A new draft document (invoice `RE` or credit note `CN`) as stored.
fn stored(
    id: String,
    number: String,
    kind: &str,
    contact_id: String,
    document: &Value,
    positions: Vec<Position>,
) -> Invoice {
    Invoice {
        id,
        invoice_number: number,
        invoice_type: kind.into(),
        status: 100,
        contact_id,
        header: document["header"].as_str().map(str::to_owned),
        customer_internal_note: document["customerInternalNote"].as_str().map(str::to_owned),
        currency: document["currency"].as_str().unwrap_or("EUR").to_owned(),
        show_net: document["showNet"].as_bool().unwrap_or(true)
            || document["showNet"].as_str() == Some("1"),
        positions,
        paid_amount: "0".into(),
        bookings: 0,
        booked_at: None,
        cancels: None,
        cancelled_by: None,
    }
}

fn read_positions(positions: &[Value]) -> Vec<Position> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    positions
        .iter()
        .map(|p| Position {
            name: text(&p["name"]),
            quantity: text(&p["quantity"]),
            price: text(&p["price"]),
            tax_rate: text(&p["taxRate"]),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct InvoiceQuery {
    /// sevDesk spells the filter this way.
    #[serde(rename = "customerIntenalNote")]
    customer_internal_note: Option<String>,
    #[serde(rename = "headerSearch")]
    header_search: Option<String>,
}

/// `GET /Invoice?customerIntenalNote=…` (sic) or `?headerSearch=…`
pub async fn search_invoices(
    request: HttpRequest,
    query: web::Query<InvoiceQuery>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "Invoice.search", false);
    let found: Vec<Value> = state
        .sevdesk
        .invoices()
        .iter()
        .filter(|i| {
            query
                .customer_internal_note
                .as_ref()
                .is_none_or(|n| i.customer_internal_note.as_ref() == Some(n))
        })
        .filter(|i| {
            query
                .header_search
                .as_ref()
                .is_none_or(|h| i.header.as_deref().is_some_and(|x| x.contains(h.as_str())))
        })
        .map(invoice_json)
        .collect();
    answer(p, StatusCode::OK, json!({"objects": found})).await
}

/// `GET /Invoice/{id}`
pub async fn get_invoice(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "Invoice.get", false);
    match state.sevdesk.invoices().iter().find(|i| i.id == *id) {
        Some(i) => answer(p, StatusCode::OK, json!({"objects": [invoice_json(i)]})).await,
        None => error(StatusCode::NOT_FOUND, "Invoice not found"),
    }
}

/// Invoices and credit notes share their life cycle (draft → open → paid) and their
/// `sendBy`/`bookAmount` calls; only the collection and the wire names differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invoice,
    CreditNote,
}

impl Kind {
    fn documents(self, store: &mut Store) -> &mut Vec<Invoice> {
        match self {
            Kind::Invoice => &mut store.invoices,
            Kind::CreditNote => &mut store.credit_notes,
        }
    }

    fn json(self, document: &Invoice) -> Value {
        match self {
            Kind::Invoice => invoice_json(document),
            Kind::CreditNote => credit_note_json(document),
        }
    }

    fn not_found(self) -> HttpResponse {
        match self {
            Kind::Invoice => error(StatusCode::NOT_FOUND, "Invoice not found"),
            Kind::CreditNote => error(StatusCode::NOT_FOUND, "CreditNote not found"),
        }
    }
}

fn with_invoice<T>(state: &SevDesk, id: &str, f: impl FnOnce(&mut Store, usize) -> T) -> Option<T> {
    let mut store = state.store();
    let index = store.invoices.iter().position(|i| i.id == id)?;
    Some(f(&mut store, index))
}

fn with_document<T>(
    state: &SevDesk,
    kind: Kind,
    id: &str,
    f: impl FnOnce(&mut Invoice) -> T,
) -> Option<T> {
    let mut store = state.store();
    let document = kind.documents(&mut store).iter_mut().find(|i| i.id == id)?;
    Some(f(document))
}

/// `PUT /Invoice/{id}/sendBy`: draft → open.
pub async fn send_by(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "sendBy", true);
    send_document(p, &state.sevdesk, Kind::Invoice, &id).await
}

/// `PUT /CreditNote/{id}/sendBy`: draft → open.
pub async fn credit_note_send_by(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "CreditNote.sendBy", true);
    send_document(p, &state.sevdesk, Kind::CreditNote, &id).await
}

async fn send_document(p: Plan, state: &SevDesk, kind: Kind, id: &str) -> HttpResponse {
    let sent = with_document(state, kind, id, |document| {
        if document.status == 100 {
            document.status = 200;
        }
        document.clone()
    });
    match sent {
        Some(i) => answer(p, StatusCode::OK, json!({"objects": kind.json(&i)})).await,
        None => kind.not_found(),
    }
}

/// `PUT /Invoice/{id}/bookAmount`
pub async fn book_amount(
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "bookAmount", true);
    book_document(p, &state.sevdesk, Kind::Invoice, &id, &body).await
}

/// `PUT /CreditNote/{id}/bookAmount`: the money paid back, booked on the check account.
pub async fn credit_note_book_amount(
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "CreditNote.bookAmount", true);
    book_document(p, &state.sevdesk, Kind::CreditNote, &id, &body).await
}

async fn book_document(
    p: Plan,
    state: &SevDesk,
    kind: Kind,
    id: &str,
    body: &Value,
) -> HttpResponse {
    let amount = match &body["amount"] {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    };
    if amount <= 0.0
        || body["checkAccount"]["id"].as_str() != Some(CHECK_ACCOUNT_ID)
            && body["checkAccount"]["id"]
                .as_i64()
                .map(|n| n.to_string())
                .as_deref()
                != Some(CHECK_ACCOUNT_ID)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "amount and a valid checkAccount are required",
        );
    }
    let booked = with_document(state, kind, id, |invoice| {
        if invoice.status < 200 {
            return Err("the document is still a draft");
        }
        let total: f64 = invoice
            .positions
            .iter()
            .map(|p| {
                p.quantity.parse::<f64>().unwrap_or(0.0) * p.price.parse::<f64>().unwrap_or(0.0)
            })
            .sum();
        let paid = invoice.paid_amount.parse::<f64>().unwrap_or(0.0) + amount;
        invoice.paid_amount = format!("{paid:.2}");
        invoice.bookings += 1;
        invoice.booked_at = Some(chrono::Utc::now());
        invoice.status = if paid + 0.005 >= total { 1000 } else { 750 };
        Ok(invoice.clone())
    });
    match booked {
        Some(Ok(i)) => answer(p, StatusCode::OK, json!({"objects": kind.json(&i)})).await,
        Some(Err(message)) => error(StatusCode::BAD_REQUEST, message),
        None => kind.not_found(),
    }
}

/// `POST /Invoice/{id}/cancelInvoice`: creates a cancellation invoice (`SR`).
pub async fn cancel_invoice(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "cancelInvoice", true);
    let cancelled = with_invoice(&state.sevdesk, &id, |store, i| {
        if store.invoices[i].cancelled_by.is_some() {
            return Err("invoice is already cancelled");
        }
        store.next_id += 1;
        let cancel_id = store.next_id.to_string();
        let number = store
            .invoices
            .iter()
            .filter(|x| x.invoice_type == "SR")
            .count()
            + 1;
        let original = store.invoices[i].clone();
        store.invoices[i].cancelled_by = Some(cancel_id.clone());
        let sr = Invoice {
            id: cancel_id,
            invoice_number: format!("SR-{number:05}"),
            invoice_type: "SR".into(),
            status: 1000,
            cancels: Some(original.id.clone()),
            cancelled_by: None,
            positions: original
                .positions
                .iter()
                .map(|p| Position {
                    price: format!("-{}", p.price),
                    ..p.clone()
                })
                .collect(),
            paid_amount: "0".into(),
            bookings: 0,
            booked_at: None,
            ..original
        };
        store.invoices.push(sr.clone());
        Ok(sr)
    });
    match cancelled {
        Some(Ok(sr)) => {
            answer(
                p,
                StatusCode::CREATED,
                json!({"objects": invoice_json(&sr)}),
            )
            .await
        }
        Some(Err(message)) => error(StatusCode::BAD_REQUEST, message),
        None => error(StatusCode::NOT_FOUND, "Invoice not found"),
    }
}

/// `GET /_sandbox/sevdesk/invoices`
pub async fn sandbox_invoices(state: web::Data<crate::State>) -> HttpResponse {
    HttpResponse::Ok().json(state.sevdesk.invoices())
}

/// `GET /_sandbox/sevdesk/credit-notes`
pub async fn sandbox_credit_notes(state: web::Data<crate::State>) -> HttpResponse {
    HttpResponse::Ok().json(state.sevdesk.credit_notes())
}

/// `GET /_sandbox/sevdesk/contacts`
pub async fn sandbox_contacts(state: web::Data<crate::State>) -> HttpResponse {
    HttpResponse::Ok().json(state.sevdesk.contacts())
}

/// `PUT /_sandbox/faults/sevdesk`
pub async fn put_faults(faults: web::Json<Faults>, state: web::Data<crate::State>) -> HttpResponse {
    state.sevdesk.set_faults(faults.into_inner());
    HttpResponse::NoContent().finish()
}

/// Registers the sevDesk routes under `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/CheckAccount", web::get().to(check_accounts))
            .route("/Contact", web::get().to(search_contacts))
            .route("/Contact", web::post().to(create_contact))
            .route("/Invoice/Factory/saveInvoice", web::post().to(save_invoice))
            .route("/Invoice", web::get().to(search_invoices))
            .route("/Invoice/{id}", web::get().to(get_invoice))
            .route("/Invoice/{id}/sendBy", web::put().to(send_by))
            .route("/Invoice/{id}/bookAmount", web::put().to(book_amount))
            .route(
                "/Invoice/{id}/cancelInvoice",
                web::post().to(cancel_invoice),
            )
            .route(
                "/CreditNote/Factory/saveCreditNote",
                web::post().to(save_credit_note),
            )
            .route("/CreditNote", web::get().to(search_credit_notes))
            .route("/CreditNote/{id}", web::get().to(get_credit_note))
            .route(
                "/CreditNote/{id}/sendBy",
                web::put().to(credit_note_send_by),
            )
            .route(
                "/CreditNote/{id}/bookAmount",
                web::put().to(credit_note_book_amount),
            ),
    )
    .route(
        "/_sandbox/sevdesk/credit-notes",
        web::get().to(sandbox_credit_notes),
    )
    .route(
        "/_sandbox/sevdesk/invoices",
        web::get().to(sandbox_invoices),
    )
    .route(
        "/_sandbox/sevdesk/contacts",
        web::get().to(sandbox_contacts),
    )
    .route("/_sandbox/faults/sevdesk", web::put().to(put_faults));
}
