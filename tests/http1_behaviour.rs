//! HTTP/1.1 towards clients and upstreams: keep-alive, pipelining, chunked request bodies,
//! `Expect: 100-continue`, HEAD, the warm-up requests, and every error path as a status plus an
//! Anthropic-format JSON body.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;

/// The shared check, plus a message and a request id.
fn assert_anthropic_error(resp: &Response, status: u16, kind: &str) {
    assert_error(resp, status, kind);
    let v = resp.json();
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(v["request_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("req_")));
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let mut client = Client::connect(gw.addr);
    let mut batch = String::new();
    batch.push_str("GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
    batch.push_str(&messages_request(SMALL_BODY, "x-mock-reply: first\r\n"));
    batch.push_str("GET /v1/models?limit=1 HTTP/1.1\r\nHost: gw\r\n\r\n");
    batch.push_str(&messages_request(SMALL_BODY, "x-mock-reply: second\r\n"));
    client.send(batch.as_bytes());
    let health = client.read_response().unwrap();
    assert_eq!(health.json()["status"], "ok");
    let first = client.read_response().unwrap();
    assert_eq!(first.json()["content"][0]["text"], "first");
    let models = client.read_response().unwrap();
    assert_eq!(models.json()["data"].as_array().unwrap().len(), 1);
    let second = client.read_response().unwrap();
    assert_eq!(second.json()["content"][0]["text"], "second");
    // Still open for more.
    client.send(messages_request(SMALL_BODY, "").as_bytes());
    assert_eq!(client.read_response().unwrap().status, 200);
    let records = gw.wait_records(5);
    assert!(records
        .iter()
        .filter(|r| r["operation"] == "messages")
        .all(|r| r["pooled_connection"] == true || r["attempts"] == 1));
}

#[test]
fn a_chunked_request_body_reaches_the_upstream_whole() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let body = SMALL_BODY.as_bytes();
    let (a, b) = body.split_at(20);
    let raw = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{}\r\n{:x}\r\n{}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        std::str::from_utf8(a).unwrap(),
        b.len(),
        std::str::from_utf8(b).unwrap()
    );
    let resp = request(gw.addr, &raw);
    assert_eq!(resp.status, 200);
    let got = mock_requests(&mock).pop().unwrap();
    assert_eq!(got["body"], SMALL_BODY);
    let headers = got["headers"].to_string().to_ascii_lowercase();
    assert!(
        headers.contains(&format!("[\"content-length\",\"{}\"]", body.len())),
        "{headers}"
    );
    assert!(!headers.contains("transfer-encoding"));
}

#[test]
fn expect_100_continue_is_honoured() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let mut client = Client::connect(gw.addr);
    client.send(
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            SMALL_BODY.len()
        )
        .as_bytes(),
    );
    let interim = client.read_head();
    assert_eq!(interim.status, 100);
    client.send(SMALL_BODY.as_bytes());
    assert_eq!(client.read_response().unwrap().status, 200);
    let got = mock_requests(&mock).pop().unwrap();
    assert!(!got["headers"]
        .to_string()
        .to_ascii_lowercase()
        .contains("expect"));
}

