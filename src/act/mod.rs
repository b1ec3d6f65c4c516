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

pub mod commands;
pub mod cycle;
pub mod opt_outs;
pub mod publish;
mod refusals;
pub mod render;
pub mod warn;

use std::collections::BTreeMap;

use crate::forge::{
    Failure, Forge, ForgeError, Issue, NewIssue, NewPull, PullRequest, Refusal, State,
};
use crate::history::StatusClass;
use crate::policy::engine::builds_again;
use crate::policy::{
    Action, ActionKind, ActionRecord, Facts, OptOutKind, Plan, Policy, RecordState,
};
use crate::store::{ActionResult, NewAction, NewOptOut, Store, StoreError};

pub use publish::{Edit, GitPublisher, PackageFile, Published, Publisher, Survey};

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot act: {0}")]
    Setup(String),
    /// Another process is acting (it holds the actor lease).
    #[error(
        "another hydra-sentinel is acting ({holder}) until {}; not acting at the same time",
        crate::report::time(*until)
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

/// The branch of a pull request: deterministic, so a crash or a lost
/// database finds the same branch again. The policy's batch key names it
/// (`mark-broken/maintainer/alice/1`); without one, the kind and attribute.
pub fn branch_for(
    kind: ActionKind,
    batch: Option<&str>,
    members: &[(&str, bool, &[String])],
) -> String {
    let what = match kind {
        ActionKind::Retire => "retire",
        _ => "mark-broken",
    };
    let first = members.first().map_or("unnamed", |m| m.0);
    let key = match batch {
        Some(batch) => batch.to_owned(),
        None => format!("{what}/{first}"),
    };
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_./".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    // git refuses `..` and parts that start or end with a dot.
    let mut clean = clean;
    while clean.contains("..") {
        clean = clean.replace("..", ".");
    }
    let parts: Vec<&str> = clean
        .split('/')
        .map(|p| p.trim_matches('.'))
        .filter(|p| !p.is_empty())
        .collect();
    // What the pull request proposes, hashed: the same packages and
    // platforms give the same branch (a retry finds it), different ones
    // never reuse a branch whose pull request proposes something else.
    let mut content: Vec<String> = members
        .iter()
        .map(|(attr, all, systems)| {
            format!(
                "{attr}:{}",
                if *all {
                    "all".to_owned()
                } else {
                    systems.join(",")
                }
            )
        })
        .collect();
    content.sort();
    format!(
        "hydra-sentinel/{}-{:08x}",
        parts.join("/"),
        fnv1a(content.join(";").as_bytes()) as u32
    )
}

/// The branch of a batch, planned (actions) or recorded (ledger records
/// keep what the name is made of): attribute, all platforms, systems.
fn branch_of<'a>(
    kind: ActionKind,
    batch: Option<&str>,
    members: impl Iterator<Item = (&'a Option<String>, bool, &'a Vec<String>)>,
) -> String {
    let members: Vec<(&str, bool, &[String])> = members
        .map(|(attr, all, systems)| (attr.as_deref().unwrap_or_default(), all, systems.as_slice()))
        .collect();
    branch_for(kind, batch, &members)
}

