//! Pure heuristics of `soakwatch discover`: from what is live to the roles
//! and names a checks.toml needs, saying where it guessed and what conflicts.
//!
//! Nothing here does I/O, so every rule is unit-tested on plain data.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::discover::{ConsumerFacts, EnvFacts, FamilyFacts, Observed, StreamFacts, TableFacts};
use crate::promtext::MetricType;

/// What the user said, for what cannot be seen or should not be guessed.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// `--legacy NAME`: the stream traffic was moved away from.
    pub legacy: Option<String>,
    /// `--durable NAME`: the service's durable consumer.
    pub durable: Option<String>,
    /// `--match LABEL=VALUE`: labels every selected series must carry.
    pub matchers: Vec<(String, String)>,
}

/// Kind of a remark in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// A choice made by a heuristic: review it.
    Guess,
    /// Something live that contradicts itself or the config (e.g. a missing index).
    Conflict,
    /// Plain information (what else was seen).
    Info,
}

/// A remark attached to one section of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Section it belongs to: `streams`, `consumer`, `metrics`, `database`, `service_env`, `log`.
    pub section: &'static str,
    /// Guess, conflict or info.
    pub kind: NoteKind,
    /// One line.
    pub text: String,
}

/// The messages counter and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterChoice {
    /// Sample name to select (`..._total`).
    pub sample_name: String,
    /// Label carrying the outcome.
    pub result_label: String,
    /// Outcome of a good message.
    pub success_result: String,
    /// Outcome of a dead-lettered message.
    pub dlq_result: String,
    /// Outcomes that are neither.
    pub uncounted: Vec<String>,
    /// Label carrying the stream ("" when none was seen).
    pub stream_label: String,
}

/// The env file's ack-wait key and the values to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvChoice {
    /// Key holding the service's ack wait.
    pub ack_wait_key: Option<String>,
    /// `ms` or `s`.
    pub ack_wait_unit: String,
    /// Keys that must keep their current values (`*_MODE`).
    pub expect: BTreeMap<String, String>,
}

/// Every choice a checks.toml needs, plus the remarks.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The legacy stream, if one could be told.
    pub legacy: Option<StreamFacts>,
    /// The hot streams.
    pub hot: Vec<StreamFacts>,
    /// The DLQ stream, if one could be told.
    pub dlq: Option<StreamFacts>,
    /// The service's durable consumer and its stream.
    pub consumer: Option<(String, ConsumerFacts)>,
    /// Other consumers seen (stream, consumer), for the comments.
    pub other_consumers: Vec<(String, ConsumerFacts)>,
    /// The messages counter.
    pub counter: Option<CounterChoice>,
    /// The latency histogram (family name).
    pub histogram: Option<String>,
    /// The process start gauge.
    pub process_start: Option<String>,
    /// Labels every selected series must carry.
    pub matchers: Vec<(String, String)>,
    /// Column set when a row is created.
    pub created_column: Option<String>,
    /// Column set when a row is updated.
    pub updated_column: Option<String>,
    /// (derived column, source column) of an `ln` pair.
    pub derived: Option<(String, String)>,
    /// The env file's choices, when one was read.
    pub env: Option<EnvChoice>,
    /// Remarks, in the order they were made.
    pub notes: Vec<Note>,
}

impl Plan {
    fn note(&mut self, section: &'static str, kind: NoteKind, text: impl Into<String>) {
        self.notes.push(Note {
            section,
            kind,
            text: text.into(),
        });
    }

    /// The remarks of one section.
    pub fn notes_of(&self, section: &str) -> impl Iterator<Item = &Note> {
        let section = section.to_string();
        self.notes.iter().filter(move |n| n.section == section)
    }

    /// Every conflict, for the summary at the top and on stderr.
    pub fn conflicts(&self) -> Vec<&Note> {
        self.notes
            .iter()
            .filter(|n| n.kind == NoteKind::Conflict)
            .collect()
    }
}

/// Subject tokens (`a.b.>` -> a, b, >).
fn tokens(subject: &str) -> impl Iterator<Item = String> + '_ {
    subject.split('.').map(|t| t.to_ascii_lowercase())
}

fn looks_legacy(s: &StreamFacts) -> bool {
    s.subjects
        .iter()
        .any(|subj| tokens(subj).any(|t| t == "legacy"))
}

fn looks_dlq(s: &StreamFacts) -> bool {
    let name = s.name.to_ascii_lowercase();
    name.contains("dlq")
        || name.contains("dead_letter")
        || name.contains("deadletter")
        || s.subjects
            .iter()
            .any(|subj| tokens(subj).any(|t| t == "dlq" || t.contains("dead")))
}

