//! Parser for the Prometheus text exposition format (0.0.4) that also reads
//! OpenMetrics 1.0 text.
//!
//! Why hand-written: the only maintained-looking crate, `prometheus-parse`
//! (0.2.5), gets real exporter output wrong in ways that matter to a soak
//! monitor:
//!
//! * it silently drops metric names containing `:` (recording rules such as
//!   `job:rate5m:sum`, i.e. anything read from `/federate`) and `m{} 5`;
//! * it splits label values on `,` and `=` (`q="a=1,b=2"` comes back as
//!   `b="2"`) and does not undo the `\\`, `\"`, `\n` escapes;
//! * it reads histogram `_sum`/`_count` and OpenMetrics `_total`/`_created`
//!   samples as untyped, so the family of a sample is lost;
//! * it skips bad lines without reporting them (and stamps samples with now()).
//!
//! This parser scans bytes (no regex), keeps every sample with its family and
//! type, reports every bad line as a [`LineError`] with its 1-based line number
//! and carries on, and never panics, whatever the input.
//!
//! Grammar decisions worth knowing:
//!
//! * Blanks are spaces and tabs; they may appear around names, `=`, `,`, `{`,
//!   `}` and between fields. A `\r` before `\n` is tolerated (CRLF input).
//! * Label values accept exactly the escapes `\\`, `\"` and `\n`; anything
//!   else after a backslash is a line error. `# HELP` text unescapes the same
//!   three and keeps any other backslash literally (it is only documentation).
//! * Prometheus 3 quoted (UTF-8) names are accepted: `{"my.metric",a="b"} 1`,
//!   `m{"label.x"="v"} 1`, `# TYPE "my.metric" gauge`.
//! * Timestamps: in 0.0.4 text they are integer milliseconds; in OpenMetrics
//!   they are (possibly fractional) seconds and are converted to
//!   milliseconds. With [`Format::Auto`] (what [`parse`] uses) the input is
//!   taken as OpenMetrics when its last non-blank line is `# EOF`.
//! * An OpenMetrics exemplar (` # {trace_id="..."} 1 123`) or anything after
//!   a ` #` following the value/timestamp is ignored; the sample is kept.
//! * Parsing stops at `# EOF`; non-blank text after it is reported once.
//! * A second `# TYPE` or `# HELP` line for one name is a line error; the
//!   first one wins.
//! * A sample belongs to the family in scope (the last `# TYPE`) when its name
//!   is the family name or the family name plus a suffix valid for that type;
//!   otherwise to any declared family by exact name, then by a valid suffix;
//!   otherwise it is its own `Untyped` family.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Metric family type as declared by `# TYPE` (or inferred `Untyped`), so
/// that consumers know how to interpret a family's samples (rate a counter,
/// read a gauge, aggregate histogram buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// Monotonic count (`_total`, `_created` in OpenMetrics): rate it.
    Counter,
    /// Value that goes up and down: read it as is.
    Gauge,
    /// Cumulative buckets (`_bucket`, `_sum`, `_count`, `_created`).
    Histogram,
    /// Client-side quantiles (`{quantile=...}`, `_sum`, `_count`).
    Summary,
    /// 0.0.4 family declared `untyped`, or with no `# TYPE` line at all.
    Untyped,
    /// OpenMetrics histogram of a gauge (`_bucket`, `_gcount`, `_gsum`).
    GaugeHistogram,
    /// OpenMetrics info family (`_info` samples of value 1).
    Info,
    /// OpenMetrics set of boolean states, one label per state.
    StateSet,
    /// OpenMetrics family of unknown type (the OpenMetrics "untyped").
    Unknown,
}

impl MetricType {
    /// Reads the type word of a `# TYPE` line (lowercase, as both formats
    /// require); `None` for anything else, which the parser reports.
    pub fn from_type_word(word: &str) -> Option<MetricType> {
        Some(match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// The word used for this type in `# TYPE` lines, for display and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// Whether a sample named `<family><suffix>` belongs to a family of this
    /// type (e.g. `_bucket` for histograms, `_total` for OpenMetrics counters).
    fn allows_suffix(self, suffix: &str) -> bool {
        match self {
            MetricType::Counter => matches!(suffix, "_total" | "_created"),
            MetricType::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count" | "_created"),
            MetricType::GaugeHistogram => matches!(suffix, "_bucket" | "_gcount" | "_gsum"),
            MetricType::Summary => matches!(suffix, "_sum" | "_count" | "_created"),
            MetricType::Info => suffix == "_info",
            MetricType::Gauge
            | MetricType::Untyped
            | MetricType::StateSet
            | MetricType::Unknown => false,
        }
    }
}

impl std::fmt::Display for MetricType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every suffix that some family type allows, tried when a sample's name is
/// not a declared family itself.
const SUFFIXES: [&str; 8] = [
    "_total", "_created", "_bucket", "_sum", "_count", "_gcount", "_gsum", "_info",
];

/// A label (name, unescaped value). Both borrow the scraped text unless they
/// had to be unescaped: a scrape of 100,000 series would otherwise allocate
/// two strings per label, which was half of the parse time.
pub type Label<'a> = (Cow<'a, str>, Cow<'a, str>);

/// One parsed sample line, with the family it belongs to, so evaluators can
/// select series by name and labels without re-deriving types.
///
/// The strings borrow the parsed text (`'a`); [`Sample::into_owned`] makes a
/// sample that outlives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample<'a> {
    /// Full sample name, e.g. `http_requests_total`, `lat_bucket`.
    pub name: Cow<'a, str>,
    /// Unescaped label values, in input order.
    pub labels: Vec<Label<'a>>,
    /// The value; NaN, +Inf and -Inf are kept as such.
    pub value: f64,
    /// Timestamp in milliseconds since the epoch, when the line had one.
    pub timestamp_ms: Option<i64>,
    /// Family this sample belongs to (`lat` for `lat_bucket` of histogram
    /// `lat`; `foo` for `foo_total` of OpenMetrics counter `foo`).
    pub family: Cow<'a, str>,
    /// The family's type; every sample of a histogram family gets
    /// `Histogram`, and so on.
    pub kind: MetricType,
}

impl Sample<'_> {
    /// Value of label `name`, if the sample has it: the common look-up when
    /// checking a series' identity (e.g. `le`, `quantile`, `stream`).
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The same sample owning its strings, for keeping it after the scraped
    /// text is gone.
    pub fn into_owned(self) -> Sample<'static> {
        Sample {
            name: Cow::Owned(self.name.into_owned()),
            labels: self
                .labels
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            value: self.value,
            timestamp_ms: self.timestamp_ms,
            family: Cow::Owned(self.family.into_owned()),
            kind: self.kind,
        }
    }
}

/// A bad line, reported instead of being silently skipped, so a broken
/// exporter shows up in the monitor's output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: usize,
    /// One-line description, quoting at most a short window of the line.
    pub message: String,
}

/// The result of parsing one scrape: samples, declared types, help texts,
/// and whatever went wrong, so a partial scrape is still usable.
///
/// Samples borrow the parsed text (`'a`) so that parsing does not copy every
/// name and label; [`Exposition::into_owned`] detaches it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Exposition<'a> {
    /// Samples in input order.
    pub samples: Vec<Sample<'a>>,
    /// Family name -> type declared by `# TYPE`.
    pub types: BTreeMap<String, MetricType>,
    /// Family name -> unescaped `# HELP` text, for display.
    #[serde(default)]
    pub help: BTreeMap<String, String>,
    /// Bad lines; parsing continued after each.
    pub errors: Vec<LineError>,
    /// The input ended mid-line (a non-blank last line without `\n`, which
    /// Prometheus requires), or, when parsed explicitly as OpenMetrics, it
    /// lacked `# EOF`: the scrape was probably cut short. The last line is
    /// still parsed when it parses.
    pub truncated: bool,
}

/// Which text format to read, so callers that know the scrape's
/// Content-Type can say so instead of relying on detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Format {
    /// OpenMetrics when the last non-blank line is `# EOF`, else 0.0.4.
    #[default]
    Auto,
    /// Prometheus text 0.0.4: integer millisecond timestamps.
    PrometheusText,
    /// OpenMetrics 1.0 text: timestamps in seconds, `# EOF` required.
    OpenMetrics,
}

impl Format {
    /// Picks the format from an HTTP Content-Type header value
    /// (`application/openmetrics-text; ...` or `text/plain; version=0.0.4`).
    pub fn from_content_type(content_type: &str) -> Format {
        let ct = content_type.trim_start().as_bytes();
        let starts = |p: &str| {
            ct.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes()))
        };
        if starts("application/openmetrics-text") {
            Format::OpenMetrics
        } else if starts("text/plain") {
            Format::PrometheusText
        } else {
            Format::Auto
        }
    }
}

/// Parses a scrape body, detecting OpenMetrics by its `# EOF` terminator: the
/// entry point for probes that fetched `/metrics`.
pub fn parse(text: &str) -> Exposition<'_> {
    parse_as(text, Format::Auto)
}

/// Parses a scrape body in the given format, for callers that know it from
/// the Content-Type (see [`Format::from_content_type`]).
pub fn parse_as(text: &str, format: Format) -> Exposition<'_> {
    let openmetrics = match format {
        Format::Auto => ends_with_eof(text),
        Format::PrometheusText => false,
        Format::OpenMetrics => true,
    };
    // Reserve for one sample a line, bounded so that pathological input
    // (megabytes of bare newlines) cannot reserve much more than it is worth.
    let lines = count_newlines(text.as_bytes()) + 1;
    let lines = lines.min(text.len() / 16 + 1);
    let mut p = Parser {
        out: Exposition {
            samples: Vec::with_capacity(lines),
            ..Exposition::default()
        },
        openmetrics,
        current: None,
        scratch: Vec::new(),
    };
    let mut rest = text;
    let mut lineno = 0usize;
    let mut saw_eof = false;
    while !rest.is_empty() {
        lineno += 1;
        // memchr: SIMD, several times faster than the standard library's
        // search on 100-byte lines.
        let (line, complete) = match memchr::memchr(b'\n', rest.as_bytes())
            .and_then(|at| Some((rest.get(..at)?, rest.get(at + 1..)?)))
        {
            Some((line, after)) => {
                rest = after;
                (line, true)
            }
            None => {
                let line = rest;
                rest = "";
                (line, false)
            }
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if p.line(line, lineno) == Flow::Eof {
            saw_eof = true;
            p.after_eof(rest, lineno);
            break;
        }
        if !complete && !is_blank_str(line) {
            p.out.truncated = true;
        }
    }
    if format == Format::OpenMetrics && !saw_eof {
        p.out.truncated = true;
    }
    p.out
}

