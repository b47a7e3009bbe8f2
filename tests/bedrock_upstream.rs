//! A Bedrock upstream: sluice signs with SigV4 (service `bedrock`; the mock verifies the
//! signature with its own copy of the key pair), turns Messages and Vertex requests into
//! InvokeModel requests (model to the path, `anthropic_version: bedrock-2023-05-31` and betas into
//! the body), turns the event-stream back into SSE for those clients, passes it through to
//! Bedrock clients, and meters usage either way.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::time::Duration;

use common::*;
use sluice::format::eventstream::Decoder;

const AKID: &str = "AKIDSLUICETEST000000";
const SECRET: &str = "sluice/test/secret+key";
const BEDROCK_MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

fn bedrock_mock() -> Proc {
    mock(&[
        "--aws-access-key",
        AKID,
        "--aws-secret-key",
        SECRET,
        "--bedrock-api-key",
        "bedrock-api-key-1",
    ])
}

fn config(mock: &Proc, credentials: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nurl = \"{}\"\nregion = \"us-east-1\"\n{credentials}\n[[routes]]\nmodel = \"*\"\ndeployments = [{{ upstream = \"bedrock\", upstream_model = \"{BEDROCK_MODEL}\" }}]\n",
        mock.url()
    )
}

fn keys() -> String {
    format!("aws_access_key_id = \"{AKID}\"\naws_secret_access_key = \"{SECRET}\"\n")
}

#[test]
fn a_messages_stream_is_signed_translated_and_comes_back_as_sse() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, &keys()));
    let headers = "x-api-key: sk-client\r\nanthropic-beta: context-1m-2025-08-07,interleaved-thinking-2025-05-14\r\nx-mock-reply: one two\r\n";
    let resp = request(gw.addr, &messages_request(STREAM_BODY, headers));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let text = String::from_utf8(resp.body).unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        events,
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
    let got = mock_requests(&mock).pop().unwrap();
    assert_eq!(
        got["target"],
        format!("/model/{BEDROCK_MODEL}/invoke-with-response-stream")
    );
    assert_eq!(
        got["body"],
        r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["context-1m-2025-08-07","interleaved-thinking-2025-05-14"],"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#
    );
    let sent = got["headers"].to_string();
    assert!(
        sent.contains("AWS4-HMAC-SHA256 Credential=AKIDSLUICETEST000000/")
            && !sent.contains("sk-client")
    );
    assert!(
        !sent.to_ascii_lowercase().contains("anthropic-beta"),
        "betas moved into the body"
    );
    let r = &gw.wait_records(1)[0];
    assert_eq!(
        (r["model"].as_str(), r["upstream_model"].as_str()),
        (Some("claude-opus-4-8"), Some(BEDROCK_MODEL))
    );
    assert_eq!(r["stream_complete"], true);
    assert_eq!(r["output_tokens"], 2);
    assert!(r["cost_usd"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_non_streaming_messages_call_gets_json() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, &keys()));
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["content"][0]["text"], "hello");
    assert_eq!(
        mock_requests(&mock).pop().unwrap()["target"],
        format!("/model/{BEDROCK_MODEL}/invoke")
    );
    assert_eq!(gw.wait_records(1)[0]["metered"], true);
}

#[test]
fn a_bedrock_client_passes_through_untouched_and_is_metered() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, &keys()));
    let body = r#"{"anthropic_version":"2026-10-21","anthropic_beta":["x-beta"],"max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#;
    let raw = format!(
        "POST /model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream HTTP/1.1\r\nHost: gw\r\nAuthorization: AWS4-HMAC-SHA256 Credential=CLIENTKEY/x\r\nX-Amz-Date: 20261122T000000Z\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, &raw);
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let mut d = Decoder::new();
    d.feed(&resp.body);
    let mut frames = 0;
    while let Some(m) = d.next_message().unwrap() {
        assert!(m.chunk_event().is_some());
        frames += 1;
    }
    assert_eq!(frames, 7);
    let got = mock_requests(&mock).pop().unwrap();
    assert_eq!(
        got["body"], body,
        "anthropic_version and anthropic_beta reach Bedrock intact"
    );
    assert!(!got["headers"].to_string().contains("CLIENTKEY"));
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["format"], "bedrock");
    assert!(
        r["input_tokens"].as_u64().unwrap() > 0,
        "usage metered from the event-stream: {r}"
    );
    assert_eq!(r["stream_complete"], true);
}

