//! Durable records: the SQLite spend ledger holds one row per request, survives restarts, is
//! drained completely on SIGTERM and loses nothing older than its commit window on `kill -9`;
//! the hash-chained audit log verifies, and `sluice audit verify` finds the first altered,
//! removed or inserted line, across rotated files too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn config(dir: &Path, extra: &str) -> String {
    let hash = sluice::config::keys::hash_hex("sk-ledger");
    format!(
        "[[keys]]\nname = \"ledger-key\"\nsha256 = \"{hash}\"\nteam = \"t1\"\n[store]\npath = \"{}\"\ncommit_interval = \"20ms\"\n[audit]\npath = \"{}\"\n{extra}",
        dir.join("ledger.db").display(),
        dir.join("audit.jsonl").display()
    )
}

fn spend(db: &Path, by: &str) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(["spend", "--by", by, "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("audit")
        .arg("verify")
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn send(gw: &Gateway, n: usize, stream: bool) {
    let mut client = Client::connect(gw.addr);
    for i in 0..n {
        let body = if stream && i % 2 == 0 {
            STREAM_BODY
        } else {
            SMALL_BODY
        };
        client.send(
            messages_request(
                body,
                "x-api-key: sk-ledger\r\nX-Claude-Code-Session-Id: sess-9\r\n",
            )
            .as_bytes(),
        );
        assert_eq!(client.read_response().unwrap().status, 200);
    }
}

#[test]
fn the_ledger_holds_every_request_and_survives_a_restart() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&mock.url(), &config(dir.path(), ""));
    send(&gw, 30, true);
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let logged: f64 = gw
        .records()
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .sum();
    let by_key = spend(&dir.path().join("ledger.db"), "identity");
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0]["group"], "key:ledger-key");
    assert_eq!(by_key[0]["requests"], 30);
    assert!(
        (by_key[0]["cost_usd"].as_f64().unwrap() - logged).abs() < 1e-9,
        "ledger and access log agree on cost"
    );
    assert_eq!(
        spend(&dir.path().join("ledger.db"), "session_id")[0]["group"],
        "sess-9"
    );
    // A new process on the same ledger carries on.
    let mut again = gateway(&mock.url(), &config(dir.path(), ""));
    send(&again, 5, false);
    again.terminate();
    assert_eq!(again.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        spend(&dir.path().join("ledger.db"), "team")[0]["requests"],
        35
    );
    // The same report as CSV and as a table.
    for (format, header) in [("csv", "group,agent,requests,"), ("table", "group ")] {
        let out = Command::new(BIN)
            .args(["spend", "--by", "team", "--format", format, "--db"])
            .arg(dir.path().join("ledger.db"))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(header), "{format}: {text}");
        assert!(
            lines[1].starts_with("t1") && lines[1].contains("35"),
            "{format}: {text}"
        );
    }
    let (ok, msg) = verify(&[dir.path().join("audit.jsonl")]);
    assert!(ok && msg.contains("35 lines"), "{msg}");
}

#[test]
fn sigterm_under_concurrent_load_drains_every_record() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&mock.url(), &config(dir.path(), ""));
    let addr = gw.addr;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for _ in 0..50 {
                    client
                        .send(messages_request(SMALL_BODY, "x-api-key: sk-ledger\r\n").as_bytes());
                    assert_eq!(client.read_response().unwrap().status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        spend(&dir.path().join("ledger.db"), "identity")[0]["requests"],
        200
    );
    let (ok, msg) = verify(&[dir.path().join("audit.jsonl")]);
    assert!(ok && msg.contains("200 lines"), "{msg}");
}

#[test]
fn kill_9_loses_nothing_older_than_the_commit_window() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&mock.url(), &config(dir.path(), ""));
    send(&gw, 100, true);
    // The documented window is commit_interval (20 ms) plus the commit itself: wait ten of them.
    std::thread::sleep(Duration::from_millis(200));
    gw.child.kill().unwrap();
    let _ = gw.child.wait();
    assert_eq!(
        spend(&dir.path().join("ledger.db"), "identity")[0]["requests"],
        100
    );
    let (ok, msg) = verify(&[dir.path().join("audit.jsonl")]);
    assert!(ok && msg.contains("100 lines"), "{msg}");
}

