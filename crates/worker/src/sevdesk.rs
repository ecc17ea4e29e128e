//! A client for the sevDesk API v1 calls the orders domain makes.
//!
//! sevDesk wraps data in `{"objects": …}`, sends ids and sums as strings, authenticates with a bare
//! `Authorization: <token>` header and has **no idempotency keys**: making creates safe is the
//! caller's job (the orders domain searches before it creates). Every call goes through the
//! sevDesk circuit breaker; errors come back as [`HandlerError`]s, so the worker's classifier
//! decides between retry and dead letter (429/5xx/timeouts retry, honouring `Retry-After`; other
//! 4xx are permanent).

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use hookline_core::breaker::CircuitBreaker;
use reqwest::Method;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

use crate::domains::orders::mapping::{CreditNoteDraft, InvoiceDraft, Position};
use crate::error::HandlerError;

const DOWNSTREAM: &str = "sevdesk";

/// An invoice as far as the orders domain cares.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceInfo {
    /// sevDesk id.
    pub id: String,
    /// `RE` or `SR`.
    pub invoice_type: String,
    /// 100 draft, 200 open, 750 partially paid, 1000 paid.
    pub status: u16,
    /// Sum booked so far.
    pub paid_amount: Decimal,
    /// `customerInternalNote`: our marker.
    pub note: Option<String>,
}

