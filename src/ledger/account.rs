//! The ledger's pure accounting: no I/O and no clock of its own, so every
//! fate can be unit-tested and the 48 h bench runs without servers.
//!
//! What is kept is ranges and exceptions, never a structure per message:
//! everything up to [`LedgerProgress::reconciled_up_to`] has a final fate
//! and is only a count; the exceptions are the messages still in flight
//! (their row missing, their grace not over), the first unexplained ones,
//! and DLQ and advisory evidence not used yet. A healthy 48 h soak at 100
//! msg/s (17.3 M sequences) holds a few hundred bytes plus what is in
//! flight.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A row's key: one value per key column, in config order, as text.
pub type Key = Vec<String>;

/// Why no key could be read from a message: the service would not have
/// found one either, so such a message is expected in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KeyError {
    /// The payload is not JSON (and a key column reads the payload).
    #[error("payload is not JSON")]
    NotJson,
    /// A JSON pointer names nothing, or null.
    #[error("nothing at {0}")]
    Missing(String),
    /// A JSON pointer names an object or an array.
    #[error("not a scalar at {0}")]
    NotScalar(String),
    /// The header is absent.
    #[error("no header {0}")]
    NoHeader(String),
}

/// One message of the stream, as the reader found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Its stream sequence: the ledger's join key, fixed for life.
    pub seq: u64,
    /// When the server stored it.
    pub published: DateTime<Utc>,
    /// Its subject (skip predicates read it).
    pub subject: String,
    /// The row key taken from it, or why there is none.
    pub key: Result<Key, KeyError>,
}

/// The one fate of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Its row exists, written no earlier than its publish time (less the tolerance).
    Written,
    /// A DLQ message names it.
    DeadLettered,
    /// The server removed it (a limit or a purge) before it was acknowledged.
    Removed,
    /// A predicate says the service ignores it by design.
    Skipped,
    /// Its row is missing, but the ack was too recent to judge.
    InFlight,
    /// None of the above: a lost message.
    Unexplained,
}

impl Fate {
    /// The snake_case name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Written => "written",
            Fate::DeadLettered => "dead_lettered",
            Fate::Removed => "removed",
            Fate::Skipped => "skipped",
            Fate::InFlight => "in_flight",
            Fate::Unexplained => "unexplained",
        }
    }
}

/// Messages per final fate since the ledger's start (in flight is not
/// final: it is [`LedgerProgress::pending`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FateCounts {
    /// Rows found.
    pub written: u64,
    /// DLQ entries found.
    pub dead_lettered: u64,
    /// Removed by the server (advisory, or deleted before it was read).
    pub removed: u64,
    /// Of `removed`: deleted before the ledger could read it, so its
    /// subject is unknown (counted for any subject of the stream).
    pub removed_unread: u64,
    /// Ignored by design.
    pub skipped: u64,
    /// Lost.
    pub unexplained: u64,
}

/// A message whose row is missing, kept until its grace ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// When it was published.
    pub published: DateTime<Utc>,
    /// Its subject.
    pub subject: String,
    /// Its key (None: none could be read, see `key_error`).
    pub key: Option<Key>,
    /// Why no key could be read.
    pub key_error: Option<KeyError>,
    /// The cycle that first found its row missing (the ack floor had
    /// just passed it): the grace runs from here.
    pub first_missing: DateTime<Utc>,
}

/// One unexplained message, named for a person to look up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unexplained {
    /// Stream sequence (`soakwatch ledger explain <seq>`).
    pub seq: u64,
    /// Its key (None: unreadable, see `key_error`).
    pub key: Option<Key>,
    /// Why no key could be read.
    pub key_error: Option<KeyError>,
    /// When it was published.
    pub published: DateTime<Utc>,
    /// Its subject.
    pub subject: String,
    /// A MAX_DELIVERIES advisory named it: it reached max_deliver and
    /// never reached the DLQ.
    pub max_delivered: bool,
    /// The service terminated it (AckTerm) without a DLQ entry.
    pub terminated: bool,
}

