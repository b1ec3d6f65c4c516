//! The policy engine over realistic histories, built one letter per daily
//! eval (see `policy_common`), replayed day by day with every planned action
//! carried out. Ladder of the built-in policy: notice after 3 days, a
//! reminder 7 days before the mark, the mark after 8 weeks (10 on darwin)
//! and at least 4 weeks after the notice, on a second failing derivation.

mod policy_common;

use hydra_sentinel::policy::{
    ActionKind, ActionRecord, Ledger, OptOut, OptOutKind, RecordState, Rule, assess, plan,
};
use policy_common::*;

const LINUX: &str = "x86_64-linux";
const ARM: &str = "aarch64-linux";
const DARWIN: &str = "x86_64-darwin";

/// Five good days, then failing (rebuilt every ten days) until day `days`.
fn breaks_on_day_5(days: usize) -> String {
    format!("OOOOO{}", repeat('F', days - 5, 10))
}

fn kinds(events: &[Event]) -> Vec<(i64, ActionKind)> {
    events.iter().map(|e| (e.day, e.kind)).collect()
}

fn record(
    id: i64,
    kind: ActionKind,
    attr: &str,
    systems: &[&str],
    state: RecordState,
    at: i64,
) -> ActionRecord {
    ActionRecord {
        id,
        kind,
        attr: Some(attr.into()),
        systems: systems.iter().map(|s| s.to_string()).collect(),
        all_platforms: false,
        step: None,
        batch: None,
        state,
        planned_at: at,
        done_at: Some(at),
        closed_at: None,
        pr: Some(500 + id as u64),
        issue: None,
        pinged: vec![],
        error: None,
        refused: None,
    }
}

#[test]
fn a_long_failure_on_every_platform_is_told_reminded_and_then_marked_everywhere() {
    let mut js = trunk(85);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(85)));
    js.jobs.push(job("grafx", ARM, &breaks_on_day_5(85)));
    let (events, _, _) = replay(
        &nixpkgs_policy(),
        &facts(vec![js]),
        Ledger::default(),
        0,
        84,
        Some(3),
    );
    assert_eq!(
        kinds(&events),
        vec![
            (8, ActionKind::Notify),
            (54, ActionKind::Remind),
            (61, ActionKind::MarkBroken)
        ],
        "timeline:\n{}",
        timeline(&events)
    );
    let mark = &events[2];
    assert!(mark.all_platforms, "{mark}");
    assert_eq!(mark.systems, vec![ARM, LINUX]);
    assert_eq!(events[1].step.as_deref(), Some("remind-1w"));
}

#[test]
fn a_failure_on_one_platform_marks_only_that_platform() {
    let mut js = trunk(70);
    js.jobs
        .push(job("simdjson-fast", LINUX, &repeat('O', 70, 10)));
    js.jobs
        .push(job("simdjson-fast", ARM, &breaks_on_day_5(70)));
    let (events, _, _) = replay(
        &nixpkgs_policy(),
        &facts(vec![js]),
        Ledger::default(),
        0,
        69,
        None,
    );
    let mark = events
        .iter()
        .find(|e| e.kind == ActionKind::MarkBroken)
        .unwrap_or_else(|| panic!("no mark in:\n{}", timeline(&events)));
    assert_eq!(
        (mark.day, mark.systems.clone(), mark.all_platforms),
        (61, vec![ARM.to_owned()], false)
    );
}

#[test]
fn darwin_gets_the_longer_ladder_of_its_override() {
    let mut js = trunk(90);
    js.jobs
        .push(job("iterm-tools", DARWIN, &breaks_on_day_5(90)));
    let (events, _, _) = replay(
        &nixpkgs_policy(),
        &facts(vec![js]),
        Ledger::default(),
        0,
        89,
        None,
    );
    assert_eq!(
        kinds(&events),
        vec![
            (8, ActionKind::Notify),
            (68, ActionKind::Remind),
            (75, ActionKind::MarkBroken)
        ],
        "10 weeks after day 5:\n{}",
        timeline(&events)
    );
}

#[test]
fn dependency_victims_are_never_acted_on_and_count_toward_their_roots_blast_radius() {
    let mut js = trunk(70);
    js.jobs.push(job("libfoo", LINUX, &breaks_on_day_5(70)));
    for victim in ["foo-gui", "foo-cli", "python3Packages.foo-bindings"] {
        js.jobs
            .push(job(victim, LINUX, &format!("OOOOO{}", repeat('D', 65, 7))));
    }
    let f = facts(vec![js]);
    let (events, _, plans) = replay(&nixpkgs_policy(), &f, Ledger::default(), 0, 69, None);
    assert!(
        events.iter().all(|e| e.attr.as_deref() == Some("libfoo")),
        "only the root is acted on:\n{}",
        timeline(&events)
    );
    let notice = plans[8]
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Notify)
        .expect("a notice on day 8");
    assert_eq!(notice.evidence.blast_radius, Some(3));
    let a = assess(&nixpkgs_policy(), &f, &Ledger::default(), day(30));
    assert_eq!(a.roots.len(), 1);
    assert_eq!(a.roots[0].attr, "libfoo");
    assert_eq!(
        a.roots[0].victims,
        vec!["foo-cli", "foo-gui", "python3Packages.foo-bindings"]
    );
    let gui = &a.attr("foo-gui").expect("the victim is assessed").jobs[0];
    assert_eq!(
        gui.rule,
        Rule::Victim {
            root: Some("libfoo".into()),
            candidates: vec![],
            root_build: None,
        }
    );
}

