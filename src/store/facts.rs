//! What the policy engine reads (facts, the ledger) and how the forge side
//! writes the ledger: an intent before every outward action, its result after.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::time::Duration;

use rusqlite::{MAIN_DB, OptionalExtension, TransactionBehavior, params};
use url::Url;

use super::causes::cause_of;
use super::{Context, Store, StoreError};
use crate::config::JobsetRef;
use crate::history::{EvalPoint, StatusClass, StreakRules};
use crate::policy::{
    Action, ActionKind, ActionRecord, Facts, JobFacts, JobsetFacts, Ledger, OptOut, OptOutKind,
    RecordState, Run, drv_digest,
};

/// An action about to be carried out (see [`Store::record_intent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAction {
    pub kind: ActionKind,
    pub attr: Option<String>,
    pub systems: Vec<String>,
    pub all_platforms: bool,
    pub step: Option<String>,
    pub batch: Option<String>,
    /// GitHub logins the action will mention.
    pub pinged: Vec<String>,
    /// The pull request it concerns, when known before acting (close_pr).
    pub pr: Option<u64>,
}

impl NewAction {
    /// The intent of carrying out a planned action.
    pub fn from_action(action: &Action, pinged: Vec<String>) -> NewAction {
        NewAction {
            kind: action.kind,
            attr: action.attr.clone(),
            systems: action.systems.clone(),
            all_platforms: action.all_platforms,
            step: action.step.clone(),
            batch: action.batch.clone(),
            pinged,
            pr: action.evidence.pr,
        }
    }

    /// Its ledger record as written with id `id`: an intent planned at
    /// `planned_at`, with nothing come of it yet.
    pub fn intent_record(&self, id: i64, planned_at: i64) -> ActionRecord {
        ActionRecord {
            id,
            kind: self.kind,
            attr: self.attr.clone(),
            systems: self.systems.clone(),
            all_platforms: self.all_platforms,
            step: self.step.clone(),
            batch: self.batch.clone(),
            state: RecordState::Intent,
            planned_at,
            done_at: None,
            closed_at: None,
            pr: self.pr.filter(|n| i64::try_from(*n).is_ok()),
            issue: None,
            pinged: self.pinged.clone(),
            error: None,
            refused: None,
        }
    }
}

/// What became of an action (see [`Store::record_result`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// `Done`, `Open` (a PR was opened), `Failed`, `Merged` or `Closed`.
    pub state: RecordState,
    pub at: i64,
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    pub error: Option<String>,
    /// Why the nixpkgs editor cannot make this edit: it has to be made by
    /// hand. A refused action is settled (never planned again for the same
    /// failure) and told on the tracking issue.
    pub refused: Option<String>,
}

/// An opt-out seen by the forge or the editor (see [`Store::record_opt_out`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOptOut {
    pub attr: String,
    pub kind: OptOutKind,
    pub recorded_at: i64,
    pub until: Option<i64>,
    pub by: Option<String>,
    pub note: String,
}

/// The part of the history a plan needs (see [`Store::plan_facts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanScope {
    /// The plan's `now`.
    pub now: i64,
    /// The newest evals in which every job's runs are read: the policy's
    /// flaky window (`[streak] flaky_window_evals`).
    pub window_evals: u32,
    /// For a report of the plan (the HTML site): the newest evals it shows
    /// of each job of an attribute a plan lists (see [`PlanScope::shown`]).
    pub shown_evals: Option<u32>,
}

impl PlanScope {
    /// The scope of a plan as of `now` under the policy's streak rules.
    pub fn new(now: i64, rules: &StreakRules) -> PlanScope {
        PlanScope {
            now,
            window_evals: rules.flaky_window_evals,
            shown_evals: None,
        }
    }

    /// This scope, and what a report shows beside the plan: the runs of
    /// every job of each attribute the plan lists (in every jobset, on
    /// every system, building or not) over the newest `evals` evals, or its
    /// newest run when it has none there (a job that left). The attributes
    /// are the plan's: the engine assesses only attributes with a listed
    /// job, and the report shows only assessed attributes.
    pub fn shown(self, evals: u32) -> PlanScope {
        PlanScope {
            shown_evals: Some(evals),
            ..self
        }
    }
}

/// The jobs of jobset `?1` whose newest span did not build, read from the
/// partial index alone (schema version 17).
const OPEN_UNBUILT_JOBS: &str = "SELECT DISTINCT s.job_id
     FROM spans s INDEXED BY spans_open_unbuilt CROSS JOIN jobs j ON j.id = s.job_id
     WHERE s.last_seq IS NULL AND s.built = 0 AND j.jobset_id = ?1";

const DAY: i64 = 86_400;
/// The digest charts the failing jobs of the week `now` is in: every job's
/// runs are read from the eval before `now` minus this many days.
const DIGEST_DAYS: i64 = 8;

/// The ledger as a connection last read or wrote it, and the database's
/// version then (see [`Store::ledger`]).
pub(crate) struct LedgerMemo {
    version: (i64, u64),
    ledger: Ledger,
}

/// What a plan reads of one jobset, before it becomes its facts.
struct Window {
    jobset_id: i64,
    jobset: JobsetRef,
    evals: Vec<EvalPoint>,
    seqs: EvalIndex,
    /// The first eval whose runs are read (the window's, or further back
    /// for a report: [`PlanScope::shown`]).
    from_seq: i64,
    /// The runs read of each listed job.
    runs: HashMap<i64, Vec<Run>>,
    /// Attribute, system and suffix of each listed job.
    names: HashMap<i64, (String, String, bool)>,
    /// Jobs of the newest eval not listed: they built all through the
    /// window.
    unlisted_building: u32,
    propagated_from: BTreeMap<i64, i64>,
    /// What the plan read of long failures, to keep once the reading is
    /// over (see [`Store::keep_histories`]): `(job, cut)`.
    to_keep: Vec<(i64, i64)>,
}

impl Window {
    fn into_facts(mut self, store: &Store) -> Result<JobsetFacts, StoreError> {
        let mut ids: Vec<i64> = self.runs.keys().copied().collect();
        ids.sort_unstable();
        let mut jobs: Vec<JobFacts> = Vec::with_capacity(ids.len());
        for id in ids {
            let (Some(mut runs), Some((attr, system, suffixed))) =
                (self.runs.remove(&id), self.names.remove(&id))
            else {
                continue;
            };
            if runs.is_empty() {
                continue;
            }
            runs.sort_unstable_by_key(|r| r.first);
            for r in &runs {
                if let Some(root) = r.cause.root() {
                    self.propagated_from.insert(r.build, root);
                }
            }
            jobs.push(JobFacts {
                attr,
                system,
                suffixed,
                runs,
            });
        }
        jobs.sort_by(|a, b| (&a.attr, &a.system).cmp(&(&b.attr, &b.system)));
        Ok(JobsetFacts {
            jobset: self.jobset,
            evals: self.evals,
            jobs,
            unlisted_building: self.unlisted_building,
            propagated_from: self.propagated_from,
            origins: store.origins(self.jobset_id)?.into_iter().collect(),
        })
    }
}

/// One span of a job, read as a run.
struct RunRow {
    job_id: i64,
    run: Run,
}

/// One span as a plan reads it, by eval seq: a [`Run`] before its evals
/// become indexes, and as `history_memo` keeps it (schema version 17).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SpanRun {
    #[serde(rename = "f")]
    first_seq: i64,
    /// `None` while the span is open.
    #[serde(rename = "l")]
    last_seq: Option<i64>,
    #[serde(rename = "b")]
    build: i64,
    #[serde(rename = "d")]
    finished: bool,
    #[serde(rename = "s")]
    status: Option<i64>,
    #[serde(rename = "h")]
    drv: u64,
    /// `build_causes` as read: `cause`, `propagated_from`.
    #[serde(rename = "c")]
    cause: Option<String>,
    #[serde(rename = "p")]
    propagated_from: Option<i64>,
}

impl SpanRun {
    fn run(&self, seqs: &EvalIndex) -> Run {
        Run {
            first: seqs.index(self.first_seq),
            last: self.last_seq.map_or(seqs.newest(), |s| seqs.index(s)),
            build: self.build,
            finished: self.finished,
            status: self.status,
            drv: self.drv,
            cause: cause_of(self.cause.clone(), self.propagated_from),
        }
    }
}

/// What `history_memo` keeps of a job: the runs of its spans that begin
/// in `from_seq..upto_seq`, all closed.
struct HistoryMemo {
    from_seq: i64,
    upto_seq: i64,
    spans: Vec<SpanRun>,
}

/// Eval positions by seq: runs refer to evals by their index in the
/// jobset's `evals`.
struct EvalIndex {
    seqs: Vec<i64>,
}

impl EvalIndex {
    fn new(evals: &[EvalPoint]) -> EvalIndex {
        EvalIndex {
            seqs: evals.iter().map(|e| e.seq).collect(),
        }
    }

    fn index(&self, seq: i64) -> u32 {
        u32::try_from(self.seqs.partition_point(|s| *s < seq)).unwrap_or(u32::MAX)
    }

