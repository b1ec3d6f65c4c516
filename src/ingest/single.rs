//! Learning builds one `/build/{id}` at a time, kept as they arrive.
//!
//! Owns: fetching a list of builds within the pass's request budget, a few
//! at a time, and writing each batch to the store as soon as it is complete
//! (the builds, not yet any eval's membership), so that a kill, a cancel or
//! the end of the budget loses at most one batch of requests: the next pass
//! finds those builds in the store and asks only for the rest.
//!
//! Must never: send a request the budget did not grant, or let one build
//! that Hydra refuses for good (a 404, say) stop an eval from completing:
//! it is recorded as refused, with Hydra's answer, and counted.

use futures_util::{StreamExt, stream};

use super::check::BuildChecker;
use super::{IngestError, Ingestor};
use crate::config::JobsetRef;
use crate::hydra::{Build, HydraError};

/// Builds written per transaction while fetching one by one: at one request
/// a second, a kill loses at most this many seconds of requests.
const KEEP_BATCH: usize = 100;

/// How far a list of builds got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Learned {
    /// Builds fetched and kept (or refused) in this call.
    pub fetched: usize,
    /// Builds whose stored status changed (new builds count too).
    pub written: usize,
    /// Builds not asked about because the budget was spent.
    pub missing: usize,
}

impl Ingestor {
    /// Fetch `ids` in the given order (most useful first), writing them to
    /// the store every [`KEEP_BATCH`] builds, until done or the budget is
    /// spent. A transient failure that outlived the client's retries ends
    /// the call with an error, after keeping what had arrived.
    pub(super) async fn fetch_and_keep(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        ids: &[i64],
        now: i64,
    ) -> Result<Learned, IngestError> {
        let mut learned = Learned {
            fetched: 0,
            written: 0,
            missing: 0,
        };
        for batch in ids.chunks(KEEP_BATCH) {
            self.control.check()?;
            let granted = self.budget.take_up_to(batch.len());
            let batch = &batch[..granted];
            if batch.is_empty() {
                break;
            }
            let answers = self.fetch_each_cancellable(batch).await?;
            let mut builds: Vec<Build> = Vec::with_capacity(answers.len());
            let mut refused: Vec<(i64, String)> = Vec::new();
            let mut failure = None;
            for (id, answer) in answers {
                match answer {
                    Ok(build) => builds.push(build),
                    Err(e) if e.is_refused_for_good() => {
                        tracing::warn!(%jobset, build = id, error = %crate::error_chain(&e),
                            "Hydra refused a build for good; recorded as refused, not asked again");
                        refused.push((id, crate::error_chain(&e)));
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            let kept = builds.len() + refused.len();
            let written = self.keep(jobset, jobset_id, builds, refused, now).await?;
            learned.fetched += kept;
            learned.written += written;
            if let Some(e) = failure {
                return Err(e.into());
            }
        }
        learned.missing = ids.len() - learned.fetched;
        Ok(learned)
    }

    /// Write fetched builds (and refusals) in one small transaction, noting
    /// when each was asked about; returns how many builds changed.
    async fn keep(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        builds: Vec<Build>,
        refused: Vec<(i64, String)>,
        now: i64,
    ) -> Result<usize, IngestError> {
        let jobset = jobset.clone();
        self.with_store(move |store| {
            let mut writer = store.begin_recheck(jobset_id)?;
            let mut checker = BuildChecker::new(&jobset, 0);
            for build in &builds {
                checker.write(&mut writer, build)?;
                writer.note_fetched(build.id, now)?;
            }
            for (id, why) in &refused {
                writer.refuse(*id, "", why)?;
            }
            Ok(writer.commit()?.builds_written)
        })
        .await
    }

    /// Ask about each of `ids` (at most `hydra.max_in_flight` at once),
    /// answers in any order; abandoned when the pass is cancelled (nothing
    /// of the batch is written until all of it has arrived).
    pub(super) async fn fetch_each_cancellable(
        &self,
        ids: &[i64],
    ) -> Result<Vec<(i64, Result<Build, HydraError>)>, IngestError> {
        let fetch = stream::iter(ids.iter().copied())
            .map(|id| async move { (id, self.client.build(id).await) })
            .buffer_unordered(self.max_in_flight.max(1))
            .inspect(|_| self.control.beat())
            .collect::<Vec<_>>();
        tokio::select! {
            answers = fetch => Ok(answers),
            () = self.control.cancel.cancelled() => Err(IngestError::Cancelled),
        }
    }
}
