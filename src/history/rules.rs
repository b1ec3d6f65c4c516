//! Which Hydra failures count toward a streak, and when a job is flaky:
//! the knobs of the one streak reading in [`super::streak`]. The policy file
//! sets them (`[streak]`); everything that reads a streak takes them.

use std::collections::BTreeSet;

/// Hydra's own-failure statuses, by name. Which of them count toward a
/// streak is a policy choice; an uncounted one is treated like noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureStatus {
    /// 1: the build failed.
    Failed,
    /// 6: failed, with output kept.
    FailedWithOutput,
    /// 7: timed out.
    TimedOut,
    /// 10: log size limit exceeded.
    LogLimitExceeded,
    /// 11: output size limit exceeded.
    OutputLimitExceeded,
    /// 12: not deterministic (a `--check` build differed).
    NotDeterministic,
    /// Any code Hydra does not document for builds (5, 8, 13, new ones).
    Unknown,
}

impl FailureStatus {
    pub const NAMES: [(&'static str, FailureStatus); 7] = [
        ("failed", FailureStatus::Failed),
        ("failed_with_output", FailureStatus::FailedWithOutput),
        ("timed_out", FailureStatus::TimedOut),
        ("log_limit_exceeded", FailureStatus::LogLimitExceeded),
        ("output_limit_exceeded", FailureStatus::OutputLimitExceeded),
        ("not_deterministic", FailureStatus::NotDeterministic),
        ("unknown", FailureStatus::Unknown),
    ];

    /// The status of an own-failure code (codes 0, 2, 3, 4 and 9 are not
    /// own failures; they map to `Unknown` only if asked, which callers don't).
    pub fn from_code(code: i64) -> FailureStatus {
        match code {
            1 => FailureStatus::Failed,
            6 => FailureStatus::FailedWithOutput,
            7 => FailureStatus::TimedOut,
            10 => FailureStatus::LogLimitExceeded,
            11 => FailureStatus::OutputLimitExceeded,
            12 => FailureStatus::NotDeterministic,
            _ => FailureStatus::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        FailureStatus::NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("unknown", |(n, _)| n)
    }
}

#[derive(Debug, Clone)]
pub struct StreakRules {
    /// Own-failure statuses that count; others are treated like noise.
    pub counted: BTreeSet<FailureStatus>,
    /// Evaluations with a counted failure before a streak is real.
    pub min_evals: u32,
    /// Distinct failing derivations before a streak is real.
    pub min_derivations: u32,
    /// A job whose signal changed between ok and failing at least
    /// `flaky_min_flips` times in its last `flaky_window_evals` signal
    /// evaluations is flaky: it has no streak.
    pub flaky_window_evals: u32,
    pub flaky_min_flips: u32,
}
