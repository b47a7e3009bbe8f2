//! W3C Trace Context (`traceparent`) for sluice's own spans: a request whose client sent a valid
//! `traceparent` continues that trace (sluice's span is a child of the client's), any other
//! starts one; the upstream receives a `traceparent` naming sluice's span, so its spans are
//! children of sluice's. Only when span export is configured: otherwise the client's field
//! passes through untouched, as any other header.

use serde::Serialize;

/// Where a request sits in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// sluice's span for this request.
    pub span_id: [u8; 8],
    /// The client's span, when the client sent a `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    /// The sampled flag: spans are exported only when it is set.
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the trace `traceparent` names, or starts a sampled one when it is absent or
    /// not valid (the W3C rule: an invalid `traceparent` is ignored).
    pub fn continue_or_start(traceparent: Option<&str>) -> TraceContext {
        let span_id = nonzero_span_id();
        match traceparent.and_then(parse) {
            Some((trace_id, parent, flags)) => TraceContext {
                trace_id,
                span_id,
                parent_span_id: Some(parent),
                sampled: flags & 1 == 1,
            },
            None => TraceContext {
                trace_id: nonzero_trace_id(),
                span_id,
                parent_span_id: None,
                sampled: true,
            },
        }
    }

    /// The `traceparent` to send upstream: this trace, sluice's span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            u8::from(self.sampled)
        )
    }
}

/// `(trace id, parent id, flags)` of a `traceparent` value, or `None` when it is not one
/// (version `ff`, wrong lengths, upper-case or non-hex digits, all-zero ids). Later versions
/// are read by their version-00 prefix, as the specification asks.
pub fn parse(value: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let value = value.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    let version = hex_bytes::<1>(bytes.get(0..2)?)?;
    let exact = version == [0];
    if version == [0xff] || (exact && bytes.len() != 55) || (!exact && bytes.len() < 55) {
        return None;
    }
    if !exact && bytes.len() > 55 && bytes.get(55) != Some(&b'-') {
        return None;
    }
    let dashes = [2, 35, 52].iter().all(|&i| bytes.get(i) == Some(&b'-'));
    let trace_id = hex_bytes::<16>(bytes.get(3..35)?)?;
    let parent = hex_bytes::<8>(bytes.get(36..52)?)?;
    let [flags] = hex_bytes::<1>(bytes.get(53..55)?)?;
    (dashes && trace_id != [0; 16] && parent != [0; 8]).then_some((trace_id, parent, flags))
}

/// `N` bytes from `2N` lower-case hex digits.
fn hex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N
        || !digits
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

fn nonzero_trace_id() -> [u8; 16] {
    fastrand::u128(1..).to_be_bytes()
}

fn nonzero_span_id() -> [u8; 8] {
    fastrand::u64(1..).to_be_bytes()
}

/// In the access record: the ids as hex.
impl Serialize for TraceContext {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("TraceContext", 3)?;
        out.serialize_field("trace_id", &hex::encode(self.trace_id))?;
        out.serialize_field("span_id", &hex::encode(self.span_id))?;
        out.serialize_field("parent_span_id", &self.parent_span_id.map(hex::encode))?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued() {
        let t = TraceContext::continue_or_start(Some(CLIENT));
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_span_id.map(hex::encode).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(t.span_id, [0; 8]);
        assert!(t.sampled);
        let upstream = t.traceparent();
        assert!(upstream.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(upstream.ends_with("-01"));
        assert_eq!(parse(&upstream).unwrap().1, t.span_id);
    }

    #[test]
    fn invalid_ones_start_a_new_trace() {
        for bad in [
            "",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
            let t = TraceContext::continue_or_start(Some(bad));
            assert!(t.parent_span_id.is_none() && t.sampled, "{bad}");
        }
        // A later version is read by its version-00 prefix.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what").is_some());
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceContext::continue_or_start(Some(unsampled)).sampled);
    }

    proptest::proptest! {
        #[test]
        fn any_value_parses_or_is_refused_without_panicking(value in "\\PC{0,80}") {
            let _ = parse(&value);
        }

        #[test]
        fn a_written_traceparent_reads_back(trace in 1u128.., span in 1u64.., sampled: bool) {
            let t = TraceContext {
                trace_id: trace.to_be_bytes(),
                span_id: span.to_be_bytes(),
                parent_span_id: None,
                sampled,
            };
            let (trace_id, parent, flags) = parse(&t.traceparent()).unwrap();
            proptest::prop_assert_eq!(trace_id, t.trace_id);
            proptest::prop_assert_eq!(parent, t.span_id);
            proptest::prop_assert_eq!(flags & 1 == 1, sampled);
        }
    }
}
