//! sevDesk API v1, as the orders domain uses it, with its wire format: data wrapped in
//! `{"objects": …}`, ids and sums as strings, errors as `{"error": {"message", "exceptionUUID"}}`,
//! the token in a bare `Authorization` header.
//!
//! It is as strict as sevDesk on sevdesk-Update 2.0: every write is checked against the contract in
//! `fixtures/sevdesk/contract.json` ([`crate::contract`]) and refused with sevDesk's status (400
//! for a missing or mistyped member, 422 for a rate the tax rule does not allow) — or 500 when the
//! `validation_as_500` fault says so, as sevDesk documents that it sometimes does. Beyond the
//! contract it refuses what needs state: an unknown contact, SevUser or country, a booking on an
//! `online` check account without a `checkAccountTransaction`, an `UNDERACHIEVEMENT` credit note
//! whose `refSrcInvoice` is not a regular invoice, and a credit note delivered before its invoice.
//! Its answers have the spec's shapes: credit notes carry no `paidAmount`, a cancellation invoice
//! (`SR`) does not copy the original's `customerInternalNote` and names it as its `origin`.
//!
//! What the sandbox holds is inspectable at `GET /_sandbox/sevdesk/invoices`,
//! `GET /_sandbox/sevdesk/contacts` and `GET /_sandbox/sevdesk/emails` (every e-mail
//! `sendViaEmail` sent: to, subject, text, document); the account (bookkeeping version, SevUsers, check accounts)
//! is set with `PUT /_sandbox/sevdesk/account`. Besides the common faults, writes can "commit then
//! fail" (applied, then a 500 or no answer), "commit late" (applied only after the client gave
//! up), searches can lag behind creates and can ignore their filters — the cases a client
//! without idempotency keys must survive.

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

/// The sandbox account's bank account: `online`, so a booking needs a transaction.
pub const BANK_ACCOUNT_ID: &str = "5001";

/// The sandbox account's clearing account (`offline`): bookings create their own transaction.
pub const CHECK_ACCOUNT_ID: &str = "5002";

/// The sandbox account's only SevUser.
pub const SEV_USER_ID: &str = "7";

/// sevDesk's `StaticCountry` ids the sandbox knows, by ISO code (Germany is 1 in sevDesk).
pub const COUNTRIES: &[(&str, u64)] = &[
    ("DE", 1),
    ("AT", 2),
    ("CH", 3),
    ("FR", 4),
    ("NL", 5),
    ("BE", 6),
    ("IT", 7),
    ("ES", 8),
    ("PL", 9),
    ("US", 10),
    ("GB", 11),
    ("DK", 12),
    ("SE", 13),
];

/// A check account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckAccount {
    /// sevDesk id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `online`, `offline` or `register`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The account the token belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Account {
    /// What `GET /Tools/bookkeepingSystemVersion` answers.
    pub bookkeeping_version: String,
    /// SevUser ids.
    pub sev_users: Vec<String>,
    /// Check accounts.
    pub check_accounts: Vec<CheckAccount>,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            bookkeeping_version: "2.0".into(),
            sev_users: vec![SEV_USER_ID.into()],
            check_accounts: vec![
                CheckAccount {
                    id: BANK_ACCOUNT_ID.into(),
                    name: "Geschäftskonto".into(),
                    kind: "online".into(),
                },
                CheckAccount {
                    id: CHECK_ACCOUNT_ID.into(),
                    name: "Verrechnungskonto Shopify".into(),
                    kind: "offline".into(),
                },
            ],
        }
    }
}

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
    /// `taxRule.id`.
    #[serde(default)]
    pub tax_rule: Option<String>,
    /// `deliveryDate`, as sent.
    #[serde(default)]
    pub delivery_date: Option<String>,
    /// `deliveryAddressCountry`.
    #[serde(default)]
    pub delivery_country: Option<String>,
    /// `address`: the recipient as printed.
    #[serde(default)]
    pub address: Option<String>,
    /// `addressCountry.id`.
    #[serde(default)]
    pub address_country: Option<u64>,
    /// For a credit note: `refSrcInvoice.id`.
    #[serde(default)]
    pub ref_src_invoice: Option<String>,
    /// The check accounts bookings went to, one entry per booking.
    #[serde(default)]
    pub booked_on: Vec<String>,
    /// The booking types, one entry per booking.
    #[serde(default)]
    pub booking_types: Vec<String>,
    /// When it was created (searches lag behind this by `search_lag_ms`).
    #[serde(default = "chrono::Utc::now")]
    pub created: chrono::DateTime<chrono::Utc>,
    /// `sendType` (readOnly in the spec): how it was last sent — `VM` after `sendViaEmail`,
    /// the chosen type after `sendBy`.
    #[serde(default)]
    pub send_type: Option<String>,
    /// `sendDate` (readOnly in the spec): when it was last sent.
    #[serde(default)]
    pub send_date: Option<chrono::DateTime<chrono::Utc>>,
    /// `update` (readOnly): when it last changed (sent, booked, paid by the bank, cancelled).
    #[serde(default)]
    pub updated: Option<chrono::DateTime<chrono::Utc>>,
}

