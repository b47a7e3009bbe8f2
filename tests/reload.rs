//! Config reload: SIGHUP and `POST /admin/reload` apply a changed file to new requests on every
//! worker; a broken file, or a change only a restart can apply, leaves the running config as it
//! was and says why (log, admin reply, audit log); budget spend and upstream changes carry over.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ADMIN_KEY: &str = "admin-secret-reload";

fn key_block(name: &str, key: &str) -> String {
    format!(
        "[[keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nteam = \"t\"\n",
        sluice::config::keys::hash_hex(key)
    )
}

fn status_with(gw: &Gateway, key: &str) -> u16 {
    request(
        gw.addr,
        &messages_request(SMALL_BODY, &format!("x-api-key: {key}\r\n")),
    )
    .status
}

fn config_file(gw: &Gateway) -> PathBuf {
    gw.dir().join("sluice.toml")
}

/// Rewrites the running gateway's config file, replacing `from` with `to`.
fn edit(gw: &Gateway, from: &str, to: &str) {
    let path = config_file(gw);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn admin_reload(addr: SocketAddr) -> (u16, Value) {
    let raw = format!(
        "POST /admin/reload HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {ADMIN_KEY}\r\ncontent-length: 0\r\n\r\n"
    );
    let resp = request(addr, &raw);
    (
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
    )
}

fn audit_actions(gw: &Gateway) -> Vec<String> {
    std::fs::read_to_string(gw.dir().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "admin")
        .filter(|e| e["identity"] == "config")
        .filter_map(|e| e["decision"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn sighup_applies_a_changed_file_and_a_broken_one_changes_nothing() {
    let mock = mock(&["--no-request-log"]);
    let mut gw = gateway(&mock.url(), &key_block("ka", "sk-a"));
    assert_eq!(status_with(&gw, "sk-a"), 200);
    assert_eq!(status_with(&gw, "sk-b"), 401);

    edit(&gw, &key_block("ka", "sk-a"), &key_block("kb", "sk-b"));
    gw.hangup();
    // Both workers serve new requests under the new keys (connections are new each time, so
    // they land on either worker).
    let applied = wait_for(Duration::from_secs(5), || {
        let all =
            (0..6).all(|_| status_with(&gw, "sk-b") == 200 && status_with(&gw, "sk-a") == 401);
        all.then_some(())
    });
    assert!(applied.is_some(), "the reload was not applied");

    // A broken file: the error is logged and the running config stays.
    let good = std::fs::read_to_string(config_file(&gw)).unwrap();
    std::fs::write(
        config_file(&gw),
        format!("{good}\n[[budgets]]\nscope = \"team\"\nname = \"t\"\nlimit_usd = -1.0\n"),
    )
    .unwrap();
    gw.hangup();
    let logged = wait_for(Duration::from_secs(5), || {
        let text = gw.stderr_text();
        text.contains("config reload failed").then_some(text)
    });
    let logged = logged.expect("the failed reload is logged");
    assert!(logged.contains("budgets[0].limit_usd"), "{logged}");
    assert_eq!(status_with(&gw, "sk-b"), 200);
    assert_eq!(status_with(&gw, "sk-a"), 401);

    // What only a restart can change is refused, and named.
    std::fs::write(
        config_file(&gw),
        good.replacen("[audit]\npath = \"", "[audit]\npath = \"/tmp/elsewhere-", 1),
    )
    .unwrap();
    gw.hangup();
    let logged = wait_for(Duration::from_secs(5), || {
        let text = gw.stderr_text();
        text.contains("audit changed: only a restart applies it")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", gw.stderr_text());
    assert_eq!(status_with(&gw, "sk-b"), 200);

    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let actions = audit_actions(&gw);
    assert!(
        actions.iter().any(|a| a == "config_reloaded"),
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "config_reload_failed")
            .count(),
        2,
        "{actions:?}"
    );
}

#[test]
fn the_admin_reload_answers_why_and_budget_spend_survives_it() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[store]\npath = \"{}\"\ncommit_interval = \"20ms\"\n[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{}\"\n[[budgets]]\nscope = \"team\"\nname = \"t\"\nlimit_usd = 0.0002\nperiod = \"daily\"\n",
        key_block("ka", "sk-a"),
        dir.path().join("sluice.db").display(),
        sluice::config::keys::hash_hex(ADMIN_KEY)
    );
    let gw = gateway(&mock.url(), &config);
    let api = gw.admin_addr.unwrap();
    // Spend the team's budget (confirming the refusal with nothing in flight).
    gw.spend_until_refused(|| (status_with(&gw, "sk-a"), ()));
    // Reload with another change (a rate limit): the budget's spend is carried over.
    edit(
        &gw,
        "[[budgets]]",
        "[[teams]]\nname = \"t\"\nrpm = 1000\n[[budgets]]",
    );
    let (status, body) = admin_reload(api);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 1);
    assert_eq!(status_with(&gw, "sk-a"), 429);

    // Raising the limit takes effect at once, from the spend so far.
    edit(&gw, "limit_usd = 0.0002", "limit_usd = 1.0");
    let (status, body) = admin_reload(api);
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_with(&gw, "sk-a"), 200);

    // A broken file: 400, the reason, nothing changed.
    edit(&gw, "rpm = 1000", "rpm = \"many\"");
    let (status, body) = admin_reload(api);
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("config not reloaded: "), "{message}");
    assert!(message.contains("rpm"), "{message}");
    assert_eq!(status_with(&gw, "sk-a"), 200);
}

