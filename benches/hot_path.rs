//! Micro-benchmarks of the hot path: head parse + rewrite of a real Claude Code head, the model
//! scan over the captured 77 KB body (model first, as Claude Code sends it, and last, as the
//! Python SDK does), the budget's `max_tokens` read (from the end and from the front), the SSE
//! usage meter and the chunked decoder.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::hint::black_box;

// The bench's request body and the mock's responses, compiled in from the binary's sources
// (they are not part of the gateway library).
#[path = "../src/bench/bodies.rs"]
mod bodies;
#[path = "../src/mock/responses.rs"]
#[allow(dead_code, reason = "the mock's other responses")]
mod responses;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::http1::body::ChunkedDecoder;
use sluice::http1::rewrite::{rewrite_request, RequestRewrite};
use sluice::http1::{parse_request, HeadLimits};
use sluice::json::edit::field;
use sluice::json::members::{check_governed, scan_model, top_level_members};
use sluice::usage::json::JsonMeter;
use sluice::usage::sse::SseMeter;

/// The Claude Code main request from the shared captures (head, body), or a synthetic one of
/// the same shape when the captures are not beside the repository.
fn claude_code_request() -> (String, Vec<u8>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/captures/claude-api_key.jsonl"
    );
    let captured = std::fs::read_to_string(path).ok().and_then(|text| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["method"] == "POST")
    });
    let Some(r) = captured else {
        let body = bodies::claude_code_sized_body(true);
        let head = format!("POST /v1/messages?beta=true HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-test-123\r\nContent-Length: {}\r\n\r\n", body.len());
        return (head, body);
    };
    let body = serde_json::to_vec(&r["body"]).unwrap();
    let mut head = format!("POST {} HTTP/1.1\r\n", r["target"].as_str().unwrap());
    for h in r["headers"].as_array().unwrap() {
        let (name, value) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
        let value = if name.eq_ignore_ascii_case("content-length") {
            body.len().to_string()
        } else {
            value.to_string()
        };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    (head, body)
}

fn head_parse_and_rewrite(c: &mut Criterion) {
    let (head, _) = claude_code_request();
    let credential = b"sk-ant-upstream-key".to_vec();
    let mut out = Vec::with_capacity(4096);
    c.bench_function("head parse + rewrite (Claude Code head)", |b| {
        b.iter(|| {
            let (parsed, _) = parse_request(black_box(head.as_bytes()), HeadLimits::default())
                .unwrap()
                .unwrap();
            out.clear();
            rewrite_request(
                &parsed,
                &RequestRewrite {
                    host: b"api.anthropic.com",
                    drop_client_credentials: true,
                    credential: Some(("x-api-key", &credential)),
                    ..Default::default()
                },
                &mut out,
            );
            black_box(out.len())
        })
    });
}

fn model_scan(c: &mut Criterion) {
    let (_, body) = claude_code_request();
    let mut group = c.benchmark_group("model scan");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(
        format!("model first ({} KB, Claude Code)", body.len() / 1000),
        |b| b.iter(|| black_box(scan_model(black_box(&body)))),
    );
    // Same body with model moved last (the Python SDK's order): the scan skips every value.
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body).unwrap();
    let model = v.remove("model").unwrap();
    v.insert("model".into(), model);
    let last = serde_json::to_vec(&v).unwrap();
    group.bench_function(format!("model last ({} KB)", last.len() / 1000), |b| {
        b.iter(|| black_box(scan_model(black_box(&last))))
    });
    group.finish();
    // Every top-level member, once: no governed member twice or escaped (issue 10, item 3).
    let mut group = c.benchmark_group("governed members");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(
        format!("check ({} KB, Claude Code)", body.len() / 1000),
        |b| b.iter(|| black_box(check_governed(black_box(&body)))),
    );
    let synthetic = bodies::claude_code_sized_body(true);
    group.bench_function(
        format!(
            "check ({} KB, the load bench's body)",
            synthetic.len() / 1000
        ),
        |b| b.iter(|| black_box(check_governed(black_box(&synthetic)))),
    );
    group.finish();
    // The budget reservation's `max_tokens`, which Claude Code sends after its large members.
    let mut group = c.benchmark_group("max_tokens for the budget");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("read from the end (Claude Code)", |b| {
        b.iter(|| black_box(field(black_box(&body), "max_tokens")))
    });
    let mut sdk: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    sdk.insert("max_tokens".into(), v["max_tokens"].clone());
    for (k, value) in &v {
        sdk.entry(k.clone()).or_insert_with(|| value.clone());
    }
    let sdk = serde_json::to_vec(&sdk).unwrap();
    group.bench_function("first member (the SDKs' order)", |b| {
        b.iter(|| black_box(field(black_box(&sdk), "max_tokens")))
    });
    group.bench_function("read from the front (every member)", |b| {
        b.iter(|| {
            let members = top_level_members(black_box(&body)).unwrap();
            black_box(
                members
                    .iter()
                    .find(|m| &body[m.key.clone()] == b"max_tokens")
                    .map(|m| m.value.clone()),
            )
        })
    });
    group.finish();
}

