//! Governance nobody can get around, tried as an attacker would, over real sockets against the
//! built binary and counted at the mock upstream: sluice governs exactly the request the upstream
//! executes. A hostile header value crashes no worker (and a panic anyway is contained and
//! counted); paths an upstream could normalize into a Messages call, duplicated or escaped
//! governed JSON members, and the Message Batches API never reach the upstream; a route alias
//! and an unpriced model cannot spend a budget for free; an absolute-form target is forwarded in
//! origin-form; SigV4 is as strict as AWS; a pooled upstream connection never carries one
//! client's leftover bytes to the next; a slow admin client blocks nobody.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use sluice::config::keys::hash_hex;

/// A key that may use Haiku models only.
const HAIKU_KEY: &str = "sk-haiku-only";

fn haiku_key() -> String {
    format!(
        "[[keys]]\nname = \"haiku-only\"\nsha256 = \"{}\"\nmodels = [\"claude-haiku-*\"]\n",
        hash_hex(HAIKU_KEY)
    )
}

fn auth() -> String {
    format!("x-api-key: {HAIKU_KEY}\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
        auth(),
        body.len()
    )
}

const OPUS_BODY: &str =
    r#"{"model":"claude-opus-4-8","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn a_multibyte_x_amz_date_on_every_worker_crashes_none() {
    let mock = mock(&[]);
    let config = format!(
        "{}[[aws_keys]]\nname = \"ci\"\naccess_key_id = \"AKIDSLUICETEST000000\"\nsecret_access_key = \"s\"\n",
        haiku_key()
    );
    let gw = gateway(&mock.url(), &config);
    let body = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    // 16 bytes, an 'é' across the offsets a text slice of the date would cut.
    for date in ["2026112\u{e9}T12000Z", "20261122T120\u{e9}0Z"] {
        for _ in 0..6 {
            let raw = format!(
                "POST /model/claude-haiku-4-5/invoke HTTP/1.1\r\nHost: gw\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDSLUICETEST000000/20261122/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nX-Amz-Date: {date}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let resp = request(gw.addr, &raw);
            assert_error(&resp, 401, "authentication_error");
        }
    }
    for _ in 0..12 {
        let resp = request(gw.addr, &messages_request(SMALL_BODY, &auth()));
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    }
    assert_eq!(mock_requests(&mock).len(), 12);
}

