//! The whole cycle with the real binary: ingest from the Hydra look-alike,
//! plan with a quick policy, act on the GitHub look-alike, and push real
//! branches to a bare git fork.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hydra_sentinel::act::{ActReport, Actor, cycle};
use hydra_sentinel::config::Config;
use hydra_sentinel::forge::{GitHub, GitHubSettings, Secret};
use hydra_sentinel::policy::{Policy, plan};
use hydra_sentinel::sim::{FakeGitHub, FakeHydra, GitHubFault, PlantedFailure, SimHydra, SimSpec};
use hydra_sentinel::store::{PlanScope, Store};

use crate::helpers::{
    acting_config, issues_but_digests, nixpkgs_with_fork, planning_sections, planted, quick_policy,
    run_binary, small_spec, stdout_of_success,
};
pub(crate) use crate::helpers::{git, git_out};

pub(crate) const TOKEN: &str = "ghp_act_test_token_never_to_be_seen_42";

pub(crate) struct World {
    /// Removed with the world.
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) hydra: FakeHydra,
    pub(crate) github: FakeGitHub,
    pub(crate) config: PathBuf,
    pub(crate) fork: PathBuf,
}

impl World {
    pub(crate) fn new() -> World {
        World::with(Vec::new(), |policy| policy, |_| {})
    }

    /// A world whose nixpkgs is the fixture as `edit` leaves it.
    fn with_nixpkgs(edit: impl FnOnce(&Path)) -> World {
        World::with(Vec::new(), |policy| policy, edit)
    }

    /// The usual world with more planted failures, a changed policy and an
    /// edited nixpkgs.
    fn with(
        extra: Vec<PlantedFailure>,
        policy: impl Fn(String) -> String,
        edit: impl FnOnce(&Path),
    ) -> World {
        World::with_history(
            |spec| SimSpec {
                planted: spec.planted.into_iter().chain(extra).collect(),
                ..spec
            },
            policy,
            edit,
        )
    }

    /// The usual world with its history as `history` changes it (the
    /// usual one: 30 evals, 8 hours apart, from 2025-11-01, three planted
    /// failures on four systems).
    pub(crate) fn with_history(
        history: impl FnOnce(SimSpec) -> SimSpec,
        policy: impl Fn(String) -> String,
        edit: impl FnOnce(&Path),
    ) -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fork = nixpkgs_with_fork(root, edit);

