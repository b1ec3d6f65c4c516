//! `explain ATTR`: in words, the history per platform, which rule applies,
//! what happens next and on which date, and how a maintainer can stop it.

use std::fmt::Write as _;

use super::config::{Ladder, Policy};
use super::engine::{AttrAssessment, JobAssessment, LadderState, Rule, assess, cutoff};
use super::facts::{Facts, JobFacts, JobsetFacts};
use super::ledger::ActionKind;
use super::ledger::Ledger;
use super::plan::{JobEvidence, platforms_in_words};
use crate::format::time;
use crate::history::{JobView, view};

fn day(unix: i64) -> String {
    time(unix)[..10].to_owned()
}

fn short(rev: Option<&str>) -> &str {
    rev.map_or("?", |r| &r[..r.len().min(12)])
}

fn ladder_words(l: &Ladder) -> String {
    let reminders = if l.remind_before_mark.is_empty() {
        "no reminder".to_owned()
    } else {
        format!(
            "reminders {} before",
            l.remind_before_mark
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        )
    };
    let retire = match l.retire_after_broken {
        Some(p) => format!(
            "retire after {p} marked broken (warning {} before)",
            l.retire_notice
        ),
        None => "never retired".to_owned(),
    };
    format!(
        "notice after {}, mark broken after {} and at least {} after the notice ({reminders}, a second failing derivation needed: {}), {retire}",
        l.notify_after,
        l.mark_broken_after,
        l.min_notice,
        if l.mark_min_derivations > 1 {
            "yes"
        } else {
            "no"
        }
    )
}

fn state_words(s: &LadderState) -> String {
    let mut parts = Vec::new();
    match s.notified_at {
        Some(n) => parts.push(format!("notified on {}", day(n))),
        None => parts.push("not notified yet".to_owned()),
    }
    for r in &s.reminded {
        parts.push(format!("{r} sent"));
    }
    if let Some(d) = s.mark_due {
        parts.push(format!("mark deadline {}", day(d)));
    }
    if let Some((state, pr)) = &s.mark {
        parts.push(format!(
            "mark proposed ({}{})",
            state.as_str(),
            pr.map(|p| format!(", PR #{p}")).unwrap_or_default()
        ));
    }
    if s.escalated {
        parts.push("escalated".to_owned());
    }
    if let Some(n) = s.needs_derivations {
        parts.push(format!(
            "waits for a failure on {n} distinct derivations before marking"
        ));
    }
    parts.join("; ")
}

