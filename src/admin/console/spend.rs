//! The Spend page: what was spent, by team, user, key, model, Claude Code session or user
//! agent — per day over the last weeks (a stacked chart of the largest groups), in total (bars
//! and a table), with the prompt cache's hit rate and savings beside the dollars. The figures
//! come from the same queries as `GET /admin/spend` and `sluice spend`.

use maud::{html, Markup};

use super::super::{AdminContext, AdminError};
use super::chart::{self, Series};
use super::page::{count, percent, usd};
use crate::limits::budget::{day_string, today};
use crate::store::ledger::{DaySpend, SpendRow};

/// What the page can group by: the query value and its tab's title.
pub const GROUPINGS: [(&str, &str); 6] = [
    ("team", "Team"),
    ("user", "User"),
    ("identity", "Key"),
    ("model", "Model"),
    ("session_id", "Claude Code session"),
    ("user_agent", "User agent"),
];

/// Days the chart covers, today included.
pub const DAYS: i64 = 30;

/// Groups drawn in the chart; the rest are summed as "other".
const CHART_GROUPS: usize = 6;

/// Rows in the bar chart.
const BAR_ROWS: usize = 15;

pub fn page(ctx: &AdminContext, by: Option<&str>) -> Result<Markup, AdminError> {
    let by = GROUPINGS
        .iter()
        .find(|(g, _)| Some(*g) == by)
        .map_or("team", |(g, _)| g);
    let rows = super::super::spend_rows(ctx, by)?;
    let first_day = day_string(today() - (DAYS - 1));
    let daily = super::super::spend_by_day(ctx, by, &first_day)?;
    let days: Vec<String> = (0..DAYS)
        .map(|i| day_string(today() - (DAYS - 1) + i))
        .collect();
    Ok(html! {
        nav.tabs {
            "By: "
            @for (g, title) in GROUPINGS {
                a href=(format!("/spend?by={g}")) class=[(g == by).then_some("active")] { (title) }
            }
        }
        (cards(&rows))
        h2 { "Per day, last " (DAYS) " days" }
        (chart::stacked_days(&days, &series(&days, &daily)))
        h2 { "In total" }
        @let bars: Vec<(String, f64)> = rows.iter().take(BAR_ROWS).map(|r| (name(r.group.as_deref()), r.cost_usd)).collect();
        (chart::bars(&bars, usd))
        (table(&rows))
    })
}

/// Totals across every row: spend, requests, the cache's hit rate and savings.
fn cards(rows: &[SpendRow]) -> Markup {
    let sum = |f: fn(&SpendRow) -> i64| rows.iter().map(f).sum::<i64>();
    let cost: f64 = rows.iter().map(|r| r.cost_usd).sum();
    let savings: f64 = rows.iter().map(|r| r.cache_savings_usd).sum();
    let read = sum(|r| r.cache_read_input_tokens);
    let prompt = sum(|r| r.input_tokens) + sum(|r| r.cache_creation_input_tokens) + read;
    let hit = if prompt > 0 {
        read as f64 / prompt as f64
    } else {
        0.0
    };
    html! {
        div.cards {
            div.card { div.label { "Spend" } div.value #total-spend { (usd(cost)) } }
            div.card { div.label { "Requests" } div.value #total-requests { (count(sum(|r| r.requests))) } }
            div.card { div.label { "Cache hit rate" } div.value #cache-hit-rate { (percent(hit)) } }
            div.card { div.label { "Cache savings" } div.value #cache-savings { (usd(savings)) } }
        }
    }
}

fn table(rows: &[SpendRow]) -> Markup {
    html! {
        table #spend-table {
            thead { tr {
                th { "Group" } th.num { "Requests" } th.num { "Input" } th.num { "Output" }
                th.num { "Cache read" } th.num { "Cache write (1 h)" } th.num { "Hit rate" }
                th.num { "Cache savings" } th.num { "Spend" }
            } }
            tbody {
                @for r in rows {
                    tr data-group=(r.group.as_deref().unwrap_or_default()) data-cost-usd=(format!("{:.6}", r.cost_usd)) data-requests=(r.requests) {
                        td { (name(r.group.as_deref())) }
                        td.num { (count(r.requests)) }
                        td.num { (count(r.input_tokens)) }
                        td.num { (count(r.output_tokens)) }
                        td.num { (count(r.cache_read_input_tokens)) }
                        td.num { (count(r.cache_creation_input_tokens)) " (" (count(r.cache_creation_1h_input_tokens)) ")" }
                        td.num { (percent(r.cache_hit_rate)) }
                        td.num { (usd(r.cache_savings_usd)) }
                        td.num { (usd(r.cost_usd)) }
                    }
                }
            }
        }
    }
}

/// The chart's series: the largest groups over the window, then "other".
fn series(days: &[String], daily: &[DaySpend]) -> Vec<Series> {
    let mut totals: Vec<(String, f64)> = Vec::new();
    for d in daily {
        let group = name(d.group.as_deref());
        match totals.iter_mut().find(|(g, _)| *g == group) {
            Some((_, t)) => *t += d.cost_usd,
            None => totals.push((group, d.cost_usd)),
        }
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1));
    let shown: Vec<String> = totals
        .iter()
        .take(CHART_GROUPS)
        .map(|(g, _)| g.clone())
        .collect();
    let mut series: Vec<Series> = shown
        .iter()
        .map(|g| Series {
            name: g.clone(),
            values: vec![0.0; days.len()],
        })
        .collect();
    let mut other = Series {
        name: "other".into(),
        values: vec![0.0; days.len()],
    };
    for d in daily {
        let Some(slot) = days.iter().position(|day| *day == d.day) else {
            continue;
        };
        let group = name(d.group.as_deref());
        let target = match shown.iter().position(|g| *g == group) {
            Some(i) => series.get_mut(i),
            None => Some(&mut other),
        };
        if let Some(v) = target.and_then(|s| s.values.get_mut(slot)) {
            *v += d.cost_usd;
        }
    }
    if other.values.iter().any(|v| *v > 0.0) {
        series.push(other);
    }
    series
}

/// A group as shown: `(none)` for requests without one.
fn name(group: Option<&str>) -> String {
    match group {
        Some(g) if !g.is_empty() => g.to_string(),
        _ => "(none)".into(),
    }
}
