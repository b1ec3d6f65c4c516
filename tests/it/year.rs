//! A year of cycles against the GitHub look-alike in its strict mode, on a
//! history of daily evals from the Hydra look-alike: the focused tests'
//! promises held together over a long run, with faults and human moves
//! injected along the year. Each promise has its focused test, which this
//! one does not repeat: rate limits of each shape (forge.rs
//! `every_shape_of_rate_limit_is_waited_out_as_github_asks`, act.rs
//! `a_rate_limit_that_persists_…`), no label refused (`with_pull_access_…`
//! in both), a 422 set aside (`a_pull_request_github_refuses_as_invalid_…`),
//! a body cut to fit (forge.rs `an_oversized_body_is_cut_…`; nothing in this
//! history grows one, so it is not met here), the marker and the label
//! (`a_package_whose_file_carries_the_marker_…`, `a_hands_off_label_…`), a
//! human's close (`a_tracking_issue_closed_by_a_human_…`), a review's
//! command (`commands_in_a_review_…`), a maintainer's push
//! (`a_branch_someone_else_pushed_to_…`). The content budget is tested only
//! here and in the forge's unit test.
//!
//! The cycles run in this process (ingest, then `act::cycle::run_on_clock`)
//! so that the client's waits are simulated: they move a clock that the
//! look-alike reads too, and its counters per minute and per hour are
//! counted on that clock. Nothing sleeps; the year takes about a minute of
//! a debug build on a busy machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hydra_sentinel::act::cycle::{self, Outcome};
use hydra_sentinel::config::Config;
use hydra_sentinel::forge::SimulatedClock;
use hydra_sentinel::hydra::HydraClient;
use hydra_sentinel::ingest::{Ingestor, PassOptions};
use hydra_sentinel::policy::Policy;
use hydra_sentinel::sim::{GitHubFault, GitHubRequest, PlantedFailure, SimSpec};
use hydra_sentinel::store::Store;

use crate::act::{World, git_out};
use crate::helpers::planted;

/// The first eval's day, 2025-11-01, 00:00 UTC.
const START: i64 = 1_761_955_200;
const DAY: i64 = 86_400;
const DAYS: usize = 365;
/// The bot starts acting on the eighth day: a first enable with a backlog.
const FIRST_CYCLE: usize = 8;
/// Packages without maintainers nor a file in the checkout, failing from
/// the first days: the backlog of a first enable.
const ORPHANS: usize = 24;
/// Days between cycles: a cycle every third day keeps the year near a
/// minute in a debug build on a busy machine; evals come daily.
const STEP: usize = 3;
/// When the marker lands in dotted's file (before it fails on day 160),
/// when it is removed, and when the label on frobnicate's issue is.
const MARKER_ADDED: usize = 150;
const MARKER_REMOVED: usize = 200;
const LABEL_REMOVED: usize = 130;
const REPO: &str = "/repos/NixOS/nixpkgs";
const HANDS_OFF: &str = "hydra-sentinel: hands off";
const MARKER: &str = "# hydra-sentinel: do not mark broken\n";
const DOTTED: &str = "pkgs/tools/misc/dotted/default.nix";
const FROBNICATE: &str = "pkgs/tools/misc/frobnicate/default.nix";
const AIOAMQP_ATTR: &str = "python3Packages.aioamqp";
const AIOAMQP: &str = "pkgs/development/python-modules/aioamqp/default.nix";
/// `max_snooze` of the policy: a human's "no" holds at least this long.
const SNOOZE_DAYS: usize = 84;
/// The longest single wait the client may ride out (its default).
const LONGEST_WAIT: Duration = Duration::from_secs(300);

/// The day of the first cycle on or after `day`.
fn cycle_from(day: usize) -> usize {
    FIRST_CYCLE + (day.saturating_sub(FIRST_CYCLE)).div_ceil(STEP) * STEP
}

