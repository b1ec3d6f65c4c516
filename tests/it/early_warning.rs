//! Early warnings end to end with the real binary: the Hydra look-alike
//! serves trunk and a staging-next jobset whose histories diverge, the
//! GitHub look-alike takes the warnings, and a real nixpkgs checkout names
//! the maintainers.
//!
//! The story (evals every 8 hours from 2025-11-01; staging-next's an hour
//! after trunk's):
//! - `hello` fails on staging-next from eval 5 and builds there again from
//!   eval 12: warned once, edited, closed;
//! - `umurmur` fails on staging-next from eval 6 and, after the branch
//!   lands, on trunk from eval 15: handed over to trunk's ladder, no second
//!   notice, the mark counted from the branch's first failure;
//! - `python3Packages.pamqp` fails on staging-next from eval 8 and takes
//!   `python3Packages.aioamqp` with it: both warned, the victim names its root.

use std::path::PathBuf;

use hydra_sentinel::sim::{FakeGitHub, FakeHydra, PlantedFailure, SimHydra, SimSpec};

use crate::helpers::{
    acting_config, issues_but_digests, nixpkgs_with_fork, planning_sections, planted, run_binary,
    small_spec, stdout_of_success,
};

const TOKEN: &str = "ghp_early_warning_token_never_to_be_seen";

/// The production policy with a trunk ladder measured in days and no
/// ladder overrides; `extra` is appended.
fn quick_policy(extra: &str) -> String {
    format!("{}{extra}", crate::helpers::quick_policy())
}

struct World {
    _dir: tempfile::TempDir,
    _hydra: FakeHydra,
    github: FakeGitHub,
    config: PathBuf,
}

fn spec(jobset: &str, systems: &[&str], planted: Vec<PlantedFailure>) -> SimSpec {
    let base = small_spec(5, 30);
    let branch = jobset != "trunk";
    SimSpec {
        jobset: jobset.into(),
        systems: systems.iter().map(|s| s.to_string()).collect(),
        planted,
        // Ids and times of its own: the same Hydra numbers evals and
        // builds across jobsets.
        first_eval_id: base.first_eval_id + if branch { 100_000 } else { 0 },
        first_build_id: base.first_build_id + if branch { 50_000_000 } else { 0 },
        start_time: base.start_time + if branch { 3600 } else { 0 },
        ..base
    }
}

impl World {
    fn new(trunk: Vec<PlantedFailure>, branch: Vec<PlantedFailure>, policy_extra: &str) -> World {
        World::on(&["x86_64-linux"], trunk, branch, policy_extra)
    }

