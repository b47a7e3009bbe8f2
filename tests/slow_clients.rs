//! Slow and greedy clients: slowloris heads, trickled bodies, clients that never read their
//! response, 10,000 idle keep-alive connections and a connection flood past the configured
//! limit. Timeouts fire, memory stays bounded (the figure per idle connection is measured and
//! printed), and other clients keep being served throughout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const TIMEOUTS: &str = "[timeouts]\nhead_read = \"1s\"\nbody_read = \"1s\"\nbody_total = \"2s\"\nclient_write = \"1s\"\nidle_keep_alive = \"3s\"\n";

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The gateway's descriptor count once it has served a request and the count has stopped
/// moving (the ledger, audit and key-store files are opened on first use).
fn settled_fds(gw: &Gateway) -> usize {
    assert!(served(gw));
    let pid = gw.child.id();
    let mut last = open_fds(pid);
    let mut same = 0;
    let stable = wait_for(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(100));
        let now = open_fds(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        (same >= 5).then_some(now)
    });
    stable.expect("the descriptor count settled")
}

fn served(gw: &Gateway) -> bool {
    request(gw.addr, &messages_request(SMALL_BODY, "")).status == 200
}

/// Reads what the server sends until it closes; the status of the first response, if any.
fn status_then_close(stream: &mut TcpStream) -> Option<u16> {
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok())
}

#[test]
fn slowloris_heads_and_trickled_bodies_time_out_while_others_are_served() {
    let mock = mock(&["--no-request-log"]);
    let gw = gateway(&mock.url(), TIMEOUTS);
    // 200 connections that send a head one byte at a time, 200 ms apart.
    let head = messages_request(SMALL_BODY, "");
    let mut lorises: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(gw.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&head.as_bytes()[..1]).unwrap();
            s
        })
        .collect();
    // A body that trickles in: each piece within body_read, never complete by body_total.
    let mut trickle = TcpStream::connect(gw.addr).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let big = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: 100000\r\n\r\n{}",
        &SMALL_BODY[..SMALL_BODY.len() - 1]
    );
    trickle.write_all(big.as_bytes()).unwrap();
    let started = Instant::now();
    for i in 1..6 {
        std::thread::sleep(Duration::from_millis(200));
        for s in &mut lorises {
            let _ = s.write_all(&head.as_bytes()[i..=i]);
        }
        let _ = trickle.write_all(b" ");
        assert!(
            served(&gw),
            "a normal client was not served while under attack"
        );
    }
    for s in &mut lorises {
        assert_eq!(status_then_close(s), Some(408));
    }
    assert_eq!(status_then_close(&mut trickle), Some(408));
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(served(&gw));
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_others_are_served() {
    let mock = mock(&["--no-request-log"]);
    let gw = gateway(&mock.url(), TIMEOUTS);
    // A 32 MB answer to a client that never reads: sluice's writes stall once the socket
    // buffers fill, and client_write ends the connection.
    let mut greedy = TcpStream::connect(gw.addr).unwrap();
    greedy
        .write_all(messages_request(SMALL_BODY, "x-mock-reply-bytes: 33554432\r\n").as_bytes())
        .unwrap();
    let closed = wait_for(Duration::from_secs(10), || {
        gw.records()
            .iter()
            .find(|r| r["error"] == "client_gone")
            .cloned()
    });
    assert!(closed.is_some(), "the stalled client was not cut off");
    for _ in 0..5 {
        assert!(served(&gw));
    }
    drop(greedy);
}

#[test]
fn ten_thousand_idle_keep_alive_connections_stay_bounded_and_time_out() {
    // This process holds 10,000 sockets too.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mock = mock(&["--no-request-log"]);
    // Opening 10,000 connections takes seconds on a loaded machine: the idle timeout must not
    // close the first ones before all are open and counted.
    let gw = gateway(
        &mock.url(),
        &TIMEOUTS.replace("idle_keep_alive = \"3s\"", "idle_keep_alive = \"12s\""),
    );
    let pid = gw.child.id();
    let fds_before = settled_fds(&gw);
    let before = rss_kib(pid);
    let mut idle = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            .unwrap();
        idle.push(s);
    }
    // Every one answered and kept open.
    for s in &mut idle {
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let after = rss_kib(pid);
    let per_connection = (after.saturating_sub(before)) * 1024 / 10_000;
    eprintln!(
        "10,000 idle keep-alive connections: RSS {before} KiB -> {after} KiB, {per_connection} bytes each"
    );
    assert!(
        per_connection <= 24 * 1024,
        "{per_connection} bytes per idle connection"
    );
    assert!(open_fds(pid) >= fds_before + 10_000);
    assert!(
        served(&gw),
        "a new client was not served next to 10,000 idle ones"
    );
    // idle_keep_alive (12 s) closes them all, and the descriptors come back.
    let mut buf = [0u8; 64];
    for s in &mut idle {
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }
    drop(idle);
    let settled = wait_for(Duration::from_secs(5), || {
        (open_fds(pid) <= fds_before + 8).then_some(())
    });
    assert!(
        settled.is_some(),
        "fds {} vs {fds_before} before",
        open_fds(pid)
    );
}

#[test]
fn a_connection_flood_past_the_limit_is_shed_and_service_resumes() {
    let mock = mock(&["--no-request-log"]);
    let gw = gateway(
        &mock.url(),
        &format!("[server]\nmax_connections_per_worker = 50\n{TIMEOUTS}"),
    );
    // 2 workers × 50: the first 100 connections are served; beyond that, a connection is
    // closed as soon as it is accepted.
    let mut flood: Vec<TcpStream> = (0..400)
        .map(|_| {
            let s = TcpStream::connect(gw.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    // Readiness: at most 100 are kept, so sluice has shed at least 300 (closed them: their
    // client ends are in CLOSE_WAIT).
    let shed = wait_for(Duration::from_secs(10), || {
        let closed = sockets_towards(gw.addr.port())
            .iter()
            .filter(|s| s.state == TCP_CLOSE_WAIT)
            .count();
        (closed >= 300).then_some(())
    });
    assert!(shed.is_some(), "the flood was not shed");
    let mut kept = 0;
    for s in &mut flood {
        if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            .is_err()
        {
            continue;
        }
        let mut buf = [0u8; 256];
        if matches!(s.read(&mut buf), Ok(n) if n > 0) {
            kept += 1;
        }
    }
    assert!(
        (50..=100).contains(&kept),
        "{kept} flood connections served"
    );
    drop(flood);
    let resumed = wait_for(Duration::from_secs(5), || served(&gw).then_some(()));
    assert!(resumed.is_some(), "service did not resume after the flood");
}
