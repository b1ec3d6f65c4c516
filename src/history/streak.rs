//! From a job's history to its current class, its streak, its last success
//! and whether it is flaky: the one reading of a streak that `history`,
//! `explain`, the policy engine and the acting stage all share.
//!
//! Noise and pending results neither start, extend nor break a streak, and
//! neither does an own failure whose status the rules do not count. The
//! reading works on eval indexes ([`Run`]) and never allocates per job beyond
//! a tiny derivation list, so a whole jobset is read in milliseconds;
//! [`summarize`] adapts the store's spans to it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use serde::Serialize;

use super::StatusClass;
use super::cause::{Cause, may_be_inherited};
use super::rules::{FailureStatus, StreakRules};

/// One evaluation of a jobset as history needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvalPoint {
    /// Hydra's eval id.
    pub id: i64,
    /// Position of the eval in its jobset (1 for the first one ingested).
    #[serde(skip)]
    pub seq: i64,
    /// When Hydra created the eval (Unix seconds).
    pub timestamp: i64,
    /// The nixpkgs revision evaluated, when Hydra said.
    pub revision: Option<String>,
}

/// The build a job had during a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanBuild {
    pub id: i64,
    pub finished: bool,
    pub status: Option<i64>,
    /// The hash part of the derivation's store path: equal hashes, equal derivations.
    pub drv_hash: String,
    pub stoptime: Option<i64>,
    /// What its Hydra build page said, if read.
    pub cause: Cause,
}

impl SpanBuild {
    pub fn class(&self) -> StatusClass {
        StatusClass::of(self.finished, self.status, self.cause)
    }
}

/// Consecutive evaluations of a jobset in which a job had the same build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub first: EvalPoint,
    pub last: EvalPoint,
    pub build: SpanBuild,
    /// Whether the job is still in the newest eval with this build.
    pub open: bool,
}

impl Span {
    /// How many evaluations of the jobset this span covers.
    pub fn evals(&self) -> u32 {
        u32::try_from(self.last.seq - self.first.seq + 1).unwrap_or(0)
    }
}

/// A run of evaluations in which the job's signal stayed the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Streak {
    pub class: StatusClass,
    /// The first eval of the run.
    pub since: EvalPoint,
    /// The newest eval of the run.
    pub until: EvalPoint,
    /// Evaluations in which the job had this class. Noise and pending results
    /// inside the run are not counted.
    pub evals: u32,
    /// Distinct derivations that had this class during the run: one failing
    /// derivation seen in 30 evals is one failure, not thirty.
    pub distinct_drvs: u32,
    /// The build that opened the run, and the newest one, for links.
    pub first_build: i64,
    pub last_build: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastSuccess {
    /// The newest eval in which the job built.
    pub eval: EvalPoint,
    pub build: i64,
}

/// What the history of one job says now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobHistory {
    /// The class of the job's newest result, noise and pending included.
    pub class: StatusClass,
    /// The newest build, for links.
    pub latest_build: i64,
    /// False when the job is missing from the newest eval of its jobset.
    pub present: bool,
    /// The run of the newest signal (ok, failing or dependency failed).
    pub streak: Option<Streak>,
    pub last_success: Option<LastSuccess>,
    /// Alternates between building and failing (see [`StreakRules`]).
    pub flaky: bool,
    /// What the newest build's page said (the root of a dependency failure).
    pub latest_cause: Cause,
    /// The newest build failed with a code Hydra may have copied from a
    /// dependency and its page is not read yet: it is not acted on until it is.
    pub awaiting_cause: bool,
}

/// Consecutive evaluations of a jobset (by index) in which a job had one
/// build: the compact form of a [`Span`] that the policy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: u32,
    pub last: u32,
    pub build: i64,
    pub finished: bool,
    pub status: Option<i64>,
    /// A digest of the derivation path: equal digests, equal derivations.
    pub drv: u64,
    /// What the build's Hydra page said, if read.
    pub cause: Cause,
}

