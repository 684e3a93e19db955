//! Which partitions this agent should own: a plain function of the live
//! agents, the partitions and their leases, and `now`. Every agent computes
//! the same assignment from the same metadata, so they agree without
//! talking to each other.
//!
//! The assignment is even and stable for a given set of agents: partitions
//! in order, split into contiguous shares, one per agent in id order. An
//! agent takes a partition assigned to it once its lease is free or
//! expired, and gives up (after flushing) one it holds that is assigned to
//! another live agent, which then takes it.

use std::collections::{HashMap, HashSet};

use silt_metadata::catalog::Lease;

pub type PartitionId = (u64, u32);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free or expired partitions assigned to this agent: take them.
    pub acquire: Vec<PartitionId>,
    /// Partitions this agent holds that are assigned to another live agent.
    pub release: Vec<PartitionId>,
}

/// The owner each partition should have, among `agents` (ids, any order).
pub fn assignment(agents: &[String], partitions: &[PartitionId]) -> HashMap<PartitionId, String> {
    let mut agents: Vec<&String> = agents.iter().collect();
    agents.sort();
    agents.dedup();
    let mut partitions = partitions.to_vec();
    partitions.sort();
    let mut out = HashMap::with_capacity(partitions.len());
    if agents.is_empty() {
        return out;
    }
    let n = partitions.len();
    let k = agents.len();
    for (i, p) in partitions.into_iter().enumerate() {
        // Contiguous shares whose sizes differ by at most one.
        out.insert(p, agents[i * k / n.max(1)].clone());
    }
    out
}

/// `running` are the partitions this agent serves now: never re-acquired
/// (renewal keeps them, or tells they were lost), only possibly released.
pub fn plan(
    me: &str,
    live_agents: &[String],
    partitions: &[PartitionId],
    leases: &HashMap<PartitionId, Lease>,
    running: &HashSet<PartitionId>,
    now_ms: i64,
) -> Plan {
    let target = assignment(live_agents, partitions);
    let mut plan = Plan::default();
    for p in partitions {
        let lease = leases.get(p);
        let mine = running.contains(p);
        // A lease in this agent's name that it does not run is from before a
        // restart: take it back at once.
        let free = !mine && lease.is_none_or(|l| !l.is_live(now_ms) || l.owner == me);
        match target.get(p).map(String::as_str) {
            Some(t) if t == me && free => plan.acquire.push(*p),
            Some(t) if t == me => {}
            Some(_) if mine => plan.release.push(*p),
            // Nobody live is assigned (this agent is not registered yet) or
            // the assignee is someone else: leave it to them.
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(owner: &str, expires_ms: i64) -> Lease {
        Lease { owner: owner.into(), address: format!("{owner}:7447"), epoch: 1, expires_ms }
    }

    fn parts(n: u32) -> Vec<PartitionId> {
        (0..n).map(|p| (1, p)).collect()
    }

    #[test]
    fn shares_are_even_and_contiguous() {
        let agents: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
        let a = assignment(&agents, &parts(7));
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for owner in a.values() {
            *counts.entry(owner.as_str()).or_default() += 1;
        }
        let mut sizes: Vec<usize> = counts.values().copied().collect();
        sizes.sort();
        assert_eq!(sizes, vec![2, 2, 3]);
        assert_eq!(a[&(1, 0)], "a");
        assert_eq!(a[&(1, 6)], "c");
        // Every agent computes the same thing, whatever order it lists agents in.
        let again = assignment(&["b".into(), "c".into(), "a".into()], &parts(7));
        assert_eq!(a, again);
    }

    #[test]
    fn a_lone_agent_takes_everything_free() {
        let p = plan("a", &["a".into()], &parts(3), &HashMap::new(), &HashSet::new(), 0);
        assert_eq!(p.acquire, parts(3));
        assert!(p.release.is_empty());
    }

    #[test]
    fn a_new_agent_gets_its_share_by_handover() {
        let mut leases = HashMap::new();
        for p in parts(4) {
            leases.insert(p, lease("a", 1000));
        }
        let live: Vec<String> = vec!["a".into(), "b".into()];
        // a gives up b's share; b waits for it to be free.
        let running_a: HashSet<PartitionId> = parts(4).into_iter().collect();
        let pa = plan("a", &live, &parts(4), &leases, &running_a, 10);
        assert_eq!(pa.release, vec![(1, 2), (1, 3)]);
        let pb = plan("b", &live, &parts(4), &leases, &HashSet::new(), 10);
        assert_eq!(pb, Plan::default());
        // Released (expires 0): b takes them.
        leases.insert((1, 2), lease("a", 0));
        leases.insert((1, 3), lease("a", 0));
        assert_eq!(plan("b", &live, &parts(4), &leases, &HashSet::new(), 10).acquire, vec![(1, 2), (1, 3)]);
    }

    #[test]
    fn a_dead_agents_partitions_are_taken_once_expired() {
        let mut leases = HashMap::new();
        leases.insert((1, 0), lease("a", 100));
        leases.insert((1, 1), lease("dead", 100));
        let live: Vec<String> = vec!["a".into()];
        let running: HashSet<PartitionId> = [(1, 0)].into_iter().collect();
        assert!(plan("a", &live, &parts(2), &leases, &running, 50).acquire.is_empty(), "not before the lease expires");
        // Its own partition, even with a lapsed lease, is never re-acquired.
        assert_eq!(plan("a", &live, &parts(2), &leases, &running, 100).acquire, vec![(1, 1)]);
    }

    #[test]
    fn a_restarted_agent_takes_its_own_leases_back_at_once() {
        let mut leases = HashMap::new();
        leases.insert((1, 0), lease("a", 1000));
        assert_eq!(plan("a", &["a".into()], &parts(1), &leases, &HashSet::new(), 10).acquire, vec![(1, 0)]);
    }

    #[test]
    fn an_unregistered_agent_takes_nothing() {
        assert_eq!(plan("z", &["a".into()], &parts(2), &HashMap::new(), &HashSet::new(), 0), Plan::default());
    }
}