/// A contact to create.
#[derive(Debug, Clone)]
pub struct ContactDraft {
    /// Deterministic customer number, searched before creating.
    pub customer_number: String,
    /// Organisation name, if the billing address has a company.
    pub organisation: Option<String>,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// The client. Cheap to clone; the orders bulkhead owns its connection pool.
#[derive(Clone)]
pub struct SevDeskClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
    breaker: CircuitBreaker,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn invoice_info(v: &Value) -> Option<InvoiceInfo> {
    Some(InvoiceInfo {
        id: text(&v["id"])?,
        invoice_type: text(&v["invoiceType"]).unwrap_or_else(|| "RE".into()),
        status: text(&v["status"])
            .and_then(|s| s.parse().ok())
            .unwrap_or(100),
        paid_amount: text(&v["paidAmount"])
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        note: text(&v["customerInternalNote"]),
    })
}

/// `objects` as a list, whether sevDesk sent a list or a single object.
fn objects(body: &Value) -> Vec<Value> {
    match &body["objects"] {
        Value::Array(items) => items.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

impl SevDeskClient {
    /// A client for `base_url` (e.g. `https://my.sevdesk.de/api/v1`).
    pub fn new(
        base_url: &str,
        token: &str,
        timeout: Duration,
        breaker: CircuitBreaker,
    ) -> Result<Self, reqwest::Error> {
        let http = crate::downstream::http_client(timeout, Duration::from_secs(3))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            breaker,
        })
    }

    /// The breaker (for its gauge).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
        trace: Option<&str>,
    ) -> Result<Value, HandlerError> {
        let permit = self.breaker.try_acquire()?;
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base_url), query)
            .map_err(|e| malformed(&format!("bad sevDesk URL: {e}")))?;
        let mut request = self
            .http
            .request(method, url)
            .header("authorization", &self.token);
        if let Some(traceparent) = crate::downstream::outgoing_traceparent(trace) {
            request = request.header("traceparent", traceparent);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let result = match request.send().await {
            Err(source) => Err(HandlerError::Transport {
                downstream: DOWNSTREAM,
                source,
            }),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = crate::downstream::retry_after(&response);
                match response.text().await {
                    Err(source) => Err(HandlerError::Transport {
                        downstream: DOWNSTREAM,
                        source,
                    }),
                    Ok(text) if (200..300).contains(&status) => {
                        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
                    }
                    Ok(text) => {
                        // sevDesk errors: {"error": {"message": …, "exceptionUUID": …}}
                        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        let mut body = parsed["error"]["message"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or(text);
                        crate::failure::truncate(&mut body, 300);
                        Err(HandlerError::Downstream {
                            downstream: DOWNSTREAM,
                            status,
                            body,
                            retry_after,
                        })
                    }
                }
            }
        };
        let unavailable = match &result {
            Err(HandlerError::Transport { .. }) => true,
            Err(HandlerError::Downstream { status, .. }) => *status == 429 || *status >= 500,
            _ => false,
        };
        if unavailable {
            permit.failure()
        } else {
            permit.success()
        }
        crate::downstream::count_call(DOWNSTREAM, unavailable);
        crate::downstream::report_breaker(DOWNSTREAM, &self.breaker);
        result
    }

    /// The contact with this customer number, if one exists.
    pub async fn find_contact(
        &self,
        customer_number: &str,
        trace: Option<&str>,
    ) -> Result<Option<String>, HandlerError> {
        let body = self
            .call(
                Method::GET,
                "/Contact",
                &[("customerNumber", customer_number), ("depth", "1")],
                None,
                trace,
            )
            .await?;
        Ok(objects(&body)
            .iter()
            .find(|c| text(&c["customerNumber"]).as_deref() == Some(customer_number))
            .and_then(|c| text(&c["id"])))
    }

    /// Creates a customer contact; returns its id.
    pub async fn create_contact(
        &self,
        contact: &ContactDraft,
        trace: Option<&str>,
    ) -> Result<String, HandlerError> {
        let mut body = json!({
            "category": {"id": 3, "objectName": "Category"},
            "customerNumber": contact.customer_number,
        });
        match &contact.organisation {
            Some(name) => body["name"] = json!(name),
            None => {
                body["surename"] = json!(contact.first_name);
                body["familyname"] = json!(contact.last_name);
            }
        }
        let created = self
            .call(Method::POST, "/Contact", &[], Some(body), trace)
            .await?;
        objects(&created)
            .first()
            .and_then(|c| text(&c["id"]))
            .ok_or_else(|| malformed("POST /Contact returned no id"))
    }

    /// Creates the invoice as a draft; returns it.
    pub async fn save_invoice(
        &self,
        contact_id: &str,
        draft: &InvoiceDraft,
        trace: Option<&str>,
    ) -> Result<InvoiceInfo, HandlerError> {
        let positions = positions_json("InvoicePos", &draft.positions);
        let body = json!({
            "invoice": {
                "objectName": "Invoice",
                "mapAll": true,
                "invoiceDate": draft.date.format("%d.%m.%Y").to_string(),
                "contact": {"id": contact_id, "objectName": "Contact"},
                "invoiceType": "RE",
                "currency": draft.currency,
                "status": "100",
                "discount": 0,
                "taxType": "default",
                "addressCountry": {"id": 1, "objectName": "StaticCountry"},
                "header": draft.header,
                "customerInternalNote": draft.marker,
                "showNet": draft.show_net,
            },
            "invoicePosSave": positions,
        });
        let created = self
            .call(
                Method::POST,
                "/Invoice/Factory/saveInvoice",
                &[],
                Some(body),
                trace,
            )
            .await?;
        invoice_info(&created["objects"]["invoice"])
            .ok_or_else(|| malformed("saveInvoice returned no invoice"))
    }

    /// Invoices (and cancellations) carrying `marker` in their internal note.
    pub async fn find_invoices(
        &self,
        marker: &str,
        trace: Option<&str>,
    ) -> Result<Vec<InvoiceInfo>, HandlerError> {
        // sevDesk's own spelling of the filter.
        let body = self
            .call(
                Method::GET,
                "/Invoice",
                &[("customerIntenalNote", marker)],
                None,
                trace,
            )
            .await?;
        Ok(objects(&body).iter().filter_map(invoice_info).collect())
    }

    /// One invoice.
    pub async fn get_invoice(
        &self,
        id: &str,
        trace: Option<&str>,
    ) -> Result<InvoiceInfo, HandlerError> {
        self.get_document("Invoice", id, trace).await
    }

    /// One invoice or credit note (`resource`): both come back in the same shape.
    async fn get_document(
        &self,
        resource: &str,
        id: &str,
        trace: Option<&str>,
    ) -> Result<InvoiceInfo, HandlerError> {
        let body = self
            .call(Method::GET, &format!("/{resource}/{id}"), &[], None, trace)
            .await?;
        objects(&body)
            .first()
            .and_then(invoice_info)
            .ok_or_else(|| malformed(&format!("GET /{resource}/{{id}} returned nothing")))
    }

    /// Draft → open.
    pub async fn send_by(&self, id: &str, trace: Option<&str>) -> Result<(), HandlerError> {
        self.send_document("Invoice", id, trace).await
    }

    /// Marks an invoice or a credit note (`resource`) as sent: draft → open. Repeating it on an
    /// open document changes nothing.
    async fn send_document(
        &self,
        resource: &str,
        id: &str,
        trace: Option<&str>,
    ) -> Result<(), HandlerError> {
        self.call(
            Method::PUT,
            &format!("/{resource}/{id}/sendBy"),
            &[],
            Some(json!({"sendType": "VPR", "sendDraft": false})),
            trace,
        )
        .await?;
        Ok(())
    }

    /// Books a payment on the invoice.
    pub async fn book_amount(
        &self,
        id: &str,
        amount: Decimal,
        date: DateTime<FixedOffset>,
        check_account: &str,
        trace: Option<&str>,
    ) -> Result<(), HandlerError> {
        self.book_document("Invoice", id, amount, date, check_account, trace)
            .await
    }

    /// Books `amount` on an invoice or a credit note (`resource`): sevDesk books both the same way.
    async fn book_document(
        &self,
        resource: &str,
        id: &str,
        amount: Decimal,
        date: DateTime<FixedOffset>,
        check_account: &str,
        trace: Option<&str>,
    ) -> Result<(), HandlerError> {
        let body = json!({
            "amount": amount.to_f64().unwrap_or_default(),
            "date": date.timestamp(),
            "type": "N",
            "checkAccount": {"id": check_account, "objectName": "CheckAccount"},
            "createFeed": true,
        });
        self.call(
            Method::PUT,
            &format!("/{resource}/{id}/bookAmount"),
            &[],
            Some(body),
            trace,
        )
        .await?;
        Ok(())
    }

    /// Cancels the invoice; returns the cancellation invoice's id.
    pub async fn cancel_invoice(
        &self,
        id: &str,
        trace: Option<&str>,
    ) -> Result<String, HandlerError> {
        let body = self
            .call(
                Method::POST,
                &format!("/Invoice/{id}/cancelInvoice"),
                &[],
                None,
                trace,
            )
            .await?;
        objects(&body)
            .first()
            .and_then(|i| text(&i["id"]))
            .ok_or_else(|| malformed("cancelInvoice returned no id"))
    }

    /// Creates a credit note as a draft; returns it.
    pub async fn save_credit_note(
        &self,
        contact_id: &str,
        draft: &CreditNoteDraft,
        trace: Option<&str>,
    ) -> Result<InvoiceInfo, HandlerError> {
        let body = json!({
            "creditNote": {
                "objectName": "CreditNote",
                "mapAll": true,
                "creditNoteDate": draft.date.format("%d.%m.%Y").to_string(),
                "contact": {"id": contact_id, "objectName": "Contact"},
                "status": "100",
                "header": draft.header,
                "customerInternalNote": draft.marker,
                "currency": draft.currency,
                "taxType": "default",
                "addressCountry": {"id": 1, "objectName": "StaticCountry"},
                "showNet": false,
                // Money given back to a customer for goods or a service: sevDesk's category
                // for a reduction of revenue.
                "bookingCategory": "UNDERACHIEVEMENT",
            },
            "creditNotePosSave": positions_json("CreditNotePos", &draft.positions),
            "creditNotePosDelete": null,
            "discountSave": null,
            "discountDelete": null,
            "takeDefaultAddress": true,
            "forCashRegister": false,
        });
        let created = self
            .call(
                Method::POST,
                "/CreditNote/Factory/saveCreditNote",
                &[],
                Some(body),
                trace,
            )
            .await?;
        invoice_info(&created["objects"]["creditNote"])
            .ok_or_else(|| malformed("saveCreditNote returned no credit note"))
    }

    /// The contact's credit notes. sevDesk cannot search credit notes by internal note, so the
    /// caller looks for its marker among them.
    pub async fn contact_credit_notes(
        &self,
        contact_id: &str,
        trace: Option<&str>,
    ) -> Result<Vec<InvoiceInfo>, HandlerError> {
        let body = self
            .call(
                Method::GET,
                "/CreditNote",
                &[
                    ("contact[id]", contact_id),
                    ("contact[objectName]", "Contact"),
                    ("limit", "1000"),
                ],
                None,
                trace,
            )
            .await?;
        Ok(objects(&body).iter().filter_map(invoice_info).collect())
    }

    /// One credit note.
    pub async fn get_credit_note(
        &self,
        id: &str,
        trace: Option<&str>,
    ) -> Result<InvoiceInfo, HandlerError> {
        self.get_document("CreditNote", id, trace).await
    }

    /// Credit note draft → open.
    pub async fn credit_note_send_by(
        &self,
        id: &str,
        trace: Option<&str>,
    ) -> Result<(), HandlerError> {
        self.send_document("CreditNote", id, trace).await
    }

    /// Books the money paid back on the credit note.
    pub async fn book_credit_note(
        &self,
        id: &str,
        amount: Decimal,
        date: DateTime<FixedOffset>,
        check_account: &str,
        trace: Option<&str>,
    ) -> Result<(), HandlerError> {
        self.book_document("CreditNote", id, amount, date, check_account, trace)
            .await
    }

    /// The first check account, when none is configured.
    pub async fn first_check_account(&self, trace: Option<&str>) -> Result<String, HandlerError> {
        let body = self
            .call(Method::GET, "/CheckAccount", &[], None, trace)
            .await?;
        objects(&body)
            .first()
            .and_then(|a| text(&a["id"]))
            .ok_or_else(|| malformed("no check account in sevDesk"))
    }
}

fn positions_json(object_name: &str, positions: &[Position]) -> Vec<Value> {
    positions
        .iter()
        .map(|p| {
            json!({
                "objectName": object_name,
                "mapAll": true,
                "quantity": p.quantity.to_string(),
                "price": p.price.to_string(),
                "name": p.name,
                "taxRate": p.tax_rate.normalize().to_string(),
                "unity": {"id": 1, "objectName": "Unity"},
            })
        })
        .collect()
}

fn malformed(what: &str) -> HandlerError {
    HandlerError::Downstream {
        downstream: DOWNSTREAM,
        status: 502,
        body: what.to_owned(),
        retry_after: None,
    }
}
