//! One ingest pass: discover new evals of each jobset, learn their builds the
//! cheapest way Hydra allows, and write each eval in one transaction.
//!
//! Owns: the choice between streaming `/eval/{id}/builds` and learning the
//! builds the store does not know yet with `/build/{id}`, the pass's request
//! budget (`ingest.requests_per_pass`, see [`budget`]), validation of what
//! Hydra sends (job names, store paths, jobset), re-checking builds whose
//! status may still change (unfinished ones, and failed ones that may be
//! restarted), and reading failed builds' pages to tell own from propagated
//! failures (`causes.rs`, within `ingest.cause_pages_per_pass`).
//!
//! Must never: write part of an eval (its membership is written in one
//! transaction, once every build in it is known; builds learned one by one
//! are kept as they arrive, without any eval, so that the next pass resumes
//! there), store an eval older than one already stored (history is kept in
//! Hydra's order; see [`crate::store`]), send a request the budget did not
//! grant, or ask for `/eval/{id}/builds` twice for one eval, or for an eval
//! above `ingest.whole_eval_max_builds` (see [`WHOLE_EVAL_MAX_BUILDS`]): the
//! request is noted in the database before it is sent, and whatever happens
//! to it (504 from the gateway, a timeout, a body that breaks off) the eval
//! is completed with `/build/{id}` requests instead.
//!
//! Restart safety: a killed ingest leaves the database at the last committed
//! eval plus the builds learned since; the next pass discovers the same evals
//! again and asks only about builds it does not know.
//!
//! Stopping early: a long-running caller gives the pass a [`PassControl`].
//! Once it is cancelled the pass starts no new eval, cuts the download in
//! flight (its transaction rolls back, as for a truncated body) and returns
//! [`IngestError::Cancelled`]; every committed eval stays. The same control
//! carries a heartbeat called on real progress (a page read, builds parsed,
//! an eval committed), which feeds the systemd watchdog.

mod budget;
mod causes;
mod check;
mod origins;
mod recheck;
mod single;
mod whole_eval;

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{Config, IngestSettings, JobsetRef};
use crate::hydra::{EvalHeader, HydraClient, HydraError};
use crate::store::{EvalWriter, NewEval, Store, StoreError, WriteOutcome};
use budget::RequestBudget;

/// The default of `ingest.whole_eval_max_builds`: the largest eval whose
/// `/eval/{id}/builds` is asked for.
///
/// Why this size. Hydra answers that URL with one array built whole before
/// the first byte (`Controller/JobsetEval.pm` `all_builds`: `entity =>
/// [@builds]`), and each element costs several database queries
/// (`Schema/Result/Builds.pm` `as_json`: the jobset, `jobsetevals`,
/// `buildoutputs`, `buildproducts`, `buildmetrics`). hydra.nixos.org's nginx
/// waits 900 s for the first byte (NixOS/infra `build/hydra-proxy.nix`:
/// `proxyTimeout = "900s"`, NixOS's `proxy_read_timeout`) and then answers
/// 504, and nixpkgs trunk (~250,000 builds) is reported to run into that
/// limit (NixOS/infra#270; `reference/hydra-api.md` §2, §9): at least
/// 900 s / 250,000 ≈ 3.6 ms per build, on a loaded server more. 20,000
/// builds at that rate take 72 s; even five times slower they stay under
/// half the gateway limit. Above it, builds are asked for one by one,
/// paced, which costs Hydra one indexed lookup each and cannot time out.
/// This is reasoning from the source, not a measurement against
/// hydra.nixos.org (we may not load it for a benchmark).
pub const WHOLE_EVAL_MAX_BUILDS: usize = 20_000;

/// The default of `ingest.requests_per_pass`: one daemon interval (15
/// minutes) at the default pace of one request a second, so that passes
/// follow each other without ever outrunning the pace, and plans and acts
/// happen between them even while a trunk-sized eval is being learned.
pub const REQUESTS_PER_PASS: usize = 900;
/// The smallest budget that can make progress: an evals page, an eval's
/// build list and a few builds.
pub const MIN_REQUESTS_PER_PASS: usize = 10;

