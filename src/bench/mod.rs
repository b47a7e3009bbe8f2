//! The bundled load bench (`sluice bench`): starts the mock upstream and sluice as child
//! processes, then measures the same loads directly against the mock and through sluice in one
//! run, so the difference is what sluice adds: latency at concurrency 1 with a Claude Code-sized
//! (77 KB) request, time to first byte on SSE, throughput at concurrency 50 (and through nginx,
//! when installed), sluice's CPU time per request and its memory. Bounded by request counts;
//! loopback only.

pub mod admission;
pub mod bodies;
pub mod cluster;
pub mod load;
pub mod medians;
pub mod plot;
pub mod procs;
pub mod soak;
pub mod stores;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

pub use bodies::claude_code_sized_body;
use load::Latencies;
use procs::{anonymous_kib, cpu_split, rss_kib, Nginx, ScratchDir, Server};

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
    /// sluice worker threads, and nginx worker processes (the same number). A list (`1,2`)
    /// runs the whole comparison once per count and prints each, then the ratios side by side;
    /// the other modes (soak, streams, TLS, cluster) use the first count.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Runs of the whole comparison (each worker count in turn, run after run); with more than
    /// one, the medians of the main figures by worker count follow, each run's value beside
    /// its median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// sluice's I/O driver: auto, io_uring or epoll.
    #[arg(long, default_value = "auto")]
    pub io_driver: String,
    /// How sluice schedules its record writers: idle or normal (`server.writer_priority`).
    #[arg(long, default_value = "idle")]
    pub writer_priority: String,
    /// Also write the results here as JSON (the comparison: an array, one report per worker
    /// count and run).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw the results here as an SVG: latency percentile curves and throughput bars
    /// (one panel per worker count).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Instead of the comparison: a soak of this many seconds (RSS, p99 and descriptors per
    /// 10-second window).
    #[arg(long)]
    pub soak_seconds: Option<u64>,
    /// Requests per second during the soak.
    #[arg(long, default_value_t = 200)]
    pub soak_rate: u64,
    /// Instead of the comparison: hold this many SSE streams open at once.
    #[arg(long)]
    pub streams: Option<usize>,
    /// Instead of the comparison: HTTPS termination, sluice against nginx (same certificate
    /// and cipher suite).
    #[arg(long)]
    pub tls: bool,
    /// Instead of the comparison: a cluster node (leases from a Redis, records shipped to a
    /// PostgreSQL, both started for the run) against a single node.
    #[arg(long)]
    pub cluster: bool,
}

impl BenchArgs {
    /// The worker count of a single run: the first one listed.
    pub fn worker_count(&self) -> usize {
        self.workers.first().copied().unwrap_or(1)
    }

    /// The same arguments for one run with `workers` workers.
    fn with_workers(&self, workers: usize) -> Self {
        Self {
            workers: vec![workers],
            ..self.clone()
        }
    }
}

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Serialize, Clone, Copy, Default)]
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

/// One proxy's figures (sluice, or nginx for comparison).
#[derive(Debug, Serialize, Default)]
pub struct ProxyFigures {
    /// Latency at concurrency 1 with the Claude Code-sized request.
    pub latency_us: Percentiles,
    /// Latency minus the direct latency.
    pub latency_added_us: Percentiles,
    /// Time to the first SSE byte at concurrency 1.
    pub sse_ttfb_us: Percentiles,
    pub sse_ttfb_added_us: Percentiles,
    pub throughput_rps: f64,
    /// CPU (user + system) per request during the throughput run.
    pub cpu_us_per_request: f64,
    /// Of which in user mode (the proxy's own code).
    pub user_cpu_us_per_request: f64,
}

