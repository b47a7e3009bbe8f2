//! The SSE usage meter. It sees the decoded stream as the relay forwards it and keeps only the
//! lines that carry usage: `message_start`, `message_delta` and `error` data lines. Every other
//! line (text and tool-input deltas, which can be large) is skipped as it passes, without being
//! copied, so metering costs a `memchr` per chunk.

use serde::Deserialize;

use super::{Metered, Usage, UsageFields};

/// Bytes of a line looked at before deciding whether to keep it.
const CLASSIFY_BYTES: usize = 64;
/// Longest usage line kept; a longer one is skipped (and counted as not metered).
const MAX_KEPT_LINE: usize = 1024 * 1024;

/// What the current line is doing to the meter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineMode {
    /// Collecting the first bytes to decide.
    Start,
    /// A line that matters: collect it whole.
    Keep,
    /// A line that does not: ignore bytes until the next LF.
    Skip,
}

/// The event named by the last `event:` line of the current event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    Unnamed,
    MessageStart,
    MessageDelta,
    MessageStop,
    Error,
    Other,
}

/// Incremental meter over an Anthropic SSE stream.
#[derive(Debug)]
pub struct SseMeter {
    line: Vec<u8>,
    mode: LineMode,
    event: EventKind,
    usage: Option<Usage>,
    model: Option<String>,
    complete: bool,
    error_type: Option<String>,
}

impl Default for SseMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl SseMeter {
    pub fn new() -> Self {
        Self {
            line: Vec::with_capacity(256),
            mode: LineMode::Start,
            event: EventKind::Unnamed,
            usage: None,
            model: None,
            complete: false,
            error_type: None,
        }
    }