/// Stop paging back through evals after this many pages when looking for the
/// newest stored eval; beyond it, the gap is accepted and logged.
const MAX_DISCOVERY_PAGES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Hydra(#[from] HydraError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a database task panicked")]
    TaskPanicked(#[from] tokio::task::JoinError),
    #[error("stopped on request; the eval in flight was rolled back")]
    Cancelled,
}

/// How a long-running caller steers a pass: a token that stops it between
/// (or in the middle of) evals, and a heartbeat called on real progress.
/// The default never cancels and beats into the void.
#[derive(Clone, Default)]
pub struct PassControl {
    pub cancel: tokio_util::sync::CancellationToken,
    pub heartbeat: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for PassControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassControl")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

impl PassControl {
    pub fn beat(&self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat();
        }
    }

    fn check(&self) -> Result<(), IngestError> {
        if self.cancel.is_cancelled() {
            Err(IngestError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// How the builds of an eval are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStrategy {
    /// `/build/{id}` for each build that is new or unsettled; the rest carry
    /// over from the store (Hydra reuses a build for as long as its
    /// derivation does not change).
    PerBuild,
    /// The whole `/eval/{id}/builds` array, streamed.
    WholeEval,
}

impl FetchStrategy {
    /// The cheaper way to learn about `needed` of an eval's `total` builds.
    /// Streaming costs about one request per `builds_per_request` builds in
    /// the eval (plus one); fetching one by one costs a request per needed
    /// build, capped at `per_build_fetch_limit`.
    pub fn choose(total: usize, needed: usize, settings: &IngestSettings) -> FetchStrategy {
        let stream_cost = 1 + total / settings.builds_per_request.max(1);
        if needed <= settings.per_build_fetch_limit && needed < stream_cost {
            FetchStrategy::PerBuild
        } else {
            FetchStrategy::WholeEval
        }
    }
}

/// What one pass did, per jobset.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobsetReport {
    pub jobset: String,
    pub evals_ingested: Vec<i64>,
    pub builds_written: usize,
    pub spans_opened: usize,
    pub spans_closed: usize,
    pub rejected_jobs: usize,
    pub rechecked_builds: usize,
    pub changed_builds: usize,
    /// An eval whose builds are still being learned (the budget ran out):
    /// it is stored once all are known, and later evals wait for it.
    pub pending: Option<PendingEval>,
    /// Requests this jobset cost in the pass.
    pub requests: usize,
    /// Build pages read to tell own from propagated failures.
    pub cause_pages_read: usize,
    /// Failures older than our records whose beginning was learned.
    pub origins_learned: usize,
}

/// An eval learned over several passes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PendingEval {
    pub eval: i64,
    pub builds: usize,
    /// Of which still to be asked about.
    pub missing: usize,
}

/// How far one eval got in a pass.
enum EvalIngest {
    /// Stored.
    Written {
        outcome: WriteOutcome,
        streamed: bool,
    },
    /// Not stored yet: the budget ran out (what was learned is kept).
    Pending(PendingEval),
}

/// Options of one pass.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Overrides `ingest.max_evals_per_pass`.
    pub max_evals: Option<usize>,
    /// Unix seconds, for recheck scheduling.
    pub now: i64,
}

pub struct Ingestor {
    client: HydraClient,
    store: Arc<Mutex<Store>>,
    settings: IngestSettings,
    max_in_flight: usize,
    control: PassControl,
    /// What the jobset being ingested may still spend.
    budget: RequestBudget,
}

/// What a streamed builds array is written as.
#[derive(Debug, Clone)]
enum WriteMode {
    NewEval {
        jobset_id: i64,
        eval: NewEval,
    },
    /// Every build of the newest eval read afresh: a running round of
    /// rechecks ends with this transaction (see `recheck.rs`).
    Recheck {
        jobset_id: i64,
    },
}

impl WriteMode {
    fn begin<'s>(
        &self,
        store: &'s mut Store,
        jobset: &JobsetRef,
    ) -> Result<EvalWriter<'s>, StoreError> {
        match self {
            WriteMode::NewEval { jobset_id, eval } => {
                store.begin_eval(*jobset_id, &jobset.to_string(), eval.clone())
            }
            WriteMode::Recheck { jobset_id } => {
                let mut writer = store.begin_recheck(*jobset_id)?;
                writer.set_recheck_cursor(None)?;
                Ok(writer)
            }
        }
    }
}

