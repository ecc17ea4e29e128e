//! `POST /webhooks/shopify`: the whole ingest path of one webhook.

use std::time::Duration;

use actix_web::http::header::{ALLOW, CONTENT_LENGTH, HeaderMap, HeaderValue};
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::{HttpRequest, HttpResponse, Resource, ResponseError, web};
use chrono::Utc;
use futures_util::StreamExt;
use hookline_core::envelope::{EnvelopeError, HeaderError};
use hookline_core::signature::SignatureError;
use hookline_core::trace::TraceParent;
use hookline_core::{Envelope, topics};
use serde_json::json;
use tracing::Instrument;

use crate::publish::PublishError;
use crate::routes::{error_chain_fmt, error_response};
use crate::startup::AppState;
use crate::verify::{VerifyError, verify};

/// Seconds Shopify (or any sender) is asked to wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "5";

/// Why a webhook was not accepted. Each variant maps to one status; none publishes anything.
#[derive(thiserror::Error)]
pub enum WebhookError {
    /// 413: the body is over `HOOKLINE_MAX_BODY_BYTES`.
    #[error("the request body exceeds {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// 400: the body could not be read (client went away, broken chunking).
    #[error("the request body could not be read")]
    BodyRead(#[source] actix_web::error::PayloadError),
    /// 408: the body did not arrive within `HOOKLINE_HTTP_CLIENT_TIMEOUT_MS` of the head.
    #[error("the request body did not arrive within {0:?}")]
    SlowBody(Duration),
    /// 401 / 415 / 400 / 403 from the verification step.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// 400: the verified body is not a JSON object.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// 503: the broker did not confirm.
    #[error("the event could not be handed to the broker; retry later")]
    Unavailable(#[source] PublishError),
}

impl std::fmt::Debug for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        error_chain_fmt(self, f)
    }
}

impl WebhookError {
    fn code(&self) -> &'static str {
        match self {
            WebhookError::TooLarge { .. } => "payload_too_large",
            WebhookError::BodyRead(_) => "unreadable_body",
            WebhookError::SlowBody(_) => "request_timeout",
            WebhookError::Verify(VerifyError::Signature(SignatureError::Missing)) => {
                "missing_signature"
            }
            WebhookError::Verify(VerifyError::Signature(_)) => "invalid_signature",
            WebhookError::Verify(VerifyError::ContentType) => "unsupported_media_type",
            WebhookError::Verify(VerifyError::Headers(HeaderError::Missing(_))) => "missing_header",
            WebhookError::Verify(VerifyError::Headers(HeaderError::Invalid { .. })) => {
                "invalid_header"
            }
            WebhookError::Verify(VerifyError::Headers(HeaderError::Conflict { .. })) => {
                "conflicting_headers"
            }
            WebhookError::Verify(VerifyError::ShopNotAllowed(_)) => "shop_not_allowed",
            WebhookError::Envelope(_) => "invalid_json",
            WebhookError::Unavailable(_) => "broker_unavailable",
        }
    }
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebhookError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            WebhookError::BodyRead(_) | WebhookError::Envelope(_) => StatusCode::BAD_REQUEST,
            WebhookError::Verify(VerifyError::Signature(_)) => StatusCode::UNAUTHORIZED,
            WebhookError::Verify(VerifyError::ContentType) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebhookError::Verify(VerifyError::Headers(_)) => StatusCode::BAD_REQUEST,
            WebhookError::Verify(VerifyError::ShopNotAllowed(_)) => StatusCode::FORBIDDEN,
            WebhookError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = error_response(self.status_code(), self.code(), self.to_string());
        if matches!(self, WebhookError::Unavailable(_)) {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if matches!(self, WebhookError::SlowBody(_)) {
            // The rest of the body may still be trickling in: do not wait for it.
            response
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        response
    }
}

/// The endpoint's path.
pub const PATH: &str = "/webhooks/shopify";

/// `POST /webhooks/shopify`; any other method gets 405 with `Allow: POST` and the usual JSON
/// error body.
pub fn service() -> Resource {
    web::resource(PATH)
        .route(web::post().to(receive))
        .default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed here; Shopify webhooks are POSTed",
            request.method()
        ),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    response
}

