//! `sluice bench --plot FILE.svg`: the run as a picture — latency against percentile for each
//! target (direct, through sluice with and without governance, through nginx) on a log scale of
//! percentiles, and throughput bars, from the same run; one panel per worker count. A
//! self-contained SVG: no script, no font or style sheet to fetch.

use std::fmt::Write;

use serde::Serialize;

/// The percentiles a curve is drawn through.
pub const PERCENTILES: [f64; 9] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99];

/// One target's latency at [`PERCENTILES`], µs.
#[derive(Debug, Serialize, Clone)]
pub struct LatencyCurve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl LatencyCurve {
    /// The curve of histogram `h` (nanoseconds).
    pub fn of(name: &str, h: &hdrhistogram::Histogram<u64>) -> Self {
        let points = PERCENTILES
            .iter()
            .map(|&p| (p, h.value_at_quantile(p / 100.0) as f64 / 1000.0))
            .collect();
        LatencyCurve {
            name: name.to_string(),
            points,
        }
    }
}

/// A throughput bar: a target and its requests per second.
pub struct Bar {
    pub name: String,
    pub rps: f64,
}

const COLORS: [&str; 5] = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"];
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 420.0;
/// The latency panel's plotting area: left, top, width, height.
const CURVES: (f64, f64, f64, f64) = (70.0, 50.0, 520.0, 300.0);
/// The throughput panel's.
const BARS: (f64, f64, f64, f64) = (680.0, 50.0, 240.0, 300.0);

/// The picture of `curves` and `bars` under `title`.
pub fn svg(title: &str, curves: &[LatencyCurve], bars: &[Bar]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    latency_panel(&mut out, curves);
    throughput_panel(&mut out, bars);
    out.push_str("</svg>\n");
    out
}

/// Several pictures from [`svg`] one above the other, as one SVG (one per worker count).
pub fn stack(pictures: &[String]) -> String {
    if let [one] = pictures {
        return one.clone();
    }
    let height = HEIGHT * pictures.len() as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">"#
    );
    for (i, picture) in pictures.iter().enumerate() {
        // A nested <svg> is placed by its own x and y.
        let placed = picture.replacen("<svg ", &format!(r#"<svg y="{}" "#, HEIGHT * i as f64), 1);
        out.push_str(placed.trim_end());
    }
    out.push_str("</svg>\n");
    out
}

/// Where percentile `p` sits on the x axis: log of 1 / (1 − p), so the tail gets the room.
fn percentile_x(p: f64) -> f64 {
    let (left, _, width, _) = CURVES;
    let span = |p: f64| (1.0 / (1.0 - p / 100.0)).log10();
    let (lo, hi) = (
        span(PERCENTILES[0]),
        span(PERCENTILES[PERCENTILES.len() - 1]),
    );
    left + (span(p) - lo) / (hi - lo) * width
}

fn latency_panel(out: &mut String, curves: &[LatencyCurve]) {
    let (left, top, width, height) = CURVES;
    let max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|(_, us)| *us))
        .fold(1.0_f64, f64::max);
    let top_us = nice_ceiling(max);
    let y = |us: f64| top + height - us / top_us * height;
    axes(out, CURVES, "latency at concurrency 1 (µs) by percentile");
    for i in 0..=4 {
        let us = top_us * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{us:.0}</text>"##,
            left + width,
            left - 6.0,
            y(us) + 4.0,
            y0 = y(us),
        );
    }
    for p in [50.0, 90.0, 99.0, 99.9, 99.99] {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{p}%</text>"#,
            percentile_x(p),
            top + height + 16.0
        );
    }
    for (i, curve) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = curve
            .points
            .iter()
            .map(|(p, us)| format!("{:.1},{:.1}", percentile_x(*p), y(*us)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = top + 14.0 + 16.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{}" y="{:.1}" width="12" height="3" fill="{color}"/><text x="{}" y="{:.1}">{}</text>"#,
            left + 10.0,
            ly - 4.0,
            left + 28.0,
            ly,
            escape(&curve.name)
        );
    }
}

fn throughput_panel(out: &mut String, bars: &[Bar]) {
    let (left, top, width, height) = BARS;
    axes(out, BARS, "throughput (requests/s)");
    let top_rps = nice_ceiling(bars.iter().map(|b| b.rps).fold(1.0, f64::max));
    let slot = width / bars.len().max(1) as f64;
    for (i, bar) in bars.iter().enumerate() {
        let h = bar.rps / top_rps * height;
        let x = left + slot * i as f64 + slot * 0.15;
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0}</text><text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            top + height - h,
            slot * 0.7,
            COLORS[i % COLORS.len()],
            x + slot * 0.35,
            top + height - h - 4.0,
            bar.rps,
            x + slot * 0.35,
            top + height + 16.0,
            escape(&bar.name)
        );
    }
}

fn axes(out: &mut String, (left, top, width, height): (f64, f64, f64, f64), label: &str) {
    let _ = write!(
        out,
        r#"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="black"/><line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="black"/><text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        top + height,
        left + width,
        left + width / 2.0,
        top - 10.0,
        escape(label),
        y = top + height,
    );
}

/// The smallest of 1, 2 or 5 × 10ⁿ at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picture_has_a_curve_per_target_and_a_bar_per_figure() {
        let curve = |name: &str, base: f64| LatencyCurve {
            name: name.into(),
            points: PERCENTILES.iter().map(|p| (*p, base + p)).collect(),
        };
        let curves = [curve("direct", 90.0), curve("through sluice", 130.0)];
        let bars = [
            Bar {
                name: "direct".into(),
                rps: 90_000.0,
            },
            Bar {
                name: "sluice".into(),
                rps: 40_000.0,
            },
        ];
        let svg = svg("a <run>", &curves, &bars);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("through sluice") && svg.contains("a &lt;run&gt;"));
        assert!(svg.contains(">90000<") && svg.contains(">40000<"));
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(99_000.0), 100_000.0);
        assert!(
            percentile_x(50.0) < percentile_x(99.0) && percentile_x(99.0) < percentile_x(99.99)
        );
    }
}