#[test]
fn a_vertex_client_reaches_bedrock() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, &keys()));
    let body = r#"{"anthropic_version":"vertex-2023-10-16","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"stream":true}"#;
    let raw = format!(
        "POST /v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, &raw);
    assert_eq!(resp.status, 200);
    let text = String::from_utf8(resp.body).unwrap();
    assert!(
        text.contains("event: message_stop\ndata: {\"type\":\"message_stop\""),
        "{text}"
    );
    assert_eq!(
        mock_requests(&mock).pop().unwrap()["body"],
        r#"{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"hi"}],"max_tokens":9}"#
    );
}

#[test]
fn temporary_credentials_from_a_process_sign_with_their_session_token() {
    let mock = bedrock_mock();
    let process = format!(
        "aws_credential_process = \"printf '{{\\\"Version\\\":1,\\\"AccessKeyId\\\":\\\"{AKID}\\\",\\\"SecretAccessKey\\\":\\\"{SECRET}\\\",\\\"SessionToken\\\":\\\"tok-123\\\",\\\"Expiration\\\":\\\"2099-01-01T00:00:00Z\\\"}}'\"\n"
    );
    let gw = gateway("", &config(&mock, &process));
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let sent = mock_requests(&mock).pop().unwrap()["headers"].to_string();
    assert!(sent.contains("[\"x-amz-security-token\",\"tok-123\"]"));
    assert!(
        sent.contains("x-amz-security-token, Signature=") || sent.contains("x-amz-security-token,"),
        "{sent}"
    );
}

#[test]
fn a_bedrock_api_key_is_sent_as_a_bearer_token() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, "api_key = \"bedrock-api-key-1\"\n"));
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(mock_requests(&mock).pop().unwrap()["headers"]
        .to_string()
        .contains("Bearer bedrock-api-key-1"));
}

#[test]
fn a_wrong_secret_is_refused_by_bedrock_and_the_operator_is_told_why() {
    let mock = bedrock_mock();
    let gw = gateway(
        "",
        &config(
            &mock,
            &format!("aws_access_key_id = \"{AKID}\"\naws_secret_access_key = \"wrong\"\n"),
        ),
    );
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 403);
    // The Messages client gets the Anthropic envelope; the log says what Bedrock said.
    assert_eq!(resp.json()["error"]["type"], "permission_error");
    let logged = wait_for(Duration::from_secs(5), || {
        gw.stderr_text().contains("signature").then_some(())
    });
    assert!(logged.is_some(), "{}", gw.stderr_text());
}

#[test]
fn a_broken_bedrock_stream_ends_with_an_sse_error_for_messages_clients() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, &keys()));
    let resp = request(
        gw.addr,
        &messages_request(STREAM_BODY, "x-mock-fail: truncate-after:3\r\n"),
    );
    let text = String::from_utf8(resp.body).unwrap();
    assert!(text.starts_with("event: message_start"));
    assert!(text.contains("event: error"), "{text}");
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["error"], "upstream_truncated");
    assert!(r["input_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn count_tokens_on_bedrock_is_signed_and_answered_in_the_messages_shape() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, &keys()));
    let body = r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    let raw = format!(
        "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, &raw);
    // Bedrock's CountTokens, signed like InvokeModel (it was 501 `not_supported` before).
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(resp.json()["input_tokens"].as_u64().unwrap() > 0);
    let seen = mock_requests(&mock);
    assert_eq!(
        seen[0]["target"],
        format!("/model/{BEDROCK_MODEL}/count-tokens")
    );
}

#[test]
fn a_broken_bedrock_stream_ends_with_an_exception_frame_for_bedrock_clients() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, &keys()));
    let body = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#;
    let raw = format!(
        "POST /model/{BEDROCK_MODEL}/invoke-with-response-stream HTTP/1.1\r\nHost: gw\r\nx-mock-fail: truncate-after:2\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, &raw);
    let mut d = Decoder::new();
    d.feed(&resp.body);
    let mut last = None;
    while let Some(m) = d.next_message().unwrap() {
        last = Some(m);
    }
    assert_eq!(last.unwrap().header(":message-type"), Some("exception"));
}

