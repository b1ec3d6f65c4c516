//! `hydra-sentinel demo`: half a year of nixpkgs told in a minute, offline.
//!
//! A Hydra look-alike serves a generated history of daily evals in which
//! three packages of a small nixpkgs-shaped tree (embedded in the binary and
//! written to a temporary folder with a bare upstream, the bot's clone and a
//! bare fork) fail in different ways. The clock moves a day at a time: each
//! day the real cycle runs (`once` as of that day: ingest, plan, act, the
//! weekly digest) against a GitHub look-alike, and people in the story
//! answer as maintainers do: one snoozes, one closes a pull request, a
//! committer merges one. From day 100 Hydra also builds staging-next, where
//! a root and its victim break for two weeks: both are warned while the
//! branch's pull request is open, and the warnings closed when the branch
//! builds them again. What GitHub received is printed as a maintainer would
//! read it, pull requests with the diff of their branch on the fork.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use hydra_sentinel::act::Publisher;
use hydra_sentinel::act::cycle::{self, Outcome};
use hydra_sentinel::config::Config;
use hydra_sentinel::forge::SimulatedClock;
use hydra_sentinel::format::time;
use hydra_sentinel::policy::{
    self, ActionKind, ActionRecord, Ledger, OptOutKind, Policy, RecordState,
};
use hydra_sentinel::sim::{FakeGitHub, FakeHydra, PlantedFailure, SimHydra, SimSpec, paced_policy};
use hydra_sentinel::store::Store;

const DAY: i64 = 86_400;
/// 2025-11-03T00:00:00Z, a Monday: the first eval.
const START: i64 = 1_762_128_000;
/// Half a year of daily evals: days 0 to 182.
const DAYS: usize = 183;
const BOT: &str = "sentinel-bot";
const REPO: &str = "NixOS/nixpkgs";
const TOKEN: &str = "ghp_demo_token_for_the_github_look_alike";
const MENTION: &str = "@hydra-sentinel";

/// The packages of the story, and what happens to them.
const RETIRED: &str = "umurmur";
const SNOOZED: &str = "frobnicate";
const CLOSED: &str = "hello";
/// How long the maintainer of [`SNOOZED`] asks for.
const SNOOZE_DAYS: i64 = 14;
/// The pre-merge branch of the story: Hydra builds it from [`BRANCH_FROM`]
/// on, [`WARNED`] breaks there (taking [`WARNED_VICTIM`] with it) from
/// [`BRANCH_BREAKS`] and builds there again from [`BRANCH_FIXED`], before the
/// branch's pull request is merged on [`BRANCH_MERGED`].
const BRANCH: &str = "staging-next";
const WARNED: &str = "python3Packages.pamqp";
const WARNED_VICTIM: &str = "python3Packages.aioamqp";
const BRANCH_FROM: usize = 100;
const BRANCH_EVALS: usize = 60;
const BRANCH_OPENED: i64 = 104;
const BRANCH_BREAKS: usize = 110;
const BRANCH_FIXED: usize = 124;
const BRANCH_MERGED: i64 = 130;

/// The nixpkgs tree of the demo: the test fixture, embedded so that an
/// installed binary needs no source tree.
macro_rules! tree {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nixpkgs/", $path)))),*]
    };
}
const NIXPKGS: &[(&str, &str)] = tree![
    "default.nix",
    "lib/default.nix",
    "maintainers/maintainer-list.nix",
    "maintainers/team-list.nix",
    "pkgs/applications/discord/default.nix",
    "pkgs/by-name/README.md",
    "pkgs/by-name/al/alacritty/package.nix",
    "pkgs/by-name/fo/foo-wrapped/package.nix",
    "pkgs/by-name/he/hello/package.nix",
    "pkgs/by-name/sh/shellcheck/package.nix",
    "pkgs/by-name/um/umurmur/package.nix",
    "pkgs/development/haskell-modules/hackage-packages.nix",
    "pkgs/development/python-modules/aioamqp/default.nix",
    "pkgs/development/python-modules/oldpy/default.nix",
    "pkgs/development/python-modules/pamqp/default.nix",
    "pkgs/development/python-modules/pycowsay/default.nix",
    "pkgs/stdenv/default.nix",
    "pkgs/tools/misc/dotted/default.nix",
    "pkgs/tools/misc/frobnicate/default.nix",
    "pkgs/tools/misc/oldtool/default.nix",
    "pkgs/tools/misc/oldtool/fix-build.patch",
    "pkgs/tools/security/ghidra/build.nix",
    "pkgs/top-level/aliases.nix",
    "pkgs/top-level/all-packages.nix",
    "pkgs/top-level/default.nix",
    "pkgs/top-level/python-aliases.nix",
    "pkgs/top-level/python-packages.nix",
];

