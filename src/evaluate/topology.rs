//! `topology`: every configured stream exists with its subjects and settings,
//! no two streams claim the same subject, and the DLQ is there.

use super::{combine, part, secs, Ctx, Part};
use crate::config::StreamSpec;
use crate::sample::StreamState;
use crate::subjects;
use crate::verdict::{CriterionId as C, Status, Verdict};

impl Ctx<'_> {
    pub(super) fn topology(&self) -> Verdict {
        let target =
            "expected streams, subjects and settings; no subject overlap; DLQ present".to_string();
        let mut parts = Vec::new();
        let mut seen: Vec<(String, Vec<String>)> = Vec::new();
        let specs = self.cfg.streams.all();
        for spec in &specs {
            let is_dlq = spec.name == self.cfg.streams.dlq.name;
            match self.stream(self.last, &spec.name) {
                Err(f) => parts.push(part(Status::Unknown, f.to_string())),
                Ok(None) => parts.push(part(
                    Status::Fail,
                    format!(
                        "{}stream {} does not exist",
                        if is_dlq { "DLQ " } else { "" },
                        spec.name
                    ),
                )),
                Ok(Some(s)) => {
                    parts.extend(stream_drift(spec, s));
                    seen.push((s.name.clone(), s.subjects.clone()));
                }
            }
        }
        for o in subjects::find_overlaps(&seen) {
            parts.push(part(
                Status::Fail,
                format!(
                    "subjects overlap: {} `{}` and {} `{}`",
                    o.stream_a, o.subject_a, o.stream_b, o.subject_b
                ),
            ));
        }
        let problems = parts.iter().filter(|p| p.status != Status::Pass).count();
        if problems == 0 {
            parts.push(part(
                Status::Pass,
                format!(
                    "{} streams as expected, no overlapping subjects",
                    specs.len()
                ),
            ));
        }
        let ok = seen.len();
        let (status, evidence) = combine(parts);
        Verdict::new(
            C::Topology,
            status,
            format!(
                "{ok}/{} streams present, {problems} problem(s)",
                specs.len()
            ),
            target,
            evidence,
        )
        .with_value(problems as f64, None, Some(1.0))
    }
}

/// Differences between a stream's expected and actual settings.
fn stream_drift(spec: &StreamSpec, s: &StreamState) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut want: Vec<&String> = spec.subjects.iter().collect();
    let mut have: Vec<&String> = s.subjects.iter().collect();
    want.sort();
    have.sort();
    if want != have {
        parts.push(part(
            Status::Fail,
            format!(
                "{} subjects {:?} (expected {:?})",
                s.name, s.subjects, spec.subjects
            ),
        ));
    }
    if let Some(st) = &spec.storage {
        if &s.storage != st {
            parts.push(part(
                Status::Fail,
                format!("{} storage {} (expected {st})", s.name, s.storage),
            ));
        }
    }
    if let Some(r) = spec.replicas {
        if s.replicas != r {
            parts.push(part(
                Status::Fail,
                format!("{} replicas {} (expected {r})", s.name, s.replicas),
            ));
        }
    }
    if let Some(age) = spec.max_age {
        if (s.max_age_secs - age.as_secs_f64()).abs() > 0.5 {
            parts.push(part(
                Status::Fail,
                format!(
                    "{} max_age {}s (expected {})",
                    s.name,
                    s.max_age_secs,
                    secs(age)
                ),
            ));
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use crate::evaluate::evaluate;
    use crate::evaluate::fixtures::*;
    use crate::verdict::Status;

    #[test]
    fn overlapping_and_missing_streams_fail_topology() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Some(Ok(Some(s))) = h[1].streams.get_mut(&c.streams.legacy.name) {
            s.subjects = vec!["athlete-ally.>".into()];
        }
        h[1].streams.insert(c.streams.dlq.name.clone(), Ok(None));
        let v = evaluate(&c, &h);
        assert_eq!(v[0].status, Status::Fail);
        assert!(v[0].evidence.contains("overlap"), "{}", v[0].evidence);
        assert!(
            v[0].evidence.contains("DLQ stream AA_DLQ does not exist"),
            "{}",
            v[0].evidence
        );
        // The DLQ's own criterion cannot judge a stream that is not there.
        assert_eq!(v[5].status, Status::Unknown);
    }
}
