//! Writing one evaluation, all or nothing.

// FxHash: these maps sit on the ingest hot path and their keys are ours,
// not an attacker's (job names are validated before they get here).
use rustc_hash::FxHashMap as HashMap;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::{Context, Store, StoreError};
use crate::history::JobName;

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
        /// Its newest version, the one a new eval that lists it sees.
        version: i64,
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

/// A build checked and cut into the columns it fills, ready to be written.
/// Ingest prepares these off the writer's thread while it streams an eval,
/// so the writer only binds and inserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRow {
    pub id: i64,
    /// The job name as Hydra spells it (how jobs are looked up).
    pub hydra_job: String,
    pub job: JobName,
    pub finished: bool,
    pub status: Option<i64>,
    pub stoptime: Option<i64>,
    /// The hash part of its derivation's store path.
    pub drv_hash: String,
    pub nixname: String,
}

impl BuildRow {
    /// It finished and succeeded (what a span of it records as `built`).
    fn built(&self) -> bool {
        built(self.finished, self.status)
    }
}

/// A build that finished and succeeded: what a span records as `built`
/// (schema version 16; its trigger and migration say the same in SQL).
fn built(finished: bool, status: Option<i64>) -> bool {
    finished && status == Some(0)
}

/// What the writer keeps of a jobset between transactions, as committed:
/// job ids by Hydra job name, and the build of each job's open span (its
/// build in the newest eval), which a new eval is compared against.
///
/// A transaction writes through to it rather than keeping its own changes
/// apart and merging them on commit: one copy of each map, not two plus a
/// merge (a first eval of nixpkgs adds 290,000 of each). It is marked stale
/// when a transaction begins and fresh once it commits, so a transaction
/// that rolls back (a body cut short, an error) leaves it to be reloaded
/// from the database.
#[derive(Debug, Default)]
pub(crate) struct JobsetCache {
    job_ids: HashMap<String, i64>,
    open_spans: HashMap<i64, BuildVersion>,
    fresh: bool,
}

impl JobsetCache {
    fn load(conn: &rusqlite::Connection, jobset_id: i64) -> Result<JobsetCache, StoreError> {
        Ok(JobsetCache {
            job_ids: load_job_ids(conn, jobset_id)?,
            open_spans: load_open_spans(conn, jobset_id)?,
            fresh: true,
        })
    }
}

/// A set of job ids, one bit each: job ids are SQLite rowids, small and
/// dense, so this is a few kilobytes for a nixpkgs eval and costs no
/// hashing per build (a hash set of them was a visible part of writing one).
/// An id outside the bits' range (negative, or beyond `MAX_BIT`; SQLite
/// makes neither here) goes to a plain set instead.
#[derive(Debug, Default)]
struct JobIds {
    words: Vec<u64>,
    others: rustc_hash::FxHashSet<i64>,
}

impl JobIds {
    /// Ids kept as bits: up to 2^26, 8 MB of bits at most.
    const MAX_BIT: u64 = 1 << 26;

    /// Add `job_id`; false when it was there already.
    fn insert(&mut self, job_id: i64) -> bool {
        let Some((word, bit)) = Self::place(job_id) else {
            return self.others.insert(job_id);
        };
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let seen = self.words[word] & bit != 0;
        self.words[word] |= bit;
        !seen
    }

    fn contains(&self, job_id: i64) -> bool {
        match Self::place(job_id) {
            Some((word, bit)) => self.words.get(word).is_some_and(|w| w & bit != 0),
            None => self.others.contains(&job_id),
        }
    }

    fn place(job_id: i64) -> Option<(usize, u64)> {
        let id = u64::try_from(job_id)
            .ok()
            .filter(|id| *id < Self::MAX_BIT)?;
        Some(((id / 64) as usize, 1 << (id % 64)))
    }
}

/// A build as one span saw it: Hydra's build id and which of its versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BuildVersion {
    pub build: i64,
    pub version: i64,
}

/// A build as stored, against what Hydra says of it now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredBuild {
    finished: bool,
    status: Option<i64>,
    stoptime: Option<i64>,
    drv_hash: String,
    version: i64,
}

/// How a build Hydra sent differs from the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    /// The pending version finished (or an unfinished one changed in
    /// place): its result belongs to every eval that listed it.
    Completes,
    /// Restarted (`finished` back to 0, or finished again with another
    /// result or time) or repointed (a new derivation): a new version,
    /// counted from the eval where it was seen.
    NewVersion,
}

impl StoredBuild {
    fn change(&self, build: &BuildRow) -> Change {
        let same = self.finished == build.finished
            && self.status == build.status
            && self.stoptime == build.stoptime;
        if self.drv_hash != build.drv_hash {
            // Repointed (`script/hydra-eval-jobset` `applyDrvPathRepoints`).
            Change::NewVersion
        } else if same {
            Change::None
        } else if self.finished {
            // Restarted (`Helper/Nix.pm` `restartBuilds`: `finished = 0`,
            // status and times kept), and perhaps finished again since.
            Change::NewVersion
        } else {
            Change::Completes
        }
    }
}

/// What writing an eval changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub builds_written: usize,
    /// Builds found restarted or repointed: a new version of each was
    /// recorded from the eval where the change was seen.
    pub new_versions: usize,
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
    // Declared after `tx`: the checks come back once the transaction ended
    // (SQLite ignores the pragma inside one).
    _checks: ReferencesUnchecked<'s>,
    jobset_id: i64,
    /// The jobset's job ids and open spans, written through.
    cache: &'s mut JobsetCache,
    /// When rechecking: the newest eval's seq, from which a change counts.
    recheck_seq: Option<i64>,
    /// Jobs seen in the eval being written.
    members: JobIds,
    eval: Option<(NewEval, i64)>,
    outcome: WriteOutcome,
    name_index: NameIndex,
    /// Spans opened and not yet inserted: written [`ROWS_PER_INSERT`] to a
    /// statement, and before anything reads or changes a span.
    pending_spans: Vec<NewSpan>,
    /// Jobs registered and not yet inserted, as `pending_spans`.
    pending_jobs: Vec<NewJob>,
    /// The id the next new job gets, once one was given.
    next_job_id: Option<i64>,
    /// Builds the store did not have, not yet inserted, as `pending_spans`.
    pending_builds: Vec<NewBuild>,
    /// The largest build id stored when the transaction began: a build
    /// above it is not stored, so it is inserted with the next batch, not
    /// tried and looked up. Hydra's build ids grow, so an eval's new
    /// builds are above it.
    newest_stored_build: i64,
}

