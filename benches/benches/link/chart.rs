//! The chart of the interactive scenarios, as hand-written SVG: for `inter1` and `inter8`
//! side by side, each peer's download rate during the measurement (x, % of the link) against
//! its interactive round trip's 99th percentile (y, ms, log scale), with the targets (70 ms,
//! 90 %) as dashed lines. The mixed pairs (ours against Go) are squares.

use std::fmt::Write as _;
use std::path::Path;

use crate::cases::{Case, Impl, Scenario, IMPLS, MIXED};
use crate::report::{Failure, Results};

/// The target for the interactive round trip's p99, ms.
pub const TARGET_P99_MS: f64 = 70.0;
/// The target for the download's share of the link, %.
pub const TARGET_SHARE: f64 = 90.0;

const WIDTH: f64 = 1320.0;
const HEIGHT: f64 = 620.0;
const PLOT_W: f64 = 360.0;
const PLOT_H: f64 = 340.0;
const PLOT_TOP: f64 = 100.0;
/// Left edges of the two plots.
const PLOT_LEFT: [f64; 2] = [80.0, 750.0];
/// Gap between a plot and its column of labels.
const LABEL_GAP: f64 = 22.0;
/// Height of a label line.
const LINE: f64 = 12.5;

/// A point: a peer's result in one scenario.
struct Point {
    label: String,
    color: &'static str,
    hollow: bool,
    square: bool,
    share: f64,
    p99_ms: f64,
}

/// The colour of a multiplexer's points.
fn color(imp: Impl) -> &'static str {
    match imp {
        Impl::Tokio(1) => "#1f77b4",
        Impl::Tokio(_) => "#17becf",
        Impl::Smol(1) => "#2ca02c",
        Impl::Smol(_) => "#9a9c1e",
        Impl::Go(1) => "#d62728",
        Impl::Go(_) => "#ff7f0e",
        Impl::AsyncSmux => "#9467bd",
        Impl::Yamux => "#8c564b",
        Impl::TokioToGo(1) => "#3949ab",
        Impl::TokioToGo(_) => "#00897b",
        Impl::GoToTokio(1) => "#ad1457",
        Impl::GoToTokio(_) => "#e377c2",
    }
}

/// A marker at (`x`, `y`): a circle, or a square for a mixed pair.
fn marker(svg: &mut String, x: f64, y: f64, square: bool, fill: &str, stroke: &str) {
    let _ = if square {
        writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{fill}" stroke="{stroke}" stroke-width="2"/>"#,
            x - 4.5,
            y - 4.5
        )
    } else {
        writeln!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{fill}" stroke="{stroke}" stroke-width="2"/>"#
        )
    };
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The 1-2-5 values from `lo` to `hi`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * decade;
            if v >= lo * 0.999 && v <= hi * 1.001 {
                ticks.push(v);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// The smallest 1-2-5 value ≥ `v`.
fn nice_up(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|&t| t >= v)
        .unwrap_or(10.0 * decade)
}

/// The largest 1-2-5 value ≤ `v`.
fn nice_down(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|&t| t <= v)
        .unwrap_or(decade)
}

/// Label heights for points at heights `ys` (ascending): each as near its point as it can be,
/// [`LINE`] apart, within `top..=bottom`.
fn spread(ys: &[f64], top: f64, bottom: f64) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::with_capacity(ys.len());
    for &y in ys {
        let lowest = out.last().map_or(top, |&prev| prev + LINE);
        out.push(y.max(lowest));
    }
    // Pushed past the bottom: move the last ones up again.
    let mut limit = bottom;
    for y in out.iter_mut().rev() {
        *y = y.min(limit);
        limit = *y - LINE;
    }
    out
}

/// The axes shared by both panels.
struct Scale {
    x_max: f64,
    y_min: f64,
    y_max: f64,
}

impl Scale {
    fn x(&self, left: f64, share: f64) -> f64 {
        left + share.clamp(0.0, self.x_max) / self.x_max * PLOT_W
    }

    fn y(&self, ms: f64) -> f64 {
        let t = (ms.clamp(self.y_min, self.y_max).ln() - self.y_min.ln())
            / (self.y_max.ln() - self.y_min.ln());
        PLOT_TOP + PLOT_H * (1.0 - t)
    }
}