impl Invoice {
    /// `update`: the last change, else the creation.
    pub fn update(&self) -> chrono::DateTime<chrono::Utc> {
        self.updated.unwrap_or(self.created)
    }

    fn touch(&mut self) {
        self.updated = Some(chrono::Utc::now());
    }
}

/// One e-mail sevDesk sent (`Model_Email`, as far as the sandbox keeps it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Email {
    /// sevDesk id.
    pub id: String,
    /// The document it carried (`Invoice` or `CreditNote`).
    pub object_name: String,
    /// The document's id.
    pub object_id: String,
    /// `toEmail`.
    pub to: String,
    /// `subject`.
    pub subject: String,
    /// `text`.
    pub text: String,
    /// `copy`: a copy went to the sender.
    pub copy: bool,
    /// `ccEmail`.
    pub cc: Option<String>,
    /// `bccEmail`.
    pub bcc: Option<String>,
    /// When it was sent.
    pub sent_at: chrono::DateTime<chrono::Utc>,
}

/// What happens to the next `sendViaEmail` calls (`PUT /_sandbox/sevdesk/mail-fault`), on top
/// of the common faults.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MailMode {
    /// Sent and answered.
    #[default]
    Normal,
    /// Answered 500; nothing sent.
    Fail,
    /// Answered 500 at once; the mail goes out (and the invoice changes) `delay_ms` later.
    CommitLate,
    /// Sent at once; the answer never comes (the client times out).
    TimeoutAfterSend,
}

/// A mail fault and how many calls it hits.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct MailFault {
    /// What happens.
    pub mode: MailMode,
    /// How many of the next calls it hits (0: every call).
    pub times: u32,
    /// For `commit_late`: how late the mail goes out, in milliseconds.
    pub delay_ms: u64,
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
    account: Account,
    /// Every write body received, with its operation, for contract assertions in tests.
    requests: Vec<(String, Value)>,
    /// Every e-mail sent, oldest first.
    emails: Vec<Email>,
    /// The fault of the next `sendViaEmail` calls, and how many it has hit.
    mail_fault: MailFault,
    mail_fault_hits: u32,
}

tokio::task_local! {
    /// The API token of the request being answered: which account it works on.
    static ACCOUNT: String;
}

/// The sevDesk part of the sandbox state: one or more accounts, each with its own API token and
/// its own contacts, documents, settings and faults, as sevDesk keeps them apart. A request
/// works on the account of its `Authorization` token (an unknown token gets 401); the accessors
/// below read the account of [`DEFAULT_TOKEN`], or of the token given to [`SevDesk::as_account`].
pub struct SevDesk {
    accounts: Mutex<HashMap<String, Store>>,
}

impl Default for SevDesk {
    fn default() -> Self {
        Self {
            accounts: Mutex::new(HashMap::from([(
                DEFAULT_TOKEN.to_owned(),
                Store {
                    next_id: 1000,
                    ..Store::default()
                },
            )])),
        }
    }
}

/// The current account's store, locked.
struct StoreGuard<'a> {
    accounts: std::sync::MutexGuard<'a, HashMap<String, Store>>,
    token: String,
}

impl std::ops::Deref for StoreGuard<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.accounts[&self.token]
    }
}

impl std::ops::DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.accounts
            .get_mut(&self.token)
            .expect("the guard's account exists")
    }
}

/// The token of the request being answered, if any.
fn current_token() -> Option<String> {
    ACCOUNT.try_with(Clone::clone).ok()
}

/// Runs `work` (a task the request spawns) on the request's account.
fn on_this_account<F: std::future::Future>(
    work: F,
) -> impl std::future::Future<Output = F::Output> {
    ACCOUNT.scope(
        current_token().unwrap_or_else(|| DEFAULT_TOKEN.to_owned()),
        work,
    )
}

