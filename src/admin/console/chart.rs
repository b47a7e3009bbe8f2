//! The console's charts, drawn on the server as inline SVG (no script, nothing to fetch):
//! spend per day stacked by group, horizontal bars, a budget meter and a rate sparkline.
//! Every chart carries its numbers as `<title>` tooltips and `data-` attributes, so a test can
//! check a picture against the table beside it.

use maud::{html, Markup};

/// Colours for series, in order.
const COLORS: [&str; 6] = [
    "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
];

/// The colour of the series named "other" (the groups a chart does not show one by one).
const OTHER: &str = "#9b9b9b";

/// One series of a stacked chart: its name and a value per day.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

const W: f64 = 760.0;
const H: f64 = 220.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 30.0;
const TOP: f64 = 10.0;

/// Bars per day (`days` along the x axis), each stacked from `series` (dollars).
pub fn stacked_days(days: &[String], series: &[Series]) -> Markup {
    let totals: Vec<f64> = (0..days.len())
        .map(|d| series.iter().filter_map(|s| s.values.get(d)).sum())
        .collect();
    let top = nice_ceiling(totals.iter().copied().fold(0.0, f64::max));
    let plot_h = H - TOP - BOTTOM;
    let slot = (W - LEFT) / days.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let mut rects = Vec::new();
    for (d, day) in days.iter().enumerate() {
        let x = LEFT + slot * d as f64 + (slot - bar_w) / 2.0;
        let mut y = TOP + plot_h;
        for (i, s) in series.iter().enumerate() {
            let v = s.values.get(d).copied().unwrap_or(0.0);
            if v > 0.0 {
                let h = v / top * plot_h;
                y -= h;
                rects.push((x, y, h, i, day, s.name.as_str(), v));
            }
        }
    }
    let label_every = (days.len() / 8).max(1);
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}")) role="img" aria-label="spend per day" {
            (axis_left(top, plot_h, dollars))
            @for (x, y, h, i, day, name, v) in &rects {
                rect x=(fmt(*x)) y=(fmt(*y)) width=(fmt(bar_w)) height=(fmt(*h)) fill=(color(*i, name)) data-day=(day) data-series=(name) data-usd=(format!("{v:.6}")) {
                    title { (day) " · " (name) ": $" (format!("{v:.4}")) }
                }
            }
            @for (d, day) in days.iter().enumerate() {
                @if d % label_every == 0 {
                    text.tick x=(fmt(LEFT + slot * d as f64 + slot / 2.0)) y=(fmt(H - 10.0)) text-anchor="middle" { (day.get(5..).unwrap_or(day)) }
                }
            }
        }
        (legend(series))
    }
}

/// Horizontal bars, one per `(label, value)`, with `show` formatting the value.
pub fn bars(rows: &[(String, f64)], show: impl Fn(f64) -> String) -> Markup {
    let top = rows
        .iter()
        .map(|r| r.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let row_h = 22.0;
    let h = row_h * rows.len().max(1) as f64 + 4.0;
    let (label_w, bar_max) = (180.0, W - 180.0 - 110.0);
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {h}")) role="img" {
            @for (i, (label, value)) in rows.iter().enumerate() {
                @let y = 2.0 + row_h * i as f64;
                text x=(fmt(label_w - 8.0)) y=(fmt(y + 15.0)) text-anchor="end" { (truncate(label, 26)) }
                rect x=(fmt(label_w)) y=(fmt(y + 3.0)) width=(fmt((value / top * bar_max).max(1.0))) height="15" fill=(COLORS[0]) data-label=(label) data-value=(format!("{value:.6}")) {
                    title { (label) ": " (show(*value)) }
                }
                text x=(fmt(label_w + (value / top * bar_max).max(1.0) + 6.0)) y=(fmt(y + 15.0)) { (show(*value)) }
            }
        }
    }
}

/// A budget's use: a bar filled to `used / limit`, amber past `soft`, red at the limit.
pub fn meter(used: f64, limit: f64, soft: Option<f64>) -> Markup {
    let share = if limit > 0.0 {
        (used / limit).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let fill = if used >= limit {
        "#c44e52"
    } else if soft.is_some_and(|s| used >= s) {
        "#dd8452"
    } else {
        "#55a868"
    };
    html! {
        svg.meter xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 14" width="200" height="14" role="img" {
            rect width="200" height="14" rx="3" fill="#e6e6e6" {}
            rect width=(fmt(200.0 * share)) height="14" rx="3" fill=(fill) {}
        }
    }
}

/// A line through `points` (oldest first), scaled to its own maximum.
pub fn sparkline(points: &[f64]) -> Markup {
    let (w, h) = (300.0, 60.0);
    let top = points
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let step = w / (points.len().saturating_sub(1)).max(1) as f64;
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{},{}",
                fmt(step * i as f64),
                fmt(h - 2.0 - v / top * (h - 4.0))
            )
        })
        .collect();
    html! {
        svg.spark xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) width="300" height="60" role="img" {
            rect width=(w) height=(h) fill="#f6f8fa" {}
            @if path.len() > 1 {
                polyline points=(path.join(" ")) fill="none" stroke=(COLORS[0]) stroke-width="2" {}
            }
        }
    }
}

fn axis_left(top: f64, plot_h: f64, label: impl Fn(f64) -> String) -> Markup {
    html! {
        @for i in 0..=4 {
            @let v = top * f64::from(i) / 4.0;
            @let y = TOP + plot_h - plot_h * f64::from(i) / 4.0;
            line x1=(LEFT) x2=(W) y1=(fmt(y)) y2=(fmt(y)) stroke="#e6e6e6" {}
            text.tick x=(fmt(LEFT - 6.0)) y=(fmt(y + 4.0)) text-anchor="end" { (label(v)) }
        }
    }
}

fn legend(series: &[Series]) -> Markup {
    html! {
        ul.legend {
            @for (i, s) in series.iter().enumerate() {
                li { span.swatch style=(format!("background:{}", color(i, &s.name))) {} (s.name) }
            }
        }
    }
}

/// The colour of series `i`, named `name`.
fn color(i: usize, name: &str) -> &'static str {
    if name == "other" {
        return OTHER;
    }
    COLORS.get(i % COLORS.len()).copied().unwrap_or(OTHER)
}

/// An axis label in dollars, with the decimals small amounts need.
fn dollars(v: f64) -> String {
    match v {
        0.0 => "$0".into(),
        v if v >= 10.0 => format!("${v:.0}"),
        v if v >= 0.1 => format!("${v:.2}"),
        v => {
            let decimals = (-v.log10().floor()) as usize + 1;
            format!("${v:.decimals$}")
        }
    }
}

/// A round axis maximum at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stacked_chart_has_a_rect_per_nonzero_value_and_escapes_names() {
        let days = vec!["2026-12-01".to_string(), "2026-12-02".to_string()];
        let series = vec![
            Series {
                name: "<team>".into(),
                values: vec![1.0, 0.0],
            },
            Series {
                name: "b".into(),
                values: vec![0.5, 2.0],
            },
        ];
        let svg = stacked_days(&days, &series).into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("&lt;team&gt;") && !svg.contains("<team>"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.012), 0.02);
        assert_eq!(nice_ceiling(0.021), 0.025);
    }
}