#[test]
fn a_victim_of_one_of_several_new_failures_names_the_candidates_and_charges_none() {
    let mut js = trunk(20);
    js.jobs.push(job("liba", LINUX, &breaks_on_day_5(20)));
    js.jobs.push(job("libb", LINUX, &breaks_on_day_5(20)));
    js.jobs
        .push(job("app", LINUX, &format!("OOOOO{}", repeat('D', 15, 0))));
    let a = assess(
        &nixpkgs_policy(),
        &facts(vec![js]),
        &Ledger::default(),
        day(19),
    );
    assert_eq!(
        a.attr("app").unwrap().jobs[0].rule,
        Rule::Victim {
            root: None,
            candidates: vec!["liba".into(), "libb".into()],
            root_build: None,
        }
    );
    assert!(a.roots.is_empty(), "{:?}", a.roots);
}

#[test]
fn victims_of_a_timed_out_root_are_charged_to_it_by_hydras_word_not_by_the_eval_they_began_in() {
    let mut js = trunk(20);
    js.jobs
        .push(job("liba", LINUX, &format!("OOOOO{}", repeat('T', 15, 0))));
    js.jobs.push(job("libb", LINUX, &breaks_on_day_5(20)));
    // Hydra copies liba's timeout (7) onto app unchanged.
    js.jobs
        .push(job("app", LINUX, &format!("OOOOO{}", repeat('V', 15, 0))));
    charge(&mut js, "app", "liba");
    let root_build = js.propagated_from.values().next().copied();
    let f = facts(vec![js]);
    let a = assess(&nixpkgs_policy(), &f, &Ledger::default(), day(19));
    assert_eq!(
        a.attr("app").unwrap().jobs[0].rule,
        Rule::Victim {
            root: Some("liba".into()),
            candidates: vec![],
            root_build,
        },
        "two roots began in the same eval; Hydra's page says which one"
    );
    assert_eq!(a.roots.len(), 1, "{:?}", a.roots);
    assert_eq!(
        (a.roots[0].attr.as_str(), a.roots[0].victims.clone()),
        ("liba", vec!["app".to_owned()])
    );
    let (events, _, _) = replay(&nixpkgs_policy(), &f, Ledger::default(), 0, 19, None);
    assert!(
        events.iter().all(|e| e.attr.as_deref() != Some("app")),
        "a victim's copied timeout is never its own failure:\n{}",
        timeline(&events)
    );
    assert!(
        events.iter().any(|e| e.attr.as_deref() == Some("liba")),
        "the root's own timeout is acted on:\n{}",
        timeline(&events)
    );
}

#[test]
fn a_timeout_whose_page_is_not_read_yet_is_not_acted_on_and_says_so() {
    let mut js = trunk(40);
    js.jobs.push(job(
        "slowpkg",
        LINUX,
        &format!("OOOOO{}", repeat('U', 35, 0)),
    ));
    let f = facts(vec![js]);
    let (events, _, _) = replay(&nixpkgs_policy(), &f, Ledger::default(), 0, 39, None);
    assert!(events.is_empty(), "{}", timeline(&events));
    let a = assess(&nixpkgs_policy(), &f, &Ledger::default(), day(39));
    assert_eq!(
        a.attr("slowpkg").expect("an awaiting job is assessed").jobs[0].rule,
        Rule::AwaitingCause
    );
}

#[test]
fn a_flaky_job_is_never_a_streak() {
    let mut js = trunk(80);
    let flaky: String = (0..80)
        .map(|i| if i % 2 == 0 { "+O" } else { "+F" })
        .collect();
    js.jobs
        .push(job("python3Packages.flaky-net-tests", LINUX, &flaky));
    let f = facts(vec![js]);
    let (events, _, _) = replay(&nixpkgs_policy(), &f, Ledger::default(), 0, 79, None);
    assert!(events.is_empty(), "{}", timeline(&events));
    let a = assess(&nixpkgs_policy(), &f, &Ledger::default(), day(79));
    assert!(matches!(
        a.attr("python3Packages.flaky-net-tests").unwrap().jobs[0].rule,
        Rule::Flaky { .. }
    ));
}

#[test]
fn infra_noise_neither_starts_nor_extends_a_streak() {
    let mut js = trunk(80);
    js.jobs.push(job(
        "only-noise",
        LINUX,
        &format!("OOOOO{}", repeat('N', 75, 5)),
    ));
    js.jobs.push(job(
        "two-failures-then-noise",
        LINUX,
        &format!("OOOOOFF{}", repeat('N', 73, 5)),
    ));
    js.jobs.push(job(
        "pending-forever",
        LINUX,
        &format!("OOOOO{}", repeat('P', 75, 0)),
    ));
    let (events, _, _) = replay(
        &nixpkgs_policy(),
        &facts(vec![js]),
        Ledger::default(),
        0,
        79,
        None,
    );
    assert!(events.is_empty(), "{}", timeline(&events));
}

#[test]
fn an_uncounted_status_is_noise_under_that_policy() {
    let mut js = trunk(20);
    js.jobs.push(job(
        "chromium-huge",
        LINUX,
        &format!("OOOOO{}", repeat('T', 15, 3)),
    ));
    let f = facts(vec![js]);
    let counting = plan(&nixpkgs_policy(), &f, &Ledger::default(), day(19));
    assert_eq!(
        counting.count(ActionKind::Notify),
        1,
        "{}",
        counting.to_text()
    );
    let ignoring = policy_with("[streak]\ncount = [\"failed\"]\n");
    assert_eq!(
        plan(&ignoring, &f, &Ledger::default(), day(19))
            .actions
            .len(),
        0
    );
}