impl<'a> Exposition<'a> {
    /// Samples with this exact sample name whose labels include all
    /// `matchers` (name, value) pairs. As in PromQL, a matcher with an empty
    /// value also matches a sample that lacks the label.
    ///
    /// The samples borrow only `self`, not the query, so they can be
    /// collected and kept after temporary `name`/`matchers` are gone.
    pub fn select<'s, 'q>(
        &'s self,
        name: &'q str,
        matchers: &'q [(String, String)],
    ) -> impl Iterator<Item = &'s Sample<'a>> + 'q
    where
        's: 'q,
    {
        self.samples
            .iter()
            .filter(move |s| s.name == name && labels_match(s, matchers))
    }

    /// Sum of `select(...)` values; `None` when no sample matched, so "no
    /// such series" differs from "zero".
    pub fn sum(&self, name: &str, matchers: &[(String, String)]) -> Option<f64> {
        self.select(name, matchers)
            .fold(None, |acc, s| Some(acc.unwrap_or(0.0) + s.value))
    }

    /// Histogram buckets for family `name` (samples `name_bucket`) matching
    /// `matchers`, summed across the other label sets, grouped by `le` upper
    /// bound, sorted ascending by bound (+Inf last), as
    /// `(upper_bound, cumulative_count)`. Empty when none. Buckets whose `le`
    /// is missing or not a number are skipped.
    pub fn histogram_buckets(&self, name: &str, matchers: &[(String, String)]) -> Vec<(f64, f64)> {
        let bucket_name = format!("{name}_bucket");
        let mut raw: Vec<(f64, f64)> = self
            .select(&bucket_name, matchers)
            .filter_map(|s| {
                let le = s.label("le")?.trim().parse::<f64>().ok()?;
                if le.is_nan() {
                    None
                } else {
                    Some((le, s.value))
                }
            })
            .collect();
        raw.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out: Vec<(f64, f64)> = Vec::with_capacity(raw.len());
        for (le, count) in raw {
            match out.last_mut() {
                Some(last) if last.0 == le => last.1 += count,
                _ => out.push((le, count)),
            }
        }
        out
    }
}

impl Exposition<'_> {
    /// The same exposition owning its strings, for keeping it after the
    /// scraped text is gone.
    pub fn into_owned(self) -> Exposition<'static> {
        Exposition {
            samples: self.samples.into_iter().map(Sample::into_owned).collect(),
            types: self.types,
            help: self.help,
            errors: self.errors,
            truncated: self.truncated,
        }
    }

    /// Every family name in the scrape, declared by `# TYPE` or carrying
    /// samples, so a misnamed family can be answered with "did you mean".
    pub fn family_names(&self) -> std::collections::BTreeSet<&str> {
        let mut names: std::collections::BTreeSet<&str> =
            self.types.keys().map(String::as_str).collect();
        names.extend(self.samples.iter().map(|s| s.family.as_ref()));
        names
    }

    /// The declared type of the family a sample name belongs to: the name
    /// itself (0.0.4 `foo_total counter`) or, for `_total`, the OpenMetrics
    /// counter family without it. `None` when no `# TYPE` line declares it.
    pub fn declared_type(&self, sample_name: &str) -> Option<MetricType> {
        if let Some(t) = self.types.get(sample_name) {
            return Some(*t);
        }
        let base = sample_name.strip_suffix("_total")?;
        self.types
            .get(base)
            .copied()
            .filter(|t| *t == MetricType::Counter)
    }

    /// Where the counter a config names by either spelling is in this
    /// scrape: its family name (`orders_processed`, as the service's code
    /// and OpenMetrics call it) or its `_total` sample name. A counter is
    /// exposed as `orders_processed_total` samples in both text formats
    /// (0.0.4 declares the family as `orders_processed_total`, OpenMetrics
    /// as `orders_processed`), so the family spelling read literally finds
    /// no sample and would read as zero events.
    ///
    /// Samples under the spelling as written win; else those under the other
    /// spelling (a bare `orders_processed` only when a counter family of that
    /// name declares them, so a gauge of that name is never taken). Declared
    /// means a `# TYPE` line of the family under either spelling.
    pub fn counter_sample_name(&self, name: &str) -> CounterName {
        let base = name.strip_suffix("_total").unwrap_or(name);
        let total = format!("{base}_total");
        let has = |n: &str| self.samples.iter().any(|s| s.name == n);
        let counter = |n: &str| self.types.get(n) == Some(&MetricType::Counter);
        let sample_name = if has(name) {
            name.to_string()
        } else if name != total && has(&total) {
            total.clone()
        } else if name == total && counter(base) && has(base) {
            base.to_string()
        } else {
            name.to_string()
        };
        CounterName {
            declared: self.types.contains_key(name) || counter(base) || counter(&total),
            sample_name,
        }
    }
}

/// A configured counter name resolved in one scrape
/// ([`Exposition::counter_sample_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterName {
    /// The sample name that carries the counter's series here (the
    /// configured spelling when neither has samples).
    pub sample_name: String,
    /// A `# TYPE` line declares the family under either spelling: with no
    /// sample, that is zero events, not a missing family.
    pub declared: bool,
}

fn labels_match(s: &Sample<'_>, matchers: &[(String, String)]) -> bool {
    matchers.iter().all(|(k, v)| match s.label(k) {
        Some(actual) => actual == v,
        None => v.is_empty(),
    })
}

/// True when the last non-blank line of `text` is `# EOF`.
fn ends_with_eof(text: &str) -> bool {
    let trimmed = text.trim_end();
    let last = trimmed.rsplit('\n').next().unwrap_or("");
    last.trim() == "# EOF"
}

// ---------------------------------------------------------------------------
// Line parsing

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Eof,
}

/// What can be wrong with a line; rendered into [`LineError::message`].
#[derive(Debug, thiserror::Error)]
enum Syntax {
    #[error("invalid metric name")]
    BadMetricName,
    #[error("missing metric name")]
    MissingMetricName,
    #[error("expected label name")]
    ExpectedLabelName,
    #[error("invalid character in label name")]
    BadLabelName,
    #[error("expected '=' after label name")]
    ExpectedEquals,
    #[error("expected '\"' to open label value")]
    ExpectedQuote,
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("invalid escape sequence `\\{0}`")]
    BadEscape(String),
    #[error("expected ',' or '}}' in label set")]
    ExpectedCommaOrBrace,
    #[error("unterminated label set")]
    UnterminatedLabelSet,
    #[error("duplicate label name `{0}`")]
    DuplicateLabel(String),
    #[error("missing sample value")]
    MissingValue,
    #[error("invalid sample value `{0}`")]
    BadValue(String),
    #[error("invalid timestamp `{0}`")]
    BadTimestamp(String),
    #[error("unexpected text after sample")]
    TrailingText,
    #[error("expected metric name after # {0}")]
    CommentMissingName(&'static str),
    #[error("invalid metric name in # {0} line")]
    CommentBadName(&'static str),
    #[error("missing metric type in # TYPE line")]
    MissingType,
    #[error("unknown metric type `{0}`")]
    UnknownType(String),
    #[error("unexpected text after metric type")]
    TypeTrailingText,
    #[error("duplicate # TYPE line for `{0}` (first one kept)")]
    DuplicateType(String),
    #[error("duplicate # HELP line for `{0}` (first one kept)")]
    DuplicateHelp(String),
    #[error("text after # EOF ignored")]
    AfterEof,
    #[error("internal error: bad slice")]
    Internal,
}

/// A syntax problem and the byte offset in the line where it was seen.
struct Bad {
    what: Syntax,
    at: usize,
}

type Res<T> = Result<T, Bad>;

fn bad<T>(what: Syntax, at: usize) -> Res<T> {
    Err(Bad { what, at })
}

struct Parser<'a> {
    out: Exposition<'a>,
    openmetrics: bool,
    /// Family in scope: name and type of the last `# TYPE` line.
    current: Option<(String, MetricType)>,
    /// Reused label buffer: each sample's labels are moved out of it into a
    /// Vec of exactly the right size (one allocation, no regrowth).
    scratch: Vec<Label<'a>>,
}

struct RawSample<'a> {
    name: Cow<'a, str>,
    value: f64,
    timestamp_ms: Option<i64>,
}

impl<'a> Parser<'a> {
    fn line(&mut self, line: &'a str, lineno: usize) -> Flow {
        let b = line.as_bytes();
        let mut i = 0;
        skip_blanks(b, &mut i);
        match b.get(i) {
            None => Flow::Continue,
            Some(b'#') => match self.comment(line, i + 1) {
                Ok(flow) => flow,
                Err(e) => {
                    self.error(lineno, line, e);
                    Flow::Continue
                }
            },
            Some(_) => {
                self.scratch.clear();
                match parse_sample(line, i, self.openmetrics, &mut self.scratch) {
                    Ok(raw) => {
                        let (family_len, kind) = self.resolve(&raw.name);
                        let family = prefix(&raw.name, family_len);
                        let labels = if self.scratch.is_empty() {
                            Vec::new()
                        } else {
                            // One exact allocation and a memcpy (collecting
                            // a drain moved the labels one by one).
                            let mut labels = Vec::with_capacity(self.scratch.len());
                            labels.append(&mut self.scratch);
                            labels
                        };
                        self.out.samples.push(Sample {
                            name: raw.name,
                            labels,
                            value: raw.value,
                            timestamp_ms: raw.timestamp_ms,
                            family,
                            kind,
                        });
                    }
                    Err(e) => self.error(lineno, line, e),
                }
                Flow::Continue
            }
        }
    }

    fn error(&mut self, lineno: usize, line: &str, e: Bad) {
        let message = format!("{} at column {}: {}", e.what, e.at + 1, snippet(line, e.at));
        self.out.errors.push(LineError {
            line: lineno,
            message,
        });
    }

    /// Reports non-blank text after `# EOF` once, at its first line.
    fn after_eof(&mut self, rest: &str, eof_line: usize) {
        for (n, line) in rest.split('\n').enumerate() {
            if !is_blank_str(line.trim_end_matches('\r')) {
                let at = line.len() - line.trim_start().len();
                self.error(
                    eof_line + 1 + n,
                    line,
                    Bad {
                        what: Syntax::AfterEof,
                        at,
                    },
                );
                return;
            }
        }
    }