/// Writes the chart to `path` if an interactive case has a result; `caption` goes at the
/// bottom (the command line). Returns whether it wrote.
pub fn write(r: &Results, path: &Path, caption: &str) -> std::io::Result<bool> {
    let panels = [Scenario::Inter1, Scenario::Inter8];
    let points: Vec<Vec<Point>> = panels.iter().map(|&sc| points(r, sc)).collect();
    let all = || points.iter().flatten();
    if all().next().is_none() {
        return Ok(false);
    }
    let max_ms = all().map(|p| p.p99_ms).fold(TARGET_P99_MS, f64::max);
    let min_ms = all().map(|p| p.p99_ms).fold(TARGET_P99_MS, f64::min);
    let scale = Scale {
        // A share a little over 100 % (counted between two instants while buffers drain)
        // is drawn at 100 %; its label says how much.
        x_max: 100.0,
        y_min: nice_down(min_ms / 1.5).min(20.0),
        y_max: nice_up(max_ms * 1.3).max(500.0),
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="30" font-size="17" text-anchor="middle" font-weight="bold">Interactive round trip (p99) beside a download, RTT 40 ms, 100 Mbit/s</text>"#,
        WIDTH / 2.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="{x}" y="52" font-size="12" text-anchor="middle" fill="#444">A 1-byte request every 50 ms on one stream of the connection, echoed by the server; the download runs server → client on the other streams.</text><text x="{x}" y="68" font-size="12" text-anchor="middle" fill="#444">Goal: the bottom right corner (p99 under 70 ms with the download over 90 % of the link). One point per peer; hollow: +lowat.</text>"##,
        x = WIDTH / 2.0
    );
    for (i, &sc) in panels.iter().enumerate() {
        panel(&mut svg, &scale, PLOT_LEFT[i], sc, &points[i], r);
    }
    legend(&mut svg, all().any(|p| p.square));
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="#666">{}</text>"##,
        WIDTH / 2.0,
        HEIGHT - 10.0,
        escape(caption)
    );
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)?;
    Ok(true)
}

/// The points of `sc`: every peer with a result.
fn points(r: &Results, sc: Scenario) -> Vec<Point> {
    let mut points = Vec::new();
    for peer in crate::cases::peers() {
        for &path in sc.paths() {
            let case = Case {
                scenario: sc,
                peer,
                path,
            };
            if let Some(s) = r.summary(case).filter(|s| s.samples > 0) {
                points.push(Point {
                    label: peer.key(),
                    color: color(peer.imp),
                    hollow: peer.lowat,
                    square: peer.imp.is_mixed(),
                    share: s.share,
                    p99_ms: s.p99_ms,
                });
            }
        }
    }
    points
}