    fn on(
        systems: &[&str],
        trunk: Vec<PlantedFailure>,
        branch: Vec<PlantedFailure>,
        policy_extra: &str,
    ) -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        nixpkgs_with_fork(root, |_| {});
        let hydra = FakeHydra::start(SimHydra::generate(&spec("trunk", systems, trunk))).unwrap();
        hydra.add_jobset(SimHydra::generate(&spec("staging-next", systems, branch)));
        let github = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
        std::fs::write(root.join("policy.toml"), quick_policy(policy_extra)).unwrap();
        let config = acting_config(
            root,
            &hydra,
            &github,
            TOKEN,
            &format!(
                "{}{}",
                planning_sections(root),
                "[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n\n\
                 [[jobsets]]\nproject = \"nixpkgs\"\njobset = \"staging-next\"\n"
            ),
        );
        World {
            _dir: dir,
            _hydra: hydra,
            github,
            config,
        }
    }

    fn run(&self, args: &[&str]) -> String {
        stdout_of_success(&run_binary(&self.config, args), args, TOKEN)
    }

    /// Hydra as of `now`: the evals made by then (every 8 hours from the
    /// spec's start) are published, on both jobsets.
    fn publish_until(&self, now: &str) {
        let now = chrono::DateTime::parse_from_rfc3339(now)
            .unwrap()
            .timestamp();
        let start = small_spec(0, 0).start_time;
        let made = usize::try_from((now - start) / (8 * 3600) + 1).unwrap_or(0);
        self._hydra.publish(made);
        self._hydra.publish_jobset("staging-next", made);
    }

    /// One cycle at `now`, Hydra showing what it had by then.
    fn once(&self, now: &str) -> String {
        self.publish_until(now);
        self.run(&["once", "--now", now])
    }

    /// Like [`World::once`], for a cycle that may fail: whether it did.
    fn once_may_fail(&self, now: &str) -> bool {
        self.publish_until(now);
        run_binary(&self.config, &["once", "--now", now])
            .status
            .success()
    }

    /// Issues that are not digests: (number, title, state).
    fn issues(&self) -> Vec<(u64, String, String)> {
        issues_but_digests(&self.github)
    }

    /// The issue titled `title`: its number and body.
    fn issue_titled(&self, title: &str) -> (u64, String) {
        let number = self
            .issues()
            .into_iter()
            .find(|i| i.1 == title)
            .map(|i| i.0)
            .unwrap_or_else(|| panic!("no issue {title:?} among {:?}", self.titles()));
        (number, self.github.body_of(number).unwrap_or_default())
    }

    /// The bodies of the comments on issue `number` that warn about `attr`.
    fn warnings_on(&self, number: u64, attr: &str) -> Vec<String> {
        let marker = format!("hydra-sentinel:warn:{attr}");
        self.github
            .comments_on(number)
            .into_iter()
            .map(|(_, body)| body)
            .filter(|b| b.contains(&marker))
            .collect()
    }

    fn titles(&self) -> Vec<String> {
        self.issues().into_iter().map(|i| i.1).collect()
    }

    fn count(&self, method: &str) -> usize {
        self.github
            .requests()
            .iter()
            .filter(|r| r.method == method)
            .count()
    }
}

