//! The service's Prometheus `/metrics`: scrape, parse, keep only the facts the criteria need.

use std::time::Duration;

use crate::config::Config;
use crate::probe_error::{OverCapBody, RedirectRefusal};
use crate::promtext::{self, Exposition, Sample};
use crate::sample::{
    FamilyFacts, FamilyPresence, MetricsState, ProbeError, ProbeFailure, ProbeKind, Probed,
};

/// A body at least this large is parsed on a blocking thread, so a big
/// exposition cannot stall the runtime (and the probe timeout stays in force).
const BLOCKING_PARSE_BYTES: usize = 1024 * 1024;
/// How many bad lines are kept verbatim as evidence.
const KEPT_ERRORS: usize = 5;

/// Builds the HTTP client once: [`crate::http_client::probe_client`] (no
/// Referer; redirects followed within the URL's origin only).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    crate::http_client::probe_client(timeout)
}

fn fail(error: ProbeError) -> ProbeFailure {
    ProbeFailure::new(ProbeKind::Metrics, error)
}

/// `GET <url>` failed with the HTTP client's words.
fn get_failed(shown: &str, detail: impl std::fmt::Display) -> ProbeFailure {
    fail(ProbeError::failed(format!("GET {shown}"), detail))
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
        .map_err(|e| {
            let detail = describe_reqwest(&e);
            if e.is_connect() {
                fail(ProbeError::Connect {
                    what: format!("GET {shown}"),
                    detail,
                })
            } else {
                get_failed(shown, detail)
            }
        })?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(fail(redirect_error(&resp, shown)));
    }
    if !status.is_success() {
        return Err(fail(ProbeError::HttpStatus {
            url: shown.to_string(),
            status: status.to_string(),
        }));
    }
    let answer = Answer::of(&resp);
    let body = read_capped(resp, cfg.metrics.max_body_bytes, shown).await?;
    if body.len() >= BLOCKING_PARSE_BYTES {
        // The exposition borrows the body, so both steps run on that thread.
        let (cfg, shown_owned) = (cfg.clone(), shown.to_string());
        tokio::task::spawn_blocking(move || parse_and_extract(&body, &cfg, &shown_owned, &answer))
            .await
            .map_err(|e| get_failed(shown, format_args!("parse task failed: {e}")))?
    } else {
        parse_and_extract(&body, cfg, shown, &answer)
    }
}

/// What a successful answer said about itself, for the reason of a body
/// that is not an exposition.
struct Answer {
    status: reqwest::StatusCode,
    content_type: String,
}

impl Answer {
    fn of(resp: &reqwest::Response) -> Answer {
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| crate::untrusted::escape_untrusted(v.trim()))
            .unwrap_or_default();
        Answer {
            status: resp.status(),
            content_type,
        }
    }
}

/// Why a 3xx the client did not follow fails the probe: it led to another
/// origin (or past [`crate::http_client::MAX_HOPS`]); the Location is shown
/// without credentials.
fn redirect_error(resp: &reqwest::Response, shown: &str) -> ProbeError {
    let (url, status) = (shown.to_string(), resp.status().to_string());
    let Some(location) = crate::http_client::location_shown(resp.url(), resp.headers(), false)
    else {
        return ProbeError::RedirectWithoutLocation { url, status };
    };
    let location = crate::secret::scrub(&location);
    let other_origin = url::Url::parse(&location)
        .map(|to| !crate::http_client::same_origin(resp.url(), &to))
        .unwrap_or(true);
    let why = if other_origin {
        RedirectRefusal::OtherOrigin
    } else {
        RedirectRefusal::TooMany
    };
    ProbeError::RedirectRefused {
        url,
        status,
        to: location,
        why,
    }
}

