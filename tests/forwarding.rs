//! Requests exactly as real clients sent them (../shared/captures) go through sluice to the mock
//! upstream: everything but the credential, Host and hop-by-hop fields arrives byte for byte, in
//! order, and the body is identical; client keys never reach the upstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;
use serde_json::Value;

const HOP_BY_HOP: [&str; 2] = ["connection", "keep-alive"];

struct Captured {
    file: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn first_party_captures() -> Vec<Captured> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(captures_dir())
        .expect("../shared/captures must sit beside the repository")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for path in files {
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            let target = r["target"].as_str().unwrap().to_string();
            if !(target.starts_with("/v1/messages")
                || target.starts_with("/v1/models")
                || target == "/")
            {
                continue; // Bedrock and Vertex formats: issue 3
            }
            let headers = header_pairs(&r["headers"]);
            let body = (!r["body"].is_null()).then(|| serde_json::to_vec(&r["body"]).unwrap());
            out.push(Captured {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                method: r["method"].as_str().unwrap().to_string(),
                target,
                headers,
                body,
            });
        }
    }
    out
}

fn raw_request(c: &Captured) -> (Vec<u8>, Vec<(String, String)>) {
    let mut sent = Vec::new();
    for (name, value) in &c.headers {
        let value = match name.to_ascii_lowercase().as_str() {
            "host" => "gateway.test:4100".to_string(),
            "content-length" => c.body.as_ref().map_or(0, Vec::len).to_string(),
            _ => value.clone(),
        };
        sent.push((name.clone(), value));
    }
    let mut raw = format!("{} {} HTTP/1.1\r\n", c.method, c.target).into_bytes();
    for (n, v) in &sent {
        raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    if let Some(body) = &c.body {
        raw.extend_from_slice(body);
    }
    (raw, sent)
}

/// Bodies below, at and above the size sluice sends in one write with its head arrive byte
/// for byte, one request after another on the same pooled upstream connection.
#[test]
fn bodies_of_every_size_arrive_whole_on_a_reused_connection() {
    let mock = mock(&[]);
    let gw = gateway_with(&mock.url(), "", &["--workers", "1"]);
    let mut client = Client::connect(gw.addr);
    for size in [
        100,
        16 * 1024,
        16 * 1024 + 1,
        70_000,
        128 * 1024,
        128 * 1024 + 1,
        300_000,
    ] {
        let filler = "x".repeat(usize::saturating_sub(size, 90));
        let body = format!(
            r#"{{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{{"role":"user","content":"{filler}"}}]}}"#
        );
        client.send(messages_request(&body, "").as_bytes());
        let resp = client.read_response().expect("a response");
        assert_eq!(resp.status, 200, "{size}");
        let got = mock_requests(&mock).pop().unwrap();
        assert_eq!(got["body_len"], body.len(), "{size}");
        assert_eq!(
            got["body_sha256"],
            sluice::digest::sha256_hex(body.as_bytes()),
            "{size}"
        );
    }
    let records = gw.wait_records(7);
    assert!(
        records
            .iter()
            .skip(1)
            .all(|r| r["pooled_connection"] == true),
        "every request after the first reused the upstream connection"
    );
}

#[test]
fn captured_requests_arrive_byte_for_byte() {
    let mock = mock(&[]);
    let gw = gateway_with(
        &mock.url(),
        "",
        &["--upstream-api-key", "sk-upstream-secret"],
    );
    let captures = first_party_captures();
    assert!(
        captures.len() > 20,
        "expected the shared captures, found {}",
        captures.len()
    );
    let mut forwarded = 0;
    for c in &captures {
        let (raw, sent) = raw_request(c);
        let mut client = Client::connect(gw.addr);
        client.send(&raw);
        let resp = client.read_response_for(&c.method).expect("a response");
        assert_eq!(resp.status, 200, "{} {} {}", c.file, c.method, c.target);
        let local = c.method == "HEAD" || c.target.starts_with("/v1/models");
        if local {
            continue;
        }
        forwarded += 1;
        let got = mock_requests(&mock).pop().unwrap();
        assert_eq!(
            got["target"],
            c.target.as_str(),
            "{}: query string kept",
            c.file
        );
        let received: Vec<(String, String)> = header_pairs(&got["headers"]);
        let mut expected: Vec<(String, String)> = Vec::new();
        for (n, v) in &sent {
            let lower = n.to_ascii_lowercase();
            if lower == "x-api-key"
                || lower == "authorization"
                || HOP_BY_HOP.contains(&lower.as_str())
            {
                continue;
            }
            let v = if lower == "host" {
                mock.addr.to_string()
            } else {
                v.clone()
            };
            expected.push((n.clone(), v));
        }
        expected.push(("x-api-key".into(), "sk-upstream-secret".into()));
        assert_eq!(received, expected, "{}: headers", c.file);
        let body = c.body.clone().unwrap_or_default();
        assert_eq!(got["body_len"], body.len(), "{}", c.file);
        assert_eq!(
            got["body_sha256"],
            sluice::digest::sha256_hex(&body),
            "{}: body",
            c.file
        );
    }
    assert!(forwarded >= 15, "only {forwarded} requests were forwarded");
    let everything = serde_json::to_string(&mock_requests(&mock)).unwrap();
    for secret in ["sk-test-123", "tok-test-456"] {
        assert!(
            !everything.contains(secret),
            "client credential {secret} reached the upstream"
        );
    }
    let records = gw.wait_records(captures.len());
    assert!(
        records
            .iter()
            .all(|r| !r.to_string().contains("sk-test-123")),
        "a key reached the access log"
    );
}

#[test]
fn model_is_found_wherever_the_client_puts_it() {
    let mock = mock(&[]);
    let config = r#"
[[upstreams]]
name = "main"
url = "http://127.0.0.1:9"
[[upstreams]]
name = "haiku"
url = "MOCK"
[[routes]]
model = "claude-haiku-*"
upstream = "haiku"
"#
    .replace("MOCK", &mock.url());
    let gw = gateway("", &config);
    // The Python SDK puts model after messages, whose text mentions "model" itself.
    let body = r#"{"max_tokens":64,"messages":[{"role":"user","content":"use \"model\": \"claude-opus-4-8\" please"}],"model":"claude-haiku-4-5","system":"You are terse."}"#;
    let resp = request(gw.addr, &messages_request(body, "x-api-key: k\r\n"));
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    let records = gw.wait_records(1);
    assert_eq!(records[0]["model"], "claude-haiku-4-5");
    assert_eq!(records[0]["upstream"], "haiku");
}

#[test]
fn a_body_larger_than_the_replay_buffer_streams_through() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "[server]\nreplay_buffer_bytes = 4096\n");
    let filler = "x".repeat(300_000);
    // model after a large field: sluice must read on to find it, and still forward every byte.
    let late = format!(
        r#"{{"messages":[{{"role":"user","content":"{filler}"}}],"model":"claude-haiku-4-5","max_tokens":5}}"#
    );
    let early = format!(
        r#"{{"model":"claude-haiku-4-5","messages":[{{"role":"user","content":"{filler}"}}],"max_tokens":5}}"#
    );
    for body in [late, early] {
        let resp = request(gw.addr, &messages_request(&body, ""));
        assert_eq!(resp.status, 200);
        let got = mock_requests(&mock).pop().unwrap();
        assert_eq!(
            got["body_sha256"],
            sluice::digest::sha256_hex(body.as_bytes())
        );
    }
}