/// A package on trunk that never fails there (with its victims).
fn builds(attr: &str, victims: &[&str]) -> PlantedFailure {
    PlantedFailure {
        attr: attr.into(),
        since: usize::MAX,
        victims: victims.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

fn story() -> World {
    World::new(
        vec![
            planted("umurmur", 15),
            builds("hello", &[]),
            builds("python3Packages.pamqp", &["python3Packages.aioamqp"]),
        ],
        vec![
            PlantedFailure {
                until: Some(12),
                ..planted("hello", 5)
            },
            planted("umurmur", 6),
            PlantedFailure {
                victims: vec!["python3Packages.aioamqp".into()],
                ..planted("python3Packages.pamqp", 8)
            },
        ],
        "",
    )
}

#[test]
fn staging_next_failures_are_warned_once_edited_closed_and_handed_over_to_trunk() {
    let world = story();

    // Day 4: every branch failure has its two evals; trunk builds them all.
    // A dry run says what would be sent, and sends nothing.
    world.publish_until("2025-11-04T12:00:00Z");
    world.run(&["ingest"]);
    let dry = world.run(&["act", "--dry-run", "--now", "2025-11-04T12:00:00Z"]);
    assert!(
        dry.contains(
            "warn about hello on nixpkgs:staging-next: a comment on its tracking issue, or an issue \"hello: fails on staging-next\""
        ),
        "{dry}"
    );
    assert!(dry.contains("cc @stv0g"), "the text in full:\n{dry}");
    assert_eq!(world.count("POST"), 0, "a dry run posts nothing");
    // The committers driving the cycle opened the branch's pull request.
    let landing =
        world
            .github
            .human_opens_branch_pull("staging-next", "master", "staging-next 2025-11-03");
    world.once("2025-11-04T12:00:00Z");
    let titles = world.titles();
    for expected in [
        "hello: fails on staging-next",
        "umurmur: fails on staging-next",
        "python3Packages.pamqp: fails on staging-next",
        "python3Packages.aioamqp: fails on staging-next",
    ] {
        assert!(
            titles.iter().any(|t| t == expected),
            "{expected} in {titles:?}"
        );
    }
    assert_eq!(titles.len(), 4, "nothing else: {titles:?}");
    let (hello, body) = world.issue_titled("hello: fails on staging-next");
    assert!(body.contains("cc @stv0g"), "{body}");
    assert!(
        body.contains("/compare/"),
        "the compare link on the branch:\n{body}"
    );
    assert!(body.contains("staging-next"), "{body}");
    assert!(
        !body.contains("marked broken on"),
        "a warning sets no date:\n{body}"
    );
    assert!(
        body.contains(&format!(
            "The branch's pull request: [#{landing}](https://github.com/NixOS/nixpkgs/pull/{landing}) (staging-next 2025-11-03) into `master` is open: the branch has not landed yet."
        )),
        "the warning says how close the branch is to landing:\n{body}"
    );
    let (_, root) = world.issue_titled("python3Packages.pamqp: fails on staging-next");
    assert!(root.contains("cc @alice-gh"), "{root}");
    assert!(
        root.contains("1 other packages on `nixpkgs:staging-next` fail"),
        "{root}"
    );
    let (_, victim) = world.issue_titled("python3Packages.aioamqp: fails on staging-next");
    assert!(victim.contains("cc @carol"), "{victim}");
    assert!(
        victim.contains("the failing dependency is `python3Packages.pamqp`"),
        "the victim learns its root:\n{victim}"
    );
    let posts = world.count("POST");

    // A newer eval of the branch: the texts are edited, nothing is posted.
    world.once("2025-11-04T20:00:00Z");
    assert_eq!(world.count("POST"), posts, "edits only");
    let asked: Vec<u16> = world
        .github
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("head=NixOS%3Astaging-next"))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        asked,
        [200, 304],
        "the branch's pull request is asked once a cycle, conditionally"
    );
    let (_, edited) = world.issue_titled("hello: fails on staging-next");
    assert_ne!(edited, body, "the text follows the evals");
    assert!(
        !edited.contains("@stv0g") && !edited.contains("cc @"),
        "an edit mentions nobody again:\n{edited}"
    );
    assert!(edited.contains("Told: stv0g"), "{edited}");

    // hello builds on the branch again (eval 12): its warning is closed.
    world.once("2025-11-05T12:00:00Z");
    let (_, resolved) = world.issue_titled("hello: fails on staging-next");
    assert!(resolved.contains("**Resolved:**"), "{resolved}");
    let state = world
        .issues()
        .into_iter()
        .find(|i| i.0 == hello)
        .map(|i| i.2);
    assert_eq!(state.as_deref(), Some("closed"));
    assert!(
        world
            .run(&["explain", "hello", "--now", "2025-11-05T12:00:00Z"])
            .contains("staging-next"),
        "explain speaks of the warning"
    );

    // The branch landed: umurmur fails on trunk from eval 15 (11-06 00:00).
    world.github.human_closes(landing, true);
    let posts = world.count("POST");
    world.once("2025-11-06T12:00:00Z");
    assert!(
        !world.titles().iter().any(|t| t == "Build failure: umurmur"),
        "no second notice: {:?}",
        world.titles()
    );
    assert_eq!(world.count("POST"), posts, "the handover is an edit");
    let (_, handed) = world.issue_titled("umurmur: fails on staging-next");
    assert!(handed.contains("**Handed over:**"), "{handed}");
    assert!(
        handed.contains("into `master` was merged: the branch landed."),
        "{handed}"
    );
    assert!(
        handed.contains("<!-- hydra-sentinel:notify:umurmur -->"),
        "the warning's issue becomes the tracking issue:\n{handed}"
    );

    // The mark comes 4 days after the branch's first failure (11-03 01:00),
    // not after trunk's (11-06 00:00), and at least a day after the warning.
    world.publish_until("2025-11-07T06:00:00Z");
    world.run(&["ingest"]);
    let plan = world.run(&["plan", "--now", "2025-11-07T06:00:00Z"]);
    assert!(
        plan.lines()
            .any(|l| l.contains("mark_broken") && l.contains("umurmur")),
        "the mark is due from the branch's start:\n{plan}"
    );
    assert!(
        !plan
            .lines()
            .any(|l| l.contains("notify") && l.contains("umurmur")),
        "{plan}"
    );
}

