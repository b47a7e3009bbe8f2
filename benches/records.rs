//! What the durable records cost per request, off the hot path: the spend ledger's writer
//! (queue → SQLite batch commit, running totals) and the audit writer (JSON line, SHA-256
//! chain, write). Each iteration queues a batch of records shaped like the governance bench's
//! and waits until the writer has stored them all; the figure per element is the writer
//! thread's cost per request, which is what governance adds to a node's CPU. The recorder's
//! share (the access-log line and the metrics) is measured on a batch in hand.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::audit::{AuditEvent, AuditLog, RequestLines};
use sluice::metrics::{Collector, Metrics};
use sluice::record::{AccessRecord, Caller, CallerNames, UpstreamRequestId};
use sluice::runtime::writer_priority::WriterPriority;
use sluice::store::ledger::{self, Durability};
use sluice::store::recorder;

/// Records per iteration: one commit-interval's worth at a high request rate, several times.
const BATCH: usize = 20_000;

/// Records the recorder hands the ledger at once: one 10 ms drain at 30,000 requests a second.
const RECORDER_BATCH: usize = 300;

fn record(i: usize) -> AccessRecord {
    AccessRecord {
        time: SystemTime::now(),
        request_id: compact_str::format_compact!("req_1ttdnl5vg0g00{i:07x}"),
        method: "POST",
        path: "/v1/messages?beta=true".into(),
        operation: "messages",
        caller: if i.is_multiple_of(2) {
            Caller::Known(CallerNames::new(
                "key",
                "bench".into(),
                None,
                Some("bench".into()),
            ))
        } else {
            Caller::Other {
                label: "jwt:bench-user".into(),
                user: Some("bench-user".into()),
                team: Some("bench".into()),
            }
        },
        format: sluice::format::ClientFormat::Anthropic,
        model: Some("claude-haiku-4-5".into()),
        upstream: Some("anthropic".into()),
        status: 200,
        input_tokens: 22,
        output_tokens: 1,
        cost_pico: 27_000_000,
        total_us: 1412,
        ttfb_us: Some(842),
        added_us: 31,
        attempts: 1,
        upstream_request_id: Some(UpstreamRequestId::new(&format!("msg_mock_{i:012}"))),
        session_id: Some("4f1c2a9e-8d3b-4c5e-9a7f-2b6d8e0c1a3f".into()),
        user_agent: Some("claude-cli/2.1.0 (external, cli)".into()),
        provider: Some("anthropic"),
        request_bytes: 92,
        response_bytes: 412,
        pooled_connection: true,
        metered: true,
        ..AccessRecord::default()
    }
}

/// The audit event the gateway writes for a forwarded request.
fn event(r: &AccessRecord) -> AuditEvent {
    AuditEvent {
        kind: "request",
        time: r.time,
        request_id: r.request_id.to_string(),
        identity: r.caller.label().to_string(),
        decision: "allowed",
        status: r.status,
        reason: None,
        format: r.format.label(),
        model: r.model.clone(),
        upstream: r.upstream.clone(),
        fallbacks: Vec::new(),
        detail: None,
    }
}

fn ledger_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("records");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    let records: Vec<AccessRecord> = (0..BATCH).map(record).collect();
    group.bench_function("ledger: queue → committed, per record", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let (ledger, thread) = ledger::start(
                    &dir.path().join("ledger.db"),
                    Duration::from_millis(1),
                    Durability::Interval,
                    WriterPriority::Normal,
                )
                .unwrap();
                let started = Instant::now();
                for chunk in records.chunks(RECORDER_BATCH) {
                    ledger.record_all(chunk.to_vec());
                }
                drop(ledger);
                thread.join().unwrap();
                total += started.elapsed();
            }
            total
        });
    });
    group.bench_function("audit: queue → written, per line", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    time_audit_writer(|audit| {
                        for r in &records {
                            audit.record(event(r));
                        }
                    })
                })
                .sum()
        });
    });
    group.bench_function("audit: recorder's batches → written, per line", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    time_audit_writer(|audit| {
                        // As the recorder hands them over: a drain's worth per message.
                        for chunk in records.chunks(256) {
                            let mut lines = RequestLines::default();
                            for r in chunk {
                                lines.push(r);
                            }
                            audit.record_requests(lines);
                        }
                    })
                })
                .sum()
        });
    });
    group.finish();
}

/// Starts an audit writer on a fresh file, lets `queue` hand it events, and times from the
/// first event until the writer has written them all and ended.
fn time_audit_writer(queue: impl FnOnce(&AuditLog)) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (audit, thread) = sluice::audit::start(
        &dir.path().join("audit.jsonl"),
        u64::MAX,
        false,
        WriterPriority::Normal,
        None,
    )
    .unwrap();
    let started = Instant::now();
    queue(&audit);
    drop(audit);
    thread.join().unwrap();
    started.elapsed()
}

/// The recorder's own work per record, on a batch already in hand: the access-log line (into
/// memory, so no file system in the figure) and the fold into the metrics.
fn recorder_per_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("recorder");
    let records: Vec<AccessRecord> = (0..64).map(record).collect();
    group.throughput(Throughput::Elements(records.len() as u64));
    let mut line = Vec::with_capacity(64 * 1024);
    group.bench_function("access-log lines, per record", |b| {
        b.iter(|| {
            line.clear();
            for r in &records {
                recorder::line::write_line(&mut line, r);
            }
            line.len()
        });
    });
    let mut collector = Collector::new(Arc::new(Metrics::default()));
    group.bench_function("metrics fold, per record", |b| {
        b.iter(|| collector.observe(&records));
    });
    group.finish();
}

criterion_group!(benches, ledger_commit, recorder_per_record);
criterion_main!(benches);
