//! `sluice bench` runs end to end with tiny counts (a smoke run: the figures are not judged
//! here), says what it is doing while it runs, compares at 1 and at 2 workers in one run (nginx
//! with as many), and draws the run with `--plot`: a latency curve per target and a throughput
//! bar per figure for each worker count, matching the JSON reports of the same run; several
//! runs end with their medians; a signal that ends it ends everything it started.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

#[test]
fn the_bench_shows_progress_and_draws_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let (json, svg) = (dir.path().join("run.json"), dir.path().join("run.svg"));
    let out = std::process::Command::new(BIN)
        .args([
            "bench",
            "--requests",
            "60",
            "--throughput-requests",
            "600",
            "--concurrency",
            "4",
            "--workers",
            "1,2",
            "--json",
        ])
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bench_pid = out.id();
    let out = out.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    for phase in [
        "warming up",
        "latency at concurrency 1",
        "throughput at concurrency",
    ] {
        assert!(
            stderr.contains(phase),
            "no progress line for {phase}: {stderr}"
        );
    }
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2, "one report per worker count");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.trim_end().ends_with("</svg>"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // nginx is part of the comparison (`.ci/run` installs it): a bench without it is a failure
    // here, not a shorter run.
    assert!(
        !reports[0]["nginx"].is_null(),
        "the bench ran without nginx: is it installed? {stdout}"
    );
    let mut curves_drawn = 0;
    for (report, workers) in reports.iter().zip([1, 2]) {
        assert_eq!(report["workers"], workers);
        assert!(
            stdout.contains(&format!("{workers} workers for sluice and nginx")),
            "{stdout}"
        );
        assert!(
            picture.contains(&format!("{workers} worker")),
            "panel title"
        );
        // nginx ran with as many workers as sluice (a master and worker processes).
        assert!(
            stdout.contains(&format!("via nginx ({workers} workers)")),
            "{stdout}"
        );
        // Both sluices compared with nginx: governed, and the proxy path alone.
        for ratio in [
            "sluice_vs_nginx_throughput",
            "governance_off_vs_nginx_throughput",
        ] {
            assert!(report[ratio].as_f64().unwrap() > 0.0, "{ratio}");
        }
        assert!(stdout.contains("(governance off: "), "{stdout}");
        let curves = report["latency_curves"].as_array().unwrap();
        assert_eq!(
            curves.len(),
            5,
            "direct, sluice, nginx, governance off, OTel export"
        );
        curves_drawn += curves.len();
        for curve in curves {
            assert!(picture.contains(curve["name"].as_str().unwrap()));
            let points = curve["points"].as_array().unwrap();
            let latencies: Vec<f64> = points.iter().map(|p| p[1].as_f64().unwrap()).collect();
            assert!(latencies.windows(2).all(|w| w[0] <= w[1]), "{curve}");
        }
        for (figures, bar) in [
            ("sluice", "the sluice bar"),
            ("sluice_otel_export", "the export bar"),
        ] {
            let rps = report[figures]["throughput_rps"].as_f64().unwrap();
            assert!(rps > 0.0, "{figures} measured");
            assert!(picture.contains(&format!(">{rps:.0}<")), "{bar}");
        }
        // Memory: idle before the load, after it, and the anonymous part of it.
        let mib = |field: &str| report[field].as_f64().unwrap();
        assert!(mib("sluice_idle_rss_mib") > 0.0, "idle RSS measured");
        assert!(
            mib("sluice_anonymous_mib") > 0.0,
            "anonymous memory measured"
        );
        assert!(mib("sluice_anonymous_mib") < mib("sluice_rss_mib"));
        assert!(mib("sluice_rss_mib") <= mib("sluice_peak_rss_mib"));
    }
    assert!(stdout.contains("sluice RSS idle"), "{stdout}");
    assert_eq!(picture.matches("<polyline").count(), curves_drawn);
    // Both comparisons side by side at the end.
    let side_by_side = stdout
        .split("against nginx, by worker count")
        .nth(1)
        .expect("the side-by-side table");
    let rows: Vec<&str> = side_by_side.lines().skip(2).take(2).collect();
    assert!(
        rows[0].trim_start().starts_with('1') && rows[1].trim_start().starts_with('2'),
        "{side_by_side}"
    );
    // None of nginx's processes outlives the bench.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !bench_nginx_processes(bench_pid).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left = bench_nginx_processes(bench_pid);
    assert!(left.is_empty(), "nginx left running: {left:?}");
}

#[test]
fn several_runs_end_with_the_medians_of_each_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("runs.json");
    let out = std::process::Command::new(BIN)
        .args([
            "bench",
            "--requests",
            "40",
            "--throughput-requests",
            "400",
            "--concurrency",
            "4",
            "--workers",
            "1",
            "--runs",
            "2",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("run 2 of 2, 1 workers"), "{stderr}");
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs: Vec<u64> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_u64().unwrap())
        .collect();
    assert_eq!(runs, [1, 2], "one report per run");
    let summary = stdout
        .split("medians of 2 runs by worker count")
        .nth(1)
        .expect("the medians after the runs");
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with("sluice throughput"))
        .expect("sluice's throughput line");
    // The median of two runs is their mean, and both runs are listed beside it.
    let rps: Vec<f64> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sluice"]["throughput_rps"].as_f64().unwrap())
        .collect();
    let mean = (rps[0] + rps[1]) / 2.0;
    assert!(line.contains(&format!("{mean:.2} req/s")), "{line}");
    assert!(
        line.ends_with(&format!("[{:.2} {:.2}]", rps[0], rps[1])),
        "{line}"
    );
}

/// Processes started by this test's bench for its nginx (their command line names the bench's
/// directory, which carries the bench's process id; another bench on the machine is not ours).
fn bench_nginx_processes(bench_pid: u32) -> Vec<String> {
    let ours = format!("sluice-bench-nginx-{bench_pid}-");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&ours))
        .collect()
}

/// A signal that ends the bench (`timeout`, `kill`) ends the processes it started too: the
/// mock, the sluices and nginx used to be left running, still listening. And it removes its
/// scratch directories (configs, ledgers, audit logs; nginx's prefix), which used to be left
/// in the temp directory.
#[test]
fn a_signal_ends_the_bench_and_everything_it_started() {
    use std::io::{BufRead, BufReader};
    let temp = tempfile::tempdir().unwrap();
    let mut bench = std::process::Command::new(BIN)
        .env("TMPDIR", temp.path())
        .args([
            "bench",
            "--requests",
            "1000000",
            "--throughput-requests",
            "1000000",
            "--workers",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = bench.id();
    // Once it measures, every child is up.
    let stderr = bench.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let measuring = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("latency at concurrency 1"));
    assert!(measuring, "the bench never started measuring");
    std::thread::spawn(move || for _ in lines {});
    let started: Vec<u32> = descendants(pid);
    assert!(
        started.len() >= 5,
        "the mock, four sluices (and nginx): {started:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = bench.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let running = || -> Vec<u32> { started.iter().copied().filter(|p| alive(*p)).collect() };
    while !running().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(running().is_empty(), "left running: {:?}", running());
    let left: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the temp directory: {left:?}");
}

/// The processes under `pid` (children, and theirs).
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if parent_of(child) == Some(parent) {
                found.push(child);
                parents.push(child);
            }
        }
    }
    found
}

/// `/proc/PID/stat`: the fields after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Running (a zombie waiting for a reaper is not).
fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().map(String::as_str) != Some("Z"))
}