/// Everything the bench measured.
#[derive(Debug, Serialize, Default)]
pub struct Report {
    /// Which run of the comparison this is (from 1; see `--runs`).
    pub run: u32,
    pub request_body_bytes: usize,
    pub io_driver: String,
    /// sluice's worker threads, and nginx's worker processes (the same number).
    pub workers: usize,
    pub direct_latency_us: Percentiles,
    pub direct_sse_ttfb_us: Percentiles,
    pub direct_throughput_rps: f64,
    /// The mock upstream's CPU per request: what one plain HTTP hop costs on this machine.
    pub mock_cpu_us_per_request: f64,
    /// With governance on: virtual key, rate limits, budget reservation, ledger, audit log.
    pub sluice: ProxyFigures,
    /// The same gateway with governance off, measured in the same run.
    pub sluice_governance_off: ProxyFigures,
    /// 1 − governed / ungoverned throughput.
    pub governance_throughput_loss: f64,
    /// The governed sluice again with the OpenTelemetry export on (a span per request and the
    /// metrics, posted to the mock as the collector), measured in the same run.
    pub sluice_otel_export: ProxyFigures,
    /// 1 − with export / without export throughput (both governed).
    pub otel_export_throughput_loss: f64,
    pub nginx: Option<ProxyFigures>,
    pub sluice_vs_nginx_throughput: Option<f64>,
    /// The same ratio for the sluice with governance off: the proxy path alone against nginx.
    pub governance_off_vs_nginx_throughput: Option<f64>,
    /// The governed sluice's resident memory once started, before any request.
    pub sluice_idle_rss_mib: f64,
    /// Its resident memory after the whole run, of which anonymous (heap, stacks, rings; the
    /// rest is the executable's own pages), and its peak.
    pub sluice_rss_mib: f64,
    pub sluice_anonymous_mib: f64,
    pub sluice_peak_rss_mib: f64,
    /// A Messages client through sluice to a Bedrock upstream (SigV4 signing, event-stream →
    /// SSE), against the same request sent straight to the Bedrock mock.
    pub bedrock_egress: FormatFigures,
    /// A Bedrock client through sluice to a Messages upstream (SSE → event-stream), against a
    /// Messages request sent straight to the mock.
    pub cross_format: FormatFigures,
    /// Latency at concurrency 1 by percentile for each target (the plot's curves).
    pub latency_curves: Vec<plot::LatencyCurve>,
}

/// Streamed-request latency of one format combination, µs.
#[derive(Debug, Serialize, Default)]
pub struct FormatFigures {
    pub direct_first_byte_us: Percentiles,
    pub sluice_first_byte_us: Percentiles,
    pub direct_total_us: Percentiles,
    pub sluice_total_us: Percentiles,
    pub added_total_us: Percentiles,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}: verdict not met (see above)")]
    Failed(&'static str),
}

/// A target of the load: where it listens and which process to charge CPU to.
#[derive(Clone, Copy)]
struct Target {
    addr: SocketAddr,
    pid: u32,
    /// Every other request authenticates with a JWT instead of the virtual key.
    jwt: bool,
}

impl Target {
    /// The requests a load sends this target: the virtual key, and a JWT in turn if it takes
    /// one.
    fn requests(&self, path: &str, body: &[u8]) -> load::Requests {
        let with_key = load::request(self.addr, path, body);
        if !self.jwt {
            return with_key.into();
        }
        let bearer = format!("authorization: Bearer {}", bench_jwt());
        load::Requests::cycle(vec![
            with_key,
            load::request_with(self.addr, path, body, &bearer),
        ])
    }
}

/// The bench's HS256 secret (the governance sluice verifies tokens with it).
const BENCH_JWT_SECRET: &str = "sluice-bench-jwt-secret";