        let spec = SimSpec {
            evals: 30,
            planted: vec![
                planted("hello", 2),
                // Already marked broken on aarch64-darwin in the fixture.
                PlantedFailure {
                    systems: vec!["aarch64-darwin".into()],
                    ..planted("umurmur", 5)
                },
                PlantedFailure {
                    systems: vec!["x86_64-darwin".into(), "aarch64-darwin".into()],
                    ..planted("frobnicate", 4)
                },
            ],
            ..small_spec(5, 30)
        };
        let spec = SimSpec {
            systems: [
                "x86_64-linux",
                "aarch64-linux",
                "x86_64-darwin",
                "aarch64-darwin",
            ]
            .map(String::from)
            .to_vec(),
            ..spec
        };
        let hydra = FakeHydra::start(SimHydra::generate(&history(spec))).unwrap();
        let github = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
        std::fs::write(root.join("policy.toml"), policy(quick_policy())).unwrap();
        let config = acting_config(
            root,
            &hydra,
            &github,
            TOKEN,
            &format!("committers = [\"carol\"]\n{}", planning_sections(root)),
        );
        World {
            _dir: dir,
            hydra,
            github,
            config,
            fork,
        }
    }

    fn once(&self, now: &str) -> Output {
        run_binary(&self.config, &["once", "--now", now])
    }

    pub(crate) fn once_ok(&self, now: &str) -> String {
        stdout_of_success(&self.once(now), &["once", "--now", now], TOKEN)
    }

    /// Tracking issues (not digests).
    pub(crate) fn issues(&self) -> Vec<(u64, String, String)> {
        issues_but_digests(&self.github)
    }

    fn digests(&self) -> Vec<(u64, String, String)> {
        self.github
            .items()
            .into_iter()
            .filter(|i| !i.3 && i.1.contains("weekly digest"))
            .map(|i| (i.0, i.1, i.2))
            .collect()
    }

    pub(crate) fn pulls(&self) -> Vec<(u64, String, String)> {
        self.github
            .items()
            .into_iter()
            .filter(|i| i.3)
            .map(|i| (i.0, i.1, i.2))
            .collect()
    }

    /// Another command of the binary on the world's configuration.
    fn run(&self, args: &[&str]) -> String {
        stdout_of_success(&run_binary(&self.config, args), args, TOKEN)
    }

    /// The usual world after the notice's cycle, whose GitHub refuses every
    /// new pull request as invalid (422) from now on.
    pub(crate) fn refusing_pull_requests() -> World {
        let world = World::new();
        world.once_ok(NOTICE);
        world.github.inject(
            "POST",
            "/repos/NixOS/nixpkgs/pulls",
            GitHubFault::Status(422),
        );
        world
    }

    /// The usual world after the mark's cycle, whose pull request GitHub
    /// refused as invalid (422): it is set aside, to be done by hand.
    pub(crate) fn with_a_pull_request_refused_as_invalid() -> World {
        let world = World::refusing_pull_requests();
        let out = world.once_ok(MARK);
        assert!(out.contains("GitHub refused it as invalid"), "{out}");
        world
    }

    /// A maintainer (Roberta) pushes a commit of their own to `branch` of
    /// the fork; the branch's new head.
    pub(crate) fn maintainer_pushes(&self, branch: &str) -> String {
        let root = self._dir.path();
        git(
            root,
            &["clone", "-q", "-b", branch, "fork.git", "maintainer"],
        );
        let work = root.join("maintainer");
        std::fs::write(work.join("FIXUP"), "the real fix\n").unwrap();
        git(&work, &["add", "FIXUP"]);
        git(
            &work,
            &[
                "-c",
                "user.name=Roberta",
                "-c",
                "user.email=roberta@example.org",
                "commit",
                "-q",
                "-m",
                "ghidra: fix the build",
            ],
        );
        git(&work, &["push", "-q", "origin", branch]);
        git_out(&self.fork, &["rev-parse", branch])
    }

    /// The fork's branches, by name.
    pub(crate) fn fork_branches(&self) -> Vec<String> {
        git_out(
            &self.fork,
            &["branch", "--list", "--format=%(refname:short)"],
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// A commit lands upstream: `edit` changes a clone of it.
    pub(crate) fn upstream_commit(&self, message: &str, edit: impl FnOnce(&Path)) {
        let root = self._dir.path();
        let work = root.join("upstream-work");
        if !work.exists() {
            git(root, &["clone", "-q", "upstream.git", "upstream-work"]);
        }
        git(&work, &["pull", "-q"]);
        edit(&work);
        git(&work, &["commit", "-q", "-am", message]);
        git(&work, &["push", "-q", "origin", "HEAD"]);
    }

    pub(crate) fn issue_of(&self, attr: &str) -> Option<u64> {
        self.issues()
            .into_iter()
            .find(|i| i.1 == format!("Build failure: {attr}"))
            .map(|i| i.0)
    }

    /// Branches on the fork whose `file` says `broken`.
    pub(crate) fn branches_marking(&self, file: &str) -> Vec<String> {
        git_out(&self.fork, &["branch", "--list"])
            .lines()
            .map(|l| l.trim().trim_start_matches("* ").to_owned())
            .filter(|b| {
                git_out(&self.fork, &["show", &format!("{b}:{file}")]).contains("broken = ")
            })
            .collect()
    }

    fn posts(&self) -> usize {
        self.github
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    }
}

pub(crate) const NOTICE: &str = "2025-11-12T00:00:00Z";
pub(crate) const MARK: &str = "2025-11-15T00:00:00Z";
const LATER: &str = "2025-11-16T00:00:00Z";

#[test]
fn a_full_cycle_notifies_first_then_marks_and_a_second_cycle_sends_nothing_new() {
    let world = World::new();
    let out = world.once_ok(NOTICE);
    let issues = world.issues();
    let titles: Vec<&str> = issues.iter().map(|i| i.1.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Build failure: frobnicate",
            "Build failure: hello",
            "Build failure: umurmur"
        ],
        "{out}"
    );
    assert!(
        world.pulls().is_empty(),
        "nothing is marked before a notice had its time: {out}"
    );
    let hello = world.github.body_of(issues[1].0).unwrap();
    assert!(
        hello.contains("cc @stv0g"),
        "the maintainer is mentioned once: {hello}"
    );
    assert!(hello.contains("<!-- hydra-sentinel:notify:hello -->"));
    // frobnicate builds on linux: its first notice announces a mark on the
    // darwins only, as the mark will be, never "on every platform".
    let frobnicate = world.github.body_of(issues[0].0).unwrap();
    assert!(
        frobnicate.contains(
            "a pull request that marks `frobnicate` broken on aarch64-darwin, x86_64-darwin \
             (`meta.broken` for those platforms only)"
        ),
        "the notice announces the mark where it fails: {frobnicate}"
    );

    let posts = world.posts();
    world.once_ok(NOTICE);
    assert_eq!(
        world.posts(),
        posts,
        "a second cycle at the same time must send nothing"
    );

    let out = world.once_ok(MARK);
    let pulls = world.pulls();
    let titles: Vec<&str> = pulls.iter().map(|p| p.1.as_str()).collect();
    // hello (through the gnome team) and frobnicate share a maintainer, and
    // the policy batches by maintainer: one pull request for both.
    assert_eq!(titles, ["treewide: mark 2 packages broken"], "{out}");
    assert!(
        out.contains("nothing to propose for umurmur"),
        "umurmur is already marked: {out}"
    );
    let branches = git_out(&world.fork, &["branch", "--list"]);
    let hello_branch = branches
        .lines()
        .map(|l| l.trim().trim_start_matches("* "))
        .find(|b| {
            git_out(
                &world.fork,
                &["show", &format!("{b}:pkgs/by-name/he/hello/package.nix")],
            )
            .contains("broken = true;")
        })
        .unwrap_or_else(|| panic!("no branch on the fork marks hello broken: {branches}"));
    assert!(
        hello_branch.starts_with("hydra-sentinel/mark-broken/"),
        "{hello_branch}"
    );
    let frobnicate = git_out(
        &world.fork,
        &[
            "log",
            "--all",
            "-p",
            "--",
            "pkgs/tools/misc/frobnicate/default.nix",
        ],
    );
    assert!(
        frobnicate.contains("broken = stdenv.hostPlatform.isDarwin;"),
        "{frobnicate}"
    );
    let pr_body = world.github.body_of(pulls[0].0).unwrap();
    assert!(pr_body.contains("Who was told, and when"), "{pr_body}");

    let posts = world.posts();
    world.once_ok(MARK);
    assert_eq!(
        world.posts(),
        posts,
        "no second pull request, no repeated comment"
    );
    assert_eq!(world.pulls().len(), 1);
    assert_eq!(world.issues().len(), 3);
}

#[test]
fn exactly_one_digest_issue_a_week_and_last_week_s_is_closed() {
    let world = World::new();
    world.once_ok(NOTICE);
    world.once_ok(NOTICE);
    let digests = world.digests();
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert_eq!(digests[0].1, "hydra-sentinel weekly digest 2025-W46");
    let body = world.github.body_of(digests[0].0).unwrap();
    assert!(
        body.contains("hello"),
        "the digest names the failing packages: {body}"
    );

    world.once_ok("2025-11-18T00:00:00Z");
    let digests = world.digests();
    let states: Vec<(&str, &str)> = digests
        .iter()
        .map(|d| (d.1.as_str(), d.2.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("hydra-sentinel weekly digest 2025-W46", "closed"),
            ("hydra-sentinel weekly digest 2025-W47", "open")
        ]
    );
    let links: Vec<(String, String)> = world.github.comments_on(digests[0].0);
    assert!(
        links
            .iter()
            .any(|(_, body)| body.contains(&format!("#{}", digests[1].0))),
        "{links:?}"
    );
}

#[test]
fn a_recovery_closes_the_pull_request_and_the_tracking_issue() {
    let world = World::new();
    world.once_ok(NOTICE);
    world.once_ok(MARK);
    let pull = world.pulls()[0].0;
    // hello and frobnicate build again: their builds in the newest eval are
    // restarted on Hydra and succeed; the recheck notices.
    let sim = world.hydra.hydra();
    let newest = sim.evals.last().unwrap();
    for id in &newest.builds {
        let build = &sim.builds[id];
        if build.job.starts_with("hello.") || build.job.starts_with("frobnicate.") {
            world.hydra.edit_build(*id, |b| b.finish(0, 1_763_300_000));
        }
    }
    let out = world.once_ok(LATER);
    assert!(
        out.contains(&format!("closed #{pull}")),
        "the pull request of recovered packages is closed: {out}"
    );
    let issues = world.issues();
    let hello = issues
        .iter()
        .find(|i| i.1 == "Build failure: hello")
        .unwrap();
    assert_eq!(hello.2, "closed", "the tracking issue closes itself: {out}");
    assert_eq!(world.pulls()[0].2, "closed");

    let posts = world.posts();
    world.once_ok(LATER);
    assert_eq!(world.posts(), posts, "nothing is sent twice");
}

