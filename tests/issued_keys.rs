//! Issued keys: `sluice keys create` prints a key once and stores only its digest; a running
//! gateway on the same store accepts it, refuses it within a second of `sluice keys revoke`,
//! keeps a rotated key valid for its grace period, and audits every change.

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
use std::time::Duration;

use common::*;
use serde_json::Value;

fn config(dir: &Path) -> String {
    format!(
        "[store]\npath = \"{}\"\ncommit_interval = \"20ms\"\n[audit]\npath = \"{}\"\n",
        dir.join("sluice.db").display(),
        dir.join("audit.jsonl").display()
    )
}

/// Runs `sluice keys ARGS --db DIR/sluice.db`; returns stdout.
fn keys(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--db")
        .arg(dir.join("sluice.db"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn status_with(gw: &Gateway, key: Option<&str>) -> u16 {
    let header = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    request(gw.addr, &messages_request(SMALL_BODY, &header)).status
}

/// Waits (at most `within`) until a request with `key` gets `want`.
fn becomes(gw: &Gateway, key: Option<&str>, want: u16, within: Duration) -> bool {
    wait_for(within, || (status_with(gw, key) == want).then_some(())).is_some()
}

#[test]
fn a_created_key_works_and_a_revoked_one_is_refused_within_a_second() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&mock.url(), &config(dir.path()));
    assert_eq!(status_with(&gw, None), 200, "open until a key exists");
    let key = keys(dir.path(), &["create", "--name", "ci", "--team", "t9"]);
    let key = key.trim();
    assert!(key.starts_with("sk-sluice-") && key.len() > 60);
    assert!(
        becomes(&gw, None, 401, Duration::from_secs(1)),
        "once a key exists, a key is required (within a second)"
    );
    assert_eq!(status_with(&gw, Some(key)), 200);
    let listed = keys(dir.path(), &["list"]);
    assert!(listed.contains("\"name\":\"ci\"") && !listed.contains(key));
    keys(dir.path(), &["revoke", "--name", "ci"]);
    assert!(
        becomes(&gw, Some(key), 401, Duration::from_secs(1)),
        "revocation reached the workers within a second"
    );
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let served = gw
        .records()
        .into_iter()
        .find(|r| r["status"] == 200 && r["identity"] == "key:ci")
        .unwrap();
    assert_eq!(served["team"], "t9");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let admin: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "admin")
        .collect();
    let actions: Vec<&str> = admin
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key_created", "key_revoked"], "{audit}");
    assert!(!audit.contains(key), "the key never reaches the audit log");
}

#[test]
fn a_rotated_key_keeps_working_for_its_grace_period_only() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let first = keys(
        dir.path(),
        &["create", "--name", "svc", "--models", "claude-haiku-*"],
    );
    let first = first.trim();
    let gw = gateway(&mock.url(), &config(dir.path()));
    assert_eq!(status_with(&gw, Some(first)), 200, "loaded at start-up");
    let second = keys(dir.path(), &["rotate", "--name", "svc", "--grace", "1h"]);
    let second = second.trim();
    assert!(becomes(&gw, Some(second), 200, Duration::from_secs(1)));
    assert_eq!(
        status_with(&gw, Some(first)),
        200,
        "inside the grace period"
    );
    let third = keys(dir.path(), &["rotate", "--name", "svc", "--grace", "0s"]);
    let third = third.trim();
    assert!(becomes(&gw, Some(third), 200, Duration::from_secs(1)));
    assert_eq!(status_with(&gw, Some(first)), 401);
    assert_eq!(status_with(&gw, Some(second)), 401);
    // The rotated key keeps the allow-list.
    let opus = request(
        gw.addr,
        &messages_request(STREAM_BODY, &format!("x-api-key: {third}\r\n")),
    );
    assert_eq!(opus.status, 403);
}

#[test]
fn a_budget_can_name_an_issued_key() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let key = keys(dir.path(), &["create", "--name", "capped"]);
    let key = key.trim();
    let budget = "[[budgets]]\nscope = \"key\"\nname = \"capped\"\nlimit_usd = 0.0002\n";
    let gw = gateway(&mock.url(), &format!("{}{budget}", config(dir.path())));
    let refused = (0..20)
        .map(|_| {
            request(
                gw.addr,
                &messages_request(SMALL_BODY, &format!("x-api-key: {key}\r\n")),
            )
        })
        .find(|r| r.status != 200)
        .expect("the budget refuses within 20 requests");
    assert_eq!(refused.status, 429);
    assert!(String::from_utf8_lossy(&refused.body).contains("for key capped"));
}
