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

/// A test's PostgreSQL, Redis, mock upstream and directory for the nodes' files.
struct Stores {
    pg: Postgres,
    redis: Redis,
    mock: Proc,
    dir: tempfile::TempDir,
}

fn stores() -> Stores {
    Stores {
        pg: Postgres::start(),
        redis: Redis::start(),
        mock: mock(&["--no-request-log"]),
        dir: tempfile::tempdir().unwrap(),
    }
}

/// One node per name, each on the config `config` gives for it, in front of `mock`.
fn start_nodes(names: &[&str], mock: &Proc, config: impl Fn(&str) -> String) -> Vec<Gateway> {
    names
        .iter()
        .map(|n| gateway(&mock.url(), &config(n)))
        .collect()
}

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
    request(
        addr,
        &messages_request(SMALL_BODY, &format!("x-api-key: {key}\r\n")),
    )
    .status
}

/// A node's `/healthz`.
fn health(addr: std::net::SocketAddr) -> serde_json::Value {
    request(addr, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").json()
}

/// Waits until PostgreSQL holds more than `n` records.
fn wait_for_records(pg: &Postgres, n: i64) {
    wait_for(Duration::from_secs(20), || {
        (pg.scalar("SELECT COUNT(*) FROM requests") > n).then_some(())
    })
    .expect("records reach PostgreSQL");
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

/// Answered rows every node shipped, and their total cost in USD, for the team.
fn shipped(pg: &Postgres) -> (i64, f64) {
    let rows = pg.scalar("SELECT COUNT(*) FROM requests WHERE team = 'tc' AND status = 200");
    let pico =
        pg.scalar("SELECT COALESCE(SUM(cost_pico), 0)::BIGINT FROM requests WHERE team = 'tc'");
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
    let Stores {
        pg,
        redis,
        mock,
        dir,
    } = stores();
    let nodes = start_nodes(&["a", "b", "c"], &mock, |n| {
        node_config(dir.path(), n, &pg, &redis, "")
    });
    let config_of = |i: usize| nodes[i].dir().join("sluice.toml");
    let key = keys(
        &config_of(0),
        &["create", "--name", "alice", "--team", "tc"],
    );
    let key = key.trim();
    for node in &nodes {
        let works = wait_for(Duration::from_secs(2), || {
            (ask(node.addr, key) == 200).then_some(())
        });
        assert!(
            works.is_some(),
            "the key issued on a is refused on {}",
            node.addr
        );
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

/// `clients` threads, spread over `addrs`, each sending until it has been refused three times
/// in a row or `stop` is set; returns the answers that were 200.
fn hammer(addrs: &[std::net::SocketAddr], clients: usize, stop: &AtomicBool) -> u64 {
    let served = AtomicU64::new(0);
    std::thread::scope(|s| {
        for i in 0..clients {
            let addr = addrs[i % addrs.len()];
            let served = &served;
            s.spawn(move || {
                let mut refusals = 0;
                while refusals < 3 && !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = Client::try_connect(addr) else {
                        refusals += 1;
                        continue;
                    };
                    if c.try_send(
                        messages_request(SMALL_BODY, &format!("x-api-key: {TEAM_KEY}\r\n"))
                            .as_bytes(),
                    )
                    .is_err()
                    {
                        refusals += 1;
                        continue;
                    }
                    match c.read_whole_response().map(|r| r.status) {
                        Some(200) => {
                            refusals = 0;
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => refusals += 1,
                    }
                }
            });
        }
    });
    served.load(Ordering::Relaxed)
}

#[test]
fn a_team_budget_hammered_through_three_nodes_stays_within_its_cap() {
    let Stores {
        pg,
        redis,
        mock,
        dir,
    } = stores();
    let cap = 0.01;
    let nodes = start_nodes(&["a", "b", "c"], &mock, |n| {
        with_budget(node_config(dir.path(), n, &pg, &redis, ""), cap)
    });
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let served = hammer(&addrs, 100, &AtomicBool::new(false));
    wait_shipped(&pg, served as i64, Duration::from_secs(20));
    let (rows, spent) = shipped(&pg);
    eprintln!("served {served} ({rows} shipped), spent ${spent:.6} of ${cap}");
    assert_eq!(rows as u64, served, "every answered request is stored once");
    // With Redis reachable and no node crashing the bound is the cap itself (each request
    // costs less than it reserves).
    assert!(spent <= cap + 1e-9, "spent ${spent} over the ${cap} cap");
    assert!(
        spent >= cap * 0.8,
        "spent only ${spent} of ${cap}: the nodes starved each other"
    );
    for node in &nodes {
        assert_eq!(ask(node.addr, TEAM_KEY), 429, "the cap holds on every node");
    }
    // Lease renewals, not requests, reach Redis.
    let calls: u64 = nodes
        .iter()
        .map(|n| {
            let text = request(n.addr, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
            let body = String::from_utf8_lossy(&text.body).into_owned();
            body.lines()
                .find(|l| l.starts_with("sluice_shared_store_calls_total{store=\"redis\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
                .expect("the Redis call counter")
        })
        .sum();
    eprintln!("{calls} Redis calls for {served} requests");
    let health = health(addrs[0]);
    assert_eq!(health["cluster"]["redis"], "up", "{health}");
    assert_eq!(health["cluster"]["postgres"], "up", "{health}");
}

#[test]
fn a_node_killed_under_load_loses_no_answered_record() {
    let Stores {
        pg,
        redis,
        mock,
        dir,
    } = stores();
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        node_config(dir.path(), "a", &pg, &redis, "durability = \"sync\""),
    )
    .unwrap();
    let mut node = gateway_on_file(&mock.url(), &config);
    let stop = AtomicBool::new(false);
    let served = std::thread::scope(|s| {
        let load = s.spawn(|| hammer(&[node.addr], 8, &stop));
        let enough = wait_for(Duration::from_secs(20), || {
            (pg.scalar("SELECT COUNT(*) FROM requests") > 50).then_some(())
        });
        assert!(enough.is_some(), "no records reached PostgreSQL");
        let _ = node.child.kill(); // SIGKILL, mid-load
        let _ = node.child.wait();
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    node = gateway_on_file(&mock.url(), &config);
    let local = || {
        let conn = rusqlite::Connection::open(dir.path().join("a.db")).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM requests WHERE status = 200",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    let stored = local();
    let _ = &stored;
    wait_shipped(&pg, stored, Duration::from_secs(20));
    let (rows, _) = shipped(&pg);
    eprintln!("answered {served}, committed {stored}, in PostgreSQL {rows}");
    // sync durability: every answered request was committed before its last byte left; a
    // request committed as the node died may have gone unanswered (at most one per client).
    assert!(
        stored as u64 >= served,
        "answered {served}, committed only {stored}"
    );
    assert!(stored as u64 <= served + 8);
    assert_eq!(
        rows, stored,
        "PostgreSQL holds each committed record exactly once"
    );
    assert_eq!(ask(node.addr, TEAM_KEY), 200);
}

#[test]
fn postgres_stopped_mid_load_then_started_loses_and_duplicates_nothing() {
    let Stores {
        pg,
        redis,
        mock,
        dir,
    } = stores();
    let nodes = start_nodes(&["a", "b"], &mock, |n| {
        node_config(dir.path(), n, &pg, &redis, "")
    });
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let stop = AtomicBool::new(false);
    let served = std::thread::scope(|s| {
        let load = s.spawn(|| hammer(&addrs, 8, &stop));
        wait_for_records(&pg, 20);
        pg.halt();
        // Served while PostgreSQL is down: the outbox grows and /healthz says so.
        let grew = wait_for(Duration::from_secs(20), || {
            let health = health(addrs[0]);
            (health["cluster"]["postgres"] == "down"
                && health["cluster"]["outbox_pending"].as_u64() > Some(20))
            .then_some(health)
        });
        assert!(
            grew.is_some(),
            "the outbox did not grow while PostgreSQL was down"
        );
        pg.resume();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    wait_shipped(&pg, served as i64, Duration::from_secs(30));
    let (rows, _) = shipped(&pg);
    assert_eq!(
        rows as u64, served,
        "every answered request is stored exactly once"
    );
    let health = health(addrs[1]);
    assert_eq!(health["cluster"]["outbox_pending"], 0, "{health}");
}

#[test]
fn redis_stopped_mid_load_then_started_keeps_serving_and_counts_once() {
    let Stores {
        pg,
        mut redis,
        mock,
        dir,
    } = stores();
    let cap = 5.0; // far above what the test spends: the budget is shared, never reached
    let nodes = start_nodes(&["a", "b", "c"], &mock, |n| {
        with_budget(node_config(dir.path(), n, &pg, &redis, ""), cap)
    });
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let stop = AtomicBool::new(false);
    let refused = Arc::new(AtomicU64::new(0));
    let served = std::thread::scope(|s| {
        let load = s.spawn(|| hammer(&addrs, 6, &stop));
        wait_for_records(&pg, 20);
        redis.halt();
        // Past the leases' deadline the nodes spend their static share (cap / 3).
        let static_share = wait_for(Duration::from_secs(20), || {
            let health = health(addrs[0]);
            (health["cluster"]["budgets"] == "static_share").then_some(())
        });
        assert!(
            static_share.is_some(),
            "the node never fell back to its static share"
        );
        for addr in &addrs {
            if ask(*addr, TEAM_KEY) != 200 {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        redis.resume();
        let leases = wait_for(Duration::from_secs(20), || {
            let health = health(addrs[0]);
            (health["cluster"]["budgets"] == "leases" && health["cluster"]["redis"] == "up")
                .then_some(())
        });
        assert!(leases.is_some(), "the node never went back to its leases");
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "requests were refused while Redis was down"
    );
    wait_shipped(&pg, served as i64 + 3, Duration::from_secs(20));
    // Redis starts again empty: each bucket is seeded from what the nodes last saw, and every
    // node's spend after that is reported once — never more than PostgreSQL records.
    let (_, spent) = shipped(&pg);
    let day = sluice::limits::budget::today(); // a daily window is the day number
    let mut conn = redis.connection();
    let bucket: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("sluice:budget:team:tc:daily:{day}"))
        .query(&mut conn)
        .unwrap();
    let counted = bucket.get("spent").copied().unwrap_or(0) as f64 / 1e9;
    eprintln!("PostgreSQL: ${spent:.6}; Redis counts ${counted:.6} spent");
    assert!(
        counted <= spent + 1e-9,
        "Redis counted ${counted}, more than the ${spent} spent"
    );
}

fn minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

#[test]
fn a_team_rate_limit_holds_across_three_nodes() {
    let Stores {
        pg,
        redis,
        mock,
        dir,
    } = stores();
    let rpm = 60;
    let nodes = start_nodes(&["a", "b", "c"], &mock, |n| {
        format!(
            "{}[[teams]]\nname = \"tc\"\nrpm = {rpm}\ntpm = 100000000\n",
            node_config(dir.path(), n, &pg, &redis, "")
        )
    });
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    // One calendar minute: wait for at least 20 s of room (at most 20 s).
    let left = 60
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
    if left < 20 {
        std::thread::sleep(Duration::from_secs(left) + Duration::from_millis(50));
    }
    let start = minute();
    let served = hammer(&addrs, 30, &AtomicBool::new(false));
    assert_eq!(
        minute(),
        start,
        "the minute turned during the test despite 20 s of room: the machine is too slow for it"
    );
    eprintln!("{served} requests admitted under {rpm} per minute across three nodes");
    assert!(served <= rpm, "{served} admitted, over {rpm} per minute");
    assert!(served >= rpm - 5, "only {served} of {rpm} admitted");
    let refused = request(
        addrs[2],
        &messages_request(SMALL_BODY, &format!("x-api-key: {TEAM_KEY}\r\n")),
    );
    assert_error(&refused, 429, "rate_limit_error");
}

const ADMIN_KEY: &str = "sk-cluster-admin";

fn admin(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    admin_call(addr, ADMIN_KEY, method, path, body)
}

#[test]
fn a_budget_set_over_the_admin_api_of_one_node_holds_on_every_node_and_spend_is_one_view() {
    let Stores {
        pg,
        redis,
        mock,
        dir,
    } = stores();
    let admin_section = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{}\"\n",
        sluice::config::keys::hash_hex(ADMIN_KEY)
    );
    let nodes = start_nodes(&["a", "b", "c"], &mock, |n| {
        format!(
            "{}{admin_section}",
            node_config(dir.path(), n, &pg, &redis, "")
        )
    });
    for node in &nodes {
        assert_eq!(ask(node.addr, TEAM_KEY), 200);
    }
    // Set on a: the team may spend $0.0005 a day (the three requests above spent $0.000081).
    let api_a = nodes[0].admin_addr.unwrap();
    let (status, body) = admin(
        api_a,
        "PUT",
        "/admin/budgets",
        r#"{"scope":"team","name":"tc","period":"daily","limit_usd":0.0005}"#,
    );
    assert_eq!(status, 200, "{body}");
    // Every node lists it and refuses once the team's spend (from every node) reaches it.
    for node in &nodes[1..] {
        let listed = wait_for(Duration::from_secs(5), || {
            let (_, body) = admin(node.admin_addr.unwrap(), "GET", "/admin/budgets", "");
            body.to_string().contains("\"tc\"").then_some(())
        });
        assert!(
            listed.is_some(),
            "node {} does not list the budget: {}",
            node.addr,
            node.stderr_text()
        );
    }
    // Every request sent leaves one record (refused ones too): three above, and these.
    let mut sent = 3;
    let refused = wait_for(Duration::from_secs(20), || {
        sent += 1;
        (ask(nodes[2].addr, TEAM_KEY) == 429).then_some(())
    });
    assert!(
        refused.is_some(),
        "node c never applied the budget set on a"
    );
    // Every node has recorded and shipped every request sent.
    let shipped_all = wait_for(Duration::from_secs(10), || {
        (pg.scalar("SELECT COUNT(*) FROM requests") == sent).then_some(())
    });
    assert!(
        shipped_all.is_some(),
        "PostgreSQL holds {} of {sent} records",
        pg.scalar("SELECT COUNT(*) FROM requests")
    );
    let (served, spent) = shipped(&pg);
    eprintln!("{served} served, ${spent:.6} spent under a $0.0005 budget set on one node");
    // The spend before the budget was set counts too (the shared bucket starts from it).
    assert!(spent <= 0.0005 + 1e-9, "spent ${spent}");

    // One view: `sluice spend` on any node's config reads every node's spend.
    let config_of_b = nodes[1].dir().join("sluice.toml");
    let out = Command::new(BIN)
        .args(["spend", "--by", "team", "--config"])
        .arg(&config_of_b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let team = rows
        .iter()
        .find(|r| r["group"] == "tc")
        .expect("the team's row");
    let cli_spent = team["cost_usd"].as_f64().unwrap();
    assert!((cli_spent - spent).abs() < 1e-9, "{cli_spent} vs {spent}");
    let (_, by_api) = admin(api_a, "GET", "/admin/spend?by=team", "");
    let api_spent = by_api["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "tc")
        .and_then(|r| r["cost_usd"].as_f64())
        .unwrap();
    assert!((api_spent - spent).abs() < 1e-9, "{api_spent} vs {spent}");
    // The console's spend per day reads every node's records too.
    let mut client = sluice::store::postgres::connect(&pg.conninfo()).unwrap();
    let daily: f64 = sluice::store::postgres::spend_by_day(&mut client, "team", "2000-01-01")
        .unwrap()
        .iter()
        .filter(|d| d.group.as_deref() == Some("tc"))
        .map(|d| d.cost_usd)
        .sum();
    assert!((daily - spent).abs() < 1e-9, "{daily} vs {spent}");
    let (status, _) = admin(api_a, "GET", "/admin/spend?by=user_agent", "");
    assert_eq!(
        status, 200,
        "the shipped records carry the user agent column"
    );
}

#[test]
fn check_config_prints_the_overshoot_bound() {
    let (pg, redis) = (Postgres::start(), Redis::start());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        with_budget(node_config(dir.path(), "a", &pg, &redis, ""), 300.0),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("budget team tc ($300.00 daily): spend stays within the cap while Redis answers, beyond it by at most $100.00 per crashed node; each node cut off from Redis may add $100.00 (all 3: $300.00)"),
        "{text}"
    );
}

/// How PostgreSQL is out while a node starts.
#[derive(Clone, Copy)]
enum Outage {
    /// Stopped: connections to its port are refused.
    Down,
    /// Its port accepts connections and never answers (a hung server, or a pooler in front
    /// of a stopped one).
    Silent,
}

#[test]
fn a_node_starts_while_postgres_is_down_on_the_keys_and_policies_it_last_loaded() {
    node_starts_on_what_it_last_loaded(Outage::Down);
}

/// Fails before bounding PostgreSQL's connection handshake: the node waited for an answer
/// forever and never listened.
#[test]
fn a_node_starts_while_postgres_accepts_and_never_answers_on_what_it_last_loaded() {
    node_starts_on_what_it_last_loaded(Outage::Silent);
}

fn node_starts_on_what_it_last_loaded(outage: Outage) {
    let Stores {
        pg,
        redis,
        mock,
        dir,
    } = stores();
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!(
            "{}[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{}\"\n",
            node_config(dir.path(), "a", &pg, &redis, ""),
            sluice::config::keys::hash_hex(ADMIN_KEY)
        ),
    )
    .unwrap();
    let mut node = gateway_on_file(&mock.url(), &config);
    let key = keys(&config, &["create", "--name", "bob", "--team", "tc"]);
    let key = key.trim().to_string();
    let works = wait_for(Duration::from_secs(5), || {
        (ask(node.addr, &key) == 200).then_some(())
    });
    assert!(works.is_some(), "the issued key does not work");
    // A budget smaller than one request's reservation: the team's requests are refused.
    let (status, body) = admin(
        node.admin_addr.unwrap(),
        "PUT",
        "/admin/budgets",
        r#"{"scope":"team","name":"tc","period":"daily","limit_usd":0.00001}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ask(node.addr, &key), 429);
    node.terminate();
    assert_eq!(node.wait_exit(Duration::from_secs(20)), Some(0));

    pg.halt();
    // A listener that is never accepted from: the kernel completes the handshake and takes
    // the client's bytes, nothing ever answers.
    let silent = match outage {
        Outage::Down => None,
        Outage::Silent => Some(std::net::TcpListener::bind(("127.0.0.1", pg.port())).unwrap()),
    };
    let node = gateway_on_file(&mock.url(), &config);
    // The operator is told (fails before logging starts ahead of reading the stored policies:
    // the first warning was dropped).
    let said = node.stderr_text();
    assert!(
        said.contains("the cluster's policies cannot be read: using the copy"),
        "{said}"
    );
    assert!(
        said.contains("serving the issued keys as last loaded"),
        "{said}"
    );
    assert_eq!(ask(node.addr, "sk-sluice-never-issued"), 401);
    // The key is known (not 401) and the budget set over the admin API is in force.
    let refused = request(
        node.addr,
        &messages_request(SMALL_BODY, &format!("x-api-key: {key}\r\n")),
    );
    assert_error(&refused, 429, "billing_error");
    let health = health(node.addr);
    assert_eq!(health["cluster"]["postgres"], "down", "{health}");

    // PostgreSQL back: the node follows it again (a revocation reaches it).
    drop(silent);
    pg.resume();
    keys(&config, &["revoke", "--name", "bob"]);
    let refused = wait_for(Duration::from_secs(10), || {
        (ask(node.addr, &key) == 401).then_some(())
    });
    assert!(
        refused.is_some(),
        "the node did not follow PostgreSQL after the outage"
    );
}

#[test]
fn the_first_request_under_leased_limits_and_a_budget_is_admitted() {
    let Stores {
        pg,
        redis,
        mock,
        dir,
    } = stores();
    let hash = sluice::config::keys::hash_hex("sk-limited");
    let config = format!(
        "{}[[keys]]\nname = \"kl\"\nsha256 = \"{hash}\"\nteam = \"tl\"\nrpm = 1000\ntpm = 1000000\n\
         [[teams]]\nname = \"tl\"\nrpm = 1000\n\
         [[budgets]]\nscope = \"team\"\nname = \"tl\"\nlimit_usd = 100.0\nperiod = \"total\"\n",
        node_config(dir.path(), "a", &pg, &redis, "")
    );
    let node = gateway(&mock.url(), &config);
    for _ in 0..3 {
        let resp = request(
            node.addr,
            &messages_request(SMALL_BODY, "x-api-key: sk-limited\r\n"),
        );
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    }
}

#[test]
fn a_request_whose_lease_is_empty_while_redis_is_down_follows_the_failure_policy_at_once() {
    let Stores {
        pg,
        mut redis,
        mock,
        dir,
    } = stores();
    let hash = sluice::config::keys::hash_hex("sk-fresh");
    let config = format!(
        "{}[[keys]]\nname = \"fresh\"\nsha256 = \"{hash}\"\n\
         [[budgets]]\nscope = \"key\"\nname = \"fresh\"\nlimit_usd = 5.0\nperiod = \"daily\"\n",
        node_config(dir.path(), "a", &pg, &redis, "")
    );
    let node = gateway(&mock.url(), &config);
    redis.halt();
    // The key's budget was never leased: its lease is empty and Redis cannot fill it. The
    // node serves it from its static share ($5 / 3) instead of refusing.
    let resp = request(
        node.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-fresh\r\n"),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}
