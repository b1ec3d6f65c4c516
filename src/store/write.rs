//! Writing one evaluation, all or nothing.

// FxHash: these maps sit on the ingest hot path and their keys are ours,
// not an attacker's (job names are validated before they get here).
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

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
    // Declared before `tx`: statements are finalised before the transaction ends.
    statements: Statements<'s>,
    tx: Transaction<'s>,
    jobset_id: i64,
    /// Committed job ids of the jobset, by Hydra job name.
    job_ids: &'s mut HashMap<String, i64>,
    /// Job ids created in this transaction; they join `job_ids` on commit.
    new_job_ids: HashMap<String, i64>,
    /// Committed open spans of the jobset: job → build in the newest eval.
    open_spans: &'s mut HashMap<i64, i64>,
    /// Open spans opened (Some) or closed (None) by this transaction.
    span_changes: Vec<(i64, Option<i64>)>,
    /// Jobs seen in the eval being written.
    members: HashSet<i64>,
    eval: Option<(NewEval, i64)>,
    outcome: WriteOutcome,
}

impl Store {
    /// Which of `ids` (builds of a new eval of the jobset) the store knows,
    /// with their last known status. Most are the builds of the newest eval,
    /// read in one query; the rest are looked up one by one.
    pub fn known_builds(
        &self,
        jobset_id: i64,
        ids: &[i64],
    ) -> Result<HashMap<i64, KnownBuild>, StoreError> {
        let mut newest: HashMap<i64, KnownBuild> = HashMap::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT b.id, b.job_id, b.finished, b.status FROM spans s
                 JOIN jobs j ON j.id = s.job_id JOIN builds b ON b.id = s.build_id
                 WHERE j.jobset_id = ?1 AND s.last_seq IS NULL",
            )
            .context("looking up known builds")?;
        let rows = stmt
            .query_map([jobset_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    KnownBuild::Stored {
                        job_id: r.get(1)?,
                        finished: r.get(2)?,
                        status: r.get(3)?,
                    },
                ))
            })
            .context("looking up known builds")?;
        for row in rows {
            let (id, build) = row.context("looking up known builds")?;
            newest.insert(id, build);
        }
        let mut stored = self
            .conn
            .prepare_cached("SELECT job_id, finished, status FROM builds WHERE id = ?1")
            .context("looking up known builds")?;
        let mut refused = self
            .conn
            .prepare_cached("SELECT 1 FROM refused_builds WHERE id = ?1")
            .context("looking up known builds")?;
        let mut known = HashMap::default();
        for &id in ids {
            if let Some(build) = newest.get(&id) {
                known.insert(id, *build);
                continue;
            }
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
        if !self.open_spans.contains_key(&jobset_id) {
            let spans = load_open_spans(&self.conn, jobset_id)?;
            self.open_spans.insert(jobset_id, spans);
        }
        let job_ids = self.job_ids.get_mut(&jobset_id).expect("inserted above");
        let open_spans = self.open_spans.get_mut(&jobset_id).expect("inserted above");
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .context("starting a transaction")?;
        Ok(EvalWriter {
            statements: Statements::prepare(&self.conn)?,
            tx,
            jobset_id,
            job_ids,
            new_job_ids: HashMap::default(),
            open_spans,
            span_changes: Vec::new(),
            members: HashSet::default(),
            eval: None,
            outcome: WriteOutcome::default(),
        })
    }
}

/// The statements of the ingest hot path, prepared once per transaction.
///
/// Plain and `OR IGNORE` inserts rather than upserts: SQLite checks their
/// constraints before writing, so it needs no statement journal per row.
struct Statements<'c> {
    insert_build: rusqlite::Statement<'c>,
    update_build: rusqlite::Statement<'c>,
    insert_job: rusqlite::Statement<'c>,
    find_job: rusqlite::Statement<'c>,
    open_span: rusqlite::Statement<'c>,
    close_span: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c rusqlite::Connection) -> Result<Statements<'c>, StoreError> {
        let prepare = |sql: &str| conn.prepare(sql).context("preparing statements");
        Ok(Statements {
            insert_build: prepare(
                "INSERT OR IGNORE INTO builds (id, job_id, finished, status, stoptime, drv_hash, nixname)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
            update_build: prepare(
                "UPDATE builds SET finished = ?2, status = ?3, stoptime = ?4
                 WHERE id = ?1 AND (finished IS NOT ?2 OR status IS NOT ?3 OR stoptime IS NOT ?4)",
            )?,
            insert_job: prepare("INSERT OR IGNORE INTO jobs (jobset_id, attr, system, suffixed) VALUES (?1, ?2, ?3, ?4)")?,
            find_job: prepare("SELECT id FROM jobs WHERE attr = ?2 AND system = ?3 AND jobset_id = ?1 AND suffixed = ?4")?,
            open_span: prepare("INSERT INTO spans (job_id, first_seq, last_seq, build_id) VALUES (?1, ?2, NULL, ?3)")?,
            close_span: prepare("UPDATE spans SET last_seq = ?2 WHERE job_id = ?1 AND last_seq IS NULL")?,
        })
    }
}

