//! Reconciliation: intents an earlier run left without a result.
//!
//! Owns: looking for the bot's own work on GitHub (tracking issues and
//! comments by their hidden markers, pull requests by their deterministic
//! branch) for every intent in the ledger without a result, and recording
//! what it finds, or a failure so that the engine plans it again.
//!
//! Must never: create, edit or close anything on GitHub (it only reads), or
//! take a closed issue or an earlier, recorded pull request as proof of
//! this intent.

use crate::forge::{Forge, Issue, State};
use crate::policy::{ActionKind, ActionRecord, RecordState};
use crate::store::ActionResult;

use super::{ActError, ActReport, Actor, branch::branch_of, done, on_pull, pull_state};

impl<F: Forge> Actor<'_, F> {
    pub(super) async fn reconcile(
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
                        .map(|pull| on_pull(pull_state(&pull), now, pull.number))
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
}
