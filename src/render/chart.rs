//! SVG charts for soak reports: one time series per chart, hours since T0 on
//! the X axis, an optional dashed threshold line, and no line drawn across a
//! sampling gap (a gap is "no data", not a straight ramp between two samples).
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

use crate::soak::model::SoakSummary;

/// Pixel size of every chart: wide enough for 48 h at ~3 min per pixel.
const SIZE: (u32, u32) = (900, 300);
/// Colour of the data line (tests find the series' polylines by it).
const SERIES_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// Colour of the threshold line and its label.
const THRESHOLD_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// Above this many points per segment, keep first/min/max/last per pixel
/// column (M4): the picture is the same, the file is a few times smaller.
const M4_BUCKETS: usize = SIZE.0 as usize;

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

/// One chart: a time series with an optional threshold line.
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
    /// Soak start: X = 0.
    pub t0: DateTime<Utc>,
    /// Right edge of the X axis (usually the summary's "now" or the planned end).
    pub end: DateTime<Utc>,
}

/// Thresholds drawn on the standard charts, taken from the soak's criteria.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartThresholds {
    /// Consumer lag at which the criterion fails (fails at >= this).
    pub lag_fail: f64,
    /// Minimum success rate, percent.
    pub success_min_pct: f64,
    /// Maximum processing-time quantile, milliseconds.
    pub p95_max_ms: f64,
}

fn hours_since(t0: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    (t - t0).num_milliseconds() as f64 / 3_600_000.0
}

/// Splits the finite samples into runs with no gap longer than `gap` between
/// neighbours; X in hours since `t0`. A non-positive `gap` never splits.
fn segments(
    series: &[(DateTime<Utc>, f64)],
    t0: DateTime<Utc>,
    gap: Duration,
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
            seg.push((hours_since(t0, t), v));
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

/// Label precision that suits the span of an axis.
fn decimals(span: f64) -> usize {
    if span >= 10.0 {
        0
    } else if span >= 1.0 {
        1
    } else if span >= 0.1 {
        2
    } else {
        3
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

fn describe(spec: &ChartSpec, n_points: usize, n_segments: usize) -> String {
    let mut d = format!(
        "{} ({}) from {} to {}, hours since T0 on the X axis; ",
        spec.title,
        spec.y_label,
        spec.t0.format("%Y-%m-%d %H:%M:%S UTC"),
        spec.end.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    if n_points == 0 {
        d.push_str("no data");
    } else {
        d.push_str(&format!(
            "{n_points} samples in {n_segments} run(s) (a sampling gap breaks the line)"
        ));
    }
    if let Some((v, label)) = spec.threshold.filter(|(v, _)| v.is_finite()) {
        d.push_str(&format!("; threshold {v} ({label})"));
    }
    d
}

/// Renders an SVG document (as a String) with plotters' SVG backend, 900x300.
/// Empty series give a chart that says "no data"; samples further apart than
/// `gap` are not joined (a non-positive `gap` joins everything); non-finite
/// values are skipped. The threshold line and label are drawn in any case.
pub fn render_svg(spec: &ChartSpec, gap: Duration) -> Result<String, ChartError> {
    let segs = segments(spec.series, spec.t0, gap);
    let n_points: usize = segs.iter().map(Vec::len).sum();
    let threshold = spec.threshold.filter(|(v, _)| v.is_finite());

    let first_x = segs.first().and_then(|s| s.first()).map(|p| p.0);
    let last_x = segs.last().and_then(|s| s.last()).map(|p| p.0);
    let x_lo = first_x.map_or(0.0, |x| x.min(0.0));
    let mut x_hi = hours_since(spec.t0, spec.end).max(last_x.unwrap_or(f64::NEG_INFINITY));
    if x_hi <= x_lo {
        x_hi = x_lo + 1.0;
    }
    let (y_lo, y_hi) = y_range(
        segs.iter()
            .flatten()
            .map(|p| p.1)
            .chain(threshold.map(|t| t.0)),
    );
    let x_dec = decimals(x_hi - x_lo);
    let y_dec = decimals(y_hi - y_lo);

    let draw_err = |e: &dyn std::fmt::Display| ChartError::Draw {
        title: spec.title.to_string(),
        message: e.to_string(),
    };

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(spec.title, ("sans-serif", 20).into_font())
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(|e| draw_err(&e))?;
        let x_desc = format!("hours since T0 ({})", spec.t0.format("%Y-%m-%d %H:%M UTC"));
        let x_fmt = |x: &f64| format!("{x:.x_dec$}");
        let y_fmt = |y: &f64| format!("{y:.y_dec$}");
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(spec.y_label)
            .x_labels(12)
            .y_labels(6)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(|e| draw_err(&e))?;

        for seg in &segs {
            if seg.len() == 1 {
                // A lone sample between two gaps: a dot, since a one-point
                // line is invisible.
                chart
                    .draw_series(std::iter::once(Circle::new(
                        seg[0],
                        2,
                        SERIES_COLOR.filled(),
                    )))
                    .map_err(|e| draw_err(&e))?;
            } else {
                let pts = m4(seg, x_lo, x_hi - x_lo, M4_BUCKETS);
                chart
                    .draw_series(LineSeries::new(pts, SERIES_COLOR.stroke_width(2)))
                    .map_err(|e| draw_err(&e))?;
            }
        }

        if let Some((v, label)) = threshold {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x_lo, v), (x_hi, v)],
                    8,
                    5,
                    THRESHOLD_COLOR.stroke_width(2),
                ))
                .map_err(|e| draw_err(&e))?;
            let style = ("sans-serif", 14)
                .into_font()
                .color(&THRESHOLD_COLOR)
                .pos(Pos::new(HPos::Right, VPos::Bottom));
            let text = if label.is_empty() {
                format!("{v}")
            } else {
                label.to_string()
            };
            chart
                .draw_series(std::iter::once(Text::new(text, (x_hi, v), style)))
                .map_err(|e| draw_err(&e))?;
        }

        if n_points == 0 {
            let style = ("sans-serif", 24)
                .into_font()
                .color(&RGBColor(0x77, 0x77, 0x77))
                .pos(Pos::new(HPos::Center, VPos::Center));
            let mid = ((x_lo + x_hi) / 2.0, (y_lo + y_hi) / 2.0);
            chart
                .draw_series(std::iter::once(Text::new("no data", mid, style)))
                .map_err(|e| draw_err(&e))?;
        }
        root.present().map_err(|e| draw_err(&e))?;
    }
    Ok(add_title_desc(
        buf,
        spec.title,
        &describe(spec, n_points, segs.len()),
    ))
}

