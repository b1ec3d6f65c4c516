//! The plan: what should happen now, each action with its reason in words
//! and its evidence as data. The JSON shape is an interface (the forge and
//! scripts read it).

use std::fmt::Write as _;

use serde::Serialize;

use super::ledger::ActionKind;
use crate::format::time;

/// What the engine decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The moment it was planned for (Unix s).
    pub now: i64,
    /// A mass breakage pauses every per-package action.
    pub held: bool,
    /// In order: holds, then by kind, attribute and step.
    pub actions: Vec<Action>,
    /// Actions due now but held back by a limit or a hold, with why.
    pub deferred: Vec<Deferred>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub kind: ActionKind,
    /// `None` for a hold.
    pub attr: Option<String>,
    /// Sorted.
    pub systems: Vec<String>,
    /// For mark_broken: every platform the package is built on fails.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub all_platforms: bool,
    /// Which rung: `notice`, `remind-7d`, `retire-warning`, ... (the
    /// ledger's `step`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Actions with the same batch go into one pull request; a stable key
    /// the forge can turn into a branch name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    pub reason: String,
    pub evidence: Evidence,
}

/// The evidence behind an action.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobset: Option<String>,
    /// Per failing job (system).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobEvidence>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub maintainers: Vec<String>,
    /// When the next step comes if nothing changes (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<NextStep>,
    /// The pull request concerned (close_pr, retire).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    /// People an escalation is for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub escalate_to: Vec<String>,
    /// Jobs failing with "dependency failed" charged to this package.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<u32>,
    /// For a warning about a victim: the dependency whose failure it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// For a warning: the branch's newest pull request into its base.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_pull: Option<super::facts::BranchPull>,
    /// Ledger records this builds on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ledger: Vec<i64>,
    /// For a hold: the eval window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowEvidence>,
    /// How to stop it, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_out: Option<String>,
    /// What comes next and when if nothing changes, earliest first: the
    /// dates a notice promises.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduledStep>,
}

/// One step still to come for a package if it keeps failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledStep {
    pub kind: ActionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// RFC 3339.
    pub at: String,
    #[serde(skip)]
    pub at_unix: i64,
    /// The platforms it concerns.
    pub systems: Vec<String>,
    /// Those are all the platforms the package is built on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub all_platforms: bool,
    /// A mark also waits until Hydra has rebuilt the package (a new
    /// derivation) and it still fails.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needs_rebuild: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextStep {
    pub kind: ActionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub at: String,
    #[serde(skip)]
    pub at_unix: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvalRef {
    pub id: i64,
    pub time: String,
    pub revision: Option<String>,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobEvidence {
    pub system: String,
    /// `failing`, `dependency_failed`, ...
    pub class: String,
    pub job_url: String,
    /// First failing eval of the streak.
    pub since: EvalRef,
    /// The failure began before our records, and `since` is what Hydra told
    /// of it when hydra-sentinel was installed: `Some(false)`; `Some(true)`
    /// when it began even before the horizon looked at ("at least").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_our_records: Option<bool>,
    pub evals: u32,
    pub derivations: u32,
    /// Own-failure statuses seen: `failed`, `timed_out`, ...
    pub statuses: Vec<String>,
    pub first_build: String,
    pub last_build: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_good: Option<LastGood>,
    /// `https://github.com/{Facts::repository}/compare/GOOD...BAD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
}

impl JobEvidence {
    /// "2 distinct derivations (failed, timed_out)": how many derivations
    /// failed in the streak, and how.
    pub fn derivations_in_words(&self) -> String {
        format!(
            "{} distinct derivation{}{}",
            self.derivations,
            if self.derivations == 1 { "" } else { "s" },
            if self.statuses.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.statuses.join(", "))
            }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastGood {
    pub eval: EvalRef,
    pub build: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowEvidence {
    /// The last eval before the window (all good then).
    pub before: EvalRef,
    pub first: EvalRef,
    pub last: EvalRef,
    /// Jobs that turned from ok to failing in the window and still fail.
    pub newly_failing: u32,
    /// Jobs in the jobset's newest eval.
    pub jobs: u32,
    pub share: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
    /// A few of them, for a human to look at.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deferred {
    pub action: Action,
    pub why: String,
}

/// The compare link between two revisions of `repository` (`owner/name`).
/// Platforms as a maintainer reads them: "every platform" when the action
/// is about all of them (or names none), else the list.
pub fn platforms_in_words(all: bool, systems: &[String]) -> String {
    if all || systems.is_empty() {
        "every platform".to_owned()
    } else {
        systems.join(", ")
    }
}

pub fn compare_url(repository: &str, good: &str, bad: &str) -> String {
    format!("https://github.com/{repository}/compare/{good}...{bad}")
}

impl Plan {
    /// The count of actions of one kind.
    pub fn count(&self, kind: ActionKind) -> usize {
        self.actions.iter().filter(|a| a.kind == kind).count()
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan at {}: {} action{}{}, {} deferred",
            time(self.now),
            self.actions.len(),
            if self.actions.len() == 1 { "" } else { "s" },
            if self.held {
                " (HELD: mass breakage)"
            } else {
                ""
            },
            self.deferred.len()
        );
        if self.actions.is_empty() {
            let _ = writeln!(out, "  nothing to do");
        }
        for a in &self.actions {
            let _ = writeln!(
                out,
                "  {:<12} {:<36} {:<28} {}",
                a.kind.as_str(),
                a.attr.as_deref().unwrap_or("-"),
                if a.all_platforms {
                    "all platforms".to_owned()
                } else {
                    a.systems.join(",")
                },
                a.reason
            );
        }
        if !self.deferred.is_empty() {
            let _ = writeln!(out, "Deferred:");
            for d in &self.deferred {
                let _ = writeln!(
                    out,
                    "  {:<12} {:<36} {}",
                    d.action.kind.as_str(),
                    d.action.attr.as_deref().unwrap_or("-"),
                    d.why
                );
            }
        }
        out
    }
}