/// One worker, three client connections with their requests in flight together, answers of a
/// few bytes to 70 KB, under a budget (the answer is held to the end) and not:
/// each answer carries exactly its own bytes. The worker's spare read and write buffers pass
/// from one request to the next, and an idle connection reads into its last request's buffer;
/// none of them may ever show an earlier answer.
#[test]
fn answers_through_reused_buffers_carry_only_their_own_bytes() {
    let mock = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (hash, unbudgeted) = (
        sluice::config::keys::hash_hex("sk-f"),
        sluice::config::keys::hash_hex("sk-g"),
    );
    let config = format!(
        "[[keys]]\nname = \"kf\"\nsha256 = \"{hash}\"\nteam = \"tf\"\n[[keys]]\nname = \"kg\"\nsha256 = \"{unbudgeted}\"\n[store]\npath = \"{}\"\n[[budgets]]\nscope = \"team\"\nname = \"tf\"\nlimit_usd = 1000.0\nperiod = \"total\"\n",
        dir.path().join("ledger.db").display()
    );
    let gw = gateway_with(&mock.url(), &config, &["--workers", "1"]);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(gw.addr)).collect();
    // The third client's key has no budget: its answers are relayed as they come.
    let key = |i: usize| {
        if i == 2 {
            "x-api-key: sk-g\r\n"
        } else {
            "x-api-key: sk-f\r\n"
        }
    };
    for round in 0..16 {
        let mut expected = Vec::new();
        for (i, client) in clients.iter_mut().enumerate() {
            let (reply, header) = match (round + i) % 5 {
                // Larger than a read buffer: the buffers grow and are not kept.
                3 => (
                    "x".repeat(20_000),
                    "x-mock-reply-bytes: 20000\r\n".to_string(),
                ),
                4 => (
                    "x".repeat(70_000),
                    "x-mock-reply-bytes: 70000\r\n".to_string(),
                ),
                size => {
                    let marker = format!("c{i}r{round}-");
                    let text: String = marker
                        .chars()
                        .cycle()
                        .take([9, 3_000, 8_000][size])
                        .collect();
                    let header = format!("x-mock-reply: {text}\r\n");
                    (text, header)
                }
            };
            let extra = format!("{}{header}", key(i));
            client.send(messages_request(SMALL_BODY, &extra).as_bytes());
            expected.push(reply);
        }
        for (client, reply) in clients.iter_mut().zip(&expected) {
            let resp = client.read_response().expect("an answer");
            assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
            let text = resp.json()["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                text == *reply,
                "round {round}: an answer of {} bytes, expected {}",
                text.len(),
                reply.len()
            );
        }
    }
}