impl SevDesk {
    fn store(&self) -> StoreGuard<'_> {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let token = current_token()
            .filter(|t| accounts.contains_key(t))
            .unwrap_or_else(|| DEFAULT_TOKEN.to_owned());
        StoreGuard { accounts, token }
    }

    /// Opens another account, reached with `token` (ids are unique across accounts, as in
    /// sevDesk). Opening one twice keeps it.
    pub fn add_account(&self, token: &str) {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let next_id = 1000 + 1_000_000 * accounts.len() as u64;
        accounts.entry(token.to_owned()).or_insert_with(|| Store {
            next_id,
            ..Store::default()
        });
    }

    /// Runs `read` on the account of `token` (e.g. `sevdesk.as_account(t, || sevdesk.invoices())`).
    pub fn as_account<R>(&self, token: &str, read: impl FnOnce() -> R) -> R {
        ACCOUNT.sync_scope(token.to_owned(), read)
    }

    /// Whether `token` opens an account.
    fn knows(&self, token: &str) -> bool {
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(token)
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

    /// Every e-mail sent, oldest first.
    pub fn emails(&self) -> Vec<Email> {
        self.store().emails.clone()
    }

    /// Replaces the fault of the next `sendViaEmail` calls.
    pub fn set_mail_fault(&self, fault: MailFault) {
        let mut store = self.store();
        store.mail_fault = fault;
        store.mail_fault_hits = 0;
    }

    /// The mail fault for this call, counting it.
    fn take_mail_fault(&self) -> MailMode {
        let mut store = self.store();
        let fault = store.mail_fault;
        if fault.mode == MailMode::Normal
            || (fault.times > 0 && store.mail_fault_hits >= fault.times)
        {
            return MailMode::Normal;
        }
        store.mail_fault_hits += 1;
        fault.mode
    }

    /// Replaces the account settings.
    pub fn set_account(&self, account: Account) {
        self.store().account = account;
    }

    /// Every write body received (operation, body), oldest first.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.store().requests.clone()
    }

    fn account(&self) -> Account {
        self.store().account.clone()
    }
}

/// Why the sandbox refuses a write, before or while applying it.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            message: message.into(),
        }
    }
}

/// Checks a write against the contract and records it; a refusal is answered in sevDesk's shape
/// (or as a 500 under `validation_as_500`).
fn validate(state: &SevDesk, operation: &str, body: &Value) -> Result<(), HttpResponse> {
    let as_500 = {
        let mut store = state.store();
        store.requests.push((operation.to_owned(), body.clone()));
        store.faults.validation_as_500
    };
    crate::contract::check(operation, body).map_err(|violation| {
        refuse(
            as_500,
            Refusal::new(violation.status(), violation.to_string()),
        )
    })
}

fn refuse(as_500: bool, refusal: Refusal) -> HttpResponse {
    let status = if as_500 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        refusal.status
    };
    error(status, &refusal.message)
}

/// Runs a write: now, or — under the commit-late fault — in a task of its own after the delay,
/// while the request is never answered (the client times out; the effect lands anyway, even if
/// the connection is long gone).
async fn write<F>(plan: Plan, state: web::Data<crate::State>, apply: F) -> HttpResponse
where
    F: FnOnce(&SevDesk) -> Result<(StatusCode, Value), Refusal> + Send + 'static,
{
    if let Plan::CommitLate(ms) = plan {
        let late = state.clone();
        tokio::spawn(on_this_account(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let _ = apply(&late.sevdesk);
        }));
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "unreachable");
    }
    let as_500 = state.sevdesk.store().faults.validation_as_500;
    match apply(&state.sevdesk) {
        Ok((status, body)) => answer(plan, status, body).await,
        Err(refusal) => refuse(as_500, refusal),
    }
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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
    /// Never answer; do it this many milliseconds after it arrived.
    CommitLate(u64),
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
        .is_some_and(|token| state.knows(token));
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
    if write && faults.commit_late_rate > 0.0 && fastrand::f64() < faults.commit_late_rate {
        return Ok(Plan::CommitLate(faults.commit_late_ms));
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
        Plan::CommitThenHang | Plan::CommitLate(_) => {
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

fn gross_of(i: &Invoice) -> f64 {
    i.positions
        .iter()
        .map(|p| p.quantity.parse::<f64>().unwrap_or(0.0) * p.price.parse::<f64>().unwrap_or(0.0))
        .sum()
}

/// `Model_InvoiceResponse`, as far as the sandbox keeps it: ids and most sums as strings, as
/// sevDesk sends them; `paidAmount` a number, as the spec types it.
fn invoice_json(i: &Invoice) -> Value {
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
        "paidAmount": i.paid_amount.parse::<f64>().unwrap_or(0.0),
        "sumGross": format!("{:.2}", gross_of(i)),
        "deliveryDate": i.delivery_date,
        "address": i.address,
        "taxRule": i.tax_rule.as_ref().map(|id| json!({"id": id, "objectName": "TaxRule"})),
        "origin": i.cancels.as_ref().map(|id| json!({"id": id, "objectName": "Invoice"})),
        // sevDesk's timestamps have whole seconds.
        "update": i.update().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "sendType": i.send_type,
        "sendDate": i.send_date.map(|d| d.to_rfc3339()),
    })
}

/// `Model_creditNoteResponse`: like an invoice, but with **no `paidAmount`** — a client must tell
/// a booked credit note by its status.
fn credit_note_json(c: &Invoice) -> Value {
    let mut v = invoice_json(c);
    v["objectName"] = json!("CreditNote");
    v["creditNoteNumber"] = json!(c.invoice_number);
    v["bookingCategory"] = json!("UNDERACHIEVEMENT");
    if let Some(map) = v.as_object_mut() {
        map.remove("invoiceNumber");
        map.remove("invoiceType");
        map.remove("paidAmount");
        map.remove("origin");
    }
    v
}

