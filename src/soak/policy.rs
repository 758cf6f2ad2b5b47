//! How a soak's history is judged: the `[watch]` settings the timeline
//! needs (interval, gaps, `for` holds, recovery, coverage, the DLQ spike
//! rule), apart from the fold that applies them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::soak::dlq_spike::SpikeRule;
use crate::verdict::CriterionId;

/// How history is judged; from `[watch]` in checks.toml.
#[derive(Debug, Clone)]
pub struct SoakPolicy {
    /// Expected time between samples.
    pub interval: Duration,
    /// A longer gap between samples is a gap: unknown for its length.
    pub max_gap: Duration,
    /// A raw failure must hold this long before it counts, per criterion.
    pub fail_for: BTreeMap<CriterionId, Duration>,
    /// A failing criterion must pass this long before it recovers.
    pub recover_after: Duration,
    /// Below this share of judged time a criterion (and the soak) is unknown.
    pub min_coverage: f64,
    /// More than this many messages dead-lettered within the trailing window
    /// fails `dlq` at once (no `for`).
    pub dlq_spike: SpikeRule,
    /// Every probe label, so coverage lists probes that never failed too.
    pub probe_labels: Vec<String>,
    /// `success_rate`'s threshold, which the whole soak's ratio must meet
    /// too (a failing stretch before a service restart is not forgotten
    /// when its counters begin again at zero). 0: not judged.
    pub success_rate_min: f64,
}

impl SoakPolicy {
    /// The `for` duration of a criterion (zero when none is set).
    pub fn fail_for(&self, id: CriterionId) -> Duration {
        self.fail_for.get(&id).copied().unwrap_or(Duration::ZERO)
    }
}
