//! The summary of several runs of the comparison (`sluice bench --runs N`): for each worker
//! count, the median of each main figure and every run's value beside it. On a noisy machine
//! one run says little; the medians are what to compare, and the runs show how far apart they
//! fell.

use super::{Percentiles, ProxyFigures, Report};

/// One figure of a report, for the summary.
struct Figure {
    label: &'static str,
    unit: &'static str,
    value: fn(&Report) -> Option<f64>,
}

/// The figures summarized, in the order printed.
const FIGURES: &[Figure] = &[
    Figure {
        label: "sluice / nginx throughput",
        unit: "x",
        value: |r| r.sluice_vs_nginx_throughput,
    },
    Figure {
        label: "sluice throughput",
        unit: "req/s",
        value: |r| Some(r.sluice.throughput_rps),
    },
    Figure {
        label: "nginx throughput",
        unit: "req/s",
        value: |r| nginx(r).map(|n| n.throughput_rps),
    },
    Figure {
        label: "sluice CPU per request",
        unit: "µs",
        value: |r| Some(r.sluice.cpu_us_per_request),
    },
    Figure {
        label: "nginx CPU per request",
        unit: "µs",
        value: |r| nginx(r).map(|n| n.cpu_us_per_request),
    },
    Figure {
        label: "sluice added p50, c=1",
        unit: "µs",
        value: |r| Some(p50(&r.sluice.latency_added_us)),
    },
    Figure {
        label: "nginx added p50, c=1",
        unit: "µs",
        value: |r| nginx(r).map(|n| p50(&n.latency_added_us)),
    },
    Figure {
        label: "sluice added p99, c=1",
        unit: "µs",
        value: |r| Some(r.sluice.latency_added_us.p99),
    },
    Figure {
        label: "nginx added p99, c=1",
        unit: "µs",
        value: |r| nginx(r).map(|n| n.latency_added_us.p99),
    },
    Figure {
        label: "sluice SSE first byte added p50",
        unit: "µs",
        value: |r| Some(p50(&r.sluice.sse_ttfb_added_us)),
    },
    Figure {
        label: "nginx SSE first byte added p50",
        unit: "µs",
        value: |r| nginx(r).map(|n| p50(&n.sse_ttfb_added_us)),
    },
    Figure {
        label: "governance's throughput loss",
        unit: "%",
        value: |r| Some(r.governance_throughput_loss * 100.0),
    },
    Figure {
        label: "sluice RSS idle",
        unit: "MiB",
        value: |r| Some(r.sluice_idle_rss_mib),
    },
    Figure {
        label: "sluice RSS after the run",
        unit: "MiB",
        value: |r| Some(r.sluice_rss_mib),
    },
    Figure {
        label: "sluice peak RSS",
        unit: "MiB",
        value: |r| Some(r.sluice_peak_rss_mib),
    },
];

fn nginx(r: &Report) -> Option<&ProxyFigures> {
    r.nginx.as_ref()
}

fn p50(p: &Percentiles) -> f64 {
    p.p50
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(mid).copied(),
        _ => Some((sorted.get(mid - 1)? + sorted.get(mid)?) / 2.0),
    }
}

/// The summary's lines: a heading, then for each worker count (in the order first run) one line
/// per figure that has values — label, median, unit, and every run's value in run order.
pub fn summary(reports: &[Report], runs: u32) -> Vec<String> {
    let mut worker_counts: Vec<usize> = Vec::new();
    for r in reports {
        if !worker_counts.contains(&r.workers) {
            worker_counts.push(r.workers);
        }
    }
    let mut lines = vec![format!(
        "medians of {runs} runs by worker count (each run's value in brackets, in run order)"
    )];
    for workers in worker_counts {
        lines.push(format!("{workers} workers for sluice and nginx:"));
        let of_count: Vec<&Report> = reports.iter().filter(|r| r.workers == workers).collect();
        for figure in FIGURES {
            let values: Vec<f64> = of_count.iter().filter_map(|r| (figure.value)(r)).collect();
            let Some(mid) = median(&values) else { continue };
            let each: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
            lines.push(format!(
                "  {:<34} {:>10.2} {:<6} [{}]",
                figure.label,
                mid,
                figure.unit,
                each.join(" ")
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[0.96, 1.24, 0.90, 0.89, 1.01]), Some(0.96));
    }

    fn report(workers: usize, ratio: f64, rps: f64) -> Report {
        let mut r = Report {
            workers,
            sluice_vs_nginx_throughput: Some(ratio),
            ..Report::default()
        };
        r.sluice.throughput_rps = rps;
        r
    }

    #[test]
    fn each_worker_count_gets_its_medians_with_every_run_beside_them() {
        let reports = [
            report(1, 1.24, 31_000.0),
            report(2, 0.94, 32_900.0),
            report(1, 0.90, 33_500.0),
            report(2, 1.05, 33_900.0),
            report(1, 0.96, 29_000.0),
            report(2, 0.89, 31_600.0),
        ];
        let lines = summary(&reports, 3);
        assert!(lines[0].starts_with("medians of 3 runs"));
        let one = lines
            .iter()
            .position(|l| l == "1 workers for sluice and nginx:");
        let two = lines
            .iter()
            .position(|l| l == "2 workers for sluice and nginx:");
        let (one, two) = (one.unwrap(), two.unwrap());
        assert!(one < two);
        let ratio = &lines[one + 1];
        assert!(ratio.contains("sluice / nginx throughput"), "{ratio}");
        assert!(ratio.contains(" 0.96 x"), "{ratio}");
        assert!(
            ratio.ends_with("[1.24 0.90 0.96]"),
            "runs in order: {ratio}"
        );
        let rps = &lines[one + 2];
        assert!(rps.contains("31000.00 req/s"), "{rps}");
        assert!(lines[two + 1].contains(" 0.94 x"), "{}", lines[two + 1]);
        // Figures nobody measured (no nginx) are left out, not shown as zero.
        assert!(!lines.iter().any(|l| l.starts_with("  nginx")), "{lines:?}");
    }
}