#[test]
fn sync_durability_loses_no_answered_request_to_kill_9_under_load() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    // A long commit interval: only the sync mode can explain a zero loss (with `interval` this
    // test fails: the rows of the last two seconds are gone).
    let config = config(dir.path(), "").replace(
        "commit_interval = \"20ms\"\n",
        "commit_interval = \"2s\"\ndurability = \"sync\"\n",
    );
    let mut gw = gateway(&mock.url(), &config);
    let addr = gw.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let stop = std::sync::Arc::clone(&stop);
            let progress = std::sync::Arc::clone(&progress);
            std::thread::spawn(move || {
                let mut answered = 0u64;
                let mut client = Client::connect(addr);
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || i >= 2000 {
                        break;
                    }
                    let body = if (i + t) % 2 == 0 {
                        STREAM_BODY
                    } else {
                        SMALL_BODY
                    };
                    client.send(messages_request(body, "x-api-key: sk-ledger\r\n").as_bytes());
                    // Answered = received whole (a stream cut by the kill is not).
                    match client.read_whole_response() {
                        Some(resp) if resp.status == 200 => answered += 1,
                        _ => break,
                    }
                    progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                answered
            })
        })
        .collect();
    // Kill it mid-load, once the load is well under way.
    let under_way = wait_for(Duration::from_secs(30), || {
        (progress.load(std::sync::atomic::Ordering::Relaxed) >= 80).then_some(())
    });
    assert!(under_way.is_some(), "the load did not start");
    gw.child.kill().unwrap();
    let _ = gw.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(answered > 20, "too little load: {answered}");
    let stored = spend(&dir.path().join("ledger.db"), "identity")[0]["requests"]
        .as_u64()
        .unwrap();
    // Every response a client received whole was committed first; at most the four requests
    // in flight at the kill may be stored without their last byte having gone out.
    assert!(
        (answered..=answered + 4).contains(&stored),
        "answered {answered}, stored {stored}"
    );
    // The audit log too: every answered request's line is there, and the chain verifies.
    let (ok, msg) = verify(&[dir.path().join("audit.jsonl")]);
    assert!(ok, "{msg}");
    let lines: u64 = msg
        .split_whitespace()
        .zip(msg.split_whitespace().skip(1))
        .find(|(_, w)| w.starts_with("line"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no line count in {msg}"));
    assert!(
        (answered..=answered + 4).contains(&lines),
        "answered {answered}, audit lines {lines}"
    );
    // A restart on the same files carries on: the ledger counts on, the chain continues.
    let mut again = gateway(&mock.url(), &config);
    send(&again, 3, false);
    again.terminate();
    assert_eq!(again.wait_exit(Duration::from_secs(10)), Some(0));
    let after = spend(&dir.path().join("ledger.db"), "identity")[0]["requests"]
        .as_u64()
        .unwrap();
    assert_eq!(after, stored + 3);
    let (ok, msg) = verify(&[dir.path().join("audit.jsonl")]);
    assert!(ok, "{msg}");
}

#[test]
fn sigterm_during_200_live_streams_drains_every_one() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(
        &mock.url(),
        &config(dir.path(), "[server]\ngrace_period = \"20s\"\n"),
    );
    let addr = gw.addr;
    let started = std::sync::Arc::new(std::sync::Barrier::new(201));
    let streams: Vec<_> = (0..200)
        .map(|_| {
            let started = std::sync::Arc::clone(&started);
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                // Eight events 150 ms apart: about a second per stream.
                client.send(
                    messages_request(
                        STREAM_BODY,
                        "x-api-key: sk-ledger\r\nx-mock-event-delay-ms: 150\r\n",
                    )
                    .as_bytes(),
                );
                let head = client.read_head();
                started.wait();
                let mut text = String::new();
                let complete =
                    client.read_chunks(|_, c| text.push_str(&String::from_utf8_lossy(c)));
                (head.status, complete && text.contains("message_stop"))
            })
        })
        .collect();
    started.wait(); // every stream has its head: all 200 are live
    gw.terminate();
    let results: Vec<(u16, bool)> = streams.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(results.iter().all(|(status, _)| *status == 200));
    let finished = results.iter().filter(|(_, whole)| *whole).count();
    assert_eq!(finished, 200, "streams cut short by the shutdown");
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0));
    assert_eq!(
        spend(&dir.path().join("ledger.db"), "identity")[0]["requests"],
        200
    );
    let (ok, msg) = verify(&[dir.path().join("audit.jsonl")]);
    assert!(ok && msg.contains("200 lines"), "{msg}");
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    edit(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn audit_verify_finds_the_first_tampered_line() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&mock.url(), &config(dir.path(), ""));
    send(&gw, 10, false);
    let refused = request(
        gw.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-wrong\r\n"),
    );
    assert_eq!(refused.status, 401);
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let log = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("\"decision\":\"refused\"") && text.contains("\"reason\":\"unauthorized\"")
    );
    assert!(
        !text.contains("sk-ledger") && !text.contains("sk-wrong"),
        "no secret in the audit log"
    );
    assert!(verify(std::slice::from_ref(&log)).0);
    let pristine = text.clone();
    for (what, edit, line) in [
        (
            "altered",
            Box::new(|l: &mut Vec<String>| l[3] = l[3].replace("\"status\":200", "\"status\":201"))
                as Box<dyn FnOnce(&mut Vec<String>)>,
            5,
        ),
        (
            "removed",
            Box::new(|l: &mut Vec<String>| {
                l.remove(4);
            }),
            5,
        ),
        (
            "inserted",
            Box::new(|l: &mut Vec<String>| {
                let copy = l[2].clone();
                l.insert(6, copy);
            }),
            7,
        ),
    ] {
        std::fs::write(&log, &pristine).unwrap();
        rewrite(&log, edit);
        let (ok, msg) = verify(std::slice::from_ref(&log));
        assert!(!ok, "{what} line not detected");
        assert!(
            msg.contains(&format!("audit.jsonl:{line}:")),
            "{what}: {msg}"
        );
    }
}