/// The ladder of the demo, in days instead of weeks.
const LADDER: &[(&str, &str)] = &[
    ("notify_after", "\"2d\""),
    ("remind_before_mark", "[\"3d\"]"),
    ("mark_broken_after", "\"14d\""),
    ("min_notice", "\"7d\""),
    ("mark_min_derivations", "1"),
    ("retire_after_broken", "\"42d\""),
    ("retire_notice", "\"7d\""),
    ("max_snooze", "\"30d\""),
    ("group_by", "\"attr\""),
];

/// The story as data, for `--json` and the test.
#[derive(Debug, Serialize)]
pub struct Story {
    pub from: String,
    pub to: String,
    pub days: usize,
    pub cycles: usize,
    pub policy: String,
    /// Per package of the story, every step the ledger holds, oldest first.
    pub packages: BTreeMap<String, Vec<Step>>,
    pub snooze: Option<SnoozeStory>,
    pub human_closed: Option<HumanClosed>,
    pub merged: Option<Merged>,
    pub recovered: Option<Recovered>,
    pub retirement: Option<Retirement>,
    pub early_warning: Option<EarlyWarningStory>,
    pub digests: Vec<Item>,
    /// Every pull request on the GitHub look-alike.
    pub pull_requests: Vec<Item>,
    /// Every tracking issue on the GitHub look-alike.
    pub issues: Vec<Item>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub kind: String,
    pub step: Option<String>,
    /// The platforms it was about (all that failed with `all_platforms`).
    pub systems: Vec<String>,
    pub all_platforms: bool,
    pub state: String,
    /// When it was done (or planned), RFC 3339.
    pub at: String,
    pub day: i64,
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    pub pinged: Vec<String>,
}

#[derive(Debug, Serialize, Clone)]
pub struct Scheduled {
    pub kind: String,
    pub step: Option<String>,
    pub at: String,
}

