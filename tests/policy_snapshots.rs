//! Snapshots of what people read: `explain` and the weekly digest, on a
//! fixed history with every kind of package in it, hostile names included.

mod policy_common;

use std::collections::BTreeMap;

use hydra_sentinel::digest::{self, DigestInput, GITHUB_BODY_LIMIT, Week};
use hydra_sentinel::policy::{
    ActionKind, ActionRecord, Facts, Ledger, RecordState, assess, explain, plan_from,
};
use policy_common::*;

const LINUX: &str = "x86_64-linux";
const ARM: &str = "aarch64-linux";

/// 70 days: a long failure, a platform-only one, a root with victims, a
/// flaky job, a skipped Haskell package, and a name that tries to mention.
fn world() -> (Facts, Ledger) {
    let mut js = trunk(70);
    let breaks = |day: usize| format!("{}{}", "O".repeat(day), repeat('F', 70 - day, 10));
    js.jobs.push(job("grafx", LINUX, &breaks(5)));
    js.jobs.push(job("grafx", ARM, &breaks(5)));
    js.jobs
        .push(job("simdjson-fast", LINUX, &repeat('O', 70, 0)));
    js.jobs.push(job("simdjson-fast", ARM, &breaks(40)));
    js.jobs.push(job("libfoo", LINUX, &breaks(63)));
    for v in ["foo-gui", "foo-cli"] {
        js.jobs.push(job(
            v,
            LINUX,
            &format!("{}{}", "O".repeat(63), repeat('D', 7, 0)),
        ));
    }
    let flaky: String = (0..70)
        .map(|i| if i % 2 == 0 { "+O" } else { "+F" })
        .collect();
    js.jobs
        .push(job("python3Packages.flaky-net-tests", LINUX, &flaky));
    js.jobs
        .push(job("haskellPackages.lens-extra", LINUX, &breaks(10)));
    js.jobs.push(job("everyone_", LINUX, &breaks(64)));
    let mut f = facts(vec![js]);
    f.maintainers = BTreeMap::from([
        (
            "grafx".to_owned(),
            vec!["alice".to_owned(), "bob".to_owned()],
        ),
        ("simdjson-fast".to_owned(), vec!["@everyone".to_owned()]),
        ("libfoo".to_owned(), vec!["alice".to_owned()]),
    ]);
    let notify = ActionRecord {
        id: 1,
        kind: ActionKind::Notify,
        attr: Some("grafx".into()),
        systems: vec![ARM.into(), LINUX.into()],
        all_platforms: false,
        step: Some("notice".into()),
        batch: None,
        state: RecordState::Done,
        planned_at: day(8),
        done_at: Some(day(8)),
        closed_at: None,
        pr: None,
        issue: Some(77),
        pinged: vec!["alice".into(), "bob".into()],
        error: None,
        refused: None,
    };
    (
        f,
        Ledger {
            actions: vec![notify],
            opt_outs: vec![],
        },
    )
}

#[test]
fn explain_a_long_failure_in_words() {
    let (f, ledger) = world();
    let text = explain(&nixpkgs_policy(), &f, &ledger, "grafx", day(50)).expect("grafx is known");
    insta::assert_snapshot!(text);
}

#[test]
fn explain_a_victim_names_its_root() {
    let (f, ledger) = world();
    let text =
        explain(&nixpkgs_policy(), &f, &ledger, "foo-gui", day(69)).expect("foo-gui is known");
    insta::assert_snapshot!(text);
}

/// Two libraries that began failing in the same eval, one on its own
/// timeout; a victim whose copied timeout Hydra's page charges to it, and a
/// package whose timeout's page is not read yet.
fn causes_world() -> (Facts, Ledger) {
    let mut js = trunk(70);
    let timeout = format!("{}{}", "O".repeat(63), repeat('T', 7, 0));
    js.jobs.push(job("libslow", LINUX, &timeout));
    js.jobs.push(job(
        "libother",
        LINUX,
        &format!("{}{}", "O".repeat(63), repeat('F', 7, 0)),
    ));
    js.jobs.push(job(
        "slow-app",
        LINUX,
        &format!("{}{}", "O".repeat(63), repeat('V', 7, 0)),
    ));
    charge(&mut js, "slow-app", "libslow");
    js.jobs.push(job(
        "foo-gui",
        LINUX,
        &format!("{}{}", "O".repeat(63), repeat('D', 7, 0)),
    ));
    js.jobs.push(job(
        "big-tests",
        LINUX,
        &format!("{}{}", "O".repeat(66), repeat('U', 4, 0)),
    ));
    (facts(vec![js]), Ledger::default())
}

#[test]
fn explain_a_victim_names_the_root_hydras_page_names() {
    let (f, ledger) = causes_world();
    let text =
        explain(&nixpkgs_policy(), &f, &ledger, "slow-app", day(69)).expect("slow-app is known");
    insta::assert_snapshot!(text);
}

#[test]
fn explain_a_timeout_whose_page_is_not_read_yet() {
    let (f, ledger) = causes_world();
    let text =
        explain(&nixpkgs_policy(), &f, &ledger, "big-tests", day(69)).expect("big-tests is known");
    insta::assert_snapshot!(text);
}

#[test]
fn the_digest_says_how_each_root_is_known() {
    let (f, ledger) = causes_world();
    let text = digest_at(&f, &ledger, day(69));
    let roots = text
        .split("## Roots by blast radius")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a roots section");
    insta::assert_snapshot!(roots);
}

#[test]
fn explain_of_an_unknown_attribute_is_none() {
    let (f, ledger) = world();
    assert!(explain(&nixpkgs_policy(), &f, &ledger, "no-such-package", day(69)).is_none());
}

fn digest_at(f: &Facts, ledger: &Ledger, now: i64) -> String {
    let policy = nixpkgs_policy();
    let a = assess(&policy, f, ledger, now);
    let p = plan_from(&policy, f, ledger, &a);
    digest::render(&DigestInput {
        policy: &policy,
        facts: f,
        assessment: &a,
        plan: &p,
        week: Week::containing(now),
    })
}

#[test]
fn the_weekly_digest() {
    let (f, ledger) = world();
    let text = digest_at(&f, &ledger, day(69));
    assert!(!text.contains(" @"), "nobody is mentioned:\n{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn a_huge_digest_is_summarised_to_fit_without_cutting_a_table() {
    let mut js = trunk(30);
    let mut maintainers = BTreeMap::new();
    for i in 0..6000 {
        let attr = format!("python3Packages.package-with-a-rather-long-name-{i}");
        js.jobs
            .push(job(&attr, LINUX, &format!("OOOOO{}", repeat('F', 25, 5))));
        maintainers.insert(attr, vec![format!("maintainer{}", i % 400)]);
    }
    let mut f = facts(vec![js]);
    f.maintainers = maintainers;
    let text = digest_at(&f, &Ledger::default(), day(29));
    assert!(text.len() < GITHUB_BODY_LIMIT, "{} characters", text.len());
    assert!(text.contains("more maintainers"), "says what it left out");
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with('|') {
            assert!(line.ends_with('|'), "a table row was cut: {line:?}");
            in_table = true;
        } else if in_table {
            assert!(
                line.is_empty(),
                "a table must end with an empty line, not {line:?}"
            );
            in_table = false;
        }
    }
}
