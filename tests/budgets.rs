//! Budgets: the hard limit refuses with a 429 naming the budget and its reset, the soft
//! threshold warns in a header and the audit log, a hundred concurrent clients never spend past
//! a small budget (reservation at admission), and a restart starts from the ledger's spend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// One haiku request through the mock costs $0.000027 (22 input, 1 output token) and reserves
/// $0.000124 (16 max_tokens of output, 22 input tokens at the 1-hour cache-write price).
const ACTUAL_COST: f64 = 0.000_027;

fn config(dir: &Path, budget: &str) -> String {
    let hash = sluice::config::keys::hash_hex("sk-b");
    format!(
        "[[keys]]\nname = \"kb\"\nsha256 = \"{hash}\"\nteam = \"tb\"\n[store]\npath = \"{}\"\ncommit_interval = \"20ms\"\n[audit]\npath = \"{}\"\n[[budgets]]\n{budget}\n",
        dir.join("ledger.db").display(),
        dir.join("audit.jsonl").display()
    )
}

fn one_request(gw: &Gateway) -> Response {
    request(
        gw.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-b\r\n"),
    )
}

fn team_spend(db: &Path) -> (u64, f64) {
    let out = Command::new(BIN)
        .args(["spend", "--by", "team", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = rows.iter().find(|r| r["group"] == "tb").unwrap();
    (
        row["requests"].as_u64().unwrap(),
        row["cost_usd"].as_f64().unwrap(),
    )
}

#[test]
fn the_hard_limit_refuses_with_the_budget_and_its_reset() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let budget = "scope = \"key\"\nname = \"kb\"\nlimit_usd = 0.0005\nperiod = \"daily\"";
    let gw = gateway(&mock.url(), &config(dir.path(), budget));
    let mut served = 0;
    let refused = loop {
        let resp = one_request(&gw);
        if resp.status != 200 {
            break resp;
        }
        served += 1;
        assert!(served < 30, "the budget never refused");
    };
    // Each reservation is settled before the response's last byte, so the next request sees
    // the real spend: $0.000027 each, and one more fits while spend + $0.000124 ≤ $0.0005.
    assert_eq!(served, 14, "served {served} before refusing");
    assert_eq!(refused.status, 429);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    // Claude Code's billing error: not retried, with the usage notice's fields.
    assert_eq!(body["error"]["type"], "billing_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("daily budget of $0.0005 for key kb (resets ")
            && message.contains("T00:00:00Z)"),
        "{message}"
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry));
    assert_eq!(refused.header("x-should-retry"), Some("false"));
    let unified = |name: &str| refused.header(&format!("anthropic-ratelimit-unified-{name}"));
    assert_eq!(unified("status"), Some("rejected"));
    assert_eq!(unified("overage-utilization"), Some("1"));
    assert_eq!(unified("overage-surpassed-threshold"), Some("1"));
    assert_eq!(unified("overage-period"), Some("daily"));
    assert_eq!(
        unified("overage-disabled-reason"),
        Some("org_spend_cap_reached")
    );
    assert_eq!(
        unified("overage-scope"),
        None,
        "a key's budget is not a group pool"
    );
    assert_eq!(unified("representative-claim"), None);
    let reset: u64 = unified("reset").unwrap().parse().unwrap();
    assert_eq!(reset % 86_400, 0, "a daily budget resets at midnight UTC");
}

/// Claude Code's usage notice: every Messages answer under a budget says where the budget
/// stands (the upstream's own limit fields removed), a warning past 75 %, a group pool's 429 at
/// the cap; `/api/oauth/usage` gives the same figures, and a caller under no budget its spend.
#[test]
fn a_caller_under_a_budget_is_told_where_it_stands() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    // $0.001: a request fits while the spend is at most $0.000876 (its reservation is
    // $0.000124), so 33 are served, and from the 29th the spend is past 75 %.
    let budget = "scope = \"team\"\nname = \"tb\"\nlimit_usd = 0.001\nperiod = \"weekly\"";
    let free = sluice::config::keys::hash_hex("sk-free");
    let text = format!(
        "{}[[keys]]\nname = \"kf\"\nsha256 = \"{free}\"\nuser = \"free@example.com\"\n",
        config(dir.path(), budget)
    );
    let gw = gateway(&mock.url(), &text);
    let mut answers = Vec::new();
    let refused = loop {
        let resp = one_request(&gw);
        if resp.status != 200 {
            break resp;
        }
        answers.push(resp);
        assert!(answers.len() < 60, "the budget never refused");
    };
    assert_eq!(answers.len(), 33);
    let unified = |resp: &Response, name: &str| {
        resp.header(&format!("anthropic-ratelimit-unified-{name}"))
            .map(str::to_string)
    };
    let first = &answers[0];
    assert_eq!(unified(first, "status").as_deref(), Some("allowed"));
    assert_eq!(unified(first, "overage-status").as_deref(), Some("allowed"));
    assert_eq!(
        unified(first, "representative-claim").as_deref(),
        Some("overage")
    );
    assert_eq!(unified(first, "overage-utilization").as_deref(), Some("0"));
    assert_eq!(
        first.header("anthropic-ratelimit-requests-limit"),
        None,
        "the upstream's own limits are removed"
    );
    assert_eq!(
        answers[27].header("anthropic-ratelimit-unified-overage-surpassed-threshold"),
        None
    );
    let warned = &answers[28];
    assert_eq!(
        unified(warned, "status").as_deref(),
        Some("allowed_warning")
    );
    assert_eq!(
        unified(warned, "overage-surpassed-threshold").as_deref(),
        Some("0.75")
    );
    assert_eq!(
        unified(warned, "overage-utilization").as_deref(),
        Some("0.76")
    );
    assert_eq!(refused.status, 429);
    assert_eq!(
        unified(&refused, "overage-scope").as_deref(),
        Some("group_pool")
    );
    assert_eq!(
        unified(&refused, "overage-period").as_deref(),
        Some("weekly")
    );

    let usage = |key: &str| {
        let resp = request(
            gw.addr,
            &format!("GET /api/oauth/usage HTTP/1.1\r\nHost: gw\r\nx-api-key: {key}\r\n\r\n"),
        );
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        resp.json()
    };
    let capped = usage("sk-b");
    assert_eq!(capped["extra_usage"]["monthly_limit"], 0.1, "{capped}");
    assert_eq!(capped["extra_usage"]["utilization"], 89, "{capped}");
    assert_eq!(capped["limits"][0]["group"], "weekly");
    assert_eq!(capped["limits"][0]["severity"], "warning");
    assert_eq!(capped["limits"][0]["is_active"], true);

    for _ in 0..2 {
        let resp = request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-api-key: sk-free\r\n"),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("anthropic-ratelimit-unified-status"),
            None,
            "no budget, no notice"
        );
        assert_eq!(
            resp.header("anthropic-ratelimit-requests-limit"),
            Some("4000")
        );
    }
    let cents = ACTUAL_COST * 2.0 * 100.0;
    let spent = wait_for(Duration::from_secs(5), || {
        let uncapped = usage("sk-free");
        let monthly = uncapped["extra_usage"]["used_credits"].as_f64().unwrap();
        ((monthly - cents).abs() < 1e-9).then_some(uncapped)
    })
    .expect("the ledger shows both requests");
    assert_eq!(spent["limits"], serde_json::json!([]));
    assert_eq!(spent["extra_usage"]["monthly_limit"], Value::Null);
    for window in ["", "daily", "weekly"] {
        let used = if window.is_empty() {
            &spent["extra_usage"]["used_credits"]
        } else {
            &spent["extra_usage"][window]["used_credits"]
        };
        assert!((used.as_f64().unwrap() - cents).abs() < 1e-9, "{spent}");
    }
}

