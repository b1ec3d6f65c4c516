//! Dry-run rendering: what acting on a plan would send, sending nothing.
//!
//! Owns: the list of what a cycle would send (titles, branches, mentions,
//! and on request the texts themselves), made by the same functions that
//! make the real texts, so a dry run never says what acting would not do.
//!
//! Must never: touch GitHub, the ledger or the nixpkgs checkout.

use std::collections::BTreeMap;

use crate::policy::{Action, ActionKind, Plan};

use super::branch::branch_of_batch;
use super::pulls::pull_title;
use super::{ActSettings, render, warn};

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
        let branch = branch_of_batch(&actions);
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
