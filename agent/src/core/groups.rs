//! Consumer groups, decided: who is in a group, what each member should
//! consume (a sticky, balanced target assignment), and how each member
//! moves to its target without two members ever consuming one partition at
//! once. A plain state machine on the time it is given; the coordinator in
//! `groups/` drives it and stores its record when it changes.
//!
//! In the spirit of Kafka's KIP-848:
//! - the group epoch moves on every change of membership, subscription or
//!   subscribed partition count, and a new target is computed for it;
//! - each member heartbeats with its member epoch and what it owns; the
//!   answer is what it may consume now. A partition leaves a member first
//!   (`revoking` until the member says it no longer owns it) and only then
//!   goes to its new member;
//! - a member's epoch is the assignment epoch it works towards. A member
//!   whose epoch is neither its current nor its previous one (it was
//!   removed, or a coordinator lost it) is fenced and rejoins.
//!
//! Members' session deadlines live here but are not stored: a heartbeat
//! that changes nothing changes nothing that must be written.

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use crate::error::GroupError;
pub use silt_metadata::catalog::{GroupRecord, MemberRecord, TopicPartition};

/// Join with this member epoch.
pub const JOIN: i64 = 0;
/// Leave with this member epoch.
pub const LEAVE: i64 = -1;

/// What a member says in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub member_id: String,
    /// [`JOIN`], [`LEAVE`], or the epoch of the member's last answer.
    pub member_epoch: i64,
    pub host: String,
    /// Its subscription; None when unchanged since its last heartbeat.
    pub topics: Option<Vec<String>>,
    /// What it consumes now; None when it is what it was last given.
    pub owned: Option<Vec<TopicPartition>>,
    pub session_timeout_ms: i64,
}

/// What a member is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub member_epoch: i64,
    /// What it may consume now; it must stop consuming anything else.
    pub assigned: Vec<TopicPartition>,
    /// Whether it holds its whole target (otherwise it should ask again soon).
    pub settled: bool,
}

/// A group's state as its coordinator holds it.
#[derive(Debug, Clone)]
pub struct Group {
    record: GroupRecord,
    /// Member id -> when its session ends.
    deadlines: HashMap<String, i64>,
}

/// Where a group stands, for `group describe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No members.
    Empty,
    /// Partitions are moving between members.
    Reconciling,
    /// Every member holds its target.
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::Reconciling => "Reconciling",
            State::Stable => "Stable",
        }
    }
}

impl Group {
    /// A group as stored; every member's session starts at `now`.
    pub fn load(record: GroupRecord, now: i64) -> Group {
        let deadlines = record.members.iter().map(|m| (m.id.clone(), now + m.session_timeout_ms)).collect();
        Group { record, deadlines }
    }

    pub fn record(&self) -> &GroupRecord {
        &self.record
    }

    pub fn is_empty(&self) -> bool {
        self.record.members.is_empty()
    }

    pub fn state(&self) -> State {
        if self.record.members.is_empty() {
            State::Empty
        } else if self.record.epoch == self.record.assignment_epoch
            && self.record.members.iter().all(|m| m.revoking.is_empty() && same(&m.assigned, &m.target))
        {
            State::Stable
        } else {
            State::Reconciling
        }
    }