    /// Handles a line starting with `#`; `i` is just after the `#`.
    fn comment(&mut self, line: &str, mut i: usize) -> Res<Flow> {
        let b = line.as_bytes();
        skip_blanks(b, &mut i);
        let start = i;
        skip_token(b, &mut i);
        let word = sub(line, start, i)?;
        match word {
            "HELP" => {
                let name = comment_name(line, &mut i, "HELP")?;
                skip_blanks(b, &mut i);
                let text = unescape_help(sub(line, i, b.len())?);
                if self.out.help.contains_key(name.as_ref()) {
                    return bad(Syntax::DuplicateHelp(clip(&name, 24)), start);
                }
                self.out.help.insert(name.into_owned(), text);
                Ok(Flow::Continue)
            }
            "TYPE" => {
                let name = comment_name(line, &mut i, "TYPE")?;
                skip_blanks(b, &mut i);
                let ts = i;
                skip_token(b, &mut i);
                let word = sub(line, ts, i)?;
                if word.is_empty() {
                    return bad(Syntax::MissingType, ts);
                }
                let kind = match MetricType::from_type_word(word) {
                    Some(k) => k,
                    None => return bad(Syntax::UnknownType(clip(word, 24)), ts),
                };
                skip_blanks(b, &mut i);
                if i < b.len() {
                    return bad(Syntax::TypeTrailingText, i);
                }
                if self.out.types.contains_key(name.as_ref()) {
                    return bad(Syntax::DuplicateType(clip(&name, 24)), start);
                }
                let name = name.into_owned();
                self.out.types.insert(name.clone(), kind);
                self.current = Some((name, kind));
                Ok(Flow::Continue)
            }
            "UNIT" => {
                // OpenMetrics unit: validated for the name, otherwise unused.
                comment_name(line, &mut i, "UNIT")?;
                Ok(Flow::Continue)
            }
            "EOF" => {
                skip_blanks(b, &mut i);
                if i == b.len() {
                    Ok(Flow::Eof)
                } else {
                    Ok(Flow::Continue) // "# EOF something" is just a comment
                }
            }
            _ => Ok(Flow::Continue),
        }
    }

    /// Finds the family a sample name belongs to: its type and the length of
    /// its name, which is always a prefix of the sample name (the family
    /// borrows it instead of being copied).
    fn resolve(&self, name: &str) -> (usize, MetricType) {
        if let Some((family, kind)) = &self.current {
            if belongs(name, family, *kind) {
                return (family.len(), *kind);
            }
        }
        if let Some(kind) = self.out.types.get(name) {
            return (name.len(), *kind);
        }
        for suffix in SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(kind) = self.out.types.get(base) {
                    if kind.allows_suffix(suffix) {
                        return (base.len(), *kind);
                    }
                }
            }
        }
        (name.len(), MetricType::Untyped)
    }
}

/// The first `len` bytes of `name`, borrowed when `name` is; the whole name
/// if `len` is not a char boundary (which [`Parser::resolve`] never gives).
fn prefix<'a>(name: &Cow<'a, str>, len: usize) -> Cow<'a, str> {
    match name {
        Cow::Borrowed(s) => Cow::Borrowed(s.get(..len).unwrap_or(s)),
        Cow::Owned(s) => Cow::Owned(s.get(..len).unwrap_or(s).to_owned()),
    }
}

fn belongs(name: &str, family: &str, kind: MetricType) -> bool {
    match name.strip_prefix(family) {
        Some("") => true,
        Some(suffix) => kind.allows_suffix(suffix),
        None => false,
    }
}

/// Parses a sample line from byte `i` (first non-blank).
/// Labels go to `labels` (expected empty).
fn parse_sample<'a>(
    line: &'a str,
    mut i: usize,
    openmetrics: bool,
    labels: &mut Vec<Label<'a>>,
) -> Res<RawSample<'a>> {
    let b = line.as_bytes();
    let mut name: Option<Cow<'a, str>> = None;
    match b.get(i) {
        Some(&c) if is_name_start(c) => {
            let start = i;
            i += 1;
            while matches!(b.get(i), Some(&c) if is_name_char(c)) {
                i += 1;
            }
            name = Some(Cow::Borrowed(sub(line, start, i)?));
            match b.get(i) {
                None | Some(b' ' | b'\t' | b'{') => {}
                Some(_) => return bad(Syntax::BadMetricName, i),
            }
        }
        Some(b'{') => {}
        _ => return bad(Syntax::BadMetricName, i),
    }
    skip_blanks(b, &mut i);
    if b.get(i) == Some(&b'{') {
        parse_labels(line, &mut i, &mut name, labels)?;
    }
    let name = match name {
        Some(n) => n,
        None => return bad(Syntax::MissingMetricName, 0),
    };

    skip_blanks(b, &mut i);
    let vstart = i;
    skip_token(b, &mut i);
    let tok = sub(line, vstart, i)?;
    if tok.is_empty() || tok.starts_with('#') {
        return bad(Syntax::MissingValue, vstart);
    }
    let value = match tok.parse::<f64>() {
        Ok(v) => v,
        Err(_) => return bad(Syntax::BadValue(clip(tok, 24)), vstart),
    };

    skip_blanks(b, &mut i);
    let mut timestamp_ms = None;
    if matches!(b.get(i), Some(&c) if c != b'#') {
        let tstart = i;
        skip_token(b, &mut i);
        let tok = sub(line, tstart, i)?;
        timestamp_ms = match parse_timestamp(tok, openmetrics) {
            Some(t) => Some(t),
            None => return bad(Syntax::BadTimestamp(clip(tok, 24)), tstart),
        };
        skip_blanks(b, &mut i);
    }
    // Whatever follows a '#' here is an OpenMetrics exemplar: ignored.
    if matches!(b.get(i), Some(&c) if c != b'#') {
        return bad(Syntax::TrailingText, i);
    }
    Ok(RawSample {
        name,
        value,
        timestamp_ms,
    })
}

/// Parses `{...}` starting at the `{` at `*i`; leaves `*i` after the `}`.
/// A quoted first item not followed by `=` is the metric name (UTF-8 names).
fn parse_labels<'a>(
    line: &'a str,
    i: &mut usize,
    name: &mut Option<Cow<'a, str>>,
    labels: &mut Vec<Label<'a>>,
) -> Res<()> {
    let b = line.as_bytes();
    let open = *i;
    *i += 1;
    let mut first = true;
    loop {
        skip_blanks(b, i);
        let lstart = *i;
        let label_name: Cow<'a, str> = match b.get(*i) {
            None => return bad(Syntax::UnterminatedLabelSet, open),
            Some(b'}') => {
                *i += 1;
                break;
            }
            Some(b'"') => {
                let quoted = parse_quoted(line, i)?;
                skip_blanks(b, i);
                if b.get(*i) != Some(&b'=') {
                    if first && name.is_none() {
                        *name = Some(quoted);
                        first = false;
                        if !comma_or_close(b, i)? {
                            break;
                        }
                        continue;
                    }
                    return bad(Syntax::ExpectedEquals, *i);
                }
                quoted
            }
            Some(&c) if is_label_start(c) => {
                *i += 1;
                while matches!(b.get(*i), Some(&c) if is_label_char(c)) {
                    *i += 1;
                }
                if matches!(b.get(*i), Some(&c) if c == b':' || c == b'.' || c == b'-') {
                    return bad(Syntax::BadLabelName, *i);
                }
                Cow::Borrowed(sub(line, lstart, *i)?)
            }
            Some(_) => return bad(Syntax::ExpectedLabelName, *i),
        };
        first = false;
        skip_blanks(b, i);
        if b.get(*i) != Some(&b'=') {
            return bad(Syntax::ExpectedEquals, *i);
        }
        *i += 1;
        skip_blanks(b, i);
        if b.get(*i) != Some(&b'"') {
            return bad(Syntax::ExpectedQuote, *i);
        }
        let value = parse_quoted(line, i)?;
        if labels.len() < 32 && labels.iter().any(|(k, _)| *k == label_name) {
            return bad(Syntax::DuplicateLabel(clip(&label_name, 24)), lstart);
        }
        labels.push((label_name, value));
        if !comma_or_close(b, i)? {
            break;
        }
    }
    if labels.len() >= 32 {
        let mut names: Vec<&str> = labels.iter().map(|(k, _)| k.as_ref()).collect();
        names.sort_unstable();
        let dup = names.windows(2).find_map(|w| match w {
            [a, b] if a == b => Some(*a),
            _ => None,
        });
        if let Some(dup) = dup {
            return bad(Syntax::DuplicateLabel(clip(dup, 24)), open);
        }
    }
    Ok(())
}

/// After a label: consumes `,` (returns true: more may follow) or `}`
/// (returns false: set closed).
fn comma_or_close(b: &[u8], i: &mut usize) -> Res<bool> {
    skip_blanks(b, i);
    match b.get(*i) {
        Some(b',') => {
            *i += 1;
            Ok(true)
        }
        Some(b'}') => {
            *i += 1;
            Ok(false)
        }
        None => bad(Syntax::UnterminatedLabelSet, *i),
        Some(_) => bad(Syntax::ExpectedCommaOrBrace, *i),
    }
}

/// Parses a `"..."` string at `*i` (which holds the opening quote), undoing
/// `\\`, `\"` and `\n`; leaves `*i` after the closing quote. Borrowed from
/// `line` unless there was an escape to undo.
fn parse_quoted<'a>(line: &'a str, i: &mut usize) -> Res<Cow<'a, str>> {
    let b = line.as_bytes();
    let open = *i;
    let start = open + 1;
    // Fast path: no escapes. `j` is at the first quote or backslash.
    let mut j = match b
        .get(start..)
        .and_then(|tail| memchr::memchr2(b'"', b'\\', tail))
    {
        None => return bad(Syntax::Unterminated, open),
        Some(n) => start + n,
    };
    if b.get(j) == Some(&b'"') {
        *i = j + 1;
        return Ok(Cow::Borrowed(sub(line, start, j)?));
    }
    let mut out = String::with_capacity(j - start + 16);
    out.push_str(sub(line, start, j)?);
    let mut run = j;
    loop {
        match b.get(j) {
            None => return bad(Syntax::Unterminated, open),
            Some(b'"') => {
                out.push_str(sub(line, run, j)?);
                *i = j + 1;
                return Ok(Cow::Owned(out));
            }
            Some(b'\\') => {
                out.push_str(sub(line, run, j)?);
                match b.get(j + 1) {
                    None => return bad(Syntax::Unterminated, open),
                    Some(b'\\') => out.push('\\'),
                    Some(b'"') => out.push('"'),
                    Some(b'n') => out.push('\n'),
                    Some(_) => {
                        let c = line
                            .get(j + 1..)
                            .and_then(|s| s.chars().next())
                            .unwrap_or('?');
                        return bad(Syntax::BadEscape(c.escape_debug().to_string()), j);
                    }
                }
                j += 2;
                run = j;
            }
            Some(_) => j += 1,
        }
    }
}