#[test]
fn a_hundred_concurrent_clients_never_spend_past_a_small_budget() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let limit = 0.0005;
    let budget =
        format!("scope = \"team\"\nname = \"tb\"\nlimit_usd = {limit}\nperiod = \"total\"");
    let mut gw = gateway(&mock.url(), &config(dir.path(), &budget));
    let gw_addr = gw.addr;
    let start = Arc::new(Barrier::new(100));
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut client = Client::connect(gw_addr);
                start.wait();
                (0..3)
                    .map(|_| {
                        let raw = messages_request(SMALL_BODY, "x-api-key: sk-b\r\n");
                        client.send(raw.as_bytes());
                        client.read_response().unwrap().status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + refused, 300, "{statuses:?}");
    assert!(ok > 0 && refused > 0, "{ok} served, {refused} refused");
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
    let (requests, spent) = team_spend(&dir.path().join("ledger.db"));
    assert_eq!(
        requests as usize,
        ok + refused,
        "every request is in the ledger"
    );
    assert!(
        spent <= limit + 1e-12,
        "spent ${spent} past a ${limit} budget"
    );
    assert!(
        (spent - ok as f64 * ACTUAL_COST).abs() < 1e-9,
        "each served request settled to its real cost"
    );
}

#[test]
fn the_soft_threshold_warns_in_a_header_and_once_in_the_audit_log() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let budget =
        "scope = \"team\"\nname = \"tb\"\nlimit_usd = 1.0\nsoft_usd = 0.0003\nperiod = \"monthly\"";
    let mut gw = gateway(&mock.url(), &config(dir.path(), budget));
    let warnings: Vec<Option<String>> = (0..10)
        .map(|_| {
            let resp = one_request(&gw);
            assert_eq!(resp.status, 200);
            resp.header("sluice-budget-warning").map(str::to_string)
        })
        .collect();
    assert!(warnings[0].is_none());
    assert!(warnings[9]
        .as_deref()
        .unwrap()
        .contains("monthly budget of $1.00 for team tb"));
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let crossings: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "budget")
        .collect();
    assert_eq!(crossings.len(), 1, "{audit}");
    assert_eq!(crossings[0]["reason"], "budget_soft_threshold");
}