#[test]
fn a_merged_pull_request_is_recorded_as_merged() {
    let world = World::new();
    world.once_ok(NOTICE);
    world.once_ok(MARK);
    let pull = world.pulls()[0].0;
    world.github.human_closes(pull, true);
    world.once_ok(LATER);
    let db = rusqlite::Connection::open(world._dir.path().join("state.sqlite")).unwrap();
    let merged: i64 = db
        .query_row(
            "SELECT count(*) FROM actions WHERE pr = ?1 AND state = 'merged'",
            [pull as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        merged, 2,
        "both packages of the pull request are merged in the ledger"
    );
}

#[test]
fn a_human_no_wins_and_commands_are_obeyed_only_from_maintainers_and_committers() {
    let world = World::new();
    world.once_ok(NOTICE);
    world.once_ok(MARK);
    let pulls = world.pulls();
    let hello_pr = pulls[0].0;
    world.github.human_closes(hello_pr, false);
    let umurmur_issue = world
        .issues()
        .into_iter()
        .find(|i| i.1.contains("umurmur"))
        .unwrap()
        .0;
    world
        .github
        .human_comments(umurmur_issue, "mallory", "@hydra-sentinel not-broken");
    world
        .github
        .human_comments(umurmur_issue, "carol", "@hydra-sentinel snooze 30d");

    world.once_ok(LATER);
    assert_eq!(
        world.pulls().len(),
        1,
        "a closed pull request is never reopened or replaced"
    );
    let replies: Vec<String> = world
        .github
        .comments_on(umurmur_issue)
        .into_iter()
        .filter(|(author, _)| author == "sentinel-bot")
        .map(|(_, body)| body)
        .collect();
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("@mallory only the maintainers")),
        "{replies:?}"
    );
    assert!(
        replies.iter().any(|r| r.starts_with("@carol understood")),
        "{replies:?}"
    );
    let posts = world.posts();
    world.once_ok(LATER);
    assert_eq!(world.posts(), posts, "commands are answered once");
}

#[test]
fn a_pull_request_whose_creation_looked_failed_is_found_again_not_duplicated() {
    let world = World::new();
    world.once_ok(NOTICE);
    // GitHub creates the pull request but answers 500, as if the process had
    // died between pushing and hearing back.
    world.github.inject(
        "POST",
        "/repos/NixOS/nixpkgs/pulls",
        GitHubFault::SucceedThen500,
    );
    let first = world.once(MARK);
    assert!(!first.status.success(), "an unknown outcome is reported");
    let created = world.pulls().len();
    assert!(created >= 1);
    let posts_to_pulls = |w: &World| {
        w.github
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.target.ends_with("/pulls"))
            .count()
    };
    let before = posts_to_pulls(&world);
    let out = world.once_ok(MARK);
    assert!(out.contains("reconciled mark_broken"), "{out}");
    assert_eq!(
        world.pulls().len(),
        created,
        "exactly one pull request per package"
    );
    assert_eq!(
        posts_to_pulls(&world),
        before,
        "the create was not repeated"
    );
}

#[test]
fn rate_limits_are_waited_out_and_still_only_one_issue_per_package() {
    let world = World::new();
    world.github.inject(
        "POST",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::SecondaryRateLimit {
            retry_after_secs: 1,
        },
    );
    world.github.inject(
        "GET",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::Status(502),
    );
    world.once_ok(NOTICE);
    assert_eq!(world.issues().len(), 3);
    assert_eq!(world.digests().len(), 1);
}

/// Kill `once` at random moments while it acts (GitHub answers slowly), then
/// let it finish: exactly one tracking issue and one pull request per
/// package, and no comment twice.
#[test]
fn killed_while_acting_it_never_does_anything_twice() {
    use std::time::Duration;

    use hydra_sentinel::sim::Rng;

    let world = World::new();
    world.once_ok(NOTICE);
    let mut rng = Rng::new(0xac7);
    for round in 0..8 {
        // Slow creates and comments: a kill lands before, during or after them.
        for path in ["/repos/NixOS/nixpkgs/pulls", "/repos/NixOS/nixpkgs/issues"] {
            world
                .github
                .inject("POST", path, GitHubFault::Delay(Duration::from_millis(300)));
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
            .args([
                "--config",
                world.config.to_str().unwrap(),
                "once",
                "--now",
                MARK,
            ])
            .env("HYDRA_SENTINEL_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100 + rng.below(1200)));
        let _ = child.kill();
        let _ = child.wait();
        let pulls = world.pulls();
        assert!(pulls.len() <= 1, "round {round}: {pulls:?}");
    }
    world.once_ok(MARK);
    world.once_ok(MARK);
    assert_eq!(world.pulls().len(), 1, "{:?}", world.pulls());
    assert_eq!(world.issues().len(), 3, "{:?}", world.issues());
    assert_eq!(world.digests().len(), 1, "{:?}", world.digests());
    for (number, _, _) in world.issues() {
        let bodies: Vec<String> = world
            .github
            .comments_on(number)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let mut unique = bodies.clone();
        unique.dedup();
        assert_eq!(bodies, unique, "a comment was posted twice on #{number}");
    }
}

/// discord's meta is shared through a `let`, which the editor refuses to
/// edit; ghidra is fine. Batched by package set, both are in one top-level
/// batch.
#[test]
fn a_refused_edit_is_told_once_on_its_issue_and_the_rest_of_its_batch_is_still_proposed() {
    let world = World::with(
        vec![planted("discord", 3), planted("ghidra", 3)],
        |policy| policy.replace("group_by = \"maintainer\"", "group_by = \"package_set\""),
        |_| {},
    );
    world.once_ok(NOTICE);
    let issue_of = |attr: &str| {
        world
            .issues()
            .into_iter()
            .find(|i| i.1 == format!("Build failure: {attr}"))
            .unwrap_or_else(|| panic!("no tracking issue for {attr}: {:?}", world.issues()))
            .0
    };
    let discord = issue_of("discord");

    let out = world.once_ok(MARK);
    let titles: Vec<String> = world.pulls().into_iter().map(|p| p.1).collect();
    assert!(
        !titles.is_empty() && !titles.iter().any(|t| t.contains("discord")),
        "the batch is proposed without discord: {titles:?}\n{out}"
    );
    let bodies: Vec<String> = world
        .pulls()
        .iter()
        .filter_map(|p| world.github.body_of(p.0))
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("### `ghidra`"))
            && !bodies.iter().any(|b| b.contains("`discord`")),
        "ghidra is proposed, discord is not: {bodies:#?}"
    );
    let comments: Vec<String> = world
        .github
        .comments_on(discord)
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    let refused: Vec<&String> = comments
        .iter()
        .filter(|c| c.contains("<!-- hydra-sentinel:refused-mark_broken:discord -->"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one comment says it has to be done by hand: {comments:?}"
    );
    assert!(
        refused[0].contains("has to be done by hand") && refused[0].contains("let"),
        "the comment says why: {}",
        refused[0]
    );

    let posts = world.posts();
    let again = world.once_ok(LATER);
    assert_eq!(
        world.posts(),
        posts,
        "a refused edit is not tried again, and nothing is said twice: {again}"
    );
    let explain = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args([
            "--config",
            world.config.to_str().unwrap(),
            "explain",
            "discord",
            "--now",
            LATER,
        ])
        .output()
        .unwrap();
    let explain = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explain.contains("refused by the editor") && explain.contains("done by hand"),
        "{explain}"
    );
}