/// A long-lived HS256 token for user `bench-user` of team `bench`.
fn bench_jwt() -> String {
    let claims = serde_json::json!({
        "sub": "bench-user", "team": "bench", "iss": "sluice-bench", "aud": "sluice",
        "exp": 4_000_000_000u64,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(BENCH_JWT_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

/// Runs the bench and prints the table.
pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    sluice::runtime::raise_fd_limit();
    procs::stop_children_on_signal()?;
    let result = run_until_done(args);
    if result.is_err() {
        procs::let_a_signal_finish();
    }
    result
}

fn run_until_done(args: &BenchArgs) -> Result<(), BenchError> {
    if let Some(seconds) = args.soak_seconds {
        let report = soak::soak(args, seconds, args.soak_rate)?;
        soak::print_soak(&report);
        write_json(args, &report)?;
        return report
            .passed
            .then_some(())
            .ok_or(BenchError::Failed("soak"));
    }
    if args.tls {
        tls::run(args)?;
        return Ok(());
    }
    if args.cluster {
        return cluster::run(args);
    }
    if let Some(n) = args.streams {
        let report = soak::streams(args, n)?;
        soak::print_streams(&report);
        write_json(args, &report)?;
        return report
            .passed
            .then_some(())
            .ok_or(BenchError::Failed("streams"));
    }
    let mut reports = Vec::new();
    for run in 1..=args.runs {
        for &workers in &args.workers {
            if args.runs > 1 {
                progress(&format!("run {run} of {}, {workers} workers", args.runs));
            }
            let mut report = compare(&args.with_workers(workers))?;
            report.run = run;
            print_table(&report);
            reports.push(report);
        }
    }
    if reports.len() > 1 {
        print_side_by_side(&reports, args.runs > 1);
    }
    if args.runs > 1 {
        print_medians(&reports, args.runs);
    }
    if let Some(path) = &args.plot {
        let pictures: Vec<String> = reports.iter().map(picture).collect();
        #[expect(
            clippy::disallowed_methods,
            reason = "the bench's picture, written after the run"
        )]
        std::fs::write(path, plot::stack(&pictures))?;
    }
    write_json(args, &reports)?;
    Ok(())
}

/// One comparison at `args`' (single) worker count: the mock, the sluices and nginx started
/// for it and stopped after it.
fn compare(args: &BenchArgs) -> Result<Report, BenchError> {
    let mock = start_mock()?;
    let upstream = format!("http://{}", mock.addr);
    // Declared before the processes that write into it, so it is removed after they end.
    let scratch = ScratchDir::create("bench")?;
    let dir = scratch.path().to_path_buf();
    // Each governed sluice keeps its own ledger and audit log (governance records on, as in
    // production).
    let records = |name: &str| {
        format!(
            "[store]\npath = \"{}\"\n[audit]\npath = \"{}\"\n",
            dir.join(format!("{name}.db")).display(),
            dir.join(format!("{name}-audit.jsonl")).display()
        )
    };
    // The main sluice runs with governance on: a virtual key and a JWT (the load sends
    // `sk-bench` and an HS256 token in turn), rate limits and a budget that every request
    // passes through, the ledger and the audit log.
    let governance = governance_config();
    let sluice = start_sluice(
        args,
        &dir,
        "sluice",
        &format!("{governance}{}", records("sluice")),
        Some(&upstream),
    )?;
    // The governed sluice again, exporting its spans and metrics (the mock takes the OTLP posts
    // as any POST: a 200).
    let otel = format!(
        "{governance}{}[telemetry.export]\nurl = \"{upstream}\"\n",
        records("otel")
    );
    let sluice_otel = start_sluice(args, &dir, "otel", &otel, Some(&upstream))?;
    // The same sluice with governance off: no key, no limits, no ledger, no audit log.
    let plain = "[store]\npath = \"off\"\n[audit]\npath = \"off\"\n";
    let sluice_plain = start_sluice(args, &dir, "plain", plain, Some(&upstream))?;
    let bedrock = format!(
        "[[upstreams]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\nurl = \"{upstream}\"\naws_access_key_id = \"AKIDBENCH\"\naws_secret_access_key = \"bench\"\n[[routes]]\nmodel = \"*\"\ndeployments = [{{ upstream = \"bedrock\", upstream_model = \"{BENCH_BEDROCK_MODEL}\" }}]\n{}",
        records("bedrock")
    );
    let sluice_bedrock = start_sluice(args, &dir, "bedrock", &bedrock, None)?;
    let nginx = Nginx::start(mock.addr, args.worker_count());
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    let targets = Targets {
        direct: Target {
            addr: mock.addr,
            pid: mock.pid(),
            jwt: false,
        },
        sluice: Target {
            addr: sluice.addr,
            pid: sluice.pid(),
            jwt: true,
        },
        nginx: nginx.as_ref().map(|n| Target {
            addr: n.addr,
            pid: n.child.id(),
            jwt: false,
        }),
        sluice_bedrock: sluice_bedrock.addr,
        governance_off: Target {
            addr: sluice_plain.addr,
            pid: sluice_plain.pid(),
            jwt: false,
        },
        otel_export: Target {
            addr: sluice_otel.addr,
            pid: sluice_otel.pid(),
            jwt: true,
        },
    };
    Ok(runtime.block_on(measure_all(args, &targets))?)
}

/// The run as an SVG: the latency curves and the throughput bars.
fn picture(r: &Report) -> String {
    let mut bars = vec![
        plot::Bar {
            name: "direct".into(),
            rps: r.direct_throughput_rps,
        },
        plot::Bar {
            name: "sluice".into(),
            rps: r.sluice.throughput_rps,
        },
    ];
    // In the curves' order, so each target keeps its colour.
    if let Some(nginx) = &r.nginx {
        bars.push(plot::Bar {
            name: "nginx".into(),
            rps: nginx.throughput_rps,
        });
    }
    bars.push(plot::Bar {
        name: "no gov.".into(),
        rps: r.sluice_governance_off.throughput_rps,
    });
    bars.push(plot::Bar {
        name: "OTel".into(),
        rps: r.sluice_otel_export.throughput_rps,
    });
    let title = format!(
        "sluice bench: {} KB request, io driver {}, {} worker{} for sluice and nginx",
        r.request_body_bytes / 1000,
        r.io_driver,
        r.workers,
        if r.workers == 1 { "" } else { "s" }
    );
    plot::svg(&title, &r.latency_curves, &bars)
}

/// The mock upstream as the bench runs it: one worker, no request log.
fn start_mock() -> std::io::Result<Server> {
    Server::start_self(&[
        "mock-upstream",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-request-log",
    ])
}

/// Governance as the bench runs it: the load's virtual key and JWT, key and team limits and a
/// team budget (all far above what the load reaches, so every request passes through them).
fn governance_config() -> String {
    format!(
        "[[keys]]\nname = \"bench\"\nsha256 = \"{}\"\nteam = \"bench\"\nrpm = 4000000000\ntpm = 1000000000000\nmax_streams = 100000\n[[teams]]\nname = \"bench\"\nrpm = 4000000000\n[[budgets]]\nscope = \"team\"\nname = \"bench\"\nlimit_usd = 280000.0\nperiod = \"total\"\n[jwt]\nissuer = \"sluice-bench\"\naudience = \"sluice\"\nteam_claim = \"team\"\n[[jwt.keys]]\nalgorithm = \"HS256\"\nsecret = \"{BENCH_JWT_SECRET}\"\n",
        sluice::config::keys::hash_hex("sk-bench")
    )
}

/// Writes a report as JSON where `--json` says.
fn write_json<T: Serialize>(args: &BenchArgs, report: &T) -> std::io::Result<()> {
    if let Some(path) = &args.json {
        #[expect(
            clippy::disallowed_methods,
            reason = "the bench's report, written after the run"
        )]
        std::fs::write(path, serde_json::to_vec_pretty(report).unwrap_or_default())?;
    }
    Ok(())
}