#[test]
fn a_package_that_recovers_is_told_once_and_its_open_pr_is_closed() {
    let mut js = trunk(70);
    js.jobs.push(job(
        "zlib-ng-compat",
        LINUX,
        &format!("OOOOO{}{}", repeat('F', 20, 10), repeat('O', 45, 0)),
    ));
    let f = facts(vec![js]);
    let (events, _, _) = replay(&nixpkgs_policy(), &f, Ledger::default(), 0, 69, None);
    assert_eq!(
        kinds(&events),
        vec![(8, ActionKind::Notify)],
        "{}",
        timeline(&events)
    );

    let ledger = Ledger {
        actions: vec![record(
            1,
            ActionKind::MarkBroken,
            "zlib-ng-compat",
            &[LINUX],
            RecordState::Open,
            day(20),
        )],
        opt_outs: vec![],
    };
    let p = plan(&nixpkgs_policy(), &f, &ledger, day(40));
    assert_eq!(p.actions.len(), 1, "{}", p.to_text());
    assert_eq!(
        (p.actions[0].kind, p.actions[0].evidence.pr),
        (ActionKind::ClosePr, Some(501))
    );
}

#[test]
fn a_job_that_disappears_is_left_alone() {
    let mut js = trunk(80);
    js.jobs.push(job(
        "oldtool",
        LINUX,
        &format!("OOOOO{}{}", repeat('F', 20, 5), ".".repeat(55)),
    ));
    let f = facts(vec![js]);
    let (events, _, _) = replay(&nixpkgs_policy(), &f, Ledger::default(), 0, 79, None);
    assert_eq!(
        kinds(&events),
        vec![(8, ActionKind::Notify)],
        "{}",
        timeline(&events)
    );
    let a = assess(&nixpkgs_policy(), &f, &Ledger::default(), day(79));
    assert_eq!(a.attr("oldtool").unwrap().jobs[0].rule, Rule::Gone);
}

#[test]
fn nothing_is_marked_that_was_not_notified_first_however_old_the_failure() {
    let mut js = trunk(200);
    js.jobs.push(job("ancient", LINUX, &repeat('F', 200, 10)));
    let f = facts(vec![js]);
    let p = plan(&nixpkgs_policy(), &f, &Ledger::default(), day(199));
    assert_eq!(
        p.actions.iter().map(|a| a.kind).collect::<Vec<_>>(),
        vec![ActionKind::Notify],
        "{}",
        p.to_text()
    );
    // Told on day 199: the mark waits the full notice (4 weeks) and the reminder.
    let (events, _, _) = replay(&nixpkgs_policy(), &f, Ledger::default(), 199, 199, None);
    let mut js = trunk(240);
    js.jobs.push(job("ancient", LINUX, &repeat('F', 240, 10)));
    let (later, _, _) = replay(
        &nixpkgs_policy(),
        &facts(vec![js]),
        Ledger::default(),
        199,
        239,
        None,
    );
    assert_eq!(kinds(&events), vec![(199, ActionKind::Notify)]);
    assert_eq!(
        kinds(&later),
        vec![
            (199, ActionKind::Notify),
            (220, ActionKind::Remind),
            (227, ActionKind::MarkBroken)
        ],
        "{}",
        timeline(&later)
    );
}

#[test]
fn a_mark_that_a_human_closed_is_never_proposed_again_for_that_failure() {
    let mut js = trunk(120);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(120)));
    let f = facts(vec![js]);
    let mut ledger = Ledger::default();
    ledger.actions.push(record(
        1,
        ActionKind::Notify,
        "grafx",
        &[LINUX],
        RecordState::Done,
        day(8),
    ));
    let mut remind = record(
        2,
        ActionKind::Remind,
        "grafx",
        &[LINUX],
        RecordState::Done,
        day(54),
    );
    remind.step = Some("remind-1w".into());
    ledger.actions.push(remind);
    ledger.actions.push(record(
        3,
        ActionKind::MarkBroken,
        "grafx",
        &[LINUX],
        RecordState::Closed,
        day(61),
    ));
    let (events, _, _) = replay(&nixpkgs_policy(), &f, ledger, 62, 119, None);
    assert!(events.is_empty(), "{}", timeline(&events));
}

#[test]
fn a_protected_package_is_escalated_instead_of_marked() {
    let mut js = trunk(70);
    js.jobs.push(job("stdenv", LINUX, &breaks_on_day_5(70)));
    let (events, _, plans) = replay(
        &nixpkgs_policy(),
        &facts(vec![js]),
        Ledger::default(),
        0,
        69,
        None,
    );
    assert_eq!(
        kinds(&events),
        vec![
            (8, ActionKind::Notify),
            (54, ActionKind::Remind),
            (61, ActionKind::Escalate)
        ],
        "{}",
        timeline(&events)
    );
    let escalation = plans[61]
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Escalate)
        .unwrap();
    assert_eq!(escalation.evidence.escalate_to, vec!["NixOS/nixpkgs-core"]);
}

#[test]
fn an_opt_out_marker_stops_everything_and_a_snooze_pauses_the_clock() {
    let mut js = trunk(100);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(100)));
    let f = facts(vec![js]);
    let opt = |kind, until: Option<i64>| OptOut {
        id: 1,
        attr: "grafx".into(),
        kind,
        recorded_at: day(2),
        until,
        by: Some("alice".into()),
        note: "pkgs/by-name/gr/grafx/package.nix".into(),
        revoked_at: None,
    };
    let marked = Ledger {
        actions: vec![],
        opt_outs: vec![opt(OptOutKind::Marker, None)],
    };
    let (events, _, _) = replay(&nixpkgs_policy(), &f, marked, 0, 99, None);
    assert!(events.is_empty(), "{}", timeline(&events));

    let mut snooze = opt(OptOutKind::Snooze, Some(day(40)));
    snooze.recorded_at = day(20);
    let snoozed = Ledger {
        actions: vec![],
        opt_outs: vec![snooze],
    };
    let (events, _, _) = replay(&nixpkgs_policy(), &f, snoozed, 0, 99, None);
    assert_eq!(
        kinds(&events),
        vec![
            (8, ActionKind::Notify),
            (74, ActionKind::Remind),
            (81, ActionKind::MarkBroken)
        ],
        "20 days of snooze move the reminder and the mark by 20 days:\n{}",
        timeline(&events)
    );
}

