//! One job's record as of one evaluation, under the policy's idea of which
//! failures count: its streak, its last success, whether it is flaky.
//!
//! The same rules as [`crate::history::summarize`] — noise and pending
//! results neither start, extend nor break a streak — plus the policy's
//! choice of statuses (an uncounted failure is treated like noise) and a
//! flakiness test. Works on eval indexes and never allocates per job beyond
//! a tiny derivation list, so a whole jobset is read in milliseconds.

use std::collections::BTreeSet;

use super::config::{FailureStatus, StreakRules};
use super::facts::Run;
use crate::history::StatusClass;

/// What a result says, under the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Ok,
    /// A counted own failure.
    Fail,
    /// A dependency failed (status 2).
    Dep,
    /// Noise, pending, or an own failure the policy does not count.
    Quiet,
}

pub(crate) fn signal(run: &Run, counted: &BTreeSet<FailureStatus>) -> Signal {
    match run.class() {
        StatusClass::Ok => Signal::Ok,
        StatusClass::DependencyFailed => Signal::Dep,
        StatusClass::Failing => {
            let code = run.status.unwrap_or(-1);
            if counted.contains(&FailureStatus::from_code(code)) {
                Signal::Fail
            } else {
                Signal::Quiet
            }
        }
        StatusClass::Noise | StatusClass::Pending => Signal::Quiet,
    }
}

/// The newest run of one signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreakView {
    pub signal: Signal,
    /// First and newest eval index of the run.
    pub since: u32,
    pub until: u32,
    /// Evals with this signal (quiet ones inside excluded).
    pub evals: u32,
    pub drvs: u32,
    pub first_build: i64,
    pub last_build: i64,
    /// Own-failure statuses seen in the run.
    pub statuses: BTreeSet<FailureStatus>,
    /// Whether an ok result came right before the run (a transition, not a
    /// job that never built).
    pub after_ok: bool,
}

/// A job as of the eval at index `cutoff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobView {
    /// In the eval at `cutoff`.
    pub present: bool,
    /// The class of its build in that eval (or its newest before).
    pub latest: StatusClass,
    pub latest_build: i64,
    pub streak: Option<StreakView>,
    /// Newest ok result: eval index and build.
    pub last_ok: Option<(u32, i64)>,
    /// Ok ↔ failing changes within the flaky window.
    pub flips: u32,
    pub flaky: bool,
}

/// Read a job's runs as of eval index `cutoff`. `None` if the job had no
/// build yet then.
pub(crate) fn view(runs: &[Run], cutoff: u32, rules: &StreakRules) -> Option<JobView> {
    let n = runs.partition_point(|r| r.first <= cutoff);
    if n == 0 {
        return None;
    }
    let runs = &runs[..n];
    let newest = runs[n - 1];
    let clip = |r: &Run| r.last.min(cutoff);
    let window_start = cutoff.saturating_sub(rules.flaky_window_evals.saturating_sub(1));

    let mut streak: Option<StreakView> = None;
    // Distinct derivations without a heap allocation per job: exact up to
    // 16; beyond that every further unseen one is counted.
    let mut drvs = [0u64; 16];
    let mut n_drvs = 0usize;
    let mut more_drvs = 0u32;
    let mut note = |d: u64| {
        if !drvs[..n_drvs].contains(&d) {
            if n_drvs < drvs.len() {
                drvs[n_drvs] = d;
                n_drvs += 1;
            } else {
                more_drvs += 1;
            }
        }
    };
    let mut closed = false;
    let mut last_ok = None;
    let mut flips = 0;
    let mut previous_in_window: Option<Signal> = None;
    for run in runs.iter().rev() {
        let sig = signal(run, &rules.counted);
        if sig == Signal::Quiet {
            continue;
        }
        let last = clip(run);
        if last >= window_start && sig != Signal::Dep {
            if let Some(prev) = previous_in_window
                && prev != sig
            {
                flips += 1;
            }
            previous_in_window = Some(sig);
        }
        if sig == Signal::Ok && last_ok.is_none() {
            last_ok = Some((last, run.build));
        }
        if !closed {
            match &mut streak {
                None => {
                    note(run.drv);
                    streak = Some(StreakView {
                        signal: sig,
                        since: run.first,
                        until: last,
                        evals: last - run.first + 1,
                        drvs: 0,
                        first_build: run.build,
                        last_build: run.build,
                        statuses: status_of(run, sig),
                        after_ok: false,
                    });
                }
                Some(s) if s.signal == sig => {
                    note(run.drv);
                    s.since = run.first;
                    s.evals += last - run.first + 1;
                    s.first_build = run.build;
                    s.statuses.extend(status_of(run, sig));
                }
                Some(s) => {
                    s.after_ok = sig == Signal::Ok;
                    closed = true;
                }
            }
        }
        if closed && last_ok.is_some() && last < window_start {
            break;
        }
    }
    if let Some(s) = &mut streak {
        s.drvs = u32::try_from(n_drvs).unwrap_or(u32::MAX) + more_drvs;
    }
    Some(JobView {
        present: newest.last >= cutoff,
        latest: newest.class(),
        latest_build: newest.build,
        streak,
        last_ok,
        flips,
        flaky: flips >= rules.flaky_min_flips,
    })
}

