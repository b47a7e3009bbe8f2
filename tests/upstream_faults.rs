//! The provider's worst days, answered cleanly: an upstream that resets mid-head, sends a head
//! past the limit, garbage, a truncated chunked body, stalls before or during a stream, or is
//! slow to accept. The client always gets a well-formed answer in its own format (or a clean
//! stream end), usage already streamed is recorded, the connection pool is not poisoned, and
//! with a second deployment every failure before the first byte falls back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;

#[test]
fn faults_before_the_first_byte_are_gateway_errors_and_the_pool_survives() {
    let mock = mock(&[]);
    let gw = gateway_with(
        &mock.url(),
        "[timeouts]\nupstream_first_byte = \"500ms\"\n",
        &["--workers", "1"],
    );
    // One keep-alive client connection across all the faults: each is answered in order, and
    // the connection (and the pool behind it) keeps working.
    let mut client = Client::connect(gw.addr);
    for (fault, status, kind) in [
        ("partial-head", 502, "api_error"),
        ("huge-head", 502, "api_error"),
        ("garbage", 502, "api_error"),
        ("reset-before-head", 502, "api_error"),
        ("stall", 504, "timeout_error"),
    ] {
        client.send(messages_request(SMALL_BODY, &format!("x-mock-fail: {fault}\r\n")).as_bytes());
        assert_error(&client.read_response().unwrap(), status, kind);
        client.send(messages_request(SMALL_BODY, "").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200, "after {fault}");
    }
    // A stale pooled connection (closed by the upstream after answering) is not handed out
    // twice: every one of these succeeds.
    for _ in 0..5 {
        client
            .send(messages_request(SMALL_BODY, "x-mock-fail: close-after-response\r\n").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200);
    }
}

#[test]
fn a_truncated_chunked_body_ends_the_response_and_is_recorded() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let mut client = Client::connect(gw.addr);
    client.send(messages_request(SMALL_BODY, "x-mock-fail: truncate-chunked\r\n").as_bytes());
    // The head went out before the upstream failed: the client sees the body end short and the
    // connection close, never a body that looks complete.
    let head = client.read_head();
    assert_eq!(head.status, 200);
    assert!(client.closed() || client.read_response().is_none());
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["error"], "upstream_truncated", "{r}");
    // And the gateway serves on.
    assert_eq!(
        request(gw.addr, &messages_request(SMALL_BODY, "")).status,
        200
    );
}

#[test]
fn a_stream_that_stalls_ends_with_an_error_event_and_keeps_its_usage() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "[timeouts]\nstream_idle = \"500ms\"\n");
    let mut client = Client::connect(gw.addr);
    client.send(messages_request(STREAM_BODY, "x-mock-fail: stall-after:3\r\n").as_bytes());
    assert_eq!(client.read_head().status, 200);
    let mut text = String::new();
    let complete = client.read_chunks(|_, c| text.push_str(&String::from_utf8_lossy(c)));
    assert!(complete, "the stream ends cleanly");
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: error"), "{text}");
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["error"], "upstream_stream_idle", "{r}");
    assert!(r["input_tokens"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn an_upstream_slow_to_accept_times_out_cleanly() {
    // A socket that listens but never accepts: the kernel completes the handshake, nothing
    // ever answers.
    let deaf = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", deaf.local_addr().unwrap());
    let gw = gateway(&url, "[timeouts]\nupstream_first_byte = \"500ms\"\n");
    assert_error(
        &request(gw.addr, &messages_request(SMALL_BODY, "")),
        504,
        "timeout_error",
    );
    drop(deaf);
}

#[test]
fn every_failure_before_the_first_byte_falls_back_to_the_next_deployment() {
    let healthy = mock(&["--no-request-log"]);
    for fault in [
        "--always-fail=partial-head",
        "--always-fail=huge-head",
        "--always-fail=garbage",
        "--always-fail=reset-before-head",
        "--always-status=529",
        "--always-status=500",
        "--always-status=429",
    ] {
        let faulty = mock(&["--no-request-log", fault]);
        let config = format!(
            "[[upstreams]]\nname = \"a\"\nurl = \"{}\"\n[[upstreams]]\nname = \"b\"\nurl = \"{}\"\n[[routes]]\nmodel = \"*\"\nbalance = \"ordered\"\ndeployments = [{{ upstream = \"a\" }}, {{ upstream = \"b\" }}]\n",
            faulty.url(),
            healthy.url()
        );
        let gw = gateway_with("", &config, &["--workers", "1"]);
        let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
        assert_eq!(
            resp.status,
            200,
            "{fault}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let r = &gw.wait_records(1)[0];
        assert_eq!(r["upstream"], "b", "{fault}");
        assert!(
            r["fallbacks"][0].as_str().unwrap().starts_with("a: "),
            "{fault}: {r}"
        );
        // A streamed request too (the stream has not started when the fault happens).
        let resp = request(gw.addr, &messages_request(STREAM_BODY, ""));
        assert_eq!(resp.status, 200, "{fault} (stream)");
    }
}