/// Reads the metric name of a `# HELP`/`# TYPE`/`# UNIT` line: a legacy name
/// or a quoted UTF-8 name, followed by a blank or the end of the line.
fn comment_name<'a>(line: &'a str, i: &mut usize, what: &'static str) -> Res<Cow<'a, str>> {
    let b = line.as_bytes();
    skip_blanks(b, i);
    let start = *i;
    let name = match b.get(*i) {
        None => return bad(Syntax::CommentMissingName(what), *i),
        Some(b'"') => parse_quoted(line, i)?,
        Some(&c) if is_name_start(c) => {
            *i += 1;
            while matches!(b.get(*i), Some(&c) if is_name_char(c)) {
                *i += 1;
            }
            Cow::Borrowed(sub(line, start, *i)?)
        }
        Some(_) => return bad(Syntax::CommentBadName(what), *i),
    };
    match b.get(*i) {
        None | Some(b' ' | b'\t') => Ok(name),
        Some(_) => bad(Syntax::CommentBadName(what), *i),
    }
}

/// Undoes `\\`, `\n` (and OpenMetrics' `\"`) in HELP text; any other
/// backslash is kept as written.
fn unescape_help(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('\\') => {
                out.push('\\');
                chars.next();
            }
            Some('n') => {
                out.push('\n');
                chars.next();
            }
            Some('"') => {
                out.push('"');
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    out
}

/// 0.0.4: integer milliseconds. OpenMetrics: seconds, maybe fractional.
fn parse_timestamp(tok: &str, openmetrics: bool) -> Option<i64> {
    if openmetrics {
        let secs = tok.parse::<f64>().ok()?;
        let ms = (secs * 1000.0).round();
        if ms.is_finite() && ms.abs() < 9.0e18 {
            Some(ms as i64)
        } else {
            None
        }
    } else {
        tok.parse::<i64>().ok()
    }
}

const NAME_START: u8 = 1;
const NAME_CHAR: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CHAR: u8 = 8;

/// What each byte may be in a name: one table look-up per byte instead of
/// the range comparisons of `is_ascii_alphanumeric`, for the names that
/// make up most of an exposition.
static BYTE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut n = 0;
    while n < 256 {
        let c = n as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let alnum = alpha || c.is_ascii_digit();
        let mut class = 0;
        if alpha || c == b':' {
            class |= NAME_START;
        }
        if alnum || c == b':' {
            class |= NAME_CHAR;
        }
        if alpha {
            class |= LABEL_START;
        }
        if alnum {
            class |= LABEL_CHAR;
        }
        table[n] = class;
        n += 1;
    }
    table
};

/// `[a-zA-Z_:]`
#[inline]
fn is_name_start(c: u8) -> bool {
    BYTE_CLASS[usize::from(c)] & NAME_START != 0
}

/// `[a-zA-Z0-9_:]`
#[inline]
fn is_name_char(c: u8) -> bool {
    BYTE_CLASS[usize::from(c)] & NAME_CHAR != 0
}

/// `[a-zA-Z_]`
#[inline]
fn is_label_start(c: u8) -> bool {
    BYTE_CLASS[usize::from(c)] & LABEL_START != 0
}

/// `[a-zA-Z0-9_]`
#[inline]
fn is_label_char(c: u8) -> bool {
    BYTE_CLASS[usize::from(c)] & LABEL_CHAR != 0
}

#[inline]
fn skip_blanks(b: &[u8], i: &mut usize) {
    while matches!(b.get(*i), Some(b' ' | b'\t')) {
        *i += 1;
    }
}

#[inline]
fn skip_token(b: &[u8], i: &mut usize) {
    while matches!(b.get(*i), Some(&c) if c != b' ' && c != b'\t') {
        *i += 1;
    }
}

/// Number of `\n` bytes in `b`. Counted into a byte per 64-byte chunk so
/// that the compiler vectorises it; `filter().count()` widened every byte to
/// a 64-bit counter and took a fifth of the parse time.
fn count_newlines(b: &[u8]) -> usize {
    let mut chunks = b.chunks_exact(64);
    let mut n = 0usize;
    for chunk in &mut chunks {
        let mut in_chunk = 0u8;
        for &c in chunk {
            in_chunk += u8::from(c == b'\n');
        }
        n += usize::from(in_chunk);
    }
    n + chunks.remainder().iter().filter(|&&c| c == b'\n').count()
}

fn is_blank_str(s: &str) -> bool {
    s.bytes().all(|c| c == b' ' || c == b'\t')
}

/// `line[a..b]` without a panic path; the parser only cuts at ASCII bytes, so
/// this cannot fail in practice.
#[inline]
fn sub(line: &str, a: usize, b: usize) -> Res<&str> {
    line.get(a..b).ok_or(Bad {
        what: Syntax::Internal,
        at: a.min(line.len()),
    })
}