fn contact_json(c: &Contact) -> Value {
    json!({"id": c.id, "objectName": "Contact", "customerNumber": c.customer_number, "name": c.name, "category": {"id": "3", "objectName": "Category"}})
}

/// `GET /Tools/bookkeepingSystemVersion`
pub async fn bookkeeping_version(
    request: HttpRequest,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "bookkeepingSystemVersion", false);
    let version = state.sevdesk.account().bookkeeping_version;
    answer(p, StatusCode::OK, json!({"objects": {"version": version}})).await
}

/// `GET /SevUser`: not in sevDesk's published spec, but what production clients use to find the
/// id for `contactPerson`.
pub async fn sev_users(request: HttpRequest, state: web::Data<crate::State>) -> HttpResponse {
    let p = planned!(state, request, "SevUser", false);
    let users: Vec<Value> = state
        .sevdesk
        .account()
        .sev_users
        .iter()
        .map(|id| json!({"id": id, "objectName": "SevUser"}))
        .collect();
    answer(p, StatusCode::OK, json!({"objects": users})).await
}

/// `GET /StaticCountry`: sevDesk's country ids (not in the published spec either).
pub async fn static_countries(
    request: HttpRequest,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "StaticCountry", false);
    let countries: Vec<Value> = COUNTRIES
        .iter()
        .map(|(code, id)| json!({"id": id.to_string(), "objectName": "StaticCountry", "code": code.to_lowercase()}))
        .collect();
    answer(p, StatusCode::OK, json!({"objects": countries})).await
}

/// `GET /CheckAccount`
pub async fn check_accounts(request: HttpRequest, state: web::Data<crate::State>) -> HttpResponse {
    let p = planned!(state, request, "CheckAccount", false);
    let accounts: Vec<Value> = state
        .sevdesk
        .account()
        .check_accounts
        .iter()
        .map(|a| json!({"id": a.id, "objectName": "CheckAccount", "name": a.name, "type": a.kind, "status": "100", "currency": "EUR"}))
        .collect();
    answer(p, StatusCode::OK, json!({"objects": accounts})).await
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
    if let Err(refused) = validate(&state.sevdesk, "createContact", &b) {
        return refused;
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
    write(p, state, move |sevdesk| {
        let mut store = sevdesk.store();
        store.next_id += 1;
        let c = Contact {
            id: store.next_id.to_string(),
            customer_number: b["customerNumber"].as_str().map(str::to_owned),
            name,
        };
        store.contacts.push(c.clone());
        Ok((StatusCode::CREATED, json!({"objects": contact_json(&c)})))
    })
    .await
}

/// What both factories check against the account: the contact, the SevUser and the country.
fn check_references(store: &Store, document: &Value) -> Result<String, Refusal> {
    let contact_id = id_text(&document["contact"]["id"]).unwrap_or_default();
    if !store.contacts.iter().any(|c| c.id == contact_id) {
        return Err(Refusal::new(400, "contact does not exist"));
    }
    let person = id_text(&document["contactPerson"]["id"]).unwrap_or_default();
    if !store.account.sev_users.contains(&person) {
        return Err(Refusal::new(
            400,
            "contactPerson is not a SevUser of this account",
        ));
    }
    let country = document["addressCountry"]["id"].as_u64().unwrap_or(0);
    if !COUNTRIES.iter().any(|(_, id)| *id == country) {
        return Err(Refusal::new(400, "addressCountry is not a StaticCountry"));
    }
    Ok(contact_id)
}

/// `POST /Invoice/Factory/saveInvoice`
pub async fn save_invoice(
    request: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "saveInvoice", true);
    let b = body.into_inner();
    if let Err(refused) = validate(&state.sevdesk, "saveInvoice", &b) {
        return refused;
    }
    write(p, state, move |sevdesk| {
        let mut store = sevdesk.store();
        let inv = &b["invoice"];
        let contact_id = check_references(&store, inv)?;
        let positions = read_positions(b["invoicePosSave"].as_array().map_or(&[], Vec::as_slice));
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
        Ok((
            StatusCode::CREATED,
            json!({"objects": {"invoice": invoice_json(&i), "invoicePos": []}}),
        ))
    })
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
    if let Err(refused) = validate(&state.sevdesk, "saveCreditNote", &b) {
        return refused;
    }
    write(p, state, move |sevdesk| {
        let mut store = sevdesk.store();
        let note = &b["creditNote"];
        let contact_id = check_references(&store, note)?;
        if let Some(source) = id_text(&note["refSrcInvoice"]["id"]) {
            let Some(invoice) = store
                .invoices
                .iter()
                .find(|i| i.id == source && i.invoice_type == "RE")
            else {
                return Err(Refusal::new(
                    400,
                    "refSrcInvoice is not an invoice of this account",
                ));
            };
            // Update 2.0: a credit note is delivered with or after its invoice, never before.
            let ours = note["deliveryDate"].as_str().and_then(parse_date);
            let theirs = invoice.delivery_date.as_deref().and_then(parse_date);
            match (ours, theirs) {
                (Some(a), Some(b)) if a < b => {
                    return Err(Refusal::new(
                        422,
                        "deliveryDate of the credit note is before the invoice's",
                    ));
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(Refusal::new(
                        422,
                        "the credit note and its invoice must both have a delivery date or neither",
                    ));
                }
                _ => {}
            }
        }
        let positions =
            read_positions(b["creditNotePosSave"].as_array().map_or(&[], Vec::as_slice));
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
        Ok((
            StatusCode::CREATED,
            json!({"objects": {"creditNote": credit_note_json(&c), "creditNotePos": []}}),
        ))
    })
    .await
}