    fn member(&self, id: &str) -> Option<&MemberRecord> {
        self.record.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut MemberRecord> {
        self.record.members.iter_mut().find(|m| m.id == id)
    }

    fn remove(&mut self, id: &str) -> bool {
        let before = self.record.members.len();
        self.record.members.retain(|m| m.id != id);
        self.deadlines.remove(id);
        let removed = self.record.members.len() != before;
        if removed {
            self.record.epoch += 1;
        }
        removed
    }

    /// Takes in a heartbeat at `now`. `partitions_of` says how many
    /// partitions a topic has (None: no such topic). Returns the answer and
    /// whether the stored record changed.
    pub fn heartbeat(
        &mut self,
        hb: &Heartbeat,
        partitions_of: &dyn Fn(&str) -> Option<u32>,
        now: i64,
    ) -> Result<(Answer, bool), GroupError> {
        let before = self.record.clone();
        let answer = self.apply(hb, partitions_of, now)?;
        let changed = self.record != before;
        Ok((answer, changed))
    }

    fn apply(
        &mut self,
        hb: &Heartbeat,
        partitions_of: &dyn Fn(&str) -> Option<u32>,
        now: i64,
    ) -> Result<Answer, GroupError> {
        let id = hb.member_id.as_str();
        match hb.member_epoch {
            LEAVE => {
                self.remove(id);
                return Ok(Answer { member_epoch: LEAVE, assigned: Vec::new(), settled: true });
            }
            JOIN => {
                let topics = hb.topics.clone().ok_or(GroupError::NoSubscription)?;
                // A member joining again starts over: what it had is free.
                self.remove(id);
                let mut topics = topics;
                topics.sort();
                topics.dedup();
                self.record.members.push(MemberRecord {
                    id: id.to_string(),
                    epoch: 0,
                    previous_epoch: 0,
                    host: hb.host.clone(),
                    session_timeout_ms: hb.session_timeout_ms,
                    topics,
                    ..Default::default()
                });
                self.record.members.sort_by(|a, b| a.id.cmp(&b.id));
                self.record.epoch += 1;
            }
            got => {
                let m = self.member(id).ok_or_else(|| GroupError::UnknownMember(id.to_string()))?;
                if got != m.epoch as i64 && got != m.previous_epoch as i64 {
                    return Err(GroupError::FencedMemberEpoch { member: id.to_string(), got, current: m.epoch });
                }
                let mut changed_subscription = false;
                let m = self.member_mut(id).expect("found above");
                if let Some(mut topics) = hb.topics.clone() {
                    topics.sort();
                    topics.dedup();
                    if topics != m.topics {
                        m.topics = topics;
                        changed_subscription = true;
                    }
                }
                m.session_timeout_ms = hb.session_timeout_ms;
                m.host.clone_from(&hb.host);
                if changed_subscription {
                    self.record.epoch += 1;
                }
            }
        }
        self.deadlines.insert(id.to_string(), now + hb.session_timeout_ms);
        // Subscribed topics that gained (or lost) partitions move the epoch too.
        let counts = self.counts(partitions_of);
        if counts != self.record.partitions && self.record.assignment_epoch == self.record.epoch {
            self.record.epoch += 1;
        }
        if self.record.assignment_epoch < self.record.epoch {
            self.retarget(counts);
        }
        Ok(self.reconcile(id, hb.owned.as_deref()))
    }

    /// Partition counts of every subscribed topic, by name.
    fn counts(&self, partitions_of: &dyn Fn(&str) -> Option<u32>) -> Vec<(String, u32)> {
        let topics: BTreeSet<&str> =
            self.record.members.iter().flat_map(|m| m.topics.iter().map(String::as_str)).collect();
        topics.into_iter().map(|t| (t.to_string(), partitions_of(t).unwrap_or(0))).collect()
    }

    /// Computes the target assignment for the current epoch.
    fn retarget(&mut self, counts: Vec<(String, u32)>) {
        let members: Vec<(&str, &[String], &[TopicPartition])> =
            self.record.members.iter().map(|m| (m.id.as_str(), m.topics.as_slice(), m.target.as_slice())).collect();
        let mut target = assign(&members, &counts);
        for m in &mut self.record.members {
            m.target = target.remove(&m.id).unwrap_or_default();
        }
        self.record.partitions = counts;
        self.record.assignment_epoch = self.record.epoch;
    }

    /// Moves member `id` towards its target as far as others allow, and
    /// says what it may consume now.
    fn reconcile(&mut self, id: &str, owned: Option<&[TopicPartition]>) -> Answer {
        // Partitions some other member still holds or is giving up.
        let taken: BTreeSet<TopicPartition> = self
            .record
            .members
            .iter()
            .filter(|m| m.id != id)
            .flat_map(|m| m.assigned.iter().chain(&m.revoking).cloned())
            .collect();
        let assignment_epoch = self.record.assignment_epoch;
        let m = self.member_mut(id).expect("the member is in the group");
        let owned: BTreeSet<TopicPartition> = match owned {
            Some(o) => o.iter().cloned().collect(),
            None => m.assigned.iter().chain(&m.revoking).cloned().collect(),
        };
        let target: BTreeSet<TopicPartition> = m.target.iter().cloned().collect();
        // Given up, as the member says: no longer revoking.
        m.revoking.retain(|p| owned.contains(p));
        // No longer in its target: revoke (unless it has let go already).
        let (keep, revoke): (Vec<_>, Vec<_>) = m.assigned.drain(..).partition(|p| target.contains(p));
        m.assigned = keep;
        for p in revoke.into_iter().filter(|p| owned.contains(p)) {
            if !m.revoking.contains(&p) {
                m.revoking.push(p);
            }
        }
        // Gained: what nobody else holds any more.
        for p in &target {
            if !m.assigned.contains(p) && !taken.contains(p) && !m.revoking.contains(p) {
                m.assigned.push(p.clone());
            }
        }
        m.assigned.sort();
        m.revoking.sort();
        let settled = m.revoking.is_empty() && same(&m.assigned, &m.target);
        // The member works towards the latest target: it takes that epoch
        // (never 0 once joined, since a join moves the group epoch).
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
        Answer { member_epoch: m.epoch as i64, assigned: m.assigned.clone(), settled }
    }

    /// Removes members whose session ended before `now`; returns them.
    pub fn expire(&mut self, now: i64) -> Vec<String> {
        let gone: Vec<String> = self.deadlines.iter().filter(|(_, d)| **d <= now).map(|(id, _)| id.clone()).collect();
        for id in &gone {
            self.remove(id);
        }
        gone
    }

    /// Whether member `id` at `epoch` may commit offsets of `partitions`:
    /// it must be in the group at that epoch and hold them (or be giving
    /// them up). A removed member cannot overwrite its successor's offsets.
    pub fn check_commit(&self, id: &str, epoch: i64, partitions: &[TopicPartition]) -> Result<(), GroupError> {
        let m = self.member(id).ok_or_else(|| GroupError::UnknownMember(id.to_string()))?;
        if epoch != m.epoch as i64 && epoch != m.previous_epoch as i64 {
            return Err(GroupError::FencedMemberEpoch { member: id.to_string(), got: epoch, current: m.epoch });
        }
        for (topic, partition) in partitions {
            let held = |p: &TopicPartition| p.0 == *topic && p.1 == *partition;
            if !m.assigned.iter().any(held) && !m.revoking.iter().any(held) {
                return Err(GroupError::NotAssigned {
                    member: id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                });
            }
        }
        Ok(())
    }
}

/// Whether two lists hold the same partitions, in any order.
pub fn same(a: &[TopicPartition], b: &[TopicPartition]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// The target assignment: every partition of every subscribed topic to one
/// member subscribed to it. Sticky: a member keeps what it was given before
/// while that keeps the counts within one of each other; balanced: counts
/// differ by at most one when all members subscribe to the same topics (as
/// close as subscriptions allow otherwise). Deterministic.
///
/// `members`: (id, subscribed topics, previous target).
pub fn assign(
    members: &[(&str, &[String], &[TopicPartition])],
    counts: &[(String, u32)],
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> =
        members.iter().map(|(id, _, _)| (id.to_string(), BTreeSet::new())).collect();
    if members.is_empty() {
        return BTreeMap::new();
    }
    let subscribed =
        |id: &str, topic: &str| members.iter().any(|(m, topics, _)| *m == id && topics.iter().any(|t| t == topic));
    let all: Vec<TopicPartition> = counts.iter().flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p))).collect();
    let exists: BTreeSet<&TopicPartition> = all.iter().collect();
    // Keep what each had, while it is still there and subscribed.
    let mut owner: HashMap<TopicPartition, String> = HashMap::new();
    for (id, _, previous) in members {
        for p in previous.iter() {
            if exists.contains(p) && subscribed(id, &p.0) && !owner.contains_key(p) {
                owner.insert(p.clone(), id.to_string());
                out.get_mut(*id).expect("listed").insert(p.clone());
            }
        }
    }
    // The rest, each to the least loaded member that subscribes to it.
    for p in &all {
        if owner.contains_key(p) {
            continue;
        }
        let least =
            out.iter().filter(|(id, _)| subscribed(id, &p.0)).min_by_key(|(id, held)| (held.len(), (*id).clone()));
        if let Some((id, _)) = least {
            let id = id.clone();
            owner.insert(p.clone(), id.clone());
            out.get_mut(&id).expect("listed").insert(p.clone());
        }
    }
    // Even out: move from the most loaded to the least loaded while they
    // differ by more than one and the latter subscribes to what moves.
    loop {
        let mut by_load: Vec<(&String, usize)> = out.iter().map(|(id, held)| (id, held.len())).collect();
        by_load.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut step = None;
        'find: for (from, n_from) in &by_load {
            for (to, n_to) in by_load.iter().rev() {
                if n_to + 1 >= *n_from {
                    break;
                }
                // The last partition, so what is kept stays the lowest.
                if let Some(p) = out[*from].iter().rev().find(|p| subscribed(to, &p.0)) {
                    step = Some(((*from).clone(), (*to).clone(), p.clone()));
                    break 'find;
                }
            }
        }
        let Some((from, to, p)) = step else { break };
        out.get_mut(&from).expect("listed").remove(&p);
        out.get_mut(&to).expect("listed").insert(p);
    }
    out.into_iter().map(|(id, held)| (id, held.into_iter().collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: u32) -> TopicPartition {
        (t.to_string(), p)
    }

    fn counts(n: u32) -> impl Fn(&str) -> Option<u32> {
        move |t| (t == "t").then_some(n)
    }

    fn join(id: &str) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: JOIN,
            host: "h".into(),
            topics: Some(vec!["t".into()]),
            owned: Some(Vec::new()),
            session_timeout_ms: 1000,
        }
    }

    fn beat(id: &str, epoch: i64, owned: &[TopicPartition]) -> Heartbeat {
        Heartbeat { member_epoch: epoch, topics: None, owned: Some(owned.to_vec()), ..join(id) }
    }

    /// Heartbeats a member with what it was last told until nothing moves;
    /// returns its last answer.
    fn settle(g: &mut Group, id: &str, mut last: Answer, n: u32, now: i64) -> Answer {
        for _ in 0..4 {
            last = g.heartbeat(&beat(id, last.member_epoch, &last.assigned), &counts(n), now).unwrap().0;
        }
        last
    }

    #[test]
    fn assignment_is_balanced_and_sticky() {
        let topics = vec!["t".to_string()];
        let none: Vec<TopicPartition> = Vec::new();
        let a = assign(&[("a", &topics, &none), ("b", &topics, &none), ("c", &topics, &none)], &[("t".into(), 7)]);
        let sizes: Vec<usize> = a.values().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{a:?}");
        // d joins: a, b and c each keep what they can; d gets a share from them.
        let with_d = assign(
            &[("a", &topics, &a["a"]), ("b", &topics, &a["b"]), ("c", &topics, &a["c"]), ("d", &topics, &none)],
            &[("t".into(), 7)],
        );
        for m in ["a", "b", "c"] {
            assert!(with_d[m].iter().all(|p| a[m].contains(p)), "{m} only lost partitions");
        }
        let sizes: Vec<usize> = with_d.values().map(Vec::len).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{with_d:?}");
        // b leaves: the others keep theirs and split b's.
        let without_b = assign(&[("a", &topics, &a["a"]), ("c", &topics, &a["c"])], &[("t".into(), 7)]);
        assert!(a["a"].iter().all(|p| without_b["a"].contains(p)));
        assert!(a["c"].iter().all(|p| without_b["c"].contains(p)));
    }

    #[test]
    fn members_only_get_topics_they_subscribe_to() {
        let (t, u, both) = (vec!["t".to_string()], vec!["u".to_string()], vec!["t".to_string(), "u".to_string()]);
        let none: Vec<TopicPartition> = Vec::new();
        let a = assign(&[("a", &t, &none), ("b", &u, &none), ("c", &both, &none)], &[("t".into(), 4), ("u".into(), 2)]);
        assert!(a["a"].iter().all(|p| p.0 == "t"));
        assert!(a["b"].iter().all(|p| p.0 == "u"));
        assert_eq!(a.values().map(Vec::len).sum::<usize>(), 6);
    }

    #[test]
    fn a_partition_moves_only_after_its_holder_gives_it_up() {
        let mut g = Group::load(GroupRecord::default(), 0);
        let (a0, changed) = g.heartbeat(&join("a"), &counts(4), 0).unwrap();
        assert!(changed);
        assert_eq!(a0.assigned.len(), 4, "a lone member takes everything");
        let a = settle(&mut g, "a", a0, 4, 0);
        assert!(a.settled && g.state() == State::Stable);
        // b joins: b gets nothing while a still holds it all.
        let b = g.heartbeat(&join("b"), &counts(4), 10).unwrap().0;
        assert!(b.assigned.is_empty() && !b.settled);
        assert_eq!(g.state(), State::Reconciling);
        // a is told to give two up; they are not b's until a says so.
        let a1 = g.heartbeat(&beat("a", a.member_epoch, &a.assigned), &counts(4), 20).unwrap().0;
        assert_eq!(a1.assigned.len(), 2);
        let b1 = g.heartbeat(&beat("b", b.member_epoch, &[]), &counts(4), 30).unwrap().0;
        assert!(b1.assigned.is_empty(), "a has not let go yet");
        // a commits, lets go, and says so; then b gets them.
        let a2 = g.heartbeat(&beat("a", a1.member_epoch, &a1.assigned), &counts(4), 40).unwrap().0;
        assert!(a2.settled);
        let b2 = g.heartbeat(&beat("b", b1.member_epoch, &[]), &counts(4), 50).unwrap().0;
        assert_eq!(b2.assigned.len(), 2);
        assert!(b2.settled);
        let both: BTreeSet<TopicPartition> = a2.assigned.iter().chain(&b2.assigned).cloned().collect();
        assert_eq!(both.len(), 4, "disjoint, and together every partition");
        assert_eq!(g.state(), State::Stable);
    }

    #[test]
    fn a_leave_frees_partitions_at_once_and_a_silent_member_expires() {
        let mut g = Group::load(GroupRecord::default(), 0);
        let a = g.heartbeat(&join("a"), &counts(2), 0).unwrap().0;
        let a = settle(&mut g, "a", a, 2, 0);
        let b = g.heartbeat(&join("b"), &counts(2), 0).unwrap().0;
        let a = settle(&mut g, "a", a, 2, 0);
        let b = settle(&mut g, "b", b, 2, 0);
        assert_eq!((a.assigned.len(), b.assigned.len()), (1, 1));
        // b leaves: a gets its partition at its next heartbeat.
        g.heartbeat(&beat("b", LEAVE, &[]), &counts(2), 100).unwrap();
        let a = g.heartbeat(&beat("a", a.member_epoch, &a.assigned), &counts(2), 100).unwrap().0;
        assert_eq!(a.assigned, vec![tp("t", 0), tp("t", 1)]);
        // c joins, then goes silent: removed once its session ends.
        g.heartbeat(&join("c"), &counts(2), 200).unwrap();
        assert!(g.expire(1099).is_empty());
        assert_eq!(g.expire(1100), vec!["a".to_string()], "a's last heartbeat was at 100: its session ended at 1100");
        assert!(g.expire(1199).is_empty());
        assert_eq!(g.expire(1200), vec!["c".to_string()]);
        assert_eq!(g.state(), State::Empty);
    }

    #[test]
    fn stale_epochs_are_fenced_and_removed_members_cannot_commit() {
        let mut g = Group::load(GroupRecord::default(), 0);
        let a = g.heartbeat(&join("a"), &counts(2), 0).unwrap().0;
        let a = settle(&mut g, "a", a, 2, 0);
        assert!(g.check_commit("a", a.member_epoch, &[tp("t", 0)]).is_ok());
        assert!(matches!(g.check_commit("a", a.member_epoch, &[tp("u", 0)]), Err(GroupError::NotAssigned { .. })));
        assert!(matches!(
            g.heartbeat(&beat("a", a.member_epoch + 5, &a.assigned), &counts(2), 0),
            Err(GroupError::FencedMemberEpoch { .. })
        ));
        // a pauses past its session; b takes over; a cannot commit any more.
        g.expire(5000);
        let b = g.heartbeat(&join("b"), &counts(2), 5000).unwrap().0;
        assert_eq!(b.assigned.len(), 2);
        assert!(matches!(g.check_commit("a", a.member_epoch, &[tp("t", 0)]), Err(GroupError::UnknownMember(_))));
        assert!(matches!(
            g.heartbeat(&beat("a", a.member_epoch, &a.assigned), &counts(2), 5001),
            Err(GroupError::UnknownMember(_))
        ));
    }

    #[test]
    fn a_heartbeat_that_changes_nothing_changes_nothing_stored() {
        let mut g = Group::load(GroupRecord::default(), 0);
        let a = g.heartbeat(&join("a"), &counts(3), 0).unwrap().0;
        let a = settle(&mut g, "a", a, 3, 0);
        for now in [3_000, 6_000, 9_000] {
            let (again, changed) = g.heartbeat(&beat("a", a.member_epoch, &a.assigned), &counts(3), now).unwrap();
            assert!(!changed, "at {now}");
            assert_eq!(again, a);
        }
        // The topic gains partitions: a new epoch, and a gets them.
        let (more, changed) = g.heartbeat(&beat("a", a.member_epoch, &a.assigned), &counts(5), 10_000).unwrap();
        assert!(changed);
        assert_eq!(more.assigned.len(), 5);
        // Storing and loading (a new coordinator) keeps the members.
        let reloaded = Group::load(g.record().clone(), 20_000);
        assert_eq!(reloaded.record(), g.record());
        assert!(reloaded.clone().expire(20_999).is_empty(), "sessions start afresh at load");
    }
}