#[test]
fn a_mass_breakage_holds_everything_and_names_its_window_until_it_clears() {
    let policy =
        policy_with("[circuit_breaker]\nwindow_evals = 2\nmin_jobs = 10\nmin_share = 0.2\n");
    let build = |victims_recover_on: Option<usize>| {
        let mut js = trunk(100);
        js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(100)));
        for i in 0..30 {
            let tail = match victims_recover_on {
                Some(d) => format!("{}{}", repeat('D', d - 70, 0), repeat('O', 100 - d, 0)),
                None => repeat('D', 30, 0),
            };
            js.jobs.push(job(
                &format!("pkg{i}"),
                LINUX,
                &format!("{}{tail}", repeat('O', 70, 0)),
            ));
        }
        for i in 0..20 {
            js.jobs
                .push(job(&format!("fine{i}"), LINUX, &repeat('O', 100, 0)));
        }
        facts(vec![js])
    };
    let mut ledger = Ledger::default();
    ledger.actions.push(record(
        1,
        ActionKind::Notify,
        "grafx",
        &[LINUX],
        RecordState::Done,
        day(8),
    ));
    let mut remind = record(
        2,
        ActionKind::Remind,
        "grafx",
        &[LINUX],
        RecordState::Done,
        day(54),
    );
    remind.step = Some("remind-1w".into());
    ledger.actions.push(remind);

    let held = plan(&policy, &build(None), &ledger, day(80));
    assert!(held.held, "{}", held.to_text());
    assert_eq!(held.actions.len(), 1, "{}", held.to_text());
    let hold = &held.actions[0];
    assert_eq!(hold.kind, ActionKind::Hold);
    let window = hold.evidence.window.as_ref().expect("the window");
    assert_eq!(
        (window.first.id, window.newly_failing),
        (3_000_070, 30),
        "{window:?}"
    );
    assert!(
        window
            .compare
            .as_deref()
            .is_some_and(|c| c.contains("/compare/"))
    );
    assert!(
        held.deferred
            .iter()
            .any(|d| d.action.kind == ActionKind::MarkBroken && d.why.starts_with("held")),
        "the due mark waits: {:?}",
        held.deferred
    );

    let cleared = plan(&policy, &build(Some(75)), &ledger, day(80));
    assert!(!cleared.held, "{}", cleared.to_text());
    assert_eq!(
        cleared.count(ActionKind::MarkBroken),
        1,
        "{}",
        cleared.to_text()
    );
}

#[test]
fn pull_requests_and_pings_stay_within_the_limits() {
    let policy = policy_with(
        "[limits]\nprs_per_day = 2\nopen_prs = 3\npings_per_maintainer_per_week = 2\n[batch]\ngroup_by = \"attr\"\n",
    );
    let mut js = trunk(90);
    let mut f_maint = std::collections::BTreeMap::new();
    for i in 0..5 {
        let attr = format!("pkg{i}");
        js.jobs.push(job(&attr, LINUX, &breaks_on_day_5(90)));
        f_maint.insert(attr, vec!["alice".to_owned()]);
    }
    let mut f = facts(vec![js]);
    f.maintainers = f_maint;
    let (events, _, plans) = replay(&policy, &f, Ledger::default(), 0, 89, None);
    let on = |d: i64, k: ActionKind| events.iter().filter(|e| e.day == d && e.kind == k).count();
    assert_eq!(
        (
            on(8, ActionKind::Notify),
            on(15, ActionKind::Notify),
            on(22, ActionKind::Notify)
        ),
        (2, 2, 1),
        "{}",
        timeline(&events)
    );
    let marks: Vec<i64> = events
        .iter()
        .filter(|e| e.kind == ActionKind::MarkBroken)
        .map(|e| e.day)
        .collect();
    assert!(
        marks.len() <= 3,
        "never more than 3 open PRs: {marks:?}\n{}",
        timeline(&events)
    );
    for p in &plans {
        let batches: std::collections::BTreeSet<_> =
            p.actions.iter().filter_map(|a| a.batch.clone()).collect();
        assert!(batches.len() <= 2, "{}", p.to_text());
    }
    assert!(plans.iter().any(|p| {
        p.deferred
            .iter()
            .any(|d| d.why.starts_with("limit: pull requests"))
    }));
}

#[test]
fn jobs_that_broke_in_the_same_transition_are_grouped_with_a_compare_link() {
    let mut js = trunk(20);
    js.jobs.push(job("liba", LINUX, &breaks_on_day_5(20)));
    js.jobs.push(job("libb", ARM, &breaks_on_day_5(20)));
    js.jobs.push(job(
        "libc",
        LINUX,
        &format!("OOOOOOOO{}", repeat('F', 12, 0)),
    ));
    let a = assess(
        &nixpkgs_policy(),
        &facts(vec![js]),
        &Ledger::default(),
        day(19),
    );
    let day5: Vec<_> = a
        .transitions
        .iter()
        .filter(|t| t.bad.id == 3_000_005)
        .collect();
    assert_eq!(day5.len(), 1, "{:?}", a.transitions);
    assert_eq!(
        day5[0].jobs,
        vec![
            ("liba".to_owned(), LINUX.to_owned()),
            ("libb".to_owned(), ARM.to_owned())
        ]
    );
    assert_eq!(
        day5[0].compare.as_deref(),
        Some(
            format!(
                "https://github.com/NixOS/nixpkgs/compare/{}...{}",
                rev(4),
                rev(5)
            )
            .as_str()
        )
    );
    let notice = plan(
        &nixpkgs_policy(),
        &facts(vec![{
            let mut js = trunk(20);
            js.jobs.push(job("liba", LINUX, &breaks_on_day_5(20)));
            js
        }]),
        &Ledger::default(),
        day(19),
    );
    let ev = &notice.actions[0].evidence.jobs[0];
    assert_eq!(ev.last_good.as_ref().map(|g| g.eval.id), Some(3_000_004));
    assert!(ev.compare.is_some());
}