/// `dd.mm.yyyy` or a timestamp, as sevDesk takes dates.
fn parse_date(text: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(text, "%d.%m.%Y")
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|d| d.date_naive())
        })
}

#[derive(Deserialize)]
pub struct DocumentQuery {
    /// sevDesk spells the filter this way.
    #[serde(rename = "customerIntenalNote")]
    customer_internal_note: Option<String>,
    #[serde(rename = "contact[id]")]
    contact_id: Option<String>,
    #[serde(rename = "invoiceNumber")]
    invoice_number: Option<String>,
    /// `status=100|200|750|1000`.
    status: Option<u16>,
    /// `partiallyPaid=true`: status 750 only.
    #[serde(rename = "partiallyPaid")]
    partially_paid: Option<String>,
    /// `updateAfter={timestamp}`: updated last after this Unix time.
    #[serde(rename = "updateAfter")]
    update_after: Option<i64>,
    /// `updateBefore={timestamp}`: updated last before this Unix time.
    #[serde(rename = "updateBefore")]
    update_before: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// What a search returns, after the search-lag and filter-ignoring faults: documents are
/// invisible to searches for `search_lag_ms` after their creation, and under
/// `search_ignores_filter` every visible document is returned. Pages of `limit` (≤ 1000,
/// default 100) from `offset`.
fn search(
    state: &SevDesk,
    documents: Vec<Invoice>,
    query: &DocumentQuery,
    json: fn(&Invoice) -> Value,
) -> Value {
    let faults = state.store().faults.clone();
    let now = chrono::Utc::now();
    let lag = chrono::Duration::milliseconds(i64::try_from(faults.search_lag_ms).unwrap_or(0));
    let visible = documents.into_iter().filter(|d| d.created + lag <= now);
    let matching: Vec<Invoice> = if faults.search_ignores_filter {
        visible.collect()
    } else {
        visible
            .filter(|i| {
                query
                    .customer_internal_note
                    .as_ref()
                    .is_none_or(|n| i.customer_internal_note.as_ref() == Some(n))
            })
            .filter(|i| query.contact_id.as_ref().is_none_or(|c| &i.contact_id == c))
            .filter(|i| {
                query
                    .invoice_number
                    .as_ref()
                    .is_none_or(|n| &i.invoice_number == n)
            })
            .filter(|i| query.status.is_none_or(|s| i.status == s))
            .filter(|i| query.partially_paid.as_deref() != Some("true") || i.status == 750)
            .filter(|i| {
                query
                    .update_after
                    .is_none_or(|t| i.update().timestamp() > t)
            })
            .filter(|i| {
                query
                    .update_before
                    .is_none_or(|t| i.update().timestamp() < t)
            })
            .collect()
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let page: Vec<Value> = matching
        .iter()
        .skip(query.offset.unwrap_or(0))
        .take(limit)
        .map(json)
        .collect();
    json!({"total": matching.len().to_string(), "objects": page})
}

/// `GET /CreditNote?contact[id]=…&contact[objectName]=Contact`
pub async fn search_credit_notes(
    request: HttpRequest,
    query: web::Query<DocumentQuery>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "CreditNote.search", false);
    let found = search(
        &state.sevdesk,
        state.sevdesk.credit_notes(),
        &query,
        credit_note_json,
    );
    answer(p, StatusCode::OK, found).await
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
        show_net: document["showNet"].as_bool().unwrap_or(true),
        positions,
        paid_amount: "0".into(),
        bookings: 0,
        booked_at: None,
        cancels: None,
        cancelled_by: None,
        tax_rule: id_text(&document["taxRule"]["id"]),
        delivery_date: document["deliveryDate"].as_str().map(str::to_owned),
        delivery_country: document["deliveryAddressCountry"]
            .as_str()
            .map(str::to_owned),
        address: document["address"].as_str().map(str::to_owned),
        address_country: document["addressCountry"]["id"].as_u64(),
        ref_src_invoice: id_text(&document["refSrcInvoice"]["id"]),
        booked_on: vec![],
        booking_types: vec![],
        created: chrono::Utc::now(),
        send_type: None,
        send_date: None,
        updated: None,
    }
}