/// Makes every choice. `observed` is what the look-ups returned; failed
/// look-ups leave their choices empty (the renderer writes placeholders).
pub fn plan(observed: &Observed, hints: &Hints) -> Plan {
    let mut plan = Plan::default();
    if let Ok(nats) = &observed.nats {
        choose_streams(&mut plan, &nats.streams, hints);
    }
    if let Ok(m) = &observed.metrics {
        choose_metrics(&mut plan, &m.families);
    }
    let counter_family = match (&observed.metrics, &plan.counter) {
        (Ok(m), Some(c)) => m.family(&c.sample_name).cloned(),
        _ => None,
    };
    choose_consumer(&mut plan, hints, counter_family.as_ref());
    if let Ok(m) = &observed.metrics {
        choose_matchers(&mut plan, &m.families, hints);
    }
    if let Some(Ok(t)) = &observed.table {
        choose_columns(&mut plan, t);
    }
    if let Some(Ok(env)) = &observed.env {
        choose_env(&mut plan, env);
    }
    plan
}

fn choose_streams(plan: &mut Plan, streams: &[StreamFacts], hints: &Hints) {
    let (usable, no_subjects): (Vec<&StreamFacts>, Vec<&StreamFacts>) =
        streams.iter().partition(|s| !s.subjects.is_empty());
    for s in no_subjects {
        plan.note(
            "streams",
            NoteKind::Info,
            format!(
                "stream {} has no subjects (a mirror or source?): left out",
                s.name
            ),
        );
    }
    let legacy = choose_legacy(plan, &usable, hints);
    let dlq = choose_dlq(plan, &usable, legacy);
    if legacy.is_none() {
        plan.note(
            "streams",
            NoteKind::Conflict,
            "no legacy stream could be told: the [streams.legacy] below is a placeholder (--legacy NAME)",
        );
    }
    let role_names: Vec<&str> = legacy
        .iter()
        .chain(dlq.iter())
        .map(|s| s.name.as_str())
        .collect();
    plan.hot = usable
        .iter()
        .filter(|s| !role_names.contains(&s.name.as_str()))
        .map(|s| (*s).clone())
        .collect();
    if plan.hot.is_empty() {
        plan.note(
            "streams",
            NoteKind::Conflict,
            "no hot stream seen: the [[streams.hot]] below is a placeholder",
        );
    } else if plan.hot.len() > 4 {
        plan.note(
            "streams",
            NoteKind::Guess,
            format!(
                "{} hot streams: every stream that is not the legacy or the DLQ is taken as hot (--streams REGEX to narrow)",
                plan.hot.len()
            ),
        );
    }
    plan.legacy = legacy.cloned();
    plan.dlq = dlq.cloned();
    if let Some(l) = &plan.legacy {
        if !l.consumers.is_empty() {
            let names: Vec<&str> = l.consumers.iter().map(|c| c.name.as_str()).collect();
            plan.note(
                "streams",
                NoteKind::Conflict,
                format!(
                    "the legacy stream {} still has consumer(s): {}",
                    l.name,
                    names.join(", ")
                ),
            );
        }
    }
}

/// The legacy stream: named by the user (`--legacy`), else guessed.
fn choose_legacy<'s>(
    plan: &mut Plan,
    usable: &[&'s StreamFacts],
    hints: &Hints,
) -> Option<&'s StreamFacts> {
    let Some(name) = &hints.legacy else {
        return guess_legacy(plan, usable);
    };
    let found = usable.iter().find(|s| &s.name == name).copied();
    if found.is_none() {
        plan.note(
            "streams",
            NoteKind::Conflict,
            format!("--legacy {name}: no such stream (with subjects) was seen"),
        );
    }
    found
}

/// A legacy stream by its subjects (under legacy.>), else the idle one: no
/// consumer, not a DLQ, oldest last message.
fn guess_legacy<'s>(plan: &mut Plan, usable: &[&'s StreamFacts]) -> Option<&'s StreamFacts> {
    let by_subject: Vec<&StreamFacts> =
        usable.iter().filter(|s| looks_legacy(s)).copied().collect();
    if let Some(first) = by_subject.first() {
        plan.note(
            "streams",
            NoteKind::Guess,
            format!(
                "legacy stream {}: its subjects {} look like legacy.>{} (--legacy NAME to choose)",
                first.name,
                first.subjects.join(", "),
                if by_subject.len() > 1 {
                    format!("; so do {}", joined_names(&by_subject[1..]))
                } else {
                    String::new()
                }
            ),
        );
        return Some(*first);
    }
    let idle = usable
        .iter()
        .filter(|s| s.consumers.is_empty() && !looks_dlq(s))
        .min_by_key(|s| s.last_ts);
    if let Some(s) = idle {
        plan.note(
            "streams",
            NoteKind::Guess,
            format!(
                "legacy stream {}: the idle one (no consumer, last message {}); --legacy NAME to choose",
                s.name,
                s.last_ts
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "never".into())
            ),
        );
    }
    idle.copied()
}