#[test]
fn a_mass_breakage_on_staging_next_holds_its_warnings() {
    // Four of the branch's nine packages break in one eval: over the
    // breaker's share. Trunk is not held.
    let broken: Vec<PlantedFailure> = ["hello", "umurmur", "python3Packages.pamqp", "frobnicate"]
        .into_iter()
        .map(|attr| PlantedFailure {
            attr: attr.into(),
            since: 6,
            ..Default::default()
        })
        .collect();
    let world = World::new(Vec::new(), broken, "");
    std::fs::write(
        world.config.with_file_name("policy.toml"),
        quick_policy("").replace("min_jobs = 1000", "min_jobs = 3"),
    )
    .unwrap();
    let out = world.once("2025-11-04T12:00:00Z");
    assert_eq!(world.titles(), Vec::<String>::new(), "held:\n{out}");
    let explained = world.run(&["explain", "hello", "--now", "2025-11-04T12:00:00Z"]);
    assert!(
        explained.contains("mass breakage on nixpkgs:staging-next"),
        "explain says why nothing was said:\n{explained}"
    );
}

#[test]
fn a_package_with_a_tracking_issue_is_warned_there_once_even_when_the_comment_looked_failed() {
    use hydra_sentinel::sim::GitHubFault;
    // frobnicate fails on aarch64-darwin on trunk and the branch from eval
    // 2 (a tracking issue), and on the branch on x86_64-linux too from
    // eval 8: that platform builds on trunk, so it is warned about.
    let darwin = |since| PlantedFailure {
        attr: "frobnicate".into(),
        since,
        systems: vec!["aarch64-darwin".into()],
        spreads_to: vec![("x86_64-linux".into(), 8)],
        ..Default::default()
    };
    let world = World::on(
        &["x86_64-linux", "aarch64-darwin"],
        vec![PlantedFailure {
            spreads_to: vec![],
            ..darwin(2)
        }],
        vec![darwin(2)],
        "",
    );
    world.once("2025-11-03T12:00:00Z");
    let (tracking, _) = world.issue_titled("Build failure: frobnicate");
    // GitHub takes the warning's comment but answers 500.
    world.github.inject(
        "POST",
        &format!("/repos/NixOS/nixpkgs/issues/{tracking}/comments"),
        GitHubFault::SucceedThen500,
    );
    assert!(
        !world.once_may_fail("2025-11-04T12:00:00Z"),
        "an unknown outcome is reported"
    );
    let out = world.once("2025-11-04T13:00:00Z");
    assert!(out.contains("reconciled warn frobnicate: done"), "{out}");
    let warnings = world.warnings_on(tracking, "frobnicate");
    assert_eq!(warnings.len(), 1, "one warning comment: {warnings:#?}");
    assert!(warnings[0].contains("x86_64-linux"), "{}", warnings[0]);
    assert!(warnings[0].contains("cc @alice-gh @bob"), "{}", warnings[0]);
    assert!(
        !world
            .titles()
            .iter()
            .any(|t| t.contains("fails on staging-next")),
        "no issue of its own: {:?}",
        world.titles()
    );
    // The next eval of the branch edits that comment.
    world.once("2025-11-04T20:00:00Z");
    let edited = world.warnings_on(tracking, "frobnicate");
    assert_eq!(edited.len(), 1);
    assert!(edited[0].contains("still fails"), "{}", edited[0]);
}