/// FNV-1a: a small stable hash (the standard library's is seeded per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
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

    async fn reconcile(
        &self,
        bot: &str,
        own: &[Issue],
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let ledger = self.store.ledger()?;
        let known_prs: Vec<u64> = ledger
            .actions
            .iter()
            .filter(|r| r.state != RecordState::Intent)
            .filter_map(|r| r.pr)
            .collect();
        for record in ledger
            .actions
            .iter()
            .filter(|r| r.state == RecordState::Intent)
        {
            let attr = record.attr.as_deref().unwrap_or_default();
            let open_issue = self
                .tracking_issue(own, attr)
                .filter(|i| i.state == State::Open);
            let found: Option<ActionResult> = match record.kind {
                ActionKind::Hold => Some(done(now, None, None)),
                // Only an open issue proves a notice: a closed one belongs
                // to an earlier failure.
                ActionKind::Notify => open_issue.map(|i| done(now, None, Some(i.number))),
                ActionKind::Remind | ActionKind::Escalate => match open_issue {
                    Some(issue) => {
                        let kind = match record.kind {
                            ActionKind::Remind => {
                                format!("remind-{}", record.step.as_deref().unwrap_or("remind"))
                            }
                            _ => "escalate".to_owned(),
                        };
                        self.commented(bot, issue.number, &kind, attr)
                            .await?
                            .then(|| done(now, None, Some(issue.number)))
                    }
                    None => None,
                },
                // A notice is found by its marker; an edit left without a
                // result is planned again (an edit repeats harmlessly).
                ActionKind::Warn => match record.step.as_deref() {
                    Some(crate::policy::early_warning::NOTICE) => {
                        let branch = record.batch.as_deref().unwrap_or_default();
                        self.find_warning(bot, own, attr, branch, None)
                            .await?
                            .map(|place| done(now, None, Some(place.issue())))
                    }
                    _ => None,
                },
                ActionKind::MarkBroken | ActionKind::Retire => {
                    let siblings: Vec<&ActionRecord> = ledger
                        .actions
                        .iter()
                        .filter(|r| {
                            r.kind == record.kind
                                && r.batch == record.batch
                                && r.planned_at == record.planned_at
                        })
                        .collect();
                    let branch = branch_of(
                        record.kind,
                        record.batch.as_deref(),
                        siblings
                            .iter()
                            .map(|r| (&r.attr, r.all_platforms, &r.systems)),
                    );
                    // A pull request from an earlier, recorded attempt is not this one's.
                    self.forge
                        .pull_by_head(&self.head(&branch))
                        .await?
                        .filter(|pull| {
                            pull.state == State::Open || !known_prs.contains(&pull.number)
                        })
                        .map(|pull| ActionResult {
                            state: pull_state(&pull),
                            at: now,
                            pr: Some(pull.number),
                            issue: None,
                            error: None,
                            refused: None,
                        })
                }
                ActionKind::ClosePr => match record.pr {
                    Some(number) => {
                        let pull = self.forge.pull(number).await?;
                        let told = self.commented(bot, number, "close", attr).await?;
                        (pull.state == State::Closed || told).then(|| done(now, Some(number), None))
                    }
                    None => None,
                },
            };
            let result = found.unwrap_or(ActionResult {
                state: RecordState::Failed,
                at: now,
                pr: None,
                issue: None,
                error: Some(
                    "no trace of it on GitHub after an interruption; it will be planned again"
                        .into(),
                ),
                refused: None,
            });
            report.did(format!(
                "reconciled {} {}: {}",
                record.kind,
                attr,
                result.state.as_str()
            ));
            self.store.record_result(record.id, &result)?;
        }
        Ok(())
    }

    async fn follow_pull_requests(
        &self,
        bot: &str,
        facts: &Facts,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let ledger = self.store.ledger()?;
        let mut pulls: BTreeMap<u64, Vec<&ActionRecord>> = BTreeMap::new();
        for record in ledger
            .actions
            .iter()
            .filter(|r| r.state == RecordState::Open)
        {
            if let Some(pr) = record.pr {
                pulls.entry(pr).or_default().push(record);
            }
        }
        for (number, records) in pulls {
            let pull = match self.forge.pull(number).await {
                Ok(pull) => pull,
                Err(ForgeError::Status { status: 404, .. }) => {
                    for record in &records {
                        self.store.record_result(
                            record.id,
                            &failed(now, "the pull request is gone from GitHub"),
                        )?;
                    }
                    report.failed(format!("pull request #{number} is gone from GitHub"));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            (self.progress)();
            let state = pull_state(&pull);
            if state != RecordState::Open {
                // Closed by us because the packages build again is no human "no".
                let by_us = ledger.actions.iter().any(|r| {
                    r.kind == ActionKind::ClosePr
                        && r.pr == Some(number)
                        && r.state == RecordState::Done
                });
                for record in &records {
                    self.store.record_result(
                        record.id,
                        &ActionResult {
                            state,
                            at: now,
                            pr: Some(number),
                            issue: None,
                            error: None,
                            refused: None,
                        },
                    )?;
                    if state == RecordState::Closed
                        && !by_us
                        && let Some(attr) = &record.attr
                    {
                        self.store.record_opt_out(&NewOptOut {
                            attr: attr.clone(),
                            kind: OptOutKind::Snooze,
                            recorded_at: now,
                            until: Some(now + self.policy.opt_out.max_snooze.secs()),
                            by: None,
                            note: format!("pull request #{number} closed without merging"),
                        })?;
                    }
                }
                report.did(match (state, by_us) {
                    (RecordState::Merged, _) => format!("pull request #{number} was merged"),
                    (_, true) => format!("pull request #{number} is closed (its packages build again)"),
                    _ => format!("pull request #{number} was closed by a human; its packages are left alone as the policy says"),
                });
                continue;
            }
            let attrs: Vec<String> = records.iter().filter_map(|r| r.attr.clone()).collect();
            self.handle_commands(bot, number, true, &attrs, facts, now, report)
                .await?;
        }
        Ok(())
    }

    async fn follow_tracking_issues(
        &self,
        bot: &str,
        own: &[Issue],
        facts: &Facts,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        for issue in own.iter().filter(|i| i.state == State::Open) {
            let Some(attr) = tracked_attr(issue) else {
                continue;
            };
            if builds_again(self.policy, facts, &attr, now) {
                self.comment_and_close_issue(
                    bot,
                    issue.number,
                    "recovered",
                    &attr,
                    &render::issue_recovered_comment(&attr),
                )
                .await?;
                report.did(format!(
                    "closed tracking issue #{} of {attr}: it builds again",
                    issue.number
                ));
                continue;
            }
            self.handle_commands(
                bot,
                issue.number,
                false,
                std::slice::from_ref(&attr),
                facts,
                now,
                report,
            )
            .await?;
        }
        Ok(())
    }

    /// Obey (or decline) the commands in the comments of issue or PR
    /// `number` (for a `pull` request, in its reviews and review comments
    /// too).
    #[allow(clippy::too_many_arguments)]
    async fn handle_commands(
        &self,
        bot: &str,
        number: u64,
        pull: bool,
        attrs: &[String],
        facts: &Facts,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        // On a pull request, a review or a comment on a line of the diff is
        // where a maintainer answers us just as well.
        let mut said = self.forge.comments(number).await?;
        if pull {
            said.extend(self.forge.review_comments(number).await?);
        }
        for comment in said {
            if comment.author.eq_ignore_ascii_case(bot) || self.store.command_handled(comment.id)? {
                continue;
            }
            let Some(parsed) = commands::parse(&comment.body, &self.settings.mention) else {
                continue;
            };
            let committer = self
                .settings
                .committers
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&comment.author));
            // The packages this author may speak for: all of them for a
            // committer, else those they maintain.
            let theirs: Vec<&String> = attrs
                .iter()
                .filter(|a| {
                    committer
                        || commands::may_command(
                            &comment.author,
                            facts.maintainers.get(*a).map_or(&[][..], Vec::as_slice),
                            &[],
                            bot,
                        )
                })
                .collect();
            let unknown = attrs.iter().all(|a| !facts.maintainers.contains_key(a));
            if theirs.is_empty() && unknown && parsed.is_ok() {
                // Maintainers could not be resolved this cycle: neither obey
                // nor decline; look again next cycle.
                continue;
            }
            let (reply, accepted) = match parsed {
                Err(help) => (help, false),
                Ok(_) if theirs.is_empty() => (
                    format!(
                        "only the maintainers of {} and nixpkgs committers can give me commands; ignoring this one.",
                        attrs
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    false,
                ),
                Ok(command) => {
                    let max = self.policy.opt_out.max_snooze.secs();
                    let (span, what) = match command {
                        commands::Command::Snooze(p) => (p.secs().min(max), "snooze"),
                        commands::Command::NotBroken => (max, "not-broken"),
                    };
                    let until = now + span;
                    for attr in &theirs {
                        self.store.record_opt_out(&NewOptOut {
                            attr: (*attr).clone(),
                            kind: OptOutKind::Snooze,
                            recorded_at: now,
                            until: Some(until),
                            by: Some(comment.author.clone()),
                            note: format!("{what} in a comment on #{number}"),
                        })?;
                    }
                    let names = theirs
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    (
                        format!(
                            "understood: I leave {names} alone until {}.",
                            crate::report::time(until).get(..10).unwrap_or_default()
                        ),
                        true,
                    )
                }
            };
            // Remember first: a crash after replying must not reply twice;
            // a lost reply is the lesser evil.
            self.store.record_command(
                comment.id,
                number,
                &comment.author,
                &comment.body,
                accepted,
                now,
            )?;
            let replied = self
                .forge
                .comment(number, &render::command_reply(&comment.author, &reply))
                .await;
            match replied {
                // A maintainer locked the conversation after speaking: the
                // command holds, the reply cannot be posted.
                Err(e) if e.failure() == Failure::Refused(Refusal::Locked) => report.did(format!(
                    "#{number} is locked: the answer to {}'s command is not posted",
                    comment.author
                )),
                replied => {
                    replied?;
                }
            }
            (self.progress)();
            report.did(format!(
                "#{number}: {} command from {}",
                if accepted { "obeyed" } else { "declined" },
                comment.author
            ));
        }
        Ok(())
    }

    /// Carry out the plan.
    pub async fn execute(
        &self,
        plan: &Plan,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let bot = self.forge.whoami().await?;
        let mut own = self.forge.issues_by(&bot).await?;
        let mut prs: BTreeMap<String, Vec<&Action>> = BTreeMap::new();
        let recovered_attrs: Vec<&str> = plan
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::ClosePr)
            .filter_map(|a| a.attr.as_deref())
            .collect();
        let ledger = self.store.ledger()?;
        for action in &plan.actions {
            let attr = action.attr.clone().unwrap_or_default();
            match action.kind {
                ActionKind::Hold => {
                    // One record per breakage: while it lasts, cycles only say so.
                    let recorded = ledger
                        .actions
                        .iter()
                        .any(|r| r.kind == ActionKind::Hold && r.step == action.step);
                    if !recorded {
                        let id = self
                            .store
                            .record_intent(&NewAction::from_action(action, vec![]), now)?;
                        self.store.record_result(id, &done(now, None, None))?;
                    }
                    report.did(format!("hold: {}", action.reason));
                }
                ActionKind::Notify | ActionKind::Remind | ActionKind::Escalate => {
                    let pinged = if action.kind == ActionKind::Escalate {
                        action.evidence.escalate_to.clone()
                    } else {
                        action.evidence.maintainers.clone()
                    };
                    let id = self
                        .store
                        .record_intent(&NewAction::from_action(action, pinged), now)?;
                    match self.tell(&bot, action, &attr, &mut own).await {
                        Ok(Told::In(issue)) => {
                            self.store
                                .record_result(id, &done(now, None, Some(issue)))?;
                            report.did(format!("{} {attr} in #{issue}", action.kind));
                        }
                        Ok(Told::ClosedByHuman(issue)) => {
                            self.store.record_result(
                                id,
                                &ActionResult {
                                    state: RecordState::Done,
                                    at: now,
                                    pr: None,
                                    issue: Some(issue),
                                    error: Some(
                                        "the tracking issue was closed by a human; not reopening"
                                            .into(),
                                    ),
                                    refused: None,
                                },
                            )?;
                            self.store.record_opt_out(&NewOptOut {
                                attr: attr.clone(),
                                kind: OptOutKind::Snooze,
                                recorded_at: now,
                                until: Some(now + self.policy.opt_out.max_snooze.secs()),
                                by: None,
                                note: format!("tracking issue #{issue} closed by a human"),
                            })?;
                            report.did(format!("{attr}: tracking issue #{issue} was closed by a human; leaving it alone"));
                        }
                        Err(e) => self.settle_failure(
                            id,
                            &e,
                            now,
                            report,
                            &format!("{} {attr}", action.kind),
                        )?,
                    }
                    (self.progress)();
                }
                ActionKind::Warn => {
                    self.warn(&bot, action, &mut own, &ledger, now, report)
                        .await?;
                }
                ActionKind::MarkBroken | ActionKind::Retire => {
                    let key = action
                        .batch
                        .clone()
                        .unwrap_or_else(|| format!("{}/{attr}", action.kind));
                    prs.entry(key).or_default().push(action);
                }
                ActionKind::ClosePr => {
                    let Some(number) = action.evidence.pr else {
                        continue;
                    };
                    let id = self
                        .store
                        .record_intent(&NewAction::from_action(action, vec![]), now)?;
                    // Close the pull request only when every package on it
                    // builds again; otherwise say which one does.
                    let still_failing: Vec<&str> = ledger
                        .actions
                        .iter()
                        .filter(|r| r.pr == Some(number) && r.state == RecordState::Open)
                        .filter_map(|r| r.attr.as_deref())
                        .filter(|a| !recovered_attrs.contains(a))
                        .collect();
                    let result: Result<(), ActError> = async {
                        if !self.commented(&bot, number, "close", &attr).await? {
                            self.forge
                                .comment(number, &render::recovered_comment(action))
                                .await?;
                        }
                        if still_failing.is_empty() {
                            self.forge.close_pull(number).await?;
                        }
                        Ok(())
                    }
                    .await;
                    match result {
                        Ok(()) => {
                            self.store
                                .record_result(id, &done(now, Some(number), None))?;
                            report.did(if still_failing.is_empty() {
                                format!("closed #{number}: {attr} builds again")
                            } else {
                                format!(
                                    "#{number}: {attr} builds again; left open for {}",
                                    still_failing.join(", ")
                                )
                            });
                        }
                        Err(ActError::Forge(e)) => {
                            self.settle_failure(id, &e, now, report, &format!("close #{number}"))?
                        }
                        Err(e) => return Err(e),
                    }
                    (self.progress)();
                }
            }
        }
        for actions in prs.into_values() {
            match updated_pull(&actions) {
                Some(number) => {
                    self.update_pull(&bot, number, &actions, now, report)
                        .await?
                }
                None => self.open_pull(&bot, &actions, now, report).await?,
            }
            (self.progress)();
        }
        Ok(())
    }

    /// Rewrite our open pull request `number` to propose exactly `actions`
    /// (one per package that stays on it): its branch is rebuilt on the
    /// base branch and pushed, its body edited, and a comment says what
    /// changed. Packages no longer on it (they build again) are settled.
    /// A pull request that is no longer open, or not ours, is left alone and
    /// the packages are proposed afresh.
    async fn update_pull(
        &self,
        bot: &str,
        number: u64,
        actions: &[&Action],
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let pull = self.forge.pull(number).await?;
        let branch = pull
            .head
            .strip_prefix(&format!("{}:", self.settings.fork_owner))
            .map(str::to_owned);
        let (Some(branch), State::Open, false) = (branch, pull.state, pull.merged) else {
            report.did(format!(
                "#{number} is no longer our open pull request: proposing its packages afresh"
            ));
            return Box::pin(self.open_pull(bot, actions, now, report)).await;
        };
        let ledger = self.store.ledger()?;
        let before: Vec<&ActionRecord> = ledger
            .actions
            .iter()
            .filter(|r| {
                r.pr == Some(number)
                    && r.kind == ActionKind::MarkBroken
                    && r.state == RecordState::Open
            })
            .collect();
        let (ids, edits) = self.intend_batch(actions, now)?;
        let message =
            crate::nixpkgs::git::commit_message(&pull_title(actions), &evidence_lines(actions));
        if self
            .publish_batch(
                bot,
                &branch,
                &message,
                &edits,
                actions,
                &ids,
                Some(number),
                now,
                report,
            )
            .await?
            .is_none()
        {
            return Ok(());
        }
        (self.progress)();
        let told: Vec<&ActionRecord> = ledger
            .actions
            .iter()
            .filter(|r| {
                matches!(r.kind, ActionKind::Notify | ActionKind::Remind)
                    && r.state == RecordState::Done
                    && actions.iter().any(|a| a.attr == r.attr)
            })
            .collect();
        let key = branch.rsplit('/').next().unwrap_or(&branch).to_owned();
        let body = render::pull_body(actions, &told, &key, &self.settings.mention, |n| {
            self.issue_url(n)
        });
        let change = render::pull_update_comment(&before, actions);
        let result: Result<(), ForgeError> = async {
            self.forge.edit_issue(number, Some(&body), None).await?;
            self.forge.comment(number, &change).await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            for id in &ids {
                self.settle_failure(*id, &e, now, report, &format!("update #{number}"))?;
            }
            return Ok(());
        }
        for id in &ids {
            self.store.record_result(
                *id,
                &ActionResult {
                    state: RecordState::Open,
                    at: now,
                    pr: Some(number),
                    issue: None,
                    error: None,
                    refused: None,
                },
            )?;
        }
        let staying: Vec<&str> = actions.iter().filter_map(|a| a.attr.as_deref()).collect();
        for gone in before
            .iter()
            .filter(|r| !staying.contains(&r.attr.as_deref().unwrap_or_default()))
        {
            self.store.record_result(
                gone.id,
                &ActionResult {
                    state: RecordState::Closed,
                    at: now,
                    pr: None,
                    issue: None,
                    error: Some(format!("removed from #{number}: it builds again")),
                    refused: None,
                },
            )?;
        }
        report.did(format!(
            "updated #{number} ({branch}): {}",
            change.lines().nth(1).unwrap_or_default()
        ));
        Ok(())
    }

    /// Post a notice, reminder or escalation on the package's tracking issue.
    async fn tell(
        &self,
        bot: &str,
        action: &Action,
        attr: &str,
        own: &mut Vec<Issue>,
    ) -> Result<Told, ForgeError> {
        let open = self
            .tracking_issue(own, attr)
            .filter(|i| i.state == State::Open)
            .map(|i| i.number);
        let closed = self
            .tracking_issue(own, attr)
            .filter(|i| i.state == State::Closed)
            .map(|i| i.number);
        // Only a close by someone else is a "no"; our own (on a recovery)
        // never is. A listing does not say who closed: one read does.
        let closed_by_human = match (action.kind, open, closed) {
            (ActionKind::Remind, None, Some(number)) => {
                self.forge.issue(number).await?.closed_by_someone_but(bot)
            }
            _ => false,
        };
        let number = match (action.kind, open, closed) {
            (ActionKind::Notify, Some(number), _) => {
                self.forge
                    .edit_issue(
                        number,
                        Some(&render::tracking_body(action, &self.settings.mention)),
                        None,
                    )
                    .await?;
                return Ok(Told::In(number));
            }
            // A reminder never reopens a topic a human closed.
            (ActionKind::Remind, None, Some(number)) if closed_by_human => {
                return Ok(Told::ClosedByHuman(number));
            }
            (_, Some(number), _) => number,
            (_, None, _) => {
                let issue = self
                    .forge
                    .create_issue(&NewIssue {
                        title: render::tracking_title(attr),
                        body: render::tracking_body(action, &self.settings.mention),
                        labels: vec![self.settings.label.clone()],
                    })
                    .await?;
                let number = issue.number;
                own.push(issue);
                if action.kind == ActionKind::Notify {
                    return Ok(Told::In(number));
                }
                number
            }
        };
        let (kind, text) = match action.kind {
            ActionKind::Remind => (
                format!("remind-{}", action.step.as_deref().unwrap_or("remind")),
                render::reminder_comment(action),
            ),
            _ => ("escalate".to_owned(), render::escalation_comment(action)),
        };
        let already = self.forge.comments(number).await?.iter().any(|c| {
            c.author.eq_ignore_ascii_case(bot) && render::has_marker(&c.body, &kind, attr)
        });
        if !already {
            self.forge.comment(number, &text).await?;
        }
        Ok(Told::In(number))
    }

    async fn open_pull(
        &self,
        bot: &str,
        actions: &[&Action],
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let branch = branch_of(
            actions[0].kind,
            actions[0].batch.as_deref(),
            actions
                .iter()
                .map(|a| (&a.attr, a.all_platforms, &a.systems)),
        );
        // A human already working on one of these packages wins: wait.
        for action in actions {
            let attr = action.attr.as_deref().unwrap_or_default();
            // GitHub's search matches words, not text: it only narrows the
            // candidates, each title is checked here.
            let theirs: Vec<u64> = self
                .forge
                .open_pulls_mentioning(&format!("{attr}:"))
                .await?
                .into_iter()
                .filter(|p| !p.author.eq_ignore_ascii_case(bot))
                .filter(|p| title_is_about(&p.title, attr))
                .map(|p| p.number)
                .collect();
            if let Some(first) = theirs.first() {
                report.did(format!(
                    "paused {branch}: a human's open pull request #{first} concerns {attr}"
                ));
                return Ok(());
            }
        }
        let (ids, edits) = self.intend_batch(actions, now)?;
        let title = pull_title(actions);
        let ledger = self.store.ledger()?;
        let told: Vec<&ActionRecord> = ledger
            .actions
            .iter()
            .filter(|r| {
                matches!(r.kind, ActionKind::Notify | ActionKind::Remind)
                    && r.state == RecordState::Done
            })
            .filter(|r| {
                actions.iter().any(|a| {
                    a.attr == r.attr
                        && a.evidence.jobs.iter().all(|j| {
                            r.at()
                                >= chrono::DateTime::parse_from_rfc3339(&j.since.time)
                                    .map_or(0, |t| t.timestamp())
                        })
                })
            })
            .collect();
        let key = branch.rsplit('/').next().unwrap_or(&branch).to_owned();
        let body = render::pull_body(actions, &told, &key, &self.settings.mention, |n| {
            self.issue_url(n)
        });
        let message = crate::nixpkgs::git::commit_message(&title, &evidence_lines(actions));
        let Some(published) = self
            .publish_batch(
                bot, &branch, &message, &edits, actions, &ids, None, now, report,
            )
            .await?
        else {
            return Ok(());
        };
        if published.commit.is_none() {
            // nixpkgs already says what we would have said.
            for id in &ids {
                self.store.record_result(
                    *id,
                    &ActionResult {
                        state: RecordState::Done,
                        at: now,
                        pr: None,
                        issue: None,
                        error: Some(
                            "already marked as asked in nixpkgs; nothing to propose".into(),
                        ),
                        refused: None,
                    },
                )?;
            }
            report.did(format!(
                "nothing to propose for {}: already as asked in nixpkgs",
                published.unchanged.join(", ")
            ));
            return Ok(());
        }
        (self.progress)();
        let head = self.head(&branch);
        let pull = match self.forge.pull_by_head(&head).await? {
            Some(pull) if pull.state == State::Open => {
                self.forge
                    .edit_issue(pull.number, Some(&body), None)
                    .await?;
                Ok(pull)
            }
            _ => {
                let new = NewPull {
                    title: title.clone(),
                    head,
                    base: self.settings.base_branch.clone(),
                    body,
                };
                self.forge
                    .create_pull(&new, std::slice::from_ref(&self.settings.label))
                    .await
            }
        };
        match pull {
            Ok(pull) => {
                for id in &ids {
                    self.store.record_result(
                        *id,
                        &ActionResult {
                            state: RecordState::Open,
                            at: now,
                            pr: Some(pull.number),
                            issue: None,
                            error: None,
                            refused: None,
                        },
                    )?;
                }
                report.did(format!(
                    "pull request #{} \"{title}\" ({branch} at {})",
                    pull.number,
                    published
                        .commit
                        .as_deref()
                        .unwrap_or_default()
                        .get(..12)
                        .unwrap_or_default()
                ));
            }
            Err(e) => {
                for id in &ids {
                    self.settle_failure(*id, &e, now, report, &format!("open {branch}"))?;
                }
            }
        }
        Ok(())
    }

    /// Record the intents of a batch of pull request actions, and their edits.
    fn intend_batch(
        &self,
        actions: &[&Action],
        now: i64,
    ) -> Result<(Vec<i64>, Vec<Edit>), ActError> {
        let ids = actions
            .iter()
            .map(|a| {
                self.store
                    .record_intent(&NewAction::from_action(a, vec![]), now)
            })
            .collect::<Result<_, _>>()?;
        Ok((ids, actions.iter().map(|a| edit_for(a, now)).collect()))
    }

    /// Publish a batch's `edits` on `branch`. A refused edit, a branch
    /// someone else pushed to, or a failure settles the batch's intents
    /// (`ids`) and says so; then `None`, and the caller stops. `pull` is the
    /// pull request of that branch, when known.
    #[allow(clippy::too_many_arguments)]
    async fn publish_batch(
        &self,
        bot: &str,
        branch: &str,
        message: &str,
        edits: &[Edit],
        actions: &[&Action],
        ids: &[i64],
        pull: Option<u64>,
        now: i64,
        report: &mut ActReport,
    ) -> Result<Option<Published>, ActError> {
        match self.publisher.publish(branch, message, edits) {
            Ok(Published { refused, .. }) if !refused.is_empty() => {
                self.set_aside_refused(bot, actions, ids, &refused, now, report)
                    .await?;
                Ok(None)
            }
            Ok(published) => Ok(Some(published)),
            Err(e @ crate::nixpkgs::NixpkgsError::BranchTakenOver { .. }) => {
                let pull = match pull {
                    Some(number) => Some(number),
                    None => self
                        .forge
                        .pull_by_head(&self.head(branch))
                        .await?
                        .map(|p| p.number),
                };
                self.leave_branch_to_humans(bot, pull, actions, ids, &e, now, report)
                    .await?;
                Ok(None)
            }
            Err(e) => {
                let error = crate::error_chain(&e);
                for id in ids {
                    self.store.record_result(*id, &failed(now, &error))?;
                }
                report.failed(format!("cannot publish {branch}: {error}"));
                Ok(None)
            }
        }
    }

    /// Someone else pushed to our branch: their work is never overwritten.
    /// The pull request (when there is one) says once that it is theirs now,
    /// and every package of the batch is settled as to be done by hand, with
    /// the reason on its tracking issue.
    #[allow(clippy::too_many_arguments)]
    async fn leave_branch_to_humans(
        &self,
        bot: &str,
        pull: Option<u64>,
        actions: &[&Action],
        ids: &[i64],
        error: &crate::nixpkgs::NixpkgsError,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let reason = error.to_string();
        if let Some(number) = pull {
            let key = format!("{number}");
            if !self
                .commented(bot, number, "hands-off-branch", &key)
                .await?
            {
                self.forge
                    .comment(number, &render::branch_left_to_humans(&key, &reason))
                    .await?;
            }
        }
        let refused: Vec<(String, String)> = actions
            .iter()
            .filter_map(|a| a.attr.clone())
            .map(|attr| (attr, reason.clone()))
            .collect();
        self.set_aside_refused(bot, actions, ids, &refused, now, report)
            .await
    }

    /// Some edits of a batch were refused by the editor: settle those (they
    /// are not proposed again for this failure), say on each package's
    /// tracking issue that it has to be marked by hand and why, and publish
    /// the rest as a batch of its own (its own branch), nothing pushed for
    /// the refused ones.
    async fn set_aside_refused(
        &self,
        bot: &str,
        actions: &[&Action],
        ids: &[i64],
        refused: &[(String, String)],
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let reason_of = |attr: &str| {
            refused
                .iter()
                .find(|(a, _)| a == attr)
                .map(|(_, reason)| reason.clone())
        };
        let ledger = self.store.ledger()?;
        let mut rest = Vec::new();
        for (action, id) in actions.iter().zip(ids) {
            let attr = action.attr.as_deref().unwrap_or_default();
            let Some(reason) = reason_of(attr) else {
                // Superseded by the batch without the refused edits, below.
                self.store.record_result(
                    *id,
                    &failed(now, "published in a batch without a refused edit"),
                )?;
                rest.push(*action);
                continue;
            };
            tracing::warn!(attr, %reason, kind = %action.kind, "the nixpkgs editor refused an edit: it has to be made by hand");
            metrics::counter!("hydra_sentinel_refused_edits_total", "kind" => action.kind.as_str())
                .increment(1);
            let issue = ledger
                .actions
                .iter()
                .filter(|r| r.kind == ActionKind::Notify && r.attr.as_deref() == Some(attr))
                .filter_map(|r| r.issue)
                .next_back();
            if let Some(number) = issue {
                let kind = format!("refused-{}", action.kind.as_str());
                if !self.commented(bot, number, &kind, attr).await? {
                    self.forge
                        .comment(number, &render::refused_comment(action, &reason))
                        .await?;
                }
            }
            self.store.record_result(
                *id,
                &ActionResult {
                    state: RecordState::Done,
                    at: now,
                    pr: None,
                    issue,
                    error: None,
                    refused: Some(reason.clone()),
                },
            )?;
            report.did(format!(
                "{} {attr}: refused by the editor, to be done by hand (told on its issue): {reason}",
                action.kind
            ));
        }
        if rest.is_empty() {
            return Ok(());
        }
        Box::pin(self.open_pull(bot, &rest, now, report)).await
    }

    /// A failed outward call: a clear failure is recorded (the engine plans
    /// it again); an ambiguous one leaves the intent for reconciliation.
    fn settle_failure(
        &self,
        id: i64,
        error: &ForgeError,
        now: i64,
        report: &mut ActReport,
        what: &str,
    ) -> Result<(), ActError> {
        if error.is_ambiguous() {
            report.failed(format!(
                "{what}: outcome unknown ({error}); will reconcile next cycle"
            ));
            return Ok(());
        }
        if let Some(refused) = refusals::settle(self.store, id, error, now, what, report)? {
            return refused;
        }
        self.store
            .record_result(id, &failed(now, &crate::error_chain(error)))?;
        report.failed(format!("{what}: {}", crate::error_chain(error)));
        if let ForgeError::RateLimited { .. } = error {
            // Not processed, so recorded as failed (planned again); and
            // no further request this cycle.
            return Err(ActError::RateLimited(format!("{what}: {error}")));
        }
        Ok(())
    }
}