#[test]
fn a_package_marked_broken_everywhere_is_warned_then_retired_after_a_release_cycle() {
    let gone_after_mark = format!("OOOOO{}{}", repeat('F', 60, 10), ".".repeat(195));
    let mut js = trunk(260);
    js.jobs.push(job("oldlib", LINUX, &gone_after_mark));
    let mut mark = record(
        1,
        ActionKind::MarkBroken,
        "oldlib",
        &[LINUX],
        RecordState::Merged,
        day(61),
    );
    mark.all_platforms = true;
    mark.closed_at = Some(day(64));
    let ledger = Ledger {
        actions: vec![mark.clone()],
        opt_outs: vec![],
    };
    let (events, _, plans) = replay(&nixpkgs_policy(), &facts(vec![js]), ledger, 200, 259, None);
    assert_eq!(
        events
            .iter()
            .map(|e| (e.day, e.kind, e.step.clone()))
            .collect::<Vec<_>>(),
        vec![
            (218, ActionKind::Remind, Some("retire-warning".to_owned())),
            (246, ActionKind::Retire, None)
        ],
        "26 weeks after the merge on day 64, warned 4 weeks before:\n{}",
        timeline(&events)
    );
    // The warning names the day of the move (what its comment tells).
    let warning = plans
        .iter()
        .flat_map(|p| &p.actions)
        .find(|a| a.step.as_deref() == Some("retire-warning"))
        .expect("a warning was planned");
    let retire_day = |unix: i64| (unix - day(0)).div_euclid(86_400);
    let announced: Vec<(ActionKind, i64)> = warning
        .evidence
        .schedule
        .iter()
        .map(|s| (s.kind, retire_day(s.at_unix)))
        .collect();
    assert_eq!(
        announced,
        [(ActionKind::Retire, 246)],
        "{:?}",
        warning.evidence.schedule
    );

    // Someone fixed and unmarked it: it builds again, so it stays.
    let mut js = trunk(260);
    js.jobs.push(job(
        "oldlib",
        LINUX,
        &format!(
            "OOOOO{}{}{}",
            repeat('F', 60, 10),
            ".".repeat(100),
            repeat('O', 95, 0)
        ),
    ));
    let ledger = Ledger {
        actions: vec![mark],
        opt_outs: vec![],
    };
    let (events, _, _) = replay(&nixpkgs_policy(), &facts(vec![js]), ledger, 200, 259, None);
    assert!(events.is_empty(), "{}", timeline(&events));
}

/// `breaking` of `total` jobs on x86_64-linux build until `at` and fail from
/// then on (own failures); the rest build all along. One eval a day.
fn breakage_at(
    at: usize,
    days: usize,
    breaking: usize,
    total: usize,
) -> hydra_sentinel::policy::Facts {
    let mut js = trunk(days);
    for i in 0..total {
        let pattern = if i < breaking {
            format!("{}{}", repeat('O', at, 0), repeat('F', days - at, 0))
        } else {
            repeat('O', days, 0)
        };
        js.jobs.push(job(&format!("pkg{i:03}"), LINUX, &pattern));
    }
    facts(vec![js])
}

const SMALL_BREAKER: &str = "[circuit_breaker]\nwindow_evals = 2\nmin_jobs = 10\nmin_share = 0.2\n";

#[test]
fn a_mass_breakage_right_after_the_first_stored_eval_is_held() {
    let policy = policy_with(SMALL_BREAKER);
    let facts = breakage_at(1, 10, 30, 50);
    let p = plan(&policy, &facts, &Ledger::default(), day(9) + 3600);
    assert!(p.held, "30 of 50 jobs broke in eval 1: {}", p.to_text());
    assert_eq!(p.count(ActionKind::Notify), 0, "{}", p.to_text());
    let window = p.actions[0].evidence.window.as_ref().expect("the window");
    assert_eq!(
        (
            window.before.id,
            window.first.id,
            window.last.id,
            window.newly_failing
        ),
        (3_000_000, 3_000_001, 3_000_001, 30),
        "{window:?}"
    );
}

#[test]
fn a_mass_breakage_is_held_wherever_it_falls_in_the_history() {
    let policy = policy_with(SMALL_BREAKER);
    let days = 12;
    for at in 1..days {
        let facts = breakage_at(at, days, 30, 50);
        let p = plan(
            &policy,
            &facts,
            &Ledger::default(),
            day(days as i64 - 1) + 3600,
        );
        assert!(p.held, "breakage at eval {at}: {}", p.to_text());
        let window = p.actions[0].evidence.window.as_ref().expect("the window");
        assert_eq!(
            (window.first.id, window.last.id),
            (3_000_000 + at as i64, 3_000_000 + at as i64),
            "breakage at eval {at}: the window is tightened to that eval: {window:?}"
        );
    }
}

