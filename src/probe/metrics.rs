//! The service's Prometheus `/metrics`: scrape, parse, keep only the facts the criteria need.

use std::time::Duration;

use crate::config::Config;
use crate::promtext::{self, Exposition, Sample};
use crate::sample::{FamilyFacts, FamilyPresence, MetricsState, ProbeFailure, ProbeKind, Probed};

/// Largest body accepted: a runaway exporter must not exhaust our memory.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// How many bad lines are kept verbatim as evidence.
const KEPT_ERRORS: usize = 5;

/// Builds the HTTP client once (TLS via rustls; the provider is installed in main).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("soakwatch/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn fail(reason: String) -> ProbeFailure {
    ProbeFailure {
        probe: ProbeKind::Metrics,
        reason,
    }
}

/// Scrapes and extracts. A body with no valid sample at all is a failure
/// (garbage or an HTML error page); a body with some bad lines is kept and the
/// bad lines are reported.
pub async fn probe(http: &reqwest::Client, cfg: &Config) -> Probed<MetricsState> {
    let shown = cfg.metrics.url.shown();
    let resp = http
        .get(cfg.metrics.url.expose())
        .header(
            reqwest::header::ACCEPT,
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .map_err(|e| fail(format!("GET {shown}: {}", describe_reqwest(&e))))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(format!("GET {shown}: HTTP {status}")));
    }
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_BODY_BYTES)
    {
        return Err(fail(format!(
            "GET {shown}: body larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let body = resp.bytes().await.map_err(|e| {
        fail(format!(
            "GET {shown}: body cut off: {}",
            describe_reqwest(&e)
        ))
    })?;
    let text = String::from_utf8_lossy(&body);
    let expo = promtext::parse(&text);
    if expo.samples.is_empty() {
        let first = expo
            .errors
            .first()
            .map(|e| format!("; line {}: {}", e.line, e.message))
            .unwrap_or_default();
        return Err(fail(format!(
            "GET {shown}: not a Prometheus exposition ({} bytes, {} bad lines{first})",
            body.len(),
            expo.errors.len()
        )));
    }
    Ok(extract(&expo, cfg, body.len() as u64))
}

/// reqwest's Display nests causes; a person needs the innermost one.
fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let detail = inner.to_string();
    let detail = detail.lines().next().unwrap_or("");
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The pure part: from a parsed exposition to the facts the criteria read.
pub fn extract(expo: &Exposition, cfg: &Config, body_bytes: u64) -> MetricsState {
    let m = &cfg.metrics;
    let mut state = MetricsState {
        body_bytes,
        parse_error_count: expo.errors.len(),
        parse_errors: expo
            .errors
            .iter()
            .take(KEPT_ERRORS)
            .map(|e| format!("line {}: {}", e.line, e.message))
            .collect(),
        ..Default::default()
    };
    if expo.truncated {
        state.parse_error_count += 1;
        state
            .parse_errors
            .push("body ends mid-line (truncated exposition)".into());
    }
    let counter = select_counter(expo, &m.messages_counter, &m.matchers);
    state.counter_found = matches!(
        counter.facts.presence,
        FamilyPresence::Selected | FamilyPresence::Declared
    );
    for s in &counter.samples {
        let result = s.label(&m.result_label).unwrap_or("").to_string();
        *state.by_result.entry(result).or_default() += s.value;
        let stream = s.label(&m.stream_label).unwrap_or("").to_string();
        *state.by_stream.entry(stream).or_default() += s.value;
    }
    state.counter = Some(counter.facts);
    let legacy = &cfg.streams.legacy.name;
    for s in &expo.samples {
        if s.label(&m.stream_label) == Some(legacy.as_str()) {
            state
                .legacy_series
                .push((series_name(&s.name, &s.labels, &[]), s.value));
        }
    }
    if let Some(h) = &m.latency_histogram {
        let (facts, buckets) = select_histogram(expo, h, &m.matchers);
        state.histogram = (facts.presence == FamilyPresence::Selected).then_some(buckets);
        state.latency = Some(facts);
    }
    if let Some(p) = &m.process_start_metric {
        state.process_start = expo.select(p, &[]).next().map(|s| s.value);
    }
    state
}

// ---------------------------------------------------------------------------------------------
// Selecting one configured family

/// Label sets listed when no series of a family matched.
const KEPT_LABEL_SETS: usize = 5;
/// Look-alike family names suggested for a missing one.
const KEPT_SUGGESTIONS: usize = 3;
/// Problems kept per family (duplicates, bad values).
const KEPT_INVALID: usize = 5;

/// The selected series of one family and the facts about the selection.
struct Selection<'a> {
    facts: FamilyFacts,
    samples: Vec<&'a Sample>,
}