const HELLO: &str = "pkgs/by-name/he/hello/package.nix";
const HANDS_OFF: &str = "hydra-sentinel: hands off";

#[test]
fn with_pull_access_a_cycle_opens_its_issues_unlabelled_without_a_403_and_says_who_it_is() {
    let world = World::new();
    let out = world.once_ok(NOTICE);
    assert!(
        out.contains("role on NixOS/nixpkgs is pull: labels are left off"),
        "{out}"
    );
    assert_eq!(world.issues().len(), 3, "{out}");
    for (number, title, _) in world.issues().into_iter().chain(world.digests()) {
        assert!(
            world.github.labels_of(number).is_empty(),
            "{title} is labelled"
        );
    }
    let requests = world.github.requests();
    let refused: Vec<_> = requests.iter().filter(|r| r.status >= 400).collect();
    assert!(refused.is_empty(), "{refused:?}");
    let agent = format!(
        "hydra-sentinel/{} (+https://github.com/sentinel-bot)",
        env!("CARGO_PKG_VERSION")
    );
    for r in &requests {
        assert_eq!(
            r.user_agent.as_deref(),
            Some(agent.as_str()),
            "{}",
            r.target
        );
        assert_eq!(r.api_version.as_deref(), Some("2022-11-28"), "{}", r.target);
    }

    // An account that commented once is deleted since: its comment stays.
    world
        .github
        .ghost_comments(world.issue_of("hello").unwrap(), "works for me");
    world.once_ok(MARK);
    assert_eq!(world.pulls().len(), 1, "the cycle went on to mark");
}

#[test]
fn with_triage_access_its_issues_carry_the_label() {
    let world = World::new();
    world.github.set_role("triage");
    world.github.create_label("hydra-sentinel");
    let out = world.once_ok(NOTICE);
    assert!(out.contains("is triage: labels are applied"), "{out}");
    for (number, title, _) in world.issues().into_iter().chain(world.digests()) {
        assert_eq!(
            world.github.labels_of(number),
            ["hydra-sentinel"],
            "{title}"
        );
    }
}

#[test]
fn a_hands_off_label_stops_the_ladder_and_removing_it_resumes_it() {
    let world = World::new();
    world.once_ok(NOTICE);
    let hello = world.issue_of("hello").unwrap();
    world.github.human_labels(hello, HANDS_OFF);

    let out = world.once_ok(MARK);
    assert!(
        out.contains(&format!("hello: the label \"{HANDS_OFF}\" is on #{hello}")),
        "{out}"
    );
    let titles: Vec<String> = world.pulls().into_iter().map(|p| p.1).collect();
    assert_eq!(titles.len(), 1, "frobnicate is still marked: {titles:?}");
    assert!(
        world.branches_marking(HELLO).is_empty(),
        "hello is not marked while labelled: {titles:?}"
    );
    let explained = world.run(&["explain", "hello", "--now", MARK]);
    assert!(
        explained.contains("opted out by label") && explained.contains(HANDS_OFF),
        "{explained}"
    );
    let digest = world.run(&["digest", "--week", "2025-W46", "--now", MARK]);
    assert!(digest.contains("opted out (label)"), "{digest}");

    world.github.human_unlabels(hello, HANDS_OFF);
    let out = world.once_ok(LATER);
    assert!(
        out.contains(&format!("hello: the label \"{HANDS_OFF}\" was removed")),
        "{out}"
    );
    assert_eq!(
        world.branches_marking(HELLO).len(),
        1,
        "the ladder resumes: hello is marked\n{out}"
    );
}

#[test]
fn a_package_whose_file_carries_the_marker_is_never_marked_until_it_is_removed() {
    let world = World::with_nixpkgs(|seed| {
        let file = seed.join(HELLO);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            format!("# hydra-sentinel: do not mark broken\n{text}"),
        )
        .unwrap();
    });
    let out = world.once_ok(NOTICE);
    assert!(
        out.contains(&format!("hello: {HELLO} carries the opt-out marker")),
        "{out}"
    );
    world.once_ok(MARK);
    world.once_ok(LATER);
    assert!(world.branches_marking(HELLO).is_empty(), "hello was marked");
    assert!(
        world.issue_of("hello").is_none(),
        "an opted-out package is not even notified"
    );
    let explained = world.run(&["explain", "hello", "--now", LATER]);
    assert!(explained.contains("opted out by marker"), "{explained}");

    world.upstream_commit("hello: hands back", |work| {
        let file = work.join(HELLO);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replace("# hydra-sentinel: do not mark broken\n", ""),
        )
        .unwrap();
    });
    let out = world.once_ok(LATER);
    assert!(
        out.contains(&format!("hello: the opt-out marker is gone from {HELLO}")),
        "{out}"
    );
    assert!(
        world.issue_of("hello").is_some(),
        "the ladder starts again with a notice: {out}"
    );
}

/// discord's meta is shared through a `let`: the editor refuses to edit
/// it, but its file is still where the notice tells maintainers to put the
/// marker, and the marker there is read.
#[test]
fn the_marker_counts_in_a_file_the_editor_refuses_to_edit() {
    const DISCORD: &str = "pkgs/applications/discord/default.nix";
    let world = World::with(
        vec![planted("discord", 3)],
        |policy| policy,
        |seed| {
            let file = seed.join(DISCORD);
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(
                &file,
                format!("{text}# hydra-sentinel: do not mark broken\n"),
            )
            .unwrap();
        },
    );
    let out = world.once_ok(NOTICE);
    assert!(
        out.contains(&format!("discord: {DISCORD} carries the opt-out marker")),
        "{out}"
    );
    world.once_ok(MARK);
    assert!(
        !world.issues().iter().any(|i| i.1.contains("discord")),
        "an opted-out package is not notified: {:?}",
        world.issues()
    );
    assert!(world.issue_of("hello").is_some(), "the others are");
}

