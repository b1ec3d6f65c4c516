//! What hydra-sentinel writes on GitHub: tracking issues, reminders, pull
//! request bodies and closing comments.
//!
//! Every text carries a hidden marker naming what it is about, so that after
//! a crash (or a lost database) the bot finds its own work again instead of
//! repeating it. Attribute paths are shown in code spans and only the cc line
//! mentions people, so a job name can never @-mention anyone or inject
//! Markdown.

use std::fmt::Write as _;

use crate::policy::plan::JobEvidence;
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
fn code(attr: &str) -> String {
    format!("`{}`", attr.replace('`', ""))
}

fn mentions(logins: &[String]) -> String {
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
fn evidence_table(jobs: &[JobEvidence]) -> String {
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

fn next_step_line(action: &Action) -> Option<String> {
    let next = action.evidence.next_step.as_ref()?;
    let what = match next.kind {
        ActionKind::MarkBroken => "a pull request marking it broken on the failing platforms",
        ActionKind::Retire => "a pull request moving it to the attic",
        ActionKind::Remind => "a reminder here",
        _ => "the next step",
    };
    Some(format!(
        "If nothing changes, the next step is {what} on **{}**.",
        date(&next.at)
    ))
}

fn how_to_object(mention: &str, opt_out: Option<&str>) -> String {
    let mut out = format!(
        "**How to stop this:** fix the build (this issue closes itself once Hydra builds the package again), \
         or comment `{mention} snooze 30d` (maintainers and committers), or `{mention} not-broken` if Hydra is wrong."
    );
    if let Some(words) = opt_out {
        out.push(' ');
        out.push_str(words);
    }
    out
}

/// The title of the tracking issue of `attr`.
pub fn tracking_title(attr: &str) -> String {
    format!("Build failure: {attr}")
}

/// The tracking issue: first notice to the maintainers, with the evidence.
pub fn tracking_body(action: &Action, mention: &str) -> String {
    let attr = action.attr.as_deref().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "{}", marker("notify", attr));
    let _ = writeln!(
        out,
        "{} fails to build on Hydra{}. {}\n",
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
            "\n{radius} other jobs fail because this one does (dependency failed)."
        );
    }
    if let Some(line) = next_step_line(action) {
        let _ = writeln!(out, "\n{line}");
    }
    let _ = writeln!(
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
    out.push_str("\n<sub>Opened by hydra-sentinel from Hydra's results; it edits this issue as things change.</sub>\n");
    out
}

/// A reminder comment on the tracking issue.
pub fn reminder_comment(action: &Action) -> String {
    let attr = action.attr.as_deref().unwrap_or_default();
    let step = action.step.as_deref().unwrap_or("remind");
    let mut out = format!(
        "{}\nReminder: {} still fails to build. {}",
        marker(&format!("remind-{step}"), attr),
        code(attr),
        action.reason
    );
    if let Some(line) = next_step_line(action) {
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
    format!(
        "{}\n{} builds again on Hydra; closing. {}\n",
        marker("close", attr),
        code(attr),
        action.reason
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
            action.reason
        );
        out.push_str(&evidence_table(&action.evidence.jobs));
        let mut notes: Vec<String> = told
            .iter()
            .filter(|r| r.attr.as_deref() == Some(attr))
            .map(|r| {
                let when = crate::report::time(r.at());
                let whom = if r.pinged.is_empty() {
                    "no reachable maintainer".to_owned()
                } else {
                    r.pinged.join(", ")
                };
                let link = r
                    .issue
                    .map(|n| format!(" in [#{n}]({})", issue_url(n)))
                    .unwrap_or_default();
                format!("- {} on {}{link}, to {whom}", r.kind.as_str(), date(&when))
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

    fn notify(attr: &str) -> Action {
        Action {
            kind: ActionKind::Notify,
            attr: Some(attr.into()),
            systems: vec!["aarch64-darwin".into(), "x86_64-darwin".into()],
            all_platforms: false,
            step: Some("notice".into()),
            batch: None,
            reason: "It has failed on 2 platforms for 20 days (51 evals).".into(),
            evidence: Evidence {
                jobset: Some("nixpkgs:trunk".into()),
                jobs: vec![failing("aarch64-darwin"), failing("x86_64-darwin")],
                maintainers: vec!["alice-gh".into(), "bob".into()],
                next_step: Some(NextStep {
                    kind: ActionKind::MarkBroken,
                    step: None,
                    at: "2026-01-20T08:00:00Z".into(),
                    at_unix: 0,
                }),
                ..Evidence::default()
            },
        }
    }

    #[test]
    fn a_tracking_issue_shows_the_evidence_the_deadline_and_how_to_object() {
        insta::assert_snapshot!(tracking_body(&notify("hello"), "@hydra-sentinel"));
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
        };
        let body = pull_body(&[&action], &[&told], "hello", "@hydra-sentinel", |n| {
            format!("https://github.com/NixOS/nixpkgs/issues/{n}")
        });
        insta::assert_snapshot!(body);
    }
}
