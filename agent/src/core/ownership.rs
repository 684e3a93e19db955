//! Which partitions this agent should own: a plain function of the live
//! agents, the partitions and who holds each one now. Every agent computes
//! the same assignment from the same metadata, so they agree without
//! talking to each other.
//!
//! The assignment is even (shares differ by at most one) and sticky: each
//! live agent keeps what it holds up to its share, and only the rest moves.
//! When an agent dies, the survivors split its partitions and nothing else
//! moves; when one joins, it gets its share from those above theirs.
//!
//! An agent takes a partition assigned to it once nobody live holds it, and
//! gives up (after flushing) one it runs that is assigned to another.

use std::collections::{BTreeMap, HashMap, HashSet};

pub use silt_metadata::catalog::PartitionId;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partitions assigned to this agent that nobody live holds: take them.
    pub acquire: Vec<PartitionId>,
    /// Partitions this agent runs that are assigned to another agent.
    pub release: Vec<PartitionId>,
}

/// The owner each partition should have.
///
/// `agents`: the live agents' ids (any order); `holders`: the live holder of
/// each partition that has one (holders that are not live agents count as
/// none). Each topic is spread evenly on its own (so a topic's load is
/// shared), and a topic's odd partitions go where they keep the totals
/// within one of each other. Among agents as loaded, those with more of a
/// topic now get its larger shares, so a balanced cluster stays as it is.
pub fn assignment(
    agents: &[String],
    partitions: &[PartitionId],
    holders: &HashMap<PartitionId, String>,
) -> HashMap<PartitionId, String> {
    let mut agents: Vec<&str> = agents.iter().map(String::as_str).collect();
    agents.sort_unstable();
    agents.dedup();
    let mut partitions = partitions.to_vec();
    partitions.sort_unstable();
    partitions.dedup();
    let mut out = HashMap::with_capacity(partitions.len());
    if agents.is_empty() {
        return out;
    }
    let mut totals: BTreeMap<&str, usize> = agents.iter().map(|a| (*a, 0)).collect();
    for topic in partitions.chunk_by(|a, b| a.0 == b.0) {
        // What each live agent holds of this topic now, in partition order.
        let mut held: BTreeMap<&str, Vec<PartitionId>> = agents.iter().map(|a| (*a, Vec::new())).collect();
        for p in topic {
            if let Some(list) = holders.get(p).and_then(|h| held.get_mut(h.as_str())) {
                list.push(*p);
            }
        }
        // Shares: `extra` agents get one more: those with the fewest
        // partitions so far (so the totals stay within one of each other),
        // among them those holding more than the base share of this topic.
        let (base, extra) = (topic.len() / agents.len(), topic.len() % agents.len());
        let mut order = agents.clone();
        order.sort_by_key(|a| (totals[a], held[a].len() <= base, *a));
        let quota: HashMap<&str, usize> =
            order.iter().enumerate().map(|(i, a)| (*a, base + usize::from(i < extra))).collect();
        // Each keeps what it holds up to its share; the rest is dealt out
        // in partition order to agents below theirs, in id order.
        let mut room: Vec<(&str, usize)> = Vec::new();
        for a in &agents {
            let keep = held[a].len().min(quota[a]);
            for p in &held[a][..keep] {
                out.insert(*p, a.to_string());
            }
            room.push((a, quota[a] - keep));
        }
        let mut next = room.iter_mut().filter(|(_, n)| *n > 0);
        let mut current = next.next();
        for p in topic {
            if out.contains_key(p) {
                continue;
            }
            let Some((agent, left)) = current.as_mut() else { break };
            out.insert(*p, agent.to_string());
            *left -= 1;
            if *left == 0 {
                current = next.next();
            }
        }
        for a in &agents {
            *totals.get_mut(a).expect("listed") += quota[a];
        }
    }
    out
}

