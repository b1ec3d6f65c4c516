//! Following humans: what happened to the bot's pull requests and tracking
//! issues since the last cycle.
//!
//! Owns: recording merges and closes of the bot's pull requests (a close by
//! a human is a "no", remembered as a snooze), closing a tracking issue
//! whose package builds again, and handing the comments of open ones to the
//! maintainer commands ([`super::commands`]), and hearing a human's close
//! of a tracking issue as a "no": once per close, whichever step sees it
//! first (this one, or a reminder due on the closed issue in
//! [`super::execute`]), also when no reminder would read the issue again.
//!
//! Must never: open anything, take the bot's own close for a human's "no",
//! or decide what to do next (the engine plans from what is recorded here).

use std::collections::BTreeMap;

use crate::forge::{Forge, ForgeError, Issue, State};
use crate::policy::engine::builds_again;
use crate::policy::{ActionKind, ActionRecord, Facts, Ledger, RecordState};
use crate::store::StoreError;

use super::{ActError, ActReport, Actor, failed, on_pull, pull_state, render, tracked_attr};

impl<F: Forge> Actor<'_, F> {
    pub(super) async fn follow_pull_requests(
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
                    self.store
                        .record_result(record.id, &on_pull(state, now, number))?;
                    if state == RecordState::Closed
                        && !by_us
                        && let Some(attr) = &record.attr
                    {
                        self.snooze_after_a_no(
                            attr,
                            now,
                            format!("pull request #{number} closed without merging"),
                        )?;
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

    pub(super) async fn follow_tracking_issues(
        &self,
        bot: &str,
        own: &[Issue],
        facts: &Facts,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let ledger = self.store.ledger()?;
        for issue in own.iter().filter(|i| i.state == State::Closed) {
            self.hear_if_closed_by_a_human(bot, issue, &ledger, facts, now, report)
                .await?;
        }
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
}

impl<F: Forge> Actor<'_, F> {
    /// A tracking issue that someone else closed while its package's ladder
    /// runs there is a "no": see [`Self::hear_a_human_close`]. Without this
    /// step, a ladder with no reminder left (or none at all) would go on to
    /// the mark, since only a reminder reads the issue again.
    ///
    /// Cheap: only an issue that holds the package's newest notice, whose
    /// package still fails, that the bot did not close itself (its
    /// "recovered" comment, from the comments memo) and whose close was not
    /// heard yet is read.
    async fn hear_if_closed_by_a_human(
        &self,
        bot: &str,
        closed: &Issue,
        ledger: &Ledger,
        facts: &Facts,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let Some(attr) = tracked_attr(closed) else {
            return Ok(());
        };
        let newest_notice = ledger
            .actions
            .iter()
            .filter(|r| {
                r.kind == ActionKind::Notify
                    && r.attr.as_deref() == Some(attr.as_str())
                    && r.state.counts()
            })
            .max_by_key(|r| (r.planned_at, r.id));
        if newest_notice.and_then(|r| r.issue) != Some(closed.number)
            || heard(ledger, &attr, closed.number)
            || builds_again(self.policy, facts, &attr, now)
            || self
                .commented(bot, closed.number, "recovered", &attr)
                .await?
        {
            return Ok(());
        }
        (self.progress)();
        if self
            .forge
            .issue(closed.number)
            .await?
            .closed_by_someone_but(bot)
        {
            self.hear_a_human_close(ledger, &attr, closed.number, now, report)?;
        }
        Ok(())
    }

    /// The one place a human's close of tracking issue `number` becomes a
    /// "no", whichever step sees it first (the follow step above, or a
    /// reminder or escalation falling due on the closed issue): the package
    /// is snoozed for the policy's `max_snooze`, as after a closed pull
    /// request, and the snooze's note remembers the close. A close already
    /// heard (its note is in `ledger`) changes nothing: it is heard once,
    /// and a ladder that resumes after the snooze is never snoozed again by
    /// it. Whether it was heard now.
    pub(super) fn hear_a_human_close(
        &self,
        ledger: &Ledger,
        attr: &str,
        number: u64,
        now: i64,
        report: &mut ActReport,
    ) -> Result<bool, StoreError> {
        if heard(ledger, attr, number) {
            return Ok(false);
        }
        self.snooze_after_a_no(attr, now, closed_by_a_human(number))?;
        report.did(format!(
            "{attr}: tracking issue #{number} was closed by a human; the package is left alone for {} as the policy says",
            self.policy.opt_out.max_snooze
        ));
        Ok(true)
    }
}

/// Whether a human's close of tracking issue `number` of `attr` was heard
/// already (its snooze's note is in the ledger).
fn heard(ledger: &Ledger, attr: &str, number: u64) -> bool {
    let note = closed_by_a_human(number);
    ledger
        .opt_outs
        .iter()
        .any(|o| o.attr == attr && o.note == note)
}

/// The note of the snooze that a human's close of tracking issue `number`
/// leads to (also how that close is known to have been heard).
fn closed_by_a_human(number: u64) -> String {
    format!("tracking issue #{number} closed by a human")
}

#[cfg(test)]
mod tests {
    use crate::history::EvalPoint;
    use crate::policy::engine::builds_again;
    use crate::policy::{Facts, JobFacts, Policy, Run};

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
        Facts::trunk(
            evals,
            vec![JobFacts {
                attr: "hello".into(),
                system: "x86_64-linux".into(),
                suffixed: true,
                runs: vec![run(0, 1, 1, (true, Some(1))), run(2, 2, 2, newest)],
            }],
        )
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
    fn a_recovery_after_now_is_not_seen_yet() {
        let policy = Policy::nixpkgs();
        let facts = facts((true, Some(0)));
        let success = facts.jobsets[0].evals[2].timestamp;
        assert!(!builds_again(&policy, &facts, "hello", success - 1));
        assert!(builds_again(&policy, &facts, "hello", success));
    }
}