/// Writes `config` to `dir/name.toml` and starts a sluice on it (with `upstream`, the mock
/// in the Messages format, as its default upstream).
fn start_sluice(
    args: &BenchArgs,
    dir: &std::path::Path,
    name: &str,
    config: &str,
    upstream: Option<&str>,
) -> std::io::Result<Server> {
    let path = dir.join(format!("{name}.toml"));
    #[expect(
        clippy::disallowed_methods,
        reason = "bench set-up, not a gateway worker"
    )]
    // The access log goes to a file, as nginx's does (the default, stdout, is a pipe the bench
    // would drain on the cores it measures).
    std::fs::write(
        &path,
        format!(
            "[server]\nwriter_priority = \"{}\"\n{config}\n[log]\naccess_log = \"{}\"\n",
            args.writer_priority,
            dir.join(format!("{name}-access.jsonl")).display()
        ),
    )?;
    let path = path.display().to_string();
    let workers = args.worker_count().to_string();
    let mut argv = vec![
        "serve",
        "--config",
        &path,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        &workers,
        "--io-driver",
        &args.io_driver,
    ];
    if let Some(upstream) = upstream {
        argv.extend([
            "--upstream",
            upstream,
            "--upstream-api-key",
            "sk-bench-upstream",
        ]);
    }
    Server::start_self(&argv)
}

