//! SVG charts for soak reports: one time series per chart, time since T0 on
//! the X axis (seconds, minutes or hours, whichever gives round ticks for
//! the span that has elapsed), optional dashed baseline and threshold lines,
//! and no line drawn across a sampling gap (a gap is "no data", not a
//! straight ramp between two samples).
//!
//! The X axis ends at the summary's "now", not at the planned end: a report
//! one minute into a 48 h soak shows that minute across the whole width.
//! Counts (lag, DLQ messages) get integer Y ticks.
//!
//! Drawn with plotters' SVG backend without any font feature: plotters then
//! uses its built-in size estimate for layout and the backend writes plain
//! `<text>` elements that the viewer renders with its own fonts, so titles,
//! axis labels and the threshold label need no font files here. The title and
//! a one-line description are also written as the SVG's `<title>`/`<desc>`
//! for viewers and tools that do not render text.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::render::number::{human_duration, human_number as num};
use crate::soak::model::SoakSummary;

/// Pixel size of every chart: wide enough for 48 h at ~3 min per pixel.
const SIZE: (u32, u32) = (900, 300);
/// Colour of the data line (tests find the series' polylines by it).
const SERIES_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// Colour of the threshold line and its label.
const THRESHOLD_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// Colour of the baseline line and its label (what the soak started from).
const BASELINE_COLOR: RGBColor = RGBColor(0x55, 0x55, 0x55);
/// Above this many points per segment, keep first/min/max/last per pixel
/// column (M4): the picture is the same, the file is a few times smaller.
const M4_BUCKETS: usize = SIZE.0 as usize;
/// At most this many labelled ticks on the X axis.
const X_TICKS: usize = 12;
/// At most this many labelled ticks on the Y axis.
const Y_TICKS: usize = 6;

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// plotters refused to draw (should not happen with in-memory SVG).
    #[error("drawing chart {title:?}: {message}")]
    Draw {
        /// Chart title.
        title: String,
        /// plotters' error text.
        message: String,
    },
    /// The file stem would put charts outside `dir` or is empty.
    #[error("bad chart file stem {0:?}: must be a non-empty file name without path separators")]
    BadStem(String),
    /// Writing the SVG file failed.
    #[error("writing chart {path}: {source}")]
    Io {
        /// File being written.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One chart: a time series with optional baseline and threshold lines.
#[derive(Debug, Clone, Copy)]
pub struct ChartSpec<'a> {
    /// Caption at the top of the chart (and the SVG `<title>`).
    pub title: &'a str,
    /// Unit or name of the Y axis (e.g. "messages", "%").
    pub y_label: &'a str,
    /// Samples, oldest first (unsorted input is sorted; non-finite values are skipped).
    pub series: &'a [(DateTime<Utc>, f64)],
    /// Threshold value and its label (e.g. `(10.0, "fail >= 10")`), drawn as a dashed line.
    pub threshold: Option<(f64, &'a str)>,
    /// Baseline value and its label (e.g. the DLQ's messages at T0), drawn
    /// as a grey dashed line: movement away from it is what matters.
    pub baseline: Option<(f64, &'a str)>,
    /// The values are counts: Y ticks at whole numbers only.
    pub integer_y: bool,
    /// Soak start: X = 0.
    pub t0: DateTime<Utc>,
    /// Right edge of the X axis (the summary's "now").
    pub end: DateTime<Utc>,
}

/// Thresholds and baselines drawn on the standard charts, taken from the
/// soak's criteria and the baselines it recorded at T0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartThresholds {
    /// Consumer lag at which the criterion fails (fails at >= this).
    pub lag_fail: f64,
    /// Minimum success rate, percent.
    pub success_min_pct: f64,
    /// Maximum processing-time quantile, milliseconds.
    pub p95_max_ms: f64,
    /// Messages in the DLQ at T0 (the `dlq` criterion fails above it);
    /// `None` when no baseline was recorded.
    pub dlq_baseline: Option<f64>,
}

/// Unit of the X axis: the largest of seconds, minutes and hours in which
/// the span is at least two units, so ticks fall on round numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TimeUnit {
    /// Seconds per unit.
    secs: f64,
    /// Name in the axis description.
    name: &'static str,
}

impl TimeUnit {
    fn for_span(span_secs: f64) -> TimeUnit {
        if span_secs <= 120.0 {
            TimeUnit {
                secs: 1.0,
                name: "seconds",
            }
        } else if span_secs <= 120.0 * 60.0 {
            TimeUnit {
                secs: 60.0,
                name: "minutes",
            }
        } else {
            TimeUnit {
                secs: 3600.0,
                name: "hours",
            }
        }
    }
}

fn secs_since(t0: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    (t - t0).num_milliseconds() as f64 / 1000.0
}

