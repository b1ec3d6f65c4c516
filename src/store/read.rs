//! Reading the state back as plain values.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Context, Store, StoreError};
use crate::config::JobsetRef;
use crate::history::{self, EvalPoint, JobHistory, JobName, Span, SpanBuild, StatusClass};

/// A build whose failure (or noise) a restart may change.
const FAILED: &str = "b.finished = 1 AND b.status != 0";

/// The newest stored eval of a jobset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEval {
    pub id: i64,
    #[serde(skip)]
    pub seq: i64,
    pub timestamp: i64,
    pub revision: Option<String>,
    /// Builds of the eval that were stored (refused ones excluded).
    #[serde(skip)]
    pub nr_builds: i64,
}

/// Counts for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobsetSummary {
    pub project: String,
    pub jobset: String,
    pub evals: i64,
    pub latest_eval: Option<StoredEval>,
    /// Jobs in the newest eval by the class of their build.
    pub jobs: BTreeMap<StatusClass, i64>,
    /// Job names refused in the newest eval.
    pub rejected_jobs: i64,
    /// The name Hydra gives the jobset now, when it was renamed there and
    /// the configuration still uses the old one.
    pub renamed_to: Option<String>,
}

/// One job's identity and what its history says.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub jobset: JobsetRef,
    pub name: JobName,
    pub history: JobHistory,
    pub spans: Vec<Span>,
    /// The build Hydra's page named as the one that failed, when the newest
    /// build's failure was propagated, with the job it belongs to if stored.
    pub root: Option<RootBuild>,
}

/// The root of a propagated failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootBuild {
    pub build: i64,
    /// Attribute and system, when the build is one of the stored jobs'.
    pub attr: Option<String>,
    pub system: Option<String>,
}

