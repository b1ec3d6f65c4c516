//! When failures under way before our records began: a first install must
//! know that a package has been failing for five months, not two days.
//!
//! Owns: learning, for each job failing in the first stored eval of a
//! jobset, when its failure began, from Hydra's own evidence, within the
//! pass's request budget, once per job.
//!
//! How, and why this way (NixOS/hydra, `Base/Controller/ListBuilds.pm`,
//! `Controller/JobsetEval.pm`, `Schema/Result/Builds.pm`): Hydra has no JSON
//! history of a job (`/job/…/all` is HTML only), and going back through evals
//! pages is out of the question (each eval there carries all its 250,000
//! build ids). But three cheap, indexed requests tell the story:
//!
//! 1. `/job/{project}/{jobset}/{job}/latest` redirects to the job's newest
//!    successful build S (or answers 404: never built);
//! 2. `/build/{S}` lists in `jobsetevals` every eval that contained S: the
//!    newest of them is the last eval in which the job built;
//! 3. `/eval/{next}/job/{job}` redirects to the job's build in the eval
//!    after that one, B, and `/build/{B}` gives its queue time `timestamp`,
//!    set when that eval created it: when the failure began.
//!
//! The eval after S's last one comes from the jobset's eval ids, which the
//! builds themselves carry: the oldest build of the first stored eval has
//! been in every eval since it was created. When B is the failing build we
//! already have, step 3 costs nothing. A beginning older than the horizon
//! (`ingest.origin_horizon_days`) is told as the horizon: "at least".
//!
//! Must never: make a failure look younger than what Hydra proves (the
//! failing build's own queue time is always a bound), or ask about a job
//! whose origin is known.

use super::{IngestError, Ingestor};
use crate::config::JobsetRef;
use crate::hydra::{BuildInEvals, HydraError};
use crate::policy::FailureOrigin;
use crate::store::OriginWanted;

/// The most requests learning one job's origin costs.
const REQUESTS_PER_ORIGIN: usize = 5;

/// An answer Hydra will give again (a 404: that build or eval is gone) is
/// no information; anything else that failed is tried on a later pass.
fn unless_gone<T>(answer: Result<T, HydraError>) -> Result<Option<T>, HydraError> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_refused_for_good() => Ok(None),
        Err(e) => Err(e),
    }
}