#[test]
fn of_two_equal_mass_breakages_the_later_one_names_the_hold() {
    let policy = policy_with(SMALL_BREAKER);
    let mut js = trunk(20);
    for i in 0..60 {
        let at = if i < 20 {
            4
        } else if i < 40 {
            12
        } else {
            20
        };
        let pattern = format!(
            "{}{}",
            repeat('O', at.min(20), 0),
            repeat('F', 20 - at.min(20), 0)
        );
        js.jobs.push(job(&format!("pkg{i:03}"), LINUX, &pattern));
    }
    let p = plan(
        &policy,
        &facts(vec![js]),
        &Ledger::default(),
        day(19) + 3600,
    );
    assert!(p.held, "{}", p.to_text());
    let window = p.actions[0].evidence.window.as_ref().expect("the window");
    assert_eq!(
        window.first.id, 3_000_012,
        "the later of two equal windows: {window:?}"
    );
}

#[test]
fn a_notice_names_the_date_and_platforms_of_every_step_to_come() {
    let policy = nixpkgs_policy();
    let mut js = trunk(12);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(12)));
    js.jobs.push(job("grafx", DARWIN, &breaks_on_day_5(12)));
    js.jobs.push(job("grafx", ARM, &repeat('O', 12, 0)));
    let facts = facts(vec![js]);
    let p = plan(&policy, &facts, &Ledger::default(), day(11) + 3600);
    let notice = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Notify)
        .unwrap_or_else(|| panic!("a notice is due: {}", p.to_text()));
    let steps: Vec<(ActionKind, String, Vec<String>)> = notice
        .evidence
        .schedule
        .iter()
        .map(|s| (s.kind, s.at[..10].to_owned(), s.systems.clone()))
        .collect();
    // The streak began on day 5 (2025-06-07 noon); linux marks after 8
    // weeks, darwin after 10 (its override), each reminded a week before.
    let expected = vec![
        (
            ActionKind::Notify,
            "2025-06-13".to_owned(),
            vec![DARWIN.to_owned(), LINUX.to_owned()],
        ),
        (
            ActionKind::Remind,
            "2025-07-26".to_owned(),
            vec![LINUX.to_owned()],
        ),
        (
            ActionKind::MarkBroken,
            "2025-08-02".to_owned(),
            vec![LINUX.to_owned()],
        ),
        (
            ActionKind::Remind,
            "2025-08-09".to_owned(),
            vec![DARWIN.to_owned()],
        ),
        (
            ActionKind::MarkBroken,
            "2025-08-16".to_owned(),
            vec![DARWIN.to_owned()],
        ),
    ];
    assert_eq!(steps, expected, "{:#?}", notice.evidence.schedule);
    assert!(
        notice
            .evidence
            .schedule
            .iter()
            .all(|s| !s.systems.contains(&ARM.to_owned())),
        "aarch64-linux builds: nothing is scheduled for it"
    );
}

#[test]
fn a_step_whose_attempts_failed_waits_longer_after_each_failure() {
    let policy = nixpkgs_policy();
    let mut js = trunk(12);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(12)));
    let facts = facts(vec![js]);
    let now = day(11) + 3600;
    let failed_notice = |id: i64, at: i64| {
        let mut r = record(
            id,
            ActionKind::Notify,
            "grafx",
            &[LINUX],
            RecordState::Failed,
            at,
        );
        r.step = Some("notice".into());
        r.pr = None;
        r.error = Some("GitHub answered 502".into());
        r
    };
    let notices =
        |ledger: &Ledger, at: i64| plan(&policy, &facts, ledger, at).count(ActionKind::Notify);

    let mut ledger = Ledger::default();
    ledger.actions.push(failed_notice(1, now));
    assert_eq!(
        notices(&ledger, now + 1800),
        0,
        "half an hour after one failure it waits"
    );
    let waiting = plan(&policy, &facts, &ledger, now + 1800);
    assert!(
        waiting
            .deferred
            .iter()
            .any(|d| d.why.contains("1 attempt failed") && d.why.contains("502")),
        "the deferral says why: {:?}",
        waiting.deferred
    );
    assert_eq!(
        notices(&ledger, now + 3600),
        1,
        "an hour after it tries again"
    );

    ledger.actions.push(failed_notice(2, now + 3600));
    ledger.actions.push(failed_notice(3, now + 3 * 3600));
    assert_eq!(
        notices(&ledger, now + 6 * 3600),
        0,
        "three failures: four hours' wait"
    );
    assert_eq!(notices(&ledger, now + 7 * 3600), 1);
}

/// An open mark-broken pull request of ours for `attr` on `systems`.
fn open_mark(id: i64, attr: &str, systems: &[&str], pr: u64, at: i64) -> ActionRecord {
    let mut r = record(
        id,
        ActionKind::MarkBroken,
        attr,
        systems,
        RecordState::Open,
        at,
    );
    r.pr = Some(pr);
    r
}

fn notified(id: i64, attr: &str, systems: &[&str], at: i64) -> ActionRecord {
    let mut r = record(id, ActionKind::Notify, attr, systems, RecordState::Done, at);
    r.step = Some("notice".into());
    r.pr = None;
    r
}