/// What an advisory says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryKind {
    /// `MAX_DELIVERIES`: it reached max_deliver.
    MaxDeliveries,
    /// `MSG_TERMINATED` by the server itself (deliveries 0, or a reason
    /// saying the stream deleted it): a removal.
    RemovedByServer,
    /// `MSG_TERMINATED` by a client (AckTerm).
    Terminated,
    /// `MSG_NAKED`.
    Naked,
}

/// Messages (not deliveries) named by advisories, each counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvisoryCounts {
    /// Distinct messages that reached max_deliver.
    pub max_deliveries: u64,
    /// Distinct messages terminated by a client.
    pub terminated: u64,
    /// Distinct messages the server terminated as it removed them.
    pub removed_by_server: u64,
    /// Distinct messages nak'ed at least once.
    pub naked: u64,
    /// Advisories read (deliveries and duplicates included).
    pub advisories_read: u64,
}

/// Everything the ledger must keep across cycles and restarts: the
/// reconciled sequence, the counts, and the exceptions. Serializable, so
/// the state backend stores it and a restart (or a standby) resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerProgress {
    /// Every sequence up to this one has been read and judged.
    pub reconciled_up_to: u64,
    /// Final fates so far.
    pub counts: FateCounts,
    /// Messages in flight: row missing, grace running.
    pub pending: BTreeMap<u64, Pending>,
    /// The first unexplained messages (at most `show_unexplained`).
    pub unexplained_first: Vec<Unexplained>,
    /// DLQ entries naming an original sequence not yet judged, with the
    /// key they carry: when both are known both must match, so an entry
    /// from another stream sharing the DLQ (same sequence number, another
    /// message) explains nothing.
    pub dlq_by_seq: BTreeMap<u64, Option<Key>>,
    /// DLQ entries without a sequence, by key, each usable once.
    pub dlq_by_key: BTreeMap<Key, u32>,
    /// Last DLQ stream sequence read.
    pub dlq_cursor: u64,
    /// Sequences the server removed (advisories), not yet judged.
    pub removed_seqs: BTreeSet<u64>,
    /// Sequences that reached max_deliver, not yet judged.
    pub max_delivered: BTreeSet<u64>,
    /// Sequences a client terminated, not yet judged.
    pub terminated: BTreeSet<u64>,
    /// Sequences nak'ed, not yet judged (for counting each message once).
    pub naked: BTreeSet<u64>,
    /// Advisory counts, messages not deliveries.
    pub advisories: AdvisoryCounts,
    /// Last advisory stream sequence read.
    pub advisory_cursor: u64,
}

/// What the accounting needs from the config.
#[derive(Debug, Clone)]
pub struct Rules {
    /// A row counts when written at or after publish time minus this.
    pub tolerance: TimeDelta,
    /// A missing row is in flight this long after the cycle that first missed it.
    pub grace: TimeDelta,
    /// Subject patterns the service ignores.
    pub skip_subjects: Vec<String>,
    /// (key column index, prefix) the service ignores.
    pub skip_key_prefixes: Vec<(usize, String)>,
    /// How many unexplained messages are named.
    pub show_unexplained: usize,
}

impl Rules {
    /// Whether the service ignores this message by design.
    pub fn skips(&self, e: &StreamEntry) -> bool {
        self.skips_parts(&e.subject, e.key.as_ref().ok())
    }

    fn skips_parts(&self, subject: &str, key: Option<&Key>) -> bool {
        self.skip_subjects
            .iter()
            .any(|p| crate::subjects::subject_matches(p, subject))
            || key.is_some_and(|k| {
                self.skip_key_prefixes
                    .iter()
                    .any(|(i, pre)| k.get(*i).is_some_and(|v| v.starts_with(pre.as_str())))
            })
    }
}

