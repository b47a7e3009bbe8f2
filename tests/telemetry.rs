//! Claude Code's telemetry through sluice: OTLP/HTTP exports on `/v1/metrics`, `/v1/logs` and
//! `/v1/traces` are answered 200 whatever becomes of them, relayed unchanged to the collectors
//! configured for their signal (with the collector's header fields, never the client's
//! credential), and dropped when no collector takes them.

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
use serde_json::Value;

fn keys() -> String {
    format!(
        "[[keys]]\nname = \"k\"\nsha256 = \"{}\"\n",
        sluice::config::keys::hash_hex("sk-dev")
    )
}

fn export(gw: &Gateway, path: &str, headers: &str, body: &[u8]) -> Response {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let mut client = Client::connect(gw.addr);
    client.send(&raw);
    client.read_response().expect("an answer")
}

fn received(mock: &Proc, path: &str) -> Vec<Value> {
    mock_requests(mock)
        .into_iter()
        .filter(|r| r["target"] == path)
        .collect()
}

#[test]
fn exports_are_answered_relayed_to_their_collectors_and_never_carry_the_client_key() {
    let collector = mock(&[]);
    let config = format!(
        "{}[[telemetry.forward_to]]\nurl = \"{}/\"\nsignals = [\"metrics\", \"logs\"]\nheaders = {{ x-collector-token = \"c-1\" }}\n",
        keys(),
        collector.url()
    );
    let gw = gateway(&collector.url(), &config);
    let metrics = br#"{"resourceMetrics":[{"resource":{"attributes":[]},"scopeMetrics":[]}]}"#;
    let answer = export(
        &gw,
        "/v1/metrics",
        "x-api-key: sk-dev\r\nContent-Type: application/json\r\n",
        metrics,
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"{}");
    let logs: &[u8] = &[0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4];
    let answer = export(
        &gw,
        "/v1/logs",
        "authorization: Bearer sk-dev\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n",
        logs,
    );
    assert_eq!(answer.status, 200);
    assert!(answer.body.is_empty());
    // Traces go to no collector: answered all the same.
    let answer = export(
        &gw,
        "/v1/traces",
        "x-api-key: sk-dev\r\nContent-Type: application/json\r\n",
        b"{}",
    );
    assert_eq!(answer.status, 200);
    // A bearer endpoint: no credential, no export.
    let refused = export(
        &gw,
        "/v1/metrics",
        "Content-Type: application/json\r\n",
        metrics,
    );
    assert_eq!(refused.status, 401);

    let relayed = wait_for(Duration::from_secs(10), || {
        let m = received(&collector, "/v1/metrics");
        let l = received(&collector, "/v1/logs");
        (!m.is_empty() && !l.is_empty()).then_some((m, l))
    })
    .expect("the collector received both exports");
    let (metrics_seen, logs_seen) = relayed;
    assert_eq!(metrics_seen.len(), 1, "the refused export was not relayed");
    assert_eq!(
        metrics_seen[0]["body"].as_str().unwrap().as_bytes(),
        metrics
    );
    assert_eq!(
        logs_seen[0]["body_sha256"],
        sluice::digest::sha256_hex(logs),
        "relayed byte for byte"
    );
    let header = |r: &Value, name: &str| {
        r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|h| h[1].as_str().unwrap().to_string())
    };
    assert_eq!(
        header(&logs_seen[0], "content-encoding").as_deref(),
        Some("gzip")
    );
    assert_eq!(
        header(&logs_seen[0], "content-type").as_deref(),
        Some("application/x-protobuf")
    );
    for r in metrics_seen.iter().chain(&logs_seen) {
        assert_eq!(header(r, "x-collector-token").as_deref(), Some("c-1"));
        let text = r.to_string();
        assert!(
            !text.contains("sk-dev"),
            "the client's key reached the collector: {text}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(received(&collector, "/v1/traces").is_empty());
    let counted = wait_for(Duration::from_secs(5), || {
        let scraped = request(gw.addr, "GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n");
        String::from_utf8_lossy(&scraped.body)
            .contains("sluice_telemetry_exports_total{outcome=\"forwarded\"} 2")
            .then_some(())
    });
    assert!(counted.is_some(), "/metrics counts the two relayed exports");
    let records = gw.wait_records(4);
    assert!(
        records
            .iter()
            .filter(|r| r["operation"] == "telemetry")
            .count()
            >= 3
    );
}

#[test]
fn without_a_collector_exports_are_answered_and_dropped() {
    let upstream = mock(&[]);
    let gw = gateway(&upstream.url(), &keys());
    let answer = export(
        &gw,
        "/v1/metrics",
        "x-api-key: sk-dev\r\nContent-Type: application/json\r\n",
        b"{\"resourceMetrics\":[]}",
    );
    assert_eq!(answer.status, 200);
    // An export larger than any exporter batches is refused before it is read.
    let mut client = Client::connect(gw.addr);
    client.send(
        format!(
            "POST /v1/logs HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-dev\r\nContent-Length: {}\r\n\r\n",
            5 * 1024 * 1024
        )
        .as_bytes(),
    );
    assert_eq!(client.read_response().expect("an answer").status, 413);
    // A chunked export has no length up front: it is bounded once read.
    let mut client = Client::connect(gw.addr);
    let chunk = vec![b'x'; 1024 * 1024];
    let mut raw = b"POST /v1/logs HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-dev\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    client.send(&raw);
    assert_eq!(client.read_response().expect("an answer").status, 413);
    assert!(received(&upstream, "/v1/metrics").is_empty());
}
