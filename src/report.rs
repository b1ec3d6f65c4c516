//! What `status` and `history` print: text for people, JSON for scripts.
//!
//! Owns: the shape of those outputs (the JSON keys are an interface scripts
//! rely on). Times and Hydra links come from [`crate::format`] (re-exported
//! here for the binary and the tests that print them alike).
//!
//! Must never: query anything. It renders values the store already read.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub use crate::format::{HydraLinks, time};
use crate::history::{EvalPoint, StatusClass};
use crate::store::{JobRecord, JobsetSummary};

fn day(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("@{unix}"))
}

pub fn status_json(summaries: &[JobsetSummary]) -> Value {
    let jobsets: Vec<Value> = summaries
        .iter()
        .map(|s| {
            let jobs: serde_json::Map<String, Value> = StatusClass::ALL
                .iter()
                .map(|c| {
                    (
                        c.as_str().to_owned(),
                        json!(s.jobs.get(c).copied().unwrap_or(0)),
                    )
                })
                .collect();
            json!({
                "project": s.project,
                "jobset": s.jobset,
                "evals": s.evals,
                "latest_eval": s.latest_eval.as_ref().map(|e| json!({
                    "id": e.id,
                    "time": time(e.timestamp),
                    "timestamp": e.timestamp,
                    "revision": e.revision,
                })),
                "jobs": jobs,
                "rejected_jobs": s.rejected_jobs,
                "renamed_to": s.renamed_to,
            })
        })
        .collect();
    json!({ "jobsets": jobsets })
}

pub fn status_text(summaries: &[JobsetSummary]) -> String {
    let mut out = String::new();
    if summaries.is_empty() {
        out.push_str("No jobsets ingested yet.\n");
    }
    for s in summaries {
        let _ = writeln!(out, "{}:{}", s.project, s.jobset);
        if let Some(new) = &s.renamed_to {
            let _ = writeln!(
                out,
                "  renamed on Hydra   now {}:{new}; the history continues here. Set jobset = {new:?} in [[jobsets]] of the configuration",
                s.project
            );
        }
        let _ = writeln!(out, "  evals stored       {}", s.evals);
        match &s.latest_eval {
            Some(e) => {
                let rev = e
                    .revision
                    .as_deref()
                    .map(|r| &r[..r.len().min(12)])
                    .unwrap_or("?");
                let _ = writeln!(
                    out,
                    "  newest eval        {} at {} (revision {rev})",
                    e.id,
                    time(e.timestamp)
                );
            }
            None => {
                let _ = writeln!(out, "  newest eval        none");
            }
        }
        let _ = writeln!(out, "  jobs in newest eval:");
        for class in StatusClass::ALL {
            let _ = writeln!(
                out,
                "    {:<18} {}",
                class.as_str(),
                s.jobs.get(&class).copied().unwrap_or(0)
            );
        }
        if s.rejected_jobs > 0 {
            let _ = writeln!(
                out,
                "  refused job names  {} (not attribute paths; see the log)",
                s.rejected_jobs
            );
        }
    }
    out
}

fn eval_json(point: &EvalPoint) -> Value {
    json!({"id": point.id, "time": time(point.timestamp), "revision": point.revision})
}