/// At most `max` chars of `s`, control characters escaped, "…" if cut.
fn clip(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// A window of at most 48 chars of `line` around byte `at`, in backticks.
fn snippet(line: &str, at: usize) -> String {
    const WINDOW: usize = 48;
    let total = line.chars().count();
    if total <= WINDOW {
        return format!("`{}`", clip(line, WINDOW));
    }
    let at_char = line
        .get(..at.min(line.len()))
        .map_or(0, |s| s.chars().count());
    let start = at_char.saturating_sub(WINDOW / 2).min(total - WINDOW);
    let body: String = line.chars().skip(start).take(WINDOW).collect();
    format!(
        "`{}{}{}`",
        if start > 0 { "…" } else { "" },
        clip(&body, WINDOW),
        if start + WINDOW < total { "…" } else { "" }
    )
}

/// A label value escaped for the text format (`\\`, `\"`, `\n`): the one
/// escaper of every exposition soakwatch writes (its own /metrics, `check
/// --format prometheus`, the stand-in), the inverse of what [`parse`] reads.
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes a text exposition: `# HELP` and `# TYPE` once per family, label
/// values escaped, one line per sample. The one writer behind soakwatch's
/// own /metrics and `check --format prometheus`, so both stay valid for
/// `promtool check metrics` the same way.
pub struct ExpositionWriter {
    out: String,
    family: String,
    escape: fn(&str) -> String,
}

impl Default for ExpositionWriter {
    fn default() -> Self {
        ExpositionWriter::new(escape_label_value)
    }
}

impl ExpositionWriter {
    /// A writer whose label values go through `escape` (which must at least
    /// do what [`escape_label_value`] does).
    pub fn new(escape: fn(&str) -> String) -> Self {
        ExpositionWriter {
            out: String::new(),
            family: String::new(),
            escape,
        }
    }

    /// Starts a family; the samples that follow belong to it.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        self.out
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        self.family = name.to_string();
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) -> &mut Self {
        self.out.push_str(&self.family);
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", (self.escape)(v)))
                .collect();
            self.out.push('{');
            self.out.push_str(&inner.join(","));
            self.out.push('}');
        }
        self.out.push_str(&format!(" {value}\n"));
        self
    }

    /// The exposition written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PYTHON_PROM: &str = include_str!("../tests/fixtures/promtext/python_client.prom");
    const PYTHON_OM: &str = include_str!("../tests/fixtures/promtext/python_client.openmetrics");
    const GO_PROM: &str = include_str!("../tests/fixtures/promtext/go_client_golang.prom");
    const NODE_EXPORTER: &str = include_str!("../tests/fixtures/promtext/node_exporter.prom");
    const NODEJS_PROM: &str = include_str!("../tests/fixtures/promtext/nodejs_prom_client.prom");
    const NODEJS_OM: &str =
        include_str!("../tests/fixtures/promtext/nodejs_prom_client.openmetrics");
    const FEDERATE: &str = include_str!("../tests/fixtures/promtext/prometheus_federate.prom");

    const FIXTURES: [(&str, &str); 7] = [
        ("python_client.prom", PYTHON_PROM),
        ("python_client.openmetrics", PYTHON_OM),
        ("go_client_golang.prom", GO_PROM),
        ("node_exporter.prom", NODE_EXPORTER),
        ("nodejs_prom_client.prom", NODEJS_PROM),
        ("nodejs_prom_client.openmetrics", NODEJS_OM),
        ("prometheus_federate.prom", FEDERATE),
    ];

    fn m(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Labels as owned pairs, to compare with [`m`].
    fn owned(labels: &[Label<'_>]) -> Vec<(String, String)> {
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn clean(text: &str) -> Exposition<'_> {
        let e = parse(text);
        assert!(e.errors.is_empty(), "unexpected errors: {:?}", e.errors);
        e
    }

    fn one(text: &str) -> Sample<'_> {
        let e = clean(text);
        assert_eq!(e.samples.len(), 1, "{:?}", e.samples);
        e.samples.into_iter().next().unwrap()
    }

    fn only_error(text: &str) -> LineError {
        let e = parse(text);
        assert_eq!(e.errors.len(), 1, "{:?}", e.errors);
        e.errors.into_iter().next().unwrap()
    }

    fn err(line: usize, message: &str) -> LineError {
        LineError {
            line,
            message: message.to_string(),
        }
    }

    // ---- grammar -------------------------------------------------------

    #[test]
    fn bare_sample_with_and_without_timestamp() {
        let s = one("m 5\n");
        assert_eq!((s.name.as_ref(), s.value, s.timestamp_ms), ("m", 5.0, None));
        assert!(s.labels.is_empty());
        assert_eq!((s.family.as_ref(), s.kind), ("m", MetricType::Untyped));

        let s = one("m 5 1717987543123\n");
        assert_eq!(s.timestamp_ms, Some(1717987543123));
        let s = one("m 5 -1\n");
        assert_eq!(s.timestamp_ms, Some(-1));
    }

    #[test]
    fn empty_label_set() {
        let s = one("m{} 5\n");
        assert_eq!((s.name.as_ref(), s.value), ("m", 5.0));
        assert!(s.labels.is_empty());
        let s = one("m{ } 5 123\n");
        assert_eq!(s.timestamp_ms, Some(123));
    }

    #[test]
    fn names_with_colons_and_underscores() {
        let e = clean("job:rate5m:sum{job=\"api\"} 3\n:leading_colon 1\n_under 2\nA9_b:c 4\n");
        let names: Vec<_> = e.samples.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(
            names,
            ["job:rate5m:sum", ":leading_colon", "_under", "A9_b:c"]
        );
        assert_eq!(e.samples[0].label("job"), Some("api"));
    }

    #[test]
    fn label_values_with_special_characters_and_escapes() {
        let s = one(
            r#"m{q="a=1,b=2",braces="{x}",sp=" a b ",esc="back\\slash \"quoted\" new\nline",utf="héllo ✓"} 1"#,
        );
        assert_eq!(s.label("q"), Some("a=1,b=2"));
        assert_eq!(s.label("braces"), Some("{x}"));
        assert_eq!(s.label("sp"), Some(" a b "));
        assert_eq!(s.label("esc"), Some("back\\slash \"quoted\" new\nline"));
        assert_eq!(s.label("utf"), Some("héllo ✓"));
        assert_eq!(s.label("missing"), None);
        // Input order is kept.
        let keys: Vec<_> = s.labels.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["q", "braces", "sp", "esc", "utf"]);
        assert!(parse(r#"m{a="x\\"} 1"#).samples[0].label("a") == Some("x\\"));
        assert_eq!(one(r#"m{a=""} 1"#).label("a"), Some(""));
    }

    #[test]
    fn trailing_comma_and_whitespace_variations() {
        let s = one("m{a=\"1\",} 2\n");
        assert_eq!(owned(&s.labels), m(&[("a", "1")]));
        for text in [
            "m{a=\"1\",b=\"2\"} 2",
            "m {a=\"1\",b=\"2\"} 2",
            "  m{ a = \"1\" , b=\"2\" , } 2",
            "m{a=\"1\",b=\"2\"}\t2",
            "\tm{a=\"1\",\tb=\"2\"}   2   ",
            "m{a=\"1\",b=\"2\"}2",
        ] {
            let s = one(text);
            assert_eq!((s.name.as_ref(), s.value), ("m", 2.0), "{text}");
            assert_eq!(owned(&s.labels), m(&[("a", "1"), ("b", "2")]), "{text}");
        }
        let s = one("m\t\t7\t\t99\n");
        assert_eq!((s.value, s.timestamp_ms), (7.0, Some(99)));
    }

    #[test]
    fn help_type_comments_and_blank_lines() {
        let text = "\
# A plain comment
#another comment without a space

# HELP m Has \\\\ a backslash,\\na newline and a \\\"quote\\\" and \\t kept.
# TYPE m gauge
   # indented comment

m 1
# HELP empty_help
";
        let e = clean(text);
        assert_eq!(e.samples.len(), 1);
        assert_eq!(e.types.get("m"), Some(&MetricType::Gauge));
        assert_eq!(
            e.help.get("m").map(String::as_str),
            Some("Has \\ a backslash,\na newline and a \"quote\" and \\t kept.")
        );
        assert_eq!(e.help.get("empty_help").map(String::as_str), Some(""));
        assert_eq!(e.samples[0].kind, MetricType::Gauge);
    }

    #[test]
    fn every_type_word() {
        let words = [
            ("counter", MetricType::Counter),
            ("gauge", MetricType::Gauge),
            ("histogram", MetricType::Histogram),
            ("summary", MetricType::Summary),
            ("untyped", MetricType::Untyped),
            ("gaugehistogram", MetricType::GaugeHistogram),
            ("info", MetricType::Info),
            ("stateset", MetricType::StateSet),
            ("unknown", MetricType::Unknown),
        ];
        for (word, kind) in words {
            let text = format!("# TYPE f_{word} {word}\n");
            let e = clean(&text);
            assert_eq!(e.types.get(&format!("f_{word}")), Some(&kind));
            assert_eq!(kind.as_str(), word);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{word}\""));
        }
        assert_eq!(MetricType::from_type_word("Counter"), None);
    }

    #[test]
    fn special_and_notational_floats() {
        let cases: [(&str, f64); 14] = [
            ("+Inf", f64::INFINITY),
            ("Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("1e3", 1000.0),
            ("1.5e+06", 1.5e6),
            ("2.6705e-05", 2.6705e-05),
            ("1E-3", 0.001),
            ("-0.5", -0.5),
            (".5", 0.5),
            ("5.", 5.0),
            ("+7", 7.0),
            ("1.8446744073709552e+19", 1.8446744073709552e19),
            ("0", 0.0),
            ("123456789012", 123456789012.0),
        ];
        for (tok, want) in cases {
            assert_eq!(one(&format!("m {tok}\n")).value, want, "{tok}");
        }
        assert!(one("m NaN\n").value.is_nan());
        assert!(one("m nan\n").value.is_nan());
    }

    #[test]
    fn eof_stops_parsing() {
        let e = parse("# TYPE a gauge\na 1\n# EOF\n");
        assert!(e.errors.is_empty() && !e.truncated);
        assert_eq!(e.samples.len(), 1);

        // No final newline after # EOF is fine in OpenMetrics.
        let e = parse("a 1\n# EOF");
        assert!(e.errors.is_empty() && !e.truncated);

        let e = parse("a 1\n# EOF\n\nb 2\nc 3\n");
        assert_eq!(e.samples.len(), 1);
        assert_eq!(
            e.errors,
            vec![err(4, "text after # EOF ignored at column 1: `b 2`")]
        );
    }

    #[test]
    fn exemplars_are_ignored() {
        let text = "\
# TYPE foo histogram
foo_bucket{le=\"0.01\"} 0
foo_bucket{le=\"0.1\"} 8 # {} 0.054
foo_bucket{le=\"1\"} 11 # {trace_id=\"KOO5S4vxi0o\"} 0.67
foo_bucket{le=\"10\"} 17 # {trace_id=\"oHg5SJYRHA0\"} 9.8 1520879607.789
foo_bucket{le=\"+Inf\"} 17 1520879607.789 # {trace_id=\"x\",span=\"}\"} 1 123
foo_count 17
foo_sum 324789.3
# EOF
";
        let e = clean(text);
        assert_eq!(e.samples.len(), 7);
        assert_eq!(e.samples[2].value, 11.0);
        assert_eq!(e.samples[3].timestamp_ms, None);
        assert_eq!(e.samples[4].timestamp_ms, Some(1_520_879_607_789));
        assert_eq!(
            e.histogram_buckets("foo", &[]),
            vec![
                (0.01, 0.0),
                (0.1, 8.0),
                (1.0, 11.0),
                (10.0, 17.0),
                (f64::INFINITY, 17.0)
            ]
        );
    }

    #[test]
    fn openmetrics_counter_suffixes() {
        let text = "\
# TYPE foo counter
# HELP foo A counter.
foo_total{a=\"1\"} 17
foo_created{a=\"1\"} 1520430000.123
# TYPE bar counter
bar_total 3
# EOF
";
        let e = clean(text);
        for s in &e.samples {
            assert_eq!(s.kind, MetricType::Counter, "{}", s.name);
        }
        let fams: Vec<_> = e
            .samples
            .iter()
            .map(|s| (s.name.as_ref(), s.family.as_ref()))
            .collect();
        assert_eq!(
            fams,
            [
                ("foo_total", "foo"),
                ("foo_created", "foo"),
                ("bar_total", "bar")
            ]
        );
        assert_eq!(e.help.get("foo").map(String::as_str), Some("A counter."));
    }

    #[test]
    fn histogram_summary_and_gaugehistogram_suffixes() {
        let text = "\
# TYPE lat histogram
lat_bucket{le=\"0.005\"} 1
lat_bucket{le=\"+Inf\"} 2
lat_sum 0.4
lat_count 2
lat_created 1.7e9
# TYPE rpc summary
rpc{quantile=\"0.5\"} 0.01
rpc{quantile=\"0.99\"} 0.2
rpc_sum 10
rpc_count 300
# TYPE q gaugehistogram
q_bucket{le=\"1\"} 4
q_bucket{le=\"+Inf\"} 5
q_gcount 5
q_gsum 3.5
# TYPE build info
build_info{version=\"1\"} 1
# TYPE st stateset
st{st=\"a\"} 1
";
        let e = clean(text);
        let got: Vec<_> = e
            .samples
            .iter()
            .map(|s| (s.name.as_ref(), s.family.as_ref(), s.kind))
            .collect();
        use MetricType::*;
        assert_eq!(
            got,
            [
                ("lat_bucket", "lat", Histogram),
                ("lat_bucket", "lat", Histogram),
                ("lat_sum", "lat", Histogram),
                ("lat_count", "lat", Histogram),
                ("lat_created", "lat", Histogram),
                ("rpc", "rpc", Summary),
                ("rpc", "rpc", Summary),
                ("rpc_sum", "rpc", Summary),
                ("rpc_count", "rpc", Summary),
                ("q_bucket", "q", GaugeHistogram),
                ("q_bucket", "q", GaugeHistogram),
                ("q_gcount", "q", GaugeHistogram),
                ("q_gsum", "q", GaugeHistogram),
                ("build_info", "build", Info),
                ("st", "st", StateSet),
            ]
        );
    }

    #[test]
    fn family_resolution_outside_the_current_family() {
        // Samples interleaved after another TYPE still find their family;
        // a suffix that is wrong for the type does not attach.
        let text = "\
# TYPE lat histogram
# TYPE g gauge
lat_count 2
g 1
g_total 5
other_sum 1
";
        let e = clean(text);
        let got: Vec<_> = e
            .samples
            .iter()
            .map(|s| (s.family.as_ref(), s.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("lat", MetricType::Histogram),
                ("g", MetricType::Gauge),
                ("g_total", MetricType::Untyped),
                ("other_sum", MetricType::Untyped),
            ]
        );
    }

    #[test]
    fn histogram_buckets_groups_sorts_and_parses_le() {
        let text = "\
# TYPE h histogram
h_bucket{route=\"/a\",le=\"+Inf\"} 10
h_bucket{route=\"/a\",le=\"1e-3\"} 1
h_bucket{route=\"/a\",le=\"0.005\"} 4
h_bucket{route=\"/b\",le=\"0.001\"} 2
h_bucket{route=\"/b\",le=\"5e-3\"} 3
h_bucket{route=\"/b\",le=\"Inf\"} 5
h_bucket{route=\"/c\"} 99
h_bucket{route=\"/c\",le=\"abc\"} 99
h_sum 1
h_count 15
";
        let e = clean(text);
        assert_eq!(
            e.histogram_buckets("h", &[]),
            vec![(0.001, 3.0), (0.005, 7.0), (f64::INFINITY, 15.0)]
        );
        assert_eq!(
            e.histogram_buckets("h", &m(&[("route", "/b")])),
            vec![(0.001, 2.0), (0.005, 3.0), (f64::INFINITY, 5.0)]
        );
        assert!(e
            .histogram_buckets("h", &m(&[("route", "/zzz")]))
            .is_empty());
        assert!(e.histogram_buckets("nope", &[]).is_empty());
    }

    #[test]
    fn select_and_sum() {
        let text = "\
c{a=\"1\",b=\"x\"} 1
c{a=\"1\",b=\"y\"} 2
c{a=\"2\",b=\"x\"} 4
c_other{a=\"1\"} 100
c 8
";
        let e = clean(text);
        assert_eq!(e.sum("c", &m(&[("a", "1")])), Some(3.0));
        assert_eq!(e.sum("c", &m(&[("a", "1"), ("b", "y")])), Some(2.0));
        assert_eq!(e.sum("c", &[]), Some(15.0));
        assert_eq!(e.sum("c", &m(&[("a", "3")])), None);
        assert_eq!(e.sum("nope", &[]), None);
        // Empty matcher value matches an absent label (PromQL semantics).
        assert_eq!(e.sum("c", &m(&[("a", "")])), Some(8.0));
        assert_eq!(e.select("c", &m(&[("b", "x")])).count(), 2);
    }

    #[test]
    fn duplicate_label_name_is_an_error() {
        let e = parse("m{a=\"1\",b=\"2\",a=\"3\"} 1\nok 1\n");
        assert_eq!(
            e.errors,
            vec![err(
                1,
                "duplicate label name `a` at column 15: `m{a=\"1\",b=\"2\",a=\"3\"} 1`"
            )]
        );
        assert_eq!(e.samples.len(), 1);
        // Large label sets use the sorted check.
        let mut line = String::from("m{");
        for n in 0..40 {
            line.push_str(&format!("l{n}=\"v\","));
        }
        line.push_str("l7=\"again\"} 1\n");
        let e = parse(&line);
        assert_eq!(e.errors.len(), 1);
        assert!(
            e.errors[0].message.starts_with("duplicate label name `l7`"),
            "{:?}",
            e.errors
        );
        line.truncate(0);
        line.push_str("m{");
        for n in 0..40 {
            line.push_str(&format!("l{n}=\"v\","));
        }
        line.push_str("} 1\n");
        assert_eq!(clean(&line).samples[0].labels.len(), 40);
    }

    #[test]
    fn bad_lines_are_reported_with_line_numbers_and_parsing_continues() {
        let text = "\
good 1
garbage here !
-bad 1
m
m{a=\"1\"}
m{a=\"unterminated} 1
m{a=\"bad \\x escape\"} 1
m abc
m 1 2 3
m 1 1.5
m{a=1} 1
m{=\"1\"} 1
m{a \"1\"} 1
m{a=\"1\" b=\"2\"} 1
m{a=\"1\"
m{a:b=\"1\"} 1
{a=\"1\"} 1
foo-bar 1
m{,} 1
# TYPE x bogus
# TYPE
# TYPE y
# TYPE z gauge extra
# HELP
# TYPE good gauge
# TYPE good counter
# HELP good one
# HELP good two
also_good{x=\"y\"} 2
";
        let e = parse(text);
        let want = vec![
            err(2, "invalid sample value `here` at column 9: `garbage here !`"),
            err(3, "invalid metric name at column 1: `-bad 1`"),
            err(4, "missing sample value at column 2: `m`"),
            err(5, "missing sample value at column 9: `m{a=\"1\"}`"),
            err(6, "unterminated quoted string at column 5: `m{a=\"unterminated} 1`"),
            err(7, "invalid escape sequence `\\x` at column 10: `m{a=\"bad \\x escape\"} 1`"),
            err(8, "invalid sample value `abc` at column 3: `m abc`"),
            err(9, "unexpected text after sample at column 7: `m 1 2 3`"),
            err(10, "invalid timestamp `1.5` at column 5: `m 1 1.5`"),
            err(11, "expected '\"' to open label value at column 5: `m{a=1} 1`"),
            err(12, "expected label name at column 3: `m{=\"1\"} 1`"),
            err(13, "expected '=' after label name at column 5: `m{a \"1\"} 1`"),
            err(14, "expected ',' or '}' in label set at column 9: `m{a=\"1\" b=\"2\"} 1`"),
            err(15, "unterminated label set at column 8: `m{a=\"1\"`"),
            err(16, "invalid character in label name at column 4: `m{a:b=\"1\"} 1`"),
            err(17, "missing metric name at column 1: `{a=\"1\"} 1`"),
            err(18, "invalid metric name at column 4: `foo-bar 1`"),
            err(19, "expected label name at column 3: `m{,} 1`"),
            err(20, "unknown metric type `bogus` at column 10: `# TYPE x bogus`"),
            err(21, "expected metric name after # TYPE at column 7: `# TYPE`"),
            err(22, "missing metric type in # TYPE line at column 9: `# TYPE y`"),
            err(23, "unexpected text after metric type at column 16: `# TYPE z gauge extra`"),
            err(24, "expected metric name after # HELP at column 7: `# HELP`"),
            err(26, "duplicate # TYPE line for `good` (first one kept) at column 3: `# TYPE good counter`"),
            err(28, "duplicate # HELP line for `good` (first one kept) at column 3: `# HELP good two`"),
        ];
        assert_eq!(e.errors, want);
        let names: Vec<_> = e.samples.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["good", "also_good"]);
        assert_eq!(e.types.get("good"), Some(&MetricType::Gauge));
        assert_eq!(e.help.get("good").map(String::as_str), Some("one"));
        assert!(!e.truncated);
        for le in &e.errors {
            assert_eq!(le.to_string(), format!("line {}: {}", le.line, le.message));
        }
    }

    #[test]
    fn error_messages_quote_a_short_window_of_long_lines() {
        let long_value = "v".repeat(5000);
        let text = format!("ok 1\nm{{a=\"{long_value}\",b=\"x\\q\"}} 1\n");
        let e = only_error(&text);
        assert_eq!(e.line, 2);
        assert!(!e.message.contains('\n'));
        let quoted = e.message.split_once(": ").map(|x| x.1).unwrap();
        assert!(quoted.chars().count() <= 52, "{}", e.message);
        assert!(
            e.message
                .starts_with("invalid escape sequence `\\q` at column 5012: `…"),
            "{}",
            e.message
        );
        assert!(quoted.contains("x\\q"), "{}", e.message);

        let e = only_error(&format!("m {}\n", "9".repeat(300) + "x"));
        assert!(e.message.chars().count() < 120, "{}", e.message);

        // Control characters are escaped, never raw.
        let e = only_error("m{a=\"\u{7}\"}\u{1b} 1\n");
        assert!(!e.message.chars().any(char::is_control), "{}", e.message);
    }

    #[test]
    fn truncated_flag() {
        assert!(!parse("").truncated);
        assert!(!parse("m 1\n").truncated);
        assert!(!parse("m 1\n   ").truncated);

        let e = parse("a 1\nm 1");
        assert!(e.truncated);
        assert!(e.errors.is_empty());
        assert_eq!(e.samples.len(), 2, "a complete-looking last line is kept");

        let e = parse("a 1\nm{a=\"x");
        assert!(e.truncated);
        assert_eq!(
            e.errors,
            vec![err(2, "unterminated quoted string at column 5: `m{a=\"x`")]
        );

        let e = parse("a 1\n# HELP a doc");
        assert!(e.truncated);

        // Explicit OpenMetrics without # EOF was cut short.
        let e = parse_as("a_total 1\n", Format::OpenMetrics);
        assert!(e.truncated);
        assert!(!parse_as("a_total 1\n# EOF\n", Format::OpenMetrics).truncated);
    }

    #[test]
    fn crlf_line_endings() {
        let e = clean("# TYPE a gauge\r\na{x=\"1\"} 1\r\nb 2 123\r\n");
        assert_eq!(e.samples.len(), 2);
        assert_eq!(e.samples[1].timestamp_ms, Some(123));
        assert_eq!(e.types.get("a"), Some(&MetricType::Gauge));
    }

    #[test]
    fn openmetrics_timestamps_are_seconds() {
        let text = "a 1 1520879607.789\nb 2 1520879607\n# EOF\n";
        let e = clean(text);
        assert_eq!(e.samples[0].timestamp_ms, Some(1_520_879_607_789));
        assert_eq!(e.samples[1].timestamp_ms, Some(1_520_879_607_000));
        let e = parse_as("a 1 1520879607\n", Format::PrometheusText);
        assert_eq!(e.samples[0].timestamp_ms, Some(1_520_879_607));
        let e = parse_as("a 1 1e300\n# EOF\n", Format::OpenMetrics);
        assert_eq!(e.errors.len(), 1);
    }

    #[test]
    fn content_type_picks_format() {
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("text/plain; version=0.0.4; charset=utf-8"),
            Format::PrometheusText
        );
        assert_eq!(
            Format::from_content_type("TEXT/PLAIN"),
            Format::PrometheusText
        );
        assert_eq!(Format::from_content_type("application/json"), Format::Auto);
        assert_eq!(Format::from_content_type(""), Format::Auto);
    }

    #[test]
    fn quoted_utf8_names() {
        let text = "\
# HELP \"my.metric\" Dotted.
# TYPE \"my.metric\" counter
{\"my.metric\",\"le.vel\"=\"x\",b=\"y\"} 1
{\"my.metric\"} 2
m{\"label with space\"=\"v\"} 3
";
        let e = clean(text);
        assert_eq!(e.types.get("my.metric"), Some(&MetricType::Counter));
        assert_eq!(e.samples[0].name, "my.metric");
        assert_eq!(
            owned(&e.samples[0].labels),
            m(&[("le.vel", "x"), ("b", "y")])
        );
        assert_eq!(e.samples[0].kind, MetricType::Counter);
        assert_eq!(e.samples[1].name, "my.metric");
        assert_eq!(e.samples[2].label("label with space"), Some("v"));
        // A quoted name after a bare name, or a second one, is an error.
        assert_eq!(parse("m{\"x\"} 1\n").errors.len(), 1);
        assert_eq!(parse("{\"x\",\"y\"} 1\n").errors.len(), 1);
    }

    #[test]
    fn serde_round_trip() {
        let e = clean(NODEJS_PROM);
        let json = serde_json::to_string(&e).unwrap();
        let back: Exposition = serde_json::from_str(&json).unwrap();
        assert_eq!(back.samples, e.samples);
        assert_eq!(back.types, e.types);
    }

    // ---- fixtures: real exporter output --------------------------------

    #[test]
    fn fixture_python_client_text() {
        let e = clean(PYTHON_PROM);
        assert!(!e.truncated);
        assert_eq!(e.samples.len(), 67);
        assert_eq!(e.types.len(), 19);
        assert_eq!(
            e.types.get("soak_request_latency_seconds"),
            Some(&MetricType::Histogram)
        );
        assert_eq!(
            e.types.get("soak_payload_bytes"),
            Some(&MetricType::Summary)
        );
        assert_eq!(
            e.types.get("process_cpu_seconds_total"),
            Some(&MetricType::Counter)
        );
        assert_eq!(
            e.help.get("soak_messages_total").map(String::as_str),
            Some("Messages seen by the \"soak\" test.\nSecond line with a backslash \\ here.")
        );

        let tricky = e
            .select("soak_messages_total", &m(&[("subject", "a,b=c")]))
            .collect::<Vec<_>>();
        assert_eq!(tricky.len(), 1);
        assert_eq!(
            tricky[0].label("result"),
            Some("quote \"x\" and \\ back\nnewline")
        );
        assert_eq!(tricky[0].value, 3.0);
        assert_eq!(tricky[0].kind, MetricType::Counter);
        assert_eq!(e.sum("soak_messages_total", &[]), Some(46.5));
        assert_eq!(
            e.sum("soak_messages_total", &m(&[("subject", "braces {}")])),
            Some(1.5)
        );
        assert_eq!(
            e.sum("soak_queue_depth", &m(&[("stream", "AA_CORE_COLD")])),
            Some(-2.5)
        );
        assert_eq!(
            e.sum("process_start_time_seconds", &[]),
            Some(1.79575710903e9)
        );
        assert_eq!(e.sum("python_gc_collections_total", &[]), Some(45.0));

        let sum = e
            .select("soak_request_latency_seconds_sum", &[])
            .next()
            .unwrap();
        assert_eq!(
            (sum.family.as_ref(), sum.kind),
            ("soak_request_latency_seconds", MetricType::Histogram)
        );
        let created = e
            .select("soak_request_latency_seconds_created", &[])
            .next()
            .unwrap();
        assert_eq!(
            created.kind,
            MetricType::Gauge,
            "0.0.4 output declares _created as its own gauge"
        );

        let buckets = e.histogram_buckets("soak_request_latency_seconds", &[]);
        assert_eq!(buckets.len(), 15);
        assert_eq!(buckets[0], (0.005, 2.0));
        assert_eq!(buckets[2], (0.025, 4.0));
        assert_eq!(buckets[14], (f64::INFINITY, 8.0));
        let health =
            e.histogram_buckets("soak_request_latency_seconds", &m(&[("route", "/health")]));
        assert_eq!(health.last(), Some(&(f64::INFINITY, 7.0)));
        assert_eq!(health[10], (2.5, 5.0));
        assert_eq!(e.sum("soak_request_latency_seconds_count", &[]), Some(8.0));

        assert_eq!(
            e.sum("soak_state", &m(&[("soak_state", "running")])),
            Some(1.0)
        );
        assert_eq!(
            e.select("soak_build_info", &[])
                .next()
                .unwrap()
                .label("version"),
            Some("1.2.3")
        );
    }

    #[test]
    fn fixture_python_client_openmetrics() {
        let e = clean(PYTHON_OM);
        assert!(!e.truncated);
        assert_eq!(e.samples.len(), 67);
        assert_eq!(e.types.len(), 16);
        use MetricType::*;
        let kind_of = |name: &str| {
            let s = e.select(name, &[]).next().unwrap();
            (s.family.clone(), s.kind)
        };
        assert_eq!(
            kind_of("process_cpu_seconds_total"),
            ("process_cpu_seconds".into(), Counter)
        );
        assert_eq!(
            kind_of("soak_messages_total"),
            ("soak_messages".into(), Counter)
        );
        assert_eq!(
            kind_of("soak_messages_created"),
            ("soak_messages".into(), Counter)
        );
        assert_eq!(
            kind_of("soak_request_latency_seconds_created"),
            ("soak_request_latency_seconds".into(), Histogram)
        );
        assert_eq!(
            kind_of("soak_request_latency_seconds_bucket"),
            ("soak_request_latency_seconds".into(), Histogram)
        );
        assert_eq!(
            kind_of("soak_payload_bytes_created"),
            ("soak_payload_bytes".into(), Summary)
        );
        assert_eq!(kind_of("soak_build_info"), ("soak_build".into(), Info));
        assert_eq!(kind_of("soak_state"), ("soak_state".into(), StateSet));
        assert_eq!(
            e.help.get("soak_messages").map(String::as_str),
            Some("Messages seen by the \"soak\" test.\nSecond line with a backslash \\ here.")
        );
        // Same values as the 0.0.4 rendering of the same registry.
        let text = clean(PYTHON_PROM);
        assert_eq!(
            e.sum("soak_messages_total", &[]),
            text.sum("soak_messages_total", &[])
        );
        assert_eq!(
            e.histogram_buckets("soak_request_latency_seconds", &[]),
            text.histogram_buckets("soak_request_latency_seconds", &[])
        );
    }

    #[test]
    fn fixture_go_client_golang() {
        let e = clean(GO_PROM);
        assert_eq!(e.samples.len(), 36);
        assert_eq!(e.types.len(), 28);
        let q: Vec<_> = e
            .select("go_gc_duration_seconds", &[])
            .map(|s| (s.label("quantile").unwrap().to_string(), s.value))
            .collect();
        assert_eq!(q.len(), 5);
        assert_eq!(q[0], ("0".to_string(), 2.6705e-05));
        assert_eq!(q[4], ("1".to_string(), 0.000416913));
        let count = e
            .select("go_gc_duration_seconds_count", &[])
            .next()
            .unwrap();
        assert_eq!(
            (count.value, count.family.as_ref(), count.kind),
            (187.0, "go_gc_duration_seconds", MetricType::Summary)
        );
        assert_eq!(e.sum("go_goroutines", &[]), Some(42.0));
        assert_eq!(
            e.sum("go_memstats_alloc_bytes_total", &[]),
            Some(1.749853264e9)
        );
        assert_eq!(
            e.sum("process_virtual_memory_max_bytes", &[]),
            Some(1.8446744073709552e19)
        );
        assert_eq!(
            e.sum(
                "promhttp_metric_handler_requests_total",
                &m(&[("code", "200")])
            ),
            Some(1523.0)
        );
        assert_eq!(
            e.sum("promhttp_metric_handler_requests_total", &[]),
            Some(1523.0)
        );
        assert_eq!(
            e.select("promhttp_metric_handler_requests_total", &[])
                .next()
                .unwrap()
                .kind,
            MetricType::Counter
        );
    }

    #[test]
    fn fixture_node_exporter() {
        let e = clean(NODE_EXPORTER);
        assert_eq!(e.samples.len(), 41);
        assert_eq!(e.select("node_cpu_seconds_total", &[]).count(), 16);
        assert_eq!(
            e.sum("node_cpu_seconds_total", &m(&[("mode", "idle")])),
            Some(412389.54 + 411922.08)
        );
        assert_eq!(
            e.sum(
                "node_filesystem_avail_bytes",
                &m(&[
                    ("device", "/dev/sda1"),
                    ("fstype", "ext4"),
                    ("mountpoint", "/")
                ])
            ),
            Some(4.2161795072e10)
        );
        let uname = e.select("node_uname_info", &[]).next().unwrap();
        assert_eq!(
            uname.label("version"),
            Some("#1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1 (2024-05-03)")
        );
        assert_eq!(uname.label("domainname"), Some("(none)"));
        assert_eq!(
            e.types.get("node_memory_MemAvailable_bytes"),
            Some(&MetricType::Gauge)
        );
        assert_eq!(
            e.help
                .get("node_scrape_collector_success")
                .map(String::as_str),
            Some("node_exporter: Whether a collector succeeded.")
        );
    }

    #[test]
    fn fixture_nodejs_prom_client() {
        let e = clean(NODEJS_PROM);
        assert!(!e.truncated);
        assert_eq!(e.samples.len(), 81);
        let s = e
            .select(
                "normalize_hrv_messages_total",
                &m(&[
                    ("result", "success"),
                    ("subject", "athlete-ally.hrv.raw-received"),
                    ("stream", "AA_CORE_HOT"),
                    ("durable", "normalize-hrv-durable"),
                ]),
            )
            .collect::<Vec<_>>();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].value, 1.0);
        assert_eq!(s[0].kind, MetricType::Counter);
        assert_eq!(e.sum("normalize_hrv_messages_total", &[]), Some(3.0));
        assert_eq!(e.sum("process_start_time_seconds", &[]), Some(1795757215.0));
        assert_eq!(
            e.types.get("nodejs_gc_duration_seconds"),
            Some(&MetricType::Histogram)
        );
        assert!(e
            .histogram_buckets("nodejs_gc_duration_seconds", &[])
            .is_empty());

        let h = "normalize_hrv_processing_duration_seconds";
        let all = e.histogram_buckets(h, &[]);
        assert_eq!(all.len(), 11);
        assert_eq!(all[0], (0.005, 2.0));
        assert_eq!(all[6], (0.5, 4.0));
        assert_eq!(all[10], (f64::INFINITY, 5.0));
        let errors = e.histogram_buckets(h, &m(&[("result", "error")]));
        assert_eq!(errors[9], (5.0, 0.0));
        assert_eq!(errors[10], (f64::INFINITY, 1.0));
        let count = e
            .select(&format!("{h}_count"), &m(&[("result", "success")]))
            .next()
            .unwrap();
        assert_eq!(
            (count.value, count.family.as_ref(), count.kind),
            (4.0, h, MetricType::Histogram)
        );
        assert_eq!(e.sum(&format!("{h}_sum"), &[]), Some(7.327));
    }

    #[test]
    fn fixture_nodejs_prom_client_openmetrics() {
        let e = clean(NODEJS_OM);
        assert!(!e.truncated);
        assert_eq!(e.samples.len(), 80);
        let c = e
            .select("normalize_hrv_messages_total", &[])
            .next()
            .unwrap();
        assert_eq!(
            (c.family.as_ref(), c.kind),
            ("normalize_hrv_messages", MetricType::Counter)
        );
        let u = e
            .select("process_cpu_user_seconds_total", &[])
            .next()
            .unwrap();
        assert_eq!(
            (u.family.as_ref(), u.kind),
            ("process_cpu_user_seconds", MetricType::Counter)
        );
        assert_eq!(
            e.histogram_buckets("normalize_hrv_processing_duration_seconds", &[])
                .last(),
            Some(&(f64::INFINITY, 5.0))
        );
    }

    #[test]
    fn fixture_prometheus_federate() {
        let e = clean(FEDERATE);
        assert_eq!(e.samples.len(), 6);
        let s = &e.samples[0];
        assert_eq!(s.name, "job:http_requests:rate5m");
        assert_eq!(
            (s.family.as_ref(), s.kind),
            ("job:http_requests:rate5m", MetricType::Untyped)
        );
        assert_eq!(s.timestamp_ms, Some(1717987543123));
        assert_eq!(s.label("instance"), Some("normalize-0:9464"));
        assert_eq!(e.sum("job:http_requests:rate5m", &[]), Some(24.25));
        assert_eq!(
            e.sum("up", &m(&[("instance", "normalize-1:9464")])),
            Some(0.0)
        );
        assert_eq!(
            e.types.get("job:nats_consumer_lag:max"),
            Some(&MetricType::Untyped)
        );
    }

    // ---- robustness ----------------------------------------------------

    fn check_invariants(text: &str, e: &Exposition<'_>) {
        let lines = text.split('\n').count();
        for le in &e.errors {
            assert!(le.line >= 1 && le.line <= lines, "{le:?} of {lines}");
            assert!(
                !le.message.contains('\n') && !le.message.contains('\r'),
                "{le:?}"
            );
            assert!(le.message.chars().count() <= 200, "{le:?}");
        }
        check_every_line_accounted(text, e);
    }

    /// Every non-blank line before `# EOF` is a comment, a sample or a
    /// reported error: no line is dropped silently.
    fn check_every_line_accounted(text: &str, e: &Exposition<'_>) {
        let blank = |c: char| c == ' ' || c == '\t';
        let mut sample_lines = 0;
        for (n, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line).trim_matches(blank);
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                if comment.trim_matches(blank) == "EOF" {
                    break;
                }
                continue;
            }
            if !e.errors.iter().any(|le| le.line == n + 1) {
                sample_lines += 1;
            }
        }
        assert_eq!(e.samples.len(), sample_lines, "{:?}", e.errors);
    }

    #[test]
    fn every_line_accounted_for_in_fixtures() {
        for (name, text) in FIXTURES {
            let e = parse(text);
            check_invariants(text, &e);
            assert!(!e.samples.is_empty(), "{name}");
        }
        let e = parse("a 1\n# TYPE a gauge\nbad line\n\n  \t\nb{x=\"1\"} 2\n#c\n");
        check_every_line_accounted(
            "a 1\n# TYPE a gauge\nbad line\n\n  \t\nb{x=\"1\"} 2\n#c\n",
            &e,
        );
        assert_eq!((e.samples.len(), e.errors.len()), (2, 1));
    }

    #[test]
    fn byte_classes_are_the_name_grammar() {
        for c in 0..=255u8 {
            let alpha = c.is_ascii_alphabetic() || c == b'_';
            let alnum = c.is_ascii_alphanumeric() || c == b'_';
            assert_eq!(is_name_start(c), alpha || c == b':', "{c}");
            assert_eq!(is_name_char(c), alnum || c == b':', "{c}");
            assert_eq!(is_label_start(c), alpha, "{c}");
            assert_eq!(is_label_char(c), alnum, "{c}");
        }
    }

    #[test]
    fn quoted_strings_short_and_long() {
        for len in [0, 1, 15, 16, 17, 40] {
            let v = "v".repeat(len);
            assert_eq!(
                one(&format!("m{{a=\"{v}\"}} 1\n")).label("a"),
                Some(v.as_str())
            );
            let text = format!("m{{a=\"{v}\\\"q\"}} 1\n");
            assert_eq!(one(&text).label("a"), Some(format!("{v}\"q").as_str()));
            assert_eq!(only_error(&format!("m{{a=\"{v}\n")).line, 1);
        }
    }

    #[test]
    fn count_newlines_matches_a_plain_count() {
        let mut rng = XorShift(7);
        for len in 0..400 {
            let b: Vec<u8> = (0..len)
                .map(|_| if rng.below(4) == 0 { b'\n' } else { b'x' })
                .collect();
            let plain = b.iter().filter(|&&c| c == b'\n').count();
            assert_eq!(count_newlines(&b), plain, "{len}");
        }
        assert_eq!(count_newlines(&[b'\n'; 1000]), 1000);
        assert_eq!(count_newlines(b""), 0);
    }

    /// Tiny deterministic PRNG for the mutation tests.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn fixture_truncations_never_panic_and_set_truncated() {
        for (name, text) in FIXTURES {
            let cuts = (0..=text.len()).filter(|&n| n < 400 || n % 7 == 0 || n + 400 > text.len());
            for cut in cuts {
                let Some(prefix) = text.get(..cut) else {
                    continue;
                };
                let e = parse(prefix);
                check_invariants(prefix, &e);
                let last = prefix.rsplit('\n').next().unwrap_or("");
                let mid_line = !prefix.ends_with('\n') && !last.trim().is_empty();
                let eof_line = last.trim() == "# EOF";
                assert_eq!(e.truncated, mid_line && !eof_line, "{name} cut at {cut}");
                // Only the cut line can be bad.
                assert!(e.errors.len() <= 1, "{name} cut at {cut}: {:?}", e.errors);
                if let Some(le) = e.errors.first() {
                    assert!(mid_line, "{name} cut at {cut}: {le:?}");
                    assert_eq!(le.line, prefix.split('\n').count(), "{name} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn fixture_mutations_never_panic() {
        const ALPHABET: &[u8] = b"{}=\",\\#\n \t\r:_aZ09.+-eEI";
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for (_, text) in FIXTURES {
            for _ in 0..300 {
                let mut bytes = text.as_bytes().to_vec();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(bytes.len() + 1);
                    let byte = if rng.below(4) == 0 {
                        (rng.next() & 0xff) as u8
                    } else {
                        ALPHABET[rng.below(ALPHABET.len())]
                    };
                    match rng.below(3) {
                        0 if at < bytes.len() => bytes[at] = byte,
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, byte),
                    }
                }
                let mutated = String::from_utf8_lossy(&bytes);
                let e = parse(&mutated);
                check_invariants(&mutated, &e);
                let _ = parse_as(&mutated, Format::OpenMetrics);
                let _ = parse_as(&mutated, Format::PrometheusText);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(42);
        for _ in 0..2000 {
            let len = rng.below(300);
            let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
            let text = String::from_utf8_lossy(&bytes);
            let e = parse(&text);
            check_invariants(&text, &e);
        }
    }

    fn sample_strategy() -> impl Strategy<Value = (String, Vec<(String, String)>, f64, Option<i64>)>
    {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,24}",
            proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,12}", any::<String>(), 0..6),
            any::<f64>(),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(n, l, v, t)| (n, l.into_iter().collect(), v, t))
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let e = parse(&text);
            check_invariants(&text, &e);
        }

        #[test]
        fn grammar_soup_never_panics(text in "[a-z_:{}=\",#\\\\ \t\r\n0-9.+eEInfa-]{0,300}") {
            let e = parse(&text);
            check_invariants(&text, &e);
            let e = parse_as(&text, Format::OpenMetrics);
            check_invariants(&text, &e);
        }

        #[test]
        fn rendered_samples_round_trip(
            samples in proptest::collection::vec(sample_strategy(), 1..20),
            sep in prop_oneof![Just(" "), Just("\t"), Just("  ")],
            trailing_comma in any::<bool>(),
        ) {
            let mut text = String::new();
            for (name, labels, value, ts) in &samples {
                text.push_str(name);
                if !labels.is_empty() || trailing_comma {
                    text.push('{');
                    for (k, v) in labels {
                        text.push_str(&format!("{k}=\"{}\",", escape_label_value(v)));
                    }
                    if !trailing_comma && !labels.is_empty() {
                        text.pop();
                    }
                    text.push('}');
                }
                text.push_str(sep);
                text.push_str(&value.to_string());
                if let Some(ts) = ts {
                    text.push_str(sep);
                    text.push_str(&ts.to_string());
                }
                text.push('\n');
            }
            let e = parse(&text);
            prop_assert!(e.errors.is_empty(), "{:?}\n{}", e.errors, text);
            prop_assert!(!e.truncated);
            prop_assert_eq!(e.samples.len(), samples.len());
            for (got, (name, labels, value, ts)) in e.samples.iter().zip(&samples) {
                prop_assert_eq!(&got.name, name);
                prop_assert_eq!(&owned(&got.labels), labels);
                prop_assert!(got.value == *value || (got.value.is_nan() && value.is_nan()));
                prop_assert_eq!(got.timestamp_ms, *ts);
            }
        }
    }

    /// Real client-library output (tests/fixtures/promtext/README.md): the
    /// counter is found under its family name and its `_total` sample name
    /// alike, in both text formats, traffic or fresh.
    #[test]
    fn a_counter_resolves_by_family_or_sample_name_in_both_formats() {
        let fx = |name: &str| {
            let path = format!(
                "{}/tests/fixtures/promtext/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        for file in [
            "python_service_traffic.prom",
            "python_service_traffic.openmetrics",
            "nodejs_service_traffic.prom",
            "nodejs_service_traffic.openmetrics",
            "go_service_traffic.prom",
            "go_service_traffic.openmetrics",
        ] {
            let text = fx(file);
            let e = clean(&text);
            for spelled in ["normalize_hrv_messages", "normalize_hrv_messages_total"] {
                let got = e.counter_sample_name(spelled);
                assert_eq!(
                    got.sample_name, "normalize_hrv_messages_total",
                    "{file} {spelled}"
                );
                assert!(got.declared, "{file} {spelled}");
            }
        }
        for file in [
            "python_service_fresh.prom",
            "python_service_fresh.openmetrics",
            "nodejs_service_fresh.prom",
            "nodejs_service_fresh.openmetrics",
        ] {
            let text = fx(file);
            let e = clean(&text);
            for spelled in ["normalize_hrv_messages", "normalize_hrv_messages_total"] {
                let got = e.counter_sample_name(spelled);
                assert!(got.declared, "{file} {spelled}: declared, zero events");
                assert!(e.select(&got.sample_name, &[]).next().is_none());
            }
        }
        // client_golang leaves a fresh vector out: neither spelling is declared.
        let text = fx("go_service_fresh.prom");
        let e = clean(&text);
        assert!(!e.counter_sample_name("normalize_hrv_messages").declared);
    }

    #[test]
    fn a_bare_counter_name_is_read_only_from_a_counter_family() {
        // A counter without the suffix (0.0.4 allows it) is found by `_total` too…
        let e = clean("# TYPE jobs counter\njobs 4\n");
        assert_eq!(e.counter_sample_name("jobs_total").sample_name, "jobs");
        // …but a gauge of the bare name never stands in for the counter.
        let e = clean("# TYPE jobs gauge\njobs 4\n");
        let got = e.counter_sample_name("jobs_total");
        assert_eq!(got.sample_name, "jobs_total");
        assert!(!got.declared);
        // The spelling as written wins when both carry samples.
        let e = clean("# TYPE jobs gauge\njobs 4\n# TYPE jobs_total counter\njobs_total 9\n");
        assert_eq!(e.counter_sample_name("jobs").sample_name, "jobs");
    }
}
