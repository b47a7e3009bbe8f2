//! sluice's metrics in OTLP form, folded from access records on the exporter thread and sent
//! as cumulative sums and explicit-bucket histograms (bucket bounds as the GenAI conventions
//! advise):
//!
//! - `gen_ai.client.token.usage` (`{token}`, by `gen_ai.token.type` = `input` | `output`;
//!   input counts cached prompt tokens, as the conventions do)
//! - `gen_ai.client.operation.duration` (s): whole requests
//! - `gen_ai.server.time_to_first_token` (s): until the upstream's response head
//! - `sluice.added_latency` (s): sluice's own share
//! - `sluice.cost` (USD, a monotonic sum, by team too)
//!
//! Every series carries `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`
//! and `error.type` when the request failed. Label values a client chooses are bounded: past
//! [`MAX_SERIES`] series per metric, new ones are counted under `other`.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum,
};

use super::spans::{input_tokens, operation_name, text};
use crate::record::AccessRecord;

/// Most series one metric keeps; further attribute sets fold into `other`.
pub const MAX_SERIES: usize = 2000;

const TOKEN_BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
const DURATION_BOUNDS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const FIRST_TOKEN_BOUNDS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const ADDED_BOUNDS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1,
];

/// `(operation, provider, request model, error type)`.
type Series = (&'static str, &'static str, String, String);