/// A span to insert: job, first seq, its build's version, built.
#[derive(Debug, Clone, Copy)]
struct NewSpan {
    job_id: i64,
    first_seq: i64,
    seen: BuildVersion,
    built: bool,
}

/// A job to insert, with the id the writer gave it.
#[derive(Debug)]
struct NewJob {
    id: i64,
    jobset_id: i64,
    name: JobName,
}

/// A build the store did not have, to insert.
#[derive(Debug)]
struct NewBuild {
    id: i64,
    job_id: i64,
    finished: bool,
    status: Option<i64>,
    stoptime: Option<i64>,
    drv_hash: String,
    nixname: String,
}

/// A row the writer inserts [`ROWS_PER_INSERT`] to a statement.
trait NewRow {
    /// How many values a row has.
    const COLUMNS: usize;
    /// Bind its values, in the order of its table's `INSERT` statements,
    /// to parameters `first` (counted from 1) and on.
    fn bind(&self, statement: &mut rusqlite::Statement<'_>, first: usize) -> rusqlite::Result<()>;
}

fn bind_values(
    statement: &mut rusqlite::Statement<'_>,
    first: usize,
    values: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<()> {
    for (i, value) in values.iter().enumerate() {
        statement.raw_bind_parameter(first + i, value)?;
    }
    Ok(())
}

impl NewRow for NewJob {
    const COLUMNS: usize = 5;
    fn bind(&self, statement: &mut rusqlite::Statement<'_>, first: usize) -> rusqlite::Result<()> {
        bind_values(
            statement,
            first,
            &[
                &self.id,
                &self.jobset_id,
                &self.name.attr,
                &self.name.system,
                &self.name.suffixed,
            ],
        )
    }
}

impl NewRow for NewSpan {
    const COLUMNS: usize = 5;
    fn bind(&self, statement: &mut rusqlite::Statement<'_>, first: usize) -> rusqlite::Result<()> {
        bind_values(
            statement,
            first,
            &[
                &self.job_id,
                &self.first_seq,
                &self.seen.build,
                &self.seen.version,
                &self.built,
            ],
        )
    }
}

impl NewRow for NewBuild {
    const COLUMNS: usize = 7;
    fn bind(&self, statement: &mut rusqlite::Statement<'_>, first: usize) -> rusqlite::Result<()> {
        bind_values(
            statement,
            first,
            &[
                &self.id,
                &self.job_id,
                &self.finished,
                &self.status,
                &self.stoptime,
                &self.drv_hash,
                &self.nixname,
            ],
        )
    }
}

const INSERT_BUILDS: &str =
    "INSERT OR IGNORE INTO builds (id, job_id, finished, status, stoptime, drv_hash, nixname)";
const INSERT_JOBS: &str = "INSERT INTO jobs (id, jobset_id, attr, system, suffixed)";
const INSERT_SPANS: &str = "INSERT INTO spans (job_id, first_seq, build_id, version, built)";

/// `insert` (naming the columns [`NewRow::bind`] binds) with `rows` rows
/// of parameters.
fn insert_of<R: NewRow>(insert: &str, rows: usize) -> String {
    let row = format!("({})", vec!["?"; R::COLUMNS].join(", "));
    format!("{insert} VALUES {}", vec![row; rows].join(", "))
}

/// Insert `rows` and empty it: a full batch with `many`, which has
/// [`ROWS_PER_INSERT`] rows of parameters, the rest one by one with `one`.
/// Returns how many rows were inserted.
fn insert_rows<R: NewRow>(
    rows: &mut Vec<R>,
    many: &mut rusqlite::Statement<'_>,
    one: &mut rusqlite::Statement<'_>,
    what: &'static str,
) -> Result<usize, StoreError> {
    let inserted = if rows.len() == ROWS_PER_INSERT {
        for (i, row) in rows.iter().enumerate() {
            row.bind(many, i * R::COLUMNS + 1).context(what)?;
        }
        many.raw_execute().context(what)?
    } else {
        let mut inserted = 0;
        for row in rows.iter() {
            row.bind(one, 1).context(what)?;
            inserted += one.raw_execute().context(what)?;
        }
        inserted
    };
    rows.clear();
    Ok(inserted)
}

/// Rows one `INSERT` writes (at most 7 parameters each, far below
/// SQLite's limit of 32,766). One statement for many rows saves the
/// per-statement work (cursors opened and closed on the table and each of
/// its indexes, the program started and halted): with spans written so,
/// the writer alone took 1.69 s of CPU against 2.15 s one by one (median
/// of 20 rounds, alternating).
const ROWS_PER_INSERT: usize = 64;

/// How the jobs' name index (`jobs_by_name`, schema version 18) is kept
/// while an eval is written.
///
/// Hydra lists an eval's builds in no name order, so row by row each new
/// job's name lands in the middle of the index: for a first eval of
/// nixpkgs (290,000 new jobs) that was a third of the writer's time, page
/// splits and seeks most of it. `CREATE INDEX` sorts the names and fills
/// the index in one pass: with sqlite3, on the `ingest` benchmark's first
/// eval, the jobs cost 0.75 to 0.85 s filled row by row and 0.5 to 0.6 s
/// as rows plus one index build. The index holds every jobset's jobs, so
/// building it again pays only for an eval that brings at least as many
/// new jobs as the store holds: a jobset's first eval on a new install
/// (see [`rebuilds_name_index`]).
///
/// While it is dropped, nothing in the transaction looks a job up by name:
/// the writer knows every job id of its jobset ([`JobsetCache`]) and
/// inserts a job only when its Hydra job name is not among them, and a
/// Hydra job name spells one (attribute, system, suffixed). Creating the
/// index again checks uniqueness all the same: a duplicate would fail the
/// commit and roll the eval back, index included. Other connections never
/// see it missing: the drop is part of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameIndex {
    /// Filled row by row, as every write but such an eval does.
    Kept,
    /// Dropped for this transaction; created again on commit.
    Deferred,
}

/// The one definition the writer creates the index from; schema version 18
/// creates the same (a test compares them).
const CREATE_NAME_INDEX: &str =
    "CREATE UNIQUE INDEX jobs_by_name ON jobs (attr, system, jobset_id, suffixed)";

/// Below this many new jobs an eval's names cost little either way, and the
/// index is kept.
const NAME_INDEX_REBUILD_MIN_NEW_JOBS: usize = 10_000;

/// Whether an eval bringing about `new_jobs` jobs to a store of
/// `stored_jobs` (every jobset's) is written faster by dropping the name
/// index and creating it again: creating it sorts all jobs, old and new,
/// which costs about half of inserting as many names one by one in no
/// order (measured, see [`NameIndex`]), so it pays once the new jobs are at
/// least as many as the stored ones.
fn rebuilds_name_index(new_jobs: usize, stored_jobs: usize) -> bool {
    new_jobs >= NAME_INDEX_REBUILD_MIN_NEW_JOBS && new_jobs >= stored_jobs
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
                "SELECT b.id, b.job_id, b.finished, b.status, b.version FROM spans s
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
                        version: r.get(4)?,
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
            .prepare_cached("SELECT job_id, finished, status, version FROM builds WHERE id = ?1")
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
                        version: r.get(3)?,
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

    /// Start updating build statuses only (rechecks of builds of the newest
    /// eval): a restart or a repoint seen now counts from the newest eval on.
    pub fn begin_recheck(&mut self, jobset_id: i64) -> Result<EvalWriter<'_>, StoreError> {
        let newest = self.newest_eval(jobset_id)?.map(|e| e.seq);
        let mut writer = self.begin(jobset_id)?;
        writer.recheck_seq = newest;
        Ok(writer)
    }