#[derive(Debug, Serialize)]
pub struct SnoozeStory {
    pub attr: String,
    pub by: String,
    pub issue: u64,
    pub asked: String,
    pub days: i64,
    /// Until when the bot said it leaves the package alone.
    pub until: Option<String>,
    /// The package's next steps the day it was asked for, before it.
    pub schedule_before: Vec<Scheduled>,
    /// Its next steps on the first cycle after the snooze ended.
    pub schedule_after: Vec<Scheduled>,
    /// When that cycle ran.
    pub after_at: Option<String>,
    pub reply: Option<String>,
    #[serde(skip)]
    until_unix: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct HumanClosed {
    pub attr: String,
    pub pr: u64,
    pub by: String,
    pub at: String,
    /// Its state on GitHub at the end of the story.
    pub state_at_end: String,
    /// Days the story went on after it.
    pub days_after: i64,
}

#[derive(Debug, Serialize)]
pub struct Merged {
    pub attr: String,
    pub pr: u64,
    pub by: String,
    pub at: String,
    /// The commit that became the upstream base branch.
    pub commit: String,
}

#[derive(Debug, Serialize)]
pub struct Recovered {
    pub attr: String,
    pub pr: u64,
    pub state_at_end: String,
    pub merged: bool,
    /// The bot's comment on it.
    pub comment: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Retirement {
    pub attr: String,
    pub pr: u64,
    pub branch: String,
    /// The line for the package in `pkgs/top-level/aliases.nix` on the branch.
    pub alias: Option<String>,
    /// Files of the branch's commit: (status, old path, new path).
    pub files: Vec<FileChange>,
}

/// A file of a commit: (status, old path, new path).
pub type FileChange = (String, String, String);

/// The pre-merge branch's part of the story.
#[derive(Debug, Serialize)]
pub struct EarlyWarningStory {
    pub branch: String,
    /// The branch's pull request into master, opened by a committer.
    pub pull: u64,
    /// The warning about the root: its own issue, the text as first
    /// posted, and the issue's state at the end.
    pub issue: Option<u64>,
    pub notice: Option<String>,
    pub state_at_end: Option<String>,
}

#[derive(Debug, Serialize, Clone)]
pub struct Item {
    pub number: u64,
    pub title: String,
    pub state: String,
}

/// The world of the story: folders, repositories and look-alikes.
struct World {
    root: PathBuf,
    upstream: PathBuf,
    fork: PathBuf,
    hydra: FakeHydra,
    github: FakeGitHub,
    config: Config,
    policy: Policy,
}

pub fn run(database: Option<&Path>, json: bool, stdout: &mut dyn Write) -> Result<ExitCode> {
    let started = Instant::now();
    if let Some(path) = database {
        for file in [path.to_owned(), path.with_extension("policy.toml")] {
            if file.exists() {
                bail!(
                    "{} already exists: the demo starts from an empty database (remove it or name another)",
                    file.display()
                );
            }
        }
    }
    let mut sink = std::io::sink();
    let out: &mut dyn Write = if json { &mut sink } else { &mut *stdout };
    let temp = tempfile::tempdir().context("creating a temporary folder")?;
    let world = World::new(temp.path(), database)?;
    writeln!(
        out,
        "hydra-sentinel demo: half a year of nixpkgs:trunk, {} to {}, one eval a day, a cycle a day.",
        day(0),
        day(DAYS as i64 - 1)
    )?;
    writeln!(
        out,
        "Hydra look-alike: {}   GitHub look-alike: {}   (loopback only)",
        world.hydra.url(),
        world.github.url()
    )?;
    writeln!(
        out,
        "nixpkgs: a small tree in {}: a bare upstream, the bot's clone, and the bot's bare fork {BOT}/nixpkgs.",
        world.root.display()
    )?;
    writeln!(out, "{}", policy_line())?;
    writeln!(
        out,
        "Planted: {RETIRED} fails everywhere from day 2; {SNOOZED} on both darwins from day 20 until day 70; {CLOSED} on aarch64-linux from day 75;\n\
         on nixpkgs:{BRANCH} (built by Hydra from day {BRANCH_FROM}), {WARNED} fails from day {BRANCH_BREAKS} until day {BRANCH_FIXED}, taking {WARNED_VICTIM} with it."
    )?;
    writeln!(
        out,
        "People: {SNOOZED}'s maintainer bob snoozes it; carol (a committer) merges what the bot proposes for {RETIRED}; {CLOSED}'s maintainer stv0g closes the bot's pull request;\n\
         carol opens {BRANCH}'s pull request into master on day {BRANCH_OPENED} and merges it on day {BRANCH_MERGED}.\n"
    )?;

    let mut shown = Shown::default();
    let mut snooze: Option<SnoozeStory> = None;
    let mut merged: Option<Merged> = None;
    let mut closed: Option<(u64, String, i64)> = None;
    let mut branch_pull: Option<u64> = None;
    let mut warning: Option<(u64, String)> = None;
    let store = Store::open(&world.config.database)?;
    let mut cycles = 0;
    // The client's waits (the spacing of writes, the content budget) are
    // simulated on the story's clock: the budget holds in story time and
    // the demo does not sleep.
    let clock = SimulatedClock::at(START);
    for d in 0..DAYS as i64 {
        let now = START + d * DAY + 12 * 3600;
        clock.advance_to(now);
        let mut said = Vec::new();
        // People answer what they read the day before.
        let ledger = store.ledger()?;
        if snooze.is_none()
            && let Some(notice) = done(&ledger, SNOOZED, ActionKind::Notify)
            && now >= notice.at() + 3 * DAY
            && let Some(issue) = notice.issue
        {
            let before = schedule(&world, &store, SNOOZED, now)?;
            let text = format!(
                "Thanks. The darwin SDK bump broke it; upstream has a fix in review.\n\n{MENTION} snooze {SNOOZE_DAYS}d"
            );
            world.github.human_comments(issue, "bob", &text);
            said.push(format!(
                "bob (maintainer of {SNOOZED}) comments on #{issue}:\n{}",
                indent(&text)
            ));
            snooze = Some(SnoozeStory {
                attr: SNOOZED.into(),
                by: "bob".into(),
                issue,
                asked: time(now),
                days: SNOOZE_DAYS,
                until: None,
                schedule_before: before,
                schedule_after: Vec::new(),
                after_at: None,
                reply: None,
                until_unix: None,
            });
        }
        if merged.is_none()
            && let Some(mark) = open_pull(&ledger, RETIRED, ActionKind::MarkBroken)
            && now >= mark.at() + 2 * DAY
            && let Some(pr) = mark.pr
        {
            let commit = world.merge(pr)?;
            world
                .github
                .human_comments(pr, "carol", "Nobody has built it for weeks. Merging.");
            world.github.human_closes(pr, true);
            said.push(format!(
                "carol (committer) merges #{pr}: upstream master is now {}",
                &commit[..12]
            ));
            merged = Some(Merged {
                attr: RETIRED.into(),
                pr,
                by: "carol".into(),
                at: time(now),
                commit,
            });
        }
        if closed.is_none()
            && let Some(mark) = open_pull(&ledger, CLOSED, ActionKind::MarkBroken)
            && now >= mark.at() + DAY
            && let Some(pr) = mark.pr
        {
            let text =
                "Please don't: 2.12.3 fixes aarch64-linux and the bump is on its way. Closing.";
            world.github.human_comments(pr, "stv0g", text);
            world.github.human_closes(pr, false);
            said.push(format!(
                "stv0g (maintainer of {CLOSED}) closes #{pr} without merging:\n{}",
                indent(text)
            ));
            closed = Some((pr, time(now), d));
        }

        if d == BRANCH_OPENED {
            let title = format!("{BRANCH} {}", day(d));
            let pr = world
                .github
                .human_opens_branch_pull(BRANCH, "master", &title);
            // Shown here, as people's doings are; not as the bot's.
            shown.items.insert(pr, "open".into());
            said.push(format!(
                "carol (committer) opens #{pr} \"{title}\": {BRANCH} into master, to land in a few weeks"
            ));
            branch_pull = Some(pr);
        }
        if d == BRANCH_MERGED
            && let Some(pr) = branch_pull
        {
            world.github.human_closes(pr, true);
            shown.items.insert(pr, "closed".into());
            said.push(format!(
                "carol (committer) merges #{pr}: {BRANCH} landed on master"
            ));
        }
        world
            .hydra
            .publish((d as usize + 1).min(world.hydra.hydra().evals.len()));
        if let Some(made) = (d as usize + 1).checked_sub(BRANCH_FROM) {
            world.hydra.publish_jobset(BRANCH, made);
        }
        super::ingest(&world.config, None, &mut std::io::sink())
            .with_context(|| format!("ingesting on {}", day(d)))?;
        // The real cycle, as `once --now` runs it, its waits on the
        // story's clock.
        match cycle::run_on_clock(&world.config, &world.policy, &store, now, &clock)
            .with_context(|| format!("the cycle of {}", day(d)))?
        {
            Outcome::Acted(report) if report.errors.is_empty() => {}
            Outcome::Acted(report) => bail!(
                "the cycle of {} reported errors: {}",
                day(d),
                report.errors.join("; ")
            ),
            Outcome::DryRun(_) => bail!("the demo's configuration acts; a dry run is a bug"),
        }
        cycles += 1;
        if warning.is_none() {
            warning = world.warning_issue();
        }
        if let Some(s) = snooze.as_mut() {
            if s.asked == time(now) {
                s.until_unix = store
                    .ledger()?
                    .opt_outs
                    .iter()
                    .filter(|o| o.attr == SNOOZED && o.kind == OptOutKind::Snooze)
                    .filter_map(|o| o.until)
                    .max();
                s.until = s.until_unix.map(time);
                s.reply = world
                    .github
                    .comments_on(s.issue)
                    .into_iter()
                    .rev()
                    .find(|(author, _)| author == BOT)
                    .map(|(_, body)| visible(&body));
            }
            if s.after_at.is_none() && s.until_unix.is_some_and(|u| now >= u) {
                s.schedule_after = schedule(&world, &store, SNOOZED, now)?;
                s.after_at = Some(time(now));
                said.push(format!(
                    "{SNOOZED}'s snooze is over; its next steps moved by as long as it lasted:\n    before the snooze: {}\n    now:               {}",
                    steps_line(&s.schedule_before),
                    steps_line(&s.schedule_after)
                ));
            }
        }
        shown.report(&world, d, said, out)?;
    }
    let end = START + (DAYS as i64 - 1) * DAY + 12 * 3600;

    writeln!(out, "\n{}", rule('═'))?;
    writeln!(out, "Afterwards, as anyone can look at it:")?;
    writeln!(out, "\n$ hydra-sentinel status")?;
    write!(
        out,
        "{}",
        hydra_sentinel::report::status_text(&store.jobset_summaries()?)
    )?;
    writeln!(out, "\n$ hydra-sentinel history {SNOOZED}")?;
    super::history(&store, &world.config, SNOOZED, false, out)?;
    writeln!(
        out,
        "\n$ hydra-sentinel explain {RETIRED} --now {}",
        time(end)
    )?;
    let mut facts = store.policy_facts(&world.config.hydra.url, world.config.repository())?;
    if let Some(publisher) = cycle::publisher(&world.config, None) {
        facts.maintainers =
            publisher.maintainers(&[RETIRED.to_owned(), SNOOZED.to_owned(), CLOSED.to_owned()])?;
    }
    match policy::explain(&world.policy, &facts, &store.ledger()?, RETIRED, end) {
        Some(text) => write!(out, "{text}")?,
        None => bail!("explain knows nothing of {RETIRED}"),
    }

    let early_warning = branch_pull.map(|pull| EarlyWarningStory {
        branch: format!("nixpkgs:{BRANCH}"),
        pull,
        issue: warning.as_ref().map(|w| w.0),
        notice: warning.as_ref().map(|w| visible(&w.1)),
        state_at_end: warning.as_ref().and_then(|w| {
            world
                .github
                .items()
                .into_iter()
                .find(|i| i.0 == w.0)
                .map(|i| i.2)
        }),
    });
    let story = world.story(
        &store,
        snooze,
        merged,
        closed,
        early_warning,
        cycles,
        started,
    )?;
    if let Some(last) = story.digests.last() {
        writeln!(
            out,
            "\nThe weekly digest, as maintainers read it on GitHub ({} were posted, one a week; each closed when the next came):",
            story.digests.len()
        )?;
        shown.issue_text(&world, last.number, out)?;
    }
    writeln!(
        out,
        "\nThe story took {:.1} s ({} cycles).",
        started.elapsed().as_secs_f64(),
        cycles
    )?;
    match database {
        Some(path) => writeln!(
            out,
            "The demo database is kept at {} and its policy at {}: explore them with status, history, plan, explain and digest\n(a configuration with `[database] path` and `[policy] file` set to those; --now {} for the story's end).",
            path.display(),
            path.with_extension("policy.toml").display(),
            time(end)
        )?,
        None => writeln!(
            out,
            "Pass --database PATH to keep the demo database and explore it with status, history, plan, explain and digest."
        )?,
    }
    if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&story)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn policy_line() -> String {
    "demo policy: the built-in one in days instead of weeks, without overrides: notice after 2d, \
     a reminder 3d before the mark, mark broken after 14d (at least 7d after the notice), \
     retire 42d after a merged mark (warned 7d before), snoozes of at most 30d, one pull request per package."
        .into()
}

fn day(d: i64) -> String {
    time(START + d * DAY)[..10].to_owned()
}

fn rule(c: char) -> String {
    std::iter::repeat_n(c, 78).collect()
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "    │".to_owned()
            } else {
                format!("    │ {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What GitHub shows of a body: without the hidden HTML comments.
fn visible(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let lines: Vec<&str> = out.lines().collect();
    let mut text = String::new();
    let mut blank = true;
    for line in lines {
        let empty = line.trim().is_empty();
        if empty && blank {
            continue;
        }
        blank = empty;
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.trim_end().to_owned()
}

/// The newest done record of `kind` for `attr`.
fn done<'l>(ledger: &'l Ledger, attr: &str, kind: ActionKind) -> Option<&'l ActionRecord> {
    ledger
        .actions
        .iter()
        .filter(|r| r.kind == kind && r.attr.as_deref() == Some(attr))
        .filter(|r| r.state == RecordState::Done)
        .max_by_key(|r| r.id)
}

fn open_pull<'l>(ledger: &'l Ledger, attr: &str, kind: ActionKind) -> Option<&'l ActionRecord> {
    ledger
        .actions
        .iter()
        .filter(|r| r.kind == kind && r.attr.as_deref() == Some(attr))
        .filter(|r| r.state == RecordState::Open && r.pr.is_some())
        .max_by_key(|r| r.id)
}

/// The steps the policy has in store for `attr` as of `now`.
fn schedule(world: &World, store: &Store, attr: &str, now: i64) -> Result<Vec<Scheduled>> {
    let facts = store.policy_facts(&world.config.hydra.url, world.config.repository())?;
    let assessment = policy::assess(&world.policy, &facts, &store.ledger()?, now);
    Ok(assessment
        .attrs
        .get(attr)
        .map(|a| {
            a.schedule
                .iter()
                .map(|s| Scheduled {
                    kind: s.kind.as_str().to_owned(),
                    step: s.step.clone(),
                    at: s.at.clone(),
                })
                .collect()
        })
        .unwrap_or_default())
}

fn steps_line(steps: &[Scheduled]) -> String {
    if steps.is_empty() {
        return "none".into();
    }
    steps
        .iter()
        .map(|s| {
            format!(
                "{} on {}",
                s.step.as_deref().unwrap_or(&s.kind),
                s.at.get(..10).unwrap_or(&s.at)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl World {
    fn new(root: &Path, database: Option<&Path>) -> Result<World> {
        let seed = root.join("seed");
        for (path, text) in NIXPKGS {
            let file = seed.join(path);
            std::fs::create_dir_all(file.parent().expect("a file in a folder"))?;
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        }
        let upstream = root.join("upstream.git");
        let checkout = root.join("checkout");
        let fork = root.join("fork.git");
        init_repositories(&seed, &upstream, &checkout, &fork)?;

        let planted =
            |attr: &str, since: usize, systems: &[&str], until: Option<usize>| PlantedFailure {
                attr: attr.into(),
                since,
                systems: systems.iter().map(|s| s.to_string()).collect(),
                until,
                spreads_to: Vec::new(),
                victims: Vec::new(),
            };
        let builds_with_victim = PlantedFailure {
            attr: WARNED.into(),
            since: usize::MAX,
            victims: vec![WARNED_VICTIM.into()],
            ..Default::default()
        };
        let spec = SimSpec {
            packages: 40,
            evals: DAYS,
            start_time: START,
            eval_interval: DAY,
            rebuild_rate: 0.03,
            flip_rate: 0.0,
            noise_rate: 0.0,
            pending_share: 0.0,
            scenarios: false,
            hostile_jobs: false,
            planted: vec![
                planted(RETIRED, 2, &[], None),
                planted(SNOOZED, 20, &["x86_64-darwin", "aarch64-darwin"], Some(70)),
                planted(CLOSED, 75, &["aarch64-linux"], None),
                builds_with_victim.clone(),
            ],
            ..SimSpec::demo()
        };
        // The branch as Hydra builds it: trunk's packages, ids and times of
        // its own (one Hydra numbers evals and builds across jobsets).
        let branch = SimSpec {
            jobset: BRANCH.into(),
            evals: BRANCH_EVALS,
            start_time: START + BRANCH_FROM as i64 * DAY + 3600,
            first_eval_id: spec.first_eval_id + 100_000,
            first_build_id: spec.first_build_id + 50_000_000,
            planted: vec![PlantedFailure {
                since: BRANCH_BREAKS - BRANCH_FROM,
                until: Some(BRANCH_FIXED - BRANCH_FROM),
                ..builds_with_victim
            }],
            ..spec.clone()
        };
        let hydra = FakeHydra::start(SimHydra::generate(&spec))
            .context("starting the Hydra look-alike on loopback")?;
        hydra.publish(0);
        hydra.add_jobset(SimHydra::generate(&branch));
        hydra.publish_jobset(BRANCH, 0);
        let github = FakeGitHub::start(REPO, BOT, TOKEN)
            .context("starting the GitHub look-alike on loopback")?;
        std::fs::write(root.join("token"), format!("{TOKEN}\n"))?;
        // Kept next to a kept database, so that `plan`, `explain` and
        // `digest` can be asked about it afterwards under the same policy.
        let policy_file = match database {
            Some(path) => path.with_extension("policy.toml"),
            None => root.join("policy.toml"),
        };
        std::fs::write(&policy_file, paced_policy(LADDER))?;
        let db = match database {
            Some(path) => path.to_owned(),
            None => root.join("demo.sqlite"),
        };
        let text = format!(
            r#"[hydra]
url = "{hydra}"
retry_initial_delay_ms = 50
[[jobsets]]
project = "{project}"
jobset = "{jobset}"
[[jobsets]]
project = "{project}"
jobset = "{BRANCH}"
[database]
path = {db:?}
[policy]
file = {policy:?}
[nixpkgs]
checkout = {checkout:?}
[github]
api_url = "{github}"
repo = "{REPO}"
fork = "{BOT}/nixpkgs"
push_url = {fork:?}
token_file = {token:?}
[ingest]
max_evals_per_pass = 400
[act]
enabled = true
committers = ["carol"]
"#,
            hydra = hydra.url(),
            project = spec.project,
            jobset = spec.jobset,
            db = db.display().to_string(),
            policy = policy_file.display().to_string(),
            checkout = checkout.display().to_string(),
            github = github.url(),
            fork = fork.display().to_string(),
            token = root.join("token").display().to_string(),
        );
        let config = Config::parse(&text, Path::new("<demo>"))?;
        let policy = hydra_sentinel::settings::read_policy(&policy_file)?;
        Ok(World {
            root: root.to_owned(),
            upstream,
            fork,
            hydra,
            github,
            config,
            policy,
        })
    }

    /// The early warning about [`WARNED`] in an issue of its own, once
    /// posted: its number and text.
    fn warning_issue(&self) -> Option<(u64, String)> {
        let title = format!("{WARNED}: fails on {BRANCH}");
        let number = self.github.items().into_iter().find(|i| i.1 == title)?.0;
        Some((number, self.github.body_of(number)?))
    }

    fn branch_of(&self, pr: u64) -> Result<String> {
        let head = self
            .github
            .head_of(pr)
            .with_context(|| format!("#{pr} is no pull request"))?;
        Ok(head
            .split_once(':')
            .map_or(head.as_str(), |(_, b)| b)
            .to_owned())
    }

    /// A committer merges pull request `pr`: its branch on the fork becomes
    /// upstream's master (it was built on top of it, so this fast-forwards).
    fn merge(&self, pr: u64) -> Result<String> {
        let branch = self.branch_of(pr)?;
        let upstream = git2::Repository::open_bare(&self.upstream)?;
        let mut remote = upstream.remote_anonymous(&self.fork.display().to_string())?;
        remote
            .fetch(
                &[format!("+refs/heads/{branch}:refs/pull/{pr}/head")],
                None,
                None,
            )
            .with_context(|| format!("fetching {branch} from the fork"))?;
        let head = upstream.refname_to_id(&format!("refs/pull/{pr}/head"))?;
        let master = upstream.refname_to_id("refs/heads/master")?;
        if !upstream.graph_descendant_of(head, master)? {
            bail!("{branch} is not on top of upstream master: the demo merges by fast-forward");
        }
        upstream.reference(
            "refs/heads/master",
            head,
            true,
            &format!("merge pull request #{pr}"),
        )?;
        Ok(head.to_string())
    }

    /// The unified diff of a pull request's branch against its base, and
    /// its files as (status, old path, new path).
    fn diff(&self, pr: u64) -> Result<(String, Vec<FileChange>)> {
        let branch = self.branch_of(pr)?;
        let fork = git2::Repository::open_bare(&self.fork)?;
        let commit = fork
            .find_reference(&format!("refs/heads/{branch}"))?
            .peel_to_commit()?;
        let parent = commit.parent(0)?;
        let mut diff = fork.diff_tree_to_tree(
            Some(&parent.tree()?),
            Some(&commit.tree()?),
            Some(git2::DiffOptions::new().context_lines(3)),
        )?;
        diff.find_similar(Some(git2::DiffFindOptions::new().renames(true)))?;
        let mut files = Vec::new();
        for delta in diff.deltas() {
            let path = |f: git2::DiffFile| {
                f.path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            };
            files.push((
                format!("{:?}", delta.status()).to_lowercase(),
                path(delta.old_file()),
                path(delta.new_file()),
            ));
        }
        let mut text = String::new();
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            let content = String::from_utf8_lossy(line.content());
            match line.origin() {
                '+' | '-' | ' ' => text.push(line.origin()),
                _ => {}
            }
            text.push_str(&content);
            true
        })?;
        Ok((text, files))
    }

    #[allow(clippy::too_many_arguments)]
    fn story(
        &self,
        store: &Store,
        snooze: Option<SnoozeStory>,
        merged: Option<Merged>,
        closed: Option<(u64, String, i64)>,
        early_warning: Option<EarlyWarningStory>,
        cycles: usize,
        started: Instant,
    ) -> Result<Story> {
        let ledger = store.ledger()?;
        let mut packages: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        let mut records: Vec<&ActionRecord> = ledger.actions.iter().collect();
        records.sort_by_key(|r| (r.planned_at, r.id));
        for r in records {
            let Some(attr) = &r.attr else { continue };
            packages.entry(attr.clone()).or_default().push(Step {
                kind: r.kind.as_str().to_owned(),
                step: r.step.clone(),
                systems: r.systems.clone(),
                all_platforms: r.all_platforms,
                state: r.state.as_str().to_owned(),
                at: time(r.at()),
                day: (r.at() - START).div_euclid(DAY),
                pr: r.pr,
                issue: r.issue,
                pinged: r.pinged.clone(),
            });
        }
        let items: Vec<(u64, String, String, bool)> = self.github.items();
        let item = |i: &(u64, String, String, bool)| Item {
            number: i.0,
            title: i.1.clone(),
            state: i.2.clone(),
        };
        let state_of = |n: u64| {
            items
                .iter()
                .find(|i| i.0 == n)
                .map(|i| i.2.clone())
                .unwrap_or_default()
        };
        let digests = items
            .iter()
            .filter(|i| !i.3 && i.1.contains("weekly digest"))
            .map(item)
            .collect();
        let issues = items
            .iter()
            .filter(|i| !i.3 && !i.1.contains("weekly digest"))
            .map(item)
            .collect();
        let pull_requests = items.iter().filter(|i| i.3).map(item).collect();
        let recovered = ledger
            .actions
            .iter()
            .find(|r| r.kind == ActionKind::ClosePr && r.state == RecordState::Done)
            .and_then(|r| Some((r.attr.clone()?, r.pr?)))
            .map(|(attr, pr)| Recovered {
                attr,
                pr,
                state_at_end: state_of(pr),
                merged: self.github.merged(pr),
                comment: self
                    .github
                    .comments_on(pr)
                    .into_iter()
                    .find(|(a, _)| a == BOT)
                    .map(|(_, b)| visible(&b)),
            });
        let retirement = match ledger
            .actions
            .iter()
            .find(|r| r.kind == ActionKind::Retire && r.pr.is_some())
        {
            Some(r) => {
                let pr = r.pr.expect("filtered");
                let attr = r.attr.clone().unwrap_or_default();
                let branch = self.branch_of(pr)?;
                let fork = git2::Repository::open_bare(&self.fork)?;
                let tree = fork
                    .find_reference(&format!("refs/heads/{branch}"))?
                    .peel_to_tree()?;
                let aliases = tree
                    .get_path(Path::new("pkgs/top-level/aliases.nix"))?
                    .to_object(&fork)?
                    .peel_to_blob()?;
                let alias = String::from_utf8_lossy(aliases.content())
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{attr} =")))
                    .map(|l| l.trim().to_owned());
                Some(Retirement {
                    attr,
                    pr,
                    branch,
                    alias,
                    files: self.diff(pr)?.1,
                })
            }
            None => None,
        };
        let end_day = DAYS as i64 - 1;
        Ok(Story {
            from: time(START),
            to: time(START + end_day * DAY),
            days: DAYS,
            cycles,
            policy: policy_line(),
            packages,
            snooze,
            human_closed: closed.map(|(pr, at, d)| HumanClosed {
                attr: CLOSED.into(),
                pr,
                by: "stv0g".into(),
                at,
                state_at_end: state_of(pr),
                days_after: end_day - d,
            }),
            merged,
            recovered,
            retirement,
            early_warning,
            digests,
            pull_requests,
            issues,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// `seed` (a plain folder) becomes the first commit of a bare `upstream`;
/// `checkout` is the bot's clone of it; `fork` is the bot's empty bare fork.
fn init_repositories(seed: &Path, upstream: &Path, checkout: &Path, fork: &Path) -> Result<()> {
    let repo = git2::Repository::init(seed)?;
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let who = git2::Signature::new(
        "nixpkgs",
        "nixpkgs@example.invalid",
        &git2::Time::new(START - 30 * DAY, 0),
    )?;
    repo.commit(
        Some("refs/heads/master"),
        &who,
        &who,
        "nixpkgs: the demo's small tree",
        &tree,
        &[],
    )?;
    repo.set_head("refs/heads/master")?;
    git2::build::RepoBuilder::new()
        .bare(true)
        .branch("master")
        .clone(&seed.display().to_string(), upstream)
        .context("creating the bare upstream")?;
    git2::build::RepoBuilder::new()
        .branch("master")
        .clone(&upstream.display().to_string(), checkout)
        .context("cloning the bot's checkout")?;
    git2::Repository::init_bare(fork).context("creating the bare fork")?;
    Ok(())
}

/// What has been shown of GitHub so far.
#[derive(Default)]
struct Shown {
    items: BTreeMap<u64, String>,
    comments: BTreeMap<u64, usize>,
}

impl Shown {
    /// Print what changed on GitHub during day `d`.
    fn report(
        &mut self,
        world: &World,
        d: i64,
        said: Vec<String>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let mut lines: Vec<String> = said;
        let mut digest_lines = Vec::new();
        for (number, title, state, pull) in world.github.items() {
            let digest = !pull && title.contains("weekly digest");
            match self.items.get(&number) {
                None => {
                    if digest {
                        digest_lines.push(format!("#{number} \"{title}\" opened"));
                    } else {
                        let mut text = format!(
                            "{BOT} opened {} #{number}: {title}\n{}",
                            if pull { "pull request" } else { "issue" },
                            indent(&visible(&world.github.body_of(number).unwrap_or_default()))
                        );
                        if pull {
                            let (diff, _) = world.diff(number)?;
                            text.push_str(&format!(
                                "\n    the change ({BOT}:{} against master):\n{}",
                                world.branch_of(number)?,
                                indent(diff.trim_end())
                            ));
                        }
                        lines.push(text);
                    }
                }
                Some(old) if *old != state => {
                    if digest {
                        digest_lines.push(format!("#{number} {state}"));
                    } else {
                        let how = if pull && world.github.merged(number) {
                            "merged".to_owned()
                        } else {
                            state.clone()
                        };
                        lines.push(format!("#{number} \"{title}\" is now {how}"));
                    }
                }
                Some(_) => {}
            }
            let comments = world.github.comments_on(number);
            let seen = self.comments.get(&number).copied().unwrap_or(0);
            for (author, body) in comments.iter().skip(seen) {
                if author != BOT {
                    continue; // people's comments are told as they are made
                }
                if digest {
                    continue; // "superseded by": told in the digest line
                }
                lines.push(format!(
                    "{author} commented on #{number} \"{title}\":\n{}",
                    indent(&visible(body))
                ));
            }
            self.comments.insert(number, comments.len());
            self.items.insert(number, state);
        }
        if lines.is_empty() {
            // A quiet day for maintainers: the weekly digest at most.
            if !digest_lines.is_empty() {
                writeln!(
                    out,
                    "{}  day {d:>3}  weekly digest {}",
                    day(d),
                    digest_lines.join(", ")
                )?;
            }
            return Ok(());
        }
        writeln!(out, "\n{}", rule('─'))?;
        writeln!(out, "{}  day {d}", day(d))?;
        writeln!(out, "{}", rule('─'))?;
        for line in lines {
            writeln!(out, "{line}\n")?;
        }
        if !digest_lines.is_empty() {
            writeln!(out, "weekly digest: {}", digest_lines.join(", "))?;
        }
        Ok(())
    }

    fn issue_text(&self, world: &World, number: u64, out: &mut dyn Write) -> Result<()> {
        let title = world
            .github
            .items()
            .into_iter()
            .find(|i| i.0 == number)
            .map(|i| i.1)
            .unwrap_or_default();
        writeln!(out, "#{number}: {title}")?;
        writeln!(
            out,
            "{}",
            indent(&visible(&world.github.body_of(number).unwrap_or_default()))
        )?;
        Ok(())
    }
}
