//! Acting on the plan: GitHub issues, comments and pull requests, exactly once.
//!
//! Owns: carrying out a [`Plan`] through a [`Forge`] and a [`Publisher`]
//! (early warnings in [`warn`]),
//! reading back what humans did (merges, closes, commands in comments), and
//! the ledger bookkeeping that makes all of it safe to repeat.
//!
//! Must never: decide what to do (the policy engine does), act without
//! writing the intent to the ledger first, create twice what one crash may
//! have created once, or obey anyone but a package's maintainers and the
//! configured committers.
//!
//! Exactly once, across crashes: before every outward action an *intent* is
//! written; after it, the *result*. A cycle starts by reconciling intents
//! left without a result (the process died, or GitHub answered 5xx to a
//! create): the bot looks for its own work — tracking issues and comments by
//! their hidden markers, pull requests by their deterministic branch — and
//! records what it finds, or a failure so that the engine plans it again.
//! Nothing is ever created blindly a second time.
//!
//! The rooms, in the order a cycle ([`cycle`]) walks through them:
//! [`reconcile`] settles what an earlier run left unfinished; [`follow`]
//! reads back what humans did to the bot's issues and pull requests, and
//! [`commands`] obeys what they said in comments ([`opt_outs`]: markers and
//! labels); then [`execute`] carries out the plan, opening and updating pull
//! requests in [`pulls`] (branches named by [`branch`], edits made by
//! [`publish`]), early warnings in [`warn`], refusals settled by
//! [`refusals`]; every text comes from [`render`]. A dry run only describes
//! ([`dry_run`]). This file keeps what they share: the errors, the settings,
//! the report, and the [`Actor`] with its small helpers.

pub mod branch;
pub mod commands;
pub mod cycle;
pub mod dry_run;
mod execute;
mod follow;
pub mod opt_outs;
pub mod publish;
mod pulls;
mod reconcile;
mod refusals;
pub mod render;
pub mod warn;

use crate::forge::{Forge, ForgeError, Issue, PullRequest, State};
use crate::history::StatusClass;
use crate::policy::{Facts, OptOutKind, Policy, RecordState};
use crate::store::{ActionResult, NewOptOut, Store, StoreError};

pub use branch::branch_for;
pub use dry_run::describe;
pub use publish::{Edit, GitPublisher, PackageFile, Published, Publisher, Survey};

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Acting (not a dry run) needs a `[github]` section to act on.
    #[error("cannot act: acting needs a [github] section")]
    NoGitHub,
    /// Acting needs the `[nixpkgs]` checkout: edits are made there, and
    /// maintainers are read from it.
    #[error("cannot act: acting needs a [nixpkgs] checkout")]
    NoCheckout,
    #[error("cannot act: cannot start a runtime")]
    Runtime(#[source] std::io::Error),
    /// Another process is acting (it holds the actor lease).
    #[error(
        "another hydra-sentinel is acting ({holder}) until {}; not acting at the same time",
        crate::format::time(*until)
    )]
    Busy { holder: String, until: i64 },
    /// The nixpkgs checkout could not be read: without it no maintainer can
    /// be mentioned, so nothing is sent.
    #[error("cannot read the nixpkgs checkout: {0}")]
    Checkout(#[from] crate::nixpkgs::NixpkgsError),
    /// GitHub kept rate-limiting after the forge's bounded backoff: the rest
    /// of the cycle would meet the same limit, so it ends here.
    #[error("GitHub's rate limit ended the cycle: {0}")]
    RateLimited(String),
    /// GitHub refused a write for a reason every write shares (the token's
    /// rights): the rest of the cycle would be refused alike, so it ends
    /// here, the action backs off, and `/healthz` says why.
    #[error(
        "GitHub refuses this token's writes, so the cycle stopped: {0}; `hydra-sentinel doctor` says what the token lacks"
    )]
    Refused(String),
}

/// Validated settings of the act stage.
#[derive(Debug, Clone)]
pub struct ActSettings {
    /// `owner/name` of the repository acted on.
    pub repo: String,
    pub base_branch: String,
    /// Owner of the fork pull requests come from.
    pub fork_owner: String,
    /// Label on everything the bot opens, where the token's role lets it
    /// stick (triage or more); never how the bot finds its own work.
    pub label: String,
    /// How people address the bot in comments, e.g. `@hydra-sentinel`.
    pub mention: String,
    /// People besides a package's maintainers whose commands count.
    pub committers: Vec<String>,
}

/// What one act cycle did, line by line, for the log and the CLI.
#[derive(Debug, Clone, Default)]
pub struct ActReport {
    pub lines: Vec<String>,
    pub errors: Vec<String>,
}

impl ActReport {
    fn did(&mut self, line: String) {
        tracing::info!("{line}");
        self.lines.push(line);
    }

    fn failed(&mut self, line: String) {
        tracing::warn!("{line}");
        self.errors.push(line);
    }
}

/// The attribute a tracking issue is about, from its marker.
fn tracked_attr(issue: &Issue) -> Option<String> {
    let start =
        issue.body.find("<!-- hydra-sentinel:notify:")? + "<!-- hydra-sentinel:notify:".len();
    let end = issue.body[start..].find(" -->")?;
    Some(issue.body[start..start + end].to_owned())
}

