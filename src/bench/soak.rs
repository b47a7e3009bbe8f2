//! Two endurance runs of the bundled bench, each against a sluice with governance on (virtual
//! key, limits, budget, ledger, audit log) in front of the mock upstream:
//!
//! - **soak** (`sluice bench --soak-seconds N`): Claude Code-sized requests (70 KB, streaming and
//!   not, in turn) at a steady rate for N seconds. Per 10-second window it reports p50/p99, RSS
//!   and open descriptors; it passes when RSS does not grow after warm-up, the last window's
//!   p99 is within 2× the first's, and the descriptors return to their baseline afterwards.
//! - **streams** (`sluice bench --streams N`): N SSE streams held open at once, each a second
//!   between events; it passes when every stream completes and no stream waits much longer
//!   than the upstream's own pace between two events (no stall).
//!
//! Both print a verdict and fail (non-zero exit) when it is not met.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::load::{self, Conn};
use super::procs::{rss_kib, Server};
use super::{claude_code_sized_body, BenchArgs, BenchError, Percentiles, ScratchDir};

/// Length of one soak report window.
const WINDOW: Duration = Duration::from_secs(10);
/// Connections the soak spreads its rate over.
const SOAK_CONNECTIONS: usize = 16;
/// The upstream's pace between stream events in the streams run.
const EVENT_GAP_MS: u64 = 1000;

/// One soak window.
#[derive(Debug, Serialize)]
pub struct Window {
    pub second: u64,
    pub requests: u64,
    pub latency_us: Percentiles,
    pub rss_kib: u64,
    pub open_fds: usize,
}

/// The soak's findings.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub rate_per_second: u64,
    pub windows: Vec<Window>,
    pub fds_before: usize,
    pub fds_after: usize,
    pub errors: u64,
    pub passed: bool,
    pub verdict: Vec<String>,
}

/// The streams run's findings.
#[derive(Debug, Serialize)]
pub struct StreamsReport {
    pub requested: usize,
    pub held: usize,
    pub completed: usize,
    pub longest_gap_ms: f64,
    pub event_gap_ms: u64,
    pub peak_rss_kib: u64,
    pub peak_fds: usize,
    pub fd_limit: u64,
    pub passed: bool,
    pub verdict: Vec<String>,
}

/// Mock + governance sluice for an endurance run.
struct Rig {
    _mock: Server,
    sluice: Server,
    _dir: ScratchDir,
}

fn rig(args: &BenchArgs, name: &str) -> Result<Rig, BenchError> {
    let mock = super::start_mock()?;
    let upstream = format!("http://{}", mock.addr);
    let scratch = ScratchDir::create(name)?;
    let dir = scratch.path().to_path_buf();
    let config = format!(
        "{}[timeouts]\npool_idle = \"2s\"\n[store]\npath = \"{}\"\n[audit]\npath = \"{}\"\n",
        super::governance_config(),
        dir.join("ledger.db").display(),
        dir.join("audit.jsonl").display()
    );
    let sluice = super::start_sluice(args, &dir, name, &config, Some(&upstream))?;
    Ok(Rig {
        _mock: mock,
        sluice,
        _dir: scratch,
    })
}

/// Runs the soak for `seconds` at `rate` requests per second.
pub fn soak(args: &BenchArgs, seconds: u64, rate: u64) -> Result<SoakReport, BenchError> {
    let rig = rig(args, "soak")?;
    let pid = rig.sluice.pid();
    let addr = rig.sluice.addr;
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    // Warm up first (the ledger opens its WAL files on the first commit), then take the
    // baseline once the warm-up's connections are gone.
    let warm = load::request(
        addr,
        "/v1/messages?beta=true",
        &claude_code_sized_body(false),
    );
    runtime.block_on(load::measure(addr, warm, 50))?;
    #[expect(clippy::disallowed_methods, reason = "the bench's own thread")]
    std::thread::sleep(Duration::from_secs(3));
    let fds_before = open_fds(pid);
    let (windows, errors) = runtime.block_on(drive_soak(addr, pid, seconds, rate))?;
    // The load's connections are closed; sluice's side closes with them.
    let fds_after = settle_fds(pid, fds_before);
    let mut report = SoakReport {
        rate_per_second: rate,
        windows,
        fds_before,
        fds_after,
        errors,
        passed: false,
        verdict: Vec::new(),
    };
    judge_soak(&mut report);
    Ok(report)
}