/// `name{a="x",b="y"}`, labels in input order, `skip` labels left out.
fn series_name(name: &str, labels: &[(String, String)], skip: &[&str]) -> String {
    let shown: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", shown.join(","))
}

/// A label set as an identity: sorted, so label order does not make two series.
fn identity(labels: &[(String, String)], skip: &[&str]) -> Vec<(String, String)> {
    let mut id: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .cloned()
        .collect();
    id.sort();
    id
}

/// Matching as in PromQL equality matchers: the label has the value, or the
/// value is empty and the label is missing.
fn matches(s: &Sample, matchers: &[(String, String)]) -> bool {
    matchers.iter().all(|(k, v)| match s.label(k) {
        Some(actual) => actual == v,
        None => v.is_empty(),
    })
}

/// Samples named `sample_name`, filtered per family: a `[metrics.match]`
/// label filters the family only when the family carries that label (a
/// latency histogram labelled by `stream` alone is still read). `skip` are
/// the structural labels (`le`) left out of identities and label sets.
fn select_samples<'a>(
    expo: &'a Exposition,
    name: &str,
    sample_name: &str,
    declared: bool,
    matchers: &[(String, String)],
    skip: &[&str],
) -> Selection<'a> {
    let mut facts = FamilyFacts {
        name: name.to_string(),
        ..Default::default()
    };
    let all: Vec<&Sample> = expo
        .samples
        .iter()
        .filter(|s| s.name == sample_name)
        .collect();
    if all.is_empty() {
        if declared {
            facts.presence = FamilyPresence::Declared;
        } else {
            facts.presence = FamilyPresence::Absent;
            facts.did_you_mean = did_you_mean(name, expo.family_names());
        }
        return Selection {
            facts,
            samples: Vec::new(),
        };
    }
    let carried: std::collections::BTreeSet<&str> = all
        .iter()
        .flat_map(|s| s.labels.iter().map(|(k, _)| k.as_str()))
        .collect();
    let (applied, unapplied): (Vec<_>, Vec<_>) = matchers
        .iter()
        .cloned()
        .partition(|(k, _)| carried.contains(k.as_str()));
    facts.filtered_by = applied.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    facts.not_filtered_by = unapplied.into_iter().map(|(k, _)| k).collect();
    let mut seen: std::collections::BTreeMap<Vec<(String, String)>, f64> = Default::default();
    let mut samples = Vec::new();
    for s in all.iter().copied().filter(|s| matches(s, &applied)) {
        match seen.entry(identity(&s.labels, &[])) {
            std::collections::btree_map::Entry::Occupied(first) => {
                if facts.invalid.len() < KEPT_INVALID {
                    facts.invalid.push(format!(
                        "duplicate series {} (values {} and {}; not summed)",
                        series_name(&s.name, &s.labels, &[]),
                        first.get(),
                        s.value
                    ));
                }
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(s.value);
                samples.push(s);
            }
        }
    }
    if samples.is_empty() {
        facts.presence = FamilyPresence::Unmatched;
        let mut sets: Vec<String> = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for s in &all {
            if ids.insert(identity(&s.labels, skip)) {
                sets.push(series_name("", &identity(&s.labels, skip), &[]));
            }
        }
        let more = sets.len().saturating_sub(KEPT_LABEL_SETS);
        sets.truncate(KEPT_LABEL_SETS);
        if more > 0 {
            sets.push(format!("and {more} more"));
        }
        facts.label_sets = sets;
    } else {
        facts.presence = FamilyPresence::Selected;
    }
    Selection { facts, samples }
}