#[test]
fn a_rate_limit_that_persists_ends_the_cycle_with_its_reason_and_the_next_one_catches_up() {
    let world = World::new();
    for _ in 0..5 {
        world.github.inject(
            "POST",
            "/repos/NixOS/nixpkgs/issues",
            GitHubFault::TooManyRequests {
                retry_after_secs: Some(0),
            },
        );
    }
    let first = world.once(NOTICE);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        !first.status.success(),
        "a persistent limit fails the cycle"
    );
    assert!(
        stderr.contains("rate limit ended the cycle") && stderr.contains("after 5 attempts"),
        "{stderr}"
    );
    let posts = world
        .github
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.target == "/repos/NixOS/nixpkgs/issues")
        .count();
    assert_eq!(posts, 5, "five tries, then no further request");
    assert!(world.issues().is_empty());

    // The notice that met the limit waits an hour (the retry backoff);
    // the next cycle after that catches up.
    world.once_ok("2025-11-12T01:00:00Z");
    assert_eq!(world.issues().len(), 3, "each package is notified once");
}

/// Without a readable checkout nobody could be mentioned: the cycle fails,
/// saying why, instead of sending notices nobody is told of.
#[test]
fn an_unreadable_checkout_fails_the_cycle_and_sends_nothing() {
    let world = World::new();
    let checkout = world.config.parent().unwrap().join("checkout");
    std::fs::remove_dir_all(checkout.join(".git")).unwrap();
    let output = world.once(NOTICE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the cycle must fail: {stderr}");
    assert!(
        stderr.contains("cannot read the nixpkgs checkout"),
        "the error says why: {stderr}"
    );
    assert!(
        world.issues().is_empty(),
        "no notice without the maintainers: {:?}",
        world.issues()
    );
}

/// ghidra fails on x86_64-linux from the fourth eval (Nov 2) and on
/// aarch64-linux too from Nov 9; after its first notice (Nov 3).
fn ghidra_spreads_to_aarch64() -> World {
    let world = World::with(
        vec![PlantedFailure {
            systems: vec!["x86_64-linux".into()],
            spreads_to: vec![("aarch64-linux".into(), 24)],
            ..planted("ghidra", 3)
        }],
        |policy| policy,
        |_| {},
    );
    world.once_ok("2025-11-03T12:00:00Z");
    world
}

/// ghidra fails on x86_64-linux, is marked there, then starts failing on
/// aarch64-linux too: our open pull request is rewritten to mark both, and
/// says so, instead of a second pull request.
#[test]
fn a_package_failing_on_more_platforms_gets_its_open_pull_request_updated_not_a_second_one() {
    let world = ghidra_spreads_to_aarch64();
    let out = world.once_ok("2025-11-07T00:00:00Z");
    let ghidra_pulls = || -> Vec<(u64, String)> {
        world
            .pulls()
            .into_iter()
            .filter(|p| {
                world
                    .github
                    .body_of(p.0)
                    .is_some_and(|b| b.contains("### `ghidra`"))
            })
            .map(|p| (p.0, p.1))
            .collect()
    };
    let first = ghidra_pulls();
    assert_eq!(first.len(), 1, "ghidra is marked on x86_64-linux: {out}");
    let number = first[0].0;
    world.once_ok("2025-11-10T12:00:00Z");
    let out = world.once_ok("2025-11-13T12:00:00Z");

    assert_eq!(
        ghidra_pulls().iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![number],
        "still one pull request for ghidra: {out}"
    );
    let body = world.github.body_of(number).unwrap();
    assert!(
        body.contains("### `ghidra` (aarch64-linux, x86_64-linux)"),
        "the description names both platforms: {body}"
    );
    let comments: Vec<String> = world
        .github
        .comments_on(number)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let updates: Vec<&String> = comments
        .iter()
        .filter(|c| c.contains("updated this pull request"))
        .collect();
    assert_eq!(
        updates.len(),
        1,
        "one comment says what changed: {comments:#?}"
    );
    assert!(
        updates[0].contains("now marked broken on aarch64-linux, x86_64-linux (was x86_64-linux)"),
        "{}",
        updates[0]
    );
    let file = git_out(
        &world.fork,
        &[
            "log",
            "--all",
            "-p",
            "-1",
            "--",
            "pkgs/tools/security/ghidra/build.nix",
        ],
    );
    // Both linux platforms: the editor adds the shorter `isLinux` after the
    // fixture's existing x86_64-darwin condition, kept as written.
    assert!(
        file.contains(
            "+    broken = stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isx86_64 || stdenv.hostPlatform.isLinux;"
        ),
        "the branch now marks both linux platforms: {file}"
    );

    let posts = world.posts();
    world.once_ok("2025-11-13T12:00:00Z");
    assert_eq!(world.posts(), posts, "nothing is updated twice");
}

/// While another process holds the actor lease, a second one does not act:
/// it says who is acting and sends nothing; once the lease is given back it
/// acts as usual.
#[test]
fn a_second_actor_waits_for_the_one_holding_the_lease() {
    let world = World::new();
    world.once_ok(NOTICE);
    let db = world.config.parent().unwrap().join("state.sqlite");
    let sql = rusqlite::Connection::open(&db).unwrap();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    sql.execute(
        "INSERT INTO actor_lease (id, holder, host, pid, acquired_at, expires_at)
         VALUES (1, 'builder-7, pid 4242: run', 'builder-7', 4242, ?1, ?2)",
        [wall, wall + 600],
    )
    .unwrap();
    let posts = world.posts();
    let busy = world.once(MARK);
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(!busy.status.success(), "{stderr}");
    assert!(
        stderr.contains("another hydra-sentinel is acting (builder-7, pid 4242: run)"),
        "it says who is acting: {stderr}"
    );
    assert_eq!(world.posts(), posts, "nothing was sent");
    assert!(world.pulls().is_empty());

    // The same, held by a process of this host that is gone: taken over.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    sql.execute(
        "UPDATE actor_lease SET host = ?1, pid = 999999999, holder = 'a crashed once'",
        [host.trim()],
    )
    .unwrap();
    world.once_ok(MARK);
    assert_eq!(world.pulls().len(), 1, "it acts once the lease is free");
    let left: i64 = sql
        .query_row("SELECT count(*) FROM actor_lease", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "a finished cycle gives the lease back");
}

