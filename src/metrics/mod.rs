//! Prometheus metrics, aggregated off the hot path.
//!
//! Workers already hand every finished request's [`AccessRecord`] to the recorder
//! thread; that thread owns a [`Collector`] that folds each batch into the aggregates and, at
//! most every [`PUBLISH_INTERVAL`], publishes their rendered text through an `ArcSwap`. A scrape
//! (`GET /metrics`, on any worker) loads that text and appends a few gauges read at scrape time
//! (store queue depths, dropped records, ledger health): no lock anywhere, and a worker pays
//! nothing for metrics beyond the record it sends anyway. Counters lag by at most the interval.
//!
//! Label values a client can choose (the model) are only used once sluice routed them, and
//! every labelled family is capped at [`MAX_SERIES`] series: past that, new label sets are
//! counted under `other`, so a stream of invented model names cannot grow memory.

mod histogram;
mod render;

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hashbrown::{Equivalent, HashMap};

use crate::record::AccessRecord;
use crate::tls::accept::HandshakeOutcome;
use histogram::Histogram;
pub use render::{ClusterGauges, ScrapeGauges};

/// How often the collector republishes the rendered counters (when they changed).
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(200);

/// Most series one labelled family keeps; further label sets fold into `other`.
pub const MAX_SERIES: usize = 2000;

pub const REQUESTS_TOTAL: &str = "sluice_requests_total";
pub const REQUEST_DURATION: &str = "sluice_request_duration_seconds";
pub const ADDED_LATENCY: &str = "sluice_added_latency_seconds";
pub const UPSTREAM_TTFB: &str = "sluice_upstream_ttfb_seconds";
pub const TOKENS_TOTAL: &str = "sluice_tokens_total";
pub const COST_TOTAL: &str = "sluice_cost_usd_total";
pub const CACHE_SAVINGS_TOTAL: &str = "sluice_cache_savings_usd_total";
pub const REJECTIONS_TOTAL: &str = "sluice_rejections_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "sluice_upstream_errors_total";
pub const FALLBACKS_TOTAL: &str = "sluice_fallbacks_total";
pub const STORE_QUEUE_DEPTH: &str = "sluice_store_queue_depth";
pub const STORE_DROPPED_TOTAL: &str = "sluice_store_dropped_total";
pub const LEDGER_HEALTHY: &str = "sluice_ledger_healthy";
pub const OUTBOX_PENDING: &str = "sluice_outbox_pending";
pub const OUTBOX_SHIPPED_TOTAL: &str = "sluice_outbox_shipped_total";
pub const SHARED_STORE_UP: &str = "sluice_shared_store_up";
pub const SHARED_STORE_CALLS_TOTAL: &str = "sluice_shared_store_calls_total";
pub const WORKER_PANICS_TOTAL: &str = "sluice_worker_panics_total";
pub const UPSTREAM_DISCARDED_TOTAL: &str = "sluice_upstream_connections_discarded_total";
pub const TLS_HANDSHAKES_TOTAL: &str = "sluice_tls_handshakes_total";
pub const TLS_CERTIFICATE_EXPIRY: &str = "sluice_tls_certificate_expiry_timestamp_seconds";
pub const TELEMETRY_EXPORTS_TOTAL: &str = "sluice_telemetry_exports_total";
pub const OTEL_EXPORT_TOTAL: &str = "sluice_otel_export_total";

/// The label used for a series past [`MAX_SERIES`].
const OTHER: &str = "other";