#[test]
fn a_reload_moves_traffic_to_a_changed_upstream() {
    let first = mock(&[]);
    let second = mock(&[]);
    let config = format!(
        "[[upstreams]]\nname = \"u\"\nurl = \"{}\"\n[[routes]]\nmodel = \"*\"\nupstream = \"u\"\n",
        first.url()
    );
    let gw = gateway("", &config);
    for _ in 0..3 {
        assert_eq!(status_with(&gw, "sk-any"), 200);
    }
    assert_eq!(mock_requests(&first).len(), 3);
    edit(&gw, &first.url(), &second.url());
    gw.hangup();
    let moved = wait_for(Duration::from_secs(5), || {
        (0..4).for_each(|_| assert_eq!(status_with(&gw, "sk-any"), 200));
        (mock_requests(&second).len() >= 4).then_some(())
    });
    assert!(moved.is_some(), "traffic did not move to the new upstream");
    let before = mock_requests(&first).len();
    for _ in 0..4 {
        assert_eq!(status_with(&gw, "sk-any"), 200);
    }
    assert_eq!(
        mock_requests(&first).len(),
        before,
        "the old upstream still gets traffic"
    );
}

/// Lines the credential command has appended to `runs` (one per run).
fn credential_runs(runs: &std::path::Path) -> usize {
    std::fs::read_to_string(runs).map_or(0, |t| t.lines().count())
}

#[test]
fn a_credential_command_runs_again_only_when_its_upstream_changes() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let script = dir.path().join("credentials.sh");
    std::fs::write(
        &script,
        format!(
            "echo run >> '{}'\nprintf '{{\"Version\":1,\"AccessKeyId\":\"AKIDTEST\",\"SecretAccessKey\":\"s\"}}'\n",
            runs.display()
        ),
    )
    .unwrap();
    let config = format!(
        "{}[[upstreams]]\nname = \"messages\"\nurl = \"{url}\"\n[[upstreams]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nurl = \"{url}\"\nregion = \"us-east-1\"\naws_credential_process = \"sh {}\"\n[[routes]]\nmodel = \"*\"\nupstream = \"messages\"\n",
        key_block("ka", "sk-a"),
        script.display(),
        url = mock.url(),
    );
    let gw = gateway("", &config);
    assert_eq!(credential_runs(&runs), 1, "run once at start");

    // `check-config` reads every file the config names but runs no credential command.
    let out = std::process::Command::new(gateway_bin())
        .args(["check-config", config_file(&gw).to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(credential_runs(&runs), 1, "check-config ran the command");

    // A reload that changes the keys (and another upstream) keeps the Bedrock credentials.
    edit(&gw, &key_block("ka", "sk-a"), &key_block("kb", "sk-b"));
    edit(
        &gw,
        "name = \"messages\"\n",
        "name = \"messages\"\nhealth_check_interval = \"30s\"\n",
    );
    gw.hangup();
    let applied = wait_for(Duration::from_secs(5), || {
        (0..4)
            .all(|_| status_with(&gw, "sk-b") == 200)
            .then_some(())
    });
    assert!(applied.is_some(), "the reload was not applied");
    assert_eq!(
        credential_runs(&runs),
        1,
        "an unchanged upstream's command ran again"
    );

    // Changing the Bedrock upstream itself fetches its credentials afresh.
    edit(&gw, "region = \"us-east-1\"", "region = \"us-west-2\"");
    gw.hangup();
    let refetched = wait_for(Duration::from_secs(5), || {
        (credential_runs(&runs) == 2).then_some(())
    });
    assert!(refetched.is_some(), "{}", gw.stderr_text());
    assert_eq!(status_with(&gw, "sk-b"), 200);
}