/// One cycle's reading: the messages of `(reconciled_up_to, covered_to]`
/// on the consumer's filter, and what the stream says about its gaps.
#[derive(Debug, Clone, Copy)]
pub struct CycleInput<'a> {
    /// Read and judged through this sequence (≤ the ack floor).
    pub covered_to: u64,
    /// The messages read, ascending, all in the range.
    pub messages: &'a [StreamEntry],
    /// The stream's first sequence at reading: anything below is gone.
    pub stream_first_seq: u64,
    /// Sequences the stream reports deleted (interior deletes, purges by subject).
    pub deleted: &'a BTreeSet<u64>,
    /// Rows found, by key: their write time.
    pub rows: &'a HashMap<Key, DateTime<Utc>>,
}

/// What one DLQ message says about its original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqEntry {
    /// The original stream sequence, when the service recorded it.
    pub original_seq: Option<u64>,
    /// The key read from it.
    pub key: Option<Key>,
}

impl LedgerProgress {
    /// A ledger that starts judging at `start_seq`.
    pub fn starting_at(start_seq: u64) -> Self {
        LedgerProgress {
            reconciled_up_to: start_seq.saturating_sub(1),
            ..Default::default()
        }
    }

    /// Messages in flight now.
    pub fn in_flight(&self) -> u64 {
        self.pending.len() as u64
    }

    /// Unexplained messages beyond the named ones.
    pub fn unexplained_more(&self) -> u64 {
        self.counts
            .unexplained
            .saturating_sub(self.unexplained_first.len() as u64)
    }

