//! Asking again about builds whose status may still change.

use super::{FetchStrategy, IngestError, Ingestor, JobsetReport, WriteMode};
use crate::config::JobsetRef;

/// An unfinished build is asked about again at most this often: Hydra takes
/// hours to build most of an eval, and the budget is better spent on builds
/// not asked about for longer.
const UNFINISHED_RECHECK_GAP: i64 = 3600;

impl Ingestor {
    /// Ask again about builds of the newest eval whose status may change,
    /// within what is left of the pass's budget, least recently asked first:
    /// unfinished ones (unless the newest eval was just streamed whole), and
    /// failed ones every `recheck_after` (likewise).
    pub(super) async fn recheck(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        now: i64,
        newest_streamed: bool,
        report: &mut JobsetReport,
    ) -> Result<(), IngestError> {
        let recheck_after = self.settings.recheck_after.as_secs() as i64;
        let (due, unsettled) = self
            .with_store(move |store| {
                let due = now - store.rechecked_at(jobset_id)? >= recheck_after;
                let asked_before = if newest_streamed {
                    i64::MIN
                } else {
                    now - UNFINISHED_RECHECK_GAP
                };
                let failed = due && !newest_streamed;
                Ok((
                    due,
                    store.unsettled_builds(jobset_id, asked_before, failed)?,
                ))
            })
            .await?;
        if unsettled.is_empty() {
            if due {
                self.with_store(move |store| Ok(store.set_rechecked_at(jobset_id, now)?))
                    .await?;
            }
            return Ok(());
        }
        let Some(newest) = self
            .with_store(move |store| Ok(store.newest_eval(jobset_id)?))
            .await?
        else {
            return Ok(());
        };
        let total = newest.nr_builds as usize;
        let mut streamed = None;
        if FetchStrategy::choose(total, unsettled.len(), &self.settings) == FetchStrategy::WholeEval
            && self.may_ask_whole_eval(jobset_id, newest.id, total).await?
            && self.budget.take()
        {
            let mode = WriteMode::Recheck { jobset_id };
            streamed = self
                .whole_eval(jobset, jobset_id, newest.id, total, mode, now)
                .await?
                .ok();
        }
        let (asked, changed, complete) = match streamed {
            Some(outcome) => (unsettled.len(), outcome.builds_written, true),
            None => {
                let learned = self
                    .fetch_and_keep(jobset, jobset_id, &unsettled, now)
                    .await?;
                (learned.fetched, learned.written, learned.missing == 0)
            }
        };
        report.rechecked_builds = asked;
        report.changed_builds = changed;
        let labels = [("jobset", jobset.to_string())];
        metrics::counter!("hydra_sentinel_builds_rechecked_total", &labels).increment(asked as u64);
        metrics::counter!("hydra_sentinel_builds_changed_total", &labels).increment(changed as u64);
        if changed > 0 {
            tracing::info!(%jobset, rechecked = asked, changed, "builds changed status since last seen");
        }
        if !complete {
            tracing::info!(%jobset, rechecked = asked, left = unsettled.len() - asked,
                "request budget spent; the other unsettled builds are asked about on the next passes");
        }
        // Failed builds count as rechecked once all of them were asked about.
        if due && complete {
            self.with_store(move |store| Ok(store.set_rechecked_at(jobset_id, now)?))
                .await?;
        }
        Ok(())
    }
}
