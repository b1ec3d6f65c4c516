//! What the engine knows about Hydra: per jobset its evaluations and, per
//! job, the runs of evaluations that shared one build. Plain values that the
//! store fills (or a test builds by hand); eval positions are indexes into
//! the jobset's `evals`, so no per-job copy of an eval is ever made.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use url::Url;

use crate::config::JobsetRef;
use crate::history::{EvalPoint, StatusClass};

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
    /// build N" (an optional, cached fetch of the build page; the store may
    /// leave this empty). The engine then charges the victim to that root;
    /// without it, to a root that started failing in the same evaluation.
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

/// Consecutive evaluations `first..=last` (indexes into the jobset's evals)
/// in which a job had one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: u32,
    pub last: u32,
    pub build: i64,
    pub finished: bool,
    pub status: Option<i64>,
    /// A digest of the derivation path: equal digests, equal derivations.
    pub drv: u64,
}

impl Run {
    pub fn class(&self) -> StatusClass {
        StatusClass::from_hydra(self.finished, self.status)
    }
}

/// A stable digest of a derivation hash string (the same on every run and
/// machine: the hasher has fixed keys).
pub fn drv_digest(drv_hash: &str) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    drv_hash.hash(&mut h);
    h.finish()
}
