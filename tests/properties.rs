//! Properties of the wire code over generated input: the head parser and body framing survive
//! arbitrary bytes and every split point, an untouched head round-trips byte for byte, the model
//! scanner finds `model` wherever it sits, the meters never panic, and the event-stream decoder
//! survives arbitrary bytes, decodes frames whole at every split and never misreads a corrupted
//! frame. (The same entry points are cargo-fuzz targets in `fuzz/`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "property tests: a failure is a failed test"
)]

use proptest::prelude::*;
use sluice::format::eventstream::{self, Decoder};
use sluice::format::json_edit;
use sluice::format::json_tail::{last_member, Tail};
use sluice::http1::body::{BodyCursor, ChunkedDecoder};
use sluice::http1::rewrite::{rewrite_request, RequestRewrite};
use sluice::http1::{parse_request, parse_response, BodyFraming, HeadLimits, Method};
use sluice::proxy::model_field::{scan_model, top_level_members, ModelScan};
use sluice::usage::json::JsonMeter;
use sluice::usage::sse::SseMeter;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,20}"
}

fn field_value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,40}[!-~])?"
}

/// A valid request head without hop-by-hop or framing fields.
fn plain_head() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "DELETE"]),
        "/[a-z0-9/_.-]{0,30}(\\?[a-z0-9=&]{0,20})?",
        // A Host is an authority (anything else is refused, see the hostile-input suite).
        "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
        prop::collection::vec((token(), field_value()), 0..20),
    )
        .prop_map(|(method, target, host, fields)| {
            let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
            for (name, value) in fields {
                let lower = name.to_ascii_lowercase();
                let reserved = [
                    "host",
                    "connection",
                    "keep-alive",
                    "proxy-connection",
                    "te",
                    "trailer",
                    "upgrade",
                    "proxy-authorization",
                    "transfer-encoding",
                    "content-length",
                    "expect",
                ];
                if !reserved.contains(&lower.as_str()) {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
            }
            head.push_str("\r\n");
            (head, host)
        })
}

