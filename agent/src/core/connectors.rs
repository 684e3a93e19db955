//! Which connectors a worker holds: a worker's round keeps what it holds up
//! to its fair share, takes unclaimed (or lapsed) connectors up to that
//! share, and gives up what is over it, paused or deleted, so connectors
//! spread evenly over the live workers and move off a dead one once its
//! claims lapse. A standalone worker holds exactly the connectors it names
//! (when no live claim of another holds them), and pool workers never take
//! those.

use silt_metadata::catalog::{ClaimChange, ConnectorRecord};

/// The changes `worker` makes at `now`, given every connector and the live
/// workers of the pool (`live` includes `worker`). `standalone` names the
/// connectors of a standalone worker (empty: a pool worker).
pub fn plan(
    worker: &str,
    now: i64,
    connectors: &[(String, ConnectorRecord)],
    live: &[String],
    standalone: &[String],
) -> Vec<(String, ClaimChange)> {
    let mut out = Vec::new();
    if !standalone.is_empty() {
        for (name, r) in connectors {
            let mine = r.held_by(worker, now);
            let wanted = standalone.contains(name) && !r.paused;
            match (wanted, mine) {
                (true, true) => out.push((name.clone(), ClaimChange::Renew)),
                (true, false) if !r.claimed(now) => out.push((name.clone(), ClaimChange::Take)),
                (false, true) => out.push((name.clone(), ClaimChange::Release)),
                _ => {}
            }
        }
        return out;
    }
    let eligible: Vec<&(String, ConnectorRecord)> =
        connectors.iter().filter(|(_, r)| !r.paused && !r.standalone).collect();
    // Every live worker's fair share: the first `extra` workers (in id
    // order) take one more, so the shares add up to the connectors.
    let workers = live.len().max(1);
    let index = live.iter().position(|w| w == worker).unwrap_or(0);
    let share = eligible.len() / workers + usize::from(index < eligible.len() % workers);
    for (name, r) in connectors {
        if r.held_by(worker, now) && (r.paused || r.standalone) {
            out.push((name.clone(), ClaimChange::Release));
        }
    }
    let mut held: Vec<&String> = eligible.iter().filter(|(_, r)| r.held_by(worker, now)).map(|(n, _)| n).collect();
    held.sort();
    for (i, name) in held.iter().enumerate() {
        let change = if i < share { ClaimChange::Renew } else { ClaimChange::Release };
        out.push(((*name).clone(), change));
    }
    let mut room = share.saturating_sub(held.len());
    let mut free: Vec<&String> = eligible.iter().filter(|(_, r)| !r.claimed(now)).map(|(n, _)| n).collect();
    free.sort();
    for name in free {
        if room == 0 {
            break;
        }
        out.push((name.clone(), ClaimChange::Take));
        room -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClaimChange::*;

    fn c(name: &str, holder: &str, expires_ms: i64) -> (String, ConnectorRecord) {
        (name.into(), ConnectorRecord { holder: holder.into(), expires_ms, epoch: 1, ..Default::default() })
    }

    fn with(mut c: (String, ConnectorRecord), f: impl FnOnce(&mut ConnectorRecord)) -> (String, ConnectorRecord) {
        f(&mut c.1);
        c
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pool_workers_share_evenly_and_take_over_lapsed_claims() {
        let now = 1000;
        type Case<'a> = (&'a str, Vec<(String, ConnectorRecord)>, Vec<&'a str>, Vec<(&'a str, ClaimChange)>);
        let cases: Vec<Case> = vec![
            // Alone: takes everything unclaimed.
            ("w1", vec![c("a", "", 0), c("b", "", 0)], vec!["w1"], vec![("a", Take), ("b", Take)]),
            // Two workers, four connectors: two each; w2 holds none yet.
            (
                "w2",
                vec![c("a", "w1", 5000), c("b", "w1", 5000), c("c", "w1", 5000), c("d", "w1", 5000)],
                vec!["w1", "w2"],
                vec![],
            ),
            // ... w1 gives two up at its next round, then w2 takes them.
            (
                "w1",
                vec![c("a", "w1", 5000), c("b", "w1", 5000), c("c", "w1", 5000), c("d", "w1", 5000)],
                vec!["w1", "w2"],
                vec![("a", Renew), ("b", Renew), ("c", Release), ("d", Release)],
            ),
            (
                "w2",
                vec![c("a", "w1", 5000), c("b", "w1", 5000), c("c", "", 0), c("d", "", 0)],
                vec!["w1", "w2"],
                vec![("c", Take), ("d", Take)],
            ),
            // A dead worker's claims lapse and are taken.
            ("w2", vec![c("a", "w1", 900), c("b", "w2", 5000)], vec!["w2"], vec![("b", Renew), ("a", Take)]),
            // Odd counts: the first worker in id order takes the extra one.
            ("w1", vec![c("a", "", 0), c("b", "", 0), c("c", "", 0)], vec!["w1", "w2"], vec![("a", Take), ("b", Take)]),
            ("w2", vec![c("a", "w1", 5000), c("b", "w1", 5000), c("c", "", 0)], vec!["w1", "w2"], vec![("c", Take)]),
            // Paused and standalone connectors are given up, never taken.
            (
                "w1",
                vec![
                    with(c("a", "w1", 5000), |r| r.paused = true),
                    with(c("b", "", 0), |r| r.standalone = true),
                    with(c("c", "", 0), |r| r.paused = true),
                ],
                vec!["w1"],
                vec![("a", Release)],
            ),
        ];
        for (worker, connectors, live, want) in cases {
            let got = plan(worker, now, &connectors, &names(&live), &[]);
            let want: Vec<(String, ClaimChange)> = want.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
            assert_eq!(got, want, "{worker} with {live:?}");
        }
    }

    #[test]
    fn a_standalone_worker_holds_what_it_names() {
        let now = 1000;
        let connectors = vec![
            c("mine", "", 0),
            c("held", "other", 5000),
            c("lapsed", "other", 10),
            c("renew", "s", 5000),
            with(c("paused", "s", 5000), |r| r.paused = true),
            c("not-named", "s", 5000),
        ];
        let named = names(&["mine", "held", "lapsed", "renew", "paused"]);
        let got = plan("s", now, &connectors, &names(&["s"]), &named);
        assert_eq!(
            got,
            vec![
                ("mine".to_string(), Take),
                ("lapsed".to_string(), Take),
                ("renew".to_string(), Renew),
                ("paused".to_string(), Release),
                ("not-named".to_string(), Release),
            ]
        );
    }
}
