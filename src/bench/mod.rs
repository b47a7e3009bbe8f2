//! The bundled load bench (`sluice bench`): starts the mock upstream and sluice as child
//! processes, then measures the same loads directly against the mock and through sluice in one
//! run, so the difference is what sluice adds: latency at concurrency 1 with a Claude Code-sized
//! (77 KB) request, time to first byte on SSE, throughput at concurrency 50 (and through nginx,
//! when installed), sluice's CPU time per request and its memory. Bounded by request counts;
//! loopback only.

pub mod load;
pub mod procs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

use load::Latencies;
use procs::{cpu_time, rss_kib, Nginx, Server};

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Requests per target for the concurrency-1 latency runs.
    #[arg(long, default_value_t = 4000)]
    pub requests: usize,
    /// Requests per target for the throughput runs.
    #[arg(long, default_value_t = 40_000)]
    pub throughput_requests: usize,
    /// Concurrent connections for the throughput runs.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// sluice worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Also write the results here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Serialize, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: us(0.50),
            p99: us(0.99),
            p999: us(0.999),
        }
    }

    fn minus(&self, other: &Percentiles) -> Percentiles {
        Percentiles {
            p50: self.p50 - other.p50,
            p99: self.p99 - other.p99,
            p999: self.p999 - other.p999,
        }
    }
}

/// Everything the bench measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub request_body_bytes: usize,
    pub latency_direct_us: Percentiles,
    pub latency_sluice_us: Percentiles,
    pub latency_added_us: Percentiles,
    pub sse_ttfb_direct_us: Percentiles,
    pub sse_ttfb_sluice_us: Percentiles,
    pub sse_ttfb_added_us: Percentiles,
    pub throughput_direct_rps: f64,
    pub throughput_sluice_rps: f64,
    pub throughput_nginx_rps: Option<f64>,
    pub sluice_vs_nginx: Option<f64>,
    pub sluice_cpu_us_per_request: f64,
    pub sluice_rss_mib: f64,
    pub sluice_peak_rss_mib: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the bench and prints the table.
pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let mock = Server::start_self(&["mock-upstream", "--listen", "127.0.0.1:0", "--workers", "1"])?;
    let upstream = format!("http://{}", mock.addr);
    let workers = args.workers.to_string();
    let sluice = Server::start_self(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--upstream-api-key",
        "sk-bench-upstream",
        "--workers",
        &workers,
    ])?;
    let nginx = Nginx::start(mock.addr);
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    let report = runtime.block_on(measure_all(
        args,
        mock.addr,
        &sluice,
        nginx.as_ref().map(|n| n.addr),
    ))?;
    print_table(&report);
    if let Some(path) = &args.json {
        #[expect(
            clippy::disallowed_methods,
            reason = "the bench's report, written after the run"
        )]
        std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap_or_default())?;
    }
    Ok(())
}

async fn measure_all(
    args: &BenchArgs,
    direct: SocketAddr,
    sluice: &Server,
    nginx: Option<SocketAddr>,
) -> std::io::Result<Report> {
    let big = claude_code_sized_body(false);
    let stream_body = claude_code_sized_body(true);
    let small = br#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let via = sluice.addr;
    let path = "/v1/messages?beta=true";
    // Warm up connections, pools and caches on both paths.
    for addr in [direct, via] {
        load::measure(addr, load::request(addr, path, &big), 200).await?;
    }
    let (lat_direct, lat_sluice) = interleaved(direct, via, path, &big, args.requests).await?;
    let (ttfb_direct, ttfb_sluice) =
        interleaved(direct, via, path, &stream_body, args.requests / 2).await?;
    let rps = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let n = args.throughput_requests;
    let t_direct = load::concurrent(
        direct,
        load::request(direct, path, small),
        args.concurrency,
        n,
    )
    .await?;
    let cpu_before = cpu_time(sluice.pid()).unwrap_or_default();
    let t_sluice =
        load::concurrent(via, load::request(via, path, small), args.concurrency, n).await?;
    let cpu_used = cpu_time(sluice.pid())
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let t_nginx = match nginx {
        Some(addr) => {
            load::concurrent(
                addr,
                load::request(addr, path, small),
                args.concurrency,
                n / 10,
            )
            .await?;
            Some(
                load::concurrent(addr, load::request(addr, path, small), args.concurrency, n)
                    .await?,
            )
        }
        None => None,
    };
    let (rss, peak) = rss_kib(sluice.pid()).unwrap_or_default();
    let latency_direct = Percentiles::of(&lat_direct.total);
    let latency_sluice = Percentiles::of(&lat_sluice.total);
    let sse_direct = Percentiles::of(&ttfb_direct.first_byte);
    let sse_sluice = Percentiles::of(&ttfb_sluice.first_byte);
    let throughput_sluice = rps(n, t_sluice);
    let throughput_nginx = t_nginx.map(|t| rps(n, t));
    Ok(Report {
        request_body_bytes: big.len(),
        latency_added_us: latency_sluice.minus(&latency_direct),
        latency_direct_us: latency_direct,
        latency_sluice_us: latency_sluice,
        sse_ttfb_added_us: sse_sluice.minus(&sse_direct),
        sse_ttfb_direct_us: sse_direct,
        sse_ttfb_sluice_us: sse_sluice,
        throughput_direct_rps: rps(n, t_direct),
        throughput_sluice_rps: throughput_sluice,
        sluice_vs_nginx: throughput_nginx.map(|r| throughput_sluice / r),
        throughput_nginx_rps: throughput_nginx,
        sluice_cpu_us_per_request: cpu_used.as_secs_f64() * 1e6 / n as f64,
        sluice_rss_mib: rss as f64 / 1024.0,
        sluice_peak_rss_mib: peak as f64 / 1024.0,
    })
}