impl Ingestor {
    /// Learn the origins still wanted for a jobset, most likely to matter
    /// first (the oldest failing builds), until the budget is spent.
    pub(super) async fn learn_origins(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        now: i64,
    ) -> Result<usize, IngestError> {
        if self.budget.left() < REQUESTS_PER_ORIGIN + 1 {
            return Ok(0);
        }
        let wanted = self
            .with_store(move |store| Ok(store.origins_wanted(jobset_id)?))
            .await?;
        if wanted.is_empty() {
            return Ok(0);
        }
        let horizon = now - self.settings.origin_horizon.as_secs() as i64;
        // The jobset's eval ids, as far back as the oldest build of the first
        // stored eval reaches.
        let oldest = wanted.iter().map(|w| w.build_id).min().unwrap_or_default();
        let mut eval_ids = if self.budget.take() {
            match unless_gone(self.client.build_in_evals(oldest).await) {
                Ok(build) => build.map(|b| b.jobsetevals).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(%jobset, error = %crate::error_chain(&e),
                        "Hydra did not answer; when failures began is learned on a later pass");
                    return Ok(0);
                }
            }
        } else {
            Vec::new()
        };
        eval_ids.sort_unstable();
        let mut learned = 0;
        for job in &wanted {
            self.control.check()?;
            if self.budget.left() < REQUESTS_PER_ORIGIN {
                tracing::info!(%jobset, learned, left = wanted.len() - learned,
                    "request budget spent; when the other failures began is learned on the next passes");
                break;
            }
            let origin = match self.origin_of(jobset, job, &eval_ids, horizon).await {
                Ok(origin) => origin,
                Err(e) => {
                    tracing::warn!(%jobset, job = %job.name, error = %crate::error_chain(&e),
                        "Hydra did not answer; when failures began is learned on a later pass");
                    break;
                }
            };
            let (job_id, build_id) = (job.job_id, job.build_id);
            tracing::debug!(%jobset, job = %job.name, ?origin, "learned when a failure began");
            self.with_store(move |store| Ok(store.record_origin(job_id, build_id, &origin, now)?))
                .await?;
            learned += 1;
            self.control.beat();
        }
        if learned > 0 {
            tracing::info!(%jobset, learned, "learned from Hydra when failures older than our records began");
        }
        Ok(learned)
    }

    async fn origin_of(
        &self,
        jobset: &JobsetRef,
        job: &OriginWanted,
        jobset_evals: &[i64],
        horizon: i64,
    ) -> Result<FailureOrigin, HydraError> {
        let hydra_job = job.name.hydra_job();
        let take = || self.budget.take();
        let failing = if take() {
            unless_gone(self.client.build_in_evals(job.build_id).await)?
        } else {
            None
        };
        // What the failing build alone proves: failing since it was queued.
        let own_time = failing
            .as_ref()
            .and_then(|f| f.timestamp)
            .unwrap_or(job.first_eval_time)
            .min(job.first_eval_time);
        let mut evals: Vec<i64> = jobset_evals.to_vec();
        if let Some(f) = &failing {
            evals.extend(&f.jobsetevals);
        }
        let success = match take() {
            true => {
                self.client
                    .latest_success(&jobset.project, &jobset.jobset, &hydra_job)
                    .await?
            }
            false => None,
        };
        let success: Option<BuildInEvals> = match success {
            Some(id) if take() => unless_gone(self.client.build_in_evals(id).await)?,
            _ => None,
        };
        let mut origin = FailureOrigin {
            since: own_time,
            since_eval: failing
                .as_ref()
                .and_then(|f| f.jobsetevals.iter().min().copied()),
            evals_before: 0,
            derivations_before: 0,
            last_success: None,
            beyond_horizon: false,
        };
        if let Some(s) = &success {
            evals.extend(&s.jobsetevals);
            evals.sort_unstable();
            evals.dedup();
            let last_good = s.jobsetevals.iter().max().copied();
            origin.last_success =
                last_good.map(|e| (s.id, e, s.stoptime.or(s.timestamp).unwrap_or_default()));
            let next = last_good.and_then(|good| evals.iter().find(|e| **e > good).copied());
            if let Some(next) = next.filter(|next| *next < job.first_eval) {
                let first_failing = match &failing {
                    Some(f) if f.jobsetevals.contains(&next) => Some((f.id, f.timestamp)),
                    _ if take() => match self.client.eval_job(next, &hydra_job).await? {
                        Some(id) if id == job.build_id => {
                            Some((id, failing.as_ref().and_then(|f| f.timestamp)))
                        }
                        Some(id) if take() => unless_gone(self.client.build_in_evals(id).await)?
                            .map(|b| (id, b.timestamp)),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some((build, time)) = first_failing {
                    origin.since_eval = Some(next);
                    origin.since = time.unwrap_or(origin.since).min(origin.since);
                    origin.derivations_before = u32::from(build != job.build_id);
                }
                origin.evals_before = u32::try_from(
                    evals
                        .iter()
                        .filter(|e| **e >= next && **e < job.first_eval)
                        .count(),
                )
                .unwrap_or(u32::MAX);
            }
        } else {
            // Never built (as far as Hydra remembers): its evals before ours.
            origin.evals_before = u32::try_from(
                failing
                    .iter()
                    .flat_map(|f| f.jobsetevals.iter())
                    .filter(|e| **e < job.first_eval)
                    .count(),
            )
            .unwrap_or(u32::MAX);
        }
        if origin.since < horizon {
            origin.since = horizon;
            origin.beyond_horizon = true;
        }
        Ok(origin)
    }
}