impl Ingestor {
    pub fn new(config: &Config, client: HydraClient, store: Store) -> Ingestor {
        Ingestor {
            client,
            store: Arc::new(Mutex::new(store)),
            settings: config.ingest.clone(),
            max_in_flight: config.hydra.max_in_flight,
            control: PassControl::default(),
            budget: RequestBudget::default(),
        }
    }

    /// Let a long-running caller stop passes early and hear their progress,
    /// including while the client waits for its pace or backs off.
    pub fn with_control(mut self, control: PassControl) -> Ingestor {
        self.client = self.client.with_progress(control.heartbeat.clone());
        self.control = control;
        self
    }

    /// Give the store back (for read queries after ingesting).
    pub fn into_store(self) -> Store {
        match Arc::try_unwrap(self.store) {
            Ok(mutex) => mutex.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(_) => unreachable!("no database task outlives a pass"),
        }
    }

    /// One pass over every jobset. A jobset that fails is reported and the
    /// others still run; the first error is returned at the end.
    pub async fn pass(
        &self,
        jobsets: &[JobsetRef],
        options: &PassOptions,
    ) -> (Vec<JobsetReport>, Option<IngestError>) {
        let mut reports = Vec::new();
        let mut first_error = None;
        // Each jobset gets an even share of what is left, so a jobset that
        // is far behind never starves the others; what one leaves unspent
        // goes to the next.
        let mut pool = self.settings.requests_per_pass;
        for (n, jobset) in jobsets.iter().enumerate() {
            let mut report = JobsetReport {
                jobset: jobset.to_string(),
                ..JobsetReport::default()
            };
            self.budget.refill(pool / (jobsets.len() - n));
            let result = self.ingest_jobset(jobset, options, &mut report).await;
            report.requests = self.budget.spent();
            pool -= report.requests.min(pool);
            metrics::counter!(crate::daemon::metrics::HYDRA_REQUESTS_BUDGETED, "jobset" => jobset.to_string())
                .increment(report.requests as u64);
            match result {
                Ok(()) => {}
                Err(IngestError::Cancelled) => {
                    tracing::info!(%jobset, "ingest stopped on request; committed evals are kept");
                    reports.push(report);
                    return (reports, Some(IngestError::Cancelled));
                }
                Err(e) => {
                    tracing::error!(%jobset, error = %crate::error_chain(&e), "ingest of jobset failed");
                    first_error.get_or_insert(e);
                }
            }
            reports.push(report);
        }
        (reports, first_error)
    }

