//! What one soak and one cycle leave in the state database: the data the
//! timeline judges, the store keeps and the spike rule counts. Data only, so
//! that those three do not depend on each other.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::verdict::{CriterionId, InstanceId, Status, Verdict};

/// The soak's identity, recorded once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakMeta {
    /// Stable id.
    pub id: String,
    /// Name from the config when the soak began.
    pub name: String,
    /// T0.
    pub t0: DateTime<Utc>,
    /// Planned length.
    pub planned_secs: f64,
}

/// One cycle, compact: what the timeline needs and nothing more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// When the cycle's samples were taken (the scheduled tick).
    pub at: DateTime<Utc>,
    /// Raw status per criterion, in [`CriterionId::ALL`] order in memory;
    /// stored keyed by criterion id ([`by_criterion`]), so reordering the
    /// criteria never changes what saved history means.
    #[serde(with = "by_criterion")]
    pub status: Vec<Status>,
    /// Main value per criterion (same order and stored form).
    #[serde(with = "by_criterion")]
    pub value: Vec<Option<f64>>,
    /// Evidence per criterion, kept only when not passing (same order and
    /// stored form).
    #[serde(with = "by_criterion")]
    pub evidence: Vec<Option<String>>,
    /// Probe label -> error, for the probes that failed (the others were ok).
    pub probe_errors: BTreeMap<String, String>,
    /// Service process start, if seen.
    pub process_start: Option<f64>,
    /// Sum of all results of the message counter, if seen.
    pub processed_total: Option<f64>,
    /// Messages in the DLQ stream, if seen.
    pub dlq_messages: Option<u64>,
    /// Consumer lag, if seen.
    pub lag: Option<u64>,
    /// The DLQ stream's last sequence, if seen: every message ever written
    /// to it (what the spike rule counts; expiry does not lower it).
    #[serde(default)]
    pub dlq_last_seq: Option<u64>,
    /// The service's dead-letter counter (result = dlq), if seen.
    #[serde(default)]
    pub dlq_counter: Option<f64>,
    /// The consumers not passing a per-consumer criterion this cycle (a
    /// consumer not listed passed), worst first, at most
    /// [`MAX_MARKS_PER_CRITERION`] per criterion: a fleet of 1,000 healthy
    /// durables costs nothing here, a fleet of 1,000 failing ones a bounded
    /// amount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ConsumerMark>,
    /// The cumulative counts the soak's totals are folded from (records
    /// made before they were kept have none: their cycles add nothing).
    #[serde(default, skip_serializing_if = "CycleCounts::is_empty")]
    pub counts: CycleCounts,
}

impl CycleRecord {
    /// The raw status of criterion `id` this cycle (unknown when the
    /// record holds none for it).
    pub fn status_of(&self, id: CriterionId) -> Status {
        CriterionId::ALL
            .iter()
            .position(|c| *c == id)
            .and_then(|i| self.status.get(i).copied())
            .unwrap_or(Status::Unknown)
    }
}

/// `CriterionId::ALL` as it was while cycle records stored their criteria
/// by position: how such history is read. Never change it.
const POSITIONAL_ORDER: [CriterionId; 13] = [
    CriterionId::Topology,
    CriterionId::ConsumerConfig,
    CriterionId::ConsumerLag,
    CriterionId::Redeliveries,
    CriterionId::LegacyIdle,
    CriterionId::Dlq,
    CriterionId::Fallback,
    CriterionId::StreamPurity,
    CriterionId::SuccessRate,
    CriterionId::P95Latency,
    CriterionId::DbWrites,
    CriterionId::DbIntegrity,
    CriterionId::ServiceUp,
];

/// The stored form of a per-criterion column of [`CycleRecord`]: a map from
/// criterion id to the criterion's entry (`{"dlq": "fail", ...}`), read back
/// into [`CriterionId::ALL`] order. Also reads the positional list written
/// before (in [`POSITIONAL_ORDER`]). An id this build does not know is
/// skipped; a criterion the record lacks reads as [`Absent::absent`].
pub mod by_criterion {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::POSITIONAL_ORDER;
    use crate::verdict::{CriterionId, Status};

    /// What a criterion missing from a stored record holds.
    pub trait Absent: Sized {
        /// The entry of a criterion the record lacks.
        fn absent() -> Self;
        /// Whether the entry is left out when stored (it reads back as
        /// [`Absent::absent`]).
        fn skip(&self) -> bool {
            false
        }
    }

    impl Absent for Status {
        fn absent() -> Self {
            Status::Unknown
        }
    }

    impl<T> Absent for Option<T> {
        fn absent() -> Self {
            None
        }
        fn skip(&self) -> bool {
            self.is_none()
        }
    }

    /// Writes the column as a map keyed by criterion id.
    pub fn serialize<S: Serializer, T: Serialize + Absent>(
        column: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(
            CriterionId::ALL
                .iter()
                .zip(column)
                .filter(|(_, entry)| !entry.skip()),
        )
    }