/// The DLQ stream: the first other than `legacy` whose name or subjects say dlq.
fn choose_dlq<'s>(
    plan: &mut Plan,
    usable: &[&'s StreamFacts],
    legacy: Option<&StreamFacts>,
) -> Option<&'s StreamFacts> {
    let dlqs: Vec<&StreamFacts> = usable
        .iter()
        .filter(|s| Some(s.name.as_str()) != legacy.map(|l| l.name.as_str()))
        .filter(|s| looks_dlq(s))
        .copied()
        .collect();
    let dlq = dlqs.first().copied();
    match dlq {
        Some(d) => plan.note(
            "streams",
            NoteKind::Guess,
            format!(
                "DLQ stream {}: its name or subjects say dlq{}",
                d.name,
                if dlqs.len() > 1 {
                    format!(
                        "; so do {} (hot below; --streams REGEX to narrow)",
                        joined_names(&dlqs[1..])
                    )
                } else {
                    String::new()
                }
            ),
        ),
        None => plan.note(
            "streams",
            NoteKind::Conflict,
            "no DLQ stream seen (a name or subject with dlq): the [streams.dlq] below is a placeholder",
        ),
    }
    dlq
}

/// "A, B, C" for notes.
fn joined_names(streams: &[&StreamFacts]) -> String {
    streams
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

const RESULT_LABELS: [&str; 3] = ["result", "status", "outcome"];

fn result_label_of(f: &FamilyFacts) -> Option<&str> {
    RESULT_LABELS
        .iter()
        .copied()
        .find(|l| f.labels.contains_key(*l))
}

/// The label whose values are stream names, or one called `stream`.
fn stream_label_of(f: &FamilyFacts, stream_names: &[String]) -> Option<(String, bool)> {
    for (label, values) in &f.labels {
        if values.iter().any(|v| stream_names.contains(v)) {
            return Some((label.clone(), true));
        }
    }
    f.labels
        .contains_key("stream")
        .then(|| ("stream".to_string(), false))
}

fn choose_metrics(plan: &mut Plan, families: &[FamilyFacts]) {
    let stream_names: Vec<String> = plan
        .hot
        .iter()
        .chain(plan.legacy.iter())
        .chain(plan.dlq.iter())
        .map(|s| s.name.clone())
        .collect();
    choose_counter(plan, families, &stream_names);
    choose_histogram(plan, families);
    plan.process_start = families
        .iter()
        .find(|f| f.name == "process_start_time_seconds")
        .map(|f| f.name.clone());
}

/// The messages counter: the best-scored counter with a result-like label,
/// else one declared without series yet (labels assumed), else a conflict.
fn choose_counter(plan: &mut Plan, families: &[FamilyFacts], stream_names: &[String]) {
    let scored = score_counters(families, stream_names);
    let declared_only: Vec<&str> = families
        .iter()
        .filter(|f| f.kind == MetricType::Counter && f.samples == 0)
        .map(|f| f.name.as_str())
        .collect();
    let declared_pick = declared_only
        .iter()
        .find(|n| n.contains("message"))
        .or(declared_only.first());
    match scored.first() {
        None if declared_pick.is_some() => {
            let name = declared_pick.map(|n| n.to_string()).unwrap_or_default();
            plan.note(
                "metrics",
                NoteKind::Guess,
                format!(
                    "messages_counter {name}: declared but without series yet (no message processed?), so its labels are unknown: result/stream labels and values assumed"
                ),
            );
            plan.counter = Some(CounterChoice {
                sample_name: name,
                result_label: "result".into(),
                success_result: "success".into(),
                dlq_result: "dlq".into(),
                uncounted: Vec::new(),
                stream_label: "stream".into(),
            });
        }
        None => {
            plan.note(
                "metrics",
                NoteKind::Conflict,
                format!(
                    "no counter with a result/status/outcome label seen: messages_counter below is a placeholder{}",
                    if declared_only.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (declared without samples yet, labels unknown: {})",
                            declared_only.join(", ")
                        )
                    }
                ),
            );
        }
        Some((score, f)) => {
            let others: Vec<&str> = scored[1..].iter().map(|(_, f)| f.name.as_str()).collect();
            plan.counter = Some(counter_from(plan, f, *score, &others, stream_names));
        }
    }
}

/// Counters with a result-like label, best first: a label holding stream names
/// scores 3, one called `stream` 2, "message" in the name 1 more.
fn score_counters<'f>(
    families: &'f [FamilyFacts],
    stream_names: &[String],
) -> Vec<(i32, &'f FamilyFacts)> {
    let mut scored: Vec<(i32, &FamilyFacts)> = families
        .iter()
        .filter(|f| f.kind == MetricType::Counter && result_label_of(f).is_some())
        .map(|f| {
            let mut score = 0;
            match stream_label_of(f, stream_names) {
                Some((_, true)) => score += 3,
                Some((_, false)) => score += 2,
                None => {}
            }
            if f.name.contains("message") {
                score += 1;
            }
            (score, f)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.name.cmp(&b.1.name)));
    scored
}

