//! Whose failure is it: reading failed builds' Hydra pages, once each.
//!
//! Hydra copies a dependency's failure code onto its dependents (only 1
//! becomes 2), so a 7, 8, 10, 11 or 12 on a build may be a dependency's;
//! only the HTML build page says ("propagated from build N"; see
//! [`crate::hydra::BuildCause`]). Until its page is read, such a failure is
//! not acted on ([`crate::history::Run::awaits_cause`]), so this phase runs
//! after every jobset's evals and rechecks are committed, within
//! `ingest.cause_pages_per_pass` requests (and what is left of the pass's
//! `requests_per_pass`), most useful first (see
//! [`crate::store::Store::causes_to_read`]). Dependency failures (2) are
//! read too, after those, to charge them to their root build.
//!
//! Each answer is committed on its own, so a kill loses at most the page
//! in flight and a restart never reads a page again: what was read is in
//! `build_causes` (for the status the build had then).

use super::{IngestError, Ingestor, JobsetReport};
use crate::config::JobsetRef;
use crate::history::Cause;
use crate::hydra::{BuildCause, HydraError};

impl Ingestor {
    /// Read the pages of failed builds in the jobset's newest eval whose
    /// cause is not known yet, at most `cause_pages_per_pass` of them.
    pub(super) async fn read_causes(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        now: i64,
        report: &mut JobsetReport,
    ) -> Result<(), IngestError> {
        let budget = self.settings.cause_pages_per_pass;
        let to_read = self
            .with_store(move |store| Ok(store.causes_to_read(jobset_id, budget)?))
            .await?;
        for item in to_read {
            self.control.check()?;
            // Pages are part of the pass's request budget too.
            if !self.budget.take() {
                tracing::info!(%jobset, read = report.cause_pages_read,
                    "request budget spent; the remaining build pages wait for the next pass");
                break;
            }
            let answer = tokio::select! {
                answer = self.client.build_cause(item.build) => answer,
                () = self.control.cancel.cancelled() => return Err(IngestError::Cancelled),
            };
            let cause = match answer {
                Ok(cause) => cause,
                // A build Hydra no longer has: there is nothing to read, ever.
                Err(HydraError::Status {
                    status: 404 | 410, ..
                }) => BuildCause::NoFailedSteps,
                Err(e) => {
                    // The client already retried; the rest waits for the
                    // next pass rather than pressing an unwell Hydra.
                    tracing::warn!(%jobset, build = item.build, error = %crate::error_chain(&e),
                        "could not read a build page; the remaining pages wait for the next pass");
                    break;
                }
            };
            let (read, step) = match &cause {
                BuildCause::Own { step_status } => (Cause::Own, Some(step_status.clone())),
                BuildCause::Propagated { from, step_status } => {
                    (Cause::Propagated { from: *from }, Some(step_status.clone()))
                }
                BuildCause::NoFailedSteps => (Cause::Unknown, None),
            };
            self.with_store(move |store| {
                Ok(store.record_cause(item.build, item.status, read, step.as_deref(), now)?)
            })
            .await?;
            report.cause_pages_read += 1;
            metrics::counter!("hydra_sentinel_build_pages_read_total", "jobset" => jobset.to_string())
                .increment(1);
            tracing::debug!(%jobset, build = item.build, status = item.status, ?cause, "read a build's cause");
            self.control.beat();
        }
        if report.cause_pages_read > 0 {
            tracing::info!(%jobset, pages = report.cause_pages_read, budget,
                "read failed builds' pages (own or propagated failure)");
        }
        Ok(())
    }
}
