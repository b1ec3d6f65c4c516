//! Early warnings over realistic histories: trunk and a pre-merge branch
//! (staging-next) that diverge, replayed day by day with every planned action
//! carried out (see `policy_common`). Built-in policy: a warning needs an own
//! failure on the branch in 2 evals (or on 2 derivations) of a job that
//! builds on trunk, and no mass breakage of the branch.

mod policy_common;

use hydra_sentinel::policy::early_warning::{CLOSE, HANDOVER, NOTICE};
use hydra_sentinel::policy::{ActionKind, Ledger, Rule, assess};
use policy_common::*;

const LINUX: &str = "x86_64-linux";
const ARM: &str = "aarch64-linux";

fn warnings(events: &[Event]) -> Vec<(i64, String, String)> {
    events
        .iter()
        .filter(|e| e.kind == ActionKind::Warn)
        .map(|e| {
            (
                e.day,
                e.attr.clone().unwrap_or_default(),
                e.step.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn steps_of(events: &[Event], attr: &str) -> Vec<String> {
    warnings(events)
        .into_iter()
        .filter(|(_, a, _)| a == attr)
        .map(|(_, _, s)| {
            if s.starts_with("update-") {
                "update".into()
            } else {
                s
            }
        })
        .collect()
}

#[test]
fn a_package_broken_on_staging_next_only_is_warned_once_edited_and_closed_when_it_builds_there_again()
 {
    let mut t = trunk(20);
    t.jobs.push(job("hello", LINUX, &"O".repeat(20)));
    let mut b = branch("staging-next", 20);
    b.jobs.push(job("hello", LINUX, "OOOOOFFFFFOOOOOOOOOO"));
    let (events, _, plans) = replay(
        &nixpkgs_policy(),
        &facts(vec![t, b]),
        Ledger::default(),
        0,
        19,
        Some(3),
    );
    assert_eq!(
        warnings(&events),
        vec![
            (6, "hello".into(), NOTICE.into()),
            (7, "hello".into(), "update-4000007".into()),
            (8, "hello".into(), "update-4000008".into()),
            (9, "hello".into(), "update-4000009".into()),
            (10, "hello".into(), CLOSE.into()),
        ],
        "timeline:\n{}",
        timeline(&events)
    );
    assert_eq!(
        events.len(),
        5,
        "nothing but the warning:\n{}",
        timeline(&events)
    );
    let notice = plans[6]
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Warn)
        .expect("the notice");
    assert_eq!(notice.systems, vec![LINUX]);
    assert_eq!(notice.batch.as_deref(), Some("nixpkgs:staging-next"));
    let job = &notice.evidence.jobs[0];
    assert_eq!(job.since.id, 4_000_005, "first failing eval on the branch");
    assert!(
        job.since
            .revision
            .as_deref()
            .is_some_and(|r| r.starts_with('b'))
    );
    assert_eq!(job.last_good.as_ref().map(|g| g.eval.id), Some(4_000_004));
    assert!(
        job.compare
            .as_deref()
            .is_some_and(|c| c.contains("/compare/b")),
        "{:?}",
        job.compare
    );
    assert!(
        job.job_url.contains("/job/nixpkgs/staging-next/hello"),
        "{}",
        job.job_url
    );
    assert!(
        notice.reason.contains("builds on nixpkgs:trunk"),
        "{}",
        notice.reason
    );
}

#[test]
fn a_failure_that_lands_on_trunk_is_handed_over_without_a_second_notice_and_keeps_its_start() {
    // Broken on the branch from day 5; the branch lands on day 12 and trunk
    // fails the same way (Hydra rebuilds it every ten days).
    let mut t = trunk(75);
    t.jobs.push(job(
        "grafx",
        LINUX,
        &format!("{}{}", "O".repeat(12), repeat('F', 63, 10)),
    ));
    let mut b = branch("staging-next", 75);
    b.jobs.push(job(
        "grafx",
        LINUX,
        &format!("OOOOO{}", repeat('F', 70, 10)),
    ));
    let policy = nixpkgs_policy();
    let f = facts(vec![t, b]);
    let (events, ledger, _) = replay(&policy, &f, Ledger::default(), 0, 74, Some(3));
    let steps = steps_of(&events, "grafx");
    assert_eq!(
        steps,
        vec![
            NOTICE, "update", "update", "update", "update", "update", HANDOVER
        ],
        "timeline:\n{}",
        timeline(&events)
    );
    let ladder: Vec<(i64, ActionKind)> = events
        .iter()
        .filter(|e| e.kind != ActionKind::Warn)
        .map(|e| (e.day, e.kind))
        .collect();
    // The clock started on day 5 on the branch: the mark comes 8 weeks
    // later (day 61), at least 4 weeks after the warning of day 6, with its
    // reminder a week before. Counted from trunk's own start (day 12) it
    // would have been day 68, after a second notice.
    assert_eq!(
        ladder,
        vec![(54, ActionKind::Remind), (61, ActionKind::MarkBroken)],
        "timeline:\n{}",
        timeline(&events)
    );
    let now = START + 20 * DAY;
    let a = assess(&policy, &f, &ledger, now);
    let trunk_job = a.attrs["grafx"]
        .jobs
        .iter()
        .find(|j| j.jobset.jobset == "trunk")
        .expect("the trunk job");
    let Rule::Ladder(state) = &trunk_job.rule else {
        panic!("trunk's ladder applies: {:?}", trunk_job.rule);
    };
    assert_eq!(state.clock_start, day(5) + 6 * 3600, "the branch's start");
    assert_eq!(state.notified_at, Some(START + 6 * DAY + 23 * 3600));
}

#[test]
fn victims_of_a_root_broken_on_the_branch_learn_the_root_and_the_root_its_blast_radius() {
    let mut t = trunk(10);
    for attr in ["libfoo", "app1", "app2"] {
        t.jobs.push(job(attr, LINUX, &"O".repeat(10)));
    }
    let mut b = branch("staging-next", 10);
    b.jobs.push(job("libfoo", LINUX, "OOOOOFFFFF"));
    b.jobs.push(job("app1", LINUX, "OOOOODDDDD"));
    b.jobs.push(job("app2", LINUX, "OOOOODDDDD"));
    let mut f = facts(vec![t, b]);
    f.maintainers.insert("libfoo".into(), vec!["rooty".into()]);
    f.maintainers.insert("app1".into(), vec!["victor".into()]);
    let plan = hydra_sentinel::policy::plan(
        &nixpkgs_policy(),
        &f,
        &Ledger::default(),
        day(6) + 11 * 3600,
    );
    let warn = |attr: &str| {
        plan.actions
            .iter()
            .find(|a| a.kind == ActionKind::Warn && a.attr.as_deref() == Some(attr))
            .unwrap_or_else(|| panic!("a warning about {attr}:\n{}", plan.to_text()))
    };
    let root = warn("libfoo");
    assert_eq!(root.evidence.root, None);
    assert_eq!(root.evidence.blast_radius, Some(2));
    assert_eq!(root.evidence.maintainers, vec!["rooty"]);
    let victim = warn("app1");
    assert_eq!(victim.evidence.root.as_deref(), Some("libfoo"));
    assert_eq!(victim.evidence.maintainers, vec!["victor"]);
    assert!(
        victim
            .reason
            .contains("because its dependency libfoo fails there"),
        "{}",
        victim.reason
    );
    assert_eq!(warn("app2").evidence.root.as_deref(), Some("libfoo"));
    assert_eq!(plan.count(ActionKind::Notify), 0, "{}", plan.to_text());
}

#[test]
fn a_mass_breakage_on_the_branch_holds_its_warnings_but_not_trunk() {
    let policy =
        policy_with("[circuit_breaker]\nwindow_evals = 2\nmin_jobs = 5\nmin_share = 0.2\n");
    let mut t = trunk(12);
    let mut b = branch("staging-next", 12);
    for i in 0..20 {
        let attr = format!("pkg{i:02}");
        t.jobs.push(job(&attr, LINUX, &"O".repeat(12)));
        // Eight of twenty (40%) break in one eval on the branch.
        let pattern = if i < 8 {
            "OOOOOFFFFFFF"
        } else {
            "OOOOOOOOOOOO"
        };
        b.jobs.push(job(&attr, LINUX, pattern));
    }
    t.jobs.push(job("lonely", LINUX, "OOOFFFFFFFFF"));
    let f = facts(vec![t, b]);
    let (events, ledger, plans) = replay(&policy, &f, Ledger::default(), 0, 11, None);
    assert_eq!(
        warnings(&events),
        vec![],
        "timeline:\n{}",
        timeline(&events)
    );
    let a = assess(&policy, &f, &ledger, day(11) + 11 * 3600);
    assert_eq!(a.branch_holds.len(), 1, "the branch is held");
    assert_eq!(a.warnings.len(), 8);
    assert!(
        a.warnings.iter().all(|w| w
            .quiet
            .as_deref()
            .is_some_and(|q| q.starts_with("held: mass breakage on nixpkgs:staging-next"))),
        "{:?}",
        a.warnings.iter().map(|w| &w.quiet).collect::<Vec<_>>()
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == ActionKind::Notify && e.attr.as_deref() == Some("lonely")),
        "trunk is not held by the branch:\n{}",
        timeline(&events)
    );
    assert!(!plans[11].held, "{}", plans[11].to_text());
}

#[test]
fn noise_flakiness_and_a_single_failure_on_the_branch_warn_nobody() {
    let mut t = trunk(12);
    let mut b = branch("staging-next", 12);
    for (attr, pattern) in [
        ("noisy", "OOOONNNNNNNN"),
        ("flaky", "OFOFOFOFOFOF"),
        ("once", "OOOOOFOOOOOO"),
        ("pending", "OOOOOPPPPPPP"),
    ] {
        t.jobs.push(job(attr, LINUX, &"O".repeat(12)));
        b.jobs.push(job(attr, LINUX, pattern));
    }
    let (events, _, _) = replay(
        &nixpkgs_policy(),
        &facts(vec![t, b]),
        Ledger::default(),
        0,
        11,
        None,
    );
    assert_eq!(events, vec![], "timeline:\n{}", timeline(&events));
}

#[test]
fn a_package_already_failing_on_trunk_or_on_an_excluded_branch_gets_no_warning() {
    let mut t = trunk(10);
    t.jobs.push(job("old", LINUX, "OOFFFFFFFF"));
    t.jobs
        .push(job("haskellPackages.lens", LINUX, &"O".repeat(10)));
    let mut b = branch("staging-next", 10);
    b.jobs.push(job("old", LINUX, "OOFFFFFFFF"));
    let mut h = branch("haskell-updates", 10);
    h.jobs
        .push(job("haskellPackages.lens", LINUX, "OOFFFFFFFF"));
    let f = facts(vec![t, b, h]);
    let policy = nixpkgs_policy();
    let now = day(9) + 11 * 3600;
    let plan = hydra_sentinel::policy::plan(&policy, &f, &Ledger::default(), now);
    assert_eq!(plan.count(ActionKind::Warn), 0, "{}", plan.to_text());
    let a = assess(&policy, &f, &Ledger::default(), now);
    let why = |attr: &str| {
        a.warnings
            .iter()
            .find(|w| w.attr == attr)
            .and_then(|w| w.quiet.clone())
            .unwrap_or_else(|| panic!("{attr} is assessed and quiet"))
    };
    assert!(
        why("old").contains("does not build on nixpkgs:trunk"),
        "{}",
        why("old")
    );
    assert!(
        why("haskellPackages.lens").contains("Haskell team"),
        "{}",
        why("haskellPackages.lens")
    );
}

#[test]
fn only_the_failing_platform_is_warned_about_and_edits_never_ping() {
    let mut t = trunk(10);
    t.jobs.push(job("grafx", LINUX, &"O".repeat(10)));
    t.jobs.push(job("grafx", ARM, &"O".repeat(10)));
    let mut b = branch("staging-next", 10);
    b.jobs.push(job("grafx", LINUX, "OOOOOOOOOO"));
    b.jobs.push(job("grafx", ARM, "OOOOOFFFFF"));
    let mut f = facts(vec![t, b]);
    f.maintainers.insert("grafx".into(), vec!["alice".into()]);
    let policy = policy_with("[limits]\npings_per_maintainer_per_week = 1\n");
    let (events, _, plans) = replay(&policy, &f, Ledger::default(), 0, 9, None);
    assert_eq!(
        steps_of(&events, "grafx"),
        vec![NOTICE, "update", "update", "update"],
        "edits are not held back by alice's one ping a week:\n{}",
        timeline(&events)
    );
    assert!(
        events.iter().all(|e| e.systems == vec![ARM.to_owned()]),
        "{}",
        timeline(&events)
    );
    assert!(plans.iter().all(|p| p.deferred.is_empty()));
}

/// The digest's "Before it lands": per branch, per root, with the blast
/// radius and whom to ask; a held branch says so.
#[test]
fn the_digest_groups_warnings_by_branch_and_root() {
    use hydra_sentinel::digest::{self, DigestInput, Week};
    use hydra_sentinel::policy::plan_from;

    let mut t = trunk(10);
    for attr in ["libfoo", "app1", "app2", "hello"] {
        t.jobs.push(job(attr, LINUX, &"O".repeat(10)));
    }
    let mut b = branch("staging-next", 10);
    b.jobs.push(job("libfoo", LINUX, "OOOOOFFFFF"));
    b.jobs.push(job("app1", LINUX, "OOOOODDDDD"));
    b.jobs.push(job("app2", LINUX, "OOOOODDDDD"));
    b.jobs.push(job("hello", LINUX, "OOOOOOOFFF"));
    let mut p = branch("python-updates", 10);
    p.jobs.push(job("hello", LINUX, "OOOOOOOOOF"));
    let mut f = facts(vec![t, b, p]);
    f.maintainers.insert("libfoo".into(), vec!["rooty".into()]);
    f.maintainers
        .insert("hello".into(), vec!["alice-gh".into()]);
    f.branch_pulls.insert(
        hydra_sentinel::config::JobsetRef {
            project: "nixpkgs".into(),
            jobset: "staging-next".into(),
        },
        hydra_sentinel::policy::BranchPull {
            number: 359_001,
            title: "staging-next 2025-06-05".into(),
            url: "https://github.com/NixOS/nixpkgs/pull/359001".into(),
            base: "master".into(),
            state: hydra_sentinel::policy::BranchPullState::Open,
        },
    );
    let policy = nixpkgs_policy();
    // libfoo was warned on day 6, in issue 42.
    let (_, ledger, _) = replay(&policy, &f, Ledger::default(), 6, 6, None);
    let mut ledger = ledger;
    for r in &mut ledger.actions {
        r.issue = Some(42);
    }
    let now = day(9) + 11 * 3600;
    let a = assess(&policy, &f, &ledger, now);
    let plan = plan_from(&policy, &f, &ledger, &a);
    let text = digest::render(&DigestInput {
        policy: &policy,
        facts: &f,
        assessment: &a,
        plan: &plan,
        week: Week::containing(now),
    });
    let start = text.find("## Before it lands").expect("the section");
    let end = text[start + 3..]
        .find("\n## ")
        .map_or(text.len(), |e| start + 3 + e);
    let section = &text[start..end];
    assert!(!section.contains(" @"), "nobody is mentioned:\n{section}");
    insta::assert_snapshot!(section);
}

#[test]
fn a_backtest_counts_the_warnings_it_would_have_given() {
    let mut t = trunk(20);
    t.jobs.push(job("hello", LINUX, &"O".repeat(20)));
    t.jobs.push(job("grafx", LINUX, &"O".repeat(20)));
    let mut b = branch("staging-next", 20);
    b.jobs.push(job("hello", LINUX, "OOOOOFFFFFOOOOOOOOOO"));
    b.jobs.push(job("grafx", LINUX, "OOOOOOOOOOOOFFFFFFFF"));
    let report = hydra_sentinel::policy::backtest(
        &nixpkgs_policy(),
        &facts(vec![t, b]),
        &[],
        day(0),
        day(19),
    );
    assert_eq!(report.warnings, 2, "{}", report.to_text());
    assert_eq!(report.notices, 0, "{}", report.to_text());
    let text = report.to_text();
    assert!(text.contains("2 early warnings"), "{text}");
    let warned_days: Vec<&str> = report
        .per_day
        .iter()
        .filter(|d| d.warn > 0)
        .map(|d| d.day.as_str())
        .collect();
    assert_eq!(warned_days, ["2025-06-08", "2025-06-15"], "{text}");
}

#[test]
fn the_opt_out_marker_in_the_package_file_stops_warnings() {
    use hydra_sentinel::policy::{OptOut, OptOutKind};
    let mut t = trunk(10);
    t.jobs.push(job("hello", LINUX, &"O".repeat(10)));
    let mut b = branch("staging-next", 10);
    b.jobs.push(job("hello", LINUX, "OOOOOFFFFF"));
    let ledger = Ledger {
        actions: Vec::new(),
        opt_outs: vec![OptOut {
            id: 1,
            attr: "hello".into(),
            kind: OptOutKind::Marker,
            recorded_at: day(1),
            until: None,
            by: None,
            note: "pkgs/by-name/he/hello/package.nix".into(),
            revoked_at: None,
        }],
    };
    let (events, _, _) = replay(&nixpkgs_policy(), &facts(vec![t, b]), ledger, 0, 9, None);
    assert_eq!(
        warnings(&events),
        vec![],
        "timeline:\n{}",
        timeline(&events)
    );
}