fn read_positions(positions: &[Value]) -> Vec<Position> {
    // Kept as decimal text without trailing zeros ("25", "29.75"), whatever JSON form came.
    let text = |v: &Value| {
        let raw = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        raw.parse::<rust_decimal::Decimal>()
            .map(|d| d.normalize().to_string())
            .unwrap_or(raw)
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

/// `GET /Invoice?customerIntenalNote=…` (sic), `?contact[id]=…`, `?invoiceNumber=…`, paged.
pub async fn search_invoices(
    request: HttpRequest,
    query: web::Query<DocumentQuery>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "Invoice.search", false);
    let found = search(
        &state.sevdesk,
        state.sevdesk.invoices(),
        &query,
        invoice_json,
    );
    answer(p, StatusCode::OK, found).await
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
        let refusal = self.missing();
        error(refusal.status, &refusal.message)
    }

    fn missing(self) -> Refusal {
        match self {
            Kind::Invoice => Refusal::new(404, "Invoice not found"),
            Kind::CreditNote => Refusal::new(404, "CreditNote not found"),
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
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "sendBy", true);
    send_document(p, state, Kind::Invoice, id.into_inner(), body.into_inner()).await
}

/// `PUT /CreditNote/{id}/sendBy`: draft → open.
pub async fn credit_note_send_by(
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "CreditNote.sendBy", true);
    send_document(
        p,
        state,
        Kind::CreditNote,
        id.into_inner(),
        body.into_inner(),
    )
    .await
}

async fn send_document(
    p: Plan,
    state: web::Data<crate::State>,
    kind: Kind,
    id: String,
    body: Value,
) -> HttpResponse {
    if let Err(refused) = validate(&state.sevdesk, "sendBy", &body) {
        return refused;
    }
    write(p, state, move |sevdesk| {
        let sent = with_document(sevdesk, kind, &id, |document| {
            if body["sendDraft"] == json!(false) {
                if document.status == 100 {
                    document.status = 200;
                }
                document.send_type = body["sendType"].as_str().map(str::to_owned);
                document.send_date = Some(chrono::Utc::now());
                document.touch();
            }
            document.clone()
        });
        match sent {
            Some(i) => Ok((StatusCode::OK, json!({"objects": kind.json(&i)}))),
            None => Err(kind.missing()),
        }
    })
    .await
}

/// `PUT /Invoice/{id}/bookAmount`
pub async fn book_amount(
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "bookAmount", true);
    book_document(p, state, Kind::Invoice, id.into_inner(), body.into_inner()).await
}

/// `PUT /CreditNote/{id}/bookAmount`: the money paid back, booked on the check account.
pub async fn credit_note_book_amount(
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "CreditNote.bookAmount", true);
    book_document(
        p,
        state,
        Kind::CreditNote,
        id.into_inner(),
        body.into_inner(),
    )
    .await
}

async fn book_document(
    p: Plan,
    state: web::Data<crate::State>,
    kind: Kind,
    id: String,
    body: Value,
) -> HttpResponse {
    if let Err(refused) = validate(&state.sevdesk, "bookAmount", &body) {
        return refused;
    }
    write(p, state, move |sevdesk| {
        let amount = body["amount"].as_f64().unwrap_or(0.0);
        if amount <= 0.0 {
            return Err(Refusal::new(400, "amount must be positive"));
        }
        let account_id = id_text(&body["checkAccount"]["id"]).unwrap_or_default();
        let account = sevdesk
            .account()
            .check_accounts
            .into_iter()
            .find(|a| a.id == account_id)
            .ok_or_else(|| Refusal::new(400, "checkAccount does not exist"))?;
        if account.kind == "online" && body["checkAccountTransaction"]["id"].is_null() {
            return Err(Refusal::new(
                422,
                "a booking on an online check account needs an existing checkAccountTransaction",
            ));
        }
        let booking_type = body["type"].as_str().unwrap_or_default().to_owned();
        let booked = with_document(sevdesk, kind, &id, |invoice| {
            if invoice.status < 200 {
                return Err(Refusal::new(400, "the document is still a draft"));
            }
            if invoice.status >= 1000 {
                return Err(Refusal::new(400, "the document is already paid"));
            }
            let total = gross_of(invoice);
            let paid = invoice.paid_amount.parse::<f64>().unwrap_or(0.0) + amount;
            invoice.paid_amount = format!("{paid:.2}");
            invoice.bookings += 1;
            invoice.booked_at = Some(chrono::Utc::now());
            invoice.touch();
            invoice.booked_on.push(account.id.clone());
            invoice.booking_types.push(booking_type);
            invoice.status = if paid + 0.005 >= total { 1000 } else { 750 };
            Ok(invoice.clone())
        });
        match booked {
            Some(Ok(i)) => Ok((StatusCode::OK, json!({"objects": kind.json(&i)}))),
            Some(Err(refusal)) => Err(refusal),
            None => Err(kind.missing()),
        }
    })
    .await
}