/// One histogram's state for one series.
#[derive(Clone, Debug)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Buckets {
    fn new(bounds: &[f64]) -> Self {
        Self {
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, bounds: &[f64], v: f64) {
        let slot = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        if let Some(c) = self.counts.get_mut(slot) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// A histogram metric: its bounds and a [`Buckets`] per series (by its number in [`Interned`])
/// and token type.
struct HistogramMetric {
    bounds: &'static [f64],
    series: HashMap<(usize, &'static str), Buckets>,
}

impl HistogramMetric {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            series: HashMap::new(),
        }
    }

    fn observe(&mut self, series: usize, kind: &'static str, v: f64) {
        let bounds = self.bounds;
        self.series
            .entry((series, kind))
            .or_insert_with(|| Buckets::new(bounds))
            .observe(bounds, v);
    }
}

/// Every series seen, numbered: a record's attributes are looked up once, not per metric.
/// Past [`MAX_SERIES`], new ones fold into their `other` form.
#[derive(Default)]
struct Interned {
    numbers: HashMap<Series, usize>,
    all: Vec<Series>,
}

impl Interned {
    fn number(&mut self, series: Series) -> usize {
        if let Some(&n) = self.numbers.get(&series) {
            return n;
        }
        let series = if self.all.len() >= MAX_SERIES {
            other(&series)
        } else {
            series
        };
        if let Some(&n) = self.numbers.get(&series) {
            return n;
        }
        self.all.push(series.clone());
        self.numbers.insert(series, self.all.len() - 1);
        self.all.len() - 1
    }

    fn get(&self, n: usize) -> Option<&Series> {
        self.all.get(n)
    }
}

/// Everything folded so far (cumulative since the exporter started).
pub struct Aggregate {
    start_unix_nano: u64,
    tokens: HistogramMetric,
    duration: HistogramMetric,
    first_token: HistogramMetric,
    added: HistogramMetric,
    /// USD by series and team.
    cost: HashMap<(usize, String), f64>,
    series: Interned,
}

impl Aggregate {
    pub fn new(start_unix_nano: u64) -> Self {
        Self {
            start_unix_nano,
            tokens: HistogramMetric::new(&TOKEN_BOUNDS),
            duration: HistogramMetric::new(&DURATION_BOUNDS),
            first_token: HistogramMetric::new(&FIRST_TOKEN_BOUNDS),
            added: HistogramMetric::new(&ADDED_BOUNDS),
            cost: HashMap::new(),
            series: Interned::default(),
        }
    }

    /// Folds one finished request in.
    pub fn observe(&mut self, r: &AccessRecord) {
        if super::spans::untraced(r.operation) {
            return;
        }
        let series: Series = (
            operation_name(r.operation),
            r.provider.unwrap_or("none"),
            r.model.as_deref().unwrap_or_default().to_string(),
            r.error
                .map(str::to_string)
                .or_else(|| r.upstream_error.clone())
                .unwrap_or_default(),
        );
        let series = self.series.number(series);
        if r.metered {
            self.tokens.observe(series, "input", input_tokens(r) as f64);
            self.tokens
                .observe(series, "output", r.output_tokens as f64);
        }
        self.duration.observe(series, "", r.total_us as f64 / 1e6);
        if let Some(ttfb) = r.ttfb_us {
            self.first_token.observe(series, "", ttfb as f64 / 1e6);
        }
        self.added.observe(series, "", r.added_us as f64 / 1e6);
        let mut key = (series, r.caller.team().unwrap_or_default().to_string());
        if self.cost.len() >= MAX_SERIES && !self.cost.contains_key(&key) {
            key.1 = "other".into();
        }
        *self.cost.entry(key).or_insert(0.0) += r.cost_usd;
    }

    /// The attributes of series number `n`.
    fn attributes(&self, n: usize) -> Vec<KeyValue> {
        self.series
            .get(n)
            .map(series_attributes)
            .unwrap_or_default()
    }

    /// The metrics as of `now_unix_nano`.
    pub fn metrics(&self, now_unix_nano: u64) -> Vec<Metric> {
        let histogram = |name: &str,
                         unit: &str,
                         description: &str,
                         m: &HistogramMetric,
                         kind_key: Option<&str>| Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: Some(metric::Data::Histogram(Histogram {
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                data_points: m
                    .series
                    .iter()
                    .map(|((series, kind), b)| {
                        let mut attributes = self.attributes(*series);
                        if let Some(key) = kind_key {
                            attributes.push(text(key, kind));
                        }
                        HistogramDataPoint {
                            attributes,
                            start_time_unix_nano: self.start_unix_nano,
                            time_unix_nano: now_unix_nano,
                            count: b.count,
                            sum: Some(b.sum),
                            bucket_counts: b.counts.clone(),
                            explicit_bounds: m.bounds.to_vec(),
                            ..HistogramDataPoint::default()
                        }
                    })
                    .collect(),
            })),
            ..Metric::default()
        };
        vec![
            histogram(
                "gen_ai.client.token.usage",
                "{token}",
                "Tokens used per request, by token type (input counts cached prompt tokens).",
                &self.tokens,
                Some("gen_ai.token.type"),
            ),
            histogram(
                "gen_ai.client.operation.duration",
                "s",
                "Whole request time through sluice.",
                &self.duration,
                None,
            ),
            histogram(
                "gen_ai.server.time_to_first_token",
                "s",
                "Time until the upstream's response began.",
                &self.first_token,
                None,
            ),
            histogram(
                "sluice.added_latency",
                "s",
                "The time sluice itself added to a request.",
                &self.added,
                None,
            ),
            Metric {
                name: "sluice.cost".into(),
                description: "What requests cost, in USD, by team.".into(),
                unit: "USD".into(),
                data: Some(metric::Data::Sum(Sum {
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                    data_points: self
                        .cost
                        .iter()
                        .map(|((series, team), usd)| {
                            let mut attributes = self.attributes(*series);
                            attributes.push(text("sluice.team", team));
                            NumberDataPoint {
                                attributes,
                                start_time_unix_nano: self.start_unix_nano,
                                time_unix_nano: now_unix_nano,
                                value: Some(number_data_point::Value::AsDouble(*usd)),
                                ..NumberDataPoint::default()
                            }
                        })
                        .collect(),
                })),
                ..Metric::default()
            },
        ]
    }
}

/// A series with its client-chosen values (model, error) folded into `other`.
fn other(series: &Series) -> Series {
    (series.0, series.1, "other".into(), "other".into())
}

fn series_attributes((operation, provider, model, error): &Series) -> Vec<KeyValue> {
    let mut out = vec![
        text("gen_ai.operation.name", operation),
        text("gen_ai.provider.name", provider),
    ];
    if !model.is_empty() {
        out.push(text("gen_ai.request.model", model));
    }
    if !error.is_empty() {
        out.push(text("error.type", error));
    }
    out
}
