//! The Prometheus text exposition format: `# HELP`, `# TYPE`, then one line per series, label
//! values escaped (`\\`, `\"`, `\n`).

use std::fmt::Write;

use super::histogram::Histogram;
use super::*;

/// Values read at scrape time from the record writers' handles.
#[derive(Debug, Default)]
pub struct ScrapeGauges {
    /// `(store, records waiting for its writer thread)`
    pub queued: Vec<(&'static str, usize)>,
    /// `(store, records dropped because its queue was full)`
    pub dropped: Vec<(&'static str, u64)>,
    pub ledger_healthy: bool,
    /// `(certificate, not-after as Unix seconds)` of the served HTTPS certificates.
    pub certificates: Vec<(String, u64)>,
    /// `(outcome, exports)` of the telemetry relay, when one runs.
    pub telemetry: Vec<(&'static str, u64)>,
    /// `(outcome, n)` of sluice's own OpenTelemetry export, when it runs.
    pub export: Vec<(&'static str, u64)>,
    /// A cluster node's shared stores.
    pub cluster: Option<ClusterGauges>,
}

/// What a cluster node shows of its outbox and shared stores.
#[derive(Debug, Default, Clone)]
pub struct ClusterGauges {
    /// Records committed locally, not yet in PostgreSQL.
    pub outbox_pending: u64,
    /// Records this process stored in PostgreSQL.
    pub outbox_shipped: u64,
    pub postgres_up: bool,
    /// `None`: no budget is leased, Redis is not used.
    pub redis_up: Option<bool>,
    /// Lease renewals sent to Redis.
    pub redis_calls: u64,
    /// Batches (transactions) sent to PostgreSQL.
    pub postgres_calls: u64,
}

/// Every family computed from access records.
pub(super) fn counters(agg: &Aggregate) -> String {
    let mut out = String::with_capacity(16 * 1024);
    requests(&mut out, agg);
    histograms(&mut out, agg);
    usage(&mut out, agg);
    errors(&mut out, agg);
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line: `name{a="x",b="y"} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn requests(out: &mut String, agg: &Aggregate) {
    header(
        out,
        REQUESTS_TOTAL,
        "counter",
        "Requests finished, by operation, client API format, HTTP status and routed model.",
    );
    for ((op, format, status, model), n) in sorted(&agg.requests) {
        let status = status.to_string();
        let labels = [
            ("operation", *op),
            ("format", *format),
            ("status", status.as_str()),
            ("model", model.as_str()),
        ];
        sample(out, REQUESTS_TOTAL, &labels, n);
    }
}

fn histograms(out: &mut String, agg: &Aggregate) {
    header(
        out,
        REQUEST_DURATION,
        "histogram",
        "Whole request time from head received to last byte sent, by operation.",
    );
    let mut ops: Vec<_> = agg.duration.iter().collect();
    ops.sort_by_key(|(op, _)| **op);
    for (op, h) in ops {
        histogram(out, REQUEST_DURATION, &[("operation", op)], h);
    }
    header(
        out,
        ADDED_LATENCY,
        "histogram",
        "Time sluice itself added to a forwarded request (excluding upstream and client upload).",
    );
    histogram(out, ADDED_LATENCY, &[], &agg.added);
    header(
        out,
        UPSTREAM_TTFB,
        "histogram",
        "Time from the request sent upstream to the upstream's first response byte.",
    );
    histogram(out, UPSTREAM_TTFB, &[], &agg.ttfb);
}

fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    for (bound, count) in h.cumulative() {
        let le = bound.map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
        let mut with_le = labels.to_vec();
        with_le.push(("le", le.as_str()));
        sample(out, &bucket, &with_le, count);
    }
    sample(out, &format!("{name}_sum"), labels, h.sum_seconds());
    sample(out, &format!("{name}_count"), labels, h.count());
}

fn usage(out: &mut String, agg: &Aggregate) {
    header(
        out,
        TOKENS_TOTAL,
        "counter",
        "Tokens metered from responses, by routed model, team and kind.",
    );
    for ((model, team, kind), n) in sorted(&agg.tokens) {
        let labels = [
            ("model", model.as_str()),
            ("team", team.as_str()),
            ("kind", *kind),
        ];
        sample(out, TOKENS_TOTAL, &labels, n);
    }
    header(
        out,
        COST_TOTAL,
        "counter",
        "Cost in US dollars at the configured prices, by routed model and team.",
    );
    for ((model, team), pico) in sorted(&agg.cost) {
        let labels = [("model", model.as_str()), ("team", team.as_str())];
        sample(out, COST_TOTAL, &labels, *pico as f64 / 1e12);
    }
    header(
        out,
        CACHE_SAVINGS_TOTAL,
        "counter",
        "What the prompt cache saved against the same tokens billed as plain input, in US dollars, by routed model and team (negative where writes cost more than reads saved).",
    );
    for ((model, team), pico) in sorted(&agg.cache_savings) {
        let labels = [("model", model.as_str()), ("team", team.as_str())];
        sample(out, CACHE_SAVINGS_TOTAL, &labels, *pico as f64 / 1e12);
    }
}

fn errors(out: &mut String, agg: &Aggregate) {
    header(
        out,
        REJECTIONS_TOTAL,
        "counter",
        "Requests sluice refused by policy (authentication, model allow-list, rate limit, store).",
    );
    for (reason, n) in sorted(&agg.rejections) {
        sample(out, REJECTIONS_TOTAL, &[("reason", reason)], n);
    }
    header(
        out,
        UPSTREAM_ERRORS_TOTAL,
        "counter",
        "Requests that ended in an upstream error, by upstream and error type.",
    );
    for ((upstream, kind), n) in sorted(&agg.upstream_errors) {
        let labels = [("upstream", upstream.as_str()), ("type", kind.as_str())];
        sample(out, UPSTREAM_ERRORS_TOTAL, &labels, n);
    }
    header(
        out,
        FALLBACKS_TOTAL,
        "counter",
        "Attempts that failed over to the next deployment, by the upstream that failed.",
    );
    for (upstream, n) in sorted(&agg.fallbacks) {
        sample(out, FALLBACKS_TOTAL, &[("upstream", upstream)], n);
    }
}

pub(super) fn stores(out: &mut String, gauges: &ScrapeGauges) {
    header(
        out,
        STORE_QUEUE_DEPTH,
        "gauge",
        "Records waiting for a writer thread (access log, ledger, audit).",
    );
    for (store, n) in &gauges.queued {
        sample(out, STORE_QUEUE_DEPTH, &[("store", store)], n);
    }
    header(
        out,
        STORE_DROPPED_TOTAL,
        "counter",
        "Records dropped because a writer thread's queue was full.",
    );
    for (store, n) in &gauges.dropped {
        sample(out, STORE_DROPPED_TOTAL, &[("store", store)], n);
    }
    header(
        out,
        LEDGER_HEALTHY,
        "gauge",
        "1 while the spend ledger keeps up and commits, 0 after a full queue or failed commit.",
    );
    sample(out, LEDGER_HEALTHY, &[], u8::from(gauges.ledger_healthy));
    if let Some(cluster) = &gauges.cluster {
        cluster_stores(out, cluster);
    }
}

fn cluster_stores(out: &mut String, c: &ClusterGauges) {
    header(
        out,
        OUTBOX_PENDING,
        "gauge",
        "Records committed to the local ledger and not yet shipped to PostgreSQL.",
    );
    sample(out, OUTBOX_PENDING, &[], c.outbox_pending);
    header(
        out,
        OUTBOX_SHIPPED_TOTAL,
        "counter",
        "Records this process shipped to PostgreSQL.",
    );
    sample(out, OUTBOX_SHIPPED_TOTAL, &[], c.outbox_shipped);
    header(
        out,
        SHARED_STORE_UP,
        "gauge",
        "1 while a shared store answered its last call.",
    );
    sample(
        out,
        SHARED_STORE_UP,
        &[("store", "postgres")],
        u8::from(c.postgres_up),
    );
    if let Some(up) = c.redis_up {
        sample(out, SHARED_STORE_UP, &[("store", "redis")], u8::from(up));
    }
    header(
        out,
        SHARED_STORE_CALLS_TOTAL,
        "counter",
        "Calls to a shared store: lease renewals (Redis), outbox batches (PostgreSQL, one transaction each).",
    );
    sample(
        out,
        SHARED_STORE_CALLS_TOTAL,
        &[("store", "postgres")],
        c.postgres_calls,
    );
    if c.redis_up.is_some() {
        sample(
            out,
            SHARED_STORE_CALLS_TOTAL,
            &[("store", "redis")],
            c.redis_calls,
        );
    }
}

/// When each served certificate expires.
pub(super) fn certificates(out: &mut String, certificates: &[(String, u64)]) {
    if certificates.is_empty() {
        return;
    }
    header(
        out,
        TLS_CERTIFICATE_EXPIRY,
        "gauge",
        "When a served HTTPS certificate (or the first of its chain to expire) expires, in Unix seconds.",
    );
    for (name, not_after) in certificates {
        sample(
            out,
            TLS_CERTIFICATE_EXPIRY,
            &[("certificate", name)],
            not_after,
        );
    }
}

/// Telemetry exports relayed to collectors, dropped (queue full) or refused by a collector.
pub(super) fn telemetry(out: &mut String, counts: &[(&str, u64)]) {
    if counts.is_empty() {
        return;
    }
    header(
        out,
        TELEMETRY_EXPORTS_TOTAL,
        "counter",
        "OpenTelemetry exports by outcome: forwarded (per collector), dropped, failed (per collector).",
    );
    for (outcome, n) in counts {
        sample(out, TELEMETRY_EXPORTS_TOTAL, &[("outcome", outcome)], n);
    }
}

pub(super) fn export(out: &mut String, counts: &[(&str, u64)]) {
    if counts.is_empty() {
        return;
    }
    header(
        out,
        OTEL_EXPORT_TOTAL,
        "counter",
        "sluice's own OpenTelemetry export: spans exported or failed, records dropped (queue full), metric exports sent or failed.",
    );
    for (outcome, n) in counts {
        sample(out, OTEL_EXPORT_TOTAL, &[("outcome", outcome)], n);
    }
}

/// TLS handshakes by how they ended.
pub(super) fn handshakes(out: &mut String, counts: &[(&str, u64)]) {
    header(
        out,
        TLS_HANDSHAKES_TOTAL,
        "counter",
        "TLS handshakes on the HTTPS listener, by outcome.",
    );
    for (outcome, n) in counts {
        sample(out, TLS_HANDSHAKES_TOTAL, &[("outcome", outcome)], n);
    }
}

/// Counters of rare events, counted where they happen.
pub(super) fn events(out: &mut String, worker_panics: u64, upstream_discarded: u64) {
    header(
        out,
        WORKER_PANICS_TOTAL,
        "counter",
        "Panics caught on worker threads (the connection was closed, or the worker replaced).",
    );
    sample(out, WORKER_PANICS_TOTAL, &[], worker_panics);
    header(
        out,
        UPSTREAM_DISCARDED_TOTAL,
        "counter",
        "Upstream connections closed because bytes followed their response's framing.",
    );
    sample(out, UPSTREAM_DISCARDED_TOTAL, &[], upstream_discarded);
}

/// Series in a stable order, so scrapes diff cleanly.
fn sorted<K: Ord, V>(map: &HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}
