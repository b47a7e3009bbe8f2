//! `sluice bench --cluster`: what cluster mode costs. Two sluices with the same governance (a
//! virtual key and a JWT in turn, key and team rate limits, a team budget, the ledger and the
//! audit log) in front of the mock — one on its own, one a cluster node whose budgets and rate
//! limits are leased from a Redis and whose records ship to a PostgreSQL, both throwaway
//! servers started for the run. Latency at concurrency 1 is measured in alternating blocks
//! (the difference is what admission from leases, and the outbox beside the ledger, add; on a
//! shared 2-core machine its p99 moves by hundreds of µs from run to run); admission itself is
//! timed call by call for its p99 (the verdict); then a steady load through the node counts
//! the calls it made to Redis and PostgreSQL per request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Serialize;

use super::stores::{Postgres, Redis, StoreServerError};
use super::{
    claude_code_sized_body, governance_config, interleaved, load, start_mock, start_sluice,
    throughput, write_json, BenchArgs, BenchError, Percentiles, ScratchDir, Target,
};

/// What the cluster run measured.
#[derive(Debug, Serialize)]
pub struct ClusterReport {
    /// One admission (rate limits, budget reserve and settle) timed alone, ns as (p50, p99):
    /// single node, cluster node spending leases.
    pub admission_single_ns: (u64, u64),
    pub admission_cluster_ns: (u64, u64),
    pub single_node_latency_us: Percentiles,
    pub cluster_latency_us: Percentiles,
    /// Cluster minus single node, per percentile.
    pub cluster_added_us: Percentiles,
    pub cluster_throughput_rps: f64,
    /// Requests of the steady load (its warm-up included).
    pub steady_requests: u64,
    pub redis_calls: u64,
    pub postgres_calls: u64,
    /// (Redis + PostgreSQL calls) / requests during the steady load.
    pub store_calls_per_request: f64,
    pub passed: bool,
}

/// The budget for the difference in admission p99, µs.
const ADDED_P99_BUDGET_US: f64 = 10.0;
/// Admissions timed per kind.
const ADMISSIONS: usize = 1_000_000;
/// The budget for shared-store calls per request at steady load.
const CALLS_PER_REQUEST_BUDGET: f64 = 0.05;

impl From<StoreServerError> for BenchError {
    fn from(e: StoreServerError) -> Self {
        BenchError::Io(std::io::Error::other(e.to_string()))
    }
}

pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let (pg, redis) = (Postgres::start()?, Redis::start()?);
    let mock = start_mock()?;
    let upstream = format!("http://{}", mock.addr);
    let scratch = ScratchDir::create("bench-cluster")?;
    let dir = scratch.path();
    let governance = governance_config();
    let records = |name: &str, backend: &str| {
        format!(
            "[store]\nbackend = \"{backend}\"\npath = \"{}\"\n[audit]\npath = \"{}\"\n",
            dir.join(format!("{name}.db")).display(),
            dir.join(format!("{name}-audit.jsonl")).display()
        )
    };
    let single = start_sluice(
        args,
        dir,
        "single",
        &format!("{governance}{}", records("single", "sqlite")),
        Some(&upstream),
    )?;
    let cluster_config = format!(
        "{governance}{}[cluster]\nnode_id = \"bench\"\nnodes = 1\npostgres = \"{}\"\nredis = \"{}\"\n",
        records("node", "postgres"),
        pg.conninfo(),
        redis.url()
    );
    let node = start_sluice(args, dir, "node", &cluster_config, Some(&upstream))?;
    let targets = [
        Target {
            addr: single.addr,
            pid: single.pid(),
            jwt: true,
        },
        Target {
            addr: node.addr,
            pid: node.pid(),
            jwt: true,
        },
    ];
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    let report = runtime.block_on(measure(args, &targets))?;
    print(&report);
    write_json(args, &report)?;
    report
        .passed
        .then_some(())
        .ok_or(BenchError::Failed("cluster"))
}

async fn measure(args: &BenchArgs, targets: &[Target; 2]) -> std::io::Result<ClusterReport> {
    let body = claude_code_sized_body(false);
    let path = "/v1/messages?beta=true";
    for target in targets {
        load::measure(target.addr, target.requests(path, &body), 200).await?;
    }
    let latency = interleaved(targets, path, &body, args.requests).await?;
    let (single, cluster) = (
        Percentiles::of(&latency[0].total),
        Percentiles::of(&latency[1].total),
    );
    let before = store_calls(targets[1].addr)?;
    let (rps, _, _) = throughput(args, targets[1]).await?;
    let after = store_calls(targets[1].addr)?;
    let requests = (args.throughput_requests + args.throughput_requests / 10) as u64;
    let (redis, postgres) = (after.0 - before.0, after.1 - before.1);
    let per_request = (redis + postgres) as f64 / requests.max(1) as f64;
    let added = cluster.minus(&single);
    let [admission_single, admission_cluster] = super::admission::percentiles_ns(ADMISSIONS);
    let admission_added_us = (admission_cluster.1 as f64 - admission_single.1 as f64) / 1000.0;
    Ok(ClusterReport {
        passed: admission_added_us <= ADDED_P99_BUDGET_US && per_request < CALLS_PER_REQUEST_BUDGET,
        admission_single_ns: admission_single,
        admission_cluster_ns: admission_cluster,
        single_node_latency_us: single,
        cluster_latency_us: cluster,
        cluster_added_us: added,
        cluster_throughput_rps: rps,
        steady_requests: requests,
        redis_calls: redis,
        postgres_calls: postgres,
        store_calls_per_request: per_request,
    })
}

/// The node's (Redis, PostgreSQL) call counters, from its `/metrics`.
fn store_calls(addr: SocketAddr) -> std::io::Result<(u64, u64)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let counter = |store: &str| {
        let name = format!("sluice_shared_store_calls_total{{store=\"{store}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((counter("redis"), counter("postgres")))
}

#[allow(clippy::print_stdout)]
fn print(r: &ClusterReport) {
    let p = |x: &Percentiles| format!("{:>8.1} {:>8.1} {:>8.1}", x.p50, x.p99, x.p999);
    println!("sluice bench --cluster; latency at concurrency 1 in µs as p50 p99 p99.9");
    println!("  single node          {}", p(&r.single_node_latency_us));
    println!("  cluster node         {}", p(&r.cluster_latency_us));
    println!("  cluster − single     {}", p(&r.cluster_added_us));
    println!(
        "  steady load: {:.0} req/s through the node; {} requests made {} Redis and {} PostgreSQL calls = {:.4} per request",
        r.cluster_throughput_rps, r.steady_requests, r.redis_calls, r.postgres_calls, r.store_calls_per_request
    );
    println!(
        "  admission alone (ns, p50 p99): single node {} {}, cluster node {} {}",
        r.admission_single_ns.0,
        r.admission_single_ns.1,
        r.admission_cluster_ns.0,
        r.admission_cluster_ns.1
    );
    let added_p99_us = (r.admission_cluster_ns.1 as f64 - r.admission_single_ns.1 as f64) / 1000.0;
    println!(
        "  verdict: admission p99 {added_p99_us:+.3} µs in a cluster (budget {ADDED_P99_BUDGET_US}), {:.4} store calls per request (budget {CALLS_PER_REQUEST_BUDGET}): {}",
        r.store_calls_per_request,
        if r.passed { "met" } else { "NOT met" }
    );
}
