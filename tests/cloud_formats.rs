//! Bedrock InvokeModel and Vertex rawPredict clients through sluice to a Messages-format
//! upstream: requests arrive as Messages requests with only the path, the model's place,
//! `anthropic_version` and the betas' place changed (every other body member byte for byte);
//! Bedrock streams come back as AWS event-stream frames (an `exception` frame when the upstream
//! breaks); usage and cost are metered; routes match provider ids.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;
use serde_json::{Map, Value};
use sluice::format::eventstream::Decoder;
use sluice::format::{anthropic_model_id, CloudCall};

struct Captured {
    file: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<Map<String, Value>>,
}

fn cloud_captures() -> Vec<Captured> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(captures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
    {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            let target = r["target"].as_str().unwrap().to_string();
            if CloudCall::from_path(target.split('?').next().unwrap().as_bytes()).is_none() {
                continue;
            }
            out.push(Captured {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                method: r["method"].as_str().unwrap().to_string(),
                target,
                headers: header_pairs(&r["headers"]),
                body: r["body"].as_object().cloned(),
            });
        }
    }
    out
}

fn send(gw: &Gateway, c: &Captured, body: &[u8]) -> (Response, Vec<(String, String)>) {
    let mut raw = format!("{} {} HTTP/1.1\r\n", c.method, c.target).into_bytes();
    let mut sent = Vec::new();
    for (n, v) in &c.headers {
        let v = match n.to_ascii_lowercase().as_str() {
            "host" => "gateway.test".to_string(),
            "content-length" => body.len().to_string(),
            _ => v.clone(),
        };
        raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        sent.push((n.clone(), v));
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    let mut client = Client::connect(gw.addr);
    client.send(&raw);
    (client.read_response().expect("a response"), sent)
}

/// The Messages body the upstream must receive: model (and stream) first, then every other
/// member of the client's body, unchanged and in order.
fn expected_body(call: &CloudCall, body: &Map<String, Value>) -> (String, Vec<String>) {
    let model = match call {
        CloudCall::VertexCountTokens => anthropic_model_id(body["model"].as_str().unwrap()),
        _ => anthropic_model_id(call.path_model().unwrap()),
    };
    let mut parts = vec![format!("\"model\":{}", Value::String(model.into_owned()))];
    if matches!(call, CloudCall::BedrockInvoke { stream: true, .. }) {
        parts.push("\"stream\":true".into());
    }
    let mut dropped = vec!["model", "anthropic_version", "anthropic_beta"];
    if matches!(call, CloudCall::BedrockInvoke { .. }) {
        dropped.push("stream");
    }
    for (k, v) in body {
        if !dropped.contains(&k.as_str()) {
            parts.push(format!(
                "{}:{}",
                Value::String(k.clone()),
                serde_json::to_string(v).unwrap()
            ));
        }
    }
    let betas = body
        .get("anthropic_beta")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|b| b.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (format!("{{{}}}", parts.join(",")), betas)
}

#[test]
fn captured_bedrock_and_vertex_requests_arrive_as_messages_requests() {
    let mock = mock(&[]);
    let gw = gateway_with(
        &mock.url(),
        "",
        &["--upstream-api-key", "sk-upstream-secret"],
    );
    let captures = cloud_captures();
    assert!(
        captures.len() >= 20,
        "expected the shared Bedrock/Vertex captures, found {}",
        captures.len()
    );
    for c in &captures {
        let body = c.body.clone().unwrap();
        let raw_body = serde_json::to_vec(&body).unwrap();
        let (resp, sent) = send(&gw, c, &raw_body);
        assert_eq!(
            resp.status,
            200,
            "{} {}: {:?}",
            c.file,
            c.target,
            String::from_utf8_lossy(&resp.body)
        );
        let call = CloudCall::from_path(c.target.as_bytes()).unwrap();
        let got = mock_requests(&mock).pop().unwrap();
        let want_path = if call == CloudCall::VertexCountTokens {
            "/v1/messages/count_tokens"
        } else {
            "/v1/messages"
        };
        assert_eq!(got["target"], want_path, "{}", c.file);
        let (want_body, body_betas) = expected_body(&call, &body);
        assert_eq!(got["body"].as_str().unwrap(), want_body, "{}: body", c.file);
        let headers: Vec<(String, String)> = got["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_ascii_lowercase(),
                    h[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let client_betas: Vec<String> = sent
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("anthropic-beta"))
            .map(|(_, v)| v.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let mut want_betas = client_betas.clone();
        want_betas.extend(body_betas.into_iter().filter(|b| !client_betas.contains(b)));
        assert_eq!(
            header("anthropic-beta")
                .map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default(),
            want_betas,
            "{}: betas",
            c.file
        );
        assert!(header("anthropic-version").is_some(), "{}", c.file);
        assert_eq!(header("x-api-key").as_deref(), Some("sk-upstream-secret"));
        for gone in [
            "authorization",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-content-sha256",
        ] {
            assert!(
                header(gone).is_none(),
                "{}: {gone} reached the upstream",
                c.file
            );
        }
        // Other client headers arrive unchanged.
        for (n, v) in &sent {
            let lower = n.to_ascii_lowercase();
            let kept = ![
                "host",
                "content-length",
                "connection",
                "authorization",
                "anthropic-beta",
                "x-amz-date",
                "x-amz-security-token",
                "x-amz-content-sha256",
            ]
            .contains(&lower.as_str());
            if kept {
                assert_eq!(
                    header(&lower).as_deref(),
                    Some(v.as_str()),
                    "{}: {n}",
                    c.file
                );
            }
        }
    }
}

fn bedrock_request(model: &str, stream: bool, extra: &str) -> String {
    let body = r#"{"max_tokens":64,"messages":[{"role":"user","content":"hi"}],"anthropic_beta":["interleaved-thinking-2025-05-14"],"anthropic_version":"bedrock-2023-05-31"}"#;
    let action = if stream {
        "invoke-with-response-stream"
    } else {
        "invoke"
    };
    format!(
        "POST /model/{model}/{action} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn decode_frames(body: &[u8]) -> Vec<sluice::format::eventstream::Message> {
    let mut d = Decoder::new();
    d.feed(body);
    let mut out = Vec::new();
    while let Some(m) = d.next_message().expect("valid frames with correct CRCs") {
        out.push(m);
    }
    out
}

#[test]
fn a_bedrock_stream_comes_back_as_an_event_stream() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let resp = request(
        gw.addr,
        &bedrock_request(
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            true,
            "x-mock-reply: one two\r\n",
        ),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let frames = decode_frames(&resp.body);
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| {
            assert_eq!(f.header(":message-type"), Some("event"));
            let event: Value = serde_json::from_slice(&f.chunk_event().unwrap()).unwrap();
            event["type"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["format"], "bedrock");
    assert_eq!(r["model"], "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(r["upstream_model"], "claude-sonnet-4-5-20250929");
    assert_eq!(r["stream_complete"], true);
    assert_eq!(r["output_tokens"], 2);
    assert!(r["cost_usd"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_non_streaming_bedrock_call_gets_the_message_json() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let resp = request(
        gw.addr,
        &bedrock_request("anthropic.claude-haiku-4-5-20251001-v1%3A0", false, ""),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["content"][0]["text"], "hello");
    assert_eq!(
        gw.wait_records(1)[0]["upstream_model"],
        "claude-haiku-4-5-20251001"
    );
}

#[test]
fn a_broken_bedrock_stream_ends_with_an_exception_frame() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let resp = request(
        gw.addr,
        &bedrock_request(
            "us.anthropic.claude-opus-4-6-v1",
            true,
            "x-mock-fail: truncate-after:3\r\n",
        ),
    );
    assert_eq!(resp.status, 200);
    let frames = decode_frames(&resp.body);
    let last = frames.last().unwrap();
    assert_eq!(last.header(":message-type"), Some("exception"));
    assert_eq!(
        last.header(":exception-type"),
        Some("internalServerException")
    );
    assert_eq!(frames.len(), 4, "three events, then the exception");
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["error"], "upstream_truncated");
    assert!(
        r["input_tokens"].as_u64().unwrap() > 0,
        "partial usage recorded"
    );
}

#[test]
fn vertex_streams_stay_sse() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let body = r#"{"anthropic_version":"vertex-2023-10-16","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"stream":true}"#;
    let raw = format!(
        "POST /vertex/v1/projects/p/locations/global/publishers/anthropic/models/claude-opus-5-5:streamRawPredict HTTP/1.1\r\nHost: gw\r\nanthropic-beta: claude-code-20250219\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, &raw);
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(String::from_utf8(resp.body)
        .unwrap()
        .ends_with("data: {\"type\":\"message_stop\"}\n\n"));
    let got = mock_requests(&mock).pop().unwrap();
    assert_eq!(
        got["body"],
        r#"{"model":"claude-opus-5-5","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"stream":true}"#
    );
    assert!(got["headers"]
        .to_string()
        .contains("[\"anthropic-beta\",\"claude-code-20250219\"]"));
}

#[test]
fn routes_match_provider_ids_and_aliases() {
    let fast = mock(&[]);
    let config = format!(
        r#"
[[upstreams]]
name = "main"
url = "http://127.0.0.1:9"
[[upstreams]]
name = "fast"
url = "{}"
[[routes]]
model = "claude-haiku-*"
upstream = "fast"
[[routes]]
model = "team-fast"
upstream = "fast"
upstream_model = "claude-haiku-4-5"
[[routes]]
model = "*"
upstream = "main"
"#,
        fast.url()
    );
    let gw = gateway("", &config);
    // A Bedrock id matches the route by its Anthropic id.
    let resp = request(
        gw.addr,
        &bedrock_request("us.anthropic.claude-haiku-4-5-20251001-v1:0", false, ""),
    );
    assert_eq!(resp.status, 200);
    // An alias: the body's model is rewritten, everything else kept.
    let body =
        r#"{"model":"team-fast","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = request(gw.addr, &messages_request(body, ""));
    assert_eq!(resp.status, 200);
    let got = mock_requests(&fast).pop().unwrap();
    assert_eq!(
        got["body"],
        r#"{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#
    );
    let records = gw.wait_records(2);
    let alias = records.iter().find(|r| r["model"] == "team-fast").unwrap();
    assert_eq!(alias["upstream_model"], "claude-haiku-4-5");
    assert_eq!(alias["upstream"], "fast");
}

#[test]
fn inference_profiles_are_answered_locally() {
    let gw = gateway("http://127.0.0.1:9", "");
    for target in [
        "/inference-profiles?type=SYSTEM_DEFINED",
        "/bedrock/inference-profiles",
    ] {
        let resp = request(
            gw.addr,
            &format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n"),
        );
        assert_eq!(resp.status, 200);
        assert!(resp.json()["inferenceProfileSummaries"].is_array());
    }
}