/// A year of daily evals: the orphans' backlog, hello failing for most of
/// it, umurmur on one platform (already marked), ghidra spreading to a
/// second platform, and later frobnicate, dotted and aioamqp.
fn year_of_history(spec: SimSpec) -> SimSpec {
    let mut failures = vec![
        PlantedFailure {
            until: Some(200),
            ..planted("hello", 2)
        },
        PlantedFailure {
            systems: vec!["aarch64-darwin".into()],
            ..planted("umurmur", 5)
        },
        PlantedFailure {
            systems: vec!["x86_64-linux".into()],
            spreads_to: vec![("aarch64-linux".into(), 60)],
            ..planted("ghidra", 30)
        },
        PlantedFailure {
            systems: vec!["x86_64-darwin".into(), "aarch64-darwin".into()],
            ..planted("frobnicate", 100)
        },
        planted("dotted", 160),
        planted(AIOAMQP_ATTR, 220),
    ];
    failures.extend((0..ORPHANS).map(|i| planted(&format!("orphan-{i:02}"), i % 6)));
    SimSpec {
        evals: DAYS,
        eval_interval: DAY,
        start_time: START,
        planted: failures,
        ..spec
    }
}

/// The world of act.rs over a year, acted on in this process.
struct Year {
    world: World,
    config: Config,
    policy: Policy,
    hydra: HydraClient,
    clock: SimulatedClock,
    runtime: tokio::runtime::Runtime,
    /// Each cycle's report lines, by day.
    lines: BTreeMap<usize, Vec<String>>,
}

impl Year {
    fn new() -> Year {
        // The shipped policy's shape at a quicker pace: a reminder a day
        // before marking, three days after the notice.
        let world = World::with_history(
            year_of_history,
            |policy| {
                policy
                    .replace("remind_before_mark = []", "remind_before_mark = [\"1d\"]")
                    .replace("min_notice = \"1d\"", "min_notice = \"3d\"")
            },
            |_| {},
        );
        // Rechecks of failing builds weekly, not every pass: a daily cycle
        // on a year of history stays cheap.
        let text = std::fs::read_to_string(&world.config).unwrap();
        std::fs::write(
            &world.config,
            text.replace("recheck_after_secs = 0", "recheck_after_secs = 604800"),
        )
        .unwrap();
        let config = Config::load(&world.config).expect("the world's config");
        let policy_file = config.policy_file.clone().expect("a policy file");
        let policy = Policy::parse(
            &std::fs::read_to_string(&policy_file).expect("the world's policy"),
            &policy_file,
        )
        .expect("the world's policy");
        let clock = SimulatedClock::at(START);
        let seen = clock.clone();
        world.github.use_clock(move || seen.now_millis());
        world.github.strict();
        Year {
            world,
            hydra: HydraClient::new(&config.hydra).unwrap(),
            config,
            policy,
            clock,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            lines: BTreeMap::new(),
        }
    }

    fn noon(day: usize) -> i64 {
        START + day as i64 * DAY + 12 * 3600
    }

    /// The cycle of `day`: its evals published, ingested, then acted on at
    /// noon. Returns the waits the client asked for.
    fn cycle(&mut self, day: usize) -> Vec<Duration> {
        self.world.hydra.publish(day + 1);
        let now = Year::noon(day);
        self.clock.advance_to(now);
        let store = Store::open(&self.config.database).unwrap();
        let ingestor = Ingestor::new(&self.config, self.hydra.clone(), store);
        let (_, error) = self.runtime.block_on(ingestor.pass(
            &self.config.jobsets,
            &PassOptions {
                max_evals: None,
                now,
            },
        ));
        if let Some(e) = error {
            panic!(
                "day {day}: ingest failed: {}",
                hydra_sentinel::error_chain(&e)
            );
        }
        let store = Store::open(&self.config.database).unwrap();
        let outcome = cycle::run_on_clock(&self.config, &self.policy, &store, now, &self.clock);
        let report = match outcome {
            Ok(Outcome::Acted(report)) => report,
            Ok(Outcome::DryRun(_)) => panic!("day {day}: a dry run, acting is enabled"),
            Err(e) => panic!(
                "day {day}: the cycle failed: {}\nthe day before: {:#?}",
                hydra_sentinel::error_chain(&e),
                self.lines.get(&(day - 1))
            ),
        };
        assert!(
            report.errors.is_empty(),
            "day {day}: the cycle reported failures: {:#?}\nit did: {:#?}",
            report.errors,
            report.lines
        );
        self.lines.insert(day, report.lines);
        self.clock.take_waits()
    }

