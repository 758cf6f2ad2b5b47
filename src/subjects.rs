//! NATS subject patterns: validation, matching, and overlap between patterns.
//!
//! JetStream refuses to create a stream whose subjects overlap another
//! stream's, and a cutover that moves subjects between streams can leave a
//! deployed topology in exactly that state. This module answers "do these two
//! patterns share a concrete subject?" purely, so the evaluator can check a
//! topology snapshot (or a replayed one) without talking to a server.
//!
//! Subjects are `.`-separated tokens. `*` matches exactly one token; `>` may
//! only be the last token and matches one or more tokens. All functions here
//! are total: an invalid pattern (see [`validate_pattern`]) matches nothing,
//! overlaps nothing and covers nothing, rather than panicking.

use serde::Serialize;

/// Why a subject pattern is not acceptable to NATS; carried by
/// [`validate_pattern`] so a topology check can say which subject is bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The pattern is the empty string.
    #[error("subject is empty")]
    Empty,
    /// The pattern contains a space, tab, newline or other whitespace.
    #[error("subject contains whitespace")]
    Whitespace,
    /// Two dots in a row, or a leading/trailing dot (`position` is 1-based).
    #[error("subject token {position} is empty")]
    EmptyToken {
        /// 1-based index of the empty token.
        position: usize,
    },
    /// `>` appears somewhere other than as the last token.
    #[error("'>' is only allowed as the last token")]
    FullWildcardNotLast,
    /// `*` or `>` is part of a longer token such as `a*` or `>b`.
    #[error("wildcard inside token '{token}' (wildcards must be whole tokens)")]
    PartialWildcard {
        /// The offending token.
        token: String,
    },
}

/// One token of a validated pattern; lets the matching code work on a
/// closed set of cases instead of re-inspecting strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Literal(&'a str),
    /// `*`
    One,
    /// `>` (always last)
    Rest,
}

/// Split and validate a pattern into tokens.
fn tokenize(p: &str) -> Result<Vec<Token<'_>>, SubjectError> {
    if p.is_empty() {
        return Err(SubjectError::Empty);
    }
    if p.chars().any(char::is_whitespace) {
        return Err(SubjectError::Whitespace);
    }
    let raw: Vec<&str> = p.split('.').collect();
    let last = raw.len() - 1; // split always yields at least one item
    let mut out = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let tok = match *t {
            "" => return Err(SubjectError::EmptyToken { position: i + 1 }),
            "*" => Token::One,
            ">" if i == last => Token::Rest,
            ">" => return Err(SubjectError::FullWildcardNotLast),
            lit if lit.contains('*') || lit.contains('>') => {
                return Err(SubjectError::PartialWildcard {
                    token: lit.to_string(),
                })
            }
            lit => Token::Literal(lit),
        };
        out.push(tok);
    }
    Ok(out)
}

/// Validation: non-empty tokens, no whitespace, `>` only last, wildcards only
/// as whole tokens. Exists so a topology check can reject a bad subject with a
/// one-line reason before comparing it against others.
pub fn validate_pattern(p: &str) -> Result<(), SubjectError> {
    tokenize(p).map(|_| ())
}

/// true when some concrete subject is matched by both patterns. This is the
/// condition under which JetStream refuses two streams; symmetric in `a`, `b`.
/// Invalid patterns never overlap anything.
pub fn patterns_overlap(a: &str, b: &str) -> bool {
    match (tokenize(a), tokenize(b)) {
        (Ok(ta), Ok(tb)) => tokens_overlap(&ta, &tb),
        _ => false,
    }
}

fn tokens_overlap(a: &[Token<'_>], b: &[Token<'_>]) -> bool {
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (None, None) => return true,
            // `>` needs at least one more token, which the other side has
            // (and any non-empty pattern suffix matches some tokens).
            (Some(Token::Rest), Some(_)) | (Some(_), Some(Token::Rest)) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(Token::Literal(x)), Some(Token::Literal(y))) if x != y => return false,
            (Some(_), Some(_)) => i += 1,
        }
    }
}