/// Tick values on `lo..=hi`: multiples of a 1/2/5 x 10^k step, at most
/// `max` of them (whole numbers only when `integer`). Returns the ticks and
/// the step.
fn ticks(lo: f64, hi: f64, max: usize, integer: bool) -> (Vec<f64>, f64) {
    let raw = raw_step(lo, hi, max);
    let mut step = decade_step(raw);
    if integer {
        step = step.max(1.0).round();
    }
    (multiples(lo, hi, step), step)
}

/// Ticks of the time axis: steps a clock reads easily (5 s, 15 min, 6 h)
/// before falling back to 1/2/5 x 10^k.
fn time_ticks(lo: f64, hi: f64, max: usize, unit: TimeUnit) -> (Vec<f64>, f64) {
    let raw = raw_step(lo, hi, max);
    let clock: &[f64] = if unit.secs >= 3600.0 {
        &[1.0, 2.0, 3.0, 6.0, 12.0, 24.0]
    } else {
        &[1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0]
    };
    let step = clock
        .iter()
        .copied()
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or_else(|| decade_step(raw));
    (multiples(lo, hi, step), step)
}

fn raw_step(lo: f64, hi: f64, max: usize) -> f64 {
    let span = (hi - lo).abs();
    if span > 0.0 && span.is_finite() {
        span / max.max(1) as f64
    } else {
        1.0
    }
}

