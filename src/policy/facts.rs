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
}

/// One jobset's evaluations and jobs.
#[derive(Debug, Clone)]
pub struct JobsetFacts {
    pub jobset: JobsetRef,
    /// Oldest first; runs refer to them by index.
    pub evals: Vec<EvalPoint>,
    pub jobs: Vec<JobFacts>,
    /// Victim build → root build, when known from Hydra's "propagated from
    /// build N" (its build page, read once per build by ingest; see
    /// [`crate::history::Cause`]). The engine then charges the victim to that
    /// root; without it, to a root that started failing in the same
    /// evaluation.
    pub propagated_from: BTreeMap<i64, i64>,
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
