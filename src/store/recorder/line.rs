//! The access-log line: an [`AccessRecord`] as one JSON object and a newline, written field by
//! field ([`crate::json::write`]), so the recorder no longer spends most of its time escaping
//! fifty field names it knows are plain. The bytes are serde_json's serialization of the record
//! exactly (the tests compare them), so readers of the log see no change; a field added to the
//! record without a line here fails those tests.

use crate::json::write::Object;
use crate::record::AccessRecord;

/// Appends `record`'s line (JSON and `\n`) to `out`.
pub fn write_line(out: &mut Vec<u8>, r: &AccessRecord) {
    let mut o = Object::open(out);
    o.time("time", r.time);
    o.str("request_id", &r.request_id);
    o.opt_str("upstream_request_id", r.upstream_request_id.as_deref());
    o.str("method", r.method);
    o.str("path", &r.path);
    o.str("operation", r.operation);
    o.str("identity", r.caller.label());
    o.opt_str("user", r.caller.user());
    o.opt_str("team", r.caller.team());
    o.opt_str("session_id", r.session_id.as_deref());
    o.opt_str("user_agent", r.user_agent.as_deref());
    o.opt_str("agent_id", r.agent_id.as_deref());
    o.opt_str("parent_agent_id", r.parent_agent_id.as_deref());
    o.opt_str(
        "managed_settings_checksum",
        r.managed_settings_checksum.as_deref(),
    );
    o.opt_str("billing_group", r.billing_group.as_deref());
    o.str("format", r.format.label());
    o.opt_str("model", r.model.as_deref());
    o.opt_str("upstream_model", r.upstream_model.as_deref());
    o.opt_str("upstream", r.upstream.as_deref());
    if let Some(provider) = r.provider {
        o.str("provider", provider);
    }
    if let Some(trace) = &r.trace {
        o.serialized("trace", trace);
    }
    o.bool("stream", r.stream);
    o.u64("status", u64::from(r.status));
    o.opt_str("error", r.error);
    o.opt_str("upstream_error", r.upstream_error.as_deref());
    o.u64("input_tokens", r.input_tokens);
    o.u64("output_tokens", r.output_tokens);
    o.u64("cache_creation_input_tokens", r.cache_creation_input_tokens);
    o.u64(
        "cache_creation_5m_input_tokens",
        r.cache_creation_5m_input_tokens,
    );
    o.u64(
        "cache_creation_1h_input_tokens",
        r.cache_creation_1h_input_tokens,
    );
    o.u64("cache_read_input_tokens", r.cache_read_input_tokens);
    o.u64("web_search_requests", r.web_search_requests);
    o.serialized("cost_usd", &r.cost_usd);
    o.serialized("cache_savings_usd", &r.cache_savings_usd);
    o.bool("metered", r.metered);
    o.bool("stream_complete", r.stream_complete);
    o.u64("request_bytes", r.request_bytes);
    o.u64("response_bytes", r.response_bytes);
    o.u64("total_us", r.total_us);
    o.opt_u64("ttfb_us", r.ttfb_us);
    o.u64("added_us", r.added_us);
    o.opt_u64("upstream_connect_us", r.upstream_connect_us);
    o.bool("pooled_connection", r.pooled_connection);
    o.u64("attempts", u64::from(r.attempts));
    o.strs("fallbacks", &r.fallbacks);
    if !r.dropped.is_empty() {
        o.strs("dropped", &r.dropped);
    }
    o.close();
    out.push(b'\n');
}

#[cfg(test)]
mod tests;