/// The message counter's series, with NaN, infinite and negative values left
/// out and reported (a counter is never any of these; summing them would
/// turn every ratio into NaN).
fn select_counter<'a>(
    expo: &'a Exposition,
    name: &str,
    matchers: &[(String, String)],
) -> Selection<'a> {
    let declared = expo.declared_type(name).is_some();
    let mut sel = select_samples(expo, name, name, declared, matchers, &[]);
    let mut bad = Vec::new();
    sel.samples.retain(|s| {
        let ok = s.value.is_finite() && s.value >= 0.0;
        if !ok {
            bad.push(format!(
                "{} = {} (a counter is a finite count >= 0)",
                series_name(&s.name, &s.labels, &[]),
                s.value
            ));
        }
        ok
    });
    sel.facts.series = sel.samples.len();
    for b in bad {
        if sel.facts.invalid.len() < KEPT_INVALID {
            sel.facts.invalid.push(b);
        }
    }
    sel
}

/// The latency histogram's buckets summed over the selected series, as
/// `(upper bound, cumulative count)` ascending. A series whose buckets are
/// NaN, infinite, negative, decreasing or have an unreadable `le` is left
/// out and reported.
fn select_histogram(
    expo: &Exposition,
    name: &str,
    matchers: &[(String, String)],
) -> (FamilyFacts, Vec<(f64, f64)>) {
    let bucket_name = format!("{name}_bucket");
    let declared = expo.types.contains_key(name);
    let sel = select_samples(expo, name, &bucket_name, declared, matchers, &["le"]);
    let mut facts = sel.facts;
    let mut groups: std::collections::BTreeMap<Vec<(String, String)>, Vec<&Sample>> =
        Default::default();
    for s in sel.samples {
        groups
            .entry(identity(&s.labels, &["le"]))
            .or_default()
            .push(s);
    }
    let mut invalid = Vec::new();
    let mut summed: Vec<(f64, f64)> = Vec::new();
    let mut good_series = 0;
    for (id, samples) in groups {
        let series = series_name(&bucket_name, &id, &[]);
        let mut buckets = Vec::with_capacity(samples.len());
        let mut problem = None;
        for s in samples {
            let le = s.label("le").and_then(|v| v.trim().parse::<f64>().ok());
            match le {
                Some(le) if !le.is_nan() => {
                    if !(s.value.is_finite() && s.value >= 0.0) {
                        problem = Some(format!("{series} le=\"{le}\" = {}", s.value));
                    }
                    buckets.push((le, s.value));
                }
                _ => {
                    problem = Some(format!(
                        "{series} has a bucket with le={:?}",
                        s.label("le").unwrap_or("")
                    ))
                }
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if problem.is_none() {
            if let Some(w) = buckets.windows(2).find(|w| w[1].1 < w[0].1) {
                problem = Some(format!(
                    "{series} buckets decrease: le=\"{}\" {} > le=\"{}\" {} (cumulative counts never do)",
                    w[0].0, w[0].1, w[1].0, w[1].1
                ));
            }
        }
        if let Some(p) = problem {
            invalid.push(p);
            continue;
        }
        good_series += 1;
        for (le, count) in buckets {
            match summed.iter_mut().find(|(l, _)| *l == le) {
                Some(slot) => slot.1 += count,
                None => summed.push((le, count)),
            }
        }
    }
    summed.sort_by(|a, b| a.0.total_cmp(&b.0));
    facts.series = good_series;
    for p in invalid {
        if facts.invalid.len() < KEPT_INVALID {
            facts.invalid.push(p);
        }
    }
    (facts, summed)
}

/// Up to [`KEPT_SUGGESTIONS`] family names close to `wanted`: by edit
/// distance (a typo, `_total` or `_seconds` missing) or by a long shared
/// prefix (same subsystem, other metric).
fn did_you_mean<'a>(
    wanted: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let base = wanted.strip_suffix("_total").unwrap_or(wanted);
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .filter(|n| *n != wanted)
        .filter_map(|n| {
            let d = edit_distance(wanted, n).min(edit_distance(base, n));
            let prefix = wanted
                .bytes()
                .zip(n.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let close = d <= (wanted.len() / 3).max(2);
            let related = prefix >= 8 && prefix * 2 >= base.len().min(n.len());
            (close || related).then_some((d, n))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(KEPT_SUGGESTIONS)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// Levenshtein distance over bytes (metric names are ASCII in practice).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
