//! Writing one evaluation, all or nothing.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::{Context, Store, StoreError};
use crate::history::JobName;
use crate::hydra::{Build, StorePath};

/// An eval about to be written.
#[derive(Debug, Clone)]
pub struct NewEval {
    pub id: i64,
    pub timestamp: i64,
    pub revision: Option<String>,
    pub checkout_time: Option<i64>,
    pub eval_time: Option<i64>,
    /// How its builds were fetched: `eval-builds` or `per-build`.
    pub strategy: &'static str,
}

/// What the store already knows of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownBuild {
    Stored {
        job_id: i64,
        finished: bool,
        status: Option<i64>,
    },
    /// Seen before and refused (an implausible job name, say).
    Refused,
}

impl KnownBuild {
    /// Whether its status may still change (so it is worth fetching again).
    pub fn is_settled(&self) -> bool {
        !matches!(
            self,
            KnownBuild::Stored {
                finished: false,
                ..
            }
        )
    }
}

/// What writing an eval changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub builds_written: usize,
    pub members: usize,
    pub spans_opened: usize,
    pub spans_closed: usize,
    pub rejected_jobs: usize,
}

/// A transaction that writes one eval (or, for rechecks, only build
/// statuses). Dropping it without [`EvalWriter::commit`] rolls everything back.
pub struct EvalWriter<'s> {
    tx: Transaction<'s>,
    jobset_id: i64,
    /// Committed job ids of the jobset, by Hydra job name.
    job_ids: &'s mut HashMap<String, i64>,
    /// Job ids created in this transaction; they join `job_ids` on commit.
    new_job_ids: HashMap<String, i64>,
    eval: Option<(NewEval, i64)>,
    outcome: WriteOutcome,
}

impl Store {
    /// Which of `ids` the store knows, with their last known status.
    pub fn known_builds(&self, ids: &[i64]) -> Result<HashMap<i64, KnownBuild>, StoreError> {
        let mut known = HashMap::new();
        let mut stored = self
            .conn
            .prepare_cached("SELECT job_id, finished, status FROM builds WHERE id = ?1")
            .context("looking up known builds")?;
        let mut refused = self
            .conn
            .prepare_cached("SELECT 1 FROM refused_builds WHERE id = ?1")
            .context("looking up known builds")?;
        for &id in ids {
            let build = stored
                .query_row([id], |r| {
                    Ok(KnownBuild::Stored {
                        job_id: r.get(0)?,
                        finished: r.get(1)?,
                        status: r.get(2)?,
                    })
                })
                .optional()
                .context("looking up known builds")?;
            let build = match build {
                Some(build) => Some(build),
                None => refused
                    .query_row([id], |_| Ok(KnownBuild::Refused))
                    .optional()
                    .context("looking up known builds")?,
            };
            if let Some(build) = build {
                known.insert(id, build);
            }
        }
        Ok(known)
    }

    /// Start writing `eval` of a jobset. Evals must come in Hydra's order.
    pub fn begin_eval(
        &mut self,
        jobset_id: i64,
        jobset: &str,
        eval: NewEval,
    ) -> Result<EvalWriter<'_>, StoreError> {
        let newest = self.newest_eval(jobset_id)?;
        if let Some(newest) = newest.as_ref().filter(|n| eval.id <= n.id) {
            return Err(StoreError::OutOfOrder {
                jobset: jobset.to_owned(),
                eval: eval.id,
                newest: newest.id,
            });
        }
        let seq = newest.map_or(1, |n| n.seq + 1);
        let mut writer = self.begin(jobset_id)?;
        writer
            .tx
            .execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS eval_members (job_id INTEGER PRIMARY KEY, build_id INTEGER NOT NULL);
                 DELETE FROM eval_members;",
            )
            .context("preparing eval membership")?;
        writer.eval = Some((eval, seq));
        Ok(writer)
    }

    /// Start updating build statuses only (rechecks of builds already seen).
    pub fn begin_recheck(&mut self, jobset_id: i64) -> Result<EvalWriter<'_>, StoreError> {
        self.begin(jobset_id)
    }

    fn begin(&mut self, jobset_id: i64) -> Result<EvalWriter<'_>, StoreError> {
        if !self.job_ids.contains_key(&jobset_id) {
            let ids = load_job_ids(&self.conn, jobset_id)?;
            self.job_ids.insert(jobset_id, ids);
        }
        let job_ids = self.job_ids.get_mut(&jobset_id).expect("inserted above");
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .context("starting a transaction")?;
        Ok(EvalWriter {
            tx,
            jobset_id,
            job_ids,
            new_job_ids: HashMap::new(),
            eval: None,
            outcome: WriteOutcome::default(),
        })
    }
}

fn load_job_ids(
    conn: &rusqlite::Connection,
    jobset_id: i64,
) -> Result<HashMap<String, i64>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT id, attr, system, suffixed FROM jobs WHERE jobset_id = ?1")
        .context("loading jobs")?;
    let rows = stmt
        .query_map([jobset_id], |r| {
            let name = JobName {
                attr: r.get(1)?,
                system: r.get(2)?,
                suffixed: r.get(3)?,
            };
            Ok((name.hydra_job(), r.get::<_, i64>(0)?))
        })
        .context("loading jobs")?;
    rows.collect::<Result<_, _>>().context("loading jobs")
}