#[test]
fn warm_up_and_health_are_answered_locally() {
    let gw = gateway("http://127.0.0.1:9", "");
    for target in ["/", "/api/hello"] {
        let resp = request(
            gw.addr,
            &format!("HEAD {target} HTTP/1.1\r\nHost: gw\r\nUser-Agent: Bun/1.4.0\r\n\r\n"),
        );
        assert_eq!(resp.status, 200);
        assert!(resp.body.is_empty());
    }
    let resp = request(gw.addr, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(resp.json()["status"], "ok");
    let resp = request(
        gw.addr,
        "GET /v1/models?limit=1000 HTTP/1.1\r\nHost: gw\r\nUser-Agent: claude-code/2.1.330\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let ids: Vec<String> = resp.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("claude")) && !ids.is_empty());
    let one = request(
        gw.addr,
        &format!("GET /v1/models/{} HTTP/1.1\r\nHost: gw\r\n\r\n", ids[0]),
    );
    assert_eq!(one.json()["id"], ids[0].as_str());
    assert_anthropic_error(
        &request(gw.addr, "GET /v1/models/nope HTTP/1.1\r\nHost: gw\r\n\r\n"),
        404,
        "not_found_error",
    );
}

#[test]
fn malformed_requests_get_anthropic_errors_and_a_closed_connection() {
    let gw = gateway("http://127.0.0.1:9", "[server]\nmax_body_bytes = 1024\n");
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: Vec<(String, u16, &str)> = vec![
        ("POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, "invalid_request_error"),
        ("POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".into(), 400, "invalid_request_error"),
        ("POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: +5\r\n\r\n".into(), 400, "invalid_request_error"),
        ("POST /v1/messages HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 501, "invalid_request_error"),
        ("GET / HTTP/1.1\r\nHost: gw\r\nX: a\r\n b\r\n\r\n".into(), 400, "invalid_request_error"),
        ("GET / HTTP/1.1\nHost: gw\n\n".into(), 400, "invalid_request_error"),
        ("CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n".into(), 501, "invalid_request_error"),
        (big_header, 431, "invalid_request_error"),
        (messages_request(&"x".repeat(2000), ""), 413, "request_too_large"),
    ];
    for (raw, status, kind) in cases {
        let mut client = Client::connect(gw.addr);
        client.send(raw.as_bytes());
        let resp = client
            .read_response()
            .unwrap_or_else(|| panic!("no response to {:?}", &raw[..40.min(raw.len())]));
        assert_anthropic_error(&resp, status, kind);
        assert_eq!(resp.header("connection"), Some("close"), "{raw:.40}");
        assert!(client.closed(), "connection left open after {raw:.40}");
    }
}

#[test]
fn bad_bodies_and_routes_get_clear_errors() {
    let gw = gateway("http://127.0.0.1:9", "");
    let cases = [
        (
            messages_request(r#"{"max_tokens":5,"messages":[]}"#, ""),
            400,
            "invalid_request_error",
        ),
        (
            messages_request("not json at all", ""),
            400,
            "invalid_request_error",
        ),
        (
            messages_request(r#"{"max_tokens":5,"mod"#, ""),
            400,
            "invalid_request_error",
        ),
        (
            "GET /admin HTTP/1.1\r\nHost: gw\r\n\r\n".to_string(),
            404,
            "not_found_error",
        ),
    ];
    for (raw, status, kind) in cases {
        let mut client = Client::connect(gw.addr);
        client.send(raw.as_bytes());
        assert_anthropic_error(&client.read_response().unwrap(), status, kind);
        // The body was read whole, so the connection stays usable.
        client.send(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!(client.read_response().unwrap().status, 200);
    }
}

#[test]
fn a_slow_head_times_out_with_408() {
    let gw = gateway("http://127.0.0.1:9", "[timeouts]\nhead_read = \"300ms\"\n");
    let mut client = Client::connect(gw.addr);
    client.send(b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\n");
    let resp = client.read_response().expect("a 408");
    assert_anthropic_error(&resp, 408, "timeout_error");
}

#[test]
fn upstream_failures_map_to_gateway_errors() {
    // Nothing listens on port 9: connection refused.
    let gw = gateway("http://127.0.0.1:9", "");
    assert_anthropic_error(
        &request(gw.addr, &messages_request(SMALL_BODY, "")),
        502,
        "api_error",
    );
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "[timeouts]\nupstream_first_byte = \"300ms\"\n");
    assert_anthropic_error(
        &request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-mock-delay-ms: 5000\r\n"),
        ),
        504,
        "timeout_error",
    );
    assert_anthropic_error(
        &request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-mock-fail: garbage\r\n"),
        ),
        502,
        "api_error",
    );
    assert_anthropic_error(
        &request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-mock-fail: reset-before-head\r\n"),
        ),
        502,
        "api_error",
    );
}

#[test]
fn upstream_errors_pass_through_unmodified() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    for status in [429u16, 500, 529] {
        let resp = request(
            gw.addr,
            &messages_request(SMALL_BODY, &format!("x-mock-status: {status}\r\n")),
        );
        assert_eq!(resp.status, status);
        let direct = request(
            mock.addr,
            &messages_request(SMALL_BODY, &format!("x-mock-status: {status}\r\n")),
        );
        assert_eq!(resp.body, direct.body);
        assert_eq!(resp.header("retry-after"), direct.header("retry-after"));
    }
    let records = gw.wait_records(3);
    let overloaded = records.iter().find(|r| r["status"] == 529).unwrap();
    assert_eq!(overloaded["upstream_error"], "overloaded_error");
}

/// Whether a loopback TCP connection to `port` is in CLOSE_WAIT (its peer closed it).
fn close_wait_towards(port: u16) -> bool {
    sockets_towards(port)
        .iter()
        .any(|s| s.state == TCP_CLOSE_WAIT)
}

/// The upstream closed the pooled connection while it idled: sluice sees that before reusing it
/// (a peek at checkout) and opens a new one, so the request is not even retried. (A close that
/// races the request itself is retried once on a new connection.)
#[test]
fn a_pooled_connection_the_upstream_closed_is_not_reused() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "[server]\nworkers = 1\n");
    let mut client = Client::connect(gw.addr);
    // The upstream answers, then silently closes the connection sluice pooled.
    client.send(messages_request(SMALL_BODY, "x-mock-fail: close-after-response\r\n").as_bytes());
    assert_eq!(client.read_response().unwrap().status, 200);
    // Only once the upstream's FIN has reached sluice's socket (CLOSE_WAIT) is there anything
    // for the peek to see; before that, the close races the next request (which is retried).
    let closed = wait_for(std::time::Duration::from_secs(5), || {
        close_wait_towards(mock.addr.port()).then_some(())
    });
    assert!(
        closed.is_some(),
        "the upstream's close never reached sluice"
    );
    client.send(messages_request(SMALL_BODY, "").as_bytes());
    assert_eq!(client.read_response().unwrap().status, 200);
    let records = gw.wait_records(2);
    assert_eq!(records[1]["attempts"], 1, "{}", records[1]);
    assert_eq!(records[1]["pooled_connection"], false, "{}", records[1]);
}

#[test]
fn http10_clients_get_a_dechunked_stream_and_a_close() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let raw = format!(
        "POST /v1/messages HTTP/1.0\r\nContent-Length: {}\r\n\r\n{STREAM_BODY}",
        STREAM_BODY.len()
    );
    let resp = request(gw.addr, &raw);
    assert_eq!(resp.status, 200);
    assert!(resp.header("transfer-encoding").is_none());
    let text = String::from_utf8(resp.body).unwrap();
    assert!(
        text.starts_with("event: message_start")
            && text.ends_with("data: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
}

#[test]
fn bodiless_upstream_responses_keep_the_connection_usable() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let mut client = Client::connect(gw.addr);
    for (raw, status) in [
        (messages_request(SMALL_BODY, "x-mock-status: 204\r\n"), 204),
        (messages_request(SMALL_BODY, "x-mock-status: 304\r\n"), 304),
        (
            "HEAD /v1/files HTTP/1.1\r\nHost: gw\r\n\r\n".to_string(),
            200,
        ),
    ] {
        client.send(raw.as_bytes());
        let method = if raw.starts_with("HEAD") {
            "HEAD"
        } else {
            "POST"
        };
        let resp = client.read_response_for(method).unwrap();
        assert_eq!(resp.status, status);
        assert!(resp.body.is_empty());
        // The same connection (and sluice's pooled upstream one) carries the next request.
        client.send(messages_request(SMALL_BODY, "").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200);
    }
}

#[test]
fn a_close_delimited_upstream_body_is_relayed_whole_then_closed() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let mut client = Client::connect(gw.addr);
    client.send(
        messages_request(
            SMALL_BODY,
            "x-mock-fail: close-delimited\r\nx-mock-reply: all of it\r\n",
        )
        .as_bytes(),
    );
    let resp = client.read_response().unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(resp.json()["content"][0]["text"], "all of it");
    let records = gw.wait_records(1);
    assert_eq!(records[0]["metered"], true);
}