/// `POST /Invoice/{id}/cancelInvoice`: creates a cancellation invoice (`SR`). It names the
/// original as its `origin` and, as in sevDesk, does not copy the original's internal note.
pub async fn cancel_invoice(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "cancelInvoice", true);
    let id = id.into_inner();
    write(p, state, move |sevdesk| {
        let cancelled = with_invoice(sevdesk, &id, |store, i| {
            if store.invoices[i].cancelled_by.is_some() {
                return Err(Refusal::new(400, "invoice is already cancelled"));
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
            store.invoices[i].touch();
            let sr = Invoice {
                id: cancel_id,
                invoice_number: format!("SR-{number:05}"),
                invoice_type: "SR".into(),
                status: 1000,
                cancels: Some(original.id.clone()),
                cancelled_by: None,
                customer_internal_note: None,
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
                booked_on: vec![],
                booking_types: vec![],
                created: chrono::Utc::now(),
                send_type: None,
                send_date: None,
                updated: None,
                ..original
            };
            store.invoices.push(sr.clone());
            Ok(sr)
        });
        match cancelled {
            Some(Ok(sr)) => Ok((StatusCode::CREATED, json!({"objects": invoice_json(&sr)}))),
            Some(Err(refusal)) => Err(refusal),
            None => Err(Refusal::new(404, "Invoice not found")),
        }
    })
    .await
}

/// Sends `body`'s e-mail with the document, as `sendViaEmail` does: the mail is recorded, and
/// the document is marked sent (`sendType` `VM`, `sendDate` now) and opened if it was a draft.
fn send_mail(sevdesk: &SevDesk, kind: Kind, id: &str, body: &Value) -> Result<Value, Refusal> {
    let mut store = sevdesk.store();
    store.next_id += 1;
    let mail_id = store.next_id.to_string();
    let document = kind
        .documents(&mut store)
        .iter_mut()
        .find(|i| i.id == id)
        .ok_or_else(|| kind.missing())?;
    if document.cancelled_by.is_some() {
        return Err(Refusal::new(400, "the document is cancelled"));
    }
    if document.status == 100 {
        document.status = 200;
    }
    let now = chrono::Utc::now();
    document.send_type = Some("VM".into());
    document.send_date = Some(now);
    document.touch();
    let object = kind.json(document);
    let text = |member: &str| body[member].as_str().map(str::to_owned);
    let email = Email {
        id: mail_id,
        object_name: object["objectName"]
            .as_str()
            .unwrap_or("Invoice")
            .to_owned(),
        object_id: id.to_owned(),
        to: text("toEmail").unwrap_or_default(),
        subject: text("subject").unwrap_or_default(),
        text: text("text").unwrap_or_default(),
        copy: body["copy"].as_bool().unwrap_or(false),
        cc: text("ccEmail"),
        bcc: text("bccEmail"),
        sent_at: now,
    };
    store.emails.push(email.clone());
    Ok(email_json(&email, object))
}

/// `Model_Email`: the e-mail sevDesk created, with the document it carried as `object`.
fn email_json(email: &Email, object: Value) -> Value {
    json!({
        "id": email.id,
        "objectName": "Email",
        "create": email.sent_at.to_rfc3339(),
        "update": email.sent_at.to_rfc3339(),
        "object": object,
        "from": "sandbox@sevdesk.invalid",
        "to": email.to,
        "subject": email.subject,
        "text": email.text,
        "cc": email.cc,
        "bcc": email.bcc,
        "arrived": null,
    })
}

/// `POST /Invoice/{id}/sendViaEmail`: e-mails the invoice (`toEmail`, `subject`, `text`
/// required) and marks it sent; answers 201 with the `Model_Email`. Under the mail fault it
/// fails (500, nothing sent), commits late (500 now, the mail goes out later) or times out after
/// sending (sent, never answered).
pub async fn send_via_email(
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    let p = planned!(state, request, "sendViaEmail", true);
    let (id, body) = (id.into_inner(), body.into_inner());
    if let Err(refused) = validate(&state.sevdesk, "sendViaEmail", &body) {
        return refused;
    }
    match state.sevdesk.take_mail_fault() {
        MailMode::Normal => {}
        MailMode::Fail => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "injected: mail not sent");
        }
        MailMode::CommitLate => {
            let delay = state.sevdesk.store().mail_fault.delay_ms;
            let late = state.clone();
            tokio::spawn(on_this_account(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let _ = send_mail(&late.sevdesk, Kind::Invoice, &id, &body);
            }));
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected: answered before the mail went out",
            );
        }
        MailMode::TimeoutAfterSend => {
            let _ = send_mail(&state.sevdesk, Kind::Invoice, &id, &body);
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "unreachable");
        }
    }
    write(p, state, move |sevdesk| {
        send_mail(sevdesk, Kind::Invoice, &id, &body)
            .map(|email| (StatusCode::CREATED, json!({"objects": email})))
    })
    .await
}