/// `(operation, format, status, model)`
type RequestLabels = (&'static str, &'static str, u16, String);
/// `(model, team, kind)`
type TokenLabels = (String, String, &'static str);

/// Everything counted from access records.
#[derive(Default)]
struct Aggregate {
    requests: HashMap<RequestLabels, u64>,
    duration: HashMap<&'static str, Histogram>,
    added: Histogram,
    ttfb: Histogram,
    tokens: HashMap<TokenLabels, u64>,
    /// Picodollars by `(model, team)`.
    cost: HashMap<(String, String), u64>,
    /// Picodollars the prompt cache saved by `(model, team)` (negative: it cost more).
    cache_savings: HashMap<(String, String), i64>,
    rejections: HashMap<&'static str, u64>,
    /// By `(upstream, error type)`.
    upstream_errors: HashMap<(String, String), u64>,
    fallbacks: HashMap<String, u64>,
}

/// The published metrics text, shared by the collector (which stores) and scrapes (which load).
pub struct Metrics {
    published: ArcSwap<String>,
    /// Panics caught on worker threads (a connection's task, or a whole worker that was
    /// replaced). Rare events, counted where they happen.
    worker_panics: AtomicU64,
    /// Upstream connections closed because their response did not end exactly on its framing
    /// (bytes after it, an unsolicited 101): never pooled.
    upstream_discarded: AtomicU64,
    /// HTTPS handshakes by [`HandshakeOutcome`].
    tls_handshakes: [AtomicU64; HandshakeOutcome::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            published: ArcSwap::from_pointee(render::counters(&Aggregate::default())),
            worker_panics: AtomicU64::new(0),
            upstream_discarded: AtomicU64::new(0),
            tls_handshakes: Default::default(),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition (format 0.0.4): the last published counters and
    /// histograms, then the store gauges as of now.
    pub fn render(&self, gauges: &ScrapeGauges) -> String {
        let counters = self.published.load();
        let mut text = String::with_capacity(counters.len() + 1024);
        text.push_str(&counters);
        render::stores(&mut text, gauges);
        render::events(
            &mut text,
            self.worker_panics.load(Ordering::Relaxed),
            self.upstream_discarded.load(Ordering::Relaxed),
        );
        render::certificates(&mut text, &gauges.certificates);
        render::telemetry(&mut text, &gauges.telemetry);
        render::export(&mut text, &gauges.export);
        if !gauges.certificates.is_empty() {
            let counts: Vec<_> = HandshakeOutcome::ALL
                .iter()
                .map(|o| {
                    let n = self
                        .tls_handshakes
                        .get(o.index())
                        .map_or(0, |c| c.load(Ordering::Relaxed));
                    (o.label(), n)
                })
                .collect();
            render::handshakes(&mut text, &counts);
        }
        text
    }

    /// Counts an HTTPS handshake's end.
    pub fn count_tls_handshake(&self, outcome: HandshakeOutcome) {
        if let Some(counter) = self.tls_handshakes.get(outcome.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a panic caught on a worker thread.
    pub fn count_worker_panic(&self) {
        self.worker_panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an upstream connection closed for bytes beyond its response's framing.
    pub fn count_upstream_discarded(&self) {
        self.upstream_discarded.fetch_add(1, Ordering::Relaxed);
    }
}

/// The aggregates, owned by the record writer thread.
pub struct Collector {
    aggregate: Aggregate,
    shared: Arc<Metrics>,
    changed: bool,
    published_at: Instant,
}

impl Collector {
    pub fn new(shared: Arc<Metrics>) -> Self {
        Self {
            aggregate: Aggregate::default(),
            shared,
            changed: false,
            published_at: Instant::now(),
        }
    }

    /// Folds a batch of finished requests in; publishes if the interval has passed.
    pub fn observe(&mut self, records: &[AccessRecord]) {
        for record in records {
            self.aggregate.observe(record);
        }
        self.changed |= !records.is_empty();
        if self.changed && self.published_at.elapsed() >= PUBLISH_INTERVAL {
            self.publish();
        }
    }

    /// Publishes the current counters now.
    pub fn publish(&mut self) {
        let text = render::counters(&self.aggregate);
        self.shared.published.store(Arc::new(text));
        self.changed = false;
        self.published_at = Instant::now();
    }
}

impl Aggregate {
    fn observe(&mut self, r: &AccessRecord) {
        let model = routed_model(r);
        let team = r.caller.team().unwrap_or_default();
        let (operation, format, status) = (r.operation, r.format.label(), r.status);
        count(
            &mut self.requests,
            Borrowed((operation, format, status, model)),
            |Borrowed((o, f, s, m))| (o, f, s, m.to_owned()),
            || (operation, format, status, OTHER.into()),
            |n| *n += 1,
        );
        self.duration
            .entry(r.operation)
            .or_insert_with(Histogram::for_requests)
            .observe_us(r.total_us);
        if r.upstream.is_some() {
            self.added.observe_us(r.added_us);
        }
        if let Some(ttfb) = r.ttfb_us {
            self.ttfb.observe_us(ttfb);
        }
        self.observe_usage(r, model, team);
        self.observe_errors(r);
    }

    fn observe_usage(&mut self, r: &AccessRecord, model: &str, team: &str) {
        let kinds = [
            ("input", r.input_tokens),
            ("output", r.output_tokens),
            ("cache_creation", r.cache_creation_input_tokens),
            ("cache_creation_5m", r.cache_creation_5m_input_tokens),
            ("cache_creation_1h", r.cache_creation_1h_input_tokens),
            ("cache_read", r.cache_read_input_tokens),
        ];
        for (kind, n) in kinds.into_iter().filter(|(_, n)| *n > 0) {
            count(
                &mut self.tokens,
                Borrowed((model, team, kind)),
                |Borrowed((m, t, k))| (m.to_owned(), t.to_owned(), k),
                || (OTHER.into(), OTHER.into(), kind),
                |total| *total = total.saturating_add(n),
            );
        }
        if r.cost_pico > 0 {
            count(
                &mut self.cost,
                Borrowed((model, team)),
                owned_pair,
                other_pair,
                |total| *total = total.saturating_add(r.cost_pico),
            );
        }
        if r.cache_savings_pico != 0 {
            count(
                &mut self.cache_savings,
                Borrowed((model, team)),
                owned_pair,
                other_pair,
                |total| *total = total.saturating_add(r.cache_savings_pico),
            );
        }
    }

    fn observe_errors(&mut self, r: &AccessRecord) {
        if let Some(reason) = r.error.filter(|_| r.rejected) {
            *self.rejections.entry(reason).or_default() += 1;
        }
        let upstream = r.upstream.as_deref().unwrap_or_default();
        let status;
        let kind = match (&r.upstream_error, r.error) {
            (Some(kind), _) => Some(kind.as_str()),
            (None, Some(label)) if label.starts_with("upstream_") => Some(label),
            (None, _) if r.upstream.is_some() && r.status >= 500 => {
                status = r.status.to_string();
                Some(status.as_str())
            }
            _ => None,
        };
        if let Some(kind) = kind {
            let key = Borrowed((upstream, kind));
            count(
                &mut self.upstream_errors,
                key,
                owned_pair,
                other_pair,
                |n| *n += 1,
            );
        }
        for fallback in &r.fallbacks {
            let from = fallback.split(':').next().unwrap_or_default();
            count(
                &mut self.fallbacks,
                Borrowed(from),
                |Borrowed(from)| from.to_owned(),
                || OTHER.into(),
                |n| *n += 1,
            );
        }
    }
}

/// The model label: the client's model name once sluice routed it, else empty.
fn routed_model(r: &AccessRecord) -> &str {
    match (&r.model, &r.upstream) {
        (Some(model), Some(_)) => model,
        _ => "",
    }
}

/// Updates the counter for `key` (a label set borrowed from the record; owned only when the
/// series is new), or the one for `other` when the family already holds [`MAX_SERIES`].
fn count<K, Q, V>(
    map: &mut HashMap<K, V>,
    key: Q,
    owned: impl FnOnce(Q) -> K,
    other: impl FnOnce() -> K,
    update: impl FnOnce(&mut V),
) where
    K: Hash + Eq,
    Q: Hash + Equivalent<K>,
    V: Default,
{
    if let Some(value) = map.get_mut(&key) {
        update(value);
        return;
    }
    let key = if map.len() >= MAX_SERIES {
        other()
    } else {
        owned(key)
    };
    update(map.entry(key).or_default());
}

/// A label set borrowed from a record, looked up in a family keyed by owned labels: it hashes
/// as the owned key does (`String` hashes as `str`).
#[derive(Hash)]
struct Borrowed<T>(T);

impl Equivalent<RequestLabels> for Borrowed<(&'static str, &'static str, u16, &str)> {
    fn equivalent(&self, key: &RequestLabels) -> bool {
        let (operation, format, status, model) = self.0;
        (operation, format, status, model) == (key.0, key.1, key.2, key.3.as_str())
    }
}

impl Equivalent<TokenLabels> for Borrowed<(&str, &str, &'static str)> {
    fn equivalent(&self, key: &TokenLabels) -> bool {
        self.0 == (key.0.as_str(), key.1.as_str(), key.2)
    }
}

impl Equivalent<String> for Borrowed<&str> {
    fn equivalent(&self, key: &String) -> bool {
        self.0 == key
    }
}

impl Equivalent<(String, String)> for Borrowed<(&str, &str)> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == (key.0.as_str(), key.1.as_str())
    }
}

fn owned_pair(Borrowed((a, b)): Borrowed<(&str, &str)>) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

fn other_pair() -> (String, String) {
    (OTHER.into(), OTHER.into())
}

#[cfg(test)]
mod tests;