/// Where a notice, reminder or escalation went.
enum Told {
    In(u64),
    /// The package's tracking issue was closed by a human: a "no".
    ClosedByHuman(u64),
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

/// What acting on `plan` would send, without sending anything: titles,
/// branches, mentions, and with `full` the texts themselves.
pub fn describe(plan: &Plan, settings: &ActSettings, full: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut prs: BTreeMap<String, Vec<&Action>> = BTreeMap::new();
    for action in &plan.actions {
        let attr = action.attr.as_deref().unwrap_or_default();
        let (line, text) = match action.kind {
            ActionKind::Hold => (format!("hold (nothing sent): {}", action.reason), None),
            ActionKind::Notify => (
                format!(
                    "open or update issue \"{}\" (label {})",
                    render::tracking_title(attr),
                    settings.label
                ),
                Some(render::tracking_body(action, &settings.mention)),
            ),
            ActionKind::Remind => (
                format!("comment a reminder on the tracking issue of {attr}"),
                Some(render::reminder_comment(action)),
            ),
            ActionKind::Escalate => (
                format!("comment an escalation on the tracking issue of {attr}"),
                Some(render::escalation_comment(action)),
            ),
            ActionKind::ClosePr => (
                format!(
                    "comment and close pull request #{}",
                    action.evidence.pr.unwrap_or_default()
                ),
                Some(render::recovered_comment(action)),
            ),
            ActionKind::Warn => {
                let branch = action.evidence.jobset.as_deref().unwrap_or_default();
                let step = action.step.as_deref().unwrap_or_default();
                let line = match step {
                    crate::policy::early_warning::NOTICE => format!(
                        "warn about {attr} on {branch}: a comment on its tracking issue, or an issue \"{}\"",
                        warn::title(attr, branch)
                    ),
                    _ => format!("edit the warning about {attr} on {branch} ({step})"),
                };
                (
                    line,
                    Some(warn::text(action, &action.evidence.maintainers, false)),
                )
            }
            ActionKind::MarkBroken | ActionKind::Retire => {
                prs.entry(
                    action
                        .batch
                        .clone()
                        .unwrap_or_else(|| format!("{}/{attr}", action.kind)),
                )
                .or_default()
                .push(action);
                continue;
            }
        };
        let _ = writeln!(out, "- {line}");
        if let (true, Some(text)) = (full, text) {
            let _ = writeln!(out, "\n{text}");
        }
    }
    for actions in prs.into_values() {
        let branch = branch_of(
            actions[0].kind,
            actions[0].batch.as_deref(),
            actions
                .iter()
                .map(|a| (&a.attr, a.all_platforms, &a.systems)),
        );
        let _ = writeln!(
            out,
            "- push {}:{branch} and open pull request \"{}\" against {}",
            settings.fork_owner,
            pull_title(&actions),
            settings.base_branch
        );
        if full {
            let key = branch.rsplit('/').next().unwrap_or(&branch);
            let _ = writeln!(
                out,
                "\n{}",
                render::pull_body(&actions, &[], key, &settings.mention, |n| format!("#{n}"))
            );
        }
    }
    if out.is_empty() {
        out.push_str("- nothing to send\n");
    }
    out
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

fn pull_state(pull: &PullRequest) -> RecordState {
    match (pull.state, pull.merged) {
        (State::Open, _) => RecordState::Open,
        (State::Closed, true) => RecordState::Merged,
        (State::Closed, false) => RecordState::Closed,
    }
}

/// Whether a pull request title names `attr` the nixpkgs way: the
/// attributes before the first `: `, comma-separated (`hello: 2.12 -> 2.13`,
/// `hello, hello-wayland: fix build`).
fn title_is_about(title: &str, attr: &str) -> bool {
    title
        .split_once(':')
        .is_some_and(|(subjects, _)| subjects.split(',').any(|s| s.trim() == attr))
}

/// The pull request a batch rewrites, when it is an update of one of ours.
fn updated_pull(actions: &[&Action]) -> Option<u64> {
    let first = actions.first()?;
    let number = first.evidence.pr?;
    actions
        .iter()
        .all(|a| {
            a.kind == ActionKind::MarkBroken
                && a.step.as_deref() == Some(crate::policy::engine::UPDATE_STEP)
                && a.evidence.pr == Some(number)
        })
        .then_some(number)
}

fn edit_for(action: &Action, now: i64) -> Edit {
    let attr = action.attr.clone().unwrap_or_default();
    let first = action
        .evidence
        .jobs
        .iter()
        .min_by_key(|j| j.since.time.clone());
    match action.kind {
        ActionKind::Retire => Edit::Retire {
            attr,
            reason: action.reason.clone(),
            date: crate::report::time(now)
                .get(..10)
                .unwrap_or("1970-01-01")
                .to_owned(),
        },
        _ => Edit::MarkBroken {
            attr,
            systems: if action.all_platforms {
                Vec::new()
            } else {
                action.systems.clone()
            },
            since: first.map(|j| j.since.time.get(..10).unwrap_or(&j.since.time).to_owned()),
            build_url: first.map(|j| j.last_build.clone()),
        },
    }
}

fn pull_title(actions: &[&Action]) -> String {
    let retire = actions.iter().any(|a| a.kind == ActionKind::Retire);
    match actions {
        [one] => {
            let attr = one.attr.as_deref().unwrap_or_default();
            if retire {
                crate::nixpkgs::git::retire_title(attr)
            } else if one.all_platforms {
                format!("{attr}: mark broken")
            } else {
                format!("{attr}: mark broken on {}", one.systems.join(", "))
            }
        }
        many if retire => format!(
            "treewide: move {} long-broken packages to the attic",
            many.len()
        ),
        many => format!("treewide: mark {} packages broken", many.len()),
    }
}

fn evidence_lines(actions: &[&Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| format!("{}: {}", a.attr.as_deref().unwrap_or_default(), a.reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobsetRef;
    use crate::history::EvalPoint;
    use crate::policy::{JobFacts, JobsetFacts, Run};

    fn facts(newest: (bool, Option<i64>)) -> Facts {
        let evals = (0..3)
            .map(|i| EvalPoint {
                id: 100 + i,
                seq: i + 1,
                timestamp: 1_700_000_000 + i * 3600,
                revision: None,
            })
            .collect();
        let run = |first, last, build, (finished, status): (bool, Option<i64>)| Run {
            first,
            last,
            build,
            finished,
            status,
            drv: build as u64,
            cause: crate::history::Cause::Own,
        };
        Facts {
            hydra_url: "https://hydra.nixos.org".parse().unwrap(),
            repository: crate::config::NIXPKGS_REPOSITORY.to_owned(),
            jobsets: vec![JobsetFacts {
                unlisted_building: 0,
                jobset: JobsetRef {
                    project: "nixpkgs".into(),
                    jobset: "trunk".into(),
                },
                evals,
                jobs: vec![JobFacts {
                    attr: "hello".into(),
                    system: "x86_64-linux".into(),
                    suffixed: true,
                    runs: vec![run(0, 1, 1, (true, Some(1))), run(2, 2, 2, newest)],
                }],
                propagated_from: BTreeMap::new(),
                origins: BTreeMap::new(),
            }],
            maintainers: BTreeMap::new(),
        }
    }

    #[test]
    fn a_package_recovers_only_when_its_newest_signal_is_ok() {
        let policy = Policy::nixpkgs();
        let now = 1_800_000_000;
        let recovered = |facts: &Facts, attr: &str| builds_again(&policy, facts, attr, now);
        assert!(recovered(&facts((true, Some(0))), "hello"));
        assert!(
            !recovered(&facts((false, None)), "hello"),
            "queued after a rebuild is no recovery"
        );
        assert!(
            !recovered(&facts((true, Some(3))), "hello"),
            "aborted is no recovery"
        );
        assert!(!recovered(&facts((true, Some(1))), "hello"));
        assert!(
            !recovered(&facts((true, Some(0))), "unknown"),
            "no jobs, nothing recovered"
        );
    }

    #[test]
    fn a_title_is_about_a_package_only_when_it_names_it_before_the_colon() {
        assert!(title_is_about("hello: 2.12 -> 2.13", "hello"));
        assert!(title_is_about("hello-wayland, hello: fix build", "hello"));
        assert!(!title_is_about("hello-unfree: 1.0 -> 1.1", "hello"));
        assert!(!title_is_about("git-lfs: 3.5 -> 3.6", "git"));
        assert!(!title_is_about("treewide: say hello to git", "git"));
        assert!(!title_is_about("hello world", "hello"));
    }

    #[test]
    fn a_recovery_after_now_is_not_seen_yet() {
        let policy = Policy::nixpkgs();
        let facts = facts((true, Some(0)));
        let success = facts.jobsets[0].evals[2].timestamp;
        assert!(!builds_again(&policy, &facts, "hello", success - 1));
        assert!(builds_again(&policy, &facts, "hello", success));
    }

    #[test]
    fn a_branch_is_named_by_its_batch_and_what_it_proposes() {
        let darwin = vec!["aarch64-darwin".to_owned()];
        let linux = vec!["x86_64-linux".to_owned()];
        let batch = Some("mark-broken/maintainer/alice/1");
        let a = branch_for(ActionKind::MarkBroken, batch, &[("hello", false, &darwin)]);
        assert!(
            a.starts_with("hydra-sentinel/mark-broken/maintainer/alice/1-"),
            "{a}"
        );
        assert_eq!(
            a,
            branch_for(ActionKind::MarkBroken, batch, &[("hello", false, &darwin)])
        );
        assert_ne!(
            a,
            branch_for(ActionKind::MarkBroken, batch, &[("hello", false, &linux)])
        );
        assert_ne!(
            a,
            branch_for(ActionKind::MarkBroken, batch, &[("frob", false, &darwin)])
        );
        let both = branch_for(
            ActionKind::MarkBroken,
            batch,
            &[("hello", false, &darwin), ("frob", true, &linux)],
        );
        let swapped = branch_for(
            ActionKind::MarkBroken,
            batch,
            &[("frob", true, &linux), ("hello", false, &darwin)],
        );
        assert_eq!(both, swapped, "the order of a batch does not matter");
        let odd = branch_for(ActionKind::Retire, None, &[("a b..c", true, &[])]);
        assert!(odd.starts_with("hydra-sentinel/retire/a-b.c-"), "{odd}");
        assert!(!odd.contains(' ') && !odd.contains(".."), "{odd}");
    }
}
