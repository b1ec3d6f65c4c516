//! Pull requests: opening, updating and settling the bot's own.
//!
//! Owns: a batch of mark-broken or retire actions becoming one branch and
//! one pull request (waiting while a human's open pull request concerns one
//! of its packages), rewriting an open one to propose exactly what the plan
//! says, and what becomes of edits the editor refused or a branch someone
//! else pushed to (settled as to be done by hand, never overwritten).
//!
//! Must never: push to a branch someone else pushed to, propose an edit the
//! editor refused, or open a pull request without its intents recorded.

use crate::forge::{Forge, ForgeError, NewPull, State};
use crate::policy::{Action, ActionKind, ActionRecord, Ledger, RecordState};
use crate::store::{ActionResult, NewAction};

use super::branch::branch_of_batch;
use super::{ActError, ActReport, Actor, Edit, Published, failed, on_pull, render};

impl<F: Forge> Actor<'_, F> {
    /// Rewrite our open pull request `number` to propose exactly `actions`
    /// (one per package that stays on it): its branch is rebuilt on the
    /// base branch and pushed, its body edited, and a comment says what
    /// changed. Packages no longer on it (they build again) are settled.
    /// A pull request that is no longer open, or not ours, is left alone and
    /// the packages are proposed afresh.
    pub(super) async fn update_pull(
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
        let told: Vec<&ActionRecord> = notices_about(&ledger, actions).collect();
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
            self.store
                .record_result(*id, &on_pull(RecordState::Open, now, number))?;
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
    pub(super) async fn open_pull(
        &self,
        bot: &str,
        actions: &[&Action],
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let branch = branch_of_batch(actions);
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
        // Only what was said about this failure: since its jobs began failing.
        let told: Vec<&ActionRecord> = notices_about(&ledger, actions)
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
                    self.store
                        .record_result(*id, &on_pull(RecordState::Open, now, pull.number))?;
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
    pub(super) fn intend_batch(
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
    pub(super) async fn publish_batch(
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
    pub(super) async fn leave_branch_to_humans(
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
    pub(super) async fn set_aside_refused(
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
}

/// Whether a pull request title names `attr` the nixpkgs way: the
/// attributes before the first `: `, comma-separated (`hello: 2.12 -> 2.13`,
/// `hello, hello-wayland: fix build`).
pub(super) fn title_is_about(title: &str, attr: &str) -> bool {
    title
        .split_once(':')
        .is_some_and(|(subjects, _)| subjects.split(',').any(|s| s.trim() == attr))
}

/// The notices and reminders sent about the packages of `actions`.
fn notices_about<'l>(
    ledger: &'l Ledger,
    actions: &[&Action],
) -> impl Iterator<Item = &'l ActionRecord> {
    ledger.actions.iter().filter(|r| {
        matches!(r.kind, ActionKind::Notify | ActionKind::Remind)
            && r.state == RecordState::Done
            && actions.iter().any(|a| a.attr == r.attr)
    })
}

/// The pull request a batch rewrites, when it is an update of one of ours.
pub(super) fn updated_pull(actions: &[&Action]) -> Option<u64> {
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

pub(super) fn edit_for(action: &Action, now: i64) -> Edit {
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
            date: crate::format::time(now)
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

pub(super) fn pull_title(actions: &[&Action]) -> String {
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

pub(super) fn evidence_lines(actions: &[&Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| format!("{}: {}", a.attr.as_deref().unwrap_or_default(), a.reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_about_a_package_only_when_it_names_it_before_the_colon() {
        assert!(title_is_about("hello: 2.12 -> 2.13", "hello"));
        assert!(title_is_about("hello-wayland, hello: fix build", "hello"));
        assert!(!title_is_about("hello-unfree: 1.0 -> 1.1", "hello"));
        assert!(!title_is_about("git-lfs: 3.5 -> 3.6", "git"));
        assert!(!title_is_about("treewide: say hello to git", "git"));
        assert!(!title_is_about("hello world", "hello"));
    }
}