/// The counter's settings from family `f`: result values for success, DLQ and
/// uncounted retries, its stream label, with a note on each guess.
fn counter_from(
    plan: &mut Plan,
    f: &FamilyFacts,
    score: i32,
    others: &[&str],
    stream_names: &[String],
) -> CounterChoice {
    let result_label = result_label_of(f).unwrap_or("result").to_string();
    let values = f.labels.get(&result_label).cloned().unwrap_or_default();
    let pick = |pred: &dyn Fn(&str) -> bool| values.iter().find(|v| pred(v)).cloned();
    let success = pick(&|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "success" | "ok" | "processed" | "succeeded" | "acked" | "done"
        )
    });
    let dlq = pick(&|v| {
        let v = v.to_ascii_lowercase();
        v.contains("dlq") || v.contains("dead")
    });
    let uncounted: Vec<String> = values
        .iter()
        .filter(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("retry") || v.contains("redeliver") || v == "nak"
        })
        .cloned()
        .collect();
    let stream = stream_label_of(f, stream_names);
    let sample_name = f
        .sample_names
        .iter()
        .find(|n| n.ends_with("_total"))
        .or_else(|| f.sample_names.iter().find(|n| !n.ends_with("_created")))
        .cloned()
        .unwrap_or_else(|| f.name.clone());
    let mut why = format!("messages_counter {sample_name}: a counter with a {result_label} label");
    match &stream {
        Some((l, true)) => why.push_str(&format!(" and a {l} label holding stream names")),
        Some((l, false)) => why.push_str(&format!(" and a {l} label")),
        None => {}
    }
    if !others.is_empty() {
        why.push_str(&format!("; other candidates: {}", others.join(", ")));
    }
    plan.note("metrics", NoteKind::Guess, why);
    if score < 2 {
        plan.note(
            "metrics",
            NoteKind::Conflict,
            format!("counter {sample_name} has no stream label: stream_purity cannot tell streams apart"),
        );
    }
    if success.is_none() {
        plan.note(
            "metrics",
            NoteKind::Guess,
            format!(
                "no success-like value among {result_label}={{{}}}: success_result \"success\" assumed",
                values.iter().cloned().collect::<Vec<_>>().join(",")
            ),
        );
    }
    if dlq.is_none() {
        plan.note(
            "metrics",
            NoteKind::Guess,
            format!("no dlq-like value among {result_label} values: dlq_result \"dlq\" assumed"),
        );
    }
    CounterChoice {
        sample_name,
        result_label,
        success_result: success.unwrap_or_else(|| "success".into()),
        dlq_result: dlq.unwrap_or_else(|| "dlq".into()),
        uncounted,
        stream_label: stream.map(|(l, _)| l).unwrap_or_default(),
    }
}

/// The latency histogram: one with duration or latency in its name, preferring
/// the counter's prefix and "process".
fn choose_histogram(plan: &mut Plan, families: &[FamilyFacts]) {
    let hists: Vec<&FamilyFacts> = families
        .iter()
        .filter(|f| {
            f.kind == MetricType::Histogram
                && (f.name.contains("duration") || f.name.contains("latency"))
        })
        .collect();
    let prefix = plan
        .counter
        .as_ref()
        .and_then(|c| c.sample_name.split('_').next().map(str::to_string))
        .unwrap_or_default();
    let best = hists
        .iter()
        .max_by_key(|f| {
            (
                !prefix.is_empty() && f.name.starts_with(&prefix),
                f.name.contains("process"),
                std::cmp::Reverse(f.name.clone()),
            )
        })
        .copied();
    match best {
        Some(h) => {
            let others: Vec<&str> = hists
                .iter()
                .filter(|f| f.name != h.name)
                .map(|f| f.name.as_str())
                .collect();
            plan.note(
                "metrics",
                NoteKind::Guess,
                format!(
                    "latency_histogram {}: a histogram with duration/latency in its name{}",
                    h.name,
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!("; others: {}", others.join(", "))
                    }
                ),
            );
            plan.histogram = Some(h.name.clone());
        }
        None => plan.note(
            "metrics",
            NoteKind::Info,
            "no histogram with duration/latency in its name: p95_latency will be not configured",
        ),
    }
}

