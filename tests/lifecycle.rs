//! Starting and stopping: graceful shutdown finishes in-flight streams, a taken port is refused,
//! and the config and key commands behave.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_drains_an_in_flight_stream_then_exits_zero() {
    let mock = mock(&[]);
    let mut gw = gateway(&mock.url(), "");
    let mut client = Client::connect(gw.addr);
    client.send(
        messages_request(
            STREAM_BODY,
            "x-mock-event-delay-ms: 100\r\nx-mock-reply: a b c d e f\r\n",
        )
        .as_bytes(),
    );
    let head = client.read_head();
    assert_eq!(head.status, 200);
    let mut events = 0;
    let mut terminated = false;
    let complete = client.read_chunks(|_, _| {
        events += 1;
        if events == 2 && !terminated {
            gw.terminate();
            terminated = true;
        }
    });
    assert!(terminated);
    assert!(complete, "the stream was cut by shutdown");
    assert_eq!(events, 12);
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        gw.stderr_text()
    );
    let records = gw.records();
    assert_eq!(records.len(), 1, "the access log was flushed before exit");
    assert_eq!(records[0]["stream_complete"], true);
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    let mock = mock(&[]);
    let mut gw = gateway(&mock.url(), "[server]\ngrace_period = \"60s\"\n");
    let mut client = Client::connect(gw.addr);
    client.send(messages_request(SMALL_BODY, "").as_bytes());
    assert_eq!(client.read_response().unwrap().status, 200);
    let started = Instant::now();
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(client.closed());
}

#[test]
fn a_port_in_use_is_refused() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &addr,
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
    // And when the holder is another sluice (SO_REUSEPORT on both sides).
    let first = gateway("http://127.0.0.1:9", "");
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &first.addr.to_string(),
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second sluice shared the port");
}

#[test]
fn check_config_names_the_path_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n[[upstreams]]\nname = \"b\"\nurl = \"gopher://y\"\n", "upstreams[1].url"),
        ("[server]\nlisten = \"127.0.0.1:4100\"\nworkerz = 2\n", "server"),
        ("[[routes]]\nmodel = \"claude-*\"\nupstream = \"missing\"\n", "routes[0].upstream"),
        ("[timeouts]\nstream_idle = \"forever\"\n", "timeouts.stream_idle"),
    ];
    for (text, path) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(": {path}")),
            "expected {path} in {err}"
        );
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, include_str!("../sluice.example.toml")).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keys_hash_prints_the_digest_only() {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["keys", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-virtual-alice\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        sluice::config::keys::hash_hex("sk-virtual-alice")
    );
}

/// A SIGTERM sent the moment sluice announces `listening on` still shuts it down gracefully
/// (exit 0), never kills it: the signals are caught before the announcement.
#[test]
fn sigterm_right_after_the_announcement_is_a_graceful_shutdown() {
    let mock = mock(&["--no-request-log"]);
    for _ in 0..10 {
        let mut gw = gateway(&mock.url(), "");
        gw.terminate();
        assert_eq!(
            gw.wait_exit(Duration::from_secs(10)),
            Some(0),
            "{}",
            gw.stderr_text()
        );
    }
}

/// The gateway's heap is not backed by transparent huge pages: an idle gateway held a 2 MiB
/// page for every heap region a thread had touched (8 MiB of its 9 MiB of anonymous memory),
/// and under load about half its heap. The process turns them off for itself (its status says
/// `THP_enabled: 0`), and the allocator no longer asks for them, so on a kernel set to
/// `madvise` (the usual default) or `never` no anonymous memory is in huge pages. A kernel set
/// to `always` may already have backed the first heap pages before `main` runs.
#[test]
fn the_heap_is_not_held_in_transparent_huge_pages() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    for _ in 0..20 {
        let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
        assert_eq!(resp.status, 200);
    }
    let pid = gw.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let thp_enabled = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    assert_eq!(thp_enabled, Some("0"), "{status}");
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !mode.contains("[always]") {
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
        let huge = rollup
            .lines()
            .find_map(|l| l.strip_prefix("AnonHugePages:"))
            .map(|v| v.trim().trim_end_matches("kB").trim().to_string());
        assert_eq!(huge.as_deref(), Some("0"), "{rollup}");
    }
}
