//! `sluice bench` runs end to end with tiny counts (a smoke run: the figures are not judged
//! here), says what it is doing while it runs, compares at 1 and at 2 workers in one run (nginx
//! with as many), and draws the run with `--plot`: a latency curve per target and a throughput
//! bar per figure for each worker count, matching the JSON reports of the same run.

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
    let with_nginx = !reports[0]["nginx"].is_null();
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
        if with_nginx {
            // nginx ran with as many workers as sluice (a master and worker processes).
            assert!(
                stdout.contains(&format!("via nginx ({workers} workers)")),
                "{stdout}"
            );
        }
        let curves = report["latency_curves"].as_array().unwrap();
        assert_eq!(curves.len(), if with_nginx { 5 } else { 4 });
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
    }
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
    if with_nginx {
        // None of nginx's processes outlives the bench.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !bench_nginx_processes(bench_pid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let left = bench_nginx_processes(bench_pid);
        assert!(left.is_empty(), "nginx left running: {left:?}");
    }
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