struct Targets {
    direct: Target,
    sluice: Target,
    nginx: Option<Target>,
    /// A sluice whose upstream is the mock as a Bedrock endpoint.
    sluice_bedrock: SocketAddr,
    /// The same sluice as `sluice` with governance off.
    governance_off: Target,
    /// The same sluice as `sluice` with the OpenTelemetry export on.
    otel_export: Target,
}

const BENCH_BEDROCK_MODEL: &str = "us.anthropic.claude-opus-4-8-v1";

async fn measure_all(args: &BenchArgs, t: &Targets) -> std::io::Result<Report> {
    let (idle_rss, _) = rss_kib(t.sluice.pid).unwrap_or_default();
    let big = claude_code_sized_body(false);
    let stream_body = claude_code_sized_body(true);
    let path = "/v1/messages?beta=true";
    let mut all = vec![t.direct, t.sluice];
    all.extend(t.nginx);
    let plain = all.len();
    all.push(t.governance_off);
    all.push(t.otel_export);
    progress("warming up every target");
    for target in &all {
        load::measure(target.addr, target.requests(path, &big), 200).await?;
    }
    progress(&format!(
        "latency at concurrency 1: {} requests per target, interleaved",
        args.requests
    ));
    let latency = interleaved(&all, path, &big, args.requests).await?;
    progress("time to the first SSE byte");
    let ttfb = interleaved(&all, path, &stream_body, args.requests / 2).await?;
    let mut names = vec!["direct", "through sluice"];
    if t.nginx.is_some() {
        names.push("through nginx");
    }
    names.push("through sluice, governance off");
    names.push("through sluice, OTel export");
    let latency_curves = names
        .iter()
        .zip(&latency)
        .map(|(name, l)| plot::LatencyCurve::of(name, &l.total))
        .collect();
    let lat = |i: usize| Percentiles::of(&latency[i].total);
    let first = |i: usize| Percentiles::of(&ttfb[i].first_byte);
    progress(&format!(
        "throughput at concurrency {}: direct, sluice, without governance, with OTel export, nginx",
        args.concurrency
    ));
    let (direct_rps, direct_cpu, _) = throughput(args, t.direct).await?;
    let figures = |i: usize, (rps, cpu, user): (f64, f64, f64)| ProxyFigures {
        latency_us: lat(i),
        latency_added_us: lat(i).minus(&lat(0)),
        sse_ttfb_us: first(i),
        sse_ttfb_added_us: first(i).minus(&first(0)),
        throughput_rps: rps,
        cpu_us_per_request: cpu,
        user_cpu_us_per_request: user,
    };
    let sluice = figures(1, throughput(args, t.sluice).await?);
    let governance_off = figures(plain, throughput(args, t.governance_off).await?);
    let otel_export = figures(plain + 1, throughput(args, t.otel_export).await?);
    let nginx = match t.nginx {
        Some(target) => Some(figures(2, throughput(args, target).await?)),
        None => None,
    };
    progress("Bedrock egress and cross-format streams");
    let bedrock_egress = format_figures(
        args,
        t.direct.addr,
        t.sluice_bedrock,
        FormatCase::BedrockEgress,
    )
    .await?;
    let cross_format =
        format_figures(args, t.direct.addr, t.sluice.addr, FormatCase::CrossFormat).await?;
    let (rss, peak) = rss_kib(t.sluice.pid).unwrap_or_default();
    let anonymous = anonymous_kib(t.sluice.pid).unwrap_or_default();
    Ok(Report {
        run: 1,
        request_body_bytes: big.len(),
        io_driver: args.io_driver.clone(),
        workers: args.worker_count(),
        direct_latency_us: lat(0),
        direct_sse_ttfb_us: first(0),
        direct_throughput_rps: direct_rps,
        mock_cpu_us_per_request: direct_cpu,
        sluice_vs_nginx_throughput: nginx
            .as_ref()
            .map(|n| sluice.throughput_rps / n.throughput_rps),
        governance_off_vs_nginx_throughput: nginx
            .as_ref()
            .map(|n| governance_off.throughput_rps / n.throughput_rps),
        governance_throughput_loss: 1.0 - sluice.throughput_rps / governance_off.throughput_rps,
        otel_export_throughput_loss: 1.0 - otel_export.throughput_rps / sluice.throughput_rps,
        sluice_otel_export: otel_export,
        sluice,
        sluice_governance_off: governance_off,
        nginx,
        sluice_idle_rss_mib: idle_rss as f64 / 1024.0,
        sluice_rss_mib: rss as f64 / 1024.0,
        sluice_anonymous_mib: anonymous as f64 / 1024.0,
        sluice_peak_rss_mib: peak as f64 / 1024.0,
        bedrock_egress,
        cross_format,
        latency_curves,
    })
}

