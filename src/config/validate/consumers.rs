//! `[consumer]` and `[[consumers]]`: the durables the soak watches, named
//! one by one or selected by stream, and what each must look like.

use super::*;

/// `[consumer]` or `[[consumers]]`: named durables (on a hot stream, filter
/// within its subjects, an ack policy) and selectors (hot streams only).
pub(super) fn validate_consumers(raw: &RawConfig, p: Problems<'_>) -> ConsumersConfig {
    let mut out = ConsumersConfig {
        named: Vec::new(),
        selectors: Vec::new(),
    };
    match (&raw.consumer, raw.consumers.is_empty()) {
        (Some(_), false) => p(
            "consumers",
            "set either [consumer] (one durable) or [[consumers]], not both".into(),
        ),
        (None, true) => p(
            "consumer",
            "missing: set [consumer] (one durable) or [[consumers]] (durables and selectors)"
                .into(),
        ),
        _ => {}
    }
    if let Some(c) = &raw.consumer {
        check_named(raw, "consumer", c, p);
        let mut c = c.clone();
        c.key = "consumer".into();
        out.named.push(c);
    }
    for (i, e) in raw.consumers.iter().enumerate() {
        let key = format!("consumers[{i}]");
        match (e.durable.trim().is_empty(), e.streams.is_empty()) {
            (false, true) => {
                if let Some(c) = named_entry(&key, e, p) {
                    check_named(raw, &key, &c, p);
                    out.named.push(c);
                }
            }
            (true, false) => out.selectors.push(selector_entry(raw, &key, e, p)),
            (false, false) => p(
                &format!("{key}.streams"),
                "a named durable (durable) or a selector (streams), not both".into(),
            ),
            (true, true) => p(
                &key,
                "set durable (one consumer) or streams (every durable on them)".into(),
            ),
        }
    }
    let mut seen = BTreeSet::new();
    for c in &out.named {
        if !seen.insert((c.stream.as_str(), c.durable.as_str())) {
            p(
                "consumers",
                format!("durable {} on {} is listed twice", c.durable, c.stream),
            );
        }
    }
    out
}

/// A `[[consumers]]` entry with `durable`: the fields `[consumer]` requires.
fn named_entry(key: &str, e: &RawConsumerEntry, p: Problems<'_>) -> Option<ConsumerConfig> {
    let mut missing = |field: &str| {
        p(
            &format!("{key}.{field}"),
            format!("missing field `{field}`"),
        )
    };
    if e.stream.trim().is_empty() {
        missing("stream");
    }
    if e.filter_subject.is_none() {
        missing("filter_subject");
    }
    if e.ack_wait.is_none() {
        missing("ack_wait");
    }
    if e.max_deliver.is_none() {
        missing("max_deliver");
    }
    for (field, set) in [
        ("durable_prefix", !e.durable_prefix.is_empty()),
        ("exclude", !e.exclude.is_empty()),
        ("min_count", e.min_count.is_some()),
        ("overrides", !e.overrides.is_empty()),
    ] {
        if set {
            p(
                &format!("{key}.{field}"),
                "only a selector (streams = [...]) takes this".into(),
            );
        }
    }
    Some(ConsumerConfig {
        stream: e.stream.clone(),
        durable: e.durable.clone(),
        filter_subject: e.filter_subject.clone()?,
        ack_policy: e.ack_policy.clone().unwrap_or_else(default_ack_policy),
        ack_wait: e.ack_wait?,
        max_deliver: e.max_deliver?,
        max_ack_pending: e.max_ack_pending,
        lag_warn: e.lag_warn,
        lag_fail: e.lag_fail,
        key: key.to_string(),
    })
}

/// A `[[consumers]]` entry with `streams`: hot streams, sane expectations.
fn selector_entry(
    raw: &RawConfig,
    key: &str,
    e: &RawConsumerEntry,
    p: Problems<'_>,
) -> ConsumerSelector {
    if !e.stream.is_empty() {
        p(
            &format!("{key}.stream"),
            "a selector names its streams in `streams`".into(),
        );
    }
    for (i, s) in e.streams.iter().enumerate() {
        if !raw.streams.hot.iter().any(|h| &h.name == s) {
            p(
                &format!("{key}.streams[{i}]"),
                format!("`{s}` is not one of the hot streams"),
            );
        }
    }
    let expect = e.expectation();
    check_expect(raw, key, &expect, &e.streams, p);
    let mut overrides = BTreeMap::new();
    for (name, o) in &e.overrides {
        let okey = format!("{key}.overrides.{name}");
        let o = o.to_expect();
        check_expect(raw, &okey, &expect.overlaid(&o), &e.streams, p);
        overrides.insert(name.clone(), o);
    }
    ConsumerSelector {
        key: key.to_string(),
        streams: e.streams.clone(),
        durable_prefix: e.durable_prefix.clone(),
        exclude: e.exclude.clone(),
        min_count: e.min_count.unwrap_or(1),
        expect,
        overrides,
    }
}

/// A named durable: on a hot stream, filter within its subjects, a name.
fn check_named(raw: &RawConfig, key: &str, c: &ConsumerConfig, p: Problems<'_>) {
    if !raw.streams.hot.iter().any(|s| s.name == c.stream) {
        p(
            &format!("{key}.stream"),
            format!("`{}` is not one of the hot streams", c.stream),
        );
    }
    if c.durable.trim().is_empty() {
        p(&format!("{key}.durable"), "must not be empty".into());
    }
    check_expect(
        raw,
        key,
        &c.expectation(),
        std::slice::from_ref(&c.stream),
        p,
    );
}

/// Expected settings: a known ack policy, a filter within one of the
/// streams' subjects, lag levels in order.
fn check_expect(
    raw: &RawConfig,
    key: &str,
    e: &ConsumerExpect,
    streams: &[String],
    p: Problems<'_>,
) {
    if let Some(policy) = &e.ack_policy {
        if !matches!(policy.as_str(), "explicit" | "all" | "none") {
            p(
                &format!("{key}.ack_policy"),
                format!("`{policy}`: expected explicit, all or none"),
            );
        }
    }
    if let Some(filter) = &e.filter_subject {
        let hot: Vec<&StreamSpec> = raw
            .streams
            .hot
            .iter()
            .filter(|h| streams.contains(&h.name))
            .collect();
        let covered = hot.iter().any(|h| {
            h.subjects
                .iter()
                .any(|pat| subjects::pattern_covers(pat, filter))
        });
        if !hot.is_empty() && !covered {
            let names: Vec<&str> = hot.iter().map(|h| h.name.as_str()).collect();
            p(
                &format!("{key}.filter_subject"),
                format!(
                    "`{filter}` is not within the subjects of stream {}",
                    names.join(", ")
                ),
            );
        }
    }
    let warn = e.lag_warn.unwrap_or(raw.criteria.lag_warn);
    let fail = e.lag_fail.unwrap_or(raw.criteria.lag_fail);
    if (e.lag_warn.is_some() || e.lag_fail.is_some()) && warn > fail {
        p(
            &format!("{key}.lag_warn"),
            format!("{warn} is above lag_fail {fail}"),
        );
    }
}
