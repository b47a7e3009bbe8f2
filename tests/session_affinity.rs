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
/// gateways in turn; and the tokens the first gateway's responses read from the cache.
fn cache_hit_rate(gateways: &[&Gateway], run: &str) -> (f64, u64) {
    let (mut read, mut all, mut first_read) = (0u64, 0u64, 0u64);
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
            if (turn + session) % gateways.len() == 0 {
                first_read += n("cache_read_input_tokens");
            }
        }
    }
    (read as f64 / all as f64, first_read)
}

#[test]
fn a_session_stays_where_its_prompt_cache_is_across_processes() {
    let mocks: Vec<Proc> = (0..3)
        .map(|_| mock(&["--no-request-log", "--prompt-cache-tokens", PREFIX_TOKENS]))
        .collect();
    let text = config(&mocks, "session");
    let (a, b) = (gateway("", &text), gateway("", &text));
    let (with, read_through_a) = cache_hit_rate(&[&a, &b], "affine");
    assert!(with >= 0.95, "cache hit rate with affinity: {with:.3}");
    cache_is_reported(&a, read_through_a);

    let text = config(&mocks, "none");
    let (c, d) = (gateway("", &text), gateway("", &text));
    let (without, _) = cache_hit_rate(&[&c, &d], "balanced");
    assert!(
        without < with - 0.03,
        "without affinity the cache is lost: {without:.3} against {with:.3}"
    );
    eprintln!("cache hit rate: {with:.3} with session affinity, {without:.3} without");
}

/// What the cache did is in the spend report (tokens read and written, hit rate, savings) and in
/// `/metrics` (token counters by class, savings).
fn cache_is_reported(gw: &Gateway, read: u64) {
    let db = gw.dir().join("sluice.db");
    let row = wait_for(std::time::Duration::from_secs(10), || {
        let out = std::process::Command::new(BIN)
            .args(["spend", "--by", "model", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let row: Value = serde_json::from_str(text.lines().next()?).ok()?;
        (row["cache_read_input_tokens"].as_u64() == Some(read)).then_some(row)
    })
    .expect("the ledger has every request's cache reads");
    let prompt = row["input_tokens"].as_f64().unwrap()
        + row["cache_creation_input_tokens"].as_f64().unwrap()
        + row["cache_read_input_tokens"].as_f64().unwrap();
    let rate = row["cache_hit_rate"].as_f64().unwrap();
    assert!((rate - read as f64 / prompt).abs() < 1e-9, "{row}");
    assert!(rate > 0.9, "{row}");
    assert_eq!(
        row["cache_creation_1h_input_tokens"], row["cache_creation_input_tokens"],
        "the mock writes 1-hour entries: {row}"
    );
    // Reads at a tenth of the input price saved far more than 1-hour writes at twice it cost.
    assert!(row["cache_savings_usd"].as_f64().unwrap() > 0.0, "{row}");
    let scraped = request(gw.addr, "GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n");
    let text = String::from_utf8_lossy(&scraped.body);
    assert!(text.contains("kind=\"cache_creation_1h\""), "{text}");
    assert!(
        text.contains("sluice_cache_savings_usd_total{model="),
        "{text}"
    );
}