    fn newest(&self) -> u32 {
        u32::try_from(self.seqs.len().saturating_sub(1)).unwrap_or(0)
    }
}

/// Job ids as a JSON array for `json_each`, ascending so that the spans'
/// primary key is walked in order.
fn id_list(mut ids: Vec<i64>) -> String {
    ids.sort_unstable();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

/// `(job, seq)` pairs as a JSON list of `[job, seq]` for `json_each`, by
/// job.
fn pairs_list(pairs: &[(i64, i64)]) -> String {
    let mut pairs = pairs.to_vec();
    pairs.sort_unstable();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn parse_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn bad_value(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

impl Store {
    /// Every jobset's evals and jobs, as the policy engine reads them.
    /// `repository` (`owner/name`) is the nixpkgs repository on GitHub, for
    /// compare links. `maintainers` starts empty: the caller adds what a
    /// nixpkgs checkout says.
    pub fn policy_facts(&self, hydra_url: &Url, repository: &str) -> Result<Facts, StoreError> {
        let mut out = Vec::new();
        for (id, jobset) in self.jobsets()? {
            out.push(self.jobset_facts(id, jobset)?);
        }
        Ok(Facts::of_jobsets(hydra_url, repository, out))
    }

    /// What a plan as of `scope.now` reads: every eval, but of the jobs and
    /// their spans only what the engine looks at, so that its cost follows
    /// the failures, not the length of the history nor the jobs that build:
    ///
    /// - the history of their newest failure of the jobs whose newest build
    ///   does not build (failing, pending, noise: their streaks, however
    ///   old), of the attributes the ledger names (their evidence), and of
    ///   jobs whose build a propagated failure names as its root: every run
    ///   from the one that built before that failure on (earlier failures,
    ///   which a build ended, are not read);
    /// - the runs over the newest evals (the flaky window, and the week the
    ///   digest charts: from the eval before `now` − 8 days) of the jobs that
    ///   did not build all through them, of the jobs of another jobset with
    ///   the same attribute and system (what an early warning compares), and
    ///   of every job of a listed job's attribute, building or not (where a
    ///   package still builds decides which platforms a mark covers), or its
    ///   newest run when it has none there;
    /// - of the other jobs, which built all through the window, only their
    ///   number ([`JobsetFacts::unlisted_building`]): nothing is said of them;
    /// - for a report ([`PlanScope::shown`]), the listed jobs' runs over the
    ///   evals it shows too.
    ///
    /// The jobs that fail are found without reading those that build: each
    /// span says whether its build built and whether its job left (schema
    /// version 16), and partial indexes hold only the spans that did not
    /// build. The number of jobs that build is the newest eval's number of
    /// jobs less the listed ones in it.
    ///
    /// A failure's spans before the window are read once: on a writable
    /// connection (the daemon's), a plan keeps the runs it read of a job's
    /// spans that closed before the window in `history_memo` (schema
    /// version 17), and later plans read that one row instead, then the
    /// spans after it. The row is a cache, trusted only while it exists:
    /// the schema's triggers delete it whenever what those spans read could
    /// change. So the cost follows the jobs that fail and the window's
    /// length, not the jobset's size nor how long its failures have lasted
    /// (the `plan_year` benchmark).
    ///
    /// Read as of an earlier `now` than a jobset's newest eval (a replay),
    /// this is [`Store::policy_facts`]: the whole history.
    ///
    /// `backtest` and `explain` read the whole history
    /// ([`Store::policy_facts`]). That both plan alike is tested below, and
    /// that the site reads the same from both in `site`'s tests.
    pub fn plan_facts(
        &self,
        hydra_url: &Url,
        repository: &str,
        scope: PlanScope,
    ) -> Result<Facts, StoreError> {
        let started = std::time::Instant::now();
        // Every query reads the same moment: an eval committed by another
        // connection halfway would otherwise give runs in evals the plan's
        // list of evals does not have. A caller's own transaction serves.
        let snapshot = if self.conn.is_autocommit() {
            Some(
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
                    .context("starting to read a plan's facts")?,
            )
        } else {
            None
        };
        let mut windows = Vec::new();
        for (id, jobset) in self.jobsets()? {
            windows.push(self.jobset_window(id, jobset, scope)?);
        }
        // Every job of a listed job's attribute, in every jobset: the engine
        // notes where a failing package still builds (which platforms a
        // mark covers), and early warnings compare a branch's job with the
        // same attribute and system on trunk.
        {
            let mut attrs: Vec<&str> = windows
                .iter()
                .filter_map(|w| w.as_ref().ok())
                .flat_map(|w| w.names.values().map(|(attr, _, _)| attr.as_str()))
                .collect();
            attrs.sort_unstable();
            attrs.dedup();
            let attrs = serde_json::to_string(&attrs).unwrap_or_else(|_| "[]".into());
            for w in windows.iter_mut().filter_map(|w| w.as_mut().ok()) {
                self.list_jobs_of_attributes(w, &attrs)?;
            }
        }
        let mut out = Vec::new();
        let mut to_keep = Vec::new();
        for window in windows {
            out.push(match window {
                Ok(mut window) => {
                    to_keep.push((std::mem::take(&mut window.to_keep), window.from_seq));
                    window.into_facts(self)?
                }
                Err(whole) => whole,
            });
        }
        if let Some(snapshot) = snapshot {
            snapshot.commit().context("ending a plan's reading")?;
        }
        // Kept after the reading ends: keeping needs a write transaction of
        // its own, which reads the spans again at its own moment.
        for (cuts, before_seq) in to_keep {
            self.keep_histories(cuts, before_seq);
        }
        // What a cycle's history costs, and how often it is read (once a
        // cycle to plan, once more for the HTML report).
        metrics::histogram!(
            "hydra_sentinel_plan_read_seconds",
            "for" => if scope.shown_evals.is_some() { "report" } else { "plan" }
        )
        .record(started.elapsed().as_secs_f64());
        Ok(Facts::of_jobsets(hydra_url, repository, out))
    }

    fn jobsets(&self) -> Result<Vec<(i64, JobsetRef)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, project, name FROM jobsets ORDER BY project, name")
            .context("listing jobsets")?;
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                JobsetRef {
                    project: r.get(1)?,
                    jobset: r.get(2)?,
                },
            ))
        })
        .context("listing jobsets")?
        .collect::<Result<_, _>>()
        .context("listing jobsets")
    }

    /// The attribute, system and whether the name is suffixed of each job
    /// of `ids`.
    fn job_names(&self, ids: Vec<i64>) -> Result<HashMap<i64, (String, String, bool)>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id, attr, system, suffixed FROM jobs
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .and_then(|mut s| {
                s.query_map([id_list(ids)], |r| {
                    Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
                })?
                .collect()
            })
            .context("reading jobs")
    }

    /// List every job of the window's jobset whose attribute is in `attrs`
    /// (a JSON list) and that is not listed yet, with its runs over the
    /// window, or else its newest run (see [`Store::plan_facts`]).
    fn list_jobs_of_attributes(&self, window: &mut Window, attrs: &str) -> Result<(), StoreError> {
        let jobs: Vec<(i64, (String, String, bool))> = self
            .conn
            .prepare_cached(
                "SELECT j.id, j.attr, j.system, j.suffixed
                 FROM json_each(?1) a CROSS JOIN jobs j ON j.attr = a.value
                 WHERE j.jobset_id = ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![attrs, window.jobset_id], |r| {
                    Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
                })?
                .collect()
            })
            .context("reading the jobs of the listed attributes")?;
        let mut names: HashMap<i64, (String, String, bool)> = jobs
            .into_iter()
            .filter(|(id, _)| !window.names.contains_key(id))
            .collect();
        let mut runs: HashMap<i64, Vec<Run>> = HashMap::new();
        self.each_run(
            "spans s",
            "s.job_id IN (SELECT value FROM json_each(?1))
             AND (s.last_seq IS NULL OR s.last_seq >= ?2
                  OR s.first_seq = (SELECT max(n.first_seq) FROM spans n WHERE n.job_id = s.job_id))",
            params![id_list(names.keys().copied().collect()), window.from_seq],
            &window.seqs,
            &mut |row| runs.entry(row.job_id).or_default().push(row.run),
        )?;
        let newest = window.seqs.newest();
        for (id, runs) in runs {
            let Some(name) = names.remove(&id) else {
                continue;
            };
            if runs.iter().any(|r| r.last == newest) {
                window.unlisted_building = window.unlisted_building.saturating_sub(1);
            }
            window.runs.insert(id, runs);
            window.names.insert(id, name);
        }
        Ok(())
    }

    fn evals_of(&self, jobset_id: i64) -> Result<Vec<EvalPoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, seq, timestamp, revision FROM evals WHERE jobset_id = ?1 ORDER BY seq",
            )
            .context("reading evals")?;
        stmt.query_map([jobset_id], |r| {
            Ok(EvalPoint {
                id: r.get(0)?,
                seq: r.get(1)?,
                timestamp: r.get(2)?,
                revision: r.get(3)?,
            })
        })
        .context("reading evals")?
        .collect::<Result<_, _>>()
        .context("reading evals")
    }

    /// A jobset's window (see [`Store::plan_facts`]), or its whole history
    /// when read as of an earlier `now` than its newest eval.
    ///
    /// Which jobs fail is read from the spans' `built` and `job_left`
    /// (schema version 16) through partial indexes that hold only the spans
    /// that did not build, so the 300,000 jobs that build are never read
    /// one by one: only their number, which the newest eval keeps.
    fn jobset_window(
        &self,
        jobset_id: i64,
        jobset: JobsetRef,
        scope: PlanScope,
    ) -> Result<Result<Window, JobsetFacts>, StoreError> {
        let evals = self.evals_of(jobset_id)?;
        let Some(cutoff) = evals
            .partition_point(|e| e.timestamp <= scope.now)
            .checked_sub(1)
        else {
            return Ok(Err(self.jobset_facts(jobset_id, jobset)?));
        };
        if cutoff + 1 < evals.len() {
            return Ok(Err(self.jobset_facts(jobset_id, jobset)?));
        }
        let flaky_first = (cutoff + 1).saturating_sub(scope.window_evals.max(1) as usize);
        let week_first = evals
            .partition_point(|e| e.timestamp <= scope.now - DIGEST_DAYS * DAY)
            .saturating_sub(1);
        let listed_from = evals[flaky_first.min(week_first)].seq;
        // A report reads the listed jobs further back than a plan lists them.
        let shown_first = scope.shown_evals.map_or(usize::MAX, |n| {
            (cutoff + 1).saturating_sub(n.max(1) as usize)
        });
        let from_seq = evals[flaky_first.min(week_first).min(shown_first)].seq;
        let newest_jobs = self.jobs_in_eval(evals[cutoff].id)?;
        let seqs = EvalIndex::new(&evals);

        // Whose newest failure is read in full: the jobs of the newest eval
        // that do not build, those that left the jobset while they did not
        // build, those the ledger names, and roots of propagated failures.
        let mut whole: HashSet<i64> = HashSet::default();
        for ids in [
            // The spans come first (`CROSS JOIN` keeps SQLite to that
            // order): driven by the jobset's jobs, these would walk all of
            // them, and they only grow.
            self.job_ids(OPEN_UNBUILT_JOBS, jobset_id)?,
            self.job_ids(
                "SELECT DISTINCT s.job_id
                 FROM spans s INDEXED BY spans_left_unbuilt CROSS JOIN jobs j ON j.id = s.job_id
                 WHERE s.job_left = 1 AND s.built = 0 AND j.jobset_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM spans later
                                   WHERE later.job_id = s.job_id AND later.first_seq > s.first_seq)",
                jobset_id,
            )?,
            // The ledger's (driven by its few attributes, not the jobs).
            self.job_ids(
                "SELECT j.id FROM (SELECT DISTINCT attr FROM actions WHERE attr IS NOT NULL) a
                 CROSS JOIN jobs j ON j.attr = a.attr
                 WHERE j.jobset_id = ?1",
                jobset_id,
            )?,
            // Roots of propagated failures, as Hydra's build pages name them.
            self.job_ids(
                "SELECT DISTINCT b.job_id
                 FROM build_causes c JOIN builds b ON b.id = c.propagated_from
                 JOIN jobs j ON j.id = b.job_id
                 WHERE j.jobset_id = ?1",
                jobset_id,
            )?,
        ] {
            whole.extend(ids);
        }
        // Whose runs over the window are read: the other jobs with a run in
        // it that did not build.
        let in_window: Vec<i64> = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT s.job_id
                 FROM spans s INDEXED BY spans_closed_unbuilt CROSS JOIN jobs j ON j.id = s.job_id
                 WHERE s.last_seq >= ?2 AND s.last_seq IS NOT NULL AND s.built = 0
                   AND j.jobset_id = ?1",
            )
            .and_then(|mut s| {
                s.query_map(params![jobset_id, listed_from], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>()
            })
            .context("reading the jobs that failed within the window")?
            .into_iter()
            .filter(|id| !whole.contains(id))
            .collect();

        let mut window = Window {
            jobset_id,
            jobset,
            evals,
            from_seq,
            seqs,
            runs: HashMap::new(),
            names: HashMap::new(),
            unlisted_building: 0,
            propagated_from: BTreeMap::new(),
            to_keep: Vec::new(),
        };
        // One query per kind of read, not one per job: the listed jobs are
        // thousands on trunk, and a query each was most of a plan's time.
        let mut runs: HashMap<i64, Vec<Run>> = HashMap::new();
        self.each_run(
            "spans s",
            "s.job_id IN (SELECT value FROM json_each(?1))
             AND (s.last_seq IS NULL OR s.last_seq >= ?2)",
            params![id_list(in_window), window.from_seq],
            &window.seqs,
            &mut |row| runs.entry(row.job_id).or_default().push(row.run),
        )?;
        // A job whose newest run does not build is read in full wherever
        // that run is, whatever the spans' hints said.
        let newest = window.seqs.newest();
        let unbuilt_newest: Vec<i64> = runs
            .iter()
            .filter(|(_, runs)| {
                runs.iter()
                    .max_by_key(|r| r.first)
                    .is_some_and(|r| r.class() != StatusClass::Ok)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in unbuilt_newest {
            runs.remove(&id);
            whole.insert(id);
        }
        // Of each, the runs from the one that built before its newest
        // failure on (what a streak, its evidence and the ledger's records
        // of that failure read), and every run in the window: the failures
        // it had before it built again are not read, so a long history
        // costs little. A span whose `built` is unsure counts as not
        // built, which only reads further back.
        //
        // What a plan kept of a job's older closed spans (`history_memo`)
        // is read instead of them: a failure a year old is a dozen spans,
        // each joined with a build somewhere in the biggest table.
        let cuts = self.history_cuts(whole.into_iter().collect(), window.from_seq)?;
        let memos = self.history_memos(&cuts)?;
        let mut starts: Vec<(i64, i64)> = Vec::with_capacity(cuts.len());
        for &(job, cut) in &cuts {
            match memos.get(&job).filter(|m| m.from_seq <= cut) {
                Some(memo) => {
                    runs.entry(job).or_default().extend(
                        memo.spans
                            .iter()
                            .filter(|s| s.first_seq >= cut)
                            .map(|s| s.run(&window.seqs)),
                    );
                    starts.push((job, cut.max(memo.upto_seq)));
                }
                None => starts.push((job, cut)),
            }
        }
        // The jobs of which spans that ended before the window were read:
        // a memo would keep them.
        let mut to_keep: HashSet<i64> = HashSet::new();
        self.each_span(
            "json_each(?1) w CROSS JOIN spans s",
            "s.job_id = w.value ->> 0 AND s.first_seq >= w.value ->> 1",
            [pairs_list(&starts)],
            &mut |job, span| {
                if span.last_seq.is_some_and(|last| last < window.from_seq) {
                    to_keep.insert(job);
                }
                runs.entry(job).or_default().push(span.run(&window.seqs));
            },
        )?;
        window.to_keep = cuts
            .into_iter()
            .filter(|(job, _)| to_keep.contains(job))
            .collect();
        let listed_in_newest = runs
            .values()
            .filter(|runs| runs.iter().any(|r| r.last == newest))
            .count();
        window.unlisted_building = newest_jobs.saturating_sub(listed_in_newest) as u32;
        window.names = self.job_names(runs.keys().copied().collect())?;
        window.runs = runs;
        Ok(Ok(window))
    }

    /// For each job of `ids`, the first eval of the runs a plan reads of it
    /// (see [`Store::jobset_window`]), as `(job, seq)`. Computed apart from
    /// reading the runs: inside that query SQLite would compute it again for
    /// every span.
    fn history_cuts(&self, ids: Vec<i64>, from_seq: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let cuts: Vec<(i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT value,
                        min(coalesce((SELECT max(o.first_seq) FROM spans o
                                      WHERE o.job_id = value AND o.built = 1
                                        AND o.first_seq < coalesce(
                                            (SELECT max(u.first_seq) FROM spans u
                                             WHERE u.job_id = value AND u.built = 0),
                                            9223372036854775807)), 0),
                            coalesce((SELECT max(w.first_seq) FROM spans w
                                      WHERE w.job_id = value AND w.first_seq <= ?2), 0))
                 FROM json_each(?1)",
            )
            .and_then(|mut s| {
                s.query_map(params![id_list(ids), from_seq], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .context("reading where the jobs' histories begin to matter")?;
        Ok(cuts)
    }

    /// What `history_memo` keeps of the jobs of `cuts` (schema version
    /// 17). A row that does not parse is no row: it is only a cache.
    fn history_memos(&self, cuts: &[(i64, i64)]) -> Result<HashMap<i64, HistoryMemo>, StoreError> {
        let rows: Vec<(i64, i64, i64, String)> = self
            .conn
            .prepare_cached(
                "SELECT m.job_id, m.from_seq, m.upto_seq, m.runs
                 FROM json_each(?1) w CROSS JOIN history_memo m ON m.job_id = w.value",
            )
            .and_then(|mut s| {
                s.query_map([id_list(cuts.iter().map(|(job, _)| *job).collect())], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect()
            })
            .context("reading what plans kept of failures")?;
        Ok(rows
            .into_iter()
            .filter_map(|(job, from_seq, upto_seq, runs)| {
                let spans = serde_json::from_str(&runs).ok()?;
                Some((
                    job,
                    HistoryMemo {
                        from_seq,
                        upto_seq,
                        spans,
                    },
                ))
            })
            .collect())
    }

    /// Keep in `history_memo`, for each job of `cuts`, the runs of its
    /// spans from the cut's on that closed before `before_seq`: what a plan
    /// reads and no later eval changes. Read and written in one write
    /// transaction, so that no change falls between them; later changes
    /// delete the row (the schema's triggers).
    ///
    /// Only on a writable connection outside a transaction, and never
    /// waiting for another writer: a database busy, read only, or any error
    /// keeps nothing, and the next plan reads the spans.
    fn keep_histories(&self, cuts: Vec<(i64, i64)>, before_seq: i64) {
        if cuts.is_empty()
            || self.conn.is_readonly(MAIN_DB).unwrap_or(true)
            || !self.conn.is_autocommit()
        {
            return;
        }
        if let Err(error) = self.conn.busy_timeout(Duration::ZERO) {
            tracing::debug!(%error, "not keeping the plan's reading");
            return;
        }
        let kept = self.try_keep_histories(&cuts, before_seq);
        let restored = self.conn.busy_timeout(super::BUSY_TIMEOUT);
        match (kept, restored) {
            (Ok(n), Ok(())) => tracing::debug!(jobs = n, "kept the older part of failures"),
            (Err(error), _) => {
                tracing::debug!(error = %crate::error_chain(&error), "not keeping the plan's reading")
            }
            (_, Err(error)) => tracing::warn!(%error, "cannot restore the busy timeout"),
        }
    }

    fn try_keep_histories(
        &self,
        cuts: &[(i64, i64)],
        before_seq: i64,
    ) -> Result<usize, StoreError> {
        const CONTEXT: &str = "keeping what a plan read";
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .context(CONTEXT)?;
        let mut spans: BTreeMap<i64, Vec<SpanRun>> = BTreeMap::new();
        self.each_span(
            "json_each(?1) w CROSS JOIN spans s",
            "s.job_id = w.value ->> 0 AND s.first_seq >= w.value ->> 1",
            [pairs_list(cuts)],
            &mut |job, span| spans.entry(job).or_default().push(span),
        )?;
        let cut_of: HashMap<i64, i64> = cuts.iter().copied().collect();
        let mut kept = 0;
        for (job, mut spans) in spans {
            spans.sort_unstable_by_key(|s| s.first_seq);
            let closed = spans
                .iter()
                .take_while(|s| s.last_seq.is_some_and(|last| last < before_seq))
                .count();
            let Some(newest_kept) = closed.checked_sub(1).map(|i| spans[i].first_seq) else {
                continue;
            };
            let upto_seq = spans.get(closed).map_or(newest_kept + 1, |s| s.first_seq);
            spans.truncate(closed);
            let runs = serde_json::to_string(&spans).map_err(|e| StoreError::Sqlite {
                context: CONTEXT,
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO history_memo (job_id, from_seq, upto_seq, runs)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![job, cut_of[&job], upto_seq, runs]))
            .context(CONTEXT)?;
            kept += 1;
        }
        tx.commit().context(CONTEXT)?;
        Ok(kept)
    }

    /// How many jobs an eval has (its `nr_builds`: one build per job).
    fn jobs_in_eval(&self, eval_id: i64) -> Result<usize, StoreError> {
        let jobs: i64 = self
            .conn
            .prepare_cached("SELECT nr_builds FROM evals WHERE id = ?1")
            .and_then(|mut s| s.query_row([eval_id], |r| r.get(0)))
            .context("reading an eval's number of jobs")?;
        Ok(usize::try_from(jobs).unwrap_or(0))
    }

    /// The job ids `sql` selects, with `?1` the jobset.
    fn job_ids(&self, sql: &str, jobset_id: i64) -> Result<Vec<i64>, StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| {
                s.query_map([jobset_id], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>()
            })
            .context("reading the jobs a plan lists")
    }

    /// A jobset's jobs: attribute, system, and whether the job name is
    /// suffixed, by job id.
    fn jobs_of(&self, jobset_id: i64) -> Result<HashMap<i64, (String, String, bool)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, attr, system, suffixed FROM jobs WHERE jobset_id = ?1")
            .context("reading a jobset's jobs")?;
        stmt.query_map([jobset_id], |r| {
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .context("reading a jobset's jobs")?
        .collect::<Result<_, _>>()
        .context("reading a jobset's jobs")
    }

    /// Every span `FROM spans WHERE condition` (with `s` for the spans) as a
    /// run (see [`Store::each_span`]).
    fn each_run(
        &self,
        spans: &str,
        condition: &str,
        params: impl rusqlite::Params,
        seqs: &EvalIndex,
        each: &mut dyn FnMut(RunRow),
    ) -> Result<(), StoreError> {
        self.each_span(spans, condition, params, &mut |job_id, span| {
            each(RunRow {
                job_id,
                run: span.run(seqs),
            })
        })
    }

    /// Every span `FROM spans WHERE condition` (with `s` for the spans),
    /// with its job: its build as that span saw it (what the `span_builds`
    /// view says, spelled out so that each query picks its index on
    /// `spans`), and what the build's page said of its failure.
    fn each_span(
        &self,
        spans: &str,
        condition: &str,
        params: impl rusqlite::Params,
        each: &mut dyn FnMut(i64, SpanRun),
    ) -> Result<(), StoreError> {
        const CONTEXT: &str = "reading job histories";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT s.job_id, s.first_seq, s.last_seq, s.build_id,
                        CASE WHEN v.build_id IS NULL THEN b.finished ELSE v.finished END,
                        CASE WHEN v.build_id IS NULL THEN b.status ELSE v.status END,
                        CASE WHEN v.build_id IS NULL THEN b.drv_hash ELSE v.drv_hash END,
                        c.cause, c.propagated_from
                 FROM {spans} JOIN builds b ON b.id = s.build_id
                 LEFT JOIN build_versions v
                   ON v.build_id = s.build_id AND v.version = s.version AND s.version != b.version
                 LEFT JOIN build_causes c ON c.build_id = s.build_id
                   AND c.status = CASE WHEN v.build_id IS NULL THEN b.status ELSE v.status END
                 WHERE {condition}"
            ))
            .context(CONTEXT)?;
        let mut rows = stmt.query(params).context(CONTEXT)?;
        while let Some(r) = rows.next().context(CONTEXT)? {
            let drv = r
                .get_ref(6)
                .context(CONTEXT)?
                .as_str()
                .map_err(rusqlite::Error::from)
                .context(CONTEXT)?;
            each(
                r.get(0).context(CONTEXT)?,
                SpanRun {
                    first_seq: r.get(1).context(CONTEXT)?,
                    last_seq: r.get(2).context(CONTEXT)?,
                    build: r.get(3).context(CONTEXT)?,
                    finished: r.get(4).context(CONTEXT)?,
                    status: r.get(5).context(CONTEXT)?,
                    drv: drv_digest(drv),
                    cause: r.get(7).context(CONTEXT)?,
                    propagated_from: r.get(8).context(CONTEXT)?,
                },
            );
        }
        Ok(())
    }

    fn jobset_facts(&self, jobset_id: i64, jobset: JobsetRef) -> Result<JobsetFacts, StoreError> {
        let evals = self.evals_of(jobset_id)?;
        let seqs = EvalIndex::new(&evals);
        let jobs_by_id = self.jobs_of(jobset_id)?;
        let mut jobs: Vec<JobFacts> = Vec::new();
        let mut propagated_from = BTreeMap::new();
        let mut current: Option<i64> = None;
        self.each_run(
            "jobs j JOIN spans s ON s.job_id = j.id",
            "j.jobset_id = ?1 ORDER BY j.id, s.first_seq",
            [jobset_id],
            &seqs,
            &mut |row| {
                if let Some(root) = row.run.cause.root() {
                    propagated_from.insert(row.run.build, root);
                }
                if current != Some(row.job_id) {
                    current = Some(row.job_id);
                    let (attr, system, suffixed) =
                        jobs_by_id.get(&row.job_id).cloned().unwrap_or_default();
                    jobs.push(JobFacts {
                        attr,
                        system,
                        suffixed,
                        runs: Vec::new(),
                    });
                }
                if let Some(job) = jobs.last_mut() {
                    job.runs.push(row.run);
                }
            },
        )?;
        jobs.sort_by(|a, b| (&a.attr, &a.system).cmp(&(&b.attr, &b.system)));
        Ok(JobsetFacts {
            jobset,
            evals,
            jobs,
            unlisted_building: 0,
            propagated_from,
            origins: self.origins(jobset_id)?.into_iter().collect(),
        })
    }

    /// The whole ledger, oldest first. Read from the database once, then
    /// kept in step with this connection's own ledger writes: read again
    /// only when anything else wrote to the database since (another
    /// process, or another table written through this connection).
    pub fn ledger(&self) -> Result<Ledger, StoreError> {
        let version = self.ledger_version()?;
        if let Some(memo) = self
            .ledger_memo
            .borrow()
            .as_ref()
            .filter(|m| m.version == version)
        {
            return Ok(memo.ledger.clone());
        }
        let ledger = self.read_ledger()?;
        *self.ledger_memo.borrow_mut() = Some(LedgerMemo {
            version,
            ledger: ledger.clone(),
        });
        Ok(ledger)
    }

    /// What tells whether the ledger may have changed since: SQLite's
    /// `data_version` (moves when another connection commits) and this
    /// connection's count of changed rows.
    fn ledger_version(&self) -> Result<(i64, u64), StoreError> {
        let data_version = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .context("reading the data version")?;
        Ok((data_version, self.conn.total_changes()))
    }

    /// After a ledger write made when the database was at `before`: apply
    /// it to the kept ledger if that was current, else forget the kept one.
    fn remember_write(
        &self,
        before: (i64, u64),
        change: impl FnOnce(&mut Ledger),
    ) -> Result<(), StoreError> {
        let after = self.ledger_version()?;
        let mut memo = self.ledger_memo.borrow_mut();
        match memo.as_mut().filter(|m| m.version == before) {
            Some(m) => {
                change(&mut m.ledger);
                m.version = after;
            }
            None => *memo = None,
        }
        Ok(())
    }

    fn read_ledger(&self) -> Result<Ledger, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, kind, attr, systems, all_platforms, step, batch, state, planned_at,
                        done_at, closed_at, pr, issue, pinged, error, refused
                 FROM actions ORDER BY id",
            )
            .context("reading the ledger")?;
        let actions = stmt
            .query_map([], |r| {
                let kind: String = r.get(1)?;
                let state: String = r.get(7)?;
                Ok(ActionRecord {
                    id: r.get(0)?,
                    kind: kind.parse().map_err(|e| bad_value(1, e))?,
                    attr: r.get(2)?,
                    systems: parse_list(&r.get::<_, String>(3)?),
                    all_platforms: r.get(4)?,
                    step: r.get(5)?,
                    batch: r.get(6)?,
                    state: state.parse().map_err(|e| bad_value(7, e))?,
                    planned_at: r.get(8)?,
                    done_at: r.get(9)?,
                    closed_at: r.get(10)?,
                    pr: r.get::<_, Option<i64>>(11)?.map(|n| n.unsigned_abs()),
                    issue: r.get::<_, Option<i64>>(12)?.map(|n| n.unsigned_abs()),
                    pinged: parse_list(&r.get::<_, String>(13)?),
                    error: r.get(14)?,
                    refused: r.get(15)?,
                })
            })
            .context("reading the ledger")?
            .collect::<Result<Vec<_>, _>>()
            .context("reading the ledger")?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, attr, kind, recorded_at, until, by, note, revoked_at
                 FROM opt_outs ORDER BY id",
            )
            .context("reading opt-outs")?;
        let opt_outs = stmt
            .query_map([], |r| {
                let kind: String = r.get(2)?;
                Ok(OptOut {
                    id: r.get(0)?,
                    attr: r.get(1)?,
                    kind: kind.parse().map_err(|e| bad_value(2, e))?,
                    recorded_at: r.get(3)?,
                    until: r.get(4)?,
                    by: r.get(5)?,
                    note: r.get(6)?,
                    revoked_at: r.get(7)?,
                })
            })
            .context("reading opt-outs")?
            .collect::<Result<Vec<_>, _>>()
            .context("reading opt-outs")?;
        Ok(Ledger { actions, opt_outs })
    }

    /// Write the intent of an action before carrying it out; returns its id.
    /// A crash between intent and result leaves the intent, which the engine
    /// treats as in flight (never planned twice) until the forge reconciles it.
    pub fn record_intent(&self, action: &NewAction, planned_at: i64) -> Result<i64, StoreError> {
        let before = self.ledger_version()?;
        self.conn
            .execute(
                "INSERT INTO actions (kind, attr, systems, all_platforms, step, batch, state, planned_at, pinged, pr)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'intent', ?7, ?8, ?9)",
                params![
                    action.kind.as_str(),
                    action.attr,
                    json_list(&action.systems),
                    action.all_platforms,
                    action.step,
                    action.batch,
                    planned_at,
                    json_list(&action.pinged),
                    action.pr.and_then(|n| i64::try_from(n).ok()),
                ],
            )
            .context("recording an intent")?;
        let id = self.conn.last_insert_rowid();
        self.remember_write(before, |ledger| {
            ledger.actions.push(action.intent_record(id, planned_at));
        })?;
        Ok(id)
    }

    /// Record what became of an action: done, a PR opened, failed, and later
    /// the PR merged or closed. PR and issue numbers are kept once known.
    pub fn record_result(&self, id: i64, result: &ActionResult) -> Result<(), StoreError> {
        let closing = matches!(result.state, RecordState::Merged | RecordState::Closed);
        let before = self.ledger_version()?;
        let changed = self
            .conn
            .execute(
                "UPDATE actions SET state = ?2,
                    done_at = CASE WHEN ?3 THEN done_at ELSE ?4 END,
                    closed_at = CASE WHEN ?3 THEN ?4 ELSE closed_at END,
                    pr = coalesce(?5, pr), issue = coalesce(?6, issue), error = ?7,
                    refused = ?8
                 WHERE id = ?1",
                params![
                    id,
                    result.state.as_str(),
                    closing,
                    result.at,
                    result.pr.and_then(|n| i64::try_from(n).ok()),
                    result.issue.and_then(|n| i64::try_from(n).ok()),
                    result.error,
                    result.refused
                ],
            )
            .context("recording a result")?;
        if changed == 0 {
            return Err(StoreError::Sqlite {
                context: "recording a result for an unknown action",
                source: rusqlite::Error::QueryReturnedNoRows,
            });
        }
        let fits = |n: &u64| i64::try_from(*n).is_ok();
        self.remember_write(before, |ledger| {
            if let Some(r) = ledger.actions.iter_mut().find(|r| r.id == id) {
                r.state = result.state;
                if closing {
                    r.closed_at = Some(result.at);
                } else {
                    r.done_at = Some(result.at);
                }
                r.pr = result.pr.filter(fits).or(r.pr);
                r.issue = result.issue.filter(fits).or(r.issue);
                r.error = result.error.clone();
                r.refused = result.refused.clone();
            }
        })
    }

    /// Record an opt-out (a marker or label seen, a snooze asked for).
    pub fn record_opt_out(&self, o: &NewOptOut) -> Result<i64, StoreError> {
        let existing: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM opt_outs WHERE attr = ?1 AND kind = ?2 AND revoked_at IS NULL
                   AND kind != 'snooze'",
                params![o.attr, o.kind.as_str()],
                |r| r.get(0),
            )
            .optional()
            .context("recording an opt-out")?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let before = self.ledger_version()?;
        self.conn
            .execute(
                "INSERT INTO opt_outs (attr, kind, recorded_at, until, by, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![o.attr, o.kind.as_str(), o.recorded_at, o.until, o.by, o.note],
            )
            .context("recording an opt-out")?;
        let id = self.conn.last_insert_rowid();
        self.remember_write(before, |ledger| {
            ledger.opt_outs.push(OptOut {
                id,
                attr: o.attr.clone(),
                kind: o.kind,
                recorded_at: o.recorded_at,
                until: o.until,
                by: o.by.clone(),
                note: o.note.clone(),
                revoked_at: None,
            });
        })?;
        Ok(id)
    }

    /// A marker or label was seen gone (or a snooze withdrawn).
    pub fn revoke_opt_out(&self, id: i64, at: i64) -> Result<(), StoreError> {
        let before = self.ledger_version()?;
        self.conn
            .execute(
                "UPDATE opt_outs SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, at],
            )
            .context("revoking an opt-out")?;
        self.remember_write(before, |ledger| {
            if let Some(o) = ledger
                .opt_outs
                .iter_mut()
                .find(|o| o.id == id && o.revoked_at.is_none())
            {
                o.revoked_at = Some(at);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{query_plan, trunk_store};
    use super::*;
    use crate::digest::{DigestInput, Week};
    use crate::policy::Policy;
    use crate::sim::{YearSpec, YearWriter};

    /// A small month of trunk and of staging-next (whose failures are
    /// early warnings): many failures, mass breakages, jobs leaving and
    /// coming.
    /// A store in a temporary folder (kept while the folder lives) with
    /// that month written, and trunk's writer.
    fn month_of_trunk() -> (tempfile::TempDir, Store, YearWriter) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let year = write_month_of_trunk(&mut store);
        (dir, store, year)
    }

    fn write_month_of_trunk(store: &mut Store) -> YearWriter {
        let spec = |seed| {
            let mut spec = YearSpec::trunk(2_000);
            spec.churn = 0.05;
            spec.break_rate = 0.05;
            spec.mass_breakages = vec![20, 52];
            spec.mass_share = 0.1;
            spec.turnover = 4;
            spec.seed = seed;
            spec.id_base = seed as i64 * 1_000_000_000;
            spec
        };
        crate::sim::write_trunk_and_staging_next(store, 60, spec)
            .unwrap()
            .0
    }

    /// The intent of a notice to `attr` on x86_64-linux, naming nobody.
    fn notice(attr: &str) -> NewAction {
        NewAction {
            kind: ActionKind::Notify,
            attr: Some(attr.into()),
            systems: vec!["x86_64-linux".into()],
            all_platforms: false,
            step: Some("notice".into()),
            batch: None,
            pinged: vec![],
            pr: None,
        }
    }

    fn plan_and_digest(policy: &Policy, facts: &Facts, ledger: &Ledger, now: i64) -> String {
        let assessment = crate::policy::assess(policy, facts, ledger, now);
        let plan = crate::policy::plan_from(policy, facts, ledger, &assessment);
        let digest = crate::digest::render(&DigestInput {
            policy,
            facts,
            assessment: &assessment,
            plan: &plan,
            week: Week::containing(now),
        });
        format!("{}\n{digest}", serde_json::to_string_pretty(&plan).unwrap())
    }

    #[test]
    fn a_plan_reads_less_than_the_whole_history_and_plans_the_same() {
        let (_dir, store, year) = month_of_trunk();
        let hydra: Url = "https://hydra.nixos.org".parse().unwrap();
        let policy = Policy::nixpkgs();
        let whole = store.policy_facts(&hydra, "NixOS/nixpkgs").unwrap();
        // The ledger names a job that builds now and one that fails: their
        // evidence needs their whole history.
        let trunk = whole
            .jobsets
            .iter()
            .find(|js| js.jobset.jobset == "trunk")
            .unwrap();
        let building = &trunk
            .jobs
            .iter()
            .find(|j| j.runs.len() > 2 && j.runs.last().unwrap().class() == StatusClass::Ok)
            .unwrap()
            .attr;
        let failing = &trunk
            .jobs
            .iter()
            .find(|j| j.runs.len() > 1 && j.runs.last().unwrap().status == Some(1))
            .unwrap()
            .attr;
        for attr in [building, failing] {
            let id = store
                .record_intent(&notice(attr), year.newest_time() - 86_400 * 20)
                .unwrap();
            store
                .record_result(
                    id,
                    &ActionResult {
                        state: RecordState::Done,
                        at: year.newest_time() - 86_400 * 20,
                        pr: None,
                        issue: Some(7),
                        error: None,
                        refused: None,
                    },
                )
                .unwrap();
        }
        let ledger = store.ledger().unwrap();
        for now in [year.newest_time(), year.newest_time() + 86_400 * 3] {
            let scope = PlanScope::new(now, &policy.streak);
            let read = store.plan_facts(&hydra, "NixOS/nixpkgs", scope).unwrap();
            assert!(
                read.runs_read() * 4 < whole.runs_read() * 3,
                "a plan reads {} of {} runs",
                read.runs_read(),
                whole.runs_read()
            );
            // The jobs of the newest eval whose package has no listed job
            // (they built all through the window) are counted, not read.
            for (js, all) in read.jobsets.iter().zip(&whole.jobsets) {
                let listed: HashSet<&str> = js.jobs.iter().map(|j| j.attr.as_str()).collect();
                let newest = all.evals.len() as u32 - 1;
                let building = all
                    .jobs
                    .iter()
                    .filter(|j| !listed.contains(j.attr.as_str()))
                    .filter(|j| j.runs.last().is_some_and(|r| r.last == newest))
                    .count();
                assert!(building > 100, "{}: {building} packages build", js.jobset);
                assert_eq!(
                    js.unlisted_building as usize, building,
                    "{}: the jobs of the packages that build are counted, not read",
                    js.jobset
                );
            }
            let expected = plan_and_digest(&policy, &whole, &ledger, now);
            for kind in ["notify", "warn"] {
                assert!(
                    expected.contains(&format!("\"kind\": \"{kind}\"")),
                    "the month plans {kind}:\n{expected}"
                );
            }
            let got = plan_and_digest(&policy, &read, &ledger, now);
            if got != expected {
                let diff = similar::TextDiff::from_lines(&expected, &got)
                    .unified_diff()
                    .to_string();
                panic!("the plan's reading plans otherwise than the whole history:\n{diff}");
            }
        }
    }

    /// Early warnings compare a branch's job with trunk's job of the same
    /// attribute and system: a job listed in one jobset lists its namesake
    /// in the others with every run it has over the window, even one that
    /// built all through it.
    #[test]
    fn a_job_listed_in_one_jobset_lists_its_namesakes_in_the_others() {
        let (_dir, store, _year) = month_of_trunk();
        let hydra: Url = "https://hydra.nixos.org".parse().unwrap();
        let policy = Policy::nixpkgs();
        let whole = store.policy_facts(&hydra, "NixOS/nixpkgs").unwrap();
        assert_eq!(whole.jobsets.len(), 2, "trunk and staging-next");
        let now = whole
            .jobsets
            .iter()
            .filter_map(|js| js.evals.last().map(|e| e.timestamp))
            .max()
            .unwrap();
        let scope = PlanScope::new(now, &policy.streak);
        let read = store.plan_facts(&hydra, "NixOS/nixpkgs", scope).unwrap();
        let listed: HashSet<(&str, &str)> = read
            .jobsets
            .iter()
            .flat_map(|js| js.jobs.iter().map(|j| (j.attr.as_str(), j.system.as_str())))
            .collect();
        let (mut namesakes, mut building_namesakes) = (0, 0);
        for (whole_js, read_js) in whole.jobsets.iter().zip(&read.jobsets) {
            assert_eq!(whole_js.jobset, read_js.jobset);
            // The window's first eval, as `Store::jobset_window` finds it.
            let evals = &whole_js.evals;
            let flaky_first = evals
                .len()
                .saturating_sub(scope.window_evals.max(1) as usize);
            let week_first = evals
                .partition_point(|e| e.timestamp <= now - DIGEST_DAYS * DAY)
                .saturating_sub(1);
            let start = u32::try_from(flaky_first.min(week_first)).unwrap();
            for job in &whole_js.jobs {
                if !listed.contains(&(job.attr.as_str(), job.system.as_str())) {
                    continue;
                }
                let in_window: Vec<&Run> = job.runs.iter().filter(|r| r.last >= start).collect();
                if in_window.is_empty() {
                    continue;
                }
                namesakes += 1;
                if in_window.iter().all(|r| r.class() == StatusClass::Ok) {
                    building_namesakes += 1;
                }
                let got = read_js
                    .jobs
                    .iter()
                    .find(|j| {
                        (&j.attr, &j.system, j.suffixed) == (&job.attr, &job.system, job.suffixed)
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "{} on {} in {} is not listed although its namesake is",
                            job.attr, job.system, whole_js.jobset
                        )
                    });
                for run in in_window {
                    assert!(
                        got.runs.contains(run),
                        "{} on {} in {}: {run:?} missing from {:?}",
                        job.attr,
                        job.system,
                        whole_js.jobset,
                        got.runs
                    );
                }
            }
        }
        assert!(
            building_namesakes > 10 && namesakes > building_namesakes,
            "the month has namesakes that build all through the window \
             ({building_namesakes}) and others ({namesakes} in all)"
        );
    }

    /// A store with `nixpkgs:trunk` over daily evals and the newest eval's
    /// time: each job's status in each eval (`o` built, `x` failed), a new
    /// build whenever it changes.
    fn trunk_of(histories: &[(&str, &str)]) -> (tempfile::TempDir, Store, i64) {
        let jobs: Vec<(&str, &str, &str)> = histories
            .iter()
            .map(|(attr, statuses)| (*attr, "x86_64-linux", *statuses))
            .collect();
        trunk_of_jobs(&jobs)
    }

    /// [`trunk_of`] with each job's system: `(attr, system, statuses)`.
    fn trunk_of_jobs(histories: &[(&str, &str, &str)]) -> (tempfile::TempDir, Store, i64) {
        use crate::history::JobName;
        use crate::store::{BuildRow, KnownBuild, NewEval};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let jobset_id = store
            .jobset_id(&JobsetRef {
                project: "nixpkgs".into(),
                jobset: "trunk".into(),
            })
            .unwrap();
        let start = 1_762_000_000;
        let evals = histories[0].2.len();
        let names: Vec<JobName> = histories
            .iter()
            .map(|(attr, system, _)| JobName::parse(&format!("{attr}.{system}"), system).unwrap())
            .collect();
        let mut next_build = 0;
        let mut builds: Vec<i64> = vec![0; histories.len()];
        let mut job_ids: Vec<Option<i64>> = vec![None; histories.len()];
        for e in 0..evals {
            let timestamp = start + DAY * e as i64;
            let mut eval = store
                .begin_eval(
                    jobset_id,
                    "nixpkgs:trunk",
                    NewEval {
                        id: 1_000 + e as i64,
                        timestamp,
                        revision: None,
                        checkout_time: None,
                        eval_time: None,
                        strategy: "eval-builds",
                    },
                )
                .unwrap();
            for (j, (_, _, statuses)) in histories.iter().enumerate() {
                let statuses = statuses.as_bytes();
                let rebuilt = e == 0 || statuses[e - 1] != statuses[e];
                if rebuilt {
                    next_build += 1;
                    builds[j] = next_build;
                }
                let status = Some(i64::from(statuses[e] == b'x'));
                // A build seen in an earlier eval is known, as ingest sees it.
                match job_ids[j].filter(|_| !rebuilt) {
                    Some(job_id) => eval.add_known(
                        builds[j],
                        &KnownBuild::Stored {
                            job_id,
                            finished: true,
                            status,
                            version: 1,
                        },
                    ),
                    None => eval.add_build(BuildRow {
                        id: builds[j],
                        hydra_job: names[j].hydra_job(),
                        job: names[j].clone(),
                        finished: true,
                        status,
                        stoptime: Some(timestamp),
                        drv_hash: format!("{:032}", builds[j]),
                        nixname: names[j].attr.clone(),
                    }),
                }
                .unwrap();
            }
            eval.commit().unwrap();
            for (id, name) in job_ids.iter_mut().zip(&names) {
                *id = store.job_id(jobset_id, name).unwrap();
            }
        }
        (dir, store, start + DAY * (evals as i64 - 1))
    }

    /// Where a listed job's history starts to be read: at the run that
    /// built before its newest failure. Not from its newest success, which
    /// would drop the newest failure of a package the ledger names once it
    /// recovered (the failure its records are about), nor the whole history.
    #[test]
    fn a_listed_job_is_read_from_the_run_that_built_before_its_newest_failure() {
        let (_dir, store, newest) = trunk_of(&[
            // Evals 0 to 39; the window is the last 12.
            ("recovered", &format!("xxoooxxx{}", "o".repeat(32))),
            ("failing", &format!("xxoooxxxooooo{}", "x".repeat(27))),
            ("steady", &"o".repeat(40)),
        ]);
        store
            .record_intent(&notice("recovered"), newest - DAY * 33)
            .unwrap();
        let hydra: Url = "https://hydra.nixos.org".parse().unwrap();
        let mut rules = Policy::nixpkgs().streak;
        rules.flaky_window_evals = 12;
        let read = store
            .plan_facts(
                &hydra,
                "NixOS/nixpkgs",
                PlanScope::new(newest + 3600, &rules),
            )
            .unwrap();
        let trunk = &read.jobsets[0];
        let runs_of = |attr: &str| {
            trunk.jobs.iter().find(|j| j.attr == attr).map(|j| {
                j.runs
                    .iter()
                    .map(|r| (r.first, r.last, r.status.unwrap_or(-1)))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            runs_of("recovered"),
            Some(vec![(2, 4, 0), (5, 7, 1), (8, 39, 0)]),
            "a package the ledger names is read from the build before its newest failure, \
             which it recovered from before the window"
        );
        assert_eq!(
            runs_of("failing"),
            Some(vec![(8, 12, 0), (13, 39, 1)]),
            "a failing job is read from the build before its streak"
        );
        assert_eq!(runs_of("steady"), None, "a job that builds is not read");
        assert_eq!(trunk.unlisted_building, 1, "but counted");
    }

    /// The first notice of a package failing on some of its platforms says
    /// the mark to come covers those platforms only. A plan lists the jobs
    /// that fail; the jobs of the same package that build must be listed
    /// too, or the package looks as if it failed everywhere.
    #[test]
    fn a_notice_tells_that_the_mark_covers_only_the_failing_platforms() {
        let (_dir, store, newest) = trunk_of_jobs(&[
            (
                "frob",
                "aarch64-darwin",
                &format!("{}{}", "o".repeat(10), "x".repeat(30)),
            ),
            (
                "frob",
                "x86_64-darwin",
                &format!("{}{}", "o".repeat(10), "x".repeat(30)),
            ),
            ("frob", "x86_64-linux", &"o".repeat(40)),
            ("steady", "x86_64-linux", &"o".repeat(40)),
        ]);
        let now = newest + 3600;
        let expected =
            assert_plans_alike(&store, now, "a package failing on two of three platforms");
        // The plan's JSON, then the digest.
        let plan: serde_json::Value = serde_json::Deserializer::from_str(&expected)
            .into_iter()
            .next()
            .and_then(Result::ok)
            .expect("the plan as JSON");
        let notice = plan["actions"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|a| a["kind"] == "notify" && a["attr"] == "frob")
            })
            .unwrap_or_else(|| panic!("frob is noticed:\n{expected}"));
        let mark = notice["evidence"]["schedule"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["kind"] == "mark_broken"))
            .unwrap_or_else(|| panic!("the notice schedules a mark:\n{notice:#}"));
        assert_eq!(
            mark["systems"],
            serde_json::json!(["aarch64-darwin", "x86_64-darwin"]),
            "{mark:#}"
        );
        assert!(
            mark.get("all_platforms").is_none(),
            "not every platform: x86_64-linux builds\n{mark:#}"
        );
    }

    /// The plan as `plan_facts` reads it and as the whole history says it,
    /// as of `now`.
    fn both_plans(store: &Store, now: i64) -> (String, String) {
        let hydra: Url = "https://hydra.nixos.org".parse().unwrap();
        let policy = Policy::nixpkgs();
        let ledger = store.ledger().unwrap();
        let whole = store.policy_facts(&hydra, "NixOS/nixpkgs").unwrap();
        let read = store
            .plan_facts(&hydra, "NixOS/nixpkgs", PlanScope::new(now, &policy.streak))
            .unwrap();
        (
            plan_and_digest(&policy, &read, &ledger, now),
            plan_and_digest(&policy, &whole, &ledger, now),
        )
    }

    /// Plan twice (the first plan keeps what it read, the second reads
    /// it) and check both against the whole history; the whole history's
    /// plan.
    fn assert_plans_alike(store: &Store, now: i64, when: &str) -> String {
        for pass in ["keeping", "reading kept"] {
            let (got, expected) = both_plans(store, now);
            if got != expected {
                let diff = similar::TextDiff::from_lines(&expected, &got)
                    .unified_diff()
                    .to_string();
                panic!("{when}, {pass}: the plan differs from the whole history's:\n{diff}");
            }
        }
        both_plans(store, now).1
    }

    fn kept(store: &Store) -> Vec<(i64, HistoryMemo)> {
        let rows: Vec<(i64, i64, i64, String)> = store
            .conn
            .prepare("SELECT job_id, from_seq, upto_seq, runs FROM history_memo ORDER BY job_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.into_iter()
            .map(|(job, from_seq, upto_seq, runs)| {
                (
                    job,
                    HistoryMemo {
                        from_seq,
                        upto_seq,
                        spans: serde_json::from_str(&runs).unwrap(),
                    },
                )
            })
            .collect()
    }

    /// A failing job whose kept runs hold its failure's start: the run
    /// that built before it, then at least two failures. Its job and the
    /// build of its first failure.
    fn kept_failure(store: &Store) -> (i64, i64) {
        kept(store)
            .into_iter()
            .find_map(|(job, memo)| {
                let s = &memo.spans;
                (s.len() >= 3
                    && s[0].status == Some(0)
                    && s[1..].iter().all(|r| r.status == Some(1)))
                .then(|| (job, s[1].build))
            })
            .expect("a kept failure of at least two runs")
    }

    fn sql(store: &Store, sql: &str, build: i64) {
        store.conn.execute(sql, [build]).unwrap();
    }

    #[test]
    fn a_plan_keeps_the_older_part_of_failures_and_plans_the_same_from_it() {
        let (_dir, store, year) = month_of_trunk();
        let now = year.newest_time();
        assert!(kept(&store).is_empty());
        let expected = assert_plans_alike(&store, now, "a month written");
        let memos = kept(&store);
        assert!(
            memos.len() > 50 && memos.iter().all(|(_, m)| !m.spans.is_empty()),
            "a plan keeps what it read of long failures: {} jobs",
            memos.len()
        );
        // What is kept is what the next plan reads: emptied, it plans
        // otherwise (so the comparisons above and below can fail).
        store
            .conn
            .execute("UPDATE history_memo SET runs = '[]'", [])
            .unwrap();
        let (got, _) = both_plans(&store, now);
        assert_ne!(got, expected, "the kept runs were not read");
        // A read-only reader reads what was kept and keeps nothing.
        store.conn.execute("DELETE FROM history_memo", []).unwrap();
        let reader = Store::open_read_only(&store.path).unwrap();
        let (got, expected) = both_plans(&reader, now);
        assert_eq!(got, expected);
        assert!(kept(&store).is_empty(), "a read-only plan keeps nothing");
    }

    #[test]
    fn what_a_plan_kept_is_forgotten_when_what_it_says_changes() {
        // What changes, the statements the writer (or a page read) runs,
        // and whether the whole history's plan changes with it: a stale
        // kept row would then plan otherwise. A restart leaves the spans
        // before it as they were (they keep the version they saw), so the
        // row is forgotten but the plan stays.
        type Change = (&'static str, &'static [&'static str], bool);
        let changes: [Change; 5] = [
            (
                "a failure seen pending, then completing in place as a success",
                &[
                    "UPDATE builds SET finished = 0, status = NULL WHERE id = ?1",
                    "UPDATE builds SET finished = 1, status = 0 WHERE id = ?1",
                ],
                true,
            ),
            (
                "a restart: the failure is a new version, now a success",
                &[
                    "INSERT OR IGNORE INTO build_versions (build_id, version, finished, status, stoptime, drv_hash)
                     SELECT id, version, finished, status, stoptime, drv_hash FROM builds WHERE id = ?1",
                    "UPDATE builds SET finished = 1, status = 0, version = version + 1 WHERE id = ?1",
                ],
                false,
            ),
            (
                "noise inside the failure",
                &["UPDATE builds SET status = 3 WHERE id = ?1"],
                true,
            ),
            (
                "a build page read: the failure was a dependency's",
                &["INSERT INTO build_causes (build_id, status, cause, propagated_from, read_at)
                   SELECT id, status, 'propagated', id + 1, 0 FROM builds WHERE id = ?1"],
                true,
            ),
            (
                "a success breaking the failure",
                &["UPDATE builds SET status = 0 WHERE id = ?1"],
                true,
            ),
        ];
        for (what, statements, changes_plan) in changes {
            let (_dir, store, year) = month_of_trunk();
            let now = year.newest_time();
            let before = assert_plans_alike(&store, now, "a month written");
            let (job, build) = kept_failure(&store);
            for (i, statement) in statements.iter().enumerate() {
                sql(&store, statement, build);
                assert!(
                    kept(&store).iter().all(|(j, _)| *j != job),
                    "{what}: the job's kept runs survive step {i}"
                );
                let after = assert_plans_alike(&store, now, what);
                if i + 1 == statements.len() && changes_plan {
                    assert_ne!(
                        before, after,
                        "{what} changes the plan: a stale memo would show"
                    );
                }
            }
        }
    }

    #[test]
    fn plans_stay_alike_as_evals_come_and_history_is_pruned() {
        let (_dir, mut store, mut year) = month_of_trunk();
        let jobset = JobsetRef {
            project: "nixpkgs".into(),
            jobset: "trunk".into(),
        };
        assert_plans_alike(&store, year.newest_time(), "a month written");
        let kept_before = kept(&store).len();
        // Failures fixed and begun, jobs leaving and coming back, builds
        // completing: the month's writer goes on.
        for eval in 0..12 {
            year.write_eval(&mut store, &jobset).unwrap();
            assert_plans_alike(&store, year.newest_time(), &format!("{eval} evals later"));
        }
        // Jobs that left while failing keep no open span: their old spans
        // go, and so does what was kept of them.
        let kept_before_pruning = kept(&store).len();
        let pruned = store
            .prune(year.newest_time() - 86_400 * 10, 200, None)
            .unwrap();
        assert!(pruned.spans > 0, "{pruned:?}");
        assert!(
            kept(&store).len() < kept_before_pruning,
            "pruning forgets what was kept of the spans it removes"
        );
        assert_plans_alike(&store, year.newest_time(), "after pruning");
        assert!(kept_before > 0);
    }

    #[test]
    fn the_failing_jobs_of_the_newest_eval_are_read_from_the_index_alone() {
        let (_dir, store, _) = trunk_store();
        let plan = query_plan(&store, OPEN_UNBUILT_JOBS);
        assert!(
            plan.iter()
                .any(|step| step == "SCAN s USING COVERING INDEX spans_open_unbuilt"),
            "each failing span would be looked up in the table: {plan:#?}"
        );
    }

    #[test]
    fn a_plan_of_the_past_reads_the_whole_history() {
        let (_dir, store, year) = month_of_trunk();
        let hydra: Url = "https://hydra.nixos.org".parse().unwrap();
        let policy = Policy::nixpkgs();
        let scope = PlanScope::new(year.newest_time() - 86_400 * 10, &policy.streak);
        let read = store.plan_facts(&hydra, "NixOS/nixpkgs", scope).unwrap();
        let whole = store.policy_facts(&hydra, "NixOS/nixpkgs").unwrap();
        assert_eq!(read.runs_read(), whole.runs_read());
    }

    #[test]
    fn an_intent_then_its_results_read_back_as_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let intent = NewAction {
            kind: ActionKind::MarkBroken,
            attr: Some("grafx".into()),
            systems: vec!["aarch64-linux".into(), "x86_64-linux".into()],
            all_platforms: true,
            step: None,
            batch: Some("mark-broken/set/top-level/1".into()),
            pinged: vec![],
            pr: None,
        };
        let id = store.record_intent(&intent, 100).unwrap();
        let in_flight = store.ledger().unwrap().actions.remove(0);
        assert_eq!(
            (in_flight.state, in_flight.planned_at, in_flight.done_at),
            (RecordState::Intent, 100, None)
        );
        store
            .record_result(
                id,
                &ActionResult {
                    state: RecordState::Open,
                    at: 110,
                    pr: Some(4242),
                    issue: None,
                    error: None,
                    refused: None,
                },
            )
            .unwrap();
        store
            .record_result(
                id,
                &ActionResult {
                    state: RecordState::Merged,
                    at: 500,
                    pr: None,
                    issue: None,
                    error: None,
                    refused: None,
                },
            )
            .unwrap();
        let r = store.ledger().unwrap().actions.remove(0);
        assert_eq!(
            (r.kind, r.state, r.done_at, r.closed_at, r.pr),
            (
                ActionKind::MarkBroken,
                RecordState::Merged,
                Some(110),
                Some(500),
                Some(4242)
            ),
            "the PR number survives a later result without one: {r:?}"
        );
        assert_eq!(r.systems, intent.systems);
        assert!(r.all_platforms);
        assert!(
            store
                .record_result(
                    999,
                    &ActionResult {
                        state: RecordState::Done,
                        at: 1,
                        pr: None,
                        issue: None,
                        error: None,
                        refused: None,
                    }
                )
                .is_err()
        );
    }

    #[test]
    fn the_ledger_kept_between_writes_reads_as_the_database_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path).unwrap();
        let fresh = || Store::open_read_only(&path).unwrap().ledger().unwrap();
        assert_eq!(store.ledger().unwrap(), Ledger::default());
        let notice = NewAction {
            pinged: vec!["alice".into()],
            pr: Some(12),
            ..notice("grafx")
        };
        let id = store.record_intent(&notice, 100).unwrap();
        assert_eq!(store.ledger().unwrap(), fresh());
        for (state, at, pr, issue) in [
            (RecordState::Open, 110, Some(4242), None),
            (RecordState::Merged, 500, None, Some(9)),
        ] {
            store
                .record_result(
                    id,
                    &ActionResult {
                        state,
                        at,
                        pr,
                        issue,
                        error: Some("a note".into()),
                        refused: None,
                    },
                )
                .unwrap();
            assert_eq!(store.ledger().unwrap(), fresh());
        }
        let marker = NewOptOut {
            attr: "grafx".into(),
            kind: OptOutKind::Marker,
            recorded_at: 10,
            until: None,
            by: Some("bob".into()),
            note: "pkgs/by-name/gr/grafx/package.nix".into(),
        };
        let o = store.record_opt_out(&marker).unwrap();
        assert_eq!(store.ledger().unwrap(), fresh());
        store.revoke_opt_out(o, 20).unwrap();
        assert_eq!(store.ledger().unwrap(), fresh());

        // Another process writes: read again.
        let other = Store::open(&path).unwrap();
        other.record_intent(&notice, 700).unwrap();
        let ledger = store.ledger().unwrap();
        assert_eq!(ledger.actions.len(), 2, "{ledger:?}");
        assert_eq!(ledger, fresh());
    }

    #[test]
    fn a_marker_seen_twice_is_one_opt_out_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let o = NewOptOut {
            attr: "grafx".into(),
            kind: OptOutKind::Marker,
            recorded_at: 10,
            until: None,
            by: None,
            note: "pkgs/by-name/gr/grafx/package.nix".into(),
        };
        let a = store.record_opt_out(&o).unwrap();
        assert_eq!(store.record_opt_out(&o).unwrap(), a);
        store.revoke_opt_out(a, 20).unwrap();
        let b = store.record_opt_out(&o).unwrap();
        assert_ne!(a, b);
        let ledger = store.ledger().unwrap();
        assert_eq!(ledger.opt_outs.len(), 2);
        assert_eq!(ledger.opt_outs[0].revoked_at, Some(20));
    }
}
