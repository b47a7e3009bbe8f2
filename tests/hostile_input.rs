//! Hostile input over raw sockets: request smuggling attempts (CL.TE, TE.CL, obfuscated
//! Transfer-Encoding, bad lengths and chunk sizes, obs-fold, bare CR/LF, control bytes, odd
//! targets and versions, upgrades, pipelining after a refusal). Every case gets its status and
//! an Anthropic error body, the connection is closed wherever the framing was in doubt, and —
//! counted by the mock upstream — **no request is smuggled**: a refused request reaches the
//! upstream not at all, and the request hidden behind it never.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;

/// A complete, valid request that must never reach the upstream when it rides behind an
/// attack: the mock's log would show its `x-smuggled` header.
fn smuggled() -> String {
    messages_request(SMALL_BODY, "x-smuggled: yes\r\n")
}

fn post(headers: &str, body: &str) -> String {
    format!("POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{headers}\r\n{body}")
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// (what, raw bytes, expected status) — each is refused and closes the connection.
fn refused_cases() -> Vec<(&'static str, String, u16)> {
    let body = SMALL_BODY;
    let n = body.len();
    let chunked_body = format!("{}0\r\n\r\n", chunk(body));
    vec![
        ("CL.TE", post(&format!("Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n"), &chunked_body), 400),
        ("TE.CL", post(&format!("Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n"), &chunked_body), 400),
        ("TE obfuscated: xchunked", post("Transfer-Encoding: xchunked\r\n", &chunked_body), 501),
        ("TE obfuscated: chunked, identity", post("Transfer-Encoding: chunked, identity\r\n", &chunked_body), 501),
        ("TE obfuscated: identity, chunked", post("Transfer-Encoding: identity, chunked\r\n", &chunked_body), 501),
        ("TE twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", &chunked_body), 501),
        ("TE with an empty element", post("Transfer-Encoding: chunked,\r\n", &chunked_body), 400),
        ("TE with a space before the colon", post("Transfer-Encoding : chunked\r\n", &chunked_body), 400),
        ("TE with a vertical tab", post("Transfer-Encoding:\x0bchunked\r\n", &chunked_body), 400),
        ("TE in HTTP/1.0", format!("POST /v1/messages HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_body}"), 400),
        ("duplicate Content-Length, equal", post(&format!("Content-Length: {n}\r\nContent-Length: {n}\r\n"), body), 400),
        ("duplicate Content-Length, different", post(&format!("Content-Length: {n}\r\nContent-Length: 3\r\n"), body), 400),
        ("comma-listed Content-Length", post(&format!("Content-Length: {n}, {n}\r\n"), body), 400),
        ("negative Content-Length", post("Content-Length: -1\r\n", body), 400),
        ("signed Content-Length", post(&format!("Content-Length: +{n}\r\n"), body), 400),
        ("hex Content-Length", post("Content-Length: 0x10\r\n", body), 400),
        ("overflowing Content-Length", post("Content-Length: 99999999999999999999999\r\n", body), 400),
        ("overflowing chunk size", post("Transfer-Encoding: chunked\r\n", "fffffffffffffffffffff\r\nxx\r\n0\r\n\r\n"), 400),
        ("negative chunk size", post("Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size with a space inside", post("Transfer-Encoding: chunked\r\n", "5 5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk data longer than its size", post("Transfer-Encoding: chunked\r\n", &format!("2\r\n{body}\r\n0\r\n\r\n")), 400),
        ("obs-fold", post(&format!("Content-Length: {n}\r\nX-Folded: a\r\n b\r\n"), body), 400),
        ("bare LF line ends", format!("POST /v1/messages HTTP/1.1\nHost: gw\nContent-Length: {n}\n\n{body}"), 400),
        ("bare CR in a value", post(&format!("Content-Length: {n}\r\nX-Cr: a\rb\r\n"), body), 400),
        ("NUL in a value", post(&format!("Content-Length: {n}\r\nX-Nul: a\0b\r\n"), body), 400),
        ("control byte in a name", post(&format!("Content-Length: {n}\r\nX-\x01Ctl: a\r\n"), body), 400),
        ("space before a colon", post(&format!("Content-Length : {n}\r\n"), body), 400),
        ("no Host", format!("POST /v1/messages HTTP/1.1\r\nContent-Length: {n}\r\n\r\n{body}"), 400),
        ("two Hosts", post(&format!("Host: other\r\nContent-Length: {n}\r\n"), body), 400),
        ("authority-form GET", "GET api.anthropic.com:443 HTTP/1.1\r\nHost: gw\r\n\r\n".into(), 400),
        ("CONNECT", "CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n".into(), 501),
        ("TRACE", "TRACE / HTTP/1.1\r\nHost: gw\r\n\r\n".into(), 501),
        ("HTTP/0.9", "GET /v1/models\r\n\r\n".into(), 400),
        ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), 400),
        ("unknown version", "GET /v1/models HTTP/1.7\r\nHost: gw\r\n\r\n".into(), 400),
        ("request line with two spaces", "GET  /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n".into(), 400),
        ("too many header fields", format!("GET /v1/models HTTP/1.1\r\nHost: gw\r\n{}\r\n", "X-A: b\r\n".repeat(200)), 431),
        ("head past the limit", format!("GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000)), 431),
        ("unsupported expectation", post(&format!("Expect: 200-ok\r\nContent-Length: {n}\r\n"), body), 417),
    ]
}

#[test]
fn smuggling_attempts_are_refused_closed_and_never_reach_the_upstream() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let mut failures = Vec::new();
    for (what, attack, status) in refused_cases() {
        let before = mock_requests(&mock).len();
        let mut client = Client::connect(gw.addr);
        client.send(format!("{attack}{}", smuggled()).as_bytes());
        let Some(resp) = client.read_response() else {
            failures.push(format!("{what}: no response"));
            continue;
        };
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        if resp.status != status || body["type"] != "error" {
            failures.push(format!(
                "{what}: {} {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
        if resp.header("connection") != Some("close") || !client.closed() {
            failures.push(format!("{what}: connection left open"));
        }
        let after = mock_requests(&mock);
        if after.len() != before {
            failures.push(format!(
                "{what}: {} request(s) reached the upstream",
                after.len() - before
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        !serde_json::to_string(&mock_requests(&mock))
            .unwrap()
            .contains("x-smuggled"),
        "a smuggled request reached the upstream"
    );
}

/// Valid but unusual framing is accepted, and the upstream gets exactly one clean request.
#[test]
fn unusual_but_valid_framing_is_forwarded_once_and_cleanly() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let n = SMALL_BODY.len();
    let (a, b) = SMALL_BODY.split_at(30);
    let cases = [
        ("chunk extensions", post("Transfer-Encoding: chunked\r\n", &format!("{:x};name=value;x\r\n{a}\r\n{:x} ; q=\"quoted\"\r\n{b}\r\n0;last\r\n\r\n", a.len(), b.len()))),
        ("trailers", post("Transfer-Encoding: chunked\r\n", &format!("{}0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n", chunk(SMALL_BODY)))),
        ("TE in upper case", post("Transfer-Encoding: CHUNKED\r\n", &format!("{}0\r\n\r\n", chunk(SMALL_BODY)))),
        ("absolute-form target", format!("POST http://evil.example/v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: {n}\r\n\r\n{SMALL_BODY}")),
        ("HTTP/1.0 with Content-Length", format!("POST /v1/messages HTTP/1.0\r\nHost: gw\r\nContent-Length: {n}\r\n\r\n{SMALL_BODY}")),
        ("a websocket upgrade", post(&format!("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nContent-Length: {n}\r\n"), SMALL_BODY)),
        ("an h2c upgrade", post(&format!("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: {n}\r\n"), SMALL_BODY)),
    ];
    for (what, raw) in cases {
        let before = mock_requests(&mock).len();
        let mut client = Client::connect(gw.addr);
        client.send(raw.as_bytes());
        let resp = client
            .read_response()
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(
            resp.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_ne!(resp.header("upgrade"), Some("websocket"), "{what}");
        let after = mock_requests(&mock);
        assert_eq!(after.len(), before + 1, "{what}");
        let seen = &after[after.len() - 1];
        let text = seen.to_string().to_ascii_lowercase();
        assert!(
            !text.contains("\"upgrade\"") && !text.contains("http2-settings"),
            "{what}: hop-by-hop fields forwarded: {text}"
        );
        assert!(
            !text.contains("x-trailer"),
            "{what}: trailers forwarded as headers"
        );
    }
}

#[test]
fn a_request_pipelined_behind_a_refused_one_is_never_served() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let mut client = Client::connect(gw.addr);
    // A valid request, then a refused one, then one more: the first is answered, the refusal
    // closes the connection, and the third is never read.
    let refused = "GET /v1/models HTTP/1.1\r\nHost: gw\r\nX: a\r\n b\r\n\r\n";
    client.send(
        format!(
            "{}{refused}{}",
            messages_request(SMALL_BODY, ""),
            smuggled()
        )
        .as_bytes(),
    );
    assert_eq!(client.read_response().unwrap().status, 200);
    assert_eq!(client.read_response().unwrap().status, 400);
    assert!(client.closed());
    let requests = mock_requests(&mock);
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].to_string().contains("x-smuggled"));
}
