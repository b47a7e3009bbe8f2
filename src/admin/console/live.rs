//! The Live page: how sluice is doing now, from its own `/metrics` text (so the page and a
//! Prometheus scrape agree) and the upstreams' health board — request rate, status mix, added
//! latency and upstream time to first byte percentiles, upstream health, errors and fallbacks,
//! refusals by reason. The page reloads itself every [`REFRESH_SECONDS`].
//!
//! The request rate needs two readings in time: the admin thread samples the request counter
//! every [`SAMPLE_EVERY`] (see [`RateSampler`]), keeping the last [`SAMPLES`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use maud::{html, Markup};

use super::super::AdminContext;
use super::chart;
use super::page::{count, duration, percent};
use super::scrape::{self, Sample};
use crate::metrics::{
    ADDED_LATENCY, FALLBACKS_TOTAL, REJECTIONS_TOTAL, REQUESTS_TOTAL, UPSTREAM_ERRORS_TOTAL,
    UPSTREAM_TTFB,
};

pub const REFRESH_SECONDS: u32 = 5;
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Five minutes of samples.
pub const SAMPLES: usize = 61;

/// Readings of the request counter over time.
#[derive(Default)]
pub struct RateSampler {
    #[expect(
        clippy::disallowed_types,
        reason = "the admin threads, never a worker; held to push or copy a few numbers"
    )]
    readings: std::sync::Mutex<VecDeque<(Instant, f64)>>,
}

impl RateSampler {
    /// Takes a reading if the last one is [`SAMPLE_EVERY`] old.
    pub fn sample_if_due(&self, ctx: &AdminContext) {
        let due = self
            .lock()
            .back()
            .is_none_or(|(at, _)| at.elapsed() >= SAMPLE_EVERY);
        if due {
            if let Some(text) = metrics_text(ctx) {
                let total = scrape::sum(&scrape::parse(&text), REQUESTS_TOTAL, |_| true);
                let mut readings = self.lock();
                readings.push_back((Instant::now(), total));
                while readings.len() > SAMPLES {
                    readings.pop_front();
                }
            }
        }
    }

    /// Requests per second between consecutive readings, oldest first.
    fn rates(&self) -> Vec<f64> {
        let readings = self.lock();
        readings
            .iter()
            .zip(readings.iter().skip(1))
            .map(|((t0, n0), (t1, n1))| {
                let seconds = t1.duration_since(*t0).as_secs_f64().max(1e-3);
                (n1 - n0).max(0.0) / seconds
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, f64)>> {
        self.readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The text `GET /metrics` serves now.
fn metrics_text(ctx: &AdminContext) -> Option<String> {
    ctx.records
        .as_ref()
        .map(|records| records.metrics.render(&records.gauges()))
}

pub fn page(ctx: &AdminContext) -> Markup {
    ctx.console.rates.sample_if_due(ctx);
    let samples = metrics_text(ctx)
        .map(|t| scrape::parse(&t))
        .unwrap_or_default();
    let rates = ctx.console.rates.rates();
    let last_minute: Vec<f64> = rates.iter().rev().take(12).copied().collect();
    let rate = if last_minute.is_empty() {
        None
    } else {
        Some(last_minute.iter().sum::<f64>() / last_minute.len() as f64)
    };
    html! {
        (traffic(&samples, rate, &rates))
        (latency(&samples))
        (upstreams(ctx, &samples))
        (refusals(&samples))
    }
}

fn traffic(samples: &[Sample], rate: Option<f64>, rates: &[f64]) -> Markup {
    let total = scrape::sum(samples, REQUESTS_TOTAL, |_| true);
    let class = |c: char| {
        scrape::sum(samples, REQUESTS_TOTAL, |s| {
            s.label("status").is_some_and(|st| st.starts_with(c))
        })
    };
    let share = |n: f64| if total > 0.0 { n / total } else { 0.0 };
    html! {
        div.cards {
            div.card { div.label { "Requests" } div.value #requests-total { (count(total as i64)) } }
            div.card { div.label { "Request rate (last minute)" } div.value #request-rate {
                @match rate { Some(r) => { (format!("{r:.1}")) " /s" }, None => "—" }
            } }
            div.card { div.label { "2xx" } div.value #status-2xx { (percent(share(class('2')))) } }
            div.card { div.label { "4xx" } div.value #status-4xx { (percent(share(class('4')))) } }
            div.card { div.label { "5xx" } div.value #status-5xx { (percent(share(class('5')))) } }
        }
        @if rates.len() > 1 {
            p.muted { "Requests per second, last " (rates.len() * SAMPLE_EVERY.as_secs() as usize / 60) " min:" }
            (chart::sparkline(rates))
        }
        h2 { "By status" }
        table #status-table {
            thead { tr { th { "Status" } th.num { "Requests" } } }
            tbody {
                @for (status, n) in scrape::by_label(samples, REQUESTS_TOTAL, "status") {
                    tr data-status=(status) { td { (status) } td.num { (count(n as i64)) } }
                }
            }
        }
    }
}

fn latency(samples: &[Sample]) -> Markup {
    let row = |name: &str, title: &str| {
        let q = |p: f64| scrape::quantile(samples, name, p).map_or("—".to_string(), duration);
        html! { tr { td { (title) } td.num { (q(0.5)) } td.num { (q(0.9)) } td.num { (q(0.99)) } } }
    };
    html! {
        h2 { "Latency" }
        table #latency-table {
            thead { tr { th { "" } th.num { "p50" } th.num { "p90" } th.num { "p99" } } }
            tbody {
                (row(ADDED_LATENCY, "Added by sluice"))
                (row(UPSTREAM_TTFB, "Upstream time to first byte"))
            }
        }
    }
}

fn upstreams(ctx: &AdminContext, samples: &[Sample]) -> Markup {
    let snapshot = ctx.reloader.current();
    let per = |family: &str, upstream: &str| {
        scrape::sum(samples, family, |s| s.label("upstream") == Some(upstream))
    };
    html! {
        h2 { "Upstreams" }
        table #upstreams-table {
            thead { tr { th { "Upstream" } th { "Health" } th.num { "Errors" } th.num { "Fallbacks from it" } } }
            tbody {
                @for (i, u) in snapshot.state.upstreams.iter().enumerate() {
                    tr data-upstream=(u.name) {
                        td { (u.name) }
                        td { @if snapshot.state.health.is_up(i) { span.up { "up" } } @else { span.down { "down" } } }
                        td.num { (count(per(UPSTREAM_ERRORS_TOTAL, &u.name) as i64)) }
                        td.num { (count(per(FALLBACKS_TOTAL, &u.name) as i64)) }
                    }
                }
            }
        }
    }
}

fn refusals(samples: &[Sample]) -> Markup {
    let rows = scrape::by_label(samples, REJECTIONS_TOTAL, "reason");
    html! {
        h2 { "Refusals by reason" }
        @if rows.is_empty() {
            p.muted { "None." }
        } @else {
            table #refusals-table {
                thead { tr { th { "Reason" } th.num { "Requests" } } }
                tbody {
                    @for (reason, n) in &rows {
                        tr data-reason=(reason) { td { (reason) } td.num { (count(*n as i64)) } }
                    }
                }
            }
        }
    }
}
