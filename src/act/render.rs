//! What hydra-sentinel writes on GitHub: tracking issues, reminders, pull
//! request bodies and closing comments.
//!
//! Every text carries a hidden marker naming what it is about, so that after
//! a crash (or a lost database) the bot finds its own work again instead of
//! repeating it. Attribute paths are shown in code spans and only the cc line
//! mentions people, so a job name can never @-mention anyone or inject
//! Markdown.

use std::fmt::Write as _;

use crate::policy::plan::{JobEvidence, ScheduledStep, platforms_in_words};
use crate::policy::{Action, ActionKind, ActionRecord};

/// The hidden marker of a piece of work: `<!-- hydra-sentinel:notify:hello -->`.
pub fn marker(kind: &str, key: &str) -> String {
    format!("<!-- hydra-sentinel:{kind}:{} -->", safe_key(key))
}

/// Whether `body` carries the marker.
pub fn has_marker(body: &str, kind: &str, key: &str) -> bool {
    body.contains(&marker(kind, key))
}

/// Keys are attribute paths or batch names; anything else is replaced so a
/// marker can never close its comment early.
fn safe_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-'+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An attribute path as inline code (attribute paths have no backticks).
pub(super) fn code(attr: &str) -> String {
    format!("`{}`", attr.replace('`', ""))
}