/// Number for a threshold label: integers without decimals.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Writes the five standard charts of a summary (lag with its fail threshold,
/// DLQ messages, throughput msgs/min, success rate % with its minimum, p95 ms
/// with its maximum) next to a report: `<stem>-lag.svg`, `<stem>-dlq.svg`,
/// `<stem>-throughput.svg`, `<stem>-success.svg`, `<stem>-p95.svg` in `dir`,
/// each atomically. Returns (chart title, file name) pairs in that order, for
/// [`crate::render::report::render_markdown`]. The X axis runs from T0 to the
/// later of "now" and the planned end, so checkpoints share one scale.
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
    let planned_ms = if summary.planned_secs.is_finite() && summary.planned_secs > 0.0 {
        (summary.planned_secs * 1000.0).min(1e15) as i64
    } else {
        0
    };
    let planned_end = summary.t0 + Duration::milliseconds(planned_ms);
    let end = summary.now.max(planned_end);
    let s = &summary.series;
    let lag_label = format!("fail >= {}", num(thresholds.lag_fail));
    let success_label = format!("fail < {} %", num(thresholds.success_min_pct));
    let p95_label = format!("fail >= {} ms", num(thresholds.p95_max_ms));
    let spec = |title, y_label, series, threshold| ChartSpec {
        title,
        y_label,
        series,
        threshold,
        t0: summary.t0,
        end,
    };
    let charts: [(&str, ChartSpec); 5] = [
        (
            "lag",
            spec(
                "Consumer lag (pending + ack pending)",
                "messages",
                &s.lag,
                Some((thresholds.lag_fail, &lag_label)),
            ),
        ),
        ("dlq", spec("DLQ messages", "messages", &s.dlq, None)),
        (
            "throughput",
            spec("Throughput", "msgs/min", &s.throughput, None),
        ),
        (
            "success",
            spec(
                "Success rate",
                "%",
                &s.success_rate,
                Some((thresholds.success_min_pct, &success_label)),
            ),
        ),
        (
            "p95",
            spec(
                "p95 processing time",
                "ms",
                &s.p95_ms,
                Some((thresholds.p95_max_ms, &p95_label)),
            ),
        ),
    ];
    let mut out = Vec::with_capacity(charts.len());
    for (suffix, spec) in charts {
        let svg = render_svg(&spec, gap)?;
        let file = format!("{stem}-{suffix}.svg");
        let path = dir.join(&file);
        crate::atomic_file::write_atomic(&path, &svg).map_err(|source| ChartError::Io {
            path: path.display().to_string(),
            source,
        })?;
        out.push((spec.title.to_string(), file));
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

    #[test]
    fn renders_48h_with_threshold_and_gap() {
        let series = lag_series();
        assert!(series.len() > 17_000);
        let spec = ChartSpec {
            title: "Consumer lag",
            y_label: "messages",
            series: &series,
            threshold: Some((10.0, "fail >= 10")),
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
        let segs = segments(&s, t0, Duration::seconds(30));
        assert_eq!(segs.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(segments(&s, t0, Duration::zero()).len(), 1);
        // Unsorted input is sorted first.
        let mut r = s.clone();
        r.reverse();
        assert_eq!(segments(&r, t0, Duration::seconds(30)).len(), 3);
        // The lone sample is drawn as a dot, runs as lines.
        let spec = ChartSpec {
            title: "t",
            y_label: "y",
            series: &s,
            threshold: None,
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
            },
            verdict: Status::Pass,
            verdict_reason: String::new(),
            last_snapshot: None,
            rollback: None,
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