/// true when every subject matched by `inner` is matched by `outer` (e.g.
/// `a.>` covers `a.b.*`). Used to tell a harmless redundant subject from a
/// partial overlap. Invalid patterns cover nothing and are covered by nothing.
pub fn pattern_covers(outer: &str, inner: &str) -> bool {
    match (tokenize(outer), tokenize(inner)) {
        (Ok(to), Ok(ti)) => tokens_cover(&to, &ti),
        _ => false,
    }
}

fn tokens_cover(outer: &[Token<'_>], inner: &[Token<'_>]) -> bool {
    let mut i = 0;
    loop {
        match (outer.get(i), inner.get(i)) {
            (None, None) => return true,
            // inner still has >= 1 token (pattern) left, each of which yields
            // >= 1 subject token: all of them are swallowed by `>`.
            (Some(Token::Rest), Some(_)) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            // inner matches arbitrarily long tails; a fixed-length outer can't.
            (Some(_), Some(Token::Rest)) => return false,
            (Some(Token::One), Some(_)) => i += 1,
            (Some(Token::Literal(x)), Some(Token::Literal(y))) if x == y => i += 1,
            (Some(Token::Literal(_)), Some(_)) => return false,
        }
    }
}

/// true when the concrete subject matches the pattern; the ground truth the
/// overlap logic is tested against, and useful for routing checks. A
/// `subject` containing wildcards is not concrete and matches nothing.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let (Ok(tp), Ok(ts)) = (tokenize(pattern), tokenize(subject)) else {
        return false;
    };
    if ts.iter().any(|t| !matches!(t, Token::Literal(_))) {
        return false;
    }
    // For a concrete subject, "pattern covers subject" is exactly "matches".
    tokens_cover(&tp, &ts)
}

/// One pair of subjects, from two different streams, that share at least one
/// concrete subject; what JetStream would reject, serialisable for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overlap {
    /// The stream listed first in the input.
    pub stream_a: String,
    /// The overlapping pattern of `stream_a`.
    pub subject_a: String,
    /// The stream listed later in the input.
    pub stream_b: String,
    /// The overlapping pattern of `stream_b`.
    pub subject_b: String,
}

