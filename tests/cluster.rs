//! Several nodes, one gateway: three sluice processes share issued keys and spend through a
//! PostgreSQL of the test's own and a team budget through a Redis of its own. Keys issued on
//! one node work on the others and a revocation reaches every node within a second; a budget
//! hammered through all three stays within its cap; a node killed with SIGKILL loses no
//! answered record; Redis and PostgreSQL outages are ridden out without losing or double
//! counting anything.

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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stores::{Postgres, Redis};
use common::*;

/// One haiku request through the mock costs $0.000027 and reserves $0.000124.
const TEAM_KEY: &str = "sk-cluster-team";

/// A node's config: its ledger (the outbox) and audit log in `dir`, keys and spend in `pg`,
/// budgets leased from `redis`.
fn node_config(dir: &Path, node: &str, pg: &Postgres, redis: &Redis, extra: &str) -> String {
    let hash = sluice::config::keys::hash_hex(TEAM_KEY);
    format!(
        "[[keys]]\nname = \"kt\"\nsha256 = \"{hash}\"\nteam = \"tc\"\n\
         [store]\nbackend = \"postgres\"\npath = \"{}\"\ncommit_interval = \"20ms\"\n{extra}\n\
         [audit]\npath = \"{}\"\n\
         [cluster]\nnode_id = \"{node}\"\nnodes = 3\npostgres = \"{}\"\nredis = \"{}\"\n",
        dir.join(format!("{node}.db")).display(),
        dir.join(format!("{node}-audit.jsonl")).display(),
        pg.conninfo(),
        redis.url(),
    )
}

fn with_budget(config: String, limit_usd: f64) -> String {
    format!("{config}[[budgets]]\nscope = \"team\"\nname = \"tc\"\nlimit_usd = {limit_usd}\nperiod = \"daily\"\n")
}

fn ask(addr: std::net::SocketAddr, key: &str) -> u16 {
    request(addr, &messages_request(SMALL_BODY, &format!("x-api-key: {key}\r\n"))).status
}

/// Runs `sluice keys …` on a node's config file; returns its standard output.
fn keys(config: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Rows every node shipped, and their total cost in USD, for the team.
fn shipped(pg: &Postgres) -> (i64, f64) {
    let rows = pg.scalar("SELECT COUNT(*) FROM requests WHERE team = 'tc'");
    let pico = pg.scalar("SELECT COALESCE(SUM(cost_pico), 0)::BIGINT FROM requests WHERE team = 'tc'");
    (rows, pico as f64 / 1e12)
}

/// Waits until PostgreSQL holds `n` of the team's rows (the outboxes shipped everything).
fn wait_shipped(pg: &Postgres, n: i64, within: Duration) {
    let done = wait_for(within, || (shipped(pg).0 >= n).then_some(()));
    assert!(
        done.is_some(),
        "PostgreSQL holds {} of {n} records",
        shipped(pg).0
    );
}

#[test]
fn a_key_issued_on_one_node_works_on_all_and_a_revocation_reaches_every_node_within_a_second() {
    let (pg, redis, mock) = (Postgres::start(), Redis::start(), mock(&["--no-request-log"]));
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Gateway> = ["a", "b", "c"]
        .iter()
        .map(|n| gateway(&mock.url(), &node_config(dir.path(), n, &pg, &redis, "")))
        .collect();
    let config_of = |i: usize| nodes[i].dir().join("sluice.toml");
    let key = keys(&config_of(0), &["create", "--name", "alice", "--team", "tc"]);
    let key = key.trim();
    for node in &nodes {
        let works = wait_for(Duration::from_secs(2), || {
            (ask(node.addr, key) == 200).then_some(())
        });
        assert!(works.is_some(), "the key issued on a is refused on {}", node.addr);
    }
    assert_eq!(ask(nodes[1].addr, "sk-sluice-not-issued"), 401);
    let listed = keys(&config_of(2), &["list"]);
    assert!(listed.contains("\"name\":\"alice\""), "{listed}");

    keys(&config_of(1), &["revoke", "--name", "alice"]);
    let revoked_at = Instant::now();
    for i in [0, 2] {
        let refused = wait_for(Duration::from_secs(5), || {
            (ask(nodes[i].addr, key) == 401).then(|| revoked_at.elapsed())
        })
        .expect("the revoked key still works");
        eprintln!("node {i} refuses the key revoked on node 1 after {refused:?}");
        assert!(
            refused < Duration::from_secs(1),
            "node {i} refused the revoked key only after {refused:?}"
        );
    }
    // Each node audits the change in its own chain, every line naming the node.
    let audit = dir.path().join("c-audit.jsonl");
    let lines = wait_for(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        text.contains("key_revoked").then_some(text)
    })
    .expect("node c audits the revocation");
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["node"], "c", "{line}");
    }
    let verified = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&audit)
        .status()
        .unwrap();
    assert!(verified.success());
}
