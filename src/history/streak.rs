//! From a job's spans (consecutive evaluations that shared one build) to its
//! current class, its streak and its last success.

use std::collections::HashSet;

use serde::Serialize;

use super::StatusClass;

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
}

impl SpanBuild {
    pub fn class(&self) -> StatusClass {
        StatusClass::from_hydra(self.finished, self.status)
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
}

/// Summarise a job's spans, given oldest first.
///
/// Noise and pending spans are transparent: they neither start, extend nor
/// break a streak. So are gaps where the job was missing from an eval (an
/// evaluation error of that attribute says nothing about its build).
/// Returns `None` for a job without spans.
pub fn summarize(spans: &[Span]) -> Option<JobHistory> {
    let newest = spans.last()?;
    let mut streak: Option<Streak> = None;
    let mut drvs: HashSet<&str> = HashSet::new();
    for span in spans.iter().rev() {
        let class = span.build.class();
        if !class.is_signal() {
            continue;
        }
        match &mut streak {
            None => {
                drvs.insert(&span.build.drv_hash);
                streak = Some(Streak {
                    class,
                    since: span.first.clone(),
                    until: span.last.clone(),
                    evals: span.evals(),
                    distinct_drvs: 1,
                    first_build: span.build.id,
                    last_build: span.build.id,
                });
            }
            Some(run) if run.class == class => {
                drvs.insert(&span.build.drv_hash);
                run.since = span.first.clone();
                run.evals += span.evals();
                run.first_build = span.build.id;
            }
            Some(_) => break,
        }
    }
    if let Some(run) = &mut streak {
        run.distinct_drvs = u32::try_from(drvs.len()).unwrap_or(u32::MAX);
    }
    let last_success = spans
        .iter()
        .rev()
        .find(|span| span.build.class() == StatusClass::Ok)
        .map(|span| LastSuccess {
            eval: span.last.clone(),
            build: span.build.id,
        });
    Some(JobHistory {
        class: newest.build.class(),
        latest_build: newest.build.id,
        present: newest.open,
        streak,
        last_success,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            },
            open: false,
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
        let h = summarize(&spans).unwrap();
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
        let run = summarize(&spans).unwrap().streak.unwrap();
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
        let h = summarize(&spans).unwrap();
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
        let run = summarize(&spans).unwrap().streak.unwrap();
        assert_eq!((run.class, run.evals), (StatusClass::DependencyFailed, 3));
    }

    #[test]
    fn a_job_only_ever_noisy_has_no_streak() {
        let h = summarize(&[open(span(1, 4, 10, Some(4), "a"))]).unwrap();
        assert!(h.streak.is_none());
        assert!(h.present);
    }

    #[test]
    fn a_job_gone_from_the_newest_eval_is_not_present() {
        let h = summarize(&[span(1, 4, 10, Some(1), "a")]).unwrap();
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
            let got = summarize(&spans).unwrap().streak.map(|s| (s.class, s.since.seq, s.evals, s.distinct_drvs as usize));
            prop_assert_eq!(got, naive_streak(&spans));
        }
    }
}