    async fn ingest_jobset(
        &self,
        jobset: &JobsetRef,
        options: &PassOptions,
        report: &mut JobsetReport,
    ) -> Result<(), IngestError> {
        let (jobset_id, newest) = self
            .with_store({
                let jobset = jobset.clone();
                move |store| {
                    let id = store.jobset_id(&jobset)?;
                    Ok((id, store.newest_eval(id)?))
                }
            })
            .await?;
        let limit = options
            .max_evals
            .unwrap_or(self.settings.max_evals_per_pass)
            .max(1);
        // An evals page is heavy (every build id of 20 evals): read it only
        // when Hydra checked the jobset since the last complete discovery.
        let (checked, unchanged) = match self.hydra_checked_at(jobset).await {
            Some(checked) => {
                let stored = self
                    .with_store(move |store| Ok(store.hydra_checked_at(jobset_id)?))
                    .await?;
                (Some(checked), stored == Some(checked))
            }
            None => (None, false),
        };
        let pending = if unchanged {
            self.with_store(move |store| Ok(store.pending_eval(jobset_id)?))
                .await?
        } else {
            None
        };
        let mut evals = match pending {
            // Still learning an eval, and nothing new since: go on with it.
            Some((eval, json)) => match serde_json::from_str::<EvalHeader>(&json) {
                Ok(header) if newest.as_ref().is_none_or(|n| n.id < eval) => vec![header],
                _ => {
                    self.with_store(move |store| Ok(store.clear_pending_eval(jobset_id)?))
                        .await?;
                    Vec::new()
                }
            },
            None if unchanged => {
                tracing::info!(%jobset, "Hydra has not checked the jobset since the last pass; no new evals");
                Vec::new()
            }
            None => {
                self.discover(jobset, newest.as_ref().map(|e| e.id), limit)
                    .await?
            }
        };
        // Once every eval found is stored, this check is settled.
        let complete_discovery = !unchanged && evals.len() < limit;
        if evals.is_empty() {
            tracing::info!(%jobset, "no new evals");
        }
        // A first install of a jobset too big to ask for whole starts at its
        // newest eval: every older eval would cost as many single requests
        // as the first (a trunk eval: 250,000), and what matters on day one
        // is what fails now.
        if newest.is_none()
            && evals.len() > 1
            && evals
                .last()
                .and_then(|e| e.nr_builds)
                .is_some_and(|n| n > self.settings.whole_eval_max_builds)
        {
            tracing::info!(%jobset, skipped = evals.len() - 1,
                "first install of a big jobset: starting at its newest eval");
            evals.drain(..evals.len() - 1);
        }
        let mut newest_streamed = false;
        let mut has_history = newest.is_some();
        for header in evals {
            self.control.check()?;
            let (outcome, streamed) = match self
                .ingest_eval(jobset, jobset_id, &header, has_history, options.now)
                .await?
            {
                EvalIngest::Written { outcome, streamed } => (outcome, streamed),
                EvalIngest::Pending(pending) => {
                    // Kept, with what was found: the next passes go on with
                    // it without reading the evals page while Hydra has not
                    // checked the jobset again.
                    if complete_discovery {
                        self.with_store(move |store| {
                            Ok(store.set_hydra_checked_at(jobset_id, checked)?)
                        })
                        .await?;
                    }
                    tracing::info!(%jobset, eval = pending.eval, builds = pending.builds, missing = pending.missing,
                        "request budget spent before every build of the eval was known; the next passes go on where this one stopped");
                    metrics::gauge!(crate::daemon::metrics::EVAL_BUILDS_MISSING, "jobset" => jobset.to_string())
                        .set(pending.missing as f64);
                    report.pending = Some(pending);
                    // Later evals wait: history is kept in Hydra's order.
                    return Ok(());
                }
            };
            metrics::gauge!(crate::daemon::metrics::EVAL_BUILDS_MISSING, "jobset" => jobset.to_string())
                .set(0.0);
            self.with_store(move |store| Ok(store.clear_pending_eval(jobset_id)?))
                .await?;
            has_history = true;
            tracing::info!(%jobset, eval = header.id, builds = outcome.members, written = outcome.builds_written,
                spans_opened = outcome.spans_opened, spans_closed = outcome.spans_closed,
                rejected = outcome.rejected_jobs, strategy = if streamed { "eval-builds" } else { "per-build" }, "eval ingested");
            self.control.beat();
            let labels = [("jobset", jobset.to_string())];
            metrics::counter!("hydra_sentinel_evals_ingested_total", &labels).increment(1);
            metrics::counter!("hydra_sentinel_builds_written_total", &labels)
                .increment(outcome.builds_written as u64);
            metrics::counter!("hydra_sentinel_builds_refused_total", &labels)
                .increment(outcome.rejected_jobs as u64);
            report.evals_ingested.push(header.id);
            report.builds_written += outcome.builds_written;
            report.spans_opened += outcome.spans_opened;
            report.spans_closed += outcome.spans_closed;
            report.rejected_jobs += outcome.rejected_jobs;
            newest_streamed = streamed;
        }
        if complete_discovery {
            self.with_store(move |store| Ok(store.set_hydra_checked_at(jobset_id, checked)?))
                .await?;
        }
        self.control.check()?;
        self.recheck(jobset, jobset_id, options.now, newest_streamed, report)
            .await?;
        self.control.check()?;
        self.read_causes(jobset, jobset_id, options.now, report)
            .await?;
        report.origins_learned = self.learn_origins(jobset, jobset_id, options.now).await?;
        Ok(())
    }

