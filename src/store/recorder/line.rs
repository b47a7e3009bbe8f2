//! The access-log line: an [`AccessRecord`] as one JSON object and a newline, written field by
//! field. Keys are literals written as they are and a string value is copied straight unless
//! it holds a byte JSON must escape (then serde_json escapes it), so the recorder no longer
//! spends most of its time escaping fifty field names it knows are plain. The bytes are
//! serde_json's serialization of the record exactly (the tests compare them), so readers of
//! the log see no change; a field added to the record without a line here fails those tests.

use std::io::Write;

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
    o.str("identity", &r.identity);
    o.opt_str("user", r.user.as_deref());
    o.opt_str("team", r.team.as_deref());
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

/// A JSON object being written: members separated by commas.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    /// `"key":` — `key` is one of this module's literals, plain ASCII.
    fn key(&mut self, key: &'static str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(value) => string(self.out, value),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    fn strs(&mut self, key: &'static str, values: &[String]) {
        self.key(key);
        self.out.push(b'[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            string(self.out, value);
        }
        self.out.push(b']');
    }

    fn u64(&mut self, key: &'static str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn opt_u64(&mut self, key: &'static str, value: Option<u64>) {
        match value {
            Some(value) => self.u64(key, value),
            None => {
                self.key(key);
                self.out.extend_from_slice(b"null");
            }
        }
    }

    fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key);
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.out.extend_from_slice(text);
    }

    /// RFC 3339 with microseconds, as a string.
    fn time(&mut self, key: &'static str, time: std::time::SystemTime) {
        self.key(key);
        let _ = write!(self.out, "\"{}\"", humantime::format_rfc3339_micros(time));
    }

    /// A value serde_json writes (floats, the trace context: rare or not worth their own code).
    fn serialized(&mut self, key: &'static str, value: &impl serde::Serialize) {
        self.key(key);
        if serde_json::to_writer(&mut *self.out, value).is_err() {
            self.out.extend_from_slice(b"null");
        }
    }
}

/// A JSON string: copied between quotes when no byte needs escaping (JSON escapes only control
/// characters, `"` and `\`), else escaped by serde_json.
fn string(out: &mut Vec<u8>, value: &str) {
    let plain = value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests;