#[test]
fn a_panicking_request_is_contained_counted_and_sigterm_still_ends_the_process() {
    let mock = mock(&[]);
    let mut gw = gateway_env(&mock.url(), "", &[], &[("SLUICE_DEBUG_PANIC", "1")]);
    for _ in 0..6 {
        let mut c = Client::connect(gw.addr);
        c.send(messages_request(SMALL_BODY, "x-sluice-debug-panic: 1\r\n").as_bytes());
        assert!(
            c.read_response().is_none(),
            "the panicking request's connection closes without an answer"
        );
    }
    for _ in 0..10 {
        let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
        assert_eq!(resp.status, 200);
    }
    let metrics = request(gw.addr, "GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains("sluice_worker_panics_total 6"),
        "{}",
        text.lines()
            .filter(|l| l.contains("panics"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(gw
        .stderr_text()
        .contains("a connection's task panicked; its connection is closed"));
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0));
}

#[test]
fn paths_an_upstream_could_read_as_messages_are_never_forwarded() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), &haiku_key());
    let batch = r#"{"requests":[{"custom_id":"a","params":{"model":"claude-opus-4-8","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}}]}"#;
    let cases: [(&str, &str, u16, &str); 12] = [
        ("/v1/messages/", OPUS_BODY, 400, "invalid_request_error"),
        ("/v1//messages", OPUS_BODY, 400, "invalid_request_error"),
        ("//v1/messages", OPUS_BODY, 400, "invalid_request_error"),
        ("/v1/m%65ssages", OPUS_BODY, 400, "invalid_request_error"),
        ("/v1/messages;a=b", OPUS_BODY, 400, "invalid_request_error"),
        ("/v1/./messages", OPUS_BODY, 400, "invalid_request_error"),
        ("/v1/x/../messages", OPUS_BODY, 400, "invalid_request_error"),
        (
            "/v1/%2e%2e/v1/messages",
            OPUS_BODY,
            400,
            "invalid_request_error",
        ),
        (
            "/v1/messages%2Fcount_tokens",
            OPUS_BODY,
            404,
            "not_found_error",
        ),
        ("/v1/complete", OPUS_BODY, 404, "not_found_error"),
        ("/v1/messages/batches", batch, 403, "permission_error"),
        (
            "/v1/messages/batches/b_1/cancel",
            "{}",
            403,
            "permission_error",
        ),
    ];
    for (path, body, status, kind) in cases {
        let resp = request(gw.addr, &post(path, body));
        assert_eq!(resp.status, status, "{path}");
        assert_error(&resp, status, kind);
    }
    // Even with a model the key may use, none of them is forwarded.
    let haiku = SMALL_BODY;
    for path in ["/v1/messages/", "/v1/m%65ssages", "/v1/complete"] {
        let resp = request(gw.addr, &post(path, haiku));
        assert!(resp.status >= 400, "{path}");
    }
    assert_eq!(
        mock_requests(&mock).len(),
        0,
        "nothing reached the upstream"
    );
    // The explicit pass-through (the Files API) still goes through, and the Messages path.
    let files = request(
        gw.addr,
        &format!("GET /v1/files HTTP/1.1\r\nHost: gw\r\n{}\r\n", auth()),
    );
    assert_eq!(files.status, 200);
    let ok = request(gw.addr, &post("/v1/messages?beta=true", haiku));
    assert_eq!(ok.status, 200);
    let opus = request(gw.addr, &post("/v1/messages", OPUS_BODY));
    assert_error(&opus, 403, "permission_error");
    let seen: Vec<String> = mock_requests(&mock)
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ["/v1/files", "/v1/messages?beta=true"]);
}

#[test]
fn a_model_smuggled_inside_the_json_is_refused() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), &haiku_key());
    let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
    let big = format!(
        r#"{{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{{"role":"user","content":"{}"}}],"model":"claude-opus-4-8"}}"#,
        "x".repeat(1_500_000)
    );
    let cases = [
        format!(
            r#"{{"model":"claude-haiku-4-5","max_tokens":16,{msgs},"model":"claude-opus-4-8"}}"#
        ),
        format!(
            r#"{{"model":"claude-haiku-4-5","mod\u0065l":"claude-opus-4-8","max_tokens":16,{msgs}}}"#
        ),
        format!(
            r#"{{"mod\u0065l":"claude-opus-4-8","model":"claude-haiku-4-5","max_tokens":16,{msgs}}}"#
        ),
        format!(r#"{{"model":"claude-haiku-4-5","max_tokens":16,{msgs},"max_tokens":64000}}"#),
        format!(r#"{{"model":"claude-haiku-4-5","\u006dax_tokens":64000,"max_tokens":16,{msgs}}}"#),
        format!(
            r#"{{"model":"claude-haiku-4-5","stream":false,"max_tokens":16,{msgs},"stream":true}}"#
        ),
        big,
    ];
    for body in &cases {
        let resp = request(gw.addr, &post("/v1/messages", body));
        assert_error(&resp, 400, "invalid_request_error");
        let message = resp.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("ambiguous request body"), "{message}");
    }
    assert_eq!(mock_requests(&mock).len(), 0);
}