fn status_of(run: &Run, sig: Signal) -> BTreeSet<FailureStatus> {
    match (sig, run.status) {
        (Signal::Fail, Some(code)) => BTreeSet::from([FailureStatus::from_code(code)]),
        _ => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn run(first: u32, last: u32, status: Option<i64>, drv: u64) -> Run {
        Run {
            first,
            last,
            build: i64::from(first) * 10,
            finished: status.is_some(),
            status,
            drv,
        }
    }

    fn rules() -> StreakRules {
        Policy::parse("", std::path::Path::new("t")).unwrap().streak
    }

    #[test]
    fn a_streak_counts_evals_and_derivations_and_remembers_the_last_success() {
        let runs = [
            run(0, 2, Some(0), 1),
            run(3, 4, Some(1), 2),
            run(5, 5, Some(3), 3),
            run(6, 9, Some(7), 4),
        ];
        let v = view(&runs, 9, &rules()).unwrap();
        let s = v.streak.unwrap();
        assert_eq!(
            (s.signal, s.since, s.evals, s.drvs, s.after_ok),
            (Signal::Fail, 3, 6, 2, true),
            "noise in eval 5 neither breaks nor extends the streak"
        );
        assert_eq!(v.last_ok, Some((2, 0)));
        assert!(v.present && !v.flaky);
    }

    #[test]
    fn a_view_as_of_an_older_eval_ignores_what_came_later() {
        let runs = [run(0, 4, Some(0), 1), run(5, 9, Some(1), 2)];
        let v = view(&runs, 3, &rules()).unwrap();
        assert_eq!(v.streak.unwrap().signal, Signal::Ok);
        assert!(v.present);
        assert!(view(&runs, 3, &rules()).unwrap().last_ok.is_some());
    }

    #[test]
    fn an_uncounted_status_is_treated_like_noise() {
        let mut r = rules();
        r.counted.remove(&FailureStatus::TimedOut);
        let runs = [run(0, 2, Some(0), 1), run(3, 9, Some(7), 2)];
        let v = view(&runs, 9, &r).unwrap();
        assert_eq!(v.streak.unwrap().signal, Signal::Ok);
    }

    #[test]
    fn alternating_results_are_flaky() {
        let runs: Vec<Run> = (0..12)
            .map(|e| run(e, e, Some(i64::from(e % 2)), u64::from(e)))
            .collect();
        let v = view(&runs, 11, &rules()).unwrap();
        assert!(v.flaky, "flips: {}", v.flips);
    }

    #[test]
    fn a_job_missing_from_the_cutoff_eval_is_not_present() {
        let runs = [run(0, 4, Some(1), 1)];
        assert!(!view(&runs, 6, &rules()).unwrap().present);
        assert!(view(&[run(5, 6, Some(0), 1)], 3, &rules()).is_none());
    }
}
