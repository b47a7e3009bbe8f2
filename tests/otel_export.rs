//! sluice's own OpenTelemetry export, received by a test collector that decodes the OTLP/HTTP
//! protobuf with OpenTelemetry's own Python bindings (`tests/clients/otlp_receiver.py`): a span
//! per request with the GenAI attributes and sluice's, the client's `traceparent` continued and
//! a child `traceparent` sent upstream, the metrics' totals equal to the access records, the
//! collector's header fields sent; and a collector that is down costs requests nothing (the
//! failures are counted).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::Value;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The test collector, and the exports it decoded.
struct Collector {
    child: Child,
    port: u16,
    exports: Receiver<Value>,
}

impl Collector {
    fn start() -> Collector {
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients/otlp_receiver.py");
        let mut child = Command::new(real_clients().join("venv/bin/python"))
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("COLLECTOR UNAVAILABLE: cannot run the venv's python (scripts/install-real-clients)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("COLLECTOR UNAVAILABLE: it said {first:?}"));
        let (tx, exports) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).unwrap());
            }
        });
        Collector {
            child,
            port,
            exports,
        }
    }

    /// Exports of `signal` until `done` says enough (10 s at most).
    fn collect(&self, signal: &str, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            let export = self
                .exports
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no more {signal} exports; got {got:#?}"));
            assert!(
                export.get("error").is_none(),
                "undecodable export: {export}"
            );
            if export["signal"] == signal {
                got.push(export);
            }
        }
        got
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(collector_url: &str) -> String {
    format!(
        "[[keys]]\nname = \"ana\"\nsha256 = \"{}\"\nteam = \"design\"\n\
         [telemetry.export]\nurl = \"{collector_url}\"\nservice_name = \"sluice-test\"\n\
         span_interval = \"100ms\"\nmetrics_interval = \"300ms\"\n\
         [telemetry.export.headers]\nx-collector-key = \"c1\"\n",
        sluice::config::keys::hash_hex("sk-ana")
    )
}

fn ask(gw: &Gateway, extra: &str) -> u16 {
    let headers = format!("x-api-key: sk-ana\r\nx-claude-code-session-id: sess-1\r\n{extra}");
    request(gw.addr, &messages_request(SMALL_BODY, &headers)).status
}

/// Every span of `exports` (trace exports).
fn spans(exports: &[Value]) -> Vec<Value> {
    exports
        .iter()
        .flat_map(|e| {
            e["body"]["resource_spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|rs| rs["scope_spans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// An attribute's value as protobuf's JSON mapping gives it (`int_value` is a string).
fn attr<'a>(item: &'a Value, key: &str) -> &'a Value {
    item["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map_or(&Value::Null, |kv| &kv["value"])
}

fn int_attr(item: &Value, key: &str) -> u64 {
    attr(item, key)["int_value"]
        .as_str()
        .unwrap_or_else(|| panic!("no int {key} in {item}"))
        .parse()
        .unwrap()
}

fn hex_of(base64_id: &Value) -> String {
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(base64_id.as_str().unwrap_or_default())
            .unwrap(),
    )
}

#[test]
fn spans_and_metrics_reach_the_collector_with_the_genai_attributes() {
    let collector = Collector::start();
    let mock = mock(&["--prompt-cache-tokens", "1000"]);
    let gw = gateway(
        &mock.url(),
        &config(&format!("http://127.0.0.1:{}", collector.port)),
    );
    let traceparent = format!("traceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01\r\n");
    assert_eq!(
        ask(&gw, &traceparent),
        200,
        "the first turn writes the cache"
    );
    assert_eq!(ask(&gw, &traceparent), 200, "the second reads it");
    assert_eq!(
        ask(&gw, "user-agent: claude-cli/2.1.330\r\n"),
        200,
        "no traceparent"
    );
    let scrape = request(gw.addr, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(scrape.status, 200);
    let records: Vec<Value> = gw
        .wait_records(4)
        .into_iter()
        .filter(|r| r["operation"] == "messages")
        .collect();
    assert_eq!(records.len(), 3);

    // Upstream: a traceparent naming sluice's span, in the client's trace when it sent one.
    let upstream: Vec<String> = mock_requests(&mock)
        .iter()
        .map(|r| {
            header_pairs(&r["headers"])
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("traceparent"))
                .map(|(_, v)| v)
                .expect("the upstream got a traceparent")
        })
        .collect();
    assert_eq!(upstream.len(), 3);
    for sent in &upstream[..2] {
        assert!(sent.starts_with(&format!("00-{CLIENT_TRACE}-")), "{sent}");
        assert!(
            !sent.contains(CLIENT_SPAN),
            "sluice's span is the parent: {sent}"
        );
    }
    assert!(
        !upstream[2].contains(CLIENT_TRACE),
        "a new trace: {}",
        upstream[2]
    );

    // One span per model request (none for the scrape), with the collector's header field.
    let exports = collector.collect("traces", |got| spans(got).len() >= 3);
    assert_eq!(exports[0]["headers"]["x-collector-key"], "c1");
    let resource = &exports[0]["body"]["resource_spans"][0]["resource"];
    assert_eq!(
        attr(resource, "service.name")["string_value"],
        "sluice-test"
    );
    // Each worker hands its records over in batches, so spans (like records) may reach the
    // collector out of request order: put both in the order the requests were made.
    let mut all = spans(&exports);
    assert_eq!(all.len(), 3, "{all:#?}");
    all.sort_by_key(|s| {
        s["start_time_unix_nano"]
            .as_str()
            .and_then(|t| t.parse::<u64>().ok())
            .or(s["start_time_unix_nano"].as_u64())
            .unwrap()
    });
    let records: Vec<Value> = all
        .iter()
        .map(|s| {
            let id = &attr(s, "sluice.request_id")["string_value"];
            records
                .iter()
                .find(|r| &r["request_id"] == id)
                .cloned()
                .unwrap()
        })
        .collect();
    for (span, sent) in all.iter().zip(&upstream) {
        let trace_id = hex_of(&span["trace_id"]);
        let span_id = hex_of(&span["span_id"]);
        assert_eq!(
            sent,
            &format!("00-{trace_id}-{span_id}-01"),
            "upstream's parent is the span"
        );
        assert_eq!(span["kind"], "SPAN_KIND_SERVER");
    }
    let (first, second, third) = (&all[0], &all[1], &all[2]);
    assert_eq!(hex_of(&first["trace_id"]), CLIENT_TRACE);
    assert_eq!(hex_of(&first["parent_span_id"]), CLIENT_SPAN);
    assert!(third
        .get("parent_span_id")
        .is_none_or(|p| p.as_str() == Some("")));

    for (span, record) in all.iter().zip(&records) {
        let n = |k: &str| record[k].as_u64().unwrap();
        assert_eq!(attr(span, "gen_ai.operation.name")["string_value"], "chat");
        assert_eq!(
            attr(span, "gen_ai.provider.name")["string_value"],
            "anthropic"
        );
        assert_eq!(
            attr(span, "gen_ai.request.model")["string_value"],
            record["model"]
        );
        assert_eq!(
            attr(span, "gen_ai.conversation.id")["string_value"],
            "sess-1"
        );
        assert_eq!(attr(span, "sluice.identity")["string_value"], "key:ana");
        assert_eq!(attr(span, "sluice.team")["string_value"], "design");
        assert_eq!(
            attr(span, "sluice.upstream")["string_value"],
            record["upstream"]
        );
        assert_eq!(int_attr(span, "sluice.attempts"), 1);
        assert_eq!(int_attr(span, "http.response.status_code"), 200);
        assert_eq!(
            int_attr(span, "gen_ai.usage.input_tokens"),
            n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens"),
            "input tokens include the cache's"
        );
        assert_eq!(
            int_attr(span, "gen_ai.usage.output_tokens"),
            n("output_tokens")
        );
        assert_eq!(
            int_attr(span, "gen_ai.usage.cache_read.input_tokens"),
            n("cache_read_input_tokens")
        );
        let cost = attr(span, "sluice.cost_usd")["double_value"]
            .as_f64()
            .unwrap();
        assert!((cost - record["cost_usd"].as_f64().unwrap()).abs() < 1e-12);
        assert!(attr(span, "gen_ai.server.time_to_first_token")["double_value"].is_f64());
        assert!(attr(span, "sluice.added_latency_s")["double_value"].is_f64());
    }
    assert_eq!(
        int_attr(first, "gen_ai.usage.cache_creation.input_tokens"),
        1000
    );
    assert_eq!(
        int_attr(second, "gen_ai.usage.cache_read.input_tokens"),
        1000
    );
    assert_eq!(
        attr(third, "user_agent.original")["string_value"],
        "claude-cli/2.1.330"
    );

    // Metrics: cumulative totals equal to the access records.
    let total = |k: &str| records.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
    let want_input = total("input_tokens")
        + total("cache_read_input_tokens")
        + total("cache_creation_input_tokens");
    let want_cost: f64 = records
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .sum();
    let metric = |export: &Value, name: &str| -> Value {
        export["body"]["resource_metrics"][0]["scope_metrics"][0]["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    let input_sum = |export: &Value| -> (u64, f64) {
        let points = metric(export, "gen_ai.client.token.usage")["histogram"]["data_points"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        points
            .iter()
            .filter(|p| attr(p, "gen_ai.token.type")["string_value"] == "input")
            .fold((0, 0.0), |(c, s), p| {
                (
                    c + p["count"].as_str().unwrap().parse::<u64>().unwrap(),
                    s + p["sum"].as_f64().unwrap(),
                )
            })
    };
    let metrics = collector.collect("metrics", |got| {
        got.last().is_some_and(|e| input_sum(e).0 == 3)
    });
    let last = metrics.last().unwrap();
    assert_eq!(input_sum(last), (3, want_input as f64));
    let cost: f64 = metric(last, "sluice.cost")["sum"]["data_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["as_double"].as_f64().unwrap())
        .sum();
    assert!((cost - want_cost).abs() < 1e-12, "{cost} vs {want_cost}");
    for name in [
        "gen_ai.client.operation.duration",
        "gen_ai.server.time_to_first_token",
        "sluice.added_latency",
    ] {
        assert!(!metric(last, name).is_null(), "{name} exported");
    }

    // What the exporter did is in /metrics.
    let text = String::from_utf8(request(gw.addr, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").body)
        .unwrap();
    assert!(
        text.contains("sluice_otel_export_total{outcome=\"spans_exported\"} 3"),
        "{text}"
    );
}

#[test]
fn a_collector_that_is_down_costs_requests_nothing_and_is_counted() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mock = mock(&["--no-request-log"]);
    let gw = gateway(&mock.url(), &config(&url));
    for _ in 0..5 {
        assert_eq!(ask(&gw, ""), 200);
    }
    let failed = wait_for(Duration::from_secs(10), || {
        let text =
            String::from_utf8(request(gw.addr, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").body)
                .ok()?;
        text.contains("sluice_otel_export_total{outcome=\"spans_failed\"} 5")
            .then_some(())
    });
    assert!(failed.is_some(), "the lost spans are counted");
}
