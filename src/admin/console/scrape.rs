//! Reads sluice's own `/metrics` text back for the Live page, so the page shows exactly what a
//! Prometheus scrape would: samples by family and labels, sums, and percentiles from a
//! histogram's cumulative buckets (interpolated within a bucket, as PromQL's
//! `histogram_quantile` does).

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of an exposition (comments and malformed lines skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y \" z"` → pairs, unescaping `\\`, `\"` and `\n`.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim_start_matches(',').to_string(), value));
        rest = after.get(end + 1..)?.trim_start_matches(',');
    }
    Some(labels)
}

/// The sum of a family's samples whose labels pass `keep`.
pub fn sum(samples: &[Sample], name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && keep(s))
        .fold(0.0, |total, s| total + s.value)
}

/// A family's samples summed by one label's value, largest first.
pub fn by_label(samples: &[Sample], name: &str, label: &str) -> Vec<(String, f64)> {
    let mut totals: Vec<(String, f64)> = Vec::new();
    for s in samples.iter().filter(|s| s.name == name) {
        let key = s.label(label).unwrap_or_default();
        match totals.iter_mut().find(|(k, _)| k == key) {
            Some((_, total)) => *total += s.value,
            None => totals.push((key.to_string(), s.value)),
        }
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1));
    totals
}

/// The `q` quantile (0–1) of histogram `name` (its `_bucket` samples, all label sets summed),
/// in the histogram's unit; `None` when it has no observations.
pub fn quantile(samples: &[Sample], name: &str, q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for s in samples.iter().filter(|s| s.name == bucket) {
        let le = match s.label("le")? {
            "+Inf" => f64::INFINITY,
            bound => bound.parse().ok()?,
        };
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, count)) => *count += s.value,
            None => buckets.push((le, s.value)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(upper, count) in &buckets {
        if count >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let share = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (upper - lower) * share);
        }
        (lower, below) = (upper, count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    const TEXT: &str = r#"# HELP sluice_requests_total Requests.
# TYPE sluice_requests_total counter
sluice_requests_total{operation="messages",format="anthropic",status="200",model="claude \"x\""} 7
sluice_requests_total{operation="messages",format="anthropic",status="429",model="m"} 3
sluice_added_latency_seconds_bucket{le="0.0001"} 2
sluice_added_latency_seconds_bucket{le="0.0002"} 6
sluice_added_latency_seconds_bucket{le="+Inf"} 10
sluice_added_latency_seconds_count 10
"#;

    #[test]
    fn samples_labels_sums_and_groups() {
        let samples = parse(TEXT);
        assert_eq!(samples.len(), 6);
        assert_eq!(samples[0].label("model"), Some("claude \"x\""));
        assert_eq!(sum(&samples, "sluice_requests_total", |_| true), 10.0);
        let by_status = by_label(&samples, "sluice_requests_total", "status");
        assert_eq!(by_status[0], ("200".to_string(), 7.0));
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let samples = parse(TEXT);
        let median = quantile(&samples, "sluice_added_latency_seconds", 0.5).unwrap();
        assert!((median - 0.000175).abs() < 1e-9, "{median}");
        // Past the last finite bucket: its bound.
        let p99 = quantile(&samples, "sluice_added_latency_seconds", 0.99).unwrap();
        assert!((p99 - 0.0002).abs() < 1e-12);
        assert!(quantile(&samples, "nothing", 0.5).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_line_parses_or_is_skipped(line in ".{0,120}") {
            let _ = parse(&line);
        }
    }
}