/// One line on stderr saying what the bench is measuring now.
#[expect(
    clippy::print_stderr,
    reason = "the bench's progress, for the person running it"
)]
fn progress(what: &str) {
    eprintln!("sluice bench: {what}…");
}

#[derive(Clone, Copy)]
enum FormatCase {
    BedrockEgress,
    CrossFormat,
}

/// Streamed 70 KB requests in two formats: direct (the mock in the upstream's format) and
/// through sluice (the client's format), in alternating blocks.
async fn format_figures(
    args: &BenchArgs,
    mock: SocketAddr,
    via: SocketAddr,
    case: FormatCase,
) -> std::io::Result<FormatFigures> {
    let messages = claude_code_sized_body(true);
    let bedrock_path = format!("/model/{BENCH_BEDROCK_MODEL}/invoke-with-response-stream");
    let bedrock_body = sluice::format::to_bedrock(
        sluice::format::Source::Messages,
        &messages,
        BENCH_BEDROCK_MODEL,
        &[],
        &[],
    )
    .ok()
    .and_then(|r| r.body)
    .unwrap_or_default();
    let path = "/v1/messages?beta=true";
    let (direct, through) = match case {
        FormatCase::BedrockEgress => (
            load::request(mock, &bedrock_path, &bedrock_body),
            load::request(via, path, &messages),
        ),
        FormatCase::CrossFormat => (
            load::request(mock, path, &messages),
            load::request(via, &bedrock_path, &bedrock_body),
        ),
    };
    let count = (args.requests / 2).max(1);
    load::measure(mock, direct.clone(), 20).await?;
    load::measure(via, through.clone(), 20).await?;
    let mut d = load::measure(mock, direct.clone(), 1).await?;
    let mut s = load::measure(via, through.clone(), 1).await?;
    let mut done = 0;
    while done < count {
        let n = 250.min(count - done);
        load::sequential(mock, direct.clone(), n, &mut d).await?;
        load::sequential(via, through.clone(), n, &mut s).await?;
        done += n;
    }
    let (dt, st) = (Percentiles::of(&d.total), Percentiles::of(&s.total));
    Ok(FormatFigures {
        direct_first_byte_us: Percentiles::of(&d.first_byte),
        sluice_first_byte_us: Percentiles::of(&s.first_byte),
        added_total_us: st.minus(&dt),
        direct_total_us: dt,
        sluice_total_us: st,
    })
}

/// Throughput at the configured concurrency with a small request, after a short warm-up:
/// (requests per second, CPU µs per request, user-mode CPU µs per request) of `target`'s process.
async fn throughput(args: &BenchArgs, target: Target) -> std::io::Result<(f64, f64, f64)> {
    let small = br#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = target.requests("/v1/messages?beta=true", small);
    let n = args.throughput_requests;
    load::concurrent(target.addr, req.clone(), args.concurrency, n / 10).await?;
    let (user0, sys0) = cpu_split(target.pid).unwrap_or_default();
    let elapsed = load::concurrent(target.addr, req, args.concurrency, n).await?;
    let (user1, sys1) = cpu_split(target.pid).unwrap_or_default();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let user = user1.saturating_sub(user0);
    let total = user + sys1.saturating_sub(sys0);
    Ok((n as f64 / elapsed.as_secs_f64(), per(total), per(user)))
}

