//! What the engine knows about Hydra: per jobset its evaluations and, per
//! job, the runs of evaluations that shared one build. Plain values that the
//! store fills (or a test builds by hand); eval positions are indexes into
//! the jobset's `evals`, so no per-job copy of an eval is ever made.

use std::collections::BTreeMap;

use url::Url;

use crate::config::JobsetRef;
use crate::history::EvalPoint;
pub use crate::history::{Run, drv_digest};

/// Everything the engine reads from the store.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The Hydra instance, for links.
    pub hydra_url: Url,
    /// `owner/name` of the nixpkgs repository on GitHub whose revisions Hydra
    /// evaluates, for compare links: the configured `[github] repo`, or
    /// [`crate::config::NIXPKGS_REPOSITORY`] when none is configured.
    pub repository: String,
    pub jobsets: Vec<JobsetFacts>,
    /// Attribute → GitHub logins of its maintainers, when known (resolved
    /// from a nixpkgs checkout by [`crate::nixpkgs`]). Attributes missing
    /// here are grouped under "unknown maintainers".
    pub maintainers: BTreeMap<String, Vec<String>>,
    /// Pre-merge branch → its newest pull request on GitHub (the branch
    /// into its base), when the forge could tell: how close the branch is
    /// to landing. Shown with early warnings; decides nothing.
    pub branch_pulls: BTreeMap<JobsetRef, BranchPull>,
}

impl Facts {
    /// What the store says of `jobsets`, before anything is known of
    /// maintainers or branches.
    pub fn of_jobsets(hydra_url: &Url, repository: &str, jobsets: Vec<JobsetFacts>) -> Facts {
        Facts {
            hydra_url: hydra_url.clone(),
            repository: repository.to_owned(),
            jobsets,
            maintainers: BTreeMap::new(),
            branch_pulls: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
impl Facts {
    /// What a unit test builds by hand: `nixpkgs:trunk` on hydra.nixos.org
    /// with `evals` and `jobs`, and nothing else known.
    pub(crate) fn trunk(evals: Vec<EvalPoint>, jobs: Vec<JobFacts>) -> Facts {
        Facts {
            hydra_url: "https://hydra.nixos.org".parse().unwrap(),
            repository: crate::config::NIXPKGS_REPOSITORY.to_owned(),
            jobsets: vec![JobsetFacts {
                unlisted_building: 0,
                jobset: JobsetRef {
                    project: "nixpkgs".into(),
                    jobset: "trunk".into(),
                },
                evals,
                jobs,
                propagated_from: BTreeMap::new(),
                origins: BTreeMap::new(),
            }],
            maintainers: BTreeMap::new(),
            branch_pulls: BTreeMap::new(),
        }
    }

    /// How many runs were read, over every job (what a test compares to
    /// show that a reading was smaller).
    pub(crate) fn runs_read(&self) -> usize {
        self.jobsets
            .iter()
            .flat_map(|js| &js.jobs)
            .map(|j| j.runs.len())
            .sum()
    }
}

/// A pre-merge branch's newest pull request (e.g. `staging-next` into
/// `master`), as GitHub shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BranchPull {
    pub number: u64,
    pub title: String,
    pub url: String,
    /// The branch it goes into (`master` for staging-next, `staging` for
    /// python-updates).
    pub base: String,
    pub state: BranchPullState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchPullState {
    Open,
    Merged,
    /// Closed without merging (a new one usually follows).
    Closed,
}

impl BranchPull {
    /// In words, with a Markdown link: "[#123](…) (staging-next 2026-11-20)
    /// into `master` is open".
    pub fn in_words(&self) -> String {
        let state = match self.state {
            BranchPullState::Open => "is open: the branch has not landed yet",
            BranchPullState::Merged => "was merged: the branch landed",
            BranchPullState::Closed => "was closed without merging",
        };
        format!(
            "[#{}]({}) ({}) into `{}` {state}",
            self.number, self.url, self.title, self.base
        )
    }
}

/// One jobset's evaluations and jobs.
#[derive(Debug, Clone)]
pub struct JobsetFacts {
    pub jobset: JobsetRef,
    /// Oldest first; runs refer to them by index.
    pub evals: Vec<EvalPoint>,
    pub jobs: Vec<JobFacts>,
    /// Jobs of the newest eval left out of `jobs` because they built all
    /// through the evals a plan looks at: nothing is said of them but their
    /// number (see `Store::plan_facts`). 0 when every job is listed.
    pub unlisted_building: u32,
    /// Victim build → root build, when known from Hydra's "propagated from
    /// build N" (its build page, read once per build by ingest; see
    /// [`crate::history::Cause`]). The engine then charges the victim to that
    /// root; without it, to a root that started failing in the same
    /// evaluation.
    pub propagated_from: BTreeMap<i64, i64>,
    /// When failures already under way in the first stored eval began, by
    /// the failing build of that eval (learned from Hydra on a first
    /// install; see [`FailureOrigin`]). Empty when nothing was learned.
    pub origins: BTreeMap<i64, FailureOrigin>,
}

/// The past of a failure that was under way before our records begin, as
/// Hydra tells it: its newest successful build of the job, and the build
/// of the eval after that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureOrigin {
    /// When the failure began (Unix s): the queue time of the job's first
    /// build after its last success, i.e. when that eval ran; the horizon
    /// when it began before.
    pub since: i64,
    /// Hydra's eval where it began, when known.
    pub since_eval: Option<i64>,
    /// Evals of the failure before the first stored one.
    pub evals_before: u32,
    /// Failing derivations before the stored ones (at least).
    pub derivations_before: u32,
    /// Hydra's newest successful build of the job, the newest eval that
    /// contained it, and when it finished.
    pub last_success: Option<(i64, i64, i64)>,
    /// It began before the horizon looked at: `since` is the horizon.
    pub beyond_horizon: bool,
}

/// One job: an attribute on a system.
#[derive(Debug, Clone)]
pub struct JobFacts {
    pub attr: String,
    pub system: String,
    /// Whether Hydra's job name ends in `.system` (for links).
    pub suffixed: bool,
    /// Oldest first, not overlapping.
    pub runs: Vec<Run>,
}

impl JobFacts {
    /// The job name as Hydra spells it.
    pub fn hydra_job(&self) -> String {
        if self.suffixed {
            format!("{}.{}", self.attr, self.system)
        } else {
            self.attr.clone()
        }
    }
}