impl EvalWriter<'_> {
    /// Record a build fetched from Hydra: its job, its status, and (when
    /// writing an eval) that the eval contains it.
    pub fn add_build(
        &mut self,
        build: &Build,
        name: &JobName,
        drv: &StorePath<'_>,
    ) -> Result<(), StoreError> {
        let job_id = self.job_id(&build.job, name)?;
        let nixname = build
            .nixname
            .as_deref()
            .unwrap_or_else(|| drv.name.strip_suffix(".drv").unwrap_or(drv.name));
        let written = self
            .tx
            .prepare_cached(
                "INSERT INTO builds (id, job_id, finished, status, stoptime, drv_hash, nixname)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET
                    finished = excluded.finished, status = excluded.status, stoptime = excluded.stoptime
                 WHERE finished IS NOT excluded.finished OR status IS NOT excluded.status
                    OR stoptime IS NOT excluded.stoptime",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    build.id,
                    job_id,
                    build.finished,
                    build.buildstatus,
                    build.stoptime,
                    drv.hash,
                    nixname
                ])
            })
            .context("writing a build")?;
        self.outcome.builds_written += written;
        self.add_member(build.id, job_id)
    }

    /// Record that the eval contains a build the store already has.
    pub fn add_known(&mut self, build_id: i64, known: &KnownBuild) -> Result<(), StoreError> {
        match known {
            KnownBuild::Stored { job_id, .. } => self.add_member(build_id, *job_id),
            KnownBuild::Refused => {
                self.outcome.rejected_jobs += 1;
                Ok(())
            }
        }
    }

    /// Record a refused build; returns whether its job name is refused for
    /// the first time (a refused job is logged once, not at every rebuild).
    pub fn refuse(&mut self, build_id: i64, job: &str, reason: &str) -> Result<bool, StoreError> {
        self.outcome.rejected_jobs += 1;
        let seen: bool = self
            .tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM refused_builds WHERE job = ?1)")
            .and_then(|mut stmt| stmt.query_row([job], |r| r.get(0)))
            .context("recording a refused build")?;
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO refused_builds (id, job, reason) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut stmt| stmt.execute(params![build_id, job, reason]))
            .context("recording a refused build")?;
        Ok(!seen)
    }

    fn add_member(&mut self, build_id: i64, job_id: i64) -> Result<(), StoreError> {
        if self.eval.is_none() {
            return Ok(());
        }
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO eval_members (job_id, build_id) VALUES (?1, ?2)",
            )
            .and_then(|mut stmt| stmt.execute([job_id, build_id]))
            .context("recording eval membership")?;
        self.outcome.members += 1;
        Ok(())
    }

    fn job_id(&mut self, hydra_job: &str, name: &JobName) -> Result<i64, StoreError> {
        if let Some(&id) = self
            .job_ids
            .get(hydra_job)
            .or_else(|| self.new_job_ids.get(hydra_job))
        {
            return Ok(id);
        }
        let id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO jobs (jobset_id, attr, system, suffixed) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET attr = attr RETURNING id",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![self.jobset_id, name.attr, name.system, name.suffixed],
                    |r| r.get(0),
                )
            })
            .context("registering a job")?;
        self.new_job_ids.insert(hydra_job.to_owned(), id);
        Ok(id)
    }

    /// Write the eval row and its spans, and commit.
    pub fn commit(mut self) -> Result<WriteOutcome, StoreError> {
        if let Some((eval, seq)) = self.eval.take() {
            self.tx
                .execute(
                    "INSERT INTO evals (id, jobset_id, seq, timestamp, revision, checkout_time, eval_time,
                                        nr_builds, rejected_jobs, strategy, ingested_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, unixepoch())",
                    params![
                        eval.id,
                        self.jobset_id,
                        seq,
                        eval.timestamp,
                        eval.revision,
                        eval.checkout_time,
                        eval.eval_time,
                        self.outcome.members as i64,
                        self.outcome.rejected_jobs as i64,
                        eval.strategy
                    ],
                )
                .context("writing the eval")?;
            // Close the spans of jobs whose build changed or that left the jobset.
            self.outcome.spans_closed = self
                .tx
                .execute(
                    "UPDATE spans SET last_seq = ?2
                     WHERE last_seq IS NULL
                       AND job_id IN (SELECT id FROM jobs WHERE jobset_id = ?1)
                       AND NOT EXISTS (SELECT 1 FROM eval_members m
                                       WHERE m.job_id = spans.job_id AND m.build_id = spans.build_id)",
                    params![self.jobset_id, seq - 1],
                )
                .context("closing spans")?;
            // Open spans for jobs that have none open now.
            self.outcome.spans_opened = self
                .tx
                .execute(
                    "INSERT INTO spans (job_id, first_seq, last_seq, build_id)
                     SELECT m.job_id, ?1, NULL, m.build_id FROM eval_members m
                     WHERE NOT EXISTS (SELECT 1 FROM spans s WHERE s.job_id = m.job_id AND s.last_seq IS NULL)",
                    [seq],
                )
                .context("opening spans")?;
            self.tx
                .execute("DELETE FROM eval_members", [])
                .context("clearing eval membership")?;
        }
        self.tx.commit().context("committing")?;
        self.job_ids.extend(self.new_job_ids.drain());
        Ok(self.outcome)
    }
}