    /// Reads the column, keyed or positional, in [`CriterionId::ALL`] order.
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de> + Absent>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(Column(PhantomData))
    }

    struct Column<T>(PhantomData<T>);

    fn in_order<T: Absent>(mut by_id: BTreeMap<CriterionId, T>) -> Vec<T> {
        CriterionId::ALL
            .iter()
            .map(|id| by_id.remove(id).unwrap_or_else(T::absent))
            .collect()
    }

    impl<'de, T: Deserialize<'de> + Absent> Visitor<'de> for Column<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map from criterion id, or a list in the former criteria order")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut by_id = BTreeMap::new();
            let mut ids = POSITIONAL_ORDER.iter();
            while let Some(entry) = seq.next_element::<T>()? {
                if let Some(id) = ids.next() {
                    by_id.insert(*id, entry);
                }
            }
            Ok(in_order(by_id))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
            let mut by_id = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                match CriterionId::ALL.iter().find(|id| id.as_str() == key) {
                    Some(id) => {
                        by_id.insert(*id, map.next_value::<T>()?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(in_order(by_id))
        }
    }
}

/// What a cycle saw of the soak's running counts, as the sources report
/// them: the service's counters (since it started: they begin again at
/// zero when it restarts), JetStream's sequences and the rows written since
/// the previous cycle. The soak's totals are the reset-aware fold of these
/// ([`crate::soak::totals`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CycleCounts {
    /// The message counter by result label value, since the service started.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub results: BTreeMap<String, f64>,
    /// Its successes, since the service started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<f64>,
    /// Its counted messages (every result but `uncounted_results`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted: Option<f64>,
    /// Deliveries to the service's named durables: the sum of their
    /// consumer sequences (redeliveries included; JetStream's own count,
    /// which a service restart does not reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_seq: Option<u64>,
    /// Rows written (created or updated) since the previous cycle's sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// The legacy stream's last sequence: every append ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_last_seq: Option<u64>,
}

impl CycleCounts {
    /// Nothing seen (no field worth storing).
    pub fn is_empty(&self) -> bool {
        *self == CycleCounts::default()
    }
}

/// The marks of one cycle's verdicts (see [`CycleRecord::consumers`]).
pub fn consumer_marks(verdicts: &[Verdict]) -> Vec<ConsumerMark> {
    let mut out = Vec::new();
    for v in verdicts.iter().filter(|v| v.id.per_consumer()) {
        let mut bad: Vec<_> = v
            .instances
            .iter()
            .filter(|i| !matches!(i.status, Status::Pass | Status::NotConfigured))
            .collect();
        bad.sort_by_key(|i| std::cmp::Reverse(i.status));
        out.extend(
            bad.into_iter()
                .take(MAX_MARKS_PER_CRITERION)
                .map(|i| ConsumerMark {
                    id: i.id.clone(),
                    stream: i.stream.clone(),
                    status: i.status,
                    value: i.value,
                    evidence: i.evidence.clone(),
                }),
        );
    }
    out
}

/// Most consumers marked per criterion in one cycle record.
pub const MAX_MARKS_PER_CRITERION: usize = 50;