/// `POST /_sandbox/sevdesk/bank-payment`: a transfer of `amount` the bank feed matched to
/// `invoice_id`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BankPayment {
    /// The invoice it was matched to.
    pub invoice_id: String,
    /// The money that came in.
    pub amount: f64,
}

impl SevDesk {
    /// What sevDesk's bank matching does with a transfer: books it on the bank account's
    /// transaction, raising `paidAmount`; the invoice becomes paid (1000) when it covers the
    /// total, else partly paid (750), and its `update` moves. Refused for a draft, a paid or a
    /// cancelled invoice, or an amount that is not positive.
    pub fn bank_payment(&self, payment: &BankPayment) -> Result<Invoice, String> {
        if payment.amount.is_nan() || payment.amount <= 0.0 {
            return Err("amount must be positive".into());
        }
        let mut store = self.store();
        let invoice = store
            .invoices
            .iter_mut()
            .find(|i| i.id == payment.invoice_id)
            .ok_or_else(|| format!("no invoice {}", payment.invoice_id))?;
        if invoice.status < 200 || invoice.status >= 1000 || invoice.cancelled_by.is_some() {
            return Err(format!(
                "invoice {} has status {}: no payment can be matched to it",
                invoice.id, invoice.status
            ));
        }
        let paid = invoice.paid_amount.parse::<f64>().unwrap_or(0.0) + payment.amount;
        invoice.paid_amount = format!("{paid:.2}");
        invoice.booked_at = Some(chrono::Utc::now());
        invoice.booked_on.push(BANK_ACCOUNT_ID.to_owned());
        invoice.booking_types.push("BANK_MATCH".to_owned());
        invoice.status = if paid + 0.005 >= gross_of(invoice) {
            1000
        } else {
            750
        };
        invoice.touch();
        Ok(invoice.clone())
    }
}

/// `POST /_sandbox/sevdesk/bank-payment`
pub async fn post_bank_payment(
    payment: web::Json<BankPayment>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    match state.sevdesk.bank_payment(&payment) {
        Ok(invoice) => HttpResponse::Ok().json(invoice),
        Err(why) => HttpResponse::BadRequest().json(json!({"error": why})),
    }
}

/// `GET /_sandbox/sevdesk/emails`: every e-mail sevDesk sent, oldest first.
pub async fn sandbox_emails(state: web::Data<crate::State>) -> HttpResponse {
    HttpResponse::Ok().json(state.sevdesk.emails())
}

/// `PUT /_sandbox/sevdesk/mail-fault`: the fault of the next `sendViaEmail` calls.
pub async fn put_mail_fault(
    fault: web::Json<MailFault>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    state.sevdesk.set_mail_fault(fault.into_inner());
    HttpResponse::NoContent().finish()
}

/// `PUT /_sandbox/sevdesk/account`: bookkeeping version, SevUsers and check accounts.
pub async fn put_account(
    account: web::Json<Account>,
    state: web::Data<crate::State>,
) -> HttpResponse {
    state.sevdesk.set_account(account.into_inner());
    HttpResponse::NoContent().finish()
}

/// `GET /_sandbox/sevdesk/requests`: every write body received, with its operation.
pub async fn sandbox_requests(state: web::Data<crate::State>) -> HttpResponse {
    let requests: Vec<Value> = state
        .sevdesk
        .requests()
        .into_iter()
        .map(|(operation, body)| json!({"operation": operation, "body": body}))
        .collect();
    HttpResponse::Ok().json(requests)
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
            // Each request works on its token's account, tasks it spawns included.
            .wrap_fn(|request, service| {
                use actix_web::dev::Service;
                let token = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                ACCOUNT.scope(token, service.call(request))
            })
            .route(
                "/Tools/bookkeepingSystemVersion",
                web::get().to(bookkeeping_version),
            )
            .route("/SevUser", web::get().to(sev_users))
            .route("/StaticCountry", web::get().to(static_countries))
            .route("/CheckAccount", web::get().to(check_accounts))
            .route("/Contact", web::get().to(search_contacts))
            .route("/Contact", web::post().to(create_contact))
            .route("/Invoice/Factory/saveInvoice", web::post().to(save_invoice))
            .route("/Invoice", web::get().to(search_invoices))
            .route("/Invoice/{id}", web::get().to(get_invoice))
            .route("/Invoice/{id}/sendBy", web::put().to(send_by))
            .route("/Invoice/{id}/sendViaEmail", web::post().to(send_via_email))
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
    .route("/_sandbox/sevdesk/account", web::put().to(put_account))
    .route("/_sandbox/sevdesk/emails", web::get().to(sandbox_emails))
    .route(
        "/_sandbox/sevdesk/bank-payment",
        web::post().to(post_bank_payment),
    )
    .route(
        "/_sandbox/sevdesk/mail-fault",
        web::put().to(put_mail_fault),
    )
    .route(
        "/_sandbox/sevdesk/requests",
        web::get().to(sandbox_requests),
    )
    .route("/_sandbox/faults/sevdesk", web::put().to(put_faults));
}
