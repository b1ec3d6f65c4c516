//! The ledger: what hydra-sentinel has done (or set out to do) and what
//! humans asked of it. The forge side writes it — an intent before every
//! outward action, then its result — and the engine only reads it.
//!
//! Stored in the `actions` and `opt_outs` tables (schema version 2) by the
//! store (`record_intent`, `record_result`, `ledger`), which depends on
//! these types; they depend on nothing of the store's.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A mass breakage pauses everything; names the eval window.
    Hold,
    /// A package's PR should be closed: the package builds again.
    ClosePr,
    /// A protected package would be marked: tell the people named instead.
    Escalate,
    /// Open (or add to) a PR retiring a long-broken package to the attic.
    Retire,
    /// Open (or add to) a PR marking a package broken on some platforms.
    MarkBroken,
    /// Remind maintainers before the next step.
    Remind,
    /// First notice to maintainers.
    Notify,
    /// A heads-up: the package fails on a pre-merge branch (staging-next)
    /// but builds on trunk. Never a mark, a retirement or a deadline; its
    /// steps are in [`super::early_warning`].
    Warn,
}

impl ActionKind {
    pub const ALL: [ActionKind; 8] = [
        ActionKind::Hold,
        ActionKind::ClosePr,
        ActionKind::Escalate,
        ActionKind::Retire,
        ActionKind::MarkBroken,
        ActionKind::Remind,
        ActionKind::Notify,
        ActionKind::Warn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Hold => "hold",
            ActionKind::ClosePr => "close_pr",
            ActionKind::Escalate => "escalate",
            ActionKind::Retire => "retire",
            ActionKind::MarkBroken => "mark_broken",
            ActionKind::Remind => "remind",
            ActionKind::Notify => "notify",
            ActionKind::Warn => "warn",
        }
    }

    /// Whether this action opens a pull request.
    pub fn opens_pr(self) -> bool {
        matches!(self, ActionKind::MarkBroken | ActionKind::Retire)
    }

    /// Whether this action mentions maintainers.
    pub fn pings(self) -> bool {
        matches!(self, ActionKind::Notify | ActionKind::Remind)
    }
}

impl FromStr for ActionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown action kind {s:?}"))
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a recorded action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Written before acting; no result yet (in flight, or the process died:
    /// the forge reconciles by its deterministic branch names and markers).
    Intent,
    /// Done (a comment posted, an issue opened, a PR closed).
    Done,
    /// It failed; the engine will plan it again.
    Failed,
    /// A pull request is open.
    Open,
    /// The pull request was merged.
    Merged,
    /// The pull request was closed without merging: a human said no, and
    /// the same step is never proposed again for the same failure.
    Closed,
}

impl RecordState {
    pub const ALL: [RecordState; 6] = [
        RecordState::Intent,
        RecordState::Done,
        RecordState::Failed,
        RecordState::Open,
        RecordState::Merged,
        RecordState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Intent => "intent",
            RecordState::Done => "done",
            RecordState::Failed => "failed",
            RecordState::Open => "open",
            RecordState::Merged => "merged",
            RecordState::Closed => "closed",
        }
    }

    /// Whether the action happened or may have (everything but a failure).
    pub fn counts(self) -> bool {
        self != RecordState::Failed
    }
}

impl FromStr for RecordState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown record state {s:?}"))
    }
}

/// One action in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub id: i64,
    pub kind: ActionKind,
    /// `None` for a hold.
    pub attr: Option<String>,
    /// The systems it was about, sorted.
    pub systems: Vec<String>,
    /// For a mark: whether it was on every platform.
    pub all_platforms: bool,
    /// Which rung: `notice`, `remind-7d`, `retire-warning`, ...
    pub step: Option<String>,
    /// The PR batch it belongs to (see [`super::Action::batch`]).
    pub batch: Option<String>,
    pub state: RecordState,
    /// When the intent was written (Unix s).
    pub planned_at: i64,
    /// When it was done (comment posted, PR opened).
    pub done_at: Option<i64>,
    /// When its PR was merged or closed.
    pub closed_at: Option<i64>,
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    /// GitHub logins it mentioned.
    pub pinged: Vec<String>,
    pub error: Option<String>,
    /// The nixpkgs editor refused the edit (the reason): it has to be made
    /// by hand, and is not proposed again for this failure.
    pub refused: Option<String>,
}

impl ActionRecord {
    /// When it took effect: done, or (while in flight) planned.
    pub fn at(&self) -> i64 {
        self.done_at.unwrap_or(self.planned_at)
    }

    pub fn covers(&self, system: &str) -> bool {
        self.all_platforms || self.systems.iter().any(|s| s == system)
    }
}

/// How a maintainer asked hydra-sentinel to leave a package alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOutKind {
    /// The policy's marker comment is in the package file.
    Marker,
    /// The policy's label is on one of our PRs or issues.
    Label,
    /// "Not now": lasts until a date, at most the policy's `max_snooze`.
    Snooze,
}

impl OptOutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OptOutKind::Marker => "marker",
            OptOutKind::Label => "label",
            OptOutKind::Snooze => "snooze",
        }
    }
}

impl FromStr for OptOutKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [OptOutKind::Marker, OptOutKind::Label, OptOutKind::Snooze]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown opt-out kind {s:?}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOut {
    pub id: i64,
    pub attr: String,
    pub kind: OptOutKind,
    pub recorded_at: i64,
    /// For a snooze, the date asked for (clamped by the policy).
    pub until: Option<i64>,
    /// Who asked, when known (a GitHub login).
    pub by: Option<String>,
    /// Where: a file path, a PR number, a comment link.
    pub note: String,
    /// When the marker or label was seen gone; `None` while in force.
    pub revoked_at: Option<i64>,
}

/// The whole ledger, as the engine reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub actions: Vec<ActionRecord>,
    pub opt_outs: Vec<OptOut>,
}

impl Ledger {
    /// Records about `attr`, oldest first.
    pub fn for_attr<'a>(&'a self, attr: &'a str) -> impl Iterator<Item = &'a ActionRecord> + 'a {
        self.actions
            .iter()
            .filter(move |r| r.attr.as_deref() == Some(attr))
    }
}