    fn said(&self, day: usize, what: &str) -> bool {
        self.lines
            .get(&day)
            .is_some_and(|lines| lines.iter().any(|l| l.contains(what)))
    }

    /// The first day whose report says `what`.
    fn first_said(&self, what: &str) -> Option<usize> {
        self.lines
            .iter()
            .find(|(_, lines)| lines.iter().any(|l| l.contains(what)))
            .map(|(day, _)| *day)
    }

    fn requests(&self) -> Vec<GitHubRequest> {
        self.world.github.requests()
    }

    /// The day of the year of a time on the simulated clock (Unix ms).
    fn day_of(millis: i64) -> i64 {
        (millis / 1000 - START) / DAY
    }
}

/// No two open tracking issues for one package, no two open pull requests
/// from one branch.
fn assert_nothing_open_twice(year: &Year, day: usize) {
    let mut open: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (number, title, state, is_pull) in year.world.github.items() {
        if state != "open" {
            continue;
        }
        let key = if is_pull {
            format!(
                "pull from {}",
                year.world.github.head_of(number).unwrap_or_default()
            )
        } else {
            title
        };
        open.entry(key).or_default().push(number);
    }
    let twice: Vec<_> = open.iter().filter(|(_, n)| n.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "day {day}: opened twice: {twice:?}\nthe cycle did: {:#?}",
        year.lines.get(&day)
    );
}

/// The head of each pull request asked for, and GitHub's answer.
fn pull_creates(year: &Year) -> Vec<(String, u16)> {
    year.world
        .github
        .requests_to("POST", &format!("{REPO}/pulls"))
        .into_iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            (
                body["head"].as_str().unwrap_or_default().to_owned(),
                r.status,
            )
        })
        .collect()
}