pub(super) fn mentions(logins: &[String]) -> String {
    logins
        .iter()
        .filter(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '/')
        })
        .map(|l| format!("@{l}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn date(rfc3339: &str) -> &str {
    rfc3339.get(..10).unwrap_or(rfc3339)
}

fn short(rev: &Option<String>) -> String {
    rev.as_deref()
        .map(|r| r.chars().take(12).collect())
        .unwrap_or_else(|| "?".into())
}

/// The evidence table: one row per failing platform.
pub(super) fn evidence_table(jobs: &[JobEvidence]) -> String {
    let mut out = String::from(
        "| platform | failing since | evals | derivations | first failure | newest failure | last success | commits |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for job in jobs {
        let last_good = match &job.last_good {
            Some(good) => format!(
                "[{}]({}) ([eval {}]({}))",
                short(&good.eval.revision),
                good.build,
                good.eval.id,
                good.eval.url
            ),
            None => "never seen".into(),
        };
        let compare = job
            .compare
            .as_deref()
            .map(|c| format!("[compare]({c})"))
            .unwrap_or_else(|| "-".into());
        let class = if job.class == "failing" {
            ""
        } else {
            " (dependency)"
        };
        let _ = writeln!(
            out,
            "| [{}]({}){class} | {} ([eval {}]({})) | {} | {} | [build]({}) | [build]({}) | {last_good} | {compare} |",
            job.system,
            job.job_url,
            date(&job.since.time),
            job.since.id,
            job.since.url,
            job.evals,
            job.derivations,
            job.first_build,
            job.last_build,
        );
    }
    out
}

/// What each scheduled step will do, in words.
fn scheduled_words(step: &ScheduledStep, attr: &str) -> String {
    let platforms = platforms_in_words(step.all_platforms, &step.systems);
    match step.kind {
        ActionKind::Notify => "a first notice to the maintainers".to_owned(),
        ActionKind::Remind if step.step.as_deref() == Some("retire-warning") => {
            "a last warning here before it is moved to the attic".to_owned()
        }
        ActionKind::Remind => "a reminder here".to_owned(),
        ActionKind::MarkBroken => {
            let rebuild = if step.needs_rebuild {
                ", once Hydra has also rebuilt it and it still fails"
            } else {
                ""
            };
            let only = if step.all_platforms {
                String::new()
            } else {
                " (`meta.broken` for those platforms only)".to_owned()
            };
            format!(
                "a pull request that marks {} broken on {platforms}{only}{rebuild}",
                code(attr)
            )
        }
        ActionKind::Escalate => format!(
            "a note to the people named for protected packages: {} is never marked broken",
            code(attr)
        ),
        ActionKind::Retire => format!(
            "a pull request that moves {} to the attic, with an alias that says where the code went",
            code(attr)
        ),
        ActionKind::ClosePr | ActionKind::Hold | ActionKind::Warn => "the next step".to_owned(),
    }
}

/// "If it still fails …": the dated steps to come, one per line.
fn schedule_section(action: &Action) -> Option<String> {
    let attr = action.attr.as_deref().unwrap_or_default();
    let steps: Vec<&ScheduledStep> = action
        .evidence
        .schedule
        .iter()
        .filter(|s| s.kind != ActionKind::Notify)
        .collect();
    if steps.is_empty() {
        return None;
    }
    let mut out = String::from("**What happens next if it keeps failing:**\n\n");
    for step in steps {
        let _ = writeln!(
            out,
            "- **{}**: {}.",
            date(&step.at),
            scheduled_words(step, attr)
        );
    }
    out.push_str(
        "\nIf it builds again before a date, that step and the ones after it do not happen.\n",
    );
    Some(out)
}

/// The earliest dated step, as one sentence (for short comments).
fn next_step_sentence(action: &Action) -> Option<String> {
    let attr = action.attr.as_deref().unwrap_or_default();
    // The schedule is the package's as planned now: it still lists the
    // step this action is (a reminder due today), which is not "next".
    let step = action
        .evidence
        .schedule
        .iter()
        .filter(|s| !(s.kind == action.kind && s.step == action.step))
        .find(|s| s.kind != ActionKind::Notify)?;
    Some(format!(
        "If it still fails on {}, the next step is {}.",
        date(&step.at),
        scheduled_words(step, attr)
    ))
}

fn how_to_object(mention: &str, opt_out: Option<&str>) -> String {
    let mut out = format!(
        "**How to stop this:**\n\n\
         - Fix the build. Once Hydra builds the package again, this issue is closed and nothing else happens.\n\
         - Working on it? Comment `{mention} snooze 30d` (maintainers of the package and committers): the dates above move by as long as the snooze lasts.\n\
         - Hydra is wrong about it? Comment `{mention} not-broken`.\n"
    );
    if let Some(words) = opt_out {
        let _ = writeln!(out, "- {words}");
    }
    out
}

/// The title of the tracking issue of `attr`.
pub fn tracking_title(attr: &str) -> String {
    format!("Build failure: {attr}")
}

/// The tracking issue: first notice to the maintainers, with the evidence,
/// the dates of what comes next and how to stop it.
pub fn tracking_body(action: &Action, mention: &str) -> String {
    let attr = action.attr.as_deref().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "{}", marker("notify", attr));
    let _ = writeln!(
        out,
        "{} fails to build on Hydra{}: {}.\n",
        code(attr),
        action
            .evidence
            .jobset
            .as_deref()
            .map(|j| format!(" (`{j}`)"))
            .unwrap_or_default(),
        action.reason
    );
    out.push_str(&evidence_table(&action.evidence.jobs));
    if let Some(radius) = action.evidence.blast_radius.filter(|r| *r > 0) {
        let _ = writeln!(
            out,
            "\n{radius} other packages fail because this one does (Hydra reports them as \"dependency failed\"): fixing it fixes them too."
        );
    }
    if let Some(section) = schedule_section(action) {
        let _ = write!(out, "\n{section}");
    }
    let _ = write!(
        out,
        "\n{}",
        how_to_object(mention, action.evidence.opt_out.as_deref())
    );
    if !action.evidence.maintainers.is_empty() {
        let _ = writeln!(out, "\ncc {}", mentions(&action.evidence.maintainers));
    } else {
        let _ = writeln!(
            out,
            "\nThis package has no maintainers that could be reached on GitHub."
        );
    }
    out.push_str("\n<sub>Opened by hydra-sentinel from Hydra's results; it comments here before each step.</sub>\n");
    out
}

/// A reminder comment on the tracking issue.
pub fn reminder_comment(action: &Action) -> String {
    let attr = action.attr.as_deref().unwrap_or_default();
    let step = action.step.as_deref().unwrap_or("remind");
    let mut out = format!(
        "{}\nReminder: {} still fails to build: {}.",
        marker(&format!("remind-{step}"), attr),
        code(attr),
        action.reason
    );
    if let Some(line) = next_step_sentence(action) {
        out.push(' ');
        out.push_str(&line);
    }
    if !action.evidence.maintainers.is_empty() {
        let _ = write!(out, "\n\ncc {}", mentions(&action.evidence.maintainers));
    }
    out.push('\n');
    out
}

