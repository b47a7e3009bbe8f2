//! sluice's own OpenTelemetry export (`[telemetry.export]`): a span per request and the
//! request metrics, over OTLP/HTTP in protobuf, to one collector.
//!
//! Nothing of it runs on a worker. The recorder thread, which already receives every
//! finished request's record, offers each batch to [`Exporter::offer`]: a bounded queue
//! ([`QUEUE`] records; when full a record is dropped and counted, never waited for). One side
//! thread folds the records into the metrics, batches the spans (up to [`MAX_BATCH`] per
//! export, at least every `span_interval`) and sends the metrics every `metrics_interval`;
//! what it sent, dropped or failed to send is counted for `/metrics`. At shutdown it sends
//! what it holds. The messages are opentelemetry-proto's, encoded with prost.

pub mod metrics;
pub mod spans;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::config::telemetry::ExportSettings;
use crate::record::AccessRecord;

/// Records waiting for the exporter thread; past this they are dropped (and counted).
pub const QUEUE: usize = 8192;

/// Most spans in one export.
pub const MAX_BATCH: usize = 512;

/// What the exporter did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportCounts {
    pub spans_exported: AtomicU64,
    /// Records the queue had no room for (their spans and metrics are lost).
    pub records_dropped: AtomicU64,
    /// Spans in exports the collector refused or could not be reached for.
    pub spans_failed: AtomicU64,
    pub metric_exports: AtomicU64,
    pub metric_exports_failed: AtomicU64,
}

impl ExportCounts {
    /// `(outcome, n)` for `sluice_otel_export_total`.
    pub fn outcomes(&self) -> Vec<(&'static str, u64)> {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("spans_exported", n(&self.spans_exported)),
            ("records_dropped", n(&self.records_dropped)),
            ("spans_failed", n(&self.spans_failed)),
            ("metric_exports", n(&self.metric_exports)),
            ("metric_exports_failed", n(&self.metric_exports_failed)),
        ]
    }
}

/// The writer thread's handle on the exporter.
#[derive(Clone)]
pub struct Exporter {
    tx: flume::Sender<AccessRecord>,
    pub counts: Arc<ExportCounts>,
}

impl Exporter {
    /// Queues `records` (the writer is done with them); never waits (a full queue drops and
    /// counts).
    pub fn offer(&self, records: impl Iterator<Item = AccessRecord>) {
        for record in records {
            if self.tx.try_send(record).is_err() {
                self.counts.records_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts the exporter thread; it ends, after sending what it holds, once every [`Exporter`]
/// clone is dropped.
pub fn start(settings: &ExportSettings) -> std::io::Result<(Exporter, JoinHandle<()>)> {
    let (tx, rx) = flume::bounded(QUEUE);
    let counts = Arc::new(ExportCounts::default());
    let sender = Sender {
        settings: settings.clone(),
        resource: resource(&settings.service_name),
        counts: Arc::clone(&counts),
    };
    let thread = std::thread::Builder::new()
        .name("sluice-otel".into())
        .spawn(move || export_loop(&rx, &sender))?;
    Ok((Exporter { tx, counts }, thread))
}

/// Posts encoded exports to the collector.
struct Sender {
    settings: ExportSettings,
    resource: Resource,
    counts: Arc<ExportCounts>,
}

fn export_loop(rx: &flume::Receiver<AccessRecord>, sender: &Sender) {
    let mut aggregate = metrics::Aggregate::new(unix_nanos(SystemTime::now()));
    let mut spans: Vec<Span> = Vec::with_capacity(MAX_BATCH);
    let mut spans_due = Instant::now() + sender.settings.span_interval;
    let mut metrics_due = Instant::now() + sender.settings.metrics_interval;
    let mut observed = false;
    loop {
        let wake = spans_due.min(metrics_due);
        match rx.recv_deadline(wake) {
            Ok(record) => {
                aggregate.observe(&record);
                observed = true;
                spans.extend(spans::span_of(&record));
                if spans.len() >= MAX_BATCH {
                    sender.send_spans(std::mem::take(&mut spans));
                }
            }
            Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => {
                sender.send_spans(spans);
                if observed {
                    sender.send_metrics(&aggregate);
                }
                return;
            }
        }
        let now = Instant::now();
        if now >= spans_due {
            if !spans.is_empty() {
                sender.send_spans(std::mem::take(&mut spans));
            }
            spans_due = now + sender.settings.span_interval;
        }
        if now >= metrics_due {
            if observed {
                sender.send_metrics(&aggregate);
            }
            metrics_due = now + sender.settings.metrics_interval;
        }
    }
}

impl Sender {
    fn send_spans(&self, spans: Vec<Span>) {
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let counter = if self.post("/v1/traces", &request.encode_to_vec()) {
            &self.counts.spans_exported
        } else {
            &self.counts.spans_failed
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn send_metrics(&self, aggregate: &metrics::Aggregate) {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics: aggregate.metrics(unix_nanos(SystemTime::now())),
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        let counter = if self.post("/v1/metrics", &request.encode_to_vec()) {
            &self.counts.metric_exports
        } else {
            &self.counts.metric_exports_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// POSTs one export; whether the collector took it.
    fn post(&self, path: &str, body: &[u8]) -> bool {
        let url = format!("{}{path}", self.settings.url);
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/x-protobuf")];
        headers.extend(
            self.settings
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        match crate::provider::blocking_http::post_with(&url, &headers, body, &[]) {
            Ok((status, _)) if status < 300 => true,
            Ok((status, _)) => {
                tracing::warn!(%url, status, "the OpenTelemetry collector refused an export");
                false
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot reach the OpenTelemetry collector");
                false
            }
        }
    }
}

fn resource(service_name: &str) -> Resource {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut attributes: Vec<KeyValue> = vec![
        spans::text("service.name", service_name),
        spans::text("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if !host.is_empty() {
        attributes.push(spans::text("host.name", &host));
    }
    Resource {
        attributes,
        ..Resource::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "sluice".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
        .try_into()
        .unwrap_or(u64::MAX)
}