    /// The keys a cycle must look up: those of the new messages that are
    /// not skipped, and those of the messages in flight.
    pub fn keys_to_look_up<'a>(&'a self, messages: &'a [StreamEntry], rules: &Rules) -> Vec<Key> {
        let mut seen = BTreeSet::new();
        let new = messages
            .iter()
            .filter(|e| !rules.skips(e))
            .filter_map(|e| e.key.as_ref().ok());
        let pending = self.pending.values().filter_map(|p| p.key.as_ref());
        new.chain(pending)
            .filter(|k| seen.insert(*k))
            .cloned()
            .collect()
    }

    /// Records a DLQ message read at DLQ sequence `dlq_seq`.
    pub fn add_dlq(&mut self, dlq_seq: u64, entry: DlqEntry) {
        self.dlq_cursor = self.dlq_cursor.max(dlq_seq);
        match (entry.original_seq, entry.key) {
            (Some(seq), key) => {
                self.dlq_by_seq.insert(seq, key);
            }
            (None, Some(key)) => *self.dlq_by_key.entry(key).or_insert(0) += 1,
            (None, None) => {}
        }
    }

    /// Records an advisory read at advisory-stream sequence `adv_seq`;
    /// each message is counted once per kind, however many deliveries.
    pub fn add_advisory(&mut self, adv_seq: u64, kind: AdvisoryKind, stream_seq: u64) {
        self.advisory_cursor = self.advisory_cursor.max(adv_seq);
        self.advisories.advisories_read += 1;
        let (set, count) = match kind {
            AdvisoryKind::MaxDeliveries => {
                (&mut self.max_delivered, &mut self.advisories.max_deliveries)
            }
            AdvisoryKind::RemovedByServer => (
                &mut self.removed_seqs,
                &mut self.advisories.removed_by_server,
            ),
            AdvisoryKind::Terminated => (&mut self.terminated, &mut self.advisories.terminated),
            AdvisoryKind::Naked => (&mut self.naked, &mut self.advisories.naked),
        };
        // A sequence already judged was counted when its advisory came
        // (the sets are pruned only past the reconciled sequence, and
        // advisories arrive before the ack floor passes their message).
        if set.insert(stream_seq) {
            *count += 1;
        }
    }

    /// Judges one cycle's reading; `now` is the cycle's time.
    pub fn apply(&mut self, input: CycleInput<'_>, rules: &Rules, now: DateTime<Utc>) {
        let from = self.reconciled_up_to;
        let to = input.covered_to.max(from);
        // Messages in flight first: their grace may be over.
        let pending = std::mem::take(&mut self.pending);
        for (seq, p) in pending {
            let entry = StreamEntry {
                seq,
                published: p.published,
                subject: p.subject,
                key: match (p.key, p.key_error) {
                    (Some(k), _) => Ok(k),
                    (None, Some(e)) => Err(e),
                    (None, None) => Err(KeyError::Missing(String::new())),
                },
            };
            self.judge(&entry, input.rows, rules, now, Some(p.first_missing));
        }
        let mut next = from + 1;
        for e in input
            .messages
            .iter()
            .filter(|e| e.seq > from && e.seq <= to)
        {
            self.count_gap(next, e.seq - 1, &input);
            self.judge(e, input.rows, rules, now, None);
            next = e.seq + 1;
        }
        if next <= to {
            self.count_gap(next, to, &input);
        }
        self.reconciled_up_to = to;
        self.prune();
    }

    /// Sequences `a..=b` the filtered read did not return: other subjects,
    /// or messages removed. Those the stream no longer has, or that an
    /// advisory says the server removed, are counted removed.
    fn count_gap(&mut self, a: u64, b: u64, input: &CycleInput<'_>) {
        if a > b {
            return;
        }
        let advised = self.removed_seqs.range(a..=b).count() as u64;
        let mut unread = 0;
        if a < input.stream_first_seq {
            let top = b.min(input.stream_first_seq - 1);
            unread += top - a + 1 - self.removed_seqs.range(a..=top).count() as u64;
        }
        let lo = a.max(input.stream_first_seq);
        if lo <= b {
            unread += input
                .deleted
                .range(lo..=b)
                .filter(|s| !self.removed_seqs.contains(s))
                .count() as u64;
        }
        self.counts.removed += unread + advised;
        self.counts.removed_unread += unread;
    }

    fn judge(
        &mut self,
        e: &StreamEntry,
        rows: &HashMap<Key, DateTime<Utc>>,
        rules: &Rules,
        now: DateTime<Utc>,
        first_missing: Option<DateTime<Utc>>,
    ) {
        let key = e.key.as_ref().ok();
        let fate = if rules.skips(e) {
            Fate::Skipped
        } else if self.take_dlq_seq(e.seq, key) {
            Fate::DeadLettered
        } else if key
            .and_then(|k| rows.get(k))
            .is_some_and(|w| *w >= e.published - rules.tolerance)
        {
            Fate::Written
        } else if key.is_some_and(|k| self.take_dlq_key(k)) {
            Fate::DeadLettered
        } else if self.removed_seqs.contains(&e.seq) {
            Fate::Removed
        } else {
            let first = first_missing.unwrap_or(now);
            if now - first < rules.grace {
                Fate::InFlight
            } else {
                Fate::Unexplained
            }
        };
        let c = &mut self.counts;
        match fate {
            Fate::Written => c.written += 1,
            Fate::DeadLettered => c.dead_lettered += 1,
            Fate::Removed => c.removed += 1,
            Fate::Skipped => c.skipped += 1,
            Fate::InFlight => {
                self.pending.insert(
                    e.seq,
                    Pending {
                        published: e.published,
                        subject: e.subject.clone(),
                        key: key.cloned(),
                        key_error: e.key.as_ref().err().cloned(),
                        first_missing: first_missing.unwrap_or(now),
                    },
                );
            }
            Fate::Unexplained => {
                c.unexplained += 1;
                if self.unexplained_first.len() < rules.show_unexplained {
                    self.unexplained_first.push(Unexplained {
                        seq: e.seq,
                        key: key.cloned(),
                        key_error: e.key.as_ref().err().cloned(),
                        published: e.published,
                        subject: e.subject.clone(),
                        max_delivered: self.max_delivered.contains(&e.seq),
                        terminated: self.terminated.contains(&e.seq),
                    });
                }
            }
        }
    }

    fn take_dlq_seq(&mut self, seq: u64, key: Option<&Key>) -> bool {
        let matches = match self.dlq_by_seq.get(&seq) {
            None => false,
            Some(None) => true,
            Some(Some(dk)) => key.is_none_or(|k| k == dk),
        };
        if matches {
            self.dlq_by_seq.remove(&seq);
        }
        matches
    }

    fn take_dlq_key(&mut self, k: &Key) -> bool {
        match self.dlq_by_key.get_mut(k) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.dlq_by_key.remove(k);
                true
            }
            None => false,
        }
    }

    /// Drops evidence about sequences that are judged and not in flight:
    /// nothing can use it any more, and the state stays small.
    fn prune(&mut self) {
        let keep_from = self
            .pending
            .keys()
            .next()
            .copied()
            .unwrap_or(u64::MAX)
            .min(self.reconciled_up_to.saturating_add(1));
        self.dlq_by_seq = self.dlq_by_seq.split_off(&keep_from);
        for set in [
            &mut self.removed_seqs,
            &mut self.max_delivered,
            &mut self.terminated,
            &mut self.naked,
        ] {
            *set = set.split_off(&keep_from);
        }
    }
}

