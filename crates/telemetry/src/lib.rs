//! Logs, traces and metrics, set up the same way in every hookline binary.
//!
//! Logs go through `tracing` (text or JSON lines, filtered by `RUST_LOG`). Metrics go through the
//! `metrics` facade into a Prometheus recorder that `GET /metrics` renders; the recorder is
//! process-global, so it is installed once however many servers a process (a test) starts.
//!
//! Traces: the same `tracing` spans are exported as OpenTelemetry spans over OTLP (HTTP/protobuf)
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and not at all otherwise. A webhook's trace starts
//! at the ingestor's request span; its W3C `traceparent` travels in the envelope, the AMQP headers
//! and outbox rows, and each later span ([`continue_trace`]) and outbound HTTP call
//! ([`traceparent_of`]) joins it.

use std::collections::HashMap;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written (`HOOKLINE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

impl hookline_core::config::SettingValue for LogFormat {
    const EXPECTED: &'static str = "json or text";
    fn parse_setting(text: &str) -> Option<Self> {
        Self::parse(text)
    }
}

/// `HOOKLINE_LOG_FORMAT`, in every binary that logs.
pub const LOG_FORMAT: hookline_core::config::Setting<LogFormat> =
    hookline_core::config::Setting::new(
        "HOOKLINE_LOG_FORMAT",
        "text",
        "`json` for one JSON object per line (log shippers), `text` for a terminal. `RUST_LOG` filters (default `info`).",
    );

/// Latency buckets in seconds: fine-grained below 10 ms, where a healthy confirm or commit sits,
/// and up to a minute for end-to-end lag through retries.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
    5.0, 10.0, 30.0, 60.0,
];

/// Installs the global log subscriber, without trace export. Safe to call more than once (later
/// calls do nothing).
pub fn init_logging(format: LogFormat) {
    install(format, None);
}

/// Keeps the trace exporter alive; dropping it flushes the spans not sent yet.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // The exporter's HTTP client blocks: flush from a plain thread, never from a runtime
            // worker.
            let _ = std::thread::spawn(move || provider.shutdown()).join();
        }
    }
}

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OTLP trace exporter: {0}")]
pub struct TelemetryError(String);

/// Installs logging and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OTLP trace export (HTTP and
/// protobuf; the standard `OTEL_EXPORTER_OTLP_*` and `OTEL_SERVICE_NAME` variables apply).
/// `service` names the binary when `OTEL_SERVICE_NAME` does not.
pub fn init(format: LogFormat, service: &'static str) -> Result<Telemetry, TelemetryError> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    if endpoint.trim().is_empty() {
        install(format, None);
        return Ok(Telemetry { provider: None });
    }
    // Built on a plain thread: the blocking HTTP client must not be created or dropped on a
    // runtime thread.
    let provider = std::thread::spawn(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service);
        }
        Ok::<_, TelemetryError>(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build(),
        )
    })
    .join()
    .map_err(|_| TelemetryError("exporter set-up panicked".into()))??;
    install_with_provider(format, provider.clone(), service);
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// Installs logging plus trace export through `provider` (tests pass one with an in-memory
/// exporter). Safe to call more than once (later calls do nothing).
pub fn install_with_provider(
    format: LogFormat,
    provider: SdkTracerProvider,
    service: &'static str,
) {
    install(format, Some(provider.tracer(service)));
    opentelemetry::global::set_tracer_provider(provider);
}

/// `RUST_LOG` filters the log lines only: spans are exported at `info` and above whatever the
/// log level, so quieter logs do not cut traces short.
fn install(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::Tracer>) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_filter(LevelFilter::INFO)
    });
    let registry = tracing_subscriber::registry().with(otel);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_target(false)
                    .with_filter(filter()),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_filter(filter()),
            )
            .try_init(),
    };
}

/// Makes `span` a child of the trace `traceparent` names (W3C text). Call it before the span is
/// first entered; without trace export it does nothing.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The W3C `traceparent` of `span` as exported, so what follows it (a queued event, an outbound
/// call) becomes its child. `None` without trace export, or for a span that is filtered out.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// The process-wide Prometheus handle, installing the recorder on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