pub struct Actor<'a, F: Forge> {
    pub forge: &'a F,
    pub publisher: &'a dyn Publisher,
    pub store: &'a Store,
    pub settings: &'a ActSettings,
    pub policy: &'a Policy,
    /// Called after each outward step: feeds the service's watchdog.
    pub progress: &'a (dyn Fn() + Sync),
}

impl<F: Forge> Actor<'_, F> {
    fn issue_url(&self, number: u64) -> String {
        format!("https://github.com/{}/issues/{number}", self.settings.repo)
    }

    fn head(&self, branch: &str) -> String {
        format!("{}:{branch}", self.settings.fork_owner)
    }

    /// Before planning: settle intents left by an earlier run, and read back
    /// what humans did since (merges, closes, commands, recoveries).
    pub async fn prepare(
        &self,
        facts: &Facts,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let bot = self.forge.whoami().await?;
        let items = self.forge.items_by(&bot).await?;
        let own: Vec<Issue> = items
            .iter()
            .filter(|i| !i.is_pull_request)
            .cloned()
            .collect();
        self.reconcile(&bot, &own, now, report).await?;
        // Labels humans put on our issues and pull requests (listed above).
        opt_outs::follow_labels(
            self.store,
            &self.policy.opt_out.label,
            &items,
            &self.store.ledger()?,
            now,
            report,
        )?;
        self.follow_pull_requests(&bot, facts, now, report).await?;
        self.follow_tracking_issues(&bot, &own, facts, now, report)
            .await?;
        Ok(())
    }

    /// The package's tracking issue: the open one, else the newest.
    fn tracking_issue<'i>(&self, own: &'i [Issue], attr: &str) -> Option<&'i Issue> {
        let mut matching: Vec<&Issue> = own
            .iter()
            .filter(|i| render::has_marker(&i.body, "notify", attr))
            .collect();
        matching.sort_by_key(|i| (i.state != State::Open, std::cmp::Reverse(i.number)));
        matching.first().copied()
    }

    /// A human said "no" (closed our tracking issue or pull request): the
    /// package is left alone for as long as any snooze may last.
    fn snooze_after_a_no(&self, attr: &str, now: i64, note: String) -> Result<(), StoreError> {
        self.store.record_opt_out(&NewOptOut {
            attr: attr.to_owned(),
            kind: OptOutKind::Snooze,
            recorded_at: now,
            until: Some(now + self.policy.opt_out.max_snooze.secs()),
            by: None,
            note,
        })?;
        Ok(())
    }

    /// Whether the bot already left a comment with this marker on `number`.
    async fn commented(
        &self,
        bot: &str,
        number: u64,
        kind: &str,
        key: &str,
    ) -> Result<bool, ActError> {
        Ok(self
            .forge
            .comments(number)
            .await?
            .iter()
            .any(|c| c.author.eq_ignore_ascii_case(bot) && render::has_marker(&c.body, kind, key)))
    }

    /// Comment (once, by marker) and close an issue.
    async fn comment_and_close_issue(
        &self,
        bot: &str,
        number: u64,
        kind: &str,
        key: &str,
        text: &str,
    ) -> Result<(), ActError> {
        if !self.commented(bot, number, kind, key).await? {
            self.forge.comment(number, text).await?;
        }
        self.forge
            .edit_issue(number, None, Some(State::Closed))
            .await?;
        (self.progress)();
        Ok(())
    }
}

/// Attributes with a job failing now in the jobsets acted on, and those the
/// ledger speaks of (open issues and pull requests): whose maintainers are
/// worth resolving.
pub fn failing_attrs(facts: &Facts, policy: &Policy) -> Vec<String> {
    let mut attrs: Vec<String> = facts
        .jobsets
        .iter()
        .filter(|j| policy.act_on.contains(&j.jobset))
        .flat_map(|j| j.jobs.iter())
        .filter(|job| {
            job.runs
                .last()
                .is_some_and(|r| r.class() == StatusClass::Failing)
        })
        // On a pre-merge branch, victims too: their warnings mention them.
        .chain(
            facts
                .jobsets
                .iter()
                .filter(|j| policy.early_warning.is_branch(&j.jobset))
                .flat_map(|j| j.jobs.iter())
                .filter(|job| {
                    job.runs.last().is_some_and(|r| {
                        matches!(
                            r.class(),
                            StatusClass::Failing | StatusClass::DependencyFailed
                        )
                    })
                }),
        )
        .map(|job| job.attr.clone())
        .collect();
    attrs.sort();
    attrs.dedup();
    attrs
}

fn done(at: i64, pr: Option<u64>, issue: Option<u64>) -> ActionResult {
    ActionResult {
        state: RecordState::Done,
        at,
        pr,
        issue,
        error: None,
        refused: None,
    }
}

fn failed(at: i64, error: &str) -> ActionResult {
    ActionResult {
        state: RecordState::Failed,
        at,
        pr: None,
        issue: None,
        error: Some(error.to_owned()),
        refused: None,
    }
}

/// A record of pull request `pr`, in `state`.
fn on_pull(state: RecordState, at: i64, pr: u64) -> ActionResult {
    ActionResult {
        state,
        at,
        pr: Some(pr),
        issue: None,
        error: None,
        refused: None,
    }
}

fn pull_state(pull: &PullRequest) -> RecordState {
    match (pull.state, pull.merged) {
        (State::Open, _) => RecordState::Open,
        (State::Closed, true) => RecordState::Merged,
        (State::Closed, false) => RecordState::Closed,
    }
}