/// This agent's moves. `running` are the partitions it runs now: never
/// acquired again (its session keeps them), only possibly released. A
/// partition whose live holder is this agent but that it does not run (its
/// lease is from before a restart) is taken back at once.
pub fn plan(
    me: &str,
    live_agents: &[String],
    partitions: &[PartitionId],
    holders: &HashMap<PartitionId, String>,
    running: &HashSet<PartitionId>,
) -> Plan {
    let target = assignment(live_agents, partitions, holders);
    let mut plan = Plan::default();
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for p in sorted {
        let mine = running.contains(&p);
        let free = holders.get(&p).is_none_or(|h| h == me || !live_agents.contains(h));
        match target.get(&p).map(String::as_str) {
            Some(t) if t == me && !mine && free => plan.acquire.push(p),
            Some(t) if t != me && mine => plan.release.push(p),
            // Mine already; or the assignee is someone else; or nobody live
            // is assigned (this agent is not registered yet).
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: u32) -> Vec<PartitionId> {
        (0..n).map(|p| (1, p)).collect()
    }

    fn agents(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn held(pairs: &[(u32, &str)]) -> HashMap<PartitionId, String> {
        pairs.iter().map(|(p, a)| ((1, *p), a.to_string())).collect()
    }

    fn counts(a: &HashMap<PartitionId, String>) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for owner in a.values() {
            *c.entry(owner.clone()).or_default() += 1;
        }
        c
    }

    #[test]
    fn shares_are_even_and_every_agent_computes_the_same() {
        let a = assignment(&agents(&["c", "a", "b"]), &parts(7), &HashMap::new());
        assert_eq!(a.len(), 7);
        let mut sizes: Vec<usize> = counts(&a).into_values().collect();
        sizes.sort();
        assert_eq!(sizes, vec![2, 2, 3]);
        assert_eq!(a, assignment(&agents(&["b", "c", "a"]), &parts(7), &HashMap::new()));
    }

    #[test]
    fn assignment_table() {
        // (agents, holders now, who must keep what, expected counts)
        struct Case {
            name: &'static str,
            agents: &'static [&'static str],
            partitions: u32,
            holders: &'static [(u32, &'static str)],
            kept: &'static [(u32, &'static str)],
            counts: &'static [(&'static str, usize)],
        }
        let cases = [
            Case {
                name: "a balanced cluster stays as it is",
                agents: &["a", "b"],
                partitions: 4,
                holders: &[(0, "b"), (1, "a"), (2, "b"), (3, "a")],
                kept: &[(0, "b"), (1, "a"), (2, "b"), (3, "a")],
                counts: &[("a", 2), ("b", 2)],
            },
            Case {
                name: "a dead agent's partitions go to the survivors and nothing else moves",
                agents: &["a", "b"],
                partitions: 6,
                holders: &[(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "dead"), (5, "dead")],
                kept: &[(0, "a"), (1, "a"), (2, "b"), (3, "b")],
                counts: &[("a", 3), ("b", 3)],
            },
            Case {
                name: "a new agent gets its share from those above theirs",
                agents: &["a", "b", "c"],
                partitions: 6,
                holders: &[(0, "a"), (1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "b")],
                kept: &[(0, "a"), (1, "a"), (3, "b"), (4, "b")],
                counts: &[("a", 2), ("b", 2), ("c", 2)],
            },
            Case {
                name: "the larger share goes to whoever holds more",
                agents: &["a", "b"],
                partitions: 3,
                holders: &[(0, "b"), (1, "b"), (2, "b")],
                kept: &[(0, "b"), (1, "b")],
                counts: &[("a", 1), ("b", 2)],
            },
        ];
        for c in cases {
            let a = assignment(&agents(c.agents), &parts(c.partitions), &held(c.holders));
            for (p, owner) in c.kept {
                assert_eq!(a[&(1, *p)], *owner, "{}: partition {p}", c.name);
            }
            let want: BTreeMap<String, usize> = c.counts.iter().map(|(a, n)| (a.to_string(), *n)).collect();
            assert_eq!(counts(&a), want, "{}", c.name);
        }
    }

    #[test]
    fn a_lone_agent_takes_everything_free() {
        let p = plan("a", &agents(&["a"]), &parts(3), &HashMap::new(), &HashSet::new());
        assert_eq!(p.acquire, parts(3));
        assert!(p.release.is_empty());
    }

    #[test]
    fn a_new_agent_gets_its_share_by_handover() {
        let holders = held(&[(0, "a"), (1, "a"), (2, "a"), (3, "a")]);
        let live = agents(&["a", "b"]);
        let running_a: HashSet<PartitionId> = parts(4).into_iter().collect();
        let pa = plan("a", &live, &parts(4), &holders, &running_a);
        assert_eq!(pa.release, vec![(1, 2), (1, 3)]);
        assert!(pa.acquire.is_empty());
        // b waits until a lets go...
        assert_eq!(plan("b", &live, &parts(4), &holders, &HashSet::new()), Plan::default());
        // ...then takes them.
        let released = held(&[(0, "a"), (1, "a")]);
        assert_eq!(plan("b", &live, &parts(4), &released, &HashSet::new()).acquire, vec![(1, 2), (1, 3)]);
    }

    #[test]
    fn a_dead_agents_partitions_are_taken_by_the_survivors_directly() {
        let holders = held(&[(0, "a"), (1, "b"), (2, "c")]);
        let live = agents(&["a", "b"]);
        let pa = plan("a", &live, &parts(3), &holders, &[(1, 0)].into_iter().collect());
        let pb = plan("b", &live, &parts(3), &holders, &[(1, 1)].into_iter().collect());
        assert!(pa.release.is_empty() && pb.release.is_empty(), "no live partition moves");
        let mut taken = [pa.acquire, pb.acquire].concat();
        taken.sort();
        assert_eq!(taken, vec![(1, 2)]);
    }

    #[test]
    fn a_restarted_agent_takes_its_own_leases_back_at_once() {
        let holders = held(&[(0, "a")]);
        assert_eq!(plan("a", &agents(&["a"]), &parts(1), &holders, &HashSet::new()).acquire, vec![(1, 0)]);
    }

    #[test]
    fn an_unregistered_agent_takes_nothing() {
        assert_eq!(plan("z", &agents(&["a"]), &parts(2), &HashMap::new(), &HashSet::new()), Plan::default());
    }

    #[test]
    fn each_topic_is_spread_on_its_own_and_the_totals_stay_even() {
        // A wide topic first, then a small one: the small one is not left to
        // whoever has room after the wide one.
        let mut all: Vec<PartitionId> = (0..32).map(|p| (1, p)).collect();
        all.extend((0..4).map(|p| (2, p)));
        all.extend((0..5).map(|p| (3, p)));
        let a = assignment(&agents(&["a", "b"]), &all, &HashMap::new());
        for topic in 1..=3u64 {
            let mut c: BTreeMap<&str, usize> = BTreeMap::new();
            for (p, owner) in &a {
                if p.0 == topic {
                    *c.entry(owner.as_str()).or_default() += 1;
                }
            }
            let v: Vec<usize> = c.values().copied().collect();
            assert!(v.len() == 2 && v.iter().max().unwrap() - v.iter().min().unwrap() <= 1, "topic {topic}: {c:?}");
        }
        let totals: Vec<usize> = counts(&a).into_values().collect();
        assert!(totals.iter().max().unwrap() - totals.iter().min().unwrap() <= 1, "{totals:?}");
        // A third agent joins: the others only give partitions up, and the
        // totals stay within one (wide and small topics alike).
        let holders = a.clone();
        let b = assignment(&agents(&["a", "b", "c"]), &all, &holders);
        for (p, owner) in &b {
            assert!(owner == "c" || &a[p] == owner, "{p:?} moved from {} to {owner}", a[p]);
        }
        let totals: Vec<usize> = counts(&b).into_values().collect();
        assert!(totals.iter().max().unwrap() - totals.iter().min().unwrap() <= 1, "{totals:?}");
        // And it is a fixed point: planning again from it moves nothing.
        assert_eq!(assignment(&agents(&["a", "b", "c"]), &all, &b), b);
    }

    #[test]
    fn an_agent_that_dies_and_returns_gets_an_even_share_back() {
        // The 32 coordination slots (topic 1) and a 10,000-partition topic.
        let mut all: Vec<PartitionId> = (0..32).map(|p| (1, p)).collect();
        all.extend((0..10_000).map(|p| (2, p)));
        let three = agents(&["x", "y", "z"]);
        let start = assignment(&three, &all, &HashMap::new());
        let survivors: HashMap<PartitionId, String> =
            start.iter().filter(|(_, o)| *o != "z").map(|(p, o)| (*p, o.clone())).collect();
        let two = assignment(&agents(&["x", "y"]), &all, &survivors);
        let back = assignment(&three, &all, &two);
        let totals: Vec<usize> = counts(&back).into_values().collect();
        assert!(totals.iter().max().unwrap() - totals.iter().min().unwrap() <= 1, "{totals:?}");
        assert_eq!(assignment(&three, &all, &back), back, "and it stays");
    }

    #[test]
    fn ten_thousand_partitions_over_three_agents() {
        let all: Vec<PartitionId> = (0..10u64).flat_map(|t| (0..1000).map(move |p| (t, p))).collect();
        let a = assignment(&agents(&["x", "y", "z"]), &all, &HashMap::new());
        let c = counts(&a);
        assert!(c.values().all(|n| *n == 3333 || *n == 3334), "{c:?}");
        // z dies: x and y keep all of theirs.
        let holders: HashMap<PartitionId, String> = a.clone();
        let after = assignment(&agents(&["x", "y"]), &all, &holders);
        for (p, owner) in &a {
            if owner != "z" {
                assert_eq!(&after[p], owner);
            }
        }
        assert!(counts(&after).values().all(|n| *n == 5000));
    }
}
