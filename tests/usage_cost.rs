//! Every request leaves one access record; responses carrying usage are priced from the table
//! (Claude Code prices its own usage the same way, so the two agree).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;

fn expected_cost(input: u64, output: u64, input_per_mtok: f64, output_per_mtok: f64) -> f64 {
    (input as f64 * input_per_mtok + output as f64 * output_per_mtok) / 1e6
}

#[test]
fn non_streaming_usage_and_cost_are_recorded() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let headers = "X-Claude-Code-Session-Id: sess-1\r\nx-claude-code-agent-id: agent-7\r\nx-claude-code-parent-agent-id: agent-1\r\nx-mock-reply: three word answer\r\n";
    let resp = request(gw.addr, &messages_request(SMALL_BODY, headers));
    let usage = &resp.json()["usage"];
    let (input, output) = (
        usage["input_tokens"].as_u64().unwrap(),
        usage["output_tokens"].as_u64().unwrap(),
    );
    assert_eq!(output, 3);
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["model"], "claude-haiku-4-5");
    assert_eq!(r["stream"], false);
    assert_eq!(r["input_tokens"], input);
    assert_eq!(r["output_tokens"], output);
    assert_eq!(r["session_id"], "sess-1");
    assert_eq!(r["agent_id"], "agent-7");
    assert_eq!(r["parent_agent_id"], "agent-1");
    assert_eq!(r["upstream_request_id"], "req_mock_200");
    assert_eq!(r["metered"], true);
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - expected_cost(input, output, 1.0, 5.0)).abs() < 1e-12,
        "{cost}"
    );
    for field in ["total_us", "ttfb_us", "added_us"] {
        assert!(r[field].is_u64(), "{field} in {r}");
    }
}

#[test]
fn streaming_usage_and_cost_are_recorded() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let resp = request(
        gw.addr,
        &messages_request(STREAM_BODY, "x-mock-reply: a b c d e\r\n"),
    );
    assert_eq!(resp.status, 200);
    let text = String::from_utf8(resp.body).unwrap();
    let start = text.find("\"input_tokens\":").unwrap() + "\"input_tokens\":".len();
    let input: u64 = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["stream"], true);
    assert_eq!(r["stream_complete"], true);
    assert_eq!(r["input_tokens"], input);
    assert_eq!(
        r["output_tokens"], 5,
        "message_delta's cumulative output_tokens, not a sum"
    );
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - expected_cost(input, 5, 5.0, 25.0)).abs() < 1e-12,
        "{cost}"
    );
}

#[test]
fn count_tokens_and_passthrough_calls_are_forwarded_and_logged() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let body = r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    let raw = format!("POST /v1/messages/count_tokens?beta=true HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let resp = request(gw.addr, &raw);
    assert!(resp.json()["input_tokens"].as_u64().unwrap() > 0);
    let resp = request(gw.addr, "GET /v1/files HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(mock_requests(&mock)[1]["target"], "/v1/files");
    // Separate connections may land on different workers: find records by what they are.
    let records = gw.wait_records(2);
    let count = records
        .iter()
        .find(|r| r["operation"] == "count_tokens")
        .unwrap();
    assert_eq!(count["model"], "claude-sonnet-4-5");
    assert_eq!(count["cost_usd"], 0.0);
    assert!(records
        .iter()
        .any(|r| r["operation"] == "passthrough" && r["path"] == "/v1/files"));
}

#[test]
fn pricing_is_overridable_in_config() {
    let mock = mock(&[]);
    let gw = gateway(
        &mock.url(),
        "[[pricing]]\nmodel = \"claude-haiku-4-5\"\ninput = 100.0\noutput = 1000.0\n",
    );
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    let input = resp.json()["usage"]["input_tokens"].as_u64().unwrap();
    let r = &gw.wait_records(1)[0];
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!((cost - expected_cost(input, 1, 100.0, 1000.0)).abs() < 1e-12);
}
