//! Properties of the engine over random histories, replayed day by day with
//! every planned action carried out: plans are deterministic and do not
//! depend on the order of jobs; a job green in the newest eval is never
//! marked; limits are never exceeded; nothing but the hold happens during a
//! hold.

mod policy_common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hydra_sentinel::history::StatusClass;
use hydra_sentinel::policy::{ActionKind, Facts, Ledger, Plan, Policy, RecordState, plan};
use policy_common::*;
use proptest::prelude::*;

const DAYS: usize = 40;
const SYSTEMS: [&str; 3] = ["x86_64-linux", "aarch64-linux", "aarch64-darwin"];
const MAINTAINERS: [&str; 3] = ["alice", "bob", "carol"];

/// A quick ladder so that every step happens within the history, small
/// limits so that they bind, and a sensitive breaker so that holds happen.
fn quick_policy() -> Policy {
    policy_with(
        "[streak]\nmin_evals = 2\n\
         [ladder]\nnotify_after = \"1d\"\nremind_before_mark = [\"1d\"]\nmark_broken_after = \"6d\"\nmin_notice = \"3d\"\nmark_min_derivations = 1\nretire_after_broken = \"10d\"\nretire_notice = \"2d\"\n\
         [limits]\nprs_per_day = 2\nopen_prs = 3\npings_per_maintainer_per_week = 2\n\
         [circuit_breaker]\nwindow_evals = 2\nmin_jobs = 4\nmin_share = 0.3\n\
         [batch]\ngroup_by = \"maintainer\"\nmax_attrs_per_pr = 2\n",
    )
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(vec!['O', 'O', 'F', 'F', 'D', 'N', 'P', '.']),
            1usize..12,
            any::<bool>(),
        ),
        1..8,
    )
    .prop_map(|runs| {
        let mut s = String::new();
        let mut n = 0;
        for (c, len, rebuild) in runs {
            for i in 0..len {
                if n == DAYS {
                    return s;
                }
                if rebuild && i % 3 == 0 {
                    s.push('+');
                }
                s.push(c);
                n += 1;
            }
        }
        s
    })
}

fn history() -> impl Strategy<Value = Facts> {
    prop::collection::vec((0usize..10, 0usize..3, pattern(), 0usize..3), 1..25).prop_map(|jobs| {
        let mut js = trunk(DAYS);
        let mut seen = BTreeSet::new();
        let mut maintainers = BTreeMap::new();
        for (a, s, p, m) in jobs {
            if seen.insert((a, s)) {
                js.jobs.push(job(&format!("pkg{a}"), SYSTEMS[s], &p));
                maintainers.insert(format!("pkg{a}"), vec![MAINTAINERS[m].to_owned()]);
            }
        }
        let mut f = facts(vec![js]);
        f.maintainers = maintainers;
        f
    })
}