fn load_open_spans(
    conn: &rusqlite::Connection,
    jobset_id: i64,
) -> Result<HashMap<i64, i64>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT s.job_id, s.build_id FROM spans s JOIN jobs j ON j.id = s.job_id
             WHERE j.jobset_id = ?1 AND s.last_seq IS NULL",
        )
        .context("loading open spans")?;
    let rows = stmt
        .query_map([jobset_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .context("loading open spans")?;
    rows.collect::<Result<_, _>>().context("loading open spans")
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
        let inserted = self
            .statements
            .insert_build
            .execute(params![
                build.id,
                job_id,
                build.finished,
                build.buildstatus,
                build.stoptime,
                drv.hash,
                nixname
            ])
            .context("writing a build")?;
        let written = if inserted == 1 {
            1
        } else {
            self.statements
                .update_build
                .execute(params![
                    build.id,
                    build.finished,
                    build.buildstatus,
                    build.stoptime
                ])
                .context("updating a build")?
        };
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

    /// Note that Hydra was just asked about `build_id` (so rechecks ask
    /// about others first).
    pub fn note_fetched(&mut self, build_id: i64, at: i64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE builds SET fetched_at = ?2 WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute([build_id, at]))
            .context("noting when a build was fetched")?;
        Ok(())
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

    /// The eval contains `build_id` as the build of `job_id`: extend the
    /// job's open span if the build is the same, else close it and open one.
    fn add_member(&mut self, build_id: i64, job_id: i64) -> Result<(), StoreError> {
        let Some((_, seq)) = &self.eval else {
            return Ok(());
        };
        let seq = *seq;
        if !self.members.insert(job_id) {
            tracing::warn!(
                job_id,
                build_id,
                "a job appears twice in one eval; keeping its first build"
            );
            return Ok(());
        }
        self.outcome.members += 1;
        let open = self.open_spans.get(&job_id).copied();
        if open == Some(build_id) {
            return Ok(());
        }
        if open.is_some() {
            self.close_span(job_id, seq)?;
        }
        self.statements
            .open_span
            .execute([job_id, seq, build_id])
            .context("opening a span")?;
        self.outcome.spans_opened += 1;
        self.span_changes.push((job_id, Some(build_id)));
        Ok(())
    }

    /// End the job's open span with the eval before `seq`.
    fn close_span(&mut self, job_id: i64, seq: i64) -> Result<(), StoreError> {
        self.statements
            .close_span
            .execute([job_id, seq - 1])
            .context("closing a span")?;
        self.outcome.spans_closed += 1;
        self.span_changes.push((job_id, None));
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
        let job = params![self.jobset_id, name.attr, name.system, name.suffixed];
        let inserted = self
            .statements
            .insert_job
            .execute(job)
            .context("registering a job")?;
        let id = if inserted == 1 {
            self.tx.last_insert_rowid()
        } else {
            self.statements
                .find_job
                .query_row(job, |r| r.get(0))
                .context("registering a job")?
        };
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
            // Jobs that left the jobset: their spans end with the previous eval.
            let gone: Vec<i64> = self
                .open_spans
                .keys()
                .copied()
                .filter(|job| !self.members.contains(job))
                .collect();
            for job_id in gone {
                self.close_span(job_id, seq)?;
            }
        }
        self.tx.commit().context("committing")?;
        self.job_ids.extend(self.new_job_ids.drain());
        for (job_id, build) in self.span_changes.drain(..) {
            match build {
                Some(build_id) => self.open_spans.insert(job_id, build_id),
                None => self.open_spans.remove(&job_id),
            };
        }
        Ok(self.outcome)
    }
}
