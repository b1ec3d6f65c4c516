//! When failures under way before our records began (`job_origins`).

use rustc_hash::FxHashMap as HashMap;

use rusqlite::params;

use super::{Context, Store, StoreError};
use crate::history::{JobName, StatusClass};
use crate::policy::FailureOrigin;

/// A job failing in the first stored eval of its jobset, still on the same
/// build, whose past is not learned yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginWanted {
    pub job_id: i64,
    pub name: JobName,
    /// Its failing build in the first stored eval (still its build now).
    pub build_id: i64,
    /// The first stored eval (Hydra's id) and when it ran.
    pub first_eval: i64,
    pub first_eval_time: i64,
}

/// Jobs failing on the build they had in the first stored eval of jobset
/// `?1`, whose origin is not learned yet. Asked after every ingest, so it
/// starts from the open spans that did not build (`spans_open_unbuilt`, a
/// few thousand on trunk) rather than from the jobset's jobs (300,000 rows
/// and as many build lookups: 0.2 to 0.3 s a cycle); `CROSS JOIN` keeps
/// SQLite, which has no statistics here, from starting at the jobs.
/// `s.built = 0` restates what the build's status says, for the index.
const FAILING_SINCE_THE_FIRST_EVAL: &str =
    "SELECT j.id, j.attr, j.system, j.suffixed, b.id, b.finished, b.status, e.id, e.timestamp
     FROM spans s CROSS JOIN jobs j ON j.id = s.job_id JOIN builds b ON b.id = s.build_id
     JOIN evals e ON e.jobset_id = j.jobset_id AND e.seq = s.first_seq
     WHERE s.last_seq IS NULL AND s.built = 0 AND s.first_seq = 1 AND j.jobset_id = ?1
       -- A coarse cut of what the classification below keeps.
       AND b.finished AND b.status != 0
       AND NOT EXISTS (SELECT 1 FROM job_origins o WHERE o.job_id = j.id)
     ORDER BY b.id";

impl Store {
    /// Jobs whose own failure reaches back to the first stored eval of the
    /// jobset and whose origin is not learned yet, oldest build first.
    pub fn origins_wanted(&self, jobset_id: i64) -> Result<Vec<OriginWanted>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(FAILING_SINCE_THE_FIRST_EVAL)
            .context("finding failures older than our records")?;
        let rows = stmt
            .query_map([jobset_id], |r| {
                let finished: bool = r.get(5)?;
                let status: Option<i64> = r.get(6)?;
                Ok((
                    StatusClass::from_hydra(finished, status),
                    OriginWanted {
                        job_id: r.get(0)?,
                        name: JobName {
                            attr: r.get(1)?,
                            system: r.get(2)?,
                            suffixed: r.get(3)?,
                        },
                        build_id: r.get(4)?,
                        first_eval: r.get(7)?,
                        first_eval_time: r.get(8)?,
                    },
                ))
            })
            .context("finding failures older than our records")?;
        let mut wanted = Vec::new();
        for row in rows {
            let (class, job) = row.context("finding failures older than our records")?;
            if class == StatusClass::Failing {
                wanted.push(job);
            }
        }
        Ok(wanted)
    }

    pub fn record_origin(
        &self,
        job_id: i64,
        build_id: i64,
        origin: &FailureOrigin,
        now: i64,
    ) -> Result<(), StoreError> {
        let (success_build, success_eval, success_time) = origin
            .last_success
            .map_or((None, None, None), |(b, e, t)| (Some(b), Some(e), Some(t)));
        self.conn
            .execute(
                "INSERT OR REPLACE INTO job_origins (job_id, build_id, learned_at, since, since_eval,
                     evals_before, derivations_before, last_success_build, last_success_eval,
                     last_success_time, beyond_horizon)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    job_id,
                    build_id,
                    now,
                    origin.since,
                    origin.since_eval,
                    origin.evals_before,
                    origin.derivations_before,
                    success_build,
                    success_eval,
                    success_time,
                    origin.beyond_horizon
                ],
            )
            .context("recording when a failure began")?;
        Ok(())
    }

    /// The origins learned for a jobset, by the failing build they were
    /// learned for.
    pub fn origins(&self, jobset_id: i64) -> Result<HashMap<i64, FailureOrigin>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT o.build_id, o.since, o.since_eval, o.evals_before, o.derivations_before,
                        o.last_success_build, o.last_success_eval, o.last_success_time, o.beyond_horizon
                 FROM job_origins o JOIN jobs j ON j.id = o.job_id WHERE j.jobset_id = ?1",
            )
            .context("reading when failures began")?;
        let rows = stmt
            .query_map([jobset_id], |r| {
                let success: (Option<i64>, Option<i64>, Option<i64>) =
                    (r.get(5)?, r.get(6)?, r.get(7)?);
                Ok((
                    r.get::<_, i64>(0)?,
                    FailureOrigin {
                        since: r.get(1)?,
                        since_eval: r.get(2)?,
                        evals_before: r.get(3)?,
                        derivations_before: r.get(4)?,
                        last_success: match success {
                            (Some(b), Some(e), Some(t)) => Some((b, e, t)),
                            _ => None,
                        },
                        beyond_horizon: r.get(8)?,
                    },
                ))
            })
            .context("reading when failures began")?;
        rows.collect::<Result<_, _>>()
            .context("reading when failures began")
    }
}