/// Receives one Shopify webhook. Answers 200 only after the broker confirmed the envelope.
pub async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let received_at = Utc::now();
    let span = tracing::info_span!(
        "webhook",
        topic = tracing::field::Empty,
        shop = tracing::field::Empty,
        webhook_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    // The trace starts here: with trace export on, the envelope carries this span's own
    // traceparent, so the worker's spans and the downstream calls become its children.
    let trace = hookline_telemetry::traceparent_of(&span)
        .and_then(|t| TraceParent::parse(&t))
        .unwrap_or_else(TraceParent::new_root);
    span.record("trace_id", trace.trace_id_hex());
    let outcome = ingest(&request, payload, &state, received_at, &span, trace)
        .instrument(span.clone())
        .await;
    let _guard = span.enter();
    let (topic_label, status) = match &outcome {
        Ok((topic, _)) => (*topic, StatusCode::OK),
        Err((topic, e)) => (*topic, e.status_code()),
    };
    metrics::counter!("hookline_ingest_requests_total", "topic" => topic_label, "status" => status.as_str().to_owned()).increment(1);
    match outcome {
        Ok((_, envelope)) => {
            tracing::info!("accepted");
            Ok(HttpResponse::Ok()
                .json(json!({"status": "accepted", "event_id": envelope.event_id})))
        }
        Err((_, error)) => {
            if status.is_server_error() {
                tracing::warn!(error = ?error, "not accepted");
            } else {
                tracing::info!(error = ?error, status = status.as_u16(), "refused");
            }
            Err(error)
        }
    }
}

/// Label for the metrics: the topic once it is verified and known, so that unsigned callers
/// cannot create label values (and time series) at will.
type TopicLabel = &'static str;

async fn ingest(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    received_at: chrono::DateTime<Utc>,
    span: &tracing::Span,
    trace: TraceParent,
) -> Result<(TopicLabel, Envelope), (TopicLabel, WebhookError)> {
    // actix times out a slow request head, never a slow body: a client that sends its headers
    // and then trickles (or withholds) the body would hold the connection for ever.
    let body = tokio::time::timeout(
        state.client_timeout,
        read_body(request.headers(), payload, state.max_body_bytes),
    )
    .await
    .unwrap_or(Err(WebhookError::SlowBody(state.client_timeout)))
    .map_err(|e| ("unverified", e))?;
    let verified = verify(&state.secrets, body, |name| request.headers().get(name).and_then(|v| v.to_str().ok())).map_err(|e| {
        if let VerifyError::Signature(reason) = &e {
            metrics::counter!("hookline_ingest_verify_failures_total", "reason" => signature_reason(reason)).increment(1);
        }
        ("unverified", WebhookError::from(e))
    })?;
    let label = topics::lookup(&verified.headers.topic).map_or("unknown", |t| t.topic);
    span.record("topic", verified.headers.topic.as_str());
    span.record("shop", verified.headers.shop_domain.as_str());
    span.record("webhook_id", verified.headers.webhook_id.as_str());

    let envelope = Envelope::from_webhook(verified.headers, verified.body, received_at, trace)
        .map_err(|e| (label, e.into()))?;
    span.record("event_id", tracing::field::display(envelope.event_id));

    let in_flight = metrics::gauge!("hookline_ingest_publish_in_flight");
    in_flight.increment(1.0);
    let published = state.publisher.publish(&envelope).await;
    in_flight.decrement(1.0);
    match published {
        Ok(confirm_latency) => {
            metrics::histogram!("hookline_ingest_confirm_seconds")
                .record(confirm_latency.as_secs_f64());
            Ok((label, envelope))
        }
        Err(error) => {
            metrics::counter!("hookline_ingest_publish_failures_total", "kind" => error.kind())
                .increment(1);
            Err((label, WebhookError::Unavailable(error)))
        }
    }
}

fn signature_reason(e: &SignatureError) -> &'static str {
    match e {
        SignatureError::Missing => "missing",
        SignatureError::Malformed => "malformed",
        SignatureError::Mismatch => "mismatch",
        SignatureError::Conflicting => "conflicting",
    }
}

/// Reads the body, refusing it as soon as it is known to exceed `limit`: at once from
/// `Content-Length`, or while streaming a chunked body.
async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, WebhookError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(WebhookError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(WebhookError::BodyRead)?;
        if body.len() + chunk.len() > limit {
            return Err(WebhookError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