#[test]
fn a_package_failing_on_more_platforms_updates_our_open_pull_request_instead_of_opening_another() {
    let policy = nixpkgs_policy();
    let days = 130;
    let mut js = trunk(days);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(days)));
    // Darwin breaks later; by day 129 its own ladder reaches the mark too.
    js.jobs.push(job(
        "grafx",
        DARWIN,
        &format!("{}{}", repeat('O', 40, 0), repeat('F', days - 40, 10)),
    ));
    let facts = facts(vec![js]);
    let mut ledger = Ledger::default();
    ledger.actions.push(notified(1, "grafx", &[LINUX], day(8)));
    ledger
        .actions
        .push(notified(2, "grafx", &[DARWIN], day(43)));
    let mut remind = record(
        3,
        ActionKind::Remind,
        "grafx",
        &[DARWIN],
        RecordState::Done,
        day(103),
    );
    remind.step = Some("remind-1w".into());
    remind.pr = None;
    ledger.actions.push(remind);
    let mut remind = record(
        5,
        ActionKind::Remind,
        "grafx",
        &[LINUX],
        RecordState::Done,
        day(54),
    );
    remind.step = Some("remind-1w".into());
    remind.pr = None;
    ledger.actions.push(remind);
    ledger
        .actions
        .push(open_mark(4, "grafx", &[LINUX], 900, day(61)));

    let p = plan(&policy, &facts, &ledger, day(129) + 3600);
    let marks: Vec<_> = p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::MarkBroken)
        .collect();
    assert_eq!(marks.len(), 1, "{}", p.to_text());
    let update = marks[0];
    assert_eq!(
        (
            update.step.as_deref(),
            update.evidence.pr,
            update.systems.clone()
        ),
        (
            Some("update"),
            Some(900),
            vec![DARWIN.to_owned(), LINUX.to_owned()]
        ),
        "the open pull request #900 now marks both platforms: {}",
        p.to_text()
    );
}

#[test]
fn when_one_package_of_a_batch_builds_again_the_batch_is_rewritten_without_it() {
    let policy = nixpkgs_policy();
    let mut js = trunk(80);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(80)));
    // libfoo failed too, then built again on day 75.
    js.jobs.push(job(
        "libfoo",
        LINUX,
        &format!("{}{}", breaks_on_day_5(75), repeat('O', 5, 0)),
    ));
    let facts = facts(vec![js]);
    let mut ledger = Ledger::default();
    ledger.actions.push(notified(3, "grafx", &[LINUX], day(8)));
    ledger.actions.push(notified(4, "libfoo", &[LINUX], day(8)));
    ledger
        .actions
        .push(open_mark(1, "grafx", &[LINUX], 901, day(61)));
    ledger
        .actions
        .push(open_mark(2, "libfoo", &[LINUX], 901, day(61)));

    let p = plan(&policy, &facts, &ledger, day(79) + 3600);
    type Planned<'a> = (ActionKind, Option<&'a str>, Option<&'a str>, Option<u64>);
    let kinds: Vec<Planned> = p
        .actions
        .iter()
        .map(|a| (a.kind, a.attr.as_deref(), a.step.as_deref(), a.evidence.pr))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ActionKind::ClosePr, Some("libfoo"), None, Some(901)),
            (
                ActionKind::MarkBroken,
                Some("grafx"),
                Some("update"),
                Some(901)
            ),
        ],
        "grafx stays on #901, which is rewritten without libfoo: {}",
        p.to_text()
    );
}

#[test]
fn a_first_enable_with_a_backlog_posts_at_most_the_daily_ceiling_oldest_first() {
    let policy = policy_with("[limits]\nposts_per_day = 5\n");
    let mut js = trunk(20);
    // Twelve packages without maintainers, all overdue for a notice; the
    // lower the number, the older the failure.
    for i in 0..12 {
        js.jobs.push(job(
            &format!("orphan{i:02}"),
            LINUX,
            &format!("{}{}", repeat('O', 1 + i, 0), repeat('F', 19 - i, 0)),
        ));
    }
    let facts = facts(vec![js]);
    let (events, _, _) = replay(&policy, &facts, Ledger::default(), 19, 21, None);
    let per_day: Vec<(i64, Vec<String>)> = (19..=21)
        .map(|d| {
            (
                d,
                events
                    .iter()
                    .filter(|e| e.day == d && e.kind == ActionKind::Notify)
                    .filter_map(|e| e.attr.clone())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        per_day,
        vec![
            (19, (0..5).map(|i| format!("orphan{i:02}")).collect()),
            (20, (5..10).map(|i| format!("orphan{i:02}")).collect()),
            (21, (10..12).map(|i| format!("orphan{i:02}")).collect()),
        ],
        "five a day, the oldest failures first:\n{}",
        timeline(&events)
    );
}

/// The mark that the first notice planned as of `now` announces.
fn mark_scheduled_by_the_notice(
    policy: &hydra_sentinel::policy::Policy,
    jobsets: Vec<hydra_sentinel::policy::JobsetFacts>,
    now: i64,
) -> hydra_sentinel::policy::plan::ScheduledStep {
    let p = plan(policy, &facts(jobsets), &Ledger::default(), now);
    let notice = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Notify)
        .unwrap_or_else(|| panic!("{}", p.to_text()));
    notice
        .evidence
        .schedule
        .iter()
        .find(|s| s.kind == ActionKind::MarkBroken)
        .unwrap_or_else(|| panic!("a mark is scheduled: {}", p.to_text()))
        .clone()
}

#[test]
fn a_mark_scheduled_for_every_failing_platform_says_every_platform() {
    let policy = nixpkgs_policy();
    let mut js = trunk(12);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(12)));
    js.jobs.push(job("grafx", ARM, &breaks_on_day_5(12)));
    // A branch the policy only watches builds it on darwin: no mark of
    // trunk's can cover that, so it does not count.
    let mut staging = branch("staging-next", 12);
    staging.jobs.push(job("grafx", DARWIN, &"O".repeat(12)));
    let mark = mark_scheduled_by_the_notice(&policy, vec![js, staging], day(11) + 3600);
    assert!(
        mark.all_platforms,
        "both platforms built on trunk fail: {mark:?}"
    );
}

