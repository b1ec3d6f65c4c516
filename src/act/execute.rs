//! Execution: carrying out a plan's actions on GitHub, each exactly once.
//!
//! Owns: the order of a plan's steps (holds, notices, reminders,
//! escalations, warnings, closing pull requests whose packages build again,
//! then one pull request per batch, see [`super::pulls`]), the intent before
//! every outward call and the result after it, and what a failed call
//! becomes ([`Actor::settle_failure`]).
//!
//! Must never: act on anything the plan does not hold, send before the
//! intent is recorded, or reopen a topic a human closed.

use std::collections::BTreeMap;

use crate::forge::{Forge, ForgeError, Issue, NewIssue, State};
use crate::policy::{Action, ActionKind, Ledger, Plan, RecordState};
use crate::store::{ActionResult, NewAction};

use super::pulls::updated_pull;
use super::{ActError, ActReport, Actor, done, failed, refusals, render};

impl<F: Forge> Actor<'_, F> {
    /// Carry out the plan: every action in its order, then the pull
    /// requests, one per batch.
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
                ActionKind::Hold => self.hold(action, &ledger, now, report)?,
                ActionKind::Notify | ActionKind::Remind | ActionKind::Escalate => {
                    self.tell_and_record(&bot, action, &attr, &mut own, now, report)
                        .await?;
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
                    self.close_recovered_pull(
                        &bot,
                        action,
                        number,
                        &ledger,
                        &recovered_attrs,
                        now,
                        report,
                    )
                    .await?;
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

    /// A hold is recorded once per breakage: while it lasts, cycles only
    /// say so.
    fn hold(
        &self,
        action: &Action,
        ledger: &Ledger,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
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
        Ok(())
    }

    /// A notice, reminder or escalation: the intent, the post on the
    /// tracking issue, and what came of it. One falling due on a tracking
    /// issue a human closed posts nothing and is recorded as done with that
    /// reason; the close is heard as a "no" if no step heard it before
    /// ([`Actor::hear_a_human_close`]), so a ladder that resumes after the
    /// snooze goes on to its next step instead of being snoozed again.
    async fn tell_and_record(
        &self,
        bot: &str,
        action: &Action,
        attr: &str,
        own: &mut Vec<Issue>,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let pinged = if action.kind == ActionKind::Escalate {
            action.evidence.escalate_to.clone()
        } else {
            action.evidence.maintainers.clone()
        };
        let id = self
            .store
            .record_intent(&NewAction::from_action(action, pinged), now)?;
        match self.tell(bot, action, attr, own).await {
            Ok(Told::In(issue)) => {
                self.store
                    .record_result(id, &done(now, None, Some(issue)))?;
                report.did(format!("{} {attr} in #{issue}", action.kind));
            }
            Ok(Told::ClosedByHuman(issue)) => {
                self.store.record_result(
                    id,
                    &ActionResult {
                        error: Some(format!(
                            "tracking issue #{issue} was closed by a human; nothing is posted on it"
                        )),
                        ..done(now, None, Some(issue))
                    },
                )?;
                // Rare (once a ladder step per human close): the ledger is
                // read afresh, with whatever this cycle heard already.
                let ledger = self.store.ledger()?;
                if !self.hear_a_human_close(&ledger, attr, issue, now, report)? {
                    report.did(format!(
                        "{} {attr}: tracking issue #{issue} was closed by a human (heard before); nothing posted",
                        action.kind
                    ));
                }
            }
            Err(e) => {
                self.settle_failure(id, &e, now, report, &format!("{} {attr}", action.kind))?
            }
        }
        (self.progress)();
        Ok(())
    }

    /// A package of our pull request builds again: say so on it, and close
    /// it once every package on it (`recovered_attrs`: those recovering in
    /// this plan) builds again.
    #[allow(clippy::too_many_arguments)]
    async fn close_recovered_pull(
        &self,
        bot: &str,
        action: &Action,
        number: u64,
        ledger: &Ledger,
        recovered_attrs: &[&str],
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let attr = action.attr.as_deref().unwrap_or_default();
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
            if !self.commented(bot, number, "close", attr).await? {
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
        Ok(())
    }

    /// Post a notice, reminder or escalation on the package's tracking issue.
    pub(super) async fn tell(
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
            (ActionKind::Remind | ActionKind::Escalate, None, Some(number)) => {
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
            // A reminder or escalation never reopens a topic a human closed.
            (ActionKind::Remind | ActionKind::Escalate, None, Some(number)) if closed_by_human => {
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

    /// A failed outward call: a clear failure is recorded (the engine plans
    /// it again); an ambiguous one leaves the intent for reconciliation.
    pub(super) fn settle_failure(
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
pub(super) enum Told {
    In(u64),
    /// The package's tracking issue was closed by a human: a "no".
    ClosedByHuman(u64),
}