fn check_plan(
    policy: &Policy,
    facts: &Facts,
    ledger: &Ledger,
    p: &Plan,
) -> Result<(), TestCaseError> {
    let now = p.now;
    // Determinism, and independence from the order of jobs.
    prop_assert_eq!(&plan(policy, facts, ledger, now), p);
    let mut reversed = facts.clone();
    reversed.jobsets[0].jobs.reverse();
    prop_assert_eq!(
        &plan(policy, &reversed, ledger, now),
        p,
        "job order changed the plan"
    );

    // Nothing but the hold during a hold.
    if p.held {
        prop_assert!(
            p.actions.iter().all(|a| a.kind == ActionKind::Hold),
            "{}",
            p.to_text()
        );
    }

    // A job green in the newest eval is never marked.
    let js = &facts.jobsets[0];
    let cutoff = js.evals.partition_point(|e| e.timestamp <= now) as u32 - 1;
    for a in p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::MarkBroken)
    {
        for system in &a.systems {
            let job = js
                .jobs
                .iter()
                .find(|j| Some(&j.attr) == a.attr.as_ref() && &j.system == system);
            let newest = job.and_then(|j| {
                j.runs
                    .iter()
                    .find(|r| r.first <= cutoff && cutoff <= r.last)
            });
            prop_assert!(
                newest.is_some_and(|r| r.class() != StatusClass::Ok),
                "marked {:?} on {system} though it built in the newest eval\n{}",
                a.attr,
                p.to_text()
            );
        }
    }

    // Pull requests within the daily and open limits.
    let pr_key = |r: &hydra_sentinel::policy::ActionRecord| {
        r.pr.map(|n| n.to_string())
            .or(r.batch.clone())
            .unwrap_or(r.id.to_string())
    };
    let prs: Vec<_> = ledger
        .actions
        .iter()
        .filter(|r| r.kind.opens_pr() && r.state.counts())
        .collect();
    let today: BTreeSet<_> = prs
        .iter()
        .filter(|r| r.planned_at > now - DAY)
        .map(|r| pr_key(r))
        .collect();
    let open: BTreeSet<_> = prs
        .iter()
        .filter(|r| matches!(r.state, RecordState::Open | RecordState::Intent))
        .map(|r| pr_key(r))
        .collect();
    let new: BTreeSet<_> = p.actions.iter().filter_map(|a| a.batch.clone()).collect();
    if !new.is_empty() {
        prop_assert!(
            today.len() + new.len() <= policy.limits.prs_per_day as usize,
            "{} today + {:?}",
            today.len(),
            new
        );
        prop_assert!(
            open.len() + new.len() <= policy.limits.open_prs as usize,
            "{} open + {:?}",
            open.len(),
            new
        );
    }

    // Pings per maintainer per week.
    let mut pings: HashMap<String, u32> = HashMap::new();
    for r in &ledger.actions {
        if r.kind.pings() && r.state.counts() && r.at() > now - 7 * DAY {
            for m in &r.pinged {
                *pings.entry(m.clone()).or_default() += 1;
            }
        }
    }
    let mut new_pings: HashMap<String, u32> = HashMap::new();
    for a in p.actions.iter().filter(|a| a.kind.pings()) {
        for m in &a.evidence.maintainers {
            *new_pings.entry(m.clone()).or_default() += 1;
        }
    }
    for (m, n) in new_pings {
        let before = pings.get(&m).copied().unwrap_or(0);
        prop_assert!(
            before + n <= policy.limits.pings_per_maintainer_per_week,
            "{m}: {before} + {n}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_of_a_replay_keeps_the_rules(facts in history()) {
        let policy = quick_policy();
        let mut ledger = Ledger::default();
        for d in 0..DAYS as i64 {
            let now = START + d * DAY + 23 * 3600;
            for r in &mut ledger.actions {
                if r.kind.opens_pr() && r.state == RecordState::Open && r.planned_at + 2 * DAY <= now {
                    r.state = RecordState::Merged;
                    r.closed_at = Some(r.planned_at + 2 * DAY);
                }
            }
            let p = plan(&policy, &facts, &ledger, now);
            check_plan(&policy, &facts, &ledger, &p)?;
            for a in &p.actions {
                carry_out(&mut ledger, a, now);
            }
        }
    }
}

/// The properties above are not vacuous: the random histories do lead to
/// marks, holds, retirements and deferrals.
#[test]
fn the_random_histories_reach_every_step() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let policy = quick_policy();
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for _ in 0..48 {
        let facts = history()
            .new_tree(&mut runner)
            .expect("a history")
            .current();
        let (_, _, plans) = replay(
            &policy,
            &facts,
            Ledger::default(),
            0,
            DAYS as i64 - 1,
            Some(2),
        );
        for p in &plans {
            for a in &p.actions {
                *seen.entry(a.kind.as_str()).or_default() += 1;
            }
            if !p.deferred.is_empty() {
                *seen.entry("deferred").or_default() += 1;
            }
        }
    }
    for kind in [
        "notify",
        "remind",
        "mark_broken",
        "hold",
        "deferred",
        "close_pr",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in any replay: {seen:?}"
        );
    }
}