/// A maintainer pushed a fix to our branch (we invite them to): when the
/// pull request would be rewritten, their commit stays, the pull request
/// says it is theirs now, and the tracking issue says what is left to do.
#[test]
fn a_branch_someone_else_pushed_to_is_never_force_pushed() {
    let world = ghidra_spreads_to_aarch64();
    world.once_ok("2025-11-07T00:00:00Z");
    let (number, _) = world
        .pulls()
        .into_iter()
        .map(|p| (p.0, p.1))
        .find(|p| {
            world
                .github
                .body_of(p.0)
                .is_some_and(|b| b.contains("### `ghidra`"))
        })
        .expect("ghidra's pull request");
    // Batched by maintainer: ghidra's is roblabla.
    let branch = world
        .fork_branches()
        .into_iter()
        .find(|b| b.contains("/maintainer/roblabla/"))
        .expect("ghidra's branch");

    // A maintainer pushes a commit of their own to that branch.
    let theirs = world.maintainer_pushes(&branch);

    world.once_ok("2025-11-10T12:00:00Z");
    let out = world.once_ok("2025-11-13T12:00:00Z");
    assert_eq!(
        git_out(&world.fork, &["rev-parse", &branch]),
        theirs,
        "their commit is still the branch's head: {out}"
    );
    let on_pull: Vec<String> = world
        .github
        .comments_on(number)
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| b.contains("hydra-sentinel:hands-off-branch"))
        .collect();
    assert_eq!(
        on_pull.len(),
        1,
        "the pull request says it is theirs now: {out}\nbranches: {}\nlog: {}",
        git_out(&world.fork, &["branch", "-v"]),
        git_out(&world.fork, &["log", "--all", "--format=%h %an %s", "-5"])
    );
    assert!(on_pull[0].contains("Roberta"), "{}", on_pull[0]);

    let posts = world.posts();
    world.once_ok("2025-11-14T12:00:00Z");
    assert_eq!(world.posts(), posts, "and it is not tried again");
}

/// GitHub's search matches words: "hello:" also finds "hello-unfree: …".
/// Only a human's pull request that names the package pauses ours.
#[test]
fn only_a_human_pull_request_naming_the_package_pauses_ours() {
    let world = World::new();
    world.once_ok(NOTICE);
    world
        .github
        .human_opens_pull("carol", "hello-unfree: 1.0 -> 1.1");
    world.github.human_opens_pull("dave", "git-lfs: 3.5 -> 3.6");
    let out = world.once_ok(MARK);
    assert!(
        !out.contains("paused"),
        "unrelated titles that share a word pause nothing: {out}"
    );
    assert_eq!(
        world
            .pulls()
            .iter()
            .filter(|p| p.1.starts_with("treewide"))
            .count(),
        1
    );

    let world = World::new();
    world.once_ok(NOTICE);
    world
        .github
        .human_opens_pull("carol", "hello: fix the build with gcc 15");
    let out = world.once_ok(MARK);
    assert!(out.contains("a human's open pull request"), "{out}");
    assert!(
        !world.pulls().iter().any(|p| p.1.starts_with("treewide")),
        "the batch with hello waits for the human: {out}"
    );
}

/// A maintainer answers in a review of our pull request, or on a line of its
/// diff: those commands are read and answered like comments, once.
#[test]
fn commands_in_a_review_or_on_a_line_of_the_diff_are_obeyed() {
    let world = World::new();
    world.once_ok(NOTICE);
    world.once_ok(MARK);
    let pull = world.pulls()[0].0;
    world.github.human_reviews(
        pull,
        "stv0g",
        "Working on it.\n\n@hydra-sentinel snooze 30d",
    );
    world
        .github
        .human_review_comments(pull, "mallory", "@hydra-sentinel not-broken");
    world.once_ok(LATER);
    let replies: Vec<String> = world
        .github
        .comments_on(pull)
        .into_iter()
        .filter(|(author, _)| author == "sentinel-bot")
        .map(|(_, body)| body)
        .collect();
    assert!(
        replies.iter().any(|r| r.starts_with("@stv0g understood")),
        "the review's command is obeyed: {replies:#?}"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("@mallory only the maintainers")),
        "the line comment's command is declined, as from anyone else: {replies:#?}"
    );
    let posts = world.posts();
    world.once_ok(LATER);
    assert_eq!(world.posts(), posts, "each is answered once");
}

/// While a mass breakage holds everything, each cycle says so, and the
/// ledger records the hold once.
#[test]
fn a_hold_is_recorded_once_however_many_cycles_it_lasts() {
    let world = World::with(
        Vec::new(),
        |policy| {
            policy
                .replace("min_jobs = 1000", "min_jobs = 3")
                .replace("min_share = 0.02", "min_share = 0.05")
        },
        |_| {},
    );
    let first = world.once_ok(NOTICE);
    let second = world.once_ok(LATER);
    assert!(
        first.contains("hold:") && second.contains("hold:"),
        "both cycles are held:\n{first}\n{second}"
    );
    let db = world.config.parent().unwrap().join("state.sqlite");
    let holds: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM actions WHERE kind = 'hold'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(holds, 1, "one record for one breakage");
    assert!(world.issues().is_empty(), "nothing is sent while held");
}

/// Requests by (endpoint, status), as the look-alike counted them.
type Requests = Vec<((String, u16), usize)>;