    fn begin(&mut self, jobset_id: i64) -> Result<EvalWriter<'_>, StoreError> {
        let cache = self.caches.entry(jobset_id).or_default();
        if !cache.fresh {
            *cache = JobsetCache::load(&self.conn, jobset_id)?;
        }
        let checks = ReferencesUnchecked::begin(&self.conn)?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .context("starting a transaction")?;
        let newest_stored_build = tx
            .query_row("SELECT coalesce(max(id), 0) FROM builds", [], |r| r.get(0))
            .context("starting a transaction")?;
        // Fresh again only once this transaction commits.
        cache.fresh = false;
        Ok(EvalWriter {
            statements: Statements::prepare(&self.conn)?,
            tx,
            _checks: checks,
            jobset_id,
            cache,
            members: JobIds::default(),
            eval: None,
            recheck_seq: None,
            outcome: WriteOutcome::default(),
            name_index: NameIndex::Kept,
            pending_spans: Vec::with_capacity(ROWS_PER_INSERT),
            pending_jobs: Vec::with_capacity(ROWS_PER_INSERT),
            next_job_id: None,
            pending_builds: Vec::with_capacity(ROWS_PER_INSERT),
            newest_stored_build,
        })
    }
}

/// SQLite's foreign key checks, off while an eval is written.
///
/// Every row the writer inserts refers to a job or build it inserted or
/// looked up in the same transaction, so the checks could only fail on a
/// bug in this file; they cost three B-tree lookups per new build (a build
/// names its job, a span its job and build): the writer alone took 2.7 s
/// of CPU for a first eval of nixpkgs with them and 1.9 s without (the
/// `ingest` benchmark). Every other write but pruning keeps them, and
/// [`Store::integrity_check`], which the tests run after rollbacks and
/// kills, checks every reference.
struct ReferencesUnchecked<'c>(&'c rusqlite::Connection);

impl<'c> ReferencesUnchecked<'c> {
    fn begin(conn: &'c rusqlite::Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "foreign_keys", "OFF")
            .context("starting a transaction")?;
        Ok(ReferencesUnchecked(conn))
    }
}

impl Drop for ReferencesUnchecked<'_> {
    fn drop(&mut self) {
        // Cannot fail outside a transaction; a failure would leave only the
        // checks off, never data wrong, so it is logged, not fatal.
        if let Err(e) = self.0.pragma_update(None, "foreign_keys", "ON") {
            tracing::warn!(error = %e, "cannot turn SQLite's foreign key checks back on");
        }
    }
}

/// The statements of the ingest hot path, prepared once per transaction.
///
/// Plain and `OR IGNORE` inserts rather than upserts: SQLite checks their
/// constraints before writing, so it needs no statement journal per row.
struct Statements<'c> {
    insert_build: rusqlite::Statement<'c>,
    insert_builds: rusqlite::Statement<'c>,
    stored_build: rusqlite::Statement<'c>,
    update_build: rusqlite::Statement<'c>,
    keep_version: rusqlite::Statement<'c>,
    new_version: rusqlite::Statement<'c>,
    insert_job: rusqlite::Statement<'c>,
    insert_jobs: rusqlite::Statement<'c>,
    open_span: rusqlite::Statement<'c>,
    open_spans: rusqlite::Statement<'c>,
    close_span: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c rusqlite::Connection) -> Result<Statements<'c>, StoreError> {
        let prepare = |sql: &str| conn.prepare(sql).context("preparing statements");
        Ok(Statements {
            insert_build: prepare(&insert_of::<NewBuild>(INSERT_BUILDS, 1))?,
            insert_builds: prepare(&insert_of::<NewBuild>(INSERT_BUILDS, ROWS_PER_INSERT))?,
            stored_build: prepare(
                "SELECT finished, status, stoptime, drv_hash, version FROM builds WHERE id = ?1",
            )?,
            update_build: prepare(
                "UPDATE builds SET finished = ?2, status = ?3, stoptime = ?4 WHERE id = ?1",
            )?,
            keep_version: prepare(
                "INSERT OR IGNORE INTO build_versions (build_id, version, finished, status, stoptime, drv_hash)
                 SELECT id, version, finished, status, stoptime, drv_hash FROM builds WHERE id = ?1",
            )?,
            new_version: prepare(
                "UPDATE builds SET finished = ?2, status = ?3, stoptime = ?4, drv_hash = ?5,
                                   version = version + 1
                 WHERE id = ?1 RETURNING version",
            )?,
            insert_job: prepare(&insert_of::<NewJob>(INSERT_JOBS, 1))?,
            insert_jobs: prepare(&insert_of::<NewJob>(INSERT_JOBS, ROWS_PER_INSERT))?,
            // `last_seq` is left NULL: the span is open.
            open_span: prepare(&insert_of::<NewSpan>(INSERT_SPANS, 1))?,
            open_spans: prepare(&insert_of::<NewSpan>(INSERT_SPANS, ROWS_PER_INSERT))?,
            close_span: prepare("UPDATE spans SET last_seq = ?2, job_left = ?3 WHERE job_id = ?1 AND last_seq IS NULL")?,
        })
    }
}