    /// Hydra's `lastcheckedtime` of the jobset, if `/api/jobsets` says
    /// (one small request from the budget); None when it cannot tell, and
    /// then the evals page is read as before.
    async fn hydra_checked_at(&self, jobset: &JobsetRef) -> Option<i64> {
        if !self.budget.take() {
            return None;
        }
        match self.client.jobsets_overview(&jobset.project).await {
            Ok(jobsets) => jobsets
                .into_iter()
                .find(|j| j.name == jobset.jobset)
                .and_then(|j| j.lastcheckedtime),
            Err(e) => {
                tracing::debug!(%jobset, error = %crate::error_chain(&e), "no jobset overview; reading the evals page");
                None
            }
        }
    }

    /// New evals after `newest_known`, oldest first, at most `limit`: the
    /// newest ones on a first backfill, the oldest missing ones on catch-up.
    async fn discover(
        &self,
        jobset: &JobsetRef,
        newest_known: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EvalHeader>, IngestError> {
        let mut found: Vec<EvalHeader> = Vec::new();
        let mut url = Some(self.client.evals_url(&jobset.project, &jobset.jobset));
        let mut pages = 0;
        let mut reached_known = false;
        while let Some(page_url) = url.take() {
            if !self.budget.take() {
                tracing::info!(%jobset, pages, "request budget spent while looking for new evals");
                break;
            }
            let (page, next) = self.client.evals_page(&page_url).await?;
            self.control.beat();
            pages += 1;
            for eval in page.evals {
                if newest_known.is_some_and(|known| eval.id <= known) {
                    reached_known = true;
                    break;
                }
                found.push(eval);
            }
            // Keep build ids only where they will be used: the newest `limit`
            // on a first backfill, the oldest `limit` on a catch-up (pages
            // go from the newest back, so the last ones pushed).
            let keep = if newest_known.is_none() {
                0..limit.min(found.len())
            } else {
                found.len().saturating_sub(limit)..found.len()
            };
            for (i, eval) in found.iter_mut().enumerate() {
                if !keep.contains(&i) {
                    eval.forget_build_ids();
                }
            }
            let enough_for_backfill = newest_known.is_none() && found.len() >= limit;
            if reached_known || enough_for_backfill {
                break;
            }
            if pages >= MAX_DISCOVERY_PAGES {
                tracing::warn!(%jobset, pages, "newest stored eval not found within the pages searched; history will have a gap");
                break;
            }
            url = next;
        }
        found.sort_by_key(|e| e.id);
        found.dedup_by_key(|e| e.id);
        if newest_known.is_none() || !reached_known {
            let skip = found.len().saturating_sub(limit);
            found.drain(..skip);
        } else {
            found.truncate(limit);
        }
        Ok(found)
    }

    /// Fetch and write one eval, or learn as much of it as the budget
    /// allows. The first eval of a jobset is streamed straight away when it
    /// may be: every build is new, so the build list of `/eval/{id}` (3 MB
    /// for nixpkgs) would only confirm it. Otherwise the builds the store
    /// does not know yet are learned one by one, oldest first (an older
    /// build is more likely to have finished), and kept as they arrive; the
    /// eval is written once all are known. Builds the store knows but whose
    /// status may still change are left to [`Self::recheck`].
    async fn ingest_eval(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        header: &EvalHeader,
        has_history: bool,
        now: i64,
    ) -> Result<EvalIngest, IngestError> {
        let eval_id = header.id;
        let new_eval = NewEval {
            id: header.id,
            timestamp: header.timestamp,
            revision: header.revision(),
            checkout_time: header.checkouttime,
            eval_time: header.evaltime,
            strategy: "per-build",
        };
        let whole_eval = WriteMode::NewEval {
            jobset_id,
            eval: NewEval {
                strategy: "eval-builds",
                ..new_eval.clone()
            },
        };
        let pending = |builds: usize, missing: usize| {
            Ok(EvalIngest::Pending(PendingEval {
                eval: eval_id,
                builds,
                missing,
            }))
        };
        let mut tried_whole = false;
        if !has_history
            && let Some(total) = header.nr_builds
            && self.may_ask_whole_eval(jobset_id, eval_id, total).await?
        {
            if !self.budget.take() {
                return pending(total, total);
            }
            tried_whole = true;
            if let Ok(outcome) = self
                .whole_eval(jobset, jobset_id, eval_id, total, whole_eval.clone(), now)
                .await?
            {
                return Ok(EvalIngest::Written {
                    outcome,
                    streamed: true,
                });
            }
        }
        // The evals page carried the ids: asking `/eval/{id}` again would
        // cost Hydra a comparison with the previous eval for nothing.
        let ids = match &header.build_ids {
            Some(ids) => ids.clone(),
            None if self.budget.take() => self.client.eval(eval_id).await?.builds,
            None => {
                let total = header.nr_builds.unwrap_or_default();
                return pending(total, total);
            }
        };
        let known = self
            .with_store({
                let ids = ids.clone();
                move |store| Ok(store.known_builds(jobset_id, &ids)?)
            })
            .await?;
        let mut unknown: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !known.contains_key(id))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        tracing::debug!(%jobset, eval = header.id, builds = ids.len(), unknown = unknown.len(), "planning fetch");
        if !tried_whole
            && FetchStrategy::choose(ids.len(), unknown.len(), &self.settings)
                == FetchStrategy::WholeEval
            && self
                .may_ask_whole_eval(jobset_id, eval_id, ids.len())
                .await?
            && self.budget.take()
            && let Ok(outcome) = self
                .whole_eval(jobset, jobset_id, eval_id, ids.len(), whole_eval, now)
                .await?
        {
            return Ok(EvalIngest::Written {
                outcome,
                streamed: true,
            });
        }
        let known = if unknown.is_empty() {
            known
        } else {
            let learned = self
                .fetch_and_keep(jobset, jobset_id, &unknown, now)
                .await?;
            if learned.missing > 0 {
                let header_json = EvalHeader {
                    build_ids: Some(ids.clone()),
                    nr_builds: Some(ids.len()),
                    ..header.clone()
                }
                .to_json();
                self.with_store(move |store| {
                    Ok(store.save_pending_eval(jobset_id, eval_id, &header_json, now)?)
                })
                .await?;
                return pending(ids.len(), learned.missing);
            }
            self.with_store({
                let ids = ids.clone();
                move |store| Ok(store.known_builds(jobset_id, &ids)?)
            })
            .await?
        };
        let jobset = jobset.clone();
        let outcome = self
            .with_store(move |store| {
                let mut writer = store.begin_eval(jobset_id, &jobset.to_string(), new_eval)?;
                for id in &ids {
                    match known.get(id) {
                        Some(k) => writer.add_known(*id, k)?,
                        None => tracing::warn!(%jobset, eval = eval_id, build = id,
                            "a build fetched for this eval is not in the store; left out"),
                    }
                }
                Ok(writer.commit()?)
            })
            .await?;
        Ok(EvalIngest::Written {
            outcome,
            streamed: false,
        })
    }