#[cfg(test)]
mod tests {
    use super::super::BuildRow;
    use super::super::test_support::{build_of, new_eval, query_plan, trunk_store};
    use super::*;

    #[test]
    fn failures_older_than_our_records_are_looked_for_among_open_spans_that_did_not_build() {
        let (_dir, store, _) = trunk_store();
        let plan = query_plan(&store, FAILING_SINCE_THE_FIRST_EVAL);
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SCAN s USING") && step.contains("spans_open_unbuilt")),
            "every job of the jobset would be read after each ingest: {plan:#?}"
        );
    }

    #[test]
    fn only_jobs_failing_since_the_first_eval_and_not_yet_learned_are_wanted() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let failing = |id, attr| BuildRow {
            status: Some(1),
            ..build_of(id, attr)
        };
        let mut first = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(1))
            .unwrap();
        first.add_build(build_of(1, "builds")).unwrap();
        first.add_build(failing(2, "fails")).unwrap();
        first.add_build(failing(3, "fixed-later")).unwrap();
        first
            .add_build(BuildRow {
                finished: false,
                status: None,
                stoptime: None,
                ..build_of(4, "queued")
            })
            .unwrap();
        first.add_build(failing(5, "also-fails")).unwrap();
        first.commit().unwrap();
        let mut second = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(2))
            .unwrap();
        for build in [
            build_of(1, "builds"),
            failing(2, "fails"),
            build_of(6, "fixed-later"),
            failing(5, "also-fails"),
            failing(7, "fails-since-eval-2"),
        ] {
            second.add_build(build).unwrap();
        }
        second.commit().unwrap();

        let wanted = |store: &Store| -> Vec<(String, i64, i64)> {
            store
                .origins_wanted(jobset_id)
                .unwrap()
                .into_iter()
                .map(|w| (w.name.attr, w.build_id, w.first_eval))
                .collect()
        };
        assert_eq!(
            wanted(&store),
            [("fails".into(), 2, 1), ("also-fails".into(), 5, 1)]
        );

        let job = store.origins_wanted(jobset_id).unwrap()[0].job_id;
        let origin = FailureOrigin {
            since: 0,
            since_eval: None,
            evals_before: 0,
            derivations_before: 0,
            last_success: None,
            beyond_horizon: true,
        };
        store.record_origin(job, 2, &origin, 10).unwrap();
        assert_eq!(wanted(&store), [("also-fails".into(), 5, 1)]);
    }
}