impl Run {
    pub fn class(&self) -> StatusClass {
        StatusClass::of(self.finished, self.status, self.cause)
    }

    /// A failure whose code Hydra may have copied from a dependency, with
    /// its build page not read yet: neither own nor a dependency's so far.
    pub fn awaits_cause(&self) -> bool {
        self.finished && self.cause == Cause::Unread && self.status.is_some_and(may_be_inherited)
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

/// What a result says, under the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Ok,
    /// A counted own failure.
    Fail,
    /// A dependency failed (status 2).
    Dep,
    /// Noise, pending, an own failure the policy does not count, or a
    /// failure whose cause is not read yet.
    Quiet,
}

impl Signal {
    /// The status class a streak of this signal has.
    pub fn class(self) -> StatusClass {
        match self {
            Signal::Ok => StatusClass::Ok,
            Signal::Fail => StatusClass::Failing,
            Signal::Dep => StatusClass::DependencyFailed,
            Signal::Quiet => StatusClass::Noise,
        }
    }
}

pub fn signal(run: &Run, counted: &BTreeSet<FailureStatus>) -> Signal {
    match run.class() {
        StatusClass::Ok => Signal::Ok,
        StatusClass::DependencyFailed => Signal::Dep,
        // Before its page says whose failure it is, a failure Hydra may
        // have copied from a dependency neither starts nor extends a streak.
        StatusClass::Failing if run.awaits_cause() => Signal::Quiet,
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
pub struct StreakView {
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
pub struct JobView {
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
    /// The newest build waits for its page to be read (see [`Run::awaits_cause`]).
    pub awaiting_cause: bool,
    /// What the newest build's page said.
    pub latest_cause: Cause,
}

impl JobView {
    /// The job builds: it is in the eval read, its newest signal is a
    /// success (noise and pending after it change nothing), and it is not
    /// flaky. The one meaning of "builds again" for closing our pull
    /// requests and tracking issues.
    pub fn builds(&self) -> bool {
        self.present && !self.flaky && self.streak.as_ref().is_some_and(|s| s.signal == Signal::Ok)
    }
}

/// Read a job's runs as of eval index `cutoff`. `None` if the job had no
/// build yet then.
pub fn view(runs: &[Run], cutoff: u32, rules: &StreakRules) -> Option<JobView> {
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
        awaiting_cause: newest.awaits_cause(),
        latest_cause: newest.cause,
    })
}

fn status_of(run: &Run, sig: Signal) -> BTreeSet<FailureStatus> {
    match (sig, run.status) {
        (Signal::Fail, Some(code)) => BTreeSet::from([FailureStatus::from_code(code)]),
        _ => BTreeSet::new(),
    }
}

/// Summarise a job's spans, given oldest first, under `rules`.
///
/// Gaps where the job was missing from an eval are transparent too (an
/// evaluation error of that attribute says nothing about its build).
/// Returns `None` for a job without spans.
pub fn summarize(spans: &[Span], rules: &StreakRules) -> Option<JobHistory> {
    let newest = spans.last()?;
    let base = spans[0].first.seq;
    let index = |seq: i64| u32::try_from(seq - base).unwrap_or(u32::MAX);
    let mut points: BTreeMap<u32, &EvalPoint> = BTreeMap::new();
    let runs: Vec<Run> = spans
        .iter()
        .map(|span| {
            points.insert(index(span.first.seq), &span.first);
            points.insert(index(span.last.seq), &span.last);
            Run {
                first: index(span.first.seq),
                last: index(span.last.seq),
                build: span.build.id,
                finished: span.build.finished,
                status: span.build.status,
                drv: drv_digest(&span.build.drv_hash),
                cause: span.build.cause,
            }
        })
        .collect();
    // An open newest span reaches the newest eval; a closed one ended before.
    let newest_index = index(newest.last.seq);
    let cutoff = if newest.open {
        newest_index
    } else {
        newest_index.saturating_add(1)
    };
    let job = view(&runs, cutoff, rules)?;
    let point = |i: u32| points[&i].clone();
    Some(JobHistory {
        class: job.latest,
        latest_build: job.latest_build,
        present: newest.open,
        streak: job.streak.map(|s| Streak {
            class: s.signal.class(),
            since: point(s.since),
            until: point(s.until.min(newest_index)),
            evals: s.evals,
            distinct_drvs: s.drvs,
            first_build: s.first_build,
            last_build: s.last_build,
        }),
        last_success: job.last_ok.map(|(i, build)| LastSuccess {
            eval: point(i),
            build,
        }),
        flaky: job.flaky,
        latest_cause: job.latest_cause,
        awaiting_cause: job.awaiting_cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn eval(seq: i64) -> EvalPoint {
        EvalPoint {
            id: 1000 + seq,
            seq,
            timestamp: 1_700_000_000 + seq * 3600,
            revision: Some(format!("rev{seq}")),
        }
    }

    /// A span from `first` to `last` (eval seqs) with a build of `status`.
    fn span(first: i64, last: i64, build: i64, status: Option<i64>, drv: &str) -> Span {
        Span {
            first: eval(first),
            last: eval(last),
            build: SpanBuild {
                id: build,
                finished: status.is_some(),
                status,
                drv_hash: drv.to_owned(),
                stoptime: None,
                cause: Cause::Own,
            },
            open: false,
        }
    }

    /// Rules that count every own failure, as the naive model does.
    fn counting_everything() -> StreakRules {
        StreakRules {
            counted: FailureStatus::NAMES.iter().map(|(_, s)| *s).collect(),
            min_evals: 3,
            min_derivations: 1,
            flaky_window_evals: 12,
            flaky_min_flips: 3,
        }
    }

    /// The shipped policy's choice: everything but not_deterministic (12).
    fn rules() -> StreakRules {
        let mut rules = counting_everything();
        rules.counted.remove(&FailureStatus::NotDeterministic);
        rules
    }

    fn run(first: u32, last: u32, status: Option<i64>, drv: u64) -> Run {
        Run {
            first,
            last,
            build: i64::from(first) * 10,
            finished: status.is_some(),
            status,
            drv,
            cause: Cause::Own,
        }
    }

    fn open(mut s: Span) -> Span {
        s.open = true;
        s
    }

    #[test]
    fn a_failure_after_success_starts_a_streak_with_its_evidence() {
        let spans = [
            span(1, 3, 10, Some(0), "a"),
            open(span(4, 6, 11, Some(1), "b")),
        ];
        let h = summarize(&spans, &counting_everything()).unwrap();
        assert_eq!(h.class, StatusClass::Failing);
        let run = h.streak.unwrap();
        assert_eq!(
            (run.class, run.since.id, run.evals, run.distinct_drvs),
            (StatusClass::Failing, 1004, 3, 1)
        );
        assert_eq!((run.first_build, run.last_build), (11, 11));
        let ok = h.last_success.unwrap();
        assert_eq!(
            (ok.eval.id, ok.eval.revision.as_deref(), ok.build),
            (1003, Some("rev3"), 10)
        );
    }

    #[test]
    fn a_rebuilt_failure_extends_the_streak_and_counts_a_new_derivation() {
        let spans = [
            span(1, 1, 10, Some(0), "a"),
            span(2, 3, 11, Some(1), "b"),
            span(4, 4, 12, Some(7), "c"),
            open(span(5, 9, 13, Some(1), "d")),
        ];
        let run = summarize(&spans, &counting_everything())
            .unwrap()
            .streak
            .unwrap();
        assert_eq!(
            (run.since.id, run.evals, run.distinct_drvs, run.first_build),
            (1002, 8, 3, 11)
        );
    }

    #[test]
    fn noise_and_pending_neither_break_nor_extend_a_streak() {
        let spans = [
            span(1, 2, 10, Some(1), "a"),
            span(3, 3, 11, Some(3), "b"),
            span(4, 4, 12, None, "c"),
            span(5, 6, 13, Some(1), "d"),
            open(span(7, 7, 14, Some(9), "e")),
        ];
        let h = summarize(&spans, &counting_everything()).unwrap();
        assert_eq!(
            h.class,
            StatusClass::Noise,
            "the newest result is still reported as it is"
        );
        let run = h.streak.unwrap();
        assert_eq!(
            (run.class, run.evals, run.distinct_drvs, run.since.id),
            (StatusClass::Failing, 4, 2, 1001)
        );
        assert!(h.last_success.is_none());
    }

    #[test]
    fn a_dependency_failure_is_its_own_streak_not_an_own_failure() {
        let spans = [
            span(1, 2, 10, Some(1), "a"),
            open(span(3, 5, 11, Some(2), "b")),
        ];
        let run = summarize(&spans, &counting_everything())
            .unwrap()
            .streak
            .unwrap();
        assert_eq!((run.class, run.evals), (StatusClass::DependencyFailed, 3));
    }

    #[test]
    fn a_job_only_ever_noisy_has_no_streak() {
        let h = summarize(
            &[open(span(1, 4, 10, Some(4), "a"))],
            &counting_everything(),
        )
        .unwrap();
        assert!(h.streak.is_none());
        assert!(h.present);
    }

    #[test]
    fn a_job_gone_from_the_newest_eval_is_not_present() {
        let h = summarize(&[span(1, 4, 10, Some(1), "a")], &counting_everything()).unwrap();
        assert!(!h.present);
    }

    /// The naive model: expand every span into one result per eval, then walk
    /// back from the newest signal.
    fn naive_streak(spans: &[Span]) -> Option<(StatusClass, i64, u32, usize)> {
        let mut results = Vec::new();
        for s in spans {
            for seq in s.first.seq..=s.last.seq {
                results.push((seq, s.build.class(), s.build.drv_hash.clone()));
            }
        }
        let signals: Vec<_> = results.into_iter().filter(|r| r.1.is_signal()).collect();
        let (_, class, _) = signals.last()?.clone();
        let run: Vec<_> = signals.iter().rev().take_while(|r| r.1 == class).collect();
        let drvs: HashSet<_> = run.iter().map(|r| r.2.clone()).collect();
        Some((class, run.last()?.0, run.len() as u32, drvs.len()))
    }

    proptest! {
        #[test]
        fn agrees_with_a_per_eval_model(
            lengths in prop::collection::vec((1i64..5, prop::option::of(0i64..13), 0usize..4), 1..12)
        ) {
            let mut spans = Vec::new();
            let mut seq = 1;
            for (i, (len, status, drv)) in lengths.iter().enumerate() {
                spans.push(span(seq, seq + len - 1, i as i64, *status, &drv.to_string()));
                seq += len;
            }
            let got = summarize(&spans, &counting_everything()).unwrap().streak.map(|s| (s.class, s.since.seq, s.evals, s.distinct_drvs as usize));
            prop_assert_eq!(got, naive_streak(&spans));
        }
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

    #[test]
    fn history_and_policy_read_an_uncounted_status_alike() {
        // not_deterministic (12) is not counted by the shipped policy: in the
        // history it is as transparent as noise, exactly as in the plan.
        let spans = [
            span(1, 2, 10, Some(0), "a"),
            open(span(3, 5, 11, Some(12), "b")),
        ];
        let h = summarize(&spans, &rules()).unwrap();
        assert_eq!(h.class, StatusClass::Failing, "the newest result as it is");
        let streak = h.streak.unwrap();
        assert_eq!((streak.class, streak.since.id), (StatusClass::Ok, 1001));
        let counted = summarize(&spans, &counting_everything()).unwrap();
        assert_eq!(counted.streak.unwrap().class, StatusClass::Failing);
    }
}