/// Direct and through-sluice runs in alternating blocks, so drift hits both alike.
async fn interleaved(
    direct: SocketAddr,
    via: SocketAddr,
    path: &str,
    body: &[u8],
    count: usize,
) -> std::io::Result<(Latencies, Latencies)> {
    let block = 250.min(count.max(1));
    let mut d = load::measure(direct, load::request(direct, path, body), 1).await?;
    let mut s = load::measure(via, load::request(via, path, body), 1).await?;
    let mut done = 0;
    while done < count {
        let n = block.min(count - done);
        load::sequential(direct, load::request(direct, path, body), n, &mut d).await?;
        load::sequential(via, load::request(via, path, body), n, &mut s).await?;
        done += n;
    }
    Ok((d, s))
}

/// A request shaped like Claude Code's main request: `model` first, ~77 KB of messages, system
/// blocks and tool schemas.
pub fn claude_code_sized_body(stream: bool) -> Vec<u8> {
    let filler = |n: usize| "lorem ipsum dolor sit amet ".repeat(n / 27 + 1)[..n].to_string();
    let tools: Vec<serde_json::Value> = (0..24)
        .map(|i| {
            serde_json::json!({
                "name": format!("Tool{i}"),
                "description": filler(1500),
                "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                    "properties": {"command": {"type": "string", "description": filler(200)}}, "required": ["command"]},
            })
        })
        .collect();
    let body = serde_json::json!({
        "model": "claude-opus-4-8",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": format!("<system-reminder>\n{}</system-reminder>\n", filler(6000))},
                {"type": "text", "text": "echo hello", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": filler(6000)},
        ],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.330.476; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": filler(12000), "cache_control": {"type": "ephemeral"}},
        ],
        "tools": tools,
        "metadata": {"user_id": "{\"device_id\":\"077e\",\"account_uuid\":\"\",\"session_id\":\"01430f9c\"}"},
        "max_tokens": 64000,
        "thinking": {"type": "adaptive"},
        "stream": stream,
    });
    body.to_string().into_bytes()
}

#[allow(clippy::print_stdout)]
fn print_table(r: &Report) {
    let row = |name: &str, d: &Percentiles, s: &Percentiles, a: &Percentiles| {
        println!(
            "{name:<34} {:>9.1} {:>9.1} {:>9.1} | {:>9.1} {:>9.1} {:>9.1} | {:>8.1} {:>8.1} {:>8.1}",
            d.p50, d.p99, d.p999, s.p50, s.p99, s.p999, a.p50, a.p99, a.p999
        )
    };
    println!(
        "{:<34} {:>29} | {:>29} | {:>26}",
        "µs (p50 p99 p99.9)", "direct", "through sluice", "added by sluice"
    );
    row(
        &format!("latency c=1, {} KB request", r.request_body_bytes / 1000),
        &r.latency_direct_us,
        &r.latency_sluice_us,
        &r.latency_added_us,
    );
    row(
        "SSE time to first byte, c=1",
        &r.sse_ttfb_direct_us,
        &r.sse_ttfb_sluice_us,
        &r.sse_ttfb_added_us,
    );
    println!(
        "throughput c=50 direct      {:>10.0} req/s",
        r.throughput_direct_rps
    );
    println!(
        "throughput c=50 via sluice  {:>10.0} req/s",
        r.throughput_sluice_rps
    );
    match (r.throughput_nginx_rps, r.sluice_vs_nginx) {
        (Some(n), Some(x)) => {
            println!("throughput c=50 via nginx   {n:>10.0} req/s  (sluice/nginx = {x:.2}x)")
        }
        _ => println!("throughput c=50 via nginx   (nginx not installed)"),
    }
    println!(
        "sluice CPU per request      {:>10.1} µs",
        r.sluice_cpu_us_per_request
    );
    println!(
        "sluice RSS                  {:>10.1} MiB (peak {:.1} MiB)",
        r.sluice_rss_mib, r.sluice_peak_rss_mib
    );
}
