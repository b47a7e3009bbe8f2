//! The relay of Claude Code's OpenTelemetry exports. Workers accept an OTLP/HTTP export on
//! `/v1/metrics`, `/v1/logs` or `/v1/traces` and hand its bytes to this relay without waiting
//! (a full queue drops the export: telemetry must never slow inference; the queue holds at most
//! [`QUEUE`] exports and [`QUEUED_BYTES`] bytes); one side thread posts
//! each export, unchanged, to every collector configured for its signal, with the collector's
//! own header fields and never the client's credential.

pub mod export;
pub mod trace_context;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::file::Signal;
use crate::config::telemetry::TelemetrySettings;

/// Exports waiting for the relay thread; past this they are dropped.
pub const QUEUE: usize = 256;

/// Bytes of exports waiting for the relay thread; past this they are dropped.
pub const QUEUED_BYTES: u64 = 16 * 1024 * 1024;

/// The largest export taken (OTLP exporters batch far below this).
pub const MAX_EXPORT_BYTES: u64 = 4 * 1024 * 1024;

/// One export, as the client sent it.
#[derive(Debug)]
pub struct Export {
    pub signal: Signal,
    pub body: Bytes,
    pub content_type: String,
    pub content_encoding: Option<String>,
}

/// What the relay did, for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayCounts {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    /// Bytes queued and not yet posted.
    queued_bytes: AtomicU64,
}

/// The relay: its settings, its queue and its counts.
pub struct TelemetryRelay {
    settings: Arc<TelemetrySettings>,
    exports: flume::Sender<Export>,
    queue: flume::Receiver<Export>,
    pub counts: Arc<RelayCounts>,
}

impl std::fmt::Debug for TelemetryRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TelemetryRelay({} collectors)",
            self.settings.collectors.len()
        )
    }
}

impl RelayCounts {
    /// `(outcome, exports)` for `/metrics`.
    pub fn outcomes(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("forwarded", self.forwarded.load(Ordering::Relaxed)),
            ("dropped", self.dropped.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
        ]
    }
}

impl TelemetryRelay {
    /// A relay for `settings`, or `None` when no collector is configured. Starts no thread.
    pub fn open(settings: &TelemetrySettings) -> Option<TelemetryRelay> {
        if settings.collectors.is_empty() {
            return None;
        }
        let (exports, queue) = flume::bounded(QUEUE);
        Some(TelemetryRelay {
            settings: Arc::new(settings.clone()),
            exports,
            queue,
            counts: Arc::default(),
        })
    }

    /// Starts the relay thread; it stops once this relay is dropped.
    pub fn start(&self) {
        let queue = self.queue.clone();
        let settings = Arc::clone(&self.settings);
        let counts = Arc::clone(&self.counts);
        let spawned = std::thread::Builder::new()
            .name("sluice-telemetry".into())
            .spawn(move || relay(&settings, &queue, &counts));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the telemetry relay");
        }
    }

    /// Queues `export` for the collectors that take its signal; drops it when none does or the
    /// queue is full. Never waits.
    pub fn submit(&self, export: Export) {
        if self.settings.collectors_of(export.signal).next().is_none() {
            return;
        }
        let len = export.body.len() as u64;
        let queued = self.counts.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if queued + len > QUEUED_BYTES || self.exports.try_send(export).is_err() {
            self.counts.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn relay(settings: &TelemetrySettings, queue: &flume::Receiver<Export>, counts: &RelayCounts) {
    while let Ok(export) = queue.recv() {
        post(settings, &export, counts);
        counts
            .queued_bytes
            .fetch_sub(export.body.len() as u64, Ordering::AcqRel);
    }
}

/// Posts `export` to every collector of its signal.
fn post(settings: &TelemetrySettings, export: &Export, counts: &RelayCounts) {
    for collector in settings.collectors_of(export.signal) {
        let url = format!("{}{}", collector.url, export.signal.path());
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", export.content_type.as_str())];
        if let Some(encoding) = &export.content_encoding {
            headers.push(("Content-Encoding", encoding));
        }
        headers.extend(
            collector
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        match crate::provider::blocking_http::post_with(&url, &headers, &export.body, &[]) {
            Ok((status, _)) if status < 300 => {
                counts.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, _)) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(collector = %collector.url, status, "the collector refused a telemetry export");
            }
            Err(e) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(collector = %collector.url, error = %e, "cannot reach the collector");
            }
        }
    }
}