/// A mark on the failing platforms is not one "on every platform" while the
/// package builds on a third, on trunk or in another jobset the policy acts
/// on: the first notice announces the mark the ledger will make.
#[test]
fn a_notice_for_a_package_failing_on_two_of_its_three_platforms_schedules_the_mark_on_those_two() {
    let failing_on_linux = || {
        let mut js = trunk(12);
        js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(12)));
        js.jobs.push(job("grafx", ARM, &breaks_on_day_5(12)));
        js
    };
    let mut with_darwin = failing_on_linux();
    with_darwin.jobs.push(job("grafx", DARWIN, &"O".repeat(12)));
    let mut staging = branch("staging-next", 12);
    staging.jobs.push(job("grafx", DARWIN, &"O".repeat(12)));
    let acting_on_both =
        policy_with("[scope]\nact_on = [\"nixpkgs:trunk\", \"nixpkgs:staging-next\"]\n");
    for (policy, jobsets, where_darwin_builds) in [
        (nixpkgs_policy(), vec![with_darwin], "on trunk"),
        (
            acting_on_both,
            vec![failing_on_linux(), staging],
            "in staging-next, which the policy acts on too",
        ),
    ] {
        let mark = mark_scheduled_by_the_notice(&policy, jobsets, day(11) + 3600);
        assert_eq!(mark.systems, [ARM, LINUX], "{mark:?}");
        assert!(
            !mark.all_platforms,
            "grafx builds on {DARWIN} {where_darwin_builds}, which no mark covers: {mark:?}"
        );
    }
}

/// What `/healthz` lists as set aside (and `explain` as refused) belongs to
/// the failure going on: a package that builds again on every platform has
/// none, although one of its platforms built all along.
#[test]
fn a_refused_edit_is_listed_only_while_its_failure_lasts() {
    let build = |days: usize, fails_until: usize| {
        let mut js = trunk(days);
        js.jobs.push(job("grafx", LINUX, &"O".repeat(days)));
        js.jobs.push(job(
            "grafx",
            ARM,
            &format!(
                "OOOOO{}{}",
                "F".repeat(fails_until - 5),
                "O".repeat(days - fails_until)
            ),
        ));
        facts(vec![js])
    };
    let ledger = refused_on_day_20(
        &[ARM],
        "the file sets meta.broken by a function the editor cannot change",
    );
    assert_eq!(
        refused_of_grafx(&build(26, 26), &ledger, day(25) + 3600),
        [1],
        "the refusal belongs to the failure going on"
    );
    assert_eq!(
        refused_of_grafx(&build(41, 30), &ledger, day(40) + 3600),
        Vec::<i64>::new(),
        "grafx builds again everywhere since day 30"
    );
}

/// A branch only watched, or a platform the package left, is no part of
/// the failure the policy acts on: once trunk builds again, its refused
/// edit is no longer listed, though the branch still fails.
#[test]
fn a_refused_edit_is_not_listed_once_trunk_builds_again_though_a_watched_branch_still_fails() {
    let failing_until_day_30 = format!("OOOOO{}{}", "F".repeat(25), "O".repeat(11));
    let mut js = trunk(41);
    js.jobs.push(job("grafx", LINUX, &failing_until_day_30));
    js.jobs.push(job("grafx", ARM, &failing_until_day_30));
    // Left trunk on day 15 while failing.
    js.jobs
        .push(job("grafx", DARWIN, &format!("OOOOO{}", "F".repeat(10))));
    let mut staging = branch("staging-next", 41);
    staging
        .jobs
        .push(job("grafx", LINUX, &format!("OOOOO{}", "F".repeat(36))));
    let ledger = refused_on_day_20(&[ARM, LINUX], "GitHub refused it as invalid (422)");
    assert_eq!(
        refused_of_grafx(&facts(vec![js.clone()]), &ledger, day(25) + 3600),
        [1],
        "on day 25 the refusal belongs to the failure going on"
    );
    assert_eq!(
        refused_of_grafx(&facts(vec![js, staging]), &ledger, day(40) + 3600),
        Vec::<i64>::new(),
        "grafx builds again on trunk since day 30; staging-next is only watched \
         and {DARWIN} left trunk"
    );
}

/// A package Hydra builds on one platform only is marked broken on every
/// platform when it fails there: the notice announces the edit the mark
/// makes (`meta.broken = true`), not a mark "on those platforms only".
#[test]
fn a_package_built_on_one_platform_is_announced_and_marked_everywhere() {
    let policy = nixpkgs_policy();
    let mut js = trunk(70);
    js.jobs.push(job("grafx", LINUX, &breaks_on_day_5(70)));
    let mark = mark_scheduled_by_the_notice(&policy, vec![js.clone()], day(11) + 3600);
    assert!(mark.all_platforms, "{mark:?}");
    let (events, _, _) = replay(&policy, &facts(vec![js]), Ledger::default(), 0, 69, None);
    let marked = events
        .iter()
        .find(|e| e.kind == ActionKind::MarkBroken)
        .unwrap_or_else(|| panic!("grafx is marked:\n{}", timeline(&events)));
    assert!(marked.all_platforms, "{}", timeline(&events));
}

/// The ids of `grafx`'s refused edits that an assessment as of `now` lists.
fn refused_of_grafx(facts: &hydra_sentinel::policy::Facts, ledger: &Ledger, now: i64) -> Vec<i64> {
    assess(&nixpkgs_policy(), facts, ledger, now)
        .attrs
        .get("grafx")
        .map(|a| a.refused.iter().map(|r| r.id).collect())
        .unwrap_or_default()
}

/// A ledger with one edit of `grafx` on `systems` refused on day 20.
fn refused_on_day_20(systems: &[&str], reason: &str) -> Ledger {
    let mut ledger = Ledger::default();
    ledger.actions.push(ActionRecord {
        refused: Some(reason.into()),
        ..record(
            1,
            ActionKind::MarkBroken,
            "grafx",
            systems,
            RecordState::Done,
            day(20),
        )
    });
    ledger
}