fn load_open_spans(
    conn: &rusqlite::Connection,
    jobset_id: i64,
) -> Result<HashMap<i64, BuildVersion>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT s.job_id, s.build_id, s.version FROM spans s JOIN jobs j ON j.id = s.job_id
             WHERE j.jobset_id = ?1 AND s.last_seq IS NULL",
        )
        .context("loading open spans")?;
    let rows = stmt
        .query_map([jobset_id], |r| {
            Ok((
                r.get(0)?,
                BuildVersion {
                    build: r.get(1)?,
                    version: r.get(2)?,
                },
            ))
        })
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
    /// Prepare for an eval of about `builds` builds, before the first one:
    /// room in the maps, made once rather than by doubling (each doubling
    /// briefly holds the old table and the new), and, for an eval that
    /// brings more jobs than the store holds, the jobs' name index dropped
    /// until commit ([`NameIndex`]).
    pub fn reserve(&mut self, builds: usize) -> Result<(), StoreError> {
        let jobs = builds.saturating_sub(self.cache.job_ids.len());
        self.cache.job_ids.reserve(jobs);
        let spans = builds.saturating_sub(self.cache.open_spans.len());
        self.cache.open_spans.reserve(spans);
        if self.name_index == NameIndex::Kept && jobs >= NAME_INDEX_REBUILD_MIN_NEW_JOBS {
            let stored: i64 = self
                .tx
                .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
                .context("counting the stored jobs")?;
            if rebuilds_name_index(jobs, usize::try_from(stored).unwrap_or(usize::MAX)) {
                self.tx
                    .execute_batch("DROP INDEX jobs_by_name")
                    .context("deferring the jobs' name index")?;
                self.name_index = NameIndex::Deferred;
                tracing::debug!(
                    new_jobs = jobs,
                    stored_jobs = stored,
                    "the jobs' name index is built again at commit"
                );
            }
        }
        Ok(())
    }

    /// Record a build fetched from Hydra: its job, its status, and (when
    /// writing an eval) that the eval contains it.
    pub fn add_build(&mut self, mut build: BuildRow) -> Result<(), StoreError> {
        // Taken, not cloned: the row's name is the job's if it is new.
        let name = std::mem::replace(
            &mut build.job,
            JobName {
                attr: String::new(),
                system: String::new(),
                suffixed: false,
            },
        );
        let job_id = self.job_id(std::mem::take(&mut build.hydra_job), name)?;
        let open = self.cache.open_spans.get(&job_id).copied();
        if build.id > self.newest_stored_build {
            let (id, built) = (build.id, build.built());
            self.pending_builds.push(NewBuild {
                id,
                job_id,
                finished: build.finished,
                status: build.status,
                stoptime: build.stoptime,
                drv_hash: build.drv_hash,
                nixname: build.nixname,
            });
            self.outcome.builds_written += 1;
            if self.pending_builds.len() == ROWS_PER_INSERT {
                self.write_builds()?;
            }
            return self.add_member(id, job_id, 1, built, open);
        }
        // The build of the job's open span is stored: no insert to attempt.
        let stored_already = open.is_some_and(|open| open.build == build.id);
        let inserted = if stored_already {
            0
        } else {
            self.statements
                .insert_build
                .execute(params![
                    build.id,
                    job_id,
                    build.finished,
                    build.status,
                    build.stoptime,
                    build.drv_hash,
                    build.nixname
                ])
                .context("writing a build")?
        };
        if inserted == 1 {
            self.outcome.builds_written += 1;
            return self.add_member(build.id, job_id, 1, build.built(), open);
        }
        let stored = self
            .statements
            .stored_build
            .query_row([build.id], |r| {
                Ok(StoredBuild {
                    finished: r.get(0)?,
                    status: r.get(1)?,
                    stoptime: r.get(2)?,
                    drv_hash: r.get(3)?,
                    version: r.get(4)?,
                })
            })
            .context("reading a stored build")?;
        let version = match stored.change(&build) {
            Change::None => stored.version,
            Change::Completes => {
                self.statements
                    .update_build
                    .execute(params![
                        build.id,
                        build.finished,
                        build.status,
                        build.stoptime
                    ])
                    .context("updating a build")?;
                self.outcome.builds_written += 1;
                stored.version
            }
            Change::NewVersion => {
                self.statements
                    .keep_version
                    .execute([build.id])
                    .context("keeping a build's version")?;
                let version: i64 = self
                    .statements
                    .new_version
                    .query_row(
                        params![
                            build.id,
                            build.finished,
                            build.status,
                            build.stoptime,
                            build.drv_hash
                        ],
                        |r| r.get(0),
                    )
                    .context("recording a build's new version")?;
                tracing::debug!(
                    build = build.id,
                    version,
                    repointed = stored.drv_hash != build.drv_hash,
                    "a build changed after the fact; recorded from this eval on"
                );
                self.outcome.builds_written += 1;
                self.outcome.new_versions += 1;
                self.new_version_in_recheck(job_id, build.id, version, build.built())?;
                version
            }
        };
        // Whatever changed, the stored version now says what Hydra says.
        // (`open` still holds: only a recheck, which writes no members,
        // changes open spans above.)
        self.add_member(build.id, job_id, version, build.built(), open)
    }

    /// Record that the eval contains a build the store already has.
    pub fn add_known(&mut self, build_id: i64, known: &KnownBuild) -> Result<(), StoreError> {
        match known {
            KnownBuild::Stored {
                job_id,
                finished,
                status,
                version,
            } => {
                let open = self.cache.open_spans.get(job_id).copied();
                self.add_member(build_id, *job_id, *version, built(*finished, *status), open)
            }
            KnownBuild::Refused => {
                self.outcome.rejected_jobs += 1;
                Ok(())
            }
        }
    }

    /// Note that Hydra was just asked about `build_id` (so rechecks ask
    /// about others first).
    pub fn note_fetched(&mut self, build_id: i64, at: i64) -> Result<(), StoreError> {
        self.write_builds()?;
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

    /// The eval contains `version` of `build_id` as the build of `job_id`:
    /// extend the job's open span if it saw the same, else close it and
    /// open one.
    /// `built`: that version finished and succeeded (the span's `built`).
    /// `open`: the job's open span, as the caller just looked it up.
    fn add_member(
        &mut self,
        build_id: i64,
        job_id: i64,
        version: i64,
        built: bool,
        open: Option<BuildVersion>,
    ) -> Result<(), StoreError> {
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
        let seen = BuildVersion {
            build: build_id,
            version,
        };
        if open == Some(seen) {
            return Ok(());
        }
        if open.is_some() {
            self.close_span(job_id, seq)?;
        }
        self.open_span(job_id, seq, seen, built)
    }

    fn open_span(
        &mut self,
        job_id: i64,
        seq: i64,
        seen: BuildVersion,
        built: bool,
    ) -> Result<(), StoreError> {
        self.pending_spans.push(NewSpan {
            job_id,
            first_seq: seq,
            seen,
            built,
        });
        if self.pending_spans.len() == ROWS_PER_INSERT {
            self.write_spans()?;
        }
        self.outcome.spans_opened += 1;
        self.cache.open_spans.insert(job_id, seen);
        Ok(())
    }

    /// Insert the spans opened so far.
    fn write_spans(&mut self) -> Result<(), StoreError> {
        insert_rows(
            &mut self.pending_spans,
            &mut self.statements.open_spans,
            &mut self.statements.open_span,
            "opening spans",
        )
        .map(drop)
    }

    /// Insert the builds new to the store so far. A build Hydra listed
    /// twice in the eval is inserted and counted once (`OR IGNORE`), with
    /// what its first listing said: were the two listings to differ, the
    /// second is not recorded as a new version, as it would be for a build
    /// already stored. Hydra lists each build of an eval once (its
    /// `JobsetEvalMembers` has the primary key (eval, build): NixOS/hydra
    /// `sql/hydra.sql`).
    fn write_builds(&mut self) -> Result<(), StoreError> {
        let pending = self.pending_builds.len();
        let inserted = insert_rows(
            &mut self.pending_builds,
            &mut self.statements.insert_builds,
            &mut self.statements.insert_build,
            "writing builds",
        )?;
        self.outcome.builds_written -= pending - inserted;
        Ok(())
    }

    /// A recheck of the newest eval found a new version of a build: the
    /// job's open span, if it has this build, ends with the eval before the
    /// newest and a span of the new version starts at the newest, so the
    /// evals before keep what they saw. A span that began with the newest
    /// eval simply takes the new version.
    fn new_version_in_recheck(
        &mut self,
        job_id: i64,
        build_id: i64,
        version: i64,
        built: bool,
    ) -> Result<(), StoreError> {
        let Some(seq) = self.recheck_seq.filter(|_| self.eval.is_none()) else {
            return Ok(());
        };
        let Some(open) = self.cache.open_spans.get(&job_id).copied() else {
            return Ok(());
        };
        if open.build != build_id {
            return Ok(());
        }
        self.write_spans()?;
        let seen = BuildVersion {
            build: build_id,
            version,
        };
        let first_seq: i64 = self
            .tx
            .prepare_cached("SELECT first_seq FROM spans WHERE job_id = ?1 AND last_seq IS NULL")
            .and_then(|mut stmt| stmt.query_row([job_id], |r| r.get(0)))
            .context("finding an open span")?;
        if first_seq == seq {
            self.tx
                .prepare_cached(
                    "UPDATE spans SET version = ?2, built = ?3 WHERE job_id = ?1 AND last_seq IS NULL",
                )
                .and_then(|mut stmt| stmt.execute(params![job_id, version, built]))
                .context("updating an open span")?;
            self.cache.open_spans.insert(job_id, seen);
            return Ok(());
        }
        self.close_span(job_id, seq)?;
        self.open_span(job_id, seq, seen, built)
    }

    /// Builds of the jobset report `name`: Hydra renamed it. Returns
    /// whether that is news.
    pub fn note_jobset_renamed(&mut self, name: &str) -> Result<bool, StoreError> {
        self.tx
            .execute(
                "UPDATE jobsets SET renamed_to = ?2 WHERE id = ?1 AND renamed_to IS NOT ?2",
                params![self.jobset_id, name],
            )
            .map(|changed| changed > 0)
            .context("noting a renamed jobset")
    }

    /// Note where a round of rechecks got to (see `jobsets.recheck_cursor`),
    /// in the transaction that writes what it found.
    pub fn set_recheck_cursor(&mut self, cursor: Option<i64>) -> Result<(), StoreError> {
        self.tx
            .execute(
                "UPDATE jobsets SET recheck_cursor = ?2 WHERE id = ?1",
                params![self.jobset_id, cursor],
            )
            .map(drop)
            .context("noting the recheck cursor")
    }

    /// End the job's open span with the eval before `seq`.
    fn close_span(&mut self, job_id: i64, seq: i64) -> Result<(), StoreError> {
        self.end_span(job_id, seq, false)
    }

    /// End the job's open span with the eval before `seq`; `left`: the job
    /// is not in the eval `seq` (it left the jobset).
    fn end_span(&mut self, job_id: i64, seq: i64, left: bool) -> Result<(), StoreError> {
        self.write_spans()?;
        self.statements
            .close_span
            .execute(params![job_id, seq - 1, left])
            .context("closing a span")?;
        self.outcome.spans_closed += 1;
        self.cache.open_spans.remove(&job_id);
        Ok(())
    }

    /// The job's id; a job the jobset does not have yet gets the next id
    /// and is inserted with the next batch.
    ///
    /// The cache holds every job of the jobset, by Hydra job name, and a
    /// Hydra job name spells one (attribute, system, suffixed): a name the
    /// cache lacks is a new job, so the id is the writer's to give (SQLite
    /// would give the same: one past the largest).
    fn job_id(&mut self, hydra_job: String, name: JobName) -> Result<i64, StoreError> {
        if let Some(&id) = self.cache.job_ids.get(&hydra_job) {
            return Ok(id);
        }
        let id = match self.next_job_id {
            Some(id) => id,
            None => self
                .tx
                .query_row("SELECT coalesce(max(id), 0) + 1 FROM jobs", [], |r| {
                    r.get(0)
                })
                .context("registering a job")?,
        };
        self.next_job_id = Some(id + 1);
        self.pending_jobs.push(NewJob {
            id,
            jobset_id: self.jobset_id,
            name,
        });
        if self.pending_jobs.len() == ROWS_PER_INSERT {
            self.write_jobs()?;
        }
        self.cache.job_ids.insert(hydra_job, id);
        Ok(id)
    }

    /// Insert the jobs registered so far.
    fn write_jobs(&mut self) -> Result<(), StoreError> {
        insert_rows(
            &mut self.pending_jobs,
            &mut self.statements.insert_jobs,
            &mut self.statements.insert_job,
            "registering jobs",
        )
        .map(drop)
    }

    /// Write the eval row and its spans, and commit.
    pub fn commit(mut self) -> Result<WriteOutcome, StoreError> {
        self.write_jobs()?;
        self.write_builds()?;
        self.write_spans()?;
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
                .cache
                .open_spans
                .keys()
                .copied()
                .filter(|job| !self.members.contains(*job))
                .collect();
            for job_id in gone {
                self.end_span(job_id, seq, true)?;
            }
        }
        if self.name_index == NameIndex::Deferred {
            self.tx
                .execute_batch(CREATE_NAME_INDEX)
                .context("building the jobs' name index")?;
        }
        self.tx.commit().context("committing")?;
        self.cache.fresh = true;
        Ok(self.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{build_of, new_eval, trunk_store};
    use super::*;

    fn stored(finished: bool, status: Option<i64>) -> StoredBuild {
        StoredBuild {
            finished,
            status,
            stoptime: status.map(|_| 100),
            drv_hash: "aaaa".into(),
            version: 1,
        }
    }

    /// What Hydra says of build 7 now, with its derivation's hash.
    fn hydra_says(
        finished: bool,
        status: Option<i64>,
        stoptime: Option<i64>,
        drv_hash: &str,
    ) -> BuildRow {
        BuildRow {
            id: 7,
            hydra_job: "hello.x86_64-linux".into(),
            job: JobName::parse("hello.x86_64-linux", "x86_64-linux").unwrap(),
            finished,
            status,
            stoptime,
            drv_hash: drv_hash.into(),
            nixname: "hello".into(),
        }
    }

    /// Jobs, builds and spans go to the database a batch at a time; a
    /// partial batch lands at commit, and a span closed later finds the
    /// one it ends.
    #[test]
    fn jobs_builds_and_spans_written_in_batches_all_land_and_close() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let jobs = 2 * ROWS_PER_INSERT + 3;
        let builds = builds_of_many_jobs(1_000, jobs);
        let mut first = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(1))
            .unwrap();
        for build in builds.iter().cloned() {
            first.add_build(build).unwrap();
        }
        let outcome = first.commit().unwrap();
        assert_eq!((outcome.builds_written, outcome.spans_opened), (jobs, jobs));
        let stored_builds: Vec<(i64, String, i64, String)> = store
            .conn
            .prepare(
                "SELECT b.id, j.attr, b.stoptime, b.drv_hash || ' ' || b.nixname
                 FROM builds b JOIN jobs j ON j.id = b.job_id ORDER BY b.id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<(i64, String, i64, String)> = builds
            .iter()
            .map(|b| {
                (
                    b.id,
                    b.job.attr.clone(),
                    100,
                    format!("aaaa {}", b.job.attr),
                )
            })
            .collect();
        assert_eq!(stored_builds, expected);
        let ids: (i64, i64, i64) = store
            .conn
            .query_row("SELECT count(*), min(id), max(id) FROM jobs", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(ids, (jobs as i64, 1, jobs as i64));

        // Eval 2: the first job has a new build, the last one left.
        let mut second = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(2))
            .unwrap();
        let mut changed = builds[0].clone();
        changed.id = 5_000;
        second.add_build(changed).unwrap();
        for build in builds[1..jobs - 1].iter().cloned() {
            second.add_build(build).unwrap();
        }
        let outcome = second.commit().unwrap();
        assert_eq!((outcome.spans_opened, outcome.spans_closed), (1, 2));
        assert_eq!(outcome.builds_written, 1, "build 5000");

        let spans: Vec<(i64, Option<i64>, i64)> = store
            .conn
            .prepare("SELECT first_seq, last_seq, build_id FROM spans ORDER BY build_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(spans.len(), jobs + 1, "{spans:?}");
        assert_eq!(
            spans[0],
            (1, Some(1), 1_000),
            "the changed job's first build"
        );
        assert_eq!(
            spans[jobs - 1],
            (1, Some(1), 1_000 + jobs as i64 - 1),
            "the job that left"
        );
        assert_eq!(spans[jobs], (2, None, 5_000), "the changed job's new build");
        assert!(spans[1..jobs - 1].iter().all(|s| s.1.is_none()));
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    /// Hydra lists each build of an eval once; were one listed twice, in
    /// one batch or in two, it is written and counted once, as before
    /// builds were batched.
    #[test]
    fn a_build_listed_twice_in_one_eval_is_written_once() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let builds = builds_of_many_jobs(1_000, ROWS_PER_INSERT + 2);
        let mut eval = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(1))
            .unwrap();
        for build in builds.iter().cloned() {
            eval.add_build(build).unwrap();
        }
        eval.add_build(builds[0].clone()).unwrap();
        eval.add_build(builds[ROWS_PER_INSERT + 1].clone()).unwrap();
        let outcome = eval.commit().unwrap();
        assert_eq!(
            (
                outcome.builds_written,
                outcome.members,
                outcome.spans_opened
            ),
            (builds.len(), builds.len(), builds.len())
        );
        let stored: i64 = store
            .conn
            .query_row("SELECT count(*) FROM builds", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, builds.len() as i64);
    }

    /// A build fetched alone (a recheck, or an eval read build by build)
    /// is noted as asked about even when it is new to the store.
    #[test]
    fn a_new_build_fetched_alone_is_noted_as_fetched() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let mut writer = store.begin_recheck(jobset_id).unwrap();
        writer.add_build(build_of(42, "hello")).unwrap();
        writer.note_fetched(42, 1_700_000_000).unwrap();
        assert_eq!(writer.commit().unwrap().builds_written, 1);
        let fetched_at: Option<i64> = store
            .conn
            .query_row("SELECT fetched_at FROM builds WHERE id = 42", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fetched_at, Some(1_700_000_000));
    }

    #[test]
    fn the_name_index_is_built_again_only_for_an_eval_bigger_than_the_store() {
        let min = NAME_INDEX_REBUILD_MIN_NEW_JOBS;
        assert!(rebuilds_name_index(290_000, 0), "a first install");
        assert!(rebuilds_name_index(290_000, 290_000), "as many as stored");
        assert!(
            !rebuilds_name_index(280_000, 290_000),
            "a second jobset's first eval"
        );
        assert!(!rebuilds_name_index(3_000, 290_000), "a day's new jobs");
        assert!(!rebuilds_name_index(min - 1, 0), "a small jobset");
        assert!(rebuilds_name_index(min, 0));
    }

    /// Names of the jobs' indexes, as the schema has them now (seen from
    /// inside a transaction when `conn` is the writer's).
    fn job_indexes(conn: &rusqlite::Connection) -> Vec<(String, String)> {
        conn.prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'jobs' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Builds of `jobs` distinct jobs, ids from `first_id` on, their names
    /// in no order (as Hydra lists them).
    fn builds_of_many_jobs(first_id: i64, jobs: usize) -> Vec<BuildRow> {
        (0..jobs)
            .map(|i| {
                let scrambled = (i * 7_919) % jobs;
                build_of(first_id + i as i64, &format!("pkg{scrambled}"))
            })
            .collect()
    }

    #[test]
    fn a_first_eval_of_many_jobs_builds_the_name_index_once_at_commit() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let as_migrated = job_indexes(&store.conn);
        let jobs = NAME_INDEX_REBUILD_MIN_NEW_JOBS + 1;
        let builds = builds_of_many_jobs(1_000_000, jobs);

        let mut writer = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(1))
            .unwrap();
        writer.reserve(builds.len()).unwrap();
        assert_eq!(writer.name_index, NameIndex::Deferred);
        let during: Vec<String> = job_indexes(&writer.tx)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(during, ["jobs_by_jobset"], "dropped inside the transaction");
        for build in builds.iter().cloned() {
            writer.add_build(build).unwrap();
        }
        let outcome = writer.commit().unwrap();
        assert_eq!(outcome.members, jobs);

        assert_eq!(
            job_indexes(&store.conn),
            as_migrated,
            "created again exactly as schema version 18 makes it"
        );
        assert_eq!(store.integrity_check().unwrap(), "ok");
        let duplicate = store.conn.execute(
            "INSERT INTO jobs (jobset_id, attr, system, suffixed) VALUES (?1, 'pkg0', 'x86_64-linux', 1)",
            [jobset_id],
        );
        assert!(duplicate.is_err(), "the index refuses a second pkg0");

        // The next eval of the same jobs adds none, and keeps the index.
        let mut next = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(2))
            .unwrap();
        next.reserve(builds.len()).unwrap();
        assert_eq!(next.name_index, NameIndex::Kept);
        for build in builds {
            next.add_build(build).unwrap();
        }
        let outcome = next.commit().unwrap();
        assert_eq!((outcome.members, outcome.builds_written), (jobs, 0));
        let stored: i64 = store
            .conn
            .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, jobs as i64);
    }

    #[test]
    fn a_first_eval_rolled_back_leaves_the_name_index_in_place() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let as_migrated = job_indexes(&store.conn);
        let builds = builds_of_many_jobs(1_000_000, NAME_INDEX_REBUILD_MIN_NEW_JOBS);
        let mut cut_short = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(1))
            .unwrap();
        cut_short.reserve(builds.len()).unwrap();
        for build in builds.iter().take(100).cloned() {
            cut_short.add_build(build).unwrap();
        }
        drop(cut_short);
        assert_eq!(job_indexes(&store.conn), as_migrated);

        let mut again = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(1))
            .unwrap();
        again.add_build(builds[0].clone()).unwrap();
        again.add_build(builds[0].clone()).unwrap();
        again.commit().unwrap();
        let stored: i64 = store
            .conn
            .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 1);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    /// The writer writes its job ids and open spans through to the store's
    /// cache; a transaction that rolls back must not leave the cache
    /// pointing at rows that were never committed.
    #[test]
    fn an_eval_rolled_back_leaves_nothing_behind_for_the_next_one() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let mut first = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(1))
            .unwrap();
        first.add_build(build_of(10, "hello")).unwrap();
        first.add_build(build_of(11, "kept")).unwrap();
        first.commit().unwrap();

        let mut cut_short = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(2))
            .unwrap();
        cut_short.add_build(build_of(20, "fresh")).unwrap();
        cut_short.add_build(build_of(21, "hello")).unwrap();
        drop(cut_short);

        let mut again = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(2))
            .unwrap();
        again.reserve(3).unwrap();
        again.add_build(build_of(20, "fresh")).unwrap();
        again.add_build(build_of(21, "hello")).unwrap();
        let outcome = again.commit().unwrap();
        assert_eq!(
            (outcome.spans_opened, outcome.spans_closed),
            (2, 2),
            "fresh and hello's new build open spans; hello's old one and kept's close: {outcome:?}"
        );
        let open: Vec<(i64, i64)> = store
            .conn
            .prepare("SELECT job_id, build_id FROM spans WHERE last_seq IS NULL ORDER BY build_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(open.iter().map(|o| o.1).collect::<Vec<_>>(), [20, 21]);
        assert_eq!(store.integrity_check().unwrap(), "ok");
        let orphans: i64 = store
            .conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(orphans, 0);
    }

    /// The writer has SQLite skip its reference checks while it writes;
    /// they are back for every other write once it is done, whether it
    /// committed or rolled back, and the integrity check sees a reference
    /// to nothing.
    #[test]
    fn reference_checks_are_off_only_while_an_eval_is_written() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let checks_on = |conn: &rusqlite::Connection| -> bool {
            conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))
                .unwrap()
        };
        let mut writer = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(1))
            .unwrap();
        writer.add_build(build_of(10, "hello")).unwrap();
        assert!(!checks_on(&writer.tx), "off while writing");
        writer.commit().unwrap();
        assert!(checks_on(&store.conn), "on after a commit");
        let mut cut_short = store
            .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(2))
            .unwrap();
        cut_short.add_build(build_of(20, "fresh")).unwrap();
        drop(cut_short);
        assert!(checks_on(&store.conn), "on after a rollback");
        assert_eq!(store.integrity_check().unwrap(), "ok");

        store
            .conn
            .execute_batch(
                "PRAGMA foreign_keys = OFF;
                 INSERT INTO spans (job_id, first_seq, last_seq, build_id, version) VALUES (1, 9, 9, 999, 1);
                 PRAGMA foreign_keys = ON;",
            )
            .unwrap();
        let verdict = store.integrity_check().unwrap();
        assert!(
            verdict.contains("spans") && verdict.contains("builds"),
            "a span naming a build that is not stored: {verdict}"
        );
    }

    /// The hints a plan reads instead of every build (`built`,
    /// `job_left`) follow the builds as Hydra changes them.
    #[test]
    fn each_span_knows_whether_its_build_built_and_whether_its_job_left() {
        let (_dir, mut store, jobset_id) = trunk_store();
        let with = |id, attr, finished, status| BuildRow {
            finished,
            status,
            ..build_of(id, attr)
        };
        let mut write = |eval, builds: Vec<BuildRow>| {
            let mut writer = store
                .begin_eval(jobset_id, "nixpkgs:trunk", new_eval(eval))
                .unwrap();
            for build in builds {
                writer.add_build(build).unwrap();
            }
            writer.commit().unwrap();
        };
        write(
            1,
            vec![
                with(10, "pending", false, None),
                with(11, "failing", true, Some(1)),
                with(12, "restarted", true, Some(0)),
                with(13, "leaving", true, Some(1)),
            ],
        );
        // The pending build completes; the other is restarted and pending.
        write(
            2,
            vec![
                with(10, "pending", true, Some(0)),
                with(11, "failing", true, Some(1)),
                with(12, "restarted", false, Some(0)),
            ],
        );
        let hints: Vec<(String, i64, bool, bool)> = store
            .conn
            .prepare(
                "SELECT j.attr, s.first_seq, s.built, s.job_left FROM spans s JOIN jobs j ON j.id = s.job_id
                 ORDER BY j.attr, s.first_seq",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let hints: Vec<(&str, i64, bool, bool)> = hints
            .iter()
            .map(|(attr, seq, built, left)| (attr.as_str(), *seq, *built, *left))
            .collect();
        assert_eq!(
            hints,
            [
                ("failing", 1, false, false),
                ("leaving", 1, false, true),
                ("pending", 1, true, false),
                ("restarted", 1, true, false),
                ("restarted", 2, false, false),
            ],
            "(attr, first eval, built, job left)"
        );
    }

    #[test]
    fn a_job_id_is_in_the_set_once_whatever_its_size() {
        let mut ids = JobIds::default();
        for id in [1, 63, 64, 65, 300_000, 0, -5, i64::MAX, 1 << 26] {
            assert!(ids.insert(id), "{id} is new");
            assert!(!ids.insert(id), "{id} was added already");
            assert!(ids.contains(id), "{id} is in the set");
        }
        for id in [2, 62, 66, 299_999, -4, i64::MAX - 1, (1 << 26) - 1] {
            assert!(!ids.contains(id), "{id} was never added");
        }
    }

    #[test]
    fn a_first_result_completes_the_pending_version() {
        let pending = stored(false, None);
        let done = hydra_says(true, Some(1), Some(100), "aaaa");
        assert_eq!(pending.change(&done), Change::Completes);
        assert_eq!(stored(true, Some(1)).change(&done), Change::None);
    }

    #[test]
    fn a_restart_is_a_new_version_whether_seen_pending_or_finished_again() {
        let failed = stored(true, Some(1));
        // Hydra's restart: unfinished, the old status and time kept.
        let restarted = hydra_says(false, Some(1), Some(100), "aaaa");
        assert_eq!(failed.change(&restarted), Change::NewVersion);
        let built_since = hydra_says(true, Some(0), Some(200), "aaaa");
        assert_eq!(failed.change(&built_since), Change::NewVersion);
        let failed_again_later = hydra_says(true, Some(1), Some(200), "aaaa");
        assert_eq!(failed.change(&failed_again_later), Change::NewVersion);
    }

    #[test]
    fn a_new_derivation_is_a_new_version_even_for_a_pending_build() {
        let repointed = hydra_says(false, None, Some(100), "bbbb");
        assert_eq!(stored(true, Some(0)).change(&repointed), Change::NewVersion);
        assert_eq!(stored(false, None).change(&repointed), Change::NewVersion);
    }
}