/// A gateway in front of `mock` with a $0.01 daily budget on the key, a route alias
/// `team-default` → Opus, a route for an in-house model without a price, and `extra` config.
fn budget_gateway(mock: &Proc, extra: &str) -> Gateway {
    let key = hash_hex(HAIKU_KEY);
    let config = format!(
        "[[keys]]\nname = \"budgeted\"\nsha256 = \"{key}\"\n\
         [[budgets]]\nscope = \"key\"\nname = \"budgeted\"\nlimit_usd = 0.01\nperiod = \"daily\"\n\
         [[upstreams]]\nname = \"m\"\nurl = \"{}\"\n\
         [[routes]]\nmodel = \"team-default\"\nupstream = \"m\"\nupstream_model = \"claude-opus-4-8\"\n\
         [[routes]]\nmodel = \"*\"\nupstream = \"m\"\n{extra}",
        mock.url()
    );
    gateway("", &config)
}

fn body_for(model: &str, max_tokens: u32) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

#[test]
fn an_alias_and_an_unpriced_model_cannot_spend_a_budget_for_free() {
    let mock = mock(&[]);
    let gw = budget_gateway(&mock, "");
    // 1,000 output tokens of Opus ($25/MTok) is $0.025: more than the budget, alias or not.
    let alias = request(
        gw.addr,
        &post("/v1/messages", &body_for("team-default", 1000)),
    );
    assert_error(&alias, 429, "billing_error");
    let direct = request(
        gw.addr,
        &post("/v1/messages", &body_for("claude-opus-4-8", 1000)),
    );
    assert_error(&direct, 429, "billing_error");
    // An unpriced model cannot be reserved against a budget at all.
    let unpriced = request(gw.addr, &post("/v1/messages", &body_for("in-house-7b", 16)));
    assert_error(&unpriced, 403, "permission_error");
    assert!(unpriced.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("in-house-7b"));
    assert_eq!(mock_requests(&mock).len(), 0);
    // A small alias request is served and charged at the served model's price.
    let small = request(
        gw.addr,
        &post("/v1/messages", &body_for("team-default", 16)),
    );
    assert_eq!(small.status, 200);
    let records = gw.wait_records(4);
    let served = records.iter().find(|r| r["status"] == 200).unwrap();
    let (input, output) = (
        served["input_tokens"].as_f64().unwrap(),
        served["output_tokens"].as_f64().unwrap(),
    );
    let opus_cost = (input * 5.0 + output * 25.0) / 1e6;
    let cost = served["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - opus_cost).abs() < 1e-12 && cost > 0.0,
        "charged {cost}, Opus price is {opus_cost}: {served}"
    );
    let sent = mock_requests(&mock);
    assert!(sent[0]["body"]
        .as_str()
        .unwrap()
        .contains("\"claude-opus-4-8\""));
}

#[test]
fn a_declared_fallback_price_lets_an_unpriced_model_spend_and_check_config_names_the_rest() {
    let mock = mock(&[]);
    let fallback = "[[pricing]]\nmodel = \"*\"\ninput = 1.0\noutput = 2.0\n";
    let gw = budget_gateway(&mock, fallback);
    let resp = request(gw.addr, &post("/v1/messages", &body_for("in-house-7b", 16)));
    assert_eq!(resp.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        "[[upstreams]]\nname = \"m\"\nurl = \"http://127.0.0.1:9\"\n\
         [[routes]]\nmodel = \"in-house-7b\"\nupstream = \"m\"\n\
         [[routes]]\nmodel = \"fast\"\nupstream = \"m\"\nupstream_model = \"claude-haiku-4-5\"\n\
         [[routes]]\nmodel = \"big\"\nupstream = \"m\"\nupstream_model = \"vendor-x-large\"\n\
         [[routes]]\nmodel = \"*\"\nupstream = \"m\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(gateway_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("routes[0] serves `in-house-7b`, which has no price"),
        "{text}"
    );
    assert!(text.contains("routes[2] serves `vendor-x-large`"), "{text}");
    assert!(!text.contains("routes[1]"), "{text}");
}