/// The fate one message would get now, without changing anything: for
/// `soakwatch ledger explain`.
pub fn fate_of(
    progress: &LedgerProgress,
    e: &StreamEntry,
    row: Option<DateTime<Utc>>,
    dlq: bool,
    rules: &Rules,
) -> Fate {
    if rules.skips(e) {
        Fate::Skipped
    } else if dlq {
        Fate::DeadLettered
    } else if row.is_some_and(|w| w >= e.published - rules.tolerance) {
        Fate::Written
    } else if progress.removed_seqs.contains(&e.seq) {
        Fate::Removed
    } else if e.seq > progress.reconciled_up_to || progress.pending.contains_key(&e.seq) {
        Fate::InFlight
    } else {
        Fate::Unexplained
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_760_000_000 + s, 0)
            .single()
            .expect("time")
    }

    fn rules() -> Rules {
        Rules {
            tolerance: TimeDelta::seconds(2),
            grace: TimeDelta::seconds(80),
            skip_subjects: vec!["test.>".into()],
            skip_key_prefixes: vec![(0, "synthetic-".into())],
            show_unexplained: 2,
        }
    }

    fn msg(seq: u64, user: &str) -> StreamEntry {
        StreamEntry {
            seq,
            published: t(seq as i64),
            subject: "athlete-ally.hrv.raw-received".into(),
            key: Ok(vec![user.to_string(), "2025-10-02".into()]),
        }
    }

    fn key(user: &str) -> Key {
        vec![user.to_string(), "2025-10-02".into()]
    }

    struct Cycle<'a> {
        covered_to: u64,
        messages: &'a [StreamEntry],
        first: u64,
        deleted: BTreeSet<u64>,
        rows: HashMap<Key, DateTime<Utc>>,
    }

    impl Cycle<'_> {
        fn run(&self, p: &mut LedgerProgress, now: DateTime<Utc>) {
            p.apply(
                CycleInput {
                    covered_to: self.covered_to,
                    messages: self.messages,
                    stream_first_seq: self.first,
                    deleted: &self.deleted,
                    rows: &self.rows,
                },
                &rules(),
                now,
            );
        }
    }

    fn cycle(covered_to: u64, messages: &[StreamEntry]) -> Cycle<'_> {
        Cycle {
            covered_to,
            messages,
            first: 1,
            deleted: BTreeSet::new(),
            rows: HashMap::new(),
        }
    }

    #[test]
    fn a_row_written_after_publish_counts_and_an_older_one_does_not() {
        let ms = [msg(1, "a"), msg(2, "b")];
        let mut c = cycle(2, &ms);
        c.rows.insert(key("a"), t(1));
        // b's row predates its message by more than the tolerance: the
        // upsert for b never happened.
        c.rows.insert(key("b"), t(-10));
        let mut p = LedgerProgress::starting_at(1);
        c.run(&mut p, t(100));
        assert_eq!(p.counts.written, 1);
        assert_eq!(p.in_flight(), 1);
        // Within the tolerance it counts: clocks differ.
        c.rows.insert(key("b"), t(0));
        c.run(&mut p, t(101));
        assert_eq!(p.counts.written, 2);
        assert_eq!(p.in_flight(), 0);
        assert_eq!(p.reconciled_up_to, 2);
    }

    #[test]
    fn a_missing_row_is_in_flight_for_the_grace_then_unexplained() {
        let ms = [msg(5, "lost")];
        let mut p = LedgerProgress::starting_at(5);
        cycle(5, &ms).run(&mut p, t(100));
        assert_eq!((p.in_flight(), p.counts.unexplained), (1, 0));
        cycle(5, &[]).run(&mut p, t(179));
        assert_eq!((p.in_flight(), p.counts.unexplained), (1, 0));
        cycle(5, &[]).run(&mut p, t(180));
        assert_eq!((p.in_flight(), p.counts.unexplained), (0, 1));
        let u = &p.unexplained_first[0];
        assert_eq!(
            (u.seq, u.key.clone(), u.published),
            (5, Some(key("lost")), t(5))
        );
        assert!(!u.max_delivered);
    }

    #[test]
    fn a_row_arriving_within_the_grace_makes_it_written() {
        let ms = [msg(1, "late")];
        let mut p = LedgerProgress::starting_at(1);
        cycle(1, &ms).run(&mut p, t(10));
        let mut c = cycle(1, &[]);
        c.rows.insert(key("late"), t(20));
        c.run(&mut p, t(40));
        assert_eq!((p.counts.written, p.in_flight()), (1, 0));
    }

    #[test]
    fn dlq_entries_explain_by_sequence_and_by_key_each_once() {
        let ms = [msg(1, "poison"), msg(2, "dup"), msg(3, "dup")];
        let mut p = LedgerProgress::starting_at(1);
        p.add_dlq(
            10,
            DlqEntry {
                original_seq: Some(1),
                key: Some(key("poison")),
            },
        );
        p.add_dlq(
            11,
            DlqEntry {
                original_seq: None,
                key: Some(key("dup")),
            },
        );
        assert_eq!(p.dlq_cursor, 11);
        cycle(3, &ms).run(&mut p, t(500));
        assert_eq!(p.counts.dead_lettered, 2);
        // One DLQ entry by key explains one message, not every message of that key.
        assert_eq!(p.in_flight(), 1);
        assert!(p.dlq_by_key.is_empty() && p.dlq_by_seq.is_empty());
    }

    #[test]
    fn a_dlq_entry_of_another_stream_with_the_same_sequence_explains_nothing() {
        let ms = [msg(1, "ours")];
        let mut p = LedgerProgress::starting_at(1);
        p.add_dlq(
            3,
            DlqEntry {
                original_seq: Some(1),
                key: Some(key("someone-else")),
            },
        );
        cycle(1, &ms).run(&mut p, t(0));
        cycle(1, &[]).run(&mut p, t(1000));
        assert_eq!((p.counts.dead_lettered, p.counts.unexplained), (0, 1));
    }

    #[test]
    fn removals_by_advisory_and_by_the_stream_are_counted() {
        // Read: 4 and 9. Gaps: 1..=3 (below first_seq 3: 1, 2 gone; 3 off
        // filter), 5..=8 (6 deleted; 7 removed by advisory; 5, 8 other subjects).
        let ms = [msg(4, "a"), msg(9, "b")];
        let mut c = cycle(9, &ms);
        c.first = 3;
        c.deleted = [6].into();
        c.rows.insert(key("a"), t(10));
        c.rows.insert(key("b"), t(10));
        let mut p = LedgerProgress::starting_at(1);
        p.add_advisory(1, AdvisoryKind::RemovedByServer, 7);
        c.run(&mut p, t(10));
        assert_eq!(p.counts.removed, 4);
        assert_eq!(p.counts.removed_unread, 3);
        assert_eq!(p.counts.written, 2);
        assert!(p.removed_seqs.is_empty(), "pruned once judged");
    }

    #[test]
    fn a_message_read_and_removed_by_the_server_is_removed() {
        let ms = [msg(2, "x")];
        let mut p = LedgerProgress::starting_at(2);
        p.add_advisory(1, AdvisoryKind::RemovedByServer, 2);
        cycle(2, &ms).run(&mut p, t(1000));
        assert_eq!((p.counts.removed, p.counts.unexplained), (1, 0));
    }

    #[test]
    fn skips_by_subject_and_by_key_prefix() {
        let mut by_subject = msg(1, "a");
        by_subject.subject = "test.hrv".into();
        let ms = [by_subject, msg(2, "synthetic-7")];
        let mut p = LedgerProgress::starting_at(1);
        cycle(2, &ms).run(&mut p, t(1000));
        assert_eq!(p.counts.skipped, 2);
        assert!(p.keys_to_look_up(&ms, &rules()).is_empty());
    }

    #[test]
    fn max_delivered_without_dlq_is_named_lost_and_advisories_count_messages() {
        let ms = [msg(3, "poison")];
        let mut p = LedgerProgress::starting_at(3);
        for d in 0..5 {
            p.add_advisory(d + 1, AdvisoryKind::Naked, 3);
        }
        p.add_advisory(6, AdvisoryKind::MaxDeliveries, 3);
        p.add_advisory(7, AdvisoryKind::MaxDeliveries, 3);
        assert_eq!(p.advisories.max_deliveries, 1);
        assert_eq!(p.advisories.naked, 1);
        assert_eq!(p.advisories.advisories_read, 7);
        assert_eq!(p.advisory_cursor, 7);
        cycle(3, &ms).run(&mut p, t(10));
        cycle(3, &[]).run(&mut p, t(1000));
        assert_eq!(p.counts.unexplained, 1);
        assert!(p.unexplained_first[0].max_delivered);
        assert!(p.max_delivered.is_empty() && p.naked.is_empty());
    }

    #[test]
    fn unexplained_are_named_up_to_the_limit_then_counted() {
        let ms: Vec<StreamEntry> = (1..=5).map(|s| msg(s, &format!("u{s}"))).collect();
        let mut p = LedgerProgress::starting_at(1);
        cycle(5, &ms).run(&mut p, t(0));
        cycle(5, &[]).run(&mut p, t(1000));
        assert_eq!(p.counts.unexplained, 5);
        assert_eq!(p.unexplained_first.len(), 2);
        assert_eq!(p.unexplained_more(), 3);
        assert_eq!(p.unexplained_first[0].seq, 1);
    }

    #[test]
    fn a_key_error_is_judged_like_a_missing_row_and_says_why() {
        let mut bad = msg(1, "x");
        bad.key = Err(KeyError::NotJson);
        let mut p = LedgerProgress::starting_at(1);
        cycle(1, &[bad.clone()]).run(&mut p, t(0));
        cycle(1, &[]).run(&mut p, t(1000));
        assert_eq!(p.unexplained_first[0].key_error, Some(KeyError::NotJson));
        // The same, dead-lettered by sequence: explained.
        let mut q = LedgerProgress::starting_at(1);
        q.add_dlq(
            1,
            DlqEntry {
                original_seq: Some(1),
                key: None,
            },
        );
        cycle(1, &[bad]).run(&mut q, t(0));
        assert_eq!(q.counts.dead_lettered, 1);
    }

    #[test]
    fn progress_survives_a_restart_in_json_and_msgpack() {
        let ms = [msg(1, "a"), msg(2, "b")];
        let mut p = LedgerProgress::starting_at(1);
        p.add_dlq(
            4,
            DlqEntry {
                original_seq: Some(9),
                key: None,
            },
        );
        cycle(2, &ms).run(&mut p, t(0));
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(
            serde_json::from_str::<LedgerProgress>(&json).expect("back"),
            p
        );
        let mp = rmp_serde::to_vec_named(&p).expect("msgpack");
        assert_eq!(
            rmp_serde::from_slice::<LedgerProgress>(&mp).expect("back"),
            p
        );
    }

    #[test]
    fn the_explained_fate_matches_the_judged_one() {
        let e = msg(4, "a");
        let p = LedgerProgress::starting_at(1);
        assert_eq!(fate_of(&p, &e, Some(t(4)), false, &rules()), Fate::Written);
        assert_eq!(fate_of(&p, &e, None, true, &rules()), Fate::DeadLettered);
        assert_eq!(fate_of(&p, &e, None, false, &rules()), Fate::InFlight);
        let mut done = p.clone();
        done.reconciled_up_to = 10;
        assert_eq!(fate_of(&done, &e, None, false, &rules()), Fate::Unexplained);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// One sequence's truth: 0 written, 1 DLQ, 2 removed by advisory,
        /// 3 skipped, 4 lost, 5 other subject (not read), 6 deleted.
        fn world(
            fates: &[u8],
        ) -> (
            Vec<StreamEntry>,
            HashMap<Key, DateTime<Utc>>,
            BTreeSet<u64>,
            LedgerProgress,
        ) {
            let mut msgs = Vec::new();
            let mut rows = HashMap::new();
            let mut deleted = BTreeSet::new();
            let mut p = LedgerProgress::starting_at(1);
            for (i, f) in fates.iter().enumerate() {
                let seq = i as u64 + 1;
                let mut m = msg(seq, &format!("u{seq}"));
                match f {
                    0 => {
                        rows.insert(key(&format!("u{seq}")), t(seq as i64));
                    }
                    1 => p.add_dlq(
                        seq,
                        DlqEntry {
                            original_seq: Some(seq),
                            key: None,
                        },
                    ),
                    2 => p.add_advisory(seq, AdvisoryKind::RemovedByServer, seq),
                    3 => m.subject = "test.x".into(),
                    5 => continue,
                    6 => {
                        deleted.insert(seq);
                        continue;
                    }
                    _ => {}
                }
                msgs.push(m);
            }
            (msgs, rows, deleted, p)
        }

        proptest! {
            #[test]
            fn every_message_gets_exactly_its_fate_however_the_reads_are_cut(
                fates in proptest::collection::vec(0u8..7, 0..200),
                cuts in proptest::collection::vec(1usize..50, 1..10),
            ) {
                let n = fates.len() as u64;
                let (msgs, rows, deleted, mut p) = world(&fates);
                let mut covered = 0u64;
                let mut ci = 0;
                while covered < n {
                    let to = (covered + cuts[ci % cuts.len()] as u64).min(n);
                    ci += 1;
                    let part: Vec<StreamEntry> = msgs.iter().filter(|m| m.seq > covered && m.seq <= to).cloned().collect();
                    p.apply(CycleInput { covered_to: to, messages: &part, stream_first_seq: 1, deleted: &deleted, rows: &rows }, &rules(), t(0));
                    covered = to;
                }
                p.apply(CycleInput { covered_to: n, messages: &[], stream_first_seq: 1, deleted: &deleted, rows: &rows }, &rules(), t(1000));
                let count = |k: u8| fates.iter().filter(|f| **f == k).count() as u64;
                prop_assert_eq!(p.counts.written, count(0));
                prop_assert_eq!(p.counts.dead_lettered, count(1));
                prop_assert_eq!(p.counts.removed, count(2) + count(6));
                prop_assert_eq!(p.counts.removed_unread, count(6));
                prop_assert_eq!(p.counts.skipped, count(3));
                prop_assert_eq!(p.counts.unexplained, count(4));
                prop_assert_eq!(p.in_flight(), 0);
                prop_assert_eq!(p.reconciled_up_to, n);
                let lost: Vec<u64> = fates.iter().enumerate().filter(|(_, f)| **f == 4).map(|(i, _)| i as u64 + 1).take(2).collect();
                prop_assert_eq!(p.unexplained_first.iter().map(|u| u.seq).collect::<Vec<_>>(), lost);
                prop_assert!(p.dlq_by_seq.is_empty() && p.removed_seqs.is_empty());
            }
        }
    }
}