#[test]
fn a_restart_starts_from_the_spend_in_the_ledger() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let budget = "scope = \"team\"\nname = \"tb\"\nlimit_usd = 0.0002\nperiod = \"weekly\"";
    let mut gw = gateway(&mock.url(), &config(dir.path(), budget));
    // Spend until refused with nothing in flight (a refusal can also come from a reservation
    // not yet settled, so it is confirmed once every request is recorded).
    gw.spend_until_refused(|| (one_request(&gw).status, ()));
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
    let again = gateway(&mock.url(), &config(dir.path(), budget));
    assert_eq!(one_request(&again).status, 429);
}

fn session_request(gw: &Gateway, session: &str) -> Response {
    request(
        gw.addr,
        &messages_request(
            SMALL_BODY,
            &format!("x-api-key: sk-b\r\nx-claude-code-session-id: {session}\r\n"),
        ),
    )
}

/// Sends requests of one session until it is refused with nothing in flight.
fn spend_session(gw: &Gateway, session: &str) -> Response {
    gw.spend_until_refused(|| {
        let resp = session_request(gw, session);
        (resp.status, resp)
    })
}

#[test]
fn each_claude_code_session_has_its_own_budget_and_it_survives_a_restart() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let budget = "scope = \"session\"\nlimit_usd = 0.0003\nperiod = \"daily\"";
    let mut gw = gateway(&mock.url(), &config(dir.path(), budget));
    let refused = spend_session(&gw, "session-one");
    assert_eq!(refused.status, 429);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("daily budget of $0.0003 for session session-one (resets "),
        "{message}"
    );
    // Another session of the same key is not affected; a request without a session id is not
    // subject to session budgets.
    assert_eq!(session_request(&gw, "session-two").status, 200);
    assert_eq!(one_request(&gw).status, 200);
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
    let again = gateway(&mock.url(), &config(dir.path(), budget));
    assert_eq!(session_request(&again, "session-one").status, 429);
    assert_eq!(session_request(&again, "session-two").status, 200);
}