async fn drive_soak(
    addr: SocketAddr,
    pid: u32,
    seconds: u64,
    rate: u64,
) -> std::io::Result<(Vec<Window>, u64)> {
    let window = Rc::new(RefCell::new(new_histogram()?));
    let errors = Rc::new(RefCell::new(0u64));
    let end = Instant::now() + Duration::from_secs(seconds);
    let interval = Duration::from_secs_f64(SOAK_CONNECTIONS as f64 / rate.max(1) as f64);
    let requests = [
        load::request(
            addr,
            "/v1/messages?beta=true",
            &claude_code_sized_body(false),
        ),
        load::request(
            addr,
            "/v1/messages?beta=true",
            &claude_code_sized_body(true),
        ),
    ];
    let mut tasks = Vec::new();
    for n in 0..SOAK_CONNECTIONS {
        let (window, errors, requests) = (Rc::clone(&window), Rc::clone(&errors), requests.clone());
        tasks.push(monoio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            // Spread the connections' sends over one interval.
            monoio::time::sleep(interval * n as u32 / SOAK_CONNECTIONS as u32).await;
            let mut next = Instant::now();
            let mut i = n;
            while Instant::now() < end {
                match conn.exchange_timed(requests[i % 2].clone()).await {
                    Ok(t) => {
                        let ns = t.total.as_nanos().clamp(1, 60_000_000_000) as u64;
                        let _ = window.borrow_mut().record(ns);
                    }
                    Err(_) => {
                        *errors.borrow_mut() += 1;
                        conn = Conn::open(addr).await?;
                    }
                }
                i += 1;
                next += interval;
                let now = Instant::now();
                if next > now {
                    monoio::time::sleep(next - now).await;
                } else {
                    next = now; // behind: do not burst to catch up
                }
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    let mut windows = Vec::new();
    let started = Instant::now();
    while Instant::now() < end {
        monoio::time::sleep(WINDOW.min(end.saturating_duration_since(Instant::now()))).await;
        let h = std::mem::replace(&mut *window.borrow_mut(), new_histogram()?);
        windows.push(Window {
            second: started.elapsed().as_secs(),
            requests: h.len(),
            latency_us: Percentiles::of(&h),
            rss_kib: rss_kib(pid).map_or(0, |(rss, _)| rss),
            open_fds: open_fds(pid),
        });
    }
    for t in tasks {
        t.await?;
    }
    let errors = *errors.borrow();
    Ok((windows, errors))
}

fn judge_soak(r: &mut SoakReport) {
    let mut verdict = Vec::new();
    let warm = r.windows.get(1).or(r.windows.first());
    let (first, last) = (r.windows.first(), r.windows.last());
    if let (Some(warm), Some(last)) = (warm, last) {
        let grown = last.rss_kib.saturating_sub(warm.rss_kib);
        let ok = grown <= (warm.rss_kib / 10).max(4096);
        verdict.push(format!(
            "{} RSS after warm-up {} KiB, at the end {} KiB",
            mark(ok),
            warm.rss_kib,
            last.rss_kib
        ));
    }
    if let (Some(first), Some(last)) = (first, last) {
        let ok = last.latency_us.p99 <= first.latency_us.p99 * 2.0;
        verdict.push(format!(
            "{} p99 first window {:.0} µs, last window {:.0} µs",
            mark(ok),
            first.latency_us.p99,
            last.latency_us.p99
        ));
    }
    let fds_ok = r.fds_after <= r.fds_before + 2;
    verdict.push(format!(
        "{} descriptors before {}, after {}",
        mark(fds_ok),
        r.fds_before,
        r.fds_after
    ));
    verdict.push(format!(
        "{} {} failed requests",
        mark(r.errors == 0),
        r.errors
    ));
    r.passed = verdict.iter().all(|v| v.starts_with("PASS"));
    r.verdict = verdict;
}

/// Holds `n` SSE streams open at once through sluice.
pub fn streams(args: &BenchArgs, n: usize) -> Result<StreamsReport, BenchError> {
    let rig = rig(args, "streams")?;
    let pid = rig.sluice.pid();
    let fd_limit = fd_limit(pid);
    // Each stream is two descriptors in sluice (client and upstream), plus a few of its own.
    let held = n.min((fd_limit.saturating_sub(64) / 2) as usize);
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    let (completed, longest, peak_rss, peak_fds) =
        runtime.block_on(drive_streams(rig.sluice.addr, pid, held))?;
    let mut verdict = Vec::new();
    if held < n {
        verdict.push(format!(
            "NOTE {n} streams need {} descriptors in sluice; its limit is {fd_limit}, so {held} were held",
            2 * n + 64
        ));
    }
    let all = completed == held;
    verdict.push(format!(
        "{} {completed} of {held} streams completed",
        mark(all)
    ));
    let smooth = longest <= Duration::from_millis(EVENT_GAP_MS * 2 + 1000);
    verdict.push(format!(
        "{} longest wait between two events {:.0} ms (the upstream's pace: {EVENT_GAP_MS} ms)",
        mark(smooth),
        longest.as_secs_f64() * 1000.0
    ));
    Ok(StreamsReport {
        requested: n,
        held,
        completed,
        longest_gap_ms: longest.as_secs_f64() * 1000.0,
        event_gap_ms: EVENT_GAP_MS,
        peak_rss_kib: peak_rss,
        peak_fds,
        fd_limit,
        passed: all && smooth,
        verdict,
    })
}

async fn drive_streams(
    addr: SocketAddr,
    pid: u32,
    n: usize,
) -> std::io::Result<(usize, Duration, u64, usize)> {
    let body = br#"{"model":"claude-opus-4-8","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let raw = load::request(addr, "/v1/messages?beta=true", body);
    // The delay header rides in the head: rebuild the request with it.
    let text = String::from_utf8_lossy(&raw).replacen(
        "\r\n\r\n",
        &format!("\r\nx-mock-event-delay-ms: {EVENT_GAP_MS}\r\n\r\n"),
        1,
    );
    let req = bytes::Bytes::from(text.into_bytes());
    // Open every connection first, then start every stream: all n are live at once.
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(addr).await?);
    }
    let results = Rc::new(RefCell::new((0usize, Duration::ZERO)));
    let mut tasks = Vec::with_capacity(n);
    for mut conn in conns {
        let (req, results) = (req.clone(), Rc::clone(&results));
        tasks.push(monoio::spawn(async move {
            if let Ok(t) = conn.exchange_timed(req).await {
                let mut r = results.borrow_mut();
                r.0 += 1;
                r.1 = r.1.max(t.longest_gap);
            }
        }));
    }
    let (mut peak_rss, mut peak_fds) = (0, 0);
    let sampler = async {
        loop {
            monoio::time::sleep(Duration::from_millis(500)).await;
            peak_rss = peak_rss.max(rss_kib(pid).map_or(0, |(rss, _)| rss));
            peak_fds = peak_fds.max(open_fds(pid));
        }
    };
    let all = async {
        for t in tasks {
            t.await;
        }
    };
    monoio::select! {
        () = all => {},
        () = sampler => {},
    }
    let (completed, longest) = *results.borrow();
    Ok((completed, longest, peak_rss, peak_fds))
}

/// Prints a soak report.
#[allow(clippy::print_stdout, reason = "the bench's report")]
pub fn print_soak(r: &SoakReport) {
    println!(
        "soak: 70 KB requests (streaming and not), {} per second through sluice (governance on)",
        r.rate_per_second
    );
    println!("  second  requests    p50 µs    p99 µs   RSS KiB   fds");
    for w in &r.windows {
        println!(
            "  {:>6}  {:>8}  {:>8.0}  {:>8.0}  {:>8}  {:>4}",
            w.second, w.requests, w.latency_us.p50, w.latency_us.p99, w.rss_kib, w.open_fds
        );
    }
    for v in &r.verdict {
        println!("  {v}");
    }
}

/// Prints a streams report.
#[allow(clippy::print_stdout, reason = "the bench's report")]
pub fn print_streams(r: &StreamsReport) {
    println!(
        "streams: {} SSE streams held open at once through sluice (governance on); peak RSS {} KiB, peak fds {}",
        r.held, r.peak_rss_kib, r.peak_fds
    );
    for v in &r.verdict {
        println!("  {v}");
    }
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn new_histogram() -> std::io::Result<Histogram<u64>> {
    // Nanoseconds, as the other runs record them (`Percentiles` reports microseconds).
    Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(std::io::Error::other)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Waits (up to 5 s) for the descriptors to come back to `baseline`; returns the count then.
fn settle_fds(pid: u32, baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = open_fds(pid);
        if now <= baseline || Instant::now() > deadline {
            return now;
        }
        #[expect(clippy::disallowed_methods, reason = "the bench's own thread")]
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The soft open-file limit of a process, from `/proc/PID/limits`.
fn fd_limit(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}
