//! Properties of the engine over random histories, replayed day by day with
//! every planned action carried out: plans are deterministic and do not
//! depend on the order of jobs; a job green in the newest eval is never
//! marked; limits are never exceeded; nothing but the hold happens during a
//! hold; a protected package is never marked or retired. And the ladder is
//! climbed: among the random jobs every history has a package that fails on
//! every platform from the first day and a protected one that fails too;
//! unless a mass breakage holds the replay, the first is marked everywhere
//! and then retired, the second escalated.

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
/// limits so that they bind, a sensitive breaker so that holds happen, and
/// protected packages (one of the random names, and the planted `stdenv`).
fn quick_policy() -> Policy {
    policy_with(
        "[streak]\nmin_evals = 2\n\
         [protected]\nattrs = [\"pkg9\", \"stdenv\"]\nescalate_to = [\"NixOS/nixpkgs-core\"]\n\
         [ladder]\nnotify_after = \"1d\"\nremind_before_mark = [\"1d\"]\nmark_broken_after = \"6d\"\nmin_notice = \"3d\"\nmark_min_derivations = 1\nretire_after_broken = \"10d\"\nretire_notice = \"2d\"\n\
         [limits]\nprs_per_day = 2\nopen_prs = 3\npings_per_maintainer_per_week = 2\n\
         [circuit_breaker]\nwindow_evals = 2\nmin_jobs = 3\nmin_share = 0.15\n\
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

/// Planted among the random jobs: fails on its first `systems` systems from
/// the first day to the last, rebuilt every three days.
const LONG_BROKEN: &str = "longbroken";
/// Planted and protected: fails on x86_64-linux from the first day.
const PROTECTED: &str = "stdenv";

fn history() -> impl Strategy<Value = Facts> {
    (
        prop::collection::vec((0usize..10, 0usize..3, pattern(), 0usize..3), 1..25),
        1usize..=SYSTEMS.len(),
    )
        .prop_map(|(jobs, planted_systems)| {
            let mut js = trunk(DAYS);
            let always_failing = repeat('F', DAYS, 3);
            for system in &SYSTEMS[..planted_systems] {
                js.jobs.push(job(LONG_BROKEN, system, &always_failing));
            }
            js.jobs.push(job(PROTECTED, SYSTEMS[0], &always_failing));
            let mut seen = BTreeSet::new();
            let mut maintainers = BTreeMap::new();
            for (a, s, p, m) in jobs {
                if seen.insert((a, s)) {
                    js.jobs.push(job(&format!("pkg{a}"), SYSTEMS[s], &p));
                    maintainers.insert(format!("pkg{a}"), vec![MAINTAINERS[m].to_owned()]);
                }
            }
            maintainers.insert(LONG_BROKEN.to_owned(), vec!["dave".to_owned()]);
            maintainers.insert(PROTECTED.to_owned(), vec!["erin".to_owned()]);
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
        let mut held = false;
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
            held |= p.held;
            for a in &p.actions {
                carry_out(&mut ledger, a, now);
            }
        }
        check_the_ladder_is_climbed(&facts, &ledger, held)?;
    }
}

/// What the replay did to the planted packages (the ledger holds every
/// carried-out action).
fn check_the_ladder_is_climbed(
    facts: &Facts,
    ledger: &Ledger,
    held: bool,
) -> Result<(), TestCaseError> {
    let done = |attr: &str, kind: ActionKind| {
        ledger
            .actions
            .iter()
            .filter(|r| r.attr.as_deref() == Some(attr) && r.kind == kind)
            .collect::<Vec<_>>()
    };
    let story = || {
        ledger
            .actions
            .iter()
            .map(|r| {
                format!(
                    "  day {}: {} {} {}\n",
                    (r.planned_at - START) / DAY,
                    r.kind,
                    r.attr.as_deref().unwrap_or("-"),
                    r.systems.join(",")
                )
            })
            .collect::<String>()
    };
    prop_assert!(
        done(PROTECTED, ActionKind::MarkBroken).is_empty()
            && done(PROTECTED, ActionKind::Retire).is_empty()
            && done("pkg9", ActionKind::MarkBroken).is_empty(),
        "a protected package was marked or retired:\n{}",
        story()
    );
    if held {
        // A hold may last to the end: nothing more can be promised.
        return Ok(());
    }
    let systems: Vec<String> = facts.jobsets[0]
        .jobs
        .iter()
        .filter(|j| j.attr == LONG_BROKEN)
        .map(|j| j.system.clone())
        .collect();
    let marks = done(LONG_BROKEN, ActionKind::MarkBroken);
    prop_assert!(
        marks.iter().any(|m| m.all_platforms),
        "{LONG_BROKEN} fails on all of {systems:?} for {DAYS} days but was never marked on every platform:\n{}",
        story()
    );
    prop_assert_eq!(
        done(LONG_BROKEN, ActionKind::Retire).len(),
        1,
        "{} was marked everywhere for long enough to be retired, once:\n{}",
        LONG_BROKEN,
        story()
    );
    prop_assert_eq!(
        done(PROTECTED, ActionKind::Escalate).len(),
        1,
        "{} was never escalated, or more than once:\n{}",
        PROTECTED,
        story()
    );
    Ok(())
}

/// The properties above are not vacuous: the random histories do lead to
/// every kind of action, holds and deferrals; and most replays are free of
/// holds, so the promise that the planted packages climb the ladder is
/// checked on them.
#[test]
fn the_random_histories_reach_every_step() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let policy = quick_policy();
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    let mut unheld = 0;
    for _ in 0..48 {
        let facts = history()
            .new_tree(&mut runner)
            .expect("a history")
            .current();
        let (_, ledger, plans) = replay(
            &policy,
            &facts,
            Ledger::default(),
            0,
            DAYS as i64 - 1,
            Some(2),
        );
        let held = plans.iter().any(|p| p.held);
        if !held {
            unheld += 1;
        }
        if let Err(e) = check_the_ladder_is_climbed(&facts, &ledger, held) {
            panic!("{e}");
        }
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
        "retire",
        "escalate",
        "hold",
        "deferred",
        "close_pr",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in any replay: {seen:?}"
        );
    }
    assert!(
        unheld >= 24,
        "only {unheld} of 48 replays ran without a hold: the ladder promise was hardly checked"
    );
}