/// Parses a scraped body and extracts its facts; the parsed exposition
/// borrows the body, so this is the one step a blocking thread is given.
fn parse_and_extract(
    body: &[u8],
    cfg: &Config,
    shown: &str,
    answer: &Answer,
) -> Probed<MetricsState> {
    let len = body.len();
    let text = String::from_utf8_lossy(body);
    let expo = promtext::parse(&text);
    // Only `# TYPE` lines is still an exposition: a registry of labelled
    // families before their first event (prometheus_client without collectors).
    if expo.samples.is_empty() && expo.types.is_empty() {
        return Err(fail(not_exposition(shown, answer, len, &expo)));
    }
    Ok(extract(&expo, cfg, len as u64))
}

/// A successful answer that is not an exposition: what it was (status,
/// content type, size, first bad line).
fn not_exposition(shown: &str, answer: &Answer, len: usize, expo: &Exposition<'_>) -> ProbeError {
    let kind = if answer.content_type.is_empty() {
        "no content type".to_string()
    } else {
        answer.content_type.clone()
    };
    let what = if len == 0 {
        "an empty body".to_string()
    } else {
        let first = expo
            .errors
            .first()
            .map(|e| format!("; line {}: {}", e.line, e.message))
            .unwrap_or_default();
        format!("{len} bytes, {} bad lines{first}", expo.errors.len())
    };
    ProbeError::NotExposition {
        url: shown.to_string(),
        status: answer.status.to_string(),
        detail: format!("{kind}, {what}"),
    }
}

/// Reads the body chunk by chunk and stops as soon as it exceeds `cap`,
/// whatever the framing (Content-Length, chunked, or until close): the
/// declared length is only a shortcut, never trusted alone.
async fn read_capped(
    mut resp: reqwest::Response,
    cap: u64,
    shown: &str,
) -> Result<Vec<u8>, ProbeFailure> {
    let too_big = |body| {
        fail(ProbeError::OverCap {
            url: shown.to_string(),
            body,
            cap,
        })
    };
    if let Some(n) = resp.content_length().filter(|n| *n > cap) {
        return Err(too_big(OverCapBody::ContentLength(n)));
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(cap) as usize);
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            get_failed(
                shown,
                format_args!("body cut off: {}", describe_reqwest(&e)),
            )
        })?;
        let Some(chunk) = chunk else { break };
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_big(OverCapBody::ReadMoreThan(
                (body.len() + chunk.len()) as u64,
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
pub fn extract(expo: &Exposition<'_>, cfg: &Config, body_bytes: u64) -> MetricsState {
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
    samples: Vec<&'a Sample<'a>>,
}

/// `name{a="x",b="y"}`, labels in input order, `skip` labels left out.
fn series_name<K: AsRef<str>, V: AsRef<str>>(
    name: &str,
    labels: &[(K, V)],
    skip: &[&str],
) -> String {
    let shown: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_ref()))
        .map(|(k, v)| format!("{}={:?}", k.as_ref(), v.as_ref()))
        .collect();
    format!("{name}{{{}}}", shown.join(","))
}

/// A label set as an identity: sorted, so label order does not make two series.
fn identity(labels: &[promtext::Label<'_>], skip: &[&str]) -> Vec<(String, String)> {
    let mut id: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_ref()))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    id.sort();
    id
}

