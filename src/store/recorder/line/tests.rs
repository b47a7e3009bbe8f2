use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::*;
use crate::record::{Caller, CallerNames, UpstreamRequestId};
use crate::telemetry::trace_context::TraceContext;

/// serde_json's line for the record: what the access log always held.
fn by_serde(r: &AccessRecord) -> String {
    format!("{}\n", serde_json::to_string(r).unwrap())
}

fn ours(r: &AccessRecord) -> String {
    let mut out = Vec::new();
    write_line(&mut out, r);
    String::from_utf8(out).unwrap()
}

/// Every field set, strings that need escaping, non-ASCII.
fn full() -> AccessRecord {
    AccessRecord {
        time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_700_000_123_456),
        request_id: "req_1".into(),
        upstream_request_id: Some(UpstreamRequestId::new("msg_01\"quoted\"")),
        method: "POST",
        path: "/v1/messages?beta=true&x=\\y".into(),
        operation: "messages",
        caller: Caller::Known(CallerNames::new(
            "key",
            "bench".into(),
            Some("ada@example.com".into()),
            Some("équipe".into()),
        )),
        session_id: Some("4f1c2a9e".into()),
        user_agent: Some("claude-cli/2.1.0\t(external, cli)\u{1}".into()),
        agent_id: Some("agent-1".into()),
        parent_agent_id: Some("agent-0".into()),
        managed_settings_checksum: Some("abc".into()),
        billing_group: Some("research".into()),
        format: crate::format::ClientFormat::Bedrock,
        model: Some("claude-opus-4-8".into()),
        upstream_model: Some("us.anthropic.claude-opus-4-8-v1".into()),
        upstream: Some("bedrock".into()),
        provider: Some("aws.bedrock"),
        trace: Some(TraceContext {
            trace_id: [7; 16],
            span_id: [8; 8],
            parent_span_id: Some([9; 8]),
            sampled: true,
        }),
        stream: true,
        status: 529,
        error: Some("upstream_overloaded"),
        rejected: true,
        upstream_error: Some("overloaded_error".into()),
        input_tokens: 1,
        output_tokens: 2,
        cache_creation_input_tokens: 3,
        cache_creation_5m_input_tokens: 4,
        cache_creation_1h_input_tokens: 5,
        cache_read_input_tokens: u64::MAX,
        web_search_requests: 6,
        cost_usd: 0.000_027,
        cost_pico: 27_000_000,
        cache_savings_usd: -1.5e-7,
        cache_savings_pico: -150_000,
        metered: true,
        stream_complete: true,
        request_bytes: 70_000,
        response_bytes: 4_096,
        total_us: 1_412,
        ttfb_us: Some(842),
        added_us: 31,
        upstream_connect_us: Some(120),
        pooled_connection: true,
        attempts: 2,
        fallbacks: vec!["primary: connect refused".into(), "b: \"x\"".into()],
        dropped: vec!["field:speed".into()],
    }
}

#[test]
fn a_full_record_is_written_as_serde_writes_it() {
    let record = full();
    assert_eq!(ours(&record), by_serde(&record));
}

#[test]
fn an_empty_record_is_written_as_serde_writes_it() {
    let record = AccessRecord::default();
    assert_eq!(ours(&record), by_serde(&record));
    let mut no_parent = full();
    if let Some(trace) = &mut no_parent.trace {
        trace.parent_span_id = None;
    }
    no_parent.cost_usd = f64::NAN;
    assert_eq!(ours(&no_parent), by_serde(&no_parent));
}

proptest! {
    /// Any string a client or upstream can put in the record is escaped as serde escapes it.
    #[test]
    fn strings_are_escaped_as_serde_escapes_them(
        path in any::<String>(),
        agent in proptest::option::of(any::<String>()),
        fallback in any::<String>(),
    ) {
        let record = AccessRecord {
            path: path.into(),
            user_agent: agent.map(Into::into),
            fallbacks: vec![fallback],
            ..full()
        };
        prop_assert_eq!(ours(&record), by_serde(&record));
    }
}