fn sse_meter(c: &mut Criterion) {
    let reply: Vec<String> = (0..200).map(|i| format!("word{i}")).collect();
    let events = responses::sse_events("claude-opus-4-8", &reply.join(" "), 19_000, 200);
    let stream: Vec<u8> = events.concat();
    let mut group = c.benchmark_group("SSE usage meter");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function(format!("{} events, fed per event", events.len()), |b| {
        b.iter(|| {
            let mut meter = SseMeter::new();
            for e in &events {
                meter.feed(black_box(e));
            }
            black_box(meter.finish())
        })
    });
    group.finish();
}

/// The non-streaming meter on a message body: a short reply (the throughput bench's) and
/// longer answers, each fed in one piece, and read in place as a body that came whole with
/// its head is (the request named the model, so the response's is not copied).
fn json_meter(c: &mut Criterion) {
    let words = |n: usize| {
        (0..n)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut group = c.benchmark_group("JSON usage meter");
    for (name, reply) in [
        ("short reply", "Hello!".to_string()),
        ("200-word reply", words(200)),
        ("4000-word reply", words(4000)),
    ] {
        let body = responses::message_json("claude-opus-4-8", &reply, 19_000, 200);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name} ({} bytes)", body.len()), |b| {
            b.iter(|| {
                let mut meter = JsonMeter::new();
                meter.feed(black_box(&body));
                black_box(meter.finish())
            })
        });
        group.bench_function(format!("{name} in place ({} bytes)", body.len()), |b| {
            b.iter(|| black_box(JsonMeter::read_whole(black_box(&body), true)))
        });
    }
    group.finish();
}

fn chunked_decode(c: &mut Criterion) {
    let reply: Vec<String> = (0..200).map(|i| format!("word{i}")).collect();
    let events = responses::sse_events("claude-opus-4-8", &reply.join(" "), 19_000, 200);
    let mut wire = Vec::new();
    for e in &events {
        wire.extend_from_slice(format!("{:x}\r\n", e.len()).as_bytes());
        wire.extend_from_slice(e);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("chunked decoder");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("SSE stream, one pass", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new();
            let mut payload = 0;
            let n = d.decode(black_box(&wire), |r| payload += r.len()).unwrap();
            black_box((n, payload))
        })
    });
    group.finish();
}

/// Format conversion per event: SSE → event-stream frame (a Bedrock client on a Messages
/// upstream) and event-stream frame → SSE (a Messages client on a Bedrock upstream).
fn conversion(c: &mut Criterion) {
    let reply: Vec<String> = (0..200).map(|i| format!("word{i}")).collect();
    let sse: Vec<u8> =
        responses::sse_events("claude-opus-4-8", &reply.join(" "), 19_000, 200).concat();
    let frames: Vec<u8> =
        responses::bedrock_frames("claude-opus-4-8", &reply.join(" "), 19_000, 200).concat();
    let mut group = c.benchmark_group("conversion");
    group.throughput(Throughput::Elements(206));
    group.bench_function("SSE to event-stream, 206 events", |b| {
        b.iter(|| {
            let mut splitter = sluice::format::sse_split::SseSplitter::new();
            let mut out = Vec::with_capacity(sse.len() * 2);
            splitter
                .feed(black_box(&sse), |event| {
                    out.extend_from_slice(&sluice::format::eventstream::chunk_frame(event))
                })
                .unwrap();
            black_box(out.len())
        })
    });
    group.bench_function("event-stream to SSE, 206 events", |b| {
        b.iter(|| {
            let mut decoder = sluice::format::eventstream::Decoder::new();
            decoder.feed(black_box(&frames));
            let mut out = Vec::with_capacity(frames.len());
            while let Some(m) = decoder.next_message().unwrap() {
                sluice::format::sse_from_message(&m, &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

fn sigv4_sign(c: &mut Criterion) {
    let creds = sluice::provider::sigv4::AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "secret".into(),
        session_token: None,
        expires: None,
    };
    let (_, body) = claude_code_request();
    c.bench_function("SigV4 signing of the Claude Code body", |b| {
        b.iter(|| {
            let request = sluice::provider::bedrock::Signed {
                service: "bedrock",
                region: "us-east-1",
                host: "bedrock-runtime.us-east-1.amazonaws.com",
                wire_target: b"/model/us.anthropic.claude-opus-4-8-v1/invoke-with-response-stream",
                body: black_box(&body),
            };
            black_box(sluice::provider::bedrock::signed_fields(&creds, &request))
        })
    });
}

fn jwt_verify(c: &mut Criterion) {
    let file = sluice::config::parse_text(
        "[jwt]\nissuer = \"idp\"\naudience = \"sluice\"\nteam_claim = \"team\"\n[[jwt.keys]]\nalgorithm = \"HS256\"\nsecret = \"bench-secret\"\n",
    )
    .expect("config");
    let config = sluice::config::build(file, &sluice::config::Overrides::default()).expect("build");
    let state = sluice::state::State::build(&config, sluice::state::Commands::Skip).expect("state");
    let verifier = state.jwt.expect("jwt");
    let claims = serde_json::json!({
        "sub": "u-1", "team": "t", "iss": "idp", "aud": "sluice", "exp": 4_000_000_000u64,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"bench-secret"),
    )
    .expect("token");
    c.bench_function("JWT HS256 verification", |b| {
        b.iter(|| black_box(verifier.verify(black_box(&token))))
    });
}

criterion_group!(
    benches,
    jwt_verify,
    head_parse_and_rewrite,
    model_scan,
    sse_meter,
    json_meter,
    chunked_decode,
    conversion,
    sigv4_sign
);
criterion_main!(benches);