/// One panel: frame, grid, ticks, targets, points and their labels, and the cases that
/// failed below it.
fn panel(svg: &mut String, scale: &Scale, left: f64, sc: Scenario, points: &[Point], r: &Results) {
    let right = left + PLOT_W;
    let bottom = PLOT_TOP + PLOT_H;
    let streams = sc.streams();
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle" font-weight="bold">{}: beside {} download stream{}</text>"#,
        left + PLOT_W / 2.0,
        PLOT_TOP - 10.0,
        sc.key(),
        streams,
        if streams == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{PLOT_TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="#fafafa" stroke="#333"/>"##
    );
    // x grid and ticks: every 10 %.
    let mut share = 0.0;
    while share <= scale.x_max + 1e-9 {
        let x = scale.x(left, share);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{PLOT_TOP}" x2="{x:.1}" y2="{bottom}" stroke="#e4e4e4"/><line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{share:.0}</text>"##,
            bottom + 5.0,
            bottom + 18.0
        );
        share += 10.0;
    }
    // y grid and ticks: 1-2-5.
    for ms in log_ticks(scale.y_min, scale.y_max) {
        let y = scale.y(ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e4e4e4"/><line x1="{:.1}" y1="{y:.1}" x2="{left}" y2="{y:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{ms}</text>"##,
            left - 5.0,
            left - 8.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">download during the measurement, % of the link rate</text>"#,
        left + PLOT_W / 2.0,
        bottom + 38.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">interactive round trip p99, ms (log scale)</text>"#,
        left - 48.0,
        PLOT_TOP + PLOT_H / 2.0
    );
    // The targets.
    let ty = scale.y(TARGET_P99_MS);
    let tx = scale.x(left, TARGET_SHARE);
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" y1="{ty:.1}" x2="{right}" y2="{ty:.1}" stroke="#c00" stroke-width="1.3" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#c00">target {TARGET_P99_MS} ms</text>"##,
        left + 4.0,
        ty - 4.0
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{tx:.1}" y1="{PLOT_TOP}" x2="{tx:.1}" y2="{bottom}" stroke="#c00" stroke-width="1.3" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#c00" text-anchor="end">{TARGET_SHARE} %</text>"##,
        tx - 3.0,
        PLOT_TOP + 12.0
    );
    // The points, then their labels in a column right of the plot (most points sit near
    // 100 %), in the order of their heights and at least a line apart, each with a leader
    // line to its point.
    let at: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (scale.x(left, p.share), scale.y(p.p99_ms)))
        .collect();
    for (p, &(x, y)) in points.iter().zip(&at) {
        let fill = if p.hollow { "white" } else { p.color };
        marker(svg, x, y, p.square, fill, p.color);
    }
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| at[a].1.total_cmp(&at[b].1));
    let label_y = spread(
        &order.iter().map(|&i| at[i].1).collect::<Vec<_>>(),
        PLOT_TOP + 4.0,
        bottom,
    );
    let column = right + LABEL_GAP;
    for (&i, &ly) in order.iter().zip(&label_y) {
        let (x, y) = at[i];
        let p = &points[i];
        let _ = writeln!(
            svg,
            r##"<polyline points="{:.1},{y:.1} {right:.1},{y:.1} {:.1},{ly:.1}" fill="none" stroke="{}" stroke-opacity="0.45" stroke-width="0.8"/><text x="{column:.1}" y="{:.1}" font-size="10" fill="{}">{}: {} ms, {:.0} %</text>"##,
            x + 6.0,
            column - 3.0,
            p.color,
            ly + 3.5,
            p.color,
            escape(&p.label),
            crate::common::harness::fmt_value(p.p99_ms),
            p.share
        );
    }
    if points.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="#888">no result in this run</text>"##,
            left + PLOT_W / 2.0,
            PLOT_TOP + PLOT_H / 2.0
        );
    }
    // The cases of this panel without a point.
    let missing: Vec<String> = r
        .failed
        .iter()
        .filter(|(case, _)| case.scenario == sc)
        .map(|(case, f)| {
            let kind = match f {
                Failure::Hang(_) => "hang",
                Failure::Failed(_) => "failed",
            };
            format!("{} ({kind})", case.peer.key())
        })
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{left}" y="{:.1}" font-size="10" fill="#c00">no point: {}</text>"##,
            bottom + 54.0,
            escape(&missing.join(", "))
        );
    }
}

/// The legend below the panels: a colour per multiplexer (and per mixed pair if `mixed`),
/// filled or hollow markers.
fn legend(svg: &mut String, mixed: bool) {
    let y = PLOT_TOP + PLOT_H + 90.0;
    let mut x = PLOT_LEFT[0];
    let shown = IMPLS.len() + if mixed { MIXED.len() } else { 0 };
    for imp in IMPLS.into_iter().chain(MIXED).take(shown) {
        let name = imp.key();
        let c = color(imp);
        marker(svg, x, y - 4.0, imp.is_mixed(), c, c);
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{y:.1}" font-size="11">{}</text>"#,
            x + 9.0,
            escape(&name),
        );
        x += 24.0 + name.len() as f64 * 6.5;
    }
    let _ = writeln!(
        svg,
        r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="#555" stroke="#555" stroke-width="2"/><text x="{:.1}" y="{y:.1}" font-size="11">default sockets</text><circle cx="{:.1}" cy="{:.1}" r="5" fill="white" stroke="#555" stroke-width="2"/><text x="{:.1}" y="{y:.1}" font-size="11">+lowat: TCP_NOTSENT_LOWAT = 16 KiB on both sockets</text>"##,
        PLOT_LEFT[0],
        y + 20.0,
        PLOT_LEFT[0] + 9.0,
        PLOT_LEFT[0] + 140.0,
        y + 20.0,
        PLOT_LEFT[0] + 149.0,
        y = y + 24.0
    );
    if mixed {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11">squares: ours against Go smux, client&gt;server (tokio-v2&gt;go: ours the client, Go the server)</text>"##,
            PLOT_LEFT[0] + 560.0,
            y + 24.0
        );
    }
}
