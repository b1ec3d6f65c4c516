//! One ingest pass: discover new evals of each jobset, fetch their builds the
//! cheaper of two ways, and write each eval in one transaction.
//!
//! Owns: the choice between streaming `/eval/{id}/builds` and fetching only
//! the unseen builds with `/build/{id}`, validation of what Hydra sends
//! (job names, store paths, jobset), and re-checking builds whose status may
//! still change (unfinished ones, and failed ones that may be restarted).
//!
//! Must never: write part of an eval (a failed fetch or a truncated body rolls
//! the whole eval back), store an eval older than one already stored (history
//! is kept in Hydra's order; see [`crate::store`]), or ask for
//! `/eval/{id}/builds` twice for one eval, or for an eval above
//! `ingest.whole_eval_max_builds` (see [`WHOLE_EVAL_MAX_BUILDS`]): the
//! request is noted in the database before it is sent, and whatever happens
//! to it (504 from the gateway, a timeout, a body that breaks off) the eval
//! is completed with `/build/{id}` requests instead.
//!
//! Restart safety: a killed ingest leaves the database at the last committed
//! eval; the next pass discovers the same evals again and carries on.
//!
//! Stopping early: a long-running caller gives the pass a [`PassControl`].
//! Once it is cancelled the pass starts no new eval, cuts the download in
//! flight (its transaction rolls back, as for a truncated body) and returns
//! [`IngestError::Cancelled`]; every committed eval stays. The same control
//! carries a heartbeat called on real progress (a page read, builds parsed,
//! an eval committed), which feeds the systemd watchdog.

mod check;
mod recheck;
mod whole_eval;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;

use crate::config::{Config, IngestSettings, JobsetRef};
use crate::hydra::{Build, EvalHeader, HydraClient, HydraError};
use crate::store::{EvalWriter, NewEval, Store, StoreError, WriteOutcome};
use check::BuildChecker;

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
        for jobset in jobsets {
            let mut report = JobsetReport {
                jobset: jobset.to_string(),
                ..JobsetReport::default()
            };
            match self.ingest_jobset(jobset, options, &mut report).await {
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
        let evals = self
            .discover(jobset, newest.as_ref().map(|e| e.id), limit)
            .await?;
        if evals.is_empty() {
            tracing::info!(%jobset, "no new evals");
        }
        let mut newest_streamed = false;
        let ingested_any = !evals.is_empty();
        let mut has_history = newest.is_some();
        for header in evals {
            self.control.check()?;
            let (outcome, streamed) = self
                .ingest_eval(jobset, jobset_id, &header, has_history, options.now)
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
        self.control.check()?;
        self.recheck(
            jobset,
            jobset_id,
            options.now,
            ingested_any,
            newest_streamed,
            report,
        )
        .await
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

    /// Fetch and write one eval; returns what changed and whether the whole
    /// builds array was streamed. The first eval of a jobset is streamed
    /// straight away when it may be: every build is new, so the build list
    /// of `/eval/{id}` (3 MB for nixpkgs) would only confirm it.
    async fn ingest_eval(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        header: &EvalHeader,
        has_history: bool,
        now: i64,
    ) -> Result<(WriteOutcome, bool), IngestError> {
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
        let mut tried_whole = false;
        if !has_history
            && let Some(total) = header.nr_builds
            && self.may_ask_whole_eval(jobset_id, eval_id, total).await?
        {
            tried_whole = true;
            if let Ok(outcome) = self
                .whole_eval(jobset, jobset_id, eval_id, total, whole_eval.clone(), now)
                .await?
            {
                return Ok((outcome, true));
            }
        }
        let ids = self.client.eval(eval_id).await?.builds;
        let known = self
            .with_store({
                let ids = ids.clone();
                move |store| Ok(store.known_builds(jobset_id, &ids)?)
            })
            .await?;
        let needed: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| known.get(id).is_none_or(|k| !k.is_settled()))
            .collect();
        tracing::debug!(%jobset, eval = header.id, builds = ids.len(), needed = needed.len(), "planning fetch");
        if !tried_whole
            && FetchStrategy::choose(ids.len(), needed.len(), &self.settings)
                == FetchStrategy::WholeEval
            && self
                .may_ask_whole_eval(jobset_id, eval_id, ids.len())
                .await?
            && let Ok(outcome) = self
                .whole_eval(jobset, jobset_id, eval_id, ids.len(), whole_eval, now)
                .await?
        {
            return Ok((outcome, true));
        }
        // Build by build: every needed one, however many (the whole-eval
        // request is not to be had for this eval).
        let fetched = self.fetch_builds_cancellable(&needed).await??;
        let jobset = jobset.clone();
        let outcome = self
            .with_store(move |store| {
                let mut writer = store.begin_eval(jobset_id, &jobset.to_string(), new_eval)?;
                let mut checker = BuildChecker::new(&jobset, eval_id);
                let fetched: HashMap<i64, Build> = fetched.into_iter().map(|b| (b.id, b)).collect();
                for id in &ids {
                    match (fetched.get(id), known.get(id)) {
                        (Some(build), _) => checker.write(&mut writer, build)?,
                        (None, Some(k)) => writer.add_known(*id, k)?,
                        (None, None) => {}
                    }
                }
                Ok(writer.commit()?)
            })
            .await?;
        Ok((outcome, false))
    }

    async fn fetch_builds(&self, ids: &[i64]) -> Result<Vec<Build>, HydraError> {
        stream::iter(ids.iter().copied())
            .map(|id| self.client.build(id))
            .buffer_unordered(self.max_in_flight.max(1))
            .inspect_ok(|_| self.control.beat())
            .try_collect()
            .await
    }

    /// [`Self::fetch_builds`], abandoned when the pass is cancelled (nothing
    /// is written until every build has arrived, so there is nothing to undo).
    async fn fetch_builds_cancellable(
        &self,
        ids: &[i64],
    ) -> Result<Result<Vec<Build>, HydraError>, IngestError> {
        tokio::select! {
            fetched = self.fetch_builds(ids) => Ok(fetched),
            () = self.control.cancel.cancelled() => Err(IngestError::Cancelled),
        }
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