/// An escalation: a protected package would be marked; people decide.
pub fn escalation_comment(action: &Action) -> String {
    let attr = action.attr.as_deref().unwrap_or_default();
    format!(
        "{}\n{} is protected: hydra-sentinel will not mark it broken. {}\n\ncc {}\n",
        marker("escalate", attr),
        code(attr),
        action.reason,
        mentions(&action.evidence.escalate_to)
    )
}

/// The comment with which a pull request is closed because the package builds again.
pub fn recovered_comment(action: &Action) -> String {
    let attr = action.attr.as_deref().unwrap_or_default();
    let platforms = if action.systems.is_empty() {
        "every platform it failed on".to_owned()
    } else {
        action.systems.join(", ")
    };
    format!(
        "{}\nClosing: Hydra builds {} again on {platforms}, so this pull request is no longer needed. Thank you to whoever fixed it.\n",
        marker("close", attr),
        code(attr),
    )
}

/// `reason` (a clause such as "it has failed …") as a sentence.
fn sentence(reason: &str) -> String {
    let mut chars = reason.chars();
    let first: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    let rest = chars.as_str().trim_end_matches('.');
    format!("{first}{rest}.")
}

/// The comment on one of our pull requests when it was rewritten: what it
/// proposed before and what it proposes now, package by package.
pub fn pull_update_comment(before: &[&ActionRecord], now: &[&Action]) -> String {
    let mut lines = Vec::new();
    for action in now {
        let attr = action.attr.as_deref().unwrap_or_default();
        let was = before.iter().rfind(|r| r.attr.as_deref() == Some(attr));
        let is = platforms_in_words(action.all_platforms, &action.systems);
        match was {
            Some(r) if platforms_in_words(r.all_platforms, &r.systems) == is => {
                lines.push(format!("- {}: unchanged ({is})", code(attr)));
            }
            Some(r) => lines.push(format!(
                "- {}: now marked broken on {is} (was {}): it has started failing there too",
                code(attr),
                platforms_in_words(r.all_platforms, &r.systems)
            )),
            None => lines.push(format!("- {}: added ({is})", code(attr))),
        }
    }
    for r in before {
        let attr = r.attr.as_deref().unwrap_or_default();
        if !now.iter().any(|a| a.attr.as_deref() == Some(attr)) {
            lines.push(format!(
                "- {}: removed, it builds again on Hydra",
                code(attr)
            ));
        }
    }
    lines.dedup();
    format!(
        "{}\nhydra-sentinel updated this pull request (the branch, and the description above):\n\n{}\n",
        marker("update", &format!("{}", now.len())),
        lines.join("\n")
    )
}

/// On our pull request when someone else pushed to its branch.
pub fn branch_left_to_humans(key: &str, reason: &str) -> String {
    format!(
        "{}\nSomeone other than hydra-sentinel pushed to this branch ({reason}). \
         hydra-sentinel will not push here again, so nothing of yours is overwritten: \
         this pull request is yours to finish or close.\n",
        marker("hands-off-branch", key)
    )
}

/// On the tracking issue: the editor cannot make this edit, so a human has
/// to, and why.
pub fn refused_comment(action: &Action, reason: &str) -> String {
    let attr = action.attr.as_deref().unwrap_or_default();
    let platforms = platforms_in_words(action.all_platforms, &action.systems);
    let (what, how) = match action.kind {
        ActionKind::Retire => (
            "move it to the attic",
            "move its files and add an alias that throws, as in other removals",
        ),
        _ => (
            "mark it broken",
            "set `meta.broken` for those platforms in its meta",
        ),
    };
    format!(
        "{}\nhydra-sentinel would now {what} on {platforms}, but it cannot make that edit itself: {reason}.\n\n\
         It has to be done by hand: {how}. hydra-sentinel will not try again for this failure; \
         the weekly digest lists it until it is done or the package builds again.\n",
        marker(&format!("refused-{}", action.kind.as_str()), attr),
    )
}