#[test]
fn an_absolute_form_target_is_forwarded_in_origin_form() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), &haiku_key());
    let raw = format!(
        "POST http://other.internal/v1/messages?beta=true HTTP/1.1\r\nHost: other.internal\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{SMALL_BODY}",
        auth(),
        SMALL_BODY.len()
    );
    let resp = request(gw.addr, &raw);
    assert_eq!(resp.status, 200);
    let sent = mock_requests(&mock);
    assert_eq!(
        sent[0]["request_line"],
        "POST /v1/messages?beta=true HTTP/1.1"
    );
    let host = header_pairs(&sent[0]["headers"])
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .unwrap()
        .1;
    assert_ne!(host, "other.internal");
}

#[test]
fn a_host_header_with_invalid_characters_is_refused() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), &haiku_key());
    for host in ["a b", "evil/x", "u@h", "caf\u{e9}", "a\"b"] {
        let raw = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: {host}\r\n{}Content-Length: {}\r\n\r\n{SMALL_BODY}",
            auth(),
            SMALL_BODY.len()
        );
        let resp = request(gw.addr, &raw);
        assert_error(&resp, 400, "invalid_request_error");
    }
    assert_eq!(mock_requests(&mock).len(), 0);
}

/// SigV4 headers for a Bedrock call signed by the test as a client would (`declare`: send
/// `x-amz-content-sha256`; `payload`: the hash signed, e.g. `UNSIGNED-PAYLOAD`).
fn signed_bedrock(path: &str, body: &str, service: &str, payload: Option<&str>) -> String {
    use sluice::provider::sigv4;
    let creds = sigv4::AwsCredentials {
        access_key_id: "AKIDSLUICETEST000000".into(),
        secret_access_key: "s3cret".into(),
        session_token: None,
        expires: None,
    };
    let date = sigv4::amz_date(std::time::SystemTime::now());
    let hash = payload
        .map(str::to_string)
        .unwrap_or_else(|| sluice::digest::sha256_hex(body.as_bytes()));
    let mut headers = vec![("host", "gw"), ("x-amz-date", date.as_str())];
    if payload.is_some() {
        headers.push(("x-amz-content-sha256", hash.as_str()));
    }
    let req = sigv4::Request {
        method: "POST",
        path,
        query: "",
        headers: &headers,
        payload_sha256: &hash,
    };
    let authorization = sigv4::authorization(&creds, "us-east-1", service, &date, &req);
    let declared = if payload.is_some() {
        format!("x-amz-content-sha256: {hash}\r\n")
    } else {
        String::new()
    };
    format!("Authorization: {authorization}\r\nX-Amz-Date: {date}\r\n{declared}")
}

fn bedrock_request(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn sigv4_is_as_strict_as_aws() {
    let mock = mock(&[]);
    let config = format!(
        "{}[[aws_keys]]\nname = \"ci\"\naccess_key_id = \"AKIDSLUICETEST000000\"\nsecret_access_key = \"s3cret\"\n",
        haiku_key()
    );
    let gw = gateway(&mock.url(), &config);
    let path = "/model/claude-haiku-4-5/invoke";
    let body = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let other = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":4000,"messages":[{"role":"user","content":"something else entirely"}]}"#;
    // Signed properly, with and without a declared payload hash: served.
    let hash = sluice::digest::sha256_hex(body.as_bytes());
    for headers in [
        signed_bedrock(path, body, "bedrock", None),
        signed_bedrock(path, body, "bedrock", Some(&hash)),
    ] {
        let resp = request(gw.addr, &bedrock_request(path, &headers, body));
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    }
    assert_eq!(mock_requests(&mock).len(), 2);
    // UNSIGNED-PAYLOAD lets no other body through; nor does a declared hash of another body;
    // a signature for another service is refused.
    let refused = [
        (
            "unsigned payload",
            signed_bedrock(path, other, "bedrock", Some("UNSIGNED-PAYLOAD")),
        ),
        (
            "another body's hash",
            signed_bedrock(path, body, "bedrock", Some(&hash)),
        ),
        ("another service", signed_bedrock(path, body, "s3", None)),
    ];
    for (why, headers) in refused {
        let resp = request(gw.addr, &bedrock_request(path, &headers, other));
        assert_eq!(resp.status, 401, "{why}");
        assert_error(&resp, 401, "authentication_error");
    }
    let with_s3 = signed_bedrock(path, body, "s3", None);
    let resp = request(gw.addr, &bedrock_request(path, &with_s3, body));
    assert_error(&resp, 401, "authentication_error");
    assert_eq!(
        mock_requests(&mock).len(),
        2,
        "no refused request was forwarded"
    );
    // A failed verification is recorded as nobody's, not the key's.
    let records = gw.wait_records(6);
    for r in records.iter().filter(|r| r["status"] == 401) {
        assert_eq!(r["identity"], "anonymous", "{r}");
    }
    // A request that only names the key id, without a declared hash, may not make sluice read
    // a large body before its signature is known good.
    let mut c = Client::connect(gw.addr);
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDSLUICETEST000000/20261122/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00\r\nX-Amz-Date: 20261122T000000Z\r\nContent-Length: 30000000\r\n\r\n"
        )
        .as_bytes(),
    );
    let resp = c.read_response().expect("an answer before any body byte");
    assert_error(&resp, 401, "authentication_error");
}

