//! Properties of the wire code over generated input: the head parser and body framing survive
//! arbitrary bytes and every split point, an untouched head round-trips byte for byte, the model
//! scanner finds `model` wherever it sits, the meters never panic, and the event-stream decoder
//! survives arbitrary bytes, decodes frames whole at every split and never misreads a corrupted
//! frame; the whole request path without I/O takes hostile values for every header it reads.
//! (The same entry points are cargo-fuzz targets in `fuzz/`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "property tests: a failure is a failed test"
)]

use proptest::prelude::*;
use sluice::format::eventstream::{self, Decoder};
use sluice::http1::body::{BodyCursor, ChunkedDecoder};
use sluice::http1::rewrite::{rewrite_request, RequestRewrite};
use sluice::http1::{parse_request, parse_response, BodyFraming, HeadLimits, Method};
use sluice::json::edit;
use sluice::json::members::{scan_model, top_level_members, ModelScan};
use sluice::json::tail::{last_member, Tail};
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
        prop_assert_eq!(scan_model(&body), ModelScan::Found(model.into()));
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
            prop_assert_eq!(edit::field(&body, key), front);
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

/// A JSON object written member by member, so a key can appear twice or be escaped: keys from
/// the governed ones, their escaped spellings and others; values any JSON (strings that hold
/// quotes, backslashes and brackets included); compact or spaced.
fn raw_object() -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    let key = prop::sample::select(vec![
        "model",
        "max_tokens",
        "stream",
        "messages",
        "system",
        "mod\\u0065l",
        "\\u006dax_tokens",
        "a\\\"b",
        "str\\u0065am",
    ]);
    (
        prop::collection::vec((key, any_json()), 0..6),
        prop::sample::select(vec!["", " ", "\n  "]),
    )
        .prop_map(|(members, ws)| {
            let mut out = format!("{{{ws}").into_bytes();
            let mut keys = Vec::new();
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(format!(",{ws}").as_bytes());
                }
                out.extend_from_slice(format!("\"{k}\"{ws}:{ws}").as_bytes());
                out.extend_from_slice(&serde_json::to_vec(v).unwrap());
                keys.push(k.to_string());
            }
            out.extend_from_slice(format!("{ws}}}").as_bytes());
            (out, keys)
        })
}

/// The gateway the whole-request-path property drives requests through (also the fuzz
/// target's): keys, a SigV4 key, JWTs, two upstreams, an alias, a budget.
fn dry_run_config() -> &'static sluice::state::live::Snapshot {
    static GATEWAY: std::sync::OnceLock<sluice::state::live::Snapshot> = std::sync::OnceLock::new();
    GATEWAY.get_or_init(|| {
        let text = include_str!("../fuzz/request_path.toml");
        let config = sluice::config::build(
            sluice::config::parse_text(text).unwrap(),
            &sluice::config::Overrides::default(),
        )
        .unwrap();
        let state = sluice::state::State::build(&config, sluice::state::Commands::Skip).unwrap();
        sluice::state::live::Snapshot::new(config, state)
    })
}

/// Every header sluice reads on the request path, and a few it does not.
const READ_HEADERS: [&str; 18] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "x-api-key",
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "anthropic-version",
    "anthropic-beta",
    "content-type",
    "x-claude-code-session-id",
    "x-claude-code-agent-id",
    "x-claude-code-parent-agent-id",
    "user-agent",
    "x-stainless-lang",
];

/// A header value as hostile as httparse lets through: visible ASCII, spaces, tabs and bytes
/// 0x80–0xFF (multi-byte UTF-8, or not UTF-8 at all), or a value crafted around a credential.
fn hostile_value() -> impl Strategy<Value = Vec<u8>> {
    let bytes = prop::collection::vec(
        prop_oneof![0x21u8..0x7f, Just(b' '), Just(b'\t'), 0x80u8..=0xff],
        0..48,
    );
    let crafted = (
        prop::sample::select(vec![
            "AWS4-HMAC-SHA256 Credential=AKIDSLUICEFUZZ000000/20261122/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=",
            "Bearer eyJ",
            "Bearer sk-fuzz",
            "sk-fuzz",
            "2026112",
            "20261122T12",
            "chunked",
            "100-continue",
        ]),
        prop::collection::vec(prop_oneof![0x21u8..0x7f, 0x80u8..=0xff], 0..24),
    )
        .prop_map(|(prefix, tail)| {
            let mut v = prefix.as_bytes().to_vec();
            v.extend(tail);
            v
        });
    prop_oneof![bytes, crafted]
}

/// A value shaped like one sluice parses (an `x-amz-date`, a SHA-256, a Bearer token) with a
/// multi-byte character put where a text slice by byte offsets would cut it.
fn near_miss_value() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            "20261122T120000Z",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "Bearer sk-fuzz-0000",
            "AWS4-HMAC-SHA256 Credential=AKIDSLUICEFUZZ000000/20261122/us-east-1/bedrock/aws4_request",
        ]),
        any::<prop::sample::Index>(),
        prop::sample::select(vec!['\u{e9}', '\u{df}', '\u{20ac}', '\u{1f600}']),
    )
        .prop_map(|(template, at, c)| {
            let mut v = template.as_bytes().to_vec();
            let at = at.index(v.len());
            let mut utf8 = [0u8; 4];
            let c = c.encode_utf8(&mut utf8).as_bytes();
            let end = (at + c.len()).min(v.len());
            v.splice(at..end, c.iter().copied());
            v
        })
}