/// The cost of one cycle on the look-alike: requests by endpoint and
/// answer, and how much of the quota they used.
fn cycle_cost(world: &World, now: &str) -> (Requests, u64) {
    let before = world.github.requests_by_endpoint();
    let quota = world.github.quota_used();
    world.once_ok(now);
    let after = world.github.requests_by_endpoint();
    let spent = after
        .into_iter()
        .map(|(k, n)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    (spent, world.github.quota_used() - quota)
}

#[test]
fn a_quiet_cycle_costs_a_handful_of_requests_however_many_tracking_issues_are_open() {
    let mut quiet = Vec::new();
    for open in [4, 230] {
        let world = World::new();
        for i in 0..open {
            world.github.existing_issue(
                "sentinel-bot",
                &format!("Build failure: gone-{i}"),
                &format!("<!-- hydra-sentinel:notify:gone-{i} -->\nIt fails."),
            );
        }
        let (first, _) = cycle_cost(&world, NOTICE);
        let comment_reads: usize = first
            .iter()
            .filter(|((endpoint, _), _)| endpoint == "GET /repos/{repo}/issues/{n}/comments")
            .map(|(_, n)| n)
            .sum();
        assert!(
            comment_reads >= open,
            "the first cycle reads each open issue's comments once: {first:?}"
        );
        let (settling, _) = cycle_cost(&world, NOTICE);
        assert!(
            settling.iter().map(|(_, n)| n).sum::<usize>() <= 4,
            "after the first cycle's writes, one page lists what changed: {settling:?}"
        );
        let (second, quota) = cycle_cost(&world, NOTICE);
        assert!(
            second
                .iter()
                .all(|((endpoint, _), _)| !endpoint.contains("/comments")),
            "nothing changed: no comments are read again: {second:?}"
        );
        assert!(
            second.contains(&(("GET /repos/{repo}/issues".into(), 304), 1)),
            "the listing is asked with its ETag and unchanged: {second:?}"
        );
        let requests: usize = second.iter().map(|(_, n)| n).sum();
        assert!(
            requests <= 4 && quota <= 3,
            "{open} open issues: a quiet cycle cost {requests} requests, {quota} of the quota: {second:?}"
        );
        quiet.push((requests, quota));
    }
    assert_eq!(
        quiet[0], quiet[1],
        "a quiet cycle costs the same with 4 or 230 open tracking issues"
    );
}

#[test]
fn a_comment_on_one_of_many_issues_is_read_with_one_request_and_obeyed() {
    let world = World::new();
    for i in 0..120 {
        world.github.existing_issue(
            "sentinel-bot",
            &format!("Build failure: gone-{i}"),
            &format!("<!-- hydra-sentinel:notify:gone-{i} -->\nIt fails."),
        );
    }
    world.once_ok(NOTICE);
    let hello = world.issue_of("hello").expect("hello's issue");
    world
        .github
        .human_comments(hello, "stv0g", "@hydra-sentinel snooze 30d");
    let (cost, _) = cycle_cost(&world, NOTICE);
    let comment_reads: usize = cost
        .iter()
        .filter(|((endpoint, _), _)| endpoint == "GET /repos/{repo}/issues/{n}/comments")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(comment_reads, 1, "only the issue that changed: {cost:?}");
    let replies = world.github.comments_on(hello);
    assert!(
        replies
            .iter()
            .any(|(author, body)| author == "sentinel-bot" && body.contains("understood")),
        "the command was obeyed: {replies:?}"
    );
}

#[test]
fn a_token_that_may_not_write_stops_each_cycle_at_its_first_refusal_and_the_action_backs_off() {
    let world = World::new();
    world.github.make_token_read_only();
    let writes = |world: &World| {
        world
            .github
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count()
    };
    let output = world.once(NOTICE);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("GitHub refuses this token's writes")
            && said.contains("Resource not accessible by personal access token"),
        "the reason is given: {said}"
    );
    assert!(!said.contains(TOKEN));
    assert_eq!(writes(&world), 1, "one refused write, then the cycle stops");
    for cycle in 2..=5 {
        assert!(!world.once(NOTICE).status.success());
        assert_eq!(
            writes(&world),
            cycle,
            "at most one refused write a cycle: each action is tried once, then waits"
        );
    }
    assert_eq!(
        world
            .github
            .requests_to("POST", "/repos/NixOS/nixpkgs/issues")
            .len(),
        5,
        "each notice refused once, then waiting; the digest once a cycle"
    );
}

#[test]
fn a_command_on_a_locked_issue_is_obeyed_and_its_answer_left_unposted() {
    let world = World::new();
    world.once_ok(NOTICE);
    let hello = world.issue_of("hello").expect("hello's issue");
    world
        .github
        .human_comments(hello, "stv0g", "@hydra-sentinel snooze 30d");
    world.github.lock(hello);
    let out = world.once_ok(NOTICE);
    assert!(out.contains("obeyed command from stv0g"), "{out}");
    assert!(out.contains(&format!("#{hello} is locked")), "{out}");
    let posts = world.posts();
    world.once_ok(NOTICE);
    assert_eq!(world.posts(), posts, "nothing is tried again");
}

#[test]
fn a_pull_request_github_refuses_as_invalid_is_set_aside_once_and_its_branch_never_pushed_again() {
    let world = World::with_a_pull_request_refused_as_invalid();
    let creates = world
        .github
        .requests_to("POST", "/repos/NixOS/nixpkgs/pulls")
        .len();
    let refs = git_out(&world.fork, &["for-each-ref"]);
    world.once_ok(LATER);
    world.once_ok("2025-11-20T00:00:00Z");
    assert_eq!(
        world
            .github
            .requests_to("POST", "/repos/NixOS/nixpkgs/pulls")
            .len(),
        creates,
        "not asked again"
    );
    assert_eq!(
        git_out(&world.fork, &["for-each-ref"]),
        refs,
        "nothing fetched, edited and pushed again"
    );
    assert!(world.pulls().is_empty());
}

/// With no reminder between notice and mark (the test policy has none),
/// nothing would read the closed issue again before the mark: the close is
/// heard on the next cycle, once, and no pull request follows.
#[test]
fn a_tracking_issue_closed_by_a_human_stops_a_ladder_without_reminders() {
    let world = World::new();
    world.once_ok(NOTICE);
    let hello = world.issue_of("hello").expect("hello's issue");
    world.github.human_closes(hello, false);
    let reads = |w: &World| {
        w.github
            .requests_to("GET", &format!("/repos/NixOS/nixpkgs/issues/{hello}"))
            .len()
    };
    let out = world.once_ok(MARK);
    assert!(
        out.contains(&format!(
            "hello: tracking issue #{hello} was closed by a human"
        )),
        "{out}"
    );
    assert!(
        !world.pulls().iter().any(|p| p.1.starts_with("hello")),
        "no mark after a human's no: {:?}",
        world.pulls()
    );
    assert_eq!(reads(&world), 1, "the close is read once");
    world.once_ok(LATER);
    assert_eq!(reads(&world), 1, "and heard once");
    assert!(!world.pulls().iter().any(|p| p.1.starts_with("hello")));
}

impl World {
    /// Snoozes of `attr` in the ledger (each human "no" heard is one).
    fn snoozes(&self, attr: &str) -> i64 {
        rusqlite::Connection::open(self._dir.path().join("state.sqlite"))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM opt_outs WHERE attr = ?1 AND kind = 'snooze'",
                [attr],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// The state, issue and reason of `attr`'s newest reminder in the ledger.
    fn newest_reminder(&self, attr: &str) -> (String, Option<u64>, Option<String>) {
        rusqlite::Connection::open(self._dir.path().join("state.sqlite"))
            .unwrap()
            .query_row(
                "SELECT state, issue, error FROM actions WHERE attr = ?1 AND kind = 'remind'
                 ORDER BY id DESC LIMIT 1",
                [attr],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, Option<i64>>(1)?.map(|n| n as u64),
                        r.get(2)?,
                    ))
                },
            )
            .unwrap()
    }

    /// Plan at `now` and carry the plan out in this process, without the
    /// follow step that reads back what humans did first: a reminder due
    /// on a closed tracking issue is then the first to see its close.
    /// Returns the report's lines.
    fn remind_without_following(&self, now: &str) -> Vec<String> {
        let now = chrono::DateTime::parse_from_rfc3339(now)
            .unwrap()
            .timestamp();
        let config = Config::load(&self.config).unwrap();
        let policy_file = config.policy_file.clone().unwrap();
        let policy = Policy::parse(
            &std::fs::read_to_string(&policy_file).unwrap(),
            &policy_file,
        )
        .unwrap();
        let store = Store::open(&config.database).unwrap();
        let github = config.github.as_ref().unwrap();
        let token = Secret::from_file(&github.token_path(None)).unwrap();
        let publisher = cycle::publisher(&config, Some(&token)).unwrap();
        let settings = cycle::settings(&config);
        let facts = store
            .plan_facts(
                &config.hydra.url,
                config.repository(),
                PlanScope::new(now, &policy.streak),
            )
            .unwrap();
        let plan = plan(&policy, &facts, &store.ledger().unwrap(), now);
        let mut report = ActReport::default();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let forge = GitHub::new(GitHubSettings::new(
                    github.api_url.clone(),
                    &github.repo,
                    token.clone(),
                ))
                .unwrap();
                let actor = Actor {
                    forge: &forge,
                    publisher: &publisher,
                    store: &store,
                    settings: &settings,
                    policy: &policy,
                    progress: &|| {},
                };
                actor.execute(&plan, now, &mut report).await
            })
            .unwrap();
        report.lines
    }
}

