//! Early warnings on GitHub ([`crate::policy::early_warning`]): one text per
//! package and branch, found again by its hidden marker
//! (`<!-- hydra-sentinel:warn:ATTR@BRANCH -->`).
//!
//! Where it lives: a comment on the package's open tracking issue, or else a
//! short issue of its own titled `ATTR: fails on BRANCH`. The notice
//! mentions the maintainers once; every later step edits that same text
//! (GitHub notifies nobody of an edit that adds no new mention, and the
//! edits add none): an update per new eval of the branch, the closing words
//! (and, for an issue of its own, closing it) when the package builds on the
//! branch again, and the handover when trunk fails the same way — an issue
//! of its own then becomes the package's tracking issue (it gets the
//! tracking marker), so the trunk ladder's reminders land there.
//!
//! Exactly once: the intent is recorded first; a notice interrupted before
//! its result is found again by its marker (`Actor::find_warning`); an interrupted edit is
//! recorded as failed and planned again (edits repeat harmlessly).

use std::fmt::Write as _;

use super::render::{code, evidence_table, marker, mentions};
use super::{ActError, ActReport, Actor, done};
use crate::forge::{Forge, ForgeError, Issue, NewIssue, State};
use crate::policy::early_warning::{CLOSE, HANDOVER, NOTICE};
use crate::policy::{Action, ActionRecord, Ledger};
use crate::store::{ActionResult, NewAction};

/// The marker key of a warning: the attribute and the branch.
pub fn key(attr: &str, branch: &str) -> String {
    format!("{attr}@{branch}")
}

/// The short title of a warning's own issue: `python3Packages.foo: fails on staging-next`.
pub fn title(attr: &str, branch: &str) -> String {
    let name = branch.split_once(':').map_or(branch, |(_, j)| j);
    format!("{attr}: fails on {name}")
}

/// The warning's text for its step. Only the notice mentions people; the
/// later texts name them without `@`.
pub fn text(action: &Action, told: &[String], own_issue: bool) -> String {
    let attr = action.attr.as_deref().unwrap_or_default();
    let branch = action.evidence.jobset.as_deref().unwrap_or_default();
    let step = action.step.as_deref().unwrap_or(NOTICE);
    let mut out = String::new();
    let _ = writeln!(out, "{}", marker("warn", &key(attr, branch)));
    if step == HANDOVER && own_issue {
        // From now on, the package's tracking issue.
        let _ = writeln!(out, "{}", marker("notify", attr));
    }
    let headline = match step {
        CLOSE => format!(
            "**Resolved:** {} builds again on `{branch}`. Nothing else will happen about this warning.",
            code(attr)
        ),
        HANDOVER => format!(
            "**Handed over:** {}. The package's usual notices follow on its tracking issue; this warning counted as the first one.",
            action.reason
        ),
        _ => format!(
            "**Heads-up, before `{branch}` lands:** {} {}.",
            code(attr),
            action.reason.strip_prefix("it ").unwrap_or(&action.reason)
        ),
    };
    let _ = writeln!(out, "{headline}\n");
    if let Some(root) = &action.evidence.root {
        let _ = writeln!(
            out,
            "Hydra reports it as \"dependency failed\": the failing dependency is {}. Fixing that fixes this one.\n",
            code(root)
        );
    }
    if let Some(radius) = action.evidence.blast_radius.filter(|r| *r > 0) {
        let _ = writeln!(
            out,
            "{radius} other packages on `{branch}` fail because this one does.\n"
        );
    }
    if step != CLOSE {
        if let Some(pull) = &action.evidence.branch_pull {
            let _ = writeln!(out, "The branch's pull request: {}.\n", pull.in_words());
        }
        out.push_str(&evidence_table(&action.evidence.jobs));
        let _ = writeln!(
            out,
            "\nThis is only a warning: nothing is marked broken because of a pre-merge branch, and no date runs. A fix on `{branch}` (or on its base) is the cheapest now."
        );
        if let Some(words) = &action.evidence.opt_out {
            let _ = writeln!(out, "{words}");
        }
    }
    if step == NOTICE {
        if told.is_empty() {
            let _ = writeln!(
                out,
                "\nThis package has no maintainers that could be reached on GitHub."
            );
        } else {
            let _ = writeln!(out, "\ncc {}", mentions(told));
        }
    } else if !told.is_empty() {
        let _ = writeln!(out, "\nTold: {}.", told.join(", "));
    }
    if own_issue || step == NOTICE {
        out.push_str(
            "\n<sub>Posted by hydra-sentinel from Hydra's builds of the branch; edited as evals come in.</sub>\n",
        );
    }
    out
}

/// Where a warning's text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A comment (its id) on issue `.1`.
    Comment(u64, u64),
    /// The body of an issue of its own.
    Issue(u64),
}

