//! The record writers (recorder, spend ledger, audit log) run under `SCHED_IDLE` while they
//! keep up (`server.writer_priority = "idle"`, the default), at the normal policy with
//! `"normal"`, and always at the normal policy in sync durability, where responses wait for
//! them. Under a load that keeps both cores busy, idle writers still store every record.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use thread_priority::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadPriority,
    ThreadPriorityOsValue, ThreadSchedulePolicy,
};

const SCHED_OTHER: u32 = 0;
const SCHED_IDLE: u32 = 5;

/// The scheduling policy of each writer thread of `pid`, by thread name.
fn writer_policies(pid: u32) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name start at field 3 (state); policy is field 41.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let policy = after_name.split_whitespace().nth(41 - 3);
        let name = name.trim();
        if ["sluice-recorder", "sluice-ledger", "sluice-audit"].contains(&name) {
            if let Some(policy) = policy.and_then(|p| p.parse().ok()) {
                out.insert(name.to_string(), policy);
            }
        }
    }
    out
}

/// Waits until the three writers are at the expected policies.
fn expect_policies(g: &Gateway, recorder: u32, ledger: u32, audit: u32) {
    let want: HashMap<String, u32> = [
        ("sluice-recorder", recorder),
        ("sluice-ledger", ledger),
        ("sluice-audit", audit),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p))
    .collect();
    let seen = wait_for(Duration::from_secs(5), || {
        let seen = writer_policies(g.child.id());
        (seen == want).then_some(seen)
    });
    assert!(
        seen.is_some(),
        "writer policies {:?}, expected {want:?}; stderr: {}",
        writer_policies(g.child.id()),
        g.stderr_text()
    );
}

/// Whether a thread of this process may enter SCHED_IDLE and leave it (what sluice probes).
fn may_leave_idle() -> bool {
    std::thread::spawn(|| {
        let set = |policy| {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Os(ThreadPriorityOsValue::default()),
                ThreadSchedulePolicy::Normal(policy),
            )
            .is_ok()
        };
        set(NormalThreadSchedulePolicy::Idle) && set(NormalThreadSchedulePolicy::Other)
    })
    .join()
    .unwrap()
}

fn records_config(dir: &Path, extra: &str) -> String {
    format!(
        "[store]\npath = \"{}\"\n{extra}\n[audit]\npath = \"{}\"\n",
        dir.join("ledger.db").display(),
        dir.join("audit.jsonl").display()
    )
}

#[test]
fn writers_run_idle_by_default_where_they_can_come_back() {
    let mock = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let g = gateway(&mock.url(), &records_config(dir.path(), ""));
    if may_leave_idle() {
        expect_policies(&g, SCHED_IDLE, SCHED_IDLE, SCHED_IDLE);
    } else {
        expect_policies(&g, SCHED_OTHER, SCHED_OTHER, SCHED_OTHER);
        assert!(g
            .stderr_text()
            .contains("stay at the normal scheduling policy"));
    }
}

#[test]
fn writer_priority_normal_keeps_every_writer_at_the_normal_policy() {
    let mock = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let g = gateway(
        &mock.url(),
        &format!(
            "[server]\nwriter_priority = \"normal\"\n{}",
            records_config(dir.path(), "")
        ),
    );
    expect_policies(&g, SCHED_OTHER, SCHED_OTHER, SCHED_OTHER);
}

#[test]
fn sync_durability_keeps_the_ledger_and_audit_writers_normal() {
    let mock = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let g = gateway(
        &mock.url(),
        &records_config(dir.path(), "durability = \"sync\""),
    );
    // Where no thread may come back from SCHED_IDLE, no writer is made idle at all (checked
    // too, rather than skipped).
    let recorder = if may_leave_idle() {
        SCHED_IDLE
    } else {
        SCHED_OTHER
    };
    expect_policies(&g, recorder, SCHED_OTHER, SCHED_OTHER);
}

#[test]
fn an_unknown_writer_priority_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nwriter_priority = \"lowest\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("server.writer_priority"), "{said}");
}

/// Clients that keep both cores busy for a couple of seconds: idle-policy writers may be
/// starved for a moment, return to the normal policy, and store every record all the same.
#[test]
fn idle_writers_store_every_record_under_a_saturating_load() {
    let mock = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut g = gateway(&mock.url(), &records_config(dir.path(), ""));
    let body = r#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = messages_request(body, "");
    let answered: usize = std::thread::scope(|s| {
        let clients: Vec<_> = (0..6)
            .map(|_| {
                let request = request.as_str();
                let addr = g.addr;
                s.spawn(move || {
                    let mut client = Client::connect(addr);
                    let mut ok = 0;
                    for _ in 0..1500 {
                        client.send(request.as_bytes());
                        match client.read_whole_response() {
                            Some(r) if r.status == 200 => ok += 1,
                            other => panic!("unexpected answer {other:?}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum()
    });
    assert_eq!(answered, 6 * 1500);
    g.terminate();
    assert_eq!(g.wait_exit(Duration::from_secs(20)), Some(0));
    let rows: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows as usize, answered,
        "every answered request has its ledger row"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().count() >= answered,
        "an audit line per request"
    );
}