impl Store {
    pub fn newest_eval(&self, jobset_id: i64) -> Result<Option<StoredEval>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, seq, timestamp, revision, nr_builds FROM evals WHERE jobset_id = ?1 ORDER BY seq DESC LIMIT 1",
                [jobset_id],
                |r| {
                    Ok(StoredEval {
                        id: r.get(0)?,
                        seq: r.get(1)?,
                        timestamp: r.get(2)?,
                        revision: r.get(3)?,
                        nr_builds: r.get(4)?,
                    })
                },
            )
            .optional()
            .context("reading the newest eval")
    }

    /// Per jobset: evals stored, the newest one, and its jobs per class.
    pub fn jobset_summaries(&self) -> Result<Vec<JobsetSummary>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, project, name, renamed_to FROM jobsets ORDER BY project, name")
            .context("listing jobsets")?;
        let jobsets: Vec<(i64, String, String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .context("listing jobsets")?
            .collect::<Result<_, _>>()
            .context("listing jobsets")?;
        let mut summaries = Vec::new();
        for (id, project, jobset, renamed_to) in jobsets {
            let (evals, rejected_jobs): (i64, i64) = self
                .conn
                .query_row(
                    "SELECT count(*), coalesce((SELECT rejected_jobs FROM evals WHERE jobset_id = ?1
                                                ORDER BY seq DESC LIMIT 1), 0)
                     FROM evals WHERE jobset_id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .context("counting evals")?;
            let mut jobs: BTreeMap<StatusClass, i64> =
                StatusClass::ALL.iter().map(|c| (*c, 0)).collect();
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT b.finished, b.status, c.cause, c.propagated_from, count(*)
                     FROM jobs j JOIN spans s INDEXED BY spans_open ON s.job_id = j.id
                     JOIN builds b ON b.id = s.build_id
                     LEFT JOIN build_causes c ON c.build_id = b.id AND c.status = b.status
                     WHERE j.jobset_id = ?1 AND s.last_seq IS NULL
                     GROUP BY b.finished, b.status, c.cause, c.propagated_from IS NULL",
                )
                .context("counting jobs")?;
            let rows = stmt
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, bool>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        super::causes::cause_of(r.get(2)?, r.get(3)?),
                        r.get::<_, i64>(4)?,
                    ))
                })
                .context("counting jobs")?;
            for row in rows {
                let (finished, status, cause, n) = row.context("counting jobs")?;
                *jobs
                    .entry(StatusClass::of(finished, status, cause))
                    .or_default() += n;
            }
            summaries.push(JobsetSummary {
                project,
                jobset,
                evals,
                latest_eval: self.newest_eval(id)?,
                jobs,
                rejected_jobs,
                renamed_to,
            });
        }
        Ok(summaries)
    }

    /// Every job of attribute `attr`, in every jobset and on every system.
    /// Streaks are read under `rules` (the policy's `[streak]`), so that
    /// `history` says what the policy sees.
    pub fn jobs_by_attr(
        &self,
        attr: &str,
        rules: &history::StreakRules,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT j.id, j.jobset_id, js.project, js.name, j.attr, j.system, j.suffixed
                 FROM jobs j JOIN jobsets js ON js.id = j.jobset_id
                 WHERE j.attr = ?1 ORDER BY js.project, js.name, j.system",
            )
            .context("finding jobs")?;
        let jobs: Vec<(i64, i64, JobsetRef, JobName)> = stmt
            .query_map([attr], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    JobsetRef {
                        project: r.get(2)?,
                        jobset: r.get(3)?,
                    },
                    JobName {
                        attr: r.get(4)?,
                        system: r.get(5)?,
                        suffixed: r.get(6)?,
                    },
                ))
            })
            .context("finding jobs")?
            .collect::<Result<_, _>>()
            .context("finding jobs")?;
        let mut records = Vec::new();
        for (job_id, jobset_id, jobset, name) in jobs {
            let spans = self.spans(jobset_id, job_id)?;
            if let Some(history) = history::summarize(&spans, rules) {
                let root = match history.latest_cause.root() {
                    Some(build) => Some(self.root_build(build)?),
                    None => None,
                };
                records.push(JobRecord {
                    jobset,
                    name,
                    history,
                    spans,
                    root,
                });
            }
        }
        Ok(records)
    }

    /// Build `build` and, if it is a stored job's, that job.
    fn root_build(&self, build: i64) -> Result<RootBuild, StoreError> {
        let job: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT j.attr, j.system FROM builds b JOIN jobs j ON j.id = b.job_id WHERE b.id = ?1",
                [build],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .context("finding a root build's job")?;
        let (attr, system) = job.unzip();
        Ok(RootBuild {
            build,
            attr,
            system,
        })
    }

    /// A job's spans, oldest first, with their evals resolved; each with its
    /// build as that span saw it (the version before a restart or repoint
    /// for the evals before it).
    pub fn spans(&self, jobset_id: i64, job_id: i64) -> Result<Vec<Span>, StoreError> {
        let Some(newest) = self.newest_eval(jobset_id)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.last_seq IS NULL, s.build_id, s.finished, s.status, s.drv_hash, s.stoptime,
                        fe.id, fe.seq, fe.timestamp, fe.revision, le.id, le.seq, le.timestamp, le.revision,
                        c.cause, c.propagated_from
                 FROM span_builds s
                 LEFT JOIN build_causes c ON c.build_id = s.build_id AND c.status = s.status
                 JOIN evals fe ON fe.jobset_id = ?1 AND fe.seq = s.first_seq
                 JOIN evals le ON le.jobset_id = ?1 AND le.seq = coalesce(s.last_seq, ?3)
                 WHERE s.job_id = ?2 ORDER BY s.first_seq",
            )
            .context("reading spans")?;
        let rows = stmt
            .query_map(params![jobset_id, job_id, newest.seq], |r| {
                Ok(Span {
                    open: r.get(0)?,
                    build: SpanBuild {
                        id: r.get(1)?,
                        finished: r.get(2)?,
                        status: r.get(3)?,
                        drv_hash: r.get(4)?,
                        stoptime: r.get(5)?,
                        cause: super::causes::cause_of(r.get(14)?, r.get(15)?),
                    },
                    first: EvalPoint {
                        id: r.get(6)?,
                        seq: r.get(7)?,
                        timestamp: r.get(8)?,
                        revision: r.get(9)?,
                    },
                    last: EvalPoint {
                        id: r.get(10)?,
                        seq: r.get(11)?,
                        timestamp: r.get(12)?,
                        revision: r.get(13)?,
                    },
                })
            })
            .context("reading spans")?;
        rows.collect::<Result<_, _>>().context("reading spans")
    }

    /// Unfinished builds of the jobset's newest eval last asked about at or
    /// before `asked_before` (Unix s), at most `limit`: least recently asked
    /// first, then lowest id (Hydra's queue runner prefers older builds, so
    /// the lowest ids are the likeliest to have finished). A build still
    /// queued goes to the back, so the window moves on.
    pub fn unfinished_builds(
        &self,
        jobset_id: i64,
        asked_before: i64,
        limit: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT b.id FROM jobs j JOIN spans s INDEXED BY spans_open ON s.job_id = j.id
                 JOIN builds b ON b.id = s.build_id
                 WHERE j.jobset_id = ?1 AND s.last_seq IS NULL
                   AND b.finished = 0 AND coalesce(b.fetched_at, 0) <= ?2
                 ORDER BY coalesce(b.fetched_at, 0), b.id LIMIT ?3",
            )
            .context("finding unfinished builds")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![jobset_id, asked_before, limit], |r| r.get(0))
            .context("finding unfinished builds")?;
        rows.collect::<Result<_, _>>()
            .context("finding unfinished builds")
    }

    /// Failed (or noisy) builds of the jobset's newest eval with an id above
    /// `after`, lowest first, at most `limit`: the next part of a round.
    pub fn failed_builds_after(
        &self,
        jobset_id: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<i64>, StoreError> {
        self.newest_builds(jobset_id, FAILED, after, limit)
    }

    /// How many failed builds of the newest eval a round has still to go.
    pub fn failed_builds_left(&self, jobset_id: i64, after: i64) -> Result<usize, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT count(*) FROM jobs j JOIN spans s INDEXED BY spans_open ON s.job_id = j.id
                 JOIN builds b ON b.id = s.build_id
                 WHERE j.jobset_id = ?1 AND s.last_seq IS NULL AND b.id > ?2 AND {FAILED}"),
                [jobset_id, after],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
            .context("counting builds to ask about again")
    }

    fn newest_builds(
        &self,
        jobset_id: i64,
        condition: &'static str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT b.id FROM jobs j JOIN spans s INDEXED BY spans_open ON s.job_id = j.id
                 JOIN builds b ON b.id = s.build_id
                 WHERE j.jobset_id = ?1 AND s.last_seq IS NULL AND b.id > ?2 AND {condition}
                 ORDER BY b.id LIMIT ?3"
            ))
            .context("finding builds to ask about again")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![jobset_id, after, limit], |r| r.get(0))
            .context("finding builds to ask about again")?;
        rows.collect::<Result<_, _>>()
            .context("finding builds to ask about again")
    }

    /// Where the round of rechecks of failed builds is: the last build id
    /// done, or `None` between rounds.
    pub fn recheck_cursor(&self, jobset_id: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT recheck_cursor FROM jobsets WHERE id = ?1",
                [jobset_id],
                |r| r.get(0),
            )
            .context("reading the recheck cursor")
    }

    /// Start a round of rechecks of failed builds at `at`.
    pub fn start_recheck_round(&self, jobset_id: i64, at: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobsets SET rechecked_at = ?2, recheck_cursor = 0 WHERE id = ?1",
                [jobset_id, at],
            )
            .map(drop)
            .context("starting a round of rechecks")
    }

    /// Hydra's `lastcheckedtime` of the jobset as of the last complete
    /// discovery (see [`crate::ingest`]).
    pub fn hydra_checked_at(&self, jobset_id: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT hydra_checked_at FROM jobsets WHERE id = ?1",
                [jobset_id],
                |r| r.get(0),
            )
            .context("reading when Hydra last checked the jobset")
    }

    pub fn set_hydra_checked_at(&self, jobset_id: i64, at: Option<i64>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobsets SET hydra_checked_at = ?2 WHERE id = ?1",
                params![jobset_id, at],
            )
            .context("noting when Hydra last checked the jobset")?;
        Ok(())
    }

    pub fn rechecked_at(&self, jobset_id: i64) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT rechecked_at FROM jobsets WHERE id = ?1",
                [jobset_id],
                |r| r.get(0),
            )
            .context("reading recheck time")
    }

    /// A whole round's work was done at `at` (every build of the newest
    /// eval was read afresh): the next round is due an interval later.
    pub fn recheck_round_done(&self, jobset_id: i64, at: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobsets SET rechecked_at = ?2, recheck_cursor = NULL WHERE id = ?1",
                [jobset_id, at],
            )
            .map(drop)
            .context("ending a round of rechecks")
    }

    /// The round of rechecks of failed builds is over.
    pub fn end_recheck_round(&self, jobset_id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobsets SET recheck_cursor = NULL WHERE id = ?1",
                [jobset_id],
            )
            .map(drop)
            .context("ending a round of rechecks")
    }

    /// Whether `/eval/{eval_id}/builds` was ever asked for (answered or not).
    pub fn whole_eval_requested(&self, eval_id: i64) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM whole_eval_requests WHERE eval_id = ?1",
                [eval_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .context("reading whole-eval requests")
    }

    /// The size of the smallest eval of the jobset whose whole-eval request
    /// timed out: evals this big or bigger are not asked for whole.
    pub fn smallest_timed_out_whole_eval(&self, jobset_id: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(builds) FROM whole_eval_requests WHERE jobset_id = ?1 AND outcome = 'timeout'",
                [jobset_id],
                |r| r.get(0),
            )
            .context("reading whole-eval timeouts")
    }

    /// Note, before sending it, that `/eval/{eval_id}/builds` is asked for.
    pub fn note_whole_eval_request(
        &self,
        jobset_id: i64,
        eval_id: i64,
        builds: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO whole_eval_requests (eval_id, jobset_id, builds, sent_at) VALUES (?1, ?2, ?3, ?4)",
                [eval_id, jobset_id, builds, at],
            )
            .map(drop)
            .context("noting a whole-eval request")
    }

    /// How the whole-eval request of `eval_id` ended: `ok`, `timeout` or
    /// `failed`, and why.
    pub fn note_whole_eval_outcome(
        &self,
        eval_id: i64,
        outcome: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE whole_eval_requests SET outcome = ?2, reason = ?3 WHERE eval_id = ?1",
                params![eval_id, outcome, reason],
            )
            .map(drop)
            .context("noting a whole-eval outcome")
    }
}

impl Store {
    /// The id of a jobset's job, if stored.
    pub fn job_id(&self, jobset_id: i64, name: &JobName) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT id FROM jobs WHERE attr = ?1 AND system = ?2 AND jobset_id = ?3 AND suffixed = ?4",
                params![name.attr, name.system, jobset_id, name.suffixed],
                |r| r.get(0),
            )
            .optional()
            .context("finding a job")
    }
}