/// The comment with which a tracking issue is closed.
pub fn issue_recovered_comment(attr: &str) -> String {
    format!(
        "{}\n{} builds again on Hydra on every platform it failed on; closing.\n",
        marker("recovered", attr),
        code(attr)
    )
}

/// The reply to a command.
pub fn command_reply(author: &str, text: &str) -> String {
    format!(
        "@{} {text}",
        author
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
    )
}

/// The body of a pull request marking or retiring the packages of `actions`.
/// `told` are the ledger records of the notices and reminders sent about them.
pub fn pull_body(
    actions: &[&Action],
    told: &[&ActionRecord],
    key: &str,
    mention: &str,
    issue_url: impl Fn(u64) -> String,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", marker("pr", key));
    let retire = actions.iter().any(|a| a.kind == ActionKind::Retire);
    if retire {
        out.push_str("This moves long-broken packages to the attic, with a `throw` alias that says where the code now lives.\n");
    } else {
        out.push_str("This marks packages broken on the platforms where Hydra has failed to build them for a long time.\n");
    }
    for action in actions {
        let attr = action.attr.as_deref().unwrap_or_default();
        let platforms = if action.all_platforms {
            "all platforms".to_owned()
        } else {
            action.systems.join(", ")
        };
        let _ = writeln!(
            out,
            "\n### {} ({platforms})\n\n{}\n",
            code(attr),
            sentence(&action.reason)
        );
        out.push_str(&evidence_table(&action.evidence.jobs));
        let mut notes: Vec<String> = told
            .iter()
            .filter(|r| r.attr.as_deref() == Some(attr))
            .map(|r| {
                let when = crate::format::time(r.at());
                let whom = if r.pinged.is_empty() {
                    "no reachable maintainer".to_owned()
                } else {
                    r.pinged.join(", ")
                };
                let link = r
                    .issue
                    .map(|n| format!(" in [#{n}]({})", issue_url(n)))
                    .unwrap_or_default();
                let what = match r.kind {
                    ActionKind::Notify => "first notice",
                    ActionKind::Remind => "reminder",
                    ActionKind::Escalate => "escalation",
                    other => other.as_str(),
                };
                format!("- {what} on {}{link}, to {whom}", date(&when))
            })
            .collect();
        notes.dedup();
        if notes.is_empty() {
            out.push_str("\nNo notice is on record.\n");
        } else {
            let _ = writeln!(out, "\nWho was told, and when:\n{}", notes.join("\n"));
        }
    }
    let _ = writeln!(
        out,
        "\n**How to object:** close this pull request (hydra-sentinel will not reopen it; the package is left alone as the policy says), \
         or comment `{mention} snooze 30d` or `{mention} not-broken`. If the package builds again before this is merged, \
         hydra-sentinel closes it."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::plan::{EvalRef, Evidence, LastGood, NextStep};

    fn eval(id: i64, day: u32) -> EvalRef {
        EvalRef {
            id,
            time: format!("2025-11-{day:02}T08:00:00Z"),
            revision: Some(format!("{id:0>40}")),
            url: format!("https://hydra.nixos.org/eval/{id}"),
        }
    }

    fn failing(system: &str) -> JobEvidence {
        JobEvidence {
            system: system.into(),
            class: "failing".into(),
            job_url: format!("https://hydra.nixos.org/job/nixpkgs/trunk/hello.{system}"),
            since: eval(1820085, 5),
            before_our_records: None,
            evals: 51,
            derivations: 4,
            statuses: vec!["failed".into()],
            first_build: "https://hydra.nixos.org/build/310002316".into(),
            last_build: "https://hydra.nixos.org/build/310008712".into(),
            last_good: Some(LastGood {
                eval: eval(1820077, 4),
                build: "https://hydra.nixos.org/build/310002243".into(),
            }),
            compare: Some("https://github.com/NixOS/nixpkgs/compare/a...b".into()),
        }
    }

    fn scheduled(kind: ActionKind, step: Option<&str>, day: &str, rebuild: bool) -> ScheduledStep {
        ScheduledStep {
            kind,
            step: step.map(str::to_owned),
            at: format!("{day}T08:00:00Z"),
            at_unix: 0,
            systems: vec!["aarch64-darwin".into(), "x86_64-darwin".into()],
            all_platforms: false,
            needs_rebuild: rebuild,
        }
    }

    fn notify(attr: &str) -> Action {
        Action {
            kind: ActionKind::Notify,
            attr: Some(attr.into()),
            systems: vec!["aarch64-darwin".into(), "x86_64-darwin".into()],
            all_platforms: false,
            step: Some("notice".into()),
            batch: None,
            reason: "it has failed on aarch64-darwin, x86_64-darwin for 20 days".into(),
            evidence: Evidence {
                jobset: Some("nixpkgs:trunk".into()),
                jobs: vec![failing("aarch64-darwin"), failing("x86_64-darwin")],
                maintainers: vec!["alice-gh".into(), "bob".into()],
                next_step: Some(NextStep {
                    kind: ActionKind::Remind,
                    step: Some("remind-1w".into()),
                    at: "2026-01-13T08:00:00Z".into(),
                    at_unix: 0,
                }),
                schedule: vec![
                    scheduled(ActionKind::Remind, Some("remind-1w"), "2026-01-13", false),
                    scheduled(ActionKind::MarkBroken, None, "2026-01-20", true),
                ],
                opt_out: Some(
                    "Leave this package alone for good: add the comment `# hydra-sentinel: do not mark broken` to its file, or put the label \"hydra-sentinel: hands off\" on this issue or on our pull request.".into(),
                ),
                ..Evidence::default()
            },
        }
    }

    #[test]
    fn a_tracking_issue_shows_the_evidence_the_deadline_and_how_to_object() {
        insta::assert_snapshot!(tracking_body(&notify("hello"), "@hydra-sentinel"));
    }

    #[test]
    fn a_reminder_names_the_date_of_the_next_step() {
        let mut action = notify("hello");
        action.kind = ActionKind::Remind;
        action.evidence.schedule.remove(0);
        insta::assert_snapshot!(reminder_comment(&action));
    }

    #[test]
    fn a_reminder_does_not_name_itself_as_the_next_step() {
        // As the engine plans it: the reminder due now is still in the
        // package's schedule.
        let mut action = notify("hello");
        action.kind = ActionKind::Remind;
        action.step = Some("remind-1w".into());
        let text = reminder_comment(&action);
        assert!(
            text.contains("If it still fails on 2026-01-20, the next step is a pull request"),
            "{text}"
        );
        assert!(!text.contains("next step is a reminder"), "{text}");
    }

    #[test]
    fn a_closing_comment_says_where_it_builds_again() {
        let mut action = notify("hello");
        action.kind = ActionKind::ClosePr;
        insta::assert_snapshot!(recovered_comment(&action));
    }

    #[test]
    fn a_hostile_name_cannot_mention_anyone_or_break_the_marker() {
        let body = tracking_body(&notify("x --> @everyone [a](b)"), "@hydra-sentinel");
        // GitHub neither mentions nor links inside code spans.
        let outside_code: String = body.split('`').step_by(2).collect();
        assert!(
            !outside_code.contains("@everyone") && !outside_code.contains("](b)"),
            "{body}"
        );
        assert!(
            body.starts_with("<!-- hydra-sentinel:notify:x_--___everyone__a__b_ -->"),
            "{body}"
        );
        assert_eq!(body.matches("<!--").count(), 1, "{body}");
    }

    #[test]
    fn a_pull_request_says_who_was_told_and_when() {
        let mut action = notify("hello");
        action.kind = ActionKind::MarkBroken;
        let told = ActionRecord {
            id: 1,
            kind: ActionKind::Notify,
            attr: Some("hello".into()),
            systems: vec![],
            all_platforms: false,
            step: Some("notice".into()),
            batch: None,
            state: crate::policy::RecordState::Done,
            planned_at: 1_763_000_000,
            done_at: Some(1_763_000_100),
            closed_at: None,
            pr: None,
            issue: Some(7),
            pinged: vec!["alice-gh".into()],
            error: None,
            refused: None,
        };
        let body = pull_body(&[&action], &[&told], "hello", "@hydra-sentinel", |n| {
            format!("https://github.com/NixOS/nixpkgs/issues/{n}")
        });
        insta::assert_snapshot!(body);
    }
}