    /// Feeds the next piece of the stream, split anywhere.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.push(data.get(..i).unwrap_or_default());
                    self.end_line();
                    data = data.get(i + 1..).unwrap_or_default();
                }
                None => {
                    self.push(data);
                    break;
                }
            }
        }
    }

    /// What was learned so far (usage is cumulative, so this is also right for a cut stream).
    pub fn finish(&self) -> Metered {
        Metered {
            usage: self.usage,
            model: self.model.clone(),
            complete: self.complete,
            error_type: self.error_type.clone(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        match self.mode {
            LineMode::Skip => {}
            LineMode::Keep => {
                if self.line.len() + bytes.len() > MAX_KEPT_LINE {
                    self.mode = LineMode::Skip;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(bytes);
                }
            }
            LineMode::Start => {
                self.line.extend_from_slice(bytes);
                if self.line.len() >= CLASSIFY_BYTES {
                    self.mode = if self.wanted(&self.line) {
                        LineMode::Keep
                    } else {
                        LineMode::Skip
                    };
                    if self.mode == LineMode::Skip {
                        self.line.clear();
                    } else if self.line.len() > MAX_KEPT_LINE {
                        self.mode = LineMode::Skip;
                        self.line.clear();
                    }
                }
            }
        }
    }

    fn wanted(&self, line: &[u8]) -> bool {
        if line.starts_with(b"event:") {
            return true;
        }
        let Some(data) = line.strip_prefix(b"data:") else {
            return false;
        };
        match self.event {
            // message_stop is kept for Bedrock's invocation metrics; it is small.
            EventKind::MessageStart
            | EventKind::MessageDelta
            | EventKind::MessageStop
            | EventKind::Error => true,
            EventKind::Other => false,
            EventKind::Unnamed => {
                let head = data.get(..data.len().min(CLASSIFY_BYTES)).unwrap_or(data);
                [
                    &b"message_start"[..],
                    b"message_delta",
                    b"message_stop",
                    b"\"error\"",
                ]
                .iter()
                .any(|needle| memchr::memmem::find(head, needle).is_some())
            }
        }
    }

    fn end_line(&mut self) {
        let mode = std::mem::replace(&mut self.mode, LineMode::Start);
        if mode == LineMode::Skip {
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            self.event = EventKind::Unnamed;
        } else if let Some(name) = line.strip_prefix(b"event:") {
            self.event = event_kind(name.trim_ascii());
            self.complete |= self.event == EventKind::MessageStop;
        } else if line.starts_with(b"data:") && (mode == LineMode::Keep || self.wanted(&line)) {
            if let Some(payload) = line.get(5..) {
                self.on_data(payload);
            }
        }
        line.clear();
        self.line = line;
    }

    fn on_data(&mut self, payload: &[u8]) {
        let Ok(event) = serde_json::from_slice::<SseEvent>(payload) else {
            return;
        };
        match event.kind.as_str() {
            "message_start" => {
                if let Some(message) = event.message {
                    if message.model.is_some() {
                        self.model = message.model;
                    }
                    if let Some(fields) = message.usage {
                        self.usage.get_or_insert_with(Usage::default).apply(&fields);
                    }
                }
            }
            "message_delta" => {
                if let Some(fields) = event.usage {
                    self.usage.get_or_insert_with(Usage::default).apply(&fields);
                }
            }
            "message_stop" => {
                self.complete = true;
                // Bedrock's own counts, for a stream that carried no Anthropic usage.
                if let (None, Some(m)) = (&self.usage, event.bedrock_metrics) {
                    self.usage = Some(Usage {
                        input_tokens: m.input_token_count.unwrap_or(0),
                        output_tokens: m.output_token_count.unwrap_or(0),
                        ..Usage::default()
                    });
                }
            }
            "error" => {
                self.error_type = Some(
                    event
                        .error
                        .and_then(|e| e.kind)
                        .unwrap_or_else(|| "error".to_string()),
                );
            }
            _ => {}
        }
    }
}

fn event_kind(name: &[u8]) -> EventKind {
    match name {
        b"message_start" => EventKind::MessageStart,
        b"message_delta" => EventKind::MessageDelta,
        b"message_stop" => EventKind::MessageStop,
        b"error" => EventKind::Error,
        _ => EventKind::Other,
    }
}

#[derive(Deserialize)]
struct SseEvent {
    #[serde(rename = "type")]
    kind: String,
    message: Option<SseMessage>,
    usage: Option<UsageFields>,
    error: Option<SseError>,
    /// Bedrock adds its own counts to `message_stop`.
    #[serde(rename = "amazon-bedrock-invocationMetrics")]
    bedrock_metrics: Option<BedrockMetrics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BedrockMetrics {
    input_token_count: Option<u64>,
    output_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct SseMessage {
    model: Option<String>,
    usage: Option<UsageFields>,
}

#[derive(Deserialize)]
struct SseError {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-opus-4-8\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":2000,\"cache_creation_input_tokens\":10000,\"cache_read_input_tokens\":50000,\"cache_creation\":{\"ephemeral_5m_input_tokens\":8000,\"ephemeral_1h_input_tokens\":2000},\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"message_delta usage: a decoy that must not count\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1500}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    fn expected() -> Usage {
        Usage {
            input_tokens: 2000,
            cache_creation_input_tokens: 10_000,
            cache_5m: Some(8000),
            cache_1h: Some(2000),
            cache_read_input_tokens: 50_000,
            output_tokens: 1500,
            web_search_requests: 0,
        }
    }

    #[test]
    fn meters_the_worked_example() {
        let mut m = SseMeter::new();
        m.feed(STREAM.as_bytes());
        let got = m.finish();
        assert_eq!(got.usage, Some(expected()));
        assert_eq!(got.model.as_deref(), Some("claude-opus-4-8"));
        assert!(got.complete);
    }

    #[test]
    fn every_split_point_meters_the_same() {
        let bytes = STREAM.as_bytes();
        for split in 0..=bytes.len() {
            let mut m = SseMeter::new();
            m.feed(&bytes[..split]);
            m.feed(&bytes[split..]);
            assert_eq!(m.finish().usage, Some(expected()), "split at {split}");
        }
    }

    #[test]
    fn one_byte_at_a_time_with_crlf() {
        let crlf = STREAM.replace('\n', "\r\n");
        let mut m = SseMeter::new();
        for b in crlf.as_bytes() {
            m.feed(std::slice::from_ref(b));
        }
        assert_eq!(m.finish().usage, Some(expected()));
    }

    #[test]
    fn later_delta_revises_input_and_cut_stream_keeps_partial_usage() {
        let s = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":30,\"output_tokens\":7}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_bl";
        let mut m = SseMeter::new();
        m.feed(s.as_bytes());
        let got = m.finish();
        let usage = got.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (30, 7));
        assert!(!got.complete);
    }

    #[test]
    fn bedrock_invocation_metrics_stand_in_for_missing_usage() {
        let mut m = SseMeter::new();
        m.feed(b"event: message_stop\ndata: {\"type\":\"message_stop\",\"amazon-bedrock-invocationMetrics\":{\"inputTokenCount\":12,\"outputTokenCount\":3,\"invocationLatency\":9,\"firstByteLatency\":4}}\n\n");
        let usage = m.finish().usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (12, 3));
    }

    #[test]
    fn error_events_are_recorded() {
        let mut m = SseMeter::new();
        m.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert_eq!(m.finish().error_type.as_deref(), Some("overloaded_error"));
    }
}