/// The rule that applies to one job, in words (`None`: nothing assessed,
/// which reads as "builds"). Shared by `explain` and the HTML report.
pub fn rule_words(policy: &Policy, rule: Option<&Rule>) -> String {
    match rule {
        None | Some(Rule::Ok) => "builds: nothing to do".to_owned(),
        Some(Rule::NoSignal) => "only noise or pending results: nothing to do".to_owned(),
        Some(Rule::Gone) => {
            "missing from the newest eval: nothing is done to a job that is gone".to_owned()
        }
        Some(Rule::Watched) => {
            "this jobset is only watched (or an earlier jobset decides for this system)".to_owned()
        }
        Some(Rule::Flaky { flips }) => format!(
            "flaky ({flips} changes between building and failing in the last {} evals): not a streak, nothing is done",
            policy.streak.flaky_window_evals
        ),
        Some(Rule::AwaitingCause) => "failed with a status Hydra may have copied from a dependency (timeout, cached failure, log or output limit); not acted on until its build page says whose failure it is".to_owned(),
        Some(Rule::Victim {
            root,
            candidates,
            root_build,
        }) => match (root, root_build) {
            (Some(r), Some(build)) => format!(
                "a dependency failed: never acted on; charged to {r}, whose build {build} Hydra names as the one that failed (\"propagated from build {build}\")"
            ),
            (Some(r), None) => format!(
                "a dependency failed: never acted on; charged to {r}, whose failure began in the same eval"
            ),
            (None, _) if candidates.is_empty() => {
                "a dependency failed: never acted on; its root is not known".to_owned()
            }
            (None, _) => format!(
                "a dependency failed: never acted on; the root is one of {}",
                candidates.join(", ")
            ),
        },
        Some(Rule::NotYetReal { evals, derivations }) => format!(
            "failing, but not a streak yet ({evals} of {} evals, {derivations} of {} derivations)",
            policy.streak.min_evals, policy.streak.min_derivations
        ),
        Some(Rule::Skipped { overrides }) => format!(
            "left alone by {}",
            overrides
                .iter()
                .filter_map(|i| policy.overrides.get(i - 1))
                .map(|o| if o.reason.is_empty() {
                    o.describe()
                } else {
                    format!("{}: {}", o.describe(), o.reason)
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Rule::Ladder(state)) => state_words(state),
    }
}

/// Explain `attr` at `now`; `None` when no job of that attribute is known.
pub fn explain(
    policy: &Policy,
    facts: &Facts,
    ledger: &Ledger,
    attr: &str,
    now: i64,
) -> Option<String> {
    let assessment = assess(policy, facts, ledger, now);
    let a: Option<&AttrAssessment> = assessment.attr(attr);
    let mut out = String::new();
    heading(&mut out, policy, facts, attr, now);
    let mut found = false;
    for js in &facts.jobsets {
        let Some(cut) = cutoff(js, now) else { continue };
        for job in js.jobs.iter().filter(|j| j.attr == attr) {
            let Some(v) = view(&job.runs, cut, &policy.streak) else {
                continue;
            };
            found = true;
            let assessed = a.and_then(|a| {
                a.jobs
                    .iter()
                    .find(|j| j.jobset == js.jobset && j.system == job.system)
            });
            job_section(&mut out, policy, facts, js, job, &v, assessed);
        }
    }
    if !found {
        return None;
    }
    let _ = writeln!(out);
    if let Some(h) = assessment.holds.first() {
        let _ = writeln!(
            out,
            "  HOLD: mass breakage in {} (evals {} to {}); nothing is marked until it clears",
            h.jobset, h.window.first.id, h.window.last.id
        );
    }
    if let Some(a) = a {
        standing(&mut out, a);
        schedule(&mut out, a, now);
    } else {
        let _ = writeln!(out, "  next: nothing is scheduled");
    }
    for w in assessment.warnings.iter().filter(|w| w.attr == attr) {
        out.push_str(&super::early_warning::explain(w));
    }
    how_to_stop(&mut out, policy);
    Some(out)
}

/// Which package, under which policy, whose, and whether it is protected.
fn heading(out: &mut String, policy: &Policy, facts: &Facts, attr: &str, now: i64) {
    let _ = writeln!(out, "{attr} at {}", time(now));
    let _ = writeln!(out, "  policy: {}", policy.source);
    let maintainers = facts.maintainers.get(attr);
    let _ = writeln!(
        out,
        "  maintainers: {}",
        maintainers.map_or("unknown (no nixpkgs checkout given)".to_owned(), |m| m
            .join(", "))
    );
    if policy.is_protected(attr) {
        let _ = writeln!(
            out,
            "  protected: it is never marked broken; a long failure is escalated to {}",
            policy.protected.escalate_to.join(", ")
        );
    }
}

/// One job: its streak, its links, the rule that applies and the ladder.
fn job_section(
    out: &mut String,
    policy: &Policy,
    facts: &Facts,
    js: &JobsetFacts,
    job: &JobFacts,
    v: &JobView,
    assessed: Option<&JobAssessment>,
) {
    let _ = writeln!(
        out,
        "\n  {} in {}{}:",
        job.system,
        js.jobset,
        if v.present {
            ""
        } else {
            " (gone from the newest eval)"
        }
    );
    match assessed
        .and_then(|j| j.evidence.as_ref())
        .filter(|e| e.class != "ok")
    {
        Some(e) => failure_lines(out, e),
        None => {
            let since = v.streak.as_ref().map(|s| {
                (
                    js.evals[s.since as usize].timestamp,
                    js.evals[s.until as usize].timestamp,
                )
            });
            let _ = writeln!(
                out,
                "    {}{}",
                if v.flaky { "flaky; newest result " } else { "" },
                match since {
                    Some((from, until)) if !v.flaky && v.awaiting_cause => {
                        format!("built from {} until {}", day(from), day(until))
                    }
                    Some((t, _)) if !v.flaky => format!("builds since {}", day(t)),
                    _ => v.latest.as_str().to_owned(),
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "    job: {}",
        crate::format::HydraLinks::new(&facts.hydra_url).job(
            &js.jobset.project,
            &js.jobset.jobset,
            &job.hydra_job()
        )
    );
    let links = crate::format::HydraLinks::new(&facts.hydra_url);
    if v.awaiting_cause {
        let _ = writeln!(
            out,
            "    newest result: {} (status {}), whose cause is not read yet: {}",
            v.latest.as_str().replace('_', " "),
            job.runs
                .iter()
                .rev()
                .find(|r| r.build == v.latest_build)
                .and_then(|r| r.status)
                .map_or("?".to_owned(), |s| s.to_string()),
            links.build(v.latest_build)
        );
    }
    if let Some(Rule::Victim {
        root_build: Some(build),
        ..
    }) = assessed.map(|j| &j.rule)
    {
        let _ = writeln!(out, "    root build: {}", links.build(*build));
    }
    let text = rule_words(policy, assessed.map(|j| &j.rule));
    let _ = writeln!(out, "    rule: {text}");
    if let Some(j) = assessed
        && matches!(j.rule, Rule::Ladder(_) | Rule::NotYetReal { .. })
    {
        let which = if j.ladder.overrides.is_empty() {
            "the default ladder".to_owned()
        } else {
            format!(
                "the ladder with {}",
                j.ladder
                    .overrides
                    .iter()
                    .filter_map(|i| policy.overrides.get(i - 1))
                    .map(|o| o.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let _ = writeln!(
            out,
            "    ladder: {which}: {}",
            ladder_words(&j.ladder.ladder)
        );
    }
}

/// A failing streak's evidence: since when, how often, the last success and
/// the first failure.
fn failure_lines(out: &mut String, e: &JobEvidence) {
    let _ = writeln!(
        out,
        "    {} since {} (eval {}, revision {}), {} evals, {}",
        e.class.replace('_', " "),
        &e.since.time[..10],
        e.since.id,
        short(e.since.revision.as_deref()),
        e.evals,
        e.derivations_in_words()
    );
    if let Some(beyond) = e.before_our_records {
        let _ = writeln!(
            out,
            "    began before our records: as Hydra told it when hydra-sentinel first ingested this jobset{}",
            if beyond {
                " (at least that long: it began before the horizon looked at)"
            } else {
                ""
            }
        );
    }
    match &e.last_good {
        Some(g) => {
            let _ = writeln!(
                out,
                "    last success: eval {} on {} at revision {}",
                g.eval.id,
                &g.eval.time[..10],
                short(g.eval.revision.as_deref())
            );
        }
        None => {
            let _ = writeln!(out, "    last success: never seen");
        }
    }
    if let Some(c) = &e.compare {
        let _ = writeln!(out, "    changes between them: {c}");
    }
    let _ = writeln!(out, "    first failure: {}", e.first_build);
}

/// Where the package stands: what depends on it, marks, opt-outs, refused
/// edits, snoozes and what is due now.
fn standing(out: &mut String, a: &AttrAssessment) {
    if !a.victims.is_empty() {
        let _ = writeln!(
            out,
            "  blast radius: {} package{} fail because this one does: {}",
            a.victims.len(),
            if a.victims.len() == 1 { "" } else { "s" },
            a.victims
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(m) = &a.marked {
        let _ = writeln!(
            out,
            "  marked broken on {} ({}){}",
            m.closed_at.map(day).unwrap_or_default(),
            platforms_in_words(m.all_platforms, &m.systems),
            m.pr.map(|p| format!(", PR #{p}")).unwrap_or_default()
        );
    }
    if let Some(o) = &a.opted_out {
        let _ = writeln!(
            out,
            "  opted out by {} ({}) on {}: nothing will be done",
            o.kind.as_str(),
            o.note,
            day(o.recorded_at)
        );
    }
    for r in &a.refused {
        let _ = writeln!(
            out,
            "  {} refused by the editor on {}: {}; it has to be done by hand and is not tried again for this failure",
            r.kind,
            day(r.at()),
            r.refused.as_deref().unwrap_or_default()
        );
    }
    if let Some(u) = a.snoozed_until {
        let _ = writeln!(
            out,
            "  snoozed until {}: the clock is paused until then",
            day(u)
        );
    }
    for d in &a.due {
        let _ = writeln!(
            out,
            "  due now: {}{}{}",
            d.kind,
            d.step
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            d.system
                .as_deref()
                .map(|s| format!(" on {s}"))
                .unwrap_or_default()
        );
    }
}

/// What happens next if it keeps failing, and on which date.
fn schedule(out: &mut String, a: &AttrAssessment, now: i64) {
    let upcoming: Vec<_> = a
        .schedule
        .iter()
        // Steps due now are listed above as such.
        .filter(|s| s.at_unix > now)
        .collect();
    if upcoming.is_empty() {
        if a.due.is_empty() {
            let _ = writeln!(out, "  next: nothing is scheduled");
        }
    } else {
        let _ = writeln!(out, "  if it keeps failing:");
        for s in upcoming {
            let what = match (s.kind, s.step.as_deref()) {
                (ActionKind::Notify, _) => "first notice to the maintainers".to_owned(),
                (ActionKind::Remind, Some("retire-warning")) => {
                    "last warning before the attic".to_owned()
                }
                (ActionKind::Remind, _) => "reminder on the tracking issue".to_owned(),
                (ActionKind::MarkBroken, _) => format!(
                    "pull request marking it broken on {}{}",
                    s.systems.join(", "),
                    if s.needs_rebuild {
                        ", once Hydra has rebuilt it and it still fails"
                    } else {
                        ""
                    }
                ),
                (ActionKind::Escalate, _) => {
                    "escalation to the people named for protected packages".to_owned()
                }
                (ActionKind::Retire, _) => "pull request moving it to the attic".to_owned(),
                (kind, _) => kind.to_string(),
            };
            let _ = writeln!(out, "    {}: {what}", &s.at[..10]);
        }
    }
}

/// How a maintainer can stop it.
fn how_to_stop(out: &mut String, policy: &Policy) {
    let _ = writeln!(out, "\n  How to stop it:");
    let _ = writeln!(
        out,
        "    - fix the build: the first eval in which it builds ends the streak and closes our PR"
    );
    let _ = writeln!(
        out,
        "    - put `{}` in the package file: it is never marked or retired",
        policy.opt_out.marker
    );
    let _ = writeln!(
        out,
        "    - put the label \"{}\" on our issue or PR: the same",
        policy.opt_out.label
    );
    let _ = writeln!(
        out,
        "    - ask for a snooze: the clock pauses (at most {})",
        policy.opt_out.max_snooze
    );
    let _ = writeln!(
        out,
        "    - close our PR without merging: that step is never proposed again for this failure"
    );
}
