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
