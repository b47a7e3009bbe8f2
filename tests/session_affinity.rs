//! Session affinity: with three deployments whose mock upstreams each model a prompt cache (a
//! conversation seen before on the same deployment reads its prefix from the cache), many Claude
//! Code sessions × many turns through two sluice processes keep ≥ 95 % of their input tokens
//! cached — every request of a session lands on the same deployment whichever process or worker
//! takes it — and the same run with `affinity = "none"` loses that.

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

const SESSIONS: usize = 12;
const TURNS: usize = 30;
const PREFIX_TOKENS: &str = "20000";

fn config(mocks: &[Proc], affinity: &str) -> String {
    let mut text = String::new();
    for (i, m) in mocks.iter().enumerate() {
        text.push_str(&format!(
            "[[upstreams]]\nname = \"d{i}\"\nurl = \"{}\"\napi_key = \"sk-up\"\n",
            m.url()
        ));
    }
    text.push_str(&format!(
        "[[routes]]\nmodel = \"*\"\naffinity = \"{affinity}\"\ndeployments = [{{ upstream = \"d0\" }}, {{ upstream = \"d1\" }}, {{ upstream = \"d2\" }}]\n"
    ));
    text
}

/// The share of input tokens read from the cache over every session's turns, sent to the
/// gateways in turn.
fn cache_hit_rate(gateways: &[&Gateway], run: &str) -> f64 {
    let (mut read, mut all) = (0u64, 0u64);
    for turn in 0..TURNS {
        for session in 0..SESSIONS {
            let body = format!(
                r#"{{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{{"role":"user","content":"{run} conversation {session}"}},{{"role":"assistant","content":"ok"}},{{"role":"user","content":"turn {turn}"}}]}}"#
            );
            let gw = gateways[(turn + session) % gateways.len()];
            let headers = format!("X-Claude-Code-Session-Id: {run}-session-{session}\r\n");
            let resp = request(gw.addr, &messages_request(&body, &headers));
            assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
            let usage: Value = resp.json()["usage"].clone();
            let n = |k: &str| usage[k].as_u64().unwrap();
            read += n("cache_read_input_tokens");
            all +=
                n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens");
        }
    }
    read as f64 / all as f64
}

#[test]
fn a_session_stays_where_its_prompt_cache_is_across_processes() {
    let mocks: Vec<Proc> = (0..3)
        .map(|_| mock(&["--no-request-log", "--prompt-cache-tokens", PREFIX_TOKENS]))
        .collect();
    let text = config(&mocks, "session");
    let (a, b) = (gateway("", &text), gateway("", &text));
    let with = cache_hit_rate(&[&a, &b], "affine");
    assert!(with >= 0.95, "cache hit rate with affinity: {with:.3}");

    let text = config(&mocks, "none");
    let (c, d) = (gateway("", &text), gateway("", &text));
    let without = cache_hit_rate(&[&c, &d], "balanced");
    assert!(
        without < with - 0.03,
        "without affinity the cache is lost: {without:.3} against {with:.3}"
    );
    eprintln!("cache hit rate: {with:.3} with session affinity, {without:.3} without");
}
