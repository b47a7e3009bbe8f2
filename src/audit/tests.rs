use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::*;

/// The line as serde_json wrote it before: the format's reference.
#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

fn event() -> AuditEvent {
    AuditEvent {
        kind: "request",
        time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_700_000_123_456),
        request_id: "req_1".into(),
        identity: "jwt:ada \"the\" admin\\".into(),
        decision: "refused",
        status: 429,
        reason: Some("rate_limited"),
        format: "anthropic",
        model: Some("claude-opus-4-8\u{7}".into()),
        upstream: Some("anthropic".into()),
        fallbacks: vec!["primary: connect refused".into()],
        detail: Some("budget team:é at 80 %".into()),
    }
}

fn written(seq: u64, prev: &str, node: Option<&str>, e: &AuditEvent) -> String {
    let mut out = Vec::new();
    write_line(&mut out, seq, prev, node, e);
    String::from_utf8(out).unwrap()
}

#[test]
fn lines_are_written_as_serde_wrote_them() {
    let full = event();
    let bare = AuditEvent {
        reason: None,
        model: None,
        upstream: None,
        fallbacks: Vec::new(),
        detail: None,
        ..event()
    };
    for e in [&full, &bare] {
        for node in [None, Some("node-a")] {
            let reference = serde_json::to_string(&Line {
                seq: 7,
                prev: GENESIS,
                node,
                event: e,
            })
            .unwrap();
            assert_eq!(written(7, GENESIS, node, e), reference);
        }
    }
}

fn record() -> crate::record::AccessRecord {
    crate::record::AccessRecord {
        time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_700_000_123_456),
        request_id: "req_1".into(),
        caller: crate::record::Caller::labelled("jwt:ada \"the\" admin\\"),
        status: 429,
        error: Some("rate_limited"),
        model: Some("claude-opus-4-8\u{7}".into()),
        upstream: Some("anthropic".into()),
        fallbacks: vec!["primary: connect refused".into()],
        ..crate::record::AccessRecord::default()
    }
}

/// A request's line written from its record by the recorder is the line its event makes.
#[test]
fn a_request_written_from_its_record_is_the_line_of_its_event() {
    let full = record();
    let refused = crate::record::AccessRecord {
        upstream: None,
        model: None,
        error: Some("unauthorized"),
        status: 401,
        fallbacks: Vec::new(),
        ..record()
    };
    let allowed = crate::record::AccessRecord {
        status: 200,
        error: None,
        ..record()
    };
    for r in [&full, &refused, &allowed] {
        let mut lines = RequestLines::default();
        lines.push(r);
        let fields: Vec<&[u8]> = lines.iter().collect();
        assert_eq!(fields.len(), 1);
        for node in [None, Some("node-a")] {
            let mut out = Vec::new();
            write_chain_head(&mut out, 7, GENESIS, node);
            out.extend_from_slice(fields[0]);
            let event = AuditEvent::request(r);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                written(7, GENESIS, node, &event)
            );
        }
    }
}

/// The recorder's batches and single events share one chain, in the order they were sent.
#[test]
fn batches_of_requests_and_single_events_make_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (audit, thread) = start(&path, u64::MAX, false, WriterPriority::Normal, None).unwrap();
    let mut batch = RequestLines::default();
    for i in 0..3 {
        batch.push(&crate::record::AccessRecord {
            request_id: format!("req_{i}").into(),
            ..record()
        });
    }
    assert_eq!(batch.len(), 3);
    audit.record_requests(batch);
    audit.record(AuditEvent::admin("key_created", "ci"));
    audit.record_requests(RequestLines::default());
    drop(audit);
    thread.join().unwrap();
    assert_eq!(verify(std::slice::from_ref(&path)), Ok(4));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["req_0", "req_1", "req_2", ""]);
    assert_eq!(lines[3]["decision"], "key_created");
    assert_eq!(lines[1]["identity"], "jwt:ada \"the\" admin\\");
}