fn choose_consumer(plan: &mut Plan, hints: &Hints, counter: Option<&FamilyFacts>) {
    // Durable names the service's counter labels its series with.
    let named_by_metrics: Vec<String> = counter
        .iter()
        .flat_map(|f| {
            ["durable", "consumer"]
                .iter()
                .filter_map(|l| f.labels.get(*l))
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    let mut candidates: Vec<(String, ConsumerFacts)> = Vec::new();
    for s in &plan.hot {
        for c in &s.consumers {
            candidates.push((s.name.clone(), c.clone()));
        }
    }
    let chosen = match &hints.durable {
        Some(d) => {
            let found = candidates.iter().position(|(_, c)| &c.name == d);
            if found.is_none() {
                plan.note(
                    "consumer",
                    NoteKind::Conflict,
                    format!("--durable {d}: no such consumer on the hot streams"),
                );
            }
            found
        }
        None => guess_durable(plan, &candidates, &named_by_metrics),
    };
    match chosen {
        Some(i) => {
            let c = candidates.remove(i);
            if c.1.filter_subject.is_empty() {
                plan.note(
                    "consumer",
                    NoteKind::Conflict,
                    format!(
                        "consumer {} has no filter subject; the config needs one (the stream's first subject is written)",
                        c.1.name
                    ),
                );
            }
            plan.consumer = Some(c);
        }
        None => {
            if hints.durable.is_none() {
                plan.note(
                    "consumer",
                    NoteKind::Conflict,
                    "no durable consumer on the hot streams: the [consumer] below is a placeholder",
                );
            }
        }
    }
    plan.other_consumers = candidates;
}

/// A durable when none was named: the one the service's counter labels its
/// series with, else the first durable pull consumer, else the first durable.
/// An index into `candidates`.
fn guess_durable(
    plan: &mut Plan,
    candidates: &[(String, ConsumerFacts)],
    named_by_metrics: &[String],
) -> Option<usize> {
    let pulls: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| c.durable.is_some() && c.deliver_subject.is_none())
        .map(|(i, _)| i)
        .collect();
    let any: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| c.durable.is_some())
        .map(|(i, _)| i)
        .collect();
    let by_metrics = any
        .iter()
        .copied()
        .find(|i| named_by_metrics.contains(&candidates[*i].1.name));
    if let Some(i) = by_metrics {
        plan.note(
            "consumer",
            NoteKind::Guess,
            format!(
                "durable {}: the service's counter labels its series with it{}",
                candidates[i].1.name,
                if any.len() > 1 {
                    format!(" ({} durables on the hot streams)", any.len())
                } else {
                    String::new()
                }
            ),
        );
    }
    let pick = by_metrics.or(pulls.first().or(any.first()).copied());
    if let (Some(i), None) = (pick, by_metrics) {
        let n = if pulls.is_empty() {
            any.len()
        } else {
            pulls.len()
        };
        plan.note(
            "consumer",
            NoteKind::Guess,
            format!(
                "durable {}: {} on the hot streams{}",
                candidates[i].1.name,
                if pulls.is_empty() {
                    "the first durable"
                } else {
                    "the first durable pull consumer"
                },
                if n > 1 {
                    format!(" ({n} candidates; --durable NAME to choose)")
                } else {
                    String::new()
                }
            ),
        );
    }
    pick
}