/// All overlapping pairs across streams (input: (stream name, its subject
/// patterns)), in input order. Overlaps within one stream are NOT reported,
/// including between two entries carrying the same stream name. Invalid
/// patterns are skipped (they overlap nothing; validate them separately).
pub fn find_overlaps(streams: &[(String, Vec<String>)]) -> Vec<Overlap> {
    /// A stream's patterns, tokenized once; invalid ones are `None`.
    type Parsed<'a> = Vec<(&'a str, Option<Vec<Token<'a>>>)>;
    let parsed: Vec<Parsed<'_>> = streams
        .iter()
        .map(|(_, subs)| {
            subs.iter()
                .map(|s| (s.as_str(), tokenize(s).ok()))
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for (i, (name_a, _)) in streams.iter().enumerate() {
        for (j, (name_b, _)) in streams.iter().enumerate().skip(i + 1) {
            if name_a == name_b {
                continue;
            }
            for (sa, ta) in &parsed[i] {
                let Some(ta) = ta else { continue };
                for (sb, tb) in &parsed[j] {
                    let Some(tb) = tb else { continue };
                    if tokens_overlap(ta, tb) {
                        out.push(Overlap {
                            stream_a: name_a.clone(),
                            subject_a: (*sa).to_string(),
                            stream_b: name_b.clone(),
                            subject_b: (*sb).to_string(),
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topo(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(n, subs)| (n.to_string(), subs.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn ov(sa: &str, a: &str, sb: &str, b: &str) -> Overlap {
        Overlap {
            stream_a: sa.into(),
            subject_a: a.into(),
            stream_b: sb.into(),
            subject_b: b.into(),
        }
    }

    /// Check both argument orders, asserting symmetry along the way.
    fn overlap(a: &str, b: &str) -> bool {
        let x = patterns_overlap(a, b);
        assert_eq!(x, patterns_overlap(b, a), "asymmetric for {a:?} / {b:?}");
        x
    }

    #[test]
    fn overlap_cases_from_brief() {
        assert!(overlap("athlete-ally.>", "athlete-ally.hrv.raw-received"));
        assert!(!overlap("athlete-ally.>", "legacy.>"));
        assert!(!overlap("sleep.*", "sleep.a.b"));
        assert!(overlap("sleep.*", "sleep.>"));
        assert!(overlap("a.*.c", "a.b.*"));
        assert!(overlap(">", "anything"));
        assert!(overlap(">", "a.b.c"));
        assert!(overlap(">", "*"));
        assert!(overlap(">", ">"));
        assert!(!overlap("a.>", "a"));
        assert!(!overlap("*", "a.b"));
        assert!(overlap("a.b", "a.b"));
        assert!(!overlap("a.b", "a.c"));
    }

    #[test]
    fn overlap_more_cases() {
        assert!(overlap("*", "a"));
        assert!(overlap("*.*", "a.>"));
        assert!(!overlap("*.*", "a"));
        assert!(overlap("a.>", "*.b.c"));
        assert!(!overlap("a.>", "b.>"));
        assert!(overlap("a.*.>", "a.b.c.d"));
        assert!(!overlap("a.*.>", "a.b"));
        assert!(!overlap("a.b.c", "a.b"));
        assert!(overlap("a.*", "*.b"));
        assert!(!overlap("a.*.c", "a.b.d"));
    }

    #[test]
    fn invalid_patterns_never_overlap() {
        assert!(!overlap("", ">"));
        assert!(!overlap("a..b", ">"));
        assert!(!overlap("a.>.b", "a.b.b"));
        assert!(!overlap("a b", ">"));
        assert!(!overlap("a*", ">"));
        assert!(!pattern_covers(">", "a..b"));
        assert!(!pattern_covers("a..b", "a..b"));
    }

    #[test]
    fn covers_cases() {
        assert!(pattern_covers("a.>", "a.b.*"));
        assert!(pattern_covers("a.>", "a.b"));
        assert!(pattern_covers(">", "a.>"));
        assert!(pattern_covers(">", "*"));
        assert!(pattern_covers("*.b", "a.b"));
        assert!(pattern_covers("a.*", "a.*"));
        assert!(pattern_covers("a.>", "a.>"));
        assert!(pattern_covers("a.>", "a.*.>"));
        assert!(!pattern_covers("a.*", "a.>"));
        assert!(!pattern_covers("a.b", "a.*"));
        assert!(!pattern_covers("a.b.*", "a.>"));
        assert!(!pattern_covers("a.>", "a"));
        assert!(!pattern_covers("a", "a.>"));
        assert!(!pattern_covers("a.*.c", "a.b.*"));
        assert!(!pattern_covers("a.*.>", "a.>"));
    }

    #[test]
    fn covers_with_invalid_inner_is_false() {
        // "a.>." splits into ["a", ">", ""], so '>' is not the last token.
        assert_eq!(
            validate_pattern("a.>."),
            Err(SubjectError::FullWildcardNotLast)
        );
        assert!(!pattern_covers("a.>", "a.>."));
        assert!(!pattern_covers(">", "a.>."));
    }

    #[test]
    fn matches_cases() {
        assert!(subject_matches(
            "athlete-ally.>",
            "athlete-ally.hrv.raw-received"
        ));
        assert!(subject_matches("sleep.*", "sleep.a"));
        assert!(!subject_matches("sleep.*", "sleep.a.b"));
        assert!(!subject_matches("sleep.*", "sleep"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches("a.>", "a.b"));
        assert!(subject_matches(">", "x"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.c"));
        // Non-concrete or invalid subjects match nothing.
        assert!(!subject_matches(">", "a.*"));
        assert!(!subject_matches(">", "a.>"));
        assert!(!subject_matches(">", ""));
        assert!(!subject_matches("a..b", "a..b"));
    }

    #[test]
    fn validation_errors() {
        assert_eq!(validate_pattern("a.b.*"), Ok(()));
        assert_eq!(validate_pattern(">"), Ok(()));
        assert_eq!(validate_pattern("a-b_c.d:e"), Ok(()));
        assert_eq!(validate_pattern(""), Err(SubjectError::Empty));
        assert_eq!(validate_pattern("a b"), Err(SubjectError::Whitespace));
        assert_eq!(validate_pattern("a\tb"), Err(SubjectError::Whitespace));
        assert_eq!(validate_pattern("a.\n"), Err(SubjectError::Whitespace));
        assert_eq!(
            validate_pattern(".a"),
            Err(SubjectError::EmptyToken { position: 1 })
        );
        assert_eq!(
            validate_pattern("a..b"),
            Err(SubjectError::EmptyToken { position: 2 })
        );
        assert_eq!(
            validate_pattern("a."),
            Err(SubjectError::EmptyToken { position: 2 })
        );
        assert_eq!(
            validate_pattern(">.a"),
            Err(SubjectError::FullWildcardNotLast)
        );
        assert_eq!(
            validate_pattern("a.b*"),
            Err(SubjectError::PartialWildcard { token: "b*".into() })
        );
        assert_eq!(
            validate_pattern("a.>>"),
            Err(SubjectError::PartialWildcard { token: ">>".into() })
        );
    }

    #[test]
    fn error_messages_are_one_line() {
        for p in ["", "a b", "a..b", ">.a", "a.b*"] {
            let msg = validate_pattern(p).err().map(|e| e.to_string());
            let msg = msg.unwrap_or_default();
            assert!(!msg.is_empty(), "{p:?}");
            assert!(!msg.contains('\n'), "{p:?}: {msg:?}");
        }
        assert_eq!(
            SubjectError::PartialWildcard { token: "b*".into() }.to_string(),
            "wildcard inside token 'b*' (wildcards must be whole tokens)"
        );
    }

    #[test]
    fn seed_topology_has_no_overlap() {
        let t = topo(&[
            ("ATHLETE_ALLY_EVENTS", &["legacy.>"]),
            ("AA_CORE_HOT", &["athlete-ally.>", "sleep.*"]),
            ("AA_VENDOR_HOT", &["vendor.>"]),
            ("AA_DLQ", &["dlq.>"]),
        ]);
        assert_eq!(find_overlaps(&t), vec![]);
    }

    #[test]
    fn pre_migration_topology_overlaps() {
        let t = topo(&[
            (
                "ATHLETE_ALLY_EVENTS",
                &["athlete-ally.>", "vendor.>", "sleep.*"],
            ),
            ("AA_CORE_HOT", &["athlete-ally.>", "sleep.*"]),
        ]);
        assert_eq!(
            find_overlaps(&t),
            vec![
                ov(
                    "ATHLETE_ALLY_EVENTS",
                    "athlete-ally.>",
                    "AA_CORE_HOT",
                    "athlete-ally.>"
                ),
                ov("ATHLETE_ALLY_EVENTS", "sleep.*", "AA_CORE_HOT", "sleep.*"),
            ]
        );

        let full = topo(&[
            (
                "ATHLETE_ALLY_EVENTS",
                &["athlete-ally.>", "vendor.>", "sleep.*"],
            ),
            ("AA_CORE_HOT", &["athlete-ally.>", "sleep.*"]),
            ("AA_VENDOR_HOT", &["vendor.>"]),
            ("AA_DLQ", &["dlq.>"]),
        ]);
        assert_eq!(
            find_overlaps(&full),
            vec![
                ov(
                    "ATHLETE_ALLY_EVENTS",
                    "athlete-ally.>",
                    "AA_CORE_HOT",
                    "athlete-ally.>"
                ),
                ov("ATHLETE_ALLY_EVENTS", "sleep.*", "AA_CORE_HOT", "sleep.*"),
                ov(
                    "ATHLETE_ALLY_EVENTS",
                    "vendor.>",
                    "AA_VENDOR_HOT",
                    "vendor.>"
                ),
            ]
        );
    }

    #[test]
    fn find_overlaps_skips_same_stream_and_invalid() {
        let t = topo(&[
            ("S", &["a.>", "a.b"]),  // overlap within one stream: not reported
            ("S", &["a.c"]),         // same name again: still the same stream
            ("T", &["a..b", "x.*"]), // invalid pattern skipped
            ("U", &["x.y", ">"]),
        ]);
        assert_eq!(
            find_overlaps(&t),
            vec![
                ov("S", "a.>", "U", ">"),
                ov("S", "a.b", "U", ">"),
                ov("S", "a.c", "U", ">"),
                ov("T", "x.*", "U", "x.y"),
                ov("T", "x.*", "U", ">"),
            ]
        );
        assert_eq!(find_overlaps(&[]), vec![]);
    }

    #[test]
    fn overlap_serializes() {
        // serde::Serialize is derived; make sure it is usable as a bound.
        fn is_ser<T: Serialize>(_: &T) {}
        is_ser(&ov("A", "a", "B", "b"));
    }

    // ---- property tests -------------------------------------------------

    /// Patterns over a tiny alphabet so that collisions are frequent.
    fn pattern() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop::sample::select(vec!["a", "b", "*"]), 0..4),
            any::<bool>(),
        )
            .prop_filter_map("non-empty", |(mut toks, rest)| {
                if rest {
                    toks.push(">");
                }
                (!toks.is_empty()).then(|| toks.join("."))
            })
    }

    fn subject() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..6)
            .prop_map(|t| t.join("."))
    }

    /// Every concrete subject over {a,b,c} with 1..=5 tokens: enough to
    /// witness any overlap / non-coverage of the patterns generated above.
    fn universe() -> Vec<String> {
        let mut all: Vec<String> = vec![];
        let mut layer: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        for _ in 0..5 {
            all.extend(layer.iter().cloned());
            layer = layer
                .iter()
                .flat_map(|s| ["a", "b", "c"].map(|t| format!("{s}.{t}")))
                .collect();
        }
        all
    }

    proptest! {
        #[test]
        fn overlap_is_symmetric(a in pattern(), b in pattern()) {
            prop_assert_eq!(patterns_overlap(&a, &b), patterns_overlap(&b, &a));
        }

        #[test]
        fn common_subject_implies_overlap(a in pattern(), b in pattern(), s in subject()) {
            if subject_matches(&a, &s) && subject_matches(&b, &s) {
                prop_assert!(patterns_overlap(&a, &b));
            }
        }

        #[test]
        fn overlap_and_covers_agree_with_brute_force(a in pattern(), b in pattern()) {
            let u = universe();
            let witness = u.iter().any(|s| subject_matches(&a, s) && subject_matches(&b, s));
            prop_assert_eq!(patterns_overlap(&a, &b), witness);
            let covered = u.iter().all(|s| !subject_matches(&b, s) || subject_matches(&a, s));
            prop_assert_eq!(pattern_covers(&a, &b), covered);
        }

        #[test]
        fn arbitrary_strings_never_panic(a in ".{0,12}", b in ".{0,12}") {
            let _ = patterns_overlap(&a, &b);
            let _ = pattern_covers(&a, &b);
            let _ = subject_matches(&a, &b);
            let _ = validate_pattern(&a);
        }

        #[test]
        fn pattern_overlaps_and_covers_itself(a in pattern()) {
            prop_assert!(patterns_overlap(&a, &a));
            prop_assert!(pattern_covers(&a, &a));
        }
    }
}