/// Each target's latency, measured in alternating blocks so drift hits all alike.
async fn interleaved(
    targets: &[Target],
    path: &str,
    body: &[u8],
    count: usize,
) -> std::io::Result<Vec<Latencies>> {
    let block = 250.min(count.max(1));
    let mut out = Vec::new();
    for t in targets {
        out.push(load::measure(t.addr, t.requests(path, body), 1).await?);
    }
    let mut done = 0;
    while done < count {
        let n = block.min(count - done);
        for (t, lat) in targets.iter().zip(out.iter_mut()) {
            load::sequential(t.addr, t.requests(path, body), n, lat).await?;
        }
        done += n;
    }
    Ok(out)
}

/// The comparisons with nginx of every worker count (and run, `by_run`), one line each.
#[allow(clippy::print_stdout)]
fn print_side_by_side(reports: &[Report], by_run: bool) {
    println!();
    println!("sluice (governance on) against nginx, by worker count; added µs as p50 / p99");
    let run = |r: Option<&Report>| match (by_run, r) {
        (false, _) => String::new(),
        (true, None) => format!("{:>4} ", "run"),
        (true, Some(r)) => format!("{:>4} ", r.run),
    };
    println!(
        "{}{:>7} {:>12} {:>12} {:>7} {:>11} {:>11} {:>17} {:>17} {:>17} {:>17}",
        run(None),
        "workers",
        "sluice req/s",
        "nginx req/s",
        "ratio",
        "sluice CPU",
        "nginx CPU",
        "sluice added",
        "nginx added",
        "sluice SSE TTFB",
        "nginx SSE TTFB"
    );
    let pair = |p: &Percentiles| format!("{:.1} / {:.1}", p.p50, p.p99);
    for r in reports {
        let Some(n) = &r.nginx else {
            println!(
                "{}{:>7} {:>12.0} nginx not installed",
                run(Some(r)),
                r.workers,
                r.sluice.throughput_rps
            );
            continue;
        };
        println!(
            "{}{:>7} {:>12.0} {:>12.0} {:>6.2}x {:>11.1} {:>11.1} {:>17} {:>17} {:>17} {:>17}",
            run(Some(r)),
            r.workers,
            r.sluice.throughput_rps,
            n.throughput_rps,
            r.sluice_vs_nginx_throughput.unwrap_or_default(),
            r.sluice.cpu_us_per_request,
            n.cpu_us_per_request,
            pair(&r.sluice.latency_added_us),
            pair(&n.latency_added_us),
            pair(&r.sluice.sse_ttfb_added_us),
            pair(&n.sse_ttfb_added_us)
        );
    }
}

/// The medians of every run, by worker count ([`medians::summary`]).
#[allow(clippy::print_stdout)]
fn print_medians(reports: &[Report], runs: u32) {
    println!();
    for line in medians::summary(reports, runs) {
        println!("{line}");
    }
}

/// What a feature costs: `with` against `without` it, measured in the same run.
#[allow(clippy::print_stdout)]
fn print_cost(feature: &str, throughput_loss: f64, with: &ProxyFigures, without: &ProxyFigures) {
    println!(
        "{feature} costs {:.1} % throughput, {:+.1} µs CPU per request, {:+.1} / {:+.1} µs added p50 / p99",
        throughput_loss * 100.0,
        with.cpu_us_per_request - without.cpu_us_per_request,
        with.latency_added_us.p50 - without.latency_added_us.p50,
        with.latency_added_us.p99 - without.latency_added_us.p99
    );
}