    /// Run database work on the blocking pool.
    async fn with_store<T, F>(&self, f: F) -> Result<T, IngestError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, IngestError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> IngestSettings {
        IngestSettings::default()
    }

    #[test]
    fn a_nixpkgs_eval_with_few_new_builds_is_completed_build_by_build() {
        assert_eq!(
            FetchStrategy::choose(250_000, 400, &settings()),
            FetchStrategy::PerBuild
        );
    }

    #[test]
    fn a_first_eval_or_a_mass_rebuild_is_streamed_whole() {
        assert_eq!(
            FetchStrategy::choose(250_000, 250_000, &settings()),
            FetchStrategy::WholeEval
        );
        assert_eq!(
            FetchStrategy::choose(250_000, 30_000, &settings()),
            FetchStrategy::WholeEval
        );
    }

    #[test]
    fn a_small_jobset_is_streamed_since_one_request_is_cheaper() {
        assert_eq!(
            FetchStrategy::choose(100, 10, &settings()),
            FetchStrategy::WholeEval
        );
        assert_eq!(
            FetchStrategy::choose(100, 0, &settings()),
            FetchStrategy::PerBuild
        );
    }

    #[test]
    fn never_more_single_requests_than_the_limit() {
        let settings = IngestSettings {
            per_build_fetch_limit: 10,
            builds_per_request: 1,
            ..settings()
        };
        assert_eq!(
            FetchStrategy::choose(1000, 11, &settings),
            FetchStrategy::WholeEval
        );
        assert_eq!(
            FetchStrategy::choose(1000, 10, &settings),
            FetchStrategy::PerBuild
        );
    }
}