/// One consumer not passing one per-consumer criterion in one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerMark {
    /// Stable id, stored as `consumer_lag/<durable>`.
    pub id: InstanceId,
    /// The stream it lives on.
    pub stream: String,
    /// Its raw status.
    pub status: Status,
    /// Its number (lag, redeliveries), if any.
    pub value: Option<f64>,
    /// Its evidence.
    pub evidence: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CriterionId::ALL` when the fixture was written. Written out apart
    /// from `POSITIONAL_ORDER` on purpose (the duplicate the tools flag):
    /// an edit of that list must make this test fail, not follow it.
    const ORDER_WHEN_WRITTEN: [CriterionId; 13] = [
        CriterionId::Topology,
        CriterionId::ConsumerConfig,
        CriterionId::ConsumerLag,
        CriterionId::Redeliveries,
        CriterionId::LegacyIdle,
        CriterionId::Dlq,
        CriterionId::Fallback,
        CriterionId::StreamPurity,
        CriterionId::SuccessRate,
        CriterionId::P95Latency,
        CriterionId::DbWrites,
        CriterionId::DbIntegrity,
        CriterionId::ServiceUp,
    ];

    /// A record as the state stores it (MessagePack with field names).
    fn encode(c: &CycleRecord) -> Vec<u8> {
        rmp_serde::to_vec_named(c).unwrap_or_default()
    }

    /// The record in `tests/fixtures/cycle_record_positional.msgpack`:
    /// each criterion has its own status, value and evidence, so a record
    /// read with its criteria shuffled cannot pass.
    fn fixture_record() -> CycleRecord {
        let at = DateTime::from_timestamp_millis(1_790_000_000_000).unwrap_or_default();
        let statuses = [
            Status::Pass,
            Status::Warn,
            Status::Fail,
            Status::Pending,
            Status::Unknown,
            Status::NotConfigured,
        ];
        // What criterion `id` held, by its position when the fixture was
        // written; the record in memory lists them in today's order.
        let pos = |id: &CriterionId| {
            ORDER_WHEN_WRITTEN
                .iter()
                .position(|o| o == id)
                .unwrap_or_default()
        };
        CycleRecord {
            at,
            status: CriterionId::ALL
                .iter()
                .map(|id| statuses[pos(id) % statuses.len()])
                .collect(),
            value: CriterionId::ALL
                .iter()
                .map(|id| (pos(id) % 3 != 2).then_some(pos(id) as f64 + 0.5))
                .collect(),
            evidence: CriterionId::ALL
                .iter()
                .map(|id| (pos(id) % 2 == 1).then(|| format!("evidence of {}", id.as_str())))
                .collect(),
            probe_errors: [("metrics".to_string(), "timeout after 5s".to_string())].into(),
            process_start: Some(1_789_999_000.0),
            processed_total: Some(1234.0),
            dlq_messages: Some(3),
            lag: Some(17),
            dlq_last_seq: Some(9),
            dlq_counter: Some(3.0),
            consumers: vec![ConsumerMark {
                id: "consumer_lag/orders".parse().expect("an instance id"),
                stream: "EVENTS".into(),
                status: Status::Fail,
                value: Some(17.0),
                evidence: "17 pending".into(),
            }],
            counts: CycleCounts {
                results: [("success".to_string(), 1200.0)].into(),
                success: Some(1200.0),
                counted: Some(1234.0),
                delivered_seq: Some(1240),
                rows: Some(40),
                legacy_last_seq: Some(77),
            },
        }
    }

    /// History written before records were keyed by criterion id (each
    /// criterion's status, value and evidence at its position in the
    /// criteria's order of that time) still reads as written.
    #[test]
    fn a_cycle_record_in_the_old_positional_form_still_reads() {
        let old = include_bytes!("../../tests/fixtures/cycle_record_positional.msgpack");
        let rec: CycleRecord = rmp_serde::from_slice(old).expect("the old record decodes");
        assert_eq!(rec, fixture_record());
        // Written again (in the form of the day), it reads the same.
        let again: CycleRecord = rmp_serde::from_slice(&encode(&rec)).expect("decodes");
        assert_eq!(again, rec);
        assert_eq!(rec.status_of(CriterionId::Topology), Status::Pass);
        assert_eq!(rec.status_of(CriterionId::ConsumerLag), Status::Fail);
        assert_eq!(rec.status_of(CriterionId::Dlq), Status::NotConfigured);
        // Its consumer mark's id, stored as text, reads as a typed id.
        assert_eq!(
            rec.consumers[0].id,
            InstanceId {
                criterion: CriterionId::ConsumerLag,
                consumer: crate::verdict::ConsumerKey::durable("orders"),
            }
        );
    }

    /// A consumer mark stores its id as the text it always had
    /// (`<criterion>/<durable>`, `<criterion>/<durable>@<stream>`), and a
    /// stored mark with such a text reads back as the typed id.
    #[test]
    fn a_consumer_marks_id_is_stored_as_its_old_text() {
        let rec = fixture_record();
        let raw: serde_json::Value = rmp_serde::from_slice(&encode(&rec)).expect("raw");
        assert_eq!(raw["consumers"][0]["id"], "consumer_lag/orders");

        let mut old = raw.clone();
        old["consumers"][0]["id"] = serde_json::json!("redeliveries/shared@AA_CORE_HOT");
        let back: CycleRecord =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap_or_default())
                .expect("decodes");
        let id = &back.consumers[0].id;
        assert_eq!(id.criterion, CriterionId::Redeliveries);
        assert_eq!(
            id.consumer,
            crate::verdict::ConsumerKey::on_stream("shared", "AA_CORE_HOT")
        );
        let again: serde_json::Value = rmp_serde::from_slice(&encode(&back)).expect("raw");
        assert_eq!(
            again["consumers"][0]["id"],
            "redeliveries/shared@AA_CORE_HOT"
        );
    }

    /// The stored form names each criterion; an id this build does not know
    /// is skipped and a criterion the record lacks reads as unknown.
    #[test]
    fn a_cycle_record_is_stored_keyed_by_criterion_id() {
        let rec = fixture_record();
        let raw: serde_json::Value = rmp_serde::from_slice(&encode(&rec)).expect("raw");
        assert_eq!(raw["status"]["consumer_lag"], "fail");
        assert_eq!(raw["status"]["dlq"], "not_configured");
        assert_eq!(raw["value"]["topology"], 0.5);
        assert!(raw["value"].get("consumer_lag").is_none());
        assert_eq!(
            raw["evidence"]["consumer_config"],
            "evidence of consumer_config"
        );
        assert!(raw["evidence"].get("topology").is_none());

        let mut edited = raw.clone();
        edited["status"] = serde_json::json!({"dlq": "fail", "retired_criterion": "pass"});
        let back: CycleRecord =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&edited).unwrap_or_default())
                .expect("decodes");
        assert_eq!(back.status.len(), CriterionId::ALL.len());
        assert_eq!(back.status_of(CriterionId::Dlq), Status::Fail);
        assert_eq!(back.status_of(CriterionId::Topology), Status::Unknown);
        assert_eq!(back.value, rec.value);
    }
}