#[allow(clippy::print_stdout)]
fn print_table(r: &Report) {
    let p = |x: &Percentiles| format!("{:>8.1} {:>8.1} {:>8.1}", x.p50, x.p99, x.p999);
    println!(
        "sluice bench ({} KB request, io driver {}, {} workers for sluice and nginx); µs as p50 p99 p99.9",
        r.request_body_bytes / 1000,
        r.io_driver,
        r.workers
    );
    println!(
        "{:<28} {:>26} | {:>26} | {:>26}",
        "", "direct", "through sluice", "added by sluice"
    );
    println!(
        "{:<28} {} | {} | {}",
        "latency, concurrency 1",
        p(&r.direct_latency_us),
        p(&r.sluice.latency_us),
        p(&r.sluice.latency_added_us)
    );
    println!(
        "{:<28} {} | {} | {}",
        "SSE first byte, conc. 1",
        p(&r.direct_sse_ttfb_us),
        p(&r.sluice.sse_ttfb_us),
        p(&r.sluice.sse_ttfb_added_us)
    );
    println!(
        "{:<28} {:>26} | {} | {}",
        "latency, governance off",
        "",
        p(&r.sluice_governance_off.latency_us),
        p(&r.sluice_governance_off.latency_added_us)
    );
    if let Some(n) = &r.nginx {
        println!(
            "{:<28} {:>26} | {} | {}",
            "latency via nginx",
            "",
            p(&n.latency_us),
            p(&n.latency_added_us)
        );
        println!(
            "{:<28} {:>26} | {} | {}",
            "SSE first byte via nginx",
            "",
            p(&n.sse_ttfb_us),
            p(&n.sse_ttfb_added_us)
        );
    }
    println!();
    println!(
        "{:<28} {:>12} {:>14} {:>14}",
        "throughput, concurrency 50", "req/s", "CPU µs/req", "of which user"
    );
    println!(
        "{:<28} {:>12.0} {:>14.1} {:>14}",
        "direct (the mock itself)", r.direct_throughput_rps, r.mock_cpu_us_per_request, ""
    );
    let row = |name: &str, f: &ProxyFigures| {
        println!(
            "{name:<28} {:>12.0} {:>14.1} {:>14.1}",
            f.throughput_rps, f.cpu_us_per_request, f.user_cpu_us_per_request
        )
    };
    row("via sluice (governance on)", &r.sluice);
    row("via sluice, governance off", &r.sluice_governance_off);
    row("via sluice, OTel export", &r.sluice_otel_export);
    print_cost(
        "governance",
        r.governance_throughput_loss,
        &r.sluice,
        &r.sluice_governance_off,
    );
    print_cost(
        "the OpenTelemetry export",
        r.otel_export_throughput_loss,
        &r.sluice_otel_export,
        &r.sluice,
    );
    match (
        &r.nginx,
        r.sluice_vs_nginx_throughput,
        r.governance_off_vs_nginx_throughput,
    ) {
        (Some(n), Some(x), Some(off)) => {
            row(&format!("via nginx ({} workers)", r.workers), n);
            println!("sluice / nginx throughput: {x:.2}x (governance off: {off:.2}x)");
        }
        _ => println!("via nginx: not installed (apt-get install nginx-light to compare)"),
    }
    println!(
        "sluice RSS idle {:.1} MiB; after the run {:.1} MiB, {:.1} MiB of it anonymous (peak {:.1} MiB)",
        r.sluice_idle_rss_mib, r.sluice_rss_mib, r.sluice_anonymous_mib, r.sluice_peak_rss_mib
    );
    println!();
    println!(
        "{:<44} {:>26} | {:>26} | {:>26}",
        "streamed 70 KB request, c=1 (µs)", "direct", "through sluice", "added"
    );
    for (name, f) in [
        ("Bedrock egress", &r.bedrock_egress),
        ("cross-format (Bedrock client)", &r.cross_format),
    ] {
        println!(
            "{:<44} {} | {} |",
            format!("{name}: first byte"),
            p(&f.direct_first_byte_us),
            p(&f.sluice_first_byte_us)
        );
        println!(
            "{:<44} {} | {} | {}",
            format!("{name}: total"),
            p(&f.direct_total_us),
            p(&f.sluice_total_us),
            p(&f.added_total_us)
        );
    }
}
