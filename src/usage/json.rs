//! The JSON-body meter: a copy of a non-streaming response body (bounded), read once the body
//! is complete for its `model` and `usage` (or its `error.type`).
//!
//! Only those members are read: the body's top-level members are found with the request
//! scanner ([`crate::json::members`], which skips `content` with `memchr`), the usage object
//! is read by [`super::read`], the model copied, and serde reads only an `error` object.
//! Where a key appears twice the last one counts, as in the clients' JSON parsers
//! (JavaScript's, Python's); a key written with escapes is compared unescaped.

use serde::Deserialize;

use super::read::{key, usage_fields};
use super::{Metered, Usage, UsageFields};
use crate::json::members::visit_members;

/// Largest body kept for metering; a longer one is forwarded but not metered.
pub const MAX_METERED_BODY: usize = 8 * 1024 * 1024;

/// Collects a JSON body as it passes.
#[derive(Debug, Default)]
pub struct JsonMeter {
    body: Vec<u8>,
    overflowed: bool,
    /// Leave the body's `model` unread (see [`JsonMeter::skipping_model`]).
    skip_model: bool,
}

impl JsonMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A meter that leaves the response's `model` out of what it reports: for a request that
    /// named the model its usage is priced at, where the copy would go unused.
    pub fn skipping_model() -> Self {
        Self {
            skip_model: true,
            ..Self::default()
        }
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

    /// Reads what was collected.
    pub fn finish(self) -> Metered {
        if self.overflowed {
            return Metered::default();
        }
        metered(&self.body, !self.skip_model)
    }

    /// Reads a whole body that is at hand, without collecting a copy of it: what a meter fed
    /// `body` would report (one skipping the model when `skip_model`).
    pub fn read_whole(body: &[u8], skip_model: bool) -> Metered {
        if body.len() > MAX_METERED_BODY {
            return Metered::default();
        }
        metered(body, !skip_model)
    }
}

/// The model, usage and error type of a complete body.
fn metered(body: &[u8], with_model: bool) -> Metered {
    if body.is_empty() {
        return Metered::default();
    }
    let Some(parsed) = Body::read(body, with_model) else {
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

/// The members the meter reads; `None` where the body is not a JSON object or one of them is
/// not of its type (as when the whole body was parsed).
#[derive(Default)]
struct Body {
    model: Option<String>,
    usage: Option<UsageFields>,
    error: Option<ErrorBody>,
}

impl Body {
    fn read(body: &[u8], with_model: bool) -> Option<Self> {
        let (mut model, mut usage, mut error) = (None, None, None);
        let complete = visit_members(body, |member| match key(body, member).as_deref() {
            Some(b"model") => model = Some(member.value.clone()),
            Some(b"usage") => usage = Some(member.value.clone()),
            Some(b"error") => error = Some(member.value.clone()),
            _ => {}
        });
        if !complete {
            return None;
        }
        let value = |range: Option<std::ops::Range<usize>>| range.and_then(|r| body.get(r));
        Some(Self {
            model: self::model(value(model), with_model)?,
            usage: match value(usage) {
                Some(raw) => usage_fields(raw)?,
                None => None,
            },
            error: parse(value(error))?,
        })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// A member's value as `T`: absent or `null` is `Some(None)`, a value of another type `None`.
fn parse<'a, T: Deserialize<'a>>(value: Option<&'a [u8]>) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(raw) => serde_json::from_slice::<Option<T>>(raw).ok(),
    }
}

/// The `model` string, copied straight when it holds no escape; checked but not kept unless
/// `keep` (a body whose `model` is not a string is not metered either way).
fn model(value: Option<&[u8]>, keep: bool) -> Option<Option<String>> {
    match value {
        Some([b'"', inner @ .., b'"']) if memchr::memchr(b'\\', inner).is_none() => {
            let model = std::str::from_utf8(inner).ok()?;
            Some(keep.then(|| model.to_owned()))
        }
        other => parse::<String>(other).map(|model| model.filter(|_| keep)),
    }
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

    #[test]
    fn a_meter_skipping_the_model_reads_the_same_usage_and_refuses_the_same_bodies() {
        let bodies: [&[u8]; 4] = [
            br#"{"model":"claude-haiku-4-5","usage":{"input_tokens":25,"output_tokens":15}}"#,
            br#"{"model":"claude-\u0068aiku","usage":{"input_tokens":2,"output_tokens":1}}"#,
            br#"{"model":null,"usage":{"input_tokens":3,"output_tokens":1}}"#,
            br#"{"model":5,"usage":{"input_tokens":25,"output_tokens":15}}"#,
        ];
        for body in bodies {
            let (mut all, mut skipping) = (JsonMeter::new(), JsonMeter::skipping_model());
            all.feed(body);
            skipping.feed(body);
            let (all, skipping) = (all.finish(), skipping.finish());
            assert_eq!(skipping.model, None);
            assert_eq!(
                skipping.usage.map(|u| (u.input_tokens, u.output_tokens)),
                all.usage.map(|u| (u.input_tokens, u.output_tokens)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_body_read_whole_meters_as_a_fed_one() {
        let bodies: [&[u8]; 4] = [
            br#"{"model":"claude-haiku-4-5","usage":{"input_tokens":25,"output_tokens":15}}"#,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
            br#"{"model":"m","usage":{"input_tokens":1"#,
            b"",
        ];
        for body in bodies {
            for skip_model in [false, true] {
                let mut fed = match skip_model {
                    true => JsonMeter::skipping_model(),
                    false => JsonMeter::new(),
                };
                fed.feed(body);
                let (fed, whole) = (fed.finish(), JsonMeter::read_whole(body, skip_model));
                assert_eq!(format!("{fed:?}"), format!("{whole:?}"));
            }
        }
    }
}