#[test]
fn a_year_of_cycles_keeps_every_promise_within_github_s_limits() {
    let started = std::time::Instant::now();
    let mut year = Year::new();
    let github = &year.world.github;
    // Injected on the first enable, met by whichever request comes first:
    // the first listing meets an exhausted quota, the first creates a
    // secondary limit without headers and a 429 without Retry-After, and
    // the first pull request a permanent validation error.
    github.inject(
        "GET",
        &format!("{REPO}/issues"),
        GitHubFault::PrimaryRateLimit {
            reset_in_secs: Some(30),
        },
    );
    github.inject(
        "POST",
        &format!("{REPO}/issues"),
        GitHubFault::SecondaryRateLimitWithoutHeaders,
    );
    github.inject(
        "POST",
        &format!("{REPO}/issues"),
        GitHubFault::TooManyRequests {
            retry_after_secs: None,
        },
    );
    github.inject("POST", &format!("{REPO}/pulls"), GitHubFault::Status(422));

    let mut refused_branch: Option<(String, String)> = None;
    let mut ghidra_branch: Option<(String, String)> = None;
    let mut frobnicate_labelled: Option<(u64, usize)> = None;
    let mut aioamqp_closed: Option<(u64, usize)> = None;
    let mut frobnicate_reviewed: Option<(u64, usize)> = None;
    let mut longest_cycle_wait = (Duration::ZERO, 0);
    for day in (FIRST_CYCLE..DAYS).step_by(STEP) {
        // dotted's file carries the marker before it fails (day 160), and
        // loses it later; frobnicate's label is removed.
        if day == cycle_from(MARKER_ADDED) {
            year.world.upstream_commit("dotted: hands off", |work| {
                edit(&work.join(DOTTED), |text| format!("{MARKER}{text}"))
            });
        }
        if day == cycle_from(MARKER_REMOVED) {
            year.world.upstream_commit("dotted: hands back", |work| {
                edit(&work.join(DOTTED), |text| text.replace(MARKER, ""))
            });
        }
        if day == cycle_from(LABEL_REMOVED) {
            let (issue, _) = frobnicate_labelled.expect("frobnicate was labelled");
            year.world.github.human_unlabels(issue, HANDS_OFF);
        }

        let waits = year.cycle(day);
        let total: Duration = waits.iter().sum();
        if total > longest_cycle_wait.0 {
            longest_cycle_wait = (total, day);
        }
        for wait in &waits {
            assert!(
                *wait <= LONGEST_WAIT,
                "day {day}: a wait of {wait:?}, longer than {LONGEST_WAIT:?}: {waits:?}"
            );
        }
        assert_nothing_open_twice(&year, day);

        // The first pull request met the 422: its branch as it was then.
        if refused_branch.is_none()
            && let Some((head, _)) = pull_creates(&year).first()
        {
            let branch = head.split_once(':').map_or(head.as_str(), |(_, b)| b);
            refused_branch = Some((
                branch.to_owned(),
                git_out(&year.world.fork, &["rev-parse", branch]),
            ));
        }
        // Once ghidra's pull request exists, its maintainer pushes to it
        // (before it spreads to aarch64-linux on day 60).
        if ghidra_branch.is_none()
            && let Some(branch) = year
                .world
                .fork_branches()
                .into_iter()
                .find(|b| b.contains("/maintainer/roblabla/"))
        {
            assert!(day < 60, "day {day}: ghidra was marked only now");
            let theirs = year.world.maintainer_pushes(&branch);
            ghidra_branch = Some((branch, theirs));
        }
        // A committer labels frobnicate's tracking issue "hands off" the day
        // it is opened (removed later, above).
        if frobnicate_labelled.is_none()
            && let Some(issue) = year.world.issue_of("frobnicate")
        {
            year.world.github.human_labels(issue, HANDS_OFF);
            frobnicate_labelled = Some((issue, day));
        }
        // A maintainer closes aioamqp's tracking issue: a "no".
        if aioamqp_closed.is_none()
            && let Some(issue) = year.world.issue_of(AIOAMQP_ATTR)
        {
            year.world.github.human_closes(issue, false);
            aioamqp_closed = Some((issue, day));
        }
        // A committer answers frobnicate's pull request in a review.
        if frobnicate_reviewed.is_none()
            && let Some(pull) = year.world.pulls().into_iter().find(|p| {
                p.2 == "open"
                    && year
                        .world
                        .github
                        .body_of(p.0)
                        .is_some_and(|b| b.contains("### `frobnicate`"))
            })
        {
            year.world.github.human_reviews(
                pull.0,
                "carol",
                "Upstream has a fix, give it time.\n\n@hydra-sentinel snooze 30d",
            );
            frobnicate_reviewed = Some((pull.0, day));
        }
        if let Some((_, closed)) = aioamqp_closed
            && day <= closed + SNOOZE_DAYS
        {
            assert!(
                year.world.branches_marking(AIOAMQP).is_empty(),
                "day {day}: aioamqp is marked though a human closed its issue on day {closed}"
            );
        }
        if day < cycle_from(LABEL_REMOVED) {
            assert!(
                year.world.branches_marking(FROBNICATE).is_empty(),
                "day {day}: frobnicate is marked while its issue carries {HANDS_OFF:?}"
            );
        }
        if (cycle_from(MARKER_ADDED)..cycle_from(MARKER_REMOVED)).contains(&day) {
            assert!(
                year.world.issue_of("dotted").is_none(),
                "day {day}: dotted's file carries the marker, yet it was told: {:#?}",
                (cycle_from(MARKER_ADDED)..=day)
                    .map(|d| (d, year.lines.get(&d)))
                    .collect::<Vec<_>>()
            );
        }
    }
    let elapsed = started.elapsed();
    let requests = year.requests();

    // Rate limits: each shape met once, ridden out with bounded waits.
    let answered = |status: u16| -> Vec<String> {
        requests
            .iter()
            .filter(|r| r.status == status)
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    };
    assert_eq!(
        answered(403).len(),
        2,
        "the primary limit and the secondary one, and no other 403 (no label refused): {:?}",
        answered(403)
    );
    assert_eq!(answered(429).len(), 1, "{:?}", answered(429));
    assert!(
        longest_cycle_wait.0 <= Duration::from_secs(15 * 60),
        "day {}: the cycle waited {:?} in all",
        longest_cycle_wait.1,
        longest_cycle_wait.0
    );
    let labels: Vec<&GitHubRequest> = requests
        .iter()
        .filter(|r| r.path().ends_with("/labels") || r.body.contains("\"labels\":[\""))
        .collect();
    assert!(
        labels.is_empty(),
        "with pull access no label is ever sent: {labels:?}"
    );

    // The content budget ([github] writes_per_minute, writes_per_hour: 20
    // and 150 by default), by the look-alike's own counters.
    let (per_minute, minute_end) = year
        .world
        .github
        .most_writes_within(Duration::from_secs(60));
    let (per_hour, hour_end) = year
        .world
        .github
        .most_writes_within(Duration::from_secs(3600));
    assert!(
        per_minute <= 20,
        "{per_minute} writes within a minute on day {}",
        Year::day_of(minute_end)
    );
    assert!(
        per_hour <= 150,
        "{per_hour} writes within an hour on day {}",
        Year::day_of(hour_end)
    );
    assert!(
        per_hour > 20,
        "the first enable's backlog should have tested the per-minute budget: the busiest hour had {per_hour} writes"
    );

    // The permanent 422: asked once, its branch never pushed again.
    let creates = pull_creates(&year);
    let (branch, pushed) = refused_branch.expect("a pull request was opened");
    let asked: Vec<&(String, u16)> = creates
        .iter()
        .filter(|(h, _)| h.ends_with(&branch))
        .collect();
    assert_eq!(
        asked,
        [&(format!("sentinel-bot:{branch}"), 422)],
        "the refused pull request is asked for once: {creates:?}"
    );
    assert_eq!(
        git_out(&year.world.fork, &["rev-parse", &branch]),
        pushed,
        "its branch {branch} was pushed again"
    );

    // Never force-pushed over the maintainer's commit.
    let (branch, theirs) = ghidra_branch.expect("ghidra's pull request");
    assert_eq!(
        git_out(&year.world.fork, &["rev-parse", &branch]),
        theirs,
        "ghidra's branch {branch} was force-pushed over its maintainer's commit"
    );
    let ghidra_pull = year
        .world
        .pulls()
        .into_iter()
        .find(|p| {
            year.world
                .github
                .head_of(p.0)
                .is_some_and(|h| h.ends_with(&branch))
        })
        .expect("ghidra's pull request")
        .0;
    let told: Vec<(String, String)> = year
        .world
        .github
        .comments_on(ghidra_pull)
        .into_iter()
        .filter(|(_, body)| body.contains("hydra-sentinel:hands-off-branch"))
        .collect();
    assert_eq!(
        told.len(),
        1,
        "when ghidra spread to aarch64-linux (day 60), its pull request said once that the branch is its maintainer's: {told:?}"
    );

    // The label, added and removed.
    let (frobnicate, labelled) = frobnicate_labelled.expect("frobnicate was told");
    assert!(
        year.said(
            labelled + STEP,
            &format!("frobnicate: the label \"{HANDS_OFF}\" is on #{frobnicate}")
        ),
        "day {}: {:#?}",
        labelled + STEP,
        year.lines.get(&(labelled + STEP))
    );
    assert!(
        year.said(
            cycle_from(LABEL_REMOVED),
            &format!("frobnicate: the label \"{HANDS_OFF}\" was removed")
        ),
        "day {}: {:#?}",
        cycle_from(LABEL_REMOVED),
        year.lines.get(&cycle_from(LABEL_REMOVED))
    );
    assert_eq!(
        year.world.branches_marking(FROBNICATE).len(),
        1,
        "frobnicate is marked once the label is gone"
    );

    // The marker, added and removed.
    assert_eq!(
        year.first_said(&format!("dotted: {DOTTED} carries the opt-out marker")),
        Some(cycle_from(160)),
        "dotted fails from day 160"
    );
    assert_eq!(
        year.first_said("dotted: the opt-out marker is gone"),
        Some(cycle_from(MARKER_REMOVED))
    );
    assert!(
        year.world.issue_of("dotted").is_some(),
        "told after day 200"
    );

    // A human's close is a no; our own close is not.
    let (aioamqp, closed) = aioamqp_closed.expect("aioamqp was told");
    let seen = year.first_said(&format!(
        "{AIOAMQP_ATTR}: tracking issue #{aioamqp} was closed by a human"
    ));
    assert!(
        seen.is_some_and(|d| d > closed && d <= closed + 2 * STEP),
        "closed on day {closed}, its reminder (due two days after the notice) finds it closed: {seen:?}"
    );
    let heard: Vec<usize> = year
        .lines
        .iter()
        .filter(|(_, lines)| {
            lines.iter().any(|l| {
                l.starts_with(&format!(
                    "{AIOAMQP_ATTR}: tracking issue #{aioamqp} was closed by a human;"
                ))
            })
        })
        .map(|(day, _)| *day)
        .collect();
    assert_eq!(
        heard.len(),
        1,
        "the close is heard once, not again when the ladder resumes after the snooze: {heard:?}"
    );
    let resumed = year.first_said(&format!(
        "remind {AIOAMQP_ATTR}: tracking issue #{aioamqp} was closed by a human (heard before)"
    ));
    assert!(
        resumed.is_some_and(|d| d > closed + SNOOZE_DAYS),
        "closed on day {closed}, its reminder falls due after the snooze: {resumed:?}"
    );
    assert!(
        !year
            .world
            .github
            .comments_on(aioamqp)
            .iter()
            .any(|(author, _)| author == "sentinel-bot"),
        "nothing is posted on an issue a human closed"
    );
    assert_eq!(
        year.world.branches_marking(AIOAMQP).len(),
        1,
        "the mark follows the resumed ladder"
    );
    let hello = year.world.issue_of("hello").expect("hello was told");
    let recovered = year.first_said(&format!("closed tracking issue #{hello} of hello"));
    assert!(
        recovered.is_some_and(|d| d >= 200),
        "hello builds again from day 200: its issue is closed by us: {recovered:?}"
    );
    assert_eq!(
        year.first_said(&format!(
            "hello: tracking issue #{hello} was closed by a human"
        )),
        None,
        "our own close of hello's issue is never read as a human's"
    );

    // A command in a pull request review, obeyed and answered once.
    let (frobnicate_pull, reviewed) = frobnicate_reviewed.expect("frobnicate's pull request");
    let replies: Vec<String> = year
        .world
        .github
        .comments_on(frobnicate_pull)
        .into_iter()
        .filter(|(author, body)| author == "sentinel-bot" && body.starts_with("@carol understood"))
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        replies.len(),
        1,
        "the review's command (day {reviewed}) is answered once: {replies:?}"
    );

    // Each package's tracking issue was opened once, each week's digest once.
    let mut opened: BTreeMap<String, usize> = BTreeMap::new();
    for (_, title, _, is_pull) in year.world.github.items() {
        if !is_pull {
            *opened.entry(title).or_default() += 1;
        }
    }
    let twice: Vec<_> = opened.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "opened more than once: {twice:?}");
    let digests = opened
        .keys()
        .filter(|t| t.contains("weekly digest"))
        .count();
    assert!((51..=53).contains(&digests), "one digest a week: {digests}");
    eprintln!(
        "a year of {} cycles in {elapsed:?}: {} requests, {} writes, busiest minute {per_minute}, busiest hour {per_hour}, quota used {}",
        year.lines.len(),
        requests.len(),
        year.world.github.writes(),
        year.world.github.quota_used()
    );
}

fn edit(file: &Path, change: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(file).unwrap();
    std::fs::write(file, change(text)).unwrap();
}