impl Place {
    pub fn issue(self) -> u64 {
        match self {
            Place::Comment(_, n) | Place::Issue(n) => n,
        }
    }
}

impl<F: Forge> Actor<'_, F> {
    /// Find a warning's text by its marker: in the body of one of our
    /// issues, or in our comment on the package's tracking issue (or on
    /// `hint`, the issue recorded with the notice).
    pub(super) async fn find_warning(
        &self,
        bot: &str,
        own: &[Issue],
        attr: &str,
        branch: &str,
        hint: Option<u64>,
    ) -> Result<Option<Place>, ForgeError> {
        let k = key(attr, branch);
        let mut own_issues: Vec<&Issue> = own
            .iter()
            .filter(|i| super::render::has_marker(&i.body, "warn", &k))
            .collect();
        own_issues.sort_by_key(|i| (i.state != State::Open, std::cmp::Reverse(i.number)));
        if let Some(i) = own_issues.first() {
            return Ok(Some(Place::Issue(i.number)));
        }
        let mut where_: Vec<u64> = hint.into_iter().collect();
        if let Some(t) = self.tracking_issue(own, attr) {
            where_.push(t.number);
        }
        where_.dedup();
        for number in where_ {
            if let Some(c) = self.forge.comments(number).await?.iter().find(|c| {
                c.author.eq_ignore_ascii_case(bot) && super::render::has_marker(&c.body, "warn", &k)
            }) {
                return Ok(Some(Place::Comment(c.id, number)));
            }
        }
        Ok(None)
    }

    /// Carry out one warning step.
    pub(super) async fn warn(
        &self,
        bot: &str,
        action: &Action,
        own: &mut Vec<Issue>,
        ledger: &Ledger,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        let attr = action.attr.as_deref().unwrap_or_default();
        let branch = action.evidence.jobset.clone().unwrap_or_default();
        let step = action.step.as_deref().unwrap_or(NOTICE);
        let notice: Option<&ActionRecord> = action
            .evidence
            .ledger
            .first()
            .and_then(|id| ledger.actions.iter().find(|r| r.id == *id));
        let pinged = if step == NOTICE {
            action.evidence.maintainers.clone()
        } else {
            Vec::new()
        };
        let told = notice.map_or_else(|| pinged.clone(), |n| n.pinged.clone());
        let id = self
            .store
            .record_intent(&NewAction::from_action(action, pinged), now)?;
        let result: Result<u64, ForgeError> = async {
            let found = self
                .find_warning(bot, own, attr, &branch, notice.and_then(|n| n.issue))
                .await?;
            match (step, found) {
                (NOTICE, None) => {
                    let open = self
                        .tracking_issue(own, attr)
                        .filter(|i| i.state == State::Open)
                        .map(|i| i.number);
                    match open {
                        Some(number) => {
                            self.forge
                                .comment(number, &text(action, &told, false))
                                .await?;
                            Ok(number)
                        }
                        None => {
                            let issue = self
                                .forge
                                .create_issue(&NewIssue {
                                    title: title(attr, &branch),
                                    body: text(action, &told, true),
                                    labels: vec![self.settings.label.clone()],
                                })
                                .await?;
                            let number = issue.number;
                            own.push(issue);
                            Ok(number)
                        }
                    }
                }
                // Already there (a retry after an interruption): leave it.
                (NOTICE, Some(place)) => Ok(place.issue()),
                (_, Some(Place::Comment(comment, number))) => {
                    self.forge
                        .edit_comment(comment, &text(action, &told, false))
                        .await?;
                    Ok(number)
                }
                (_, Some(Place::Issue(number))) => {
                    let close = (step == CLOSE).then_some(State::Closed);
                    self.forge
                        .edit_issue(number, Some(&text(action, &told, true)), close)
                        .await?;
                    Ok(number)
                }
                (_, None) => Err(ForgeError::NotFound {
                    what: "early warning",
                    number: notice.and_then(|n| n.issue).unwrap_or(0),
                }),
            }
        }
        .await;
        match result {
            Ok(number) => {
                self.store
                    .record_result(id, &done(now, None, Some(number)))?;
                report.did(format!("warn {attr} ({branch}, {step}) in #{number}"));
            }
            Err(ForgeError::NotFound {
                what: "early warning",
                ..
            }) => {
                // A human deleted it: settled, never posted again.
                self.store.record_result(
                    id,
                    &ActionResult {
                        error: Some(
                            "the warning's text is gone from GitHub; not posting it again".into(),
                        ),
                        ..done(now, None, None)
                    },
                )?;
                report.failed(format!("warn {attr} ({branch}, {step}): its text is gone"));
            }
            Err(e) => self.settle_failure(id, &e, now, report, &format!("warn {attr}"))?,
        }
        (self.progress)();
        Ok(())
    }
}