/// The smallest 1/2/5 x 10^k at or above `raw`.
fn decade_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// Multiples of `step` on `lo..=hi` (computed from integers: no drift).
fn multiples(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A linear f64 axis whose ticks are given (see [`ticks`]) rather than
/// chosen by plotters, so counts get whole-number ticks and time gets round
/// ones.
struct TickedAxis {
    linear: plotters::coord::types::RangedCoordf64,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl TickedAxis {
    fn new((lo, hi): (f64, f64), ticks: Vec<f64>) -> Self {
        TickedAxis {
            linear: (lo..hi).into(),
            lo,
            hi,
            ticks,
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Bold (labelled) lines only; no light grid between them.
        if hint.weight().allow_light_points() || hint.max_num_points() == 0 {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Decimals that tell ticks `step` apart (0 for steps of 1 and above).
fn decimals(step: f64) -> usize {
    if step >= 1.0 || step <= 0.0 || !step.is_finite() {
        0
    } else {
        (-(step.log10() + 1e-9).floor()).max(0.0) as usize
    }
}

/// Splits the finite samples into runs with no gap longer than `gap` between
/// neighbours; X in `unit`s since `t0`. A non-positive `gap` never splits.
fn segments(
    series: &[(DateTime<Utc>, f64)],
    t0: DateTime<Utc>,
    gap: Duration,
    unit: TimeUnit,
) -> Vec<Vec<(f64, f64)>> {
    let mut pts: Vec<(DateTime<Utc>, f64)> = series
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if !pts.windows(2).all(|w| w[0].0 <= w[1].0) {
        pts.sort_by_key(|p| p.0);
    }
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut prev: Option<DateTime<Utc>> = None;
    for (t, v) in pts {
        let split = match prev {
            None => true,
            Some(p) => gap > Duration::zero() && t - p > gap,
        };
        if split {
            out.push(Vec::new());
        }
        if let Some(seg) = out.last_mut() {
            seg.push((secs_since(t0, t) / unit.secs, v));
        }
        prev = Some(t);
    }
    out
}

/// M4 reduction of one segment: per X bucket, the first, lowest, highest and
/// last point in time order. Peaks (a one-sample DLQ spike) survive.
fn m4(seg: &[(f64, f64)], x_lo: f64, x_span: f64, buckets: usize) -> Vec<(f64, f64)> {
    if seg.len() <= 4 * buckets || x_span <= 0.0 {
        return seg.to_vec();
    }
    let bucket = |x: f64| (((x - x_lo) / x_span) * buckets as f64).floor() as i64;
    let mut out = Vec::with_capacity(4 * buckets);
    let mut i = 0;
    while i < seg.len() {
        let b = bucket(seg[i].0);
        let (mut lo, mut hi, mut j) = (i, i, i);
        while j < seg.len() && bucket(seg[j].0) == b {
            if seg[j].1 < seg[lo].1 {
                lo = j;
            }
            if seg[j].1 > seg[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let mut idx = [i, lo, hi, j - 1];
        idx.sort_unstable();
        let mut last = usize::MAX;
        for k in idx {
            if k != last {
                out.push(seg[k]);
                last = k;
            }
        }
        i = j;
    }
    out
}

/// Y range: counts start at 0; values far from 0 (a 99.9 % success rate) get
/// a padded range so their movement is visible. Always non-empty.
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if lo >= 0.0 && lo <= hi * 0.5 {
        let top = if hi > 0.0 { hi * 1.1 } else { 1.0 };
        return (0.0, top);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.1
    } else {
        (hi.abs() * 0.01).max(1.0)
    };
    (lo - pad, hi + pad)
}

/// [`y_range`] widened to whole numbers, for counts.
fn integer_range((lo, hi): (f64, f64)) -> (f64, f64) {
    let (lo, hi) = (lo.floor(), hi.ceil());
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + 1.0)
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Puts `<title>` and `<desc>` right after the opening `<svg …>` tag.
fn add_title_desc(svg: String, title: &str, desc: &str) -> String {
    let Some(open) = svg.find("<svg") else {
        return svg;
    };
    let Some(close) = svg[open..].find('>') else {
        return svg;
    };
    let at = open + close + 1;
    let mut out = String::with_capacity(svg.len() + title.len() + desc.len() + 40);
    out.push_str(&svg[..at]);
    out.push_str("\n<title>");
    out.push_str(&xml_escape(title));
    out.push_str("</title>\n<desc>");
    out.push_str(&xml_escape(desc));
    out.push_str("</desc>");
    out.push_str(&svg[at..]);
    out
}

fn describe(spec: &ChartSpec, unit: TimeUnit, n_points: usize, n_segments: usize) -> String {
    let mut d = format!(
        "{} ({}) from {} to {} ({}), {} since T0 on the X axis; ",
        spec.title,
        spec.y_label,
        spec.t0.format("%Y-%m-%d %H:%M:%S UTC"),
        spec.end.format("%Y-%m-%d %H:%M:%S UTC"),
        human_duration(secs_since(spec.t0, spec.end)),
        unit.name,
    );
    if n_points == 0 {
        d.push_str("no data");
    } else {
        d.push_str(&format!(
            "{n_points} samples in {n_segments} run(s) (a sampling gap breaks the line)"
        ));
    }
    if let Some((v, label)) = spec.baseline.filter(|(v, _)| v.is_finite()) {
        d.push_str(&format!("; baseline {} ({label})", num(v)));
    }
    if let Some((v, label)) = spec.threshold.filter(|(v, _)| v.is_finite()) {
        d.push_str(&format!("; threshold {} ({label})", num(v)));
    }
    d
}

/// Where everything goes on a chart: axis ranges in axis units, the ticks
/// and the data runs.
struct Layout {
    unit: TimeUnit,
    x: (f64, f64),
    y: (f64, f64),
    x_ticks: (Vec<f64>, f64),
    y_ticks: (Vec<f64>, f64),
    segs: Vec<Vec<(f64, f64)>>,
}

impl Layout {
    fn new(spec: &ChartSpec, gap: Duration) -> Layout {
        let last_t = spec.series.iter().map(|p| p.0).max();
        let span = secs_since(spec.t0, last_t.map_or(spec.end, |t| t.max(spec.end)));
        let unit = TimeUnit::for_span(span);
        let segs = segments(spec.series, spec.t0, gap, unit);
        let first_x = segs.first().and_then(|s| s.first()).map(|p| p.0);
        let last_x = segs.last().and_then(|s| s.last()).map(|p| p.0);
        let x_lo = first_x.map_or(0.0, |x| x.min(0.0));
        let mut x_hi =
            (secs_since(spec.t0, spec.end) / unit.secs).max(last_x.unwrap_or(f64::NEG_INFINITY));
        if x_hi <= x_lo {
            x_hi = x_lo + 1.0;
        }
        let refs = [spec.threshold, spec.baseline];
        let mut y = y_range(
            segs.iter()
                .flatten()
                .map(|p| p.1)
                .chain(refs.iter().flatten().map(|r| r.0)),
        );
        if spec.integer_y {
            y = integer_range(y);
        }
        Layout {
            unit,
            x: (x_lo, x_hi),
            y,
            x_ticks: time_ticks(x_lo, x_hi, X_TICKS, unit),
            y_ticks: ticks(y.0, y.1, Y_TICKS, spec.integer_y),
            segs,
        }
    }
}

/// A dashed horizontal line across the chart with its label at one end.
fn reference_line<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, impl CoordTranslate<From = (f64, f64)>>,
    x: (f64, f64),
    (v, label): (f64, &str),
    color: RGBColor,
    label_at_right: bool,
) -> Result<(), String> {
    chart
        .draw_series(DashedLineSeries::new(
            [(x.0, v), (x.1, v)],
            8,
            5,
            color.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
    let (at, h) = if label_at_right {
        (x.1, HPos::Right)
    } else {
        (x.0, HPos::Left)
    };
    let style = ("sans-serif", 14)
        .into_font()
        .color(&color)
        .pos(Pos::new(h, VPos::Bottom));
    let text = if label.is_empty() {
        num(v)
    } else {
        label.to_string()
    };
    chart
        .draw_series(std::iter::once(Text::new(text, (at, v), style)))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Draws the chart onto an SVG string.
fn draw(spec: &ChartSpec, l: &Layout, buf: &mut String) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::with_string(buf, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let x_axis = TickedAxis::new(l.x, l.x_ticks.0.clone());
    let y_axis = TickedAxis::new(l.y, l.y_ticks.0.clone());
    let mut chart = ChartBuilder::on(&root)
        .caption(spec.title, ("sans-serif", 20).into_font())
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(|x| e(&x))?;
    let x_desc = format!(
        "{} since T0 ({})",
        l.unit.name,
        spec.t0.format("%Y-%m-%d %H:%M UTC")
    );
    let (x_dec, y_dec) = (decimals(l.x_ticks.1), decimals(l.y_ticks.1));
    let x_fmt = |x: &f64| format!("{x:.x_dec$}");
    let y_fmt = |y: &f64| format!("{y:.y_dec$}");
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(spec.y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()
        .map_err(|x| e(&x))?;

    for seg in &l.segs {
        if seg.len() == 1 {
            // A lone sample between two gaps: a dot, since a one-point
            // line is invisible.
            chart
                .draw_series(std::iter::once(Circle::new(
                    seg[0],
                    2,
                    SERIES_COLOR.filled(),
                )))
                .map_err(|x| e(&x))?;
        } else {
            let pts = m4(seg, l.x.0, l.x.1 - l.x.0, M4_BUCKETS);
            chart
                .draw_series(LineSeries::new(pts, SERIES_COLOR.stroke_width(2)))
                .map_err(|x| e(&x))?;
        }
    }
    if let Some(b) = spec.baseline.filter(|(v, _)| v.is_finite()) {
        reference_line(&mut chart, l.x, b, BASELINE_COLOR, false)?;
    }
    if let Some(t) = spec.threshold.filter(|(v, _)| v.is_finite()) {
        reference_line(&mut chart, l.x, t, THRESHOLD_COLOR, true)?;
    }
    if l.segs.iter().all(Vec::is_empty) {
        let style = ("sans-serif", 24)
            .into_font()
            .color(&RGBColor(0x77, 0x77, 0x77))
            .pos(Pos::new(HPos::Center, VPos::Center));
        let mid = ((l.x.0 + l.x.1) / 2.0, (l.y.0 + l.y.1) / 2.0);
        chart
            .draw_series(std::iter::once(Text::new("no data", mid, style)))
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Renders an SVG document (as a String) with plotters' SVG backend, 900x300.
/// Empty series give a chart that says "no data"; samples further apart than
/// `gap` are not joined (a non-positive `gap` joins everything); non-finite
/// values are skipped. Baseline and threshold lines and labels are drawn in
/// any case.
pub fn render_svg(spec: &ChartSpec, gap: Duration) -> Result<String, ChartError> {
    let layout = Layout::new(spec, gap);
    let mut buf = String::new();
    draw(spec, &layout, &mut buf).map_err(|message| ChartError::Draw {
        title: spec.title.to_string(),
        message,
    })?;
    let n_points: usize = layout.segs.iter().map(Vec::len).sum();
    let desc = describe(spec, layout.unit, n_points, layout.segs.len());
    Ok(add_title_desc(buf, spec.title, &desc))
}

/// The standard charts of a soak, in report order: (name, title). The name
/// is the file suffix of [`write_charts`] and the chart's name on the
/// daemon's status page (`/charts/<name>.svg`).
pub const STANDARD_CHARTS: [(&str, &str); 5] = [
    ("lag", "Consumer lag (pending + ack pending)"),
    ("dlq", "DLQ messages"),
    ("throughput", "Throughput"),
    ("success", "Success rate"),
    ("p95", "p95 processing time"),
];

/// One standard chart drawn in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedChart {
    /// Its name in [`STANDARD_CHARTS`].
    pub name: &'static str,
    /// Its title.
    pub title: String,
    /// The SVG document.
    pub svg: String,
}

/// Draws the standard charts of a summary whose name `wanted` accepts, in
/// [`STANDARD_CHARTS`] order: lag with its fail threshold, DLQ messages with
/// its baseline and the count at which `dlq` fails, throughput msgs/min,
/// success rate % with its minimum, p95 ms with its maximum. The X axis runs
/// from T0 to "now": an early report shows what has happened, not a sliver
/// of 48 h. Reports draw all five; the status page one per request.
pub fn render_standard(
    summary: &SoakSummary,
    thresholds: &ChartThresholds,
    gap: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<RenderedChart>, ChartError> {
    let end = summary.now;
    let s = &summary.series;
    // Series reduced to buckets: neighbours are up to two buckets apart, so
    // only a longer silence is a gap in the chart (the timeline lists all).
    let gap = gap.max(Duration::milliseconds(s.resolution_ms.saturating_mul(3)));
    let lag_label = format!("fail >= {}", num(thresholds.lag_fail));
    let success_label = format!("fail < {} %", num(thresholds.success_min_pct));
    let p95_label = format!("fail >= {} ms", num(thresholds.p95_max_ms));
    let dlq_baseline = thresholds.dlq_baseline.filter(|b| b.is_finite());
    let dlq_baseline_label = dlq_baseline
        .map(|b| format!("baseline {} at T0", num(b)))
        .unwrap_or_default();
    // The criterion fails on any message beyond the baseline.
    let dlq_fail = dlq_baseline.map(|b| b + 1.0);
    let dlq_fail_label = dlq_fail
        .map(|f| format!("fail >= {}", num(f)))
        .unwrap_or_default();
    let spec = |i: usize, y_label, series, threshold, integer_y| ChartSpec {
        title: STANDARD_CHARTS[i].1,
        y_label,
        series,
        threshold,
        baseline: None,
        integer_y,
        t0: summary.t0,
        end,
    };
    let charts: [ChartSpec; 5] = [
        spec(
            0,
            "messages",
            &s.lag,
            Some((thresholds.lag_fail, &lag_label)),
            true,
        ),
        ChartSpec {
            baseline: dlq_baseline.map(|b| (b, dlq_baseline_label.as_str())),
            ..spec(
                1,
                "messages",
                &s.dlq,
                dlq_fail.map(|f| (f, dlq_fail_label.as_str())),
                true,
            )
        },
        spec(2, "msgs/min", &s.throughput, None, false),
        spec(
            3,
            "%",
            &s.success_rate,
            Some((thresholds.success_min_pct, &success_label)),
            false,
        ),
        spec(
            4,
            "ms",
            &s.p95_ms,
            Some((thresholds.p95_max_ms, &p95_label)),
            false,
        ),
    ];
    let mut out = Vec::new();
    for ((name, title), spec) in STANDARD_CHARTS.into_iter().zip(charts) {
        if wanted(name) {
            out.push(RenderedChart {
                name,
                title: title.to_string(),
                svg: render_svg(&spec, gap)?,
            });
        }
    }
    Ok(out)
}

/// Writes the five standard charts of a summary ([`render_standard`]) next
/// to a report: `<stem>-lag.svg`, `<stem>-dlq.svg`, `<stem>-throughput.svg`,
/// `<stem>-success.svg`, `<stem>-p95.svg` in `dir`, each atomically. Returns
/// (chart title, file name) pairs in that order, for
/// [`crate::render::report::render_markdown`].
pub fn write_charts(
    summary: &SoakSummary,
    thresholds: &ChartThresholds,
    dir: &Path,
    stem: &str,
    gap: Duration,
) -> Result<Vec<(String, String)>, ChartError> {
    if stem.is_empty()
        || stem.contains(['/', '\\'])
        || stem == "."
        || stem == ".."
        || stem.contains('\0')
    {
        return Err(ChartError::BadStem(stem.to_string()));
    }
    let charts = render_standard(summary, thresholds, gap, |_| true)?;
    let mut out = Vec::with_capacity(charts.len());
    for c in charts {
        let file = format!("{stem}-{}.svg", c.name);
        let path = dir.join(&file);
        crate::atomic_file::write_atomic(&path, &c.svg).map_err(|source| ChartError::Io {
            path: path.display().to_string(),
            source,
        })?;
        out.push((c.title, file));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::model::{ChartSeries, SoakSummary};
    use crate::verdict::Status;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 10, 2, 17, 8, 59)
            .single()
            .unwrap_or_default()
    }

    /// 48 h every 10 s = 17,280 samples, with a 30-minute hole at 20 h and a
    /// lag spike to 12 at 30 h.
    fn lag_series() -> Vec<(DateTime<Utc>, f64)> {
        let t0 = t0();
        (0..17_280i64)
            .map(|i| (t0 + Duration::seconds(i * 10), i))
            .filter(|(t, _)| {
                let h = (*t - t0).num_seconds() as f64 / 3600.0;
                !(20.0..20.5).contains(&h)
            })
            .map(|(t, i)| {
                let v = if i == 10_800 {
                    12.0
                } else if i == 5 {
                    f64::NAN
                } else {
                    (i % 7) as f64
                };
                (t, v)
            })
            .collect()
    }

    fn series_polylines(svg: &str) -> usize {
        let color = format!(
            "stroke=\"#{:02X}{:02X}{:02X}\"",
            SERIES_COLOR.0, SERIES_COLOR.1, SERIES_COLOR.2
        );
        svg.lines()
            .filter(|l| l.contains("<polyline") && l.contains(&color))
            .count()
    }

    /// Parses with usvg and rasterises with resvg; returns the count of
    /// pixels that are neither white nor transparent.
    fn ink(svg: &str) -> usize {
        let tree = match resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default()) {
            Ok(t) => t,
            Err(e) => panic!("usvg refused the SVG: {e}"),
        };
        let size = tree.size().to_int_size();
        assert_eq!((size.width(), size.height()), SIZE);
        let Some(mut pixmap) = resvg::tiny_skia::Pixmap::new(size.width(), size.height()) else {
            panic!("no pixmap")
        };
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::default(),
            &mut pixmap.as_mut(),
        );
        pixmap
            .pixels()
            .iter()
            .filter(|p| p.alpha() > 0 && !(p.red() == 255 && p.green() == 255 && p.blue() == 255))
            .count()
    }

    fn count_color(svg: &str, rgb: (u8, u8, u8)) -> usize {
        let tree = match resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default()) {
            Ok(t) => t,
            Err(e) => panic!("usvg refused the SVG: {e}"),
        };
        let Some(mut pixmap) = resvg::tiny_skia::Pixmap::new(SIZE.0, SIZE.1) else {
            panic!("no pixmap")
        };
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::default(),
            &mut pixmap.as_mut(),
        );
        pixmap
            .pixels()
            .iter()
            .filter(|p| (p.red(), p.green(), p.blue()) == rgb && p.alpha() == 255)
            .count()
    }

    /// Numeric tick labels (x, y) as plotters writes them: X ticks centred
    /// below the plot (`dy="0.76em"`), Y ticks right-aligned (`dy="0.5ex"`).
    fn tick_labels(svg: &str) -> (Vec<f64>, Vec<f64>) {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for part in svg.split("<text").skip(1) {
            let Some((attrs, rest)) = part.split_once('>') else {
                continue;
            };
            let Some((text, _)) = rest.split_once("</text>") else {
                continue;
            };
            let Ok(v) = text.trim().parse::<f64>() else {
                continue;
            };
            if attrs.contains("dy=\"0.76em\"") && attrs.contains("text-anchor=\"middle\"") {
                xs.push(v);
            } else if attrs.contains("dy=\"0.5ex\"") && attrs.contains("text-anchor=\"end\"") {
                ys.push(v);
            }
        }
        (xs, ys)
    }

    #[test]
    fn renders_48h_with_threshold_and_gap() {
        let series = lag_series();
        assert!(series.len() > 17_000);
        let spec = ChartSpec {
            title: "Consumer lag",
            y_label: "messages",
            series: &series,
            threshold: Some((10.0, "fail >= 10")),
            baseline: None,
            integer_y: true,
            t0: t0(),
            end: t0() + Duration::hours(48),
        };
        let svg = match render_svg(&spec, Duration::seconds(60)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        // The gap at 20 h (and only it) splits the line: two runs.
        assert_eq!(series_polylines(&svg), 2, "one polyline per run");
        // Text works without a font feature: plotters writes <text> elements.
        assert!(svg.contains("<text"), "plotters emits text elements");
        assert!(svg.contains(">\nConsumer lag\n</text>") || svg.contains("Consumer lag\n</text>"));
        assert!(svg.contains("fail &gt;= 10"), "threshold label present");
        assert!(svg.contains("<title>Consumer lag</title>"));
        assert!(svg.contains("threshold 10 (fail &gt;= 10)"));
        assert!(svg.contains("hours since T0"));
        let (xs, ys) = tick_labels(&svg);
        assert_eq!(xs.first(), Some(&0.0), "{xs:?}");
        assert_eq!(xs.last(), Some(&48.0), "{xs:?}");
        assert_eq!(xs.get(1), Some(&6.0), "{xs:?}");
        assert!(ys.iter().all(|y| y.fract() == 0.0), "{ys:?}");
        // The threshold (a dashed line) is drawn in its own colour.
        let red = format!(
            "stroke=\"#{:02X}{:02X}{:02X}\"",
            THRESHOLD_COLOR.0, THRESHOLD_COLOR.1, THRESHOLD_COLOR.2
        );
        assert!(
            svg.matches(&red).count() > 10,
            "dashes of the threshold line"
        );
        // M4 keeps the file small but the one-sample spike survives.
        assert!(svg.len() < 400_000, "svg is {} bytes", svg.len());
        assert!(ink(&svg) > 2_000, "the chart renders to visible pixels");
        assert!(
            count_color(&svg, (SERIES_COLOR.0, SERIES_COLOR.1, SERIES_COLOR.2)) > 500,
            "the data line is visible"
        );
        assert!(
            count_color(
                &svg,
                (THRESHOLD_COLOR.0, THRESHOLD_COLOR.1, THRESHOLD_COLOR.2)
            ) > 100,
            "the threshold line is visible"
        );
    }

    #[test]
    fn spike_survives_decimation() {
        let seg: Vec<(f64, f64)> = (0..20_000)
            .map(|i| (i as f64 / 1000.0, if i == 12_345 { 99.0 } else { 1.0 }))
            .collect();
        let red = m4(&seg, 0.0, 20.0, 900);
        assert!(red.len() <= 4 * 900 && red.len() < seg.len());
        assert!(red.iter().any(|p| p.1 == 99.0));
        assert_eq!(red.first(), seg.first());
        assert_eq!(red.last(), seg.last());
        assert!(red.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn gaps_split_and_zero_gap_joins() {
        let t0 = t0();
        let s: Vec<_> = [0i64, 10, 20, 200, 210, 1000]
            .iter()
            .map(|&x| (t0 + Duration::seconds(x), 1.0))
            .collect();
        let unit = TimeUnit::for_span(1000.0);
        let segs = segments(&s, t0, Duration::seconds(30), unit);
        assert_eq!(segs.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(segments(&s, t0, Duration::zero(), unit).len(), 1);
        // Unsorted input is sorted first.
        let mut r = s.clone();
        r.reverse();
        assert_eq!(segments(&r, t0, Duration::seconds(30), unit).len(), 3);
        // The lone sample is drawn as a dot, runs as lines.
        let spec = ChartSpec {
            title: "t",
            y_label: "y",
            series: &s,
            threshold: None,
            baseline: None,
            integer_y: false,
            t0,
            end: t0 + Duration::seconds(1000),
        };
        let svg = render_svg(&spec, Duration::seconds(30)).unwrap_or_default();
        assert_eq!(series_polylines(&svg), 2);
        assert!(svg.contains("<circle"));
        assert!(ink(&svg) > 0);
    }

    #[test]
    fn empty_series_says_no_data() {
        let only_nan = [(t0(), f64::NAN)];
        for series in [&[][..], &only_nan[..]] {
            let spec = ChartSpec {
                title: "DLQ messages",
                y_label: "messages",
                series,
                threshold: Some((2.0, "fail > 1")),
                baseline: Some((1.0, "baseline 1")),
                integer_y: true,
                t0: t0(),
                end: t0(), // zero-length soak: still a valid axis
            };
            let svg = match render_svg(&spec, Duration::seconds(60)) {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            assert!(svg.contains("no data"));
            assert!(svg.contains("fail &gt; 1"));
            assert_eq!(series_polylines(&svg), 0);
            assert!(ink(&svg) > 0);
        }
    }

    #[test]
    fn success_rate_range_shows_small_moves() {
        let (lo, hi) = y_range([99.95, 100.0, 99.9].into_iter());
        assert!(lo > 99.0 && lo < 99.9 && hi > 100.0 && hi < 100.1);
        assert_eq!(y_range([0.0, 3.0].into_iter()).0, 0.0);
        assert_eq!(y_range(std::iter::empty()), (0.0, 1.0));
        let (lo, hi) = y_range([5.0].into_iter());
        assert!(lo < 5.0 && hi > 5.0);
        let (lo, hi) = y_range([0.0].into_iter());
        assert!(lo == 0.0 && hi > 0.0);
    }

    #[test]
    fn ticks_are_round_and_counts_whole() {
        assert_eq!(
            ticks(0.0, 42.0, 12, false),
            (
                vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0],
                5.0
            )
        );
        assert_eq!(ticks(0.0, 2.0, 6, true), (vec![0.0, 1.0, 2.0], 1.0));
        assert_eq!(ticks(0.0, 1.0, 6, true).0, vec![0.0, 1.0]);
        let (t, step) = ticks(99.5, 100.1, 6, false);
        assert_eq!(step, 0.1);
        assert_eq!(t.first().map(|v| format!("{v:.1}")), Some("99.5".into()));
        assert_eq!(t.last().map(|v| format!("{v:.1}")), Some("100.1".into()));
        let hours = TimeUnit::for_span(48.0 * 3600.0);
        assert_eq!(time_ticks(0.0, 48.0, 12, hours).1, 6.0);
        assert_eq!(time_ticks(0.0, 10.0, 12, hours).1, 1.0);
        let secs = TimeUnit::for_span(42.0);
        assert_eq!(time_ticks(0.0, 42.0, 12, secs).1, 5.0);
        assert_eq!(time_ticks(0.0, 100.0, 12, secs).1, 10.0);
        assert_eq!(ticks(0.0, 1200.0, 6, true).1, 200.0);
        assert_eq!((decimals(5.0), decimals(0.1), decimals(0.05)), (0, 1, 2));
        assert_eq!(integer_range((0.0, 1.1)), (0.0, 2.0));
        assert_eq!(integer_range((3.0, 3.0)), (3.0, 4.0));
        assert_eq!(TimeUnit::for_span(42.0).name, "seconds");
        assert_eq!(TimeUnit::for_span(3600.0).name, "minutes");
        assert_eq!(TimeUnit::for_span(48.0 * 3600.0).name, "hours");
    }

    #[test]
    fn an_early_dlq_chart_spans_the_elapsed_seconds_with_its_baseline() {
        let t0 = t0();
        let series: Vec<_> = (0..43i64)
            .map(|i| (t0 + Duration::seconds(i), if i < 30 { 1.0 } else { 2.0 }))
            .collect();
        let spec = ChartSpec {
            title: "DLQ messages",
            y_label: "messages",
            series: &series,
            threshold: Some((2.0, "fail >= 2")),
            baseline: Some((1.0, "baseline 1 at T0")),
            integer_y: true,
            t0,
            end: t0 + Duration::seconds(42),
        };
        let svg = render_svg(&spec, Duration::seconds(5)).unwrap_or_default();
        assert!(svg.contains("seconds since T0"), "{svg}");
        let (xs, ys) = tick_labels(&svg);
        assert_eq!(xs, [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]);
        assert!(ys.iter().all(|y| y.fract() == 0.0), "{ys:?}");
        assert!(ys.contains(&1.0) && ys.contains(&2.0), "{ys:?}");
        let distinct: std::collections::BTreeSet<i64> = ys.iter().map(|y| *y as i64).collect();
        assert_eq!(distinct.len(), ys.len(), "{ys:?}");
        assert!(svg.contains("baseline 1 at T0"));
        assert!(svg.contains("baseline 1 (baseline 1 at T0); threshold 2 (fail &gt;= 2)"));
        assert!(
            count_color(&svg, (BASELINE_COLOR.0, BASELINE_COLOR.1, BASELINE_COLOR.2)) > 100,
            "the baseline line is visible"
        );
        assert!(
            count_color(&svg, (SERIES_COLOR.0, SERIES_COLOR.1, SERIES_COLOR.2)) > 500,
            "the data spans the chart, not a sliver"
        );
    }

    fn summary() -> SoakSummary {
        let t0 = t0();
        let pts = |f: fn(i64) -> f64| -> Vec<(DateTime<Utc>, f64)> {
            (0..600)
                .map(|i| (t0 + Duration::seconds(i * 60), f(i)))
                .collect()
        };
        SoakSummary {
            soak_id: "id".into(),
            name: "phase-b".into(),
            t0,
            now: t0 + Duration::hours(10),
            planned_secs: 48.0 * 3600.0,
            samples: 600,
            criteria: vec![],
            incidents: vec![],
            spans: vec![],
            coverage: vec![],
            min_coverage: 0.95,
            restarts: vec![],
            series: ChartSeries {
                lag: pts(|i| (i % 3) as f64),
                dlq: pts(|_| 1.0),
                throughput: pts(|i| 50.0 + (i % 10) as f64),
                success_rate: pts(|_| 100.0),
                p95_ms: vec![],
                resolution_ms: 0,
            },
            verdict: Status::Pass,
            verdict_reason: String::new(),
            last_snapshot: None,
            rollback: None,
            consumers: vec![],
            edges: Default::default(),
            totals: Default::default(),
        }
    }

    #[test]
    fn writes_five_charts() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let th = ChartThresholds {
            lag_fail: 10.0,
            success_min_pct: 99.9,
            p95_max_ms: 500.0,
            dlq_baseline: Some(1.0),
        };
        let out = match write_charts(&summary(), &th, dir.path(), "cp-24h", Duration::minutes(3)) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        let files: Vec<&str> = out.iter().map(|(_, f)| f.as_str()).collect();
        assert_eq!(
            files,
            [
                "cp-24h-lag.svg",
                "cp-24h-dlq.svg",
                "cp-24h-throughput.svg",
                "cp-24h-success.svg",
                "cp-24h-p95.svg"
            ]
        );
        for (title, f) in &out {
            let svg = std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
            assert!(svg.contains(&xml_escape(title)), "{f} has its title");
            assert!(ink(&svg) > 0, "{f} renders");
        }
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        assert!(read("cp-24h-lag.svg").contains("fail &gt;= 10"));
        assert!(read("cp-24h-success.svg").contains("fail &lt; 99.9 %"));
        assert!(read("cp-24h-p95.svg").contains("fail &gt;= 500 ms"));
        assert!(read("cp-24h-p95.svg").contains("no data"));
        let dlq = read("cp-24h-dlq.svg");
        assert!(dlq.contains("baseline 1 at T0") && dlq.contains("fail &gt;= 2"));
        // 10 h into a 48 h plan: the axis ends at 10 h.
        let (xs, _) = tick_labels(&read("cp-24h-throughput.svg"));
        assert_eq!(xs.last(), Some(&10.0), "{xs:?}");
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names.len(), 5);

        for bad in ["", "../x", "a/b", ".."] {
            assert!(matches!(
                write_charts(&summary(), &th, dir.path(), bad, Duration::minutes(3)),
                Err(ChartError::BadStem(_))
            ));
        }
        assert!(matches!(
            write_charts(
                &summary(),
                &th,
                &dir.path().join("missing"),
                "x",
                Duration::minutes(3)
            ),
            Err(ChartError::Io { .. })
        ));
    }
}