/// Sends one request with `fail` on a connection of its own, then a plain one on another: the
/// plain one must get its own answer, never the leftover bytes.
fn leftover_case(gw: &Gateway, upstream_port: u16, fail: &str) -> (Response, Response) {
    let mut c = Client::connect(gw.addr);
    c.send(messages_request(SMALL_BODY, &format!("x-mock-fail: {fail}\r\n")).as_bytes());
    let first = c
        .read_response()
        .expect("an answer for the misframed request");
    let late = fail == "late-extra-bytes";
    if late {
        // The late bytes have reached sluice's idle pooled connection (unread in its socket).
        let arrived = wait_for(Duration::from_secs(5), || {
            sockets_towards(upstream_port)
                .iter()
                .any(|s| s.rx_queue > 0)
                .then_some(())
        });
        assert!(arrived.is_some(), "the late bytes never reached sluice");
    }
    let mut c2 = Client::connect(gw.addr);
    c2.send(messages_request(SMALL_BODY, "").as_bytes());
    let second = c2.read_response().expect("an answer for the next client");
    (first, second)
}

#[test]
fn a_pooled_connection_never_carries_leftover_bytes_to_the_next_client() {
    let mock = mock(&[]);
    let gw = gateway_with(&mock.url(), "", &["--workers", "1"]);
    for fail in [
        "extra-response",
        "late-extra-bytes",
        "body-after-204",
        "cl-and-te",
        "bare-lf",
        "unsolicited-101",
        "interim-103",
    ] {
        let (first, second) = leftover_case(&gw, mock.addr.port(), fail);
        assert!(
            !String::from_utf8_lossy(&first.body).contains("LEAKED"),
            "{fail}: first"
        );
        match fail {
            "bare-lf" | "unsolicited-101" => assert_error(&first, 502, "api_error"),
            "body-after-204" => assert_eq!(first.status, 204, "{fail}"),
            _ => assert_eq!(first.status, 200, "{fail}"),
        }
        assert_eq!(second.status, 200, "{fail}");
        let body = String::from_utf8_lossy(&second.body).into_owned();
        assert!(
            !body.contains("LEAKED") && body.contains("\"type\":\"message\""),
            "{fail}: the next client got {body}"
        );
    }
    let metrics = request(gw.addr, "GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let discarded: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("sluice_upstream_connections_discarded_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(discarded >= 5, "discarded {discarded}");
}

#[test]
fn a_slow_admin_client_blocks_nobody_and_is_cut_off() {
    let mock = mock(&[]);
    let admin_hash = hash_hex("sk-admin");
    let config = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{admin_hash}\"\n",
        haiku_key()
    );
    let gw = gateway(&mock.url(), &config);
    let admin = gw.admin_addr.unwrap();
    // Two clients that send a few bytes and then nothing.
    let mut slow: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(admin).unwrap();
            s.write_all(b"GET /admin/keys HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let resp = request(
        admin,
        "GET /admin/keys HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sk-admin\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an authorized request waited {:?} behind slow clients",
        started.elapsed()
    );
    // The slow clients are cut off by the request deadline.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    // Unauthenticated requests put nothing they chose into the audit log.
    let resp = request(
        admin,
        "DELETE /admin/keys/attacker-chosen-name HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer wrong\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 401);
    let audit = std::fs::read_to_string(gw.dir().join("audit.jsonl")).unwrap_or_default();
    assert!(!audit.contains("attacker-chosen-name"), "{audit}");
}

#[test]
fn governed_message_batches_check_and_reserve_every_request() {
    let mock = mock(&[]);
    let config = format!(
        "[server]\nmessage_batches = \"governed\"\n{}[[budgets]]\nscope = \"key\"\nname = \"haiku-only\"\nlimit_usd = 0.01\nperiod = \"daily\"\n",
        haiku_key()
    );
    let gw = gateway(&mock.url(), &config);
    let item = |id: &str, params: &str| format!(r#"{{"custom_id":"{id}","params":{params}}}"#);
    let batch = |items: &[String]| format!(r#"{{"requests":[{}]}}"#, items.join(","));
    let haiku = r#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let opus = OPUS_BODY;
    let smuggled =
        r#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[],"model":"claude-opus-4-8"}"#;
    // $5/MTok output: 1,000 requests of 16 tokens fit, one of 4,000 tokens does not ($0.02).
    let dear = r#"{"model":"claude-haiku-4-5","max_tokens":4000,"messages":[{"role":"user","content":"hi"}]}"#;
    let refused = [
        (
            batch(&[item("a", haiku), item("b", opus)]),
            403,
            "permission_error",
        ),
        (batch(&[item("a", smuggled)]), 400, "invalid_request_error"),
        (
            format!(
                r#"{{"requests":[{}],"requests":[{}]}}"#,
                item("a", haiku),
                item("b", opus)
            ),
            400,
            "invalid_request_error",
        ),
        (
            batch(&[item("a", haiku), item("b", dear)]),
            429,
            "billing_error",
        ),
    ];
    for (body, status, kind) in &refused {
        let resp = request(gw.addr, &post("/v1/messages/batches", body));
        assert_error(&resp, *status, kind);
    }
    assert_eq!(mock_requests(&mock).len(), 0);
    let ok = request(
        gw.addr,
        &post(
            "/v1/messages/batches",
            &batch(&[item("a", haiku), item("b", haiku)]),
        ),
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let read = request(
        gw.addr,
        &format!(
            "GET /v1/messages/batches/msgbatch_01/results HTTP/1.1\r\nHost: gw\r\n{}\r\n",
            auth()
        ),
    );
    assert_eq!(read.status, 200);
    let seen: Vec<String> = mock_requests(&mock)
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        seen,
        [
            "/v1/messages/batches",
            "/v1/messages/batches/msgbatch_01/results"
        ]
    );
}

#[test]
fn a_cloud_model_id_cannot_smuggle_another_model_past_the_allow_list() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), &haiku_key());
    let body = r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    // Each names an allowed Haiku id as sent, with Opus after an encoded `/`: once mapped to
    // the Anthropic id for a first-party upstream, Opus would be what ran.
    for path in [
        "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5%2F..%2Fclaude-opus-4-8:rawPredict",
        "/model/claude-haiku-4-5%2Fclaude-opus-4-8/invoke",
        "/model/us.anthropic.claude-haiku-4-5-v1%3A0%2Fclaude-opus-4-8/invoke",
    ] {
        let resp = request(gw.addr, &post(path, body));
        assert!(resp.status >= 400, "{path}: {}", resp.status);
        assert!(resp.json()["error"]["type"].is_string());
    }
    assert_eq!(
        mock_requests(&mock).len(),
        0,
        "nothing reached the upstream"
    );
    // A plain Haiku id in either cloud format is still served.
    let ok = request(
        gw.addr,
        &post(
            "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke",
            body,
        ),
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
}