fn choose_matchers(plan: &mut Plan, families: &[FamilyFacts], hints: &Hints) {
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f.name == name || f.sample_names.contains(name))
    };
    let counter = plan
        .counter
        .as_ref()
        .and_then(|c| family(&c.sample_name))
        .cloned();
    let hist = plan.histogram.as_deref().and_then(family).cloned();
    if !hints.matchers.is_empty() {
        plan.matchers = hints.matchers.clone();
    } else if let (Some(c), Some((_, consumer))) = (&counter, &plan.consumer) {
        for label in ["durable", "consumer"] {
            if c.labels
                .get(label)
                .is_some_and(|vals| vals.contains(&consumer.name))
            {
                plan.matchers = vec![(label.to_string(), consumer.name.clone())];
                plan.note(
                    "metrics",
                    NoteKind::Guess,
                    format!(
                        "match {label} = \"{}\": the counter's {label} label holds the durable's name",
                        consumer.name
                    ),
                );
                break;
            }
        }
    }
    let matchers = plan.matchers.clone();
    let read: Vec<&FamilyFacts> = [&counter, &hist]
        .into_iter()
        .flatten()
        .filter(|f| f.samples > 0)
        .collect();
    for (k, v) in &matchers {
        for (what, f) in [("counter", &counter), ("histogram", &hist)] {
            let Some(f) = f else { continue };
            if f.samples == 0 {
                continue;
            }
            // As `check` applies it: a label one family lacks leaves that
            // family unfiltered; one no family carries filters nothing.
            let elsewhere = read
                .iter()
                .any(|o| o.name != f.name && o.labels.contains_key(k));
            match f.labels.get(k) {
                None if elsewhere => plan.note(
                    "metrics",
                    NoteKind::Info,
                    format!(
                        "match label {k} is not on the {what} {}: it is read without that filter",
                        f.name
                    ),
                ),
                None => plan.note(
                    "metrics",
                    NoteKind::Conflict,
                    format!(
                        "match label {k} is missing on the {what} {} and on every family read: the match filters nothing",
                        f.name
                    ),
                ),
                Some(vals) if !v.is_empty() && !vals.contains(v) => plan.note(
                    "metrics",
                    NoteKind::Conflict,
                    format!(
                        "match {k}=\"{v}\": the {what} {} has {k} = {} only",
                        f.name,
                        vals.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

const CREATED: [&str; 7] = [
    "createdAt",
    "created_at",
    "created",
    "insertedAt",
    "inserted_at",
    "createdOn",
    "created_on",
];
const UPDATED: [&str; 6] = [
    "updatedAt",
    "updated_at",
    "modifiedAt",
    "modified_at",
    "updated",
    "updatedOn",
];

fn is_timestamp(t: &str) -> bool {
    t.starts_with("timestamp")
}

/// Which table: guessed as the only one there, or none (asked for, or
/// missing: a conflict listing the tables there). False when there is no
/// table to read columns from.
fn note_table(plan: &mut Plan, t: &TableFacts) -> bool {
    if t.guessed {
        plan.note(
            "database",
            NoteKind::Guess,
            format!(
                "table {}: the only table there (--table NAME to choose)",
                t.table
            ),
        );
    }
    if t.exists {
        return true;
    }
    let what = if t.table.is_empty() {
        "no --table given: which table does the service write?".to_string()
    } else {
        format!("table {} does not exist", t.table)
    };
    let there = if t.other_tables.is_empty() {
        String::new()
    } else {
        format!(
            " (tables there: {}; --table NAME)",
            t.other_tables.join(", ")
        )
    };
    plan.note("database", NoteKind::Conflict, format!("{what}{there}"));
    false
}

fn choose_columns(plan: &mut Plan, t: &TableFacts) {
    if !note_table(plan, t) {
        return;
    }
    let ts_named = |names: &[&str]| {
        names
            .iter()
            .find(|n| t.column_type(n).is_some_and(is_timestamp))
            .map(|n| n.to_string())
    };
    plan.created_column = ts_named(&CREATED).or_else(|| {
        let any = t
            .columns
            .iter()
            .find(|(c, ty)| is_timestamp(ty) && c.to_ascii_lowercase().contains("creat"))
            .or_else(|| t.columns.iter().find(|(_, ty)| is_timestamp(ty)))
            .map(|(c, _)| c.clone());
        if let Some(c) = &any {
            plan.note(
                "database",
                NoteKind::Guess,
                format!("created_column {c}: a timestamp column, not a usual creation name"),
            );
        }
        any
    });
    plan.updated_column = ts_named(&UPDATED);
    match &plan.created_column {
        None => plan.note(
            "database",
            NoteKind::Conflict,
            format!(
                "table {} has no timestamp column: db_writes cannot be judged (created_column below is a placeholder)",
                t.table
            ),
        ),
        Some(_) => {
            let cols: Vec<String> = plan
                .created_column
                .iter()
                .chain(plan.updated_column.iter())
                .cloned()
                .collect();
            for c in cols {
                if t.index_leads_with(&c) {
                    plan.note(
                        "database",
                        NoteKind::Info,
                        format!("an index leads with {c}: the probe's queries stay cheap"),
                    );
                } else {
                    plan.note(
                        "database",
                        NoteKind::Conflict,
                        format!(
                            "no index of {} leads with {c}: every probe query scans the table (CREATE INDEX ON {} (\"{c}\"))",
                            t.table, t.table
                        ),
                    );
                }
            }
        }
    }
    // ln<X> next to X: a derived column the service computes.
    let numeric = |ty: &str| {
        matches!(
            ty,
            "double precision" | "real" | "numeric" | "integer" | "bigint" | "smallint"
        )
    };
    for (c, ty) in &t.columns {
        let Some(rest) = c.strip_prefix("ln").or_else(|| c.strip_prefix("ln_")) else {
            continue;
        };
        let rest = rest.trim_start_matches('_');
        if rest.is_empty() || !numeric(ty) {
            continue;
        }
        if let Some((src, _)) = t
            .columns
            .iter()
            .find(|(s, sty)| s != c && s.eq_ignore_ascii_case(rest) && numeric(sty))
        {
            plan.note(
                "database",
                NoteKind::Guess,
                format!("derived: {c} = ln({src}), from the names"),
            );
            plan.derived = Some((c.clone(), src.clone()));
            break;
        }
    }
}

fn choose_env(plan: &mut Plan, env: &EnvFacts) {
    let ack_keys: Vec<&String> = env
        .keys
        .iter()
        .filter(|k| k.to_ascii_uppercase().contains("ACK_WAIT"))
        .collect();
    let key = ack_keys.first().map(|k| k.to_string());
    let unit = match &key {
        Some(k) => {
            let u = k.to_ascii_uppercase();
            if u.ends_with("_MS") || u.ends_with("_MILLIS") {
                "ms"
            } else if u.ends_with("_S") || u.ends_with("_SEC") || u.ends_with("_SECONDS") {
                "s"
            } else {
                plan.note(
                    "service_env",
                    NoteKind::Guess,
                    format!("{k}: unit not in its name, ms assumed"),
                );
                "ms"
            }
        }
        None => "ms",
    };
    match &key {
        None => plan.note(
            "service_env",
            NoteKind::Info,
            format!("{}: no *ACK_WAIT* key", env.path.display()),
        ),
        Some(k) => {
            if ack_keys.len() > 1 {
                plan.note(
                    "service_env",
                    NoteKind::Guess,
                    format!(
                        "ack_wait_key {k}: the first of {}",
                        ack_keys
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            if let (Some(v), Some((_, c))) = (env.values.get(k), &plan.consumer) {
                let env_wait = v.trim().parse::<u64>().ok().map(|n| match unit {
                    "s" => Duration::from_secs(n),
                    _ => Duration::from_millis(n),
                });
                match env_wait {
                    Some(w) if w != c.ack_wait => plan.note(
                        "service_env",
                        NoteKind::Conflict,
                        format!(
                            "{k}={v} ({}) differs from consumer {}'s ack_wait {}",
                            humantime::format_duration(w),
                            c.name,
                            humantime::format_duration(c.ack_wait)
                        ),
                    ),
                    Some(_) => {}
                    None => plan.note(
                        "service_env",
                        NoteKind::Conflict,
                        format!("{k}={v} is not a whole number of {unit}"),
                    ),
                }
            }
        }
    }
    let expect: BTreeMap<String, String> = env
        .values
        .iter()
        .filter(|(k, _)| k.to_ascii_uppercase().ends_with("_MODE"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !expect.is_empty() {
        plan.note(
            "service_env",
            NoteKind::Guess,
            "expect: the *_MODE keys must keep the values they hold now",
        );
    }
    plan.env = Some(EnvChoice {
        ack_wait_key: key,
        ack_wait_unit: unit.to_string(),
        expect,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::fixture;

    fn texts(plan: &Plan, kind: NoteKind) -> Vec<String> {
        plan.notes
            .iter()
            .filter(|n| n.kind == kind)
            .map(|n| n.text.clone())
            .collect()
    }

    #[test]
    fn seed_system_gets_the_seed_roles_without_conflicts() {
        let p = plan(&fixture::observed(), &Hints::default());
        assert_eq!(
            p.legacy.as_ref().map(|s| s.name.as_str()),
            Some("ATHLETE_ALLY_EVENTS")
        );
        assert_eq!(p.dlq.as_ref().map(|s| s.name.as_str()), Some("AA_DLQ"));
        let hot: Vec<&str> = p.hot.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(hot, ["AA_CORE_HOT", "AA_VENDOR_HOT"]);
        let (stream, c) = p.consumer.clone().expect("consumer");
        assert_eq!(
            (stream.as_str(), c.name.as_str()),
            ("AA_CORE_HOT", "normalize-hrv-durable")
        );
        let counter = p.counter.clone().expect("counter");
        assert_eq!(counter.sample_name, "normalize_hrv_messages_total");
        assert_eq!(counter.result_label, "result");
        assert_eq!(counter.stream_label, "stream");
        assert_eq!(
            (counter.success_result.as_str(), counter.dlq_result.as_str()),
            ("success", "dlq")
        );
        assert_eq!(counter.uncounted, ["retry"]);
        assert_eq!(
            p.histogram.as_deref(),
            Some("normalize_hrv_processing_duration_seconds")
        );
        assert_eq!(
            p.process_start.as_deref(),
            Some("process_start_time_seconds")
        );
        assert_eq!(
            p.matchers,
            [("durable".to_string(), "normalize-hrv-durable".to_string())]
        );
        assert_eq!(p.created_column.as_deref(), Some("createdAt"));
        assert_eq!(p.updated_column.as_deref(), Some("updatedAt"));
        assert_eq!(p.derived, Some(("lnRmssd".into(), "rmssd".into())));
        let env = p.env.clone().expect("env");
        assert_eq!(
            env.ack_wait_key.as_deref(),
            Some("NORMALIZE_HRV_ACK_WAIT_MS")
        );
        assert_eq!(env.ack_wait_unit, "ms");
        assert_eq!(
            env.expect.get("EVENT_STREAM_MODE").map(String::as_str),
            Some("multi")
        );
        assert_eq!(texts(&p, NoteKind::Conflict), Vec::<String>::new());
        // Choices made by heuristics say so.
        assert!(texts(&p, NoteKind::Guess)
            .iter()
            .any(|t| t.contains("legacy stream")));
    }

    #[test]
    fn idle_stream_is_the_legacy_one_when_no_subject_says_so() {
        let mut o = fixture::observed();
        if let Ok(n) = &mut o.nats {
            for s in &mut n.streams {
                if s.name == "ATHLETE_ALLY_EVENTS" {
                    s.subjects = vec!["old.>".into()];
                    s.last_ts = chrono::DateTime::from_timestamp(1_000, 0);
                }
                if s.name == "AA_VENDOR_HOT" {
                    s.last_ts = chrono::DateTime::from_timestamp(2_000, 0);
                }
            }
        }
        let p = plan(&o, &Hints::default());
        assert_eq!(
            p.legacy.as_ref().map(|s| s.name.as_str()),
            Some("ATHLETE_ALLY_EVENTS")
        );
        assert!(texts(&p, NoteKind::Guess)
            .iter()
            .any(|t| t.contains("the idle one")));
        // --legacy overrides the heuristic.
        let p = plan(
            &o,
            &Hints {
                legacy: Some("AA_VENDOR_HOT".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            p.legacy.as_ref().map(|s| s.name.as_str()),
            Some("AA_VENDOR_HOT")
        );
        assert!(p.hot.iter().any(|s| s.name == "ATHLETE_ALLY_EVENTS"));
    }

    #[test]
    fn missing_index_bogus_match_and_ack_wait_drift_are_conflicts() {
        let mut o = fixture::observed();
        if let Some(Ok(t)) = &mut o.table {
            t.indexes.retain(|i| i.columns[0] != "createdAt");
        }
        if let Some(Ok(env)) = &mut o.env {
            env.values
                .insert("NORMALIZE_HRV_ACK_WAIT_MS".into(), "30000".into());
        }
        let p = plan(
            &o,
            &Hints {
                matchers: vec![("bogus".into(), "x".into())],
                ..Default::default()
            },
        );
        let c = texts(&p, NoteKind::Conflict).join("\n");
        assert!(
            c.contains("no index of hrv_data leads with createdAt"),
            "{c}"
        );
        assert!(!c.contains("leads with updatedAt"), "{c}");
        assert!(
            c.contains("match label bogus is missing on the counter normalize_hrv_messages_total"),
            "{c}"
        );
        assert!(
            c.contains("match label bogus is missing on the histogram"),
            "{c}"
        );
        assert!(
            c.contains("NORMALIZE_HRV_ACK_WAIT_MS=30000 (30s) differs from consumer normalize-hrv-durable's ack_wait 1m"),
            "{c}"
        );
    }

    #[test]
    fn nothing_seen_means_placeholders_and_conflicts() {
        let o = Observed {
            nats: Err(crate::probe_error::ProbeError::Other("no NATS".into())),
            metrics: Err(crate::probe_error::ProbeError::Other("no metrics".into())),
            table: Some(Err(crate::probe_error::ProbeError::Other("no db".into()))),
            env: None,
            files: Vec::new(),
        };
        let p = plan(&o, &Hints::default());
        assert!(p.legacy.is_none() && p.hot.is_empty() && p.consumer.is_none());
        assert!(p.counter.is_none() && p.histogram.is_none());
        assert!(texts(&p, NoteKind::Conflict)
            .iter()
            .any(|t| t.contains("no durable consumer")));
    }

    #[test]
    fn the_durable_the_counter_names_is_preferred() {
        let mut o = fixture::observed();
        if let Ok(n) = &mut o.nats {
            let core = n
                .streams
                .iter_mut()
                .find(|s| s.name == "AA_CORE_HOT")
                .expect("core");
            let mut other = fixture::durable();
            other.name = "aaa-audit".into();
            other.durable = Some("aaa-audit".into());
            core.consumers.insert(0, other);
        }
        let p = plan(&o, &Hints::default());
        let (_, c) = p.consumer.clone().expect("consumer");
        assert_eq!(c.name, "normalize-hrv-durable");
        assert_eq!(p.other_consumers.len(), 1);
        assert!(texts(&p, NoteKind::Guess)
            .iter()
            .any(|t| t.contains("the service's counter labels its series with it")));
        // Without the label, the first durable pull consumer, said to be one of two.
        o.metrics = Ok(crate::discover::families_of(&crate::promtext::parse(
            "# TYPE m_total counter\nm_total{result=\"ok\"} 1\n",
        )));
        let p = plan(&o, &Hints::default());
        assert_eq!(
            p.consumer.clone().map(|(_, c)| c.name),
            Some("aaa-audit".to_string())
        );
        assert!(texts(&p, NoteKind::Guess)
            .iter()
            .any(|t| t.contains("2 candidates; --durable NAME")));
    }

    #[test]
    fn a_counter_without_series_yet_is_taken_with_assumed_labels() {
        let mut o = fixture::observed();
        o.metrics = Ok(crate::discover::families_of(&crate::promtext::parse(
            "# TYPE normalize_hrv_messages_total counter\n# TYPE up gauge\nup 1\n",
        )));
        let p = plan(&o, &Hints::default());
        let c = p.counter.clone().expect("counter");
        assert_eq!(c.sample_name, "normalize_hrv_messages_total");
        assert_eq!(
            (c.result_label.as_str(), c.stream_label.as_str()),
            ("result", "stream")
        );
        assert!(texts(&p, NoteKind::Guess)
            .iter()
            .any(|t| t.contains("labels are unknown")));
    }

    #[test]
    fn counter_without_stream_label_is_flagged() {
        let mut o = fixture::observed();
        o.metrics = Ok(crate::discover::families_of(&crate::promtext::parse(
            "# TYPE jobs_total counter\njobs_total{outcome=\"ok\"} 1\n",
        )));
        let p = plan(&o, &Hints::default());
        let c = p.counter.clone().expect("counter");
        assert_eq!(
            (c.sample_name.as_str(), c.result_label.as_str()),
            ("jobs_total", "outcome")
        );
        assert_eq!(c.success_result, "ok");
        assert!(texts(&p, NoteKind::Conflict)
            .iter()
            .any(|t| t.contains("has no stream label")));
        assert!(texts(&p, NoteKind::Guess)
            .iter()
            .any(|t| t.contains("dlq_result \"dlq\" assumed")));
    }
}
