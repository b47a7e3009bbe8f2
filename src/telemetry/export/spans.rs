//! One OTLP span per request, from its access record, with OpenTelemetry's GenAI semantic
//! conventions and sluice's own attributes.
//!
//! `gen_ai.usage.input_tokens` counts every prompt token, cached ones included (the
//! conventions' meaning); Anthropic reports cache reads and writes outside `input_tokens`, so
//! they are added back here, and also given on their own (`gen_ai.usage.cache_read.input_tokens`,
//! `gen_ai.usage.cache_creation.input_tokens`). The span is the gateway's `SERVER` span: its
//! parent is the client's span when the client sent a `traceparent`, and the upstream's spans
//! are its children.

use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span, Status};

use crate::record::AccessRecord;

/// Operations that get no span: scrapes, probes and telemetry relays are not model calls.
const UNTRACED: [&str; 4] = ["metrics", "health", "telemetry", "warm_up"];

/// The span of `record`, if it has a sampled trace context and is traced.
pub fn span_of(record: &AccessRecord) -> Option<Span> {
    if untraced(record.operation) {
        return None;
    }
    let trace = record.trace.filter(|t| t.sampled)?;
    let start = nanos_since_epoch(record);
    let end = start.saturating_add(record.total_us.saturating_mul(1000));
    let operation = operation_name(record.operation);
    let name = match &record.model {
        Some(model) => format!("{operation} {model}"),
        None => operation.to_string(),
    };
    let failed = record.status >= 500 || record.upstream_error.is_some();
    Some(Span {
        trace_id: trace.trace_id.to_vec(),
        span_id: trace.span_id.to_vec(),
        parent_span_id: trace.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 0x100 | u32::from(trace.parent_span_id.is_some()) << 9 | 1,
        name,
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attributes(record),
        status: Some(Status {
            message: if failed {
                record.error.unwrap_or("upstream error").to_string()
            } else {
                String::new()
            },
            code: if failed {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Unset as i32
            },
        }),
        ..Span::default()
    })
}

/// `gen_ai.operation.name` of a sluice operation: Messages is `chat`, others keep their name.
pub fn operation_name(operation: &'static str) -> &'static str {
    match operation {
        "messages" => "chat",
        other => other,
    }
}

/// Whether `operation` is left out of spans and metrics (not a model call).
pub fn untraced(operation: &str) -> bool {
    UNTRACED.contains(&operation)
}

/// Prompt tokens as the GenAI conventions count them (cache reads and writes included).
pub fn input_tokens(record: &AccessRecord) -> u64 {
    record
        .input_tokens
        .saturating_add(record.cache_read_input_tokens)
        .saturating_add(record.cache_creation_input_tokens)
}

fn attributes(r: &AccessRecord) -> Vec<KeyValue> {
    let mut out = vec![
        text("gen_ai.operation.name", operation_name(r.operation)),
        int("http.response.status_code", u64::from(r.status)),
        text("sluice.request_id", &r.request_id),
        text("sluice.identity", r.caller.label()),
        text("sluice.format", r.format.label()),
        int("sluice.attempts", u64::from(r.attempts)),
        double("sluice.cost_usd", r.cost_usd),
        double("sluice.added_latency_s", r.added_us as f64 / 1e6),
    ];
    let optional = [
        ("gen_ai.provider.name", r.provider),
        ("gen_ai.request.model", r.model.as_deref()),
        (
            "gen_ai.response.model",
            r.upstream_model.as_deref().or(r.model.as_deref()),
        ),
        ("gen_ai.conversation.id", r.session_id.as_deref()),
        ("gen_ai.response.id", r.upstream_request_id.as_deref()),
        ("sluice.user", r.caller.user()),
        ("sluice.team", r.caller.team()),
        ("sluice.upstream", r.upstream.as_deref()),
        ("sluice.agent_id", r.agent_id.as_deref()),
        ("error.type", r.error.or(r.upstream_error.as_deref())),
        ("user_agent.original", r.user_agent.as_deref()),
    ];
    out.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| text(k, v))),
    );
    if r.metered {
        out.extend([
            int("gen_ai.usage.input_tokens", input_tokens(r)),
            int("gen_ai.usage.output_tokens", r.output_tokens),
            int(
                "gen_ai.usage.cache_read.input_tokens",
                r.cache_read_input_tokens,
            ),
            int(
                "gen_ai.usage.cache_creation.input_tokens",
                r.cache_creation_input_tokens,
            ),
        ]);
    }
    if let Some(ttfb) = r.ttfb_us {
        out.push(double(
            "gen_ai.server.time_to_first_token",
            ttfb as f64 / 1e6,
        ));
    }
    out.push(attribute(
        "gen_ai.request.stream",
        any_value::Value::BoolValue(r.stream),
    ));
    out
}

pub fn text(key: &str, value: &str) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.to_string()))
}

fn int(key: &str, value: u64) -> KeyValue {
    attribute(
        key,
        any_value::Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
    )
}

fn double(key: &str, value: f64) -> KeyValue {
    attribute(key, any_value::Value::DoubleValue(value))
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn nanos_since_epoch(record: &AccessRecord) -> u64 {
    let since = record
        .time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;
    use crate::telemetry::trace_context::TraceContext;

    fn value<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn input_tokens_count_the_cache_and_unsampled_requests_have_no_span() {
        let mut record = AccessRecord {
            operation: "messages",
            model: Some("claude-opus-4-8".into()),
            metered: true,
            input_tokens: 10,
            cache_read_input_tokens: 900,
            cache_creation_input_tokens: 90,
            output_tokens: 5,
            trace: Some(TraceContext::continue_or_start(None)),
            ..AccessRecord::default()
        };
        let span = span_of(&record).unwrap();
        assert_eq!(span.name, "chat claude-opus-4-8");
        assert_eq!(
            value(&span, "gen_ai.usage.input_tokens"),
            Some(&any_value::Value::IntValue(1000))
        );
        assert_eq!(
            value(&span, "gen_ai.usage.cache_read.input_tokens"),
            Some(&any_value::Value::IntValue(900))
        );
        record.trace = record.trace.map(|t| TraceContext {
            sampled: false,
            ..t
        });
        assert!(span_of(&record).is_none());
        record.trace = None;
        assert!(span_of(&record).is_none());
    }
}
