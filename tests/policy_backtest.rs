//! Backtesting a planted history: what the replay marked (true positives)
//! and what failed past its mark deadline without being marked (false
//! negatives), each with the reason the engine had.

mod policy_common;

use hydra_sentinel::policy::{
    BacktestReport, FalseNegative, MissReason, OptOut, OptOutKind, Policy, backtest,
};
use policy_common::*;

const DAYS: usize = 36;
const SYSTEM: &str = "x86_64-linux";

/// A short ladder (notice after a day, mark ten days into the streak, at
/// least three days after the notice), room for one open pull request that
/// stays open for the whole replay, and a breaker that trips on five jobs.
fn policy() -> Policy {
    policy_with(
        "[streak]\nmin_evals = 2\n\
         [ladder]\nnotify_after = \"1d\"\nremind_before_mark = []\nmark_broken_after = \"10d\"\nmin_notice = \"3d\"\nmark_min_derivations = 1\n\
         [limits]\nprs_per_day = 5\nopen_prs = 1\npings_per_maintainer_per_week = 5\n\
         [circuit_breaker]\nwindow_evals = 2\nmin_jobs = 5\nmin_share = 0.3\n\
         [batch]\ngroup_by = \"attr\"\n\
         [backtest]\nassumed_merge_delay = \"60d\"\n",
    )
}

/// `ok` days of building, then failing to the end (rebuilt every 4 days).
fn fails_after(ok: usize) -> String {
    format!("{}{}", "O".repeat(ok), repeat('F', DAYS - ok, 4))
}

/// grafx fails from day 0 and is marked on day 10, opening the one pull
/// request the limits allow; libslow's deadline (day 12) finds it open;
/// heldpkg's deadline (day 30) comes two days into a mass breakage of six
/// packages (day 28) that lasts to the end; handsoff fails from day 0 but
/// its maintainers put the marker in its file on day 1.
fn planted() -> (hydra_sentinel::policy::Facts, Vec<OptOut>) {
    let mut js = trunk(DAYS);
    js.jobs.push(job("grafx", SYSTEM, &fails_after(0)));
    js.jobs.push(job("libslow", SYSTEM, &fails_after(2)));
    js.jobs.push(job("heldpkg", SYSTEM, &fails_after(20)));
    js.jobs.push(job("handsoff", SYSTEM, &fails_after(0)));
    for i in 0..6 {
        js.jobs
            .push(job(&format!("mass{i}"), SYSTEM, &fails_after(28)));
    }
    for i in 0..3 {
        js.jobs
            .push(job(&format!("fine{i}"), SYSTEM, &"O".repeat(DAYS)));
    }
    let marker = OptOut {
        id: 1,
        attr: "handsoff".into(),
        kind: OptOutKind::Marker,
        recorded_at: day(1),
        until: None,
        by: Some("alice".into()),
        note: "pkgs/by-name/ha/handsoff/package.nix".into(),
        revoked_at: None,
    };
    (facts(vec![js]), vec![marker])
}

fn replayed() -> BacktestReport {
    let (facts, opt_outs) = planted();
    backtest(&policy(), &facts, &opt_outs, day(0), day(DAYS as i64 - 1))
}

fn missed<'r>(report: &'r BacktestReport, attr: &str) -> &'r FalseNegative {
    report
        .false_negatives
        .iter()
        .find(|f| f.attr == attr)
        .unwrap_or_else(|| panic!("{attr} is not a false negative:\n{}", report.to_text()))
}

#[test]
fn a_package_marked_in_time_is_a_true_positive_and_not_a_false_negative() {
    let report = replayed();
    assert_eq!(
        report.marks,
        1,
        "only grafx is marked:\n{}",
        report.to_text()
    );
    let marked_on: Vec<&str> = report
        .per_day
        .iter()
        .filter(|d| d.mark_broken > 0)
        .map(|d| d.day.as_str())
        .collect();
    assert_eq!(marked_on, ["2025-06-12"], "day 10:\n{}", report.to_text());
    assert!(
        report.false_negatives.iter().all(|f| f.attr != "grafx"),
        "{}",
        report.to_text()
    );
    assert!(report.false_positives.is_empty(), "{}", report.to_text());
}

#[test]
fn a_held_breakage_is_a_false_negative_with_its_reason() {
    let report = replayed();
    assert!(
        report.holds.iter().any(|h| h.day == "2025-06-30"),
        "the breaker trips on day 28:\n{}",
        report.to_text()
    );
    let held = missed(&report, "heldpkg");
    assert_eq!(
        (
            held.reason,
            held.systems.as_slice(),
            held.failing_since.as_str(),
            held.deadline.as_str()
        ),
        (
            MissReason::Held,
            [SYSTEM.to_owned()].as_slice(),
            "2025-06-22",
            "2025-07-02"
        ),
        "{}",
        report.to_text()
    );
    assert!(held.detail.starts_with("held: mass breakage"), "{held:?}");
    assert!(held.later.is_empty(), "{held:?}");
}

#[test]
fn a_mark_deferred_by_the_open_pull_request_limit_is_a_false_negative_with_its_reason() {
    let report = replayed();
    let limited = missed(&report, "libslow");
    assert_eq!(
        (
            limited.reason,
            limited.failing_since.as_str(),
            limited.deadline.as_str()
        ),
        (MissReason::Limits, "2025-06-04", "2025-06-14"),
        "{}",
        report.to_text()
    );
    assert!(
        limited.detail.starts_with("limit: pull requests"),
        "{limited:?}"
    );
    assert_eq!(
        limited.later,
        [MissReason::Held],
        "the hold from day 28 on is noted as well: {limited:?}"
    );
}

#[test]
fn an_opted_out_package_is_a_false_negative_that_names_who_asked() {
    let report = replayed();
    let handsoff = missed(&report, "handsoff");
    assert_eq!(handsoff.reason, MissReason::OptedOut, "{handsoff:?}");
    assert!(
        handsoff.detail.contains("marker") && handsoff.detail.contains("by alice"),
        "{handsoff:?}"
    );
}

#[test]
fn the_false_negatives_are_exactly_the_planted_ones_in_the_text_and_the_json() {
    let report = replayed();
    let found: Vec<(&str, MissReason)> = report
        .false_negatives
        .iter()
        .map(|f| (f.attr.as_str(), f.reason))
        .collect();
    assert_eq!(
        found,
        [
            ("handsoff", MissReason::OptedOut),
            ("heldpkg", MissReason::Held),
            ("libslow", MissReason::Limits),
        ],
        "the mass breakage's packages are not past their deadline yet:\n{}",
        report.to_text()
    );

    let text = report.to_text();
    assert!(
        text.contains("false negatives (failing past the mark deadline, never marked): 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "    heldpkg on x86_64-linux: failing since 2025-06-22, due 2025-07-02, held by the circuit breaker (held: mass breakage"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "    libslow on x86_64-linux: failing since 2025-06-04, due 2025-06-14, deferred by limits (limit: pull requests"
        ),
        "{text}"
    );

    let json = serde_json::to_value(&report).expect("the report is JSON");
    let held = json["false_negatives"]
        .as_array()
        .expect("false_negatives is a list")
        .iter()
        .find(|f| f["attr"] == "heldpkg")
        .unwrap_or_else(|| panic!("no heldpkg in {json}"));
    assert_eq!(held["reason"], "held", "{held}");
    assert_eq!(held["systems"], serde_json::json!([SYSTEM]), "{held}");
    assert_eq!(held["failing_since"], "2025-06-22", "{held}");
}