#[test]
fn the_audit_chain_continues_across_rotation() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&mock.url(), &config(dir.path(), "max_bytes = 4096\n"));
    send(&gw, 40, false);
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.jsonl.")
        })
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 2, "rotated files: {rotated:?}");
    rotated.push(dir.path().join("audit.jsonl"));
    let (ok, msg) = verify(&rotated);
    assert!(ok && msg.contains("40 lines"), "{msg}");
    // Leaving out a rotated file breaks the chain.
    let (ok, _) = verify(&rotated[1..]);
    assert!(!ok);
}

/// Sends one request on a fresh connection and returns its status.
fn status_of_one_request(gw: &Gateway) -> u16 {
    let mut client = Client::connect(gw.addr);
    client.send(messages_request(SMALL_BODY, "x-api-key: sk-ledger\r\n").as_bytes());
    client.read_response().unwrap().status
}

/// A gateway whose store is set to refuse requests while the ledger cannot commit.
fn fail_closed_gateway(mock: &Proc, dir: &Path) -> Gateway {
    gateway(
        &mock.url(),
        &config(dir, "").replace("[audit]", "on_failure = \"closed\"\n[audit]"),
    )
}

/// Polls (bounded) until a request gets `want`; returns whether it did.
fn eventually_status(gw: &Gateway, want: u16, within: Duration) -> bool {
    let tries = (within.as_millis() / 100).max(1) as usize;
    until_status(gw, want, tries, &mut Vec::new())
}

#[test]
fn fail_closed_refuses_while_the_ledger_cannot_commit_and_loses_nothing() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut gw = fail_closed_gateway(&mock, dir.path());
    assert_eq!(status_of_one_request(&gw), 200);
    // Another process takes the write lock: the ledger's next commit times out (SQLITE_BUSY).
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert_eq!(
        status_of_one_request(&gw),
        200,
        "accepted while still healthy"
    );
    assert!(
        eventually_status(&gw, 503, Duration::from_secs(30)),
        "fail-closed refuses once a commit has failed"
    );
    let mut refused = Client::connect(gw.addr);
    refused.send(messages_request(SMALL_BODY, "x-api-key: sk-ledger\r\n").as_bytes());
    let answer = refused.read_response().unwrap();
    assert_eq!(answer.status, 503);
    assert!(String::from_utf8_lossy(&answer.body).contains("\"type\":\"api_error\""));
    // The lock goes away: the pending batch commits on the next tick and requests flow again.
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    assert!(
        eventually_status(&gw, 200, Duration::from_secs(30)),
        "served again once the ledger recovers"
    );
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
    let served = gw.records().iter().filter(|r| r["status"] == 200).count();
    assert_eq!(
        spend(&db, "identity")[0]["requests"],
        served as u64,
        "every served request reached the ledger"
    );
}

/// Sends requests (100 ms apart, at most `tries`) until one gets `want`; keeps every status
/// seen.
fn until_status(gw: &Gateway, want: u16, tries: usize, seen: &mut Vec<u16>) -> bool {
    for _ in 0..tries {
        let status = status_of_one_request(gw);
        seen.push(status);
        if status == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_full_disk_is_refused_when_closed_and_nothing_is_lost_once_space_returns() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut gw = fail_closed_gateway(&mock, dir.path());
    let mut seen: Vec<u16> = (0..5).map(|_| status_of_one_request(&gw)).collect();
    assert!(seen.iter().all(|s| *s == 200));
    // Those five are committed before the disk fills.
    let committed = wait_for(Duration::from_secs(10), || {
        spend(&db, "identity")
            .first()
            .is_some_and(|row| row["requests"] == 5)
            .then_some(())
    });
    assert!(committed.is_some(), "the first requests were not committed");
    // "The disk is full": no file of the process may grow (RLIMIT_FSIZE of 1 byte); writes fail
    // with EFBIG, and SIGXFSZ must not kill the gateway.
    let pid = gw.child.id().to_string();
    let limit = |value: &str| {
        let ok = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={value}")])
            .status()
            .unwrap()
            .success();
        assert!(ok, "prlimit {value}");
    };
    limit("1:unlimited");
    assert!(
        until_status(&gw, 503, 300, &mut seen),
        "fail-closed refuses while writes fail"
    );
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the gateway survived SIGXFSZ"
    );
    limit("unlimited:unlimited");
    assert!(
        until_status(&gw, 200, 300, &mut seen),
        "served again once writes succeed"
    );
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
    // Every answered request is recorded: served ones in the ledger, all of them in the audit
    // log, whose chain has neither a gap nor half a line.
    let served = seen.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(
        spend(&db, "identity")[0]["requests"].as_u64().unwrap(),
        served
    );
    let (ok, msg) = verify(&[dir.path().join("audit.jsonl")]);
    assert!(ok, "{msg}");
    assert!(
        msg.contains(&format!("{} lines", seen.len())),
        "{msg} vs {} requests",
        seen.len()
    );
}
