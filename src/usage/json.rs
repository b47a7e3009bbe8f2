//! The JSON-body meter: a copy of a non-streaming response body (bounded) parsed once the body
//! is complete, for its `model` and `usage` (or its `error.type`).

use serde::Deserialize;

use super::{Metered, Usage, UsageFields};

/// Largest body kept for metering; a longer one is forwarded but not metered.
pub const MAX_METERED_BODY: usize = 8 * 1024 * 1024;

/// Collects a JSON body as it passes.
#[derive(Debug, Default)]
pub struct JsonMeter {
    body: Vec<u8>,
    overflowed: bool,
}

impl JsonMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the body.
    pub fn feed(&mut self, data: &[u8]) {
        if self.overflowed || self.body.len() + data.len() > MAX_METERED_BODY {
            self.overflowed = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(data);
    }

    /// Parses what was collected.
    pub fn finish(self) -> Metered {
        if self.overflowed || self.body.is_empty() {
            return Metered::default();
        }
        let Ok(parsed) = serde_json::from_slice::<Body>(&self.body) else {
            return Metered::default();
        };
        let usage = parsed.usage.map(|fields| {
            let mut u = Usage::default();
            u.apply(&fields);
            u
        });
        Metered {
            complete: usage.is_some(),
            usage,
            model: parsed.model,
            error_type: parsed.error.and_then(|e| e.kind),
        }
    }
}

#[derive(Deserialize)]
struct Body {
    model: Option<String>,
    usage: Option<UsageFields>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_a_message_split_anywhere() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"usage"}],"stop_reason":"end_turn","usage":{"input_tokens":25,"cache_creation_input_tokens":null,"cache_read_input_tokens":0,"output_tokens":15}}"#;
        for split in [0, 1, 40, body.len()] {
            let mut m = JsonMeter::new();
            m.feed(&body[..split]);
            m.feed(&body[split..]);
            let got = m.finish();
            let usage = got.usage.unwrap();
            assert_eq!((usage.input_tokens, usage.output_tokens), (25, 15));
            assert_eq!(got.model.as_deref(), Some("claude-haiku-4-5"));
        }
    }

    #[test]
    fn error_bodies_give_their_type() {
        let mut m = JsonMeter::new();
        m.feed(br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#);
        let got = m.finish();
        assert!(got.usage.is_none());
        assert_eq!(got.error_type.as_deref(), Some("rate_limit_error"));
    }
}