/// Matching as in PromQL equality matchers: the label has the value, or the
/// value is empty and the label is missing.
fn matches(s: &Sample<'_>, matchers: &[(String, String)]) -> bool {
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
    expo: &'a Exposition<'a>,
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
    let all: Vec<&Sample<'_>> = expo
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
        .flat_map(|s| s.labels.iter().map(|(k, _)| k.as_ref()))
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
    expo: &'a Exposition<'a>,
    name: &str,
    matchers: &[(String, String)],
) -> Selection<'a> {
    // Either spelling, family or `_total` sample name, finds the same samples.
    let spelled = expo.counter_sample_name(name);
    let mut sel = select_samples(
        expo,
        name,
        &spelled.sample_name,
        spelled.declared,
        matchers,
        &[],
    );
    if spelled.sample_name != name {
        sel.facts.read_as = Some(spelled.sample_name);
    }
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
    expo: &Exposition<'_>,
    name: &str,
    matchers: &[(String, String)],
) -> (FamilyFacts, Vec<(f64, f64)>) {
    let bucket_name = format!("{name}_bucket");
    let declared = expo.types.contains_key(name);
    let sel = select_samples(expo, name, &bucket_name, declared, matchers, &["le"]);
    let mut facts = sel.facts;
    let mut groups: std::collections::BTreeMap<Vec<(String, String)>, Vec<&Sample<'_>>> =
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
fn did_you_mean<'a>(wanted: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
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
            // Same subsystem: at least two whole `_`-separated words in common.
            let words = wanted.as_bytes()[..prefix]
                .iter()
                .filter(|b| **b == b'_')
                .count();
            let related = prefix >= 8 && words >= 2;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_is_not_an_exposition_says_what_it_was() {
        let answer = Answer {
            status: reqwest::StatusCode::OK,
            content_type: "text/html; charset=utf-8".into(),
        };
        let page = "<html><body><form>Sign in</form></body></html>\n";
        let expo = promtext::parse(page);
        let r = not_exposition("http://x/metrics", &answer, page.len(), &expo).to_string();
        assert!(r.contains(crate::probe_error::NOT_EXPOSITION_MARK), "{r}");
        assert!(r.contains("HTTP 200 OK") && r.contains("text/html"), "{r}");
        let empty = promtext::parse("");
        let plain = Answer {
            status: reqwest::StatusCode::OK,
            content_type: String::new(),
        };
        let r = not_exposition("http://x/metrics", &plain, 0, &empty).to_string();
        assert!(
            r.contains("an empty body") && r.contains("no content type"),
            "{r}"
        );
    }

    /// Fixtures made by the real client libraries (see tests/fixtures/promtext/README.md).
    fn fixture(name: &str) -> Exposition<'static> {
        let path = format!(
            "{}/tests/fixtures/promtext/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let expo = promtext::parse(&text);
        assert!(expo.errors.is_empty(), "{name}: {:?}", expo.errors);
        expo.into_owned()
    }

    fn cfg() -> Config {
        let text = include_str!("../../checks.toml");
        Config::from_text(std::path::Path::new("checks.toml"), text, &|_: &str| None)
            .expect("shipped config")
    }

    fn extract_fixture(name: &str, c: &Config) -> MetricsState {
        extract(&fixture(name), c, 1)
    }

    #[test]
    fn fresh_prom_client_and_prometheus_client_declare_empty_families() {
        let c = cfg();
        for name in [
            "nodejs_service_fresh.prom",
            "nodejs_service_fresh.openmetrics",
            "python_service_fresh.prom",
            "python_service_fresh.openmetrics",
        ] {
            let ms = extract_fixture(name, &c);
            let counter = ms.counter.as_ref().expect("counter facts");
            assert_eq!(counter.presence, FamilyPresence::Declared, "{name}");
            assert!(counter.unusable().is_none(), "{name}: {counter:?}");
            assert!(ms.counter_found, "{name}");
            assert!(ms.by_result.is_empty(), "{name}");
            let latency = ms.latency.as_ref().expect("latency facts");
            assert_eq!(latency.presence, FamilyPresence::Declared, "{name}");
            assert_eq!(ms.histogram, None, "{name}");
        }
    }

    #[test]
    fn fresh_client_golang_omits_empty_vectors_so_the_family_is_absent() {
        let c = cfg();
        let ms = extract_fixture("go_service_fresh.prom", &c);
        let counter = ms.counter.as_ref().expect("counter facts");
        assert_eq!(counter.presence, FamilyPresence::Absent);
        assert!(!ms.counter_found);
        assert_eq!(
            counter.unusable().as_deref(),
            Some("normalize_hrv_messages_total not found in /metrics")
        );
        assert_eq!(
            ms.latency.as_ref().map(|f| f.presence),
            Some(FamilyPresence::Absent)
        );
        assert_eq!(ms.process_start, Some(1_764_662_400.0));
    }

    #[test]
    fn traffic_from_every_library_is_read_with_a_histogram_labelled_by_stream_only() {
        let c = cfg();
        for name in [
            "nodejs_service_traffic.prom",
            "nodejs_service_traffic.openmetrics",
            "python_service_traffic.prom",
            "python_service_traffic.openmetrics",
            "go_service_traffic.prom",
            "go_service_traffic.openmetrics",
        ] {
            let ms = extract_fixture(name, &c);
            assert_eq!(ms.by_result.get("success"), Some(&40.0), "{name}");
            assert_eq!(ms.by_result.get("dlq"), Some(&1.0), "{name}");
            assert_eq!(ms.by_stream.keys().collect::<Vec<_>>(), ["AA_CORE_HOT"]);
            let counter = ms.counter.as_ref().expect("counter facts");
            assert_eq!(counter.presence, FamilyPresence::Selected, "{name}");
            assert_eq!(counter.filtered_by, ["durable=\"normalize-hrv-durable\""]);
            assert!(counter.not_filtered_by.is_empty());
            let latency = ms.latency.as_ref().expect("latency facts");
            assert_eq!(latency.presence, FamilyPresence::Selected, "{name}");
            assert!(latency.filtered_by.is_empty(), "{name}");
            assert_eq!(latency.not_filtered_by, ["durable"], "{name}");
            assert!(latency.invalid.is_empty(), "{name}: {:?}", latency.invalid);
            let buckets = ms.histogram.as_ref().expect("buckets");
            // prom-client and client_golang: 11 bounds + Inf; prometheus_client: 14 + Inf.
            let want = if name.starts_with("python") { 15 } else { 12 };
            assert_eq!(buckets.len(), want, "{name}");
            assert_eq!(buckets[0], (0.005, 38.0), "{name}");
            assert_eq!(buckets.last(), Some(&(f64::INFINITY, 41.0)), "{name}");
            assert!(latency
                .filter_note()
                .contains("not by durable (the family has no such label)"));
        }
        // prom-client's series of another durable is left out by [metrics.match].
        let node = extract_fixture("nodejs_service_traffic.prom", &c);
        assert_eq!(node.by_result.get("retry"), Some(&2.0));
        assert_eq!(node.counter.as_ref().map(|f| f.series), Some(3));
    }

    #[test]
    fn a_counter_configured_by_its_family_name_reads_its_total_samples() {
        let mut c = cfg();
        c.metrics.messages_counter = "normalize_hrv_messages".into();
        for name in [
            "python_service_traffic.prom",
            "python_service_traffic.openmetrics",
            "go_service_traffic.openmetrics",
            "nodejs_service_traffic.openmetrics",
        ] {
            let ms = extract_fixture(name, &c);
            assert_eq!(ms.by_result.get("success"), Some(&40.0), "{name}");
            let counter = ms.counter.as_ref().expect("counter facts");
            assert_eq!(counter.presence, FamilyPresence::Selected, "{name}");
            assert_eq!(
                counter.read_as.as_deref(),
                Some("normalize_hrv_messages_total")
            );
            assert!(counter
                .filter_note()
                .contains("read as normalize_hrv_messages_total"));
        }
        // Declared, no sample, under the family spelling: zero events, not absent.
        let ms = extract_fixture("python_service_fresh.prom", &c);
        let counter = ms.counter.as_ref().expect("counter facts");
        assert_eq!(counter.presence, FamilyPresence::Declared);
    }

    #[test]
    fn nan_negative_duplicate_and_decreasing_values_are_reported_not_summed() {
        let c = cfg();
        for name in [
            "python_service_broken.prom",
            "python_service_broken.openmetrics",
        ] {
            let ms = extract_fixture(name, &c);
            let counter = ms.counter.as_ref().expect("counter facts");
            let invalid = counter.invalid.join("\n");
            assert!(
                invalid.contains("result=\"success\"") && invalid.contains("= NaN"),
                "{invalid}"
            );
            assert!(
                invalid.contains("result=\"dlq\"") && invalid.contains("= -1"),
                "{invalid}"
            );
            assert!(
                invalid.contains("duplicate series") && invalid.contains("values 3 and 4"),
                "{invalid}"
            );
            // Only the first copy of the one valid series is counted.
            assert_eq!(ms.by_result.len(), 1, "{:?}", ms.by_result);
            assert_eq!(ms.by_result.get("retry"), Some(&3.0));
            assert!(counter
                .unusable()
                .is_some_and(|r| r.contains("cannot be trusted")));
            let latency = ms.latency.as_ref().expect("latency facts");
            assert!(
                latency
                    .invalid
                    .iter()
                    .any(|p| p.contains("buckets decrease")),
                "{:?}",
                latency.invalid
            );
            assert_eq!(ms.histogram.as_deref(), Some(&[][..]));
        }
    }

    #[test]
    fn unmatched_labels_list_the_label_sets_that_exist() {
        let mut c = cfg();
        c.metrics.matchers = vec![("durable".into(), "nope".into())];
        let ms = extract_fixture("nodejs_service_traffic.prom", &c);
        let counter = ms.counter.as_ref().expect("counter facts");
        assert_eq!(counter.presence, FamilyPresence::Unmatched);
        assert!(!ms.counter_found);
        let reason = counter.unusable().unwrap_or_default();
        assert!(reason.contains("has durable=\"nope\""), "{reason}");
        assert!(reason.contains("durable=\"other-durable\""), "{reason}");
        assert!(
            reason.contains("durable=\"normalize-hrv-durable\""),
            "{reason}"
        );
        assert_eq!(counter.label_sets.len(), 4, "{:?}", counter.label_sets);
        // The histogram has no durable label: the matcher does not apply to it.
        assert_eq!(
            ms.latency.as_ref().map(|f| f.presence),
            Some(FamilyPresence::Selected)
        );
    }

    #[test]
    fn label_sets_are_bounded() {
        let mut text = String::from("# TYPE m_total counter\n");
        for i in 0..20 {
            text.push_str(&format!("m_total{{durable=\"d{i}\"}} 1\n"));
        }
        let mut c = cfg();
        c.metrics.messages_counter = "m_total".into();
        let ms = extract(&promtext::parse(&text), &c, 1);
        let sets = &ms.counter.as_ref().expect("facts").label_sets;
        assert_eq!(sets.len(), KEPT_LABEL_SETS + 1);
        assert_eq!(sets.last().map(String::as_str), Some("and 15 more"));
    }

    #[test]
    fn an_absent_family_suggests_the_families_that_exist() {
        let mut c = cfg();
        c.metrics.messages_counter = "normalize_hrv_message_total".into();
        c.metrics.latency_histogram = Some("normalize_hrv_duration_seconds".into());
        let ms = extract_fixture("nodejs_service_fresh.prom", &c);
        let counter = ms.counter.as_ref().expect("facts");
        assert_eq!(counter.presence, FamilyPresence::Absent);
        assert_eq!(counter.did_you_mean[0], "normalize_hrv_messages_total");
        assert!(counter
            .unusable()
            .is_some_and(|r| r.contains("did you mean normalize_hrv_messages_total")));
        let latency = ms.latency.as_ref().expect("facts");
        assert!(
            latency
                .did_you_mean
                .contains(&"normalize_hrv_processing_duration_seconds".to_string()),
            "{:?}",
            latency.did_you_mean
        );
        // Nothing alike: no suggestion rather than a random one.
        assert!(did_you_mean("zzz_total", ["process_start_time_seconds"]).is_empty());
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