/// A world whose policy gives three days' notice and reminds one day
/// before marking.
fn reminding_world() -> World {
    World::with(
        Vec::new(),
        |policy| {
            policy
                .replace("remind_before_mark = []", "remind_before_mark = [\"1d\"]")
                .replace("min_notice = \"1d\"", "min_notice = \"3d\"")
        },
        |_| {},
    )
}

/// A day before the mark the reminding world's notice allows.
const REMIND: &str = "2025-11-14T12:00:00Z";

#[test]
fn a_tracking_issue_closed_by_a_human_is_a_no_and_one_the_bot_closed_never_is() {
    let human = reminding_world();
    human.once_ok(NOTICE);
    let hello = human.issue_of("hello").expect("hello's issue");
    human.github.human_closes(hello, false);
    let out = human.once_ok(REMIND);
    assert!(
        out.contains(&format!(
            "hello: tracking issue #{hello} was closed by a human"
        )),
        "{out}"
    );
    assert_eq!(
        human.github.comments_on(hello),
        vec![],
        "a human's no is not argued with"
    );

    let ours = reminding_world();
    ours.once_ok(NOTICE);
    let hello = ours.issue_of("hello").expect("hello's issue");
    ours.github.closed_by_the_bot(hello);
    let out = ours.once_ok(REMIND);
    assert!(!out.contains("closed by a human"), "{out}");
    let hello_issues: Vec<_> = ours
        .issues()
        .into_iter()
        .filter(|i| i.1 == "Build failure: hello")
        .collect();
    assert_eq!(
        hello_issues.len(),
        2,
        "a new tracking issue carries the reminder: {out}"
    );
    let reminded = ours.github.comments_on(hello_issues[1].0);
    assert!(
        reminded.iter().any(|(author, _)| author == "sentinel-bot"),
        "{reminded:?}\n{out}"
    );
}

/// Just after hello's snooze (`max_snooze`, twelve weeks from the close
/// heard at [`REMIND`]) is over: its ladder resumes with the reminder that
/// was due, twelve weeks late, and its mark is not due yet.
const AFTER_THE_SNOOZE: &str = "2026-02-06T18:00:00Z";
/// A week later: the resumed ladder's mark is due.
const MARK_AFTER_THE_SNOOZE: &str = "2026-02-13T18:00:00Z";

#[test]
fn a_human_close_seen_first_by_a_reminder_is_not_heard_again_by_the_follow_step() {
    let world = reminding_world();
    world.once_ok(NOTICE);
    let hello = world.issue_of("hello").expect("hello's issue");
    world.github.human_closes(hello, false);
    let lines = world.remind_without_following(REMIND);
    let heard = format!(
        "hello: tracking issue #{hello} was closed by a human; the package is left alone for 12w"
    );
    assert!(lines.iter().any(|l| l.starts_with(&heard)), "{lines:#?}");
    assert_eq!(world.snoozes("hello"), 1, "the reminder heard the close");
    let (state, issue, reason) = world.newest_reminder("hello");
    assert_eq!((state.as_str(), issue), ("done", Some(hello)));
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("closed by a human")),
        "{reason:?}"
    );
    let reads = |w: &World| {
        w.github
            .requests_to("GET", &format!("/repos/NixOS/nixpkgs/issues/{hello}"))
            .len()
    };
    let read = reads(&world);

    let out = world.once_ok(MARK);
    assert!(!out.contains("closed by a human"), "heard once: {out}");
    assert_eq!(
        world.snoozes("hello"),
        1,
        "the follow step does not snooze again"
    );
    assert_eq!(reads(&world), read, "nor reads the close again");
    assert_eq!(
        world.github.comments_on(hello),
        vec![],
        "nothing posted on it"
    );
    assert!(
        !world.pulls().iter().any(|p| p.1.starts_with("hello")),
        "no mark while snoozed: {:?}",
        world.pulls()
    );
}

#[test]
fn once_a_human_close_is_heard_the_ladder_resumes_after_the_snooze_without_posting_on_the_closed_issue()
 {
    let world = reminding_world();
    world.once_ok(NOTICE);
    let hello = world.issue_of("hello").expect("hello's issue");
    world.github.human_closes(hello, false);
    let out = world.once_ok(REMIND);
    assert!(
        out.contains(&format!("hello: tracking issue #{hello} was closed by a human; the package is left alone for 12w")),
        "the follow step hears it: {out}"
    );
    assert_eq!(world.snoozes("hello"), 1);

    let out = world.once_ok(AFTER_THE_SNOOZE);
    assert!(
        out.contains(&format!(
            "remind hello: tracking issue #{hello} was closed by a human (heard before); nothing posted"
        )),
        "the reminder falls due on the closed issue: {out}"
    );
    assert_eq!(world.snoozes("hello"), 1, "the close is not heard again");
    let (state, issue, reason) = world.newest_reminder("hello");
    assert_eq!((state.as_str(), issue), ("done", Some(hello)), "{reason:?}");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("closed by a human")),
        "{reason:?}"
    );
    assert_eq!(
        world.github.comments_on(hello),
        vec![],
        "nothing posted on it"
    );
    assert!(
        world
            .github
            .requests_to("PATCH", &format!("/repos/NixOS/nixpkgs/issues/{hello}"))
            .is_empty(),
        "nor is it reopened"
    );
    assert_eq!(
        world
            .issues()
            .iter()
            .filter(|i| i.1 == "Build failure: hello")
            .count(),
        1,
        "nor a new tracking issue opened"
    );

    world.once_ok(MARK_AFTER_THE_SNOOZE);
    assert!(
        world.pulls().iter().any(|p| p.1.starts_with("hello")),
        "the mark follows when its time comes: {:?}",
        world.pulls()
    );
    assert_eq!(world.snoozes("hello"), 1);
}