fn chunked(payload: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(7)
            .clamp(1, rest.len());
        let (a, b) = rest.split_at(n);
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if ext {
            out.extend_from_slice(b";name=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
        rest = b;
        i += 1;
    }
    out.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn head_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_request(&bytes, HeadLimits::default());
        let _ = parse_response(&bytes, Method::Post, HeadLimits::default());
    }

    #[test]
    fn head_parser_survives_near_valid_heads(
        (head, _) in plain_head(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = head.into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let _ = parse_request(&bytes, HeadLimits::default());
    }

    #[test]
    fn every_prefix_of_a_head_is_partial_and_the_whole_is_complete((head, _) in plain_head()) {
        let bytes = head.as_bytes();
        for cut in 0..bytes.len() {
            prop_assert!(parse_request(&bytes[..cut], HeadLimits::default()).unwrap().is_none(), "prefix {cut}");
        }
        let (parsed, len) = parse_request(bytes, HeadLimits::default()).unwrap().unwrap();
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(parsed.framing, BodyFraming::Empty);
    }

    #[test]
    fn an_untouched_head_round_trips_byte_for_byte((head, host) in plain_head()) {
        let (parsed, _) = parse_request(head.as_bytes(), HeadLimits::default()).unwrap().unwrap();
        let mut out = Vec::new();
        rewrite_request(&parsed, &RequestRewrite { host: host.as_bytes(), ..Default::default() }, &mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), head);
    }

    #[test]
    fn chunked_bodies_decode_at_every_split(
        payload in prop::collection::vec(any::<u8>(), 0..600),
        sizes in prop::collection::vec(1usize..64, 1..8),
        ext in any::<bool>(),
        split_a in any::<prop::sample::Index>(),
        split_b in any::<prop::sample::Index>(),
    ) {
        let mut wire = chunked(&payload, &sizes, ext);
        let body_len = wire.len();
        wire.extend_from_slice(b"NEXT");
        let (mut a, mut b) = (split_a.index(wire.len() + 1), split_b.index(wire.len() + 1));
        if a > b { std::mem::swap(&mut a, &mut b); }
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        for piece in [&wire[..a], &wire[a..b], &wire[b..]] {
            let n = decoder.decode(piece, |r| out.extend_from_slice(&piece[r])).unwrap();
            used += n;
            if decoder.is_done() { break; }
        }
        prop_assert!(decoder.is_done());
        prop_assert_eq!(used, body_len);
        prop_assert_eq!(out, payload);
    }

    #[test]
    fn body_framing_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024), split in any::<prop::sample::Index>()) {
        let at = split.index(bytes.len() + 1);
        for framing in [BodyFraming::Chunked, BodyFraming::Length(100), BodyFraming::UntilClose] {
            let mut cursor = BodyCursor::new(framing);
            let mut total = 0;
            for piece in [&bytes[..at], &bytes[at..]] {
                match cursor.advance(piece, |r| assert!(r.end <= piece.len())) {
                    Ok(n) => { prop_assert!(n <= piece.len()); total += n; }
                    Err(_) => break,
                }
            }
            prop_assert!(total <= bytes.len());
        }
    }

    #[test]
    fn the_model_is_found_wherever_it_sits(
        fields in prop::collection::vec(("[a-z_]{1,12}", any_json()), 0..8),
        model in "[a-z0-9.:@-]{1,40}",
        pos in any::<prop::sample::Index>(),
    ) {
        let mut object = serde_json::Map::new();
        let at = pos.index(fields.len() + 1);
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i == at { object.insert("model".into(), serde_json::Value::String(model.clone())); }
            if k != "model" { object.insert(k, v); }
        }
        if !object.contains_key("model") { object.insert("model".into(), serde_json::Value::String(model.clone())); }
        let body = serde_json::to_vec(&serde_json::Value::Object(object)).unwrap();
        prop_assert_eq!(scan_model(&body), ModelScan::Found(model));
    }

    #[test]
    fn the_model_scanner_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = scan_model(&bytes);
        let _ = last_member(&bytes, b"model");
    }

    /// Reading a member from the end of a body agrees with reading the body from the front.
    #[test]
    fn a_member_read_from_the_end_is_the_one_read_from_the_front(
        fields in prop::collection::vec(("[a-z_]{1,12}", any_json()), 0..8),
        pretty in any::<bool>(),
    ) {
        let object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
        let value = serde_json::Value::Object(object.clone());
        let body = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }.unwrap();
        let members = top_level_members(&body).unwrap();
        for key in object.keys().map(String::as_str).chain(["absent"]) {
            let front = members.iter().find(|m| &body[m.key.clone()] == key.as_bytes()).map(|m| &body[m.value.clone()]);
            let back = match last_member(&body, key.as_bytes()) {
                Tail::Found(r) => Some(&body[r]),
                Tail::Absent => None,
                Tail::Unreadable => panic!("a whole object is readable from the end"),
            };
            prop_assert_eq!(back, front);
            prop_assert_eq!(json_edit::field(&body, key), front);
        }
    }

    #[test]
    fn meters_survive_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048), split in any::<prop::sample::Index>()) {
        let at = split.index(bytes.len() + 1);
        let mut sse = SseMeter::new();
        sse.feed(&bytes[..at]);
        sse.feed(&bytes[at..]);
        let _ = sse.finish();
        let mut json = JsonMeter::new();
        json.feed(&bytes);
        let _ = json.finish();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_event_stream_decoder_survives_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        split in any::<prop::sample::Index>(),
    ) {
        let at = split.index(bytes.len() + 1);
        let mut d = Decoder::new();
        d.feed(&bytes[..at]);
        while let Ok(Some(_)) = d.next_message() {}
        d.feed(&bytes[at..]);
        while let Ok(Some(_)) = d.next_message() {}
    }

    #[test]
    fn event_stream_frames_decode_whole_at_every_split(
        events in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6),
        split in any::<prop::sample::Index>(),
    ) {
        let wire: Vec<u8> = events.iter().flat_map(|e| eventstream::chunk_frame(e)).collect();
        let at = split.index(wire.len() + 1);
        let mut d = Decoder::new();
        let mut seen = Vec::new();
        for part in [&wire[..at], &wire[at..]] {
            d.feed(part);
            while let Some(m) = d.next_message().unwrap() {
                seen.push(m.chunk_event().unwrap());
            }
        }
        prop_assert_eq!(seen, events);
    }

    #[test]
    fn a_corrupted_frame_is_refused_not_misread(
        event in prop::collection::vec(any::<u8>(), 1..200),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut wire = eventstream::chunk_frame(&event);
        let i = flip.index(wire.len());
        wire[i] ^= 1 << bit;
        let mut d = Decoder::new();
        d.feed(&wire);
        // Either an error (a CRC or length check caught it) or still waiting for bytes that
        // a grown length asks for; never a different message.
        if let Ok(Some(m)) = d.next_message() {
            prop_assert_eq!(m.chunk_event(), Some(event));
        }
    }
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i32>().prop_map(|n| serde_json::json!(n)),
        ".{0,20}".prop_map(serde_json::Value::String),
        Just(serde_json::json!("say \"model\": \"decoy\" {[")),
        "[\\\\\"{}a-z]{0,6}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}
