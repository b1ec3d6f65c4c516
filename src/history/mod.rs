//! Failure history: what a job's run of Hydra results means.
//!
//! This module owns the *meaning* of Hydra data: splitting a job name into an
//! attribute path and a system, classifying `buildstatus` codes (with what
//! Hydra's build page said: own or propagated, [`Cause`]), and turning a
//! job's run-length history (its spans of builds across evaluations) into a
//! current class and a streak.
//!
//! It is pure: no I/O, no clock, no database. The store hands it plain values
//! and it hands plain values back, so the same history always reads the same.

mod cause;
pub mod job_name;
mod rules;
mod streak;

pub use cause::{Cause, may_be_inherited, worth_reading};
pub use job_name::{JobName, JobNameError};
pub use rules::{FailureStatus, StreakRules};
pub use streak::{
    EvalPoint, JobHistory, JobView, LastSuccess, Run, Signal, Span, SpanBuild, Streak, StreakView,
    drv_digest, signal, summarize, view,
};

use serde::Serialize;

/// What a Hydra result says about the package, as far as failure tracking goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    /// Built (status 0).
    Ok,
    /// The job's own derivation failed (1, 6, 7, 10, 11, 12, and unknown codes).
    Failing,
    /// Something in the closure failed (2): the job is a victim, not a culprit.
    DependencyFailed,
    /// Aborted, cancelled or unsupported (3, 4, 9): says nothing about the package.
    Noise,
    /// Not finished yet.
    Pending,
}

impl StatusClass {
    /// Classify a Hydra build by its `finished` flag and `buildstatus`.
    ///
    /// Codes Hydra does not produce for builds any more (5, the step-only 8 and
    /// 13) and codes we do not know yet count as failures: Hydra's own UI shows
    /// any unknown code as "Failed", and a false "failing" is held back by the
    /// policy's grace periods while a false "ok" would hide a real breakage.
    pub fn from_hydra(finished: bool, buildstatus: Option<i64>) -> StatusClass {
        match (finished, buildstatus) {
            (false, _) | (true, None) => StatusClass::Pending,
            (true, Some(0)) => StatusClass::Ok,
            (true, Some(2)) => StatusClass::DependencyFailed,
            (true, Some(3 | 4 | 9)) => StatusClass::Noise,
            (true, Some(_)) => StatusClass::Failing,
        }
    }

    /// Classify a build by its status and what its Hydra build page said:
    /// a failure Hydra copied from another build's step is a dependency
    /// failure whatever its code (7, 8, 10, 11, ...).
    pub fn of(finished: bool, buildstatus: Option<i64>, cause: Cause) -> StatusClass {
        match (StatusClass::from_hydra(finished, buildstatus), cause) {
            (StatusClass::Failing, Cause::Propagated { .. }) => StatusClass::DependencyFailed,
            (class, _) => class,
        }
    }

    /// Whether a result of this class carries information about the package.
    /// Noise and pending results neither start, extend nor break a streak.
    pub fn is_signal(self) -> bool {
        matches!(
            self,
            StatusClass::Ok | StatusClass::Failing | StatusClass::DependencyFailed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Ok => "ok",
            StatusClass::Failing => "failing",
            StatusClass::DependencyFailed => "dependency_failed",
            StatusClass::Noise => "noise",
            StatusClass::Pending => "pending",
        }
    }

    pub const ALL: [StatusClass; 5] = [
        StatusClass::Ok,
        StatusClass::Failing,
        StatusClass::DependencyFailed,
        StatusClass::Noise,
        StatusClass::Pending,
    ];
}

impl std::fmt::Display for StatusClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::StatusClass::*;
    use super::*;

    #[test]
    fn own_failures_are_the_documented_codes_and_unknown_ones() {
        for code in [1, 5, 6, 7, 8, 10, 11, 12, 13, 99] {
            assert_eq!(
                StatusClass::from_hydra(true, Some(code)),
                Failing,
                "code {code}"
            );
        }
    }

    #[test]
    fn dependency_noise_pending_and_ok_are_told_apart() {
        assert_eq!(StatusClass::from_hydra(true, Some(0)), Ok);
        assert_eq!(StatusClass::from_hydra(true, Some(2)), DependencyFailed);
        for code in [3, 4, 9] {
            assert_eq!(
                StatusClass::from_hydra(true, Some(code)),
                Noise,
                "code {code}"
            );
        }
        assert_eq!(StatusClass::from_hydra(false, None), Pending);
        // A restarted build is unfinished again even if a stale status lingers.
        assert_eq!(StatusClass::from_hydra(false, Some(1)), Pending);
        assert_eq!(StatusClass::from_hydra(true, None), Pending);
    }
}
