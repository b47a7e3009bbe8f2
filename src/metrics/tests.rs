use super::*;

fn record(status: u16, model: &str, routed: bool) -> AccessRecord {
    AccessRecord {
        operation: "messages",
        format: crate::format::ClientFormat::Anthropic,
        status,
        model: Some(model.into()),
        upstream: routed.then(|| "anthropic".into()),
        caller: crate::record::Caller::Other {
            label: "key:k1".into(),
            user: None,
            team: Some("t1".into()),
        },
        input_tokens: 10,
        output_tokens: 5,
        cost_pico: 1_500_000,
        total_us: 1_200,
        added_us: 30,
        ttfb_us: Some(900),
        ..AccessRecord::default()
    }
}

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn counts_requests_tokens_cost_and_latency() {
    let m = Arc::new(Metrics::default());
    let mut c = Collector::new(Arc::clone(&m));
    c.observe(&[record(200, "claude-x", true), record(200, "claude-x", true)]);
    c.publish();
    let text = m.render(&ScrapeGauges::default());
    assert_eq!(
        line(&text, "sluice_requests_total{operation=\"messages\""),
        Some("sluice_requests_total{operation=\"messages\",format=\"anthropic\",status=\"200\",model=\"claude-x\"} 2")
    );
    assert!(
        text.contains("sluice_tokens_total{model=\"claude-x\",team=\"t1\",kind=\"input\"} 20\n")
    );
    assert!(text.contains("sluice_cost_usd_total{model=\"claude-x\",team=\"t1\"} 0.000003\n"));
    assert!(text.contains("sluice_added_latency_seconds_bucket{le=\"0.00005\"} 2\n"));
    assert!(text.contains("sluice_added_latency_seconds_bucket{le=\"0.000025\"} 0\n"));
    assert!(text.contains("sluice_request_duration_seconds_count{operation=\"messages\"} 2\n"));
    assert!(text.contains(
        "sluice_request_duration_seconds_bucket{operation=\"messages\",le=\"+Inf\"} 2\n"
    ));
}

#[test]
fn rejections_and_upstream_errors_are_labelled() {
    let m = Arc::new(Metrics::default());
    let mut c = Collector::new(Arc::clone(&m));
    let mut limited = record(429, "claude-x", false);
    limited.error = Some("rate_limited");
    limited.rejected = true;
    let mut failed = record(502, "claude-x", true);
    failed.error = Some("upstream_connect");
    failed.fallbacks = vec!["primary: connect refused".into()];
    c.observe(&[limited, failed]);
    c.publish();
    let text = m.render(&ScrapeGauges::default());
    assert!(text.contains("sluice_rejections_total{reason=\"rate_limited\"} 1\n"));
    assert!(text.contains(
        "sluice_upstream_errors_total{upstream=\"anthropic\",type=\"upstream_connect\"} 1\n"
    ));
    assert!(text.contains("sluice_fallbacks_total{upstream=\"primary\"} 1\n"));
    // An unrouted model is not a label value.
    assert!(text.contains("status=\"429\",model=\"\"} 1\n"));
}

#[test]
fn invented_label_values_cannot_grow_past_the_cap() {
    let m = Arc::new(Metrics::default());
    let mut c = Collector::new(Arc::clone(&m));
    let records: Vec<_> = (0..MAX_SERIES + 500)
        .map(|i| record(200, &format!("model-{i}"), true))
        .collect();
    c.observe(&records);
    c.publish();
    let text = m.render(&ScrapeGauges::default());
    let series = text
        .lines()
        .filter(|l| l.starts_with("sluice_requests_total{"))
        .count();
    assert_eq!(series, MAX_SERIES + 1);
    assert!(text.contains("model=\"other\"} 500\n"));
}

#[test]
fn label_values_are_escaped() {
    let m = Arc::new(Metrics::default());
    let mut c = Collector::new(Arc::clone(&m));
    c.observe(&[record(200, "a\"b\\c\nd", true)]);
    c.publish();
    let text = m.render(&ScrapeGauges::default());
    assert!(text.contains("model=\"a\\\"b\\\\c\\nd\"} 1\n"), "{text}");
}

#[test]
fn borrowed_labels_find_the_owned_series() {
    use std::hash::BuildHasher;
    let requests: HashMap<RequestLabels, u64> = HashMap::new();
    let owned: RequestLabels = ("messages", "anthropic", 200, "claude-x".into());
    let borrowed = Borrowed(("messages", "anthropic", 200u16, "claude-x"));
    assert_eq!(
        requests.hasher().hash_one(&borrowed),
        requests.hasher().hash_one(&owned)
    );
    assert!(borrowed.equivalent(&owned));
    let pair = Borrowed(("claude-x", "t1"));
    let owned_pair = ("claude-x".to_owned(), "t1".to_owned());
    assert_eq!(
        requests.hasher().hash_one(&pair),
        requests.hasher().hash_one(&owned_pair)
    );
    assert!(pair.equivalent(&owned_pair));
    let tokens = Borrowed(("claude-x", "t1", "input"));
    let owned_tokens: TokenLabels = ("claude-x".into(), "t1".into(), "input");
    assert_eq!(
        requests.hasher().hash_one(&tokens),
        requests.hasher().hash_one(&owned_tokens)
    );
    assert!(!Borrowed(("claude-y", "t1", "input")).equivalent(&owned_tokens));
}