#[test]
fn a_silent_bedrock_stream_is_kept_alive_with_pings() {
    let mock = bedrock_mock();
    let gw = gateway(
        "",
        &format!(
            "{}\n[timeouts]\nping_interval = \"120ms\"\n",
            config(&mock, &keys())
        ),
    );
    // Bedrock sends no pings; its events here come 0.5 s apart.
    let mut client = Client::connect(gw.addr);
    client.send(
        messages_request(
            STREAM_BODY,
            "x-mock-event-delay-ms: 500\r\nx-mock-reply: a\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(client.read_head().status, 200);
    let mut events: Vec<String> = Vec::new();
    assert!(client.read_chunks(|_, data| {
        let text = String::from_utf8_lossy(data);
        events.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("event: "))
                .map(str::to_string),
        );
    }));
    let synthesized = events.iter().filter(|e| *e == "ping").count() - 1; // one ping is Bedrock's own
    assert!(synthesized >= 4, "pings during the silences: {events:?}");
    // Every event still arrives, in order, with pings only between them.
    let real: Vec<&String> = events.iter().filter(|e| *e != "ping").collect();
    assert_eq!(
        real,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["stream_complete"], true);
}

#[test]
fn bedrock_token_headers_meter_a_body_without_usage() {
    // A Bedrock-style upstream whose JSON carries no usage, only X-Amzn-Bedrock-* counts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("\"messages\"") {
            let n = s.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"id":"m","type":"message","role":"assistant","content":[{"type":"text","text":"hi"}]}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-amzn-bedrock-input-token-count: 41\r\nx-amzn-bedrock-output-token-count: 7\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).unwrap();
    });
    let config = format!(
        "[[upstreams]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nurl = \"http://{addr}\"\nregion = \"us-east-1\"\n{}\n[[routes]]\nmodel = \"*\"\ndeployments = [{{ upstream = \"bedrock\", upstream_model = \"{BEDROCK_MODEL}\" }}]\n",
        keys()
    );
    let gw = gateway("", &config);
    assert_eq!(
        request(gw.addr, &messages_request(SMALL_BODY, "")).status,
        200
    );
    server.join().unwrap();
    let r = &gw.wait_records(1)[0];
    assert_eq!(
        (r["input_tokens"].as_u64(), r["output_tokens"].as_u64()),
        (Some(41), Some(7))
    );
    assert_eq!(r["metered"], true);
}

/// Claude Code's contract: a cloud upstream's refusal reaches a Messages client with its type and
/// a generic message (cloud messages can name the operator's account), except the messages the
/// client's context-overflow recovery matches; a Bedrock client still gets Bedrock's own answer.
#[test]
fn cloud_refusals_keep_their_type_but_not_the_cloud_account() {
    let mock = bedrock_mock();
    let gw = gateway("", &config(&mock, &keys()));
    let leaky = r#"{"message":"User: arn:aws:sts::123456789012:assumed-role/gw is not authorized to perform: bedrock:InvokeModel"}"#;
    let messages = |status: u16, error_body: &str| {
        let headers = format!(
            "x-api-key: sk-client\r\nx-mock-status: {status}\r\nx-mock-error-body: {error_body}\r\n"
        );
        request(gw.addr, &messages_request(SMALL_BODY, &headers))
    };
    let denied = messages(403, leaky);
    assert_eq!(denied.status, 403);
    let body = denied.json();
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(!String::from_utf8_lossy(&denied.body).contains("123456789012"));
    assert_eq!(
        body["error"]["message"],
        "upstream denied the request: check the gateway operator"
    );
    let too_long = messages(400, r#"{"message":"Input is too long."}"#);
    assert_eq!(too_long.status, 400);
    assert_eq!(too_long.json()["error"]["message"], "Input is too long.");
    assert_eq!(too_long.json()["error"]["type"], "invalid_request_error");
    // The operator's log keeps what the cloud said.
    let logged = wait_for(Duration::from_secs(5), || {
        gw.stderr_text().contains("123456789012").then_some(())
    });
    assert!(logged.is_some(), "{}", gw.stderr_text());

    let body = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#;
    let raw = format!(
        "POST /model/{BEDROCK_MODEL}/invoke HTTP/1.1\r\nHost: gw\r\nx-mock-status: 403\r\nx-mock-error-body: {leaky}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let bedrock_client = request(gw.addr, &raw);
    assert_eq!(bedrock_client.status, 403);
    assert!(String::from_utf8_lossy(&bedrock_client.body).contains("not authorized"));
}