pub fn history_json(attr: &str, records: &[JobRecord], links: &HydraLinks) -> Value {
    let jobs: Vec<Value> = records
        .iter()
        .map(|r| {
            let h = &r.history;
            json!({
                "project": r.jobset.project,
                "jobset": r.jobset.jobset,
                "system": r.name.system,
                "class": h.class,
                "present": h.present,
                "flaky": h.flaky,
                "latest_cause": h.latest_cause,
                "awaiting_cause": h.awaiting_cause,
                "root": r.root.as_ref().map(|root| json!({
                    "build": root.build,
                    "attr": root.attr,
                    "system": root.system,
                    "link": links.build(root.build),
                })),
                "streak": h.streak.as_ref().map(|s| json!({
                    "class": s.class,
                    "since": time(s.since.timestamp),
                    "since_eval": s.since.id,
                    "since_revision": s.since.revision,
                    "evals": s.evals,
                    "distinct_drvs": s.distinct_drvs,
                    "first_build": s.first_build,
                    "last_build": s.last_build,
                })),
                "last_success": h.last_success.as_ref().map(|ok| json!({
                    "eval": ok.eval.id,
                    "revision": ok.eval.revision,
                    "time": time(ok.eval.timestamp),
                    "build": ok.build,
                })),
                "links": {
                    "job": links.job(&r.jobset.project, &r.jobset.jobset, &r.name.hydra_job()),
                    "latest_build": links.build(h.latest_build),
                    "streak_first_build": h.streak.as_ref().map(|s| links.build(s.first_build)),
                    "streak_first_eval": h.streak.as_ref().map(|s| links.eval(s.since.id)),
                    "last_success_build": h.last_success.as_ref().map(|ok| links.build(ok.build)),
                },
                "spans": r.spans.iter().map(|s| json!({
                    "first_eval": eval_json(&s.first),
                    "last_eval": eval_json(&s.last),
                    "build": s.build.id,
                    "class": s.build.class(),
                    "status": s.build.status,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "attr": attr, "jobs": jobs })
}

pub fn history_text(attr: &str, records: &[JobRecord], links: &HydraLinks) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{attr}");
    for r in records {
        let h = &r.history;
        let gone = if h.present {
            ""
        } else {
            " (gone from the newest eval)"
        };
        let flaky = if h.flaky {
            " (flaky: it alternates between building and failing)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} in {}:{}: {}{gone}{flaky}",
            r.name.system, r.jobset.project, r.jobset.jobset, h.class
        );
        match &h.streak {
            Some(s) if s.class == StatusClass::Ok => {
                let _ = writeln!(
                    out,
                    "    building since {} (eval {}, {} evals)",
                    day(s.since.timestamp),
                    s.since.id,
                    s.evals
                );
            }
            Some(s) => {
                let what = if s.class == StatusClass::Failing {
                    "failing"
                } else {
                    "dependency failed"
                };
                let _ = writeln!(
                    out,
                    "    {what} since {} (eval {}), {} evals, {} distinct derivation{}",
                    day(s.since.timestamp),
                    s.since.id,
                    s.evals,
                    s.distinct_drvs,
                    if s.distinct_drvs == 1 { "" } else { "s" }
                );
                let _ = writeln!(out, "    first failure      {}", links.build(s.first_build));
                let _ = writeln!(out, "    newest failure     {}", links.build(s.last_build));
            }
            None if h.awaiting_cause => {}

            None => {
                let _ = writeln!(out, "    no signal yet (only pending or infra results)");
            }
        }
        if let Some(root) = &r.root {
            let job = match (&root.attr, &root.system) {
                (Some(attr), Some(system)) => format!("{attr} on {system}, "),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "    root               {job}{} (Hydra: \"propagated from build {}\")",
                links.build(root.build),
                root.build
            );
        }
        if h.awaiting_cause {
            let _ = writeln!(
                out,
                "    cause not read yet {}: its status may be a dependency's; not acted on until its Hydra page is read",
                links.build(h.latest_build)
            );
        }
        match &h.last_success {
            Some(ok) => {
                let rev = ok.eval.revision.as_deref().unwrap_or("?");
                let _ = writeln!(
                    out,
                    "    last success       eval {} on {} at {rev} ({})",
                    ok.eval.id,
                    day(ok.eval.timestamp),
                    links.build(ok.build)
                );
            }
            None => {
                let _ = writeln!(out, "    last success       never seen");
            }
        }
        let _ = writeln!(
            out,
            "    job                {}",
            links.job(&r.jobset.project, &r.jobset.jobset, &r.name.hydra_job())
        );
    }
    out
}