/// A SigV4-signed request (to a key sluice knows) whose date, payload hash and other read
/// headers are hostile.
fn sigv4_request_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![near_miss_value(), hostile_value()],
        prop::option::of(prop_oneof![near_miss_value(), hostile_value()]),
        prop::collection::vec(
            (prop::sample::select(READ_HEADERS.to_vec()), near_miss_value()),
            0..4,
        ),
    )
        .prop_map(|(date, sha, headers)| {
            let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1,"messages":[]}"#;
            let mut raw = b"POST /model/claude-haiku-4-5/invoke HTTP/1.1\r\nHost: gw\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDSLUICEFUZZ000000/20261122/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nX-Amz-Date: ".to_vec();
            raw.extend(date);
            raw.extend_from_slice(b"\r\n");
            if let Some(sha) = sha {
                raw.extend_from_slice(b"X-Amz-Content-Sha256: ");
                raw.extend(sha);
                raw.extend_from_slice(b"\r\n");
            }
            for (name, value) in headers {
                if matches!(name, "host" | "content-length" | "transfer-encoding" | "authorization") {
                    continue;
                }
                raw.extend_from_slice(name.as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend(value);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            raw.extend_from_slice(body);
            raw
        })
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let path = prop::sample::select(vec![
        "/v1/messages",
        "/v1/messages?beta=true",
        "/v1/messages/count_tokens",
        "/v1/models",
        "/v1/models/claude-opus-4-8",
        "/model/claude-opus-4-8/invoke",
        "/model/us.anthropic.claude-haiku-4-5-v1%3A0/invoke-with-response-stream",
        "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5:rawPredict",
        "/v1/files/file_1",
        "/v1/messages/batches",
        "/healthz",
    ]);
    let body = prop_oneof![
        Just(r#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#.to_string()),
        Just(r#"{"model":"fast","max_tokens":99999999999999999999999,"stream":"yes","messages":[]}"#.to_string()),
        Just(r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["a",1],"max_tokens":1,"messages":[]}"#.to_string()),
        Just(r#"{"model":"claude-opus-4-8","mod\u0065l":"x","model":"y"}"#.to_string()),
        "[ -~]{0,64}",
    ];
    (
        prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "DELETE"]),
        path,
        prop::collection::vec(
            (
                prop::sample::select(READ_HEADERS.to_vec()),
                prop_oneof![hostile_value(), near_miss_value()],
            ),
            0..10,
        ),
        body,
    )
        .prop_map(|(method, path, headers, body)| {
            let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: gw\r\n").into_bytes();
            for (name, value) in headers {
                raw.extend_from_slice(name.as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(&value);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            raw.extend_from_slice(body.as_bytes());
            raw
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The whole request path (`proxy::dry_run`) takes any header value sluice reads — any
    /// bytes httparse lets through — and returns: refused or forwarded, never a panic.
    #[test]
    fn the_request_path_survives_hostile_header_values(raw in request_bytes()) {
        let _ = sluice::proxy::dry_run::run(&raw, dry_run_config());
    }

    /// The same, for SigV4-signed requests: the date, the payload hash and the other headers
    /// a signature check reads.
    #[test]
    fn a_sigv4_request_with_hostile_headers_is_refused_not_a_panic(raw in sigv4_request_bytes()) {
        let run = sluice::proxy::dry_run::run(&raw, dry_run_config());
        prop_assert!(run.refused.is_some(), "{:?}", run);
    }

    /// The governed-members check refuses exactly the objects in which a governed member
    /// appears twice or escaped (an oracle that decodes every written key), wherever the
    /// members sit and whatever the values hold.
    #[test]
    fn governed_members_are_refused_exactly_when_ambiguous((body, keys) in raw_object()) {
        use sluice::json::members::{check_governed, GOVERNED};
        let decoded: Vec<(String, bool)> = keys
            .iter()
            .map(|k| {
                let plain: String = serde_json::from_str(&format!("\"{k}\"")).unwrap();
                (plain, k.contains('\\'))
            })
            .collect();
        let ambiguous = GOVERNED.iter().any(|g| {
            let written: Vec<&(String, bool)> = decoded.iter().filter(|(k, _)| k == g).collect();
            written.len() > 1 || written.iter().any(|(_, escaped)| *escaped)
        });
        prop_assert_eq!(check_governed(&body).is_err(), ambiguous, "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn the_request_path_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = sluice::proxy::dry_run::run(&bytes, dry_run_config());
    }
}

#[test]
fn the_dry_run_forwards_a_good_request_and_refuses_a_smuggled_one() {
    let good = b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-fuzz\r\nContent-Length: 88\r\n\r\n{\"model\":\"claude-haiku-4-5\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    let run = sluice::proxy::dry_run::run(good, dry_run_config());
    assert_eq!(run.refused, None, "{run:?}");
    assert_eq!(run.identity.as_deref(), Some("key:fuzz"));
    assert_eq!(run.upstream_heads, 2);
    let smuggled = b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-fuzz\r\nContent-Length: 59\r\n\r\n{\"model\":\"claude-haiku-4-5\",\"model\":\"claude-opus-4-8\"}    ";
    let run = sluice::proxy::dry_run::run(smuggled, dry_run_config());
    assert_eq!(run.refused, Some("ambiguous_body"), "{run:?}");
    let hostile_date = "POST /model/claude-opus-4-8/invoke HTTP/1.1\r\nHost: gw\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDSLUICEFUZZ000000/20261122/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nX-Amz-Date: 2026112\u{e9}T12000Z\r\nContent-Length: 2\r\n\r\n{}";
    let run = sluice::proxy::dry_run::run(hostile_date.as_bytes(), dry_run_config());
    assert_eq!(run.refused, Some("unauthorized"), "{run:?}");
}
